// MemoryLog, the memory-only twin of FileLog behind the Log interface: batches held in memory,
// bounded by size.

import { type BatchHeader, setBaseOffset } from "../protocol/batch.ts";
import {
  type AppendResult,
  type Log,
  OffsetInsideBatch,
  OffsetOutOfRange,
  type ReadLimits,
  type ReadResult,
} from "./log.ts";

interface StoredBatch {
  baseOffset: number;
  lastOffset: number;
  maxTimestamp: number;
  bytes: Uint8Array;
}

/** Options for a MemoryLog. */
export interface MemoryLogOptions {
  /** Oldest batches are dropped once the log holds more than this many bytes. */
  retentionBytes: number;
}

/** A log held in memory, bounded by size: the oldest batches are dropped first. */
export class MemoryLog implements Log {
  readonly #batches: StoredBatch[] = [];
  /** Index of the first live batch in #batches (dropped ones are compacted lazily). */
  #head = 0;
  #start = 0;
  #next = 0;
  #size = 0;
  #retentionBytes: number;

  constructor(opts: MemoryLogOptions) {
    this.#retentionBytes = opts.retentionBytes;
  }

  get logStartOffset(): number {
    return this.#start;
  }

  get nextOffset(): number {
    return this.#next;
  }

  get sizeBytes(): number {
    return this.#size;
  }

  append(batch: Uint8Array, header: BatchHeader): Promise<AppendResult> {
    const baseOffset = this.#next;
    const lastOffset = baseOffset + header.recordCount - 1;
    setBaseOffset(batch, 0, baseOffset);
    this.#batches.push({ baseOffset, lastOffset, maxTimestamp: header.maxTimestamp, bytes: batch });
    this.#next = lastOffset + 1;
    this.#size += batch.length;
    this.#retain();
    return Promise.resolve({ baseOffset, lastOffset });
  }

  truncateFrom(offset: number): Promise<void> {
    if (offset < this.#start || offset > this.#next) {
      return Promise.reject(new OffsetOutOfRange(offset, this.#start, this.#next));
    }
    if (offset === this.#next) return Promise.resolve();
    const i = this.#find(offset);
    const b = this.#batches[i] as StoredBatch;
    if (b.baseOffset !== offset) {
      return Promise.reject(new OffsetInsideBatch(offset, b.baseOffset, b.lastOffset));
    }
    for (const gone of this.#batches.splice(i)) this.#size -= gone.bytes.length;
    this.#next = offset;
    return Promise.resolve();
  }

  /**
   * Drops every batch; the next one appended gets offset `offset`. Done when it returns (the
   * promise is for the Log interface): a replica's synchronous snapshot restore relies on that.
   */
  resetTo(offset: number): Promise<void> {
    this.#batches.length = 0;
    this.#head = 0;
    this.#start = offset;
    this.#next = offset;
    this.#size = 0;
    return Promise.resolve();
  }

  /** Nothing to make durable: a MemoryLog keeps nothing over a restart. */
  sync(): Promise<void> {
    return Promise.resolve();
  }

  /** Changes the size limit and drops what is now over it. */
  setRetention(limits: { bytes: number }): void {
    this.#retentionBytes = limits.bytes;
    this.#retain();
  }

  #retain(): void {
    // Keep at least the newest batch, whatever its size.
    while (this.#size > this.#retentionBytes && this.#batches.length - this.#head > 1) {
      const dropped = this.#batches[this.#head++] as StoredBatch;
      this.#size -= dropped.bytes.length;
      this.#start = dropped.lastOffset + 1;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#batches.length) {
      this.#batches.splice(0, this.#head);
      this.#head = 0;
    }
  }

  read(offset: number, limits: ReadLimits): Promise<ReadResult> {
    if (offset < this.#start || offset > this.#next) {
      return Promise.reject(new OffsetOutOfRange(offset, this.#start, this.#next));
    }
    return Promise.resolve(this.#read(offset, limits));
  }

  readCached(offset: number, limits: ReadLimits): ReadResult | null {
    if (offset < this.#start || offset > this.#next) return null;
    return this.#read(offset, limits);
  }

  /** `read` of an offset in range. */
  #read(offset: number, limits: ReadLimits): ReadResult {
    if (offset === this.#next) return { bytes: new Uint8Array(0), nextOffset: offset, records: 0 };
    let i = this.#find(offset);
    const parts: Uint8Array[] = [];
    let bytes = 0;
    let records = 0;
    let nextOffset = offset;
    while (i < this.#batches.length) {
      const b = this.#batches[i] as StoredBatch;
      const n = b.lastOffset + 1 - Math.max(b.baseOffset, offset);
      if (
        parts.length > 0 &&
        (bytes + b.bytes.length > limits.bytesMax || records + n > limits.recordsMax)
      ) {
        break;
      }
      parts.push(b.bytes);
      bytes += b.bytes.length;
      records += n;
      nextOffset = b.lastOffset + 1;
      i++;
    }
    if (parts.length === 1) return { bytes: parts[0] as Uint8Array, nextOffset, records };
    const headroomBytes = limits.headroomBytes ?? 0;
    const joined = concat(parts, bytes, headroomBytes);
    return { bytes: joined, nextOffset, records, headroomBytes };
  }

  /** Index of the batch holding `offset` (which must be stored). */
  #find(offset: number): number {
    let lo = this.#head;
    let hi = this.#batches.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#batches[mid] as StoredBatch).lastOffset < offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  offsetForTimestamp(timestampMs: number): Promise<number> {
    for (let i = this.#head; i < this.#batches.length; i++) {
      const b = this.#batches[i] as StoredBatch;
      if (b.maxTimestamp >= timestampMs) return Promise.resolve(b.baseOffset);
    }
    return Promise.resolve(this.#next);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** `parts` joined, after `headroomBytes` free bytes of the same buffer. */
function concat(parts: Uint8Array[], total: number, headroomBytes: number): Uint8Array {
  const out = new Uint8Array(headroomBytes + total).subarray(headroomBytes);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
