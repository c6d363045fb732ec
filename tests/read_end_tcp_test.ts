// Reading a partition up to its end and stopping, over real loopback TCP: `subscribe(topic,
// { until: "end" })` and `client.readPartition()` end at the high watermark the broker reported
// when the read started, while other producers keep publishing and across a reconnect.

import assert from "node:assert/strict";
import { type Client, connect, type Consumer, type ReceivedMessage } from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { type RunningNode, startNode } from "../src/node.ts";

/** Longest any one read here may take before the test fails instead of hanging. */
const READ_MS_MAX = 20_000;

async function withBroker(body: (node: RunningNode, client: Client) => Promise<void>) {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-readend-" });
  const node = await startNode(denoEnv(), { port: 0, broker: { dataDir } });
  const client = await connect({ port: node.addr.port });
  try {
    await body(node, client);
  } finally {
    await client.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** Fails if `work` does not settle within READ_MS_MAX. */
async function bounded<T>(what: string, work: Promise<T>): Promise<T> {
  const timer = new AbortController();
  const timeout = denoEnv().clock.sleep(READ_MS_MAX, timer.signal).then(
    () => Promise.reject(new Error(`${what} did not end within ${READ_MS_MAX} ms`)),
    () => new Promise<never>(() => {}),
  );
  try {
    return await Promise.race([work, timeout]);
  } finally {
    timer.abort();
  }
}

/** Iterates a subscription to its end, acknowledging each message if `ack`. */
async function drain(sub: Consumer, ack: boolean): Promise<ReceivedMessage[]> {
  const out: ReceivedMessage[] = [];
  for await (const m of sub) {
    if (ack) m.ack();
    out.push(m);
  }
  return out;
}

/**
 * Publishes `n` messages in batches of ten: the broker pushes whole batches, so small ones let a
 * subscription's credit window hold it back.
 */
async function publishN(client: Client, topic: string, n: number, first = 0): Promise<void> {
  const producer = client.producer({ lingerMs: 0 });
  for (let i = first; i < first + n; i += 10) {
    await Promise.all(
      range(i, Math.min(i + 10, first + n)).map((j) => producer.send(topic, { value: `m${j}` })),
    );
  }
  await producer.close();
}

/** Publishes to `topic` from its own connection until stopped; resolves with how many it sent. */
function keepPublishing(port: number, topic: string): { stop(): Promise<number> } {
  let stopping = false;
  const done = (async () => {
    const c = await connect({ port });
    let sent = 0;
    try {
      while (!stopping) {
        await Promise.all(
          Array.from({ length: 20 }, () => c.publish(topic, { value: "late" }).then(() => sent++)),
        );
      }
    } finally {
      await c.close();
    }
    return sent;
  })();
  return {
    stop: () => {
      stopping = true;
      return done;
    },
  };
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

Deno.test('until: "end" on an empty partition ends at once; readPartition returns []', async () => {
  await withBroker(async (_node, client) => {
    await client.admin.createTopic("empty");
    const sub = await client.subscribe("empty", { from: "earliest", until: "end" });
    assert.equal(sub.endOffset, 0);
    assert.deepEqual(await bounded("empty iteration", drain(sub, true)), []);
    assert.deepEqual(await bounded("empty read", client.readPartition("empty", 0)), []);
  });
});

Deno.test('until: "end" reads 1,000 messages exactly to the end seen at start while a producer keeps publishing', async () => {
  await withBroker(async (node, client) => {
    await publishN(client, "busy", 1000);
    const late = keepPublishing(node.addr.port, "busy");
    try {
      // Let the other producer get ahead, so messages past the end exist while this reads.
      while ((await client.admin.describeTopic("busy")).partitions[0]!.highWatermark < 1100) {
        await denoEnv().clock.sleep(5);
      }
      const sub = await client.subscribe("busy", {
        from: "earliest",
        until: "end",
        windowMessages: 64,
      });
      const end = sub.endOffset;
      assert.ok(end >= 1100, `end ${end} should include the late messages published so far`);
      const got = await bounded("iteration to the end", drain(sub, true));
      assert.deepEqual(got.map((m) => m.offset), range(0, end));
      assert.deepEqual(got.slice(0, 1000).map((m) => m.text()), range(0, 1000).map((i) => `m${i}`));
      assert.equal(await sub.next(), null, "an ended subscription stays ended");

      const read = await bounded("readPartition", client.readPartition("busy", 0));
      assert.ok(read.length > end, "the second read sees the end as it was when it started");
      assert.deepEqual(read.map((m) => m.offset), range(0, read.length));
    } finally {
      assert.ok((await late.stop()) > 100);
    }
    const hwm = (await client.admin.describeTopic("busy")).partitions[0]!.highWatermark;
    assert.ok(hwm > 1100, `the other producer kept publishing past the ends read (${hwm})`);
  });
});

Deno.test("readPartition from an offset in the middle returns that offset to the end", async () => {
  await withBroker(async (_node, client) => {
    await publishN(client, "mid", 1000);
    const got = await bounded(
      "read from 400",
      client.readPartition("mid", 0, { from: { offset: 400 } }),
    );
    assert.deepEqual(got.map((m) => m.offset), range(400, 1000));
    assert.equal(got[0]!.text(), "m400");
    await assert.rejects(
      client.readPartition("mid", 0, { from: { offset: 900 }, messagesMax: 50 }),
      /more than messagesMax \(50\)/,
    );
  });
});

Deno.test("a durable autoAck read to the end acknowledges exactly what it handed out", async () => {
  await withBroker(async (_node, client) => {
    await publishN(client, "acks", 1000);
    const sub = await client.subscribe("acks", {
      from: "earliest",
      durable: "reader",
      autoAck: true,
      until: "end",
      windowMessages: 5000,
    });
    assert.equal(sub.endOffset, 1000);
    const first = (await sub.next())!;
    // Messages past the end arrive while the reader is still short of it: the window lets the
    // broker push them at once.
    await publishN(client, "acks", 200, 1000);
    await denoEnv().clock.sleep(200);
    const got = [first, ...await bounded("autoAck iteration", drain(sub, false))];
    assert.deepEqual(got.map((m) => m.offset), range(0, 1000));
    // The broker resumes the durable name right after the last acknowledged offset.
    const again = await client.subscribe("acks", { durable: "reader" });
    assert.equal(again.startOffset, 1000);
    await again.close();
  });
});

/** A TCP relay to the broker that can cut its connections and refuse new ones for a while. */
function relay(target: number): { port: number; cut(): void; resume(): void; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let refusing = false;
  (async () => {
    for await (const inbound of listener) {
      if (refusing) {
        inbound.close();
        continue;
      }
      const outbound = await Deno.connect({ hostname: "127.0.0.1", port: target });
      open.add(inbound);
      open.add(outbound);
      const end = () => {
        for (const c of [inbound, outbound]) {
          if (open.delete(c)) c.close();
        }
      };
      inbound.readable.pipeTo(outbound.writable, { preventClose: true }).catch(() => {})
        .finally(end);
      outbound.readable.pipeTo(inbound.writable, { preventClose: true }).catch(() => {})
        .finally(end);
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    cut() {
      refusing = true;
      for (const c of [...open]) {
        open.delete(c);
        c.close();
      }
    },
    resume() {
      refusing = false;
    },
    close() {
      this.cut();
      listener.close();
    },
  };
}

Deno.test('until: "end" keeps the original end across a reconnect, though the partition grew', async () => {
  await withBroker(async (node, client) => {
    await publishN(client, "grow", 300);
    const proxy = relay(node.addr.port);
    const reader = await connect({
      port: proxy.port,
      reconnectBackoffMsMin: 20,
      reconnectBackoffMsMax: 100,
    });
    try {
      const sub = await reader.subscribe("grow", {
        from: "earliest",
        until: "end",
        windowMessages: 50,
      });
      assert.equal(sub.endOffset, 300);
      const got: ReceivedMessage[] = [];
      for (let i = 0; i < 100; i++) {
        const m = (await sub.next())!;
        m.ack();
        got.push(m);
      }
      proxy.cut();
      // The partition grows while the reader is away; its resubscription hears a new watermark.
      await publishN(client, "grow", 200);
      proxy.resume();
      got.push(...await bounded("iteration after the reconnect", drain(sub, true)));
      const offsets = [...new Set(got.map((m) => m.offset))];
      assert.deepEqual(offsets, range(0, 300));
      assert.equal(sub.endOffset, 300);
    } finally {
      await reader.close();
      proxy.close();
    }
  });
});
