// Seeded chaos for Raft alone (sim/raft_scenario.ts): 3 or 5 real RaftGroups on a network that
// delays, reorders, drops and duplicates, with leaders cut off right after they append, partitions
// healed just after a newer election, crashes mid-save, and the Raft shell's fault points. The
// Raft checker watches every step. A failure names its seed: `deno task sim --scenario raft --seed N`.

import assert from "node:assert/strict";
import { raftOptions, runRaft } from "../sim/raft_scenario.ts";
import type { RunResult } from "../sim/result.ts";

/** Seeds a planted bug gets to show itself. */
const PLANTED_SEEDS_MAX = 60;

async function firstCaught(
  run: (seed: number) => Promise<RunResult>,
  pattern: RegExp,
): Promise<number | null> {
  for (let seed = 1; seed <= PLANTED_SEEDS_MAX; seed++) {
    const r = await run(seed);
    if (r.violations.some((v) => pattern.test(v))) return seed;
  }
  return null;
}

Deno.test("raft: a leader committing an earlier term's entry by counting replicas (a planted bug) is caught as it commits", async () => {
  const seed = await firstCaught(
    (seed) => runRaft(raftOptions(seed, { plantedBugs: { commitPriorTermByCount: true } })),
    /moved its commit index from \d+ to \d+, an entry of term \d+/,
  );
  assert.notEqual(seed, null, `no seed in 1..${PLANTED_SEEDS_MAX} caught the Figure 8 commit`);
});

Deno.test("raft: a vote for a candidate with a staler log (a planted bug) is caught as it is granted", async () => {
  const seed = await firstCaught(
    (seed) => runRaft(raftOptions(seed, { plantedBugs: { voteWithoutLogCheck: true } })),
    /granted its (pre-)?vote in term \d+ to \S+, whose log was behind its own/,
  );
  assert.notEqual(seed, null, `no seed in 1..${PLANTED_SEEDS_MAX} caught the vote for a stale log`);
});

Deno.test("raft: an answer for entries still in memory, sent once a later leader replaced them durably, is legal (seed 7308)", async () => {
  // A follower accepted an entry of term 1 and queued its answer; before that entry was saved, a
  // term-2 leader's append replaced it, and the answer left after the replacement was durable.
  // That is a delayed message, not a broken promise: the checker used to call it one.
  const r = await runRaft(raftOptions(7308));
  assert.deepEqual(r.violations, []);
  assert.equal(r.outcome, "pass");
});

Deno.test("raft: a seed gives the same trace twice", async () => {
  for (let seed = 500; seed < 505; seed++) {
    const a = await runRaft(raftOptions(seed));
    const b = await runRaft(raftOptions(seed));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic`);
    assert.deepEqual(a.stats, b.stats);
  }
});
