import assert from "node:assert/strict";
import fc from "fast-check";
import type { GossipDelta, GossipDigestEntry } from "../../protocol/messages.ts";
import {
  decodeAck2,
  decodeSyn,
  decodeSynResponse,
  encodeAck2,
  encodeSyn,
  encodeSynResponse,
} from "./codec.ts";
import { ENTRIES_PER_NODE_MAX, MEMBERS_MAX, MESSAGE_BYTES_MIN, VALUE_BYTES_MAX } from "./limits.ts";
import { GossipState, type GossipStateOptions } from "./state.ts";
import type { Member, MembershipEvent } from "./types.ts";

const INTERVAL_MS = 200;
const FORGET_MS = 10_000;
const BIG = 64 * 1024;

function node(id: string, opts: Partial<GossipStateOptions> = {}): GossipState {
  return new GossipState({
    selfId: id,
    incarnation: 1000,
    host: `${id}.local`,
    clusterPort: 7100,
    clientPort: 7070,
    nowMs: 0,
    intervalMs: INTERVAL_MS,
    phiSuspect: 8,
    phiDead: 12,
    deadForgetMs: FORGET_MS,
    ...opts,
  });
}

/**
 * One exchange from `a` to `b` as the service runs it, every message through the codec: SYN with
 * a's digest, b answers with its digest and deltas, a sends ACK2. Returns each side's events.
 */
function exchange(
  a: GossipState,
  b: GossipState,
  nowMs: number,
  bytesMax = BIG,
): { a: MembershipEvent[]; b: MembershipEvent[] } {
  const syn = decodeSyn(encodeSyn({ fromId: a.selfId, digest: a.digest() }));
  b.observeDigest(syn.digest);
  const answer = decodeSynResponse(
    encodeSynResponse({ digest: b.digest(), deltas: b.deltasFor(syn.digest, bytesMax) }),
  );
  a.observeDigest(answer.digest);
  const eventsA = a.apply(answer.deltas, nowMs);
  const ack = decodeAck2(
    encodeAck2({ fromId: a.selfId, deltas: a.deltasFor(answer.digest, bytesMax) }),
  );
  return { a: eventsA, b: b.apply(ack.deltas, nowMs) };
}

/** What two nodes must agree on about a member (not its local state or self flag). */
function shared(m: Member): unknown {
  return { id: m.id, incarnation: m.incarnation, heartbeat: m.heartbeat, kv: m.kv };
}

function describe(events: readonly MembershipEvent[]): string[] {
  return events.map((e) => `${e.kind} ${e.member.id} ${e.previous}>${e.member.state}`);
}

Deno.test("GossipState starts with itself alive, its address in kv", () => {
  const a = node("a");
  assert.deepEqual(a.members(), [{
    id: "a",
    host: "a.local",
    clusterPort: 7100,
    clientPort: 7070,
    state: "alive",
    incarnation: 1000,
    heartbeat: 0,
    kv: { host: "a.local", clusterPort: "7100", clientPort: "7070" },
    self: true,
  }]);
  assert.deepEqual(a.digest(), [{ id: "a", incarnation: 1000, maxVersion: 4 }]);
  assert.throws(() => node("not an id"), RangeError);
  assert.throws(() => node("a", { host: "" }), RangeError);
  assert.throws(() => node("a", { phiDead: 8 }), RangeError);
});

Deno.test("GossipState: one exchange makes two nodes know each other, with a join on each side", () => {
  const a = node("a");
  const b = node("b");
  a.setLocal("role", "broker");
  const ev = exchange(a, b, 10);
  assert.deepEqual(describe(ev.a), ["join b null>alive"]);
  assert.deepEqual(describe(ev.b), ["join a null>alive"]);
  assert.deepEqual(b.member("a")?.kv, {
    host: "a.local",
    clusterPort: "7100",
    clientPort: "7070",
    role: "broker",
  });
  assert.deepEqual(a.members().map(shared), b.members().map(shared));
  assert.deepEqual(exchange(a, b, 20), { a: [], b: [] }, "nothing new, nothing to say");
});

Deno.test("GossipState: a kv change reaches the peer as a state event; a heartbeat alone does not", () => {
  const a = node("a");
  const b = node("b");
  exchange(a, b, 0);
  a.beat();
  assert.deepEqual(exchange(a, b, 200).b, []);
  assert.equal(b.member("a")?.heartbeat, 1);
  a.setLocal("load", "0.5");
  assert.deepEqual(describe(exchange(a, b, 400).b), ["state a alive>alive"]);
  assert.equal(b.member("a")?.kv.load, "0.5");
});

Deno.test("GossipState.setLocal() refuses reserved and malformed keys and values, and a 65th key", () => {
  const a = node("a");
  for (const key of ["host", "clusterPort", "clientPort", "heartbeat", "left"]) {
    assert.throws(() => a.setLocal(key, "x"), /reserved/);
  }
  for (const key of ["", "1abc", "__proto__", "has space", "x".repeat(65)]) {
    assert.throws(() => a.setLocal(key, "x"), RangeError, key);
  }
  assert.throws(() => a.setLocal("big", "x".repeat(VALUE_BYTES_MAX + 1)), /over 1024 bytes/);
  assert.throws(() => a.setLocal("lone", "\uD800"), /well-formed/);
  a.setLocal("ok", "x".repeat(VALUE_BYTES_MAX));
  // host, clusterPort, clientPort, heartbeat and "ok" are 5 keys so far.
  for (let i = 5; i < ENTRIES_PER_NODE_MAX; i++) a.setLocal(`k${i}`, "v");
  assert.throws(() => a.setLocal("one-more", "v"), /at most 64 keys/);
  a.setLocal("ok", "changed");
});

Deno.test("GossipState.setLocal() of an unchanged value takes no new version", () => {
  const a = node("a");
  a.setLocal("role", "x");
  const before = a.digest();
  a.setLocal("role", "x");
  assert.deepEqual(a.digest(), before);
});

Deno.test("GossipState.deltasFor() sends what the peer lacks, oldest versions first, per-node prefixes", () => {
  const a = node("a");
  const b = node("b");
  exchange(a, b, 0);
  a.setLocal("x", "1");
  a.setLocal("y", "2");
  a.beat();
  a.setLocal("x", "3");
  const deltas = a.deltasFor(b.digest(), BIG);
  assert.equal(deltas.length, 1);
  assert.deepEqual(deltas[0]?.entries.map((e) => [e.key, e.value]), [
    ["y", "2"],
    ["heartbeat", "1"],
    ["x", "3"],
  ]);
  const versions = deltas[0]!.entries.map((e) => e.version);
  assert.deepEqual(versions, [...versions].sort((p, q) => p - q));
});

Deno.test("GossipState.deltasFor() of a peer with a higher incarnation of a node sends none of it", () => {
  const a = node("a");
  const b = node("b");
  exchange(a, b, 0);
  const digest: GossipDigestEntry[] = [{ id: "b", incarnation: 5000, maxVersion: 0 }];
  assert.deepEqual(a.deltasFor(digest, BIG).map((d) => d.id), ["a"]);
});

Deno.test("GossipState: a higher incarnation replaces every old entry; a lower one is ignored", () => {
  const a = node("a");
  const b = node("b");
  b.setLocal("old", "1");
  exchange(a, b, 0);
  const b2 = node("b", { incarnation: 2000, host: "b2.local" });
  const ev = exchange(a, b2, 100);
  assert.deepEqual(describe(ev.a), ["state b alive>alive"]);
  assert.equal(ev.a[0]?.member.incarnation, 2000);
  assert.deepEqual(a.member("b")?.kv, {
    host: "b2.local",
    clusterPort: "7100",
    clientPort: "7070",
  });
  // Gossip about the old incarnation, still circulating, changes nothing.
  const stale = a.apply([{
    id: "b",
    incarnation: 1000,
    entries: [{ key: "stale", value: "1", version: 99 }],
  }], 200);
  assert.deepEqual(stale, []);
  assert.equal(a.member("b")?.incarnation, 2000);
  assert.equal(a.member("b")?.kv.stale, undefined);
});

Deno.test("GossipState: a new incarnation keeps the old address until its own arrives", () => {
  const a = node("a");
  const b = node("b");
  exchange(a, b, 0);
  const events = a.apply([{
    id: "b",
    incarnation: 2000,
    entries: [{ key: "heartbeat", value: "1", version: 4 }],
  }], 100);
  assert.deepEqual(describe(events), ["state b alive>alive"]);
  const m = a.member("b");
  assert.equal(m?.host, "b.local");
  assert.equal(m?.incarnation, 2000);
  // Those kept entries are not news to anybody: they are never sent on.
  const c = node("c");
  const toC = a.deltasFor(c.digest(), BIG).find((d) => d.id === "b");
  assert.deepEqual(toC?.entries.map((e) => e.key), ["heartbeat"]);
});

Deno.test("GossipState refutes a delta claiming its id with a higher incarnation and never takes it", () => {
  const a = node("a");
  const events = a.apply([{
    id: "a",
    incarnation: 1500,
    entries: [{ key: "host", value: "impostor", version: 1 }],
  }], 0);
  assert.deepEqual(events, []);
  assert.equal(a.refutations, 1);
  assert.equal(a.incarnation, 1501);
  assert.equal(a.member("a")?.host, "a.local");
  // A claim at the same incarnation but a newer version is refuted too; older ones are not.
  a.apply([{ id: "a", incarnation: 1501, entries: [{ key: "x", value: "1", version: 999 }] }], 0);
  assert.equal(a.incarnation, 1502);
  a.apply([{ id: "a", incarnation: 1502, entries: [{ key: "x", value: "1", version: 1 }] }], 0);
  a.apply([{ id: "a", incarnation: 7, entries: [{ key: "x", value: "1", version: 1 }] }], 0);
  assert.equal(a.refutations, 2);
  assert.equal(a.incarnation, 1502);
});

Deno.test("GossipState refutes a digest that claims its id, and the refutation wins at the peer", () => {
  const a = node("a");
  const b = node("b");
  exchange(a, b, 0);
  // Someone told b that "a" has incarnation 5000 with an impostor's host.
  b.apply([{
    id: "a",
    incarnation: 5000,
    entries: [
      { key: "host", value: "evil", version: 1 },
      { key: "clusterPort", value: "1", version: 2 },
      { key: "clientPort", value: "1", version: 3 },
    ],
  }], 10);
  assert.equal(b.member("a")?.host, "evil");
  exchange(a, b, 20);
  assert.equal(a.refutations, 1);
  assert.equal(a.incarnation, 5001);
  exchange(a, b, 30);
  assert.equal(b.member("a")?.host, "a.local");
  assert.equal(b.member("a")?.incarnation, 5001);
});

/** Feeds `b` a's heartbeat every `everyMs` from `fromMs` to `toMs`, ticking b each round. */
function beatInto(
  a: GossipState,
  b: GossipState,
  fromMs: number,
  toMs: number,
  everyMs = INTERVAL_MS,
): MembershipEvent[] {
  const events: MembershipEvent[] = [];
  for (let t = fromMs; t <= toMs; t += everyMs) {
    a.beat();
    events.push(...exchange(a, b, t).b, ...b.tick(t));
  }
  return events;
}

/** Ticks `s` every round from `fromMs` to `toMs`. */
function silence(s: GossipState, fromMs: number, toMs: number): MembershipEvent[] {
  const events: MembershipEvent[] = [];
  for (let t = fromMs; t <= toMs; t += INTERVAL_MS) events.push(...s.tick(t));
  return events;
}

Deno.test("GossipState marks a silent member suspect at phiSuspect, dead at phiDead, alive on a heartbeat", () => {
  const a = node("a");
  const b = node("b");
  const before = beatInto(a, b, 0, 10_000);
  assert.deepEqual(describe(before), ["join a null>alive"]);
  // Mean interval 200 ms: phi 8 after 8 · 200 · ln 10 ≈ 3684 ms, phi 12 after ≈ 5526 ms.
  const events = silence(b, 10_200, 20_000);
  assert.deepEqual(describe(events), ["state a alive>suspect", "state a suspect>dead"]);
  const suspectAt = 10_000 + 8 * 200 * Math.LN10;
  assert.equal(b.member("a")?.state, "dead");
  const b2 = node("b");
  beatInto(a, b2, 0, 10_000);
  assert.deepEqual(describe(silence(b2, 10_200, Math.floor(suspectAt / 200) * 200)), []);
  assert.deepEqual(describe(silence(b2, Math.ceil(suspectAt / 200) * 200, suspectAt + 200)), [
    "state a alive>suspect",
  ]);
  a.beat();
  assert.deepEqual(describe(exchange(a, b, 20_200).b), ["state a dead>alive"]);
});

Deno.test("GossipState does not blame others for its own pause", () => {
  const a = node("a");
  const b = node("b");
  beatInto(a, b, 0, 10_000);
  assert.deepEqual(b.tick(30_000), [], "a 20 s gap between ticks is this node's pause");
  assert.equal(b.member("a")?.state, "alive");
});

Deno.test("GossipState forgets a dead member after deadForgetMs and keeps it forgotten at that incarnation", () => {
  const a = node("a");
  const b = node("b");
  const c = node("c");
  beatInto(a, b, 0, 2_000);
  exchange(c, b, 2_000);
  // Mean 200 ms: phi 12 after ≈ 5526 ms of silence, so dead at the tick of 7600 ms.
  assert.deepEqual(describe(silence(b, 2_200, 7_600)).filter((e) => e.includes(" a ")), [
    "state a alive>suspect",
    "state a suspect>dead",
  ]);
  assert.deepEqual(
    silence(b, 7_800, 7_600 + FORGET_MS - 200).filter((e) => e.member.id === "a"),
    [],
    "dead, not yet forgotten",
  );
  assert.equal(b.member("a")?.state, "dead");
  assert.deepEqual(describe(b.tick(7_600 + FORGET_MS)).filter((e) => e.includes(" a ")), [
    "leave a dead>dead",
  ]);
  assert.equal(b.member("a"), null);
  // c still holds a as alive (it never ticked) and gossips it back: b does not take it.
  const stale: GossipDelta[] = c.deltasFor(b.digest(), BIG).filter((d) => d.id === "a");
  assert.equal(stale.length, 1);
  assert.deepEqual(b.apply(stale, 20_200), []);
  assert.equal(b.member("a"), null);
  // A heartbeat past the last one b saw proves a lived on (a healed partition): it joins again.
  const alive = b.apply([{
    id: "a",
    incarnation: 1000,
    entries: [{ key: "heartbeat", value: "999", version: 999 }],
  }], 20_200);
  assert.deepEqual(alive, [], "no address yet: the old one went with the forgotten entry");
  assert.equal(b.member("a"), null);
  a.beat();
  assert.deepEqual(describe(exchange(a, b, 20_300).b), ["join a null>alive"]);
});

Deno.test("GossipState never takes back a member that left at the incarnation it left", () => {
  const a = node("a");
  const b = node("b");
  beatInto(a, b, 0, 2_000);
  a.leave();
  exchange(a, b, 2_000);
  silence(b, 2_200, 2_000 + FORGET_MS);
  assert.equal(b.member("a"), null);
  for (let i = 0; i < 5; i++) a.beat();
  assert.deepEqual(exchange(a, b, 2_200 + FORGET_MS).b, []);
  assert.equal(b.member("a"), null);
});

Deno.test("GossipState takes a forgotten member back at a new incarnation", () => {
  const a = node("a");
  const b = node("b");
  beatInto(a, b, 0, 2_000);
  silence(b, 2_200, 20_000);
  assert.equal(b.member("a"), null);
  // A new incarnation is a new life: it joins.
  const a2 = node("a", { incarnation: 3000 });
  assert.deepEqual(describe(exchange(a2, b, 20_400).b), ["join a null>alive"]);
});

Deno.test("GossipState: a member that left is left everywhere, never alive or dead again at that incarnation", () => {
  const a = node("a");
  const b = node("b");
  beatInto(a, b, 0, 2_000);
  a.leave();
  assert.equal(a.member("a")?.state, "left");
  assert.deepEqual(describe(exchange(a, b, 2_200).b), ["state a alive>left"]);
  a.beat();
  assert.deepEqual(exchange(a, b, 2_400).b, [], "a heartbeat does not revive it");
  const events = silence(b, 2_600, 2_200 + FORGET_MS);
  assert.deepEqual(
    describe(events),
    ["leave a left>left"],
    "never suspect or dead; then forgotten",
  );
});

Deno.test("GossipState does not introduce dead or left members to peers that never knew them", () => {
  const a = node("a");
  const b = node("b");
  const c = node("c");
  const d = node("d");
  beatInto(a, b, 0, 2_000);
  exchange(d, b, 2_000);
  silence(b, 2_200, 9_000);
  assert.equal(b.member("a")?.state, "dead");
  d.leave();
  exchange(d, b, 9_200);
  assert.equal(b.member("d")?.state, "left");
  assert.deepEqual(b.deltasFor(c.digest(), BIG).map((x) => x.id).sort(), ["b"]);
  // A peer that knows them hears the news.
  const e = node("e");
  exchange(e, b, 9_400);
  e.apply(
    [{ id: "a", incarnation: 1000, entries: [{ key: "heartbeat", value: "0", version: 1 }] }],
    0,
  );
  assert.ok(b.deltasFor(e.digest(), BIG).some((x) => x.id === "a"));
});

Deno.test("GossipState hides a member until its address has arrived", () => {
  const a = node("a");
  const partial = a.apply([{
    id: "b",
    incarnation: 1,
    entries: [{ key: "host", value: "b.local", version: 1 }],
  }], 0);
  assert.deepEqual(partial, []);
  assert.equal(a.member("b"), null);
  assert.equal(a.members().length, 1);
  assert.equal(a.size, 1);
  const rest = a.apply([{
    id: "b",
    incarnation: 1,
    entries: [
      { key: "clusterPort", value: "7100", version: 2 },
      { key: "clientPort", value: "7070", version: 3 },
    ],
  }], 0);
  assert.deepEqual(describe(rest), ["join b null>alive"]);
});

Deno.test("GossipState holds at most MEMBERS_MAX other nodes", () => {
  const a = node("a");
  const deltas: GossipDelta[] = [];
  for (let i = 0; i < MEMBERS_MAX + 10; i++) {
    deltas.push({
      id: `n${i}`,
      incarnation: 1,
      entries: [
        { key: "host", value: `n${i}`, version: 1 },
        { key: "clusterPort", value: "1", version: 2 },
        { key: "clientPort", value: "1", version: 3 },
      ],
    });
  }
  assert.equal(a.apply(deltas, 0).length, MEMBERS_MAX);
  assert.equal(a.size, MEMBERS_MAX);
  assert.equal(a.members().length, MEMBERS_MAX + 1);
});

Deno.test("GossipState.peers() splits members by reachability and skips those that left", () => {
  const a = node("a");
  const b = node("b");
  const c = node("c");
  const d = node("d");
  exchange(b, a, 0);
  exchange(c, a, 0);
  exchange(d, a, 0);
  b.beat();
  d.leave();
  // c was never heard from again: with the bootstrap mean (400 ms) phi reaches 12 after ≈ 11 s.
  for (let t = 200; t <= 12_000; t += 200) {
    b.beat();
    exchange(b, a, t);
    a.tick(t);
  }
  exchange(d, a, 12_000);
  assert.equal(a.member("c")?.state, "dead");
  assert.deepEqual(a.peers(), {
    alive: [{ host: "b.local", port: 7100 }],
    unreachable: [{ host: "c.local", port: 7100 }],
  });
});

// --- Properties --------------------------------------------------------------------------------

const opArb = fc.oneof(
  fc.record({
    kind: fc.constant("set" as const),
    node: fc.nat(),
    key: fc.constantFrom("a", "b", "c", "load", "role"),
    value: fc.string({ unit: "grapheme", maxLength: 120 }),
  }),
  fc.record({ kind: fc.constant("beat" as const), node: fc.nat() }),
  fc.record({
    kind: fc.constant("exchange" as const),
    from: fc.nat(),
    to: fc.nat(),
    bytesMax: fc.integer({ min: 200, max: 4_000 }),
  }),
);

Deno.test("GossipState: every delta message stays within bytesMax and holds per-node version prefixes (property)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 5 }),
      fc.array(opArb, { maxLength: 60 }),
      (n, ops) => {
        const nodes = Array.from({ length: n }, (_, i) => node(`n${i}`));
        for (const op of ops) {
          if (op.kind === "set") nodes[op.node % n]!.setLocal(op.key, op.value);
          else if (op.kind === "beat") nodes[op.node % n]!.beat();
          else {
            const a = nodes[op.from % n]!;
            const b = nodes[op.to % n]!;
            if (a === b) continue;
            const peer = b.digest();
            const deltas = a.deltasFor(peer, op.bytesMax);
            const bytes = encodeAck2({ fromId: "x", deltas }).length - 2 - 1;
            assert.ok(bytes <= op.bytesMax, `${bytes} > ${op.bytesMax}`);
            for (const d of deltas) {
              const versions = d.entries.map((e) => e.version);
              assert.deepEqual(versions, [...versions].sort((p, q) => p - q));
              // The entries sent are exactly a's entries of that node above the peer's version and
              // up to the last one sent: nothing skipped below the cut.
              const theirs = peer.find((x) => x.id === d.id);
              const from = theirs?.incarnation === d.incarnation ? theirs.maxVersion : 0;
              const all = a.deltasFor(peer, Infinity).find((x) => x.id === d.id)!;
              const cut = versions.at(-1)!;
              assert.deepEqual(
                d.entries,
                all.entries.filter((e) => e.version > from && e.version <= cut),
              );
            }
            exchange(a, b, 0, op.bytesMax);
          }
        }
      },
    ),
    { numRuns: 150 },
  );
});

Deno.test("GossipState: any history of updates and exchanges converges once everyone gossips (property)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 6 }),
      fc.array(opArb, { maxLength: 80 }),
      fc.integer({ min: MESSAGE_BYTES_MIN / 16, max: MESSAGE_BYTES_MIN }),
      (n, ops, bytesMax) => {
        const nodes = Array.from({ length: n }, (_, i) => node(`n${i}`));
        for (const op of ops) {
          if (op.kind === "set") nodes[op.node % n]!.setLocal(op.key, op.value);
          else if (op.kind === "beat") nodes[op.node % n]!.beat();
          else if (op.from % n !== op.to % n) {
            exchange(nodes[op.from % n]!, nodes[op.to % n]!, 0, op.bytesMax);
          }
        }
        // Then rounds of everyone with everyone, with a small message bound.
        let rounds = 0;
        const agreed = () => {
          const views = nodes.map((x) => JSON.stringify(x.members().map(shared)));
          return views.every((v) => v === views[0]) && nodes[0]!.members().length === n;
        };
        while (!agreed()) {
          assert.ok(++rounds <= 50, "no convergence within 50 full rounds");
          for (const a of nodes) for (const b of nodes) if (a !== b) exchange(a, b, 0, bytesMax);
        }
        // And each node's view of itself is what everybody holds.
        for (const x of nodes) {
          const own = shared(x.member(x.selfId)!);
          for (const y of nodes) assert.deepEqual(shared(y.member(x.selfId)!), own);
        }
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("A forged digest claiming this node's id far above its incarnation is not outbid", () => {
  const a = node("a");
  const before = a.member("a")!.incarnation;
  a.observeDigest([{ id: "a", incarnation: 2 ** 52 - 1, maxVersion: 1 }]);
  assert.equal(a.member("a")!.incarnation, before, "one forged number must not push it to the top");
  a.observeDigest([{ id: "a", incarnation: before + 5, maxVersion: 1 }]);
  assert.equal(a.member("a")!.incarnation, before + 6, "a plausible claim is still refuted");
});

Deno.test("A member this node suspects is not introduced to a newcomer", () => {
  const a = node("a");
  const b = node("b");
  exchange(a, b, 0);
  // b goes silent: a comes to suspect it (a keeps ticking; b never gossips again).
  let t = 0;
  while (a.member("b")!.state === "alive" && t < 60_000) {
    t += INTERVAL_MS;
    a.tick(t);
  }
  assert.equal(a.member("b")!.state, "suspect");
  const c = node("c");
  exchange(c, a, t);
  assert.equal(c.member("b"), null, "c hears of b only once b is alive again");
});

Deno.test("GossipState holds no node of another cluster, and drops those it held on joining one", () => {
  const foreign: string[] = [];
  const a1 = node("a1", { clusterId: "A", onForeign: (id, c) => foreign.push(`${id}@${c}`) });
  const b1 = node("b1", { clusterId: "B" });
  const old = node("old"); // A version without clusters, or a node still joining: it names none.
  assert.equal(a1.clusterId, "A");
  assert.equal(old.clusterId, "");
  exchange(a1, b1, 100);
  exchange(b1, a1, 200);
  assert.deepEqual(a1.members().map((m) => m.id), ["a1"]);
  assert.deepEqual(b1.members().map((m) => m.id), ["b1"]);
  assert.ok(foreign.includes("b1@B"), foreign.join());
  // A node that names no cluster is held (and relays what it holds: A's node keeps B's out).
  exchange(old, a1, 300);
  exchange(old, b1, 400);
  assert.deepEqual(old.members().map((m) => m.id), ["a1", "b1", "old"]);
  exchange(a1, old, 500);
  assert.deepEqual(a1.members().map((m) => m.id), ["a1", "old"]);
  // Joining B: A's node goes, with a leave event; B's stay; the cluster is in its state.
  const events = old.joinCluster("B");
  assert.deepEqual(events.map((e) => `${e.kind}:${e.member.id}`), ["leave:a1"]);
  assert.deepEqual(old.members().map((m) => m.id), ["b1", "old"]);
  assert.equal(old.clusterOf("old"), "B");
  assert.equal(old.clusterOf("b1"), "B");
  assert.equal(old.clusterOf("a1"), undefined);
  assert.deepEqual(old.joinCluster("B"), []);
  assert.throws(() => old.joinCluster("A"), /belongs to cluster B/);
  assert.throws(() => old.joinCluster("no spaces"), RangeError);
  // Now A's node drops it too, at once: its cluster travels with it.
  exchange(a1, old, 600);
  assert.deepEqual(a1.members().map((m) => m.id), ["a1"]);
  assert.ok(foreign.includes("old@B"), foreign.join());
});

Deno.test("GossipState sends its cluster before its address, so none holds one without the other", () => {
  const a1 = node("a1", { clusterId: "A" });
  const d = a1.deltasFor([], BIG).find((x) => x.id === "a1")!;
  assert.equal(d.entries[0]?.key, "cluster");
  assert.equal(d.entries[0]?.value, "A");
  assert.throws(() => node("x", { clusterId: "A B" }), /cluster "A B"/);
  assert.throws(() => a1.setLocal("cluster", "B"), /reserved/);
});
