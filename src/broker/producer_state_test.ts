import assert from "node:assert/strict";
import { encodeBatch, readBatchHeader } from "../protocol/batch.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { MemoryLog } from "../storage/mod.ts";
import {
  PartitionProducers,
  PRODUCER_BATCHES_CACHED,
  type ProducerFields,
  PRODUCERS_PER_PARTITION_MAX,
  rebuildProducers,
  SEQUENCE_MAX,
} from "./producer_state.ts";

/** A partition's state with a fake log that counts appends and hands out offsets. */
function partition() {
  const state = new PartitionProducers();
  let next = 0;
  const appends: number[] = [];
  const admit = (h: Partial<ProducerFields> & { baseSequence: number }, count = 1) => {
    const fields = { producerId: 7, producerEpoch: 0, recordCount: count, ...h };
    return state.admit(fields, () => {
      const base = next;
      next += fields.recordCount;
      appends.push(base);
      return Promise.resolve(base);
    });
  };
  return { state, admit, appends };
}

function code(fn: () => unknown): number {
  try {
    fn();
  } catch (err) {
    if (err instanceof GregorError) return err.code;
    throw err;
  }
  return 0;
}

Deno.test("PartitionProducers takes an unknown producer's first batch only at sequence 0, then only the next", async () => {
  const p = partition();
  // Sequence 3 overtook 0..2 (refused on the way, to be retried): taking it would make their
  // retries look older than it, answered as duplicates without ever being stored.
  assert.equal(code(() => p.admit({ baseSequence: 3 })), ErrorCode.OUT_OF_ORDER_SEQUENCE);
  const a = p.admit({ baseSequence: 0 }, 3);
  assert.equal(a.duplicate, false);
  assert.equal(await a.baseOffset, 0);
  assert.equal(await p.admit({ baseSequence: 3 }, 2).baseOffset, 3);
  assert.equal(code(() => p.admit({ baseSequence: 6 })), ErrorCode.OUT_OF_ORDER_SEQUENCE);
  assert.equal(await p.admit({ baseSequence: 5 }).baseOffset, 5);
  assert.deepEqual(p.appends, [0, 3, 5]);
});

Deno.test("PartitionProducers never answers a batch it did not store as a duplicate", async () => {
  const p = partition();
  // In the order a forwarding node may deliver a pipeline whose head met NOT_LEADER.
  const overtaking = [3, 4, 5];
  for (const seq of overtaking) {
    assert.equal(code(() => p.admit({ baseSequence: seq })), ErrorCode.OUT_OF_ORDER_SEQUENCE);
  }
  for (let seq = 0; seq <= 5; seq++) {
    const a = p.admit({ baseSequence: seq });
    assert.equal(a.duplicate, false, `sequence ${seq} was never stored`);
    assert.equal(await a.baseOffset, seq);
  }
});

Deno.test("PartitionProducers answers a retried batch with its original offset, without appending", async () => {
  const p = partition();
  await p.admit({ baseSequence: 0 }, 2).baseOffset;
  await p.admit({ baseSequence: 2 }, 2).baseOffset;
  const again = p.admit({ baseSequence: 0 }, 2);
  assert.equal(again.duplicate, true);
  assert.equal(await again.baseOffset, 0);
  assert.equal(await p.admit({ baseSequence: 2 }, 2).baseOffset, 2);
  assert.deepEqual(p.appends, [0, 2]);
  assert.equal(code(() => p.admit({ baseSequence: 0 }, 3)), ErrorCode.INVALID_REQUEST);
});

Deno.test("PartitionProducers makes a duplicate wait for the original append to complete", async () => {
  const state = new PartitionProducers();
  let finish!: (n: number) => void;
  const original = state.admit(
    { producerId: 1, producerEpoch: 0, baseSequence: 0, recordCount: 1 },
    () => new Promise<number>((r) => (finish = r)),
  );
  const retry = state.admit(
    { producerId: 1, producerEpoch: 0, baseSequence: 0, recordCount: 1 },
    () => assert.fail("a duplicate must not be appended"),
  );
  assert.equal(retry.duplicate, true);
  let answered = false;
  void retry.baseOffset.then(() => (answered = true));
  await Promise.resolve();
  assert.equal(answered, false, "no answer before the original append completed");
  finish(17);
  assert.equal(await retry.baseOffset, 17);
  assert.equal(await original.baseOffset, 17);
});

Deno.test("PartitionProducers remembers the last 5 batches; an older one is DUPLICATE_SEQUENCE", async () => {
  const p = partition();
  for (let i = 0; i < PRODUCER_BATCHES_CACHED + 1; i++) {
    await p.admit({ baseSequence: i }).baseOffset;
  }
  assert.equal(code(() => p.admit({ baseSequence: 0 })), ErrorCode.DUPLICATE_SEQUENCE);
  assert.equal(await p.admit({ baseSequence: 1 }).baseOffset, 1, "the oldest still remembered");
  assert.equal(p.appends.length, PRODUCER_BATCHES_CACHED + 1);
});

Deno.test("PartitionProducers fences an older epoch and resets on a newer one starting at 0", async () => {
  const p = partition();
  await p.admit({ producerEpoch: 3, baseSequence: 0 }).baseOffset;
  assert.equal(
    code(() => p.admit({ producerEpoch: 2, baseSequence: 1 })),
    ErrorCode.PRODUCER_FENCED,
  );
  assert.equal(
    code(() => p.admit({ producerEpoch: 4, baseSequence: 5 })),
    ErrorCode.OUT_OF_ORDER_SEQUENCE,
  );
  assert.equal(await p.admit({ producerEpoch: 4, baseSequence: 0 }).baseOffset, 1);
  assert.equal(
    code(() => p.admit({ producerEpoch: 3, baseSequence: 1 })),
    ErrorCode.PRODUCER_FENCED,
  );
  assert.equal(await p.admit({ producerEpoch: 4, baseSequence: 1 }).baseOffset, 2);
});

Deno.test("PartitionProducers wraps sequences after 2^31-1 like Kafka", async () => {
  const p = partition();
  // A producer this long-lived is known from the log by the time it nears the wrap.
  p.state.restore({
    producerId: 7,
    producerEpoch: 0,
    baseSequence: SEQUENCE_MAX - 3,
    recordCount: 2,
  }, 100);
  await p.admit({ baseSequence: SEQUENCE_MAX - 1 }, 2).baseOffset;
  assert.equal(await p.admit({ baseSequence: 0 }, 3).baseOffset, 2);
  assert.equal(code(() => p.admit({ baseSequence: 4 })), ErrorCode.OUT_OF_ORDER_SEQUENCE);
  assert.equal(
    code(() => p.admit({ baseSequence: SEQUENCE_MAX - 5 })),
    ErrorCode.DUPLICATE_SEQUENCE,
  );
  const across = p.admit({ baseSequence: SEQUENCE_MAX - 1 }, 2);
  assert.equal(across.duplicate, true);
  assert.equal(await across.baseOffset, 0);
});

Deno.test("PartitionProducers refuses a negative epoch or sequence from a producer id", () => {
  const p = partition();
  assert.equal(code(() => p.admit({ baseSequence: -1 })), ErrorCode.INVALID_REQUEST);
  assert.equal(
    code(() => p.admit({ producerEpoch: -1, baseSequence: 0 })),
    ErrorCode.INVALID_REQUEST,
  );
  assert.deepEqual(p.appends, []);
});

Deno.test("PartitionProducers forgets a batch whose append failed, so its retry is stored in order", async () => {
  const state = new PartitionProducers();
  const h = (baseSequence: number) => ({
    producerId: 3,
    producerEpoch: 0,
    baseSequence,
    recordCount: 1,
  });
  await state.admit(h(0), () => Promise.resolve(0)).baseOffset;
  const failing = state.admit(h(1), () => Promise.reject(new Error("disk full")));
  const behind = state.admit(h(2), () => Promise.reject(new Error("disk full")));
  await assert.rejects(failing.baseOffset, /disk full/);
  await assert.rejects(behind.baseOffset, /disk full/);
  const retry = state.admit(h(1), () => Promise.resolve(1));
  assert.equal(retry.duplicate, false);
  assert.equal(await retry.baseOffset, 1);
  assert.equal(await state.admit(h(2), () => Promise.resolve(2)).baseOffset, 2);
});

Deno.test("PartitionProducers tracks at most PRODUCERS_PER_PARTITION_MAX ids, evicting the least recently used", async () => {
  const state = new PartitionProducers();
  let next = 0;
  const admit = (producerId: number, baseSequence: number) =>
    state.admit(
      { producerId, producerEpoch: 0, baseSequence, recordCount: 1 },
      () => Promise.resolve(next++),
    );
  await admit(0, 0).baseOffset;
  for (let id = 1; id < PRODUCERS_PER_PARTITION_MAX; id++) await admit(id, 0).baseOffset;
  assert.equal(state.size, PRODUCERS_PER_PARTITION_MAX);
  assert.equal(admit(0, 0).duplicate, true, "producer 0 is now the most recently used");
  await admit(PRODUCERS_PER_PARTITION_MAX, 0).baseOffset;
  assert.equal(state.size, PRODUCERS_PER_PARTITION_MAX);
  assert.equal(admit(0, 0).duplicate, true, "producer 0 was kept");
  // Producer 1 was the least recently used: forgotten, so any sequence is new again.
  assert.equal(admit(1, 0).duplicate, false);
});

Deno.test("rebuildProducers() restores producers from the log so retries after a restart are duplicates", async () => {
  const log = new MemoryLog({ retentionBytes: Infinity });
  const put = async (producerId: number, baseSequence: number, n: number) => {
    const records = Array.from(
      { length: n },
      (_, i) => ({ value: new Uint8Array([i]), timestamp: 1 }),
    );
    const batch = encodeBatch(records, { producerId, producerEpoch: 2, baseSequence });
    return (await log.append(batch, readBatchHeader(batch))).baseOffset;
  };
  await put(-1, -1, 3);
  for (let s = 0; s < 8; s++) await put(9, s * 2, 2);
  const plain = await put(4, 100, 1);
  const state = new PartitionProducers();
  assert.ok((await rebuildProducers(log, state)) > 0);
  assert.equal(state.size, 2);
  const h = (producerId: number, baseSequence: number, recordCount: number) => ({
    producerId,
    producerEpoch: 2,
    baseSequence,
    recordCount,
  });
  const never = () => assert.fail("a duplicate must not be appended");
  const last = state.admit(h(9, 14, 2), never);
  assert.equal(last.duplicate, true);
  assert.equal(await last.baseOffset, 3 + 7 * 2);
  assert.equal(await state.admit(h(4, 100, 1), never).baseOffset, plain);
  assert.equal(code(() => state.admit(h(9, 0, 2), never)), ErrorCode.DUPLICATE_SEQUENCE);
  assert.equal(code(() => state.admit(h(9, 20, 1), never)), ErrorCode.OUT_OF_ORDER_SEQUENCE);
  assert.equal(
    code(() => state.admit({ ...h(9, 16, 1), producerEpoch: 1 }, never)),
    ErrorCode.PRODUCER_FENCED,
  );
  assert.equal(await rebuildProducers(new MemoryLog({ retentionBytes: 1 }), state), 0);
});
