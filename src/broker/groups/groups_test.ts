import assert from "node:assert/strict";
import type { Env } from "../../io/types.ts";
import { ErrorCode, GregorError } from "../../protocol/errors.ts";
import {
  type GroupHeartbeatRequest,
  type GroupHeartbeatResponse,
  type ResetOffsetsRequest,
  Start,
} from "../../protocol/messages.ts";
import type { Log } from "../../storage/mod.ts";
import { calmDisk } from "../../../sim/disk.ts";
import { runOnNode } from "../../../sim/harness.ts";
import type { SimNode } from "../../../sim/node.ts";
import { Simulation } from "../../../sim/simulation.ts";
import { COMMIT_OFFSETS_MAX, Groups, type GroupTopics, RESET_SETTLE_MS } from "./groups.ts";

const G = "billing";

/** A partition's log as groups see it: its range and a timestamp index, nothing stored. */
class RangeLog implements Log {
  logStartOffset: number;
  nextOffset: number;
  readonly sizeBytes = 0;
  /** Offset of the first record at or after each timestamp, ascending. */
  times: [number, number][] = [];
  /** When set, offsetForTimestamp waits for it (to interleave requests). */
  gate: Promise<void> | null = null;

  constructor(start: number, next: number) {
    this.logStartOffset = start;
    this.nextOffset = next;
  }

  append(): never {
    throw new Error("RangeLog stores nothing");
  }

  read(): never {
    throw new Error("RangeLog stores nothing");
  }

  truncateFrom(): never {
    throw new Error("RangeLog stores nothing");
  }

  resetTo(): never {
    throw new Error("RangeLog stores nothing");
  }

  async offsetForTimestamp(timestampMs: number): Promise<number> {
    if (this.gate !== null) await this.gate;
    return this.times.find(([ts]) => ts >= timestampMs)?.[1] ?? this.nextOffset;
  }

  sync(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

class Topics implements GroupTopics {
  readonly logs = new Map<string, RangeLog[]>();
  endsExact = () => true;

  add(topic: string, ranges: [number, number][]): void {
    this.logs.set(topic, ranges.map(([s, n]) => new RangeLog(s, n)));
  }

  partitionsOf(topic: string): number {
    return this.logs.get(topic)?.length ?? 0;
  }

  log(topic: string, partition: number): RangeLog | null {
    return this.logs.get(topic)?.[partition] ?? null;
  }
}

function onSim<T>(seed: number, body: (env: Env, node: SimNode) => Promise<T>): Promise<T> {
  return runOnNode(new Simulation(seed, { disk: calmDisk() }), "broker", body);
}

function join(groups: Groups, over: Partial<GroupHeartbeatRequest> = {}): GroupHeartbeatResponse {
  return groups.heartbeat({
    group: G,
    memberId: "",
    instanceId: "",
    generation: -1,
    sessionTimeoutMs: 10_000,
    assignor: "",
    topics: [{ name: "t" }],
    owned: [],
    ...over,
  }, "app");
}

async function rejectsWith(p: Promise<unknown>, code: number, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err) => {
    assert.ok(err instanceof GregorError, `expected a GregorError, got ${err}`);
    assert.equal(err.code, code, err.message);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}

function reset(over: Partial<ResetOffsetsRequest>): ResetOffsetsRequest {
  return { group: G, topic: "t", partitions: [], to: Start.earliest, value: 0, dryRun: 0, ...over };
}

/** A group with one member that owns both partitions of t (start 10, ends 100 and 50). */
async function setUp(
  env: Env,
): Promise<{ groups: Groups; topics: Topics; m: GroupHeartbeatResponse }> {
  const topics = new Topics();
  topics.add("t", [[10, 100], [0, 50]]);
  const groups = new Groups(env, "data", topics);
  await groups.load();
  const m = join(groups);
  assert.equal(m.assigned.length, 2);
  return { groups, topics, m };
}

Deno.test("Groups.commit() stores an owner's offsets; fetch() returns them with the end, -1 for none", async () => {
  await onSim(1, async (env) => {
    const { groups, m } = await setUp(env);
    await groups.commit({
      group: G,
      memberId: m.memberId,
      generation: m.generation,
      offsets: [{ topic: "t", partition: 0, offset: 40 }],
    });
    const f = groups.fetch({
      group: G,
      partitions: [{ topic: "t", partition: 0 }, { topic: "t", partition: 1 }, {
        topic: "nope",
        partition: 0,
      }],
    });
    assert.deepEqual(f.offsets, [
      { topic: "t", partition: 0, offset: 40, highWatermark: 100 },
      { topic: "t", partition: 1, offset: -1, highWatermark: 50 },
      { topic: "nope", partition: 0, offset: -1, highWatermark: -1 },
    ]);
    assert.deepEqual(groups.fetch({ group: G, partitions: [] }).offsets, [
      { topic: "t", partition: 0, offset: 40, highWatermark: 100 },
    ]);
    assert.deepEqual(groups.fetch({ group: "idle", partitions: [] }).offsets, []);
    assert.throws(() => groups.fetch({ group: "../x", partitions: [] }), GregorError);
  });
});

Deno.test("Groups.commit() never moves an offset back nor past the partition's end (INVALID_OFFSET)", async () => {
  await onSim(2, async (env) => {
    const { groups, m } = await setUp(env);
    const commit = (partition: number, offset: number) =>
      groups.commit({
        group: G,
        memberId: m.memberId,
        generation: m.generation,
        offsets: [{ topic: "t", partition, offset }],
      });
    await commit(0, 40);
    await rejectsWith(commit(0, 39), ErrorCode.INVALID_OFFSET, /never moves back to 39/);
    await commit(0, 40); // the same offset again is fine
    await commit(0, 100); // the end: everything consumed
    await rejectsWith(commit(0, 101), ErrorCode.INVALID_OFFSET, /outside 0\.\.100/);
    await rejectsWith(commit(1, -1), ErrorCode.INVALID_OFFSET);
    await rejectsWith(commit(1, 1.5), ErrorCode.INVALID_OFFSET);
    // A request with one bad entry stores none of its entries.
    await rejectsWith(
      groups.commit({
        group: G,
        memberId: m.memberId,
        generation: m.generation,
        offsets: [{ topic: "t", partition: 1, offset: 5 }, { topic: "t", partition: 0, offset: 7 }],
      }),
      ErrorCode.INVALID_OFFSET,
    );
    assert.deepEqual(
      groups.fetch({ group: G, partitions: [] }).offsets.map((o) => [o.partition, o.offset]),
      [[0, 100]],
    );
  });
});

Deno.test("Groups in a cluster: commits past a lagging replica's end are taken; resets wait for a new coordinator to settle", async () => {
  await onSim(3, async (env) => {
    const { groups, topics, m } = await setUp(env);
    // The coordinator's replica may lag the leader a consumer read from.
    topics.endsExact = () => false;
    await groups.commit({
      group: G,
      memberId: m.memberId,
      generation: m.generation,
      offsets: [{ topic: "t", partition: 0, offset: 130 }],
    });
    assert.equal(groups.fetch({ group: G, partitions: [] }).offsets[0]!.offset, 130);
    // Taking over as coordinator forgets the members; one may still be consuming unheard of.
    groups.restartCoordinator(1 << 20);
    await rejectsWith(groups.reset(reset({})), ErrorCode.GROUP_NOT_EMPTY, /took over/);
    await env.clock.sleep(RESET_SETTLE_MS);
    await groups.reset(reset({ to: Start.offset, value: 20 }));
    assert.equal(groups.fetch({ group: G, partitions: [] }).offsets[0]!.offset, 20);
  });
});

Deno.test("Groups.commit() is fenced: stale generation, non-owner, unknown member, too many entries", async () => {
  await onSim(3, async (env) => {
    const { groups, m } = await setUp(env);
    const other = join(groups);
    const offsets = [{ topic: "t", partition: 0, offset: 20 }];
    await rejectsWith(
      groups.commit({ group: G, memberId: m.memberId, generation: m.generation - 1, offsets }),
      ErrorCode.STALE_GENERATION,
      /heartbeat first/,
    );
    await rejectsWith(
      groups.commit({ group: G, memberId: other.memberId, generation: other.generation, offsets }),
      ErrorCode.STALE_GENERATION,
      /does not own/,
    );
    await rejectsWith(
      groups.commit({ group: G, memberId: "ghost", generation: other.generation, offsets }),
      ErrorCode.UNKNOWN_MEMBER,
    );
    const many = Array.from(
      { length: COMMIT_OFFSETS_MAX + 1 },
      () => ({ topic: "t", partition: 0, offset: 20 }),
    );
    await rejectsWith(
      groups.commit({
        group: G,
        memberId: m.memberId,
        generation: other.generation,
        offsets: many,
      }),
      ErrorCode.INVALID_REQUEST,
    );
    assert.deepEqual(groups.fetch({ group: G, partitions: [] }).offsets, []);
  });
});

Deno.test("Groups.commit() reports a failed write as STORAGE_ERROR", async () => {
  await onSim(4, async (env, node) => {
    const { groups, m } = await setUp(env);
    node.disk.faults.syncFailProb = 1;
    await rejectsWith(
      groups.commit({
        group: G,
        memberId: m.memberId,
        generation: m.generation,
        offsets: [{ topic: "t", partition: 0, offset: 20 }],
      }),
      ErrorCode.STORAGE_ERROR,
      /Cannot store group offsets/,
    );
  });
});

Deno.test("Groups.reset() needs an empty group (GROUP_NOT_EMPTY), then may move offsets back", async () => {
  await onSim(5, async (env) => {
    const { groups, m } = await setUp(env);
    await groups.commit({
      group: G,
      memberId: m.memberId,
      generation: m.generation,
      offsets: [{ topic: "t", partition: 0, offset: 90 }],
    });
    await rejectsWith(groups.reset(reset({})), ErrorCode.GROUP_NOT_EMPTY, /live members/);
    groups.leave({ group: G, memberId: m.memberId });
    const r = await groups.reset(reset({ to: Start.earliest }));
    assert.deepEqual(r.offsets, [
      { topic: "t", partition: 0, offset: 10, highWatermark: 100 },
      { topic: "t", partition: 1, offset: 0, highWatermark: 50 },
    ]);
    assert.deepEqual(
      groups.fetch({ group: G, partitions: [] }).offsets.map((o) => o.offset),
      [10, 0],
    );
  });
});

Deno.test("Groups.reset() to latest, to a clipped offset, to a timestamp, on named partitions", async () => {
  await onSim(6, async (env) => {
    const topics = new Topics();
    topics.add("t", [[10, 100], [0, 50]]);
    topics.log("t", 0)!.times = [[1000, 10], [2000, 60]];
    const groups = new Groups(env, "data", topics);
    const at = async (over: Partial<ResetOffsetsRequest>) =>
      (await groups.reset(reset(over))).offsets.map((o) => o.offset);
    assert.deepEqual(await at({ to: Start.latest }), [100, 50]);
    assert.deepEqual(await at({ to: Start.offset, value: 3 }), [10, 3]);
    assert.deepEqual(await at({ to: Start.offset, value: 70 }), [70, 50]);
    assert.deepEqual(await at({ to: Start.offset, value: -5 }), [10, 0]);
    assert.deepEqual(await at({ to: Start.timestamp, value: 1500 }), [60, 50]);
    assert.deepEqual(await at({ to: Start.timestamp, value: 5000 }), [100, 50]);
    assert.deepEqual(await at({ to: Start.latest, partitions: [{ partition: 1 }] }), [50]);
    assert.deepEqual(
      groups.fetch({ group: G, partitions: [] }).offsets.map((o) => o.offset),
      [100, 50],
    );
    await rejectsWith(groups.reset(reset({ topic: "nope" })), ErrorCode.UNKNOWN_TOPIC);
    await rejectsWith(
      groups.reset(reset({ partitions: [{ partition: 2 }] })),
      ErrorCode.UNKNOWN_PARTITION,
      /has no partition 2/,
    );
    await rejectsWith(groups.reset(reset({ to: 9 })), ErrorCode.INVALID_REQUEST);
    await rejectsWith(groups.reset(reset({ group: "" })), ErrorCode.INVALID_REQUEST);
  });
});

Deno.test("Groups.reset() with dryRun answers what it would set and changes nothing", async () => {
  await onSim(7, async (env) => {
    const topics = new Topics();
    topics.add("t", [[10, 100], [0, 50]]);
    const groups = new Groups(env, "data", topics);
    await groups.reset(reset({ to: Start.offset, value: 20 }));
    const r = await groups.reset(reset({ to: Start.latest, dryRun: 1 }));
    assert.deepEqual(r.offsets.map((o) => o.offset), [100, 50]);
    assert.deepEqual(
      groups.fetch({ group: G, partitions: [] }).offsets.map((o) => o.offset),
      [20, 20],
    );
    const dry = await groups.reset(reset({ group: "fresh", dryRun: 1 }));
    assert.equal(dry.offsets.length, 2);
    assert.deepEqual(groups.list().groups.map((g) => g.group), [G]);
  });
});

Deno.test("Groups.reset() refuses to commit if a member joined while it looked up timestamps", async () => {
  await onSim(8, async (env) => {
    const topics = new Topics();
    topics.add("t", [[0, 100]]);
    const log = topics.log("t", 0)!;
    let open = () => {};
    log.gate = new Promise<void>((r) => (open = r));
    const groups = new Groups(env, "data", topics);
    const pending = groups.reset(reset({ to: Start.timestamp, value: 0 }));
    const m = join(groups);
    open();
    await rejectsWith(pending, ErrorCode.GROUP_NOT_EMPTY);
    assert.deepEqual(groups.fetch({ group: G, partitions: [] }).offsets, []);
    assert.equal(m.assigned.length, 1);
  });
});

Deno.test("Groups.list() and describe() show live groups, and groups that only have offsets as empty", async () => {
  await onSim(9, async (env) => {
    const { groups, m } = await setUp(env);
    await groups.commit({
      group: G,
      memberId: m.memberId,
      generation: m.generation,
      offsets: [{ topic: "t", partition: 1, offset: 30 }],
    });
    await groups.reset(reset({ group: "archive", to: Start.latest }));
    assert.deepEqual(groups.list().groups, [
      { group: "archive", state: "empty", members: 0, generation: 0 },
      { group: G, state: "stable", members: 1, generation: 1 },
    ]);
    const d = groups.describe(G);
    assert.equal(d.state, "stable");
    assert.equal(d.assignor, "sticky");
    assert.equal(d.members.length, 1);
    assert.equal(d.members[0]!.memberId, m.memberId);
    assert.equal(d.members[0]!.assigned.length, 2);
    // Lag is the end minus the committed offset.
    assert.deepEqual(d.offsets, [{ topic: "t", partition: 1, offset: 30, highWatermark: 50 }]);
    const a = groups.describe("archive");
    assert.equal(a.state, "empty");
    assert.deepEqual(a.members, []);
    assert.deepEqual(a.offsets.map((o) => o.highWatermark - o.offset), [0, 0]);
    assert.throws(() => groups.describe("unknown"), /does not exist/);
  });
});

Deno.test("Groups.load() brings back what an earlier instance committed", async () => {
  await onSim(10, async (env) => {
    const { groups, topics, m } = await setUp(env);
    await groups.commit({
      group: G,
      memberId: m.memberId,
      generation: m.generation,
      offsets: [{ topic: "t", partition: 0, offset: 77 }],
    });
    const restarted = new Groups(env, "data", topics);
    await restarted.load();
    assert.deepEqual(restarted.fetch({ group: G, partitions: [] }).offsets, [
      { topic: "t", partition: 0, offset: 77, highWatermark: 100 },
    ]);
    assert.deepEqual(restarted.list().groups.map((g) => [g.group, g.state]), [[G, "empty"]]);
  });
});
