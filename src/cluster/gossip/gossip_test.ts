// Gossip membership in the simulator: nodes on a simulated network with their own disks and
// clocks, crashed, restarted, partitioned and lied to.

import assert from "node:assert/strict";
import { runOnNode } from "../../../sim/harness.ts";
import { Simulation } from "../../../sim/simulation.ts";
import type { SimNode } from "../../../sim/node.ts";
import type { Conn, Env } from "../../io/types.ts";
import { readExactly, writeAll } from "../../io/util.ts";
import { encodeFrame, Flag, HEADER_BYTES } from "../../protocol/frame.ts";
import { Op } from "../../protocol/messages.ts";
import { decodeSynResponse, encodeAck2, encodeSyn } from "./codec.ts";
import {
  Gossip,
  type GossipOptions,
  loadOrCreateNodeId,
  type MembershipEvent,
  type MemberState,
} from "./mod.ts";

const PORT = 7100;
const DEAD_FORGET_MS = 8_000;

/** A simulated cluster of gossiping nodes, with what each one heard. */
class Cluster {
  readonly sim: Simulation;
  /** The running Gossip of each node's current incarnation. */
  readonly gossip = new Map<string, Gossip>();
  readonly events = new Map<string, MembershipEvent[]>();
  readonly #release = new Map<string, () => void>();

  constructor(seed: number) {
    this.sim = new Simulation(seed);
  }

  /** Adds a node called `name` that gossips (with seed n1 unless told otherwise) until released. */
  add(name: string, opts: Partial<GossipOptions> = {}, wrap = (env: Env): Env => env): SimNode {
    return this.sim.addNode({
      name,
      main: async (simEnv: Env) => {
        const env = wrap(simEnv);
        const nodeId = await loadOrCreateNodeId(env, "data");
        const g = await Gossip.start(env, {
          nodeId,
          host: name,
          bindHost: "0.0.0.0",
          clusterPort: PORT,
          clientPort: 7070,
          seeds: [`n1:${PORT}`],
          deadForgetMs: DEAD_FORGET_MS,
          ...opts,
        });
        this.gossip.set(name, g);
        const heard = this.events.get(name) ?? [];
        this.events.set(name, heard);
        g.onEvent((e) => heard.push(e));
        await new Promise<void>((resolve) => this.#release.set(name, resolve));
      },
    });
  }

  /** Lets `name`'s program return (after its Gossip was closed). */
  release(name: string): void {
    this.#release.get(name)?.();
  }

  g(name: string): Gossip {
    const g = this.gossip.get(name);
    assert.ok(g !== undefined, `${name} runs no gossip`);
    return g;
  }

  id(name: string): string {
    return this.g(name).id;
  }

  /** Runs virtual time until `cond` holds or `withinMs` passes; fails naming `what` if it did not. */
  async until(what: string, withinMs: number, cond: () => boolean): Promise<void> {
    const untilMs = this.sim.world.now + withinMs;
    await this.sim.world.run({ untilMs, stop: cond });
    assert.ok(cond(), `${what} within ${withinMs} ms (seed ${this.sim.seed})`);
  }

  async runFor(ms: number): Promise<void> {
    await this.sim.world.run({ untilMs: this.sim.world.now + ms });
  }

  /** The state `viewer` holds of `subject`, or null if it does not know it. */
  stateOf(viewer: string, subject: string): MemberState | null {
    return this.g(viewer).member(this.id(subject))?.state ?? null;
  }

  /** True if every node in `viewers` sees exactly `subjects` (by name), all alive. */
  converged(viewers: readonly string[], subjects: readonly string[]): boolean {
    const want = subjects.map((s) => this.id(s)).sort();
    return viewers.every((v) => {
      const ms = this.g(v).members();
      return ms.length === want.length && ms.every((m, i) => m.id === want[i]) &&
        ms.every((m) => m.state === "alive");
    });
  }
}

const NAMES = ["n1", "n2", "n3", "n4", "n5"];

async function startFive(seed: number): Promise<Cluster> {
  const c = new Cluster(seed);
  for (const name of NAMES) c.add(name);
  await c.until("all five nodes started", 1_000, () => NAMES.every((n) => c.gossip.has(n)));
  await c.until("five nodes converged", 10_000, () => c.converged(NAMES, NAMES));
  return c;
}

Deno.test("gossip: five nodes seeded with n1 converge to the same view with every address", async () => {
  const c = await startFive(1);
  for (const viewer of NAMES) {
    for (const m of c.g(viewer).members()) {
      const owner = c.g(NAMES.find((n) => c.id(n) === m.id) as string);
      const own = owner.member(owner.id);
      assert.ok(own !== null);
      assert.equal(m.host, own.host);
      assert.equal(m.clusterPort, PORT);
      assert.equal(m.clientPort, 7070);
      assert.equal(m.incarnation, own.incarnation);
      assert.equal(m.self, viewer === NAMES.find((n) => c.id(n) === m.id));
    }
    const joins = (c.events.get(viewer) ?? []).filter((e) => e.kind === "join");
    assert.equal(joins.length, 4, `${viewer} heard a join for each other node`);
  }
  // Heartbeats keep flowing: nobody is suspected in a calm network.
  await c.runFor(20_000);
  for (const viewer of NAMES) {
    const states = (c.events.get(viewer) ?? []).filter((e) => e.kind === "state");
    assert.deepEqual(states, [], `${viewer} saw no state change`);
    assert.ok(c.g(viewer).stats.exchanges > 50);
    assert.equal(c.g(viewer).stats.malformed, 0);
  }
});

Deno.test("gossip: a power-crashed node is suspected, declared dead, then forgotten everywhere", async () => {
  const c = await startFive(2);
  const n4 = c.id("n4");
  c.sim.crash(c.sim.node("n4"), "power");
  const others = NAMES.filter((n) => n !== "n4");
  await c.until(
    "n4 dead everywhere",
    30_000,
    () => others.every((v) => c.stateOf(v, "n4") === "dead"),
  );
  for (const v of others) {
    const seen = (c.events.get(v) ?? []).filter((e) => e.member.id === n4).map((e) =>
      `${e.kind}:${e.previous}>${e.member.state}`
    );
    assert.deepEqual(seen.slice(1), ["state:alive>suspect", "state:suspect>dead"], v);
  }
  await c.until(
    "n4 forgotten everywhere",
    DEAD_FORGET_MS + 5_000,
    () => others.every((v) => c.g(v).member(n4) === null),
  );
  for (const v of others) {
    const last = (c.events.get(v) ?? []).filter((e) => e.member.id === n4).at(-1);
    assert.equal(last?.kind, "leave");
    assert.equal(last?.previous, "dead");
  }
  // It stays forgotten: nobody gossips it back.
  await c.runFor(10_000);
  assert.ok(others.every((v) => c.g(v).member(n4) === null));
});

Deno.test("gossip: a restarted node keeps its id and rejoins with a higher incarnation", async () => {
  const c = await startFive(3);
  const n3 = c.id("n3");
  const before = c.g("n1").member(n3)?.incarnation ?? 0;
  c.sim.crash(c.sim.node("n3"), "power", 2_000);
  await c.until("n3 back under a new incarnation everywhere", 20_000, () =>
    NAMES.every((v) => {
      const m = c.g(v).member(n3);
      return m !== null && m.incarnation > before && m.state === "alive";
    }));
  assert.equal(c.id("n3"), n3, "the id came back from the data dir");
  assert.ok(c.converged(NAMES, NAMES));
  for (const v of NAMES.filter((n) => n !== "n3")) {
    const inc = (c.events.get(v) ?? []).find((e) =>
      e.kind === "state" && e.member.id === n3 && e.member.incarnation > before
    );
    assert.ok(inc !== undefined, `${v} heard n3's new incarnation as a state event`);
  }

  // After being forgotten, it rejoins with a join event.
  const inc2 = c.g("n1").member(n3)?.incarnation ?? 0;
  c.sim.crash(c.sim.node("n3"), "power");
  await c.until("n3 forgotten", 40_000, () => c.g("n1").member(n3) === null);
  c.sim.node("n3").start();
  await c.until("n3 rejoined", 20_000, () => c.converged(NAMES, NAMES));
  const rejoin = (c.events.get("n1") ?? []).filter((e) => e.member.id === n3).at(-1);
  assert.equal(rejoin?.kind, "join");
  assert.ok((rejoin?.member.incarnation ?? 0) > inc2);
});

Deno.test("gossip: leave() shows the node as left everywhere, never dead, then it is forgotten", async () => {
  const c = await startFive(4);
  const n5 = c.id("n5");
  const leaving = c.g("n5");
  let done = false;
  void leaving.leave().then(() => {
    done = true;
    c.release("n5");
  });
  const others = NAMES.filter((n) => n !== "n5");
  await c.until(
    "n5 left everywhere",
    5_000,
    () => others.every((v) => c.stateOf(v, "n5") === "left"),
  );
  await c.until("leave() finished", 5_000, () => done);
  assert.equal(leaving.member(n5)?.state, "left");
  await c.until(
    "n5 forgotten",
    DEAD_FORGET_MS + 5_000,
    () => others.every((v) => c.g(v).member(n5) === null),
  );
  for (const v of others) {
    const seen = (c.events.get(v) ?? []).filter((e) => e.member.id === n5).map((e) =>
      `${e.kind}:${e.previous}>${e.member.state}`
    );
    assert.deepEqual(seen.slice(1), ["state:alive>left", "leave:left>left"], v);
  }
});

Deno.test("gossip: a healed partition merges back to one view", async () => {
  const c = await startFive(5);
  c.sim.net.partition([["n1", "n2"], ["n3", "n4", "n5"]]);
  await c.until(
    "each side sees the other dead",
    30_000,
    () =>
      ["n1", "n2"].every((v) => ["n3", "n4", "n5"].every((s) => c.stateOf(v, s) === "dead")) &&
      ["n3", "n4", "n5"].every((v) => ["n1", "n2"].every((s) => c.stateOf(v, s) === "dead")),
  );
  c.sim.net.heal();
  await c.until("one view again", 10_000, () => c.converged(NAMES, NAMES));
});

Deno.test("gossip: after a partition long enough to forget each other, the sides merge again", async () => {
  const c = await startFive(8);
  const left = ["n1", "n2"];
  const right = ["n3", "n4", "n5"];
  c.sim.net.partition([left, right]);
  await c.until(
    "each side forgot the other",
    40_000,
    () => c.converged(left, left) && c.converged(right, right),
  );
  c.sim.net.heal();
  // Both sides know the seed n1 from config; their heartbeats have moved on since they forgot
  // each other, so the tombstones let them back in at once.
  await c.until("one view again", 3_000, () => c.converged(NAMES, NAMES));
});

Deno.test("gossip: a node joining a 24-node cluster through any one seed is known everywhere in O(log N) rounds", async () => {
  const c = new Cluster(9);
  const names = Array.from({ length: 24 }, (_, i) => `n${i + 1}`);
  // Each node joins through a random node that joined before it.
  for (const [i, name] of names.entries()) {
    const seed = names[c.sim.random.int(0, Math.max(1, i))] as string;
    c.add(name, { seeds: [`${seed}:${PORT}`] });
    await c.runFor(300);
  }
  await c.until("24 nodes converged", 20_000, () => c.converged(names, names));
  c.add("late", { seeds: [`n17:${PORT}`] });
  await c.until("late started", 1_000, () => c.gossip.has("late"));
  const startedMs = c.sim.world.now;
  const everyone = [...names, "late"];
  // log2(25) ≈ 4.6 rounds of 200 ms; allow three times that.
  await c.until("late known everywhere", 3 * 5 * 200, () => c.converged(everyone, everyone));
  assert.ok(c.sim.world.now - startedMs <= 3_000);
});

Deno.test("gossip: seeds given by a DNS name are resolved through the Network and re-resolved", async () => {
  const c = new Cluster(10);
  const answers = new Map<string, string[]>([["gregor-headless", ["n1", "n2"]]]);
  let resolves = 0;
  const withDns = (env: Env): Env => ({
    ...env,
    net: {
      listen: (addr) => env.net.listen(addr),
      connect: (addr, opts) => env.net.connect(addr, opts),
      resolve: (name) => {
        resolves++;
        const a = answers.get(name);
        return a === undefined ? Promise.reject(new Error(`NXDOMAIN ${name}`)) : Promise.resolve(a);
      },
    },
  });
  c.add("n1", { seeds: [] });
  c.add("n2", { seeds: [`n1:${PORT}`] });
  c.add("n3", { seeds: [`gregor-headless:${PORT}`], resolveSeedsEveryMs: 2_000 }, withDns);
  await c.until("started", 1_000, () => c.gossip.size === 3);
  await c.until(
    "n3 joined through the name",
    5_000,
    () => c.converged(["n1", "n2", "n3"], ["n1", "n2", "n3"]),
  );
  const before = resolves;
  await c.runFor(10_000);
  assert.ok(
    resolves - before >= 4 && resolves - before <= 6,
    `${resolves - before} resolves in 10 s`,
  );
  // A failing lookup keeps the addresses it had; membership is not disturbed.
  answers.delete("gregor-headless");
  await c.runFor(5_000);
  assert.ok(c.converged(["n1", "n2", "n3"], ["n1", "n2", "n3"]));
});

Deno.test("gossip: a seed name that does not resolve is reported once, again on change, and on recovery", async () => {
  const c = new Cluster(11);
  /** What the name resolves to: addresses, or the reason the lookup fails. */
  let answer: string[] | string = "NXDOMAIN gregor-headless";
  const withDns = (env: Env): Env => ({
    ...env,
    net: {
      listen: (addr) => env.net.listen(addr),
      connect: (addr, opts) => env.net.connect(addr, opts),
      resolve: () =>
        typeof answer === "string" ? Promise.reject(new Error(answer)) : Promise.resolve(answer),
    },
  });
  const heard: string[] = [];
  c.add("n1", { seeds: [] });
  c.add("n2", {
    seeds: [`gregor-headless:${PORT}`],
    resolveSeedsEveryMs: 1_000,
    onLog: (level, msg) => heard.push(`${level}: ${msg}`),
  }, withDns);
  await c.runFor(10_000);
  assert.deepEqual(heard, [
    "warn: Seed name gregor-headless does not resolve (NXDOMAIN gregor-headless); gossip tries " +
    "the name as given and resolves it again every 1000 ms",
  ]);
  answer = "SERVFAIL gregor-headless";
  await c.runFor(5_000);
  assert.equal(heard.length, 2, heard.join("\n"));
  assert.match(heard[1]!, /^warn: .*\(SERVFAIL gregor-headless\)/);
  answer = ["n1"];
  await c.runFor(5_000);
  assert.deepEqual(heard.slice(2), ["info: Seed name gregor-headless resolves again, to n1"]);
  await c.until(
    "n2 joined n1 through the name",
    5_000,
    () => c.converged(["n1", "n2"], ["n1", "n2"]),
  );
});

Deno.test("gossip: a large state crosses in bounded messages over several rounds", async () => {
  const c = new Cluster(11);
  for (const name of ["n1", "n2", "n3"]) c.add(name, { messageBytesMax: 4096 });
  await c.until("started", 1_000, () => c.gossip.size === 3);
  const big = c.g("n2");
  for (let i = 0; i < 50; i++) big.setLocal(`key${i}`, String(i).repeat(900 / String(i).length));
  await c.until(
    "n1 and n3 hold all 50 keys",
    10_000,
    // Besides them: host, clusterPort, clientPort and started.
    () => ["n1", "n3"].every((v) => Object.keys(c.g(v).member(big.id)?.kv ?? {}).length === 54),
  );
  assert.deepEqual(c.g("n1").member(big.id)?.kv, big.member(big.id)?.kv);
});

Deno.test("Gossip.start() rejects invalid options, naming the option", async () => {
  const sim = new Simulation(12);
  const errors = await runOnNode(sim, "n1", async (env) => {
    const base: GossipOptions = {
      nodeId: "n1",
      host: "n1",
      clusterPort: 0,
      clientPort: 7070,
      seeds: [],
    };
    const bad: Partial<GossipOptions>[] = [
      { nodeId: "has space" },
      { host: "" },
      { clusterPort: 70_000 },
      { clientPort: 0 },
      { seeds: ["no-port"] },
      { intervalMs: 0 },
      { phiSuspect: 8, phiDead: 8 },
      { deadForgetMs: -1 },
      { messageBytesMax: 100 },
      { exchangeTimeoutMs: NaN },
    ];
    const out: string[] = [];
    for (const b of bad) {
      out.push(
        await Gossip.start(env, { ...base, ...b }).then(
          () => "started",
          (e) => `${e.name}: ${e.message}`,
        ),
      );
    }
    return out;
  });
  const names = [
    "nodeId",
    "host",
    "clusterPort",
    "clientPort",
    "seeds",
    "intervalMs",
    "phiDead",
    "deadForgetMs",
    "messageBytesMax",
    "exchangeTimeoutMs",
  ];
  for (const [i, e] of errors.entries()) {
    assert.match(e, new RegExp(`^RangeError: Invalid gossip option ${names[i]}`));
  }
});

/** Sends one raw exchange to `port` on `host`: SYN, read the answer, then ACK2 with `deltas`. */
async function rawExchange(
  env: Env,
  host: string,
  ack2: Parameters<typeof encodeAck2>[0],
): Promise<void> {
  const conn: Conn = await env.net.connect({ host, port: PORT });
  await writeAll(conn, encodeFrame(Op.GOSSIP_SYN, 9, encodeSyn({ fromId: "evil", digest: [] })));
  const header = new Uint8Array(HEADER_BYTES);
  assert.ok(await readExactly(conn, header));
  const length = new DataView(header.buffer).getUint32(12);
  const payload = new Uint8Array(length);
  assert.ok(await readExactly(conn, payload));
  decodeSynResponse(payload);
  await writeAll(conn, encodeFrame(Op.GOSSIP_ACK2, 9, encodeAck2(ack2)));
  conn.close();
}

Deno.test("gossip: an impostor claiming a node's id with a higher incarnation is refuted", async () => {
  const c = await startFive(6);
  const n2 = c.id("n2");
  const real = c.g("n2").member(n2);
  assert.ok(real !== null);
  const forged = real.incarnation + 1_000;
  c.sim.addNode({
    name: "evil",
    main: (env) =>
      rawExchange(env, "n4", {
        fromId: "evil",
        deltas: [{
          id: n2,
          incarnation: forged,
          entries: [
            { key: "host", value: "evil", version: 1 },
            { key: "clusterPort", value: String(PORT), version: 2 },
            { key: "clientPort", value: "1", version: 3 },
            { key: "heartbeat", value: "1", version: 4 },
          ],
        }],
      }),
  });
  await c.until("n4 took the forgery", 1_000, () => c.g("n4").member(n2)?.host === "evil");
  await c.until("the real n2 wins everywhere", 10_000, () =>
    NAMES.every((v) => {
      const m = c.g(v).member(n2);
      return m !== null && m.host === "n2" && m.clientPort === 7070 && m.incarnation > forged;
    }));
  assert.equal(c.g("n2").stats.refutations, 1);
  await c.runFor(5_000);
  assert.ok(c.converged(NAMES, NAMES));
});

Deno.test("gossip: a malformed frame closes the connection and leaves the view untouched", async () => {
  const c = await startFive(7);
  const before = c.g("n1").members().map((m) => m.id);
  const answers: number[] = [];
  c.sim.addNode({
    name: "evil",
    main: async (env) => {
      // A well-framed SYN whose digest names a node with an id that is not allowed.
      const conn = await env.net.connect({ host: "n1", port: PORT });
      const bad = encodeSyn({
        fromId: "evil",
        digest: [{ id: "no spaces", incarnation: 1, maxVersion: 1 }],
      });
      await writeAll(conn, encodeFrame(Op.GOSSIP_SYN, 1, bad));
      const header = new Uint8Array(HEADER_BYTES);
      assert.ok(await readExactly(conn, header));
      answers.push(header[3] as number);
      const rest = new Uint8Array(new DataView(header.buffer).getUint32(12));
      assert.ok(await readExactly(conn, rest));
      assert.equal(await conn.read(new Uint8Array(1)), null, "then the connection closes");
      // Garbage that is not a frame at all.
      const conn2 = await env.net.connect({ host: "n1", port: PORT });
      await writeAll(conn2, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n and more bytes"));
      const buf = new Uint8Array(256);
      while ((await conn2.read(buf)) !== null);
    },
  });
  await c.until("both malformed frames counted", 2_000, () => c.g("n1").stats.malformed === 2);
  assert.deepEqual(answers, [Flag.RESPONSE | Flag.ERROR]);
  assert.deepEqual(c.g("n1").members().map((m) => m.id), before);
  await c.runFor(2_000);
  assert.ok(c.converged(NAMES, NAMES));
});

Deno.test("gossip: the same seed gives the same trace", async () => {
  const hashes: string[] = [];
  for (let i = 0; i < 2; i++) {
    const c = new Cluster(42);
    for (const name of NAMES) c.add(name);
    await c.runFor(5_000);
    c.sim.crash(c.sim.node("n2"), "power", 3_000);
    await c.runFor(10_000);
    hashes.push(c.sim.world.trace.hex());
  }
  assert.equal(hashes[0], hashes[1]);
});

Deno.test("gossip: two clusters never merge when a node of one reuses the address of a dead node of the other", async () => {
  // Cluster A: a1 founds it (its id names the cluster), a2 and x join through a1. x dies, and a
  // node of cluster B starts on x's address with a new identity: A's nodes still gossip to it.
  const c = new Cluster(11);
  const xLives: string[] = [];
  c.sim.addNode({
    name: "x",
    main: async (env: Env) => {
      const life = xLives.length === 0 ? "a" : "b";
      const nodeId = await loadOrCreateNodeId(env, `data-${life}`);
      const g = await Gossip.start(env, {
        nodeId,
        host: "x",
        bindHost: "0.0.0.0",
        clusterPort: PORT,
        clientPort: 7070,
        seeds: [`${life}1:${PORT}`],
        deadForgetMs: 60_000,
      });
      c.gossip.set("x", g);
      xLives.push(nodeId);
      await new Promise<void>(() => {});
    },
  });
  for (const name of ["a1", "b1"]) {
    c.add(name, { seeds: [], clusterId: name, deadForgetMs: 60_000 });
  }
  c.add("a2", { seeds: [`a1:${PORT}`], deadForgetMs: 60_000 });
  const up = (names: string[]) => names.every((n) => c.gossip.has(n));
  await c.until("A and b1 started", 1_000, () => up(["a1", "a2", "b1"]) && xLives.length === 1);
  await c.until(
    "a1, a2 and x converged",
    10_000,
    () => c.converged(["a1", "a2", "x"], ["a1", "a2", "x"]),
  );
  c.sim.crash(c.sim.node("x"), "power");
  await c.until("x dead in A", 30_000, () => c.stateOf("a1", "x") === "dead");
  c.add("b2", { seeds: [`b1:${PORT}`], deadForgetMs: 60_000 });
  c.sim.node("x").start();
  await c.until(
    "B converged",
    10_000,
    () => xLives.length === 2 && c.converged(["b1", "b2", "x"], ["b1", "b2", "x"]),
  );
  await c.runFor(20_000);
  const ids = (names: string[]) => names.map((n) => c.id(n));
  const a = [...ids(["a1", "a2"]), xLives[0]!].sort();
  const b = ids(["b1", "b2", "x"]).sort();
  for (const v of ["a1", "a2"]) {
    const seen = c.g(v).members().map((m) => m.id);
    assert.deepEqual(seen.filter((id) => !a.includes(id)), [], `${v} holds no node of B`);
    assert.equal(c.g(v).clusterId, "a1", `${v} took A's cluster id`);
  }
  for (const v of ["b1", "b2", "x"]) {
    assert.deepEqual(c.g(v).members().map((m) => m.id), b, `${v} holds exactly B`);
    assert.equal(c.g(v).clusterId, "b1", `${v} took B's cluster id`);
  }
  // No node of either cluster ever announced a node of the other as joining.
  for (const v of ["a1", "a2", "b1", "b2"]) {
    const other = v.startsWith("a") ? b : a.filter((id) => id !== xLives[0]);
    const joined = (c.events.get(v) ?? []).filter((e) =>
      e.kind === "join" && other.includes(e.member.id)
    );
    assert.deepEqual(
      joined.map((e) => e.member.id),
      [],
      `${v} heard no join from the other cluster`,
    );
  }
});

Deno.test("gossip: of two live processes with one node id, the one started later is told to stop; a restart is not", async () => {
  const c = await startFive(12);
  await c.runFor(10_000);
  const n2 = c.id("n2");
  const told: string[] = [];
  c.add("copy", {
    nodeId: n2,
    onDuplicate: (m) => {
      told.push(`copy: ${m}`);
      void c.g("copy").close();
    },
  });
  // n2 itself only logs: it started first.
  await c.until("the copy is told to stop", 20_000, () => told.length > 0);
  assert.equal(told.length, 1);
  assert.match(
    told[0]!,
    /^copy: Another process at n2:7100 runs as node \w+, as this one at copy:7100/,
  );
  assert.match(told[0]!, /this one started later, so it stops/);
  await c.runFor(15_000);
  assert.ok(c.converged(NAMES, NAMES), "n2 is itself again everywhere");
  for (const v of NAMES) assert.equal(c.g(v).member(n2)?.host, "n2", v);

  // A restart of n2 (same address, a new process) is no impostor, however often it happens.
  for (let i = 0; i < 3; i++) {
    c.sim.crash(c.sim.node("n2"), "power", 1_000);
    await c.until("n2 back", 20_000, () => c.converged(NAMES, NAMES));
  }
  assert.equal(told.length, 1);
});

Deno.test("gossip: with one config for every node (each seeded with n1, n1 too), all take the named node's cluster", async () => {
  const c = new Cluster(13);
  c.add("n1");
  c.add("n2", { clusterId: "founded-by-n2" });
  c.add("n3");
  await c.until("started", 1_000, () => c.gossip.size === 3);
  await c.until(
    "every node names n2's cluster",
    10_000,
    () => ["n1", "n2", "n3"].every((n) => c.g(n).clusterId === "founded-by-n2"),
  );
  assert.ok(c.converged(["n1", "n2", "n3"], ["n1", "n2", "n3"]));
});
