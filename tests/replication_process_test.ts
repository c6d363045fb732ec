// Replication with real processes: three brokers on 127.0.0.1 replicate a topic with Raft. A
// producer sends with quorum acks while the test SIGKILLs the partition's leader (three times,
// restarting it each time on the same ports and data directory). Every acknowledged message must
// be there afterwards, once, at its acknowledged offset, in order. The failover time — from the
// kill until a surviving node names a new leader, and until a produce is acknowledged again — is
// measured and printed.

import assert from "node:assert/strict";
import type { Client, Producer } from "../src/client/mod.ts";
import {
  clusterFormed,
  clusterTest,
  connectTo,
  createTopicRetrying,
  readAll,
  retry,
  sleep,
  startClusterNode,
} from "./_broker_process.ts";

const TOPIC = "orders";
const KILLS = 3;

/** The leader of TOPIC/0 as `client`'s node sees it ("" if none), or null if it cannot answer. */
async function leaderSeenBy(client: Client): Promise<string | null> {
  try {
    const m = await client.admin.metadata([TOPIC]);
    return m.topics[0]?.partitions[0]?.leader ?? "";
  } catch {
    return null;
  }
}

clusterTest(
  "3 replicating brokers: SIGKILLing the leader 3 times loses no quorum-acknowledged message",
  async ({ root, procs, ports, seeds, clients }) => {
    // The cluster assembles itself; the topic is created once every node is a member (a topic
    // created before a node joined would get fewer replicas) and the metadata group leads.
    await clusterFormed(procs, clients);
    await createTopicRetrying(clients[0]!, TOPIC, { partitions: 1 });
    const replicas = (await clients[0]!.admin.metadata([TOPIC])).topics[0]!.partitions[0]!
      .replicas;
    assert.equal(replicas.length, 3, "the topic has a replica on every node");
    const sent: { value: string; offset: number | null; via: Producer }[] = [];
    let producing = true;
    // The producer talks to every node in turn (each forwards to the leader); it never talks to
    // a node while that node is down, as a client with several bootstrap addresses would.
    const producers: Producer[] = clients.map((c) =>
      c.producer({ acks: "quorum", deliveryTimeoutMs: 60_000 })
    );
    const down = new Set<number>();
    const producer = (async () => {
      let i = 0;
      const inFlight = new Set<Promise<void>>();
      while (producing) {
        const via = [0, 1, 2].find((k) => !down.has((i + k) % 3));
        if (via === undefined) {
          await sleep(20);
          continue;
        }
        const s = {
          value: `m${i}`,
          offset: null as number | null,
          via: producers[(i + via) % 3]!,
        };
        sent.push(s);
        const p: Promise<void> = s.via.send(TOPIC, {
          value: s.value,
          partition: 0,
        }).then((o) => void (s.offset = o), () => {}).finally(() => inFlight.delete(p));
        inFlight.add(p);
        i++;
        if (inFlight.size >= 50) await Promise.race(inFlight);
        await sleep(2);
      }
      await Promise.allSettled([...inFlight]);
    })();

    const failovers: { leaderMs: number; produceMs: number }[] = [];
    for (let kill = 0; kill < KILLS; kill++) {
      await sleep(1500);
      let leader = "";
      for (let tries = 0; tries < 100 && leader === ""; tries++) {
        leader = (await leaderSeenBy(clients[(kill + 1) % 3]!)) ?? "";
        if (leader === "") await sleep(100);
      }
      const victim = procs.findIndex((p) => p.nodeId === leader);
      assert.ok(victim >= 0, `no leader found before kill ${kill + 1}`);
      const ackedBefore = sent.filter((s) => s.offset !== null).length;
      down.add(victim);
      const killedAt = Date.now();
      procs[victim]!.child.kill("SIGKILL");
      await procs[victim]!.child.status;
      // Failover: a surviving node names another leader; a produce is acknowledged again.
      const survivor = clients[(victim + 1) % 3]!;
      let leaderMs = -1;
      let produceMs = -1;
      while (Date.now() - killedAt < 30_000 && (leaderMs < 0 || produceMs < 0)) {
        const now = await leaderSeenBy(survivor);
        if (leaderMs < 0 && now !== null && now !== "" && now !== leader) {
          leaderMs = Date.now() - killedAt;
        }
        const acked = sent.filter((s) => s.offset !== null).length;
        if (produceMs < 0 && acked > ackedBefore + 5) produceMs = Date.now() - killedAt;
        await sleep(10);
      }
      const survivors = procs.filter((_, k) => k !== victim);
      assert.ok(
        leaderMs >= 0 && produceMs >= 0,
        `no failover within 30 s of kill ${kill + 1} of ${leader}: new leader named after ` +
          `${leaderMs} ms, produce acknowledged after ${produceMs} ms (-1: never); the ` +
          `survivors' last log lines:\n` +
          survivors.map((p) => p.lines.slice(-8).join("\n")).join("\n--\n"),
      );
      failovers.push({ leaderMs, produceMs });
      // The killed node comes back on the same ports and data directory.
      clients[victim]!.close();
      procs[victim] = await startClusterNode(
        `${root}/n${victim}`,
        ports[victim]!,
        victim === 0 ? [] : seeds,
      );
      clients[victim] = await connectTo(procs[victim]!);
      producers[victim] = clients[victim]!.producer({
        acks: "quorum",
        deliveryTimeoutMs: 60_000,
      });
      down.delete(victim);
    }
    await sleep(1000);
    producing = false;
    await producer;
    const acked = sent.filter((s) => s.offset !== null);
    assert.ok(acked.length > 100, `only ${acked.length} messages were acknowledged`);

    // Read the partition back from the current leader's node, from the start.
    let reader: Client | null = null;
    for (let tries = 0; tries < 100 && reader === null; tries++) {
      const leader = await leaderSeenBy(clients[0]!);
      const at = procs.findIndex((p) => p.nodeId === leader);
      if (at >= 0) reader = clients[at]!;
      else await sleep(100);
    }
    assert.ok(reader !== null, "no leader to read from");
    const end = (await reader.admin.describeTopic(TOPIC)).partitions[0]!.highWatermark;
    const sub = await reader.subscribe(TOPIC, { from: "earliest" });
    const values: string[] = [];
    let last = -1;
    for await (const m of sub) {
      assert.ok(m.offset > last, `offsets go back: ${m.offset} after ${last}`);
      last = m.offset;
      values[m.offset] = m.text();
      m.ack();
      if (m.offset + 1 >= end) break;
    }
    await sub.close();
    for (const s of acked) {
      assert.equal(values[s.offset!], s.value, `${s.value} acknowledged at ${s.offset}`);
    }
    const counts = new Map<string, number>();
    for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
    const twice = [...counts].filter(([, n]) => n > 1).map(([v]) => v);
    assert.deepEqual(twice, [], "a message is stored twice");
    // In order: each producer's acknowledged messages are stored in the order it sent them.
    for (const via of new Set(sent.map((s) => s.via))) {
      const mine = acked.filter((s) => s.via === via).map((s) => s.offset!);
      assert.deepEqual(
        mine,
        [...mine].sort((a, b) => a - b),
        "a producer's messages out of order",
      );
    }
    console.log(
      `${sent.length} sent, ${acked.length} acknowledged with quorum acks, ${values.length} ` +
        `stored; failovers (kill → new leader named, → produce acknowledged again): ${
          failovers.map((f) => `${f.leaderMs} ms / ${f.produceMs} ms`).join(", ")
        }`,
    );
  },
);

clusterTest(
  "3 replicating brokers: a topic deleted and created again starts empty on every replica",
  async ({ clients }) => {
    // Once every node is a member, the topic gets three replicas.
    await retry("the cluster forms", async () => {
      const m = await clients[0]!.admin.metadata([]);
      if (m.nodes.length < 3) throw new Error(`${m.nodes.length} nodes`);
    });
    await sleep(2000);
    const c = clients[1]!; // not the founder: admin requests are forwarded to the controller
    await createTopicRetrying(c, "again", { partitions: 1 });
    for (let i = 0; i < 10; i++) {
      await retry("publish", () => c.publish("again", { value: `old-${i}`, partition: 0 }));
    }
    await retry("delete", () => c.admin.deleteTopic("again"));
    await createTopicRetrying(c, "again", { partitions: 1 });
    const offsets: number[] = [];
    for (let i = 0; i < 5; i++) {
      offsets.push(
        await retry("publish", () => c.publish("again", { value: `new-${i}`, partition: 0 })),
      );
    }
    assert.deepEqual(offsets, [0, 1, 2, 3, 4]);
    for (const reader of clients) {
      await retry("a replica serves the new topic", async () => {
        assert.deepEqual(await readAll(reader, "again"), [
          "new-0",
          "new-1",
          "new-2",
          "new-3",
          "new-4",
        ]);
      });
    }
  },
);

/**
 * Bytes of every file under `dir` but those under a directory named `*.log` (a replica's segment
 * log: the Raft WALs alone); one removed while it is counted (a compaction) counts 0.
 */
async function walBytesUnder(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory && e.name.endsWith(".log")) continue;
    try {
      total += e.isDirectory ? await walBytesUnder(path) : (await Deno.stat(path)).size;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return total;
}

clusterTest(
  "3 replicating brokers: a partition keeps its retention, and the Raft logs behind it stay bounded",
  async ({ root, procs, ports, seeds, clients }) => {
    const RETENTION = 64 * 1024;
    const SEGMENT = 16 * 1024;
    // 1 KiB each: 24 MiB written, three times a replica's checkpoint interval (8 MiB), after each
    // of which its Raft log is compacted, and 384 times the retention.
    const COUNT = 24 * 1024;
    await retry("the cluster forms", async () => {
      const m = await clients[0]!.admin.metadata([]);
      if (m.nodes.length < 3) throw new Error(`${m.nodes.length} nodes`);
    });
    const c = clients[1]!;
    await retry("create", () =>
      c.admin.createTopic("bounded", {
        partitions: 1,
        configs: { "retention.bytes": String(RETENTION), "segment.bytes": String(SEGMENT) },
      }));
    // Batches of at most 16 KiB: a log keeps its newest batch whatever its size.
    const producer = c.producer({
      acks: "quorum",
      deliveryTimeoutMs: 60_000,
      batchRecordsMax: 16,
    });
    const pad = "x".repeat(1000);
    const inFlight = new Set<Promise<unknown>>();
    for (let i = 0; i < COUNT; i++) {
      const p = producer.send("bounded", { value: `b${i}-${pad}`, partition: 0 });
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      if (inFlight.size >= 500) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    // Every replica applies the topic's retention to whole segments; the WAL behind it was
    // compacted at its checkpoints.
    const walBytes: number[] = [];
    for (let k = 0; k < 3; k++) {
      await retry(`node ${k} holds the tail`, async () => {
        const d = (await clients[k]!.admin.describeTopic("bounded")).partitions[0]!;
        assert.equal(d.highWatermark, COUNT);
        assert.ok(d.logStartOffset > 0, "retention dropped the oldest batches");
        assert.ok(d.sizeBytes <= RETENTION + SEGMENT + 17 * 1024, `${d.sizeBytes} bytes kept`);
      });
      walBytes.push(await walBytesUnder(`${root}/n${k}/raft/p`));
    }
    // About two checkpoint intervals at most (the last one's entries wait for its sync), never
    // the 24 MiB written.
    for (const b of walBytes) {
      assert.ok(b < 17 * 1024 * 1024, `a node's partition WALs hold ${b} bytes`);
    }

    // A replica restarted on its compacted log starts from the snapshot and serves the tail.
    procs[2]!.child.kill("SIGKILL");
    await procs[2]!.child.status;
    clients[2]!.close();
    procs[2] = await startClusterNode(`${root}/n2`, ports[2]!, seeds);
    clients[2] = await connectTo(procs[2]!);
    const back = clients[2]!;
    await retry("the restarted replica serves the tail", async () => {
      const d = (await back.admin.describeTopic("bounded")).partitions[0]!;
      assert.equal(d.highWatermark, COUNT);
      const sub = await back.subscribe("bounded", { partition: 0, from: { offset: COUNT - 1 } });
      for await (const m of sub) {
        assert.equal(m.text(), `b${COUNT - 1}-${pad}`);
        break;
      }
      await sub.close();
    });
    console.log(
      `${COUNT} messages of 1 KiB through a 64 KiB retention: partition WALs per node ${
        walBytes.map((b) => `${(b / 1024).toFixed(0)} KiB`).join(", ")
      }`,
    );
  },
);
