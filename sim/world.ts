// The simulator's heart: virtual time and one queue of events, fired in (time, random tie-break)
// order, with every microtask drained between two events so the run is a pure function of the seed.

import { setImmediate } from "node:timers";
import { SeededRandom } from "../src/io/prng.ts";
import { TraceHash } from "./trace.ts";

/** Something that owns events: a simulated process. Its events die with its incarnation. */
export interface EventOwner {
  readonly id: number;
  /** Bumped on every start; events scheduled for another incarnation are dropped. */
  readonly incarnation: number;
  /** False while the process is down: its events are dropped, not kept for the next start. */
  readonly up: boolean;
  /** While paused, the owner's events are held back and fired after it resumes. */
  readonly paused: boolean;
  /** Keeps an event of a paused owner until it resumes. */
  defer(ev: SimEvent): void;
}

/** A scheduled event. Treat as opaque outside the simulator. */
export interface SimEvent {
  at: number;
  tie: number;
  seq: number;
  fn: () => void;
  owner: EventOwner | null;
  incarnation: number;
  /** A small number naming the kind of event; it feeds the trace hash. */
  tag: number;
  cancelled: boolean;
}

/** A handle to cancel a scheduled event. */
export interface Timer {
  cancel(): void;
}

/** Options for `World.schedule`. */
export interface ScheduleOptions {
  owner?: EventOwner | null;
  /**
   * The owner's incarnation the event belongs to; default the owner's current one. Code of an
   * incarnation passes its own number, so its events die with it even if it outlives its crash.
   */
  incarnation?: number;
  tag?: number;
}

/** Why `World.run` returned. */
export type RunStop = "idle" | "time" | "stopped" | "events";

/** Options for `World.run`. */
export interface RunOptions {
  /** Stop before the first event later than this virtual time (ms). */
  untilMs?: number;
  /** Stop after this many events. */
  eventsMax?: number;
  /** Checked before every event; stop when it returns true. */
  stop?: () => boolean;
}

/** Events queued at once beyond which the world reports runaway scheduling. */
export const EVENTS_QUEUED_MAX = 1_000_000;

/** Yields one real macrotask so every microtask queued by the last event runs first. */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Virtual time plus an event queue ordered by (time, random tie-break, insertion order). */
export class World {
  #now = 0;
  #seq = 0;
  readonly #heap: SimEvent[] = [];
  readonly #random: SeededRandom;
  readonly trace: TraceHash = new TraceHash();
  /** Events fired so far. */
  eventsFired = 0;

  /** A world whose tie-breaks come from `random` (fork a dedicated "scheduler" stream). */
  constructor(random: SeededRandom) {
    this.#random = random;
  }

  /** Virtual milliseconds since the world began. */
  get now(): number {
    return this.#now;
  }

  /** Events waiting to fire. */
  get queued(): number {
    return this.#heap.length;
  }

  /**
   * Fires `fn` after `delayMs` of virtual time (a negative or non-finite delay counts as 0, as
   * `setTimeout` treats it). Events of an owner that is down, or of another incarnation than the
   * one they were scheduled for, are dropped; events of a paused owner wait for it.
   */
  schedule(delayMs: number, fn: () => void, opts: ScheduleOptions = {}): Timer {
    const owner = opts.owner ?? null;
    const ev = new QueuedEvent(
      this.#now + (Number.isFinite(delayMs) ? Math.max(0, delayMs) : 0),
      this.#random.u32(),
      this.#seq++,
      fn,
      owner,
      opts.incarnation ?? owner?.incarnation ?? 0,
      opts.tag ?? 0,
    );
    this.#push(ev);
    return ev;
  }

  /**
   * Puts deferred events of a resumed owner back on the queue, now, in the order they were held:
   * tie-break 0 and fresh increasing sequence numbers, so they fire before anything else due now
   * and in exactly their old order.
   */
  requeue(events: SimEvent[]): void {
    for (const ev of events) {
      ev.at = this.#now;
      ev.tie = 0;
      ev.seq = this.#seq++;
      this.#push(ev);
    }
  }

  /**
   * Runs events until the queue is empty ("idle"), a limit is hit, or `stop` says so. Between two
   * events it yields a macrotask so all promise continuations of the last event have run.
   */
  async run(opts: RunOptions = {}): Promise<RunStop> {
    const untilMs = opts.untilMs ?? Infinity;
    const eventsMax = opts.eventsMax ?? Infinity;
    let fired = 0;
    await drainMicrotasks();
    for (;;) {
      if (opts.stop?.()) return "stopped";
      if (fired >= eventsMax) return "events";
      const ev = this.#heap[0];
      if (ev === undefined) {
        // Nothing happens until untilMs, but time still passes.
        if (untilMs !== Infinity) this.#now = Math.max(this.#now, untilMs);
        return "idle";
      }
      if (ev.at > untilMs) {
        this.#now = Math.max(this.#now, untilMs);
        return "time";
      }
      this.#pop();
      if (ev.cancelled) continue;
      const owner = ev.owner;
      if (owner !== null) {
        if (!owner.up || owner.incarnation !== ev.incarnation) continue;
        if (owner.paused) {
          owner.defer(ev);
          continue;
        }
      }
      this.#now = ev.at;
      this.eventsFired++;
      fired++;
      this.trace.event(ev.at, ev.tag, owner?.id ?? -1);
      ev.fn();
      await drainMicrotasks();
    }
  }

  #push(ev: SimEvent): void {
    if (this.#heap.length >= EVENTS_QUEUED_MAX) {
      throw new Error(`Simulator queue over ${EVENTS_QUEUED_MAX} events: runaway scheduling`);
    }
    const h = this.#heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent] as SimEvent;
      if (!before(ev, p)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = ev;
  }

  #pop(): void {
    const h = this.#heap;
    const last = h.pop() as SimEvent;
    if (h.length === 0) return;
    let i = 0;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && before(h[r] as SimEvent, h[l] as SimEvent)) c = r;
      const child = h[c] as SimEvent;
      if (!before(child, last)) break;
      h[i] = child;
      i = c;
    }
    h[i] = last;
  }
}

/** An event on the queue, and the handle that cancels it: one object per `schedule`. */
class QueuedEvent implements SimEvent, Timer {
  cancelled = false;

  constructor(
    public at: number,
    public tie: number,
    public seq: number,
    public fn: () => void,
    public owner: EventOwner | null,
    public incarnation: number,
    public tag: number,
  ) {}

  cancel(): void {
    this.cancelled = true;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  if (a.at !== b.at) return a.at < b.at;
  if (a.tie !== b.tie) return a.tie < b.tie;
  return a.seq < b.seq;
}
