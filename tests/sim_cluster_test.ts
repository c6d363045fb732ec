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
