// Requests sent to a node that does not serve them, on three real broker processes: the node
// forwards the client's frame over the cluster port to the node that does (src/cluster/forward.ts)
// and relays its answer. A topic created through a node that is not the controller is known there
// when the creation is answered; produces to a partition led elsewhere get the leader's offsets,
// in order; a produce with acks none is stored although nobody answers it; a producer id comes
// from the controller.

import assert from "node:assert/strict";
import { encodeBatch } from "../src/protocol/batch.ts";
import {
  Acks,
  type InitProducerIdResponse,
  type MetadataResponse,
  type ProduceResponse,
} from "../src/protocol/messages.ts";
import { clusterFormed, clusterTest, readAll, retry } from "./_broker_process.ts";

/** Produces sent at once through a node that does not lead the partition. */
const PRODUCES = 50;

function batch(value: string): Uint8Array {
  return encodeBatch([{ value: new TextEncoder().encode(value), timestamp: 1_000 }]);
}

clusterTest(
  "3 replicating brokers: a node forwards requests it does not serve frame by frame and relays the answers",
  async ({ procs, clients }) => {
    const controller = await clusterFormed(procs, clients);
    const other = [0, 1, 2].find((i) => i !== controller)!;
    const via = clients[other]!.connection;

    // CREATE_TOPIC at a node that is not the controller: answered once that node knows the topic.
    await retry(
      "creating through a follower",
      () => via.request("CREATE_TOPIC", { name: "fwd", partitions: 1, configs: {} }),
    );
    const described = await clients[other]!.admin.describeTopic("fwd");
    assert.equal(described.partitions.length, 1);

    const meta = await retry("fwd/0 has a leader", async () => {
      const m = await via.request<MetadataResponse>("METADATA", {
        topics: [{ name: "fwd" }],
        autoCreate: 0,
      });
      if (m.topics[0]?.partitions[0]?.leader === "") throw new Error("no leader yet");
      return m;
    });
    const leader = meta.topics[0]!.partitions[0]!.leader;
    const notLeader = procs.findIndex((p) => p.nodeId !== leader);
    const to = clients[notLeader]!.connection;
    const answers = await Promise.all(
      Array.from({ length: PRODUCES }, (_, i) =>
        to.request<ProduceResponse>("PRODUCE", {
          topic: "fwd",
          partition: 0,
          acks: Acks.quorum,
          timeoutMs: 10_000,
          batch: batch(`m${i}`),
        })),
    );
    assert.deepEqual(
      answers.map((a) => a.baseOffset),
      answers.map((_, i) => i),
      "pipelined produces forwarded to the leader keep their order",
    );

    // acks none: the leader answers nothing, and nothing reaches the client, but it is stored.
    await to.send("PRODUCE", {
      topic: "fwd",
      partition: 0,
      acks: Acks.none,
      timeoutMs: 10_000,
      batch: batch("unanswered"),
    });
    const values = await retry("the unanswered produce is stored", async () => {
      const v = await readAll(clients[notLeader]!, "fwd");
      if (v.length < PRODUCES + 1) throw new Error(`${v.length} messages`);
      return v;
    });
    assert.deepEqual(values, [...answers.map((_, i) => `m${i}`), "unanswered"]);

    const ids = await Promise.all(
      [0, 1, 2].map(() => via.request<InitProducerIdResponse>("INIT_PRODUCER_ID", {})),
    );
    assert.equal(new Set(ids.map((r) => r.producerId)).size, 3, "producer ids are unique");
  },
);
