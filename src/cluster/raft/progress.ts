// A leader's view of one follower's replication: how far it matches, what to send next, and the
// flow-control state (probe one message at a time, pipeline when matching, wait on a snapshot).

/**
 * `probe`: where the follower's log matches is unknown; one AppendEntries at a time.
 * `replicate`: it matches; AppendEntries are pipelined up to the in-flight limit.
 * `snapshot`: an InstallSnapshot is on its way; nothing else is sent until it is answered.
 */
export type ProgressState = "probe" | "replicate" | "snapshot";

/** Replication state of one follower, kept by the leader. */
export class Progress {
  /** Highest index known to match the leader's log. */
  match = 0;
  /** Next index to send. */
  next: number;
  state: ProgressState = "probe";
  /** In probe state: a message is outstanding and not yet answered. */
  paused = false;
  /** In snapshot state: the index of the snapshot sent. */
  pendingSnapshot = 0;
  /** When the last AppendEntries or InstallSnapshot was sent, ms. */
  sentMs: number;
  /** When `match` last moved or the pipeline was last started from empty, ms. */
  progressMs: number;
  /** Heard from since the last check-quorum round. */
  recentActive = true;
  /** When the follower last answered an AppendEntries or InstallSnapshot, ms; null: never. */
  heardMs: number | null = null;
  /** Last index of each pipelined AppendEntries in flight, oldest first. */
  readonly #inflight: number[] = [];
  readonly #inflightMax: number;

  /** A follower to probe from `next`. */
  constructor(next: number, nowMs: number, inflightMax: number) {
    this.next = next;
    this.sentMs = nowMs;
    this.progressMs = nowMs;
    this.#inflightMax = inflightMax;
  }

  /** AppendEntries in flight. */
  get inflight(): number {
    return this.#inflight.length;
  }

  /** True if a message with entries may be sent now. */
  canSend(): boolean {
    switch (this.state) {
      case "probe":
        return !this.paused;
      case "replicate":
        return this.#inflight.length < this.#inflightMax;
      case "snapshot":
        return false;
    }
  }

  /** Records an acknowledged match; returns true if it moved forward. */
  acknowledge(index: number, nowMs: number): boolean {
    this.paused = false;
    if (index <= this.match) return false;
    this.match = index;
    this.next = Math.max(this.next, index + 1);
    this.progressMs = nowMs;
    while (this.#inflight.length > 0 && (this.#inflight[0] as number) <= index) {
      this.#inflight.shift();
    }
    return true;
  }

  /** Records a pipelined AppendEntries ending at `lastIndex`. */
  sent(lastIndex: number, nowMs: number): void {
    this.sentMs = nowMs;
    if (this.state === "probe") {
      this.paused = true;
      return;
    }
    if (this.state !== "replicate" || lastIndex < this.next) return;
    if (this.#inflight.length === 0) this.progressMs = nowMs;
    this.#inflight.push(lastIndex);
    this.next = lastIndex + 1;
  }

  /** Back to probing from `next` (never below `match + 1`). */
  becomeProbe(next: number): void {
    this.state = "probe";
    this.paused = false;
    this.next = Math.max(next, this.match + 1);
    this.#inflight.length = 0;
  }

  /** Pipelining from `match + 1`. */
  becomeReplicate(nowMs: number): void {
    this.state = "replicate";
    this.paused = false;
    this.next = this.match + 1;
    this.progressMs = nowMs;
    this.#inflight.length = 0;
  }

  /** Waiting for the follower to install the snapshot at `index`. */
  becomeSnapshot(index: number, nowMs: number): void {
    this.state = "snapshot";
    this.pendingSnapshot = index;
    this.sentMs = nowMs;
    this.#inflight.length = 0;
  }
}
