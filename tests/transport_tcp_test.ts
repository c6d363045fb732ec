// The Raft transport on real TCP: two nodes on 127.0.0.1, each running gossip and a transport on
// one cluster port, exchange messages both ways; one is restarted on the same port and flow resumes.

import assert from "node:assert/strict";
import { Gossip } from "../src/cluster/gossip/mod.ts";
import {
  RAFT_FRAME_PAYLOAD_BYTES_MAX,
  Transport,
  type TransportOptions,
} from "../src/cluster/transport.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { Op } from "../src/protocol/messages.ts";

interface Node {
  gossip: Gossip;
  transport: Transport;
  /** Received messages as "from/group/seq". */
  got: string[];
}

async function startNode(
  id: string,
  clusterPort: number,
  seeds: string[],
  opts: Partial<TransportOptions> = {},
): Promise<Node> {
  const env = denoEnv();
  const gossip = await Gossip.start(env, {
    nodeId: id,
    host: "127.0.0.1",
    clusterPort,
    clientPort: 7070,
    seeds,
    intervalMs: 50,
  });
  const transport = new Transport(env, {
    nodeId: id,
    resolve: (peer) => {
      const m = gossip.member(peer);
      return m === null ? null : { host: m.host, port: m.clusterPort };
    },
    reconnectBackoffMsMax: 200,
    ...opts,
  });
  gossip.handle(Op.RAFT, (conn, first, parser) => transport.serve(conn, first, parser), {
    payloadBytesMax: RAFT_FRAME_PAYLOAD_BYTES_MAX,
  });
  const got: string[] = [];
  transport.onMessage = (from, group, data) => {
    got.push(`${from}/${group}/${new DataView(data.buffer, data.byteOffset).getUint32(0)}`);
  };
  return { gossip, transport, got };
}

async function stop(n: Node): Promise<void> {
  n.transport.close();
  await n.gossip.close();
}

function message(seq: number, bytes: number): Uint8Array {
  const data = new Uint8Array(bytes);
  new DataView(data.buffer).setUint32(0, seq);
  return data;
}

async function until(what: string, ms: number, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function expected(from: string, lo: number, hi: number): string[] {
  return Array.from({ length: hi - lo }, (_, i) => `${from}/g${(lo + i) % 2}/${lo + i}`);
}

Deno.test("transport on TCP: two nodes exchange messages in order, and flow resumes after one restarts", async () => {
  const a = await startNode("a", 0, []);
  const portA = a.gossip.addr.port;
  let b = await startNode("b", 0, [`127.0.0.1:${portA}`]);
  const portB = b.gossip.addr.port;
  try {
    await until(
      "a and b know each other",
      5_000,
      () => a.gossip.member("b") !== null && b.gossip.member("a") !== null,
    );
    // Sizes from a few bytes to a frame's worth, both ways at once.
    for (let i = 0; i < 500; i++) {
      const bytes = i % 100 === 9 ? 2_000_000 : 4 + (i % 300);
      a.transport.send("b", `g${i % 2}`, message(i, bytes));
      b.transport.send("a", `g${i % 2}`, message(i, bytes));
    }
    await until(
      "500 messages each way",
      10_000,
      () => a.got.length === 500 && b.got.length === 500,
    );
    assert.deepEqual(b.got, expected("a", 0, 500));
    assert.deepEqual(a.got, expected("b", 0, 500));
    assert.equal(a.transport.stats.connects, 1);

    // b restarts on the same port with the same id; a reconnects when it next has something to say.
    await stop(b);
    b = await startNode("b", portB, [`127.0.0.1:${portA}`]);
    await until("the new b knows a", 5_000, () => b.gossip.member("a") !== null);
    let seq = 500;
    await until("a's messages reach the new b", 10_000, () => {
      a.transport.send("b", `g${seq % 2}`, message(seq, 64));
      seq++;
      return b.got.length > 0;
    });
    const first = Number(b.got[0]?.split("/")[2]);
    for (let i = seq; i < seq + 100; i++) {
      a.transport.send("b", `g${i % 2}`, message(i, 64));
      b.transport.send("a", `g${i % 2}`, message(i, 64));
    }
    await until(
      "100 more each way",
      10_000,
      () => b.got.length === seq - first + 100 && a.got.length === 600,
    );
    assert.deepEqual(b.got, expected("a", first, seq + 100));
    assert.deepEqual(a.got.slice(500), expected("b", seq, seq + 100));
    assert.equal(a.transport.stats.connects, 2);
    assert.equal(a.transport.stats.malformed + b.transport.stats.malformed, 0);
  } finally {
    await stop(a);
    await stop(b);
  }
});

Deno.test("transport on TCP: a peer that stops acknowledging (a cut swallows what is sent) is dialed again after ackSilenceMsMax; one that acknowledges never is", async () => {
  const env = denoEnv();
  // A healthy peer acknowledges: steady traffic for well over ackSilenceMsMax keeps one connection.
  const a = await startNode("a", 0, [], { ackSilenceMsMax: 300 });
  const b = await startNode("b", 0, [`127.0.0.1:${a.gossip.addr.port}`]);
  // A peer behind a cut: the connection is open, what is written vanishes, nothing comes back.
  const swallow = await env.net.listen({ host: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for (let c = await swallow.accept(); c !== null; c = await swallow.accept()) {
      const conn = c;
      void (async () => {
        const buf = new Uint8Array(64 * 1024);
        while ((await conn.read(buf).catch(() => null)) !== null) { /* swallowed */ }
      })();
    }
  })();
  const lost = new Transport(env, {
    nodeId: "a2",
    resolve: (id) => id === "cut" ? { host: "127.0.0.1", port: swallow.addr.port } : null,
    ackSilenceMsMax: 300,
    reconnectBackoffMsMax: 100,
  });
  try {
    await until("a knows b", 5_000, () => a.gossip.member("b") !== null);
    for (let i = 0; i < 30; i++) {
      a.transport.send("b", "g0", message(i, 64));
      lost.send("cut", "g0", message(i, 64));
      await new Promise((r) => setTimeout(r, 50));
    }
    await until("30 messages at b", 5_000, () => b.got.length === 30);
    assert.equal(a.transport.stats.silentConns, 0, "the acknowledging peer kept its connection");
    assert.equal(a.transport.stats.connects, 1);
    const s = lost.stats;
    assert.ok(s.silentConns >= 2, `${s.silentConns} silent connections closed in 1.5 s`);
    assert.ok(s.connects >= 3, `${s.connects} connections to the silent peer`);
  } finally {
    lost.close();
    swallow.close();
    await accepting.catch(() => {});
    await stop(a);
    await stop(b);
  }
});
