import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Assignment,
  type Assignor,
  type AssignorMember,
  parseTpKey,
  rangeAssignor,
  roundRobinAssignor,
  stickyAssignor,
  tpKey,
} from "./assignors.ts";

/** A member's partitions as "t0p1" labels, sorted by topic then partition. */
function labels(a: Assignment, id: string): string[] {
  return [...(a.get(id) ?? [])].map(parseTpKey)
    .sort((x, y) => (x.topic < y.topic ? -1 : x.topic > y.topic ? 1 : x.partition - y.partition))
    .map((tp) => `${tp.topic}p${tp.partition}`);
}

function counts(table: Record<string, number>): (topic: string) => number {
  return (topic) => table[topic] ?? 0;
}

function uniform(n: number, topics: string[], prefix = "c"): AssignorMember[] {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, topics }));
}

/** Every partition of every subscribed topic once, each to a member subscribed to its topic. */
function assertValid(
  members: readonly AssignorMember[],
  partitionsOf: (topic: string) => number,
  a: Assignment,
): void {
  assert.deepEqual([...a.keys()].sort(), members.map((m) => m.id).sort());
  const seen = new Map<string, string>();
  for (const [id, keys] of a) {
    const m = members.find((x) => x.id === id)!;
    for (const key of keys) {
      const { topic, partition } = parseTpKey(key);
      assert.ok(m.topics.includes(topic), `${id} got ${key} without subscribing to ${topic}`);
      assert.ok(partition >= 0 && partition < partitionsOf(topic), `${key} does not exist`);
      assert.equal(seen.get(key), undefined, `${key} assigned to ${seen.get(key)} and ${id}`);
      seen.set(key, id);
    }
  }
  const expected = new Set(members.flatMap((m) => m.topics));
  let total = 0;
  for (const t of expected) total += partitionsOf(t);
  assert.equal(seen.size, total, "every partition of a subscribed topic is assigned");
}

function spread(a: Assignment): number {
  const loads = [...a.values()].map((s) => s.size);
  return Math.max(...loads) - Math.min(...loads);
}

/** Partitions that had an owner in `before` and have a different one in `after`. */
function moved(before: Assignment, after: Assignment): number {
  const ownerAfter = new Map<string, string>();
  for (const [id, keys] of after) for (const k of keys) ownerAfter.set(k, id);
  let n = 0;
  for (const [id, keys] of before) for (const k of keys) if (ownerAfter.get(k) !== id) n++;
  return n;
}

Deno.test("tpKey() and parseTpKey() round-trip, also for topic names with dots and digits", () => {
  for (const [t, p] of [["t0", 0], ["a.b-3", 17], ["x", 4095]] as const) {
    assert.deepEqual(parseTpKey(tpKey(t, p)), { topic: t, partition: p });
  }
});

Deno.test("rangeAssignor matches Kafka's documented example: contiguous runs per topic", () => {
  const members = uniform(2, ["t0", "t1"], "C");
  const a = rangeAssignor(members, counts({ t0: 3, t1: 3 }), new Map());
  assert.deepEqual(labels(a, "C0"), ["t0p0", "t0p1", "t1p0", "t1p1"]);
  assert.deepEqual(labels(a, "C1"), ["t0p2", "t1p2"]);
});

Deno.test("roundRobinAssignor matches Kafka's documented example: partitions dealt in turn", () => {
  const members = uniform(2, ["t0", "t1"], "C");
  const a = roundRobinAssignor(members, counts({ t0: 3, t1: 3 }), new Map());
  assert.deepEqual(labels(a, "C0"), ["t0p0", "t0p2", "t1p1"]);
  assert.deepEqual(labels(a, "C1"), ["t0p1", "t1p0", "t1p2"]);
});

Deno.test("roundRobinAssignor skips members not subscribed to a topic, as Kafka's does", () => {
  // Kafka's example with C0 {t0}, C1 {t0,t1}, C2 {t0,t1,t2}; t0:1, t1:2, t2:3.
  const members: AssignorMember[] = [
    { id: "C0", topics: ["t0"] },
    { id: "C1", topics: ["t0", "t1"] },
    { id: "C2", topics: ["t0", "t1", "t2"] },
  ];
  const of = counts({ t0: 1, t1: 2, t2: 3 });
  const a = roundRobinAssignor(members, of, new Map());
  assertValid(members, of, a);
  assert.deepEqual(labels(a, "C0"), ["t0p0"]);
  assert.deepEqual(labels(a, "C1"), ["t1p0"]);
  assert.deepEqual(labels(a, "C2"), ["t1p1", "t2p0", "t2p1", "t2p2"]);
});

Deno.test("rangeAssignor orders members by id, not by arrival, and gives the extras first", () => {
  const members: AssignorMember[] = [
    { id: "b", topics: ["t"] },
    { id: "c", topics: ["t"] },
    { id: "a", topics: ["t"] },
  ];
  const a = rangeAssignor(members, counts({ t: 7 }), new Map());
  assert.deepEqual(labels(a, "a"), ["tp0", "tp1", "tp2"]);
  assert.deepEqual(labels(a, "b"), ["tp3", "tp4"]);
  assert.deepEqual(labels(a, "c"), ["tp5", "tp6"]);
});

Deno.test("Every assignor gives members of an unsubscribed or empty topic nothing, and no one more than exists", () => {
  for (const assignor of [rangeAssignor, roundRobinAssignor, stickyAssignor]) {
    const members: AssignorMember[] = [
      { id: "a", topics: ["gone"] },
      { id: "b", topics: ["t", "gone"] },
    ];
    const of = counts({ t: 2 });
    const a = assignor(members, of, new Map());
    assertValid(members, of, a);
    assert.deepEqual(labels(a, "a"), []);
    assert.deepEqual(labels(a, "b"), ["tp0", "tp1"]);
    assert.deepEqual([...assignor([], of, new Map())], []);
  }
});

const memberSets = fc.record({
  topics: fc.array(fc.constantFrom("t0", "t1", "t2", "t3"), { minLength: 1, maxLength: 4 }),
  counts: fc.record({
    t0: fc.nat({ max: 12 }),
    t1: fc.nat({ max: 12 }),
    t2: fc.nat({ max: 12 }),
    t3: fc.nat({ max: 12 }),
  }),
  subs: fc.array(fc.subarray(["t0", "t1", "t2", "t3"], { minLength: 1 }), {
    minLength: 1,
    maxLength: 9,
  }),
});

Deno.test("Every assignor assigns each partition once, to a subscribed member (any subscriptions)", () => {
  const assignors: [string, Assignor][] = [
    ["range", rangeAssignor],
    ["roundrobin", roundRobinAssignor],
    ["sticky", stickyAssignor],
  ];
  fc.assert(
    fc.property(memberSets, ({ counts: table, subs }) => {
      const members = subs.map((topics, i) => ({ id: `m${i}`, topics }));
      for (const [, assignor] of assignors) {
        assertValid(members, counts(table), assignor(members, counts(table), new Map()));
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("stickyAssignor with non-uniform subscriptions keeps valid through churn from any start", () => {
  fc.assert(
    fc.property(memberSets, fc.nat(), ({ counts: table, subs }, seed) => {
      const of = counts(table);
      let members = subs.map((topics, i) => ({ id: `m${i}`, topics }));
      // Start from an arbitrary (even invalid: duplicated, unsubscribed) current assignment.
      const current: Assignment = new Map(members.map((m) => [m.id, new Set<string>()]));
      let s = seed;
      for (const t of ["t0", "t1", "t2", "t3", "gone"]) {
        for (let p = 0; p < 14; p++) {
          s = (s * 1103515245 + 12345) >>> 0;
          current.get(members[s % members.length]!.id)!.add(tpKey(t, p));
        }
      }
      let a = stickyAssignor(members, of, current);
      assertValid(members, of, a);
      members = members.slice(1).concat([{ id: "new", topics: subs[0]! }]);
      a = stickyAssignor(members, of, a);
      assertValid(members, of, a);
    }),
    { numRuns: 300 },
  );
});

const uniformGroups = fc.record({
  n: fc.integer({ min: 1, max: 12 }),
  counts: fc.array(fc.nat({ max: 40 }), { minLength: 1, maxLength: 3 }),
  newId: fc.constantFrom("a-new", "m5x", "z-new"),
  leaver: fc.nat(),
});

Deno.test("stickyAssignor is balanced with uniform subscriptions (loads differ by at most one)", () => {
  fc.assert(
    fc.property(uniformGroups, ({ n, counts: c }) => {
      const topics = c.map((_, i) => `t${i}`);
      const of = (t: string) => c[Number(t.slice(1))] ?? 0;
      const a = stickyAssignor(uniform(n, topics, "m"), of, new Map());
      assertValid(uniform(n, topics, "m"), of, a);
      assert.ok(spread(a) <= 1, `loads ${[...a.values()].map((x) => x.size)}`);
    }),
    { numRuns: 300 },
  );
});

Deno.test("stickyAssignor moves only what a new member takes, and that is a fair share", () => {
  fc.assert(
    fc.property(uniformGroups, ({ n, counts: c, newId }) => {
      const topics = c.map((_, i) => `t${i}`);
      const of = (t: string) => c[Number(t.slice(1))] ?? 0;
      const total = c.reduce((x, y) => x + y, 0);
      const members = uniform(n, topics, "m");
      const before = stickyAssignor(members, of, new Map());
      const grown = [...members, { id: newId, topics }];
      const after = stickyAssignor(grown, of, before);
      assertValid(grown, of, after);
      assert.ok(spread(after) <= 1);
      const taken = after.get(newId)!.size;
      assert.equal(moved(before, after), taken, "only partitions going to the newcomer move");
      assert.ok(taken === Math.floor(total / (n + 1)) || taken === Math.ceil(total / (n + 1)));
    }),
    { numRuns: 300 },
  );
});

Deno.test("stickyAssignor moves only a leaving member's partitions, and stays balanced", () => {
  fc.assert(
    fc.property(uniformGroups, ({ n, counts: c, leaver }) => {
      fc.pre(n >= 2);
      const topics = c.map((_, i) => `t${i}`);
      const of = (t: string) => c[Number(t.slice(1))] ?? 0;
      const members = uniform(n, topics, "m");
      const before = stickyAssignor(members, of, new Map());
      const gone = members[leaver % n]!.id;
      const rest = members.filter((m) => m.id !== gone);
      const after = stickyAssignor(rest, of, before);
      assertValid(rest, of, after);
      assert.ok(spread(after) <= 1);
      assert.equal(moved(before, after), before.get(gone)!.size);
    }),
    { numRuns: 300 },
  );
});

Deno.test("stickyAssignor with no change moves nothing", () => {
  fc.assert(
    fc.property(memberSets, ({ counts: table, subs }) => {
      const of = counts(table);
      const members = subs.map((topics, i) => ({ id: `m${i}`, topics }));
      const first = stickyAssignor(members, of, new Map());
      assert.equal(moved(first, stickyAssignor(members, of, first)), 0);
    }),
    { numRuns: 300 },
  );
});
