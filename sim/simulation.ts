// A simulated cluster: one world, one network, and nodes each with their own disk. Scenarios build
// on it; the fault plan and nemesis act on it.

import { SeededRandom } from "../src/io/prng.ts";
import type { FaultPoints } from "../src/io/types.ts";
import { World } from "./world.ts";
import { calmNet, type NetFaults, SimNetwork } from "./net.ts";
import { calmDisk, type DiskFaults, SimDisk } from "./disk.ts";
import { type ClockSkew, type CrashKind, EXIT_CLEAN, type NodeMain, SimNode } from "./node.ts";
import { History } from "./history.ts";

/** Options for a new simulation. */
export interface SimulationOptions {
  /** Network faults (shared by all links). Default: calm. */
  net?: NetFaults;
  /** Disk faults, copied for each node's disk. Default: calm. */
  disk?: DiskFaults;
  /** Restart a node this long after its program fails (throws or is fatal); null: never. */
  restartAfterExitMs?: number | null;
}

/** Options for `Simulation.addNode`. */
export interface AddNodeOptions {
  name: string;
  main: NodeMain;
  skew?: ClockSkew;
  /** Start at once (default true). */
  start?: boolean;
}

/** One exit of a node's program that was not a crash injected from outside. */
export interface NodeExit {
  node: string;
  timeMs: number;
  reason: string;
}

/** A world of simulated nodes driven by one seed. */
export class Simulation {
  readonly seed: number;
  readonly random: SeededRandom;
  readonly world: World;
  readonly net: SimNetwork;
  readonly history: History;
  readonly nodes: SimNode[] = [];
  readonly exits: NodeExit[] = [];
  readonly #diskFaults: DiskFaults;
  /**
   * Fault points every node's Env carries from its next start (BUGGIFY, sim/buggify.ts); none by
   * default. A scenario sets it before it adds its nodes.
   */
  faults: FaultPoints | undefined = undefined;
  readonly #restartAfterExitMs: number | null;

  constructor(seed: number, opts: SimulationOptions = {}) {
    this.seed = seed;
    this.random = new SeededRandom(seed);
    this.world = new World(this.random.fork("scheduler"));
    this.net = new SimNetwork(this.world, this.random.fork("network"), opts.net ?? calmNet());
    this.history = new History(this.world);
    this.#diskFaults = opts.disk ?? calmDisk();
    this.#restartAfterExitMs = opts.restartAfterExitMs ?? null;
  }

  /** Adds a node with a fresh disk; its host name is its name. */
  addNode(opts: AddNodeOptions): SimNode {
    const id = this.nodes.length;
    const disk = new SimDisk(
      this.world,
      this.random.fork(`disk-${opts.name}`),
      structuredClone(this.#diskFaults),
    );
    const node = new SimNode(this.world, {
      net: this.net,
      disk,
      random: this.random.fork(`node-${opts.name}`),
      onExit: (n, reason) => this.#onExit(n, reason),
      faults: () => this.faults,
    }, { id, name: opts.name, host: opts.name, main: opts.main, skew: opts.skew });
    this.nodes.push(node);
    if (opts.start ?? true) node.start();
    return node;
  }

  /** The node called `name`. */
  node(name: string): SimNode {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`No simulated node called ${name}`);
    return n;
  }

  /** Crashes a node and, if `restartAfterMs` is given, restarts it that much later. */
  crash(node: SimNode, kind: CrashKind, restartAfterMs?: number): void {
    node.crash(kind);
    if (restartAfterMs !== undefined) this.restartLater(node, restartAfterMs);
  }

  /** Restarts `node` after `delayMs` unless it is up by then. */
  restartLater(node: SimNode, delayMs: number): void {
    this.world.schedule(delayMs, () => {
      if (!node.up) node.start();
    }, { tag: 3 });
  }

  #onExit(node: SimNode, reason: string): void {
    this.exits.push({ node: node.name, timeMs: this.world.now, reason });
    this.world.trace.text(`exit|${node.name}|${reason}`);
    // Like a supervisor with restart-on-failure: a clean exit stays down.
    if (this.#restartAfterExitMs !== null && reason !== EXIT_CLEAN) {
      this.restartLater(node, this.#restartAfterExitMs);
    }
  }
}
