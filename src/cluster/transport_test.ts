// The Raft transport in the simulator: nodes running gossip and a transport on one cluster port,
// under split and short reads and writes, crashes, partitions, resets and hostile peers.

import assert from "node:assert/strict";
import { Simulation } from "../../sim/simulation.ts";
import type { NetFaults } from "../../sim/net.ts";
import type { SimNode } from "../../sim/node.ts";
import type { Conn, Env } from "../io/types.ts";
import { readExactly, writeAll } from "../io/util.ts";
import { encodeFrame, Flag, HEADER_BYTES } from "../protocol/frame.ts";
import { encode, Op, SCHEMAS } from "../protocol/messages.ts";
import { decodeSynResponse, encodeSyn } from "./gossip/codec.ts";
import { Gossip } from "./gossip/mod.ts";
import {
  GROUP_BYTES_MAX,
  MESSAGE_BYTES_MAX,
  RAFT_FRAME_PAYLOAD_BYTES_MAX,
  Transport,
  type TransportOptions,
} from "./transport.ts";

const PORT = 7200;

/** One message as a receiver saw it: sender, group and the sequence number in its first bytes. */
interface Got {
  from: string;
  group: string;
  seq: number;
  bytes: number;
}

/** A message whose first 4 bytes are `seq`, padded to `bytes`. */
function message(seq: number, bytes = 16): Uint8Array {
  const data = new Uint8Array(Math.max(4, bytes));
  new DataView(data.buffer).setUint32(0, seq);
  data.fill(seq & 0xff, 4);
  return data;
}

/** Simulated nodes each running Gossip and a Transport that share the cluster port. */
class Cluster {
  readonly sim: Simulation;
  readonly gossip = new Map<string, Gossip>();
  readonly transport = new Map<string, Transport>();
  /** What each node's current incarnation received. */
  readonly got = new Map<string, Got[]>();
  /** The Env of each node's current incarnation. */
  readonly envs = new Map<string, Env>();
  readonly #release = new Map<string, () => void>();

  constructor(seed: number, net?: NetFaults) {
    this.sim = new Simulation(seed, net === undefined ? {} : { net });
  }

  add(name: string, opts: Partial<TransportOptions> = {}): SimNode {
    return this.sim.addNode({
      name,
      main: async (env: Env) => {
        const g = await Gossip.start(env, {
          nodeId: name,
          host: name,
          bindHost: "0.0.0.0",
          clusterPort: PORT,
          clientPort: 7070,
          seeds: [`n1:${PORT}`],
        });
        const t = new Transport(env, {
          nodeId: name,
          resolve: (id) => {
            const m = g.member(id);
            return m === null ? null : { host: m.host, port: m.clusterPort };
          },
          ...opts,
        });
        g.handle(Op.RAFT, (conn, first, parser) => t.serve(conn, first, parser), {
          payloadBytesMax: RAFT_FRAME_PAYLOAD_BYTES_MAX,
        });
        const got: Got[] = [];
        t.onMessage = (from, group, data) => {
          const seq = new DataView(data.buffer, data.byteOffset).getUint32(0);
          assert.ok(data.subarray(4).every((b) => b === (seq & 0xff)), "message bytes intact");
          got.push({ from, group, seq, bytes: data.length });
        };
        this.envs.set(name, env);
        this.gossip.set(name, g);
        this.transport.set(name, t);
        this.got.set(name, got);
        await new Promise<void>((resolve) => this.#release.set(name, resolve));
        t.close();
        await g.close();
      },
    });
  }

  g(name: string): Gossip {
    const g = this.gossip.get(name);
    assert.ok(g !== undefined, `${name} runs no gossip`);
    return g;
  }

  t(name: string): Transport {
    const t = this.transport.get(name);
    assert.ok(t !== undefined, `${name} runs no transport`);
    return t;
  }

  /** Sequence numbers `to` received from `from`, in arrival order. */
  seqs(to: string, from: string): number[] {
    return (this.got.get(to) ?? []).filter((g) => g.from === from).map((g) => g.seq);
  }

  async until(what: string, withinMs: number, cond: () => boolean): Promise<void> {
    const untilMs = this.sim.world.now + withinMs;
    await this.sim.world.run({ untilMs, stop: cond });
    assert.ok(cond(), `${what} within ${withinMs} ms (seed ${this.sim.seed})`);
  }

  async runFor(ms: number): Promise<void> {
    await this.sim.world.run({ untilMs: this.sim.world.now + ms });
  }

  /** True once `viewer` runs and knows `subject`. */
  knows(viewer: string, subject: string): boolean {
    return (this.gossip.get(viewer)?.member(subject) ?? null) !== null;
  }

  async start(names: readonly string[]): Promise<void> {
    for (const n of names) this.add(n);
    await this.until(
      "every node knows every other",
      10_000,
      () =>
        names.every((v) =>
          this.gossip.has(v) && names.every((s) => this.g(v).member(s)?.state === "alive")
        ),
    );
  }
}

/** True if `xs` is strictly increasing: an in-order subsequence of what was sent, no duplicate. */
function increasing(xs: readonly number[]): boolean {
  return xs.every((x, i) => i === 0 || x > (xs[i - 1] as number));
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

const BRUTAL: NetFaults = {
  latencyMs: 1,
  jitterMs: 4,
  splitProb: 0.5,
  shortWriteProb: 0.5,
  shortReadProb: 0.5,
};

Deno.test("Transport: every message arrives once and in order per sender, across split, merged and short reads and writes", async () => {
  const c = new Cluster(11, { ...BRUTAL });
  const names = ["n1", "n2", "n3"];
  await c.start(names);
  const perPeer = 3000;
  // Bursts of mixed sizes, some far over a frame's byte target, sent while earlier ones flow.
  for (let burst = 0; burst < 10; burst++) {
    for (let i = burst * perPeer / 10; i < (burst + 1) * perPeer / 10; i++) {
      const bytes = i % 500 === 7 ? 1_300_000 : i % 50 === 3 ? 40_000 : 4 + (i % 200);
      for (const from of names) {
        for (const to of names) {
          if (from !== to) c.t(from).send(to, `g${i % 3}`, message(i, bytes));
        }
      }
    }
    await c.runFor(37);
  }
  await c.until(
    "all messages arrived",
    60_000,
    () => names.every((to) => (c.got.get(to) ?? []).length === 2 * perPeer),
  );
  for (const to of names) {
    for (const from of names) {
      if (from === to) continue;
      assert.deepEqual(c.seqs(to, from), range(0, perPeer), `${from} -> ${to}`);
    }
    for (const g of c.got.get(to) ?? []) assert.equal(g.group, `g${g.seq % 3}`);
    const s = c.t(to).stats;
    assert.equal(s.sent, 2 * perPeer);
    assert.equal(s.received, 2 * perPeer);
    assert.equal(s.dropped, 0);
    assert.equal(s.connects, 2, `${to} kept one connection per peer`);
    assert.equal(s.malformed, 0);
  }
  assert.ok(c.sim.net.stats.segments > 0);
});

Deno.test("Transport: to a peer that is down, messages queue up to the bound, the rest drop, and flow resumes when it is back", async () => {
  const c = new Cluster(12);
  c.add("n1", { queueMessagesMax: 32, queueBytesMax: 64 * 1024 });
  c.add("n2");
  await c.until(
    "n1 and n2 know each other",
    10_000,
    () => c.knows("n1", "n2") && c.knows("n2", "n1"),
  );
  c.t("n1").send("n2", "g", message(0));
  await c.until("the first message arrived", 1_000, () => c.seqs("n2", "n1").length === 1);
  c.sim.crash(c.sim.node("n2"), "process");
  await c.runFor(500);
  for (let i = 1; i <= 100; i++) c.t("n1").send("n2", "g", message(i));
  assert.equal(c.t("n1").stats.dropped, 100 - 32, "past 32 queued, each message dropped");
  // The byte bound too: a full 64 KiB of queue takes nothing more, however few messages it holds.
  c.gossip.delete("n2");
  c.sim.node("n2").start();
  await c.until("n2 is back", 1_000, () => c.gossip.has("n2"));
  await c.until("the queued messages arrived", 10_000, () => c.seqs("n2", "n1").length === 32);
  assert.deepEqual(c.seqs("n2", "n1"), range(1, 33));
  for (let i = 101; i < 200; i++) {
    c.t("n1").send("n2", "g", message(i));
    if (i % 20 === 0) await c.runFor(10);
  }
  await c.until("new messages flow", 1_000, () => c.seqs("n2", "n1").length === 32 + 99);
  assert.deepEqual(c.seqs("n2", "n1").slice(32), range(101, 200));
  assert.equal(c.t("n1").stats.connects, 2);
  assert.equal(c.t("n1").stats.dropped, 68);

  // Bytes: with the peer down, 64 KiB of queue holds two 30 KiB messages, not a third.
  c.sim.crash(c.sim.node("n2"), "process");
  await c.runFor(500);
  const dropped = c.t("n1").stats.dropped;
  for (let i = 200; i < 205; i++) c.t("n1").send("n2", "g", message(i, 30 * 1024));
  assert.equal(c.t("n1").stats.dropped - dropped, 3);
  c.sim.node("n2").start();
  await c.until("the two queued messages arrived", 10_000, () => c.seqs("n2", "n1").length === 2);
  assert.deepEqual(c.seqs("n2", "n1"), [200, 201]);
});

Deno.test("Transport: a message bigger than the byte bound still goes alone to an empty queue", async () => {
  const c = new Cluster(13);
  c.add("n1", { queueBytesMax: 1024 });
  c.add("n2");
  await c.until("n1 knows n2", 10_000, () => c.knows("n1", "n2"));
  c.t("n1").send("n2", "g", message(1, 100_000));
  c.t("n1").send("n2", "g", message(2, 10));
  await c.until("the big message arrived", 2_000, () => c.seqs("n2", "n1").length >= 1);
  await c.runFor(100);
  assert.deepEqual(c.seqs("n2", "n1"), [1]);
  assert.equal((c.got.get("n2") ?? [])[0]?.bytes, 100_000);
  assert.equal(c.t("n1").stats.dropped, 1);
});

Deno.test("Transport: across a partition messages are held or dropped, and delivery resumes in order once it heals", async () => {
  const c = new Cluster(14, {
    latencyMs: 1,
    jitterMs: 2,
    splitProb: 0.2,
    shortWriteProb: 0.2,
    shortReadProb: 0.2,
  });
  c.add("n1", { queueMessagesMax: 64, writeTimeoutMs: 2_000 });
  c.add("n2");
  await c.until("n1 knows n2", 10_000, () => c.knows("n1", "n2"));
  let seq = 0;
  for (; seq < 50; seq++) c.t("n1").send("n2", "g", message(seq, 1000));
  await c.until("before the partition, all arrive", 1_000, () => c.seqs("n2", "n1").length === 50);
  c.sim.net.partition([["n1"], ["n2"]]);
  // Enough to fill the connection's window and block the writer, then the queue.
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 40; i++, seq++) c.t("n1").send("n2", "g", message(seq, 8 * 1024));
    await c.runFor(500);
  }
  assert.ok(c.t("n1").stats.dropped > 0, "a long partition drops messages");
  c.sim.net.heal();
  const healedAt = seq;
  await c.runFor(5_000);
  for (let i = 0; i < 50; i++, seq++) c.t("n1").send("n2", "g", message(seq, 1000));
  await c.until(
    "messages sent after the heal arrive",
    10_000,
    () => c.seqs("n2", "n1").filter((s) => s >= healedAt).length === 50,
  );
  const got = c.seqs("n2", "n1");
  assert.ok(increasing(got), "in order, no duplicates");
  assert.deepEqual(got.slice(0, 50), range(0, 50));
  assert.deepEqual(got.filter((s) => s >= healedAt), range(healedAt, seq));
  const s = c.t("n1").stats;
  assert.equal(s.sent + s.dropped, seq, "every message sent or counted as dropped");
  assert.ok(s.connects >= 2, "the blocked connection was replaced");
});

Deno.test("Transport: a dial begun during a one-way partition connects once it heals, before the connect timeout", async () => {
  // Cluster seed 7969: the leader's dial to a follower started while the partition dropped its
  // SYN, so after the heal the follower heard nothing for the whole connect timeout and backoff.
  const c = new Cluster(17);
  await c.start(["n1", "n2"]);
  c.sim.net.block("n1", "n2");
  const t0 = c.sim.world.now;
  c.t("n1").send("n2", "g", message(1));
  await c.runFor(300);
  c.sim.net.heal();
  await c.until("the message arrives", 5_000, () => c.seqs("n2", "n1").length === 1);
  const tookMs = c.sim.world.now - t0;
  assert.ok(tookMs < 1_500, `delivered ${tookMs} ms after sending; the connect timeout is 2000 ms`);
  assert.equal(c.t("n1").stats.connects, 1);
});

Deno.test("Transport: a node in a long reconnect backoff dials at once when the peer connects to it", async () => {
  // The flipping-minority cut (issue [R]): after a long cut both sides of a link sat in their
  // backoff, and a vote needs both directions; the first side through must bring the other.
  const c = new Cluster(23);
  c.add("n1", {
    reconnectBackoffMsMin: 8_000,
    reconnectBackoffMsMax: 8_000,
    connectTimeoutMs: 500,
  });
  c.add("n2", { reconnectBackoffMsMax: 200, connectTimeoutMs: 500 });
  await c.until(
    "the two know each other",
    10_000,
    () =>
      ["n1", "n2"].every((v) =>
        c.gossip.has(v) && ["n1", "n2"].every((o) => c.g(v).member(o)?.state === "alive")
      ),
  );
  c.sim.net.partition([["n1"], ["n2"]]);
  c.t("n1").send("n2", "g", message(1));
  c.t("n2").send("n1", "g", message(1));
  // n1 tried once, failed after its connect timeout, and now waits 8 s.
  await c.runFor(1_000);
  c.sim.net.heal();
  const healedAt = c.sim.world.now;
  await c.until("n2's message reaches n1", 2_000, () => c.seqs("n1", "n2").length === 1);
  await c.until("n1's message reaches n2", 2_000, () => c.seqs("n2", "n1").length === 1);
  const tookMs = c.sim.world.now - healedAt;
  assert.ok(tookMs < 1_500, `n1 reached n2 ${tookMs} ms after the heal; its backoff is 8000 ms`);
});

Deno.test("Transport: a reset connection is replaced and messages flow again", async () => {
  const c = new Cluster(15);
  await c.start(["n1", "n2"]);
  for (let i = 0; i < 10; i++) c.t("n1").send("n2", "g", message(i));
  await c.until("the first ten arrive", 1_000, () => c.seqs("n2", "n1").length === 10);
  const conns = c.sim.net.openConns().filter((x) =>
    x.node.name === "n1" && x.remote.host === "n2" && x.remote.port === PORT
  );
  assert.ok(conns.length >= 1);
  for (const x of conns) c.sim.net.resetConn(x);
  await c.runFor(100);
  for (let i = 10; i < 20; i++) c.t("n1").send("n2", "g", message(i));
  await c.until("messages after the reset arrive", 5_000, () => c.seqs("n2", "n1").includes(19));
  assert.deepEqual(c.seqs("n2", "n1"), range(0, 20));
  assert.equal(c.t("n1").stats.connects, 2);
  assert.equal(c.t("n1").stats.dropped, 0);
});

Deno.test("Transport: a peer whose address changes is reconnected at the new one", async () => {
  const c = new Cluster(16);
  await c.start(["n1", "n2", "n3"]);
  // n1 believes "peer" lives at n2, then at n3: both serve a transport that records the sender.
  let at = "n2";
  const t = new Transport(envOf(c, "n1"), {
    nodeId: "n9",
    resolve: () => ({ host: at, port: PORT }),
  });
  t.send("peer", "g", message(0));
  await c.until("n2 got the message", 1_000, () => c.seqs("n2", "n9").length === 1);
  at = "n3";
  t.send("peer", "g", message(1));
  await c.until("n3 got the next one", 1_000, () => c.seqs("n3", "n9").length === 1);
  assert.deepEqual(c.seqs("n3", "n9"), [1]);
  assert.equal(t.stats.connects, 2);
  t.close();
});

/** The Env of `name`'s running incarnation. */
function envOf(c: Cluster, name: string): Env {
  const env = c.envs.get(name);
  assert.ok(env !== undefined);
  return env;
}

/** Sends `bytes` on a fresh connection to n1's cluster port, then reads until it closes. */
async function rawSend(env: Env, bytes: Uint8Array): Promise<void> {
  const conn = await env.net.connect({ host: "n1", port: PORT });
  await writeAll(conn, bytes).catch(() => {});
  await drain(conn);
}

async function drain(conn: Conn): Promise<void> {
  const buf = new Uint8Array(1024);
  try {
    while ((await conn.read(buf)) !== null);
  } catch {
    // A reset ends it too.
  }
}

function raftFrame(fromId: string, messages: { group: string; data: Uint8Array }[], flags = 0) {
  return encodeFrame(Op.RAFT, 0, encode(SCHEMAS.RAFT.request, { fromId, messages }), flags);
}

Deno.test("Transport: garbage after or instead of a RAFT frame closes only that connection; gossip and other senders go on", async () => {
  const c = new Cluster(17);
  await c.start(["n1", "n2"]);
  c.t("n2").send("n1", "g", message(0));
  await c.until("n2's connection is up", 1_000, () => c.seqs("n1", "n2").length === 1);
  const gossipMalformed = c.g("n1").stats.malformed;
  const answers: number[] = [];
  const done: string[] = [];
  c.sim.addNode({
    name: "evil",
    main: async (env) => {
      // A good frame, then bytes that are not a frame.
      await rawSend(
        env,
        concat(
          raftFrame("evil", [{ group: "g", data: message(1) }]),
          new TextEncoder().encode("GET / HTTP/1.1\r\nHost: n1\r\n\r\n"),
        ),
      );
      done.push("garbage after");
      // Wrong flags, a payload that does not decode, a null message, a sender that changes.
      await rawSend(env, raftFrame("evil", [{ group: "g", data: message(2) }], Flag.RESPONSE));
      await rawSend(env, encodeFrame(Op.RAFT, 0, new Uint8Array([0, 4, 1, 2])));
      await rawSend(env, raftFrame("evil", [{ group: "g", data: null as unknown as Uint8Array }]));
      await rawSend(
        env,
        concat(
          raftFrame("evil", [{ group: "g", data: message(3) }]),
          raftFrame("n2", [{ group: "g", data: message(4) }]),
        ),
      );
      done.push("bad frames");
      // Garbage instead of a frame is gossip's to refuse.
      await rawSend(env, new TextEncoder().encode("not a frame at all, just some bytes"));
      done.push("garbage instead");
      // And a gossip exchange on the same port still succeeds.
      const conn = await env.net.connect({ host: "n1", port: PORT });
      await writeAll(
        conn,
        encodeFrame(Op.GOSSIP_SYN, 5, encodeSyn({ fromId: "evil", digest: [] })),
      );
      const header = new Uint8Array(HEADER_BYTES);
      assert.ok(await readExactly(conn, header));
      answers.push(header[3] as number);
      const body = new Uint8Array(new DataView(header.buffer).getUint32(12));
      assert.ok(await readExactly(conn, body));
      assert.ok(decodeSynResponse(body).digest.some((d) => d.id === "n2"));
      conn.close();
      done.push("gossip");
    },
  });
  await c.until("the hostile node is done", 10_000, () => done.length === 4);
  assert.deepEqual(answers, [Flag.RESPONSE]);
  assert.deepEqual(c.seqs("n1", "evil"), [1, 3], "valid frames before the bad ones were delivered");
  assert.equal(c.t("n1").stats.malformed, 5);
  assert.equal(c.g("n1").stats.malformed, gossipMalformed + 1);
  // The honest sender's connection was never disturbed.
  c.t("n2").send("n1", "g", message(1));
  await c.until("n2's next message arrives", 1_000, () => c.seqs("n1", "n2").length === 2);
  assert.equal(c.t("n2").stats.connects, 1);
});

Deno.test("Transport: a newer connection from the same sender replaces the older one", async () => {
  const c = new Cluster(22);
  await c.start(["n1"]);
  const done: boolean[] = [];
  c.sim.addNode({
    name: "evil",
    main: async (env) => {
      const first = await env.net.connect({ host: "n1", port: PORT });
      await writeAll(first, raftFrame("evil", [{ group: "g", data: message(1) }]));
      await env.clock.sleep(10);
      const second = await env.net.connect({ host: "n1", port: PORT });
      await writeAll(second, raftFrame("evil", [{ group: "g", data: message(2) }]));
      await env.clock.sleep(10);
      // The old connection was closed by n1: this frame is never delivered.
      await writeAll(first, raftFrame("evil", [{ group: "g", data: message(3) }])).catch(() => {});
      await drain(first);
      await writeAll(second, raftFrame("evil", [{ group: "g", data: message(4) }]));
      await env.clock.sleep(10);
      second.close();
      done.push(true);
    },
  });
  await c.until("the sender is done", 1_000, () => done.length === 1);
  await c.runFor(100);
  assert.deepEqual(c.seqs("n1", "evil"), [1, 2, 4]);
  assert.equal(c.t("n1").stats.malformed, 0);
});

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

Deno.test("Transport: the same seed gives the same trace", async () => {
  const hashes: string[] = [];
  for (let i = 0; i < 2; i++) {
    const c = new Cluster(19, { ...BRUTAL });
    await c.start(["n1", "n2", "n3"]);
    for (let k = 0; k < 200; k++) {
      c.t("n1").send("n2", "g", message(k, 100 + k));
      c.t("n3").send("n1", "g", message(k, 100 + k));
    }
    c.sim.crash(c.sim.node("n2"), "power", 2_000);
    await c.runFor(5_000);
    hashes.push(c.sim.world.trace.hex());
  }
  assert.equal(hashes[0], hashes[1]);
});

Deno.test("new Transport() and send() reject invalid arguments, naming them", () => {
  const c = new Cluster(20);
  const fake = {} as Env;
  const resolve = () => null;
  assert.throws(() => new Transport(fake, { nodeId: "a b", resolve }), /nodeId/);
  assert.throws(
    () => new Transport(fake, { nodeId: "a", resolve, queueMessagesMax: 0 }),
    /queueMessagesMax/,
  );
  assert.throws(
    () =>
      new Transport(fake, {
        nodeId: "a",
        resolve,
        reconnectBackoffMsMin: 10,
        reconnectBackoffMsMax: 5,
      }),
    /reconnectBackoffMsMax/,
  );
  assert.throws(
    () => new Transport(fake, { nodeId: "a", resolve: undefined as unknown as () => null }),
    /resolve/,
  );
  const t = new Transport(
    { ...fake, random: c.sim.random.fork("t") } as Env,
    { nodeId: "a", resolve },
  );
  assert.throws(() => t.send("a", "g", new Uint8Array(1)), /not another node's id/);
  assert.throws(() => t.send("b c", "g", new Uint8Array(1)), /not another node's id/);
  assert.throws(() => t.send("b", "", new Uint8Array(1)), /group/);
  assert.throws(() => t.send("b", "x".repeat(GROUP_BYTES_MAX + 1), new Uint8Array(1)), /group/);
  assert.throws(() => t.send("b", "g", new Uint8Array(MESSAGE_BYTES_MAX + 1)), /over the limit/);
  t.close();
  t.send("b", "g", new Uint8Array(1));
  assert.equal(t.stats.dropped, 1, "a closed transport drops");
});

Deno.test("Gossip.handle() refuses gossip's own opcodes, a second handler, and a bad limit", async () => {
  const c = new Cluster(21);
  await c.start(["n1"]);
  const g = c.g("n1");
  const h = () => Promise.resolve();
  assert.throws(() => g.handle(Op.GOSSIP_SYN, h, { payloadBytesMax: 1 }), /already answers/);
  assert.throws(() => g.handle(Op.RAFT, h, { payloadBytesMax: 1 }), /already answers/);
  assert.throws(() => g.handle(0x0604, h, { payloadBytesMax: 0 }), /payloadBytesMax/);
});
