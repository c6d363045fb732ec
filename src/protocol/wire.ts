// Primitive encoders and decoders for the wire format: big-endian fixed-width integers, 64-bit
// integers as safe JS numbers, length-prefixed strings and bytes, and Kafka-style zigzag varints.
// Readers check every bound and throw MalformedError instead of reading past the end.

import { MalformedError } from "./errors.ts";

const TWO_32 = 0x1_0000_0000;
const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is part of the string, not a marker to strip.
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Longest string a u16 length prefix can carry, in UTF-8 bytes. */
export const STRING_BYTES_MAX = 0xffff;
/**
 * ASCII strings up to this many characters are encoded and decoded here rather than by the
 * runtime's UTF-8 codec: the short names every frame carries (node ids, Raft groups, topics) cost
 * more in the call into the codec than in the copy. Same bytes and strings either way.
 */
const ASCII_INLINE_CHARS_MAX = 64;

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** The `n` bytes of `buf` at `start` as a string if they are all ASCII, else null. */
function asciiAt(buf: Uint8Array, start: number, n: number): string | null {
  let s = "";
  for (let i = start; i < start + n; i++) {
    const c = buf[i]!;
    if (c > 0x7f) return null;
    s += String.fromCharCode(c);
  }
  return s;
}

/** Bytes `Writer.varint(v)` takes for `v` (a safe integer). */
export function varintBytes(v: number): number {
  if (v >= -0x40 && v < 0x40) return 1;
  if (v >= -0x2000 && v < 0x2000) return 2;
  const m = v < 0 ? -v - 1 : v;
  let n = 1;
  for (let rest = Math.floor(m / 0x40); rest > 0; rest = Math.floor(rest / 0x80)) n++;
  return n;
}

/** A growable big-endian byte writer. */
export class Writer {
  #buf: Uint8Array;
  #view: DataView;
  #pos = 0;

  /** A writer with room for `initialBytes` before it first grows. */
  constructor(initialBytes = 256) {
    this.#buf = new Uint8Array(initialBytes);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#pos;
  }

  #room(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#pos + n));
    grown.set(this.#buf.subarray(0, this.#pos));
    this.#buf = grown;
    this.#view = new DataView(grown.buffer);
  }

  u8(v: number): this {
    this.#room(1);
    this.#view.setUint8(this.#pos, v);
    this.#pos += 1;
    return this;
  }

  u16(v: number): this {
    this.#room(2);
    this.#view.setUint16(this.#pos, v);
    this.#pos += 2;
    return this;
  }

  i16(v: number): this {
    this.#room(2);
    this.#view.setInt16(this.#pos, v);
    this.#pos += 2;
    return this;
  }

  u32(v: number): this {
    this.#room(4);
    this.#view.setUint32(this.#pos, v);
    this.#pos += 4;
    return this;
  }

  i32(v: number): this {
    this.#room(4);
    this.#view.setInt32(this.#pos, v);
    this.#pos += 4;
    return this;
  }

  /** A signed 64-bit integer from a safe JS integer. */
  i64(v: number): this {
    if (!Number.isSafeInteger(v)) throw new RangeError(`Cannot encode ${v} as a 64-bit integer`);
    this.#room(8);
    this.#view.setInt32(this.#pos, Math.floor(v / TWO_32));
    this.#view.setUint32(this.#pos + 4, v >>> 0);
    this.#pos += 8;
    return this;
  }

  /** Raw bytes, no length prefix. */
  raw(bytes: Uint8Array): this {
    this.#room(bytes.length);
    this.#buf.set(bytes, this.#pos);
    this.#pos += bytes.length;
    return this;
  }

  /** A UTF-8 string with a u16 length prefix. */
  string(s: string): this {
    if (s.length <= ASCII_INLINE_CHARS_MAX && isAscii(s)) {
      this.u16(s.length);
      this.#room(s.length);
      for (let i = 0; i < s.length; i++) this.#buf[this.#pos + i] = s.charCodeAt(i);
      this.#pos += s.length;
      return this;
    }
    const bytes = encoder.encode(s);
    if (bytes.length > STRING_BYTES_MAX) {
      throw new RangeError(`String of ${bytes.length} bytes is over ${STRING_BYTES_MAX}`);
    }
    return this.u16(bytes.length).raw(bytes);
  }

  /** Bytes with a u32 length prefix; null is written as length 0xffffffff. */
  bytes(b: Uint8Array | null): this {
    if (b === null) return this.u32(0xffffffff);
    return this.u32(b.length).raw(b);
  }

  /** A zigzag varint (Kafka's record encoding), for values in the safe integer range. */
  varint(v: number): this {
    if (v >= 0 && v < 0x2000 && (v | 0) === v) {
      // The common case (lengths and deltas below 8192): one or two bytes of zigzag 2v.
      const z = v << 1;
      this.#room(2);
      if (z < 0x80) {
        this.#buf[this.#pos++] = z;
      } else {
        this.#buf[this.#pos++] = (z & 0x7f) | 0x80;
        this.#buf[this.#pos++] = z >>> 7;
      }
      return this;
    }
    if (!Number.isSafeInteger(v)) throw new RangeError(`Cannot encode ${v} as a varint`);
    // The zigzag value 2|v| - sign reaches 2^54 - 3, past exact doubles, so it is never formed:
    // the first byte takes the sign and the low 6 bits of m = |v| - sign, later bytes m >> 6.
    const sign = v < 0 ? 1 : 0;
    const m = sign === 1 ? -v - 1 : v;
    let b = (m % 0x40) * 2 + sign;
    let rest = Math.floor(m / 0x40);
    this.#room(10);
    while (rest > 0) {
      this.#buf[this.#pos++] = b | 0x80;
      b = rest % 0x80;
      rest = Math.floor(rest / 0x80);
    }
    this.#buf[this.#pos++] = b;
    return this;
  }

  /** Leaves `n` zero bytes to be patched later (a header written once its fields are known). */
  skip(n: number): this {
    this.#room(n);
    this.#buf.fill(0, this.#pos, this.#pos + n);
    this.#pos += n;
    return this;
  }

  /** Overwrites 4 bytes at `pos` (for lengths and checksums known only at the end). */
  patchU32(pos: number, v: number): void {
    this.#view.setUint32(pos, v);
  }

  /** Overwrites 4 bytes at `pos` as a signed integer. */
  patchI32(pos: number, v: number): void {
    this.#view.setInt32(pos, v);
  }

  /** Drops every byte written after the first `length` (what a failed encoding left behind). */
  rewind(length: number): void {
    if (length < 0 || length > this.#pos) {
      throw new RangeError(`Cannot rewind a writer of ${this.#pos} bytes to ${length}`);
    }
    this.#pos = length;
  }

  /** The bytes written, as a view (no copy). */
  finish(): Uint8Array {
    return this.#buf.subarray(0, this.#pos);
  }
}

/** A bounds-checked big-endian reader over one buffer. */
export class Reader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  #pos: number;
  readonly #end: number;

  /** Reads `buf` from `start` up to `end` (default: its length). */
  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.#buf = buf;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.#pos = start;
    this.#end = end;
  }

  /** The current position. */
  get pos(): number {
    return this.#pos;
  }

  /** Bytes left to read. */
  get remaining(): number {
    return this.#end - this.#pos;
  }

  #need(n: number, what: string): void {
    if (this.#pos + n > this.#end) {
      throw new MalformedError(
        `Truncated ${what}: need ${n} bytes at ${this.#pos}, have ${this.#end - this.#pos}`,
      );
    }
  }

  u8(what = "u8"): number {
    this.#need(1, what);
    return this.#view.getUint8(this.#pos++);
  }

  u16(what = "u16"): number {
    this.#need(2, what);
    const v = this.#view.getUint16(this.#pos);
    this.#pos += 2;
    return v;
  }

  i16(what = "i16"): number {
    this.#need(2, what);
    const v = this.#view.getInt16(this.#pos);
    this.#pos += 2;
    return v;
  }

  u32(what = "u32"): number {
    this.#need(4, what);
    const v = this.#view.getUint32(this.#pos);
    this.#pos += 4;
    return v;
  }

  i32(what = "i32"): number {
    this.#need(4, what);
    const v = this.#view.getInt32(this.#pos);
    this.#pos += 4;
    return v;
  }

  /** A signed 64-bit integer; throws if it is outside the safe JS integer range. */
  i64(what = "i64"): number {
    this.#need(8, what);
    const v = this.#view.getInt32(this.#pos) * TWO_32 + this.#view.getUint32(this.#pos + 4);
    if (!Number.isSafeInteger(v)) throw new MalformedError(`${what} ${v} is out of range`);
    this.#pos += 8;
    return v;
  }

  /** `n` raw bytes, as a view (no copy). */
  raw(n: number, what = "bytes"): Uint8Array {
    if (n < 0) throw new MalformedError(`Negative length ${n} for ${what}`);
    this.#need(n, what);
    const out = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  /** A UTF-8 string with a u16 length prefix. */
  string(what = "string"): string {
    const n = this.u16(what);
    if (n <= ASCII_INLINE_CHARS_MAX) {
      this.#need(n, what);
      const ascii = asciiAt(this.#buf, this.#pos, n);
      if (ascii !== null) {
        this.#pos += n;
        return ascii;
      }
    }
    try {
      return decoder.decode(this.raw(n, what));
    } catch (err) {
      if (err instanceof MalformedError) throw err;
      throw new MalformedError(`${what} is not valid UTF-8`);
    }
  }

  /** Bytes with a u32 length prefix (0xffffffff = null), as a view. */
  bytes(what = "bytes"): Uint8Array | null {
    const n = this.u32(what);
    if (n === 0xffffffff) return null;
    return this.raw(n, what);
  }

  /** A zigzag varint of at most 10 bytes, in the safe integer range. */
  varint(what = "varint"): number {
    if (this.#pos < this.#end) {
      // The common case, a one-byte varint: zigzag z = b, value z >> 1 with its sign in bit 0.
      const b = this.#buf[this.#pos] as number;
      if (b < 0x80) {
        this.#pos++;
        return (b & 1) === 1 ? -(b >>> 1) - 1 : b >>> 1;
      }
    }
    // Decodes m = (z >> 1) rather than z, which for safe results can exceed 2^53 (see Writer).
    // The terms are non-negative, so m's sum is exact below 2^53 and at least 2^53 above it.
    let b = this.u8(what);
    const sign = b & 1;
    let m = (b & 0x7f) >>> 1;
    let scale = 0x40;
    for (let i = 1; (b & 0x80) !== 0; i++) {
      if (i === 10) throw new MalformedError(`${what} is longer than 10 bytes`);
      b = this.u8(what);
      m += (b & 0x7f) * scale;
      scale *= 0x80;
    }
    if (m > Number.MAX_SAFE_INTEGER - sign) throw new MalformedError(`${what} is out of range`);
    return sign === 1 ? -m - 1 : m;
  }

  /** Throws unless every byte was consumed. */
  end(what: string): void {
    if (this.#pos !== this.#end) {
      throw new MalformedError(`${this.#end - this.#pos} unexpected bytes after ${what}`);
    }
  }
}
