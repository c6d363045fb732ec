// CRC-32C (Castagnoli), the checksum of record batches and of anything we write to disk.
// Table-driven, slicing by 16 over 32-bit words (on little-endian hosts), pure and synchronous.

const POLY = 0x82f63b78;
/** Table slices: the CRC of a 16-byte step is the XOR of 16 lookups. */
const SLICES = 16;
/** Inputs shorter than this go byte by byte: a word view costs more than it saves. */
const WORD_LOOP_BYTES_MIN = 64;

/** Slice t, entry n at `t * 256 + n`: slice 0 is the byte table, slice t is t zero bytes later. */
function makeTable(): Int32Array {
  const t = new Int32Array(SLICES * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c;
  }
  for (let i = 256; i < SLICES * 256; i++) {
    const p = t[i - 256] as number;
    t[i] = (p >>> 8) ^ (t[p & 0xff] as number);
  }
  return t;
}

const T = makeTable();
/** Words read through an Int32Array are little-endian only on a little-endian host. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Computes the CRC-32C of `bytes`, continuing from `crc` (the result of a previous call) if given.
 *
 * @example
 * ```ts
 * import { crc32c } from "./crc32c.ts";
 * crc32c(new TextEncoder().encode("123456789")); // 0xe3069283
 * ```
 */
export function crc32c(bytes: Uint8Array, crc = 0): number {
  let c = ~crc;
  let i = 0;
  const n = bytes.length;
  if (LITTLE_ENDIAN && n >= WORD_LOOP_BYTES_MIN) {
    // Bytes up to a 4-byte boundary one at a time, then 16 bytes (4 aligned words) per step.
    const lead = (4 - (bytes.byteOffset & 3)) & 3;
    for (; i < lead; i++) c = T[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
    const words = ((n - i) >>> 4) << 2;
    const w = new Int32Array(bytes.buffer, bytes.byteOffset + i, words);
    for (let k = 0; k < words; k += 4) {
      const a = c ^ w[k]!;
      const b = w[k + 1]!;
      const d = w[k + 2]!;
      const e = w[k + 3]!;
      c = T[0xf00 | (a & 0xff)]! ^ T[0xe00 | ((a >>> 8) & 0xff)]! ^
        T[0xd00 | ((a >>> 16) & 0xff)]! ^ T[0xc00 | (a >>> 24)]! ^
        T[0xb00 | (b & 0xff)]! ^ T[0xa00 | ((b >>> 8) & 0xff)]! ^
        T[0x900 | ((b >>> 16) & 0xff)]! ^ T[0x800 | (b >>> 24)]! ^
        T[0x700 | (d & 0xff)]! ^ T[0x600 | ((d >>> 8) & 0xff)]! ^
        T[0x500 | ((d >>> 16) & 0xff)]! ^ T[0x400 | (d >>> 24)]! ^
        T[0x300 | (e & 0xff)]! ^ T[0x200 | ((e >>> 8) & 0xff)]! ^
        T[0x100 | ((e >>> 16) & 0xff)]! ^ T[e >>> 24]!;
    }
    i += words << 2;
  }
  for (; i < n; i++) c = T[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
