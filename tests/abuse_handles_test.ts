// File-handle exhaustion on a real broker process at a low `ulimit -n`: more disk partitions than
// descriptors, and a flood of connections past what the limit allows. The broker must warn at
// start, stay up, refuse what does not fit with a clear error, keep serving the clients it has,
// lose nothing it acknowledged, and recover all of it after a SIGKILL at the same limit.

import assert from "node:assert/strict";
import { type Client, connect } from "../src/client/mod.ts";
import { freePort, killAll, sleep, spawnBroker } from "./_broker_process.ts";

/** The broker's open-file limit: far fewer descriptors than the partitions below. */
const OPEN_FILES_MAX = 256;
const TOPICS = 40;
const PARTITIONS = 16;
/** Raw connections held open at once: more than the limit leaves room for. */
const FLOOD_CONNECTIONS = 200;
/** Subscriptions reading back at once. */
const READERS = 16;
/** Any single wait (a log line, a connection) is bounded by this. */
const WAIT_MS_MAX = 10_000;

const topicName = (t: number) => `handles-${t}`;

/** Every (topic, partition) the test writes to. */
const PLACES = Array.from(
  { length: TOPICS * PARTITIONS },
  (_, i) => ({ topic: topicName(Math.floor(i / PARTITIONS)), partition: i % PARTITIONS }),
);

/** The messages of one round: one per partition, all in flight at once; their offsets. */
async function writeRound(client: Client, round: number): Promise<number[]> {
  const producer = client.producer();
  const offsets = await Promise.all(
    PLACES.map(({ topic, partition }) =>
      producer.send(topic, { value: `round ${round} ${topic}/${partition}`, partition })
    ),
  );
  await producer.close();
  return offsets;
}

/** Reads every partition from the start: the values by place, in offset order. */
async function readBack(client: Client, count: number): Promise<string[][]> {
  const out: string[][] = [];
  for (let i = 0; i < PLACES.length; i += READERS) {
    const batch = PLACES.slice(i, i + READERS).map(async ({ topic, partition }) => {
      const sub = await client.subscribe(topic, { partition, from: "earliest" });
      const values: string[] = [];
      for await (const m of sub) {
        values[m.offset] = m.text();
        m.ack();
        if (values.length >= count) break;
      }
      await sub.close();
      return values;
    });
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

function expected(rounds: number): string[][] {
  return PLACES.map(({ topic, partition }) =>
    Array.from({ length: rounds }, (_, r) => `round ${r} ${topic}/${partition}`)
  );
}

/** What the broker sends a new connection before closing it (as text), within WAIT_MS_MAX. */
async function refusal(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), WAIT_MS_MAX);
  const chunks: Uint8Array[] = [];
  try {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
  return chunks.map((c) => new TextDecoder().decode(c)).join("");
}

async function waitFor(what: string, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS_MAX;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`Waited ${WAIT_MS_MAX} ms for ${what}`);
    await sleep(20);
  }
}

/** Descriptors the process holds now (Linux). */
function descriptors(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

Deno.test({
  name: `at ulimit -n ${OPEN_FILES_MAX} the broker serves ${
    TOPICS * PARTITIONS
  } disk partitions and a connection flood, refuses what does not fit, and loses nothing`,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "gregormq-handles-" });
    const port = freePort();
    const args = ["--port", String(port), "--data-dir", dataDir, "--no-metrics-enabled"];
    const start = () =>
      spawnBroker([...args, "--fsync", "always"], { openFilesMax: OPEN_FILES_MAX });
    let broker = await start();
    let died: string | null = null;
    const watch = (b: typeof broker) =>
      void b.child.status.then((s) => (died ??= `exit code ${s.code}, signal ${s.signal}`));
    watch(broker);
    const clients: Client[] = [];
    const flood: Deno.TcpConn[] = [];
    try {
      await waitFor(
        "the open-file warning",
        () =>
          broker.lines.some((l) => l.includes(`open-file limit (ulimit -n) is ${OPEN_FILES_MAX}`)),
      );
      const warning = JSON.parse(broker.lines.find((l) => l.includes("ulimit -n"))!);
      assert.equal(warning.level, "warn");
      const fitted = /using connectionsMax (\d+) and fileHandlesMax (\d+)/.exec(warning.msg);
      assert.ok(fitted !== null, warning.msg);
      const connectionsMax = Number(fitted[1]);

      const client = await connect({ port, connectTimeoutMs: WAIT_MS_MAX });
      clients.push(client);
      for (let t = 0; t < TOPICS; t++) {
        await client.admin.createTopic(topicName(t), { partitions: PARTITIONS });
      }
      assert.deepEqual(await writeRound(client, 0), PLACES.map(() => 0));

      // Hold more connections than the limit has room for; the extra ones are refused or closed.
      for (let i = 0; i < FLOOD_CONNECTIONS; i++) {
        flood.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      }
      // One more is answered with why before it is closed (answers are rationed per second, and
      // the flood spent this second's).
      await sleep(1_100);
      const refused = await refusal(port);
      assert.match(refused, new RegExp(`Connection limit of ${connectionsMax} reached`));
      // The connected client is served all the same, and the process keeps its headroom.
      assert.deepEqual(await writeRound(client, 1), PLACES.map(() => 1));
      const held = descriptors(broker.child.pid);
      assert.ok(held < OPEN_FILES_MAX - 16, `the broker holds ${held} descriptors`);
      for (const c of flood.splice(0)) c.close();
      const second = await connect({ port, connectTimeoutMs: WAIT_MS_MAX });
      clients.push(second);
      assert.deepEqual(await readBack(second, 2), expected(2));
      assert.equal(died, null, `the broker died: ${died}\n${broker.lines.join("\n")}`);

      // A SIGKILL, then recovery of every partition within the same limit.
      for (const c of clients.splice(0)) await c.close();
      await killAll([broker]);
      died = null;
      broker = await start();
      watch(broker);
      const after = await connect({ port, connectTimeoutMs: WAIT_MS_MAX });
      clients.push(after);
      assert.deepEqual(await readBack(after, 2), expected(2));
      assert.deepEqual(await writeRound(after, 2), PLACES.map(() => 2));
      assert.equal(died, null, `the broker died: ${died}\n${broker.lines.join("\n")}`);
    } finally {
      for (const c of flood) c.close();
      for (const c of clients) await c.close().catch(() => {});
      await killAll([broker]);
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
