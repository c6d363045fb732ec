// Consumer groups under faults: one broker, or a cluster of three replicating brokers (a disk
// topic with several partitions, fsync always, replicated to every broker), an idempotent
// producer, and group members that join, leave, crash, restart (some as static members), pause
// and get cut off, while an auditor keeps reading the group's committed offsets. In a cluster the
// metadata group's leader coordinates the group and every client talks to whichever broker it
// reaches, so the coordinator moves each time the nemesis deposes a leader.
// All of it is the real broker and client code on the simulated network and disks.
//
// The checkers (DESIGN.md §9, invariants 4 and 7, plus delivery):
// - a coordinator never grants a partition while another member owns it, and each partition has
//   at most one owner per generation, across every coordinator of the run (in a cluster,
//   generations name one coordinator's term: two coordinators handing out the same one is a
//   violation);
// - every commit a coordinator accepts comes from the partition's owner in its current generation
//   (stale generations and zombies are refused);
// - committed offsets, as readers see them, never decrease, across broker crashes and
//   coordinator failovers too;
// - every acknowledged message is processed by some member (at least once), and everything
//   below a final committed offset was processed;
// - each produced message is stored once, at its acknowledged offset, despite retries.
// - misbehaving clients (sim/group_rogue.ts) — stale-generation, backwards, replayed and unowned
//   commits, heartbeats built before their last answer, replayed and out-of-order producer
//   sequences — are refused with the right error code, never taken as valid.

import { SeededRandom } from "../src/io/prng.ts";
import type { Env } from "../src/io/types.ts";
import { type Client, connectWith } from "../src/client/client.ts";
import type { GroupConsumer } from "../src/client/group_consumer.ts";
import type { ReceivedMessage } from "../src/client/consumer.ts";
import type { OffsetCommitRequest } from "../src/protocol/messages.ts";
import { ErrorCode, GregorError } from "../src/protocol/errors.ts";
import { loadClusterModules, type RunningNode, startNode } from "../src/node.ts";
import { GENERATIONS_PER_TERM } from "../src/cluster/group_offsets.ts";
import type { ClusterNode } from "../src/cluster/cluster.ts";
import { brokerHooks, brokerSimulation, calm, firstLine, Nemesis } from "./faults.ts";
import { type RunResult, runResult } from "./result.ts";
import type { Simulation } from "./simulation.ts";
import { connectRetrying } from "./pubsub_scenario.ts";
import type { SimNode } from "./node.ts";
import { RaftChecker } from "./raft_checker.ts";
import { partitionEntrySkip, RAFT_LEASES } from "./cluster_scenario.ts";
import type { RaftGroup } from "../src/cluster/raft/shell.ts";
import { type RogueContext, rogueMember, rogueProducer, rogueStats } from "./group_rogue.ts";

/** Everything that decides a group run. */
export interface GroupOptions {
  seed: number;
  members: number;
  /** How many of the members use a static instance id. */
  staticMembers: number;
  partitions: number;
  messages: number;
  sessionTimeoutMs: number;
  safetyMs: number;
  livenessMs: number;
  faults: "swarm" | "calm";
  /** 1: the broker's commit fence is removed (a planted bug the checkers must catch). */
  bugNoFence: number;
  /**
   * 1: in a cluster, every coordinator numbers generations from 0 again, as one that ignored its
   * term would (a planted bug the checkers must catch).
   */
  bugReuseGenerations: number;
  /**
   * Brokers: 1 (offsets on the broker's own disk) or 3 (a replicating cluster; the metadata
   * group's leader coordinates the group and its offsets are replicated metadata).
   */
  nodes: number;
  /** 1: a misbehaving member runs through the safety phase (sim/group_rogue.ts). */
  rogueMember: number;
  /** 1: a misbehaving idempotent producer runs through the safety phase (single broker only). */
  rogueProducer: number;
}

const PORT = 7070;
const CLUSTER_PORT = 7946;
/** Short Raft timings (a coarser tick than the cluster scenario's: one tick per group and node is
 * a large share of a run's events), and metadata snapshots often enough that offsets also travel
 * in snapshots (more often costs much time: offsets are committed several times a second). */
const RAFT = { tickMs: 40, electionTimeoutMs: 400, heartbeatIntervalMs: 120, metaCompactEvery: 20 };
const TOPIC = "work";
const GROUP = "workers";

/**
 * Derives the options for `seed`, then applies `overrides`. A single broker is the default; a
 * cluster (`nodes: 3`) rolls a smaller topic and workload from its own stream, as three brokers
 * replicating every partition cost several times more simulated work.
 */
export function groupOptions(seed: number, overrides: Partial<GroupOptions> = {}): GroupOptions {
  const r = new SeededRandom(seed, "group-options");
  const members = r.int(2, 5);
  const derived: GroupOptions = {
    seed,
    members,
    staticMembers: r.int(0, members + 1),
    partitions: r.int(1, 7),
    messages: r.int(60, 300),
    sessionTimeoutMs: r.int(1_000, 4_000),
    safetyMs: r.int(2_000, 8_000),
    livenessMs: 60_000,
    faults: "swarm",
    bugNoFence: 0,
    bugReuseGenerations: 0,
    nodes: overrides.nodes ?? 1,
    rogueMember: 0,
    rogueProducer: 0,
  };
  // From a stream of their own, so the rest of a seed's options stay what they were.
  const rogue = new SeededRandom(seed, "group-rogue-options");
  derived.rogueMember = rogue.float() < 0.6 ? 1 : 0;
  derived.rogueProducer = derived.nodes === 1 && rogue.float() < 0.6 ? 1 : 0;
  if (derived.nodes > 1) {
    const c = new SeededRandom(seed, "group-cluster-options");
    derived.partitions = c.int(1, 5);
    derived.messages = c.int(40, 160);
    derived.safetyMs = c.int(2_000, 5_000);
  }
  return { ...derived, ...overrides };
}

interface Processed {
  member: string;
  partition: number;
  offset: number;
  value: string;
}

/**
 * A coordinator as the checker mirrors it: one broker incarnation, and in a cluster one stretch
 * of it between two coordinator restarts (taking over or giving up the metadata leadership).
 */
interface Mirror {
  /** "broker#3" for a single broker; "broker-1#2/term 7" in a cluster. */
  name: string;
  generation: number;
  owner: Map<number, string>;
}

/** Runs the group scenario and checks it. */
export async function runGroups(opts: GroupOptions): Promise<RunResult> {
  if (opts.nodes !== 1 && opts.nodes !== 3) {
    throw new Error(`--nodes must be 1 or 3 for scenario groups, got ${opts.nodes}`);
  }
  // Loaded before the simulation starts: the host's module loader is outside its replay.
  if (opts.nodes > 1) await loadClusterModules();
  const clustered = opts.nodes > 1;
  const { sim, plan, buggify } = brokerSimulation(opts.seed, "group-faults", opts.faults, 2);
  const violations: string[] = [];
  const stats = {
    generations: 0,
    grants: 0,
    revocations: 0,
    expiries: 0,
    fencedStatic: 0,
    leaves: 0,
    commitsAccepted: 0,
    commitsRejectedStale: 0,
    commitsRejectedUnknown: 0,
    memberRejoins: 0,
    auditorReads: 0,
    /** A broker started coordinating in a term (took over the metadata leadership). */
    coordinatorTerms: 0,
    /** A coordinator took over from an earlier one: every term after the run's first. */
    coordinatorFailovers: 0,
    /** ... on another broker than the one that coordinated last. */
    coordinatorMoves: 0,
    /** A coordinator gave the role up (deposed, or stepped down) without crashing. */
    coordinatorStepDowns: 0,
    ...rogueStats(),
  };
  const reports: string[] = [];
  /** Partition@generation → members granted it then (in a cluster, by any coordinator). */
  const grants = new Map<string, Set<string>>();
  /** In a cluster: generation → the coordinator that announced it. */
  const generationOf = new Map<number, string>();
  let lastCoordinator: string | null = null;
  /** Set when the final power loss begins: the coordinator changes it forces are not counted. */
  let verifying = false;
  const running = new Map<string, RunningNode>();
  const raft = new RaftChecker(partitionEntrySkip);
  raft.watchLeases({
    nowMs: () => sim.world.now,
    leaseMs: RAFT_LEASES * RAFT.electionTimeoutMs,
    paused: (g) => {
      for (const [name, node] of running) {
        if (node.cluster?.nodeId === g.node.id) return brokers[brokerNames.indexOf(name)]!.paused;
      }
      return false;
    },
  });
  /** Every incarnation's cluster role, for counters summed over the run. */
  const clusterNodes: ClusterNode[] = [];

  const brokerNames = clustered
    ? Array.from({ length: opts.nodes }, (_, i) => `broker-${i}`)
    : ["broker"];
  const brokers = brokerNames.map((name, i) => {
    let incarnation = 0;
    return sim.addNode({
      name,
      main: async (env, ctl) => {
        // Until this incarnation's node runs, the previous one's (frozen) state must not count:
        // a broker that dies while starting would otherwise leave its last Raft groups checked.
        running.delete(name);
        const node = await startNode(env, {
          host: "0.0.0.0",
          port: PORT,
          broker: { dataDir: "data", segmentBytes: 16_000, groupsTickMs: 100 },
          ...(clustered
            ? {
              cluster: {
                port: CLUSTER_PORT,
                advertiseHost: name,
                seeds: i === 0 ? [] : [`${brokerNames[0]}:${CLUSTER_PORT}`],
                intervalMs: 100,
                replicate: true,
                raft: {
                  ...RAFT,
                  onRaftGroup: (g) => {
                    raft.attach(g);
                    g.faults = buggify;
                  },
                },
              },
            }
            : {}),
          hooks: brokerHooks(
            ctl,
            (msg) => void reports.push(msg),
            (msg) => void violations.push(`${name}: ${firstLine(msg)}`),
          ),
        });
        running.set(name, node);
        if (node.cluster !== null) clusterNodes.push(node.cluster);
        const inc = ++incarnation;
        const mirrorOf = (term: number | null): Mirror => ({
          name: term === null ? `${name}#${inc}` : `${name}#${inc}/term ${term}`,
          generation: 0,
          owner: new Map(),
        });
        let m = mirrorOf(clustered ? 0 : null);
        const groups = node.broker.groups;
        if (clustered) {
          // Each coordinator restart begins a new coordinator: mirror it afresh.
          const coordinator = groups.coordinator;
          const restart = coordinator.restart.bind(coordinator);
          coordinator.restart = (generationBase: number) => {
            restart(opts.bugReuseGenerations === 1 ? 0 : generationBase);
            const term = Math.floor(generationBase / GENERATIONS_PER_TERM);
            m = mirrorOf(term);
            if (verifying) return;
            if (term === 0) {
              stats.coordinatorStepDowns++;
              return;
            }
            stats.coordinatorTerms++;
            if (stats.coordinatorTerms > 1) stats.coordinatorFailovers++;
            if (lastCoordinator !== null && lastCoordinator !== name) stats.coordinatorMoves++;
            lastCoordinator = name;
          };
        }
        groups.coordinator.events = {
          newGeneration(_g, generation) {
            stats.generations++;
            m.generation = generation;
            if (!clustered) return;
            const before = generationOf.get(generation);
            if (before !== undefined && before !== m.name) {
              violations.push(
                `generation ${generation} was handed out by two coordinators: ${before} and ${m.name}`,
              );
            }
            generationOf.set(generation, m.name);
          },
          granted(_g, generation, memberId, tp) {
            stats.grants++;
            const holder = m.owner.get(tp.partition);
            if (holder !== undefined && holder !== memberId) {
              violations.push(
                `${m.name} granted partition ${tp.partition} to ${memberId} in generation ` +
                  `${generation} while ${holder} owned it`,
              );
            }
            m.owner.set(tp.partition, memberId);
            // A single broker numbers generations from scratch after a crash; a cluster's are
            // unique across coordinators, so one generation's owners are checked run-wide.
            const key = clustered
              ? `${tp.partition}@${generation}`
              : `${m.name}:${tp.partition}@${generation}`;
            const set = grants.get(key) ?? new Set<string>();
            set.add(memberId);
            grants.set(key, set);
            if (set.size > 1) {
              violations.push(
                `${m.name}: partition ${tp.partition} had owners ${[...set].join(", ")} in ` +
                  `generation ${generation}`,
              );
            }
          },
          released(_g, _generation, memberId, tp, reason) {
            if (reason === "revoked") stats.revocations++;
            if (reason === "expired") stats.expiries++;
            if (reason === "fenced") stats.fencedStatic++;
            if (reason === "left") stats.leaves++;
            if (m.owner.get(tp.partition) === memberId) m.owner.delete(tp.partition);
          },
        };
        groups.onCommit = (req: OffsetCommitRequest) => {
          stats.commitsAccepted++;
          for (const o of req.offsets) {
            const owner = m.owner.get(o.partition);
            // A member may not have heard of the newest generation yet; it must own the partition.
            if (req.generation > m.generation || owner !== req.memberId) {
              violations.push(
                `${m.name} accepted a commit of partition ${o.partition} from ${req.memberId} ` +
                  `at generation ${req.generation}; the group is at ${m.generation} and ` +
                  `${owner ?? "nobody"} owns the partition`,
              );
            }
          }
        };
        groups.onCommitRefused = (_req, err) => {
          if (err instanceof GregorError && err.code === ErrorCode.STALE_GENERATION) {
            stats.commitsRejectedStale++;
          } else stats.commitsRejectedUnknown++;
        };
        if (opts.bugNoFence === 1) groups.coordinator.checkOwner = () => {};
        await node.done;
      },
    });
  });
  // Clients reach the single broker, or any broker of the cluster (which forwards group requests
  // to the coordinator and produces to the partitions' leaders).
  const connect = clustered
    ? (env: Env, clientId: string) => connectAny(env, brokerNames, clientId)
    : connectRetrying;

  // The producer: messages spread over the partitions, acknowledged offsets recorded.
  const acked = new Map<string, { partition: number; offset: number }>();
  /** Acknowledged with offset -1 (stored before, offset no longer known): stored all the same. */
  const ackedDuplicates = new Set<string>();
  const sent = new Set<string>();
  let producerDone = false;
  sim.addNode({
    name: "producer",
    main: async (env) => {
      // Healing restarts every node that is down, a finished one too: it has nothing to redo.
      if (producerDone) return;
      await produce(env, sim, opts, sent, acked, ackedDuplicates, connect);
      producerDone = true;
    },
  });

  // Members: each records what it processed, across its incarnations.
  const processed: Processed[] = [];
  const members: SimNode[] = [];
  for (let i = 0; i < opts.members; i++) {
    const name = `member-${i}`;
    members.push(sim.addNode({
      name,
      main: (env) =>
        member(env, sim, name, i < opts.staticMembers, opts, processed, connect, () => {
          stats.memberRejoins++;
        }),
    }));
  }

  // Misbehaving clients: the broker must refuse what they do wrong (sim/group_rogue.ts).
  const rogueCtx: RogueContext = {
    sim,
    topic: TOPIC,
    group: GROUP,
    partitions: opts.partitions,
    untilMs: opts.safetyMs,
    connect,
    stats,
    violations,
  };
  if (opts.rogueMember === 1) {
    sim.addNode({ name: "rogue-member", main: (env) => rogueMember(env, rogueCtx) });
  }
  if (opts.rogueProducer === 1) {
    sim.addNode({
      name: "rogue-producer",
      main: (env) => rogueProducer(env, rogueCtx, { sent, acked, ackedDuplicates }),
    });
  }

  // The auditor: committed offsets, as any reader sees them, must never go back.
  const seenCommitted = new Map<number, number>();
  sim.addNode({
    name: "auditor",
    main: (env) =>
      audit(env, sim, seenCommitted, violations, () => void stats.auditorReads++, {
        connect,
        // In a cluster, a broker that fails to answer is left for another one.
        reconnect: clustered,
      }),
  });

  // In a cluster, Raft's safety properties are checked across the brokers every few virtual ms.
  if (clustered) {
    const poll = () => {
      const live: RaftGroup[] = [];
      for (const [i, name] of brokerNames.entries()) {
        const c = running.get(name)?.cluster;
        if (!brokers[i]!.up || c === null || c === undefined) continue;
        if (c.metaGroup !== null) live.push(c.metaGroup);
        for (let p = 0; p < opts.partitions; p++) {
          const g = c.replica(TOPIC, p);
          if (g !== null) live.push(g);
        }
      }
      raft.poll(live);
      if (raft.violations.length === 0) sim.world.schedule(40, poll, { tag: 41 });
    };
    sim.world.schedule(40, poll, { tag: 41 });
  }
  const nemesis = new Nemesis(sim, plan, [...brokers, ...members]);
  nemesis.start();
  await sim.world.run({ untilMs: opts.safetyMs });
  calm(sim, nemesis);
  const allProcessed = () => {
    if (!producerDone) return false;
    const seen = new Set(processed.map((p) => `${p.partition}:${p.offset}`));
    for (const a of acked.values()) if (!seen.has(`${a.partition}:${a.offset}`)) return false;
    return true;
  };
  const stop = await sim.world.run({
    untilMs: sim.world.now + opts.livenessMs,
    stop: allProcessed,
  });
  if (!allProcessed()) {
    violations.push(
      stop === "idle"
        ? "deadlock: no event left while acknowledged messages wait to be processed"
        : `liveness: within ${opts.livenessMs} ms of healing, ${
          producerDone
            ? "not every acknowledged message was processed by a member"
            : "the producer did not finish"
        }`,
    );
  }
  // Let auto-commits land, then read everything back from fresh broker incarnations.
  await sim.world.run({ untilMs: sim.world.now + 3_000 });
  verifying = true;
  const final = violations.length === 0
    ? await verify(sim, {
      brokers,
      running,
      opts,
      acked,
      ackedDuplicates,
      sent,
      processed,
      seenCommitted: new Map(seenCommitted),
      violations,
    })
    : null;
  for (const e of sim.exits) {
    if (e.reason.includes("Raft invariant broken")) violations.push(`${e.node}: ${e.reason}`);
  }
  violations.unshift(...raft.violations);
  // Partitions placed on fewer brokers than asked for (the topic was created while a broker had
  // not joined the metadata group yet).
  const reducedFactor = !clustered
    ? 0
    : [...Array(opts.partitions).keys()].filter((p) =>
      [...running.values()].filter((n) => n.cluster?.holds(TOPIC, p) === true).length < opts.nodes
    ).length;

  return runResult(sim, {
    scenario: "groups",
    seed: opts.seed,
    options: opts,
    plan,
    violations: violations.slice(0, 30),
    stats: {
      ...stats,
      ...buggify.stats(),
      sent: sent.size,
      acked: acked.size,
      processed: processed.length,
      reprocessed: processed.length -
        new Set(processed.map((p) => `${p.partition}:${p.offset}`)).size,
      brokerCrashes: brokers.reduce((n, b) => n + b.crashes, 0),
      memberCrashes: members.reduce((n, m) => n + m.crashes, 0),
      verifiedMessages: final ?? 0,
      reducedFactor,
      metaCompactions: clusterNodes.reduce((n, c) => n + c.stats.metaCompactions, 0),
      metaRestores: clusterNodes.reduce((n, c) => n + c.stats.metaRestores, 0),
      ...nemesis.stats,
      netResets: sim.net.stats.resets,
    },
    notes: [
      ...sim.exits.map((e) => `${e.timeMs.toFixed(1)} ms: ${e.node} ${e.reason}`),
      ...nemesis.log,
      ...reports.slice(0, 50).map((r) => `report: ${r}`),
    ],
  });
}

/** Connects to any of `hosts`, another one at random after each failure. */
async function connectAny(env: Env, hosts: readonly string[], clientId: string): Promise<Client> {
  for (;;) {
    try {
      return await connectWith(env, {
        host: hosts[env.random.int(0, hosts.length)]!,
        port: PORT,
        clientId,
        requestTimeoutMs: 3_000,
        connectTimeoutMs: 2_000,
      });
    } catch {
      await env.clock.sleep(100 + env.random.float() * 400);
    }
  }
}

async function produce(
  env: Env,
  sim: Simulation,
  opts: GroupOptions,
  sent: Set<string>,
  acked: Map<string, { partition: number; offset: number }>,
  ackedDuplicates: Set<string>,
  connect: (env: Env, clientId: string) => Promise<Client>,
): Promise<void> {
  const client = await connect(env, "producer");
  const clustered = opts.nodes > 1;
  // Like an operator, wait until every broker has joined before creating the topic (its
  // replication factor is capped at the cluster's size when it is created).
  while (clustered) {
    const m = await client.admin.metadata([]).catch(() => null);
    if (m !== null && m.nodes.length >= opts.nodes) break;
    await env.clock.sleep(200);
  }
  const configs: Record<string, string> = { persistence: "disk", fsync: "always" };
  if (clustered) configs["replication.factor"] = String(opts.nodes);
  for (;;) {
    try {
      await client.admin.createTopic(TOPIC, { partitions: opts.partitions, configs });
      break;
    } catch (err) {
      if (err instanceof GregorError && err.code === ErrorCode.TOPIC_EXISTS) break;
      await env.clock.sleep(200);
    }
  }
  const producer = client.producer({
    lingerMs: env.random.float() * 5,
    ...(clustered ? { acks: "quorum", deliveryTimeoutMs: 40_000 } as const : {}),
  });
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < opts.messages; i++) {
    const value = `m${i}`;
    const partition = env.random.int(0, opts.partitions);
    sent.add(value);
    sim.history.add("producer", "invoke", "send", { value, partition });
    const p: Promise<void> = producer.send(TOPIC, { value, partition }).then(
      (offset) => {
        // -1: stored (an idempotent retry of a batch stored long before), offset unknown.
        if (offset < 0) {
          ackedDuplicates.add(value);
          return;
        }
        acked.set(value, { partition, offset });
        sim.history.add("producer", "ok", "send", { value, partition, offset });
      },
      (err) => void sim.history.add("producer", "info", "send", { value, error: String(err) }),
    ).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= 20) await Promise.race(inFlight);
    await env.clock.sleep(env.random.float() * 2 * opts.safetyMs / opts.messages);
  }
  await Promise.allSettled([...inFlight]);
  await client.close();
}

/** Resolves the next message, or null if none comes within `ms`. */
async function nextWithin(env: Env, g: GroupConsumer, ms: number) {
  const timer = new AbortController();
  const timeout = env.clock.sleep(ms, timer.signal).then(() => null, () => null);
  const m: ReceivedMessage | null = await Promise.race([g.next(), timeout]);
  timer.abort();
  return m;
}

/** A member's life: join, process for a while, sometimes leave and come back; repeat. */
async function member(
  env: Env,
  sim: Simulation,
  name: string,
  isStatic: boolean,
  opts: GroupOptions,
  processed: Processed[],
  connect: (env: Env, clientId: string) => Promise<Client>,
  onRejoin: () => void,
): Promise<void> {
  for (let round = 0;; round++) {
    if (round > 0) onRejoin();
    const client = await connect(env, name);
    let g: GroupConsumer | null = null;
    try {
      g = await client.groupConsumer(GROUP, [TOPIC], {
        instanceId: isStatic ? name : "",
        sessionTimeoutMs: opts.sessionTimeoutMs,
        reset: "earliest",
        autoCommitIntervalMs: 100 + env.random.int(0, 900),
        assignor: (["sticky", "range", "roundrobin"] as const)[env.random.int(0, 3)],
      });
      // Stay for a while (long enough to finish once faults stop), then maybe leave.
      const stayMs = (env.random.float() < 0.5) ? 1e12 : env.random.int(300, 3_000);
      const leaveAt = env.clock.now() + stayMs;
      while (env.clock.now() < leaveAt) {
        const m = await nextWithin(env, g, 200);
        if (m === null) continue;
        processed.push({ member: name, partition: m.partition, offset: m.offset, value: m.text() });
        sim.history.add(name, "ok", "process", { partition: m.partition, offset: m.offset });
        if ((env.random.float() < 0.01)) await g.commit().catch(() => {});
      }
      await g.close();
    } catch {
      await g?.close().catch(() => {});
    }
    await client.close();
    await env.clock.sleep(env.random.int(50, 1_000));
  }
}

/** How the auditor reaches brokers. */
interface AuditOptions {
  connect: (env: Env, clientId: string) => Promise<Client>;
  /** Leave a broker that failed to answer for another one (in a cluster). */
  reconnect: boolean;
}

/** Reads the committed offsets again and again; none may ever be lower than seen before. */
async function audit(
  env: Env,
  sim: Simulation,
  seen: Map<number, number>,
  violations: string[],
  onRead: () => void,
  o: AuditOptions,
): Promise<void> {
  let client = await o.connect(env, "auditor");
  for (;;) {
    try {
      const offsets = await client.admin.groupOffsets(GROUP);
      onRead();
      const via = o.reconnect ? ` (read through ${client.connection.opts.host})` : "";
      for (const o of offsets) {
        const before = seen.get(o.partition) ?? -1;
        if (o.offset < before) {
          violations.push(
            `committed offset of partition ${o.partition} went back from ${before} to ` +
              `${o.offset}${via}`,
          );
        }
        seen.set(o.partition, Math.max(before, o.offset));
        sim.history.add("auditor", "ok", "committed", { partition: o.partition, offset: o.offset });
      }
    } catch {
      // The broker is down, cut off, or not (yet) the coordinator's peer: try again.
      if (o.reconnect) {
        client.close().catch(() => {});
        client = await o.connect(env, "auditor");
      }
    }
    await env.clock.sleep(50 + env.random.int(0, 200));
  }
}

/** What the final check needs of a run. */
interface VerifyContext {
  brokers: SimNode[];
  /** Each broker's running node, its latest incarnation. */
  running: Map<string, RunningNode>;
  opts: GroupOptions;
  acked: Map<string, { partition: number; offset: number }>;
  ackedDuplicates: Set<string>;
  sent: Set<string>;
  processed: Processed[];
  /** The highest committed offsets the auditor saw before the final power loss. */
  seenCommitted: Map<number, number>;
  violations: string[];
}

/** A message as the verifier read it back. */
interface Stored {
  partition: number;
  offset: number;
  value: string;
}

/**
 * After a final power loss of every broker: every acknowledged message is stored once at its
 * offset and nothing twice; every message below a committed offset was processed. Returns the
 * number of messages read back.
 */
async function verify(sim: Simulation, ctx: VerifyContext): Promise<number> {
  const read = ctx.opts.nodes === 1 ? await readBack(sim, ctx) : await readBackCluster(sim, ctx);
  if (read === null) return 0;
  checkStored(read.stored, read.offsets, ctx);
  return read.stored.length;
}

/** Reads the group's committed offsets, and every partition up to `ends[p]`, through `client`. */
async function readGroupAndTopic(
  client: Client,
  ends: readonly number[],
  stored: Stored[],
  offsets: Map<number, number>,
): Promise<void> {
  for (const o of await client.admin.groupOffsets(GROUP)) offsets.set(o.partition, o.offset);
  for (const [p, end] of ends.entries()) {
    if (end <= 0) continue;
    const sub = await client.subscribe(TOPIC, { partition: p, from: "earliest" });
    for await (const m of sub) {
      stored.push({ partition: p, offset: m.offset, value: m.text() });
      m.ack();
      if (m.offset + 1 >= end) break;
    }
    await sub.close();
  }
}

/** Reads the topic and the group's offsets back from the single broker's next incarnation. */
async function readBack(
  sim: Simulation,
  ctx: VerifyContext,
): Promise<{ stored: Stored[]; offsets: Map<number, number> } | null> {
  sim.crash(ctx.brokers[0]!, "power", 10);
  const stored: Stored[] = [];
  const offsets = new Map<number, number>();
  let done = false;
  sim.addNode({
    name: "verifier",
    main: async (env) => {
      const client = await connectRetrying(env, "verifier");
      const ends = (await client.admin.describeTopic(TOPIC)).partitions.map((p) => p.highWatermark);
      await readGroupAndTopic(client, ends, stored, offsets);
      await client.close();
      done = true;
    },
  });
  await sim.world.run({ untilMs: sim.world.now + 30_000, stop: () => done });
  if (!done) {
    ctx.violations.push("the verifier could not read the topic back after a final restart");
    return null;
  }
  return { stored, offsets };
}

/**
 * Powers every broker of the cluster off and on, waits until the replicas agree again and the
 * group coordinator answers, then reads the topic and the group's offsets back through any broker.
 */
async function readBackCluster(
  sim: Simulation,
  ctx: VerifyContext,
): Promise<{ stored: Stored[]; offsets: Map<number, number> } | null> {
  const { brokers, running, opts } = ctx;
  running.clear();
  for (const b of brokers) sim.crash(b, "power", 10);
  const settled = () => {
    if (running.size < brokers.length || brokers.some((b) => !b.up)) return false;
    let coordinator = false;
    for (const node of running.values()) {
      if (node.cluster === null) return false;
      if (node.cluster.metaGroup?.readable === true) coordinator = true;
    }
    if (!coordinator) return false;
    for (let p = 0; p < opts.partitions; p++) {
      let end = -1;
      let leader = false;
      for (const node of running.values()) {
        // A topic created before every broker joined has fewer replicas than asked for.
        if (!node.cluster!.holds(TOPIC, p)) continue;
        const g = node.cluster!.replica(TOPIC, p);
        if (g === null) return false;
        if (g.node.appliedIndex < g.node.commitIndex) return false;
        if (g.isLeader) leader = true;
        const hw = node.broker.knownTopic(TOPIC)?.partitions[p]?.log.nextOffset ?? -1;
        if (end === -1) end = hw;
        else if (hw !== end) return false;
      }
      if (end < 0 || !leader) return false;
    }
    return true;
  };
  await sim.world.run({ untilMs: sim.world.now + opts.livenessMs, stop: settled });
  if (!settled()) {
    ctx.violations.push(
      `after a power loss of every broker the cluster did not settle within ${opts.livenessMs} ms`,
    );
    return null;
  }
  // Where each partition ends, as its replicas agree. (DESCRIBE_TOPIC answers from the broker
  // asked, which reports 0 for a partition it holds no replica of.)
  const ends = Array.from({ length: opts.partitions }, (_, p) => {
    for (const node of running.values()) {
      if (node.cluster!.holds(TOPIC, p)) {
        return node.broker.knownTopic(TOPIC)!.partitions[p]!.log.nextOffset;
      }
    }
    return 0;
  });
  let stored: Stored[] = [];
  const offsets = new Map<number, number>();
  let done = false;
  sim.addNode({
    name: "verifier",
    main: async (env) => {
      // Any broker may still refuse (a coordinator catching up): start over on another one.
      for (;;) {
        const client = await connectAny(env, brokers.map((b) => b.name), "verifier");
        try {
          stored = [];
          offsets.clear();
          await readGroupAndTopic(client, ends, stored, offsets);
          done = true;
          return;
        } catch {
          await env.clock.sleep(200);
        } finally {
          await client.close().catch(() => {});
        }
      }
    },
  });
  await sim.world.run({ untilMs: sim.world.now + 30_000, stop: () => done });
  if (!done) {
    ctx.violations.push("the verifier could not read the topic back after a final restart");
    return null;
  }
  return { stored, offsets };
}

/** Checks what was read back against what was sent, acknowledged, committed and processed. */
function checkStored(stored: Stored[], offsets: Map<number, number>, ctx: VerifyContext): void {
  const { acked, sent, processed, violations } = ctx;
  const where = new Map<string, string[]>();
  for (const s of stored) {
    if (!sent.has(s.value)) violations.push(`${s.value} is stored but was never sent`);
    const list = where.get(s.value) ?? [];
    list.push(`${s.partition}:${s.offset}`);
    where.set(s.value, list);
  }
  for (const [value, list] of where) {
    if (list.length > 1) {
      violations.push(`${value} is stored ${list.length} times: ${list.join(" ")}`);
    }
  }
  for (const [value, a] of acked) {
    if (!(where.get(value) ?? []).includes(`${a.partition}:${a.offset}`)) {
      const there = stored.find((x) => x.partition === a.partition && x.offset === a.offset);
      violations.push(
        `${value} was acknowledged at ${a.partition}:${a.offset} but is not there (found ` +
          `${there?.value ?? "nothing"} there; ${value} is at ${
            where.get(value)?.join(" ") ?? "no offset"
          })`,
      );
    }
  }
  for (const value of ctx.ackedDuplicates) {
    if (!where.has(value)) {
      violations.push(`${value} was acknowledged as stored before (offset -1) but is not stored`);
    }
  }
  // Committing an offset says everything before it was processed.
  const processedAt = new Set(processed.map((p) => `${p.partition}:${p.offset}`));
  for (const [partition, offset] of offsets) {
    for (const s of stored) {
      if (
        s.partition === partition && s.offset < offset &&
        !processedAt.has(`${partition}:${s.offset}`)
      ) {
        violations.push(
          `partition ${partition} has offset ${offset} committed, but ${s.offset} was never processed`,
        );
        break;
      }
    }
  }
  // The final power loss may not take back a commit the auditor saw.
  for (const [partition, before] of ctx.seenCommitted) {
    const after = offsets.get(partition) ?? -1;
    if (after < before) {
      violations.push(
        `committed offset of partition ${partition} went back from ${before} to ${after} over ` +
          `the final power loss`,
      );
    }
  }
}
