import assert from "node:assert/strict";
import { SeededRandom } from "../../io/prng.ts";
import { ErrorCode, GregorError } from "../../protocol/errors.ts";
import type {
  GroupHeartbeatRequest,
  GroupHeartbeatResponse,
  TopicPartition,
} from "../../protocol/messages.ts";
import { parseTpKey, tpKey } from "./assignors.ts";
import {
  type CoordinatorEvents,
  type CoordinatorOptions,
  GroupCoordinator,
  type ReleaseReason,
} from "./coordinator.ts";

const G = "orders";
const SESSION_MS = 10_000;

/**
 * A coordinator over a mutable topic table, with an observer that tracks owners from the events
 * alone and fails the test the moment a partition is granted while someone else holds it.
 */
class Harness {
  readonly partitions = new Map<string, number>();
  readonly c: GroupCoordinator;
  /** "group\0topic\0partition" → member id, as the events tell it. */
  readonly owners = new Map<string, string>();
  readonly log: string[] = [];
  nowMs = 0;
  #ids = 0;

  constructor(topics: Record<string, number>, opts: Partial<CoordinatorOptions> = {}) {
    for (const [t, n] of Object.entries(topics)) this.partitions.set(t, n);
    this.c = new GroupCoordinator(
      { sessionTimeoutMsMin: 1000, ...opts },
      (t) => this.partitions.get(t) ?? 0,
      (clientId) => `${clientId}-${++this.#ids}`,
    );
    const owners = this.owners;
    const log = this.log;
    const events: CoordinatorEvents = {
      granted(group, generation, memberId, tp) {
        const k = `${group}\u0000${tpKey(tp.topic, tp.partition)}`;
        const holder = owners.get(k);
        assert.equal(
          holder,
          undefined,
          `${tp.topic}/${tp.partition} granted to ${memberId} in generation ${generation} while ${holder} holds it`,
        );
        owners.set(k, memberId);
        log.push(`grant ${memberId} ${tp.topic}/${tp.partition}`);
      },
      released(group, _generation, memberId, tp, reason: ReleaseReason) {
        const k = `${group}\u0000${tpKey(tp.topic, tp.partition)}`;
        assert.equal(owners.get(k), memberId, `${memberId} released ${k} it did not hold`);
        owners.delete(k);
        log.push(`release ${memberId} ${tp.topic}/${tp.partition} ${reason}`);
      },
      newGeneration() {},
    };
    this.c.events = events;
  }

  beat(
    over: Partial<GroupHeartbeatRequest> & { memberId?: string },
    clientId = "app",
  ): GroupHeartbeatResponse {
    const req: GroupHeartbeatRequest = {
      group: G,
      memberId: "",
      instanceId: "",
      // Like a real client: the generation of the last answer this member heard.
      generation: this.lastGeneration.get(over.memberId ?? "") ?? -1,
      sessionTimeoutMs: SESSION_MS,
      assignor: "",
      topics: [{ name: "t" }],
      owned: [],
      ...over,
    };
    const r = this.c.heartbeat(req, clientId, this.nowMs);
    this.lastGeneration.set(r.memberId, r.generation);
    return r;
  }

  /** The generation each member last heard. */
  readonly lastGeneration = new Map<string, number>();

  /** The partitions the events say `memberId` owns, as sorted "t/p" labels. */
  ownedBy(memberId: string): string[] {
    return [...this.owners].filter(([, id]) => id === memberId).map(([k]) => {
      const tp = parseTpKey(k.slice(k.indexOf("\u0000") + 1));
      return `${tp.topic}/${tp.partition}`;
    }).sort();
  }
}

function names(tps: readonly TopicPartition[]): string[] {
  return tps.map((tp) => `${tp.topic}/${tp.partition}`).sort();
}

function assertCode(fn: () => unknown, code: number, message?: RegExp): void {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof GregorError, `expected a GregorError, got ${err}`);
    assert.equal(err.code, code, err.message);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}

Deno.test("GroupCoordinator: a joining member gets an id and a new generation; alone, all partitions", () => {
  const h = new Harness({ t: 4 });
  const r = h.beat({}, "billing");
  assert.equal(r.memberId, "billing-1");
  assert.equal(r.generation, 1);
  assert.deepEqual(names(r.assigned), ["t/0", "t/1", "t/2", "t/3"]);
  assert.equal(r.pending, 0);
  assert.equal(r.heartbeatIntervalMs, h.c.opts.heartbeatIntervalMs);
  const again = h.beat({ memberId: r.memberId, owned: r.assigned });
  assert.equal(again.generation, 1, "a heartbeat with nothing changed keeps the generation");
  assert.deepEqual(names(again.assigned), names(r.assigned));
  assert.deepEqual(h.c.list(), [{ group: G, state: "stable", members: 1, generation: 1 }]);
});

Deno.test("GroupCoordinator: a second member gets moved partitions only after the first lets go", () => {
  const h = new Harness({ t: 4 });
  const a = h.beat({});
  const b = h.beat({});
  assert.equal(b.generation, 2);
  assert.deepEqual(b.assigned, [], "the partitions are still the first member's");
  assert.equal(b.pending, 2);
  assert.equal(b.heartbeatIntervalMs, h.c.opts.reconcileIntervalMs);
  assert.equal(h.c.describe(G)!.state, "reconciling");

  // The first member learns its assignment shrank; it still owns all four until it says otherwise.
  const a2 = h.beat({ memberId: a.memberId, owned: a.assigned });
  assert.equal(a2.generation, 2);
  const kept = names(a2.assigned);
  assert.equal(kept.length, 2);
  assert.equal(a2.heartbeatIntervalMs, h.c.opts.reconcileIntervalMs, "it is revoking");
  assert.deepEqual(h.ownedBy(a.memberId), ["t/0", "t/1", "t/2", "t/3"]);
  const b2 = h.beat({ memberId: b.memberId });
  assert.deepEqual(b2.assigned, []);
  assert.equal(b2.pending, 2);

  // Its next heartbeat omits the moved ones: they are free, and the second member gets them.
  const a3 = h.beat({ memberId: a.memberId, owned: a2.assigned });
  assert.deepEqual(names(a3.assigned), kept, "unmoved partitions never left the first member");
  assert.equal(a3.heartbeatIntervalMs, h.c.opts.heartbeatIntervalMs);
  assert.deepEqual(h.ownedBy(a.memberId), kept);
  const b3 = h.beat({ memberId: b.memberId });
  assert.equal(b3.pending, 0);
  const moved = names(b3.assigned);
  assert.equal(moved.length, 2);
  assert.deepEqual([...kept, ...moved].sort(), ["t/0", "t/1", "t/2", "t/3"]);
  assert.equal(h.c.describe(G)!.state, "stable");
  assert.ok(
    h.log.indexOf(`release ${a.memberId} ${moved[0]} revoked`) <
      h.log.indexOf(`grant ${b.memberId} ${moved[0]}`),
  );
});

Deno.test("GroupCoordinator: a member that keeps listing a revoked partition keeps it, and is told to hurry", () => {
  const h = new Harness({ t: 2 });
  const a = h.beat({});
  const b = h.beat({});
  for (let i = 0; i < 3; i++) {
    const r = h.beat({ memberId: a.memberId, owned: a.assigned });
    assert.equal(r.assigned.length, 1);
    assert.equal(r.heartbeatIntervalMs, h.c.opts.reconcileIntervalMs);
    assert.equal(h.beat({ memberId: b.memberId }).assigned.length, 0);
  }
  assert.deepEqual(h.ownedBy(a.memberId), ["t/0", "t/1"]);
});

Deno.test("GroupCoordinator: a leaving member's partitions are free at once", () => {
  const h = new Harness({ t: 4 });
  const a = h.beat({});
  const b = h.beat({});
  h.beat({ memberId: a.memberId, owned: a.assigned });
  const a2 = h.beat({ memberId: a.memberId, owned: [{ topic: "t", partition: 0 }] });
  const b2 = h.beat({ memberId: b.memberId });
  assert.equal(b2.assigned.length, 2);
  const gen = b2.generation;
  h.c.leave(G, b.memberId);
  assert.deepEqual(h.ownedBy(b.memberId), []);
  const a3 = h.beat({ memberId: a.memberId, owned: a2.assigned });
  assert.equal(a3.generation, gen + 1);
  assert.deepEqual(names(a3.assigned), ["t/0", "t/1", "t/2", "t/3"]);
  assertCode(() => h.c.leave(G, b.memberId), ErrorCode.UNKNOWN_MEMBER);
  h.c.leave(G, a.memberId);
  assert.equal(h.c.isEmpty(G), true);
  assert.deepEqual(h.c.list(), []);
  assert.equal(h.c.describe(G), null, "an empty group is forgotten");
  const again = h.beat({});
  assert.ok(again.generation > a3.generation, "a new group continues the old generations");
});

Deno.test("GroupCoordinator.expire() removes a member silent for longer than its session, not before", () => {
  const h = new Harness({ t: 2 });
  const a = h.beat({ sessionTimeoutMs: 5000 });
  h.nowMs = 3000;
  const b = h.beat({ sessionTimeoutMs: SESSION_MS });
  h.nowMs = 5000;
  assert.equal(h.c.expire(h.nowMs), 0, "exactly the session timeout is not yet too long");
  h.nowMs = 5001;
  assert.equal(h.c.expire(h.nowMs), 1);
  assert.ok(h.log.includes(`release ${a.memberId} t/0 expired`));
  assertCode(() => h.beat({ memberId: a.memberId }), ErrorCode.UNKNOWN_MEMBER, /join again/);
  const b2 = h.beat({ memberId: b.memberId });
  assert.deepEqual(names(b2.assigned), ["t/0", "t/1"]);
  h.nowMs = 5001 + SESSION_MS;
  assert.equal(h.c.expire(h.nowMs), 0, "a heartbeat renews the session");
  h.nowMs += 1;
  assert.equal(h.c.expire(h.nowMs), 1);
  assert.equal(h.c.isEmpty(G), true);
});

Deno.test("GroupCoordinator.checkOwner() fences stale generations, non-owners, unknown and fenced members", () => {
  const h = new Harness({ t: 2 });
  const a = h.beat({ instanceId: "host-1" });
  const p0 = { topic: "t", partition: 0 };
  const p1 = { topic: "t", partition: 1 };
  h.c.checkOwner(G, a.memberId, a.generation, [p0, p1]);
  h.c.checkOwner(G, a.memberId, a.generation, []);

  const b = h.beat({});
  // a has not heard of b yet: it still commits what it owns, at the generation it knows.
  h.c.checkOwner(G, a.memberId, a.generation, [p0]);
  const a2 = h.beat({ memberId: a.memberId, owned: a.assigned });
  assertCode(
    () => h.c.checkOwner(G, a.memberId, a.generation, [p0]),
    ErrorCode.STALE_GENERATION,
    /heartbeat first/,
  );
  h.c.checkOwner(G, a.memberId, a2.generation, [p0, p1]); // still its own until it lets go
  h.beat({ memberId: a.memberId, owned: a2.assigned });
  const b2 = h.beat({ memberId: b.memberId });
  const [mine] = a2.assigned;
  const [theirs] = b2.assigned;
  assertCode(
    () => h.c.checkOwner(G, a.memberId, b2.generation, [mine!, theirs!]),
    ErrorCode.STALE_GENERATION,
    /does not own/,
  );
  h.c.checkOwner(G, b.memberId, b2.generation, [theirs!]);
  assertCode(() => h.c.checkOwner(G, "nobody", b2.generation, []), ErrorCode.UNKNOWN_MEMBER);
  assertCode(() => h.c.checkOwner("other", a.memberId, 1, []), ErrorCode.UNKNOWN_MEMBER);

  const a3 = h.beat({ instanceId: "host-1" });
  assertCode(
    () => h.c.checkOwner(G, a.memberId, a3.generation, [mine!]),
    ErrorCode.FENCED_INSTANCE,
    /host-1/,
  );
  h.c.checkOwner(G, a3.memberId, a3.generation, [mine!]);
});

Deno.test("GroupCoordinator: a static member's restart keeps its partitions, moves nothing, fences the old id", () => {
  const h = new Harness({ t: 6 });
  const a = h.beat({ instanceId: "host-a" });
  const b = h.beat({ instanceId: "host-b" });
  let ra = h.beat({ memberId: a.memberId, instanceId: "host-a", owned: a.assigned });
  ra = h.beat({ memberId: a.memberId, instanceId: "host-a", owned: ra.assigned });
  let rb = h.beat({ memberId: b.memberId, instanceId: "host-b" });
  assert.equal(h.c.describe(G)!.state, "stable");
  const before = { a: names(ra.assigned), b: names(rb.assigned) };

  h.log.length = 0;
  const a2 = h.beat({ instanceId: "host-a" }); // the process restarted: no member id
  assert.notEqual(a2.memberId, a.memberId);
  assert.ok(a2.generation > rb.generation);
  assert.deepEqual(names(a2.assigned), before.a, "the new incarnation has them at once");
  assert.equal(a2.pending, 0);
  assert.ok(h.log.every((line) => !line.includes(b.memberId)), h.log.join("; "));
  assert.ok(h.log.every((line) => !line.includes("release") || line.endsWith("fenced")));
  rb = h.beat({ memberId: b.memberId, instanceId: "host-b", owned: rb.assigned });
  assert.deepEqual(names(rb.assigned), before.b);
  assert.equal(rb.heartbeatIntervalMs, h.c.opts.heartbeatIntervalMs, "nothing to revoke");
  assert.equal(h.c.describe(G)!.members.length, 2);
  assert.equal(h.c.describe(G)!.state, "stable");

  assertCode(
    () => h.beat({ memberId: a.memberId, instanceId: "host-a", owned: ra.assigned }),
    ErrorCode.FENCED_INSTANCE,
  );
  assertCode(() => h.c.leave(G, a.memberId), ErrorCode.FENCED_INSTANCE);
});

Deno.test("GroupCoordinator: more partitions start a new generation that assigns them", () => {
  const h = new Harness({ t: 2, u: 1 });
  const a = h.beat({ topics: [{ name: "t" }, { name: "u" }] });
  const b = h.beat({ topics: [{ name: "t" }, { name: "u" }] });
  let ra = h.beat({
    memberId: a.memberId,
    topics: [{ name: "t" }, { name: "u" }],
    owned: a.assigned,
  });
  ra = h.beat({ memberId: a.memberId, topics: [{ name: "t" }, { name: "u" }], owned: ra.assigned });
  let rb = h.beat({ memberId: b.memberId, topics: [{ name: "t" }, { name: "u" }] });
  const gen = rb.generation;
  h.partitions.set("t", 5);
  ra = h.beat({ memberId: a.memberId, topics: [{ name: "t" }, { name: "u" }], owned: ra.assigned });
  assert.equal(ra.generation, gen + 1);
  rb = h.beat({ memberId: b.memberId, topics: [{ name: "t" }, { name: "u" }], owned: rb.assigned });
  assert.equal(rb.generation, gen + 1);
  const all = [...names(ra.assigned), ...names(rb.assigned)].sort();
  assert.deepEqual(all, ["t/0", "t/1", "t/2", "t/3", "t/4", "u/0"]);
  assert.ok(Math.abs(ra.assigned.length - rb.assigned.length) <= 1);
  assert.equal(h.c.describe(G)!.state, "stable");
});

Deno.test("GroupCoordinator: a changed subscription starts a new generation and moves that topic's partitions", () => {
  const h = new Harness({ t: 2, u: 2 });
  const a = h.beat({ topics: [{ name: "t" }, { name: "u" }] });
  const ra = h.beat({ memberId: a.memberId, topics: [{ name: "t" }], owned: a.assigned });
  assert.equal(ra.generation, a.generation + 1);
  assert.deepEqual(names(ra.assigned), ["t/0", "t/1"]);
  assert.equal(ra.heartbeatIntervalMs, h.c.opts.reconcileIntervalMs);
  assert.deepEqual(h.ownedBy(a.memberId), ["t/0", "t/1", "u/0", "u/1"], "until it says so");
  h.beat({ memberId: a.memberId, topics: [{ name: "t" }], owned: ra.assigned });
  assert.deepEqual(h.ownedBy(a.memberId), ["t/0", "t/1"]);
  const b = h.beat({ topics: [{ name: "u" }] });
  assert.deepEqual(names(b.assigned), ["u/0", "u/1"]);
});

Deno.test("GroupCoordinator: the group uses the first member's assignor; a member without one gets sticky", () => {
  const h = new Harness({ t: 3 });
  const a = h.beat({ assignor: "range" }, "x");
  h.beat({ assignor: "roundrobin" });
  assert.equal(h.c.describe(G)!.assignor, "range");
  h.c.leave(G, a.memberId);
  const other = h.beat({ group: "other" });
  assert.equal(h.c.describe("other")!.assignor, "sticky");
  assert.equal(other.assigned.length, 3);
});

Deno.test("GroupCoordinator.heartbeat() refuses invalid requests with INVALID_REQUEST", () => {
  const h = new Harness({ t: 1 }, { sessionTimeoutMsMin: 1000, sessionTimeoutMsMax: 60_000 });
  for (const group of ["", "..", ".", "a/b", "a b", "x".repeat(201), "ü"]) {
    assertCode(() => h.beat({ group }), ErrorCode.INVALID_REQUEST, /Invalid group name/);
  }
  h.beat({ group: "x".repeat(200) });
  assertCode(() => h.beat({ sessionTimeoutMs: 999 }), ErrorCode.INVALID_REQUEST, /999/);
  assertCode(() => h.beat({ sessionTimeoutMs: 60_001 }), ErrorCode.INVALID_REQUEST, /60001/);
  assertCode(() => h.beat({ assignor: "cooperative" }), ErrorCode.INVALID_REQUEST, /sticky/);
  assertCode(() => h.beat({ topics: [] }), ErrorCode.INVALID_REQUEST, /topics/);
  assert.equal(h.c.isEmpty(G), true, "no refused request joined");
});

Deno.test("GroupCoordinator enforces membersPerGroupMax, topicsPerMemberMax and groupsMax with LIMIT_EXCEEDED", () => {
  const h = new Harness({ t: 1 }, { membersPerGroupMax: 2, groupsMax: 2, topicsPerMemberMax: 2 });
  const a = h.beat({ instanceId: "s" });
  h.beat({});
  assertCode(() => h.beat({}), ErrorCode.LIMIT_EXCEEDED, /limit/);
  h.beat({ instanceId: "s" }); // a static member's restart replaces, it does not add
  assertCode(
    () => h.beat({ topics: [{ name: "t" }, { name: "u" }, { name: "v" }] }),
    ErrorCode.INVALID_REQUEST,
  );
  h.beat({ group: "second" });
  assertCode(() => h.beat({ group: "third" }), ErrorCode.LIMIT_EXCEEDED, /Group limit/);
  // A group emptied and joined again counts like a new one.
  const third = new Harness({ t: 1 }, { groupsMax: 1 });
  const x = third.beat({ group: "x" });
  third.c.leave("x", x.memberId);
  third.beat({ group: "y" });
  assertCode(() => third.beat({ group: "x" }), ErrorCode.LIMIT_EXCEEDED, /Group limit/);
  assertCode(() => h.beat({ memberId: a.memberId }), ErrorCode.FENCED_INSTANCE);
});

// --- Randomized model --------------------------------------------------------------------------

/** One consumer process as the model sees it. */
interface Client {
  memberId: string;
  instanceId: string;
  topics: string[];
  /** What it consumes now: what it was granted, plus revoked partitions it is slow to drop. */
  held: Set<string>;
  /** Revoked partitions still held → heartbeats left before it drops them. */
  dropping: Map<string, number>;
  generation: number;
  lastBeatMs: number;
  /** False once it left, crashed or went silent (its process no longer consumes anything). */
  up: boolean;
}

const TOPICS = ["t0", "t1", "t2"];
const ROUNDS_TO_SETTLE_MAX = 12;

function modelRun(seed: number, steps: number): void {
  const rnd = new SeededRandom(seed);
  const assignor = rnd.pick(["sticky", "range", "roundrobin"]);
  const h = new Harness({ t0: 4, t1: 3, t2: 1 });
  const clients: Client[] = [];
  let statics = 0;
  const where = (step: number) => `seed ${seed} step ${step} (${assignor})`;

  const beat = (cl: Client, honest: boolean) => {
    const owned = [...cl.held].map(parseTpKey);
    let r: GroupHeartbeatResponse;
    try {
      r = h.beat({
        memberId: cl.memberId,
        instanceId: cl.instanceId,
        assignor,
        topics: cl.topics.map((name) => ({ name })),
        owned,
        generation: cl.generation,
      });
    } catch (err) {
      // Only a member the coordinator forgot (or fenced) is refused; it has already stopped.
      assert.ok(err instanceof GregorError);
      assert.ok(
        err.code === ErrorCode.UNKNOWN_MEMBER || err.code === ErrorCode.FENCED_INSTANCE,
        err.message,
      );
      cl.up = false;
      cl.held.clear();
      return;
    }
    cl.memberId = r.memberId;
    cl.generation = r.generation;
    cl.lastBeatMs = h.nowMs;
    const assigned = new Set(r.assigned.map((tp) => tpKey(tp.topic, tp.partition)));
    for (const k of assigned) {
      cl.held.add(k);
      cl.dropping.delete(k);
    }
    for (const k of [...cl.held]) {
      if (assigned.has(k)) continue;
      const left = cl.dropping.get(k) ?? (honest ? 0 : rnd.int(1, 4));
      if (left === 0) {
        cl.held.delete(k);
        cl.dropping.delete(k);
      } else cl.dropping.set(k, left - 1);
    }
  };

  const check = (step: number) => {
    const d = h.c.describe(G);
    const live = new Set(d?.members.map((m) => m.memberId) ?? []);
    const byEvents = new Map<string, string>();
    for (const [k, id] of h.owners) {
      assert.ok(live.has(id), `${where(step)}: ${k} is owned by ${id}, not a member`);
      byEvents.set(k.slice(k.indexOf("\u0000") + 1), id);
    }
    const byDescribe = new Map<string, string>();
    for (const m of d?.members ?? []) {
      for (const tp of m.assigned) byDescribe.set(tpKey(tp.topic, tp.partition), m.memberId);
    }
    assert.deepEqual(byDescribe, byEvents, `${where(step)}: describe() disagrees with the events`);
    // What every running process consumes, the coordinator has granted to it and to no one else.
    for (const cl of clients) {
      if (!cl.up) continue;
      for (const k of cl.held) {
        assert.equal(
          byEvents.get(k),
          cl.memberId,
          `${where(step)}: ${cl.memberId} consumes ${k} owned by ${byEvents.get(k)}`,
        );
      }
    }
  };

  const join = (instanceId: string) => {
    const cl: Client = {
      memberId: "",
      instanceId,
      topics: rnd.chance(0.7) ? ["t0", "t1"] : TOPICS.filter(() => rnd.chance(0.6)),
      held: new Set(),
      dropping: new Map(),
      generation: -1,
      lastBeatMs: h.nowMs,
      up: true,
    };
    if (cl.topics.length === 0) cl.topics = ["t2"];
    clients.push(cl);
    beat(cl, true);
  };

  for (let step = 0; step < steps; step++) {
    h.nowMs += rnd.int(1, 400);
    const up = clients.filter((c) => c.up);
    const roll = rnd.float();
    if (up.length === 0 || (roll < 0.12 && up.length < 8)) {
      join(rnd.chance(0.3) ? `static-${statics++}` : "");
    } else if (roll < 0.17) {
      const cl = rnd.pick(up);
      cl.up = false; // the application stops consuming first, then leaves
      cl.held.clear();
      h.c.leave(G, cl.memberId);
    } else if (roll < 0.21) {
      rnd.pick(up).up = false; // crashed or cut off: silent until its session expires
    } else if (roll < 0.25) {
      const cl = rnd.pick(up);
      if (cl.instanceId !== "") {
        cl.up = false; // the process dies; a new one with the same instance id takes over
        cl.held.clear();
        join(cl.instanceId);
      }
    } else if (roll < 0.27) {
      const t = rnd.pick(TOPICS);
      if ((h.partitions.get(t) ?? 0) < 8) h.partitions.set(t, (h.partitions.get(t) ?? 0) + 1);
    } else if (roll < 0.29) {
      const cl = rnd.pick(up);
      cl.topics = TOPICS.filter((t) => t === "t0" || rnd.chance(0.5));
      beat(cl, true);
    } else {
      beat(rnd.pick(up), rnd.chance(0.6));
    }
    // Live processes heartbeat well within their session; silent ones do not.
    for (const cl of clients) if (cl.up && h.nowMs - cl.lastBeatMs > SESSION_MS / 2) beat(cl, true);
    h.c.expire(h.nowMs);
    check(step);
  }

  // Everyone left heartbeats honestly, in rounds, until the group settles.
  for (const cl of clients) if (!cl.up) cl.held.clear();
  h.nowMs += SESSION_MS + 1;
  for (const cl of clients) if (cl.up) beat(cl, true);
  h.c.expire(h.nowMs);
  let rounds = 0;
  for (; rounds < ROUNDS_TO_SETTLE_MAX; rounds++) {
    if (h.c.describe(G)?.state !== "reconciling") break;
    h.nowMs += 50;
    for (const cl of clients) if (cl.up) beat(cl, true);
    check(steps + rounds);
  }
  const d = h.c.describe(G)!;
  const up = clients.filter((c) => c.up);
  assert.equal(d.state, up.length === 0 ? "empty" : "stable", `${where(steps)}: did not settle`);
  const subscribed = new Set(up.flatMap((c) => c.topics));
  const expected: string[] = [];
  for (const t of subscribed) {
    for (let p = 0; p < h.partitions.get(t)!; p++) expected.push(tpKey(t, p));
  }
  assert.deepEqual(
    up.flatMap((c) => [...c.held]).sort(),
    expected.sort(),
    `${where(steps)}: every partition of a subscribed topic is consumed by exactly one member`,
  );
  for (const cl of up) {
    for (const k of cl.held) assert.ok(cl.topics.includes(parseTpKey(k).topic));
  }
}

Deno.test("GroupCoordinator model: owners are exclusive and live through churn; the group then settles", () => {
  for (let seed = 1; seed <= 60; seed++) modelRun(seed, 400);
});
