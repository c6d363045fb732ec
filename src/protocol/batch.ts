// Record batches, the unit records travel and are stored in. The layout is Kafka's RecordBatch v2
// (a 61-byte header, CRC-32C over everything after the checksum, records as zigzag varints), so the
// broker can assign offsets by rewriting the base offset — which the checksum does not cover — and
// store and serve the very bytes the producer sent.

import { crc32c } from "./crc32c.ts";
import {
  type CodecId,
  codecName,
  compressBytes,
  CompressionError,
  decompressBytes,
} from "./codecs.ts";
import { ErrorCode, GregorError } from "./errors.ts";
import { Reader, varintBytes, Writer } from "./wire.ts";

/** Bytes of a batch header before its records. */
export const BATCH_HEADER_BYTES = 61;
/** The batch format's magic byte (Kafka's v2). */
export const BATCH_MAGIC = 2;
/** Bytes before the batch-length field's end: base offset (8) + batch length (4). */
export const BATCH_LENGTH_PREFIX_BYTES = 12;
/** No producer id: the batch is not from an idempotent producer. */
export const NO_PRODUCER_ID = -1;

const OFF_BATCH_LENGTH = 8;
const OFF_LEADER_EPOCH = 12;
const OFF_MAGIC = 16;
const OFF_CRC = 17;
const OFF_ATTRIBUTES = 21;
const OFF_LAST_OFFSET_DELTA = 23;
const OFF_FIRST_TIMESTAMP = 27;
const OFF_MAX_TIMESTAMP = 35;
const OFF_PRODUCER_ID = 43;
const OFF_PRODUCER_EPOCH = 51;
const OFF_BASE_SEQUENCE = 53;
const OFF_RECORD_COUNT = 57;
const CODEC_MASK = 0x07;

/** A record header. */
export interface RecordHeader {
  key: string;
  value: Uint8Array | null;
}

/** A record as a producer gives it. */
export interface RecordInput {
  key?: Uint8Array | null;
  value: Uint8Array | null;
  headers?: RecordHeader[];
  /** Milliseconds since the epoch (create time). */
  timestamp: number;
}

/** A record read from a batch, with the offset the broker assigned. */
export interface RecordOut {
  offset: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: RecordHeader[];
}

/** The fields of a batch header. */
export interface BatchHeader {
  baseOffset: number;
  /** Total bytes of the batch, header included. */
  sizeBytes: number;
  partitionLeaderEpoch: number;
  crc: number;
  attributes: number;
  codec: CodecId;
  lastOffsetDelta: number;
  firstTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

/** Options for `encodeBatch`. */
export interface EncodeBatchOptions {
  codec?: CodecId;
  baseOffset?: number;
  producerId?: number;
  producerEpoch?: number;
  baseSequence?: number;
}

/** Thrown for a batch that fails its checksum or is structurally wrong. */
export class CorruptBatchError extends GregorError {
  constructor(message: string) {
    super(ErrorCode.CORRUPT_BATCH, message);
    this.name = "CorruptBatchError";
  }
}

/** Encodes records as one batch (records must be non-empty). */
export function encodeBatch(
  records: readonly RecordInput[],
  opts: EncodeBatchOptions = {},
): Uint8Array {
  if (records.length === 0) throw new RangeError("A batch needs at least one record");
  const first = (records[0] as RecordInput).timestamp;
  let maxTs = first;
  let bodyBytes = 64;
  for (const r of records) bodyBytes += 32 + (r.key?.length ?? 0) + (r.value?.length ?? 0);
  const codec = opts.codec ?? 0;
  // Uncompressed records are written straight after room for the header, so the batch is built
  // in one buffer; compressed ones are written alone, compressed, then put behind a header.
  const body = new Writer(codec === 0 ? BATCH_HEADER_BYTES + bodyBytes : bodyBytes);
  if (codec === 0) body.skip(BATCH_HEADER_BYTES);
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as RecordInput;
    if (r.timestamp > maxTs) maxTs = r.timestamp;
    encodeRecord(body, r, r.timestamp - first, i);
  }
  let out: Uint8Array;
  if (codec === 0) {
    out = body.finish();
  } else {
    const packed = compressBytes(codec, body.finish());
    out = new Uint8Array(BATCH_HEADER_BYTES + packed.length);
    out.set(packed, BATCH_HEADER_BYTES);
  }
  const dv = new DataView(out.buffer, out.byteOffset, BATCH_HEADER_BYTES);
  setI64(dv, 0, opts.baseOffset ?? 0);
  dv.setInt32(OFF_BATCH_LENGTH, out.length - BATCH_LENGTH_PREFIX_BYTES);
  dv.setInt32(OFF_LEADER_EPOCH, -1);
  dv.setInt8(OFF_MAGIC, BATCH_MAGIC);
  dv.setInt16(OFF_ATTRIBUTES, codec);
  dv.setInt32(OFF_LAST_OFFSET_DELTA, records.length - 1);
  setI64(dv, OFF_FIRST_TIMESTAMP, first);
  setI64(dv, OFF_MAX_TIMESTAMP, maxTs);
  setI64(dv, OFF_PRODUCER_ID, opts.producerId ?? NO_PRODUCER_ID);
  dv.setInt16(OFF_PRODUCER_EPOCH, opts.producerEpoch ?? -1);
  dv.setInt32(OFF_BASE_SEQUENCE, opts.baseSequence ?? -1);
  dv.setInt32(OFF_RECORD_COUNT, records.length);
  dv.setUint32(OFF_CRC, crc32c(out.subarray(OFF_ATTRIBUTES)));
  return out;
}

/** Writes a safe integer as a big-endian signed 64-bit integer at `at`. */
function setI64(dv: DataView, at: number, v: number): void {
  if (!Number.isSafeInteger(v)) throw new RangeError(`Cannot encode ${v} as a 64-bit integer`);
  dv.setInt32(at, Math.floor(v / 0x1_0000_0000));
  dv.setUint32(at + 4, v >>> 0);
}

const keyEncoder = new TextEncoder();
const NO_HEADERS: readonly RecordHeader[] = Object.freeze([]);

/** Writes one record straight into `w`: its length is worked out first, so nothing is copied twice. */
function encodeRecord(
  w: Writer,
  r: RecordInput,
  timestampDelta: number,
  offsetDelta: number,
): void {
  const key = r.key ?? null;
  const headers = r.headers ?? NO_HEADERS;
  if (headers.length === 0) {
    // The common case, without the header bookkeeping below.
    w.varint(
      2 + varintBytes(timestampDelta) + varintBytes(offsetDelta) + varBytesLength(key) +
        varBytesLength(r.value),
    ).u8(0).varint(timestampDelta).varint(offsetDelta);
    varBytes(w, key);
    varBytes(w, r.value);
    w.u8(0);
    return;
  }
  const headerKeys = headers.map((h) => keyEncoder.encode(h.key));
  let len = 1 + varintBytes(timestampDelta) + varintBytes(offsetDelta) + varBytesLength(key) +
    varBytesLength(r.value) + varintBytes(headers.length);
  headers.forEach((h, i) => {
    const k = headerKeys[i] as Uint8Array;
    len += varintBytes(k.length) + k.length + varBytesLength(h.value);
  });
  w.varint(len).u8(0).varint(timestampDelta).varint(offsetDelta);
  varBytes(w, key);
  varBytes(w, r.value);
  w.varint(headers.length);
  headers.forEach((h, i) => {
    const k = headerKeys[i] as Uint8Array;
    w.varint(k.length).raw(k);
    varBytes(w, h.value);
  });
}

function varBytesLength(b: Uint8Array | null): number {
  return b === null ? 1 : varintBytes(b.length) + b.length;
}

function varBytes(w: Writer, b: Uint8Array | null): void {
  if (b === null) w.varint(-1);
  else w.varint(b.length).raw(b);
}

/**
 * Reads the header of the batch at `off` without checking its checksum. Throws CorruptBatchError
 * if the bytes cannot be a batch header or (unless `headerOnly`) the batch is longer than the bytes
 * given.
 */
export function readBatchHeader(
  bytes: Uint8Array,
  off = 0,
  opts?: { headerOnly?: boolean },
): BatchHeader {
  if (bytes.length - off < BATCH_HEADER_BYTES) {
    throw new CorruptBatchError(`Batch of ${bytes.length - off} bytes is shorter than its header`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + off, BATCH_HEADER_BYTES);
  const batchLength = dv.getInt32(OFF_BATCH_LENGTH);
  const sizeBytes = batchLength + BATCH_LENGTH_PREFIX_BYTES;
  const available = opts?.headerOnly ? Infinity : bytes.length - off;
  if (sizeBytes < BATCH_HEADER_BYTES || sizeBytes > available) {
    throw new CorruptBatchError(
      `Batch length ${batchLength} does not fit the ${bytes.length - off} bytes given`,
    );
  }
  const magic = dv.getInt8(OFF_MAGIC);
  if (magic !== BATCH_MAGIC) {
    throw new CorruptBatchError(`Batch magic ${magic} is not ${BATCH_MAGIC}`);
  }
  const attributes = dv.getInt16(OFF_ATTRIBUTES);
  const codec = attributes & CODEC_MASK;
  if (codecName(codec) === null) throw new CorruptBatchError(`Unknown compression codec ${codec}`);
  return {
    baseOffset: i64(dv, 0, "base offset"),
    sizeBytes,
    partitionLeaderEpoch: dv.getInt32(OFF_LEADER_EPOCH),
    crc: dv.getUint32(OFF_CRC),
    attributes,
    codec: codec as CodecId,
    lastOffsetDelta: dv.getInt32(OFF_LAST_OFFSET_DELTA),
    firstTimestamp: i64(dv, OFF_FIRST_TIMESTAMP, "first timestamp"),
    maxTimestamp: i64(dv, OFF_MAX_TIMESTAMP, "max timestamp"),
    producerId: i64(dv, OFF_PRODUCER_ID, "producer id"),
    producerEpoch: dv.getInt16(OFF_PRODUCER_EPOCH),
    baseSequence: dv.getInt32(OFF_BASE_SEQUENCE),
    recordCount: dv.getInt32(OFF_RECORD_COUNT),
  };
}

/** The header's i64 at `at` (not a closure: every batch a consumer or subscriber reads comes here). */
function i64(dv: DataView, at: number, what: string): number {
  const v = dv.getInt32(at) * 0x1_0000_0000 + dv.getUint32(at + 4);
  if (!Number.isSafeInteger(v)) throw new CorruptBatchError(`Batch ${what} ${v} is out of range`);
  return v;
}

/** Limits for `validateBatch` and `decodeBatch`. */
export interface BatchLimits {
  /** Largest size of the records section once decompressed. */
  recordsBytesMax: number;
}

/**
 * Checks a whole batch as a broker must before storing it: header, checksum, and every record
 * (decompressing if needed) with offset deltas 0..n-1. Returns the header. The bytes must hold
 * exactly one batch.
 */
export function validateBatch(bytes: Uint8Array, limits: BatchLimits): BatchHeader {
  const h = readBatchHeader(bytes);
  if (h.sizeBytes !== bytes.length) {
    throw new CorruptBatchError(`Batch says ${h.sizeBytes} bytes but ${bytes.length} were sent`);
  }
  decodeBatchRecords(bytes, h, limits, null);
  return h;
}

/**
 * The compression codec id in a batch's attributes, without checking anything else (0 for bytes
 * too short to be a batch; validation rejects those).
 */
export function batchCodec(bytes: Uint8Array): number {
  return bytes.length < BATCH_HEADER_BYTES ? 0 : bytes[OFF_ATTRIBUTES + 1]! & CODEC_MASK;
}

/**
 * True if a batch among `bytes` (whole batches back to back) is compressed. Reads only each
 * batch's length and attributes, no header object: a consumer asks it of every push until the
 * codecs are loaded. Bytes that cannot be batches are left for decoding to refuse.
 */
export function anyBatchCompressed(bytes: Uint8Array): boolean {
  for (let off = 0; bytes.length - off >= BATCH_HEADER_BYTES;) {
    if ((bytes[off + OFF_ATTRIBUTES + 1]! & CODEC_MASK) !== 0) return true;
    const at = off + OFF_BATCH_LENGTH;
    const length = (bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) |
      bytes[at + 3]!;
    if (length + BATCH_LENGTH_PREFIX_BYTES < BATCH_HEADER_BYTES) return false;
    off += length + BATCH_LENGTH_PREFIX_BYTES;
  }
  return false;
}

/** Writes the offset the broker assigned into the batch, in place. The checksum stays valid. */
export function setBaseOffset(bytes: Uint8Array, off: number, baseOffset: number): void {
  const w = new DataView(bytes.buffer, bytes.byteOffset + off, 8);
  w.setInt32(0, Math.floor(baseOffset / 0x1_0000_0000));
  w.setUint32(4, baseOffset >>> 0);
}

/** Decodes every record of the batch at `off` (checking its checksum). */
export function decodeBatch(bytes: Uint8Array, off: number, limits: BatchLimits): RecordOut[] {
  const records: RecordOut[] = [];
  visitBatch(bytes, off, limits, (offset, timestamp, key, value, headers) => {
    // A record with headers got its own array; one without gets a fresh empty one to keep.
    const own = headers.length === 0 ? [] : headers as RecordHeader[];
    records.push({ offset, timestamp, key, value, headers: own });
  });
  return records;
}

/**
 * Called once per record of a batch, in offset order. `headers` is a shared empty array when the
 * record has none: copy it before keeping it.
 */
export type RecordVisitor = (
  offset: number,
  timestamp: number,
  key: Uint8Array | null,
  value: Uint8Array | null,
  headers: readonly RecordHeader[],
) => void;

/**
 * Checks the batch at `off` as `decodeBatch` does and hands each record to `visit` without
 * building a list of them (a consumer's hot path). Returns the batch's header.
 */
export function visitBatch(
  bytes: Uint8Array,
  off: number,
  limits: BatchLimits,
  visit: RecordVisitor,
): BatchHeader {
  const h = readBatchHeader(bytes, off);
  decodeBatchRecords(bytes.subarray(off, off + h.sizeBytes), h, limits, visit);
  return h;
}

/** Checks every record, handing each to `visit` if given; validation alone allocates no records. */
function decodeBatchRecords(
  batch: Uint8Array,
  h: BatchHeader,
  limits: BatchLimits,
  visit: RecordVisitor | null,
): void {
  if (crc32c(batch.subarray(OFF_ATTRIBUTES, h.sizeBytes)) !== h.crc) {
    throw new CorruptBatchError(`Batch at offset ${h.baseOffset} failed its CRC-32C check`);
  }
  if (h.recordCount < 1 || h.lastOffsetDelta !== h.recordCount - 1) {
    throw new CorruptBatchError(
      `Batch claims ${h.recordCount} records with last offset delta ${h.lastOffsetDelta}`,
    );
  }
  let body = batch.subarray(BATCH_HEADER_BYTES, h.sizeBytes);
  if (h.codec !== 0) {
    try {
      body = decompressBytes(h.codec, body, limits.recordsBytesMax);
    } catch (err) {
      if (err instanceof CompressionError) throw new CorruptBatchError(err.message);
      throw err;
    }
  } else if (body.length > limits.recordsBytesMax) {
    throw new CorruptBatchError(
      `Records of ${body.length} bytes are over ${limits.recordsBytesMax}`,
    );
  }
  // One reader walks every record; a record whose fields overrun its length is caught at its end.
  const r = new Reader(body);
  try {
    for (let i = 0; i < h.recordCount; i++) {
      const len = r.varint("record length");
      if (len < 0 || len > r.remaining) {
        throw new CorruptBatchError(`Record ${i} length ${len} is wrong`);
      }
      const end = r.pos + len;
      r.u8("record attributes");
      const timestamp = h.firstTimestamp + r.varint("timestamp delta");
      const delta = r.varint("offset delta");
      if (delta !== i) throw new CorruptBatchError(`Record ${i} has offset delta ${delta}`);
      const key = readVarBytes(r, "key");
      const value = readVarBytes(r, "value");
      const headerCount = r.varint("header count");
      if (headerCount < 0 || headerCount > end - r.pos) {
        throw new CorruptBatchError(`Record ${i} header count ${headerCount} is wrong`);
      }
      let headers: RecordHeader[] = NO_HEADERS as RecordHeader[];
      if (headerCount > 0 && visit !== null) headers = [];
      for (let k = 0; k < headerCount; k++) {
        const keyBytes = readVarBytes(r, "header key");
        if (keyBytes === null) throw new CorruptBatchError(`Record ${i} has a null header key`);
        const headerValue = readVarBytes(r, "header value");
        const headerKey = utf8(keyBytes);
        if (visit !== null) headers.push({ key: headerKey, value: headerValue });
      }
      if (r.pos !== end) {
        throw new CorruptBatchError(
          `Record ${i} is ${len} bytes long but its fields take ${r.pos - end + len}`,
        );
      }
      if (visit !== null) visit(h.baseOffset + i, timestamp, key, value, headers);
    }
    r.end("the batch's records");
  } catch (err) {
    if (err instanceof CorruptBatchError) throw err;
    throw new CorruptBatchError(`Batch at offset ${h.baseOffset}: ${(err as Error).message}`);
  }
}

function readVarBytes(r: Reader, what: string): Uint8Array | null {
  const n = r.varint(`${what} length`);
  if (n === -1) return null;
  return r.raw(n, what);
}

// ignoreBOM: a leading U+FEFF is part of the key, not a marker to strip.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function utf8(b: Uint8Array): string {
  try {
    return strictUtf8.decode(b);
  } catch {
    throw new CorruptBatchError("A header key is not valid UTF-8");
  }
}

/** Iterates the batches stored back to back in `bytes` (as a fetch or delivery carries them). */
export function* batchesIn(bytes: Uint8Array): Generator<{ off: number; header: BatchHeader }> {
  let off = 0;
  while (off < bytes.length) {
    const header = readBatchHeader(bytes, off);
    yield { off, header };
    off += header.sizeBytes;
  }
}
