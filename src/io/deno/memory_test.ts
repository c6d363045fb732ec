import assert from "node:assert/strict";
import { memoryTrimmer, trimPeriodically } from "./memory.ts";

Deno.test("memoryTrimmer() finds glibc's malloc_trim where FFI for libc is granted, and nothing else", () => {
  const trimmer = memoryTrimmer();
  if (Deno.build.os !== "linux") return assert.equal(trimmer, null);
  assert.ok(trimmer !== null, "this test runs with --allow-all on glibc Linux");
  assert.match(trimmer.library, /libc\.so\.6$/);
  assert.equal(typeof trimmer.trim(), "boolean");
  assert.equal(memoryTrimmer(["/no/such/libc.so.6"]), null, "a library that is not there");
});

Deno.test("trimPeriodically() trims only when the resident set grew past its low mark by the slack", async () => {
  const rss = [100, 100, 105, 90, 120, 80, 95, 95];
  let at = 0;
  const trims: number[] = [];
  const stop = trimPeriodically({ library: "test", trim: () => (trims.push(at), true) }, {
    everyMs: 5,
    slackBytes: 10,
    rssBytes: () => rss[Math.min(at++, rss.length - 1)]!,
    cpuMicros: () => 0,
  });
  await new Promise((r) => setTimeout(r, 80));
  stop();
  // Low mark 100, then 90: 120 is 30 over it, trimmed (5 readings in); then 80, so 95 is 15 over
  // it: trimmed at every period from then on (7, 8, ...), as long as it stays there.
  assert.ok(trims.length >= 3, trims.join());
  assert.deepEqual(trims.slice(0, 3), [5, 7, 8]);
});

Deno.test("trimPeriodically() leaves a busy process alone, however far over its low mark", async () => {
  let cpu = 0;
  let rss = 100;
  const trims: number[] = [];
  const stop = trimPeriodically({ library: "test", trim: () => (trims.push(rss), true) }, {
    everyMs: 5,
    slackBytes: 10,
    rssBytes: () => rss,
    // 2 ms of CPU per 5 ms period: 40 %, busy.
    cpuMicros: () => (cpu += 2_000),
  });
  rss = 500;
  await new Promise((r) => setTimeout(r, 50));
  stop();
  assert.deepEqual(trims, []);
});
