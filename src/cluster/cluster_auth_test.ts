// The cluster handshake on the simulated network: nodes with the secret connect and learn each
// other's proven id; a dialer or a listener without it, with another one, replaying a captured
// exchange, or saying nothing is refused, and the refusing side says why in its log.

import assert from "node:assert/strict";
import { Simulation } from "../../sim/simulation.ts";
import type { Addr, Conn, ConnectOptions, Env, Listener, Network } from "../io/types.ts";
import { readExactly, writeAll } from "../io/util.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { encodeFrame, Flag, HEADER_BYTES, writeHeader } from "../protocol/frame.ts";
import {
  decode,
  encode,
  ERROR_SCHEMA,
  type ErrorPayload,
  Op,
  SCHEMAS,
} from "../protocol/messages.ts";
import { SeededRandom } from "../io/prng.ts";
import { encodeSyn } from "./gossip/codec.ts";
import { Gossip } from "./gossip/mod.ts";
import {
  CLUSTER_AUTH_DEFAULTS,
  ClusterAuthError,
  ClusterAuthNetwork,
  type ClusterAuthOptions,
} from "./cluster_auth.ts";

const PORT = 7300;
const SECRET = "correct horse battery staple";
const OTHER_SECRET = "incorrect horse battery staple";

/** A simulated world where each test's nodes run one body each, and what they logged. */
class World {
  readonly sim: Simulation;
  readonly logs = new Map<string, string[]>();

  constructor(seed: number) {
    this.sim = new Simulation(seed, {
      net: { latencyMs: 1, jitterMs: 2, splitProb: 0.5, shortWriteProb: 0.3, shortReadProb: 0.3 },
    });
  }

  /** Runs `body` on a node called `name`; resolves with what it returned, or rejects. */
  node<T>(name: string, body: (env: Env) => Promise<T>): Promise<T> {
    const done = new Promise<T>((resolve, reject) => {
      this.sim.addNode({
        name,
        main: async (env) => {
          try {
            resolve(await body(env));
          } catch (err) {
            reject(err);
          }
          await new Promise(() => {});
        },
      });
    });
    // Awaited once the world has run; until then a rejection is not unhandled.
    done.catch(() => {});
    return done;
  }

  /** A ClusterAuthNetwork for node `name`, logging into `logs`. */
  auth(env: Env, name: string, opts: Partial<ClusterAuthOptions> = {}): ClusterAuthNetwork {
    const lines: string[] = [];
    this.logs.set(name, lines);
    return new ClusterAuthNetwork(env, {
      nodeId: name,
      secret: SECRET,
      onLog: (level, msg) => lines.push(`${level}: ${msg}`),
      ...opts,
    });
  }

  async settle(ms = 20_000): Promise<void> {
    await this.sim.world.run({ untilMs: this.sim.world.now + ms });
  }
}

/** Listens as `name` with the secret and echoes every byte of each authenticated connection. */
function echoServer(w: World, env: Env, name: string, opts: Partial<ClusterAuthOptions> = {}) {
  const accepted: Conn[] = [];
  const net = w.auth(env, name, opts);
  const ready = net.listen({ host: "0.0.0.0", port: PORT }).then((l) => {
    void (async () => {
      for (let c = await l.accept(); c !== null; c = await l.accept()) {
        accepted.push(c);
        const conn = c;
        void (async () => {
          const buf = new Uint8Array(1024);
          for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
            await writeAll(conn, buf.slice(0, n));
          }
        })().catch(() => {});
      }
    })();
    return l;
  });
  return { net, accepted, ready };
}

/** Reads one frame from a raw connection. */
async function readFrame(
  conn: Conn,
): Promise<{ opcode: number; flags: number; payload: Uint8Array }> {
  const header = new Uint8Array(HEADER_BYTES);
  assert.ok(await readExactly(conn, header), "the connection ended before a frame");
  const dv = new DataView(header.buffer);
  const payload = new Uint8Array(dv.getUint32(12));
  await readExactly(conn, payload);
  return { opcode: dv.getUint16(4), flags: dv.getUint8(3), payload };
}

Deno.test("ClusterAuthNetwork: nodes with the same secret connect, each learns the other's proven id, and bytes flow both ways", async () => {
  const w = new World(1);
  let server: ReturnType<typeof echoServer> | null = null;
  void w.node("a", async (env) => {
    server = echoServer(w, env, "a");
    await server.ready;
  });
  const result = w.node("b", async (env) => {
    const net = w.auth(env, "b");
    await env.clock.sleep(10);
    const conn = await net.connect({ host: "a", port: PORT });
    const sent = new Uint8Array(5000).map((_, i) => i & 0xff);
    await writeAll(conn, sent);
    const back = new Uint8Array(sent.length);
    await readExactly(conn, back);
    conn.close();
    return { peer: conn.peerNodeId, back, sent, stats: net.stats };
  });
  await w.settle();
  const r = await result;
  assert.equal(r.peer, "a");
  assert.deepEqual(r.back, r.sent);
  assert.equal(r.stats.dialed, 1);
  assert.equal(server!.accepted.length, 1);
  assert.equal(server!.accepted[0]!.peerNodeId, "b");
  assert.equal(server!.net.stats.accepted, 1);
  assert.deepEqual([...w.logs.values()].flat(), []);
});

Deno.test("ClusterAuthNetwork: a dialer with another secret is refused, and both ends log it", async () => {
  const w = new World(2);
  let server: ReturnType<typeof echoServer> | null = null;
  void w.node("a", async (env) => {
    server = echoServer(w, env, "a");
    await server.ready;
  });
  const result = w.node("rogue", async (env) => {
    const net = w.auth(env, "rogue", { secret: OTHER_SECRET });
    await env.clock.sleep(10);
    return await net.connect({ host: "a", port: PORT }).then(() => null, (err) => err);
  });
  await w.settle();
  const err = await result;
  assert.ok(err instanceof ClusterAuthError, String(err));
  assert.match(err.message, /node a refused this node's proof: the cluster secrets differ/);
  assert.equal(server!.accepted.length, 0);
  assert.equal(server!.net.stats.refusedInbound, 1);
  const [serverLog] = w.logs.get("a")!;
  assert.match(
    serverLog!,
    /^warn: Cluster connection from rogue:\d+ \(claiming node rogue\) refused: its proof as node rogue does not verify/,
  );
  assert.match(w.logs.get("rogue")![0]!, /^error: Cluster peer at a:7300 refused: node a refused/);
});

Deno.test("ClusterAuthNetwork: during a change of secret, a node holding the new and the previous one connects both ways with nodes holding either, and those two still refuse each other", async () => {
  const w = new World(7);
  const roles: Record<string, Partial<ClusterAuthOptions>> = {
    old: { secret: SECRET },
    both: { secret: OTHER_SECRET, previousSecret: SECRET },
    new: { secret: OTHER_SECRET },
  };
  const outcomes = new Map<string, Promise<Record<string, string>>>();
  for (const [name, opts] of Object.entries(roles)) {
    outcomes.set(
      name,
      w.node(name, async (env) => {
        const server = echoServer(w, env, name, opts);
        await server.ready;
        await env.clock.sleep(10);
        const seen: Record<string, string> = {};
        for (const peer of Object.keys(roles)) {
          if (peer === name) continue;
          seen[peer] = await server.net.connect({ host: peer, port: PORT }).then(async (conn) => {
            const sent = new Uint8Array(300).map((_, i) => i & 0xff);
            await writeAll(conn, sent);
            const back = new Uint8Array(sent.length);
            await readExactly(conn, back);
            conn.close();
            assert.deepEqual(back, sent);
            return `ok as ${conn.peerNodeId}`;
          }, (err) => (err instanceof ClusterAuthError ? "refused" : String(err)));
        }
        return seen;
      }),
    );
  }
  await w.settle();
  assert.deepEqual(await outcomes.get("old"), { both: "ok as both", new: "refused" });
  assert.deepEqual(await outcomes.get("both"), { old: "ok as old", new: "ok as new" });
  assert.deepEqual(await outcomes.get("new"), { old: "refused", both: "ok as both" });
  assert.deepEqual(w.logs.get("both"), [], "the node holding both refused nobody");
});

Deno.test("ClusterAuthNetwork: a process without the secret (plain gossip) gets AUTHENTICATION_FAILED for its first frame", async () => {
  const w = new World(3);
  let server: ReturnType<typeof echoServer> | null = null;
  void w.node("a", async (env) => {
    server = echoServer(w, env, "a");
    await server.ready;
  });
  const result = w.node("rogue", async (env) => {
    await env.clock.sleep(10);
    const conn = await env.net.connect({ host: "a", port: PORT });
    await writeAll(conn, encodeFrame(Op.GOSSIP_SYN, 9, encodeSyn({ fromId: "a", digest: [] })));
    const f = await readFrame(conn);
    const end = await conn.read(new Uint8Array(16));
    return { f, end };
  });
  await w.settle();
  const { f, end } = await result;
  assert.equal(f.flags, Flag.RESPONSE | Flag.ERROR);
  const e = decode<ErrorPayload>(ERROR_SCHEMA, f.payload, "error");
  assert.equal(e.code, ErrorCode.AUTHENTICATION_FAILED);
  assert.equal(end, null, "the node closed the connection");
  assert.equal(server!.accepted.length, 0);
  assert.match(
    w.logs.get("a")![0]!,
    /^warn: Cluster connection from rogue:\d+ refused: it sent GOSSIP_SYN without authenticating first; give that node the cluster secret$/,
  );
});

Deno.test("ClusterAuthNetwork: a dialer does not trust a listener that does not ask for the secret", async () => {
  const w = new World(4);
  void w.node("plain", async (env) => {
    await Gossip.start(env, {
      nodeId: "plain",
      host: "plain",
      bindHost: "0.0.0.0",
      clusterPort: PORT,
      clientPort: 7070,
      seeds: [],
    });
  });
  const result = w.node("b", async (env) => {
    const net = w.auth(env, "b");
    await env.clock.sleep(10);
    return await net.connect({ host: "plain", port: PORT }).then(() => null, (err) => err);
  });
  await w.settle(5_000);
  const err = await result;
  assert.ok(err instanceof ClusterAuthError, String(err));
  assert.match(err.message, /it does not ask for the cluster secret, so it is not trusted/);
  assert.match(w.logs.get("b")![0]!, /^error: Cluster peer at plain:7300 refused: it does not ask/);
});

Deno.test("gossip on an authenticated connection refuses a SYN from any id but the one proven", async () => {
  const w = new World(8);
  let gossip: Gossip | null = null;
  void w.node("a", async (env) => {
    gossip = await Gossip.start({ ...env, net: w.auth(env, "a") }, {
      nodeId: "a",
      host: "a",
      bindHost: "0.0.0.0",
      clusterPort: PORT,
      clientPort: 7070,
      seeds: [],
    });
  });
  const result = w.node("b", async (env) => {
    await env.clock.sleep(10);
    const conn = await w.auth(env, "b").connect({ host: "a", port: PORT });
    // b holds the secret, but speaks for c.
    await writeAll(conn, encodeFrame(Op.GOSSIP_SYN, 5, encodeSyn({ fromId: "c", digest: [] })));
    return await readFrame(conn);
  });
  await w.settle(5_000);
  const f = await result;
  assert.equal(f.flags, Flag.RESPONSE | Flag.ERROR);
  const e = decode<ErrorPayload>(ERROR_SCHEMA, f.payload, "error");
  assert.equal(e.code, ErrorCode.MALFORMED_REQUEST);
  assert.match(e.message, /GOSSIP_SYN from c on a connection authenticated as b/);
  assert.deepEqual(gossip!.members().map((m) => m.id), ["a"]);
});

/** Wraps a Network so that everything written on connections it dials is recorded. */
function tapped(inner: Network, written: Uint8Array[]): Network {
  return {
    listen: (addr: Addr) => inner.listen(addr) as Promise<Listener>,
    async connect(addr: Addr, opts?: ConnectOptions) {
      const c = await inner.connect(addr, opts);
      return {
        read: (buf) => c.read(buf),
        async write(bytes) {
          const n = await c.write(bytes);
          written.push(bytes.slice(0, n));
          return n;
        },
        close: () => c.close(),
        local: c.local,
        remote: c.remote,
      };
    },
  };
}

Deno.test("ClusterAuthNetwork: a captured exchange replayed by a process without the secret is refused", async () => {
  const w = new World(5);
  let server: ReturnType<typeof echoServer> | null = null;
  void w.node("a", async (env) => {
    server = echoServer(w, env, "a");
    await server.ready;
  });
  const written: Uint8Array[] = [];
  const captured = w.node("b", async (env) => {
    const net = w.auth({ ...env, net: tapped(env.net, written) }, "b");
    await env.clock.sleep(10);
    const conn = await net.connect({ host: "a", port: PORT });
    conn.close();
    return concat(written);
  });
  await w.settle(5_000);
  const bytes = await captured;
  // The dialer's HELLO and its proof, exactly as b sent them.
  const helloLength = HEADER_BYTES + new DataView(bytes.buffer).getUint32(12);
  const hello = bytes.slice(0, helloLength);
  const proof = bytes.slice(helloLength);
  const replay = w.node("rogue", async (env) => {
    const conn = await env.net.connect({ host: "a", port: PORT });
    await writeAll(conn, hello);
    const answer = await readFrame(conn);
    await writeAll(conn, proof);
    return { answer, refusal: await readFrame(conn) };
  });
  await w.settle(5_000);
  const { answer, refusal } = await replay;
  assert.equal(answer.opcode, Op.CLUSTER_HELLO, "a answered the replayed HELLO with a new nonce");
  assert.equal(refusal.flags, Flag.RESPONSE | Flag.ERROR);
  assert.equal(
    decode<ErrorPayload>(ERROR_SCHEMA, refusal.payload, "error").code,
    ErrorCode.AUTHENTICATION_FAILED,
  );
  assert.equal(server!.accepted.length, 1, "only b's own connection got through");
  assert.match(
    w.logs.get("a")!.at(-1)!,
    /claiming node b\) refused: its proof as node b does not verify/,
  );
});

Deno.test("ClusterAuthNetwork: a connection that never finishes the handshake is closed after the timeout, and a flood past handshakingMax at once", async () => {
  const w = new World(6);
  let server: ReturnType<typeof echoServer> | null = null;
  void w.node("a", async (env) => {
    server = echoServer(w, env, "a", { handshakingMax: 4 });
    await server.ready;
  });
  const ends: number[] = [];
  void w.node("rogue", async (env) => {
    await env.clock.sleep(10);
    const t0 = env.clock.now();
    for (let i = 0; i < 6; i++) {
      const conn = await env.net.connect({ host: "a", port: PORT });
      void (async () => {
        const buf = new Uint8Array(64);
        while ((await conn.read(buf).catch(() => null)) !== null);
        ends.push(env.clock.now() - t0);
      })();
    }
  });
  await w.settle(CLUSTER_AUTH_DEFAULTS.handshakeTimeoutMs * 2);
  ends.sort((x, y) => x - y);
  assert.equal(ends.length, 6);
  assert.ok(ends[1]! < 100, `the two past the limit closed at once: ${ends}`);
  for (const ms of ends.slice(2)) {
    assert.ok(
      ms >= CLUSTER_AUTH_DEFAULTS.handshakeTimeoutMs &&
        ms < CLUSTER_AUTH_DEFAULTS.handshakeTimeoutMs + 100,
      `closed after ${ms} ms`,
    );
  }
  assert.equal(server!.accepted.length, 0);
  assert.match(w.logs.get("a")![0]!, /did not finish the cluster handshake within 5000 ms/);
});

Deno.test("ClusterAuthNetwork: 20,000 hostile handshakes (flipped, cut, reordered, oversized) are all refused and closed, and a real node still gets in", async () => {
  const w = new World(7);
  let server: ReturnType<typeof echoServer> | null = null;
  void w.node("a", async (env) => {
    // Two secrets, so the proofs of every length go through the check of one HMAC per secret.
    server = echoServer(w, env, "a", { previousSecret: OTHER_SECRET });
    await server.ready;
  });
  const r = new SeededRandom(7, "hostile");
  const ends: Record<string, number> = {};
  const hostile = w.node("rogue", async (env) => {
    await env.clock.sleep(10);
    for (let i = 0; i < HOSTILE_CASES; i++) {
      const [kind, bytes] = hostileHandshake(r);
      const conn = await env.net.connect({ host: "a", port: PORT });
      const ended = (async () => {
        try {
          await writeAll(conn, bytes);
          const buf = new Uint8Array(1024);
          while ((await conn.read(buf)) !== null);
          return "closed";
        } catch {
          return "reset";
        }
      })();
      const end = await Promise.race([
        ended,
        env.clock.sleep(CLUSTER_AUTH_DEFAULTS.handshakeTimeoutMs + 1_000).then(() => "open"),
      ]);
      conn.close();
      ends[`${kind} ${end}`] = (ends[`${kind} ${end}`] ?? 0) + 1;
    }
  });
  await w.settle(HOSTILE_CASES * 6_000);
  await hostile;
  const honest = w.node("b", async (env) => {
    const conn = await w.auth(env, "b").connect({ host: "a", port: PORT });
    conn.close();
    return conn.peerNodeId;
  });
  await w.settle(5_000);
  assert.equal(await honest, "a");
  assert.equal(server!.accepted.length, 1, "only the real node got in");
  // A HELLO in the listener's own id is taken for a node dialing itself: closed, not counted.
  const selfHellos = Object.entries(ends).filter(([k]) => k.startsWith("self hello"))
    .reduce((n, [, v]) => n + v, 0);
  assert.equal(
    server!.net.stats.refusedInbound,
    HOSTILE_CASES - selfHellos,
    JSON.stringify(ends),
  );
  assert.ok(Object.keys(ends).every((k) => !k.endsWith(" open")), JSON.stringify(ends));
  assert.deepEqual(w.sim.exits, []);
});

const HOSTILE_CASES = 20_000;

/** A handshake gone wrong in one of several ways: its kind and its bytes. */
function hostileHandshake(r: SeededRandom): [string, Uint8Array] {
  const hello = encodeFrame(
    Op.CLUSTER_HELLO,
    r.u32(),
    encode(SCHEMAS.CLUSTER_HELLO.request, { nodeId: "b", nonce: r.secureBytes(32) }),
  );
  const proof = encodeFrame(
    Op.CLUSTER_PROOF,
    0,
    // One, two or three HMACs' worth, or a length that is none.
    encode(SCHEMAS.CLUSTER_PROOF.request, { proof: r.secureBytes(r.int(0, 97)) }),
  );
  const both = concat([hello, proof]);
  switch (r.int(0, 7)) {
    case 0: {
      const b = both.slice();
      const at = r.int(0, b.length);
      b[at] = (b[at] as number) ^ (1 << r.int(0, 8));
      return ["flipped", b];
    }
    case 1:
      return ["cut", both.slice(0, r.int(0, both.length))];
    case 2:
      return ["garbage", r.secureBytes(r.int(1, 300))];
    case 3:
      return ["proof first", concat([proof, hello])];
    case 4:
      return ["guessed proof", both];
    case 5: {
      // A header announcing a payload far over the handshake's limit.
      const b = hello.slice(0, HEADER_BYTES);
      writeHeader(b, {
        version: 1,
        flags: 0,
        opcode: Op.CLUSTER_HELLO,
        correlationId: 1,
        payloadLength: r.int(257, 1 << 30),
      });
      return ["oversized", b];
    }
    default: {
      const nonce = r.secureBytes(r.pick([0, 1, 31, 33, 64]));
      const id = r.pick(["a", "", "not an id", "x".repeat(65)]);
      return [
        id === "a" ? "self hello" : "bad hello",
        encodeFrame(
          Op.CLUSTER_HELLO,
          1,
          encode(SCHEMAS.CLUSTER_HELLO.request, { nodeId: id, nonce }),
        ),
      ];
    }
  }
}

Deno.test("ClusterAuthNetwork refuses a secret shorter than 16 bytes or a bad node id", () => {
  const env = {} as Env;
  assert.throws(
    () => new ClusterAuthNetwork(env, { nodeId: "a", secret: "short" }),
    /The cluster secret is 5 bytes: it must be 16 to 1024/,
  );
  assert.throws(() => new ClusterAuthNetwork(env, { nodeId: "a b", secret: SECRET }), /nodeId/);
  assert.throws(
    () => new ClusterAuthNetwork(env, { nodeId: "a", secret: SECRET, previousSecret: "short" }),
    /The cluster secret is 5 bytes/,
  );
});

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
