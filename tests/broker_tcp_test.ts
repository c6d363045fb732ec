// The broker and the TypeScript client over real loopback TCP: publish, subscribe, acknowledgements,
// redelivery, durable subscriptions, fan-out, flow control, compression and admin.

import assert from "node:assert/strict";
import {
  type Client,
  connect,
  type Consumer,
  GregorError,
  type ReceivedMessage,
} from "../src/client/mod.ts";
import type { BrokerOptions } from "../src/broker/options.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { CODEC_NAMES } from "../src/protocol/compression.ts";
import { type RunningNode, startNode } from "../src/node.ts";
import { encodeFrame, Flag, FrameParser } from "../src/protocol/frame.ts";
import { encode, Op, SCHEMAS, Start } from "../src/protocol/messages.ts";

async function withBroker(
  body: (node: RunningNode, client: Client) => Promise<void>,
  broker: Partial<BrokerOptions> = {},
): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-tcp-" });
  const node = await startNode(denoEnv(), { port: 0, broker: { dataDir, ...broker } });
  const client = await connect({ port: node.addr.port });
  try {
    await body(node, client);
  } finally {
    await client.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** Takes `n` messages from a consumer, acknowledging each if `ack`. */
async function take(c: Consumer, n: number, ack = true): Promise<ReceivedMessage[]> {
  const out: ReceivedMessage[] = [];
  while (out.length < n) {
    const m = await c.next();
    if (m === null) break;
    if (ack) m.ack();
    out.push(m);
  }
  return out;
}

/** Resolves the next message, or null if none comes within `ms`. */
async function nextWithin(c: Consumer, ms: number): Promise<ReceivedMessage | null> {
  const timer = new AbortController();
  const timeout = denoEnv().clock.sleep(ms, timer.signal).then(() => null, () => null);
  const m = await Promise.race([c.next(), timeout]);
  timer.abort();
  return m;
}

Deno.test("publish then subscribe from earliest: every message, in order, with key, value and headers", async () => {
  await withBroker(async (_node, client) => {
    const offsets: number[] = [];
    for (let i = 0; i < 5; i++) {
      offsets.push(
        await client.publish("orders", {
          key: `k${i}`,
          value: `order ${i}`,
          headers: { source: "test" },
        }),
      );
    }
    assert.deepEqual(offsets, [0, 1, 2, 3, 4]);
    const sub = await client.subscribe("orders", { from: "earliest" });
    const got = await take(sub, 5);
    assert.deepEqual(got.map((m) => m.offset), offsets);
    assert.deepEqual(got.map((m) => m.text()), [
      "order 0",
      "order 1",
      "order 2",
      "order 3",
      "order 4",
    ]);
    assert.equal(new TextDecoder().decode(got[3]!.key!), "k3");
    assert.equal(new TextDecoder().decode(got[0]!.headers.source!), "test");
  });
});

Deno.test("subscribe from latest, an offset, or a timestamp starts where asked", async () => {
  await withBroker(async (_node, client) => {
    const t0 = Date.now();
    for (let i = 0; i < 4; i++) {
      await client.publish("t", { value: `${i}`, timestamp: t0 + i * 1000 });
    }
    const latest = await client.subscribe("t", { from: "latest" });
    const fromOffset = await client.subscribe("t", { from: { offset: 2 } });
    const fromTime = await client.subscribe("t", { from: { timestamp: t0 + 3000 } });
    await client.publish("t", { value: "4", timestamp: t0 + 4000 });
    assert.deepEqual((await take(latest, 1)).map((m) => m.text()), ["4"]);
    assert.deepEqual((await take(fromOffset, 3)).map((m) => m.offset), [2, 3, 4]);
    assert.deepEqual((await take(fromTime, 2)).map((m) => m.offset), [3, 4]);
    await assert.rejects(
      client.subscribe("t", { from: { offset: 99 } }),
      (e: GregorError) => e.codeName === "OFFSET_OUT_OF_RANGE",
    );
  });
});

Deno.test("acknowledged messages are not redelivered; unacknowledged ones are, after the ack timeout", async () => {
  await withBroker(async (_node, client) => {
    for (let i = 0; i < 3; i++) await client.publish("jobs", { value: `job ${i}` });
    const acked = await client.subscribe("jobs", { from: "earliest", ackTimeoutMs: 150 });
    await take(acked, 3, true);
    assert.equal(await nextWithin(acked, 600), null, "acked messages must not come back");

    const lazy = await client.subscribe("jobs", { from: "earliest", ackTimeoutMs: 150 });
    const first = await take(lazy, 3, false);
    assert.ok(first.every((m) => !m.redelivered));
    first[0]!.ack(); // only offset 0
    const again = await take(lazy, 2, true);
    assert.deepEqual(again.map((m) => m.offset), [1, 2]);
    assert.ok(again.every((m) => m.redelivered));
    assert.equal(await nextWithin(lazy, 600), null);
  }, { redeliveryTickMs: 20 });
});

Deno.test("redeliveries of messages still queued in the client do not drain its window", async () => {
  // Each redelivery makes the client drop the copies it still queues; the broker charged the
  // window for them. Their credit must come back, or after a few ack timeouts the broker has no
  // credit left and the subscription stops for good (pubsub sim seeds 1513, 3432, 6091, ...).
  await withBroker(async (_node, client) => {
    for (let i = 0; i < 8; i++) await client.publish("slow", { value: `job ${i}` });
    const c = await client.subscribe("slow", {
      from: "earliest",
      ackTimeoutMs: 100,
      windowMessages: 10,
    });
    // Not read for a while: the broker redelivers to the client's queue a few times over.
    await denoEnv().clock.sleep(600);
    // Copies may still come (at-least-once), but every offset must, and none may stall.
    const seen = new Set<number>();
    for (let taken = 0; seen.size < 8 && taken < 200; taken++) {
      const m = await nextWithin(c, 3_000);
      assert.notEqual(m, null, `stalled with only offsets ${[...seen].join(",")}`);
      m!.ack();
      seen.add(m!.offset);
    }
    assert.deepEqual([...seen].sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
  }, { redeliveryTickMs: 20 });
});

Deno.test("a durable subscription resumes after its last acknowledged offset", async () => {
  await withBroker(async (node, client) => {
    for (let i = 0; i < 6; i++) await client.publish("audit", { value: `${i}` });
    const first = await client.subscribe("audit", { from: "earliest", durable: "auditor" });
    const got = await take(first, 4, false);
    got[2]!.ack(); // offsets 0..2 done, 3 seen but not acked
    await first.close();
    const other = await connect({ port: node.addr.port });
    try {
      const resumed = await other.subscribe("audit", { from: "latest", durable: "auditor" });
      assert.deepEqual((await take(resumed, 3)).map((m) => m.offset), [3, 4, 5]);
      await assert.rejects(
        other.subscribe("audit", { durable: "auditor" }),
        (e: GregorError) => e.codeName === "SUBSCRIPTION_IN_USE",
      );
    } finally {
      await other.close();
    }
  });
});

Deno.test("100 subscribers each get every message in order", async () => {
  await withBroker(async (_node, client) => {
    const subs = await Promise.all(
      Array.from(
        { length: 100 },
        () => client.subscribe("fanout", { from: "earliest", autoAck: true }),
      ),
    );
    const producer = client.producer({ lingerMs: 2 });
    const sent = await Promise.all(
      Array.from({ length: 200 }, (_, i) => producer.send("fanout", { value: `m${i}` })),
    );
    assert.deepEqual(sent, Array.from({ length: 200 }, (_, i) => i));
    const results = await Promise.all(subs.map((s) => take(s, 200)));
    for (const got of results) assert.deepEqual(got.map((m) => m.text()), sent.map((i) => `m${i}`));
    assert.equal((await client.admin.describeTopic("fanout")).partitions[0]!.subscribers, 100);
  });
});

Deno.test("a slow consumer stalls only itself, and the broker holds no more than its credit for it", async () => {
  await withBroker(async (node, client) => {
    const stalled = await client.subscribe("firehose", {
      from: "earliest",
      windowMessages: 50,
      autoAck: true,
    });
    const fast = await client.subscribe("firehose", {
      from: "earliest",
      windowMessages: 50,
      autoAck: true,
    });
    const producer = client.producer({ lingerMs: 1, batchRecordsMax: 10 });
    const total = 5000;
    const sends = Array.from(
      { length: total },
      (_, i) => producer.send("firehose", { value: `${i}` }),
    );
    const got = await take(fast, total);
    assert.equal(got.length, total);
    await Promise.all(sends);
    // The stalled subscription was sent at most its window plus one batch, and nothing more.
    const subs = [...(await node.broker.topic("firehose", false)).partition(0).subscriptions];
    const delivered = subs.map((s) => s.deliveredRecords).sort((a, b) => a - b);
    assert.equal(delivered[1], total);
    assert.ok(
      delivered[0]! <= 50 + 10,
      `the stalled subscription was sent ${delivered[0]} records`,
    );
    const first = await take(stalled, 1);
    assert.equal(first[0]!.offset, 0);
  });
});

for (const codec of CODEC_NAMES) {
  Deno.test(`batches compressed with ${codec} round-trip through the broker`, async () => {
    await withBroker(async (_node, client) => {
      const producer = client.producer({ compression: codec, lingerMs: 5 });
      const values = Array.from({ length: 300 }, (_, i) => `value ${i} `.repeat(i % 7 + 1));
      await Promise.all(values.map((v, i) => producer.send("z", { value: v, key: `${i}` })));
      const sub = await client.subscribe("z", { from: "earliest" });
      const got = await take(sub, values.length);
      assert.deepEqual(got.map((m) => m.text()), values);
    });
  });
}

Deno.test("admin: create, list, describe, delete topics, with clear errors", async () => {
  await withBroker(async (_node, client) => {
    await client.admin.createTopic("payments", {
      partitions: 3,
      configs: { "retention.bytes": "1048576" },
    });
    await client.admin.createTopic("audit");
    assert.deepEqual(await client.admin.listTopics(), [
      { name: "audit", partitions: 1 },
      { name: "payments", partitions: 3 },
    ]);
    const d = await client.admin.describeTopic("payments");
    assert.equal(d.configs["retention.bytes"], "1048576");
    assert.equal(d.configs["persistence"], "disk", "topics are persistent by default");
    assert.equal(d.configs["fsync"], "always");
    assert.deepEqual(d.partitions.map((p) => p.partition), [0, 1, 2]);
    const code = (p: Promise<unknown>, name: string) =>
      assert.rejects(p, (e: GregorError) => e.codeName === name);
    await code(client.admin.createTopic("payments"), "TOPIC_EXISTS");
    await code(client.admin.createTopic("bad name!"), "INVALID_TOPIC");
    await code(
      client.admin.createTopic("x", { configs: { "retention.bogus": "1" } }),
      "INVALID_REQUEST",
    );
    await code(client.admin.describeTopic("nope"), "UNKNOWN_TOPIC");
    await code(client.publish("payments", { value: "v", partition: 7 }), "UNKNOWN_PARTITION");
    await client.admin.deleteTopic("payments");
    assert.deepEqual((await client.admin.listTopics()).map((t) => t.name), ["audit"]);
    await code(client.admin.deleteTopic("payments"), "UNKNOWN_TOPIC");
  });
});

Deno.test("with auto-create off, publishing to a missing topic fails with UNKNOWN_TOPIC", async () => {
  await withBroker(async (_node, client) => {
    await assert.rejects(
      client.publish("ghost", { value: "boo" }),
      (e: GregorError) => e.codeName === "UNKNOWN_TOPIC",
    );
  }, { autoCreateTopics: false });
});

Deno.test("a memory topic keeps only retention.bytes; subscribers from earliest start at the oldest kept", async () => {
  await withBroker(async (_node, client) => {
    await client.admin.createTopic("small", {
      configs: { "persistence": "memory", "retention.bytes": "2000" },
    });
    for (let i = 0; i < 50; i++) await client.publish("small", { value: "x".repeat(100) });
    const d = (await client.admin.describeTopic("small")).partitions[0]!;
    assert.ok(d.logStartOffset > 0 && d.sizeBytes <= 2000 + 200, JSON.stringify(d));
    const sub = await client.subscribe("small", { from: "earliest" });
    assert.equal((await take(sub, 1))[0]!.offset, d.logStartOffset);
  });
});

Deno.test("a connection silent past idleTimeoutMs is closed; a client's heartbeats keep it open", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-idle-" });
  const node = await startNode(denoEnv(), { port: 0, broker: { dataDir, idleTimeoutMs: 400 } });
  const client = await connect({ port: node.addr.port, heartbeatMs: 100 });
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: node.addr.port });
  try {
    await raw.write(new Uint8Array([0x47, 0x4d, 1])); // half a frame header, then nothing
    const buf = new Uint8Array(64);
    const started = Date.now();
    assert.equal(await raw.read(buf), null, "the broker closes the silent connection");
    assert.ok(Date.now() - started >= 300, "not before the idle timeout");
    await new Promise((r) => setTimeout(r, 600));
    await client.admin.ping(); // the heartbeating client survived
    assert.equal(node.broker.idleClosed, 1);
  } finally {
    raw.close();
    await client.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("connections without HELLO: the oldest goes at handshakingConnectionsMax, the rest at handshakeTimeoutMs", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-handshake-" });
  const node = await startNode(denoEnv(), {
    port: 0,
    broker: { dataDir, handshakingConnectionsMax: 2, handshakeTimeoutMs: 400 },
  });
  const broker = node.broker;
  const until = async (cond: () => boolean): Promise<void> => {
    for (let waited = 0; !cond(); waited += 5) {
      assert.ok(waited < 2_000, "the broker did not get there in 2 s");
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const raws: Deno.TcpConn[] = [];
  const buf = new Uint8Array(256);
  try {
    // One at a time, so the broker accepts them in this order: the first is the oldest.
    raws.push(await Deno.connect({ hostname: "127.0.0.1", port: node.addr.port }));
    await until(() => broker.connectionCount === 1);
    raws.push(await Deno.connect({ hostname: "127.0.0.1", port: node.addr.port }));
    await until(() => broker.connectionCount === 2);
    raws.push(await Deno.connect({ hostname: "127.0.0.1", port: node.addr.port }));
    await until(() => broker.handshakesEvicted === 1);
    assert.ok((await raws[0]!.read(buf) ?? 0) > 0, "the oldest gets an error before its close");
    // A real client makes room the same way, and then is not subject to the deadline.
    const started = Date.now();
    const client = await connect({ port: node.addr.port });
    assert.equal(broker.handshakesEvicted, 2);
    assert.ok((await raws[2]!.read(buf) ?? 0) > 0, "the last silent one gets TIMEOUT");
    assert.ok(Date.now() - started < 2_000, "within the deadline and a sweep");
    assert.equal(broker.handshakesExpired, 1);
    await new Promise((r) => setTimeout(r, 500));
    await client.admin.ping();
    await client.close();
  } finally {
    for (const r of raws) r.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

/**
 * A TCP relay to `port` that holds the client's bytes of its first connection until `release()`:
 * a client whose HELLO is slow to reach the broker. Later connections pass straight through.
 */
function holdingRelay(port: number): { port: number; release(): void; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  let release = (): void => {};
  const held = new Promise<void>((r) => (release = r));
  let accepted = 0;
  const pipe = async (from: Deno.Conn, to: Deno.Conn, wait: Promise<void>) => {
    await wait;
    await from.readable.pipeTo(to.writable).catch(() => {});
  };
  void (async () => {
    for await (const down of listener) {
      const up = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(down, up);
      void pipe(down, up, accepted++ === 0 ? held : Promise.resolve());
      void pipe(up, down, Promise.resolve());
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    release,
    close() {
      release();
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* piped to its end already */ }
      }
    },
  };
}

Deno.test("a client closed to make room while its HELLO is on the way dials again and gets in", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-handshake-" });
  const node = await startNode(denoEnv(), {
    port: 0,
    broker: { dataDir, handshakingConnectionsMax: 1, handshakeTimeoutMs: 10_000 },
  });
  const broker = node.broker;
  const relay = holdingRelay(node.addr.port);
  let silent: Deno.TcpConn | null = null;
  try {
    const connecting = connect({ port: relay.port, connectTimeoutMs: 5_000 });
    for (let waited = 0; broker.connectionCount < 1; waited += 5) {
      assert.ok(waited < 2_000, "the client's connection did not arrive");
      await new Promise((r) => setTimeout(r, 5));
    }
    // A silent connection arrives while the client's HELLO is held: the client's goes to make room.
    silent = await Deno.connect({ hostname: "127.0.0.1", port: node.addr.port });
    const client = await connecting;
    assert.ok(broker.handshakesEvicted >= 1, "the client's first connection was closed");
    await client.admin.ping();
    await client.close();
  } finally {
    silent?.close();
    relay.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("at handshakingConnectionsMax the oldest silent connection goes before one mid-HELLO", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-handshake-" });
  const node = await startNode(denoEnv(), {
    port: 0,
    broker: { dataDir, handshakingConnectionsMax: 2, handshakeTimeoutMs: 10_000 },
  });
  const broker = node.broker;
  const raws: Deno.TcpConn[] = [];
  const buf = new Uint8Array(256);
  try {
    const open = async (n: number) => {
      raws.push(await Deno.connect({ hostname: "127.0.0.1", port: node.addr.port }));
      for (let waited = 0; broker.connectionCount < n; waited += 5) {
        assert.ok(waited < 2_000, `connection ${n} was not accepted`);
        await new Promise((r) => setTimeout(r, 5));
      }
    };
    // The oldest has sent the first bytes of a frame header; the second has sent nothing.
    await open(1);
    await raws[0]!.write(new Uint8Array([0x47, 0x52]));
    await new Promise((r) => setTimeout(r, 100));
    await open(2);
    raws.push(await Deno.connect({ hostname: "127.0.0.1", port: node.addr.port }));
    for (let waited = 0; broker.handshakesEvicted < 1; waited += 5) {
      assert.ok(waited < 2_000, "nothing was closed to make room");
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok((await raws[1]!.read(buf) ?? 0) > 0, "the silent one is told why, then closed");
    const answered = await Promise.race([
      raws[0]!.read(buf).then(() => "answered"),
      new Promise((r) => setTimeout(() => r("still open"), 300)),
    ]);
    assert.equal(answered, "still open", "the connection mid-HELLO keeps its place");
  } finally {
    for (const r of raws) r.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("TCP: a SUBSCRIBE's response comes before its first DELIVER, even when the records are read from memory", async () => {
  await withBroker(async (node, client) => {
    await client.admin.createTopic("first", { partitions: 1 });
    // The newest batches are kept in memory: the subscription's first read needs no disk.
    for (let i = 0; i < 50; i++) await client.publish("first", { value: `m${i}` });
    for (let round = 0; round < 20; round++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: node.addr.port });
      try {
        const hello = { versionMin: 1, versionMax: 1, clientId: "raw", credential: null };
        await conn.write(encodeFrame(Op.HELLO, 1, encode(SCHEMAS.HELLO.request, hello)));
        const subscribe = {
          subscriptionId: 7,
          topic: "first",
          partition: 0,
          start: Start.offset,
          startValue: round,
          durableName: "",
          ackTimeoutMs: 0,
          creditMessages: 10,
          creditBytes: 1 << 20,
        };
        await conn.write(
          encodeFrame(Op.SUBSCRIBE, 2, encode(SCHEMAS.SUBSCRIBE.request, subscribe)),
        );
        const parser = new FrameParser({ payloadBytesMax: 1 << 20 });
        const buf = new Uint8Array(64 * 1024);
        const seen: string[] = [];
        while (!seen.includes("DELIVER")) {
          const r = parser.next();
          if (r.kind === "frame") {
            const f = r.frame;
            seen.push(f.opcode === Op.DELIVER ? "DELIVER" : `${f.opcode}/${f.correlationId}`);
            assert.equal(f.flags & Flag.ERROR, 0, `an error frame: ${seen}`);
            continue;
          }
          assert.notEqual(r.kind, "error");
          const n = await conn.read(buf);
          assert.ok(n !== null, `the connection closed after ${seen}`);
          parser.push(buf.slice(0, n));
        }
        assert.deepEqual(seen, [`${Op.HELLO}/1`, `${Op.SUBSCRIBE}/2`, "DELIVER"], `round ${round}`);
      } finally {
        conn.close();
      }
    }
  });
});
