// Produces to a topic created a moment ago, on three real broker processes. A new partition's Raft
// group used to wait for an election timeout (1 to 2 s) before anyone led it, and every produce was
// refused meanwhile: the cluster benchmark saw runs that confirmed nothing for most of their two
// seconds. A new topic must take quorum produces within a few round trips, and the controller
// answers the creation once it knows the new partition's leader. Then DESCRIBE_TOPIC shows the
// replicas and the in-sync replicas, before and after a follower is SIGKILLed.

import assert from "node:assert/strict";
import type { Client } from "../src/client/mod.ts";
import { clusterFormed, clusterTest, createTopicRetrying, retry } from "./_broker_process.ts";

/** Topics created (and produced to) one after the other. */
const TOPICS = 5;
/**
 * The median time from a topic's creation to its first acknowledged quorum produce, ms, at most.
 * The brokers' election timeout is 1000 ms, so waiting for one can never come in under it.
 */
const FIRST_ACK_MS_MAX = 800;
/** Messages sent at once to each new topic, all acknowledged before the next topic. */
const BURST_MESSAGES = 2_000;

clusterTest(
  "3 replicating brokers: a new topic takes quorum produces at once; describe shows its ISR shrink",
  async ({ procs, clients }) => {
    await clusterFormed(procs, clients);
    await createTopicRetrying(clients[0]!, "warm", { partitions: 1 });
    // Topics are created through the controller, which answers once it knows their leaders.
    const index = await clusterFormed(procs, clients);
    const controller: Client = clients[index]!;
    const producer = clients[0]!.producer({ acks: "quorum", lingerMs: 2 });
    const firstAckMs: number[] = [];
    for (let t = 0; t < TOPICS; t++) {
      const topic = `fresh-${t}`;
      await controller.admin.createTopic(topic, { partitions: 1 });
      const created = performance.now();
      const leader = (await controller.admin.metadata([topic])).topics[0]?.partitions[0]?.leader;
      assert.ok(leader, `${topic} has a leader as soon as its creation is answered`);
      let first = -1;
      const acks = Array.from(
        { length: BURST_MESSAGES },
        (_, i) =>
          producer.send(topic, { value: `m${i}` }).then((offset) => {
            if (first < 0) first = performance.now() - created;
            return offset;
          }),
      );
      const offsets = await Promise.all(acks);
      assert.deepEqual(offsets, offsets.map((_, i) => i), `${topic}: offsets in send order`);
      firstAckMs.push(first);
    }
    const sorted = [...firstAckMs].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    console.log(`first quorum ack after creation, ms: ${firstAckMs.map(Math.round).join(", ")}`);
    assert.ok(
      median <= FIRST_ACK_MS_MAX,
      `A new topic's first quorum produce was acknowledged after ${
        Math.round(median)
      } ms (median of ${TOPICS}); at most ${FIRST_ACK_MS_MAX} ms expected`,
    );

    // DESCRIBE_TOPIC at the partition's leader names its 3 replicas, all in sync; a SIGKILLed
    // follower drops out of the ISR within ISR_HEARD_MS_MAX (2 s) although nothing is produced.
    const describeAtLeader = async () => {
      const leaderId = (await controller.admin.metadata(["warm"])).topics[0]!.partitions[0]!.leader;
      const at = procs.findIndex((p) => p.nodeId === leaderId);
      if (at < 0) throw new Error(`warm/0's leader "${leaderId}" is none of the nodes`);
      return { at, p: (await clients[at]!.admin.describeTopic("warm")).partitions[0]! };
    };
    const ids = (l: { id: string }[]) => l.map((r) => r.id).sort();
    const all = procs.map((p) => p.nodeId).sort();
    const before = await retry("3 replicas in sync", async () => {
      const d = await describeAtLeader();
      if (ids(d.p.isr).length !== 3) throw new Error(`ISR ${ids(d.p.isr)}`);
      return d;
    });
    assert.deepEqual(ids(before.p.replicas), all);
    assert.deepEqual(ids(before.p.isr), all);
    assert.equal(before.p.leader, procs[before.at]!.nodeId);
    const victim = [0, 1, 2].find((i) => i !== before.at && i !== index)!;
    procs[victim]!.child.kill("SIGKILL");
    const killedAt = performance.now();
    const after = await retry("the killed follower leaves the ISR", async () => {
      const d = await describeAtLeader();
      if (ids(d.p.isr).length !== 2) throw new Error(`ISR ${ids(d.p.isr)}`);
      return d;
    });
    const droppedMs = Math.round(performance.now() - killedAt);
    console.log(`a SIGKILLed follower left the ISR after ${droppedMs} ms`);
    assert.deepEqual(ids(after.p.replicas), all, "the killed node still holds a replica");
    assert.deepEqual(ids(after.p.isr), all.filter((id) => id !== procs[victim]!.nodeId));
  },
);

clusterTest(
  "3 replicating brokers: a replication factor above the cluster's size is capped, with a warning",
  async ({ procs, clients }) => {
    const index = await clusterFormed(procs, clients);
    await retry("the topic", () =>
      clients[index]!.admin.createTopic("wide", {
        partitions: 2,
        configs: { "replication.factor": "5" },
      }));
    const d = await clients[index]!.admin.describeTopic("wide");
    for (const p of d.partitions) assert.equal(p.replicas?.length, 3, JSON.stringify(p));
    const warned = await retry("the warning", () => {
      const line = procs[index]!.lines.find((l) => l.includes("asks for 5 replicas"));
      return line === undefined ? Promise.reject(new Error("not logged")) : Promise.resolve(line);
    });
    assert.match(
      warned,
      /Topic wide asks for 5 replicas per partition but the cluster has 3 nodes: it gets 3/,
    );
  },
);
