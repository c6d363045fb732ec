// A partition's log: the Log interface every storage backend implements (MemoryLog in memory,
// FileLog in segment files) and its errors. A log stores record batches as the bytes that travel
// on the wire, with the broker-assigned base offset written in.

import type { BatchHeader } from "../protocol/batch.ts";

/** Where an appended batch landed. */
export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
}

/** Batches read from a log. */
export interface ReadResult {
  /** Whole batches back to back; the first may start before the offset asked for. */
  bytes: Uint8Array;
  /** The offset after the last record returned (the next one to ask for). */
  nextOffset: number;
  /** Records in the returned batches at or after the offset asked for. */
  records: number;
  /**
   * Bytes just before `bytes` in its buffer that belong to this result alone (0 or absent: none),
   * at most the `headroomBytes` asked for: the caller may write a frame header there.
   */
  headroomBytes?: number;
}

/** How much one read may return. */
export interface ReadLimits {
  bytesMax: number;
  recordsMax: number;
  /**
   * Free bytes wanted before the batches, so a delivery's frame header can go in front of them
   * without copying them. A log gives them when it copies the batches anyway.
   */
  headroomBytes?: number;
}

/**
 * Where a partition's log fails its checks: the first offset that cannot be served, the segment
 * file and byte its batch starts at, and what was wrong. Offsets before it are served; reads from
 * it and appends are refused until an operator repairs the partition.
 */
export interface LogDamage {
  offset: number;
  file: string;
  byte: number;
  reason: string;
}

/** What a repair cut off a damaged log. */
export interface LogRepair {
  /** The first offset dropped: the log's end after the repair, where new records go. */
  cutOffset: number;
  /** One past the last offset dropped (the log's end before the repair). */
  endOffset: number;
  bytesDropped: number;
  /** The damage the cut removed. */
  damage: LogDamage;
}

/** The storage of one partition. */
export interface Log {
  /** The first offset still stored. */
  readonly logStartOffset: number;
  /** The offset the next record will get; one past the last stored. */
  readonly nextOffset: number;
  /** Bytes stored. */
  readonly sizeBytes: number;
  /** Where the log is damaged, or null (a log that cannot be damaged leaves it out). */
  readonly damage?: LogDamage | null;
  /**
   * Checks every batch and cuts the log at the first that fails; what was cut, or null if all
   * checked out (a log that cannot be damaged leaves it out).
   */
  repair?(): Promise<LogRepair | null>;
  /**
   * Stores a validated batch, writing its base offset into `batch` (in place) first. Resolves once
   * the batch is as durable as the log promises.
   */
  append(batch: Uint8Array, header: BatchHeader): Promise<AppendResult>;
  /**
   * Whole batches holding offsets from `offset` on, stopping before a batch that would pass either
   * limit (but always at least one batch if any exists, so a big batch never blocks progress).
   * Empty at `nextOffset`. Throws OffsetOutOfRange outside [logStartOffset, nextOffset].
   */
  read(offset: number, limits: ReadLimits): Promise<ReadResult>;
  /**
   * What `read` would return, when the log has it in memory; otherwise null (then call `read`,
   * which also reports errors: this never throws). Synchronous, so the thousands of subscribers
   * of one partition woken by an append each take the new batch without a promise of their own.
   * The bytes may be shared between readers: nobody may write into them.
   */
  readCached?(offset: number, limits: ReadLimits): ReadResult | null;
  /** The first offset whose batch has a timestamp at or after `timestampMs`, or `nextOffset`. */
  offsetForTimestamp(timestampMs: number): Promise<number>;
  /**
   * Drops every batch from `offset` on, so the next append gets `offset` (a Raft follower's log
   * cut where it conflicts with its leader's). `offset` must start a batch, or be `nextOffset`
   * (nothing to drop). Appends issued before it are settled first; appends issued after it land
   * after the cut. Resolves once the cut is as durable as the log promises: a log on disk never
   * serves a dropped batch again, also after a crash.
   *
   * @throws {OffsetOutOfRange} outside [logStartOffset, nextOffset]
   * @throws {OffsetInsideBatch} if `offset` falls inside a batch
   */
  truncateFrom(offset: number): Promise<void>;
  /**
   * Drops every batch and continues at `offset`: `logStartOffset` and `nextOffset` become `offset`
   * (a replica restored from a snapshot starts over where the snapshot ends). Ordered with appends
   * and as durable as `truncateFrom`.
   */
  resetTo(offset: number): Promise<void>;
  /**
   * Makes every batch appended before the call durable, whatever the log promises per append (a
   * replica whose log is not synced per append syncs it before its Raft log forgets the entries
   * the batches came from). A log in memory has nothing to make durable.
   *
   * @throws {GregorError} STORAGE_ERROR if the log cannot (a failed fsync, a full disk)
   */
  sync(): Promise<void>;
  /** Releases the log's resources. */
  close(): Promise<void>;
}

/** An offset outside the log's range was asked for. */
export class OffsetOutOfRange extends RangeError {
  constructor(offset: number, start: number, next: number) {
    super(`Offset ${offset} is outside the log's range [${start}, ${next}]`);
    this.name = "OffsetOutOfRange";
  }
}

/** A truncation asked to cut a batch in two: a log keeps or drops whole batches. */
export class OffsetInsideBatch extends RangeError {
  constructor(offset: number, baseOffset: number, lastOffset: number) {
    super(
      `Cannot truncate the log at offset ${offset}: it falls inside the batch of offsets ` +
        `${baseOffset}..${lastOffset} (a log keeps or drops whole batches)`,
    );
    this.name = "OffsetInsideBatch";
  }
}
