// Fault plans and the nemesis. "Swarm" testing: every seed rolls which faults are on and how hard,
// so some runs are calm and some brutal. The nemesis acts on the simulation during the safety
// phase; `calm` ends it all for the liveness phase.

import { SeededRandom } from "../src/io/prng.ts";
import { calmNet, type NetFaults } from "./net.ts";
import { calmDisk, type DiskFaults, type SimDisk } from "./disk.ts";
import type { ProcessControl, SimNode } from "./node.ts";
import { Simulation } from "./simulation.ts";
import { Buggify } from "./buggify.ts";

/** Relative weights of the nemesis' actions; 0 turns one off. */
export interface NemesisWeights {
  partition: number;
  oneWay: number;
  heal: number;
  powerCrash: number;
  processCrash: number;
  pause: number;
  reset: number;
  wallJump: number;
  diskFull: number;
}

/** Everything a seed decided about faults. */
export interface FaultPlan {
  net: NetFaults;
  disk: DiskFaults;
  nemesis: NemesisWeights;
  /** Mean virtual time between two nemesis actions, ms. */
  nemesisIntervalMs: number;
  /** How long a crashed node stays down, at most, ms. */
  downMsMax: number;
  /** How long a pause lasts, at most, ms. */
  pauseMsMax: number;
  /** Largest clock rate error rolled for a node (0.01 = 1%). */
  clockDriftMax: number;
  /** Nodes that may be down or paused at once. */
  downNodesMax: number;
}

/** A plan with every fault off. */
export function calmPlan(): FaultPlan {
  return {
    net: calmNet(),
    disk: calmDisk(),
    nemesis: {
      partition: 0,
      oneWay: 0,
      heal: 0,
      powerCrash: 0,
      processCrash: 0,
      pause: 0,
      reset: 0,
      wallJump: 0,
      diskFull: 0,
    },
    nemesisIntervalMs: 1000,
    downMsMax: 0,
    pauseMsMax: 0,
    clockDriftMax: 0,
    downNodesMax: 0,
  };
}

/**
 * Rolls a swarm fault plan: each fault class is on with probability 1/2, at a random intensity.
 * `downNodesMax` bounds simultaneous crashes so faults stay recoverable.
 */
export function rollPlan(random: SeededRandom, downNodesMax: number): FaultPlan {
  const on = () => random.chance(0.5);
  const level = (max: number) => (on() ? random.float() * max : 0);
  const weight = () => (on() ? 1 + random.int(0, 4) : 0);
  const plan = calmPlan();
  plan.net = {
    latencyMs: 0.05 + random.float() * 2,
    jitterMs: level(5),
    splitProb: level(0.5),
    shortWriteProb: level(0.5),
    shortReadProb: level(0.5),
  };
  const d = plan.disk;
  d.opLatencyMs = 0.01 + random.float() * 0.1;
  d.syncLatencyMs = 0.1 + random.float() * 3;
  d.slowProb = level(0.05);
  d.slowMs = on() ? random.float() * 200 : 0;
  d.readFlipProb = level(0.01);
  d.readErrorProb = level(0.01);
  d.syncFailProb = level(0.02);
  d.crash = {
    keep: 1 + random.int(0, 4),
    drop: 1 + random.int(0, 4),
    torn: weight(),
    corrupt: weight(),
  };
  plan.nemesis = {
    partition: weight(),
    oneWay: weight(),
    heal: 2,
    powerCrash: weight(),
    processCrash: weight(),
    pause: weight(),
    reset: weight(),
    wallJump: weight(),
    diskFull: weight(),
  };
  plan.nemesisIntervalMs = 20 + random.float() * 500;
  plan.downMsMax = 10 + random.float() * 2000;
  plan.pauseMsMax = 10 + random.float() * 1000;
  plan.clockDriftMax = level(0.05);
  plan.downNodesMax = downNodesMax;
  return plan;
}

/** What the nemesis did, for the run report. */
export interface NemesisStats {
  partitions: number;
  oneWays: number;
  heals: number;
  powerCrashes: number;
  processCrashes: number;
  pauses: number;
  resets: number;
  wallJumps: number;
  diskFulls: number;
}

const TAG_NEMESIS = 30;
/** Actions remembered for a run's notes, at most. */
const NEMESIS_LOG_MAX = 500;

/** Injects the plan's faults into a simulation at random times until stopped. */
export class Nemesis {
  /** What the nemesis did and when, for a failing run's report. */
  readonly log: string[] = [];
  readonly stats: NemesisStats = {
    partitions: 0,
    oneWays: 0,
    heals: 0,
    powerCrashes: 0,
    processCrashes: 0,
    pauses: 0,
    resets: 0,
    wallJumps: 0,
    diskFulls: 0,
  };
  readonly #sim: Simulation;
  readonly #plan: FaultPlan;
  readonly #random: SeededRandom;
  readonly #targets: SimNode[];
  #running = false;
  /** The disk-full spell in force per disk; its end timer ends only its own spell. */
  readonly #fullSpell = new Map<SimDisk, number>();
  #spells = 0;

  /** A nemesis acting on `targets` (the nodes it may crash, pause and cut off). */
  constructor(sim: Simulation, plan: FaultPlan, targets: SimNode[]) {
    this.#sim = sim;
    this.#plan = plan;
    this.#random = sim.random.fork("nemesis");
    this.#targets = targets;
  }

  /** Starts acting. */
  start(): void {
    this.#running = true;
    this.#next();
  }

  /** Stops acting; faults already in place stay until `calm`. */
  stop(): void {
    this.#running = false;
  }

  #next(): void {
    if (!this.#running) return;
    const delay = this.#random.float() * 2 * this.#plan.nemesisIntervalMs;
    this.#sim.world.schedule(delay, () => {
      if (!this.#running) return;
      this.#act();
      this.#next();
    }, { tag: TAG_NEMESIS });
  }

  #act(): void {
    const w = this.#plan.nemesis;
    const actions: [number, () => void][] = [
      [w.partition, () => this.#partition()],
      [w.oneWay, () => this.#oneWay()],
      [w.heal, () => this.#heal()],
      [w.powerCrash, () => this.#crash("power")],
      [w.processCrash, () => this.#crash("process")],
      [w.pause, () => this.#pause()],
      [w.reset, () => this.#reset()],
      [w.wallJump, () => this.#wallJump()],
      [w.diskFull, () => this.#diskFull()],
    ];
    const total = actions.reduce((s, [x]) => s + x, 0);
    if (total === 0) return;
    let roll = this.#random.float() * total;
    for (const [x, act] of actions) {
      if ((roll -= x) < 0) {
        act();
        return;
      }
    }
  }

  #hosts(): string[] {
    return this.#sim.nodes.map((n) => n.host);
  }

  #partition(): void {
    const hosts = this.#hosts();
    const a: string[] = [];
    const b: string[] = [];
    for (const h of hosts) (this.#random.chance(0.5) ? a : b).push(h);
    if (a.length === 0 || b.length === 0) return;
    this.#sim.net.partition([a, b]);
    this.stats.partitions++;
    this.#note(`partition ${JSON.stringify([a, b])}`);
  }

  #oneWay(): void {
    const hosts = this.#hosts();
    const from = this.#random.pick(hosts);
    const to = this.#random.pick(hosts);
    if (from === to) return;
    this.#sim.net.block(from, to);
    this.stats.oneWays++;
    this.#note(`one-way ${from} -/-> ${to}`);
  }

  #heal(): void {
    this.#sim.net.heal();
    this.stats.heals++;
    this.#note("heal");
  }

  /** Remembers an action for the run's notes (bounded). */
  #note(what: string): void {
    if (this.log.length < NEMESIS_LOG_MAX) {
      this.log.push(`${this.#sim.world.now.toFixed(1)} ms: nemesis ${what}`);
    }
  }

  #downCount(): number {
    return this.#targets.filter((n) => !n.up || n.paused).length;
  }

  #crash(kind: "power" | "process"): void {
    if (this.#downCount() >= this.#plan.downNodesMax) return;
    const node = this.#random.pick(this.#targets);
    if (!node.up) return;
    const downMs = this.#random.float() * this.#plan.downMsMax;
    this.#sim.crash(node, kind, downMs);
    if (kind === "power") this.stats.powerCrashes++;
    else this.stats.processCrashes++;
    this.#note(`${kind} crash of ${node.name} for ${downMs.toFixed(0)} ms`);
  }

  #pause(): void {
    if (this.#downCount() >= this.#plan.downNodesMax) return;
    const node = this.#random.pick(this.#targets);
    if (!node.up || node.paused) return;
    const token = node.pause();
    this.stats.pauses++;
    this.#note(`pause of ${node.name}`);
    // Ends this pause only: not one a later crash, restart and pause started.
    this.#sim.world.schedule(
      this.#random.float() * this.#plan.pauseMsMax,
      () => node.resume(token),
      { tag: TAG_NEMESIS },
    );
  }

  #reset(): void {
    const conns = this.#sim.net.openConns();
    if (conns.length === 0) return;
    this.#sim.net.resetConn(this.#random.pick(conns));
    this.stats.resets++;
  }

  #wallJump(): void {
    const node = this.#random.pick(this.#targets);
    node.clock.wallOffsetMs += (this.#random.float() - 0.5) * 120_000;
    this.stats.wallJumps++;
  }

  #diskFull(): void {
    const disk = this.#random.pick(this.#targets).disk;
    const spell = ++this.#spells;
    disk.faults.full = true;
    this.#fullSpell.set(disk, spell);
    this.stats.diskFulls++;
    this.#note("disk full");
    this.#sim.world.schedule(this.#random.float() * this.#plan.downMsMax, () => {
      if (this.#fullSpell.get(disk) !== spell) return;
      this.#fullSpell.delete(disk);
      disk.faults.full = false;
    }, { tag: TAG_NEMESIS });
  }
}

/**
 * Ends the safety phase: heals the network, resumes paused nodes, restarts crashed ones and turns
 * every probabilistic fault off, so the liveness phase can demand progress.
 */
export function calm(sim: Simulation, nemesis: Nemesis): void {
  nemesis.stop();
  if (sim.faults instanceof Buggify) sim.faults.calm();
  Object.assign(sim.net.faults, calmNet(), { latencyMs: sim.net.faults.latencyMs });
  sim.net.heal();
  for (const node of sim.nodes) {
    const latencies = {
      opLatencyMs: node.disk.faults.opLatencyMs,
      syncLatencyMs: node.disk.faults.syncLatencyMs,
      capacityBytes: node.disk.faults.capacityBytes,
      crash: node.disk.faults.crash,
    };
    Object.assign(node.disk.faults, calmDisk(), latencies);
    node.resume();
    if (!node.up) node.start();
  }
}

/**
 * A simulation for a broker scenario: a swarm fault plan rolled from the seed (`label` keeps the
 * scenarios' rolls apart), or every fault off; nodes that fail are restarted 100 ms later.
 */
export function brokerSimulation(
  seed: number,
  label: string,
  faults: "swarm" | "calm",
  downNodesMax: number,
): { sim: Simulation; plan: FaultPlan; buggify: Buggify } {
  const plan = faults === "swarm"
    ? rollPlan(new SeededRandom(seed, label), downNodesMax)
    : calmPlan();
  const sim = new Simulation(seed, {
    net: { ...plan.net },
    disk: plan.disk,
    restartAfterExitMs: 100,
  });
  // Fault points fire in the safety phase of swarm runs only.
  const buggify = new Buggify(new SeededRandom(seed, `${label}-buggify`));
  if (faults === "calm") buggify.calm();
  sim.faults = buggify;
  return { sim, plan, buggify };
}

/** Broker hooks for a simulated node: a fatal storage error ends the incarnation (as a process
 * exit would), reports go to `onReport`. */
export function brokerHooks(
  ctl: ProcessControl,
  onReport: (msg: string) => void,
  onInternalError: (msg: string) => void,
): {
  onFatal(reason: string): void;
  onReport(msg: string): void;
  onInternalError(msg: string): void;
} {
  return {
    onFatal(reason) {
      try {
        ctl.fatal(reason);
      } catch {
        // fatal() ends this incarnation by throwing; the caller's own code stops here.
      }
    },
    onReport,
    onInternalError,
  };
}

/** The first line of a multi-line report (an INTERNAL error's message comes with its stack). */
export function firstLine(msg: string): string {
  const end = msg.indexOf("\n");
  return end < 0 ? msg : msg.slice(0, end);
}
