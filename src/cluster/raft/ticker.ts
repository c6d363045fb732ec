// One timer for all the Raft groups of a node. Each group says when it next has a timeout due
// (a leader's heartbeat, a follower's election timeout); the ticker sleeps until the earliest,
// rounded up to the tick grid, and then ticks every group that is due. Groups due in the same
// tick run in one timer callback, one after another without a pause, so the heartbeats they send
// to one peer are queued together and leave in one frame (one write) instead of one each.

import { GUARD_DONE } from "../../io/errors.ts";
import type { Clock } from "../../io/types.ts";

/** What the ticker needs of a group. */
export interface Ticked {
  /** When the group next needs a tick, on the ticker's clock (ms). */
  tickDueMs(): number;
  /** Runs the group's due timeouts. */
  tickNow(): void;
}

/** The ticker sleeps at least this long, ms, so a due time that did not move cannot spin. */
const WAIT_MS_MIN = 1;
/** ... and at most this long, so a group whose due time is far off is still looked at, ms. */
const WAIT_MS_MAX = 1_000;

/** Ticks a node's Raft groups from one timer, on a grid of `tickMs`. */
export class RaftTicker {
  readonly #clock: Clock;
  readonly #tickMs: number;
  readonly #groups = new Set<Ticked>();
  /** Ends the current sleep early; null while the loop runs or is not running. */
  #wake: AbortController | null = null;
  /** When the current sleep ends; Infinity when none. */
  #wakeAtMs = Infinity;
  #running = false;

  constructor(clock: Clock, tickMs: number) {
    if (!(tickMs > 0)) throw new RangeError(`A tick must be over 0 ms, got ${tickMs}`);
    this.#clock = clock;
    this.#tickMs = tickMs;
  }

  /** Groups ticked. */
  get size(): number {
    return this.#groups.size;
  }

  /** Starts ticking `g`. */
  add(g: Ticked): void {
    this.#groups.add(g);
    if (this.#running) this.poke(g.tickDueMs());
    else void this.#loop();
  }

  /** Stops ticking `g`; with no group left the timer stops too. */
  remove(g: Ticked): void {
    this.#groups.delete(g);
    if (this.#groups.size === 0) this.#interrupt();
  }

  /** A group's due time moved to `dueMs`: wakes the ticker sooner if it would sleep past it. */
  poke(dueMs: number): void {
    if (this.#wake !== null && this.#onGrid(dueMs) < this.#wakeAtMs) this.#interrupt();
  }

  #onGrid(ms: number): number {
    return Math.ceil(ms / this.#tickMs) * this.#tickMs;
  }

  #interrupt(): void {
    const wake = this.#wake;
    if (wake === null) return;
    this.#wake = null;
    this.#wakeAtMs = Infinity;
    wake.abort(GUARD_DONE);
  }

  async #loop(): Promise<void> {
    this.#running = true;
    try {
      while (this.#groups.size > 0) {
        let due = Infinity;
        for (const g of this.#groups) due = Math.min(due, g.tickDueMs());
        const now = this.#clock.now();
        const wakeAtMs = Math.min(
          Math.max(this.#onGrid(due), now + WAIT_MS_MIN),
          now + WAIT_MS_MAX,
        );
        const wake = new AbortController();
        this.#wake = wake;
        this.#wakeAtMs = wakeAtMs;
        try {
          await this.#clock.sleep(wakeAtMs - now, wake.signal);
        } catch {
          continue; // woken early: a group is due sooner, or none is left
        } finally {
          if (this.#wake === wake) {
            this.#wake = null;
            this.#wakeAtMs = Infinity;
          }
        }
        const at = this.#clock.now();
        for (const g of [...this.#groups]) {
          if (g.tickDueMs() <= at) g.tickNow();
        }
      }
    } finally {
      this.#running = false;
    }
  }
}
