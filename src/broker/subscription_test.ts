import assert from "node:assert/strict";
import type { Clock } from "../io/types.ts";
import { encodeBatch, readBatchHeader } from "../protocol/batch.ts";
import { MemoryLog } from "../storage/mod.ts";
import { type DeliverySink, type DurableState, Subscription } from "./subscription.ts";
import { Partition } from "./topic.ts";

const CLOCK: Clock = {
  now: () => 0,
  wallMs: () => 0,
  sleep: () => Promise.resolve(),
};

/** A sink that only counts the pushes. */
function sink(): DeliverySink & { pushes: number } {
  return {
    pushes: 0,
    deliverHeadroomBytes: 0,
    open: true,
    deliver() {
      this.pushes++;
    },
  };
}

async function partitionWith(records: number): Promise<Partition> {
  const log = new MemoryLog({ retentionBytes: Infinity });
  const te = new TextEncoder();
  for (let i = 0; i < records; i++) {
    const batch = encodeBatch([{
      timestamp: i,
      key: null,
      value: te.encode(`m${i}`),
      headers: [],
    }]);
    await log.append(batch, readBatchHeader(batch, 0));
  }
  return new Partition("t", 0, log);
}

function subscription(p: Partition, durable: DurableState, ackTimeoutMs: number) {
  const s = sink();
  const sub = new Subscription(s, CLOCK, {
    id: 1,
    partition: p,
    startOffset: 0,
    ackTimeoutMs,
    creditMessages: 100,
    creditBytes: 1 << 20,
    creditMessagesMax: 100,
    creditBytesMax: 1 << 20,
    deliverBytesMax: 1 << 20,
    durable,
  });
  return { sub, sink: s };
}

/** Waits until the subscription's pump has pushed what the log holds. */
async function delivered(sub: Subscription, upTo: number): Promise<void> {
  for (let i = 0; i < 100 && sub.nextOffset < upTo; i++) await Promise.resolve();
  assert.equal(sub.nextOffset, upTo);
}

Deno.test("Subscription.ack() moves a durable subscription's offset and asks for it to be saved", async () => {
  const p = await partitionWith(5);
  let changes = 0;
  const durable: DurableState = {
    key: "k",
    ackedOffset: -1,
    owner: null,
    onChange: () => changes++,
  };
  const { sub } = subscription(p, durable, 30_000);
  sub.pump();
  await delivered(sub, 5);
  assert.equal(sub.ack(2), null);
  assert.equal(durable.ackedOffset, 2);
  assert.equal(changes, 1, "an ack that moves the offset must be written down");
  assert.equal(sub.ack(1), null);
  assert.equal(changes, 1, "an ack below the last one changes nothing");
  assert.equal(sub.ack(4), null);
  assert.equal(durable.ackedOffset, 4);
  assert.equal(changes, 2);
});

Deno.test("Subscription without ack timeout counts a push as acknowledged, durably", async () => {
  const p = await partitionWith(3);
  let changes = 0;
  const durable: DurableState = {
    key: "k",
    ackedOffset: -1,
    owner: null,
    onChange: () => changes++,
  };
  const { sub, sink } = subscription(p, durable, 0);
  sub.pump();
  await delivered(sub, 3);
  assert.ok(sink.pushes >= 1);
  assert.equal(durable.ackedOffset, 2);
  assert.ok(changes >= 1);
});
