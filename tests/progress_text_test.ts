// The words of gregorctl's progress line when the end is known: a bar, a percentage and an ETA at
// the rate so far, for the fractions a produce or consume passes through.

import assert from "node:assert/strict";
import { knownEndProgress, PROGRESS_BAR_CELLS } from "../cli/progress_text.ts";

Deno.test("a known end shows a bar, a percentage and the time left at the rate so far", () => {
  assert.equal(PROGRESS_BAR_CELLS, 20);
  // A quarter done in 1 s: three quarters, 3 s, to go.
  assert.equal(knownEndProgress(0.25, 1_000), "[#####...............] 25%, ETA 3 s");
  assert.equal(knownEndProgress(0.999, 10_000), "[###################.] 99%, ETA 1 s");
  assert.equal(knownEndProgress(1, 4_000), "[####################] 100%, ETA 0 s");
});

Deno.test("nothing done yet has no ETA; a fraction out of range is clamped", () => {
  assert.equal(knownEndProgress(0, 2_000), "[....................] 0%");
  assert.equal(knownEndProgress(Number.NaN, 2_000), "[....................] 0%");
  // Line ends counted a little differently than the file holds them may overshoot the end.
  assert.equal(knownEndProgress(1.02, 2_000), "[####################] 100%, ETA 0 s");
});
