// Seeded chaos for consumer groups and the idempotent producer: the real broker and client on the
// simulated network and disks, with members joining, leaving, crashing and restarting (some as
// static members), broker crashes with torn writes, partitions, pauses and resets; on one broker,
// and on a 3-broker replicating cluster whose group coordinator (the metadata leader) fails over.
// A failure names its seed and `deno task sim --scenario groups --seed N [--nodes 3]` replays it.

import assert from "node:assert/strict";
import { groupOptions, runGroups } from "../sim/group_scenario.ts";
import { SWEEPS } from "../sim/mutate/sweeps.ts";

/** The 3-broker sweep's seed range: the planted-bug tests look for a catch within it. */
const CLUSTER_SEEDS = SWEEPS.groups3.ciSeeds;
Deno.test("groups: without the commit fence (a planted bug) the checkers fail", async () => {
  let caught = 0;
  for (let seed = 1; seed <= 60; seed++) {
    const r = await runGroups(groupOptions(seed, { bugNoFence: 1 }));
    if (r.violations.some((v) => v.includes("accepted a commit"))) caught++;
  }
  assert.ok(caught > 0, "no seed caught a broker accepting commits from non-owners");
});

Deno.test("groups: a gap batch left unanswered is not sent past, so it can never be stored (seeds 2893, 3212)", async () => {
  // The rogue producer's batch past a gap was held up by the network and reached the broker after
  // the producer had filled the gap: it was then next in sequence, and stored.
  for (const seed of [2893, 3212]) {
    const r = await runGroups(groupOptions(seed));
    assert.deepEqual(r.violations, [], `seed ${seed}`);
  }
});

Deno.test("groups: a batch taken while a held-back log's producer state is rebuilt is not forgotten (seed 8795)", async () => {
  // After a crash on a full disk the log took appends again before the producers' state was
  // rebuilt from it; the rebuilt state replaced one that held a new epoch's first batch, and a
  // batch of the older epoch was then stored instead of fenced.
  const r = await runGroups(groupOptions(8795));
  assert.deepEqual(r.violations, []);
});

Deno.test("groups on a 3-broker cluster: a restarting broker's last incarnation is not checked as if it ran (seed 488)", async () => {
  // A broker that failed on a full disk kept restarting and dying before its node was up; the
  // checkers went on reading the Raft groups of the incarnation before, frozen in their last
  // state, and took its leaders for leaders that outlived their lease.
  const r = await runGroups(groupOptions(488, { nodes: 3 }));
  assert.deepEqual(r.violations, []);
});

Deno.test("groups: a seed gives the same trace twice, different seeds different traces", async () => {
  const hashes = new Set<string>();
  for (let seed = 3000; seed < 3010; seed++) {
    const a = await runGroups(groupOptions(seed));
    const b = await runGroups(groupOptions(seed));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic`);
    assert.deepEqual(a.stats, b.stats);
    hashes.add(a.traceHash);
  }
  assert.equal(hashes.size, 10);
});

Deno.test("groups on a 3-broker cluster: without the commit fence (a planted bug) the checkers fail", async () => {
  let caught = 0;
  for (let seed = 1; seed <= CLUSTER_SEEDS && caught === 0; seed++) {
    const r = await runGroups(groupOptions(seed, { nodes: 3, bugNoFence: 1 }));
    if (r.violations.some((v) => v.includes("accepted a commit"))) caught++;
  }
  assert.ok(caught > 0, "no cluster seed caught a coordinator accepting commits from non-owners");
});

Deno.test("groups on a 3-broker cluster: coordinators reusing generations (a planted bug) are caught", async () => {
  let caught = 0;
  for (let seed = 1; seed <= 20 && caught === 0; seed++) {
    const r = await runGroups(groupOptions(seed, { nodes: 3, bugReuseGenerations: 1 }));
    if (r.violations.some((v) => v.includes("handed out by two coordinators"))) caught++;
  }
  assert.ok(caught > 0, "no cluster seed caught two coordinators handing out one generation");
});

Deno.test("groups on a 3-broker cluster: a seed gives the same trace twice", async () => {
  const hashes = new Set<string>();
  for (let seed = 3000; seed < 3003; seed++) {
    const a = await runGroups(groupOptions(seed, { nodes: 3 }));
    const b = await runGroups(groupOptions(seed, { nodes: 3 }));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic with nodes: 3`);
    assert.deepEqual(a.stats, b.stats);
    hashes.add(a.traceHash);
  }
  assert.equal(hashes.size, 3);
});
