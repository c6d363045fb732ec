// The seeded sweeps CI runs: every scenario over its CI seed range (sim/mutate/sweeps.ts holds the
// ranges, which `deno task mutate` scores planted bugs against), in worker threads (sim/sweep.ts).
// They live here, not beside each scenario's other tests in tests/, so that `deno test` (which takes
// files in path order) starts them first: they are the longest CPU-bound tests of the suite, and the
// process tests that follow spend most of their time waiting on sockets and child processes.
// A failure names its seed; `deno task sim --scenario S --seed N` replays it.
//
// Each sweep also requires its "sometimes" paths (faults injected, fault points fired, rare
// recoveries taken) to have happened somewhere in its range: a path that never ran proves nothing.

import assert from "node:assert/strict";
import { clusterOptions } from "./cluster_scenario.ts";
import { SWEEPS } from "./mutate/sweeps.ts";
import { sweep } from "./sweep.ts";

/** What the misbehaving member does that the broker must refuse, or must not take as a release. */
const ROGUE_MEMBER_PATHS = [
  "rogueStaleCommitsRefused",
  "rogueBackwardsCommitsRefused",
  "rogueUnownedCommitsRefused",
  "rogueStaleHeartbeatsKeptOwnership",
];

/** Every one of `paths` must have been taken (its counter above 0) somewhere in the sweep. */
function assertTaken(totals: Record<string, number>, seeds: number, paths: string[]): void {
  for (const k of paths) {
    assert.ok((totals[k] ?? 0) > 0, `path "${k}" never taken in ${seeds} seeds`);
  }
}

const CLUSTER = SWEEPS.cluster.ciSeeds;

Deno.test(`cluster: ${CLUSTER} swarm seeds keep every acknowledged write, one leader per term, and converge`, async () => {
  const { failures, totals } = await sweep("cluster", 1, CLUSTER);
  assert.deepEqual(failures, []);
  let nodes5 = 0;
  for (let seed = 1; seed <= CLUSTER; seed++) if (clusterOptions(seed).nodes === 5) nodes5++;
  assert.ok(nodes5 > 0 && nodes5 < CLUSTER, "both cluster sizes ran");
  // The "sometimes" paths: each must fire somewhere in the run, or the run proves less.
  assertTaken(totals, CLUSTER, [
    "acked",
    "consumerReads", // live consumers read (committed data only) while faults went on
    "proposalsLost", // a leader lost leadership with produces in flight
    "followerCatchUps", // a follower far behind caught up after a partition or crash
    "producerIds", // the id asker got ids, across controller failovers
    "walRepairs", // a torn WAL tail truncated, then refilled from a replica
    "metaCompactions", // the metadata log compacted into a snapshot
    "metaRestores", // a node restored the metadata from a snapshot (restart or install)
    "replicaCompactions", // a partition's Raft log compacted through a synced checkpoint
    "replicaRestores", // a replica far behind installed a partition snapshot
    "replicaFetches", // a replica behind a snapshot fetched batches from a peer's segment log
    "raftTruncations", // a follower cut a conflicting suffix off its Raft log
    "replicaSnapshotStarts", // a replica restarted from its compacted log
    "replicaRepairs", // a replica whose sealed segment was flipped at rest refilled from peers
    "leaderTransfers", // a leader handed its partition back to the preferred replica
    "replicaMoves", // the controller moved a partition off a node down past replicaMoveAfterMs
    "retentionDropped", // acknowledged writes retention had dropped (not checkable, counted)
    "nodeCrashes",
    "partitions",
    "oneWays",
    "pauses",
    "syncFailures",
    "readFlips",
    // Fault points in the Raft shell (sim/buggify.ts).
    "buggify:raft.receive.drop",
    "buggify:raft.receive.duplicate",
    "buggify:raft.receive.hold",
    "buggify:raft.ready.slow-save",
  ]);
});

const GROUPS = SWEEPS.groups.ciSeeds;

Deno.test(`groups: ${GROUPS} swarm seeds keep ownership exclusive, commits fenced and monotonic, every message processed`, async () => {
  const { failures, totals } = await sweep("groups", 1, GROUPS);
  assert.deepEqual(failures, []);
  // Every path that makes groups hard must have been taken somewhere in the run.
  assertTaken(totals, GROUPS, [
    "revocations",
    "expiries",
    "fencedStatic",
    "leaves",
    "commitsAccepted",
    "commitsRejectedStale",
    "commitsRejectedUnknown",
    "memberRejoins",
    "reprocessed",
    "brokerCrashes",
    "memberCrashes",
    "partitions",
    "pauses",
    "resets",
    // The misbehaving clients' steps the broker must refuse (sim/group_rogue.ts).
    ...ROGUE_MEMBER_PATHS,
    "rogueReplaysAnswered",
    "rogueGapsRefused",
    "rogueEpochBumps",
    "rogueFencedRefused",
  ]);
  assert.ok(totals.verifiedMessages! >= totals.acked!);
});

const GROUPS3 = SWEEPS.groups3.ciSeeds;

Deno.test(`groups on a 3-broker cluster: ${GROUPS3} swarm seeds keep ownership exclusive and commits fenced across coordinator failovers, every message processed`, async () => {
  const { failures, totals } = await sweep("groups", 1, GROUPS3, { nodes: "3" });
  assert.deepEqual(failures, []);
  // The coordinator must really have moved under the members, and the rest of the hard paths run.
  assertTaken(totals, GROUPS3, [
    "coordinatorFailovers",
    "coordinatorMoves",
    "coordinatorStepDowns",
    "revocations",
    "expiries",
    "fencedStatic",
    "leaves",
    "commitsAccepted",
    // A coordinator that took over knows no member: commits from before are refused.
    "commitsRejectedUnknown",
    "memberRejoins",
    "reprocessed",
    "brokerCrashes",
    "memberCrashes",
    "metaCompactions",
    "metaRestores",
    "partitions",
    "pauses",
    "resets",
    ...ROGUE_MEMBER_PATHS,
  ]);
  assert.ok(totals.verifiedMessages! >= totals.acked!);
});

const PUBSUB = SWEEPS.pubsub.ciSeeds;

Deno.test(`pubsub: ${PUBSUB} swarm seeds keep every acknowledged message, and every fault path fires`, async () => {
  const { failures, totals } = await sweep("pubsub", 1, PUBSUB);
  assert.deepEqual(failures, []);
  // A fault path that never fired proves nothing; "crashesMidWrite" is the issue's own demand.
  assertTaken(totals, PUBSUB, [
    "publishesAcked",
    "publishesUnknown",
    "redeliveries",
    "messagesNotProcessed",
    "messagesRedelivered",
    "partitions",
    "oneWays",
    "pauses",
    "resets",
    "diskFulls",
    "brokerCrashes",
    "brokerFatalExits",
    "crashesMidWrite",
    "writesTorn",
    "writesCorrupted",
    "syncFailures",
    "readFlips",
    "storageReports",
    "verifiedOffsets",
    // A durable subscriber came back after a broker crash to progress saved on disk.
    "durableResumesAfterCrash",
    "damageRepairs",
    // Fault points in the file log and the broker (sim/buggify.ts).
    "buggify:storage.append.before-sync",
    "buggify:storage.read.forget-resume",
    "buggify:broker.produce.before-answer",
  ]);
  // The final verifier read back at least every acknowledged offset of every seed.
  assert.ok(totals.verifiedOffsets! >= totals.publishesAcked!);
});

const RAFT = SWEEPS.raft.ciSeeds;

Deno.test(`raft: ${RAFT} seeds keep Raft's safety properties on every step, and converge`, async () => {
  const { failures, totals } = await sweep("raft", 1, RAFT);
  assert.deepEqual(failures, []);
  // The "sometimes" paths, the fault points among them: each must fire somewhere.
  assertTaken(totals, RAFT, [
    "acked",
    "crashes",
    "leaderIsolations",
    "quickHeals",
    "messagesDropped",
    "messagesDuplicated",
    "raftRestartsChecked",
    "compactions",
    "snapshotRestores", // a restart from a compacted log, or a laggard installing a snapshot
    "buggify:raft.receive.drop",
    "buggify:raft.receive.duplicate",
    "buggify:raft.receive.hold",
    "buggify:raft.ready.slow-save",
    "buggify:raft.save.crash",
  ]);
});

const STORAGE = SWEEPS.storage.ciSeeds;

Deno.test(`storage: ${STORAGE} seeds of damage at rest never serve a wrong byte`, async () => {
  const { failures, totals } = await sweep("storage", 1, STORAGE);
  assert.deepEqual(failures, []);
  assertTaken(totals, STORAGE, [
    "served",
    "refused",
    "damagedBatches",
    "servedBeforeDamage",
    "timeLookups",
    "earlyReads",
    "retentionChecks",
    "reopens",
    "buggify:storage.read.forget-resume",
    "buggify:storage.append.before-sync",
    "buggify:storage.roll.before-create",
  ]);
});

/** Gossip seeds: 300, as before the sweeps moved here (about 0.15 s a seed). */
const GOSSIP = 300;

Deno.test(`gossip: ${GOSSIP} swarm seeds converge within their bounds, and every fault path fires`, async () => {
  const { failures, totals } = await sweep("gossip", 1, GOSSIP);
  assert.deepEqual(failures, []);
  // Refutations need an impostor or a clock that went back: tests/sim_gossip_test.ts has them.
  assertTaken(totals, GOSSIP, [
    "powerCrashes",
    "processCrashes",
    "restarts",
    "partitions",
    "oneWays",
    "pauses",
    "resets",
    "netHeldSegments",
    "lateJoiners",
    "suspectMarks",
    "deadMarks",
    "failedExchanges",
    "victimKnown",
    "victimMarkedDead",
    "joinKnownInBound",
  ]);
  // Every seed got its fresh joiner known to all within the bound, and its crashed node dead.
  assert.equal(totals.joinKnownInBound, GOSSIP);
  assert.equal(totals.victimMarkedDead, totals.victimKnown);
});
