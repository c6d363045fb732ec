// One replica of a partition in a cluster: the state machine its Raft group applies. Committed
// entries are record batches; applying one runs the idempotent-producer check and appends the
// batch to the partition's log, so every replica assigns the same offsets and makes the same
// duplicate decisions, and consumers, who read that log, only ever see committed data.

import { readBatchHeader } from "../protocol/batch.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { Log } from "../broker/log.ts";
import { PartitionProducers } from "../broker/producer_state.ts";
import type { Entry, Snapshot } from "./raft/types.ts";
import type { StateMachine } from "./raft/shell.ts";

/** What applying one batch produced. */
export interface AppliedBatch {
  baseOffset: number;
  /** True if it repeated a batch stored before (an idempotent retry): nothing was appended. */
  duplicate: boolean;
}

/** A partition replica's state machine. */
export class PartitionMachine implements StateMachine {
  readonly log: Log;
  readonly #producers = new PartitionProducers();
  /** Called after each applied batch (to wake subscriptions). */
  readonly #onAppend: () => void;

  constructor(log: Log, onAppend: () => void) {
    this.log = log;
    this.#onAppend = onAppend;
  }

  async apply(entry: Entry): Promise<AppliedBatch> {
    // The leader validated the batch before proposing it; the entry's CRC-checked bytes are the
    // same on every replica, so a failure here is the same everywhere and stores nothing.
    const header = readBatchHeader(entry.data);
    const append = async () => (await this.log.append(entry.data, header)).baseOffset;
    if (header.producerId < 0) {
      const baseOffset = await append();
      this.#onAppend();
      return { baseOffset, duplicate: false };
    }
    const admitted = this.#producers.admit(header, append);
    const baseOffset = await admitted.baseOffset;
    if (!admitted.duplicate) this.#onAppend();
    return { baseOffset, duplicate: admitted.duplicate };
  }

  restore(snapshot: Snapshot): void {
    // Partition groups are not compacted yet, so no snapshot beyond the empty first one exists.
    if (snapshot.index > 0) {
      throw new GregorError(
        ErrorCode.INTERNAL,
        `Partition snapshots are not supported yet (got one through index ${snapshot.index})`,
      );
    }
  }
}
