// The idempotent producer and Kafka's partitioning over real loopback TCP: a proxy that cuts the
// connection mid-stream many times cannot make a message appear twice or out of order; a retry
// after a broker restart is still recognised; keys land where Kafka's partitioner puts them.

import assert from "node:assert/strict";
import type { Broker } from "../src/broker/broker.ts";
import { type Client, connect } from "../src/client/mod.ts";
import { partitionForKey } from "../src/client/partitioner.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { type RunningNode, startNode } from "../src/node.ts";
import { batchesIn, decodeBatch, encodeBatch, type RecordOut } from "../src/protocol/batch.ts";
import type {
  FetchResponse,
  InitProducerIdResponse,
  ProduceResponse,
} from "../src/protocol/messages.ts";

const MESSAGES = 20_000;
/** Bytes after which the proxy cuts each connection, in turn; later connections pass through. */
const CUTS: readonly { direction: "up" | "down"; afterBytes: number }[] = [
  { direction: "up", afterBytes: 40_000 },
  { direction: "down", afterBytes: 300 },
  { direction: "up", afterBytes: 63_457 },
  { direction: "down", afterBytes: 1_500 },
  { direction: "up", afterBytes: 9_001 },
  { direction: "down", afterBytes: 4_000 },
  { direction: "up", afterBytes: 25_000 },
  { direction: "down", afterBytes: 777 },
];
const LIMITS = { recordsBytesMax: 32 * 1024 * 1024 };

/** A TCP proxy to `port` that cuts its n-th connection after CUTS[n] bytes in one direction. */
class CuttingProxy {
  readonly #listener: Deno.Listener;
  readonly #target: number;
  readonly #conns = new Set<Deno.Conn>();
  connections = 0;
  cuts = 0;

  constructor(targetPort: number) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#target = targetPort;
    void this.#accept();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async #accept(): Promise<void> {
    for await (const client of this.#listener) {
      const plan = CUTS[this.connections++];
      const broker = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
      this.#conns.add(client).add(broker);
      const cut = () => {
        for (const c of [client, broker]) {
          this.#conns.delete(c);
          try {
            c.close();
          } catch { /* closed already */ }
        }
      };
      const pipe = async (from: Deno.Conn, to: Deno.Conn, limit: number) => {
        const buf = new Uint8Array(16 * 1024);
        let passed = 0;
        try {
          for (;;) {
            const n = await from.read(buf);
            if (n === null) break;
            const room = Math.min(n, limit - passed);
            for (let off = 0; off < room;) off += await to.write(buf.subarray(off, room));
            passed += room;
            if (passed >= limit) {
              this.cuts++;
              break;
            }
          }
        } catch { /* the other side went away */ }
        cut();
      };
      void pipe(client, broker, plan?.direction === "up" ? plan.afterBytes : Infinity);
      void pipe(broker, client, plan?.direction === "down" ? plan.afterBytes : Infinity);
    }
  }

  close(): void {
    this.#listener.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed already */ }
    }
  }
}

async function withNode<T>(
  dataDir: string,
  body: (node: RunningNode) => Promise<T>,
): Promise<T> {
  const node = await startNode(denoEnv(), { port: 0, broker: { dataDir } });
  try {
    return await body(node);
  } finally {
    await node.close();
  }
}

async function tempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-idem-" });
  try {
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every record of a partition, read with FETCH. */
async function readPartition(
  client: Client,
  topic: string,
  partition: number,
): Promise<RecordOut[]> {
  const out: RecordOut[] = [];
  let offset = 0;
  for (;;) {
    const r = await client.connection.request<FetchResponse>("FETCH", {
      topic,
      partition,
      offset,
      maxBytes: 1024 * 1024,
    });
    if (r.records === null || r.records.length === 0) return out;
    for (const { off } of batchesIn(r.records)) {
      for (const rec of decodeBatch(r.records, off, LIMITS)) {
        if (rec.offset >= offset) out.push(rec);
      }
    }
    offset = (out.at(-1)?.offset ?? offset - 1) + 1;
    if (offset >= r.highWatermark) return out;
  }
}

/** Counts PRODUCE answers that repeat an offset already answered: the duplicates caught. */
function countDuplicateAnswers(broker: Broker): { duplicates: number } {
  const seen = new Set<string>();
  const counter = { duplicates: 0 };
  const produce = broker.produce.bind(broker);
  broker.produce = (req) =>
    produce(req).then((r: ProduceResponse) => {
      const key = `${req.topic}/${req.partition}@${r.baseOffset}`;
      if (seen.has(key)) counter.duplicates++;
      seen.add(key);
      return r;
    });
  return counter;
}

const text = (b: Uint8Array | null) => new TextDecoder().decode(b ?? new Uint8Array(0));

Deno.test("idempotent producer: 20,000 messages through a proxy that cuts the connection 8 times are stored exactly once, in order", async () => {
  await tempDir((dir) =>
    withNode(dir, async (node) => {
      const caught = countDuplicateAnswers(node.broker);
      const proxy = new CuttingProxy(node.addr.port);
      const client = await connect({
        port: proxy.port,
        reconnectBackoffMsMin: 5,
        reconnectBackoffMsMax: 50,
      });
      const admin = await connect({ port: node.addr.port });
      try {
        await admin.admin.createTopic("exactly-once", { partitions: 1 });
        const producer = client.producer({
          batchRecordsMax: 40,
          lingerMs: 1,
          retryBackoffMs: 5,
          retryBackoffMsMax: 50,
        });
        const started = performance.now();
        const offsets = await Promise.all(
          Array.from({ length: MESSAGES }, (_, i) =>
            producer.send("exactly-once", { value: `m${i}` })),
        );
        const ms = performance.now() - started;
        await producer.close();
        // Exactly once and in order: message i got offset i.
        offsets.forEach((o, i) =>
          assert.equal(o, i, `message ${i} got offset ${o}`)
        );
        const stored = await readPartition(admin, "exactly-once", 0);
        assert.equal(stored.length, MESSAGES);
        stored.forEach((r, i) => {
          assert.equal(r.offset, i);
          assert.equal(text(r.value), `m${i}`);
        });
        assert.equal(proxy.cuts, CUTS.length, "every planned cut happened");
        assert.ok(caught.duplicates > 0, "some retries reached the broker twice and were caught");
        console.log(
          `${MESSAGES} messages in ${ms.toFixed(0)} ms through ${proxy.connections} connections, ` +
            `${proxy.cuts} cuts, ${caught.duplicates} duplicate batches answered from the cache`,
        );
      } finally {
        await client.close();
        await admin.close();
        proxy.close();
      }
    })
  );
});

Deno.test("idempotent producer: a retry that arrives after the broker restarted is answered with the original offset", async () => {
  await tempDir(async (dir) => {
    const records = (tag: string) =>
      Array.from(
        { length: 3 },
        (_, i) => ({ value: new TextEncoder().encode(`${tag}${i}`), timestamp: 1 }),
      );
    const produce = (client: Client, batch: Uint8Array) =>
      client.connection.request<ProduceResponse>("PRODUCE", {
        topic: "durable",
        partition: 0,
        acks: 1,
        timeoutMs: 1000,
        batch,
      });
    const pid = await withNode(dir, async (node) => {
      const client = await connect({ port: node.addr.port });
      try {
        await client.admin.createTopic("durable", { configs: { persistence: "disk" } });
        const id = await client.connection.request<InitProducerIdResponse>("INIT_PRODUCER_ID", {});
        await produce(
          client,
          encodeBatch(records("a"), { producerId: 5, producerEpoch: 0, baseSequence: 0 }),
        );
        const stamp = { producerId: id.producerId, producerEpoch: id.producerEpoch };
        assert.equal(
          (await produce(client, encodeBatch(records("x"), { ...stamp, baseSequence: 0 })))
            .baseOffset,
          3,
        );
        assert.equal(
          (await produce(client, encodeBatch(records("y"), { ...stamp, baseSequence: 3 })))
            .baseOffset,
          6,
        );
        return id;
      } finally {
        await client.close();
      }
    });
    // A new broker on the same data directory: its producer state comes from the log.
    await withNode(dir, async (node) => {
      const client = await connect({ port: node.addr.port });
      try {
        const stamp = { producerId: pid.producerId, producerEpoch: pid.producerEpoch };
        const retry = await produce(
          client,
          encodeBatch(records("y"), { ...stamp, baseSequence: 3 }),
        );
        assert.equal(retry.baseOffset, 6, "the retry is answered with its original offset");
        assert.equal(
          (await produce(
            client,
            encodeBatch(records("a"), { producerId: 5, producerEpoch: 0, baseSequence: 0 }),
          )).baseOffset,
          0,
        );
        const d = await client.admin.describeTopic("durable");
        assert.equal(d.partitions[0]!.highWatermark, 9, "nothing was stored twice");
        const next = await produce(
          client,
          encodeBatch(records("z"), { ...stamp, baseSequence: 6 }),
        );
        assert.equal(next.baseOffset, 9);
        await assert.rejects(
          produce(client, encodeBatch(records("gap"), { ...stamp, baseSequence: 20 })),
          (err: Error & { codeName?: string }) => err.codeName === "OUT_OF_ORDER_SEQUENCE",
        );
        const fresh = await client.connection.request<InitProducerIdResponse>(
          "INIT_PRODUCER_ID",
          {},
        );
        assert.ok(fresh.producerId > pid.producerId, "producer ids are not reused after a restart");
        const values = (await readPartition(client, "durable", 0)).map((r) => text(r.value));
        assert.deepEqual(values, [
          "a0",
          "a1",
          "a2",
          "x0",
          "x1",
          "x2",
          "y0",
          "y1",
          "y2",
          "z0",
          "z1",
          "z2",
        ]);
      } finally {
        await client.close();
      }
    });
  });
});

Deno.test("partitioning: keyed messages land on murmur2(key) % partitions; keyless ones stick per batch", async () => {
  await tempDir((dir) =>
    withNode(dir, async (node) => {
      const client = await connect({ port: node.addr.port });
      try {
        await client.admin.createTopic("keyed", { partitions: 3 });
        await client.admin.createPartitions("keyed", 6);
        const meta = await client.admin.metadata(["keyed"]);
        assert.equal(meta.topics[0]!.partitions.length, 6);
        const producer = client.producer({ lingerMs: 2 });
        const keys = Array.from({ length: 300 }, (_, i) => `customer-${i}`);
        await Promise.all(keys.map((key) => producer.send("keyed", { key, value: key })));
        await Promise.all(
          Array.from({ length: 50 }, (_, i) => producer.send("keyed", { value: `keyless-${i}` })),
        );
        await producer.send("keyed", { value: "explicit", partition: 4 });
        await producer.close();
        const enc = new TextEncoder();
        let keyed = 0;
        let keyless = 0;
        const used = new Set<number>();
        for (let p = 0; p < 6; p++) {
          for (const r of await readPartition(client, "keyed", p)) {
            if (r.key !== null) {
              assert.equal(partitionForKey(enc.encode(text(r.key)), 6), p, `key ${text(r.key)}`);
              assert.equal(text(r.value), text(r.key));
              keyed++;
              used.add(p);
            } else if (text(r.value) === "explicit") {
              assert.equal(p, 4);
            } else {
              keyless++;
            }
          }
        }
        assert.equal(keyed, 300);
        assert.equal(used.size, 6, "300 keys spread over every partition");
        assert.equal(keyless, 50);
      } finally {
        await client.close();
      }
    })
  );
});
