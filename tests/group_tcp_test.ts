// Consumer groups over real loopback TCP: members joining, leaving and crashing, cooperative
// rebalancing, static membership, committed offsets, reset and lag.

import assert from "node:assert/strict";
import {
  type Client,
  connect,
  ErrorCode,
  GregorError,
  type GroupConsumer,
  type ReceivedMessage,
  type TopicPartition,
} from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { type RunningNode, startNode } from "../src/node.ts";

const env = denoEnv();

async function withBroker(body: (node: RunningNode, admin: Client) => Promise<void>) {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-group-" });
  const node = await startNode(env, { port: 0, broker: { dataDir, groupsTickMs: 50 } });
  const admin = await connect({ port: node.addr.port, clientId: "admin" });
  try {
    await body(node, admin);
  } finally {
    await admin.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

async function fill(c: Client, topic: string, partitions: number, perPartition: number) {
  await c.admin.createTopic(topic, { partitions });
  const sends: Promise<number>[] = [];
  for (let p = 0; p < partitions; p++) {
    for (let i = 0; i < perPartition; i++) {
      sends.push(c.publish(topic, { partition: p, value: `p${p}-m${i}` }));
    }
  }
  await Promise.all(sends);
}

/** Resolves the next message, or null if none comes within `ms`. */
async function nextWithin(g: GroupConsumer, ms: number): Promise<ReceivedMessage | null> {
  const timer = new AbortController();
  const timeout = env.clock.sleep(ms, timer.signal).then(() => null, () => null);
  const m = await Promise.race([g.next(), timeout]);
  timer.abort();
  return m;
}

/** Waits until `cond` holds, checking every 20 ms, for at most `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = env.clock.now() + ms;
  while (!cond()) {
    if (env.clock.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await env.clock.sleep(20);
  }
}

function names(tps: TopicPartition[]): string[] {
  return tps.map((tp) => `${tp.topic}/${tp.partition}`).sort();
}

Deno.test("two members share a topic: every message consumed once, offsets committed, lag 0", async () => {
  await withBroker(async (node, admin) => {
    await fill(admin, "orders", 4, 50);
    const clients = await Promise.all(
      [0, 1].map((i) => connect({ port: node.addr.port, clientId: `m${i}` })),
    );
    const members: GroupConsumer[] = [];
    for (const c of clients) {
      members.push(
        await c.groupConsumer("billing", ["orders"], { reset: "earliest", sessionTimeoutMs: 5000 }),
      );
    }
    await until(
      () => members.every((m) => m.assignment().length === 2),
      5000,
      "2 + 2 partitions",
    );
    const seen = new Map<string, number>();
    await Promise.all(members.map(async (m) => {
      for (;;) {
        const msg = await nextWithin(m, 300);
        if (msg === null) break;
        seen.set(msg.text(), (seen.get(msg.text()) ?? 0) + 1);
      }
    }));
    assert.equal(seen.size, 200);
    assert.ok([...seen.values()].every((n) => n === 1), "no message twice without failures");
    for (const m of members) await m.close();
    const d = await admin.admin.describeGroup("billing");
    assert.equal(d.state, "empty");
    assert.deepEqual(
      d.offsets.map((o) => [o.partition, o.offset, o.highWatermark - o.offset]),
      [[0, 50, 0], [1, 50, 0], [2, 50, 0], [3, 50, 0]],
    );
    for (const c of clients) await c.close();
  });
});

Deno.test("a joining member takes only the moved partitions; the others never stop; leave hands back", async () => {
  await withBroker(async (node, admin) => {
    await admin.admin.createTopic("events", { partitions: 6 });
    const a = await connect({ port: node.addr.port, clientId: "a" });
    const b = await connect({ port: node.addr.port, clientId: "b" });
    const revokedFromA: TopicPartition[] = [];
    const ga = await a.groupConsumer("g", ["events"], {
      onRevoked: (tps) => void revokedFromA.push(...tps),
    });
    await until(() => ga.assignment().length === 6, 5000, "a owns all 6");
    const before = names(ga.assignment());
    const gb = await b.groupConsumer("g", ["events"]);
    await until(() => gb.assignment().length === 3, 5000, "b gets 3");
    assert.equal(ga.assignment().length, 3);
    // Cooperative: a gave up exactly the 3 partitions b took, nothing else.
    assert.deepEqual(names(revokedFromA), names(gb.assignment()));
    assert.deepEqual(
      [...names(ga.assignment()), ...names(gb.assignment())].sort(),
      before,
    );
    const d = await admin.admin.describeGroup("g");
    assert.equal(d.members.length, 2);
    assert.equal(d.state, "stable");
    await gb.close();
    await until(() => ga.assignment().length === 6, 5000, "a owns all 6 again");
    await ga.close();
    await a.close();
    await b.close();
  });
});

Deno.test("a crashed member's partitions move after its session times out", async () => {
  await withBroker(async (node, admin) => {
    await fill(admin, "jobs", 2, 10);
    const a = await connect({ port: node.addr.port, clientId: "a" });
    const b = await connect({ port: node.addr.port, clientId: "b" });
    const ga = await a.groupConsumer("workers", ["jobs"], {
      sessionTimeoutMs: 1000,
      reset: "earliest",
    });
    const gb = await b.groupConsumer("workers", ["jobs"], {
      sessionTimeoutMs: 1000,
      reset: "earliest",
    });
    await until(() => ga.assignment().length === 1 && gb.assignment().length === 1, 5000, "1 + 1");
    // b's process dies: its connection goes, no leave is sent.
    b.connection.close();
    const t0 = env.clock.now();
    await until(() => ga.assignment().length === 2, 5000, "a takes over");
    const tookMs = env.clock.now() - t0;
    assert.ok(tookMs >= 700, `moved after ${tookMs} ms, before the 1000 ms session ended`);
    const seen = new Set<string>();
    for (;;) {
      const m = await nextWithin(ga, 300);
      if (m === null) break;
      seen.add(m.text());
    }
    assert.equal(seen.size, 20, "a consumed both partitions");
    await ga.close();
    await a.close();
    await b.close().catch(() => {});
  });
});

Deno.test("static membership: a restart with the same instance id gets the same partitions, nothing else moves", async () => {
  await withBroker(async (node, admin) => {
    await admin.admin.createTopic("s", { partitions: 4 });
    const opts = { sessionTimeoutMs: 10_000 };
    const a = await connect({ port: node.addr.port, clientId: "a" });
    const b1 = await connect({ port: node.addr.port, clientId: "b" });
    const ga = await a.groupConsumer("static", ["s"], { ...opts, instanceId: "worker-a" });
    const gb1 = await b1.groupConsumer("static", ["s"], { ...opts, instanceId: "worker-b" });
    await until(() => ga.assignment().length === 2 && gb1.assignment().length === 2, 5000, "2+2");
    const aHad = names(ga.assignment());
    const bHad = names(gb1.assignment());
    const oldId = gb1.memberId;
    await gb1.close(); // a static member does not leave
    await b1.close();
    assert.deepEqual(names(ga.assignment()), aHad);
    const b2 = await connect({ port: node.addr.port, clientId: "b" });
    const gb2 = await b2.groupConsumer("static", ["s"], { ...opts, instanceId: "worker-b" });
    await until(() => gb2.assignment().length === 2, 5000, "b back");
    assert.deepEqual(names(gb2.assignment()), bHad);
    assert.deepEqual(names(ga.assignment()), aHad, "a kept its partitions throughout");
    assert.notEqual(gb2.memberId, oldId);
    // The old member id is fenced.
    await assert.rejects(
      a.connection.request("OFFSET_COMMIT", {
        group: "static",
        memberId: oldId,
        generation: gb2.generation,
        offsets: [],
      }),
      (e) => e instanceof GregorError && e.code === ErrorCode.FENCED_INSTANCE,
    );
    await ga.close();
    await gb2.close();
    await a.close();
    await b2.close();
  });
});

Deno.test("offsets: commit resumes a new member; reset needs an empty group; lag per partition", async () => {
  await withBroker(async (node, admin) => {
    await fill(admin, "log", 1, 10);
    const c = await connect({ port: node.addr.port, clientId: "c" });
    const g = await c.groupConsumer("readers", ["log"], { reset: "earliest", autoCommit: false });
    const got: number[] = [];
    for (let i = 0; i < 6; i++) got.push((await g.next())!.offset);
    await g.commit(); // everything handed out so far: offsets 0..5
    assert.deepEqual(await admin.admin.groupOffsets("readers"), [
      { topic: "log", partition: 0, offset: 6, highWatermark: 10 },
    ]);
    await assert.rejects(
      admin.admin.resetOffsets("readers", "log", "earliest"),
      (e) => e instanceof GregorError && e.code === ErrorCode.GROUP_NOT_EMPTY,
    );
    await g.close();
    const d = await admin.admin.describeGroup("readers");
    assert.equal(d.offsets[0]!.highWatermark - d.offsets[0]!.offset, 4, "lag 4");
    // A new member resumes at the committed offset.
    const g2 = await c.groupConsumer("readers", ["log"], { autoCommit: false });
    assert.equal((await g2.next())!.offset, 6);
    await g2.close();
    // Reset: dry run changes nothing; then to an offset, then to the start.
    const dry = await admin.admin.resetOffsets("readers", "log", { offset: 2 }, { dryRun: true });
    assert.equal(dry[0]!.offset, 2);
    assert.equal((await admin.admin.groupOffsets("readers"))[0]!.offset, 6);
    await admin.admin.resetOffsets("readers", "log", "earliest");
    assert.equal((await admin.admin.groupOffsets("readers"))[0]!.offset, 0);
    const g3 = await c.groupConsumer("readers", ["log"]);
    assert.equal((await g3.next())!.offset, 0);
    await g3.close();
    // A commit may not move backwards, nor past the end.
    const g4 = await c.groupConsumer("readers", ["log"], { autoCommit: false });
    await g4.next();
    await assert.rejects(
      g4.commit([{ topic: "log", partition: 0, offset: 11 }]),
      (e) => e instanceof GregorError && e.code === ErrorCode.INVALID_OFFSET,
    );
    await g4.commit([{ topic: "log", partition: 0, offset: 7 }]);
    await assert.rejects(
      g4.commit([{ topic: "log", partition: 0, offset: 3 }]),
      (e) => e instanceof GregorError && e.code === ErrorCode.INVALID_OFFSET,
    );
    await g4.close();
    const groups = await admin.admin.listGroups();
    assert.deepEqual(groups.map((x) => [x.group, x.state]), [["readers", "empty"]]);
    await c.close();
  });
});

Deno.test("committed offsets survive a broker restart", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-group-" });
  try {
    let node = await startNode(env, { port: 0, broker: { dataDir } });
    let c = await connect({ port: node.addr.port });
    await fill(c, "d", 1, 3);
    const g = await c.groupConsumer("keep", ["d"], { reset: "earliest", autoCommit: false });
    await g.next();
    await g.next();
    await g.commit();
    await g.close();
    await c.close();
    await node.close();
    node = await startNode(env, { port: 0, broker: { dataDir } });
    c = await connect({ port: node.addr.port });
    assert.equal((await c.admin.groupOffsets("keep"))[0]!.offset, 2);
    await c.close();
    await node.close();
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
