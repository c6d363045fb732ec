import assert from "node:assert/strict";
import { runOnNode } from "../../../sim/harness.ts";
import { Simulation } from "../../../sim/simulation.ts";
import { readFile, writeFileAtomic } from "../../io/util.ts";
import { clusterIdFile, nodeIdFile } from "../../storage/layout.ts";
import { loadClusterId, loadOrCreateNodeId, nextIncarnation, saveClusterId } from "./node_id.ts";

Deno.test("loadOrCreateNodeId() creates 16 hex characters once and reads them back after", async () => {
  const sim = new Simulation(1);
  const [first, again, stored] = await runOnNode(sim, "n1", async (env) => {
    const a = await loadOrCreateNodeId(env, "var/lib/gregor");
    const b = await loadOrCreateNodeId(env, "var/lib/gregor");
    const bytes = await readFile(env.disk, nodeIdFile("var/lib/gregor"));
    return [a, b, new TextDecoder().decode(bytes)];
  });
  assert.match(first, /^[0-9a-f]{16}$/);
  assert.equal(again, first);
  assert.equal(stored, `${first}\n`);
});

Deno.test("loadOrCreateNodeId() makes the id durable: it survives a power loss right after", async () => {
  const sim = new Simulation(2);
  const ids: string[] = [];
  const node = sim.addNode({
    name: "n1",
    main: async (env) => {
      ids.push(await loadOrCreateNodeId(env, "deep/data/dir"));
      await new Promise(() => {});
    },
  });
  await sim.world.run({ stop: () => ids.length === 1 });
  sim.crash(node, "power");
  node.start();
  await sim.world.run({ stop: () => ids.length === 2 });
  assert.equal(ids[1], ids[0]);
});

Deno.test("loadOrCreateNodeId() takes an operator's id and refuses a file that holds no valid id", async () => {
  const sim = new Simulation(3);
  const results = await runOnNode(sim, "n1", async (env) => {
    await env.disk.mkdir("d");
    await writeFileAtomic(env.disk, "d/node-id", new TextEncoder().encode("  broker-7 \n"));
    const mine = await loadOrCreateNodeId(env, "d");
    await writeFileAtomic(env.disk, "d/node-id", new TextEncoder().encode("not valid!\n"));
    const bad = await loadOrCreateNodeId(env, "d").then(() => "accepted", (e: Error) => e.message);
    await writeFileAtomic(env.disk, "d/node-id", new Uint8Array([0xff, 0xfe]));
    const binary = await loadOrCreateNodeId(env, "d").then(
      () => "accepted",
      (e: Error) => e.message,
    );
    return { mine, bad, binary };
  });
  assert.equal(results.mine, "broker-7");
  assert.match(results.bad, /Cannot use the node id in d\/node-id: "not valid!" is not 1 to 64/);
  assert.match(results.binary, /not UTF-8/);
});

Deno.test("nextIncarnation() always rises, even when the wall clock went back", async () => {
  const sim = new Simulation(3);
  const seen = await runOnNode(sim, "n1", async (env, node) => {
    const out: number[] = [];
    out.push(await nextIncarnation(env, "data"));
    node.clock.wallOffsetMs -= 3_600_000; // an hour back
    out.push(await nextIncarnation(env, "data"));
    out.push(await nextIncarnation(env, "data"));
    return out;
  });
  assert.ok(seen[1]! > seen[0]! && seen[2]! > seen[1]!, `incarnations ${seen}`);
});

Deno.test("loadClusterId() is empty until saveClusterId(), then gives it back; a bad file is refused", async () => {
  const sim = new Simulation(4);
  const out = await runOnNode(sim, "n1", async (env) => {
    const before = await loadClusterId(env, "data");
    await saveClusterId(env, "data", "3a7d0c11e5f0b2a9");
    const after = await loadClusterId(env, "data");
    await writeFileAtomic(env.disk, clusterIdFile("data"), new TextEncoder().encode("a b\n"));
    const refused = await loadClusterId(env, "data").then(() => "", (e: Error) => e.message);
    return { before, after, refused };
  });
  assert.equal(out.before, "");
  assert.equal(out.after, "3a7d0c11e5f0b2a9");
  assert.match(out.refused, /Cannot use the cluster id in data\/cluster-id: "a b" is not/);
});
