// Seeded chaos for replication: 3- and 5-node clusters of real broker nodes (gossip, the metadata
// Raft group, a Raft group per partition, the WAL) on the simulated network and disks, with an
// idempotent quorum-acks producer, node crashes (torn and lost unsynced writes), partitions (also
// one-way), pauses, clock jumps, bit flips and failed fsyncs; then healing and a power loss of
// every node. Replicas keep their batches in segment logs on the simulated disks and checkpoint
// every few hundred bytes, so partition Raft logs compact, replicas restore from snapshots and
// fetch what they lack from peers; half the seeds give them a retention of a few KB, so retention
// deletes segments too. At the final power loss one node's replica gets a byte of a sealed segment
// flipped at rest, which it must repair from its peers. A failure names its seed:
// `deno task sim --scenario cluster --seed N` replays it.

import assert from "node:assert/strict";
import { clusterOptions, runCluster } from "../sim/cluster_scenario.ts";
import { reproLine } from "../sim/runner.ts";

/** Seeds 1..CI_SEEDS: as many as the time this file had for 300 before the simulator sped up. */
const CI_SEEDS = 340;

Deno.test(`cluster: ${CI_SEEDS} swarm seeds keep every acknowledged write, one leader per term, and converge`, async () => {
  const totals: Record<string, number> = {};
  const failures: string[] = [];
  let nodes5 = 0;
  for (let seed = 1; seed <= CI_SEEDS; seed++) {
    const opts = clusterOptions(seed);
    if (opts.nodes === 5) nodes5++;
    const r = await runCluster(opts);
    if (r.outcome === "fail") {
      failures.push(
        `${reproLine("cluster", seed, {})}\n  ${r.violations.slice(0, 3).join("\n  ")}`,
      );
    }
    for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
  }
  assert.deepEqual(failures, []);
  assert.ok(nodes5 > 0 && nodes5 < CI_SEEDS, "both cluster sizes ran");
  // The "sometimes" paths: each must fire somewhere in the run, or the run proves less.
  for (
    const k of [
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
    ]
  ) {
    assert.ok((totals[k] ?? 0) > 0, `path "${k}" never taken in ${CI_SEEDS} seeds`);
  }
});

Deno.test("cluster: acknowledging a produce before it commits (a planted bug) is caught", async () => {
  const caught: number[] = [];
  for (let seed = 1; seed <= 60 && caught.length === 0; seed++) {
    const r = await runCluster(clusterOptions(seed, { bugAckBeforeCommit: 1 }));
    if (r.violations.some((v) => v.includes("was acknowledged at"))) caught.push(seed);
  }
  assert.ok(caught.length > 0, "no seed in 1..60 caught an acknowledged write that was lost");
});

Deno.test("cluster: votes that ignore the candidate's log (a planted Raft bug) are caught", async () => {
  const caught: number[] = [];
  for (let seed = 1; seed <= 60 && caught.length === 0; seed++) {
    const r = await runCluster(clusterOptions(seed, { bugVoteWithoutLogCheck: 1 }));
    if (r.outcome === "fail") caught.push(seed);
  }
  assert.ok(caught.length > 0, "no seed in 1..60 caught the vote bug");
});

Deno.test("cluster: a seed gives the same trace twice, different seeds different traces", async () => {
  const hashes = new Set<string>();
  for (let seed = 4000; seed < 4006; seed++) {
    const a = await runCluster(clusterOptions(seed));
    const b = await runCluster(clusterOptions(seed));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic`);
    assert.deepEqual(a.stats, b.stats);
    hashes.add(a.traceHash);
  }
  assert.equal(hashes.size, 6);
});
