// Durable subscriptions in a cluster, with real processes: three replicating brokers on 127.0.0.1,
// a durable subscriber acknowledging on one node that does not lead the metadata group (its acks
// are forwarded to the controller), that node SIGKILLed, and the subscriber back on another node.
// It must resume right after its acknowledged offset: the offset is replicated metadata, not the
// dead node's subscriptions.json.

import assert from "node:assert/strict";
import type { Consumer, ReceivedMessage } from "../src/client/mod.ts";
import {
  clusterFormed,
  clusterTest,
  createTopicRetrying,
  META_VOTERS_SETTLE_MS,
  retry,
  sleep,
} from "./_broker_process.ts";

const TOPIC = "audit";
const DURABLE = "ledger";
const MESSAGES = 100;
const ACKED = 60;
/**
 * Time given the acks to reach the metadata group: the node commits them every 200 ms
 * (offsetsFlushMs), through one forwarded request and one Raft round, ms.
 */
const ACKS_COMMITTED_MS = 2_000;

/** The next message of `sub`, or a failure naming what was awaited after `ms`. */
async function next(sub: Consumer, what: string, ms = 10_000): Promise<ReceivedMessage> {
  const it = sub[Symbol.asyncIterator]();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no message for ${ms} ms (${what})`)), ms);
  });
  try {
    const r = await Promise.race([it.next(), timeout]);
    if (r.done) throw new Error(`the subscription ended (${what})`);
    return r.value;
  } finally {
    clearTimeout(timer);
  }
}

clusterTest(
  "3 replicating brokers: a durable subscriber resumes on another node after its acked offset",
  async ({ procs, clients }) => {
    await clusterFormed(procs, clients);
    // Until both joiners vote, killing one node may leave the metadata group without a quorum.
    await sleep(META_VOTERS_SETTLE_MS);
    const c = await clusterFormed(procs, clients);
    const controller = procs[c]!.nodeId;
    // A and B both follow the controller: A's acks and B's read each go through a forward.
    const a = (c + 1) % 3;
    const b = (c + 2) % 3;
    const onA = clients[a]!;
    await createTopicRetrying(onA, TOPIC, { partitions: 1 });
    const producer = onA.producer({ acks: "quorum", deliveryTimeoutMs: 30_000 });
    await retry("produce", async () => {
      await Promise.all(
        Array.from({ length: MESSAGES }, (_, i) => producer.send(TOPIC, { value: `m${i}` })),
      );
    });

    const first = await retry(
      "subscribe on A",
      () => onA.subscribe(TOPIC, { durable: DURABLE, from: "earliest" }),
    );
    assert.equal(first.startOffset, 0, "a new durable subscription starts at `from`");
    for (let i = 0; i < ACKED; i++) {
      const m = await next(first, `offset ${i} on A`);
      assert.equal(m.offset, i);
      assert.equal(m.text(), `m${i}`);
      m.ack();
    }
    await sleep(ACKS_COMMITTED_MS);

    procs[a]!.child.kill("SIGKILL");
    await procs[a]!.child.status;
    const killedAt = Date.now();

    const onB = clients[b]!;
    const again = await retry(
      "subscribe on B",
      () => onB.subscribe(TOPIC, { durable: DURABLE, from: "earliest" }),
    );
    const resumedMs = Date.now() - killedAt;
    assert.equal(
      again.startOffset,
      ACKED,
      `acked ${ACKED - 1} on node A; node B resumed at ${again.startOffset}`,
    );
    for (let i = ACKED; i < MESSAGES; i++) {
      const m = await next(again, `offset ${i} on B`);
      assert.equal(m.offset, i);
      assert.equal(m.text(), `m${i}`);
      m.ack();
    }
    await again.close();
    console.log(
      `acked ${ACKED - 1} on ${procs[a]!.nodeId}, SIGKILLed it; resumed at ${again.startOffset} ` +
        `on ${procs[b]!.nodeId} ${resumedMs} ms later (controller ${controller})`,
    );
  },
);
