// The broker: topics, produce, fetch, subscriptions with credit and acknowledgements, admin. It
// knows nothing of sockets or frames (connection.ts does) and reaches the world only through Env.

import type { Env, Listener } from "../io/types.ts";
import { type BatchHeader, validateBatch } from "../protocol/batch.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import {
  type CreateTopicRequest,
  type DescribeTopicResponse,
  type FetchRequest,
  type FetchResponse,
  type ListTopicsResponse,
  type ProduceRequest,
  type ProduceResponse,
  Start,
  type SubscribeRequest,
} from "../protocol/messages.ts";
import { Connection } from "./connection.ts";
import { MemoryLog, OffsetOutOfRange } from "./log.ts";
import { type BrokerOptions, DEFAULT_BROKER_OPTIONS } from "./options.ts";
import { type DeliverySink, type DurableState, Subscription } from "./subscription.ts";
import { checkTopicName, Partition, Topic } from "./topic.ts";

/** Topic configuration keys understood today, with a check for each value. */
const TOPIC_CONFIGS: Record<string, (v: string) => string | null> = {
  "retention.bytes": (v) =>
    /^\d+$/.test(v) && Number(v) > 0 && Number.isSafeInteger(Number(v))
      ? null
      : "a positive whole number of bytes",
};

/** Durable subscriptions remembered at most. */
export const DURABLE_SUBSCRIPTIONS_MAX = 100_000;

/** A single-node broker. */
export class Broker {
  readonly opts: Readonly<BrokerOptions>;
  readonly env: Env;
  readonly #topics = new Map<string, Topic>();
  readonly #durable = new Map<string, DurableState>();
  readonly #connections = new Set<Connection>();
  readonly #stop = new AbortController();
  #listeners: Listener[] = [];
  #nextConnectionId = 1;

  constructor(env: Env, opts: Partial<BrokerOptions> = {}) {
    this.env = env;
    this.opts = { ...DEFAULT_BROKER_OPTIONS, ...opts };
    void this.#redeliveryLoop();
  }

  /** True until `close()`. */
  get running(): boolean {
    return !this.#stop.signal.aborted;
  }

  /** Accepts connections on `listener` until it or the broker closes. */
  async serve(listener: Listener): Promise<void> {
    this.#listeners.push(listener);
    for (;;) {
      const conn = await listener.accept();
      if (conn === null) return;
      const c = new Connection(this, conn, this.#nextConnectionId++);
      if (this.#connections.size >= this.opts.connectionsMax) {
        c.refuse(
          new GregorError(
            ErrorCode.LIMIT_EXCEEDED,
            `Connection limit of ${this.opts.connectionsMax} reached`,
          ),
        );
        continue;
      }
      this.#connections.add(c);
      void c.run().finally(() => this.#connections.delete(c));
    }
  }

  /** Open client connections. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Stops listening, closes every connection and log. */
  async close(): Promise<void> {
    if (!this.running) return;
    this.#stop.abort();
    for (const l of this.#listeners) l.close();
    for (const c of this.#connections) c.close();
    for (const t of this.#topics.values()) {
      for (const p of t.partitions) await p.log.close();
    }
  }

  async #redeliveryLoop(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.env.clock.sleep(this.opts.redeliveryTickMs, signal);
      } catch {
        return;
      }
      for (const t of this.#topics.values()) {
        for (const p of t.partitions) for (const s of p.subscriptions) s.checkRedelivery();
      }
    }
  }

  // --- Topics -----------------------------------------------------------------------------

  /** Creates a topic. */
  createTopic(req: CreateTopicRequest): Topic {
    checkTopicName(req.name);
    if (this.#topics.has(req.name)) {
      throw new GregorError(ErrorCode.TOPIC_EXISTS, `Topic ${req.name} already exists`);
    }
    if (
      !Number.isInteger(req.partitions) || req.partitions < 1 ||
      req.partitions > this.opts.partitionsMax
    ) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `A topic needs 1 to ${this.opts.partitionsMax} partitions, got ${req.partitions}`,
      );
    }
    if (this.#topics.size >= this.opts.topicsMax) {
      throw new GregorError(
        ErrorCode.LIMIT_EXCEEDED,
        `Topic limit of ${this.opts.topicsMax} reached`,
      );
    }
    for (const [k, v] of Object.entries(req.configs)) {
      const check = TOPIC_CONFIGS[k];
      if (check === undefined) {
        throw new GregorError(
          ErrorCode.INVALID_REQUEST,
          `Unknown topic config ${k}; known: ${Object.keys(TOPIC_CONFIGS).join(", ")}`,
        );
      }
      const wanted = check(v);
      if (wanted !== null) {
        throw new GregorError(
          ErrorCode.INVALID_REQUEST,
          `Topic config ${k}=${v} is invalid: use ${wanted}`,
        );
      }
    }
    const retentionBytes = Number(req.configs["retention.bytes"] ?? this.opts.retentionBytes);
    const partitions = Array.from(
      { length: req.partitions },
      (_, i) => new Partition(req.name, i, new MemoryLog({ retentionBytes })),
    );
    const topic = new Topic(req.name, { ...req.configs }, partitions);
    this.#topics.set(req.name, topic);
    return topic;
  }

  /** Deletes a topic; its subscribers' subscriptions end. */
  async deleteTopic(name: string): Promise<void> {
    const topic = this.topic(name, false);
    this.#topics.delete(name);
    for (const p of topic.partitions) {
      for (const s of p.subscriptions) s.close();
      p.subscriptions.clear();
      await p.log.close();
    }
    for (const key of this.#durable.keys()) {
      if (key.startsWith(`${name}\u0000`)) this.#durable.delete(key);
    }
  }

  /** The topic `name`; auto-created if allowed and `create` is true. */
  topic(name: string, create: boolean): Topic {
    const t = this.#topics.get(name);
    if (t !== undefined) return t;
    if (create && this.opts.autoCreateTopics) {
      return this.createTopic({ name, partitions: this.opts.defaultPartitions, configs: {} });
    }
    checkTopicName(name);
    throw new GregorError(ErrorCode.UNKNOWN_TOPIC, `Topic ${name} does not exist`);
  }

  listTopics(): ListTopicsResponse {
    const topics = [...this.#topics.values()]
      .map((t) => ({ name: t.name, partitions: t.partitions.length }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { topics };
  }

  describeTopic(name: string): DescribeTopicResponse {
    const t = this.topic(name, false);
    return {
      name: t.name,
      configs: { ...t.configs },
      partitions: t.partitions.map((p) => ({
        partition: p.id,
        logStartOffset: p.log.logStartOffset,
        highWatermark: p.log.nextOffset,
        sizeBytes: p.log.sizeBytes,
        subscribers: p.subscriptions.size,
      })),
    };
  }

  // --- Produce and fetch ------------------------------------------------------------------

  /**
   * Validates and appends one batch. Offsets are assigned in call order per partition, before the
   * first await, so pipelined produces on one connection keep their order.
   */
  produce(req: ProduceRequest): Promise<ProduceResponse> {
    const batch = req.batch;
    if (batch === null || batch.length === 0) {
      throw new GregorError(ErrorCode.INVALID_REQUEST, "PRODUCE needs a record batch");
    }
    if (batch.length > this.opts.batchBytesMax) {
      throw new GregorError(
        ErrorCode.BATCH_TOO_LARGE,
        `Batch of ${batch.length} bytes is over the limit of ${this.opts.batchBytesMax}`,
      );
    }
    const partition = this.topic(req.topic, true).partition(req.partition);
    const header: BatchHeader = validateBatch(batch, {
      recordsBytesMax: this.opts.recordsBytesMax,
    });
    return partition.log.append(batch, header).then((r) => {
      partition.notify();
      return { baseOffset: r.baseOffset, logStartOffset: partition.log.logStartOffset };
    });
  }

  /** Reads batches from an offset (a pull, for tools and catch-up). */
  async fetch(req: FetchRequest): Promise<FetchResponse> {
    const log = this.topic(req.topic, false).partition(req.partition).log;
    const bytesMax = Math.min(req.maxBytes, this.opts.deliverBytesMax);
    const got = await this.#read(() => log.read(req.offset, { bytesMax, recordsMax: Infinity }));
    return {
      logStartOffset: log.logStartOffset,
      highWatermark: log.nextOffset,
      records: got.bytes,
    };
  }

  async #read<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof OffsetOutOfRange) {
        throw new GregorError(ErrorCode.OFFSET_OUT_OF_RANGE, err.message);
      }
      throw err;
    }
  }

  // --- Subscriptions ----------------------------------------------------------------------

  /** Starts a subscription that pushes to `sink`. */
  async subscribe(sink: DeliverySink, req: SubscribeRequest): Promise<Subscription> {
    const partition = this.topic(req.topic, true).partition(req.partition);
    const log = partition.log;
    if (req.ackTimeoutMs > this.opts.ackTimeoutMsMax) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `Ack timeout ${req.ackTimeoutMs} ms is over the limit of ${this.opts.ackTimeoutMsMax}`,
      );
    }
    let durable: DurableState | null = null;
    if (req.durableName !== "") {
      const key = `${req.topic}\u0000${req.partition}\u0000${req.durableName}`;
      durable = this.#durable.get(key) ?? null;
      if (durable?.owner) {
        throw new GregorError(
          ErrorCode.SUBSCRIPTION_IN_USE,
          `Durable subscription ${req.durableName} on ${req.topic}/${req.partition} is in use`,
        );
      }
      if (durable === null) {
        if (this.#durable.size >= DURABLE_SUBSCRIPTIONS_MAX) {
          throw new GregorError(ErrorCode.LIMIT_EXCEEDED, `Durable subscription limit reached`);
        }
        durable = { key, ackedOffset: -1, owner: null };
      }
    }
    let start: number;
    if (durable !== null && durable.ackedOffset >= 0) {
      // Resume after the last acknowledgement; if retention dropped that far, at the earliest.
      start = Math.max(durable.ackedOffset + 1, log.logStartOffset);
    } else {
      start = await this.#startOffset(req, partition);
    }
    if (durable !== null) {
      if (durable.owner) {
        throw new GregorError(
          ErrorCode.SUBSCRIPTION_IN_USE,
          `Durable subscription ${req.durableName} is in use`,
        );
      }
      this.#durable.set(durable.key, durable);
    }
    const sub = new Subscription(sink, this.env.clock, {
      id: req.subscriptionId,
      partition,
      startOffset: start,
      ackTimeoutMs: req.ackTimeoutMs,
      creditMessages: req.creditMessages,
      creditBytes: req.creditBytes,
      creditMessagesMax: this.opts.creditMessagesMax,
      creditBytesMax: this.opts.creditBytesMax,
      deliverBytesMax: this.opts.deliverBytesMax,
      durable,
    });
    if (durable !== null) durable.owner = sub;
    partition.subscriptions.add(sub);
    return sub;
  }

  async #startOffset(req: SubscribeRequest, partition: Partition): Promise<number> {
    const log = partition.log;
    switch (req.start) {
      case Start.earliest:
        return log.logStartOffset;
      case Start.latest:
        return log.nextOffset;
      case Start.offset:
        if (req.startValue < log.logStartOffset || req.startValue > log.nextOffset) {
          throw new GregorError(
            ErrorCode.OFFSET_OUT_OF_RANGE,
            `Offset ${req.startValue} is outside ${req.topic}/${req.partition}'s range [${log.logStartOffset}, ${log.nextOffset}]`,
          );
        }
        return req.startValue;
      case Start.timestamp:
        return await log.offsetForTimestamp(req.startValue);
      default:
        throw new GregorError(ErrorCode.INVALID_REQUEST, `Unknown subscription start ${req.start}`);
    }
  }

  /** Ends a subscription. */
  unsubscribe(sub: Subscription): void {
    sub.close();
    sub.partition.subscriptions.delete(sub);
  }
}
