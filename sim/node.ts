// A simulated process on a simulated machine: its own (skewable) clock, disk and network view,
// which can crash, restart and pause. A crash freezes the old incarnation's code for good: none of
// its pending promises ever settles again.

import type { Clock, Env } from "../src/io/types.ts";
import { abortError } from "../src/io/errors.ts";
import { SeededRandom } from "../src/io/prng.ts";
import type { EventOwner, SimEvent, World } from "./world.ts";
import type { SimDisk } from "./disk.ts";
import type { SimNetwork } from "./net.ts";

/** What a simulated process may do to itself beyond its Env. */
export interface ProcessControl {
  /** Ends this incarnation at once, as a crash would (e.g. after a failed fsync). */
  fatal(reason: string): void;
  /** Which incarnation this is (0 for the first start). */
  readonly incarnation: number;
}

/** The program a node runs; it gets a fresh Env on every (re)start. */
export type NodeMain = (env: Env, ctl: ProcessControl) => Promise<void>;

/** Event tags (for the trace hash) used by this file. */
const TAG_SLEEP = 1;

/** How a node's clock differs from true virtual time. */
export interface ClockSkew {
  /** Rate error: 0.01 means this clock runs 1% fast. */
  drift: number;
  /** Offset of the wall clock from true wall time, in ms. May be changed to make it jump. */
  wallOffsetMs: number;
}

/** Wall-clock epoch of virtual time 0: 2026-01-01T00:00:00Z. */
export const SIM_EPOCH_MS = 1_767_225_600_000;

/** A node's view of time: true virtual time, stretched by drift, with a jumpable wall offset. */
export class SimClock implements Clock {
  readonly #world: World;
  readonly #node: SimNode;
  readonly skew: ClockSkew;

  constructor(world: World, node: SimNode, skew: ClockSkew) {
    this.#world = world;
    this.#node = node;
    this.skew = skew;
  }

  now(): number {
    return this.#world.now * (1 + this.skew.drift);
  }

  wallMs(): number {
    return SIM_EPOCH_MS + this.now() + this.skew.wallOffsetMs;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        timer.cancel();
        reject(abortError(signal as AbortSignal));
      };
      const timer = this.#world.schedule(Math.max(0, ms) / (1 + this.skew.drift), () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, { owner: this.#node, tag: TAG_SLEEP });
      signal?.addEventListener("abort", onAbort, { once: true });
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

/** One simulated process. */
export class SimNode implements EventOwner {
  readonly id: number;
  readonly name: string;
  readonly host: string;
  readonly clock: SimClock;
  readonly disk: SimDisk;
  incarnation = 0;
  paused = false;
  /** True between `start()` and a crash or exit. */
  up = false;
  /** Crashes so far (including fatal exits). */
  crashes = 0;
  readonly #world: World;
  readonly #net: SimNetwork;
  readonly #random: SeededRandom;
  readonly #main: NodeMain;
  readonly #onExit: ExitHandler;
  #deferred: SimEvent[] = [];
  #started = 0;

  constructor(
    world: World,
    deps: { net: SimNetwork; disk: SimDisk; random: SeededRandom; onExit: ExitHandler },
    opts: SimNodeOptions,
  ) {
    this.#world = world;
    this.#net = deps.net;
    this.disk = deps.disk;
    this.#random = deps.random;
    this.#onExit = deps.onExit;
    this.id = opts.id;
    this.name = opts.name;
    this.host = opts.host;
    this.#main = opts.main;
    this.clock = new SimClock(world, this, opts.skew ?? { drift: 0, wallOffsetMs: 0 });
  }

  defer(ev: SimEvent): void {
    this.#deferred.push(ev);
  }

  /** Starts a new incarnation of the node's program with a fresh Env. */
  start(): void {
    if (this.up) throw new Error(`Node ${this.name} is already up`);
    this.up = true;
    this.paused = false;
    const incarnation = this.incarnation;
    const env: Env = {
      clock: this.clock,
      random: this.#random.fork(`incarnation-${this.#started++}`),
      net: this.#net.viewFor(this),
      disk: this.disk.viewFor(this),
    };
    const ctl: ProcessControl = {
      incarnation,
      fatal: (reason) => {
        if (this.up && this.incarnation === incarnation) this.#exit(`fatal: ${reason}`);
      },
    };
    // Run the program inside an event of this incarnation so a crash in the same instant wins.
    this.#world.schedule(0, () => {
      this.#main(env, ctl).then(
        () => this.#exitIfCurrent(incarnation, EXIT_CLEAN),
        (err) => this.#exitIfCurrent(incarnation, `died: ${describe(err)}`),
      );
    }, { owner: this, tag: 2 });
  }

  /**
   * Kills the process: its pending work is dropped and its connections reset. A "power" crash
   * takes the machine down too, so the disk loses or mangles unsynced writes as its crash policy
   * decides; a "process" crash (kill -9) leaves the page cache, and so unsynced writes, intact.
   * A power loss of a node whose process is down still costs it its page cache.
   */
  crash(kind: CrashKind = "power"): void {
    if (this.up) {
      this.up = false;
      this.paused = false;
      this.incarnation++;
      this.crashes++;
      this.#deferred = [];
      this.#net.crashNode(this, kind);
    }
    // The machine can lose power while its process is down, too.
    if (kind === "power") this.disk.crash();
  }

  /** Stops the process from running (a long GC pause or SIGSTOP); time goes on around it. */
  pause(): void {
    if (this.up) this.paused = true;
  }

  /** Lets a paused process run again; its held-back events fire now. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const events = this.#deferred;
    this.#deferred = [];
    this.#world.requeue(events);
  }

  #exitIfCurrent(incarnation: number, reason: string): void {
    if (this.up && this.incarnation === incarnation) this.#exit(reason);
  }

  #exit(reason: string): void {
    this.crash("process");
    this.#onExit(this, reason);
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
