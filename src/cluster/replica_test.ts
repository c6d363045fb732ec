import assert from "node:assert/strict";
import { SeededRandom } from "../io/prng.ts";
import { MemoryLog } from "../storage/mod.ts";
import { encodeBatch } from "../protocol/batch.ts";
import type { Entry } from "./raft/types.ts";
import { type AppliedBatch, PartitionMachine } from "./replica.ts";

/** A stream of committed entries: batches of a few producers, with retries (duplicates) mixed in. */
function entries(seed: number, count: number): Entry[] {
  const r = new SeededRandom(seed, "replica-entries");
  const next = new Map<number, number>();
  const sent: { producerId: number; baseSequence: number; n: number }[] = [];
  const out: Entry[] = [];
  for (let i = 1; i <= count; i++) {
    let b: { producerId: number; baseSequence: number; n: number };
    if (sent.length > 0 && r.float() < 0.2) {
      // A retry of one of the last few batches: the state machine must call it a duplicate.
      b = sent[Math.max(0, sent.length - 1 - r.int(0, 4))]!;
    } else {
      const producerId = r.int(-1, 3); // -1: not idempotent
      const baseSequence = producerId < 0 ? -1 : next.get(producerId) ?? 0;
      b = { producerId, baseSequence, n: r.int(1, 4) };
      if (producerId >= 0) next.set(producerId, baseSequence + b.n);
      sent.push(b);
    }
    const records = Array.from({ length: b.n }, (_, k) => ({
      value: new TextEncoder().encode(`e${i}-${k}`),
      timestamp: i,
    }));
    const data = encodeBatch(records, {
      producerId: b.producerId,
      producerEpoch: 0,
      baseSequence: b.baseSequence,
    });
    out.push({ index: i, term: 1, kind: "normal", data });
  }
  return out;
}

async function applyAll(m: PartitionMachine, es: readonly Entry[]): Promise<AppliedBatch[]> {
  const results: AppliedBatch[] = [];
  for (const e of es) results.push(await m.apply({ ...e, data: e.data.slice() }));
  return results;
}

/** Every stored batch from `from` on, as the bytes a reader gets. */
async function contents(log: MemoryLog, from: number): Promise<Uint8Array> {
  return (await log.read(from, { bytesMax: 1 << 30, recordsMax: 1 << 30 })).bytes;
}

Deno.test("PartitionMachine: a replica restored from a checkpoint continues exactly like the original", async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const es = entries(seed, 300);
    const original = new PartitionMachine(new MemoryLog({ retentionBytes: 6000 }), () => {}, {
      checkpointBytes: 1500,
    });
    // Apply until retention passed a checkpoint, then take the snapshot the log compacts to.
    let point: { index: number; image: Uint8Array } | null = null;
    let at = 0;
    while (point === null && at < es.length) {
      await original.apply({ ...es[at]!, data: es[at]!.data.slice() });
      at++;
      point = original.compactionPoint();
    }
    assert.ok(point !== null, `seed ${seed}: retention never passed a checkpoint`);
    assert.ok(original.log.logStartOffset > 0, "retention dropped the oldest batches");

    // A replica far behind (or restarting) gets the snapshot, then the entries after it.
    const copy = new PartitionMachine(new MemoryLog({ retentionBytes: 6000 }), () => {}, {
      checkpointBytes: 1500,
    });
    let restored = 0;
    copy.onRestore = () => void restored++;
    await copy.apply({ ...es[0]!, data: es[0]!.data.slice() }); // stale state, replaced
    copy.restore({ index: point.index, term: 1, voters: ["a"], learners: [], data: point.image });
    assert.equal(restored, 1);
    await applyAll(copy, es.slice(point.index, at));

    // From here on both decide every batch alike: same offsets, same duplicates, same bytes.
    const rest = es.slice(at);
    const a = await applyAll(original, rest);
    const b = await applyAll(copy, rest);
    assert.deepEqual(b, a, `seed ${seed}: the restored replica decided differently`);
    assert.ok(a.some((x) => x.duplicate), `seed ${seed}: no retry was judged a duplicate`);
    assert.equal(copy.log.nextOffset, original.log.nextOffset);
    const from = Math.max(copy.log.logStartOffset, original.log.logStartOffset);
    assert.deepEqual(await contents(copy.log, from), await contents(original.log, from));
  }
});

Deno.test("PartitionMachine: no compaction point until retention has dropped the checkpoint's offsets", async () => {
  const es = entries(7, 200);
  const m = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
    checkpointBytes: 500,
  });
  await applyAll(m, es);
  assert.equal(m.compactionPoint(), null, "everything is still kept: nothing may be forgotten");
  m.log.setRetention({ bytes: 1000 });
  const point = m.compactionPoint();
  assert.ok(point !== null);
  assert.ok(point.index < es.length, "the newest checkpoint retention passed, not the last entry");
  assert.equal(m.compactionPoint(), null, "a point is handed out once");
});
