// Availability under network cuts, in the simulator (issue [R]): three brokers with the product's
// default Raft timings and a client with the client's defaults, quorum produces to every partition
// of an RF=3 topic. Established connections caught in a cut resume after it only at the sender's
// next TCP retransmission (sim/net.ts), as on a real network. Every figure is printed; a failure
// names its seed: `runAvailability({ seed, script, windowMs })` replays it.

import assert from "node:assert/strict";
import { type AvailabilityResult, runAvailability } from "../sim/availability_scenario.ts";
import { RAFT_DEFAULTS } from "../src/cluster/raft/limits.ts";

/** Acknowledgements resume on every partition within this long of a cut, ms (the target). */
const RESUME_MS_MAX = 3_000;
/**
 * The majority has a leader of every group within this long of a cut, ms: a follower campaigns a
 * drawn election timeout (base to twice the base) after the last heartbeat, and a split vote costs
 * one timeout more.
 */
const LEADER_MS_MAX = 2 * 2 * RAFT_DEFAULTS.electionTimeoutMs;
/** How long each cut lasts, ms (as in the multi-host test). */
const WINDOW_MS = 8_000;
const SEEDS = 8;

function check(results: AvailabilityResult[]): void {
  const problems: string[] = [];
  const resumed: number[] = [];
  const led: number[] = [];
  for (const r of results) {
    const at = `seed ${r.seed} (${r.script})`;
    for (const v of r.violations) problems.push(`${at}: ${v}`);
    if (r.windows.length === 0) problems.push(`${at}: no cut was made`);
    for (const w of r.windows) {
      w.resumedMs.forEach((ms, p) => {
        resumed.push(ms ?? Infinity);
        if (ms === null || ms > RESUME_MS_MAX) {
          problems.push(`${at}, ${w.what}: partition ${p} acknowledged again after ${ms} ms`);
        }
      });
      w.leaderMs.forEach((ms, g) => {
        led.push(ms ?? Infinity);
        if (ms === null || ms > LEADER_MS_MAX) {
          const group = g === 0 ? "the metadata group" : `partition ${g - 1}`;
          problems.push(`${at}, ${w.what}: the majority had no leader of ${group} for ${ms} ms`);
        }
      });
    }
  }
  const spread = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return `median ${Math.round(s[s.length >> 1]!)} ms, max ${Math.round(s.at(-1)!)} ms`;
  };
  console.log(`acks resumed: ${spread(resumed)}; majority led every group: ${spread(led)}`);
  assert.deepEqual(problems, []);
}

Deno.test(`availability (sim): a leader cut off from its peers; acks resume within ${RESUME_MS_MAX} ms, seeds 1..${SEEDS}`, async () => {
  const results = [];
  for (let seed = 1; seed <= SEEDS; seed++) {
    results.push(await runAvailability({ seed, script: "leader", windowMs: WINDOW_MS }));
  }
  check(results);
});

Deno.test(`availability (sim): the minority flips every ${WINDOW_MS} ms; each majority elects and acks resume, seeds 1..${SEEDS}`, async () => {
  const results = [];
  for (let seed = 1; seed <= SEEDS; seed++) {
    results.push(await runAvailability({ seed, script: "flip", windowMs: WINDOW_MS }));
  }
  check(results);
});

Deno.test(`availability (sim): the client's first server killed, its next one gone; acks resume within ${RESUME_MS_MAX} ms, seeds 1..${SEEDS}`, async () => {
  const results = [];
  for (let seed = 1; seed <= SEEDS; seed++) {
    results.push(await runAvailability({ seed, script: "kill", windowMs: WINDOW_MS }));
  }
  check(results);
});

Deno.test("availability (sim): a seed replays the same figures", async () => {
  const a = await runAvailability({ seed: 3, script: "leader", windowMs: WINDOW_MS });
  const b = await runAvailability({ seed: 3, script: "leader", windowMs: WINDOW_MS });
  assert.deepEqual(a, b);
});
