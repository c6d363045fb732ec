// Seeded chaos for consumer groups and the idempotent producer: the real broker and client on the
// simulated network and disks, with members joining, leaving, crashing and restarting (some as
// static members), broker crashes with torn writes, partitions, pauses and resets; on one broker,
// and on a 3-broker replicating cluster whose group coordinator (the metadata leader) fails over.
// A failure names its seed and `deno task sim --scenario groups --seed N [--nodes 3]` replays it.

import assert from "node:assert/strict";
import { groupOptions, runGroups } from "../sim/group_scenario.ts";
import { reproLine } from "../sim/runner.ts";

const CI_SEEDS = 300;
/**
 * Cluster-mode seeds (1..CLUSTER_SEEDS with `nodes: 3`): enough for a rogue member's backwards
 * commit to find a committed offset to go back from (seed 150 since Raft leaders wait for their
 * term to be durable; none in 1..149).
 */
const CLUSTER_SEEDS = 150;
/** What the misbehaving member does that the broker must refuse, or must not take as a release. */
const ROGUE_MEMBER_PATHS = [
  "rogueStaleCommitsRefused",
  "rogueBackwardsCommitsRefused",
  "rogueUnownedCommitsRefused",
  "rogueStaleHeartbeatsKeptOwnership",
];

Deno.test(`groups: ${CI_SEEDS} swarm seeds keep ownership exclusive, commits fenced and monotonic, every message processed`, async () => {
  const totals: Record<string, number> = {};
  const failures: string[] = [];
  for (let seed = 1; seed <= CI_SEEDS; seed++) {
    const r = await runGroups(groupOptions(seed));
    if (r.outcome === "fail") {
      failures.push(`${reproLine("groups", seed, {})}\n  ${r.violations.slice(0, 3).join("\n  ")}`);
    }
    for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
  }
  assert.deepEqual(failures, []);
  // Every path that makes groups hard must have been taken somewhere in the run.
  for (
    const k of [
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
    ]
  ) {
    assert.ok((totals[k] ?? 0) > 0, `path "${k}" never taken in ${CI_SEEDS} seeds`);
  }
  assert.ok(totals.verifiedMessages! >= totals.acked!);
});

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

Deno.test(`groups on a 3-broker cluster: ${CLUSTER_SEEDS} swarm seeds keep ownership exclusive and commits fenced across coordinator failovers, every message processed`, async () => {
  const totals: Record<string, number> = {};
  const failures: string[] = [];
  for (let seed = 1; seed <= CLUSTER_SEEDS; seed++) {
    const r = await runGroups(groupOptions(seed, { nodes: 3 }));
    if (r.outcome === "fail") {
      failures.push(
        `${reproLine("groups", seed, { nodes: "3" })}\n  ${r.violations.slice(0, 3).join("\n  ")}`,
      );
    }
    for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
  }
  assert.deepEqual(failures, []);
  // The coordinator must really have moved under the members, and the rest of the hard paths run.
  for (
    const k of [
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
    ]
  ) {
    assert.ok((totals[k] ?? 0) > 0, `path "${k}" never taken in ${CLUSTER_SEEDS} cluster seeds`);
  }
  assert.ok(totals.verifiedMessages! >= totals.acked!);
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
