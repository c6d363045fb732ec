// One replica of a partition in a cluster: the state machine its Raft group applies. Committed
// entries are record batches; applying one runs the idempotent-producer check and appends the
// batch to the partition's log, so every replica assigns the same offsets and makes the same
// duplicate decisions, and consumers, who read that log, only ever see committed data.

import { readBatchHeader } from "../protocol/batch.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { MemoryLog } from "../storage/mod.ts";
import { PartitionProducers, type ProducersImage } from "../broker/producer_state.ts";
import type { Entry, Snapshot } from "./raft/types.ts";
import type { StateMachine } from "./raft/shell.ts";

/** What applying one batch produced. */
export interface AppliedBatch {
  baseOffset: number;
  /** True if it repeated a batch stored before (an idempotent retry): nothing was appended. */
  duplicate: boolean;
}

/** How a replica keeps its log bounded. */
export interface ReplicaLimits {
  /**
   * Take a checkpoint (the state's image at an entry) after this many bytes of batches applied
   * since the last one.
   */
  checkpointBytes: number;
}

/** Checkpoints kept at most while retention has not yet passed them. */
const CHECKPOINTS_MAX = 8;

/** A checkpoint: the state as of one applied entry. */
interface Checkpoint {
  index: number;
  /** The log's next offset right after that entry: the entries through it hold offsets below. */
  nextOffset: number;
  image: Uint8Array;
}

/** The image of a replica's state: where its log continues and its producers. */
interface ReplicaImage {
  nextOffset: number;
  producers: ProducersImage;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A partition replica's state machine. Its log is bounded by the topic's retention; the Raft log
 * behind it is compacted through a checkpoint once retention dropped every offset the entries
 * before it held, so neither grows past the retention plus a few checkpoints. A replica that
 * receives that snapshot (far behind, or restarting) starts its log over at the checkpoint's
 * offset with the checkpoint's producers: everything before it is gone everywhere by then.
 */
export class PartitionMachine implements StateMachine {
  readonly log: MemoryLog;
  readonly #producers = new PartitionProducers();
  /** Called after each applied batch (to wake subscriptions). */
  readonly #onAppend: () => void;
  #limits: ReplicaLimits;
  readonly #checkpoints: Checkpoint[] = [];
  #bytesSinceCheckpoint = 0;
  /** Told after each snapshot restored (a replica far behind, or starting from one). */
  onRestore: () => void = () => {};

  constructor(log: MemoryLog, onAppend: () => void, limits: ReplicaLimits) {
    this.log = log;
    this.#onAppend = onAppend;
    this.#limits = limits;
  }

  async apply(entry: Entry): Promise<AppliedBatch> {
    const applied = await this.#append(entry);
    this.#bytesSinceCheckpoint += entry.data.length;
    if (this.#bytesSinceCheckpoint >= this.#limits.checkpointBytes) this.#checkpoint(entry.index);
    return applied;
  }

  async #append(entry: Entry): Promise<AppliedBatch> {
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

  #checkpoint(index: number): void {
    this.#bytesSinceCheckpoint = 0;
    const image: ReplicaImage = {
      nextOffset: this.log.nextOffset,
      producers: this.#producers.image(),
    };
    // When full, every other one goes: the oldest stay (retention passes them next; dropping them
    // would leave nothing to compact to) and the rest stay spread out.
    if (this.#checkpoints.length >= CHECKPOINTS_MAX) {
      for (let i = this.#checkpoints.length - 1; i > 0; i -= 2) this.#checkpoints.splice(i, 1);
    }
    this.#checkpoints.push({
      index,
      nextOffset: image.nextOffset,
      image: encoder.encode(JSON.stringify(image)),
    });
  }

  /** New limits (the topic's retention changed): checkpoints are spaced by them from now on. */
  setLimits(limits: ReplicaLimits): void {
    this.#limits = limits;
  }

  /** The newest checkpoint whose offsets retention has dropped: the log may forget up to it. */
  compactionPoint(): { index: number; image: Uint8Array } | null {
    let found: Checkpoint | null = null;
    while (
      this.#checkpoints.length > 0 && this.#checkpoints[0]!.nextOffset <= this.log.logStartOffset
    ) {
      found = this.#checkpoints.shift()!;
    }
    return found === null ? null : { index: found.index, image: found.image };
  }

  restore(snapshot: Snapshot): void {
    this.#checkpoints.length = 0;
    this.#bytesSinceCheckpoint = 0;
    if (snapshot.data.length === 0) return; // the empty first snapshot of a new group
    const image = JSON.parse(decoder.decode(snapshot.data)) as ReplicaImage;
    if (!Number.isSafeInteger(image.nextOffset) || image.nextOffset < 0) {
      throw new GregorError(
        ErrorCode.INTERNAL,
        `A replica snapshot names offset ${image.nextOffset}`,
      );
    }
    // A MemoryLog is reset when the call returns; restore() is synchronous.
    void this.log.resetTo(image.nextOffset);
    this.#producers.loadImage(image.producers);
    this.onRestore();
  }
}
