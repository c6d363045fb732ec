import assert from "node:assert/strict";
import {
  convergenceGaps,
  convergeRoundsMax,
  DEAD_ROUNDS_MAX,
  gossipOptions,
  knownAliveByAll,
  NODES_MAX,
  type NodeTruth,
  type NodeView,
  regressions,
  type ViewEntry,
  viewSafetyViolations,
} from "./gossip_scenario.ts";

function entry(id: string, state = "alive", incarnation = 1, heartbeat = 5): ViewEntry {
  return { id, host: `host-${id}`, clusterPort: 7072, state, incarnation, heartbeat };
}

function view(id: string, members: ViewEntry[]): NodeView {
  return { name: `node-${id}`, id, members };
}

const truth = new Map<string, NodeTruth>(
  ["a", "b", "c"].map((
    id,
  ) => [id, { name: `node-${id}`, host: `host-${id}`, clusterPort: 7072, incarnationMax: 3 }]),
);

Deno.test("convergenceGaps is empty when every live view agrees and the down node is dead", () => {
  const members = [entry("a"), entry("b"), entry("c", "dead")];
  const views = [view("a", members), view("b", members)];
  assert.deepEqual(convergenceGaps(views, new Set(["c"]), { strict: true }), []);
});

Deno.test("convergenceGaps reports an unknown live node, a suspected one and a down one alive", () => {
  const views = [
    view("a", [entry("a"), entry("c")]),
    view("b", [entry("a", "suspect"), entry("b"), entry("c")]),
  ];
  const gaps = convergenceGaps(views, new Set(["c"]), { strict: false });
  assert.ok(gaps.includes("node-a does not know node-b"), gaps.join("\n"));
  assert.ok(gaps.includes("node-b sees live node-a as suspect"), gaps.join("\n"));
  assert.ok(gaps.includes("node-a sees down c as alive"), gaps.join("\n"));
});

Deno.test("convergenceGaps in strict mode demands the same members in the same states", () => {
  const views = [
    view("a", [entry("a"), entry("b"), entry("c", "suspect")]),
    view("b", [entry("a"), entry("b"), entry("c", "dead")]),
  ];
  assert.deepEqual(convergenceGaps(views, new Set(["c"]), { strict: false }), []);
  assert.deepEqual(convergenceGaps(views, new Set(["c"]), { strict: true }), [
    "node-a and node-b disagree on c: suspect vs dead or absent",
  ]);
  // For a down node, forgotten (or never introduced) is as good as dead; not for a live one.
  const forgotten = [view("a", [entry("a"), entry("b")]), views[1]!];
  assert.deepEqual(convergenceGaps(forgotten, new Set(["c"]), { strict: true }), []);
  assert.deepEqual(convergenceGaps(forgotten, new Set(), { strict: true }), [
    "node-a and node-b disagree on c: absent vs dead",
  ]);
});

Deno.test("knownAliveByAll needs the node alive in every view", () => {
  const views = [view("a", [entry("a"), entry("b")]), view("b", [entry("a"), entry("b")])];
  assert.equal(knownAliveByAll(views, "b"), true);
  assert.equal(knownAliveByAll(views, "c"), false);
  assert.equal(knownAliveByAll([...views, view("c", [entry("b", "suspect")])], "b"), false);
});

Deno.test("viewSafetyViolations accepts honest views", () => {
  const views = [view("a", [entry("a"), entry("b", "dead", 3)]), view("b", [entry("b")])];
  assert.deepEqual(viewSafetyViolations(views, truth), []);
});

Deno.test("viewSafetyViolations reports a wrong address, an invented id, a future incarnation and a self not alive", () => {
  const wrongHost = { ...entry("b"), host: "rogue" };
  const views = [
    view("a", [entry("a"), wrongHost, entry("z"), entry("c", "alive", 4)]),
    view("b", [entry("b", "suspect")]),
  ];
  assert.deepEqual(viewSafetyViolations(views, truth), [
    "node-a lists node-b at rogue:7072, not host-b:7072",
    "node-a lists z at host-z:7072, which is no node's id",
    "node-a holds incarnation 4 of node-c, which announced at most 3",
    "node-b sees itself as suspect",
  ]);
  assert.deepEqual(viewSafetyViolations([view("c", [entry("a")])], truth), [
    "node-c lists itself 0 times",
  ]);
});

Deno.test("regressions reports news going backwards and nothing else", () => {
  const prev = new Map<string, [number, number]>();
  assert.deepEqual(regressions(prev, [entry("a", "alive", 1, 5), entry("b", "alive", 2, 9)]), []);
  // A higher incarnation with a reset heartbeat is newer; a forgotten member may come back.
  assert.deepEqual(regressions(prev, [entry("a", "alive", 2, 0)]), []);
  assert.deepEqual(regressions(prev, [entry("a", "alive", 2, 1), entry("b", "alive", 1, 99)]), []);
  const back = regressions(prev, [entry("a", "alive", 2, 0), entry("b", "alive", 1, 98)]);
  assert.deepEqual(back.map((m) => m.id), ["a", "b"]);
});

Deno.test("round bounds grow with log2 of the cluster size", () => {
  assert.ok(convergeRoundsMax(16) > convergeRoundsMax(4));
  assert.equal(
    convergeRoundsMax(16) - convergeRoundsMax(4),
    convergeRoundsMax(4) - convergeRoundsMax(1),
  );
  assert.ok(DEAD_ROUNDS_MAX > convergeRoundsMax(NODES_MAX));
});

Deno.test("gossipOptions derives from the seed, applies overrides and rejects nonsense", () => {
  assert.deepEqual(gossipOptions(7), gossipOptions(7));
  const o = gossipOptions(7, { nodes: 5 });
  assert.equal(o.nodes, 5);
  assert.equal(o.safetyMs, gossipOptions(7).safetyMs);
  for (let seed = 0; seed < 200; seed++) {
    const x = gossipOptions(seed);
    assert.ok(x.nodes >= 3 && x.nodes <= 15);
    assert.ok(x.lateJoiners <= x.nodes - 2);
  }
  assert.throws(() => gossipOptions(1, { nodes: 2 }), /--nodes must be in 3\.\.64, got 2/);
  assert.throws(() => gossipOptions(1, { nodes: 4, lateJoiners: 3 }), /--lateJoiners/);
  assert.throws(() => gossipOptions(1, { keepDown: 2 }), /--keepDown must be 0 or 1/);
});
