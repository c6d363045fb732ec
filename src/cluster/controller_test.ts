import assert from "node:assert/strict";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { tpKey } from "../broker/groups/assignors.ts";
import { encodeCommand, type MetaCommand, MetaState } from "./controller.ts";

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
