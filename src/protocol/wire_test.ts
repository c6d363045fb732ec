import assert from "node:assert/strict";
import fc from "fast-check";
import { MalformedError } from "./errors.ts";
import { Reader, STRING_BYTES_MAX, varintBytes, Writer } from "./wire.ts";

const SAFE_MAX = Number.MAX_SAFE_INTEGER;
const SAFE_EDGES = [
  0,
  1,
  -1,
  63,
  -64,
  64,
  -65,
  2 ** 31,
  -(2 ** 31),
  2 ** 32,
  -(2 ** 32),
  2 ** 52,
  -(2 ** 52),
  2 ** 52 + 1,
  -(2 ** 52) - 1,
  SAFE_MAX - 1,
  -SAFE_MAX + 1,
  SAFE_MAX,
  -SAFE_MAX,
];

/** One primitive write and the value it must read back as. */
type Op =
  | { kind: "u8" | "u16" | "i16" | "u32" | "i32" | "i64" | "varint"; v: number }
  | { kind: "string"; v: string }
  | { kind: "bytes"; v: Uint8Array | null }
  | { kind: "raw"; v: Uint8Array };

const safeInt = fc.oneof(fc.maxSafeInteger(), fc.constantFrom(...SAFE_EDGES));

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("u8" as const), v: fc.integer({ min: 0, max: 0xff }) }),
  fc.record({ kind: fc.constant("u16" as const), v: fc.integer({ min: 0, max: 0xffff }) }),
  fc.record({ kind: fc.constant("i16" as const), v: fc.integer({ min: -0x8000, max: 0x7fff }) }),
  fc.record({ kind: fc.constant("u32" as const), v: fc.integer({ min: 0, max: 0xffffffff }) }),
  fc.record({
    kind: fc.constant("i32" as const),
    v: fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff }),
  }),
  fc.record({ kind: fc.constant("i64" as const), v: safeInt }),
  fc.record({ kind: fc.constant("varint" as const), v: safeInt }),
  fc.record({
    kind: fc.constant("string" as const),
    v: fc.string({ unit: "binary", maxLength: 40 }),
  }),
  fc.record({
    kind: fc.constant("bytes" as const),
    v: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: null }),
  }),
  fc.record({ kind: fc.constant("raw" as const), v: fc.uint8Array({ maxLength: 40 }) }),
);

function writeOps(ops: readonly Op[]): Uint8Array {
  const w = new Writer(1);
  for (const op of ops) {
    switch (op.kind) {
      case "string":
        w.string(op.v);
        break;
      case "bytes":
        w.bytes(op.v);
        break;
      case "raw":
        w.raw(op.v);
        break;
      default:
        w[op.kind](op.v);
    }
  }
  return w.finish();
}

function readOps(r: Reader, ops: readonly Op[]): unknown[] {
  return ops.map((op) => {
    switch (op.kind) {
      case "string":
        return r.string();
      case "bytes":
        return r.bytes();
      case "raw":
        return r.raw(op.v.length);
      default:
        return r[op.kind]();
    }
  });
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Kafka's zigzag varint, computed with BigInt as an independent reference. */
function referenceVarint(v: number): Uint8Array {
  const x = BigInt(v);
  let z = x >= 0n ? x << 1n : (-x << 1n) - 1n;
  const out: number[] = [];
  while (z >= 0x80n) {
    out.push(Number(z & 0x7fn) | 0x80);
    z >>= 7n;
  }
  out.push(Number(z));
  return new Uint8Array(out);
}

function assertMalformed(fn: () => unknown, what: string): void {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof MalformedError, `${what}: expected MalformedError, got ${err}`);
    return true;
  });
}

Deno.test("Writer and Reader round-trip every primitive in any sequence", () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 30 }), (ops) => {
      const bytes = writeOps(ops);
      const r = new Reader(bytes);
      assert.deepEqual(readOps(r, ops), ops.map((op) => op.v));
      assert.equal(r.remaining, 0);
      r.end("the sequence");
    }),
    { numRuns: 500 },
  );
});

Deno.test("Reader throws MalformedError, never RangeError, on every truncation of an encoding", () => {
  fc.assert(
    fc.property(fc.array(opArb, { minLength: 1, maxLength: 12 }), (ops) => {
      const bytes = writeOps(ops);
      for (let k = 0; k < bytes.length; k++) {
        // Both a buffer that really ends and one whose Reader is told to stop early.
        assertMalformed(() => readOps(new Reader(bytes.slice(0, k)), ops), `prefix of ${k} bytes`);
        assertMalformed(() => readOps(new Reader(bytes, 0, k), ops), `window of ${k} bytes`);
      }
    }),
    { numRuns: 200 },
  );
});

Deno.test("Writer.varint() matches Kafka's zigzag encoding over the whole safe integer range", () => {
  for (const v of SAFE_EDGES) {
    assert.equal(hex(new Writer().varint(v).finish()), hex(referenceVarint(v)), `${v}`);
  }
  fc.assert(
    fc.property(safeInt, (v) => {
      const bytes = new Writer().varint(v).finish();
      assert.equal(hex(bytes), hex(referenceVarint(v)));
      assert.equal(new Reader(bytes).varint(), v);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("Writer.varint() writes the known encodings of small and extreme values", () => {
  const cases: [number, string][] = [
    [0, "00"],
    [-1, "01"],
    [1, "02"],
    [63, "7e"],
    [-64, "7f"],
    [64, "8001"],
    [300, "d804"],
    [SAFE_MAX, "feffffffffffff1f"],
    [-SAFE_MAX, "fdffffffffffff1f"],
  ];
  for (const [v, want] of cases) {
    assert.equal(hex(new Writer().varint(v).finish()), want, `${v}`);
    assert.equal(
      new Reader(Uint8Array.from(want.match(/../g)!, (h) => parseInt(h, 16))).varint(),
      v,
    );
  }
});

Deno.test("Reader.varint() accepts an over-long but in-range encoding of a value", () => {
  // 0 written in 3 bytes: legal for a decoder, though encoders write the shortest form.
  assert.equal(new Reader(new Uint8Array([0x80, 0x80, 0x00])).varint(), 0);
});

Deno.test("Reader.varint() rejects values outside the safe integer range and encodings over 10 bytes", () => {
  // zigzag 2^54 = 2 * 2^53: one past the largest safe positive value (encoded as 2^54 - 2).
  const justOver = new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
  assertMalformed(() => new Reader(justOver).varint(), "2^53");
  // zigzag 2^54 - 1 = -2^53.
  const negOver = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f]);
  assertMalformed(() => new Reader(negOver).varint(), "-2^53");
  const maxU64 = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  assertMalformed(() => new Reader(maxU64).varint(), "2^64 - 1");
  const eleven = new Uint8Array(11).fill(0x80);
  eleven[10] = 0;
  assertMalformed(() => new Reader(eleven).varint(), "11 bytes");
});

Deno.test("Writer.varint() and Writer.i64() refuse numbers that are not safe integers", () => {
  for (const v of [2 ** 53, -(2 ** 53), 1.5, NaN, Infinity, -Infinity]) {
    assert.throws(() => new Writer().varint(v), RangeError, `varint ${v}`);
    assert.throws(() => new Writer().i64(v), RangeError, `i64 ${v}`);
  }
});

Deno.test("Writer.i64() writes two's complement big-endian at the edges of the safe range", () => {
  const cases: [number, string][] = [
    [0, "0000000000000000"],
    [-1, "ffffffffffffffff"],
    [1, "0000000000000001"],
    [2 ** 32, "0000000100000000"],
    [-(2 ** 32), "ffffffff00000000"],
    [SAFE_MAX, "001fffffffffffff"],
    [-SAFE_MAX, "ffe0000000000001"],
  ];
  for (const [v, want] of cases) {
    const bytes = new Writer().i64(v).finish();
    assert.equal(hex(bytes), want, `${v}`);
    assert.equal(new Reader(bytes).i64(), v);
  }
});

Deno.test("Reader.i64() rejects 64-bit values outside the safe integer range", () => {
  const cases = ["0020000000000000", "ffe0000000000000", "7fffffffffffffff", "8000000000000000"];
  for (const h of cases) {
    const bytes = Uint8Array.from(h.match(/../g)!, (x) => parseInt(x, 16));
    assertMalformed(() => new Reader(bytes).i64("base offset"), h);
  }
});

Deno.test("Writer.bytes(null) writes length 0xffffffff and Reader.bytes() reads it back as null", () => {
  const bytes = new Writer().bytes(null).bytes(new Uint8Array(0)).finish();
  assert.equal(hex(bytes), "ffffffff00000000");
  const r = new Reader(bytes);
  assert.equal(r.bytes(), null);
  assert.deepEqual(r.bytes(), new Uint8Array(0));
});

Deno.test("Writer.string() takes up to STRING_BYTES_MAX UTF-8 bytes and refuses more", () => {
  const longest = "é".repeat(STRING_BYTES_MAX / 2) + "a";
  assert.equal(new Reader(new Writer().string(longest).finish()).string(), longest);
  assert.throws(() => new Writer().string(longest + "a"), RangeError);
});

Deno.test("Reader.string() rejects invalid UTF-8 with MalformedError", () => {
  for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0x80]]) {
    const bytes = new Writer().u16(bad.length).raw(new Uint8Array(bad)).finish();
    assertMalformed(() => new Reader(bytes).string("client id"), hex(new Uint8Array(bad)));
  }
});

Deno.test("Reader reads a subarray relative to its own start and stops at the given end", () => {
  const backing = new Uint8Array([0xaa, 0x00, 0x01, 0x02, 0x03, 0xbb]);
  const view = backing.subarray(1, 5);
  assert.equal(new Reader(view).u32(), 0x00010203);
  const r = new Reader(backing, 1, 3);
  assert.equal(r.u16(), 0x0001);
  assertMalformed(() => r.u8(), "past end");
  assert.equal(r.pos, 3);
});

Deno.test("Reader.end() rejects unread bytes and names what they followed", () => {
  const r = new Reader(new Uint8Array([1, 2]));
  r.u8();
  assert.throws(
    () => r.end("PING"),
    (err) => err instanceof MalformedError && /after PING/.test(err.message),
  );
});

Deno.test("Reader.raw() rejects a negative length with MalformedError", () => {
  assertMalformed(() => new Reader(new Uint8Array(4)).raw(-1), "negative");
});

Deno.test("Writer.patchU32() and patchI32() overwrite bytes already written", () => {
  const w = new Writer(2).u32(0).i32(0).u8(7);
  w.patchU32(0, 0xdeadbeef);
  w.patchI32(4, -2);
  assert.equal(hex(w.finish()), "deadbeeffffffffe07");
  assert.equal(w.length, 9);
});

Deno.test("Reader.string() keeps a leading U+FEFF instead of stripping it as a byte order mark", () => {
  for (const s of ["\uFEFF", "\uFEFForders", "\uFEFF\uFEFF"]) {
    assert.equal(new Reader(new Writer().string(s).finish()).string(), s);
  }
});

Deno.test("varintBytes() predicts exactly how many bytes Writer.varint() writes", () => {
  fc.assert(
    fc.property(fc.maxSafeInteger(), (v) => {
      assert.equal(varintBytes(v), new Writer().varint(v).finish().length);
      assert.equal(varintBytes(-v), new Writer().varint(-v).finish().length);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("Writer.string() writes the UTF-8 bytes of any string, short ASCII ones included", () => {
  fc.assert(
    fc.property(
      fc.oneof(fc.string({ unit: "binary", maxLength: 80 }), fc.string({ maxLength: 80 })),
      (s) => {
        const body = new TextEncoder().encode(s);
        const want = new Uint8Array(2 + body.length);
        new DataView(want.buffer).setUint16(0, body.length);
        want.set(body, 2);
        const got = new Writer(1).string(s).finish();
        assert.deepEqual(got, want);
        assert.equal(new Reader(got).string(), s);
      },
    ),
  );
});
