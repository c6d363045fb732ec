// The golden-frame corpus (conformance/golden/) must stay true to the code: every case re-encodes from
// index.json to its .hex byte for byte, and every .hex decodes back to what index.json says.

import { ErrorCode } from "../src/protocol/errors.ts";
import assert from "node:assert/strict";
import {
  BATCH_HEADER_BYTES,
  batchesIn,
  decodeBatch,
  encodeBatch,
  readBatchHeader,
  type RecordInput,
} from "../src/protocol/batch.ts";
import { Codec, type CodecName, codecName, decompress } from "../src/protocol/compression.ts";
import {
  encodeFrame,
  Flag,
  type Frame,
  FRAME_PAYLOAD_BYTES_MAX_DEFAULT,
  FrameParser,
  HEADER_BYTES,
  PROTOCOL_VERSION,
} from "../src/protocol/frame.ts";
import {
  decode,
  encode,
  ERROR_SCHEMA,
  Op,
  type OpName,
  opName,
  type Schema,
  SCHEMAS,
} from "../src/protocol/messages.ts";

const DIR = new URL("../conformance/golden/", import.meta.url);
const LIMITS = { recordsBytesMax: 1024 * 1024 };

type Json = Record<string, unknown>;

interface BatchJson {
  baseOffset: number;
  codec: CodecName;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  records: {
    offset: number;
    timestamp: number;
    key: string | null;
    value: string | null;
    headers: { key: string; value: string | null }[];
  }[];
}

interface GoldenCase {
  name: string;
  file: string;
  description: string;
  opcode: number;
  opcodeName: OpName | null;
  kind: "request" | "response" | "push" | "error";
  flags: number;
  correlationId: number;
  payloadLength: number;
  payload: Json;
}

const index = JSON.parse(await Deno.readTextFile(new URL("index.json", DIR))) as {
  cases: GoldenCase[];
};

function fromHex(s: string): Uint8Array {
  assert.match(s, /^([0-9a-f]{2})*$/, "lowercase hex");
  return Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function frameBytes(c: GoldenCase): Promise<Uint8Array> {
  const text = await Deno.readTextFile(new URL(c.file, DIR));
  assert.equal(text.split("\n").filter((l) => l !== "").length, 1, `${c.file} is one line`);
  return fromHex(text.trim());
}

/** The schema a receiver picks from the header alone, as an SDK must. */
function schemaFor(opcode: number, flags: number): Schema {
  if ((flags & Flag.ERROR) !== 0) return ERROR_SCHEMA;
  const name = opName(opcode);
  assert.ok(name !== null, `opcode 0x${opcode.toString(16)} is known`);
  return (flags & Flag.RESPONSE) !== 0 ? SCHEMAS[name].response : SCHEMAS[name].request;
}

const carriesBatches = (field: string): boolean => field === "batch" || field === "records";

/** index.json's form of a decoded payload: bytes as hex, batch fields decoded. */
function toJson(schema: Schema, v: Json): Json {
  const out: Json = {};
  for (const [name, type] of schema) {
    const x = v[name];
    if (type === "bytes") {
      const b = x as Uint8Array | null;
      out[name] = b === null ? null : carriesBatches(name) ? batchesJson(b) : hex(b);
    } else if (typeof type === "object" && "list" in type) {
      out[name] = (x as Json[]).map((item) => toJson(type.list, item));
    } else {
      out[name] = x;
    }
  }
  return out;
}

function batchesJson(bytes: Uint8Array): Json {
  const batches = [...batchesIn(bytes)].map(({ off, header }) => {
    const { codec, ...fields } = header;
    const records = decodeBatch(bytes, off, LIMITS).map((r) => ({
      offset: r.offset,
      timestamp: r.timestamp,
      key: r.key === null ? null : hex(r.key),
      value: r.value === null ? null : hex(r.value),
      headers: r.headers.map((h) => ({
        key: h.key,
        value: h.value === null ? null : hex(h.value),
      })),
    }));
    return { ...fields, codec: codecName(codec), records };
  });
  return { hex: hex(bytes), batches };
}

/** The payload value index.json describes, ready for `encode`. */
function fromJson(schema: Schema, v: Json): Json {
  const out: Json = {};
  for (const [name, type] of schema) {
    const x = v[name];
    if (type === "bytes") {
      if (x === null) out[name] = null;
      else if (carriesBatches(name)) out[name] = fromHex((x as { hex: string }).hex);
      else out[name] = fromHex(x as string);
    } else if (typeof type === "object" && "list" in type) {
      out[name] = (x as Json[]).map((item) => fromJson(type.list, item));
    } else {
      out[name] = x;
    }
  }
  return out;
}

/** Encodes a batch afresh from its decoded form in index.json. */
function rebuild(b: BatchJson, codec: (typeof Codec)[CodecName]): Uint8Array {
  const records: RecordInput[] = b.records.map((r) => ({
    key: r.key === null ? null : fromHex(r.key),
    value: r.value === null ? null : fromHex(r.value),
    headers: r.headers.map((h) => ({
      key: h.key,
      value: h.value === null ? null : fromHex(h.value),
    })),
    timestamp: r.timestamp,
  }));
  return encodeBatch(records, {
    codec,
    baseOffset: b.baseOffset,
    producerId: b.producerId,
    producerEpoch: b.producerEpoch,
    baseSequence: b.baseSequence,
  });
}

/** Every batch described in index.json re-encodes from its records to the bytes it came with. */
function checkBatches(schema: Schema, payload: Json): void {
  for (const [name, type] of schema) {
    if (type !== "bytes" || !carriesBatches(name) || payload[name] === null) continue;
    const field = payload[name] as { hex: string; batches: BatchJson[] };
    const bytes = fromHex(field.hex);
    const offs = [...batchesIn(bytes)].map((x) => x.off);
    assert.equal(offs.length, field.batches.length);
    field.batches.forEach((b, i) => {
      const golden = bytes.subarray(offs[i], offs[i]! + readBatchHeader(bytes, offs[i]).sizeBytes);
      const codec = Codec[b.codec];
      if (codec === Codec.none) {
        assert.equal(hex(rebuild(b, codec)), hex(golden), `batch ${i}`);
        return;
      }
      // Compressed bytes depend on the compressor; the header and the records they hold do not.
      const plain = rebuild(b, Codec.none);
      assert.deepEqual(
        decompress(codec, golden.subarray(BATCH_HEADER_BYTES), LIMITS.recordsBytesMax),
        plain.subarray(BATCH_HEADER_BYTES),
        `batch ${i} records`,
      );
      const { sizeBytes: _s, crc: _c, ...want } = readBatchHeader(rebuild(b, codec));
      const { sizeBytes: _s2, crc: _c2, ...got } = readBatchHeader(golden);
      assert.deepEqual(got, want, `batch ${i} header`);
    });
  }
}

Deno.test("golden corpus: index.json lists every .hex file once, with flags matching each kind", async () => {
  const files: string[] = [];
  for await (const e of Deno.readDir(DIR)) if (e.name.endsWith(".hex")) files.push(e.name);
  assert.deepEqual(index.cases.map((c) => c.file).sort(), files.sort());
  assert.equal(new Set(index.cases.map((c) => c.name)).size, index.cases.length);
  assert.ok(index.cases.length >= 20);
  const flags = {
    request: 0,
    response: Flag.RESPONSE,
    push: Flag.PUSH,
    error: Flag.RESPONSE | Flag.ERROR,
  };
  for (const c of index.cases) {
    assert.equal(c.file, `${c.name}.hex`);
    assert.equal(c.flags, flags[c.kind], c.name);
    assert.equal(c.opcode, c.opcodeName === null ? 0 : Op[c.opcodeName], c.name);
    if (c.kind === "push") assert.equal(c.correlationId, 0, c.name);
  }
});

for (const c of index.cases) {
  Deno.test(`golden frame ${c.name} re-encodes from index.json byte for byte`, async () => {
    const schema = schemaFor(c.opcode, c.flags);
    checkBatches(schema, c.payload);
    const payload = encode(schema, fromJson(schema, c.payload));
    assert.equal(payload.length, c.payloadLength);
    const frame = encodeFrame(c.opcode, c.correlationId, payload, c.flags);
    assert.equal(hex(frame), hex(await frameBytes(c)));
  });

  Deno.test(`golden frame ${c.name} decodes with FrameParser and decode() to index.json`, async () => {
    const parser = new FrameParser({ payloadBytesMax: FRAME_PAYLOAD_BYTES_MAX_DEFAULT });
    parser.push(await frameBytes(c));
    const r = parser.next();
    assert.equal(r.kind, "frame");
    const f = (r as { frame: Frame }).frame;
    assert.equal(parser.next().kind, "need");
    assert.deepEqual(
      {
        version: f.version,
        opcode: f.opcode,
        flags: f.flags,
        correlationId: f.correlationId,
        payloadLength: f.payloadLength,
      },
      {
        version: PROTOCOL_VERSION,
        opcode: c.opcode,
        flags: c.flags,
        correlationId: c.correlationId,
        payloadLength: c.payloadLength,
      },
    );
    const schema = schemaFor(f.opcode, f.flags);
    assert.deepEqual(toJson(schema, decode<Json>(schema, f.payload, c.name)), c.payload);
  });
}

Deno.test("golden corpus streamed one byte at a time parses to the same frames", async () => {
  const parser = new FrameParser({ payloadBytesMax: FRAME_PAYLOAD_BYTES_MAX_DEFAULT });
  const want: string[] = [];
  const got: string[] = [];
  for (const c of index.cases) {
    const bytes = await frameBytes(c);
    want.push(hex(bytes));
    for (const b of bytes) {
      parser.push(new Uint8Array([b]));
      for (let r = parser.next(); r.kind === "frame"; r = parser.next()) {
        const f = r.frame;
        got.push(hex(encodeFrame(f.opcode, f.correlationId, f.payload, f.flags)));
      }
    }
  }
  assert.deepEqual(got, want);
  assert.equal(parser.buffered, 0);
  assert.ok(want.every((h) => h.length >= HEADER_BYTES * 2));
});

Deno.test("golden corpus: schemas.json and each case's schema name match the code's tables", async () => {
  const doc = JSON.parse(await Deno.readTextFile(new URL("schemas.json", DIR)));
  assert.deepEqual(doc.opcodes, Op);
  assert.deepEqual(doc.errorCodes, ErrorCode);
  assert.deepEqual(doc.schemas, JSON.parse(JSON.stringify({ ...SCHEMAS, ERROR: ERROR_SCHEMA })));
  for (const c of index.cases as (GoldenCase & { schema: string })[]) {
    const want = c.kind === "error"
      ? "ERROR"
      : `${c.opcodeName}.${c.kind === "response" ? "response" : "request"}`;
    assert.equal(c.schema, want, c.name);
  }
});
