import assert from "node:assert/strict";
import fc from "fast-check";
import type { File } from "../io/types.ts";
import { encodeBatch, setBaseOffset } from "../protocol/batch.ts";
import { calmDisk, type DiskFaults, type SimDisk } from "../../sim/disk.ts";
import { runOnNode } from "../../sim/harness.ts";
import { SIM_EPOCH_MS } from "../../sim/node.ts";
import { Simulation } from "../../sim/simulation.ts";
import { readVerifiedBatch, scanSegment, SegmentIndex } from "./segment.ts";

const T0 = SIM_EPOCH_MS;
const enc = new TextEncoder();

/** A batch of `records` records at `baseOffset`, with timestamps from `ts`. */
function batchAt(baseOffset: number, records: number, ts = T0): Uint8Array {
  const b = encodeBatch(
    Array.from({ length: records }, (_, r) => ({
      value: enc.encode(`record ${baseOffset + r}`),
      timestamp: ts + r,
    })),
  );
  setBaseOffset(b, 0, baseOffset);
  return b;
}

/** Where each batch of a segment file starts. */
interface Layout {
  bytes: Uint8Array;
  batches: { pos: number; size: number; base: number; maxTs: number }[];
  nextOffset: number;
}

/** `count` batches of 1..3 records from `baseOffset`, back to back, timestamps rising. */
function segmentBytes(baseOffset: number, count: number): Layout {
  const parts: Uint8Array[] = [];
  const batches: Layout["batches"] = [];
  let pos = 0;
  let next = baseOffset;
  for (let i = 0; i < count; i++) {
    const records = 1 + (i % 3);
    const b = batchAt(next, records, T0 + i * 100);
    parts.push(b);
    batches.push({ pos, size: b.length, base: next, maxTs: T0 + i * 100 + records - 1 });
    pos += b.length;
    next += records;
  }
  const bytes = new Uint8Array(pos);
  let off = 0;
  for (const p of parts) {
    bytes.set(p, off);
    off += p.length;
  }
  return { bytes, batches, nextOffset: next };
}

/** Runs `body` on a simulated node with a file holding `bytes` at "seg.log". */
function withSegmentFile<T>(
  seed: number,
  bytes: Uint8Array,
  body: (file: File, disk: SimDisk) => Promise<T>,
  faults: Partial<DiskFaults> = {},
): Promise<T> {
  const sim = new Simulation(seed, { disk: { ...calmDisk(), ...faults } });
  return runOnNode(sim, "n", async (env, node) => {
    const file = await env.disk.open("seg.log", { create: true });
    await file.writeAt(0, bytes);
    await file.sync();
    try {
      return await body(file, node.disk);
    } finally {
      file.close();
    }
  });
}

Deno.test("SegmentIndex.add() keeps one offset entry per intervalBytes, starting with the first batch", () => {
  const idx = new SegmentIndex(250);
  // Ten batches of 100 bytes at relative offsets 0, 2, 4, ...
  for (let i = 0; i < 10; i++) idx.add(i * 2, i * 100, 100, T0 + i);
  // An entry, then one once 250 bytes have gone by since it: batches 0, 3, 6, 9.
  assert.deepEqual(idx.offsets, [0, 6, 12, 18]);
  assert.deepEqual(idx.positions, [0, 300, 600, 900]);
});

Deno.test("SegmentIndex.lookup() returns the last entry at or before the offset", () => {
  const idx = new SegmentIndex(250);
  for (let i = 0; i < 10; i++) idx.add(i * 2, i * 100, 100, T0 + i);
  assert.deepEqual(idx.lookup(0), { rel: 0, position: 0 });
  assert.deepEqual(idx.lookup(5), { rel: 0, position: 0 });
  assert.deepEqual(idx.lookup(6), { rel: 6, position: 300 });
  assert.deepEqual(idx.lookup(17), { rel: 12, position: 600 });
  assert.deepEqual(idx.lookup(1_000), { rel: 18, position: 900 });
  assert.deepEqual(new SegmentIndex(250).lookup(7), { rel: 0, position: 0 });
});

Deno.test("SegmentIndex.offsetForTime() finds the first batch whose max timestamp reaches the time", () => {
  const idx = new SegmentIndex(1);
  // Max timestamps 10, 30, 20 (a late batch), 40: the time index keeps only the rising ones.
  const maxTs = [10, 30, 20, 40];
  maxTs.forEach((t, i) => idx.add(i * 5, i * 100, 100, T0 + t));
  assert.deepEqual(idx.times, [T0 + 10, T0 + 30, T0 + 40]);
  assert.equal(idx.offsetForTime(T0), 0);
  assert.equal(idx.offsetForTime(T0 + 10), 0);
  assert.equal(idx.offsetForTime(T0 + 11), 5);
  // The batch at 10 (max 20) is not the first to reach 20: the one at 5 (max 30) is.
  assert.equal(idx.offsetForTime(T0 + 20), 5);
  assert.equal(idx.offsetForTime(T0 + 31), 15);
  assert.equal(idx.offsetForTime(T0 + 41), null);
});

/** An index built from batches of the given sizes and timestamp steps. */
function indexOf(interval: number, batches: { size: number; records: number; ts: number }[]) {
  const idx = new SegmentIndex(interval);
  let pos = 0;
  let rel = 0;
  for (const b of batches) {
    idx.add(rel, pos, b.size, b.ts);
    pos += b.size;
    rel += b.records;
  }
  return { idx, sizeBytes: pos };
}

const batchesArb = fc.array(
  fc.record({
    size: fc.integer({ min: 61, max: 5_000 }),
    records: fc.integer({ min: 1, max: 50 }),
    ts: fc.integer({ min: 0, max: 2 ** 45 }),
  }, { noNullPrototype: true }),
  { minLength: 1, maxLength: 60 },
);

Deno.test("SegmentIndex.decode() restores what encodeOffsets() and encodeTimes() wrote", () => {
  fc.assert(
    fc.property(batchesArb, fc.integer({ min: 1, max: 20_000 }), (batches, interval) => {
      const { idx, sizeBytes } = indexOf(interval, batches);
      const back = SegmentIndex.decode(idx.encodeOffsets(), idx.encodeTimes(), interval, sizeBytes);
      assert.ok(back !== null);
      assert.deepEqual(back.offsets, idx.offsets);
      assert.deepEqual(back.positions, idx.positions);
      assert.deepEqual(back.times, idx.times);
      assert.deepEqual(back.timeOffsets, idx.timeOffsets);
    }),
  );
});

Deno.test("SegmentIndex.decode() refuses an index file with any one bit flipped or cut short", () => {
  fc.assert(
    fc.property(
      batchesArb,
      fc.boolean(),
      fc.nat(),
      fc.nat(7),
      fc.boolean(),
      (batches, which, at, bit, cut) => {
        const { idx, sizeBytes } = indexOf(100, batches);
        const files = [idx.encodeOffsets(), idx.encodeTimes()];
        const target = files[which ? 0 : 1] as Uint8Array;
        const i = which ? 0 : 1;
        if (cut) {
          files[i] = target.subarray(0, at % target.length);
        } else {
          const damaged = target.slice();
          damaged[at % damaged.length] = (damaged[at % damaged.length] as number) ^ (1 << bit);
          files[i] = damaged;
        }
        const back = SegmentIndex.decode(
          files[0] as Uint8Array,
          files[1] as Uint8Array,
          100,
          sizeBytes,
        );
        assert.equal(back, null);
      },
    ),
  );
});

Deno.test("SegmentIndex.decode() refuses entries that point past the segment or go backwards", () => {
  const { idx, sizeBytes } = indexOf(1, [
    { size: 100, records: 1, ts: T0 },
    { size: 100, records: 1, ts: T0 + 1 },
    { size: 100, records: 1, ts: T0 + 2 },
  ]);
  const offsets = idx.encodeOffsets();
  const times = idx.encodeTimes();
  assert.ok(SegmentIndex.decode(offsets, times, 1, sizeBytes) !== null);
  // The segment is shorter than the index says (cut after the index was written).
  assert.equal(SegmentIndex.decode(offsets, times, 1, 200), null);

  const backwards = new SegmentIndex(1);
  backwards.offsets.push(0, 5, 3);
  backwards.positions.push(0, 100, 200);
  assert.equal(SegmentIndex.decode(backwards.encodeOffsets(), times, 1, sizeBytes), null);
  const samePosition = new SegmentIndex(1);
  samePosition.offsets.push(0, 1);
  samePosition.positions.push(0, 0);
  assert.equal(SegmentIndex.decode(samePosition.encodeOffsets(), times, 1, sizeBytes), null);
});

Deno.test("scanSegment() accepts every whole batch and indexes them as appends would", async () => {
  const layout = segmentBytes(100, 12);
  const scan = await withSegmentFile(1, layout.bytes, (f) => scanSegment(f, 100, 150, 2));
  assert.equal(scan.stoppedBecause, null);
  assert.equal(scan.validBytes, layout.bytes.length);
  assert.equal(scan.nextOffset, layout.nextOffset);
  assert.equal(scan.firstTimestamp, T0);
  assert.equal(scan.maxTimestamp, (layout.batches.at(-1) as { maxTs: number }).maxTs);
  assert.deepEqual(
    scan.batches,
    layout.batches.map(({ pos, size, base }) => ({ pos, size, base })),
  );
  const idx = new SegmentIndex(150);
  for (const b of layout.batches) idx.add(b.base - 100, b.pos, b.size, b.maxTs);
  assert.deepEqual(scan.index.encodeOffsets(), idx.encodeOffsets());
  assert.deepEqual(scan.index.encodeTimes(), idx.encodeTimes());
});

Deno.test("scanSegment() of an empty segment finds nothing and starts at the base offset", async () => {
  const scan = await withSegmentFile(1, new Uint8Array(0), (f) => scanSegment(f, 7, 100, 2));
  assert.equal(scan.validBytes, 0);
  assert.equal(scan.nextOffset, 7);
  assert.equal(scan.firstTimestamp, null);
  assert.equal(scan.stoppedBecause, null);
});

Deno.test("scanSegment() stops at a torn last batch and keeps the whole ones before it", async () => {
  const layout = segmentBytes(0, 6);
  const last = layout.batches.at(-1) as Layout["batches"][number];
  for (const cut of [1, 20, 61, last.size - 1]) {
    const torn = layout.bytes.subarray(0, last.pos + cut);
    const scan = await withSegmentFile(cut, torn, (f) => scanSegment(f, 0, 100, 2));
    assert.equal(scan.validBytes, last.pos, `cut at ${cut}`);
    assert.equal(scan.nextOffset, last.base);
    assert.equal(scan.batches.length, 5);
    assert.ok(scan.stoppedBecause !== null);
  }
});

Deno.test("scanSegment() stops at zeros, a flipped bit, or a base offset that does not continue", async () => {
  const layout = segmentBytes(0, 6);
  const third = layout.batches[2] as Layout["batches"][number];
  const cases: [string, Uint8Array, RegExp][] = [];
  const zeros = new Uint8Array(layout.bytes.length + 300);
  zeros.set(layout.bytes);
  cases.push(["zeros after the last batch", zeros, /no batch header/]);
  const flipped = layout.bytes.slice();
  flipped[third.pos + 70] = (flipped[third.pos + 70] as number) ^ 4;
  cases.push(["a flipped record byte", flipped, /corrupt/]);
  const skipped = layout.bytes.slice();
  setBaseOffset(skipped, third.pos, third.base + 1);
  cases.push(["a base offset that skips one", skipped, /base offset/]);
  for (const [what, bytes, why] of cases) {
    const scan = await withSegmentFile(1, bytes, (f) => scanSegment(f, 0, 100, 2));
    const expectedBytes = what.startsWith("zeros") ? layout.bytes.length : third.pos;
    assert.equal(scan.validBytes, expectedBytes, what);
    assert.match(scan.stoppedBecause ?? "", why, what);
  }
});

Deno.test("scanSegment() reads through transient bit flips without losing a batch", async () => {
  const layout = segmentBytes(0, 30);
  let flips = 0;
  for (let seed = 1; seed <= 10; seed++) {
    const scan = await withSegmentFile(seed, layout.bytes, async (f, disk) => {
      const s = await scanSegment(f, 0, 100, 2);
      flips += disk.stats.readFlips;
      return s;
    }, { readFlipProb: 0.05 });
    assert.equal(scan.stoppedBecause, null, `seed ${seed}`);
    assert.equal(scan.nextOffset, layout.nextOffset, `seed ${seed}`);
  }
  assert.ok(flips > 0, "no read was flipped: the test proves nothing");
});

Deno.test("readVerifiedBatch() returns the stored bytes through transient flips", async () => {
  const layout = segmentBytes(0, 4);
  const b = layout.batches[1] as Layout["batches"][number];
  const want = layout.bytes.slice(b.pos, b.pos + b.size);
  let flips = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const got = await withSegmentFile(seed, layout.bytes, async (f, disk) => {
      const bytes = await readVerifiedBatch(f, b, 12);
      flips += disk.stats.readFlips;
      return bytes;
    }, { readFlipProb: 0.3 });
    assert.deepEqual(got, want, `seed ${seed}`);
  }
  assert.ok(flips > 0, "no read was flipped: the test proves nothing");
});

Deno.test("readVerifiedBatch() refuses a batch corrupted at rest, or stored at another offset", async () => {
  const layout = segmentBytes(0, 4);
  const b = layout.batches[1] as Layout["batches"][number];
  await withSegmentFile(1, layout.bytes, async (f, disk) => {
    await assert.rejects(readVerifiedBatch(f, { ...b, base: b.base + 1 }, 2), /read back intact/);
    disk.corruptAtRest("seg.log", b.pos + b.size - 1);
    await assert.rejects(readVerifiedBatch(f, b, 2), /read back intact/);
  });
  // The magic byte lies outside the CRC: a damaged one must be refused too (recovery once copied
  // such a batch into the new segment, and the next scan then truncated acknowledged data).
  await withSegmentFile(2, layout.bytes, async (f, disk) => {
    disk.corruptAtRest("seg.log", b.pos + 16);
    await assert.rejects(readVerifiedBatch(f, b, 2), /read back intact/);
  });
});

Deno.test("scanSegment() does not follow a length flipped on the read that passes the checksum", async () => {
  // The length sits outside the checksum: a scan that took it from the whole-batch read (not the
  // header read that sized it) would go on from a wrong byte and stop at a healthy batch.
  const layout = segmentBytes(0, 10);
  // A batch whose length, its lowest set bit cleared, still reads as a whole header's worth.
  const shorter = (size: number) => ((size - 12) & (size - 13)) + 12;
  const victim = layout.batches.find((b) => shorter(b.size) >= 61 && b.size < 256);
  assert.ok(victim !== undefined);
  const scan = await withSegmentFile(1, layout.bytes, async (f) => {
    let flipped = false;
    const flipping: File = {
      readAt: async (pos, buf) => {
        const n = await f.readAt(pos, buf);
        if (!flipped && pos === victim.pos && buf.length === victim.size) {
          flipped = true;
          // Shorter than the buffer, so it still "fits" the bytes read.
          buf[11] = shorter(victim.size) - 12;
        }
        return n;
      },
      writeAt: (pos, bytes) => f.writeAt(pos, bytes),
      sync: () => f.sync(),
      size: () => f.size(),
      truncate: (n) => f.truncate(n),
      close: () => f.close(),
    };
    return await scanSegment(flipping, 0, 100, 2);
  });
  assert.equal(scan.stoppedBecause, null);
  assert.equal(scan.nextOffset, layout.nextOffset);
});
