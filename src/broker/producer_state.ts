// Idempotent-producer state of one partition (KIP-98's design): per producer id, its epoch and its
// last few batches' sequence ranges, so a retried batch is recognised and answered with its original
// offset instead of being stored twice. Checked and updated synchronously when the broker hands a
// batch to the log, so pipelined batches are judged in the order their offsets are assigned.

import { batchesIn } from "../protocol/batch.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { Log, ReadResult } from "../storage/mod.ts";

/** Batches remembered per producer and partition: a producer keeps at most this many in flight. */
export const PRODUCER_BATCHES_CACHED = 5;
/**
 * Producer ids tracked per partition; past it the least recently used is forgotten, and its next
 * batch is taken as from a new producer (any sequence is accepted, so a late retry of it could be
 * stored twice). Kafka expires producer ids by age instead; a count keeps memory bounded.
 */
export const PRODUCERS_PER_PARTITION_MAX = 1024;
/** Sequence numbers wrap to 0 after this (Kafka's Integer.MAX_VALUE). */
export const SEQUENCE_MAX = 0x7fff_ffff;
/**
 * Bytes at the end of a partition scanned when the broker opens, to rebuild the state of producers
 * that wrote there recently. A producer whose batches all lie before the window is unknown after a
 * restart. The start is estimated from the partition's average record size.
 */
export const REBUILD_BYTES = 4 * 1024 * 1024;
/** Bytes read per step of the rebuild scan. */
const REBUILD_READ_BYTES = 1024 * 1024;
/** Attempts at each read of the rebuild scan before the error stops the broker from opening. */
const REBUILD_READ_ATTEMPTS = 5;

const SEQUENCES = SEQUENCE_MAX + 1;

/** The sequence `n` after `seq`, wrapping at SEQUENCE_MAX. */
export function sequenceAdd(seq: number, n: number): number {
  return (seq + n) % SEQUENCES;
}

/** The idempotence fields of a batch header. */
export interface ProducerFields {
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
}

interface CachedBatch {
  firstSeq: number;
  lastSeq: number;
  /** The base offset the log gave the batch; pending until its append completes. */
  baseOffset: Promise<number>;
  /** The same offset once the append completed, -1 before. */
  settled: number;
  /** False once the append failed (the batch was not stored). */
  stored: boolean;
}

interface ProducerEntry {
  epoch: number;
  /** The last sequence accepted; the next batch must start right after it. */
  lastSeq: number;
  /** Newest last, at most PRODUCER_BATCHES_CACHED. */
  batches: CachedBatch[];
}

/**
 * The idempotent producers of a partition as plain data: per producer its epoch, last sequence and
 * cached batches as [first sequence, last sequence, base offset, stored 1/0].
 */
export type ProducersImage = {
  id: number;
  epoch: number;
  lastSeq: number;
  batches: [number, number, number, number][];
}[];

/** What `admit` decided. */
export interface Admission {
  /** True: the batch was stored before; `baseOffset` is where, and nothing was appended. */
  duplicate: boolean;
  baseOffset: Promise<number>;
}

/** The idempotent producers of one partition. */
export class PartitionProducers {
  /** In least-recently-used order: the first is evicted first. */
  readonly #producers = new Map<number, ProducerEntry>();

  /** Producer ids tracked. */
  get size(): number {
    return this.#producers.size;
  }

  /**
   * Judges a batch from producer `h.producerId` (which must be ≥ 0) and, if it is new and in order,
   * calls `append` at once and remembers the batch. A batch stored before gets its original base
   * offset once that append completed; nothing is appended.
   *
   * @throws {GregorError} PRODUCER_FENCED (an older epoch), OUT_OF_ORDER_SEQUENCE (a gap, or a new
   *   epoch or a producer without state here not starting at 0), DUPLICATE_SEQUENCE (older than the batches remembered),
   *   INVALID_REQUEST (negative epoch or sequence, or a sequence range that differs from the batch
   *   stored with that first sequence).
   */
  admit(h: ProducerFields, append: () => Promise<number>): Admission {
    if (h.producerId < 0) throw new RangeError("admit() needs a producer id of 0 or more");
    if (h.producerEpoch < 0 || h.baseSequence < 0) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `Batch of producer ${h.producerId} has epoch ${h.producerEpoch} and base sequence ` +
          `${h.baseSequence}; an idempotent batch needs both to be 0 or more`,
      );
    }
    const firstSeq = h.baseSequence;
    const lastSeq = sequenceAdd(firstSeq, h.recordCount - 1);
    const known = this.#producers.get(h.producerId);
    if (known !== undefined) {
      this.#producers.delete(h.producerId);
      this.#producers.set(h.producerId, known);
      const duplicate = this.#judge(h, known, firstSeq, lastSeq);
      if (duplicate !== null) return { duplicate: true, baseOffset: duplicate.baseOffset };
    }
    if (known === undefined && firstSeq !== 0) {
      // With no state for this producer, a later batch may have overtaken earlier ones that were
      // refused on the way (a node that did not yet know the leader) and will be retried: taking
      // it would make their retries look older than it, answered as duplicates but never stored.
      throw new GregorError(
        ErrorCode.OUT_OF_ORDER_SEQUENCE,
        `Batch of producer ${h.producerId} epoch ${h.producerEpoch} starts at sequence ` +
          `${firstSeq}, but this partition has no state for that producer (new, or forgotten): ` +
          `its first batch here must start at 0`,
      );
    }
    let entry = known;
    if (entry === undefined || h.producerEpoch > entry.epoch) {
      entry = { epoch: h.producerEpoch, lastSeq, batches: [] };
      this.#producers.delete(h.producerId);
      this.#producers.set(h.producerId, entry);
      this.#evict();
    }
    const cached: CachedBatch = {
      firstSeq,
      lastSeq,
      baseOffset: append(),
      settled: -1,
      stored: true,
    };
    cached.baseOffset.then((o) => (cached.settled = o), () => {});
    entry.lastSeq = lastSeq;
    entry.batches.push(cached);
    if (entry.batches.length > PRODUCER_BATCHES_CACHED) entry.batches.shift();
    const e = entry;
    cached.baseOffset.catch(() => this.#forget(h.producerId, e, cached));
    return { duplicate: false, baseOffset: cached.baseOffset };
  }

  /** The cached batch `h` repeats, null if `h` is the next in order; else throws. */
  #judge(
    h: ProducerFields,
    e: ProducerEntry,
    firstSeq: number,
    lastSeq: number,
  ): CachedBatch | null {
    const who = `producer ${h.producerId} epoch ${h.producerEpoch}`;
    if (h.producerEpoch < e.epoch) {
      throw new GregorError(
        ErrorCode.PRODUCER_FENCED,
        `Batch of ${who} is fenced: epoch ${e.epoch} of that producer has written to this partition`,
      );
    }
    if (h.producerEpoch > e.epoch) {
      if (firstSeq === 0) return null;
      throw new GregorError(
        ErrorCode.OUT_OF_ORDER_SEQUENCE,
        `Batch of ${who} starts at sequence ${firstSeq}; a new epoch must start at 0`,
      );
    }
    for (const b of e.batches) {
      if (b.firstSeq !== firstSeq) continue;
      if (b.lastSeq === lastSeq && b.stored) return b;
      if (b.lastSeq !== lastSeq) {
        throw new GregorError(
          ErrorCode.INVALID_REQUEST,
          `Batch of ${who} has sequences ${firstSeq}..${lastSeq}, but the batch stored with ` +
            `first sequence ${firstSeq} ended at ${b.lastSeq}`,
        );
      }
    }
    const expected = sequenceAdd(e.lastSeq, 1);
    if (firstSeq === expected) return null;
    // Sequences wrap, so "ahead" and "behind" are judged by the shorter way round.
    const ahead = (firstSeq - expected + SEQUENCES) % SEQUENCES;
    if (ahead < SEQUENCES / 2) {
      throw new GregorError(
        ErrorCode.OUT_OF_ORDER_SEQUENCE,
        `Batch of ${who} starts at sequence ${firstSeq} but ${expected} is next: an earlier ` +
          `batch is missing`,
      );
    }
    throw new GregorError(
      ErrorCode.DUPLICATE_SEQUENCE,
      `Batch of ${who} with sequences ${firstSeq}..${lastSeq} was stored before; it is older than ` +
        `the last ${PRODUCER_BATCHES_CACHED} batches remembered, so its offset is no longer known`,
    );
  }

  /**
   * A batch's append failed, so it was not stored: forget it and every later batch, and expect
   * its sequence again, so the producer's retries of them are taken in order.
   */
  #forget(producerId: number, e: ProducerEntry, failed: CachedBatch): void {
    failed.stored = false;
    if (this.#producers.get(producerId) !== e) return;
    const i = e.batches.indexOf(failed);
    if (i < 0) return;
    for (const b of e.batches.splice(i)) b.stored = false;
    e.lastSeq = sequenceAdd(failed.firstSeq, SEQUENCE_MAX);
  }

  /**
   * Remembers a batch found in the log (when the broker opens). Batches must come in log order.
   */
  restore(h: ProducerFields, baseOffset: number): void {
    if (h.producerId < 0 || h.producerEpoch < 0 || h.baseSequence < 0) return;
    const lastSeq = sequenceAdd(h.baseSequence, h.recordCount - 1);
    let e = this.#producers.get(h.producerId);
    if (e !== undefined && h.producerEpoch < e.epoch) return;
    if (e === undefined || h.producerEpoch > e.epoch) {
      e = { epoch: h.producerEpoch, lastSeq, batches: [] };
    }
    this.#producers.delete(h.producerId);
    this.#producers.set(h.producerId, e);
    this.#evict();
    e.lastSeq = lastSeq;
    e.batches.push({
      firstSeq: h.baseSequence,
      lastSeq,
      baseOffset: Promise.resolve(baseOffset),
      settled: baseOffset,
      stored: true,
    });
    if (e.batches.length > PRODUCER_BATCHES_CACHED) e.batches.shift();
  }

  /**
   * The whole state, least recently used producer first, for a replica's snapshot. Every append
   * must have completed (a replica applies one batch at a time, so at a snapshot they have).
   */
  image(): ProducersImage {
    return [...this.#producers].map(([id, e]) => ({
      id,
      epoch: e.epoch,
      lastSeq: e.lastSeq,
      batches: e.batches.map((b) => {
        if (b.settled < 0 && b.stored) {
          throw new RangeError(`Producer ${id}'s batch ${b.firstSeq} is still being appended`);
        }
        return [b.firstSeq, b.lastSeq, b.settled, b.stored ? 1 : 0];
      }),
    }));
  }

  /** Replaces the state with an image taken by `image()`. */
  loadImage(image: ProducersImage): void {
    this.#producers.clear();
    for (const p of image) {
      this.#producers.set(p.id, {
        epoch: p.epoch,
        lastSeq: p.lastSeq,
        batches: p.batches.map(([firstSeq, lastSeq, settled, stored]) => ({
          firstSeq,
          lastSeq,
          baseOffset: Promise.resolve(settled),
          settled,
          stored: stored === 1,
        })),
      });
    }
    this.#evict();
  }

  #evict(): void {
    while (this.#producers.size > PRODUCERS_PER_PARTITION_MAX) {
      const oldest = this.#producers.keys().next().value as number;
      this.#producers.delete(oldest);
    }
  }
}

/**
 * Rebuilds a partition's producer state from the batch headers in about the last REBUILD_BYTES of
 * its log. Returns the bytes scanned.
 */
export async function rebuildProducers(log: Log, into: PartitionProducers): Promise<number> {
  const records = log.nextOffset - log.logStartOffset;
  if (records <= 0) return 0;
  const recordBytes = Math.max(1, log.sizeBytes / records);
  let offset = Math.max(
    log.logStartOffset,
    log.nextOffset - Math.ceil(REBUILD_BYTES / recordBytes),
  );
  let scanned = 0;
  // The estimate may be off; never read more than twice the window.
  while (offset < log.nextOffset && scanned < 2 * REBUILD_BYTES) {
    // A damaged log (found now by these reads, or at open) is read up to the damage: it refuses
    // appends until repaired, and a repair rebuilds the state again from what remains.
    if (offset >= (log.damage?.offset ?? Infinity)) break;
    let got: ReadResult;
    try {
      got = await readRetrying(log, offset);
    } catch (err) {
      if (offset >= (log.damage?.offset ?? Infinity)) break;
      throw err;
    }
    if (got.bytes.length === 0) break;
    for (const { header } of batchesIn(got.bytes)) {
      const last = header.baseOffset + header.recordCount - 1;
      if (last >= offset) into.restore(header, header.baseOffset);
    }
    scanned += got.bytes.length;
    offset = got.nextOffset;
  }
  return scanned;
}

/** A read of the rebuild scan, tried again on failure (a latent read error may not recur). */
async function readRetrying(log: Log, offset: number): Promise<ReadResult> {
  for (let attempt = 1;; attempt++) {
    try {
      return await log.read(offset, { bytesMax: REBUILD_READ_BYTES, recordsMax: Infinity });
    } catch (err) {
      if (attempt >= REBUILD_READ_ATTEMPTS) throw err;
    }
  }
}
