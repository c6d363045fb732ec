// EXAMPLE: the register example's frames and WAL records. Every frame carries one versioned
// key/value (requests, replies and errors alike), which keeps the example small.

import { crc32c } from "../../src/protocol/crc32c.ts";

/** A value of a key at a version. Version 0 means "never written". */
export interface Versioned {
  key: string;
  version: number;
  value: string;
}

export const OP_PUT = 1;
export const OP_GET = 2;
export const OP_OK = 0x81;
export const OP_VALUE = 0x82;
export const OP_ERROR = 0x83;

/** Largest frame accepted; a bigger length prefix is treated as garbage. */
export const FRAME_BYTES_MAX = 64 * 1024;

const enc = new TextEncoder();
const dec = new TextDecoder();

function encodeVersioned(v: Versioned): Uint8Array {
  const key = enc.encode(v.key);
  const value = enc.encode(v.value);
  const out = new Uint8Array(2 + key.length + 4 + 4 + value.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, key.length);
  out.set(key, 2);
  dv.setUint32(2 + key.length, v.version);
  dv.setUint32(6 + key.length, value.length);
  out.set(value, 10 + key.length);
  return out;
}

function decodeVersioned(b: Uint8Array): Versioned {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const keyLen = dv.getUint16(0);
  const key = dec.decode(b.subarray(2, 2 + keyLen));
  const version = dv.getUint32(2 + keyLen);
  const valueLen = dv.getUint32(6 + keyLen);
  if (10 + keyLen + valueLen !== b.length) throw new Error("Malformed register payload");
  return { key, version, value: dec.decode(b.subarray(10 + keyLen)) };
}

/** A WAL record: [u32 length][u32 crc32c of payload][payload]. */
export function encodeRecord(v: Versioned): Uint8Array {
  const payload = encodeVersioned(v);
  const out = new Uint8Array(8 + payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, payload.length);
  dv.setUint32(4, crc32c(payload));
  out.set(payload, 8);
  return out;
}

/** The record at `off`, or null if it is incomplete, too long or fails its checksum. */
export function decodeRecord(
  bytes: Uint8Array,
  off: number,
): { value: Versioned; next: number } | null {
  if (off + 8 > bytes.length) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = dv.getUint32(off);
  if (len < 10 || len > FRAME_BYTES_MAX || off + 8 + len > bytes.length) return null;
  const payload = bytes.subarray(off + 8, off + 8 + len);
  if (crc32c(payload) !== dv.getUint32(off + 4)) return null;
  try {
    return { value: decodeVersioned(payload), next: off + 8 + len };
  } catch {
    return null;
  }
}

/** One decoded frame. */
export interface Frame {
  op: number;
  id: number;
  body: Versioned;
}

/** Encodes a frame: [u32 length][u8 op][u32 id][payload]. */
export function encodeFrame(op: number, id: number, body: Versioned): Uint8Array {
  const payload = encodeVersioned(body);
  const out = new Uint8Array(9 + payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 5 + payload.length);
  dv.setUint8(4, op);
  dv.setUint32(5, id);
  out.set(payload, 9);
  return out;
}

/** Reply bodies, framed later with the request's id. */
export const reply = {
  ok: (): Uint8Array => encodeFrame(OP_OK, 0, { key: "", version: 0, value: "" }),
  value: (v: Versioned): Uint8Array => encodeFrame(OP_VALUE, 0, v),
  error: (msg: string): Uint8Array => encodeFrame(OP_ERROR, 0, { key: "", version: 0, value: msg }),
  /** Stamps the request id into an encoded reply. */
  frame(id: number, answer: Uint8Array): Uint8Array {
    new DataView(answer.buffer, answer.byteOffset).setUint32(5, id);
    return answer;
  },
};

/** Reassembles frames from a byte stream that arrives in arbitrary pieces. */
export class FrameReader {
  #buf = new Uint8Array(0);

  /** Adds bytes read from the stream. */
  push(chunk: Uint8Array): void {
    const next = new Uint8Array(this.#buf.length + chunk.length);
    next.set(this.#buf);
    next.set(chunk, this.#buf.length);
    this.#buf = next;
  }

  /** The next whole frame, or null if more bytes are needed. Throws on a malformed frame. */
  next(): Frame | null {
    if (this.#buf.length < 4) return null;
    const dv = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
    const len = dv.getUint32(0);
    if (len < 5 || len > FRAME_BYTES_MAX) throw new Error(`Bad frame length ${len}`);
    if (this.#buf.length < 4 + len) return null;
    const frame = {
      op: dv.getUint8(4),
      id: dv.getUint32(5),
      body: decodeVersioned(this.#buf.subarray(9, 4 + len)),
    };
    this.#buf = this.#buf.subarray(4 + len);
    return frame;
  }
}
