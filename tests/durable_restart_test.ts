// Durable subscriptions across broker restarts, on a real process and a real disk: a durable
// subscriber that acknowledged offsets resumes after them when the broker comes back, whether it
// was stopped cleanly (SIGTERM) or killed (SIGKILL).

import assert from "node:assert/strict";
import { type Client, connect } from "../src/client/mod.ts";
import { type BrokerProcess, freePort, killAll, sleep, spawnBroker } from "./_broker_process.ts";

const TOPIC = "audit";
const DURABLE = "auditor";
/** Messages published before the first subscriber reads. */
const MESSAGES = 20;
/** The first subscriber acknowledges offsets 0..ACKED. */
const ACKED = 11;
/** Longer than the broker's offset flush period (200 ms by default), with room for a slow disk. */
const FLUSH_WAIT_MS = 1_000;

async function start(dataDir: string, port: number): Promise<BrokerProcess> {
  return await spawnBroker([
    "--port",
    String(port),
    "--data-dir",
    dataDir,
    "--no-metrics-enabled",
    "--log-format",
    "json",
  ]);
}

/** Subscribes under the durable name, acknowledges up to `ackUpTo`, and returns the start. */
async function consumeDurably(client: Client, ackUpTo: number): Promise<number> {
  const sub = await client.subscribe(TOPIC, { from: "earliest", durable: DURABLE });
  const start = sub.startOffset;
  if (start > ackUpTo) {
    await sub.close();
    return start;
  }
  for await (const m of sub) {
    m.ack();
    if (m.offset >= ackUpTo) break;
  }
  await sub.close();
  return start;
}

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  Deno.test({
    name: `a durable subscription resumes after its acknowledged offset across a ${signal} restart`,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const dataDir = await Deno.makeTempDir({ prefix: "gregormq-durable-" });
      const port = freePort();
      let broker = await start(dataDir, port);
      try {
        let client = await connect({ port });
        await client.admin.createTopic(TOPIC, { configs: { persistence: "disk" } });
        for (let i = 0; i < MESSAGES; i++) await client.publish(TOPIC, { value: `m${i}` });
        assert.equal(await consumeDurably(client, ACKED), 0);
        await sleep(FLUSH_WAIT_MS);
        await client.close();

        if (signal === "SIGTERM") {
          broker.child.kill("SIGTERM");
          assert.equal((await broker.child.status).code, 0);
        } else {
          await killAll([broker]);
        }
        broker = await start(dataDir, port);
        client = await connect({ port });
        const resumed = await consumeDurably(client, ACKED);
        assert.equal(
          resumed,
          ACKED + 1,
          `after a ${signal} restart the durable subscription started at ${resumed}, ` +
            `not after its acknowledged offset ${ACKED}`,
        );
        await client.close();
      } finally {
        await killAll([broker]);
        await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      }
    },
  });
}
