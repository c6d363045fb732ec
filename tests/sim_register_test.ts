// Seeded chaos in CI: the register example under swarm faults, its determinism, and proof that its
// checker catches a planted bug. The seed ranges are fixed so a failure names its seed.

import assert from "node:assert/strict";
import { registerOptions, runRegister } from "../sim/example/register_scenario.ts";
import { reproLine } from "../sim/runner.ts";

const CI_SEEDS = 200;

Deno.test(`register example: ${CI_SEEDS} swarm seeds, no violation, every fault path taken`, async () => {
  const totals: Record<string, number> = {};
  const failures: string[] = [];
  for (let seed = 1; seed <= CI_SEEDS; seed++) {
    const r = await runRegister(registerOptions(seed));
    if (r.outcome === "fail") {
      failures.push(
        `${reproLine("register", seed, {})}\n  ${r.violations.slice(0, 3).join("\n  ")}`,
      );
    }
    for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
  }
  assert.deepEqual(failures, []);
  // "Sometimes" checks: a fault path that never fired means the run proved nothing about it.
  for (
    const k of [
      "putsOk",
      "putsUnknown",
      "getsOk",
      "partitions",
      "oneWays",
      "powerCrashes",
      "processCrashes",
      "pauses",
      "resets",
      "wallJumps",
      "crashesWithPending",
      "writesKept",
      "writesDropped",
      "writesTorn",
      "writesCorrupted",
      "syncFailures",
      "readFlips",
      "readErrors",
      "noSpace",
      "netHeldSegments",
      "fatalExits",
    ]
  ) {
    assert.ok((totals[k] ?? 0) > 0, `fault path "${k}" never fired in ${CI_SEEDS} seeds`);
  }
});

Deno.test("register example: a seed gives the same trace twice, different seeds different traces", async () => {
  const hashes = new Set<string>();
  for (let seed = 1000; seed < 1020; seed++) {
    const a = await runRegister(registerOptions(seed));
    const b = await runRegister(registerOptions(seed));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic`);
    assert.equal(a.events, b.events);
    assert.deepEqual(a.stats, b.stats);
    hashes.add(a.traceHash);
  }
  assert.equal(hashes.size, 20, "20 seeds should give 20 different traces");
});

Deno.test("register example: the checker catches the planted ack-before-sync bug", async () => {
  const caught: number[] = [];
  for (let seed = 1; seed <= 40 && caught.length < 3; seed++) {
    const r = await runRegister(registerOptions(seed, { bug: "ack-before-sync" }));
    if (r.outcome === "fail") {
      assert.ok(r.violations.some((v) => /^(lost write|stale read)/.test(v)), r.violations[0]);
      caught.push(seed);
    }
  }
  assert.ok(caught.length >= 3, `the planted bug was caught on seeds [${caught}] only`);
});

Deno.test("register example: with faults off every write is acknowledged and the run is fast", async () => {
  const r = await runRegister(registerOptions(7, { faults: "calm" }));
  assert.equal(r.outcome, "pass", r.violations.join("\n"));
  assert.ok(r.stats.putsOk! > 100);
  assert.equal(r.stats.putsUnknown, 0);
  assert.equal(r.stats.fatalExits, 0);
});
