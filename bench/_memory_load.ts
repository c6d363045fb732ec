// A load in its own process for bench/memory_return.ts, for GregorMQ or NATS alike; it prints
// "done <what it did>" and exits 0 once the load is over and its connections are closed.
//
//   deno run -A bench/_memory_load.ts gregormq|nats PORT flood CLIENTS
//     CLIENTS connections, each subscribed to one topic; MESSAGES_PER_FLOOD messages of 1 KiB are
//     published there and every connection must receive all of them; then all close at once.
//   deno run -A bench/_memory_load.ts gregormq|nats PORT burst SECONDS
//     one producer sends 100 B messages as fast as its window allows for SECONDS, one consumer
//     reads every one of them; then both close. GregorMQ's topic is on disk with fsync never.

import { connect as connectGregor } from "../src/client/mod.ts";
import type { Client } from "../src/client/mod.ts";
import type { NatsConnection } from "nats";

const HOST = "127.0.0.1";
/** Messages each flooding connection must receive. */
const MESSAGES_PER_FLOOD = 100;
/** Connections opened at once while flooding. */
const CONNECTS_AT_ONCE = 100;
/** GregorMQ producer sends in flight before waiting for half of them. */
const WINDOW_MESSAGES = 10_000;
/** The process ends by itself after this long, whatever happens, ms. */
const LIFETIME_MS_MAX = 5 * 60_000;
/** Waiting for the last deliveries after the last send, ms. */
const DRAIN_MS_MAX = 60_000;

function usage(): never {
  throw new Error("usage: bench/_memory_load.ts gregormq|nats PORT flood CLIENTS|burst SECONDS");
}

/** Resolves when `count()` reaches `want`, polling; throws after DRAIN_MS_MAX. */
async function until(count: () => number, want: number, what: string): Promise<void> {
  const deadline = Date.now() + DRAIN_MS_MAX;
  while (count() < want) {
    if (Date.now() > deadline) {
      throw new Error(`${what}: ${count()} of ${want} after ${DRAIN_MS_MAX} ms`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function inBatches<T>(n: number, open: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += CONNECTS_AT_ONCE) {
    const batch = Array.from({ length: Math.min(CONNECTS_AT_ONCE, n - i) }, (_, k) => open(i + k));
    out.push(...await Promise.all(batch));
  }
  return out;
}

function gregor(port: number, clientId: string): Promise<Client> {
  return connectGregor({ host: HOST, port, clientId, connectTimeoutMs: 30_000 });
}

async function gregorFlood(port: number, clients: number): Promise<string> {
  const topic = "mem-flood";
  const admin = await gregor(port, "mem-flood-admin");
  await admin.admin.createTopic(topic, { configs: { persistence: "memory" } });
  let received = 0;
  const conns = await inBatches(clients, async (i) => {
    const c = await gregor(port, `mem-flood-${i}`);
    const consumer = await c.subscribe(topic, { from: "latest", autoAck: true });
    void (async () => {
      for await (const _ of consumer) received++;
    })().catch(() => {});
    return c;
  });
  const p = admin.producer({});
  const value = new Uint8Array(1024);
  await Promise.all(Array.from({ length: MESSAGES_PER_FLOOD }, () => p.send(topic, { value })));
  await until(() => received, clients * MESSAGES_PER_FLOOD, "flood deliveries");
  await Promise.all(conns.map((c) => c.close().catch(() => {})));
  await admin.close();
  return `${clients} connections, ${received} deliveries`;
}

async function gregorBurst(port: number, seconds: number): Promise<string> {
  const topic = "mem-burst";
  const client = await gregor(port, "mem-burst");
  // On disk with fsync never: what is stored sits in the page cache, so the broker's RSS shows
  // what the broker itself holds (a memory topic's RSS would be its retained messages).
  await client.admin.createTopic(topic, { configs: { persistence: "disk", fsync: "never" } });
  const consumer = await client.subscribe(topic, { from: "latest", autoAck: true });
  let received = 0;
  const reading = (async () => {
    for await (const _ of consumer) received++;
  })().catch(() => {});
  const p = client.producer({ lingerMs: 1 });
  const value = new Uint8Array(100);
  const end = performance.now() + seconds * 1000;
  let sent = 0;
  let inFlight: Promise<number>[] = [];
  while (performance.now() < end) {
    inFlight.push(p.send(topic, { value }));
    sent++;
    if (inFlight.length >= WINDOW_MESSAGES) {
      await Promise.all(inFlight);
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
  await until(() => received, sent, "burst deliveries");
  await client.close();
  await reading;
  return `${sent} messages sent and received`;
}

async function natsAt(port: number, name: string): Promise<NatsConnection> {
  const { connect } = await import("nats");
  return await connect({ servers: `${HOST}:${port}`, name });
}

async function natsFlood(port: number, clients: number): Promise<string> {
  const subject = "mem.flood";
  let received = 0;
  const conns = await inBatches(clients, async (i) => {
    const nc = await natsAt(port, `mem-flood-${i}`);
    const sub = nc.subscribe(subject);
    void (async () => {
      for await (const _ of sub) received++;
    })().catch(() => {});
    await nc.flush();
    return nc;
  });
  const pub = await natsAt(port, "mem-flood-publisher");
  const value = new Uint8Array(1024);
  for (let i = 0; i < MESSAGES_PER_FLOOD; i++) pub.publish(subject, value);
  await pub.flush();
  await until(() => received, clients * MESSAGES_PER_FLOOD, "flood deliveries");
  await Promise.all(conns.map((c) => c.close().catch(() => {})));
  await pub.close();
  return `${clients} connections, ${received} deliveries`;
}

async function natsBurst(port: number, seconds: number): Promise<string> {
  const subject = "mem.burst";
  const sub = await natsAt(port, "mem-burst-consumer");
  let received = 0;
  const s = sub.subscribe(subject);
  const reading = (async () => {
    for await (const _ of s) received++;
  })().catch(() => {});
  await sub.flush();
  const pub = await natsAt(port, "mem-burst-producer");
  const value = new Uint8Array(100);
  const end = performance.now() + seconds * 1000;
  let sent = 0;
  while (performance.now() < end) {
    pub.publish(subject, value);
    sent++;
    // Core NATS acknowledges nothing: a flush per thousand keeps the publisher from running away.
    if (sent % 1_000 === 0) await pub.flush();
  }
  await pub.flush();
  // A slow consumer may be cut off by the server: what arrived is what counts then.
  await until(() => received, sent, "burst deliveries").catch((err) => console.error(String(err)));
  await pub.close();
  await sub.close();
  await reading;
  return `${sent} messages sent, ${received} received`;
}

async function main(): Promise<void> {
  const [system, portText, load, amountText] = Deno.args;
  const port = Number(portText);
  const amount = Number(amountText);
  if (!Number.isInteger(port) || !Number.isFinite(amount) || amount <= 0) usage();
  setTimeout(() => {
    console.error(`load did not end within ${LIFETIME_MS_MAX} ms`);
    Deno.exit(2);
  }, LIFETIME_MS_MAX);
  let what: string;
  if (system === "gregormq" && load === "flood") what = await gregorFlood(port, amount);
  else if (system === "gregormq" && load === "burst") what = await gregorBurst(port, amount);
  else if (system === "nats" && load === "flood") what = await natsFlood(port, amount);
  else if (system === "nats" && load === "burst") what = await natsBurst(port, amount);
  else usage();
  console.log(`done ${what}`);
  Deno.exit(0);
}

await main();
