// One subscriber's view of one partition: where it is, what it may still be sent (credit), what it
// has acknowledged, and when unacknowledged deliveries are due again. Deliveries are pushed as
// whole stored batches, never re-encoded.

import type { Clock } from "../io/types.ts";
import { OffsetOutOfRange, type ReadLimits, type ReadResult } from "../storage/mod.ts";
import type { Partition } from "./topic.ts";

/** A durable subscription's key, in memory, in subscriptions.json and in a cluster's metadata. */
export function durableKey(topic: string, partition: number, name: string): string {
  return `${topic}\u0000${partition}\u0000${name}`;
}

/** Where a durable subscription's progress lives between connections. */
export interface DurableState {
  readonly key: string;
  /** Last acknowledged offset; -1 before the first ack. */
  ackedOffset: number;
  /** The live subscription using it, if any. */
  owner: Subscription | null;
  /** Called when `ackedOffset` moved, so it gets written down. */
  onChange(): void;
}

/** What a subscription needs from its connection. */
export interface DeliverySink {
  /**
   * Queues a DELIVER push; `records` are whole batches, `firstOffset` the first to hand out. The
   * `headroomBytes` before `records` in its buffer are the sink's to overwrite (a frame header).
   */
  deliver(
    sub: Subscription,
    records: Uint8Array,
    firstOffset: number,
    redelivery: boolean,
    headroomBytes: number,
  ): void;
  /** Bytes the sink puts in front of the records of a push, asked of the log as headroom. */
  readonly deliverHeadroomBytes: number;
  /** False once the connection is gone or is shutting down. */
  readonly open: boolean;
}

/** Options for a new subscription. */
export interface SubscriptionOptions {
  id: number;
  partition: Partition;
  startOffset: number;
  /** 0: deliveries count as acknowledged when sent. */
  ackTimeoutMs: number;
  creditMessages: number;
  creditBytes: number;
  creditMessagesMax: number;
  creditBytesMax: number;
  deliverBytesMax: number;
  durable: DurableState | null;
  /** Called after each push with its records and bytes (for metrics). */
  onDelivered?(records: number, bytes: number): void;
  /** Deliver nothing until `release()` (a connection's, until its SUBSCRIBE answer is sent). */
  held?: boolean;
}

interface Delivered {
  lastOffset: number;
  atMs: number;
}

/** Wait before reading again after storage refused a read, ms. */
const READ_RETRY_MS = 1000;

/** Deliveries remembered for redelivery per subscription, at most (older ones are merged). */
const DELIVERIES_TRACKED_MAX = 4096;

/** A subscription of one connection to one partition. */
export class Subscription {
  readonly id: number;
  readonly partition: Partition;
  readonly durable: DurableState | null;
  /** Next offset to send. */
  nextOffset: number;
  /** Last acknowledged offset (cumulative); -1 for none. */
  ackedOffset: number;
  creditMessages: number;
  creditBytes: number;
  /** Counters for describe and metrics. */
  deliveredRecords = 0;
  redeliveries = 0;
  /** Reads that failed (and were retried). */
  readErrors = 0;
  readonly #sink: DeliverySink;
  readonly #clock: Clock;
  readonly #ackTimeoutMs: number;
  readonly #creditMessagesMax: number;
  readonly #creditBytesMax: number;
  readonly #deliverBytesMax: number;
  readonly #delivered: Delivered[] = [];
  readonly #onDelivered: (records: number, bytes: number) => void;
  #pumping = false;
  #again = false;
  #redeliver = false;
  #retrying = false;
  #closed = false;

  constructor(sink: DeliverySink, clock: Clock, opts: SubscriptionOptions) {
    this.#sink = sink;
    this.#clock = clock;
    this.id = opts.id;
    this.partition = opts.partition;
    this.durable = opts.durable;
    this.nextOffset = opts.startOffset;
    this.ackedOffset = opts.startOffset - 1;
    this.#ackTimeoutMs = opts.ackTimeoutMs;
    this.#creditMessagesMax = opts.creditMessagesMax;
    this.#creditBytesMax = opts.creditBytesMax;
    this.#deliverBytesMax = opts.deliverBytesMax;
    this.#onDelivered = opts.onDelivered ?? (() => {});
    this.#held = opts.held ?? false;
    this.creditMessages = Math.min(opts.creditMessages, opts.creditMessagesMax);
    this.creditBytes = Math.min(opts.creditBytes, opts.creditBytesMax);
  }

  /** Adds credit (clipped to the broker's maximum) and sends what it allows. */
  grant(messages: number, bytes: number): void {
    this.creditMessages = Math.min(this.creditMessages + messages, this.#creditMessagesMax);
    this.creditBytes = Math.min(this.creditBytes + bytes, this.#creditBytesMax);
    this.pump();
  }

  /**
   * Records a cumulative acknowledgement of every offset up to `offset`. Returns an error message
   * if `offset` was never delivered; an ack at or below an earlier one is ignored.
   */
  ack(offset: number): string | null {
    if (offset >= this.nextOffset) {
      return `Cannot acknowledge offset ${offset}: only offsets below ${this.nextOffset} were delivered`;
    }
    if (offset <= this.ackedOffset) return null;
    this.ackedOffset = offset;
    if (this.durable !== null && offset > this.durable.ackedOffset) {
      this.durable.ackedOffset = offset;
      // Written down by the broker's next offset flush; without this a restart resumed at 0.
      this.durable.onChange();
    }
    while (this.#delivered.length > 0 && (this.#delivered[0] as Delivered).lastOffset <= offset) {
      this.#delivered.shift();
    }
    return null;
  }

  /** If the oldest unacknowledged delivery is overdue, rewinds to the first unacked offset. */
  checkRedelivery(): void {
    if (this.#ackTimeoutMs === 0 || this.#closed) return;
    const oldest = this.#delivered[0];
    if (oldest === undefined || this.#clock.now() - oldest.atMs < this.#ackTimeoutMs) return;
    this.#delivered.length = 0;
    this.nextOffset = Math.max(this.ackedOffset + 1, this.partition.log.logStartOffset);
    this.#redeliver = true;
    this.redeliveries++;
    this.pump();
  }

  /**
   * The log was cut at `offset` (a repair dropped everything from there): a position or
   * acknowledgement past it moves back to it, so the records appended next are delivered.
   */
  truncatedAt(offset: number): void {
    if (this.nextOffset > offset) this.nextOffset = offset;
    if (this.ackedOffset >= offset) this.ackedOffset = offset - 1;
    while (
      this.#delivered.length > 0 &&
      (this.#delivered[this.#delivered.length - 1] as Delivered).lastOffset >= offset
    ) {
      this.#delivered.pop();
    }
  }

  /** Stops all delivery. */
  close(): void {
    this.#closed = true;
    if (this.durable?.owner === this) this.durable.owner = null;
  }

  /**
   * True until the connection has queued the SUBSCRIBE answer: a client learns where the
   * subscription starts from that answer, so nothing is delivered before it, whatever wakes the
   * subscription first (an append, a grant).
   */
  #held: boolean;

  /** Lets deliveries start: the SUBSCRIBE answer is on its way. */
  release(): void {
    this.#held = false;
    this.pump();
  }

  /**
   * Sends whatever the log has and the credit allows. Safe to call at any time, any number of
   * times. `nowMs`, if given, is the time now (read once by a caller waking many subscriptions).
   */
  pump(nowMs?: number): void {
    if (this.#held) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    // Most wake-ups find the new batches in the log's memory: they go out right here, without a
    // promise chain per subscription (10,000 subscribers of a partition woken by one append).
    // Whatever the memory does not hold, or any error, is left to the loop below, which reads
    // again and deals with it; so is a pump() that came in while this ran.
    this.#again = false;
    let done = false;
    try {
      done = this.#deliverCached(nowMs);
    } catch {
      // Left to the loop, as said.
    }
    if (done && !this.#again) {
      this.#pumping = false;
      return;
    }
    void this.#pumpLoop();
  }

  /** True while the subscription may be sent more: open, connected, with credit. */
  #sendable(): boolean {
    return !this.#closed && this.#sink.open && this.creditMessages > 0 && this.creditBytes > 0;
  }

  /** The read limits the credit allows now. */
  #limits(): ReadLimits {
    return {
      bytesMax: Math.min(this.creditBytes, this.#deliverBytesMax),
      recordsMax: this.creditMessages,
      headroomBytes: this.#sink.deliverHeadroomBytes,
    };
  }

  /**
   * Delivers from the log's memory only; true if that left nothing to send (all sent, or no
   * credit), false if a read from storage is needed.
   */
  #deliverCached(nowMs: number | undefined): boolean {
    const log = this.partition.log;
    if (log.readCached === undefined) return false;
    while (this.#sendable()) {
      if (this.nextOffset < log.logStartOffset) return false;
      if (this.nextOffset >= log.nextOffset) return true;
      const from = this.nextOffset;
      const got = log.readCached(from, this.#limits());
      if (got === null || got.records === 0) return false;
      nowMs ??= this.#clock.now();
      this.#handOut(from, got, nowMs);
    }
    return true;
  }

  /** Sends what a read from `from` returned at `nowMs` and moves past it. */
  #handOut(from: number, got: ReadResult, nowMs: number): void {
    this.nextOffset = got.nextOffset;
    this.creditMessages -= got.records;
    this.creditBytes -= got.bytes.length;
    this.deliveredRecords += got.records;
    this.#sink.deliver(this, got.bytes, from, this.#redeliver, got.headroomBytes ?? 0);
    this.#onDelivered(got.records, got.bytes.length);
    this.#redeliver = false;
    if (this.#ackTimeoutMs === 0) {
      this.ack(got.nextOffset - 1);
    } else {
      this.#track(got.nextOffset - 1, nowMs);
    }
  }

  async #pumpLoop(): Promise<void> {
    // The flag drops in the same task the loop ends in, so a pump() after the last check can't be lost.
    try {
      await this.#deliverAll();
    } catch (err) {
      // Retention moved the start, or storage refused a batch (corruption): try again later
      // rather than serve anything wrong. The log has already reported a corruption loudly.
      this.readErrors++;
      if (!(err instanceof OffsetOutOfRange)) this.#retryLater();
      else this.#again = true;
    } finally {
      this.#pumping = false;
    }
    if (this.#again && !this.#closed) this.pump();
  }

  #retryLater(): void {
    if (this.#retrying || this.#closed) return;
    this.#retrying = true;
    void this.#clock.sleep(READ_RETRY_MS).then(() => {
      this.#retrying = false;
      this.pump();
    });
  }

  async #deliverAll(): Promise<void> {
    do {
      this.#again = false;
      while (this.#sendable()) {
        const log = this.partition.log;
        if (this.nextOffset < log.logStartOffset) this.nextOffset = log.logStartOffset;
        if (this.nextOffset >= log.nextOffset) break;
        const from = this.nextOffset;
        const got = await log.read(from, this.#limits());
        if (this.#closed || got.records === 0 || this.nextOffset !== from) break;
        this.#handOut(from, got, this.#clock.now());
      }
    } while (this.#again && !this.#closed);
  }

  #track(lastOffset: number, nowMs: number): void {
    if (this.#delivered.length >= DELIVERIES_TRACKED_MAX) {
      // Merge the two newest: the merged entry keeps the older time, so timeouts only get earlier.
      const last = this.#delivered.pop() as Delivered;
      const prev = this.#delivered[this.#delivered.length - 1] as Delivered;
      prev.lastOffset = last.lastOffset;
    }
    this.#delivered.push({ lastOffset, atMs: nowMs });
  }
}
