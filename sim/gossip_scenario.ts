// Gossip membership under faults: N simulated nodes run the real gossip layer, each told only
// node-0's address (zero-touch), some joining late, while the nemesis crashes, restarts, pauses and
// partitions them. Safety: views only ever hold real nodes at their real addresses, never an
// incarnation the node did not announce, and a restarted node keeps its id and comes back with a
// higher incarnation. Liveness, counted in gossip rounds once healed: views agree within a bound,
// a crashed node is marked dead within a bound, and a fresh node is known to all within a bound.

import { SeededRandom } from "../src/io/prng.ts";
import {
  Gossip,
  type GossipOptions,
  loadOrCreateNodeId,
  type Member,
  nextIncarnation,
} from "../src/cluster/gossip/mod.ts";
import { ClusterAuthNetwork } from "../src/cluster/cluster_auth.ts";
import { calmDisk } from "./disk.ts";
import { calm, calmPlan, type FaultPlan, Nemesis, rollPlan } from "./faults.ts";
import { type ClockSkew, never, type SimNode } from "./node.ts";
import { type RunResult, runResult } from "./result.ts";
import { Simulation } from "./simulation.ts";

/** Everything that decides a gossip run. */
export interface GossipScenarioOptions {
  seed: number;
  /** Nodes in all; the last one starts only after the healed cluster agreed (the fresh joiner). */
  nodes: number;
  /** The gossip interval: one round, ms. */
  intervalMs: number;
  /** Virtual time of the safety phase (faults on), ms. */
  safetyMs: number;
  /** Virtual time the healed cluster gets for each liveness step, ms. */
  livenessMs: number;
  faults: "swarm" | "calm";
  /** Nodes besides node-0 that start part-way through the safety phase. */
  lateJoiners: number;
  /** 1: one node other than node-0 loses power as the liveness phase begins and stays down. */
  keepDown: number;
  /**
   * 1: the nemesis may also make nodes' wall clocks jump (by up to ±60 s). Off by default while
   * gossip takes a restarted node's incarnation from the wall clock: a clock that jumped back
   * brings the node back with a lower incarnation than its previous run.
   */
  wallJumps: number;
  /** 1: every node holds the cluster secret, and nodes prove it to each other on every connection. */
  secret: number;
}

/** The cluster secret of runs with `secret: 1`. */
export const CLUSTER_SECRET = "gossip scenario cluster secret";

/** Every node's gossip port. */
export const CLUSTER_PORT = 7072;
/** Every node's (advertised) client port. */
export const CLIENT_PORT = 7070;
/** The one address every node is given. */
export const SEED_NODE = "node-0";
/** Where a node keeps its id. */
const DATA_DIR = "data";
/** Fewest and most nodes a run may have. */
export const NODES_MIN = 3;
export const NODES_MAX = 64;

/**
 * Bounds, in gossip rounds (virtual time / intervalMs), measured with bench/gossip_convergence.ts
 * and this scenario's seeds, and set with margin. Agreement after healing, and a fresh node known
 * to all, take an epidemic's c·log2(N) + k rounds: news reaches everyone in O(log N) exchanges.
 * Measured worst: a fresh join 3.8 rounds at N = 15 on a calm network (max/log2 N ≈ 1.0 at every
 * N), 3.6 rounds to agree after healing over 500 swarm seeds. c = 2 doubles the slope; k = 4 covers
 * first contact (a round's jitter, connect, SYN, answer, ACK2).
 */
export const CONVERGE_ROUNDS_PER_LOG2 = 2;
export const CONVERGE_ROUNDS_BASE = 4;
/**
 * Rounds within which every live view marks a crashed node dead. Each observer decides alone once
 * phi passes phiDead (12): 12 · ln 10 ≈ 28 mean heartbeat inter-arrival times of silence, so no
 * epidemic term. Measured: 31–47 rounds on a calm network (N = 3–15); over 300 swarm seeds median
 * 56, worst 66, since silences longer than PAUSE_INTERVALS rounds no longer count as heartbeat
 * intervals (before that fix the worst was 183).
 */
export const DEAD_ROUNDS_MAX = 100;
/** Rounds after the last agreement during which a calm cluster must not suspect a live node. */
export const STABLE_ROUNDS = 30;
/** The checker looks at the views this many times per round. */
const SAMPLES_PER_ROUND = 10;
/** Membership events kept for the notes, at most. */
const EVENT_NOTES_MAX = 300;
/** Reasons listed when the views disagree, at most. */
const GAPS_MAX = 10;
/** Log lines kept per node, at most. */
const LOGS_KEPT = 100;
/** Violations of one kind kept, at most. */
const VIOLATIONS_MAX = 50;

/** Rounds within which a healed cluster of `n` nodes must agree. */
export function convergeRoundsMax(n: number): number {
  return CONVERGE_ROUNDS_PER_LOG2 * Math.log2(n) + CONVERGE_ROUNDS_BASE;
}

/** Derives the options for `seed`, then applies `overrides`. */
export function gossipOptions(
  seed: number,
  overrides: Partial<GossipScenarioOptions> = {},
): GossipScenarioOptions {
  const r = new SeededRandom(seed, "gossip-options");
  // Drawn even when overridden, so an override leaves the other options as the seed had them.
  const rolledNodes = r.int(NODES_MIN, 16);
  const nodes = overrides.nodes ?? rolledNodes;
  const opts: GossipScenarioOptions = {
    seed,
    nodes,
    intervalMs: 200,
    safetyMs: r.int(3_000, 15_000),
    livenessMs: 60_000,
    faults: "swarm",
    lateJoiners: r.int(0, Math.max(1, Math.floor((nodes - 2) / 2)) + 1),
    keepDown: r.chance(0.5) ? 1 : 0,
    wallJumps: 1,
    secret: r.chance(0.2) ? 1 : 0,
    ...overrides,
  };
  if (!(opts.nodes >= NODES_MIN && opts.nodes <= NODES_MAX)) {
    throw new RangeError(`--nodes must be in ${NODES_MIN}..${NODES_MAX}, got ${opts.nodes}`);
  }
  if (opts.intervalMs < 1) {
    throw new RangeError(`--intervalMs must be >= 1, got ${opts.intervalMs}`);
  }
  if (opts.lateJoiners > opts.nodes - 2) {
    throw new RangeError(
      `--lateJoiners must be at most nodes - 2 = ${opts.nodes - 2}, got ${opts.lateJoiners}`,
    );
  }
  if (opts.keepDown > 1) throw new RangeError(`--keepDown must be 0 or 1, got ${opts.keepDown}`);
  if (opts.wallJumps > 1) {
    throw new RangeError(`--wallJumps must be 0 or 1, got ${opts.wallJumps}`);
  }
  if (opts.secret > 1) throw new RangeError(`--secret must be 0 or 1, got ${opts.secret}`);
  return opts;
}

// --- The pure checker ------------------------------------------------------------------------

/** One member as an observer sees it. */
export interface ViewEntry {
  id: string;
  host: string;
  clusterPort: number;
  state: string;
  incarnation: number;
  heartbeat: number;
}

/** One live node's view of the membership. */
export interface NodeView {
  /** The observer's node name (for messages). */
  name: string;
  /** The observer's own id. */
  id: string;
  members: readonly ViewEntry[];
}

/** What is true of a node id, for the safety check. */
export interface NodeTruth {
  name: string;
  host: string;
  clusterPort: number;
  /** The highest incarnation the node itself ever announced. */
  incarnationMax: number;
}

/**
 * Why the views have not converged; empty once they have. Converged means: every live node is
 * "alive" in every live view, no down node is "alive" in any, and — if `strict` — every live view
 * lists the same members in the same states. For a down node, "dead", "left" and not listed at all
 * count as the same state: gossip does not introduce a dead node to a peer that never knew it, and
 * forgets it after a while, so "not a member" has three spellings.
 */
export function convergenceGaps(
  views: readonly NodeView[],
  downIds: ReadonlySet<string>,
  opts: { strict: boolean; nameOf?: (id: string) => string },
): string[] {
  const nameOf = opts.nameOf ?? ((id: string) => id);
  const gaps: string[] = [];
  const add = (s: string) => {
    if (gaps.length < GAPS_MAX) gaps.push(s);
  };
  const gone = (id: string, state: string) =>
    downIds.has(id) && (state === "dead" || state === "left");
  const maps = views.map((v) =>
    new Map(v.members.filter((m) => !gone(m.id, m.state)).map((m) => [m.id, m.state]))
  );
  views.forEach((v, i) => {
    const seen = maps[i] as Map<string, string>;
    for (const u of views) {
      const state = seen.get(u.id);
      if (state === undefined) add(`${v.name} does not know ${u.name}`);
      else if (state !== "alive") add(`${v.name} sees live ${u.name} as ${state}`);
    }
    for (const d of downIds) {
      if (seen.get(d) === "alive") add(`${v.name} sees down ${nameOf(d)} as alive`);
    }
  });
  if (opts.strict && views.length > 1) {
    const first = maps[0] as Map<string, string>;
    const firstName = (views[0] as NodeView).name;
    for (let i = 1; i < views.length; i++) {
      const other = maps[i] as Map<string, string>;
      const ids = new Set([...first.keys(), ...other.keys()]);
      for (const id of ids) {
        const absent = downIds.has(id) ? "dead or absent" : "absent";
        const a = first.get(id) ?? absent;
        const b = other.get(id) ?? absent;
        if (a !== b) {
          add(
            `${firstName} and ${(views[i] as NodeView).name} disagree on ${
              nameOf(id)
            }: ${a} vs ${b}`,
          );
        }
      }
    }
  }
  return gaps;
}

/** True if every view in `views` holds `id` as "alive". */
export function knownAliveByAll(views: readonly NodeView[], id: string): boolean {
  return views.every((v) => v.members.some((m) => m.id === id && m.state === "alive"));
}

/**
 * Safety of one set of views: each holds itself once, alive; every member is a real node at its
 * real address; no member carries an incarnation higher than the node itself ever announced.
 */
export function viewSafetyViolations(
  views: readonly NodeView[],
  truth: ReadonlyMap<string, NodeTruth>,
): string[] {
  const out: string[] = [];
  for (const v of views) {
    const self = v.members.filter((m) => m.id === v.id);
    if (self.length !== 1) out.push(`${v.name} lists itself ${self.length} times`);
    else if ((self[0] as ViewEntry).state !== "alive") {
      out.push(`${v.name} sees itself as ${(self[0] as ViewEntry).state}`);
    }
    const ids = new Set<string>();
    for (const m of v.members) {
      if (ids.has(m.id)) out.push(`${v.name} lists ${m.id} twice`);
      ids.add(m.id);
      const t = truth.get(m.id);
      if (t === undefined) {
        out.push(`${v.name} lists ${m.id} at ${m.host}:${m.clusterPort}, which is no node's id`);
        continue;
      }
      if (m.host !== t.host || m.clusterPort !== t.clusterPort) {
        out.push(
          `${v.name} lists ${t.name} at ${m.host}:${m.clusterPort}, not ${t.host}:${t.clusterPort}`,
        );
      }
      if (m.incarnation > t.incarnationMax) {
        out.push(
          `${v.name} holds incarnation ${m.incarnation} of ${t.name}, which announced at most ${t.incarnationMax}`,
        );
      }
    }
  }
  return out;
}

/**
 * Members whose (incarnation, heartbeat) went backwards between two looks at one observer's view:
 * an observer may learn newer news, never older. `prev` is updated to `members`.
 */
export function regressions(
  prev: Map<string, [number, number]>,
  members: readonly ViewEntry[],
): ViewEntry[] {
  const out: ViewEntry[] = [];
  const next = new Map<string, [number, number]>();
  for (const m of members) {
    const before = prev.get(m.id);
    if (
      before !== undefined &&
      (m.incarnation < before[0] || (m.incarnation === before[0] && m.heartbeat < before[1]))
    ) {
      out.push(m);
    }
    next.set(m.id, [m.incarnation, m.heartbeat]);
  }
  prev.clear();
  for (const [k, v] of next) prev.set(k, v);
  return out;
}

// --- The cluster under test ------------------------------------------------------------------

/** Options for a `GossipCluster`. */
export interface GossipClusterOptions {
  intervalMs: number;
  /** The cluster secret every node holds unless told otherwise; omitted: none. */
  secret?: string;
  /** More gossip options for every node. */
  gossip?: Partial<
    Omit<
      GossipOptions,
      "nodeId" | "host" | "bindHost" | "clusterPort" | "clientPort" | "seeds" | "intervalMs"
    >
  >;
}

/** Options for `GossipCluster.add`. */
export interface AddGossipNodeOptions {
  /** Start now (default true). */
  start?: boolean;
  skew?: ClockSkew;
  /** Run with this id instead of the one on the node's disk: an impostor. */
  nodeId?: string;
  /**
   * The cluster secret this node holds instead of the cluster's; null: none. A node given one
   * other than the cluster's is a rogue, like an impostor: the checker does not count it as a node.
   */
  secret?: string | null;
}

/** One simulated node and what the checker knows of it. */
export interface GossipNode {
  name: string;
  sim: SimNode;
  /** Its id once its first incarnation loaded it. */
  id: string | null;
  /** The running (or last) incarnation's gossip, null before the first start finished. */
  gossip: Gossip | null;
  /** The simulated incarnation `gossip` belongs to. */
  simIncarnation: number;
  /** Every Gossip this node ever started, oldest first. */
  all: Gossip[];
  /** An impostor or a rogue: not one of the cluster's nodes. */
  impostor: boolean;
  /** What it logged about refused peers (and gossip's other reports), oldest first. */
  logs: string[];
  /** Its ClusterAuthNetwork, when it holds a secret (the current incarnation's). */
  auth: ClusterAuthNetwork | null;
}

/** Counters for the run's stats. */
export interface GossipClusterCounters {
  restarts: number;
  deadMarks: number;
  suspectMarks: number;
  joins: number;
}

/** N simulated nodes running the real gossip layer, with the checker's bookkeeping. */
export class GossipCluster {
  readonly sim: Simulation;
  readonly intervalMs: number;
  readonly nodes: GossipNode[] = [];
  readonly violations: string[] = [];
  /** Timed notes: membership events and checker findings. */
  readonly notes: { t: number; s: string }[] = [];
  readonly counters: GossipClusterCounters = {
    restarts: 0,
    deadMarks: 0,
    suspectMarks: 0,
    joins: 0,
  };
  /** Off for tests that plant an impostor, whose claims the safety check would flag. */
  safetyChecks = true;
  readonly #gossip: GossipClusterOptions["gossip"];
  readonly #secret: string | null;
  readonly #keptDown = new Set<string>();
  readonly #progress = new Map<Gossip, Map<string, [number, number]>>();
  readonly #violationKinds = new Map<string, number>();
  readonly #viewCache = new Map<Gossip, NodeView>();
  #viewsStamp = -1;
  #safetyCheckedMs = -Infinity;

  constructor(sim: Simulation, opts: GossipClusterOptions) {
    this.sim = sim;
    this.intervalMs = opts.intervalMs;
    this.#gossip = opts.gossip;
    this.#secret = opts.secret ?? null;
  }

  /** Adds a node that gossips with only the seed's address. */
  add(name: string, opts: AddGossipNodeOptions = {}): GossipNode {
    const node: GossipNode = {
      name,
      sim: undefined as unknown as SimNode,
      id: null,
      gossip: null,
      simIncarnation: -1,
      all: [],
      impostor: opts.nodeId !== undefined ||
        (opts.secret !== undefined && opts.secret !== this.#secret),
      logs: [],
      auth: null,
    };
    const secret = opts.secret === undefined ? this.#secret : opts.secret;
    const log = (level: string, msg: string) => {
      if (node.logs.length < LOGS_KEPT) node.logs.push(`${level}: ${msg}`);
    };
    node.sim = this.sim.addNode({
      name,
      start: opts.start ?? true,
      skew: opts.skew,
      main: async (env, ctl) => {
        if (this.#keptDown.has(name)) {
          // A pending restart of the nemesis fired: this node is to stay down.
          this.sim.world.schedule(0, () => node.sim.crash("power"));
          return never();
        }
        const id = opts.nodeId ?? await loadOrCreateNodeId(env, DATA_DIR);
        if (node.id !== null && id !== node.id) {
          this.#violation("id", `${name} restarted with id ${id}, not its own ${node.id}`);
        }
        node.id ??= id;
        node.auth = secret === null
          ? null
          : new ClusterAuthNetwork(env, { nodeId: id, secret, onLog: log });
        const g = await Gossip.start(node.auth === null ? env : { ...env, net: node.auth }, {
          onLog: log,
          ...this.#gossip,
          nodeId: id,
          host: name,
          bindHost: "0.0.0.0",
          clusterPort: CLUSTER_PORT,
          clientPort: CLIENT_PORT,
          seeds: [`${SEED_NODE}:${CLUSTER_PORT}`],
          intervalMs: this.intervalMs,
          // An impostor (opts.nodeId) has no history of its own to outrank; a real node persists it.
          incarnation: opts.nodeId === undefined ? await nextIncarnation(env, DATA_DIR) : undefined,
        });
        const before = node.gossip?.member(node.gossip.id)?.incarnation;
        const now = g.member(g.id)?.incarnation;
        if (before !== undefined && !(now !== undefined && now > before)) {
          this.#violation(
            "incarnation",
            `${name} restarted with incarnation ${now}, not above its previous ${before}`,
          );
        }
        if (node.all.length > 0) this.counters.restarts++;
        node.gossip = g;
        node.simIncarnation = ctl.incarnation;
        node.all.push(g);
        g.onEvent((ev) => this.#onEvent(name, ev.kind, ev.member, ev.previous));
        return never();
      },
    });
    this.nodes.push(node);
    return node;
  }

  /** The node called `name`. */
  node(name: string): GossipNode {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`No gossip node called ${name}`);
    return n;
  }

  /** The node's name for an id (the id itself if no node has it). */
  nameOf(id: string): string {
    return this.nodes.find((n) => n.id === id && !n.impostor)?.name ?? id;
  }

  /** Cuts `name`'s power and keeps it down, even if a restart was pending. */
  keepDown(name: string): void {
    this.#keptDown.add(name);
    this.node(name).sim.crash("power");
  }

  /** Nodes whose current incarnation runs gossip and is not paused. */
  live(): GossipNode[] {
    return this.nodes.filter((n) =>
      n.gossip !== null && n.sim.up && !n.sim.paused && n.simIncarnation === n.sim.incarnation
    );
  }

  /** Nodes that are up but whose gossip has not started yet. */
  starting(): GossipNode[] {
    return this.nodes.filter((n) => n.sim.up && n.simIncarnation !== n.sim.incarnation);
  }

  /** Ids of genuine nodes whose process is down. */
  downIds(): Set<string> {
    return new Set(
      this.nodes.filter((n) => !n.impostor && n.id !== null && !n.sim.up).map((n) => n.id!),
    );
  }

  /** The views of the live nodes (impostors excluded unless asked). */
  views(opts: { impostors?: boolean } = {}): NodeView[] {
    return this.live().filter((n) => opts.impostors === true || !n.impostor).map((n) =>
      this.#viewOf(n)
    );
  }

  /** `n`'s view, computed once per fired event however often the checker asks. */
  #viewOf(n: GossipNode): NodeView {
    const g = n.gossip as Gossip;
    const stamp = this.sim.world.eventsFired;
    if (this.#viewsStamp !== stamp) {
      this.#viewsStamp = stamp;
      this.#viewCache.clear();
    }
    let v = this.#viewCache.get(g);
    if (v === undefined) this.#viewCache.set(g, v = viewOf(n.name, g));
    return v;
  }

  /** Why the cluster has not converged (empty once it has); nodes still starting count. */
  gaps(strict: boolean): string[] {
    const starting = this.starting().filter((n) => !n.impostor).map((n) => `${n.name} is starting`);
    return [
      ...starting,
      ...convergenceGaps(this.views(), this.downIds(), {
        strict,
        nameOf: (id) => this.nameOf(id),
      }),
    ];
  }

  /** True once every live node holds `name` as alive. */
  knownToAll(name: string): boolean {
    const id = this.node(name).id;
    return id !== null && this.live().some((n) => n.name === name) &&
      knownAliveByAll(this.views(), id);
  }

  /** True once every live view has `id` dead or forgotten. */
  markedDeadByAll(id: string): boolean {
    return this.views().every((v) => {
      const m = v.members.find((x) => x.id === id);
      return m === undefined || m.state === "dead" || m.state === "left";
    });
  }

  /** Checks the safety properties on every running view (paused ones too: their state stands). */
  checkSafety(): void {
    if (!this.safetyChecks) return;
    this.#safetyCheckedMs = this.sim.world.now;
    const truth = new Map<string, NodeTruth>();
    for (const n of this.nodes) {
      if (n.impostor || n.id === null) continue;
      let incarnationMax = -Infinity;
      for (const g of n.all) incarnationMax = Math.max(incarnationMax, selfIncarnation(g));
      truth.set(n.id, { name: n.name, host: n.name, clusterPort: CLUSTER_PORT, incarnationMax });
    }
    const running = this.nodes.filter((n) =>
      !n.impostor && n.gossip !== null && n.sim.up && n.simIncarnation === n.sim.incarnation
    );
    const views = running.map((n) => this.#viewOf(n));
    for (const v of viewSafetyViolations(views, truth)) this.#violation("view", v);
    running.forEach((n, i) => {
      const g = n.gossip as Gossip;
      let prev = this.#progress.get(g);
      if (prev === undefined) this.#progress.set(g, prev = new Map());
      for (const m of regressions(prev, (views[i] as NodeView).members)) {
        this.#violation(
          "regression",
          `${n.name}'s view of ${
            this.nameOf(m.id)
          } went back to incarnation ${m.incarnation} heartbeat ${m.heartbeat}`,
        );
      }
    });
  }

  /** Runs one checker sample period of virtual time. */
  async step(): Promise<void> {
    const stop = await this.sim.world.run({
      untilMs: this.sim.world.now + this.intervalMs / SAMPLES_PER_ROUND,
    });
    if (stop === "idle") this.#violation("deadlock", "no event left: the cluster went silent");
  }

  /**
   * Runs until `done` holds or `budgetMs` passed, asking `done` SAMPLES_PER_ROUND times a round
   * and checking safety once a round. Returns the rounds it took, or null if the budget ran out.
   */
  async runUntil(done: () => boolean, budgetMs: number): Promise<number | null> {
    const t0 = this.sim.world.now;
    const end = t0 + budgetMs;
    for (;;) {
      if (this.sim.world.now - this.#safetyCheckedMs >= this.intervalMs) this.checkSafety();
      if (done()) return (this.sim.world.now - t0) / this.intervalMs;
      if (this.sim.world.now >= end) return null;
      await this.step();
    }
  }

  /** Bytes and exchanges the live nodes' gossip has counted so far. */
  traffic(): { bytesSent: number; exchanges: number } {
    let bytesSent = 0;
    let exchanges = 0;
    for (const n of this.live()) {
      bytesSent += n.gossip!.stats.bytesSent;
      exchanges += n.gossip!.stats.exchanges;
    }
    return { bytesSent, exchanges };
  }

  /** A counter summed over every Gossip any node ever ran. */
  total(key: keyof Gossip["stats"]): number {
    let sum = 0;
    for (const n of this.nodes) for (const g of n.all) sum += g.stats[key];
    return sum;
  }

  /** Records a violation, at most VIOLATIONS_MAX of each kind. */
  #violation(kind: string, what: string): void {
    const k = this.#violationKinds.get(kind) ?? 0;
    this.#violationKinds.set(kind, k + 1);
    if (k >= VIOLATIONS_MAX) return;
    const s = `${this.sim.world.now.toFixed(1)} ms: ${what}`;
    this.violations.push(s);
    this.notes.push({ t: this.sim.world.now, s: `violation: ${s}` });
  }

  /** Public door for scenario-level findings. */
  violation(kind: string, what: string): void {
    this.#violation(kind, what);
  }

  #onEvent(observer: string, kind: string, m: Member, previous: string | null): void {
    if (m.state === "dead" && previous !== "dead") this.counters.deadMarks++;
    if (m.state === "suspect" && previous !== "suspect") this.counters.suspectMarks++;
    if (kind === "join") this.counters.joins++;
    if (this.notes.length >= EVENT_NOTES_MAX) return;
    const t = this.sim.world.now;
    this.notes.push({
      t,
      s: `${t.toFixed(1)} ms: ${observer} sees ${this.nameOf(m.id)} ${kind} ${
        previous ?? "-"
      }->${m.state} (incarnation ${m.incarnation})`,
    });
  }
}

function selfIncarnation(g: Gossip): number {
  return g.member(g.id)?.incarnation ?? -Infinity;
}

function viewOf(name: string, g: Gossip): NodeView {
  return {
    name,
    id: g.id,
    members: g.members().map((m) => ({
      id: m.id,
      host: m.host,
      clusterPort: m.clusterPort,
      state: m.state,
      incarnation: m.incarnation,
      heartbeat: m.heartbeat,
    })),
  };
}

// --- The scenario ----------------------------------------------------------------------------

/** Runs the gossip scenario and checks it. */
export async function runGossip(opts: GossipScenarioOptions): Promise<RunResult> {
  const planRandom = new SeededRandom(opts.seed, "gossip-faults");
  const downNodesMax = Math.max(1, Math.floor(opts.nodes / 3));
  const plan: FaultPlan = opts.faults === "swarm" ? rollPlan(planRandom, downNodesMax) : calmPlan();
  // Membership needs no disk faults beyond what a crash does to unsynced writes.
  plan.disk = { ...calmDisk(), crash: plan.disk.crash };
  plan.nemesis.diskFull = 0;
  if (opts.wallJumps === 0) plan.nemesis.wallJump = 0;
  const sim = new Simulation(opts.seed, {
    net: { ...plan.net },
    disk: plan.disk,
    restartAfterExitMs: 100,
  });
  const cluster = new GossipCluster(sim, {
    intervalMs: opts.intervalMs,
    ...(opts.secret === 1 ? { secret: CLUSTER_SECRET } : {}),
  });
  const r = new SeededRandom(opts.seed, "gossip-schedule");
  const skew = (): ClockSkew => ({
    drift: (r.float() * 2 - 1) * plan.clockDriftMax,
    wallOffsetMs: 0,
  });
  const freshName = `node-${opts.nodes - 1}`;
  // Node 0 and the first ones start at once; late joiners somewhere in the first 80% of the
  // safety phase; the last node only once the healed cluster agreed.
  const late = new Set<number>();
  while (late.size < opts.lateJoiners) late.add(r.int(1, opts.nodes - 1));
  const lateStarts: { name: string; atMs: number }[] = [];
  for (let i = 0; i < opts.nodes - 1; i++) {
    const name = `node-${i}`;
    const n = cluster.add(name, { start: !late.has(i), skew: skew() });
    if (late.has(i)) {
      const atMs = r.float() * 0.8 * opts.safetyMs;
      lateStarts.push({ name, atMs });
      sim.world.schedule(atMs, () => {
        if (n.sim.incarnation === -1) n.sim.start();
      });
    }
  }
  const victimPick = r.float();

  const nemesis = new Nemesis(sim, plan, cluster.nodes.map((n) => n.sim));
  nemesis.start();
  await cluster.runUntil(() => false, opts.safetyMs);
  const safetyEndMs = sim.world.now;

  // Liveness: heal everything, maybe keep one node down, and count rounds.
  calm(sim, nemesis);
  let victim: GossipNode | null = null;
  if (opts.keepDown === 1) {
    const candidates = cluster.nodes.filter((n) => n.name !== SEED_NODE && n.id !== null);
    if (candidates.length > 0) {
      victim = candidates[Math.floor(victimPick * candidates.length)] as GossipNode;
      cluster.keepDown(victim.name);
    }
  }
  const n = opts.nodes;
  const victimId = victim?.id ?? null;
  // Dead detection counts only if some live view still held the victim as a member.
  const victimKnown = victimId !== null && !cluster.markedDeadByAll(victimId);
  let convergeRounds: number | null = null;
  let deadRounds: number | null = null;
  const settled = await cluster.runUntil(() => {
    const rounds = (sim.world.now - safetyEndMs) / opts.intervalMs;
    const agreed = cluster.gaps(true).length === 0;
    if (agreed && convergeRounds === null) convergeRounds = rounds;
    const dead = victimId === null || cluster.markedDeadByAll(victimId);
    if (victimKnown && dead && deadRounds === null) deadRounds = rounds;
    return agreed && dead;
  }, opts.livenessMs);
  // With a node down, agreeing means every view stopped holding it alive: a failure detector's
  // time, not an epidemic's.
  const convergeBound = victim === null ? convergeRoundsMax(n) : DEAD_ROUNDS_MAX;
  if (settled === null) {
    cluster.violation(
      "liveness",
      `within ${opts.livenessMs} ms of healing, views did not agree${
        victim === null ? "" : ` with ${victim.name} dead`
      }: ${cluster.gaps(true).join("; ") || `${victim?.name} is not dead in every view`}`,
    );
  }
  if (convergeRounds !== null && convergeRounds > convergeBound) {
    cluster.violation(
      "bound",
      `views agreed only after ${(convergeRounds as number).toFixed(1)} rounds, bound ${
        convergeBound.toFixed(1)
      }`,
    );
  }
  if (deadRounds !== null && deadRounds > DEAD_ROUNDS_MAX) {
    cluster.violation(
      "bound",
      `${victim!.name} was marked dead by all only after ${
        (deadRounds as number).toFixed(1)
      } rounds, bound ${DEAD_ROUNDS_MAX}`,
    );
  }

  // Zero-touch: a fresh node given only the seed's address is known to all within the bound.
  let joinRounds: number | null = null;
  let joinConvergeRounds: number | null = null;
  if (settled !== null) {
    cluster.add(freshName, { skew: skew() });
    const t0 = sim.world.now;
    joinConvergeRounds = await cluster.runUntil(() => {
      if (joinRounds === null && cluster.knownToAll(freshName)) {
        joinRounds = (sim.world.now - t0) / opts.intervalMs;
      }
      return joinRounds !== null && cluster.gaps(true).length === 0;
    }, opts.livenessMs);
    if (joinConvergeRounds === null) {
      cluster.violation(
        "liveness",
        `after ${freshName} joined, views did not agree within ${opts.livenessMs} ms: ${
          cluster.gaps(true).join("; ")
        }`,
      );
    } else {
      for (
        const [what, rounds] of [["known to all", joinRounds], [
          "agreed",
          joinConvergeRounds,
        ]] as const
      ) {
        if (rounds !== null && rounds > convergeRoundsMax(n)) {
          cluster.violation(
            "bound",
            `${freshName} ${what} only after ${rounds.toFixed(1)} rounds, bound ${
              convergeRoundsMax(n).toFixed(1)
            }`,
          );
        }
      }
    }
  }

  // A calm cluster stays agreed: no live node is suspected, nothing down comes back alive.
  const stable = cluster.live().length;
  const before = cluster.traffic();
  const stableFrom = sim.world.now;
  let flaps = 0;
  if (cluster.violations.length === 0) {
    await cluster.runUntil(() => {
      const gaps = cluster.gaps(false);
      if (gaps.length > 0 && flaps++ === 0) {
        cluster.violation("stability", `a calm, agreed cluster lost agreement: ${gaps.join("; ")}`);
      }
      return false;
    }, STABLE_ROUNDS * opts.intervalMs);
  }
  const after = cluster.traffic();
  const stableSecs = (sim.world.now - stableFrom) / 1000;
  const perNodeSec = (x: number) => stableSecs > 0 && stable > 0 ? x / stable / stableSecs : 0;

  // Nothing here should make a node's program throw: not a fault, not a peer, not a restart.
  for (const e of sim.exits) {
    if (e.reason.startsWith("died")) {
      cluster.violation("exit", `${e.node} died at ${e.timeMs.toFixed(1)} ms: ${e.reason}`);
    }
  }
  const violations = cluster.violations;
  return runResult(sim, {
    scenario: "gossip",
    seed: opts.seed,
    options: opts,
    plan,
    violations,
    stats: {
      nodes: n,
      convergeRounds: convergeRounds ?? -1,
      convergeRoundsBound: convergeBound,
      deadRounds: deadRounds ?? -1,
      joinRounds: joinRounds ?? -1,
      joinConvergeRounds: joinConvergeRounds ?? -1,
      joinKnownInBound: joinRounds !== null && joinRounds <= convergeRoundsMax(n) ? 1 : 0,
      victimMarkedDead: deadRounds !== null ? 1 : 0,
      victimKnown: victimKnown ? 1 : 0,
      lateJoiners: lateStarts.length,
      bytesSentPerNodePerSec: perNodeSec(after.bytesSent - before.bytesSent),
      exchangesPerNodePerSec: perNodeSec(after.exchanges - before.exchanges),
      restarts: cluster.counters.restarts,
      deadMarks: cluster.counters.deadMarks,
      suspectMarks: cluster.counters.suspectMarks,
      exchanges: cluster.total("exchanges"),
      failedExchanges: cluster.total("failedExchanges"),
      refutations: cluster.total("refutations"),
      malformed: cluster.total("malformed"),
      ...nemesis.stats,
      crashes: nemesis.stats.powerCrashes + nemesis.stats.processCrashes,
      netResets: sim.net.stats.resets,
      netHeldSegments: sim.net.stats.heldSegments,
      programExits: sim.exits.length,
    },
    notes: [
      ...sim.exits.map((e) => ({
        t: e.timeMs,
        s: `${e.timeMs.toFixed(1)} ms: ${e.node} ${e.reason}`,
      })),
      ...lateStarts.map((l) => ({
        t: l.atMs,
        s: `${l.atMs.toFixed(1)} ms: ${l.name} starts late`,
      })),
      ...nemesis.log.map((s) => ({ t: Number(s.split(" ")[0]), s })),
      {
        t: safetyEndMs,
        s: `${safetyEndMs.toFixed(1)} ms: healed${victim ? `; ${victim.name} kept down` : ""}`,
      },
      ...cluster.notes,
    ].sort((a, b) => a.t - b.t).map((x) => x.s),
  });
}
