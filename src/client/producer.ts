// The producer: batches messages per partition (by linger time and batch size), compresses each
// batch, pipelines PRODUCE requests, and resolves one promise per message with its offset.

import type { Clock } from "../io/types.ts";
import { encodeBatch, type RecordHeader, type RecordInput } from "../protocol/batch.ts";
import { Codec, type CodecName } from "../protocol/compression.ts";
import { Acks, type ProduceResponse } from "../protocol/messages.ts";
import type { ClientConnection } from "./connection.ts";

/** A message to publish. Strings are sent as UTF-8. */
export interface Message {
  value: Uint8Array | string | null;
  key?: Uint8Array | string | null;
  headers?: Record<string, Uint8Array | string | null>;
  /** Milliseconds since the epoch; default now. */
  timestamp?: number;
  /** Partition to publish to. Default 0. */
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
}

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

const encoder = new TextEncoder();

function toBytes(v: Uint8Array | string): Uint8Array {
  return typeof v === "string" ? encoder.encode(v) : v;
}

/** Publishes messages to topics. Create one with `client.producer()`. */
export class Producer {
  readonly #conn: ClientConnection;
  readonly #clock: Clock;
  readonly #lingerMs: number;
  readonly #batchBytesMax: number;
  readonly #batchRecordsMax: number;
  readonly #codec: number;
  readonly #acks: number;
  readonly #bufferBytesMax: number;
  readonly #timeoutMs: number;
  readonly #batches = new Map<string, Accumulator>();
  readonly #inFlight = new Set<Promise<void>>();
  #bufferedBytes = 0;
  #roomWaiters: (() => void)[] = [];
  #closed = false;

  /** @internal Use `client.producer()`. */
  constructor(conn: ClientConnection, clock: Clock, opts: ProducerOptions = {}) {
    this.#conn = conn;
    this.#clock = clock;
    this.#lingerMs = opts.lingerMs ?? 0;
    this.#batchBytesMax = opts.batchBytesMax ?? 256 * 1024;
    this.#batchRecordsMax = opts.batchRecordsMax ?? 10_000;
    this.#codec = Codec[opts.compression ?? "none"];
    this.#acks = Acks[opts.acks ?? "leader"];
    this.#bufferBytesMax = opts.bufferBytesMax ?? 64 * 1024 * 1024;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    if (this.#codec === undefined) throw new RangeError(`Unknown compression ${opts.compression}`);
    if (this.#acks === undefined) throw new RangeError(`Unknown acks ${opts.acks}`);
  }

  /**
   * Publishes one message; resolves with its offset once the broker acknowledged it (-1 with acks
   * "none"). Messages to one partition keep the order of the `send` calls.
   *
   * @param topic The topic (auto-created by a default broker).
   * @param message The message; `value` is required (null for a tombstone).
   * @returns The offset the broker assigned.
   * @throws {GregorError} if the broker rejects the batch (e.g. BATCH_TOO_LARGE, INVALID_TOPIC).
   * @throws {ConnectionError} if the connection was lost before the acknowledgement.
   */
  async send(topic: string, message: Message): Promise<number> {
    if (this.#closed) throw new Error("The producer is closed");
    const record: RecordInput = {
      value: message.value === null ? null : toBytes(message.value),
      key: message.key === undefined || message.key === null ? null : toBytes(message.key),
      headers: headersOf(message.headers),
      timestamp: message.timestamp ?? Math.floor(this.#clock.wallMs()),
    };
    const bytes = (record.value?.length ?? 0) + (record.key?.length ?? 0) + 16;
    while (this.#bufferedBytes + bytes > this.#bufferBytesMax && this.#bufferedBytes > 0) {
      await new Promise<void>((r) => this.#roomWaiters.push(r));
    }
    const partition = message.partition ?? 0;
    return new Promise<number>((resolve, reject) => {
      const key = `${partition}\u0000${topic}`;
      let acc = this.#batches.get(key);
      if (acc === undefined) {
        acc = { topic, partition, pending: [], bytes: 0, timer: null };
        this.#batches.set(key, acc);
      }
      acc.pending.push({ record, bytes, resolve, reject });
      acc.bytes += bytes;
      this.#bufferedBytes += bytes;
      if (acc.bytes >= this.#batchBytesMax || acc.pending.length >= this.#batchRecordsMax) {
        this.#sendBatch(key, acc);
      } else if (acc.pending.length === 1) {
        this.#arm(key, acc);
      }
    });
  }

  #arm(key: string, acc: Accumulator): void {
    if (this.#lingerMs <= 0) {
      queueMicrotask(() => this.#sendBatch(key, acc));
      return;
    }
    const timer = new AbortController();
    acc.timer = timer;
    this.#clock.sleep(this.#lingerMs, timer.signal).then(() => this.#sendBatch(key, acc), () => {});
  }

  #sendBatch(key: string, acc: Accumulator): void {
    if (this.#batches.get(key) !== acc || acc.pending.length === 0) return;
    this.#batches.delete(key);
    acc.timer?.abort();
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
        ? this.#conn.send("PRODUCE", body).then(() => ({ baseOffset: -1, logStartOffset: -1 }))
        : this.#conn.request<ProduceResponse>("PRODUCE", body))
        .then(
          (r) => pending.forEach((p, i) => p.resolve(r.baseOffset < 0 ? -1 : r.baseOffset + i)),
          (err) => pending.forEach((p) => p.reject(err)),
        )
        .finally(() => {
          this.#release(acc.bytes);
          this.#inFlight.delete(sent);
        });
    this.#inFlight.add(sent);
  }

  #release(bytes: number): void {
    this.#bufferedBytes -= bytes;
    for (const w of this.#roomWaiters.splice(0)) w();
  }

  /** Sends every waiting batch now and resolves when all sent so far are acknowledged (or failed). */
  async flush(): Promise<void> {
    for (const [key, acc] of [...this.#batches]) this.#sendBatch(key, acc);
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
  }

  /** Flushes, then refuses further sends. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
  }
}

function headersOf(h: Message["headers"]): RecordHeader[] {
  if (h === undefined) return [];
  return Object.entries(h).map(([key, v]) => ({ key, value: v === null ? null : toBytes(v) }));
}
