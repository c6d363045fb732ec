// Seeded chaos for gossip membership: the real gossip layer on the simulated network, every node
// told only node-0's address, under crashes with restarts, pauses, partitions (both ways and one
// way) and resets; then healed, with bounds in rounds on agreement, dead detection and a fresh
// join. Fixed seed ranges, so a failure names its seed and `deno task sim --scenario gossip
// --seed N` replays it. Also hostile peers: garbage on the gossip port, and an impostor.

import assert from "node:assert/strict";
import { SeededRandom } from "../src/io/prng.ts";
import type { Env } from "../src/io/types.ts";
import { writeAll } from "../src/io/util.ts";
import {
  encodeFrame,
  Flag,
  HEADER_BYTES,
  PROTOCOL_VERSION,
  writeHeader,
} from "../src/protocol/frame.ts";
import { encode, Op, SCHEMAS } from "../src/protocol/messages.ts";
import { calmDisk } from "../sim/disk.ts";
import {
  CLUSTER_PORT,
  CLUSTER_SECRET,
  convergeRoundsMax,
  GossipCluster,
  gossipOptions,
  runGossip,
  STABLE_ROUNDS,
} from "../sim/gossip_scenario.ts";
import { calmNet } from "../sim/net.ts";
import { never } from "../sim/node.ts";
import { Simulation } from "../sim/simulation.ts";

Deno.test("gossip: a seed gives the same trace twice, different seeds different traces", async () => {
  const hashes = new Set<string>();
  for (let seed = 3000; seed < 3010; seed++) {
    const a = await runGossip(gossipOptions(seed));
    const b = await runGossip(gossipOptions(seed));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic`);
    assert.deepEqual(a.stats, b.stats);
    hashes.add(a.traceHash);
  }
  assert.equal(hashes.size, 10);
});

// --- Hostile peers ---------------------------------------------------------------------------

const HOSTILE_SEED = 4242;
/** Hostile connections per kind of garbage. */
const HOSTILE_PER_KIND = 25;
const EXCHANGE_TIMEOUT_MS = 1_000;

/** A calm cluster of `n` nodes that has agreed. */
async function agreedCluster(seed: number, n: number, secret?: string): Promise<GossipCluster> {
  const sim = new Simulation(seed, { net: calmNet(), disk: calmDisk() });
  const cluster = new GossipCluster(sim, {
    intervalMs: 200,
    ...(secret === undefined ? {} : { secret }),
  });
  for (let i = 0; i < n; i++) cluster.add(`node-${i}`);
  const rounds = await cluster.runUntil(() => cluster.gaps(true).length === 0, 60_000);
  assert.notEqual(rounds, null, `no agreement: ${cluster.gaps(true).join("; ")}`);
  return cluster;
}

/** Every view's members as comparable text, without the heartbeats that keep moving. */
function shape(cluster: GossipCluster): string[] {
  return cluster.views().map((v) =>
    `${v.name}: ${
      v.members.map((m) => `${m.id}@${m.host}:${m.clusterPort}/${m.state}/${m.incarnation}`)
        .join(" ")
    }`
  );
}

function bytes(r: SeededRandom, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = r.int(0, 256);
  return out;
}

/** A syntactically valid GOSSIP_SYN frame header announcing `payloadLength` bytes. */
function header(opcode: number, payloadLength: number, flags = 0): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  writeHeader(out, { version: PROTOCOL_VERSION, flags, opcode, correlationId: 7, payloadLength });
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Kinds of garbage, each a generator of one connection's bytes. */
function hostileKinds(r: SeededRandom, peerId: string): Record<string, () => Uint8Array> {
  const syn = (m: object) => encodeFrame(Op.GOSSIP_SYN, 9, encode(SCHEMAS.GOSSIP_SYN.request, m));
  const ack2 = (m: object) =>
    encodeFrame(Op.GOSSIP_ACK2, 9, encode(SCHEMAS.GOSSIP_ACK2.request, m));
  const goodSyn = () => syn({ fromId: "hostile", digest: [] });
  return {
    "random bytes": () => bytes(r, r.int(1, 300)),
    "valid header, garbage payload": () => {
      const body = bytes(r, r.int(0, 200));
      return concat(header(r.chance(0.5) ? Op.GOSSIP_SYN : Op.GOSSIP_ACK2, body.length), body);
    },
    "oversized length": () =>
      concat(header(Op.GOSSIP_SYN, r.chance(0.5) ? 0xffff_ffff : 2 * 1024 * 1024), bytes(r, 64)),
    "not a gossip opcode": () => {
      const body = bytes(r, r.int(0, 50));
      return concat(header(r.pick([Op.HELLO, Op.PING, Op.PRODUCE]), body.length), body);
    },
    "a response flag on a request": () => {
      const body = bytes(r, r.int(0, 50));
      return concat(header(Op.GOSSIP_SYN, body.length, Flag.RESPONSE), body);
    },
    "truncated payload": () => concat(header(Op.GOSSIP_SYN, 500), bytes(r, r.int(0, 499))),
    "SYN with invalid fields": () =>
      r.pick([
        () => syn({ fromId: "bad id!", digest: [] }),
        () =>
          syn({
            fromId: "hostile",
            digest: [{ id: peerId, incarnation: 1, maxVersion: 1 }, {
              id: peerId,
              incarnation: 1,
              maxVersion: 1,
            }],
          }),
        () =>
          syn({
            fromId: "hostile",
            digest: [{ id: "x", incarnation: 2 ** 52 + 1, maxVersion: 0 }],
          }),
        // A list count of a million entries in a 30-byte payload.
        () => {
          const body = new Uint8Array(30);
          body.set([0, 1, 0x41, 0, 0x0f, 0x42, 0x40]);
          return concat(header(Op.GOSSIP_SYN, body.length), body);
        },
      ])(),
    "SYN, then an invalid ACK2": () =>
      concat(
        goodSyn(),
        r.pick([
          () => ack2({ fromId: "someone-else", deltas: [] }),
          () =>
            ack2({
              fromId: "hostile",
              deltas: [{
                id: "ghost",
                incarnation: 1,
                entries: [{ key: "host", value: "!!", version: 1 }],
              }],
            }),
          () =>
            ack2({
              fromId: "hostile",
              deltas: [{
                id: "ghost",
                incarnation: 1,
                entries: [{ key: "port", value: "1", version: 0 }],
              }],
            }),
          () => bytes(r, 40),
        ])(),
      ),
    "flipped bytes of a SYN": () => {
      const f = goodSyn();
      const i = r.int(0, f.length);
      f[i] = f[i]! ^ (1 << r.int(0, 8));
      return f;
    },
    "a well-formed SYN and no ACK2": goodSyn,
  };
}

Deno.test("gossip: garbage on the cluster port changes no view, costs only its connection, and the node keeps gossiping", async () => {
  const cluster = await agreedCluster(HOSTILE_SEED, 5);
  const sim = cluster.sim;
  const target = cluster.node("node-2");
  const targetId = target.id!;
  const before = shape(cluster);
  const heartbeatsSeen = () =>
    cluster.views().filter((v) => v.id !== targetId).map((v) =>
      v.members.find((m) => m.id === targetId)!.heartbeat
    );
  const heartbeats0 = heartbeatsSeen();
  const stats0 = target.gossip!.stats;
  const r = new SeededRandom(HOSTILE_SEED, "hostile");
  const kinds = hostileKinds(r, targetId);
  // How each hostile connection ended, per kind: closed by the node, reset, or left open.
  const outcomes: Record<string, Record<string, number>> = {};
  let done = false;
  sim.addNode({
    name: "attacker",
    main: async (env) => {
      for (let i = 0; i < HOSTILE_PER_KIND; i++) {
        for (const [kind, make] of Object.entries(kinds)) {
          const end = await attack(env, make());
          const o = outcomes[kind] ??= {};
          o[end] = (o[end] ?? 0) + 1;
          await env.clock.sleep(r.int(0, 40));
        }
      }
      done = true;
      return never();
    },
  });
  const rounds = await cluster.runUntil(() => {
    assert.deepEqual(shape(cluster), before, "a view changed under hostile input");
    return done;
  }, 600_000);
  assert.notEqual(rounds, null, `the attack did not finish: ${JSON.stringify(sim.exits)}`);
  // The target kept gossiping: its heartbeat moved on in every other view, its rounds ran.
  const heartbeats1 = heartbeatsSeen();
  heartbeats1.forEach((hb, i) => assert.ok(hb > heartbeats0[i]! + rounds! / 2, `${hb}`));
  const stats1 = target.gossip!.stats;
  assert.ok(stats1.rounds - stats0.rounds >= rounds! * 0.8, JSON.stringify(stats1));
  assert.ok(stats1.exchanges > stats0.exchanges);
  assert.ok(stats1.malformed - stats0.malformed >= HOSTILE_PER_KIND * 5, JSON.stringify(stats1));
  assert.equal(sim.exits.length, 0, JSON.stringify(sim.exits));
  // Each hostile connection was ended by the node, never left hanging past the exchange timeout.
  for (const [kind, o] of Object.entries(outcomes)) {
    assert.equal(o.open ?? 0, 0, `${kind}: ${JSON.stringify(o)}`);
  }
  assert.equal(cluster.violations.length, 0, cluster.violations.join("\n"));
});

/** Sends `payload` on a fresh connection to node-2's cluster port; how did the connection end? */
async function attack(env: Env, payload: Uint8Array): Promise<"closed" | "reset" | "open"> {
  let conn;
  try {
    conn = await env.net.connect({ host: "node-2", port: CLUSTER_PORT });
  } catch {
    return "reset";
  }
  const c = conn;
  const ended = (async (): Promise<"closed" | "reset"> => {
    try {
      await writeAll(c, payload);
      const buf = new Uint8Array(4096);
      while ((await c.read(buf)) !== null);
      return "closed";
    } catch {
      return "reset";
    }
  })();
  const waited = env.clock.sleep(2 * EXCHANGE_TIMEOUT_MS).then(() => "open" as const);
  const end = await Promise.race([ended, waited]);
  c.close();
  return end;
}

Deno.test("gossip: an impostor claiming a node's id loses to the real node once it stops", async () => {
  // The property: while a rogue node gossips under node-2's id from another host, node-2 refutes
  // (refutations > 0); once the rogue stops, within convergeRoundsMax(N) rounds every live view
  // lists that id at node-2:7072, alive, with an incarnation above the highest the rogue
  // announced, and it stays so for STABLE_ROUNDS.
  const n = 5;
  const cluster = await agreedCluster(HOSTILE_SEED + 1, n);
  cluster.safetyChecks = false;
  const real = cluster.node("node-2");
  const id = real.id!;
  const rogue = cluster.add("rogue", { nodeId: id });
  let rogueSeen = false;
  await cluster.runUntil(() => {
    rogueSeen ||= cluster.views().some((v) =>
      v.members.some((m) => m.id === id && m.host === "rogue")
    );
    return false;
  }, 25 * 200);
  assert.ok(rogueSeen, "the impostor's claim never reached any view");
  cluster.keepDown("rogue");
  const rogueIncarnation = rogue.gossip!.member(id)!.incarnation;
  const reclaimed = () =>
    cluster.views().every((v) => {
      const m = v.members.find((x) => x.id === id);
      return m !== undefined && m.host === "node-2" && m.clusterPort === CLUSTER_PORT &&
        m.state === "alive" && m.incarnation > rogueIncarnation;
    });
  const rounds = await cluster.runUntil(reclaimed, 120_000);
  assert.notEqual(rounds, null, "the views never came back to the real node-2");
  assert.ok(rounds! <= convergeRoundsMax(n), `took ${rounds} rounds`);
  assert.ok(real.gossip!.stats.refutations > 0);
  cluster.safetyChecks = true;
  await cluster.runUntil(() => {
    assert.ok(reclaimed(), "the impostor's claim came back");
    return false;
  }, STABLE_ROUNDS * 200);
  assert.equal(cluster.violations.length, 0, cluster.violations.join("\n"));
});

Deno.test("gossip with a cluster secret: a rogue without it, with another, or with a node's copied id never becomes a member", async () => {
  // The property: with every genuine node holding the secret, for 50 rounds after rogues start
  // (given the seed's address like any node: one without a secret, one with another secret, and
  // two that copied node-2's id, without the secret and with another), no genuine view ever lists
  // a rogue's id or host, node-2 stays alive at its own address in every view, the safety checker
  // finds nothing, and each side logged the refusal. A genuine node added afterwards still joins.
  const n = 5;
  const cluster = await agreedCluster(HOSTILE_SEED + 2, n, CLUSTER_SECRET);
  const realId = cluster.node("node-2").id!;
  const rogues = [
    cluster.add("rogue-none", { secret: null }),
    cluster.add("rogue-other", { secret: "a secret that is not the cluster's" }),
    cluster.add("rogue-copy", { secret: null, nodeId: realId }),
    cluster.add("rogue-copy-other", {
      secret: "a secret that is not the cluster's",
      nodeId: realId,
    }),
  ];
  const rogueIds = new Set<string>();
  await cluster.runUntil(() => {
    for (const r of rogues) if (r.id !== null && r.id !== realId) rogueIds.add(r.id);
    for (const v of cluster.views()) {
      for (const m of v.members) {
        assert.ok(!rogueIds.has(m.id), `${v.name} lists the rogue ${m.id}`);
        assert.ok(!m.host.startsWith("rogue"), `${v.name} lists ${m.id} at ${m.host}`);
      }
      const real = v.members.find((m) => m.id === realId);
      assert.equal(real?.state, "alive", `${v.name} sees node-2 as ${real?.state}`);
    }
    return false;
  }, 50 * 200);
  assert.equal(rogueIds.size, 2);
  assert.equal(cluster.violations.length, 0, cluster.violations.join("\n"));
  // The rogues' own views hold nobody but themselves: the cluster told them nothing.
  for (const r of rogues) {
    assert.deepEqual(r.gossip!.members().map((m) => m.host), [r.name], r.name);
  }
  // Each rogue was told, and says so: without a secret gossip logs the refusal, with another
  // secret the handshake does.
  assert.match(
    cluster.node("rogue-none").logs.join("\n"),
    /^error: node-0:7072 refused GOSSIP_SYN: Cluster authentication failed.*this node does not run with the cluster's secret/m,
  );
  assert.match(
    cluster.node("rogue-other").logs.join("\n"),
    /^error: Cluster peer at node-0:7072 refused: node [\w-]+ refused this node's proof: the cluster secrets differ/m,
  );
  // The seed node refused each of them, and said why.
  const seedLog = cluster.node("node-0").logs.join("\n");
  for (
    const re of [
      /^warn: Cluster connection from rogue-none:\d+ refused: it sent GOSSIP_SYN without authenticating first/m,
      /^warn: Cluster connection from rogue-other:\d+ \(claiming node [\w-]+\) refused: its proof as node [\w-]+ does not verify/m,
      new RegExp(
        `^warn: Cluster connection from rogue-copy-other:\\d+ \\(claiming node ${realId}\\) refused`,
        "m",
      ),
    ]
  ) {
    assert.match(seedLog, re);
  }
  assert.equal(cluster.node("node-2").gossip!.stats.refutations, 0, "node-2 never had to refute");
  // A node with the secret still joins as any node does.
  cluster.add(`node-${n}`);
  const rounds = await cluster.runUntil(() => cluster.knownToAll(`node-${n}`), 60_000);
  assert.notEqual(rounds, null, cluster.gaps(true).join("; "));
  assert.ok(rounds! <= convergeRoundsMax(n + 1), `took ${rounds} rounds`);
  assert.equal(cluster.violations.length, 0, cluster.violations.join("\n"));
});
