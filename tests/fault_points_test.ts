// Every fault point in the code must be one CI requires to fire (issue [M]: "each point is a
// 'sometimes' event CI requires to fire"). A point is a name passed to `fires("…")` (or to the
// file log's `#slowStep("…")`, which asks `fires` with it) in src/ or sim/; the seeded sweeps
// (sim/sweeps_test.ts) list each one they require as "buggify:<name>". A new point added without
// joining that list fails here, before it can be a branch no seed ever takes.

import assert from "node:assert/strict";

const REPO = new URL("..", import.meta.url).pathname;
/** Calls that name a fault point with a string literal. */
const POINT_CALL = /(?:\bfires|#slowStep)\(\s*"([^"]+)"/g;
/** Points in the code today; fewer found means the pattern above went stale, not the code. */
const POINTS_MIN = 9;

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${REPO}${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await sourceFiles(path));
    else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) out.push(path);
  }
  return out;
}

Deno.test("every fault point in src/ and sim/ is one the CI sweeps require to fire", async () => {
  const points = new Map<string, string>();
  for (const file of [...await sourceFiles("src"), ...await sourceFiles("sim")]) {
    const text = await Deno.readTextFile(`${REPO}${file}`);
    for (const m of text.matchAll(POINT_CALL)) points.set(m[1]!, file);
  }
  assert.ok(
    points.size >= POINTS_MIN,
    `only ${points.size} fault points found: ${[...points.keys()]}`,
  );
  const sweeps = await Deno.readTextFile(`${REPO}sim/sweeps_test.ts`);
  const required = new Set([...sweeps.matchAll(/"buggify:([^"]+)"/g)].map((m) => m[1]!));
  const missing = [...points].filter(([name]) => !required.has(name));
  assert.deepEqual(
    missing.map(([name, file]) => `${name} (${file})`),
    [],
    "fault points no CI sweep requires to fire",
  );
  // And the other way: a required point that is gone from the code would never fire.
  const gone = [...required].filter((name) => !points.has(name));
  assert.deepEqual(gone, [], "sweeps require fault points the code no longer has");
});
