import assert from "node:assert/strict";
import fc from "fast-check";
import { crc32c } from "./crc32c.ts";
import { ErrorCode } from "./errors.ts";
import {
  encodeFrame,
  Flag,
  type Frame,
  FRAME_PAYLOAD_BYTES_MAX_DEFAULT,
  FrameParser,
  HEADER_BYTES,
  MAGIC,
  type ParseResult,
  PROTOCOL_VERSION,
  writeHeader,
} from "./frame.ts";

const MAX = 1024;

interface FrameSpec {
  opcode: number;
  flags: number;
  correlationId: number;
  payload: Uint8Array;
}

const frameArb: fc.Arbitrary<FrameSpec> = fc.record({
  opcode: fc.integer({ min: 0, max: 0xffff }),
  flags: fc.integer({ min: 0, max: 0xff }),
  correlationId: fc.integer({ min: 0, max: 0xffffffff }),
  payload: fc.uint8Array({ maxLength: 200 }),
}, { noNullPrototype: true });

function encode(f: FrameSpec): Uint8Array {
  return encodeFrame(f.opcode, f.correlationId, f.payload, f.flags);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Every result until the parser needs more bytes (or fails). */
function drain(p: FrameParser): ParseResult[] {
  const out: ParseResult[] = [];
  for (;;) {
    const r = p.next();
    if (r.kind === "need") return out;
    out.push(r);
    if (r.kind === "error") return out;
  }
}

function spec(f: Frame): FrameSpec {
  assert.equal(f.version, PROTOCOL_VERSION);
  assert.equal(f.payloadLength, f.payload.length);
  return {
    opcode: f.opcode,
    flags: f.flags,
    correlationId: f.correlationId,
    payload: Uint8Array.from(f.payload),
  };
}

/** A header with any fields, its checksum recomputed so only the field under test is wrong. */
function header(
  fields: { version?: number; reserved?: number; payloadLength?: number; correlationId?: number },
): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  writeHeader(out, {
    version: fields.version ?? PROTOCOL_VERSION,
    flags: 0,
    opcode: 0x0002,
    correlationId: fields.correlationId ?? 9,
    payloadLength: fields.payloadLength ?? 0,
  });
  const dv = new DataView(out.buffer);
  dv.setUint16(6, fields.reserved ?? 0);
  dv.setUint32(16, crc32c(out.subarray(0, 16)));
  return out;
}

function parser(): FrameParser {
  return new FrameParser({ payloadBytesMax: MAX });
}

Deno.test("encodeFrame() lays out magic, version, flags, opcode, reserved, correlation id, length and CRC-32C", () => {
  const f = encodeFrame(0x0101, 0x01020304, new Uint8Array([0xaa, 0xbb]), Flag.RESPONSE);
  const dv = new DataView(f.buffer);
  assert.equal(f.length, HEADER_BYTES + 2);
  assert.equal(dv.getUint16(0), MAGIC);
  assert.deepEqual([...f.subarray(0, 2)], [0x47, 0x4d]);
  assert.equal(dv.getUint8(2), 1);
  assert.equal(dv.getUint8(3), Flag.RESPONSE);
  assert.equal(dv.getUint16(4), 0x0101);
  assert.equal(dv.getUint16(6), 0);
  assert.equal(dv.getUint32(8), 0x01020304);
  assert.equal(dv.getUint32(12), 2);
  assert.equal(dv.getUint32(16), crc32c(f.subarray(0, 16)));
  assert.deepEqual([...f.subarray(20)], [0xaa, 0xbb]);
});

Deno.test("FrameParser returns the frames it was given, with every header field", () => {
  fc.assert(
    fc.property(frameArb, (f) => {
      const p = parser();
      p.push(encode(f));
      const r = p.next();
      assert.equal(r.kind, "frame");
      assert.deepEqual(spec((r as { frame: Frame }).frame), f);
      assert.equal(p.next().kind, "need");
      assert.equal(p.buffered, 0);
    }),
  );
});

Deno.test("FrameParser returns the same frames for any chunking of a stream, 1-byte chunks included", () => {
  fc.assert(
    fc.property(
      fc.array(frameArb, { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      fc.boolean(),
      (frames, cuts, oneByte) => {
        const stream = concat(frames.map(encode));
        const points = oneByte
          ? Array.from({ length: stream.length }, (_, i) => i)
          : [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const p = parser();
        const got: FrameSpec[] = [];
        let prev = 0;
        for (const at of [...points, stream.length]) {
          // A fresh copy per chunk: the parser owns what it is pushed.
          p.push(stream.slice(prev, at));
          prev = at;
          for (const r of drain(p)) {
            assert.equal(r.kind, "frame");
            got.push(spec((r as { frame: Frame }).frame));
          }
        }
        assert.deepEqual(got, frames);
        assert.equal(p.buffered, 0);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("FrameParser returns a frame with an empty payload as soon as its header is in", () => {
  const p = parser();
  p.push(encodeFrame(0x0002, 5, new Uint8Array(0)));
  const r = p.next();
  assert.equal(r.kind, "frame");
  assert.equal((r as { frame: Frame }).frame.payload.length, 0);
});

Deno.test("FrameParser needs more bytes for a partial header or payload and ignores empty chunks", () => {
  const f = encodeFrame(0x0002, 5, new Uint8Array(10));
  const p = parser();
  p.push(new Uint8Array(0));
  assert.equal(p.next().kind, "need");
  p.push(f.slice(0, 19));
  assert.equal(p.next().kind, "need");
  assert.equal(p.buffered, 19);
  p.push(f.slice(19, 29));
  assert.equal(p.next().kind, "need");
  p.push(f.slice(29));
  assert.equal(p.next().kind, "frame");
});

Deno.test("FrameParser reports FRAME_TOO_LARGE from the 20-byte header alone, without the payload", () => {
  const p = parser();
  p.push(header({ payloadLength: MAX + 1, correlationId: 77 }));
  const r = p.next();
  assert.deepEqual({ ...r, message: "" }, {
    kind: "error",
    code: ErrorCode.FRAME_TOO_LARGE,
    correlationId: 77,
    message: "",
  });
  assert.equal(p.buffered, 0);
});

Deno.test("FrameParser refuses a 4 GiB payload length at the default limit before any payload arrives", () => {
  const p = new FrameParser({ payloadBytesMax: FRAME_PAYLOAD_BYTES_MAX_DEFAULT });
  p.push(header({ payloadLength: 0xffffffff }));
  assert.equal((p.next() as { code: number }).code, ErrorCode.FRAME_TOO_LARGE);
});

Deno.test("FrameParser accepts a payload of exactly payloadBytesMax", () => {
  const p = parser();
  p.push(encodeFrame(0x0101, 1, new Uint8Array(MAX)));
  assert.equal(p.next().kind, "frame");
});

Deno.test("FrameParser reports bad magic as MALFORMED_FRAME with correlation id 0", () => {
  const f = encodeFrame(0x0002, 5, new Uint8Array(0));
  f[0] = 0x48;
  const p = parser();
  p.push(f);
  const r = p.next();
  assert.equal(r.kind, "error");
  assert.equal((r as { code: number }).code, ErrorCode.MALFORMED_FRAME);
  assert.equal((r as { correlationId: number }).correlationId, 0);
  assert.match((r as { message: string }).message, /magic 0x484d/);
});

Deno.test("FrameParser detects any single bit flip in the header as MALFORMED_FRAME", () => {
  const good = encodeFrame(0x0101, 0x12345678, new Uint8Array([1, 2, 3]), Flag.RESPONSE);
  for (let bit = 0; bit < HEADER_BYTES * 8; bit++) {
    const f = good.slice();
    f[bit >> 3]! ^= 1 << (bit & 7);
    const p = parser();
    p.push(f);
    const r = p.next();
    assert.equal(r.kind, "error", `bit ${bit}`);
    assert.equal((r as { code: number }).code, ErrorCode.MALFORMED_FRAME, `bit ${bit}`);
    assert.equal((r as { correlationId: number }).correlationId, 0, `bit ${bit}`);
  }
});

Deno.test("FrameParser reports a version other than 1 as UNSUPPORTED_VERSION with the frame's correlation id", () => {
  for (const version of [0, 2, 255]) {
    const p = parser();
    p.push(header({ version, correlationId: 31 }));
    const r = p.next();
    assert.equal(r.kind, "error");
    assert.equal((r as { code: number }).code, ErrorCode.UNSUPPORTED_VERSION, `version ${version}`);
    assert.equal((r as { correlationId: number }).correlationId, 31);
  }
});

Deno.test("FrameParser reports non-zero reserved header bytes as MALFORMED_FRAME", () => {
  const p = parser();
  p.push(header({ reserved: 1, correlationId: 4 }));
  const r = p.next();
  assert.equal((r as { code: number }).code, ErrorCode.MALFORMED_FRAME);
  assert.equal((r as { correlationId: number }).correlationId, 4);
});

Deno.test("FrameParser errors are sticky: later good frames are never returned", () => {
  const bad = [
    header({ version: 2 }),
    header({ payloadLength: MAX + 1 }),
    header({ reserved: 0xffff }),
    new Uint8Array(HEADER_BYTES),
  ];
  for (const b of bad) {
    const p = parser();
    p.push(b);
    const first = p.next();
    assert.equal(first.kind, "error");
    p.push(encodeFrame(0x0002, 1, new Uint8Array(0)));
    assert.deepEqual(p.next(), first);
    assert.deepEqual(p.next(), first);
  }
});

Deno.test("FrameParser returns frames already complete before a bad header, then the error", () => {
  const p = parser();
  p.push(
    concat([
      encodeFrame(0x0002, 1, new Uint8Array(0)),
      encodeFrame(0x0002, 2, new Uint8Array(3)),
      header({ version: 9 }),
    ]),
  );
  const got = drain(p);
  assert.deepEqual(got.map((r) => r.kind), ["frame", "frame", "error"]);
});

Deno.test("FrameParser reads big payloads in place through readTarget(), for any chunking", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 300_000 }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 50 }),
      (sizes, cuts) => {
        const payloads = sizes.map((n, i) => new Uint8Array(n).map((_, k) => (k * 7 + i) & 0xff));
        const stream = concatAll(payloads.map((p, i) => encodeFrame(0x0101, i + 1, p)));
        const parser = new FrameParser({ payloadBytesMax: 1 << 20 });
        const got: Uint8Array[] = [];
        let at = 0;
        for (let c = 0; at < stream.length; c++) {
          const want = cuts[c % cuts.length] as number;
          const target = parser.readTarget();
          if (target !== null) {
            // As a socket read would: at most what the target holds.
            const n = Math.min(want, target.length, stream.length - at);
            target.set(stream.subarray(at, at + n));
            parser.filled(n);
            at += n;
          } else {
            const n = Math.min(want, stream.length - at);
            parser.push(stream.slice(at, at + n));
            at += n;
          }
          for (let r = parser.next(); r.kind !== "need"; r = parser.next()) {
            assert.equal(r.kind, "frame");
            if (r.kind === "frame") got.push(r.frame.payload);
          }
        }
        assert.equal(parser.buffered, 0);
        assert.deepEqual(got, payloads);
      },
    ),
    { numRuns: 60 },
  );
});

function concatAll(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

Deno.test("FrameParser.setPayloadBytesMax() applies to headers not yet read", () => {
  const small = encodeFrame(1, 1, new Uint8Array(100));
  const big = encodeFrame(2, 2, new Uint8Array(5000));
  const p = new FrameParser({ payloadBytesMax: 4096 });
  p.push(small.slice());
  assert.equal(p.next().kind, "frame");
  p.setPayloadBytesMax(16 * 1024);
  p.push(big.slice());
  const r = p.next();
  assert.equal(r.kind, "frame");
  const before = new FrameParser({ payloadBytesMax: 4096 });
  before.push(big.slice());
  const refused = before.next();
  assert.equal(refused.kind, "error");
  assert.equal((refused as { code: number }).code, ErrorCode.FRAME_TOO_LARGE);
});
