// Seeded damage at rest for the file log (sim/storage_scenario.ts): bytes flipped on the simulated
// disk in random batches, reads from random offsets with random limits and in order from the start,
// bits flipped on single reads, and the log's fault points (reads that forget where the last one
// ended). Every byte served must be what was written, or the read refused.

import assert from "node:assert/strict";
import { runStorage, storageOptions } from "../sim/storage_scenario.ts";

Deno.test("storage: a seed gives the same trace twice", async () => {
  for (let seed = 900; seed < 905; seed++) {
    const a = await runStorage(storageOptions(seed));
    const b = await runStorage(storageOptions(seed));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic`);
  }
});
