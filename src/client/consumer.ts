// The consumer: one subscription to one partition, read as an async iterator. It grants the broker
// credit as the application consumes (so its buffer is bounded), acknowledges cumulatively, skips
// what it already saw, and resubscribes after a reconnect from its last acknowledged offset.

import { anyBatchCompressed, type RecordHeader, visitBatch } from "../protocol/batch.ts";
import { codecsLoaded, loadCodecs } from "../protocol/codecs.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { type DeliverPush, Start, type SubscribeResponse } from "../protocol/messages.ts";
import { type ClientConnection, ConnectionError, type PushListener } from "./connection.ts";

/** The end of an iteration over a consumer. */
const ITERATION_DONE: IteratorReturnResult<undefined> = Object.freeze({
  done: true,
  value: undefined,
});

/** Where a subscription starts. */
export type From = "earliest" | "latest" | { offset: number } | { timestamp: number };

/** Where a bounded subscription stops: `"end"` is the high watermark the broker reported when it started. */
export type Until = "end";

/** Subscription options. */
export interface SubscribeOptions {
  /** Partition to read. Default 0. */
  partition?: number;
  /** Where to start when there is no durable progress. Default "latest". */
  from?: From;
  /** A durable name: the broker remembers the acknowledged offset and resumes after it. */
  durable?: string;
  /**
   * Stop at the partition's end as it was when the subscription started: iteration completes
   * after the last message below that high watermark (at once for an empty partition), and the
   * subscription closes. Messages published later are not handed out. Default: never stop.
   */
  until?: Until;
  /**
   * Count messages as acknowledged when delivered (at-most-once). Default false. With `until`,
   * a message counts as acknowledged when handed out, so nothing past the end is acknowledged.
   */
  autoAck?: boolean;
  /** Unacknowledged messages are redelivered after this long, ms. Default 30 000. */
  ackTimeoutMs?: number;
  /** Messages the broker may send ahead of the application. Default 1000. */
  windowMessages?: number;
  /** Bytes the broker may send ahead of the application. Default 4 MiB. */
  windowBytes?: number;
}

/** A message received from a subscription. */
export interface ReceivedMessage {
  topic: string;
  partition: number;
  offset: number;
  /** Milliseconds since the epoch. */
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Record<string, Uint8Array | null>;
  /** True if this offset was delivered before (after an ack timeout or a reconnect). */
  redelivered: boolean;
  /** The value decoded as UTF-8 ("" for null). */
  text(): string;
  /** Acknowledges this message and every earlier one of the subscription. */
  ack(): void;
}

const decoder = new TextDecoder();
/** Largest records section a consumer decompresses from one batch. */
const RECORDS_BYTES_MAX = 64 * 1024 * 1024;
/**
 * How long a subscription resubscribing after a reconnect keeps asking a node that answers
 * NOT_LEADER (its replica is catching up after a restart), ms.
 */
const RESUBSCRIBE_NOT_LEADER_MS = 60_000;

/**
 * The pause before asking again after the `attempt`-th NOT_LEADER for a SUBSCRIBE: 100 ms more
 * each time, at most 1 s (a leader is elected, or a replica catches up, within seconds).
 * @internal
 */
export function notLeaderPauseMs(attempt: number): number {
  return Math.min(100 * attempt, 1_000);
}

/**
 * A received message. A class rather than an object literal with closures: one allocation per
 * message on the consumer's hot path instead of three.
 */
class Received implements ReceivedMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly key: Uint8Array | null;
  readonly value: Uint8Array | null;
  readonly redelivered: boolean;
  /** This message's share of its push's bytes, given back as credit once it is consumed. */
  creditBytes = 0;
  readonly #consumer: Consumer;
  readonly #recordHeaders: readonly RecordHeader[];
  #headers: Record<string, Uint8Array | null> | null = null;

  constructor(
    consumer: Consumer,
    record: {
      offset: number;
      timestamp: number;
      key: Uint8Array | null;
      value: Uint8Array | null;
      headers: readonly RecordHeader[];
      redelivered: boolean;
    },
  ) {
    this.#consumer = consumer;
    this.topic = consumer.topic;
    this.partition = consumer.partition;
    this.offset = record.offset;
    this.timestamp = record.timestamp;
    this.key = record.key;
    this.value = record.value;
    this.#recordHeaders = record.headers;
    this.redelivered = record.redelivered;
  }

  /** The record's headers by key, built on first use (most messages are never asked). */
  get headers(): Record<string, Uint8Array | null> {
    this.#headers ??= headerRecord(this.#recordHeaders);
    return this.#headers;
  }

  text(): string {
    return this.value === null ? "" : decoder.decode(this.value);
  }

  ack(): void {
    this.#consumer.ack(this.offset);
  }
}

function headerRecord(headers: readonly RecordHeader[]): Record<string, Uint8Array | null> {
  const out: Record<string, Uint8Array | null> = {};
  for (const h of headers) out[h.key] = h.value;
  return out;
}

/** A subscription. Iterate it with `for await`. Create one with `client.subscribe()`. */
export class Consumer implements AsyncIterable<ReceivedMessage>, PushListener {
  readonly topic: string;
  readonly partition: number;
  #conn: ClientConnection;
  /** The connection to the node serving the partition now, as the cluster's metadata says. */
  readonly #locate: (() => Promise<ClientConnection>) | null;
  readonly #id: number;
  readonly #opts: Required<Omit<SubscribeOptions, "durable" | "partition" | "until">> & {
    durable: string;
  };
  /** The broker counts deliveries as acknowledged (autoAck without `until`). */
  readonly #brokerAcks: boolean;
  /** Offset the iteration stops before (`until: "end"`); fixed at the first SUBSCRIBE. */
  #end = Number.POSITIVE_INFINITY;
  /** Deliveries taken so far; tells a SUBSCRIBE response whether pushes overtook it. */
  #pushesTaken = 0;
  readonly #bounded: boolean;
  readonly #queue: Received[] = [];
  #queueHead = 0;
  /** Pushes held until the codec libraries are loaded. */
  readonly #awaitingCodecs: DeliverPush[] = [];
  #waiter: (() => void) | null = null;
  #failure: unknown = null;
  #closed = false;
  /** Next offset we expect from the broker; lower ones are duplicates. */
  #nextOffset = -1;
  /** Highest offset acknowledged (sent to the broker). */
  #acked = -1;
  #ackToSend = -1;
  #consumedMessages = 0;
  #consumedBytes = 0;
  /** Highest offset ever handed to the application: anything at or below it is a redelivery. */
  #handedOut = -1;
  #startOffset = -1;

  /**
   * @internal Use `client.subscribe()`. `locate` finds the connection to the node serving the
   * partition now; without it a resubscription stays on `conn`.
   */
  constructor(
    conn: ClientConnection,
    id: number,
    topic: string,
    opts: SubscribeOptions,
    locate: (() => Promise<ClientConnection>) | null = null,
  ) {
    this.#conn = conn;
    this.#locate = locate;
    this.#id = id;
    this.topic = topic;
    this.partition = opts.partition ?? 0;
    this.#opts = {
      from: opts.from ?? "latest",
      durable: opts.durable ?? "",
      autoAck: opts.autoAck ?? false,
      ackTimeoutMs: opts.ackTimeoutMs ?? 30_000,
      windowMessages: opts.windowMessages ?? 1000,
      windowBytes: opts.windowBytes ?? 4 * 1024 * 1024,
    };
    if (opts.until !== undefined && opts.until !== "end") {
      throw new RangeError(`Unknown subscription end until: ${String(opts.until)}; use "end"`);
    }
    this.#bounded = opts.until === "end";
    // The broker acknowledges whole batches as it sends them, which could reach past the end.
    this.#brokerAcks = this.#opts.autoAck && !this.#bounded;
  }

  /**
   * The offset the broker started delivery at: where `from` (or the durable name's progress)
   * resolved to. Messages below it are not delivered; at the high watermark, none are yet.
   */
  get startOffset(): number {
    return this.#startOffset;
  }

  /**
   * With `until: "end"`, the high watermark the broker reported when the subscription started:
   * the iteration ends after offset `endOffset - 1`. Otherwise `Infinity`.
   */
  get endOffset(): number {
    return this.#end;
  }

  /** @internal Sends SUBSCRIBE; resolves with the offset delivery starts at. */
  async start(): Promise<number> {
    this.#conn.listen(this.#id, this);
    try {
      const r = await this.#subscribe(this.#opts.from);
      this.#startOffset = r.startOffset;
      // Only the first response sets the end: a resubscription after a reconnect keeps it.
      if (this.#bounded) {
        this.#end = r.highWatermark;
        // Deliveries that came in the response's read were taken before the end was known.
        this.#dropQueuedFrom(this.#end);
      }
      return this.#startOffset;
    } catch (err) {
      this.#conn.unlisten(this.#id);
      throw err;
    }
  }

  async #subscribe(from: From): Promise<SubscribeResponse> {
    const [start, startValue] = typeof from === "string"
      ? [Start[from], 0]
      : "offset" in from
      ? [Start.offset, from.offset]
      : [Start.timestamp, from.timestamp];
    const takenBefore = this.#pushesTaken;
    const r = await this.#conn.request<SubscribeResponse>("SUBSCRIBE", {
      subscriptionId: this.#id,
      topic: this.topic,
      partition: this.partition,
      start,
      startValue,
      durableName: this.#opts.durable,
      ackTimeoutMs: this.#brokerAcks ? 0 : this.#opts.ackTimeoutMs,
      creditMessages: this.#opts.windowMessages,
      creditBytes: this.#opts.windowBytes,
    });
    // The broker pushes right after answering, and both can arrive in one read, so deliveries
    // may already have moved #nextOffset past the start; going back would hide a bounded read's
    // end. Without such pushes the start is taken as is (a resubscribe may go back to the first
    // unacknowledged offset).
    if (this.#pushesTaken === takenBefore) this.#nextOffset = r.startOffset;
    this.#acked = Math.max(this.#acked, r.startOffset - 1);
    return r;
  }

  onDeliver(push: DeliverPush): void {
    if (this.#closed || push.records === null) return;
    if (this.#awaitingCodecs.length > 0 || (!codecsLoaded() && anyBatchCompressed(push.records))) {
      // The codec libraries load on the first compressed batch; pushes wait for them in order
      // (at most the credit window's worth).
      this.#awaitingCodecs.push(push);
      if (this.#awaitingCodecs.length === 1) {
        loadCodecs().then(() => {
          for (const held of this.#awaitingCodecs.splice(0)) this.#take(held);
        }, (err) => {
          this.#awaitingCodecs.length = 0;
          this.#fail(err);
        });
      }
      return;
    }
    this.#take(push);
  }

  #take(push: DeliverPush): void {
    if (this.#closed || push.records === null) return;
    this.#pushesTaken++;
    if (push.redelivery === 1) {
      // The broker rewound to its first unacknowledged offset: forget what we hold from there on.
      // What is dropped was charged to the window when it came, and will never be handed out:
      // its credit goes back now, or redeliveries would drain the window for good.
      const dropped = this.#dropQueuedFrom(push.firstOffset);
      if (dropped.length > 0) {
        this.#consumed(dropped.reduce((sum, m) => sum + m.creditBytes, 0), dropped.length);
      }
      this.#nextOffset = Math.min(this.#nextOffset, push.firstOffset);
    }
    const records = push.records;
    const fresh: Received[] = [];
    // Records at or after the push's first offset are those the broker charged to the window
    // (a batch may begin before it); of those, copies already seen and records past the end are
    // never handed out.
    let charged = 0;
    let skipped = 0;
    const visit = (
      offset: number,
      timestamp: number,
      key: Uint8Array | null,
      value: Uint8Array | null,
      headers: readonly RecordHeader[],
    ): void => {
      if (offset < push.firstOffset) return;
      charged++;
      if (offset < this.#nextOffset) {
        skipped++;
        return;
      }
      this.#nextOffset = offset + 1;
      // Past the end: never handed out, so never acknowledged; it only marks the end as reached.
      if (offset >= this.#end) {
        skipped++;
        return;
      }
      fresh.push(
        new Received(this, {
          offset,
          timestamp,
          key,
          value,
          headers,
          redelivered: offset <= this.#handedOut,
        }),
      );
    };
    try {
      for (let off = 0; off < records.length;) {
        off += visitBatch(records, off, { recordsBytesMax: RECORDS_BYTES_MAX }, visit).sizeBytes;
      }
    } catch (err) {
      this.#fail(err);
      return;
    }
    // Each charged record's share of the push's bytes: the credit given back once it is consumed.
    // Skipped ones give theirs back at once: redeliveries of copies would otherwise drain the
    // window for good.
    const creditBytes = charged === 0 ? 0 : records.length / charged;
    if (skipped > 0) this.#consumed(skipped * creditBytes, skipped);
    for (const m of fresh) {
      m.creditBytes = creditBytes;
      this.#queue.push(m);
    }
    this.#wake();
  }

  onReconnect(): void {
    this.#resume(false);
  }

  /** Subscribes again after a lost connection; with `move`, wherever the partition is served. */
  #resume(move: boolean): void {
    if (this.#closed) return;
    // Resume after the last acknowledgement: what was delivered but not acknowledged comes again.
    const from = this.#brokerAcks ? this.#nextOffset : this.#acked + 1;
    this.#dropQueuedFrom(from);
    // Expect `from` next already, so a bounded iteration can't see the end before the resubscription.
    this.#nextOffset = Math.min(this.#nextOffset, from);
    this.#resubscribe(from, move).catch((err) => this.#fail(err));
  }

  /**
   * Subscribes again from `from` after a reconnect (with `move`, after losing the node). A node
   * that does not serve the partition, or whose replica is not caught up yet (it restarted too),
   * says NOT_LEADER: the subscription moves to the leader the metadata names, or asks again,
   * with a growing pause, for up to RESUBSCRIBE_NOT_LEADER_MS while a leader is elected or the
   * replica catches up.
   */
  async #resubscribe(from: number, move: boolean): Promise<void> {
    const clock = this.#conn.opts.env.clock;
    const deadline = clock.now() + RESUBSCRIBE_NOT_LEADER_MS;
    for (let attempt = 1; !this.#closed; attempt++) {
      if (move && this.#locate !== null) this.#moveTo(await this.#locate());
      try {
        await this.#subscribe({ offset: from });
        return;
      } catch (err) {
        if (err instanceof GregorError && err.code === ErrorCode.OFFSET_OUT_OF_RANGE) {
          await this.#subscribe("earliest");
          return;
        }
        // A leader the metadata still names after it died refuses the connection.
        const again = (err instanceof GregorError && err.code === ErrorCode.NOT_LEADER) ||
          (err instanceof ConnectionError && move);
        if (!again || clock.now() >= deadline) throw err;
        move = true;
        await clock.sleep(notLeaderPauseMs(attempt));
      }
    }
  }

  /**
   * Moves the subscription's pushes (and its requests) to `conn`; listens there again even if it
   * is the same connection, which forgot its listeners when it stopped reconnecting.
   */
  #moveTo(conn: ClientConnection): void {
    if (this.#closed) return;
    if (conn !== this.#conn) this.#conn.unlisten(this.#id);
    this.#conn = conn;
    conn.listen(this.#id, this);
  }

  onLost(err: unknown): void {
    // The node this subscription read from is down for good (a connection to one node, which
    // stopped reconnecting): subscribe where the partition is served now, e.g. at its new leader.
    if (this.#locate !== null && err instanceof ConnectionError && !this.#conn.closed) {
      this.#resume(true);
      return;
    }
    this.#fail(err);
  }

  /** Drops the queued messages at and after `offset`; returns them. */
  #dropQueuedFrom(offset: number): Received[] {
    let keep = this.#queueHead;
    while (keep < this.#queue.length && this.#queue[keep]!.offset < offset) keep++;
    return this.#queue.splice(keep);
  }

  /**
   * Acknowledges `offset` and everything before it. Acks are coalesced: many calls in one task
   * send one ACK.
   */
  ack(offset: number): void {
    if (this.#brokerAcks || offset <= this.#ackToSend || this.#closed) return;
    const schedule = this.#ackToSend <= this.#acked;
    this.#ackToSend = offset;
    if (schedule) queueMicrotask(() => this.#sendAck());
  }

  #sendAck(): void {
    const offset = this.#ackToSend;
    if (offset <= this.#acked || this.#closed) return;
    this.#acked = offset;
    // Lost with the connection, the resubscription resumes from the last ack that got through.
    this.#conn.post("ACK", { subscriptionId: this.#id, offset });
  }

  /**
   * The next message; waits for one. Resolves null once the consumer is closed, or (with
   * `until: "end"`) once every message below the end has been handed out, which closes it.
   */
  async next(): Promise<ReceivedMessage | null> {
    for (;;) {
      if (this.#failure !== null) throw this.#failure;
      if (this.#closed) return null;
      if (this.#queueHead < this.#queue.length) {
        const m = this.#queue[this.#queueHead++]!;
        // A message handed out is the application's: the queue lets go of it at once. Kept until
        // 1,024 had gone by, each pinned its whole read buffer, and a process with 10,000
        // subscriptions spent a third of its time in the garbage collector.
        if (this.#queueHead === this.#queue.length) {
          this.#queue.length = 0;
          this.#queueHead = 0;
        } else if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
          this.#queue.splice(0, this.#queueHead);
          this.#queueHead = 0;
        }
        this.#handedOut = Math.max(this.#handedOut, m.offset);
        this.#consumed(m.creditBytes);
        if (this.#opts.autoAck && !this.#brokerAcks) this.ack(m.offset);
        return m;
      }
      // Everything below the end was received (the broker moved past it) and handed out.
      if (this.#nextOffset >= this.#end && this.#awaitingCodecs.length === 0) {
        await this.close();
        return null;
      }
      await new Promise<void>((r) => (this.#waiter = r));
    }
  }

  /** Gives the broker credit back as messages are consumed, half a window at a time. */
  #consumed(bytes: number, messages = 1): void {
    this.#consumedMessages += messages;
    this.#consumedBytes += bytes;
    if (
      this.#consumedMessages * 2 >= this.#opts.windowMessages ||
      this.#consumedBytes * 2 >= this.#opts.windowBytes
    ) {
      const messages = this.#consumedMessages;
      const grantBytes = Math.ceil(this.#consumedBytes);
      this.#consumedMessages = 0;
      this.#consumedBytes = 0;
      // Lost with the connection, the resubscription grants a whole window again.
      this.#conn.post("CREDIT", { subscriptionId: this.#id, messages, bytes: grantBytes });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<ReceivedMessage> {
    // Not an async generator: that costs a few more promises per message, which a process with
    // thousands of subscriptions pays for in garbage collection.
    return {
      next: () => this.next().then((m) => m === null ? ITERATION_DONE : { done: false, value: m }),
      return: () => Promise.resolve(ITERATION_DONE),
    };
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }

  #fail(err: unknown): void {
    if (this.#failure === null) this.#failure = err;
    this.#conn.unlisten(this.#id);
    this.#wake();
  }

  /** Ends the subscription. Pending acknowledgements are sent first. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#sendAck();
    this.#closed = true;
    this.#conn.unlisten(this.#id);
    this.#wake();
    await this.#conn.request("UNSUBSCRIBE", { subscriptionId: this.#id }).catch(() => {});
  }
}
