// Fan-out over real loopback TCP: many subscriptions of one partition, spread over a few client
// connections, each get every message once and in order, on a disk topic (one read from the log's
// memory shared by all of them) and a memory topic, with small and big batches and a credit window
// smaller than what is published. And a consumer lets go of the messages it has handed out.

import assert from "node:assert/strict";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { type Client, connect, type ReceivedMessage } from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { type RunningNode, startNode } from "../src/node.ts";

/** Longest the deliveries of one test may take before it fails instead of hanging. */
const DELIVERY_MS_MAX = 30_000;
const CONNECTIONS = 4;
const SUBSCRIPTIONS_PER_CONNECTION = 50;
/** Messages published; every fifth one is big enough not to be packed with others. */
const MESSAGES = 30;
const BIG_BYTES = 40 * 1024;

async function withBroker(body: (node: RunningNode) => Promise<void>): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-fanout-" });
  const node = await startNode(denoEnv(), { port: 0, broker: { dataDir } });
  try {
    await body(node);
  } finally {
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** Fails if `work` does not settle within DELIVERY_MS_MAX. */
async function bounded<T>(what: string, work: Promise<T>): Promise<T> {
  const timer = new AbortController();
  const timeout = denoEnv().clock.sleep(DELIVERY_MS_MAX, timer.signal).then(
    () => Promise.reject(new Error(`${what} did not end within ${DELIVERY_MS_MAX} ms`)),
    () => new Promise<never>(() => {}),
  );
  try {
    return await Promise.race([work, timeout]);
  } finally {
    timer.abort();
  }
}

function valueOf(i: number): string {
  const tag = `m${i}:`;
  return i % 5 === 4 ? tag.padEnd(BIG_BYTES, String.fromCharCode(97 + (i % 26))) : tag;
}

for (const persistence of ["disk", "memory"]) {
  Deno.test(
    `${
      CONNECTIONS * SUBSCRIPTIONS_PER_CONNECTION
    } subscriptions of a ${persistence} topic each get every message once, in order`,
    async () => {
      await withBroker(async (node) => {
        const clients: Client[] = [];
        try {
          for (let c = 0; c < CONNECTIONS; c++) {
            clients.push(await connect({ port: node.addr.port }));
          }
          const topic = `fan-${persistence}`;
          await clients[0]!.admin.createTopic(topic, { configs: { persistence } });
          const received: Promise<string[]>[] = [];
          for (const client of clients) {
            for (let s = 0; s < SUBSCRIPTIONS_PER_CONNECTION; s++) {
              // A window of 4 messages: most of the run waits on credit the consumer gives back.
              const sub = await client.subscribe(topic, { from: "latest", windowMessages: 4 });
              received.push((async () => {
                const got: string[] = [];
                let offset = -1;
                for await (const m of sub) {
                  assert.ok(m.offset > offset, `offsets grow: ${m.offset} after ${offset}`);
                  offset = m.offset;
                  m.ack();
                  got.push(m.text());
                  if (got.length === MESSAGES) break;
                }
                return got;
              })());
            }
          }
          const producer = clients[0]!.producer({ lingerMs: 0 });
          // Some one at a time (one batch per append), some together (several in one write).
          for (let i = 0; i < MESSAGES; i += 3) {
            const sends = [];
            for (let j = i; j < Math.min(i + 3, MESSAGES); j++) {
              sends.push(producer.send(topic, { value: valueOf(j) }));
              if (j % 2 === 0) await sends.at(-1);
            }
            await Promise.all(sends);
          }
          const all = await bounded("the fan-out", Promise.all(received));
          const want = Array.from({ length: MESSAGES }, (_, i) => valueOf(i));
          for (const [n, got] of all.entries()) {
            assert.equal(got.length, MESSAGES, `subscription ${n} got all`);
            assert.ok(
              got.every((v, i) => v === want[i]),
              `subscription ${n} got each once, in order`,
            );
          }
        } finally {
          for (const c of clients) await c.close();
        }
      });
    },
  );
}

Deno.test("a consumer that has handed out every message it received holds none of them", async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  await withBroker(async (node) => {
    const client = await connect({ port: node.addr.port });
    try {
      await client.admin.createTopic("kept");
      for (let i = 0; i < 5; i++) await client.publish("kept", { value: `m${i}` });
      const sub = await client.subscribe("kept", { from: "earliest" });
      const handedOut: WeakRef<ReceivedMessage>[] = [];
      await bounded(
        "reading 5 messages",
        (async () => {
          for (let i = 0; i < 5; i++) {
            const m = await sub.next();
            assert.ok(m !== null);
            m.ack();
            handedOut.push(new WeakRef(m));
          }
        })(),
      );
      // A weak reference holds its target until the task that made it ends.
      await new Promise((r) => setTimeout(r, 0));
      gc();
      const kept = handedOut.filter((w) => w.deref() !== undefined).length;
      assert.equal(kept, 0, `${kept} of 5 messages handed out are still held`);
      await sub.close();
    } finally {
      await client.close();
    }
  });
});
