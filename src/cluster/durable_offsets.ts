// Durable subscriptions' acknowledged offsets in a cluster. Acks are frequent and one-way (nobody
// waits for them to be written down), so the node serving a subscription keeps the latest ack per
// subscription and commits everything that moved to the metadata group at most once per flush
// (every offsetsFlushMs): a busy subscriber costs one metadata entry per interval, shared with every
// other subscriber on the node. An ack not yet committed when the node dies is redelivered by
// whichever node the subscriber resumes on, as a single node does after a crash.

import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { DurableOffset } from "../protocol/messages.ts";

/** Durable offsets one commit carries at most; the rest wait for the next flush. */
export const DURABLE_COMMIT_ENTRIES_MAX = 10_000;

/** An ack waiting to be committed. */
interface Pending {
  offset: number;
  /** The creation of the topic it was taken on. */
  incarnation: number;
}

/**
 * The acks one node took and has not committed yet. Their number is bounded by the durable
 * subscriptions the node's broker remembers (one entry each).
 */
export class DurableCommits {
  readonly #commit: (offsets: DurableOffset[]) => Promise<void>;
  readonly #pending = new Map<string, Pending>();
  #failing = false;

  /** `commit` puts offsets into the metadata (proposing them, or forwarding to the leader). */
  constructor(commit: (offsets: DurableOffset[]) => Promise<void>) {
    this.#commit = commit;
  }

  /** Notes that durable subscription `key` ("topic\0partition\0name") acknowledged `offset`. */
  acked(key: string, offset: number, incarnation: number): void {
    this.#keep(key, { offset, incarnation });
  }

  /**
   * Commits what was acknowledged since the last flush (up to DURABLE_COMMIT_ENTRIES_MAX). Acks
   * whose commit failed are tried again by the next flush; only the first failure after a success
   * throws, so an outage (no leader for a while, a full metadata) is reported once, not every
   * interval.
   */
  async flush(): Promise<void> {
    if (this.#pending.size === 0) return;
    const taken: [string, Pending][] = [];
    for (const entry of this.#pending) {
      if (taken.length >= DURABLE_COMMIT_ENTRIES_MAX) break;
      taken.push(entry);
    }
    for (const [key] of taken) this.#pending.delete(key);
    try {
      await this.#commit(taken.map(([key, p]) => toWire(key, p)));
      this.#failing = false;
    } catch (err) {
      // The metadata refused new subscriptions for want of room: everything else applied, and
      // trying again could only be refused again.
      const full = err instanceof GregorError && err.code === ErrorCode.LIMIT_EXCEEDED;
      if (!full) { for (const [key, p] of taken) this.#keep(key, p); }
      if (this.#failing) return;
      this.#failing = true;
      throw new Error(
        `Cannot commit ${taken.length} durable subscription offsets to the cluster's metadata ` +
          `(${(err as Error).message}); ${full ? "new ones are dropped" : "retrying every flush"}`,
        { cause: err },
      );
    }
  }

  /** Keeps the later of `p` and what is pending for `key`: a newer creation, or a larger offset. */
  #keep(key: string, p: Pending): void {
    const before = this.#pending.get(key);
    if (
      before === undefined || p.incarnation > before.incarnation ||
      (p.incarnation === before.incarnation && p.offset > before.offset)
    ) {
      this.#pending.set(key, p);
    }
  }
}

/** A pending ack as DURABLE_COMMIT carries it. */
function toWire(key: string, p: Pending): DurableOffset {
  // A durable name never holds a NUL in a cluster (the subscribe refuses one).
  const [topic, partition, name] = key.split("\u0000") as [string, string, string];
  return {
    topic,
    partition: Number(partition),
    name,
    offset: p.offset,
    incarnation: p.incarnation,
  };
}
