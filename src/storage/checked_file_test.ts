import assert from "node:assert/strict";
import { NotFound } from "../io/errors.ts";
import type { Env } from "../io/types.ts";
import { readFile, writeFileAtomic } from "../io/util.ts";
import { calmDisk, type DiskFaults } from "../../sim/disk.ts";
import type { SimNode } from "../../sim/node.ts";
import { Simulation } from "../../sim/simulation.ts";
import { CorruptFileError, readChecked, writeChecked } from "./checked_file.ts";

/** Runs `body` as the only program of a simulated node with the given disk faults. */
async function onSim<T>(
  seed: number,
  faults: Partial<DiskFaults>,
  body: (env: Env, node: SimNode) => Promise<T>,
): Promise<T> {
  const sim = new Simulation(seed, { disk: { ...calmDisk(), ...faults } });
  let out: { value: T } | { error: unknown } | null = null;
  const node: SimNode = sim.addNode({
    name: "n",
    main: (env) =>
      body(env, node).then((value) => void (out = { value }), (error) => void (out = { error })),
  });
  await sim.world.run({ untilMs: 60_000, stop: () => out !== null });
  const done = out as { value: T } | { error: unknown } | null;
  if (done === null) throw new Error("the simulated program did not finish");
  if ("error" in done) throw done.error;
  return done.value;
}

Deno.test("readChecked() returns what writeChecked() stored, and NotFound for no file", async () => {
  await onSim(1, {}, async (env) => {
    await writeChecked(env.disk, "meta.json", '{"a":1}');
    assert.equal(await readChecked(env.disk, "meta.json"), '{"a":1}');
    const raw = new TextDecoder().decode(await readFile(env.disk, "meta.json"));
    assert.match(raw, /^\{"a":1\}\n#crc32c:[0-9a-f]{8}\n$/, "the file stays readable");
    await assert.rejects(readChecked(env.disk, "none.json"), NotFound);
  });
});

Deno.test("readChecked() reads through transient bit flips and refuses damage at rest", async () => {
  let flips = 0;
  for (let seed = 1; seed <= 20; seed++) {
    await onSim(seed, { readFlipProb: 0.3 }, async (env, node) => {
      const text = JSON.stringify({ offsets: { "t\u00000": 42, "t\u00001": 7 } });
      await writeChecked(env.disk, "g.json", text);
      assert.equal(await readChecked(env.disk, "g.json", 12), text, `seed ${seed}`);
      flips += node.disk.stats.readFlips;
    });
  }
  assert.ok(flips > 0, "no read was flipped: the test proves nothing");
  await onSim(2, {}, async (env, node) => {
    await writeChecked(env.disk, "g.json", '{"x":1}');
    node.disk.corruptAtRest("g.json", 3);
    await assert.rejects(readChecked(env.disk, "g.json"), CorruptFileError);
    await writeFileAtomic(env.disk, "plain.json", new TextEncoder().encode('{"x":1}'));
    await assert.rejects(readChecked(env.disk, "plain.json"), /no checksum line/);
  });
});
