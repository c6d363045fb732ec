import assert from "node:assert/strict";
import { SeededRandom } from "../io/prng.ts";
import { type Log, MemoryLog } from "../storage/mod.ts";
import { encodeBatch } from "../protocol/batch.ts";
import type { Entry } from "./raft/types.ts";
import { type AppliedBatch, PartitionMachine, type RangeSource } from "./replica.ts";
import { answerFetch } from "./replica_fetch.ts";

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
async function contents(log: Log, from: number): Promise<Uint8Array> {
  return (await log.read(from, { bytesMax: 1 << 30, recordsMax: 1 << 30 })).bytes;
}

/**
 * A RangeSource answered by `peer`'s log the way a peer node answers (answerFetch), in chunks of
 * `bytesMax`; `tamper` may change a reply's bytes (a peer that sends damaged batches).
 */
function peerSource(
  peer: () => Log,
  counts: { fetches: number; backoffs: number },
  tamper: (bytes: Uint8Array, n: number) => Uint8Array = (b) => b,
): RangeSource {
  return {
    async fetch(fromOffset, bytesMax) {
      const r = await answerFetch(peer(), { id: 1, fromOffset, bytesMax });
      counts.fetches++;
      return { bytes: tamper(r.bytes.slice(), counts.fetches), logStartOffset: r.logStartOffset };
    },
    backoff: () => Promise.resolve(void counts.backoffs++),
  };
}

const NO_PEER: RangeSource = {
  fetch: () => Promise.reject(new Error("no fetch expected")),
  backoff: () => Promise.resolve(),
};

/** Applies `es` until the machine offers a compaction point (its log synced a checkpoint). */
async function untilCompactionPoint(
  m: PartitionMachine,
  es: readonly Entry[],
): Promise<{ point: { index: number; image: Uint8Array }; at: number }> {
  let at = 0;
  for (;;) {
    await m.apply({ ...es[at]!, data: es[at]!.data.slice() });
    at++;
    // The checkpoint's sync settles on a later turn, as it does on a real log.
    await Promise.resolve();
    const point = m.compactionPoint();
    if (point !== null) return { point, at };
    if (at >= es.length) throw new Error("no compaction point in the whole stream");
  }
}

function snapshotAt(point: { index: number; image: Uint8Array }) {
  return { index: point.index, term: 1, voters: ["a", "b"], learners: [], data: point.image };
}

Deno.test("PartitionMachine: a replica behind a snapshot fetches the batches between from a peer and then decides like it", async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const es = entries(seed, 300);
    const original = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
      checkpointBytes: 1500,
    }, NO_PEER);
    const { point, at } = await untilCompactionPoint(original, es);

    // A new replica (empty log) gets the snapshot: it fetches every batch before the snapshot's
    // offset from the peer, in small chunks, then applies the entries after it.
    const counts = { fetches: 0, backoffs: 0 };
    const copy = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
      checkpointBytes: 1500,
    }, peerSource(() => original.log, counts));
    let restored = 0;
    copy.onRestore = () => void restored++;
    await copy.restore(snapshotAt(point));
    assert.equal(restored, 1);
    assert.ok(counts.fetches > 0, "the copy fetched from its peer");
    await applyAll(copy, es.slice(point.index, at));

    // From here on both decide every batch alike: same offsets, same duplicates, same bytes.
    const rest = es.slice(at);
    const a = await applyAll(original, rest);
    const b = await applyAll(copy, rest);
    assert.deepEqual(b, a, `seed ${seed}: the restored replica decided differently`);
    assert.ok(a.some((x) => x.duplicate), `seed ${seed}: no retry was judged a duplicate`);
    assert.equal(copy.log.nextOffset, original.log.nextOffset);
    assert.deepEqual(await contents(copy.log, 0), await contents(original.log, 0));
  }
});

Deno.test("PartitionMachine: a restarting replica whose log is ahead of its snapshot cuts it back and applies again", async () => {
  const es = entries(3, 200);
  const log = new MemoryLog({ retentionBytes: Infinity });
  const before = new PartitionMachine(log, () => {}, { checkpointBytes: 800 }, NO_PEER);
  const { point, at } = await untilCompactionPoint(before, es);
  await applyAll(before, es.slice(at, at + 20)); // applied after the checkpoint, then a crash
  const expected = await contents(log, 0);
  const end = log.nextOffset;

  const after = new PartitionMachine(log, () => {}, { checkpointBytes: 800 }, NO_PEER);
  await after.restore(snapshotAt(point));
  assert.ok(log.nextOffset < end, "the log was cut back to the checkpoint");
  await applyAll(after, es.slice(point.index, at + 20));
  assert.deepEqual(await contents(log, 0), expected, "applying again rebuilt the same log");
});

Deno.test("PartitionMachine: batches from a peer that fail their checksum are refused, counted, and fetched again", async () => {
  const es = entries(5, 150);
  const original = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
    checkpointBytes: 1000,
  }, NO_PEER);
  const { point } = await untilCompactionPoint(original, es);
  const counts = { fetches: 0, backoffs: 0 };
  // The first two replies have a flipped byte in the last batch's records.
  const flip = (b: Uint8Array, n: number) => {
    if (n <= 2 && b.length > 0) b[b.length - 1]! ^= 0x40;
    return b;
  };
  const copy = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
    checkpointBytes: 1000,
  }, peerSource(() => original.log, counts, flip));
  const bad: string[] = [];
  copy.onBadFetch = (reason) => bad.push(reason);
  await copy.restore(snapshotAt(point));
  assert.equal(bad.length, 2, JSON.stringify(bad));
  assert.match(bad[0]!, /CRC-32C/);
  assert.equal(counts.backoffs, 2);
  const end = JSON.parse(new TextDecoder().decode(point.image)).nextOffset as number;
  assert.equal(copy.log.nextOffset, end);
  assert.deepEqual(await contents(copy.log, 0), await contents(original.log, 0));
});

Deno.test("PartitionMachine: a replica behind a peer whose retention dropped its next batches starts at the peer's log start", async () => {
  const es = entries(9, 300);
  const peerLog = new MemoryLog({ retentionBytes: Infinity });
  const original = new PartitionMachine(peerLog, () => {}, { checkpointBytes: 1500 }, NO_PEER);
  const { point } = await untilCompactionPoint(original, es);
  peerLog.setRetention({ bytes: 1200 });
  assert.ok(peerLog.logStartOffset > 0);
  const counts = { fetches: 0, backoffs: 0 };
  const copy = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
    checkpointBytes: 1500,
  }, peerSource(() => peerLog, counts));
  await copy.restore(snapshotAt(point));
  assert.equal(copy.log.logStartOffset, peerLog.logStartOffset);
  assert.deepEqual(
    await contents(copy.log, peerLog.logStartOffset),
    await contents(peerLog, peerLog.logStartOffset),
  );
});

Deno.test("PartitionMachine: no compaction point until the log has synced the checkpoint's batches", async () => {
  const es = entries(7, 200);
  const log = new MemoryLog({ retentionBytes: Infinity });
  let release: () => void = () => {};
  const synced = new Promise<void>((r) => (release = r));
  const slow: Log = {
    get logStartOffset() {
      return log.logStartOffset;
    },
    get nextOffset() {
      return log.nextOffset;
    },
    get sizeBytes() {
      return log.sizeBytes;
    },
    append: (batch, header) => log.append(batch, header),
    read: (offset, limits) => log.read(offset, limits),
    offsetForTimestamp: (ms) => log.offsetForTimestamp(ms),
    truncateFrom: (offset) => log.truncateFrom(offset),
    resetTo: (offset) => log.resetTo(offset),
    sync: () => synced,
    close: () => log.close(),
  };
  const m = new PartitionMachine(slow, () => {}, { checkpointBytes: 500 }, NO_PEER);
  await applyAll(m, es);
  await Promise.resolve();
  assert.equal(m.compactionPoint(), null, "nothing is durable yet: the Raft log keeps it all");
  release();
  await synced;
  await Promise.resolve();
  const point = m.compactionPoint();
  assert.ok(point !== null);
  assert.equal(m.compactionPoint(), null, "a point is handed out once");
});
