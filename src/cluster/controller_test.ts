import assert from "node:assert/strict";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { tpKey } from "../broker/groups/assignors.ts";
import { durableKey } from "../broker/subscription.ts";
import {
  encodeCommand,
  META_DURABLES_MAX,
  type MetaCommand,
  MetaState,
  reassignProblem,
  type TopicMeta,
} from "./controller.ts";

let index = 0;
function apply(state: MetaState, c: MetaCommand): unknown {
  return state.apply({ index: ++index, term: 1, kind: "normal", data: encodeCommand(c) });
}

function offsetsOf(state: MetaState, group: string): [string, number][] {
  return [...(state.offsets.get(group) ?? [])].sort();
}

const A0 = tpKey("a", 0);
const A1 = tpKey("a", 1);
const B0 = tpKey("b", 0);

Deno.test("MetaState: a commit never moves an offset back; a reset sets it as given", () => {
  const s = new MetaState();
  apply(s, { op: "commitOffsets", group: "g", offsets: [[A0, 10], [A1, 4]] });
  // A commit that lost a race with a newer one (e.g. from a deposed coordinator) keeps the larger.
  apply(s, { op: "commitOffsets", group: "g", offsets: [[A0, 7], [A1, 9]] });
  assert.deepEqual(offsetsOf(s, "g"), [[A0, 10], [A1, 9]]);
  apply(s, { op: "commitOffsets", group: "g", offsets: [[A0, 2]], reset: true });
  assert.deepEqual(offsetsOf(s, "g"), [[A0, 2], [A1, 9]]);
});

Deno.test("MetaState: deleting a topic drops its offsets from every group", () => {
  const s = new MetaState();
  for (const name of ["a", "b"]) {
    apply(s, { op: "createTopic", topic: { name, configs: {}, replicas: [["n1"], ["n1"]] } });
  }
  apply(s, { op: "commitOffsets", group: "g", offsets: [[A0, 1], [B0, 2]] });
  apply(s, { op: "commitOffsets", group: "h", offsets: [[A1, 3]] });
  apply(s, { op: "deleteTopic", name: "a" });
  assert.deepEqual(offsetsOf(s, "g"), [[B0, 2]]);
  assert.equal(s.offsets.has("h"), false, "a group left with no offsets is gone");
});

Deno.test("MetaState: offsets travel in the snapshot image", () => {
  const s = new MetaState();
  apply(s, { op: "allocateProducerIds", count: 5 });
  apply(s, { op: "commitOffsets", group: "g", offsets: [[A0, 10], [B0, 3]] });
  const image = s.image();
  const t = new MetaState();
  t.restore({ index: index, term: 1, voters: ["n1"], learners: [], data: image });
  assert.deepEqual(offsetsOf(t, "g"), offsetsOf(s, "g"));
  assert.equal(t.nextProducerId, 5);
  // An image from before offsets were replicated restores with none.
  const old = new TextEncoder().encode(JSON.stringify({ topics: [], nextProducerId: 7 }));
  t.restore({ index: index, term: 1, voters: ["n1"], learners: [], data: old });
  assert.equal(t.offsets.size, 0);
  assert.equal(t.nextProducerId, 7);
});

Deno.test("MetaState: a group is refused past its offset limit, with nothing applied", () => {
  const s = new MetaState();
  const many: [string, number][] = Array.from({ length: 100_000 }, (_, i) => [tpKey("t", i), 1]);
  apply(s, { op: "commitOffsets", group: "g", offsets: many });
  assert.throws(
    () => apply(s, { op: "commitOffsets", group: "g", offsets: [[A0, 1], [tpKey("t", 0), 5]] }),
    (err: unknown) => err instanceof GregorError && err.code === ErrorCode.LIMIT_EXCEEDED,
  );
  assert.equal(s.offsets.get("g")!.get(tpKey("t", 0)), 1, "the refused entry changed nothing");
  // Offsets the group already holds can still move.
  apply(s, { op: "commitOffsets", group: "g", offsets: [[tpKey("t", 0), 5]] });
  assert.equal(s.offsets.get("g")!.get(tpKey("t", 0)), 5);
});

Deno.test("MetaState: a barrier changes nothing and tells no one", () => {
  const s = new MetaState();
  apply(s, { op: "commitOffsets", group: "g", offsets: [[A0, 3]] });
  const before = new TextDecoder().decode(s.image());
  let told = 0;
  s.onChange = () => void told++;
  assert.equal(apply(s, { op: "barrier" }), undefined);
  assert.equal(new TextDecoder().decode(s.image()), before);
  assert.equal(told, 0);
});

/** Creates topic `name` with one partition; returns its incarnation. */
function create(s: MetaState, name: string): number {
  apply(s, { op: "createTopic", topic: { name, configs: {}, replicas: [["n1"]] } });
  return s.topics.get(name)!.incarnation!;
}

const DA = durableKey("a", 0, "audit");
const DB = durableKey("b", 0, "audit");

Deno.test("MetaState: a durable subscription's acked offset never moves back", () => {
  const s = new MetaState();
  const a = create(s, "a");
  assert.equal(apply(s, { op: "commitDurables", offsets: [[DA, 40, a]] }), 0);
  // Acks forwarded from two nodes (or a retry of an older commit) may apply out of order.
  apply(s, { op: "commitDurables", offsets: [[DA, 25, a]] });
  assert.equal(s.durables.get(DA), 40);
  apply(s, { op: "commitDurables", offsets: [[DA, 41, a]] });
  assert.equal(s.durables.get(DA), 41);
});

Deno.test("MetaState: durable acks of a deleted topic go with it and never reach its successor", () => {
  const s = new MetaState();
  const first = create(s, "a");
  const b = create(s, "b");
  apply(s, { op: "commitDurables", offsets: [[DA, 90, first], [DB, 7, b]] });
  apply(s, { op: "deleteTopic", name: "a" });
  assert.deepEqual([...s.durables], [[DB, 7]]);
  // Acks taken on the first "a", committed late (after it was deleted and created again).
  const second = create(s, "a");
  apply(s, { op: "commitDurables", offsets: [[DA, 95, first]] });
  assert.equal(s.durables.has(DA), false, "an ack of the deleted topic reached the new one");
  apply(s, { op: "commitDurables", offsets: [[DA, 3, second], ["no-separators", 1, second]] });
  assert.deepEqual([...s.durables].sort(), [[DA, 3], [DB, 7]]);
});

Deno.test("MetaState: durable offsets travel in the snapshot image; older images have none", () => {
  const s = new MetaState();
  const a = create(s, "a");
  apply(s, { op: "commitDurables", offsets: [[DA, 12, a]] });
  const t = new MetaState();
  t.restore({ index, term: 1, voters: ["n1"], learners: [], data: s.image() });
  assert.deepEqual([...t.durables], [[DA, 12]]);
  const old = new TextEncoder().encode(JSON.stringify({ topics: [], nextProducerId: 0 }));
  t.restore({ index, term: 1, voters: ["n1"], learners: [], data: old });
  assert.equal(t.durables.size, 0);
});

Deno.test("MetaState: new durable subscriptions past the limit are refused, others still move", () => {
  const s = new MetaState();
  const a = create(s, "a");
  const many: [string, number, number][] = Array.from(
    { length: META_DURABLES_MAX },
    (_, i) => [durableKey("a", 0, `d${i}`), 1, a],
  );
  assert.equal(apply(s, { op: "commitDurables", offsets: many }), 0);
  const refused = apply(s, {
    op: "commitDurables",
    offsets: [[DA, 5, a], [durableKey("a", 0, "d0"), 9, a]],
  });
  assert.equal(refused, 1);
  assert.equal(s.durables.has(DA), false);
  assert.equal(s.durables.get(durableKey("a", 0, "d0")), 9);
  assert.equal(s.durables.size, META_DURABLES_MAX);
});

Deno.test("MetaState: users and ACLs change by command, removals of nothing change nothing, and a snapshot carries them", () => {
  const s = new MetaState();
  let changes = 0;
  s.onChange = () => changes++;
  const user = { salt: "c2FsdA==", iterations: 4096, storedKey: "AA==", serverKey: "AQ==" };
  const acl = {
    principal: "alice",
    resourceType: "topic" as const,
    pattern: "literal" as const,
    name: "orders",
    operation: "produce" as const,
  };
  assert.equal(apply(s, { op: "putUser", name: "alice", user }), 1);
  assert.equal(apply(s, { op: "addAcl", acl }), 1);
  assert.equal(apply(s, { op: "addAcl", acl: { ...acl } }), 0, "the same entry twice");
  assert.equal(apply(s, { op: "removeUser", name: "bob" }), 0);
  assert.equal(changes, 2);
  assert.deepEqual(s.users.get("alice"), user);
  const copy = new MetaState();
  let restored = 0;
  copy.onRestore = () => restored++;
  copy.restore({ index: 9, term: 1, voters: [], learners: [], data: s.image() });
  assert.deepEqual([...copy.users], [["alice", user]]);
  assert.deepEqual(copy.acls, [acl]);
  assert.equal(restored, 1);
  assert.equal(apply(s, { op: "removeAcl", acl }), 1);
  assert.equal(apply(s, { op: "removeUser", name: "alice" }), 1);
  assert.deepEqual([s.users.size, s.acls.length], [0, 0]);
  // An image written before users and ACLs were replicated has neither.
  const old = new TextEncoder().encode(JSON.stringify({ topics: [], nextProducerId: 0 }));
  copy.restore({ index: 10, term: 1, voters: [], learners: [], data: old });
  assert.deepEqual([copy.users.size, copy.acls.length], [0, 0]);
});

Deno.test("reassignProblem() names what is wrong with an operator's move, with the error code to answer", () => {
  const s = new MetaState();
  apply(s, { op: "createTopic", topic: { name: "t", configs: {}, replicas: [["n1", "n2"]] } });
  const live = ["n1", "n2", "n3"];
  const problem = (name: string, partition: number, replicas: string[], alive = live) => {
    const e = reassignProblem(name, s.topics.get(name), { partition, replicas, live: alive });
    return e === null ? null : { code: e.code, message: e.message };
  };
  assert.equal(problem("t", 0, ["n2", "n3"]), null);
  assert.equal(problem("t", 0, ["n2", "n1"]), null, "a new order moves the preferred leader");
  assert.deepEqual(problem("u", 0, ["n2", "n3"]), {
    code: ErrorCode.UNKNOWN_TOPIC,
    message: "Topic u does not exist",
  });
  assert.deepEqual(problem("t", 1, ["n2", "n3"]), {
    code: ErrorCode.UNKNOWN_PARTITION,
    message: "Topic t has no partition 1 (it has 1)",
  });
  assert.deepEqual(problem("t", 0, []), {
    code: ErrorCode.INVALID_REQUEST,
    message: "Cannot reassign t/0: no replicas given",
  });
  assert.deepEqual(problem("t", 0, ["n3", "n3"]), {
    code: ErrorCode.INVALID_REQUEST,
    message: "Cannot reassign t/0: a node is named twice (n3,n3)",
  });
  assert.deepEqual(problem("t", 0, ["n2", "n9"]), {
    code: ErrorCode.INVALID_REQUEST,
    message: "Cannot reassign t/0: n9 is not a live node of the cluster (alive: n1, n2, n3)",
  });
  assert.deepEqual(problem("t", 0, ["n1", "n2", "n3"], ["n1", "n2"]), {
    code: ErrorCode.INVALID_REQUEST,
    message: "Cannot reassign t/0: 3 replicas named but only 2 nodes are alive (n1, n2)",
  });
  assert.deepEqual(problem("t", 0, ["n1", "n2"]), {
    code: ErrorCode.INVALID_REQUEST,
    message: "Cannot reassign t/0: its replicas are n1,n2 already",
  });
  apply(s, { op: "reassignPartition", name: "t", partition: 0, replicas: ["n2", "n3"] });
  assert.deepEqual(problem("t", 0, ["n3", "n1"]), {
    code: ErrorCode.INVALID_REQUEST,
    message: "Cannot reassign t/0: a move to n2,n3 is under way; wait until it is done",
  });
  apply(s, { op: "partitionMoved", name: "t", partition: 0, replicas: ["n2", "n3"] });
  assert.equal(problem("t", 0, ["n3", "n1"]), null, "once the move is done, another may start");
  const t: TopicMeta = s.topics.get("t")!;
  assert.deepEqual(t.replicas, [["n2", "n3"]]);
});
