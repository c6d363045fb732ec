import assert from "node:assert/strict";
import { fitToOpenFiles, OPEN_FILES_RESERVED, parseOpenFilesLimit } from "./open_files.ts";

Deno.test("fitToOpenFiles leaves limits that fit alone, without a warning", () => {
  const limits = { connectionsMax: 100, fileHandlesMax: 200 };
  assert.deepEqual(fitToOpenFiles(limits, 300 + OPEN_FILES_RESERVED), { ...limits, warning: null });
});

Deno.test("fitToOpenFiles shares a low limit and says what it chose and why", () => {
  const fitted = fitToOpenFiles({ connectionsMax: 10_000, fileHandlesMax: 1024 }, 256);
  assert.equal(fitted.connectionsMax + fitted.fileHandlesMax + OPEN_FILES_RESERVED, 256);
  assert.equal(fitted.connectionsMax, 96);
  assert.equal(fitted.fileHandlesMax, 96);
  assert.match(
    fitted.warning ?? "",
    /open-file limit \(ulimit -n\) is 256, below the 11088 .* using connectionsMax 96 and fileHandlesMax 96/,
  );
});

Deno.test("fitToOpenFiles gives the other side what a small side does not need", () => {
  const few = fitToOpenFiles({ connectionsMax: 10, fileHandlesMax: 1024 }, 256);
  assert.deepEqual([few.connectionsMax, few.fileHandlesMax], [10, 182]);
  const tiny = fitToOpenFiles({ connectionsMax: 10_000, fileHandlesMax: 16 }, 256);
  assert.deepEqual([tiny.connectionsMax, tiny.fileHandlesMax], [176, 16]);
  // Below the reserve the broker still gets a few of each (and the warning says so).
  const absurd = fitToOpenFiles({ connectionsMax: 10_000, fileHandlesMax: 1024 }, 20);
  assert.deepEqual([absurd.connectionsMax, absurd.fileHandlesMax], [8, 8]);
});

Deno.test("parseOpenFilesLimit reads the soft limit of /proc/self/limits", () => {
  const text = [
    "Limit                     Soft Limit           Hard Limit           Units     ",
    "Max processes             127431               127431               processes ",
    "Max open files            1024                 524288               files     ",
  ].join("\n");
  assert.equal(parseOpenFilesLimit(text), 1024);
  assert.equal(parseOpenFilesLimit(text.replace("1024 ", "unlimited")), null);
  assert.equal(parseOpenFilesLimit(""), null);
});
