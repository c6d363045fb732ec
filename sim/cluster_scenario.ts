// A replicated cluster under faults: 3 or 5 real broker nodes (gossip, the metadata Raft group,
// one Raft group per partition replica, the WAL on the simulated disks) while an idempotent
// producer sends with quorum acks through whichever node it reaches. The nemesis crashes nodes
// (losing, tearing or corrupting unsynced writes), partitions them one way or both, pauses them,
// skews their clocks, flips bits on reads and fails fsyncs; then the network heals and the
// cluster must converge.
//
// Checkers (DESIGN.md §9): 1 every acknowledged write is at its offset after everything heals;
// 2 one message per offset and replicas' committed logs are prefixes of each other; 3 nothing
// unsent is stored and offsets a reader sees only grow; 4 (idempotence) no message is stored twice;
// 5 at most one leader per term and group; 6 a replica's high-water mark, as served, never goes
// back (also across restarts); 9 after healing every group has a leader and every unknown outcome
// is resolved (the message is either stored once or not at all).

import { SeededRandom } from "../src/io/prng.ts";
import { type Log, OffsetOutOfRange } from "../src/storage/mod.ts";
import {
  BATCH_HEADER_BYTES,
  batchesIn,
  decodeBatch,
  readBatchHeader,
} from "../src/protocol/batch.ts";
import { replicaDir, replicaLogDir, segmentName } from "../src/storage/layout.ts";
import type { Env } from "../src/io/types.ts";
import { type Client, connectWith } from "../src/client/client.ts";
import { ErrorCode, GregorError } from "../src/protocol/errors.ts";
import type { InitProducerIdResponse } from "../src/protocol/messages.ts";
import { loadClusterModules, type RunningNode, startNode } from "../src/node.ts";
import { type ClusterNode, META_GROUP } from "../src/cluster/cluster.ts";
import { isMoving } from "../src/cluster/controller.ts";
import type { RaftGroup } from "../src/cluster/raft/shell.ts";
import { brokerHooks, brokerSimulation, calm, firstLine, Nemesis } from "./faults.ts";
import type { SimNode } from "./node.ts";
import type { Simulation } from "./simulation.ts";
import { RaftChecker } from "./raft_checker.ts";
import { type RunResult, runResult } from "./result.ts";

/** Everything that decides a cluster run. */
export interface ClusterOptions {
  seed: number;
  nodes: number;
  partitions: number;
  /** The topic's replication.factor. */
  replicationFactor: number;
  messages: number;
  safetyMs: number;
  livenessMs: number;
  faults: "swarm" | "calm";
  /** 1: Raft votes ignore whether the candidate's log is up to date (a planted bug). */
  bugVoteWithoutLogCheck: number;
  /** 1: produces are acknowledged before they commit (a planted bug). */
  bugAckBeforeCommit: number;
  /**
   * Bytes each partition replica keeps (-1: the default, more than a run writes). Small values
   * make retention drop old batches, the partitions' Raft logs compact, and replicas far behind or
   * restarting restore from a partition snapshot.
   */
  replicaRetentionBytes: number;
  /**
   * Bytes of batches a replica applies between checkpoints. A few hundred make partition Raft logs
   * compact every few batches, so followers behind and restarting replicas restore from snapshots
   * and fetch the batches between from their peers' segment logs.
   */
  replicaCheckpointBytes: number;
  /**
   * 0: the first node founds the metadata group alone and the others join as learners; N (all the
   * nodes): every node waits for N live nodes and the group is founded with the lowest ids as its
   * voters.
   */
  bootstrapExpect: number;
  /** How often leaders go back to their preferred replicas, ms (0: never). */
  leaderBalanceIntervalMs: number;
  /**
   * How long a node may be down before the controller moves its replicas, ms (0: never). Shorter
   * than the nemesis's crashes in half the seeds, so partitions move while a node is down and the
   * node comes back to find its replicas elsewhere.
   */
  replicaMoveAfterMs: number;
  /** Raft timings, ms: rolled per seed so elections race replication differently. */
  tickMs: number;
  electionTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Raft flow: entries and bytes per append, appends in flight (small ones split replication). */
  appendEntriesMax: number;
  appendBytesMax: number;
  inflightMax: number;
  /** 1: the nodes hold a cluster secret and prove it on every cluster connection. */
  secret: number;
}

/** The cluster secret of runs with `secret: 1`. */
const CLUSTER_SECRET = "cluster scenario cluster secret";

const CLIENT_PORT = 7070;
const CLUSTER_PORT = 7946;
const TOPIC = "orders";
/** Virtual time the final reads of every replica's log may take, ms. */
const VERIFY_MS_MAX = 600_000;
/** Metadata snapshots every few entries, so compaction and snapshot installs happen in every run. */
const META_COMPACT_EVERY = 3;
/** One seed in this many writes a heavy workload: thousands of messages over many partitions. */
const HEAVY_SEEDS_ONE_IN = 25;
/**
 * Election timeouts a leader superseded in a later term may go on leading: check-quorum steps it
 * down within two after it lost its majority, and the new leader needed at least one to appear.
 */
export const RAFT_LEASES = 3;

/** Derives the options for `seed`, then applies `overrides`. */
export function clusterOptions(
  seed: number,
  overrides: Partial<ClusterOptions> = {},
): ClusterOptions {
  const r = new SeededRandom(seed, "cluster-options");
  const rolledNodes = r.float() < 0.7 ? 3 : 5;
  const nodes = overrides.nodes ?? rolledNodes;
  return {
    seed,
    nodes,
    partitions: r.int(1, 4),
    replicationFactor: r.int(2, 4),
    messages: r.int(40, 200),
    safetyMs: r.int(3_000, 10_000),
    livenessMs: 60_000,
    faults: "swarm",
    bugVoteWithoutLogCheck: 0,
    bugAckBeforeCommit: 0,
    replicaRetentionBytes: r.float() < 0.5 ? r.int(600, 4_000) : -1,
    ...rollLimits(seed),
    replicaCheckpointBytes: new SeededRandom(seed, "cluster-checkpoints").int(200, 3_000),
    // Every node the cluster starts with: founding is safe under any cut only then (fewer let two
    // disjoint views each found a cluster: seed 8771, when 5 nodes expected 3).
    bootstrapExpect: new SeededRandom(seed, "cluster-bootstrap").chance(0.5) ? nodes : 0,
    leaderBalanceIntervalMs: new SeededRandom(seed, "cluster-balance").int(300, 3_000),
    replicaMoveAfterMs: new SeededRandom(seed, "cluster-moves").chance(0.5)
      ? new SeededRandom(seed, "cluster-moves-after").int(200, 1_500)
      : 0,
    secret: new SeededRandom(seed, "cluster-secret").chance(0.3) ? 1 : 0,
    ...overrides,
  };
}

/**
 * Limits rolled from their own stream (the options above keep their values per seed): short and
 * long Raft timings, appends cut to a few entries or bytes with few in flight (so followers hold
 * partial, diverging suffixes: the interleavings of the Raft paper's Figure 8), and now and then
 * a heavy workload.
 */
function rollLimits(seed: number) {
  const r = new SeededRandom(seed, "cluster-limits");
  const tickMs = r.int(10, 31);
  const electionTimeoutMs = r.int(250, 700);
  const limits = {
    tickMs,
    electionTimeoutMs,
    heartbeatIntervalMs: r.int(2 * tickMs, Math.floor(electionTimeoutMs / 3)),
    appendEntriesMax: r.chance(0.5) ? r.int(1, 6) : 256,
    appendBytesMax: r.chance(0.3) ? r.int(100, 2_000) : 1 << 20,
    inflightMax: r.chance(0.5) ? r.int(1, 4) : 64,
  };
  if (r.int(0, HEAVY_SEEDS_ONE_IN) !== 0) return limits;
  return { ...limits, messages: r.int(1_000, 2_500), partitions: r.int(4, 9) };
}

interface Sent {
  value: string;
  partition: number;
  /** The acknowledged offset, null while unknown (failed or never answered). */
  offset: number | null;
  /** Answered -1: stored before (a retry of a batch older than the broker remembers). */
  duplicate: boolean;
}

/** Runs the cluster scenario and checks it. */
export async function runCluster(opts: ClusterOptions): Promise<RunResult> {
  // Loaded before the simulation starts: the host's module loader is outside its replay.
  await loadClusterModules();
  const { sim, plan, buggify } = brokerSimulation(
    opts.seed,
    "cluster-faults",
    opts.faults,
    Math.floor((opts.nodes - 1) / 2),
  );
  const violations: string[] = [];
  const stats = {
    leaderTerms: 0,
    proposalsLost: 0,
    consumerReads: 0,
    /** Partitions created while fewer nodes had joined than their replication factor. */
    reducedFactor: 0,
    metaCompactions: 0,
    metaRestores: 0,
    replicaCompactions: 0,
    replicaRestores: 0,
    replicaSnapshotStarts: 0,
    replicaFetches: 0,
    replicaBadFetches: 0,
    /** Followers that cut a conflicting suffix of their Raft log (seen by the watcher). */
    raftTruncations: 0,
    retentionDropped: 0,
    storageReports: 0,
    walRepairs: 0,
    /** Replica segment logs flipped at rest, and damaged replicas repaired from their peers. */
    segmentsDamaged: 0,
    replicaRepairs: 0,
    /** Leaderships handed back to a partition's preferred replica. */
    leaderTransfers: 0,
    /** Partitions the controller moved off a node that was down, and the outages that caused it. */
    replicaMoves: 0,
    longOutages: 0,
    retriedSends: 0,
    unknownOutcomes: 0,
    followerCatchUps: 0,
    /** Producer ids handed out to the id asker (each must be new). */
    producerIds: 0,
  };
  const raft = new RaftChecker(partitionEntrySkip);
  raft.watchLeases({
    nowMs: () => sim.world.now,
    leaseMs: RAFT_LEASES * opts.electionTimeoutMs,
    paused: (g) => {
      for (const [name, node] of running) {
        if (node.cluster?.nodeId === g.node.id) return nodes[names.indexOf(name)]!.paused;
      }
      return false;
    },
  });
  const running = new Map<string, RunningNode>();
  /** Every incarnation's cluster role, for counters summed over the run. */
  const clusterNodes: ClusterNode[] = [];
  const names = Array.from({ length: opts.nodes }, (_, i) => `n${i}`);
  const nodes: SimNode[] = names.map((name, i) =>
    sim.addNode({
      name,
      main: async (env, ctl) => {
        // Until this incarnation's node runs, the previous one's (frozen) state must not count.
        running.delete(name);
        const node = await startNode(env, {
          host: "0.0.0.0",
          port: CLIENT_PORT,
          // Small segments, checked often: retention deletes whole segments of replicas' logs.
          broker: { dataDir: "data", groupsTickMs: 100, segmentBytes: 4096, retentionCheckMs: 500 },
          cluster: {
            port: CLUSTER_PORT,
            advertiseHost: name,
            seeds: i === 0 ? [] : [`n0:${CLUSTER_PORT}`],
            ...(opts.bootstrapExpect > 0 ? { bootstrapExpect: opts.bootstrapExpect } : {}),
            intervalMs: 100,
            replicate: true,
            ...(opts.secret === 1 ? { secret: CLUSTER_SECRET } : {}),
            raft: {
              tickMs: opts.tickMs,
              electionTimeoutMs: opts.electionTimeoutMs,
              heartbeatIntervalMs: opts.heartbeatIntervalMs,
              metaCompactEvery: META_COMPACT_EVERY,
              raftFlow: {
                appendEntriesMax: opts.appendEntriesMax,
                appendBytesMax: opts.appendBytesMax,
                inflightMax: opts.inflightMax,
              },
              onRaftGroup: (g) => {
                raft.attach(g);
                g.faults = buggify;
              },
              // A replica moved away: the checker verifies it left the group's committed
              // configuration before forgetting what it promised there. What it served goes
              // too: a replica added back later is a new one, which starts empty (cluster seed
              // 5783 counted that as the old replica's high-water mark going back).
              onRaftGroupDropped: (g) => {
                raft.forget(g);
                served.delete(`${name}:${partitionOfGroup(g.group)}`);
              },
              ...(opts.bugVoteWithoutLogCheck === 1
                ? { plantedBugs: { voteWithoutLogCheck: true } }
                : {}),
              ...(opts.bugAckBeforeCommit === 1 ? { plantedAckBeforeCommit: true } : {}),
              ...(opts.replicaRetentionBytes >= 0
                ? { replicaRetentionBytes: opts.replicaRetentionBytes }
                : {}),
              replicaCheckpointBytes: opts.replicaCheckpointBytes,
              leaderBalanceIntervalMs: opts.leaderBalanceIntervalMs,
              replicaMoveAfterMs: opts.replicaMoveAfterMs,
            },
          },
          hooks: brokerHooks(ctl, (msg) => {
            stats.storageReports++;
            if (/truncat/i.test(msg)) stats.walRepairs++;
          }, (msg) => violations.push(`${name}: ${firstLine(msg)}`)),
        });
        running.set(name, node);
        if (node.cluster !== null) clusterNodes.push(node.cluster);
        await node.done;
      },
    })
  );

  /** Conflict truncations counted so far per group instance (each incarnation's groups anew). */
  const truncationsSeen = new Map<RaftGroup, number>();
  // Leaders per (group, term), and high-water marks as each replica serves them.
  const leaders = new Map<string, string>();
  const served = new Map<string, number>();
  const behind = new Set<string>();
  const watch = () => {
    const live: RaftGroup[] = [];
    for (const [name, node] of running) {
      const sn = nodes[names.indexOf(name)]!;
      if (!sn.up) continue;
      const c = node.cluster;
      if (c === null) continue;
      const groups = [...(c.metaGroup === null ? [] : [c.metaGroup])];
      for (let p = 0; p < opts.partitions; p++) {
        const g = c.replica(TOPIC, p);
        if (g !== null) groups.push(g);
      }
      live.push(...groups);
      for (const g of groups) {
        if (g.role !== "leader") continue;
        const key = `${g.group}@${g.term}`;
        const known = leaders.get(key);
        if (known === undefined) {
          leaders.set(key, name);
          stats.leaderTerms++;
        } else if (known !== name) {
          violations.push(`${g.group} had two leaders in term ${g.term}: ${known} and ${name}`);
        }
      }
      for (let p = 0; p < opts.partitions; p++) {
        if (!c.holds(TOPIC, p)) continue;
        const t = node.broker.knownTopic(TOPIC);
        const hw = t?.partitions[p]?.log.nextOffset;
        if (hw === undefined) continue;
        const key = `${name}:${p}`;
        const before = served.get(key) ?? 0;
        if (hw < before) {
          violations.push(
            `${name} served ${TOPIC}/${p} up to ${hw} after ${before} (it went back)`,
          );
        }
        served.set(key, Math.max(before, hw));
        // A follower well behind its leader that later catches up: the catch-up path ran.
        const g = c.replica(TOPIC, p);
        const lead = g?.leaderId === null || g === null
          ? null
          : running.get(names.find((n) => running.get(n)?.cluster?.nodeId === g.leaderId) ?? "");
        const leadHw = lead?.broker.knownTopic(TOPIC)?.partitions[p]?.log.nextOffset;
        if (leadHw !== undefined && g !== null && !g.isLeader) {
          if (leadHw - hw >= 10) behind.add(key);
          else if (behind.delete(key)) stats.followerCatchUps++;
        }
      }
    }
    raft.poll(live);
    for (const g of live) {
      const seen = truncationsSeen.get(g) ?? 0;
      stats.raftTruncations += g.node.truncations - seen;
      truncationsSeen.set(g, g.node.truncations);
    }
  };
  const watcher = () => {
    watch();
    if (violations.length + raft.violations.length < 20) {
      sim.world.schedule(20, watcher, { tag: 40 });
    }
  };
  sim.world.schedule(20, watcher, { tag: 40 });

  const sent: Sent[] = [];
  let producerDone = false;
  sim.addNode({
    name: "producer",
    main: async (env) => {
      if (producerDone) return;
      await produce(env, opts, names, sent, stats);
      producerDone = true;
    },
  });

  // A consumer reads every partition through whichever node it reaches, across failures: what it
  // sees must be committed data (still there, at the same offset, at the end), in offset order.
  const reads: { partition: number; offset: number; value: string }[] = [];
  for (let p = 0; p < opts.partitions; p++) {
    sim.addNode({
      name: `consumer-${p}`,
      main: (env) => consume(env, names, p, reads, violations),
    });
  }

  // Asks any node for producer ids now and then, across failovers of the controller that hands
  // them out: an id handed out twice would let two producers' batches be taken for each other's
  // duplicates.
  const producerIds = new Map<number, number>();
  sim.addNode({
    name: "id-asker",
    main: (env) => askProducerIds(env, names, opts.safetyMs, producerIds, stats, violations),
  });

  const nemesis = new Nemesis(sim, plan, nodes);
  nemesis.start();
  /** When the long outage below ends (virtual ms), or 0. */
  let outageEndsAt = 0;
  if (opts.replicaMoveAfterMs > 0) {
    // One long outage of a node holding a replica (not the controller's), past the move delay,
    // so the controller moves its replicas away while it is down. Taken only if no other node is
    // down: the fault budget holds.
    const r = new SeededRandom(opts.seed, "cluster-outage");
    const downMs = opts.replicaMoveAfterMs + r.int(4_000, 8_000);
    const attempt = () => {
      if (sim.world.now > opts.safetyMs) return;
      const views = names.map((n) => running.get(n)?.cluster).filter((c) => c != null);
      const controller = views.map((c) => c.controller).find((c) => c !== null);
      const holders = views.find((c) => c.meta.topics.has(TOPIC))?.meta.topics.get(TOPIC)
        ?.replicas.flat() ?? [];
      const candidates = nodes.filter((_n, i) => {
        const id = running.get(names[i]!)?.cluster?.nodeId;
        return id !== undefined && id !== controller && holders.includes(id);
      });
      if (candidates.length === 0 || nodes.some((n) => !n.up)) {
        sim.world.schedule(200, attempt, { tag: 41 });
        return;
      }
      stats.longOutages++;
      outageEndsAt = sim.world.now + downMs;
      sim.crash(candidates[r.int(0, candidates.length)]!, "process", downMs);
    };
    sim.world.schedule(r.int(300, Math.max(301, opts.safetyMs / 3)), attempt, { tag: 41 });
  }
  await sim.world.run({ untilMs: opts.safetyMs });
  // The faults calm once the long outage is over: calming restarts every node.
  if (outageEndsAt > sim.world.now) await sim.world.run({ untilMs: outageEndsAt });
  calm(sim, nemesis);
  // Checked before every event of the liveness phase: plain loops, nothing allocated.
  const settledPartition = (p: number): boolean => {
    // Every node runs, and every replica the metadata names has opened the partition and
    // applied the same, full log.
    let end = -1;
    for (let i = 0; i < names.length; i++) {
      const node = running.get(names[i]!);
      if (node === undefined || !nodes[i]!.up) return false;
      if (node.cluster === null) return false;
      const t = node.cluster.meta.topics.get(TOPIC);
      const named = t?.replicas[p];
      if (t === undefined || named === undefined) return false;
      // A move off a node that was down finishes once the faults calm: its group is changed,
      // the move recorded, and the replicas left out dropped theirs.
      if (isMoving(t, p)) return false;
      if (!named.includes(node.cluster.nodeId) && node.cluster.replica(TOPIC, p) !== null) {
        return false;
      }
      if (named.includes(node.cluster.nodeId) && !node.cluster.holds(TOPIC, p)) return false;
      const g = node.cluster.replica(TOPIC, p);
      if (g === null) continue;
      if (g.node.appliedIndex < g.node.commitIndex) return false;
      const hw = node.broker.knownTopic(TOPIC)?.partitions[p]?.log.nextOffset ?? -1;
      if (end === -1) end = hw;
      else if (hw !== end) return false;
    }
    return end >= 0 && leaderOf(running, p) !== null;
  };
  const settled = () => {
    if (!producerDone) return false;
    for (let p = 0; p < opts.partitions; p++) if (!settledPartition(p)) return false;
    return true;
  };
  const stop = await sim.world.run({ untilMs: sim.world.now + opts.livenessMs, stop: settled });
  if (!settled()) {
    violations.push(
      stop === "idle"
        ? "deadlock: no event left before the cluster converged"
        : `liveness: within ${opts.livenessMs} ms of healing the cluster did not converge (${
          producerDone
            ? "replicas differ or a partition has no leader"
            : "the producer did not finish"
        })`,
    );
  } else {
    // A final power loss of every node; the cluster must come back with everything acknowledged.
    // One node (a minority) comes back with a byte of a sealed segment of one of its replicas
    // flipped at rest: it must repair that replica from its peers before serving it.
    const damaged = sealedSegmentToDamage(running, nodes, names, opts);
    for (const n of nodes) sim.crash(n, "power", 10);
    if (damaged !== null) {
      const disk = nodes[names.indexOf(damaged.node)]!.disk;
      const bytes = disk.durableBytes(damaged.path);
      const batches = bytes === null ? [] : fileBatches(bytes);
      if (batches.length > 0) {
        const r = new SeededRandom(opts.seed, "cluster-damage");
        const bad = batches[r.int(0, batches.length)]!;
        // A byte of the records, which the batch's checksum covers.
        disk.corruptAtRest(damaged.path, bad.pos + r.int(BATCH_HEADER_BYTES, bad.size));
        stats.segmentsDamaged++;
      }
    }
    // Their state before the power loss must not pass for the recovered cluster's: settled() and
    // the checks below wait for the incarnations that started from the disks.
    for (const name of names) running.delete(name);
    await sim.world.run({ untilMs: sim.world.now + opts.livenessMs, stop: settled });
    if (!settled()) violations.push("after a power loss of every node the cluster did not recover");
    else {
      violations.push(
        ...await inWorld(sim, () => verify(running, names, opts, sent, stats, reads)),
      );
    }
  }
  watch();
  for (const e of sim.exits) {
    if (e.reason.includes("Raft invariant broken")) violations.push(`${e.node}: ${e.reason}`);
  }
  violations.unshift(...raft.violations);
  const acked = sent.filter((s) => s.offset !== null).length;
  stats.unknownOutcomes = sent.length - acked;
  stats.proposalsLost = clusterNodes.reduce((n, c) => n + c.stats.proposalsLost, 0);
  stats.consumerReads = reads.length;
  stats.metaCompactions = clusterNodes.reduce((n, c) => n + c.stats.metaCompactions, 0);
  stats.metaRestores = clusterNodes.reduce((n, c) => n + c.stats.metaRestores, 0);
  stats.replicaCompactions = clusterNodes.reduce((n, c) => n + c.stats.replicaCompactions, 0);
  stats.replicaRestores = clusterNodes.reduce((n, c) => n + c.stats.replicaRestores, 0);
  stats.replicaSnapshotStarts = clusterNodes.reduce(
    (n, c) => n + c.stats.replicaSnapshotStarts,
    0,
  );
  stats.replicaFetches = clusterNodes.reduce((n, c) => n + c.stats.replicaFetches, 0);
  stats.replicaBadFetches = clusterNodes.reduce((n, c) => n + c.stats.replicaBadFetches, 0);
  stats.replicaRepairs = clusterNodes.reduce((n, c) => n + c.stats.replicaRepairs, 0);
  stats.leaderTransfers = clusterNodes.reduce((n, c) => n + c.stats.leaderTransfers, 0);
  stats.replicaMoves = clusterNodes.reduce((n, c) => n + c.stats.replicaMoves, 0);
  return runResult(sim, {
    scenario: "cluster",
    seed: opts.seed,
    options: opts,
    plan,
    violations: [...new Set(violations)].slice(0, 30),
    stats: {
      ...stats,
      ...raft.stats,
      ...buggify.stats(),
      sent: sent.length,
      acked,
      nodeCrashes: nodes.reduce((n, x) => n + x.crashes, 0),
      ...nemesis.stats,
      netResets: sim.net.stats.resets,
      synRetries: sim.net.stats.synRetries,
      syncFailures: nodes.reduce((n, x) => n + x.disk.stats.syncFailures, 0),
      writesTorn: nodes.reduce((n, x) => n + x.disk.stats.writesTorn, 0),
      readFlips: nodes.reduce((n, x) => n + x.disk.stats.readFlips, 0),
    },
    notes: [
      ...sim.exits.map((e) => `${e.timeMs.toFixed(1)} ms: ${e.node} ${e.reason}`),
      ...nemesis.log,
    ],
  });
}

/**
 * A sealed segment file of a replica on one node, chosen by the seed among all nodes' (null if no
 * replica has one): the segments of each replica's log, as its durable files name them.
 */
function sealedSegmentToDamage(
  running: Map<string, RunningNode>,
  nodes: SimNode[],
  names: string[],
  opts: ClusterOptions,
): { node: string; path: string } | null {
  const candidates: { node: string; path: string }[] = [];
  for (const name of names) {
    const node = running.get(name);
    const disk = nodes[names.indexOf(name)]!.disk;
    if (node?.cluster == null) continue;
    for (let p = 0; p < opts.partitions; p++) {
      const g = node.cluster.replica(TOPIC, p);
      const log = node.broker.knownTopic(TOPIC)?.partitions[p]?.log;
      if (g === null || log === undefined) continue;
      // Repair needs a peer with the batches: a partition the cluster placed on one node (it had
      // one node when the topic was made) has none, and its damage is the operator's to repair.
      if ((node.cluster.meta.topics.get(TOPIC)?.replicas[p]?.length ?? 0) < 2) continue;
      const incarnation = Number(g.group.slice(g.group.lastIndexOf("@") + 1));
      const dir = replicaLogDir(replicaDir("data", { topic: TOPIC, incarnation, partition: p }));
      for (let base = log.logStartOffset;;) {
        const path = `${dir}/${segmentName(base, "log")}`;
        const last = fileBatches(disk.durableView(path) ?? new Uint8Array(0)).at(-1);
        if (last === undefined) break;
        if (disk.durableView(`${dir}/${segmentName(last.next, "log")}`) === null) break;
        candidates.push({ node: name, path });
        base = last.next;
      }
    }
  }
  if (candidates.length === 0) return null;
  return candidates[
    new SeededRandom(opts.seed, "cluster-damage-target").int(0, candidates.length)
  ]!;
}

/** The whole batches of a segment file: where each starts, its size and offsets. */
function fileBatches(bytes: Uint8Array): { pos: number; size: number; next: number }[] {
  const out = [];
  for (let pos = 0; pos + BATCH_HEADER_BYTES <= bytes.length;) {
    const h = readBatchHeader(bytes, pos, { headerOnly: true });
    if (h.sizeBytes < BATCH_HEADER_BYTES || pos + h.sizeBytes > bytes.length) break;
    out.push({ pos, size: h.sizeBytes, next: h.baseOffset + h.recordCount });
    pos += h.sizeBytes;
  }
  return out;
}

/**
 * Runs `work` while the world runs: reading a replica's segment log takes the simulated disk's
 * virtual time, which passes only inside `world.run`.
 */
async function inWorld<T>(sim: Simulation, work: () => Promise<T>): Promise<T> {
  let done = false;
  const p = work().finally(() => (done = true));
  await sim.world.run({ untilMs: sim.world.now + VERIFY_MS_MAX, stop: () => done });
  if (!done) throw new Error(`Reading the replicas took over ${VERIFY_MS_MAX} ms of virtual time`);
  return await p;
}

/** The partition of a replica's group name, `<topic>/<partition>@<incarnation>`. */
function partitionOfGroup(group: string): number {
  return Number(group.slice(group.lastIndexOf("/") + 1, group.lastIndexOf("@")));
}

function leaderOf(running: Map<string, RunningNode>, p: number): string | null {
  for (const node of running.values()) {
    const g = node.cluster?.replica(TOPIC, p);
    if (g?.isLeader) return node.cluster!.nodeId;
  }
  return null;
}

/** Waits until `client`'s metadata names at least `nodes` live nodes, asking every 200 ms. */
export async function untilJoined(env: Env, client: Client, nodes: number): Promise<void> {
  for (;;) {
    const m = await client.admin.metadata([]).catch(() => null);
    if (m !== null && m.nodes.length >= nodes) return;
    await env.clock.sleep(200);
  }
}

async function connectTo(env: Env, host: string): Promise<Client | null> {
  try {
    return await connectWith(env, {
      host,
      port: CLIENT_PORT,
      clientId: "producer",
      requestTimeoutMs: 3_000,
      connectTimeoutMs: 2_000,
    });
  } catch {
    return null;
  }
}

/**
 * Creates the topic, then sends every message through one idempotent producer with quorum acks,
 * connected to one node (which forwards to leaders): its own retries must never duplicate.
 */
async function produce(
  env: Env,
  opts: ClusterOptions,
  names: string[],
  sent: Sent[],
  stats: { retriedSends: number },
): Promise<void> {
  const host = names[env.random.int(0, names.length)]!;
  let client: Client | null = null;
  while (client === null) {
    client = await connectTo(env, host);
    if (client === null) await env.clock.sleep(200);
  }
  // Like an operator, wait until every node has joined before creating the topic (the replication
  // factor is capped at the cluster's size when the topic is created).
  await untilJoined(env, client, opts.nodes);
  for (;;) {
    try {
      await client.admin.createTopic(TOPIC, {
        partitions: opts.partitions,
        configs: { "replication.factor": String(opts.replicationFactor) },
      });
      break;
    } catch (err) {
      if (err instanceof GregorError && err.code === ErrorCode.TOPIC_EXISTS) break;
      stats.retriedSends++;
      await env.clock.sleep(200);
    }
  }
  const producer = client.producer({ acks: "quorum", deliveryTimeoutMs: 40_000 });
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < opts.messages; i++) {
    const s: Sent = {
      value: `m${i}`,
      partition: env.random.int(0, opts.partitions),
      offset: null,
      duplicate: false,
    };
    sent.push(s);
    const p: Promise<void> = producer.send(TOPIC, { value: s.value, partition: s.partition })
      .then((offset) => {
        if (offset < 0) s.duplicate = true;
        else s.offset = offset;
      }, () => {})
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= 10) await Promise.race(inFlight);
    await env.clock.sleep(env.random.float() * 2 * opts.safetyMs / opts.messages);
  }
  await Promise.allSettled([...inFlight]);
  await client.close().catch(() => {});
}

/**
 * Reads one partition from the earliest offset, through whichever node answers, again after every
 * failure from where it got to; offsets must only grow within a subscription.
 */
/** The id asker's pause between two INIT_PRODUCER_ID requests, ms at most. */
const ID_ASK_PAUSE_MS_MAX = 400;
/** INIT_PRODUCER_ID requests the id asker sends at once, at most. */
const ID_ASKS_AT_ONCE_MAX = 4;
/** How long the id asker goes on after the faults' phase, ms (while the run lasts). */
const ID_ASK_AFTER_SAFETY_MS = 5_000;

async function askProducerIds(
  env: Env,
  names: string[],
  untilMs: number,
  seen: Map<number, number>,
  stats: { producerIds: number },
  violations: string[],
): Promise<void> {
  // The node's clock starts anywhere; the asker starts with the run.
  const deadline = env.clock.now() + untilMs + ID_ASK_AFTER_SAFETY_MS;
  const record = (id: number) => {
    const now = Math.round(env.clock.now());
    const before = seen.get(id);
    if (before !== undefined) {
      violations.push(`producer id ${id} was handed out twice (at ${before} and ${now} ms)`);
    }
    seen.set(id, now);
    stats.producerIds++;
  };
  while (env.clock.now() < deadline) {
    await env.clock.sleep(env.random.int(50, ID_ASK_PAUSE_MS_MAX));
    const client = await connectTo(env, names[env.random.int(0, names.length)]!);
    if (client === null) continue;
    // Several at once, as producers starting together ask: a controller just elected serves
    // them from one block it must reserve once.
    const asks = Array.from(
      { length: env.random.int(1, ID_ASKS_AT_ONCE_MAX + 1) },
      () =>
        client.connection.request<InitProducerIdResponse>("INIT_PRODUCER_ID", {}).then(
          (r) => record(r.producerId),
          () => {}, // no controller reachable now (an election, a cut): ask again later
        ),
    );
    await Promise.all(asks);
    await client.close().catch(() => {});
  }
}

async function consume(
  env: Env,
  names: string[],
  partition: number,
  reads: { partition: number; offset: number; value: string }[],
  violations: string[],
): Promise<void> {
  let next = 0;
  for (;;) {
    const client = await connectTo(env, names[env.random.int(0, names.length)]!);
    if (client !== null) {
      try {
        // Subscribing would create the topic (with the defaults) if it does not exist yet.
        const t = (await client.admin.metadata([TOPIC])).topics[0];
        if (t === undefined || t.error !== 0 || t.partitions.length <= partition) {
          throw new Error("not there yet");
        }
        const sub = await client.subscribe(TOPIC, {
          partition,
          from: { offset: next },
          ackTimeoutMs: 1_000,
        });
        let last = next - 1;
        for await (const m of sub) {
          if (m.offset <= last && !m.redelivered) {
            violations.push(
              `a consumer of ${TOPIC}/${partition} went back from ${last} to ${m.offset}`,
            );
          }
          last = Math.max(last, m.offset);
          reads.push({ partition, offset: m.offset, value: m.text() });
          m.ack();
          next = Math.max(next, m.offset + 1);
        }
      } catch {
        // The node died, does not know the topic yet, or was cut off: try another.
      }
      await client.close().catch(() => {});
    }
    await env.clock.sleep(200 + env.random.int(0, 300));
  }
}

/** Reads every replica's log of every partition and checks it against what was sent. */
async function verify(
  running: Map<string, RunningNode>,
  names: string[],
  opts: ClusterOptions,
  sent: Sent[],
  stats: { reducedFactor: number; retentionDropped: number },
  reads: { partition: number; offset: number; value: string }[],
): Promise<string[]> {
  const out: string[] = [];
  const sentValues = new Set(sent.map((s) => s.value));
  for (let p = 0; p < opts.partitions; p++) {
    // Every node the metadata names holds the partition, and no other. (The factor is capped at
    // the cluster's size when the topic is created, which may be before every node joined.)
    const holders = names.filter((n) => running.get(n)?.cluster?.holds(TOPIC, p) === true)
      .map((n) => running.get(n)!.cluster!.nodeId).sort();
    const named = [...(running.get(names[0]!)?.cluster?.meta.topics.get(TOPIC)?.replicas[p] ?? [])]
      .sort();
    if (holders.join() !== named.join()) {
      out.push(
        `${TOPIC}/${p} is held by ${holders.join(", ")}, but its replicas are ${named.join(", ")}`,
      );
    }
    if (named.length < Math.min(opts.replicationFactor, opts.nodes)) stats.reducedFactor++;
    // Retention may have dropped a replica's oldest batches: replicas must agree wherever both
    // still hold an offset, and the union of what they hold is the partition.
    let reference: string[] | null = null;
    /** The lowest offset any replica still holds: below it, retention dropped the data. */
    let retainedFrom = Infinity;
    for (const name of names) {
      const node = running.get(name);
      if (node?.cluster?.holds(TOPIC, p) !== true) continue;
      const log = node.broker.knownTopic(TOPIC)!.partitions[p]!.log;
      // Retention goes on while the log is read (it takes virtual time): what counts is where the
      // read that succeeded started.
      const { values, from } = await readValues(log);
      retainedFrom = Math.min(retainedFrom, from);
      if (reference === null) reference = [];
      for (let i = from; i < values.length; i++) {
        if (reference[i] !== undefined && reference[i] !== values[i]) {
          out.push(
            `replicas of ${TOPIC}/${p} differ at offset ${i}: ${reference[i]} vs ${values[i]}`,
          );
          break;
        }
        reference[i] = values[i]!;
      }
    }
    const values = reference ?? [];
    const dropped = (offset: number) => values[offset] === undefined && offset < retainedFrom;
    const seen = new Map<string, number>();
    values.forEach((v, offset) => {
      if (!sentValues.has(v)) {
        out.push(`${TOPIC}/${p} holds ${v} at ${offset}, which was never sent`);
      }
      if (seen.has(v)) {
        out.push(`${v} is stored twice in ${TOPIC}/${p}: ${seen.get(v)} and ${offset}`);
      }
      seen.set(v, offset);
    });
    for (const s of sent) {
      if (s.partition !== p || s.offset === null) continue;
      if (dropped(s.offset)) {
        stats.retentionDropped++;
        continue;
      }
      if (values[s.offset] !== s.value) {
        out.push(
          `${s.value} was acknowledged at ${TOPIC}/${p}:${s.offset} but ${
            values[s.offset] ?? "nothing"
          } is there`,
        );
      }
    }
    for (const s of sent) {
      // Acknowledged without an offset: it must be there all the same (unless retention may
      // have dropped it).
      if (s.partition === p && s.duplicate && !seen.has(s.value) && retainedFrom === 0) {
        out.push(
          `${s.value} was acknowledged as stored before (offset -1) but is not in ${TOPIC}/${p}`,
        );
      }
      if (s.partition === p && s.offset === null && seen.has(s.value)) {
        s.offset = seen.get(s.value)!;
      }
    }
    for (const r of reads.filter((r) => r.partition === p)) {
      if (dropped(r.offset)) continue;
      if (values[r.offset] !== r.value) {
        out.push(
          `a consumer read ${r.value} at ${TOPIC}/${p}:${r.offset}, but ${
            values[r.offset] ?? "nothing"
          } is there in the end (it read data that was not committed)`,
        );
        break;
      }
    }
  }
  return out;
}

/** The values of a replica's log, in offset order. */
/**
 * Every value of `log` by offset, from where it started when the read began (`from`); a read that
 * retention overtook starts again from the new start.
 */
async function readValues(log: Log): Promise<{ values: string[]; from: number }> {
  for (;;) {
    const from = log.logStartOffset;
    const values: string[] = [];
    try {
      let offset = from;
      while (offset < log.nextOffset) {
        const got = await log.read(offset, { bytesMax: 1 << 20, recordsMax: Infinity });
        for (const { off } of batchesIn(got.bytes)) {
          for (const r of decodeBatch(got.bytes, off, { recordsBytesMax: 1 << 24 })) {
            if (r.offset >= from) {
              values[r.offset] = r.value === null ? "" : decoder.decode(r.value);
            }
          }
        }
        if (got.nextOffset <= offset) break;
        offset = got.nextOffset;
      }
      return { values, from };
    } catch (err) {
      if (!(err instanceof OffsetOutOfRange) || log.logStartOffset <= from) throw err;
    }
  }
}

const decoder = new TextDecoder();

/** A partition group's entries are batches whose leading base offset each replica sets on apply. */
export function partitionEntrySkip(group: string): number {
  return group === META_GROUP ? 0 : BASE_OFFSET_BYTES;
}

const BASE_OFFSET_BYTES = 8;
