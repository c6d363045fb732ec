// A replica damaged at rest repairs itself from its peers, on three real broker processes: a
// follower is stopped (SIGTERM), a byte of a batch in one of its sealed segment files is flipped,
// and it is started again. It must find the damage when it opens the replica, cut its log there,
// fetch the batches again from its peers (each checked), say so in its log, and then serve a
// client connected to it alone exactly the bytes the other nodes serve.

import assert from "node:assert/strict";
import { connect } from "../src/client/mod.ts";
import { readBatchHeader } from "../src/protocol/batch.ts";
import {
  clusterFormed,
  clusterTest,
  createTopicRetrying,
  readAll,
  retry,
  sleep,
  startClusterNode,
} from "./_broker_process.ts";

const TOPIC = "healing";
/**
 * Past the default checkpoint interval (8 MiB): the replicas checkpoint and compact their Raft
 * logs, so the batches before the checkpoint live only in the segment files, and a restart
 * starts from the snapshot rather than applying the whole Raft log again.
 */
const MESSAGES = 11_000;
const VALUE_BYTES = 1_000;
const SEGMENT_BYTES = 1024 * 1024;
/** How long the restarted node gets to repair its replica, ms. */
const REPAIR_MS_MAX = 60_000;

clusterTest(
  "3 replicating brokers: a follower whose sealed segment was flipped at rest repairs it from its peers and serves the same bytes",
  async ({ root, procs, seeds, ports, clients }) => {
    await clusterFormed(procs, clients);
    await createTopicRetrying(clients[0]!, TOPIC, {
      partitions: 1,
      configs: { "replication.factor": "3", "segment.bytes": String(SEGMENT_BYTES) },
    });
    const producer = clients[0]!.producer({ acks: "quorum", lingerMs: 2 });
    const pad = "x".repeat(VALUE_BYTES - 10);
    const acks: Promise<number>[] = [];
    for (let i = 0; i < MESSAGES; i++) acks.push(producer.send(TOPIC, { value: `${i}:${pad}` }));
    await Promise.all(acks);
    // Every node applies all of it (a node reads its own replica) before a follower stops.
    await retry("every replica applied the whole partition", async () => {
      for (const c of clients) {
        const hw = (await c.admin.describeTopic(TOPIC)).partitions[0]!.highWatermark;
        if (hw !== MESSAGES) throw new Error(`a node is at ${hw}`);
      }
    });
    const expected = await retry("read the topic", () => readAll(clients[0]!, TOPIC));
    assert.equal(expected.length, MESSAGES);
    const leader = (await clients[0]!.admin.metadata([TOPIC])).topics[0]!.partitions[0]!.leader;
    const i = procs.findIndex((p) => p.nodeId !== leader);
    await sleep(500);
    clients[i]!.close();
    procs[i]!.child.kill("SIGTERM");
    await procs[i]!.child.status;

    // A byte inside the records of the middle batch of its first sealed segment.
    const raft = `${root}/n${i}/raft/p`;
    const topicDir = [...Deno.readDirSync(raft)].find((e) => e.name.startsWith(`${TOPIC}@`));
    assert.ok(topicDir, `no replica directory of ${TOPIC} under ${raft}`);
    const dir = `${raft}/${topicDir.name}/0.log`;
    const segments = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".log"))
      .sort();
    assert.ok(segments.length >= 3, `only ${segments.length} segments in ${dir}`);
    const file = `${dir}/${segments[0]}`;
    const bytes = Deno.readFileSync(file);
    const batches: { pos: number; size: number }[] = [];
    for (let pos = 0; pos < bytes.length;) {
      const size = readBatchHeader(bytes, pos, { headerOnly: true }).sizeBytes;
      batches.push({ pos, size });
      pos += size;
    }
    const bad = batches[Math.floor(batches.length / 2)]!;
    bytes[bad.pos + bad.size - 3]! ^= 0x10;
    Deno.writeFileSync(file, bytes);

    procs[i] = await startClusterNode(`${root}/n${i}`, ports[i]!, seeds);
    const deadline = Date.now() + REPAIR_MS_MAX;
    while (!procs[i]!.lines.some((l) => l.includes(`Replica ${TOPIC}/0 repaired`))) {
      if (Date.now() > deadline) {
        throw new Error(`No repair within ${REPAIR_MS_MAX} ms:\n${procs[i]!.lines.join("\n")}`);
      }
      await sleep(100);
    }
    const line = procs[i]!.lines.find((l) => l.includes(`Replica ${TOPIC}/0 repaired`))!;
    assert.match(line, /were fetched again from \w+, \w+, each batch verified/, line);
    console.log(procs[i]!.lines.filter((l) => l.includes(`${TOPIC}/0`)).join("\n"));

    // Read through the repaired node alone: it serves the partition itself, whole and unchanged.
    const only = await connect({ port: procs[i]!.clientPort, connectTimeoutMs: 20_000 });
    clients[i] = only;
    await retry("the repaired node serves the whole partition", async () => {
      const hw = (await only.admin.describeTopic(TOPIC)).partitions[0]!.highWatermark;
      if (hw !== MESSAGES) throw new Error(`it serves up to ${hw}`);
    });
    const served = await retry("read through the repaired node", () => readAll(only, TOPIC));
    assert.equal(served.length, MESSAGES);
    assert.ok(served.every((v, k) => v === expected[k]), "the repaired node serves other bytes");
    const other = clients[(i + 1) % 3]!;
    assert.ok((await readAll(other, TOPIC)).every((v, k) => v === expected[k]));
  },
);
