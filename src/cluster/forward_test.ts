import assert from "node:assert/strict";
import { denoEnv } from "../io/deno/mod.ts";
import type { Conn, Env, Listener, Network } from "../io/types.ts";
import { ErrorCode, GregorError, RETRIABLE_CODES } from "../protocol/errors.ts";
import { encodeFrame, Flag, type Frame, FrameParser } from "../protocol/frame.ts";
import { Op, opName } from "../protocol/messages.ts";
import type { ForwardedRequest } from "../broker/control_plane.ts";
import {
  FORWARD_OPCODE,
  Forwarder,
  type ForwarderOptions,
  type ServeForwarded,
} from "./forward.ts";
import { ClusterAuthNetwork } from "./cluster_auth.ts";

const env = denoEnv();
const SECRET = "forwarding-test-secret-0123456789";

/** The real Env with a cluster port that admits and dials only nodes proving `secret`, as `nodeId`. */
function authEnv(nodeId: string, secret = SECRET): Env {
  return { ...env, net: new ClusterAuthNetwork(env, { nodeId, secret }) };
}

/** A node that serves forwarded requests with `serve`. */
function servingNode(serve: ServeForwarded): Forwarder {
  return new Forwarder(env, { nodeId: "node-b", resolve: () => null, serve });
}

/** A cluster port of one: hands each connection's first frame and the rest to `serving.forwarder`. */
async function clusterPort(
  serving: { forwarder: Forwarder },
  net: Network = env.net,
): Promise<{ port: number; close(): void }> {
  const listener: Listener = await net.listen({ host: "127.0.0.1", port: 0 });
  const conns = new Set<Conn>();
  void (async () => {
    for (let conn = await listener.accept(); conn !== null; conn = await listener.accept()) {
      const c = conn;
      conns.add(c);
      void (async () => {
        const parser = new FrameParser({ payloadBytesMax: 1024 * 1024 });
        const buf = new Uint8Array(4096);
        let first: Frame | null = null;
        while (first === null) {
          const r = parser.next();
          if (r.kind === "frame") first = r.frame;
          else if (r.kind === "error") return c.close();
          else {
            const n = await c.read(buf).catch(() => null);
            if (n === null) return c.close();
            parser.push(buf.slice(0, n));
          }
        }
        await serving.forwarder.serve(c, first, parser);
        conns.delete(c);
      })();
    }
  })();
  return {
    port: listener.addr.port,
    close() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
async function deadPort(): Promise<number> {
  const l = await env.net.listen({ host: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

function origin(port: number, opts: Partial<ForwarderOptions> = {}): Forwarder {
  return new Forwarder(env, {
    nodeId: "node-a",
    resolve: (id) => id === "node-b" ? { host: "127.0.0.1", port } : null,
    ...opts,
  });
}

function request(payload: Uint8Array, clientId = "app-1"): ForwardedRequest {
  return { opcode: Op.PRODUCE, payload, clientId, principal: "alice" };
}

/** An answer frame that says what the serving node was given. */
function echo(req: ForwardedRequest): Uint8Array {
  const text = `${req.opcode}|${req.clientId}|${req.principal}|${req.payload.join(",")}`;
  return encodeFrame(req.opcode, 0, new TextEncoder().encode(text), Flag.RESPONSE);
}

function sleep(ms: number): Promise<void> {
  return env.clock.sleep(ms);
}

function assertCode(err: unknown, code: number, pattern: RegExp): void {
  assert.ok(err instanceof GregorError, `expected a protocol error, got ${err}`);
  assert.equal(err.codeName, new GregorError(code, "").codeName, err.message);
  assert.ok(RETRIABLE_CODES.has(err.code), `${err.codeName} must be retriable`);
  assert.match(err.message, pattern);
}

Deno.test("Forwarder.forward() relays the serving node's answer frame as it was sent, and null for none", async () => {
  const serving = servingNode((req) => Promise.resolve(req.payload[0] === 0 ? null : echo(req)));
  const port = await clusterPort({ forwarder: serving });
  const a = origin(port.port);
  try {
    const payloads = [1, 2, 3].map((n) => new Uint8Array([n, n + 1, n + 2]));
    const answers = await Promise.all(payloads.map((p) => a.forward("node-b", request(p))));
    for (const [i, answer] of answers.entries()) {
      assert.deepEqual(answer, echo(request(payloads[i]!)));
    }
    assert.equal(await a.forward("node-b", request(new Uint8Array([0]))), null);
    assert.equal(a.stats.connects, 1, "requests to one peer share one connection");
    assert.equal(serving.stats.served, 4);
  } finally {
    a.close();
    serving.close();
    port.close();
  }
});

Deno.test("Forwarder.forward() to a node that cannot be reached is NOT_LEADER for every caller", async () => {
  const a = origin(await deadPort());
  try {
    const outcomes = await Promise.allSettled(
      [0, 1, 2].map(() => a.forward("node-b", request(new Uint8Array([1])))),
    );
    for (const o of outcomes) {
      assert.equal(o.status, "rejected");
      assertCode((o as PromiseRejectedResult).reason, ErrorCode.NOT_LEADER, /node-b/);
    }
    await assert.rejects(
      a.forward("node-c", request(new Uint8Array([1]))),
      (err) => (assertCode(err, ErrorCode.NOT_LEADER, /node-c is not a known member/), true),
    );
  } finally {
    a.close();
  }
});

Deno.test("Forwarder.forward(): a peer gone with requests in flight fails them as TIMEOUT, and the next request connects again", async () => {
  const hung = servingNode(() => new Promise(() => {}));
  const serving = { forwarder: hung };
  const port = await clusterPort(serving);
  const a = origin(port.port);
  try {
    const inFlight = [1, 2].map((n) => a.forward("node-b", request(new Uint8Array([n]))));
    await sleep(100);
    // The serving node goes: its connections close with the requests unanswered.
    hung.close();
    for (const p of inFlight) {
      await assert.rejects(
        p,
        (err) => (assertCode(err, ErrorCode.TIMEOUT, /lost.*outcome is unknown/), true),
      );
    }
    const back = servingNode((req) => Promise.resolve(echo(req)));
    serving.forwarder = back;
    const payload = new Uint8Array([9]);
    assert.deepEqual(await a.forward("node-b", request(payload)), echo(request(payload)));
    assert.equal(a.stats.connects, 2);
    back.close();
  } finally {
    a.close();
    port.close();
  }
});

Deno.test("Forwarder.forward() gives up after requestTimeoutMs with TIMEOUT", async () => {
  const serving = servingNode(() => new Promise(() => {}));
  const port = await clusterPort({ forwarder: serving });
  const a = origin(port.port, { requestTimeoutMs: 200 });
  try {
    const started = env.clock.now();
    await assert.rejects(
      a.forward("node-b", request(new Uint8Array([1]))),
      (err) => (assertCode(err, ErrorCode.TIMEOUT, /over 200 ms.*outcome is unknown/), true),
    );
    const tookMs = env.clock.now() - started;
    assert.ok(tookMs >= 190 && tookMs < 2000, `took ${tookMs} ms`);
  } finally {
    a.close();
    serving.close();
    port.close();
  }
});

Deno.test("Forwarder: a peer that falls silent (cut off, its TCP connection still open) fails what waits as TIMEOUT after silenceMsMax", async () => {
  // A peer the network cut off: the connection stays open, nothing ever comes back.
  const listener = await env.net.listen({ host: "127.0.0.1", port: 0 });
  const held: Conn[] = [];
  void (async () => {
    for (let c = await listener.accept(); c !== null; c = await listener.accept()) {
      held.push(c);
      const conn = c;
      void (async () => {
        const buf = new Uint8Array(4096);
        while ((await conn.read(buf).catch(() => null)) !== null) { /* swallowed */ }
      })();
    }
  })();
  const a = origin(listener.addr.port, { silenceMsMax: 300, requestTimeoutMs: 10_000 });
  try {
    const started = env.clock.now();
    await assert.rejects(
      a.forward("node-b", request(new Uint8Array([1]))),
      (
        err,
      ) => (assertCode(err, ErrorCode.TIMEOUT, /no word from node-b.*outcome is unknown/), true),
    );
    const tookMs = env.clock.now() - started;
    assert.ok(tookMs >= 290 && tookMs < 2_000, `took ${tookMs} ms, not about silenceMsMax`);
  } finally {
    a.close();
    listener.close();
    for (const c of held) c.close();
  }
});

Deno.test("Forwarder: a serving node slower than silenceMsMax keeps the connection with keepalives", async () => {
  const serving = servingNode(async (req) => {
    await sleep(1_000);
    return echo(req);
  });
  const port = await clusterPort({ forwarder: serving });
  const a = origin(port.port, { silenceMsMax: 400 });
  try {
    const payload = new Uint8Array([7]);
    assert.deepEqual(await a.forward("node-b", request(payload)), echo(request(payload)));
    assert.equal(a.stats.connects, 1, "the connection was never counted lost");
  } finally {
    a.close();
    serving.close();
    port.close();
  }
});

Deno.test("Forwarder keeps at most inFlightMax requests and inFlightBytesMax bytes in flight per peer; the rest wait their turn", async () => {
  for (const bound of [{ inFlightMax: 2 }, { inFlightBytesMax: 150 }]) {
    let now = 0;
    let most = 0;
    const serving = servingNode(async (req) => {
      most = Math.max(most, ++now);
      await sleep(20);
      now--;
      return echo(req);
    });
    const port = await clusterPort({ forwarder: serving });
    const a = origin(port.port, bound);
    try {
      const payloads = [1, 2, 3, 4, 5, 6].map((n) => new Uint8Array(100).fill(n));
      const answers = await Promise.all(payloads.map((p) => a.forward("node-b", request(p))));
      for (const [i, answer] of answers.entries()) {
        assert.deepEqual(answer, echo(request(payloads[i]!)));
      }
      // Two of 100 bytes would pass 150 bytes: one at a time.
      assert.equal(most, "inFlightMax" in bound ? 2 : 1, JSON.stringify(bound));
    } finally {
      a.close();
      serving.close();
      port.close();
    }
  }
});

Deno.test("Forwarder refuses a request past waitingMax at once with LIMIT_EXCEEDED", async () => {
  let release = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const serving = servingNode((req) => gate.then(() => echo(req)));
  const port = await clusterPort({ forwarder: serving });
  const a = origin(port.port, { inFlightMax: 1, waitingMax: 2 });
  try {
    const admitted = [1, 2, 3].map((n) => a.forward("node-b", request(new Uint8Array([n]))));
    await assert.rejects(
      a.forward("node-b", request(new Uint8Array([4]))),
      (err) => (assertCode(err, ErrorCode.LIMIT_EXCEEDED, /2 requests already wait/), true),
    );
    release();
    assert.equal((await Promise.all(admitted)).length, 3);
  } finally {
    a.close();
    serving.close();
    port.close();
  }
});

Deno.test("FORWARD's opcode is its own: no client or cluster-port request has it", () => {
  // The cluster port hands a connection to whoever handles its first frame's opcode: one shared
  // with the cluster-secret handshake would send that handshake to the forwarder, or the reverse.
  assert.equal(opName(FORWARD_OPCODE), null);
  assert.ok(!(Object.values(Op) as number[]).includes(FORWARD_OPCODE));
  assert.equal(FORWARD_OPCODE >> 8, 0x06, "in the node-to-node band");
});

Deno.test("Forwarder.serve() closes a connection that sends a malformed envelope, and serves the others", async () => {
  const serving = servingNode((req) => Promise.resolve(echo(req)));
  const port = await clusterPort({ forwarder: serving });
  const a = origin(port.port);
  try {
    const rogue = await env.net.connect({ host: "127.0.0.1", port: port.port });
    // A FORWARD frame whose envelope names no node and ends early.
    await rogue.write(encodeFrame(FORWARD_OPCODE, 1, new Uint8Array([0, 0, 7])));
    assert.equal(await rogue.read(new Uint8Array(64)).catch(() => null), null);
    rogue.close();
    const payload = new Uint8Array([5]);
    assert.deepEqual(await a.forward("node-b", request(payload)), echo(request(payload)));
  } finally {
    a.close();
    serving.close();
    port.close();
  }
});

Deno.test("Forwarder: an answer that is not a whole answer frame is never relayed; what waited fails as TIMEOUT", async () => {
  const serving = servingNode((req) =>
    Promise.resolve(req.payload[0] === 1 ? new Uint8Array([0x47, 0x4d, 1, 1]) : echo(req))
  );
  const port = await clusterPort({ forwarder: serving });
  const a = origin(port.port);
  try {
    await assert.rejects(
      a.forward("node-b", request(new Uint8Array([1]))),
      (err) => (assertCode(err, ErrorCode.TIMEOUT, /not a whole answer frame/), true),
    );
    const payload = new Uint8Array([2]);
    assert.deepEqual(await a.forward("node-b", request(payload)), echo(request(payload)));
  } finally {
    a.close();
    serving.close();
    port.close();
  }
});

Deno.test("Forwarder over ClusterAuthNetwork: requests go only over connections that proved the secret, as the node proven", async () => {
  const b = authEnv("node-b");
  const serving = new Forwarder(b, {
    nodeId: "node-b",
    resolve: () => null,
    serve: (req) => Promise.resolve(echo(req)),
  });
  const port = await clusterPort({ forwarder: serving }, b.net);
  const at = (id: string) => id === "node-b" ? { host: "127.0.0.1", port: port.port } : null;
  // A node with the secret, one that proved node-c but names itself node-a in its envelopes, one
  // without the secret, and one that takes node-b's address for node-x's.
  const a = new Forwarder(authEnv("node-a"), { nodeId: "node-a", resolve: at });
  const liar = new Forwarder(authEnv("node-c"), { nodeId: "node-a", resolve: at });
  const outsider = new Forwarder(env, { nodeId: "node-a", resolve: at });
  const stale = new Forwarder(authEnv("node-a"), {
    nodeId: "node-a",
    resolve: (id) => id === "node-x" ? { host: "127.0.0.1", port: port.port } : null,
  });
  try {
    const payload = new Uint8Array([4, 2]);
    assert.deepEqual(await a.forward("node-b", request(payload)), echo(request(payload)));
    await assert.rejects(liar.forward("node-b", request(payload)), (err) => {
      assertCode(err, ErrorCode.TIMEOUT, /connection was lost/);
      return true;
    });
    await assert.rejects(outsider.forward("node-b", request(payload)), (err) => {
      assertCode(err, ErrorCode.TIMEOUT, /connection was lost/);
      return true;
    });
    await assert.rejects(stale.forward("node-x", request(payload)), (err) => {
      assertCode(err, ErrorCode.NOT_LEADER, /proved to be node-b/);
      return true;
    });
    assert.equal(serving.stats.served, 1, "only the node with the secret, as itself, was served");
    // The refusals cost nothing to the node with the secret.
    assert.deepEqual(await a.forward("node-b", request(payload)), echo(request(payload)));
  } finally {
    for (const f of [a, liar, outsider, stale, serving]) f.close();
    port.close();
  }
});
