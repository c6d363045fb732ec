import assert from "node:assert/strict";
import { calmDisk } from "../../sim/disk.ts";
import { runOnNode } from "../../sim/harness.ts";
import { Simulation } from "../../sim/simulation.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { Broker } from "./broker.ts";

function limitExceeded(pattern: RegExp): (err: unknown) => boolean {
  return (err) =>
    err instanceof GregorError && err.code === ErrorCode.LIMIT_EXCEEDED &&
    pattern.test(err.message);
}

Deno.test("partitionsTotalMax caps the partitions of all topics: create, grow and auto-create", async () => {
  const sim = new Simulation(3, { disk: calmDisk() });
  await runOnNode(sim, "n", async (env) => {
    const broker = await Broker.open(env, {
      dataDir: "data",
      partitionsTotalMax: 10,
      defaultPartitions: 3,
    });
    try {
      await broker.createTopic({ name: "a", partitions: 6, configs: {} });
      assert.throws(
        () => broker.createTopic({ name: "b", partitions: 5, configs: {} }),
        limitExceeded(
          /Cannot create topic b: the broker holds 6 partitions and may hold at most 10 \(partitionsTotalMax\); 5 more would pass it/,
        ),
      );
      await broker.createTopic({ name: "b", partitions: 4, configs: {} });
      assert.equal(broker.partitionCount, 10);
      await assert.rejects(
        broker.createPartitions({ name: "a", count: 7 }),
        limitExceeded(/Cannot grow topic a to 7: the broker holds 10 partitions/),
      );
      await assert.rejects(
        Promise.resolve().then(() => broker.topic("auto", true)),
        limitExceeded(/Cannot create topic auto/),
      );
      await broker.deleteTopic("b");
      await broker.createPartitions({ name: "a", count: 7 });
      assert.equal((await broker.topic("auto", true)).partitions.length, 3);
      assert.equal(broker.partitionCount, 10);
    } finally {
      await broker.close();
    }
  });
});

Deno.test("the broker keeps its storage within fileHandlesMax descriptors", async () => {
  const sim = new Simulation(4, { disk: { ...calmDisk(), handlesMax: 24 } });
  await runOnNode(sim, "n", async (env, node) => {
    const broker = await Broker.open(env, { dataDir: "data", fileHandlesMax: 16 });
    try {
      // Sixty partitions, each with a segment file, through sixteen handles.
      for (let t = 0; t < 4; t++) {
        await broker.createTopic({ name: `t${t}`, partitions: 15, configs: {} });
      }
      assert.ok(node.disk.openHandles <= 16, `${node.disk.openHandles} handles open`);
      assert.equal(node.disk.stats.tooManyOpenFiles, 0);
      assert.ok(broker.fileHandles.stats.evictions > 0);
    } finally {
      await broker.close();
    }
  });
});
