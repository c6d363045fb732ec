import assert from "node:assert/strict";
import type { Env } from "../io/types.ts";
import { encodeBatch, readBatchHeader } from "../protocol/batch.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { Acks } from "../protocol/messages.ts";
import { calmDisk } from "../../sim/disk.ts";
import { runOnNode } from "../../sim/harness.ts";
import { Simulation } from "../../sim/simulation.ts";
import { readChecked, writeChecked } from "../storage/checked_file.ts";
import { Broker } from "./broker.ts";
import { DEFAULT_BROKER_OPTIONS } from "./options.ts";
import { effectiveConfigs } from "./topic_store.ts";

const DATA = "data";

function produce(broker: Broker, topic: string, value: string) {
  const batch = encodeBatch([{ value: new TextEncoder().encode(value), timestamp: 0 }]);
  readBatchHeader(batch);
  return broker.produce({ topic, partition: 0, acks: Acks.leader, timeoutMs: 1000, batch });
}

/** Two disk topics, "good" and "bad", with one record each; the broker closed cleanly. */
async function twoTopics(env: Env): Promise<void> {
  const broker = await Broker.open(env, { dataDir: DATA });
  for (const name of ["good", "bad"]) {
    await broker.createTopic({ name, partitions: 1, configs: { persistence: "disk" } });
    await produce(broker, name, `${name}-0`);
  }
  await broker.close();
}

for (
  const [what, meta] of [
    ["garbage", null],
    ["a partition count of 0", { name: "bad", partitions: 0, configs: {} }],
    ["another topic's name", { name: "good", partitions: 1, configs: {} }],
    ["an unknown config", { name: "bad", partitions: 1, configs: { "color": "blue" } }],
  ] as const
) {
  Deno.test(`Broker.open() leaves out a topic whose topic.json holds ${what}, and serves the others`, async () => {
    const sim = new Simulation(1, { disk: calmDisk() });
    await runOnNode(sim, "n", async (env) => {
      await twoTopics(env);
      const path = `${DATA}/topics/bad/topic.json`;
      if (meta === null) {
        const f = await env.disk.open(path);
        await f.truncate(0);
        await f.writeAt(0, new TextEncoder().encode("garbage{"));
        await f.sync();
        f.close();
      } else {
        await writeChecked(env.disk, path, JSON.stringify(meta));
      }
      const before = await env.disk.open(path).then(async (f) => {
        const b = new Uint8Array(await f.size());
        await f.readAt(0, b);
        f.close();
        return b;
      });
      // A durable subscription's position on each topic.
      const positions = { "good\u00000\u0000d": 0, "bad\u00000\u0000d": 0 };
      await writeChecked(env.disk, `${DATA}/subscriptions.json`, JSON.stringify(positions));
      const reports: { msg: string; level?: string }[] = [];
      const broker = await Broker.open(env, { dataDir: DATA }, {
        onReport: (msg, level) => reports.push({ msg, level }),
      });
      assert.deepEqual(broker.listTopics().topics.map((t) => t.name), ["good"]);
      assert.equal((await produce(broker, "good", "good-1")).baseOffset, 1);
      const refused = reports.filter((r) => r.msg.startsWith("Cannot load topic bad: "));
      assert.equal(refused.length, 1, JSON.stringify(reports));
      assert.equal(refused[0]?.level, "error");
      assert.deepEqual([...broker.unloadableTopics().keys()], ["bad"]);
      // Neither a produce (which would auto-create it) nor a create writes over its files.
      for (
        const attempt of [
          (): unknown => produce(broker, "bad", "x"),
          () => broker.createTopic({ name: "bad", partitions: 1, configs: {} }),
          () => broker.describeTopic("bad"),
        ]
      ) {
        const err = await Promise.resolve().then(attempt).then(() => null, (e) => e);
        assert.ok(err instanceof GregorError && err.code === ErrorCode.PARTITION_DAMAGED, `${err}`);
        assert.match(
          err.message,
          /^Topic bad was not loaded at start: data\/topics\/bad\/topic\.json/,
        );
      }
      const after = await env.disk.open(path).then(async (f) => {
        const b = new Uint8Array(await f.size());
        await f.readAt(0, b);
        f.close();
        return b;
      });
      assert.deepEqual(after, before);
      // Deleting the other topic rewrites the positions: the unloaded topic's stay for later.
      await broker.deleteTopic("good");
      await broker.close();
      assert.deepEqual(
        JSON.parse(await readChecked(env.disk, `${DATA}/subscriptions.json`)),
        { "bad\u00000\u0000d": 0 },
      );
    });
  });
}

Deno.test("effectiveConfigs() refuses a config named after an Object method as unknown, not INTERNAL", () => {
  for (const key of ["valueOf", "toString", "constructor", "hasOwnProperty"]) {
    assert.throws(
      () => effectiveConfigs({ [key]: "1" }, DEFAULT_BROKER_OPTIONS),
      (err) =>
        err instanceof GregorError && err.code === ErrorCode.INVALID_REQUEST &&
        err.message.startsWith(`Unknown topic config ${key}; known: `),
      key,
    );
  }
});
