import assert from "node:assert/strict";
import fc from "fast-check";
import { SeededRandom } from "../../io/prng.ts";
import type { Addr } from "../../io/types.ts";
import { addrKey, choosePeers, isIpLiteral, parseSeed, sample, SEED_PROBABILITY } from "./peers.ts";

const at = (host: string, port = 7100): Addr => ({ host, port });

Deno.test("parseSeed() reads host:port and [v6]:port, and names what is wrong otherwise", () => {
  assert.deepEqual(parseSeed("n1:7100"), at("n1"));
  assert.deepEqual(parseSeed("10.0.0.1:1"), at("10.0.0.1", 1));
  assert.deepEqual(parseSeed("[::1]:7100"), at("::1"));
  assert.deepEqual(
    parseSeed("gregor.default.svc.cluster.local:7071"),
    at("gregor.default.svc.cluster.local", 7071),
  );
  for (const bad of ["n1", "n1:", ":7100", "::1:7100", "n1:7100:1", "a b:1", "n1:x"]) {
    assert.throws(() => parseSeed(bad), /is not "host:port"|bad host/, bad);
  }
  for (const bad of ["n1:0", "n1:65536"]) assert.throws(() => parseSeed(bad), /out of 1..65535/);
});

Deno.test("isIpLiteral() tells addresses from names", () => {
  for (const ip of ["10.0.0.1", "255.255.255.255", "::1", "fe80::1"]) {
    assert.ok(isIpLiteral(ip), ip);
  }
  for (const name of ["n1", "256.0.0.1", "1.2.3", "gregor.svc"]) {
    assert.ok(!isIpLiteral(name), name);
  }
});

Deno.test("addrKey() brackets IPv6 so keys never collide", () => {
  assert.equal(addrKey(at("n1")), "n1:7100");
  assert.equal(addrKey(at("::1")), "[::1]:7100");
});

const addrs = (prefix: string, n: number): Addr[] =>
  Array.from({ length: n }, (_, i) => at(`${prefix}${i}`));

Deno.test("choosePeers() calls a seed every round while no peer is alive", () => {
  const random = new SeededRandom(1);
  for (let i = 0; i < 100; i++) {
    const peers = choosePeers(random, {
      alive: [],
      unreachable: [],
      seeds: addrs("s", 3),
      self: [],
    });
    assert.equal(peers.length, 1);
    assert.match(peers[0]!.host, /^s/);
  }
});

Deno.test("choosePeers() never calls itself, even when it is its only seed", () => {
  const random = new SeededRandom(2);
  const self = [at("me")];
  for (let i = 0; i < 100; i++) {
    assert.deepEqual(choosePeers(random, { alive: [], unreachable: [], seeds: self, self }), []);
  }
});

Deno.test("choosePeers() calls one alive peer each round, seeds and unreachable ones at their rates", () => {
  const random = new SeededRandom(3);
  const rounds = 20_000;
  let seeds = 0;
  let unreachable = 0;
  const alive = addrs("a", 4);
  for (let i = 0; i < rounds; i++) {
    const peers = choosePeers(random, {
      alive,
      unreachable: addrs("u", 2),
      seeds: addrs("s", 2),
      self: [],
    });
    assert.equal(peers.filter((p) => p.host.startsWith("a")).length, 1);
    seeds += peers.filter((p) => p.host.startsWith("s")).length;
    unreachable += peers.filter((p) => p.host.startsWith("u")).length;
  }
  // Expected rates: SEED_PROBABILITY, and unreachable / (alive + 1) = 2 / 5.
  assert.ok(Math.abs(seeds / rounds - SEED_PROBABILITY) < 0.01, `seed rate ${seeds / rounds}`);
  assert.ok(
    Math.abs(unreachable / rounds - 0.4) < 0.02,
    `unreachable rate ${unreachable / rounds}`,
  );
});

Deno.test("choosePeers() picks distinct addresses, none of its own, from the candidates (property)", () => {
  const hostArb = fc.constantFrom("a", "b", "c", "d", "me");
  const listArb = fc.array(hostArb.map((h) => at(h)), { maxLength: 5 });
  fc.assert(
    fc.property(fc.integer(), listArb, listArb, listArb, (seed, alive, unreachable, seeds) => {
      const self = [at("me")];
      const peers = choosePeers(new SeededRandom(seed), { alive, unreachable, seeds, self });
      const keys = peers.map(addrKey);
      assert.equal(new Set(keys).size, keys.length);
      assert.ok(!keys.includes("me:7100"));
      const all = new Set([...alive, ...unreachable, ...seeds].map(addrKey));
      assert.ok(keys.every((k) => all.has(k)));
      assert.ok(peers.length <= 3);
      if (alive.some((a) => a.host !== "me")) assert.ok(peers.length >= 1);
    }),
  );
});

Deno.test("sample() draws up to n distinct addresses", () => {
  const random = new SeededRandom(4);
  const from = addrs("a", 5);
  for (const n of [0, 1, 3, 5, 9]) {
    const got = sample(random, from, n);
    assert.equal(got.length, Math.min(n, 5));
    assert.equal(new Set(got.map(addrKey)).size, got.length);
  }
});
