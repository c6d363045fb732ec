// A simulated process on a simulated machine: its own (skewable) clock, disk and network view,
// which can crash, restart and pause. A crash freezes the old incarnation's code for good: every
// Env it was given is bound to it, and none of its pending or later operations ever settles.

import type { Clock, Env, FaultPoints } from "../src/io/types.ts";
import { abortError } from "../src/io/errors.ts";
import type { SeededRandom } from "../src/io/prng.ts";
import {
  type EventOwner,
  EVENTS_QUEUED_MAX,
  type SimEvent,
  type Timer,
  type World,
} from "./world.ts";
import { SimCrypto } from "./crypto.ts";
import type { SimDisk } from "./disk.ts";
import type { SimNetwork } from "./net.ts";

/** What a simulated process may do to itself beyond its Env. */
export interface ProcessControl {
  /**
   * Ends this incarnation at once, as a crash would (e.g. after a failed fsync), then throws so no
   * code after the call runs. Callers in detached promises should catch, as for any error.
   */
  fatal(reason: string): never;
  /** Which incarnation this is (0 for the first start). */
  readonly incarnation: number;
}

/** Thrown by `ProcessControl.fatal` in the simulator after it ended the incarnation. */
export class ProcessFatal extends Error {
  override name = "ProcessFatal";
}

/** The program a node runs; it gets a fresh Env on every (re)start. */
export type NodeMain = (env: Env, ctl: ProcessControl) => Promise<void>;

/** Event tags (for the trace hash) used by this file. */
const TAG_SLEEP = 1;
const TAG_MAIN = 2;

/** How a node's clock differs from true virtual time, at creation. */
export interface ClockSkew {
  /** Rate error: 0.01 means this clock runs 1% fast. Must be > -1. */
  drift: number;
  /** Offset of the wall clock from true wall time, in ms. */
  wallOffsetMs: number;
}

/** Wall-clock epoch of virtual time 0: 2026-01-01T00:00:00Z. */
export const SIM_EPOCH_MS = 1_767_225_600_000;
/** A machine's monotonic clock starts, at each boot, somewhere in [0, this) ms. */
export const MONO_ORIGIN_MS_MAX = 1_000_000_000;
/**
 * Smallest re-arm step of a sleep that woke a hair early through float rounding: enough to move
 * virtual time forward at any plausible magnitude, far below anything code can measure.
 */
const SLEEP_REARM_MS_MIN = 1e-6;
/** Events a paused node may hold back; as many as the whole queue may hold. */
export const DEFERRED_EVENTS_MAX = EVENTS_QUEUED_MAX;

/**
 * A machine's clocks: a monotonic clock that runs at `1 + drift` times true time from a random
 * origin re-rolled at every boot, and a wall clock (same rate, plus a jumpable offset) that keeps
 * running across reboots. `viewFor` hands one incarnation its `Clock`.
 */
export class SimClock {
  /** Offset of the wall clock from true wall time, in ms. Change it to make the wall clock jump. */
  wallOffsetMs: number;
  readonly #world: World;
  readonly #node: SimNode;
  readonly #random: SeededRandom;
  #drift: number;
  /** True time of the last rebase, and both clocks' readings then. */
  #anchorMs = 0;
  #monoAtAnchorMs: number;
  #wallAtAnchorMs = SIM_EPOCH_MS;

  constructor(world: World, node: SimNode, opts: { skew: ClockSkew; random: SeededRandom }) {
    if (!(opts.skew.drift > -1)) {
      throw new RangeError(`Clock drift must be > -1, got ${opts.skew.drift}`);
    }
    this.#world = world;
    this.#node = node;
    this.#random = opts.random;
    this.#drift = opts.skew.drift;
    this.wallOffsetMs = opts.skew.wallOffsetMs;
    this.#monoAtAnchorMs = this.#random.float() * MONO_ORIGIN_MS_MAX;
    this.#anchorMs = world.now;
  }

  /** Rate error of both clocks (0.01 = 1% fast). Change it with `setDrift`. */
  get drift(): number {
    return this.#drift;
  }

  /** Changes the rate from now on; both clocks continue from their current readings. */
  setDrift(drift: number): void {
    if (!(drift > -1)) throw new RangeError(`Clock drift must be > -1, got ${drift}`);
    this.#rebase(this.now());
    this.#drift = drift;
  }

  /** A power loss: the monotonic clock restarts from a new random origin; wall time goes on. */
  reboot(): void {
    this.#rebase(this.#random.float() * MONO_ORIGIN_MS_MAX);
  }

  /** The monotonic reading, ms. */
  now(): number {
    return this.#monoAtAnchorMs + (this.#world.now - this.#anchorMs) * (1 + this.#drift);
  }

  /** The wall-clock reading, ms since the Unix epoch. */
  wallMs(): number {
    return this.#wallAtAnchorMs + (this.#world.now - this.#anchorMs) * (1 + this.#drift) +
      this.wallOffsetMs;
  }

  /** The Clock one incarnation sees: its sleeps settle only while that incarnation lives. */
  viewFor(incarnation: number): Clock {
    return {
      now: () => this.now(),
      wallMs: () => this.wallMs(),
      sleep: (ms, signal) => this.#sleep(incarnation, ms, signal),
    };
  }

  #rebase(monoNowMs: number): void {
    this.#wallAtAnchorMs = this.wallMs() - this.wallOffsetMs;
    this.#monoAtAnchorMs = monoNowMs;
    this.#anchorMs = this.#world.now;
  }

  #sleep(incarnation: number, ms: number, signal?: AbortSignal): Promise<void> {
    const node = this.#node;
    if (!node.isCurrent(incarnation)) return never();
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const waitMs = Number.isFinite(ms) ? Math.max(0, ms) : 0;
    const deadline = this.now() + waitMs;
    const owned = { owner: node, incarnation, tag: TAG_SLEEP };
    return new Promise((resolve, reject) => {
      let timer: Timer;
      let settled = false;
      const onAbort = () => {
        timer.cancel();
        const fail = () => {
          if (settled) return;
          settled = true;
          reject(abortError(signal as AbortSignal));
        };
        // A running process sees it now; a paused one when it resumes; a dead one never.
        if (!node.isCurrent(incarnation)) return;
        if (node.paused) this.#world.schedule(0, fail, owned);
        else fail();
      };
      // Rounding in ms / (1 + drift) can wake a hair early; re-arm until this clock moved by ms.
      const fire = () => {
        const leftMs = deadline - this.now();
        if (leftMs > 0) {
          timer = this.#world.schedule(
            Math.max(leftMs / (1 + this.#drift), SLEEP_REARM_MS_MIN),
            fire,
            owned,
          );
          return;
        }
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      timer = this.#world.schedule(waitMs / (1 + this.#drift), fire, owned);
      // No `once` option: a signal aborts at most once, and the options cost a conversion per sleep.
      signal?.addEventListener("abort", onAbort);
    });
  }
}

/** Options for a new node. */
export interface SimNodeOptions {
  id: number;
  name: string;
  host: string;
  main: NodeMain;
  skew?: ClockSkew;
}

/** A power loss loses the page cache; a process crash does not. */
export type CrashKind = "power" | "process";

/** The exit reason of a program whose main resolved. */
export const EXIT_CLEAN = "exited";

/** Called when an incarnation ends on its own (its main settled or it called `fatal`). */
export type ExitHandler = (node: SimNode, reason: string) => void;

/** A promise that never settles: what every operation of a dead incarnation returns. */
export function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

/** One simulated process, on its own simulated machine. */
export class SimNode implements EventOwner {
  readonly id: number;
  readonly name: string;
  readonly host: string;
  readonly clock: SimClock;
  readonly disk: SimDisk;
  /** Which run of the program this is: -1 before the first start, then bumped by every start. */
  incarnation = -1;
  paused = false;
  /** True between `start()` and a crash or exit. */
  up = false;
  /** True while the machine has power (its kernel answers packets even if the process is down). */
  hostUp = false;
  /** Crashes so far (including fatal exits). */
  crashes = 0;
  /** Power losses so far: the network uses it to tell what a machine sent before one. */
  powerLosses = 0;
  /** Pauses that held back at least one event. */
  pausesWithHeldEvents = 0;
  readonly #world: World;
  readonly #net: SimNetwork;
  readonly #random: SeededRandom;
  readonly #main: NodeMain;
  readonly #onExit: ExitHandler;
  readonly #faults: () => FaultPoints | undefined;
  /** Events held while paused; at most DEFERRED_EVENTS_MAX. */
  #deferred: SimEvent[] = [];
  #pauseToken = 0;

  constructor(
    world: World,
    deps: {
      net: SimNetwork;
      disk: SimDisk;
      random: SeededRandom;
      onExit: ExitHandler;
      faults?: () => FaultPoints | undefined;
    },
    opts: SimNodeOptions,
  ) {
    this.#world = world;
    this.#net = deps.net;
    this.disk = deps.disk;
    this.#random = deps.random;
    this.#onExit = deps.onExit;
    this.#faults = deps.faults ?? (() => undefined);
    this.id = opts.id;
    this.name = opts.name;
    this.host = opts.host;
    this.#main = opts.main;
    this.clock = new SimClock(world, this, {
      skew: opts.skew ?? { drift: 0, wallOffsetMs: 0 },
      random: deps.random.fork("clock"),
    });
    this.#net.attach(this);
  }

  /** True if `incarnation` is the one running now. */
  isCurrent(incarnation: number): boolean {
    return this.up && this.incarnation === incarnation;
  }

  defer(ev: SimEvent): void {
    if (this.#deferred.length >= DEFERRED_EVENTS_MAX) {
      throw new Error(`Node ${this.name} holds over ${DEFERRED_EVENTS_MAX} events while paused`);
    }
    this.#deferred.push(ev);
  }

  /** Starts a new incarnation of the node's program with a fresh Env bound to it. */
  start(): void {
    if (this.up) throw new Error(`Node ${this.name} is already up`);
    // A new number per start, so nothing stamped while the node was down can fire in this run.
    const incarnation = ++this.incarnation;
    this.up = true;
    this.hostUp = true;
    this.paused = false;
    const env: Env = {
      clock: this.clock.viewFor(incarnation),
      random: this.#random.fork(`incarnation-${incarnation}`),
      net: this.#net.viewFor(this, incarnation),
      disk: this.disk.viewFor(this, incarnation),
      crypto: new SimCrypto(),
    };
    const faults = this.#faults();
    if (faults !== undefined) env.faults = faults;
    const ctl: ProcessControl = {
      incarnation,
      fatal: (reason) => {
        if (this.isCurrent(incarnation)) this.#exit(`fatal: ${reason}`);
        throw new ProcessFatal(`Process ${this.name} ended: ${reason}`);
      },
    };
    this.#net.hostStarted(this);
    // Run the program inside an event of this incarnation so a crash in the same instant wins.
    this.#world.schedule(0, () => {
      this.#main(env, ctl).then(
        () => this.#exitIfCurrent(incarnation, EXIT_CLEAN),
        (err) => this.#exitIfCurrent(incarnation, `died: ${describe(err)}`),
      );
    }, { owner: this, tag: TAG_MAIN });
  }

  /**
   * Kills the process: its pending work is dropped and the kernel deals with its sockets and
   * files. A "power" crash takes the machine down too: the disk loses or mangles unsynced writes
   * as its crash policy decides, the network stops answering for it until the next start, and the
   * monotonic clock restarts. A "process" crash (kill -9) leaves the page cache, and so unsynced
   * writes, intact. A power loss of a node whose process is down still costs it its page cache.
   */
  crash(kind: CrashKind = "power"): void {
    if (this.up) {
      this.up = false;
      this.paused = false;
      this.crashes++;
      this.#deferred = [];
      this.#net.processDown(this, kind);
      this.disk.processDown();
    }
    if (kind === "power") {
      this.hostUp = false;
      this.powerLosses++;
      this.disk.crash();
      this.clock.reboot();
    }
  }

  /**
   * Stops the process from running (a long GC pause or SIGSTOP); time goes on around it. Returns a
   * token for `resume`, or 0 if the node is down or already paused.
   */
  pause(): number {
    if (!this.up || this.paused) return 0;
    this.paused = true;
    return ++this.#pauseToken;
  }

  /**
   * Lets a paused process run again; its held-back events fire now, in order. With a token, only
   * the pause that returned it ends.
   */
  resume(token?: number): void {
    if (!this.paused) return;
    if (token !== undefined && token !== this.#pauseToken) return;
    this.paused = false;
    const events = this.#deferred;
    this.#deferred = [];
    if (events.length > 0) this.pausesWithHeldEvents++;
    this.#world.requeue(events);
  }

  #exitIfCurrent(incarnation: number, reason: string): void {
    if (this.isCurrent(incarnation)) this.#exit(reason);
  }

  #exit(reason: string): void {
    this.crash("process");
    this.#onExit(this, reason);
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
