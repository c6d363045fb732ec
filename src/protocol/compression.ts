// Per-batch compression codecs for record batches. Every decompressor is bounded by the caller's
// output limit before it allocates, so a small hostile batch cannot inflate without limit. The
// codec libraries are big to load, so record batches reach them through codecs.ts, which loads
// this module on first need; importing it installs the codecs there.

// A namespace import: Node before 22.15 has no zstd in node:zlib, and a named import of a missing
// export would stop the whole client from loading there instead of failing only zstd.
import * as zlib from "node:zlib";
import * as snappyjs from "snappyjs";
import * as lz4wasm from "lz4-wasm";
import {
  Codec,
  type CodecId,
  type CodecName,
  codecName,
  CompressionError,
  DECOMPRESSED_BYTES_CEILING,
  installCodecs,
} from "./codecs.ts";

export {
  Codec,
  CODEC_NAMES,
  type CodecId,
  type CodecName,
  codecName,
  CompressionError,
  DECOMPRESSED_BYTES_CEILING,
} from "./codecs.ts";

/** The subset of snappyjs we call; the package ships no types. */
interface SnappyJs {
  compress(bytes: Uint8Array): Uint8Array;
  uncompress(bytes: Uint8Array, lengthMax: number): Uint8Array;
}
const snappy = snappyjs as unknown as SnappyJs;

/**
 * Compresses `bytes` with codec `id`. `none` returns the input unchanged.
 *
 * @param id The codec.
 * @param bytes The uncompressed bytes.
 * @returns The compressed bytes, a plain `Uint8Array`.
 * @throws {RangeError} If `id` is not a known codec.
 * @example
 * ```ts
 * import { Codec, compress, decompress } from "./compression.ts";
 * const packed = compress(Codec.zstd, new Uint8Array(1000));
 * decompress(Codec.zstd, packed, 1000).length; // 1000
 * ```
 */
export function compress(id: CodecId, bytes: Uint8Array): Uint8Array {
  switch (id) {
    case Codec.none:
      return bytes;
    case Codec.gzip:
      return plain(zlib.gzipSync(bytes));
    case Codec.snappy:
      return plain(snappy.compress(bytes));
    case Codec.lz4:
      return plain(lz4wasm.compress(bytes));
    case Codec.zstd:
      // node:zlib starts a second, empty frame when the first ends on its output chunk boundary
      // (16 KiB by default); one chunk that fits the worst case keeps it to a single frame.
      return plain(
        zstdZlib().zstdCompressSync(bytes, { chunkSize: zstdCompressedBytesMax(bytes.length) }),
      );
    default:
      throw new RangeError(`Cannot compress with codec ${id}: not a known codec id`);
  }
}

/**
 * Decompresses `bytes`. The whole input must be complete compressed data; missing or trailing
 * bytes are corruption, except that gzip follows node:zlib in joining concatenated members and
 * ignoring zero padding after the last one. A limit above `DECOMPRESSED_BYTES_CEILING` acts as
 * that ceiling.
 *
 * @param id The codec the bytes were compressed with.
 * @param bytes The compressed bytes.
 * @param outputBytesMax The largest output allowed; checked before the output is allocated.
 * @returns The decompressed bytes, a plain `Uint8Array`.
 * @throws {CompressionError} If the input is corrupt or the output would exceed `outputBytesMax`.
 * @throws {RangeError} If `id` is not a known codec or `outputBytesMax` is not a non-negative integer.
 * @example
 * ```ts
 * import { Codec, compress, CompressionError, decompress } from "./compression.ts";
 * const packed = compress(Codec.gzip, new Uint8Array(1 << 20));
 * try {
 *   decompress(Codec.gzip, packed, 1000);
 * } catch (err) {
 *   err instanceof CompressionError; // true: 1 MiB is over 1000 bytes
 * }
 * ```
 */
export function decompress(id: CodecId, bytes: Uint8Array, outputBytesMax: number): Uint8Array {
  if (!Number.isSafeInteger(outputBytesMax) || outputBytesMax < 0) {
    throw new RangeError(`outputBytesMax must be a non-negative integer, got ${outputBytesMax}`);
  }
  const name = codecName(id);
  if (name === null) {
    throw new RangeError(`Cannot decompress with codec ${id}: not a known codec id`);
  }
  const limit = Math.min(outputBytesMax, DECOMPRESSED_BYTES_CEILING);
  let out: Uint8Array;
  switch (id) {
    case Codec.none:
      out = bytes;
      break;
    case Codec.gzip:
      out = zlibDecompress("gzip", bytes, limit);
      break;
    case Codec.snappy:
      checkSnappy(bytes, limit);
      out = library("snappy", () => snappy.uncompress(bytes, limit));
      break;
    case Codec.lz4:
      checkLz4(bytes, limit);
      out = library("lz4", () => lz4wasm.decompress(bytes));
      break;
    case Codec.zstd:
      out = decompressZstd(bytes, limit);
      break;
  }
  if (out.length > limit) throw overLimit(name, out.length, limit);
  return plain(out);
}

/** node:zlib, checked to have zstd (Deno and Node 22.15+ do; Node 20 does not). */
function zstdZlib(): typeof zlib {
  if (typeof zlib.zstdCompressSync !== "function") {
    throw new CompressionError(
      "zstd",
      "Cannot use zstd: this runtime's node:zlib has no zstd (Node 22.15 or later, or Deno, has it)",
    );
  }
  return zlib;
}

/** Decompresses gzip or one zstd frame with node:zlib, which stops once output passes `limit`. */
function zlibDecompress(name: "gzip" | "zstd", bytes: Uint8Array, limit: number): Uint8Array {
  const fn = name === "gzip" ? zlib.gunzipSync : zstdZlib().zstdDecompressSync;
  try {
    // maxOutputLength must be at least 1; decompress() checks a limit of 0 on the 1-byte result.
    return fn(bytes, { maxOutputLength: Math.max(limit, 1) });
  } catch (err) {
    if ((err as { code?: unknown }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new CompressionError(
        name,
        `Cannot decompress ${name}: output is over the limit of ${limit} bytes`,
        { cause: err },
      );
    }
    throw new CompressionError(name, `Cannot decompress ${name}: ${String(err)}`, { cause: err });
  }
}

/** Runs a library decompressor on input already checked, mapping whatever it throws. */
function library(name: CodecName, fn: () => Uint8Array): Uint8Array {
  try {
    return fn();
  } catch (err) {
    // lz4-wasm throws bare strings for corrupt input and a RuntimeError for a wasm trap.
    throw new CompressionError(name, `Cannot decompress ${name}: ${String(err)}`, { cause: err });
  }
}

function overLimit(name: CodecName, outputBytes: number, limit: number): CompressionError {
  return new CompressionError(
    name,
    `Cannot decompress ${name}: output of ${outputBytes} bytes is over the limit of ${limit}`,
  );
}

function corrupt(name: CodecName, why: string): CompressionError {
  return new CompressionError(name, `Cannot decompress ${name}: ${why}`);
}

/**
 * Walks a raw snappy stream without writing output. snappyjs trusts its input: it allocates the
 * declared length up front, pads a stream that stops short with zeros, and loops forever on a
 * literal whose 4-byte length reads as negative. So nothing reaches it unless every element is in
 * bounds and the elements add up to exactly the declared length.
 */
function checkSnappy(bytes: Uint8Array, limit: number): void {
  const n = bytes.length;
  let p = 0;
  let declared = 0;
  for (let shift = 0;; shift += 7) {
    if (p === n) throw corrupt("snappy", "the uncompressed length is cut off");
    if (shift > 28) throw corrupt("snappy", "the uncompressed length is over 5 bytes long");
    const b = bytes[p++]!;
    declared += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  if (declared > limit) throw overLimit("snappy", declared, limit);
  let out = 0;
  while (p < n) {
    const tag = bytes[p++]!;
    let len: number;
    if ((tag & 3) === 0) {
      len = tag >>> 2;
      if (len >= 60) {
        const lenBytes = len - 59;
        if (lenBytes > n - p) throw corrupt("snappy", `a literal's length is cut off at byte ${p}`);
        len = 0;
        for (let i = 0; i < lenBytes; i++) len += bytes[p + i]! * 2 ** (8 * i);
        p += lenBytes;
      }
      len += 1;
      if (len > n - p) throw corrupt("snappy", `a literal of ${len} bytes runs past the input`);
      if (len > declared - out) throw corrupt("snappy", `output runs past ${declared} bytes`);
      p += len;
      out += len;
      continue;
    }
    let offset: number;
    const offsetBytes = (tag & 3) === 3 ? 4 : tag & 3;
    if (offsetBytes > n - p) throw corrupt("snappy", `a copy's offset is cut off at byte ${p}`);
    if ((tag & 3) === 1) {
      len = ((tag >>> 2) & 7) + 4;
      offset = ((tag >>> 5) << 8) | bytes[p]!;
    } else {
      len = (tag >>> 2) + 1;
      offset = 0;
      for (let i = 0; i < offsetBytes; i++) offset += bytes[p + i]! * 2 ** (8 * i);
    }
    p += offsetBytes;
    if (offset === 0 || offset > out) {
      throw corrupt("snappy", `a copy from offset ${offset} reaches before the start of output`);
    }
    if (len > declared - out) throw corrupt("snappy", `output runs past ${declared} bytes`);
    out += len;
  }
  if (out !== declared) {
    throw corrupt("snappy", `the stream ends after ${out} of its ${declared} bytes`);
  }
}

/**
 * Walks an lz4-wasm block (a 4-byte little-endian uncompressed size, then one LZ4 block) without
 * writing output. lz4-wasm allocates the declared size inside wasm memory, which never shrinks, and
 * a failed allocation traps; each trap leaks wasm stack until the instance fails for good. So
 * nothing reaches it unless the sequences are in bounds and add up to exactly the declared size.
 */
function checkLz4(bytes: Uint8Array, limit: number): void {
  const n = bytes.length;
  if (n < 4) throw corrupt("lz4", `${n} bytes is shorter than the 4-byte size prefix`);
  const declared = (bytes[0]! | bytes[1]! << 8 | bytes[2]! << 16 | bytes[3]! << 24) >>> 0;
  if (declared > limit) throw overLimit("lz4", declared, limit);
  let p = 4;
  let out = 0;
  for (;;) {
    if (p === n) throw corrupt("lz4", "the block ends without its final literals");
    const token = bytes[p++]!;
    let literals = token >>> 4;
    if (literals === 15) {
      for (let b = 255; b === 255; literals += b) {
        if (p === n) throw corrupt("lz4", "a literal length is cut off");
        b = bytes[p++]!;
      }
    }
    if (literals > n - p) throw corrupt("lz4", `${literals} literals run past the input`);
    if (literals > declared - out) throw corrupt("lz4", `output runs past ${declared} bytes`);
    p += literals;
    out += literals;
    if (p === n) break;
    if (n - p < 2) throw corrupt("lz4", "a match offset is cut off");
    const offset = bytes[p]! | bytes[p + 1]! << 8;
    p += 2;
    if (offset === 0 || offset > out) {
      throw corrupt("lz4", `a match from offset ${offset} reaches before the start of output`);
    }
    let match = (token & 15) + 4;
    if ((token & 15) === 15) {
      for (let b = 255; b === 255; match += b) {
        if (p === n) throw corrupt("lz4", "a match length is cut off");
        b = bytes[p++]!;
      }
    }
    if (match > declared - out) throw corrupt("lz4", `output runs past ${declared} bytes`);
    out += match;
  }
  if (out !== declared) {
    throw corrupt("lz4", `the block ends after ${out} of its ${declared} bytes`);
  }
}

const ZSTD_MAGIC = 0xfd2fb528;
const ZSTD_SKIPPABLE_MAGIC = 0x184d2a50;
const ZSTD_SKIPPABLE_MASK = 0xfffffff0;
const ZSTD_FCS_BYTES = [0, 2, 4, 8] as const;
const ZSTD_DICTIONARY_ID_BYTES = [0, 1, 2, 4] as const;
const ZSTD_BLOCK_RLE = 1;
const ZSTD_BLOCK_RESERVED = 3;
const ZSTD_BLOCK_BYTES_MAX = 128 * 1024;

/** ZSTD_COMPRESSBOUND from zstd.h: the largest a frame of `bytesCount` input can be. */
function zstdCompressedBytesMax(bytesCount: number): number {
  const small = bytesCount < ZSTD_BLOCK_BYTES_MAX ? (ZSTD_BLOCK_BYTES_MAX - bytesCount) >>> 11 : 0;
  return bytesCount + (bytesCount >>> 8) + small;
}

/**
 * Decodes zstd frame by frame. node:zlib returns whatever it decoded from a truncated frame
 * without complaint, and decodes only the first of several frames (a skippable first frame gives
 * empty output), silently dropping the rest; so the frames are found here and checked complete,
 * and each is handed over alone with what is left of the limit.
 */
function decompressZstd(bytes: Uint8Array, limit: number): Uint8Array {
  const parts: Uint8Array[] = [];
  let outputBytes = 0;
  for (const [start, end] of zstdFrames(bytes, limit)) {
    const part = zlibDecompress("zstd", bytes.subarray(start, end), limit - outputBytes);
    parts.push(part);
    outputBytes += part.length;
    if (outputBytes > limit) throw overLimit("zstd", outputBytes, limit);
  }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(outputBytes);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * The [start, end) of each zstd frame in `bytes` (RFC 8878 §3.1), at least one, skipping skippable
 * frames. Walks frame and block headers only; zstd checks the blocks themselves as it decodes
 * them. The frames' declared content sizes must fit in `limit`.
 */
function zstdFrames(bytes: Uint8Array, limit: number): [number, number][] {
  const n = bytes.length;
  const frames: [number, number][] = [];
  let declared = 0;
  let p = 0;
  while (p < n) {
    const start = p;
    if (n - p < 4) throw corrupt("zstd", `a frame's magic number is cut off at byte ${p}`);
    const magic = u32le(bytes, p);
    p += 4;
    if (((magic & ZSTD_SKIPPABLE_MASK) >>> 0) === ZSTD_SKIPPABLE_MAGIC) {
      if (n - p < 4) throw corrupt("zstd", "a skippable frame's size is cut off");
      const size = u32le(bytes, p);
      p += 4;
      if (size > n - p) throw corrupt("zstd", "a skippable frame is cut off");
      p += size;
      continue;
    }
    if (magic !== ZSTD_MAGIC) throw corrupt("zstd", `bad frame magic number at byte ${start}`);
    if (p === n) throw corrupt("zstd", "a frame header is cut off");
    const descriptor = bytes[p++]!;
    const singleSegment = (descriptor >>> 5) & 1;
    const fcsBytes = singleSegment === 1 && descriptor >>> 6 === 0
      ? 1
      : ZSTD_FCS_BYTES[descriptor >>> 6]!;
    const skipBytes = (1 - singleSegment) + ZSTD_DICTIONARY_ID_BYTES[descriptor & 3]!;
    if (skipBytes + fcsBytes > n - p) throw corrupt("zstd", "a frame header is cut off");
    p += skipBytes;
    if (fcsBytes > 0) {
      let size = fcsBytes === 2 ? 256 : 0;
      for (let i = 0; i < fcsBytes; i++) size += bytes[p + i]! * 2 ** (8 * i);
      p += fcsBytes;
      declared += size;
      if (declared > limit) throw overLimit("zstd", declared, limit);
    }
    for (let last = 0; last === 0;) {
      if (n - p < 3) throw corrupt("zstd", `a block header is cut off at byte ${p}`);
      const header = bytes[p]! | bytes[p + 1]! << 8 | bytes[p + 2]! << 16;
      p += 3;
      last = header & 1;
      const type = (header >>> 1) & 3;
      if (type === ZSTD_BLOCK_RESERVED) {
        throw corrupt("zstd", `reserved block type at byte ${p - 3}`);
      }
      const contentBytes = type === ZSTD_BLOCK_RLE ? 1 : header >>> 3;
      if (contentBytes > n - p) throw corrupt("zstd", `a block is cut off at byte ${n}`);
      p += contentBytes;
    }
    if ((descriptor >>> 2) & 1) {
      if (n - p < 4) throw corrupt("zstd", "a frame's checksum is cut off");
      p += 4;
    }
    frames.push([start, p]);
  }
  if (frames.length === 0) throw corrupt("zstd", "the input holds no frame of data");
  return frames;
}

function u32le(bytes: Uint8Array, p: number): number {
  return (bytes[p]! | bytes[p + 1]! << 8 | bytes[p + 2]! << 16 | bytes[p + 3]! << 24) >>> 0;
}

/**
 * A plain Uint8Array with the same bytes. Node's Buffer is a subclass (so deepEqual against a
 * Uint8Array fails) and may be a view into a shared pool, so a partial view is copied.
 */
function plain(bytes: Uint8Array): Uint8Array {
  if (Object.getPrototypeOf(bytes) === Uint8Array.prototype) return bytes;
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
    return new Uint8Array(bytes.buffer);
  }
  return new Uint8Array(bytes);
}

installCodecs({ compress, decompress });
