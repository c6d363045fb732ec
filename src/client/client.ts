// The client's front door: `connect()` and the Client it returns, which makes producers,
// subscriptions and the admin API share one connection.

import type { Env } from "../io/types.ts";
import { Admin } from "./admin.ts";
import { ClientConnection, type ConnectOptions, DEFAULT_PORT } from "./connection.ts";
import {
  Consumer,
  type From,
  notLeaderPauseMs,
  type ReceivedMessage,
  type SubscribeOptions,
} from "./consumer.ts";
import { GroupConsumer, type GroupConsumerOptions } from "./group_consumer.ts";
import { type Message, Producer, type ProducerOptions } from "./producer.ts";
import { ConnectionPool, type NodeAddr } from "./pool.ts";
import { PartitionCounts } from "./metadata.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";

/**
 * Connects to a broker through the given I/O environment (real or simulated) and completes the
 * handshake. Applications use `connect()` from the package root, which supplies the real one.
 */
export async function connectWith(
  env: Env,
  opts: ConnectOptions & InternalOptions = {},
): Promise<Client> {
  const client = new Client(env, opts);
  try {
    await client.connection.connect();
  } catch (err) {
    await client.close();
    throw err;
  }
  return client;
}

/** Options for the broker's own connections to its peers, not for applications. */
export interface InternalOptions {
  /** A refused reconnect fails at once (see `ConnectionOptions.refusalEndsDial`). */
  refusalEndsDial?: boolean;
}

/** Options of `client.readPartition()`. */
export interface ReadPartitionOptions {
  /** Where to start reading. Default "earliest". */
  from?: From;
  /**
   * Most messages to collect; a longer read fails rather than hold them all. Default 100 000.
   * Iterate `subscribe(topic, { until: "end" })` to read more without holding them.
   */
  messagesMax?: number;
}

/** Default `messagesMax` of `client.readPartition()`. */
const READ_PARTITION_MESSAGES_MAX = 100_000;

/** A connection to one broker. */
export class Client {
  /** Topic administration. */
  readonly admin: Admin;
  /** @internal The underlying connection. */
  readonly connection: ClientConnection;
  #producer: Producer | null = null;
  #nextSubscriptionId = 1;
  readonly #consumers = new Set<Consumer>();
  readonly #producers = new Set<Producer>();
  readonly #groups = new Set<GroupConsumer>();
  /** Connections to other nodes of a cluster, where partition leaders live. */
  readonly #pool: ConnectionPool;
  /** Partition counts and leaders, shared by the client's producers and subscriptions. */
  readonly #metadata: PartitionCounts;

  /** @internal Use `connect()`. */
  constructor(env: Env, opts: ConnectOptions & InternalOptions) {
    this.connection = new ClientConnection({
      host: opts.host ?? "127.0.0.1",
      port: opts.port ?? DEFAULT_PORT,
      servers: opts.servers ?? [],
      clientId: opts.clientId ?? "gregormq-ts",
      credential: opts.credential ?? null,
      scram: opts.username === undefined
        ? null
        : { username: opts.username, password: opts.password ?? "" },
      tls: opts.tls ?? null,
      requestTimeoutMs: opts.requestTimeoutMs ?? 30_000,
      reconnectBackoffMsMin: opts.reconnectBackoffMsMin ?? 50,
      reconnectBackoffMsMax: opts.reconnectBackoffMsMax ?? 5_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 30_000,
      requestsInFlightMax: opts.requestsInFlightMax ?? 4096,
      heartbeatMs: opts.heartbeatMs ?? 2_000,
      onStateChange: opts.onStateChange ?? (() => {}),
      env,
      ...(opts.refusalEndsDial === true ? { refusalEndsDial: true } : {}),
    });
    this.admin = new Admin(this.connection);
    this.#pool = new ConnectionPool(this.connection);
    this.#metadata = new PartitionCounts(this.connection, env.clock);
  }

  /**
   * A producer with its own batching settings.
   *
   * @example
   * ```ts
   * const producer = client.producer({ lingerMs: 5, compression: "lz4" });
   * await Promise.all([1, 2, 3].map((i) => producer.send("events", { value: `event ${i}` })));
   * await producer.close();
   * ```
   */
  producer(opts: ProducerOptions = {}): Producer {
    const p = new Producer(
      this.connection,
      this.connection.opts.env.clock,
      opts,
      this.#pool,
      this.#metadata,
    );
    this.#producers.add(p);
    return p;
  }

  /**
   * Publishes one message with the client's default producer; resolves with its offset.
   * @throws {GregorError} if the broker rejects it.
   */
  publish(topic: string, message: Message): Promise<number> {
    this.#producer ??= this.producer();
    return this.#producer.send(topic, message);
  }

  /**
   * Subscribes to one partition of a topic. Iterate the result with `for await`. With
   * `until: "end"` the iteration completes at the partition's end as it was when subscribing.
   *
   * @example
   * ```ts
   * import { connect } from "@gregormq/gregormq";
   * const client = await connect();
   * const orders = await client.subscribe("orders", { from: "earliest", until: "end" });
   * for await (const m of orders) console.log(m.offset, m.text()); // ends at the end
   * await client.close();
   * ```
   * @throws {GregorError} UNKNOWN_TOPIC (if the broker does not auto-create), OFFSET_OUT_OF_RANGE,
   *   SUBSCRIPTION_IN_USE (a durable name held by another live subscriber).
   * @throws {RangeError} for an `until` other than "end".
   */
  async subscribe(topic: string, opts: SubscribeOptions = {}): Promise<Consumer> {
    const clock = this.connection.opts.env.clock;
    const deadline = clock.now() + this.connection.opts.requestTimeoutMs;
    let conn = this.connection;
    for (let attempt = 1;; attempt++) {
      const partition = opts.partition ?? 0;
      const c = new Consumer(
        conn,
        this.#nextSubscriptionId++,
        topic,
        opts,
        async () => this.#pool.to(await this.#leaderOf(topic, partition)),
      );
      try {
        await c.start();
        this.#consumers.add(c);
        return c;
      } catch (err) {
        // In a cluster, a node without a replica of the partition, or whose replica is not caught
        // up (restarting, out of touch), says NOT_LEADER: subscribe at the partition's leader
        // instead, asking again while the cluster elects one, up to requestTimeoutMs.
        if (!(err instanceof GregorError && err.code === ErrorCode.NOT_LEADER)) throw err;
        if (clock.now() >= deadline) throw err;
        const next = this.#pool.to(await this.#leaderOf(topic, opts.partition ?? 0));
        // Straight to a newly named leader; the same answer again waits a little first.
        if (next === conn || attempt > 1) {
          await clock.sleep(notLeaderPauseMs(attempt));
        }
        conn = next;
      }
    }
  }

  /** The partition's leader as the cluster's metadata names it now; null if none is known. */
  async #leaderOf(topic: string, partition: number): Promise<NodeAddr | null> {
    this.#metadata.invalidate(topic);
    try {
      await this.#metadata.partitions(topic);
    } catch {
      return null; // the node asked does not know yet either (it is restarting, say)
    }
    return this.#metadata.leader(topic, partition);
  }

  /**
   * Reads one partition from `from` up to its end as it is now (the high watermark the broker
   * reports when the read starts) and returns the messages in offset order. Messages published
   * while it reads are not included. It acknowledges nothing and leaves no subscription behind.
   *
   * @param topic The topic to read.
   * @param partition The partition to read.
   * @returns The messages from `from` to the end, in offset order (empty for an empty partition).
   * @throws {GregorError} UNKNOWN_TOPIC, OFFSET_OUT_OF_RANGE.
   * @throws {RangeError} if more than `messagesMax` messages lie before the end.
   *
   * @example
   * ```ts
   * import { connect } from "@gregormq/gregormq";
   * const client = await connect();
   * const messages = await client.readPartition("orders", 0, { from: { offset: 100 } });
   * for (const m of messages) console.log(m.offset, m.text());
   * await client.close();
   * ```
   */
  async readPartition(
    topic: string,
    partition: number,
    opts: ReadPartitionOptions = {},
  ): Promise<ReceivedMessage[]> {
    const messagesMax = opts.messagesMax ?? READ_PARTITION_MESSAGES_MAX;
    const sub = await this.subscribe(topic, {
      partition,
      from: opts.from ?? "earliest",
      until: "end",
    });
    const out: ReceivedMessage[] = [];
    try {
      for await (const m of sub) {
        if (out.length >= messagesMax) {
          throw new RangeError(
            `Cannot read ${topic}/${partition} from ${sub.startOffset} to ${sub.endOffset}: more ` +
              `than messagesMax (${messagesMax}) messages; iterate subscribe() with until: "end"`,
          );
        }
        out.push(m);
      }
    } finally {
      await sub.close();
      this.#consumers.delete(sub);
    }
    return out;
  }

  /**
   * Joins a consumer group: the group's members share the topics' partitions, each partition
   * consumed by one member at a time. Resolves once the member has joined. Iterate the result
   * with `for await`; asking for the next message marks the previous one processed.
   *
   * @example
   * ```ts
   * const orders = await client.groupConsumer("billing", ["orders"], { reset: "earliest" });
   * for await (const m of orders) console.log(m.partition, m.offset, m.text());
   * ```
   * @throws {GregorError} INVALID_REQUEST (bad group name or options), LIMIT_EXCEEDED.
   */
  async groupConsumer(
    group: string,
    topics: readonly string[],
    opts: GroupConsumerOptions = {},
  ): Promise<GroupConsumer> {
    const g = new GroupConsumer(
      this.connection,
      {
        subscribe: (topic, o) => this.subscribe(topic, o),
        unsubscribe: async (c) => {
          this.#consumers.delete(c);
          await c.close();
        },
      },
      group,
      topics,
      opts,
    );
    await g.start();
    this.#groups.add(g);
    return g;
  }

  /** Flushes producers, ends subscriptions and closes the connection. */
  async close(): Promise<void> {
    for (const g of this.#groups) await g.close().catch(() => {});
    for (const p of this.#producers) await p.close().catch(() => {});
    this.#pool.close();
    for (const c of this.#consumers) await c.close();
    this.connection.close();
  }
}
