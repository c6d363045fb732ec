import assert from "node:assert/strict";
import fc from "fast-check";
import {
  anyBatchCompressed,
  BATCH_HEADER_BYTES,
  BATCH_MAGIC,
  batchesIn,
  type BatchLimits,
  CorruptBatchError,
  decodeBatch,
  encodeBatch,
  readBatchHeader,
  type RecordInput,
  type RecordOut,
  setBaseOffset,
  validateBatch,
} from "./batch.ts";
import { Codec, CODEC_NAMES, type CodecId } from "./compression.ts";
import { crc32c } from "./crc32c.ts";
import { ErrorCode, GregorError } from "./errors.ts";
import { Writer } from "./wire.ts";

const CODECS: readonly CodecId[] = CODEC_NAMES.map((n) => Codec[n]);
const LIMITS: BatchLimits = { recordsBytesMax: 1024 * 1024 };
const T0 = 1_700_000_000_000;
const enc = new TextEncoder();

const bytesArb = fc.option(fc.uint8Array({ maxLength: 40 }), { nil: null });
const headerArb = fc.record(
  { key: fc.string({ unit: "binary", maxLength: 12 }), value: bytesArb },
  { noNullPrototype: true },
);
const recordArb = (first: number): fc.Arbitrary<RecordInput> =>
  fc.record({
    key: fc.option(bytesArb, { nil: undefined }),
    value: bytesArb,
    headers: fc.option(fc.array(headerArb, { maxLength: 3 }), { nil: undefined }),
    timestamp: fc.integer({ min: first - 2 ** 31, max: first + 2 ** 31 }),
  }, { noNullPrototype: true, requiredKeys: ["value", "timestamp"] });
const recordsArb: fc.Arbitrary<RecordInput[]> = fc.integer({ min: 0, max: 2 ** 44 }).chain((
  first,
) => fc.array(recordArb(first), { minLength: 1, maxLength: 8 }));

function sample(): RecordInput[] {
  return [
    {
      key: enc.encode("customer-17"),
      value: enc.encode('{"item":"book"}'),
      headers: [{ key: "trace", value: enc.encode("ab") }, { key: "none", value: null }],
      timestamp: T0,
    },
    { key: null, value: null, timestamp: T0 + 5 },
    { value: enc.encode("x"), timestamp: T0 - 3 },
  ];
}

/** What decodeBatch must return for `records` stored at `baseOffset`. */
function expected(records: readonly RecordInput[], baseOffset: number): RecordOut[] {
  return records.map((r, i) => ({
    offset: baseOffset + i,
    timestamp: r.timestamp,
    key: r.key ?? null,
    value: r.value,
    headers: (r.headers ?? []).map((h) => ({ key: h.key, value: h.value })),
  }));
}

/** Rewrites the CRC after a deliberate change, so the check under test is not the CRC's. */
function refreshCrc(batch: Uint8Array): Uint8Array {
  new DataView(batch.buffer, batch.byteOffset).setUint32(17, crc32c(batch.subarray(21)));
  return batch;
}

/** A batch header written field by field from the Kafka v2 layout, around a records section. */
function rawBatch(
  records: Uint8Array,
  fields: {
    count: number;
    lastOffsetDelta?: number;
    attributes?: number;
    baseOffset?: number;
    maxTimestamp?: number;
  },
): Uint8Array {
  const w = new Writer()
    .i64(fields.baseOffset ?? 0)
    .i32(BATCH_HEADER_BYTES - 12 + records.length)
    .i32(-1)
    .u8(BATCH_MAGIC)
    .u32(0)
    .i16(fields.attributes ?? 0)
    .i32(fields.lastOffsetDelta ?? fields.count - 1)
    .i64(T0)
    .i64(fields.maxTimestamp ?? T0)
    .i64(-1)
    .i16(-1)
    .i32(-1)
    .i32(fields.count)
    .raw(records);
  return refreshCrc(w.finish().slice());
}

/** One record's bytes as Kafka v2 writes them, with the parts given raw. */
function rawRecord(
  parts: { offsetDelta: number; key?: number[]; headers?: Uint8Array; extra?: number },
): Uint8Array {
  const inner = new Writer().u8(0).varint(0).varint(parts.offsetDelta);
  if (parts.key === undefined) inner.varint(-1);
  else inner.varint(parts.key.length).raw(new Uint8Array(parts.key));
  inner.varint(1).raw(new Uint8Array([0x76]));
  if (parts.headers === undefined) inner.varint(0);
  else inner.raw(parts.headers);
  for (let i = 0; i < (parts.extra ?? 0); i++) inner.u8(0);
  const body = inner.finish();
  return new Writer().varint(body.length).raw(body).finish().slice();
}

function cat(...parts: Uint8Array[]): Uint8Array {
  const w = new Writer();
  for (const p of parts) w.raw(p);
  return w.finish().slice();
}

function assertCorrupt(fn: () => unknown, what: string): void {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof CorruptBatchError, `${what}: expected CorruptBatchError, got ${err}`);
    assert.equal(err.code, ErrorCode.CORRUPT_BATCH);
    return true;
  });
}

/** Hostile input may be accepted or refused, but only ever refused with a GregorError. */
function survives(batch: Uint8Array): void {
  try {
    validateBatch(batch, LIMITS);
    decodeBatch(batch, 0, LIMITS);
  } catch (err) {
    if (!(err instanceof GregorError)) throw err;
  }
}

Deno.test("encodeBatch() and decodeBatch() round-trip keys, values, headers, nulls and timestamps for every codec", () => {
  fc.assert(
    fc.property(recordsArb, fc.constantFrom(...CODECS), (records, codec) => {
      const batch = encodeBatch(records, { codec });
      const h = validateBatch(batch, LIMITS);
      assert.equal(h.codec, codec);
      assert.equal(h.recordCount, records.length);
      assert.equal(h.lastOffsetDelta, records.length - 1);
      assert.equal(h.firstTimestamp, records[0]!.timestamp);
      assert.equal(h.maxTimestamp, Math.max(...records.map((r) => r.timestamp)));
      assert.equal(h.sizeBytes, batch.length);
      assert.deepEqual(decodeBatch(batch, 0, LIMITS), expected(records, 0));
    }),
    { numRuns: 300 },
  );
});

Deno.test("encodeBatch() writes the Kafka v2 header layout with -1 for unused producer fields", () => {
  const records = sample();
  const batch = encodeBatch(records, { codec: Codec.none, baseOffset: 7 });
  const want = rawBatch(batch.subarray(BATCH_HEADER_BYTES), {
    count: 3,
    baseOffset: 7,
    maxTimestamp: T0 + 5,
  });
  assert.deepEqual(batch, want);
  const h = readBatchHeader(batch);
  assert.deepEqual(h, {
    baseOffset: 7,
    sizeBytes: batch.length,
    partitionLeaderEpoch: -1,
    crc: crc32c(batch.subarray(21)),
    attributes: 0,
    codec: 0,
    lastOffsetDelta: 2,
    firstTimestamp: T0,
    maxTimestamp: T0 + 5,
    producerId: -1,
    producerEpoch: -1,
    baseSequence: -1,
    recordCount: 3,
  });
  const dv = new DataView(batch.buffer, batch.byteOffset);
  assert.equal(dv.getInt32(8), batch.length - 12);
  assert.equal(dv.getInt8(16), 2);
});

Deno.test("encodeBatch() writes producer id, epoch and base sequence when given", () => {
  const batch = encodeBatch(sample(), {
    codec: Codec.lz4,
    producerId: 2 ** 40,
    producerEpoch: 3,
    baseSequence: 99,
  });
  const h = validateBatch(batch, LIMITS);
  assert.equal(h.producerId, 2 ** 40);
  assert.equal(h.producerEpoch, 3);
  assert.equal(h.baseSequence, 99);
  assert.equal(h.attributes, Codec.lz4);
});

Deno.test("encodeBatch() refuses an empty batch", () => {
  assert.throws(() => encodeBatch([]), RangeError);
});

Deno.test("setBaseOffset() keeps the CRC valid and decodeBatch() reports the new offsets", () => {
  fc.assert(
    fc.property(
      recordsArb,
      fc.constantFrom(...CODECS),
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 8 }),
      (records, codec, base) => {
        const batch = encodeBatch(records, { codec });
        const crc = readBatchHeader(batch).crc;
        setBaseOffset(batch, 0, base);
        const h = validateBatch(batch, LIMITS);
        assert.equal(h.baseOffset, base);
        assert.equal(h.crc, crc);
        assert.deepEqual(
          decodeBatch(batch, 0, LIMITS).map((r) => r.offset),
          records.map((_, i) => base + i),
        );
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("setBaseOffset() and decodeBatch() address a batch in the middle of a buffer", () => {
  const a = encodeBatch(sample());
  const b = encodeBatch(sample().slice(0, 2), { codec: Codec.snappy });
  const both = cat(a, b);
  setBaseOffset(both, 0, 40);
  setBaseOffset(both, a.length, 43);
  assert.deepEqual(
    [...batchesIn(both)].map((x) => [x.off, x.header.baseOffset, x.header.recordCount]),
    [
      [0, 40, 3],
      [a.length, 43, 2],
    ],
  );
  assert.deepEqual(decodeBatch(both, a.length, LIMITS), expected(sample().slice(0, 2), 43));
  assert.deepEqual(decodeBatch(both, 0, LIMITS), expected(sample(), 40));
});

Deno.test("validateBatch() detects any single bit flip in the batch length or from the magic byte on", () => {
  for (const codec of CODECS) {
    const good = encodeBatch(sample(), { codec });
    const bits: number[] = [];
    for (let bit = 8 * 8; bit < good.length * 8; bit++) {
      if (bit < 12 * 8 || bit >= 16 * 8) bits.push(bit);
    }
    for (const bit of bits) {
      const batch = good.slice();
      batch[bit >> 3]! ^= 1 << (bit & 7);
      assertCorrupt(() => validateBatch(batch, LIMITS), `${CODEC_NAMES[codec]} bit ${bit}`);
    }
  }
});

Deno.test("validateBatch() ignores the base offset and leader epoch, which the CRC does not cover", () => {
  const batch = encodeBatch(sample(), { codec: Codec.gzip });
  new DataView(batch.buffer, batch.byteOffset).setInt32(12, 5);
  setBaseOffset(batch, 0, 1234);
  const h = validateBatch(batch, LIMITS);
  assert.equal(h.partitionLeaderEpoch, 5);
  assert.equal(h.baseOffset, 1234);
});

Deno.test("validateBatch() rejects a batch whose records section is over recordsBytesMax, for every codec", () => {
  const plain = encodeBatch(sample());
  const recordsBytes = plain.length - BATCH_HEADER_BYTES;
  for (const codec of CODECS) {
    const batch = encodeBatch(sample(), { codec });
    assert.equal(validateBatch(batch, { recordsBytesMax: recordsBytes }).recordCount, 3);
    assertCorrupt(
      () => validateBatch(batch, { recordsBytesMax: recordsBytes - 1 }),
      CODEC_NAMES[codec]!,
    );
    assertCorrupt(
      () => decodeBatch(batch, 0, { recordsBytesMax: recordsBytes - 1 }),
      CODEC_NAMES[codec]!,
    );
  }
});

Deno.test("validateBatch() rejects a wrong lastOffsetDelta or recordCount even with a valid CRC", () => {
  const good = encodeBatch(sample());
  const patch = (lastOffsetDelta: number, count: number): Uint8Array => {
    const b = good.slice();
    const dv = new DataView(b.buffer);
    dv.setInt32(23, lastOffsetDelta);
    dv.setInt32(57, count);
    return refreshCrc(b);
  };
  const cases: [number, number][] = [[3, 3], [1, 3], [2, 4], [3, 4], [1, 2], [-1, 0], [-2, -1], [
    0x7fffffff - 1,
    0x7fffffff,
  ]];
  for (const [delta, count] of cases) {
    assertCorrupt(
      () => validateBatch(patch(delta, count), LIMITS),
      `lastOffsetDelta ${delta}, count ${count}`,
    );
  }
  assert.equal(validateBatch(patch(2, 3), LIMITS).recordCount, 3);
});

Deno.test("validateBatch() rejects records whose offset deltas are not 0..n-1", () => {
  const batch = rawBatch(cat(rawRecord({ offsetDelta: 0 }), rawRecord({ offsetDelta: 2 })), {
    count: 2,
  });
  assertCorrupt(() => validateBatch(batch, LIMITS), "delta 2 at index 1");
  const ok = rawBatch(cat(rawRecord({ offsetDelta: 0 }), rawRecord({ offsetDelta: 1 })), {
    count: 2,
  });
  assert.deepEqual(decodeBatch(ok, 0, LIMITS).map((r) => r.value), [
    new Uint8Array([0x76]),
    new Uint8Array([0x76]),
  ]);
});

Deno.test("validateBatch() rejects a null or non-UTF-8 header key", () => {
  const nullKey = new Writer().varint(1).varint(-1).varint(-1).finish().slice();
  assertCorrupt(
    () =>
      validateBatch(
        rawBatch(rawRecord({ offsetDelta: 0, headers: nullKey }), { count: 1 }),
        LIMITS,
      ),
    "null key",
  );
  const badUtf8 = new Writer().varint(1).varint(1).u8(0xff).varint(-1).finish().slice();
  assertCorrupt(
    () =>
      validateBatch(
        rawBatch(rawRecord({ offsetDelta: 0, headers: badUtf8 }), { count: 1 }),
        LIMITS,
      ),
    "0xff",
  );
});

Deno.test("decodeBatch() keeps a leading U+FEFF in a header key", () => {
  const batch = encodeBatch([{
    value: null,
    timestamp: T0,
    headers: [{ key: "\uFEFFtrace", value: null }],
  }]);
  assert.equal(decodeBatch(batch, 0, LIMITS)[0]!.headers[0]!.key, "\uFEFFtrace");
});

Deno.test("validateBatch() rejects bytes left inside a record or after the last record", () => {
  assertCorrupt(
    () => validateBatch(rawBatch(rawRecord({ offsetDelta: 0, extra: 1 }), { count: 1 }), LIMITS),
    "inside",
  );
  assertCorrupt(
    () =>
      validateBatch(
        rawBatch(cat(rawRecord({ offsetDelta: 0 }), new Uint8Array([0])), { count: 1 }),
        LIMITS,
      ),
    "after",
  );
});

Deno.test("validateBatch() rejects a record length past the records section", () => {
  const rec = rawRecord({ offsetDelta: 0 });
  rec[0] = rec[0]! + 2;
  assertCorrupt(() => validateBatch(rawBatch(rec, { count: 1 }), LIMITS), "record length");
});

Deno.test("validateBatch() rejects unknown codec ids 5 to 7 as CORRUPT_BATCH", () => {
  for (const codec of [5, 6, 7]) {
    assertCorrupt(
      () =>
        validateBatch(
          rawBatch(rawRecord({ offsetDelta: 0 }), { count: 1, attributes: codec }),
          LIMITS,
        ),
      `${codec}`,
    );
  }
});

Deno.test("validateBatch() ignores attribute bits above the codec", () => {
  const h = validateBatch(
    rawBatch(rawRecord({ offsetDelta: 0 }), { count: 1, attributes: 0x0008 | 0x0010 }),
    LIMITS,
  );
  assert.equal(h.codec, 0);
  assert.equal(h.attributes, 0x18);
});

Deno.test("validateBatch() rejects every truncation and any trailing byte", () => {
  const good = encodeBatch(sample(), { codec: Codec.zstd });
  for (let k = 0; k < good.length; k++) {
    assertCorrupt(() => validateBatch(good.slice(0, k), LIMITS), `prefix ${k}`);
  }
  assertCorrupt(() => validateBatch(cat(good, new Uint8Array([0])), LIMITS), "trailing byte");
});

Deno.test("readBatchHeader() rejects a wrong magic byte and a length that cannot be a batch", () => {
  const b = encodeBatch(sample());
  const dv = new DataView(b.buffer, b.byteOffset);
  dv.setInt8(16, 1);
  assertCorrupt(() => readBatchHeader(b), "magic 1");
  dv.setInt8(16, 2);
  for (const len of [-1, 0, 48, -0x80000000]) {
    dv.setInt32(8, len);
    assertCorrupt(() => readBatchHeader(b), `length ${len}`);
  }
});

Deno.test("validateBatch() throws only CorruptBatchError for any random bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      assertCorrupt(() => validateBatch(bytes, LIMITS), "random bytes");
    }),
    { numRuns: 1000 },
  );
});

Deno.test("validateBatch() never crashes on a well-framed batch of random records for any codec id", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 200 }),
      fc.integer({ min: 0, max: 7 }),
      fc.integer({ min: -1, max: 6 }),
      (records, codec, count) => {
        survives(rawBatch(records, { count, attributes: codec }));
      },
    ),
    { numRuns: 2000 },
  );
});

Deno.test("validateBatch() never crashes on a valid batch with random changes and a recomputed CRC", () => {
  fc.assert(
    fc.property(
      recordsArb,
      fc.constantFrom(...CODECS),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 6,
      }),
      (records, codec, changes) => {
        const batch = encodeBatch(records, { codec }).slice();
        const body = batch.length - BATCH_HEADER_BYTES;
        for (const [at, v] of changes) batch[BATCH_HEADER_BYTES + (at % body)] = v;
        survives(refreshCrc(batch));
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("batchesIn() walks batches back to back and fails on a cut-off last batch", () => {
  const a = encodeBatch(sample());
  const b = encodeBatch(sample(), { codec: Codec.gzip });
  const both = cat(a, b);
  assert.deepEqual([...batchesIn(both)].map((x) => x.off), [0, a.length]);
  assert.deepEqual([...batchesIn(new Uint8Array(0))], []);
  assertCorrupt(() => [...batchesIn(both.subarray(0, both.length - 1))], "cut-off");
});

Deno.test("anyBatchCompressed() finds a compressed batch among plain ones", () => {
  const records = [{ key: null, value: new TextEncoder().encode("v"), timestamp: 1, headers: [] }];
  const plain = encodeBatch(records);
  const lz4 = encodeBatch(records, { codec: Codec.lz4 });
  assert.equal(anyBatchCompressed(new Uint8Array([...plain, ...plain])), false);
  assert.equal(anyBatchCompressed(new Uint8Array([...plain, ...lz4])), true);
  assert.equal(anyBatchCompressed(lz4), true);
  assert.equal(anyBatchCompressed(new Uint8Array(0)), false);
  // A length too short to be a batch ends the search rather than looping.
  const bad = plain.slice();
  new DataView(bad.buffer).setInt32(8, 0);
  assert.equal(anyBatchCompressed(new Uint8Array([...bad, ...lz4])), false);
});
