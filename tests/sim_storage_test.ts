// Seeded damage at rest for the file log (sim/storage_scenario.ts): bytes flipped on the simulated
// disk in random batches, reads from random offsets with random limits and in order from the start,
// bits flipped on single reads, and the log's fault points (reads that forget where the last one
// ended). Every byte served must be what was written, or the read refused.

import assert from "node:assert/strict";
import { runStorage, storageOptions } from "../sim/storage_scenario.ts";
import { reproLine } from "../sim/runner.ts";

const CI_SEEDS = 300;

Deno.test(`storage: ${CI_SEEDS} seeds of damage at rest never serve a wrong byte`, async () => {
  const totals: Record<string, number> = {};
  const failures: string[] = [];
  for (let seed = 1; seed <= CI_SEEDS; seed++) {
    const r = await runStorage(storageOptions(seed));
    if (r.outcome === "fail") {
      failures.push(
        `${reproLine("storage", seed, {})}\n  ${r.violations.slice(0, 3).join("\n  ")}`,
      );
    }
    for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
  }
  assert.deepEqual(failures, []);
  for (
    const k of [
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
    ]
  ) {
    assert.ok((totals[k] ?? 0) > 0, `path "${k}" never taken in ${CI_SEEDS} seeds`);
  }
});

Deno.test("storage: a seed gives the same trace twice", async () => {
  for (let seed = 900; seed < 905; seed++) {
    const a = await runStorage(storageOptions(seed));
    const b = await runStorage(storageOptions(seed));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic`);
  }
});
