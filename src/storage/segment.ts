// One segment of a partition's log: a file of record batches named by its base offset, with a
// sparse offset index and a time index kept in memory and written beside it when the segment is
// sealed. Also: scanning a segment's bytes, which recovery and index rebuilding share.

import type { File } from "../io/types.ts";
import { crc32c } from "../protocol/crc32c.ts";
import {
  BATCH_HEADER_BYTES,
  BATCH_LENGTH_PREFIX_BYTES,
  BATCH_MAGIC,
  type BatchHeader,
  CorruptBatchError,
  readBatchHeader,
} from "../protocol/batch.ts";

/** "GIDX": the trailer magic of an index file. */
const INDEX_MAGIC = 0x47494458;
/** Bytes of an offset index entry: relative offset u32, position u32. */
const OFFSET_ENTRY_BYTES = 8;
/** Bytes of a time index entry: timestamp i64, relative offset u32. */
const TIME_ENTRY_BYTES = 12;
/** Bytes of an index trailer: magic, entry count, CRC-32C of the entries. */
const TRAILER_BYTES = 12;

/** Sparse lookup tables of one segment. */
export class SegmentIndex {
  /** Offsets relative to the segment base, ascending. */
  readonly offsets: number[] = [];
  /** File positions of the batches holding those offsets. */
  readonly positions: number[] = [];
  /** Max timestamps seen, ascending, with the relative offset of their batch. */
  readonly times: number[] = [];
  readonly timeOffsets: number[] = [];
  #bytesSinceEntry = Infinity;
  readonly #intervalBytes: number;

  constructor(intervalBytes: number) {
    this.#intervalBytes = intervalBytes;
  }

  /** Records a batch appended at `position` (every `intervalBytes` or so). */
  add(relOffset: number, position: number, sizeBytes: number, maxTimestamp: number): void {
    if (this.#bytesSinceEntry >= this.#intervalBytes) {
      this.offsets.push(relOffset);
      this.positions.push(position);
      this.#bytesSinceEntry = 0;
    }
    this.#bytesSinceEntry += sizeBytes;
    const lastTime = this.times[this.times.length - 1];
    if (lastTime === undefined || maxTimestamp > lastTime) {
      this.times.push(maxTimestamp);
      this.timeOffsets.push(relOffset);
    }
  }

  /**
   * A copy holding only the entries of batches before `relOffset` (the log was cut there); the
   * next batch added gets an entry, since the bytes since the last one are not known.
   */
  truncatedBefore(relOffset: number): SegmentIndex {
    const idx = new SegmentIndex(this.#intervalBytes);
    for (const [i, rel] of this.offsets.entries()) {
      if (rel >= relOffset) break;
      idx.offsets.push(rel);
      idx.positions.push(this.positions[i] as number);
    }
    for (const [i, rel] of this.timeOffsets.entries()) {
      if (rel >= relOffset) break;
      idx.times.push(this.times[i] as number);
      idx.timeOffsets.push(rel);
    }
    return idx;
  }

  /**
   * The last indexed batch at or before `relOffset`: its relative base offset and position
   * ({ rel: 0, position: 0 }, the segment's first batch, if none).
   */
  lookup(relOffset: number): { rel: number; position: number } {
    let lo = 0;
    let hi = this.offsets.length - 1;
    let best = { rel: 0, position: 0 };
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.offsets[mid] as number) <= relOffset) {
        best = { rel: this.offsets[mid] as number, position: this.positions[mid] as number };
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return best;
  }

  /** The relative offset of the first batch whose max timestamp is at or after `ts`, or null. */
  offsetForTime(ts: number): number | null {
    let lo = 0;
    let hi = this.times.length - 1;
    let found: number | null = null;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.times[mid] as number) >= ts) {
        found = this.timeOffsets[mid] as number;
        hi = mid - 1;
      } else {
        lo = mid + 1;
      }
    }
    return found;
  }

  /** The offset index as a file: entries then a checksummed trailer. */
  encodeOffsets(): Uint8Array {
    const out = new Uint8Array(this.offsets.length * OFFSET_ENTRY_BYTES + TRAILER_BYTES);
    const dv = new DataView(out.buffer);
    this.offsets.forEach((o, i) => {
      dv.setUint32(i * OFFSET_ENTRY_BYTES, o);
      dv.setUint32(i * OFFSET_ENTRY_BYTES + 4, this.positions[i] as number);
    });
    writeTrailer(out, this.offsets.length);
    return out;
  }

  /** The time index as a file. */
  encodeTimes(): Uint8Array {
    const out = new Uint8Array(this.times.length * TIME_ENTRY_BYTES + TRAILER_BYTES);
    const dv = new DataView(out.buffer);
    this.times.forEach((t, i) => {
      dv.setInt32(i * TIME_ENTRY_BYTES, Math.floor(t / 0x1_0000_0000));
      dv.setUint32(i * TIME_ENTRY_BYTES + 4, t >>> 0);
      dv.setUint32(i * TIME_ENTRY_BYTES + 8, this.timeOffsets[i] as number);
    });
    writeTrailer(out, this.times.length);
    return out;
  }

  /**
   * Loads both index files into a fresh index; null if either is damaged or inconsistent (the
   * caller then rebuilds from the segment).
   */
  static decode(
    offsetFile: Uint8Array,
    timeFile: Uint8Array,
    intervalBytes: number,
    segmentBytes: number,
  ): SegmentIndex | null {
    const n = checkTrailer(offsetFile, OFFSET_ENTRY_BYTES);
    const m = checkTrailer(timeFile, TIME_ENTRY_BYTES);
    if (n === null || m === null) return null;
    const idx = new SegmentIndex(intervalBytes);
    const dv = new DataView(offsetFile.buffer, offsetFile.byteOffset, offsetFile.byteLength);
    for (let i = 0; i < n; i++) {
      const rel = dv.getUint32(i * OFFSET_ENTRY_BYTES);
      const pos = dv.getUint32(i * OFFSET_ENTRY_BYTES + 4);
      const prevRel = idx.offsets[i - 1] ?? -1;
      const prevPos = idx.positions[i - 1] ?? -1;
      if (rel <= prevRel || pos <= prevPos || pos >= segmentBytes) return null;
      idx.offsets.push(rel);
      idx.positions.push(pos);
    }
    const tv = new DataView(timeFile.buffer, timeFile.byteOffset, timeFile.byteLength);
    for (let i = 0; i < m; i++) {
      const t = tv.getInt32(i * TIME_ENTRY_BYTES) * 0x1_0000_0000 +
        tv.getUint32(i * TIME_ENTRY_BYTES + 4);
      idx.times.push(t);
      idx.timeOffsets.push(tv.getUint32(i * TIME_ENTRY_BYTES + 8));
    }
    return idx;
  }
}

function writeTrailer(out: Uint8Array, count: number): void {
  const entries = out.subarray(0, out.length - TRAILER_BYTES);
  const dv = new DataView(out.buffer, out.byteOffset + entries.length, TRAILER_BYTES);
  dv.setUint32(0, INDEX_MAGIC);
  dv.setUint32(4, count);
  dv.setUint32(8, crc32c(entries));
}

function checkTrailer(file: Uint8Array, entryBytes: number): number | null {
  if (file.length < TRAILER_BYTES) return null;
  const entries = file.subarray(0, file.length - TRAILER_BYTES);
  const dv = new DataView(file.buffer, file.byteOffset + entries.length, TRAILER_BYTES);
  const count = dv.getUint32(4);
  if (dv.getUint32(0) !== INDEX_MAGIC || count * entryBytes !== entries.length) return null;
  return dv.getUint32(8) === crc32c(entries) ? count : null;
}

/** An open segment. */
export interface Segment {
  readonly baseOffset: number;
  /** One past the last offset stored in it. */
  nextOffset: number;
  /** Bytes of whole batches in the file. */
  sizeBytes: number;
  maxTimestamp: number;
  /** Wall time the segment was started (for roll by age), ms. */
  createdAtMs: number;
  file: File;
  index: SegmentIndex;
  sealed: boolean;
}

/** What scanning a segment's bytes found. */
export interface ScanResult {
  /** Bytes of whole, valid batches from the start. */
  validBytes: number;
  /** One past the last offset of the valid batches (the base offset if none). */
  nextOffset: number;
  maxTimestamp: number;
  /** The first batch's timestamp, if any. */
  firstTimestamp: number | null;
  index: SegmentIndex;
  /** Why the scan stopped before the end, or null if every byte was valid. */
  stoppedBecause: string | null;
  /** Every valid batch: its position, size and base offset. */
  batches: { pos: number; size: number; base: number }[];
}

/** Bytes read per step while scanning. */
const SCAN_CHUNK_BYTES = 1024 * 1024;

/**
 * Reads a segment from the start (or from the batch `from` names: its byte and base offset),
 * checking each batch (structure, checksum, offsets continuing from `baseOffset`), and returns the
 * valid prefix with its index (of the batches scanned). A checksum failure is read again
 * (`rereads` times) before it counts, since a read can flip a bit the disk holds correctly.
 */
export async function scanSegment(
  file: File,
  baseOffset: number,
  intervalBytes: number,
  rereads: number,
  from: { pos: number; offset: number } = { pos: 0, offset: baseOffset },
): Promise<ScanResult> {
  const size = await file.size();
  const index = new SegmentIndex(intervalBytes);
  let pos = from.pos;
  let next = from.offset;
  let maxTs = -1;
  let firstTs: number | null = null;
  let stoppedBecause: string | null = null;
  const batches: { pos: number; size: number; base: number }[] = [];
  while (pos < size) {
    const problem = await checkBatchAt(file, pos, size, next, rereads);
    if (typeof problem === "string") {
      stoppedBecause = problem;
      break;
    }
    const h = problem;
    batches.push({ pos, size: h.sizeBytes, base: h.baseOffset });
    index.add(h.baseOffset - baseOffset, pos, h.sizeBytes, h.maxTimestamp);
    firstTs ??= h.firstTimestamp;
    maxTs = Math.max(maxTs, h.maxTimestamp);
    next = h.baseOffset + h.recordCount;
    pos += h.sizeBytes;
  }
  return {
    validBytes: pos,
    nextOffset: next,
    maxTimestamp: maxTs,
    firstTimestamp: firstTs,
    index,
    stoppedBecause,
    batches,
  };
}

/**
 * Reads the batch at `pos` of `size` bytes with base offset `base`, verified (checksum, base
 * offset, length); re-reads up to `rereads` times. Throws if it never reads back whole.
 */
export async function readVerifiedBatch(
  file: File,
  b: { pos: number; size: number; base: number },
  rereads: number,
): Promise<Uint8Array> {
  for (let attempt = 0;; attempt++) {
    const bytes = new Uint8Array(b.size);
    if (await readOrRetry(file, b.pos, bytes, attempt < rereads)) {
      const dv = new DataView(bytes.buffer);
      const base = dv.getInt32(0) * 0x1_0000_0000 + dv.getUint32(4);
      const ok = base === b.base && dv.getInt32(8) + BATCH_LENGTH_PREFIX_BYTES === b.size &&
        bytes[MAGIC_AT] === BATCH_MAGIC && crc32c(bytes.subarray(21)) === dv.getUint32(17);
      // The leader-epoch bytes sit outside the CRC: a second read must agree on them, or a bit
      // flipped on this read would be copied (recovery) or served as if stored.
      if (ok && await sameBytesAgain(file, b.pos, bytes, EPOCH_AT, MAGIC_AT)) return bytes;
    }
    if (attempt >= rereads) throw new Error(`Batch at byte ${b.pos} does not read back intact`);
  }
}

/** Where the unchecksummed partition-leader-epoch field and the magic byte sit in a batch. */
const EPOCH_AT = 12;
const MAGIC_AT = 16;

/** True if bytes [from, to) of `bytes` read back the same from the file (an I/O error: false). */
async function sameBytesAgain(
  file: File,
  pos: number,
  bytes: Uint8Array,
  from: number,
  to: number,
): Promise<boolean> {
  const again = new Uint8Array(to - from);
  try {
    await file.readAt(pos + from, again);
  } catch {
    return false;
  }
  return again.every((x, i) => x === bytes[from + i]);
}

/** Reads; on an I/O error returns false if another attempt is allowed, else throws. */
async function readOrRetry(
  file: File,
  pos: number,
  buf: Uint8Array,
  mayRetry: boolean,
): Promise<boolean> {
  try {
    await file.readAt(pos, buf);
    return true;
  } catch (err) {
    if (mayRetry) return false;
    throw err;
  }
}

/** The header of a whole, valid batch at `pos` with base offset `expected`, or why not. */
async function checkBatchAt(
  file: File,
  pos: number,
  size: number,
  expected: number,
  rereads: number,
): Promise<BatchHeader | string> {
  let why = "";
  for (let attempt = 0; attempt <= rereads; attempt++) {
    const head = new Uint8Array(Math.min(BATCH_HEADER_BYTES, size - pos));
    if (!(await readOrRetry(file, pos, head, attempt < rereads))) continue;
    if (head.length < BATCH_HEADER_BYTES) return `a partial batch header at byte ${pos}`;
    const length = new DataView(head.buffer).getInt32(8) + BATCH_LENGTH_PREFIX_BYTES;
    if (head[16] !== BATCH_MAGIC || length < BATCH_HEADER_BYTES || length > SCAN_CHUNK_BYTES * 64) {
      why = `no batch header at byte ${pos}`;
      continue;
    }
    if (pos + length > size) {
      why = `a batch at byte ${pos} runs past the end of the file`;
      continue;
    }
    const bytes = new Uint8Array(length);
    if (!(await readOrRetry(file, pos, bytes, attempt < rereads))) continue;
    try {
      const h = readBatchHeader(bytes);
      if (crc32c(bytes.subarray(21)) !== h.crc) throw new CorruptBatchError("checksum mismatch");
      // The length is outside the checksum too: this read's must agree with the one that sized
      // it, or a bit flipped on this read would move the scan to a wrong position.
      if (h.sizeBytes !== length) {
        why = `batch at byte ${pos} reads back with two lengths`;
        continue;
      }
      // The base offset is outside the checksum, so a mismatch may be a flipped bit too.
      if (h.baseOffset !== expected) {
        why = `batch at byte ${pos} has base offset ${h.baseOffset}, expected ${expected}`;
        continue;
      }
      if (h.recordCount < 1 || h.lastOffsetDelta !== h.recordCount - 1) {
        return `batch at byte ${pos} has a wrong record count`;
      }
      return h;
    } catch (err) {
      why = `batch at byte ${pos} is corrupt (${(err as Error).message})`;
    }
  }
  return why;
}
