// The producer: picks each message's partition (Kafka's: by key, else sticky), batches messages per
// partition (by linger time and batch size), compresses each batch, pipelines PRODUCE requests, and
// resolves one promise per message with its offset. Idempotent by default: every batch carries a
// producer id and per-partition sequence numbers, and a batch whose outcome is unknown (a lost
// connection, a retriable error) is sent again with the same numbers, so the broker stores it once.

import type { Clock, Random } from "../io/types.ts";
import { encodeBatch, type RecordHeader, type RecordInput } from "../protocol/batch.ts";
import { Codec, type CodecName, codecsLoaded, loadCodecs } from "../protocol/codecs.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { Acks, type InitProducerIdResponse, type ProduceResponse } from "../protocol/messages.ts";
import { type ClientConnection, ConnectionError } from "./connection.ts";
import { PartitionCounts } from "./metadata.ts";
import type { ConnectionPool } from "./pool.ts";
import { partitionForKey, StickyPartitions } from "./partitioner.ts";

/** A message to publish. Strings are sent as UTF-8. */
export interface Message {
  value: Uint8Array | string | null;
  key?: Uint8Array | string | null;
  headers?: Record<string, Uint8Array | string | null>;
  /** Milliseconds since the epoch; default now. */
  timestamp?: number;
  /**
   * Partition to publish to. Default: with a key, Kafka's `murmur2(key) % partitions`; without,
   * one partition per topic that changes each time a batch for it is sent.
   */
  partition?: number;
}

/** Producer options. */
export interface ProducerOptions {
  /** How long a batch may wait for more messages, ms. 0 (default): send at the end of the current task. */
  lingerMs?: number;
  /** A batch is sent once its records reach this many bytes. Default 256 KiB. */
  batchBytesMax?: number;
  /** A batch is sent once it has this many records. Default 10 000. */
  batchRecordsMax?: number;
  /** Compression per batch. Default "none". */
  compression?: CodecName;
  /** "none": no answer, offsets resolve to -1; "leader" (default on one node) or "quorum". */
  acks?: keyof typeof Acks;
  /** Bytes of messages waiting or in flight at most; `send` waits for room beyond it. Default 64 MiB. */
  bufferBytesMax?: number;
  /** The broker's time limit for a produce, ms. Default 30 000. */
  timeoutMs?: number;
  /**
   * Retry batches whose outcome is unknown without storing them twice (producer id and sequence
   * numbers, §8.1 of the protocol). Default true; always off with acks "none". Off: a lost
   * connection fails the messages in flight with ConnectionError.
   */
  idempotent?: boolean;
  /** An idempotent producer retries a message until this long after `send`, then fails it, ms. Default 120 000. */
  deliveryTimeoutMs?: number;
  /** Wait before the first retry, ms; it doubles (with jitter) up to `retryBackoffMsMax`. Default 100. */
  retryBackoffMs?: number;
  /** Longest wait between retries, ms. Default 250. */
  retryBackoffMsMax?: number;
}

/**
 * Batches of one partition an idempotent producer has in flight at most: the broker remembers the
 * last 5 batches of each producer, so a retry always finds its original.
 */
export const BATCHES_IN_FLIGHT_PER_PARTITION_MAX = 5;
/**
 * A message may join a waiting batch created at most this share of `deliveryTimeoutMs` ago (its
 * timeout then counts from the batch's creation).
 */
const JOIN_AGE_SHARE_MAX = 0.01;
/** Partitions whose sequence numbers a producer tracks; past it, idle ones are forgotten. */
export const PRODUCER_PARTITIONS_MAX = 100_000;
const SEQUENCES = 0x8000_0000;
/**
 * Errors the broker answers a PRODUCE with before it judges the batch's sequence (§8.1), so the
 * sequence was not taken. Any other failure may have stored the batch.
 */
const REFUSED_BEFORE_SEQUENCE: ReadonlySet<number> = new Set([
  ErrorCode.MALFORMED_REQUEST,
  ErrorCode.INVALID_REQUEST,
  ErrorCode.UNKNOWN_TOPIC,
  ErrorCode.INVALID_TOPIC,
  ErrorCode.UNKNOWN_PARTITION,
  ErrorCode.CORRUPT_BATCH,
  ErrorCode.BATCH_TOO_LARGE,
  ErrorCode.UNSUPPORTED_CODEC,
]);

interface Pending {
  record: RecordInput;
  bytes: number;
  resolve: (offset: number) => void;
  reject: (err: unknown) => void;
}

interface Accumulator {
  topic: string;
  partition: number;
  pending: Pending[];
  bytes: number;
  timer: AbortController | null;
}

interface ProducerId {
  producerId: number;
  producerEpoch: number;
}

/** A batch of an idempotent producer, from its first send until it is acknowledged or failed. */
interface Batch {
  pending: Pending[];
  bytes: number;
  baseSequence: number;
  /** Encoded once a producer id stamps it; re-encoded only if renumbered. */
  encoded: Uint8Array | null;
  deadline: number;
  /** Sent at least once: the broker may have stored it. */
  sent: boolean;
  /** True while an attempt is in flight that is not the batch's first. */
  sentBefore: boolean;
  inFlight: boolean;
  /** Failed for good (a non-retriable answer); dropped when the lane next settles. */
  rejected: boolean;
  /** The last answer said the broker did not store it (OUT_OF_ORDER_SEQUENCE). */
  refused: boolean;
  settled: () => void;
}

/** One partition's sequence numbers and unacknowledged batches. */
interface Lane {
  topic: string;
  partition: number;
  pid: ProducerId | null;
  /** The next producer id must be a new one: sequences start again at 0. */
  freshPid: boolean;
  acquiring: boolean;
  nextSeq: number;
  /** Unacknowledged batches in sequence order; bounded by the producer's buffer. */
  unacked: Batch[];
  inFlight: number;
  /** A batch failed: nothing is sent until the batches in flight settle and the lane retries. */
  recovering: boolean;
  /** The broker wants a sequence before the first unacknowledged batch's. */
  stateLost: boolean;
  backoff: boolean;
  backoffMs: number;
  /** The last retriable failure since the last acknowledgement: a timeout says what it was. */
  lastError: unknown;
}

const encoder = new TextEncoder();

function toBytes(v: Uint8Array | string): Uint8Array {
  return typeof v === "string" ? encoder.encode(v) : v;
}

/** Publishes messages to topics. Create one with `client.producer()`. */
export class Producer {
  readonly #conn: ClientConnection;
  /** Connections to partition leaders in a cluster (null: everything goes through `#conn`). */
  readonly #pool: ConnectionPool | null;
  readonly #clock: Clock;
  readonly #random: Random;
  readonly #lingerMs: number;
  readonly #batchBytesMax: number;
  readonly #batchRecordsMax: number;
  readonly #codec: number;
  readonly #acks: number;
  readonly #bufferBytesMax: number;
  readonly #timeoutMs: number;
  readonly #idempotent: boolean;
  readonly #deliveryTimeoutMs: number;
  readonly #retryBackoffMs: number;
  readonly #retryBackoffMsMax: number;
  readonly #counts: PartitionCounts;
  readonly #sticky: StickyPartitions;
  /** Batches being filled, by topic and partition. */
  readonly #batches = new Map<string, Map<number, Accumulator>>();
  /** Partition counts looked up in the current task; cleared at its end. */
  readonly #countsThisTask = new Map<string, number>();
  readonly #lanes = new Map<string, Lane>();
  #lanesForgotten = false;
  #sharedPid: Promise<ProducerId> | null = null;
  /** Sends waiting for their topic's partition count, per topic: later ones queue behind. */
  readonly #topicTails = new Map<string, Promise<void>>();
  readonly #resolving = new Set<Promise<void>>();
  readonly #inFlight = new Set<Promise<void>>();
  #bufferedBytes = 0;
  /** Sends waiting for the codec libraries to load; later sends queue behind them. */
  #sendsAwaitingCodecs = 0;
  #roomWaiters: (() => void)[] = [];
  #closed = false;

  /** @internal Use `client.producer()`. */
  constructor(
    conn: ClientConnection,
    clock: Clock,
    opts: ProducerOptions = {},
    pool: ConnectionPool | null = null,
    counts: PartitionCounts | null = null,
  ) {
    this.#conn = conn;
    this.#pool = pool;
    this.#clock = clock;
    this.#random = conn.opts.env.random;
    this.#lingerMs = opts.lingerMs ?? 0;
    this.#batchBytesMax = opts.batchBytesMax ?? 256 * 1024;
    this.#batchRecordsMax = opts.batchRecordsMax ?? 10_000;
    this.#codec = Codec[opts.compression ?? "none"];
    this.#acks = Acks[opts.acks ?? "leader"];
    this.#bufferBytesMax = opts.bufferBytesMax ?? 64 * 1024 * 1024;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#idempotent = (opts.idempotent ?? true) && this.#acks !== Acks.none;
    this.#deliveryTimeoutMs = opts.deliveryTimeoutMs ?? 120_000;
    this.#retryBackoffMs = opts.retryBackoffMs ?? 100;
    this.#retryBackoffMsMax = opts.retryBackoffMsMax ?? 250;
    // The client's cache when it has one: its producers and subscriptions share what they learn.
    this.#counts = counts ?? new PartitionCounts(conn, clock);
    this.#sticky = new StickyPartitions(this.#random);
    if (this.#codec === undefined) throw new RangeError(`Unknown compression ${opts.compression}`);
    if (this.#acks === undefined) throw new RangeError(`Unknown acks ${opts.acks}`);
  }

  /**
   * Publishes one message; resolves with its offset once the broker acknowledged it (-1 with acks
   * "none", or when the broker knows an idempotent batch was stored long ago but no longer where).
   * Messages to one partition keep the order of the `send` calls.
   *
   * @param topic The topic (auto-created by a default broker).
   * @param message The message; `value` is required (null for a tombstone).
   * @returns The offset the broker assigned.
   * @throws {GregorError} if the broker rejects the batch (e.g. BATCH_TOO_LARGE, INVALID_TOPIC),
   *   or TIMEOUT if an idempotent producer could not deliver it within `deliveryTimeoutMs`; the
   *   TIMEOUT's message names the last error its retries met (e.g. STORAGE_ERROR: ... no space left
   *   on device), and its `cause` is that error.
   * @throws {ConnectionError} if a non-idempotent producer lost the connection before the
   *   acknowledgement.
   */
  send(topic: string, message: Message): Promise<number> {
    if (this.#codec !== 0 && (this.#sendsAwaitingCodecs > 0 || !codecsLoaded())) {
      // The codec libraries load on first use; sends wait for them in call order.
      // `flush` waits until they are placed in a batch.
      this.#sendsAwaitingCodecs++;
      let placed!: () => void;
      const gate = new Promise<void>((r) => (placed = r));
      this.#resolving.add(gate);
      const done = () => {
        this.#sendsAwaitingCodecs--;
        this.#resolving.delete(gate);
        placed();
      };
      return loadCodecs().then(
        () => {
          try {
            return this.#send(topic, message);
          } finally {
            done();
          }
        },
        (err) => {
          done();
          throw err;
        },
      );
    }
    return this.#send(topic, message);
  }

  #send(topic: string, message: Message): Promise<number> {
    // The common case runs without an await: room in the buffer and the partition known now.
    let record: RecordInput;
    let bytes: number;
    try {
      if (this.#closed) throw new Error("The producer is closed");
      const key = message.key === undefined || message.key === null ? null : toBytes(message.key);
      record = {
        value: message.value === null ? null : toBytes(message.value),
        key,
        headers: headersOf(message.headers),
        timestamp: message.timestamp ?? Math.floor(this.#clock.wallMs()),
      };
      bytes = (record.value?.length ?? 0) + (key?.length ?? 0) + 16;
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.#bufferedBytes + bytes > this.#bufferBytesMax && this.#bufferedBytes > 0) {
      return this.#sendWhenRoom(topic, message.partition, record, bytes);
    }
    this.#bufferedBytes += bytes;
    return this.#place(topic, message.partition, record, bytes);
  }

  async #sendWhenRoom(
    topic: string,
    explicit: number | undefined,
    record: RecordInput,
    bytes: number,
  ): Promise<number> {
    while (this.#bufferedBytes + bytes > this.#bufferBytesMax && this.#bufferedBytes > 0) {
      await new Promise<void>((r) => this.#roomWaiters.push(r));
    }
    this.#bufferedBytes += bytes;
    return await this.#place(topic, explicit, record, bytes);
  }

  /** Picks the message's partition (waiting if it must) and adds it to that partition's batch. */
  #place(
    topic: string,
    explicit: number | undefined,
    record: RecordInput,
    bytes: number,
  ): Promise<number> {
    let chosen: number | Promise<number>;
    try {
      chosen = this.#partitionOf(topic, explicit, record.key ?? null);
    } catch (err) {
      this.#release(bytes);
      return Promise.reject(err);
    }
    if (typeof chosen === "number" && !this.#topicTails.has(topic)) {
      return this.#accumulate(topic, chosen, record, bytes);
    }
    return this.#placeLater(topic, chosen, record, bytes);
  }

  async #placeLater(
    topic: string,
    chosen: number | Promise<number>,
    record: RecordInput,
    bytes: number,
  ): Promise<number> {
    let partition: number;
    try {
      // Wait behind earlier sends to this topic that wait too, so the order of sends holds.
      const tail = this.#topicTails.get(topic);
      const waiting = (tail ?? Promise.resolve()).then(() => chosen);
      const mine = waiting.then(() => {}, () => {});
      this.#topicTails.set(topic, mine);
      this.#resolving.add(mine);
      try {
        partition = await waiting;
      } finally {
        this.#resolving.delete(mine);
        if (this.#topicTails.get(topic) === mine) this.#topicTails.delete(topic);
      }
    } catch (err) {
      this.#release(bytes);
      throw err;
    }
    return await this.#accumulate(topic, partition, record, bytes);
  }

  #accumulate(
    topic: string,
    partition: number,
    record: RecordInput,
    bytes: number,
  ): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let byPartition = this.#batches.get(topic);
      if (byPartition === undefined) {
        byPartition = new Map();
        this.#batches.set(topic, byPartition);
      }
      let acc = byPartition.get(partition);
      if (acc === undefined) {
        acc = { topic, partition, pending: [], bytes: 0, timer: null };
        byPartition.set(partition, acc);
      }
      acc.pending.push({ record, bytes, resolve, reject });
      acc.bytes += bytes;
      if (acc.bytes >= this.#batchBytesMax || acc.pending.length >= this.#batchRecordsMax) {
        this.#sendBatch(acc);
      } else if (acc.pending.length === 1) {
        this.#arm(acc);
      }
    });
  }

  #partitionOf(
    topic: string,
    explicit: number | undefined,
    key: Uint8Array | null,
  ): number | Promise<number> {
    if (explicit !== undefined) return explicit;
    const n = this.#partitionCount(topic);
    if (typeof n === "number") {
      return key !== null ? partitionForKey(key, n) : this.#sticky.partition(topic, n);
    }
    return n.then((count) =>
      key !== null ? partitionForKey(key, count) : this.#sticky.partition(topic, count)
    );
  }

  /**
   * The topic's partition count, asked of the cache once per task: a burst of sends in one task
   * needs it once, not per message (the cache's lookup reads the clock).
   */
  #partitionCount(topic: string): number | Promise<number> {
    const known = this.#countsThisTask.get(topic);
    if (known !== undefined) return known;
    const n = this.#counts.partitions(topic);
    if (typeof n === "number") {
      if (this.#countsThisTask.size === 0) queueMicrotask(() => this.#countsThisTask.clear());
      this.#countsThisTask.set(topic, n);
    }
    return n;
  }

  /** Forgets `topic`'s partition count, so the next send asks the broker again. */
  #invalidate(topic: string): void {
    this.#counts.invalidate(topic);
    this.#countsThisTask.delete(topic);
  }

  #arm(acc: Accumulator): void {
    if (this.#lingerMs <= 0) {
      queueMicrotask(() => this.#sendBatch(acc));
      return;
    }
    const timer = new AbortController();
    acc.timer = timer;
    this.#clock.sleep(this.#lingerMs, timer.signal).then(() => this.#sendBatch(acc), () => {});
  }

  #sendBatch(acc: Accumulator): void {
    const byPartition = this.#batches.get(acc.topic);
    if (byPartition?.get(acc.partition) !== acc || acc.pending.length === 0) return;
    byPartition.delete(acc.partition);
    if (byPartition.size === 0) this.#batches.delete(acc.topic);
    // A reason given, so the abort does not build a DOMException (and its stack) per batch.
    acc.timer?.abort(LINGER_CUT);
    this.#sticky.batchSent(acc.topic, acc.partition);
    if (this.#idempotent) this.#enqueue(acc);
    else this.#sendOnce(acc);
  }

  /**
   * Where a partition's produces go: its leader's node when the metadata names one (in a cluster),
   * else the bootstrap connection (which forwards to the leader if it is not the leader itself).
   */
  #route(topic: string, partition: number): ClientConnection {
    if (this.#pool === null) return this.#conn;
    return this.#pool.to(this.#counts.leader(topic, partition));
  }

  /** Without idempotence: one attempt; a lost connection fails the batch. */
  #sendOnce(acc: Accumulator): void {
    const pending = acc.pending;
    let batch: Uint8Array;
    try {
      batch = encodeBatch(pending.map((p) => p.record), { codec: this.#codec as 0 });
    } catch (err) {
      this.#release(acc.bytes);
      for (const p of pending) p.reject(err);
      return;
    }
    const body = {
      topic: acc.topic,
      partition: acc.partition,
      acks: this.#acks,
      timeoutMs: this.#timeoutMs,
      batch,
    };
    const sent: Promise<void> =
      (this.#acks === Acks.none
        ? this.#route(acc.topic, acc.partition).send("PRODUCE", body).then(() => ({
          baseOffset: -1,
          logStartOffset: -1,
        }))
        : this.#route(acc.topic, acc.partition).request<ProduceResponse>("PRODUCE", body))
        .then(
          (r) => pending.forEach((p, i) => p.resolve(r.baseOffset < 0 ? -1 : r.baseOffset + i)),
          (err) => {
            if (err instanceof GregorError && err.code === ErrorCode.UNKNOWN_PARTITION) {
              this.#invalidate(acc.topic);
            }
            pending.forEach((p) => p.reject(err));
          },
        )
        .finally(() => {
          this.#release(acc.bytes);
          this.#inFlight.delete(sent);
        });
    this.#inFlight.add(sent);
  }

  // --- Idempotent delivery --------------------------------------------------------------------

  #lane(topic: string, partition: number): Lane {
    const key = `${partition}\u0000${topic}`;
    let lane = this.#lanes.get(key);
    if (lane === undefined) {
      lane = {
        topic,
        partition,
        pid: null,
        // A forgotten lane's sequence is lost: come back under a new producer id.
        freshPid: this.#lanesForgotten,
        acquiring: false,
        nextSeq: 0,
        unacked: [],
        inFlight: 0,
        recovering: false,
        stateLost: false,
        backoff: false,
        backoffMs: this.#retryBackoffMs,
        lastError: null,
      };
      this.#lanes.set(key, lane);
      if (this.#lanes.size > PRODUCER_PARTITIONS_MAX) this.#forgetIdleLane();
    }
    return lane;
  }

  #forgetIdleLane(): void {
    for (const [key, lane] of this.#lanes) {
      if (lane.unacked.length === 0 && !lane.acquiring) {
        this.#lanes.delete(key);
        this.#lanesForgotten = true;
        return;
      }
    }
  }

  /** Numbers the accumulated messages as the partition's next batch and sends it when it may. */
  #enqueue(acc: Accumulator): void {
    const lane = this.#lane(acc.topic, acc.partition);
    const now = this.#clock.now();
    if (this.#joinWaitingBatch(lane, acc, now)) return;
    let settled!: () => void;
    const done = new Promise<void>((r) => (settled = r));
    const batch: Batch = {
      pending: acc.pending,
      bytes: acc.bytes,
      baseSequence: lane.nextSeq,
      encoded: null,
      deadline: now + this.#deliveryTimeoutMs,
      sent: false,
      sentBefore: false,
      inFlight: false,
      rejected: false,
      refused: false,
      settled,
    };
    lane.nextSeq = (lane.nextSeq + acc.pending.length) % SEQUENCES;
    lane.unacked.push(batch);
    this.#inFlight.add(done);
    void done.then(() => this.#inFlight.delete(done));
    this.#drain(lane);
  }

  /**
   * While the lane has its most batches in flight, new messages join the newest batch still
   * waiting (as Kafka's accumulator keeps a batch open until it can be sent), within the batch
   * limits: a slow acknowledgement (an fsync) then means fewer, bigger batches rather than a queue
   * of small ones, each waiting its turn. A joined message's delivery timeout counts from that
   * batch's creation, at most 1 % of `deliveryTimeoutMs` before its own send. False if it cannot
   * join.
   */
  #joinWaitingBatch(lane: Lane, acc: Accumulator, now: number): boolean {
    const last = lane.unacked[lane.unacked.length - 1];
    if (
      last === undefined || lane.inFlight < BATCHES_IN_FLIGHT_PER_PARTITION_MAX ||
      lane.recovering || lane.acquiring || lane.pid === null ||
      last.sent || last.inFlight || last.rejected || last.encoded !== null ||
      last.pending.length + acc.pending.length > this.#batchRecordsMax ||
      last.bytes + acc.bytes > this.#batchBytesMax ||
      now + this.#deliveryTimeoutMs - last.deadline > this.#deliveryTimeoutMs * JOIN_AGE_SHARE_MAX
    ) {
      return false;
    }
    // Sequence numbers stay contiguous: the joined messages take the ones after the batch's own.
    if ((last.baseSequence + last.pending.length) % SEQUENCES !== lane.nextSeq) return false;
    for (const p of acc.pending) last.pending.push(p);
    last.bytes += acc.bytes;
    lane.nextSeq = (lane.nextSeq + acc.pending.length) % SEQUENCES;
    return true;
  }

  /** Sends the lane's waiting batches, in sequence order, up to the in-flight limit. */
  #drain(lane: Lane): void {
    if (lane.recovering || lane.acquiring) return;
    if (lane.pid === null) {
      if (lane.unacked.length > 0) void this.#acquire(lane);
      return;
    }
    for (const b of lane.unacked) {
      if (lane.inFlight >= BATCHES_IN_FLIGHT_PER_PARTITION_MAX) return;
      if (!b.inFlight && !b.rejected) this.#transmit(lane, lane.pid, b);
      if (lane.recovering) return;
    }
  }

  #transmit(lane: Lane, pid: ProducerId, b: Batch): void {
    if (b.encoded === null) {
      try {
        b.encoded = encodeBatch(b.pending.map((p) => p.record), {
          codec: this.#codec as 0,
          producerId: pid.producerId,
          producerEpoch: pid.producerEpoch,
          baseSequence: b.baseSequence,
        });
      } catch (err) {
        this.#reject(b, err);
        lane.recovering = true;
        this.#settleLane(lane);
        return;
      }
    }
    b.inFlight = true;
    b.sentBefore = b.sent;
    b.sent = true;
    lane.inFlight++;
    this.#route(lane.topic, lane.partition).request<ProduceResponse>("PRODUCE", {
      topic: lane.topic,
      partition: lane.partition,
      acks: this.#acks,
      timeoutMs: this.#timeoutMs,
      batch: b.encoded,
    }).then((r) => this.#acked(lane, b, r.baseOffset), (err) => this.#failed(lane, b, err));
  }

  #acked(lane: Lane, b: Batch, baseOffset: number): void {
    lane.inFlight--;
    b.inFlight = false;
    if (b.rejected) {
      // Failed already when the lane gave up on its sequence; the answer comes too late.
      if (lane.recovering) this.#settleLane(lane);
      else this.#drain(lane);
      return;
    }
    lane.unacked.splice(lane.unacked.indexOf(b), 1);
    b.pending.forEach((p, i) => p.resolve(baseOffset < 0 ? -1 : baseOffset + i));
    this.#release(b.bytes);
    b.settled();
    lane.lastError = null;
    if (!lane.recovering) lane.backoffMs = this.#retryBackoffMs;
    if (lane.recovering) this.#settleLane(lane);
    else this.#drain(lane);
  }

  #failed(lane: Lane, b: Batch, err: unknown): void {
    lane.inFlight--;
    b.inFlight = false;
    if (b.rejected) {
      if (lane.recovering) this.#settleLane(lane);
      else this.#drain(lane);
      return;
    }
    if (err instanceof GregorError && err.code === ErrorCode.DUPLICATE_SEQUENCE) {
      // Stored long ago: delivered, at an offset the broker no longer remembers.
      lane.inFlight++;
      this.#acked(lane, b, -1);
      return;
    }
    lane.recovering = true;
    const outOfOrder = err instanceof GregorError && err.code === ErrorCode.OUT_OF_ORDER_SEQUENCE;
    b.refused = outOfOrder;
    if (outOfOrder && lane.unacked[0] === b) {
      // Every earlier batch was acknowledged, yet the broker wants an earlier sequence: it lost
      // them or stored them out of order (an append that failed while a later one succeeded).
      // Waiting cannot fix that; the lane starts over under a new producer id.
      lane.stateLost = true;
    } else if (this.#retriable(err)) {
      lane.lastError = err;
      if (
        err instanceof ConnectionError ||
        (err instanceof GregorError && err.code === ErrorCode.NOT_LEADER)
      ) {
        // The leader moved or its node is gone: learn where it is now before the retry.
        this.#invalidate(lane.topic);
        void Promise.resolve(this.#counts.partitions(lane.topic)).catch(() => {});
      }
      lane.backoff = true;
    } else if (
      err instanceof GregorError && REFUSED_BEFORE_SEQUENCE.has(err.code) && !b.sentBefore
    ) {
      // The broker refused it before taking its sequence: later batches move down to close the gap.
      if (err.code === ErrorCode.UNKNOWN_PARTITION) this.#invalidate(lane.topic);
      this.#reject(b, err);
    } else {
      // The broker may have stored it (the failure came from elsewhere: a fatal error on the
      // connection, a closed client) or will refuse its sequence for good (fenced): give up on
      // everything it may have stored and start the sequence again under a new producer id.
      this.#reset(lane, err, (x) => x === b || x.sent);
    }
    this.#settleLane(lane);
  }

  /**
   * The TIMEOUT a batch fails with once its delivery timeout passed: its message names the last
   * error the retries met (a full disk's STORAGE_ERROR, say), which is also its `cause`.
   */
  #timedOut(lastError: unknown): GregorError {
    const base = `Not acknowledged within deliveryTimeoutMs (${this.#deliveryTimeoutMs} ms)`;
    if (lastError === null) return new GregorError(ErrorCode.TIMEOUT, base);
    const last = lastError instanceof GregorError
      ? `${lastError.codeName}: ${lastError.message}`
      : lastError instanceof Error
      ? lastError.message
      : String(lastError);
    return new GregorError(ErrorCode.TIMEOUT, `${base}; last error ${last}`, { cause: lastError });
  }

  #retriable(err: unknown): boolean {
    if (this.#conn.closed) return false;
    return err instanceof ConnectionError || (err instanceof GregorError && err.retriable);
  }

  #reject(b: Batch, err: unknown): void {
    if (b.rejected) return;
    b.rejected = true;
    for (const p of b.pending) p.reject(err);
    this.#release(b.bytes);
    b.settled();
  }

  /**
   * Once nothing of a recovering lane is in flight: drops failed batches and renumbers the rest
   * to close the gaps, expires what is past its delivery timeout, then sends again in order.
   */
  #settleLane(lane: Lane): void {
    if (lane.inFlight > 0 || !lane.recovering) return;
    if (lane.stateLost) {
      lane.stateLost = false;
      this.#reset(
        lane,
        new GregorError(
          ErrorCode.OUT_OF_ORDER_SEQUENCE,
          "The broker lost this producer's sequence",
        ),
        (b) => b.sent && !b.refused,
      );
    }
    const now = this.#clock.now();
    if (lane.unacked.some((b) => !b.rejected && b.deadline <= now)) {
      this.#reset(lane, this.#timedOut(lane.lastError), (b) => b.sent || b.deadline <= now);
    }
    // Batches after a refused one move down by its count; acknowledged ones keep their place.
    let shift = 0;
    const kept: Batch[] = [];
    for (const b of lane.unacked) {
      if (b.rejected) {
        shift += b.pending.length;
        continue;
      }
      if (shift > 0) {
        b.baseSequence = (b.baseSequence - shift % SEQUENCES + SEQUENCES) % SEQUENCES;
        b.encoded = null;
      }
      kept.push(b);
    }
    lane.unacked = kept;
    lane.nextSeq = (lane.nextSeq - shift % SEQUENCES + SEQUENCES) % SEQUENCES;
    if (!lane.backoff || kept.length === 0) {
      lane.recovering = false;
      lane.backoff = false;
      this.#drain(lane);
      return;
    }
    const wait = lane.backoffMs * (0.5 + this.#random.float() / 2);
    lane.backoffMs = Math.min(lane.backoffMs * 2, this.#retryBackoffMsMax);
    void this.#clock.sleep(wait).then(() => {
      lane.recovering = false;
      lane.backoff = false;
      this.#drain(lane);
    });
  }

  /**
   * Gives up on the lane's sequence: fails the batches `doomed` picks (any the broker may have
   * stored must be among them), and numbers the rest from 0 under a new producer id.
   */
  #reset(lane: Lane, err: unknown, doomed: (b: Batch) => boolean): void {
    for (const b of lane.unacked) if (!b.rejected && doomed(b)) this.#reject(b, err);
    const kept = lane.unacked.filter((b) => !b.rejected);
    let seq = 0;
    for (const b of kept) {
      b.baseSequence = seq;
      b.encoded = null;
      b.sent = false;
      b.refused = false;
      b.sent = false;
      seq = (seq + b.pending.length) % SEQUENCES;
    }
    lane.unacked = kept;
    lane.nextSeq = seq;
    lane.pid = null;
    lane.freshPid = true;
  }

  /** Gets the lane a producer id (retrying while retriable), then sends. */
  async #acquire(lane: Lane): Promise<void> {
    lane.acquiring = true;
    let backoffMs = this.#retryBackoffMs;
    try {
      for (;;) {
        try {
          lane.pid = lane.freshPid ? await this.#initProducerId() : await this.#producerId();
          lane.freshPid = false;
          return;
        } catch (err) {
          const head = lane.unacked[0];
          if (head === undefined) return;
          if (!this.#retriable(err) || this.#clock.now() >= head.deadline) {
            const failed = lane.unacked.splice(0);
            for (const b of failed) this.#reject(b, err);
            lane.nextSeq = failed[0]?.baseSequence ?? lane.nextSeq;
            return;
          }
          await this.#clock.sleep(backoffMs * (0.5 + this.#random.float() / 2));
          backoffMs = Math.min(backoffMs * 2, this.#retryBackoffMsMax);
        }
      }
    } finally {
      lane.acquiring = false;
      this.#drain(lane);
    }
  }

  /** The producer id lanes share (fetched once). */
  #producerId(): Promise<ProducerId> {
    if (this.#sharedPid === null) {
      const asked = this.#initProducerId();
      this.#sharedPid = asked;
      asked.catch(() => {
        if (this.#sharedPid === asked) this.#sharedPid = null;
      });
    }
    return this.#sharedPid;
  }

  async #initProducerId(): Promise<ProducerId> {
    const r = await this.#conn.request<InitProducerIdResponse>("INIT_PRODUCER_ID", {});
    return { producerId: r.producerId, producerEpoch: r.producerEpoch };
  }

  #release(bytes: number): void {
    this.#bufferedBytes -= bytes;
    for (const w of this.#roomWaiters.splice(0)) w();
  }

  /** Sends every waiting batch now and resolves when all sent so far are acknowledged (or failed). */
  async flush(): Promise<void> {
    while (this.#resolving.size > 0) await Promise.allSettled([...this.#resolving]);
    for (const byPartition of [...this.#batches.values()]) {
      for (const acc of [...byPartition.values()]) this.#sendBatch(acc);
    }
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Flushes, then refuses further sends. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }
}

/** What a message without headers carries: one shared empty list, never changed. */
const NO_HEADERS: RecordHeader[] = Object.freeze([]) as unknown as RecordHeader[];
/** Why a linger timer is stopped early (its batch was sent): not an error anyone sees. */
const LINGER_CUT = new Error("The batch was sent before its linger time ran out");

function headersOf(h: Message["headers"]): RecordHeader[] {
  if (h === undefined) return NO_HEADERS;
  return Object.entries(h).map(([key, v]) => ({ key, value: v === null ? null : toBytes(v) }));
}
