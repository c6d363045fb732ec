import assert from "node:assert/strict";
import { Group, HEARTBEAT_MS } from "./_testing.ts";
import { inSync, ISR_HEARD_MS_MAX, ISR_LAG_ENTRIES_MAX } from "./isr.ts";

const at = { lastIndex: 1_000, nowMs: 50_000 };

Deno.test("inSync() holds a follower that answered lately and trails by at most ISR_LAG_ENTRIES_MAX", () => {
  assert.equal(inSync({ match: 1_000, heardMs: 50_000 }, at), true);
  assert.equal(inSync({ match: 1_000 - ISR_LAG_ENTRIES_MAX, heardMs: 50_000 }, at), true);
  assert.equal(inSync({ match: 1_000, heardMs: 50_000 - ISR_HEARD_MS_MAX }, at), true);
});

Deno.test("inSync() drops a follower one entry further behind than ISR_LAG_ENTRIES_MAX", () => {
  assert.equal(inSync({ match: 1_000 - ISR_LAG_ENTRIES_MAX - 1, heardMs: 50_000 }, at), false);
  assert.equal(inSync({ match: 0, heardMs: 50_000 }, at), false);
});

Deno.test("inSync() drops a caught-up follower silent for longer than ISR_HEARD_MS_MAX", () => {
  assert.equal(inSync({ match: 1_000, heardMs: 50_000 - ISR_HEARD_MS_MAX - 1 }, at), false);
  assert.equal(inSync({ match: 1_000, heardMs: null }, at), false);
});

Deno.test("RaftNode.inSyncVoters() drops a cut-off follower within ISR_HEARD_MS_MAX and takes it back", () => {
  const g = new Group(["a", "b", "c"]);
  const a = g.elect("a");
  g.run(HEARTBEAT_MS * 3);
  assert.deepEqual(a.inSyncVoters()?.sort(), ["a", "b", "c"]);
  assert.equal(g.node("b").inSyncVoters(), null, "only a leader knows");
  g.isolate("c");
  g.run(ISR_HEARD_MS_MAX + HEARTBEAT_MS * 2);
  assert.equal(a.role, "leader");
  assert.deepEqual(a.inSyncVoters()?.sort(), ["a", "b"]);
  g.cut.clear();
  g.run(HEARTBEAT_MS * 3);
  assert.deepEqual(a.inSyncVoters()?.sort(), ["a", "b", "c"]);
});
