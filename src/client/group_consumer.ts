// The group consumer: one member of a consumer group. It heartbeats to the broker's coordinator,
// consumes the partitions it is assigned (one subscription each, merged into one stream), and
// hands back the ones it is told to give up after committing them, so a rebalance stops only the
// partitions that move. Offsets follow Kafka's convention: the committed offset is the next one
// to process.

import { GUARD_DONE } from "../io/errors.ts";
import type { Clock } from "../io/types.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type {
  GroupHeartbeatResponse,
  OffsetFetchResponse,
  TopicPartition,
} from "../protocol/messages.ts";
import { ConnectionError } from "./connection.ts";
import type { ClientConnection } from "./connection.ts";
import type { Consumer, From, ReceivedMessage, SubscribeOptions } from "./consumer.ts";

/** Group consumer options. */
export interface GroupConsumerOptions {
  /** Static membership: a restart with the same id within the session timeout moves nothing. */
  instanceId?: string;
  /** How the group spreads partitions: "sticky" (default), "range" or "roundrobin". */
  assignor?: "sticky" | "range" | "roundrobin";
  /** The member is removed if the broker hears nothing from it for this long, ms. Default 10 000. */
  sessionTimeoutMs?: number;
  /** Commit processed offsets in the background and on revocation and close. Default true. */
  autoCommit?: boolean;
  /** How often auto-commit runs, ms. Default 1000. */
  autoCommitIntervalMs?: number;
  /** Where to start a partition the group has no offset for. Default "latest" (Kafka's default). */
  reset?: "earliest" | "latest";
  /** Per partition: messages and bytes the broker may send ahead. Defaults 500 and 1 MiB. */
  windowMessages?: number;
  windowBytes?: number;
  /** Messages buffered across all partitions, waiting for the application. Default 10 000. */
  bufferMessagesMax?: number;
  /** Called when partitions are added to this member, before their messages arrive. */
  onAssigned?: (partitions: TopicPartition[]) => void | Promise<void>;
  /**
   * Called when partitions are taken away, after their last message was handed out and before
   * they are committed (with auto-commit) and released. Commit here when committing by hand.
   */
  onRevoked?: (partitions: TopicPartition[]) => void | Promise<void>;
}

/** How to make and end the per-partition subscriptions (the Client provides them). */
export interface Subscriber {
  subscribe(topic: string, opts: SubscribeOptions): Promise<Consumer>;
  unsubscribe(c: Consumer): Promise<void>;
}

interface Owned {
  tp: TopicPartition;
  consumer: Consumer | null;
  /** The next offset to process: what a commit of this partition would store. */
  position: number;
  committed: number;
  stopped: boolean;
}

/** Backoff between failed heartbeats, ms. */
const RETRY_MS_MIN = 50;
const RETRY_MS_MAX = 1000;

function keyOf(tp: TopicPartition): string {
  return `${tp.topic}\u0000${tp.partition}`;
}

/** A consumer-group member. Iterate it with `for await`; create one with `client.groupConsumer()`. */
export class GroupConsumer implements AsyncIterable<ReceivedMessage> {
  readonly group: string;
  readonly topics: readonly string[];
  readonly #conn: ClientConnection;
  readonly #clock: Clock;
  readonly #subscriber: Subscriber;
  readonly #o: Required<Omit<GroupConsumerOptions, "onAssigned" | "onRevoked">>;
  readonly #onAssigned: GroupConsumerOptions["onAssigned"];
  readonly #onRevoked: GroupConsumerOptions["onRevoked"];
  readonly #owned = new Map<string, Owned>();
  readonly #queue: ReceivedMessage[] = [];
  #queueHead = 0;
  #memberId = "";
  #generation = -1;
  /** The message handed out last: processed once the next one is asked for. */
  #last: ReceivedMessage | null = null;
  #waiter: (() => void) | null = null;
  #roomWaiters: (() => void)[] = [];
  #failure: unknown = null;
  #closed = false;
  readonly #stop = new AbortController();
  /** The heartbeat under way, so only one is ever in flight. */
  #beating: Promise<number> | null = null;
  #wakeLoop: (() => void) | null = null;
  #lastBeatOkMs: number;
  #loops: Promise<void>[] = [];

  /** @internal Use `client.groupConsumer()`. */
  constructor(
    conn: ClientConnection,
    subscriber: Subscriber,
    group: string,
    topics: readonly string[],
    opts: GroupConsumerOptions = {},
  ) {
    this.#conn = conn;
    this.#clock = conn.opts.env.clock;
    this.#subscriber = subscriber;
    this.group = group;
    this.topics = [...topics];
    this.#o = {
      instanceId: opts.instanceId ?? "",
      assignor: opts.assignor ?? "sticky",
      sessionTimeoutMs: opts.sessionTimeoutMs ?? 10_000,
      autoCommit: opts.autoCommit ?? true,
      autoCommitIntervalMs: opts.autoCommitIntervalMs ?? 1000,
      reset: opts.reset ?? "latest",
      windowMessages: opts.windowMessages ?? 500,
      windowBytes: opts.windowBytes ?? 1024 * 1024,
      bufferMessagesMax: opts.bufferMessagesMax ?? 10_000,
    };
    this.#onAssigned = opts.onAssigned;
    this.#onRevoked = opts.onRevoked;
    this.#lastBeatOkMs = this.#clock.now();
  }

  /** The member id the coordinator gave this member ("" before the first heartbeat). */
  get memberId(): string {
    return this.#memberId;
  }

  /** The group generation this member last heard. */
  get generation(): number {
    return this.#generation;
  }

  /** The partitions this member consumes now. */
  assignment(): TopicPartition[] {
    return [...this.#owned.values()].map((o) => ({ ...o.tp }));
  }

  /** @internal Joins the group (first heartbeat) and starts the background loops. */
  async start(): Promise<void> {
    await this.#beat();
    this.#loops.push(this.#heartbeatLoop());
    if (this.#o.autoCommit) this.#loops.push(this.#autoCommitLoop());
  }

  // --- Consuming ---------------------------------------------------------------------------

  /**
   * The next message of any assigned partition; waits for one. Asking for the next message marks
   * the previous one processed (what auto-commit commits). Resolves null once closed.
   */
  async next(): Promise<ReceivedMessage | null> {
    if (this.#last !== null) this.#processed(this.#last);
    this.#last = null;
    for (;;) {
      if (this.#failure !== null) throw this.#failure;
      if (this.#closed) return null;
      if (this.#queueHead < this.#queue.length) {
        const m = this.#queue[this.#queueHead++]!;
        if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
          this.#queue.splice(0, this.#queueHead);
          this.#queueHead = 0;
        }
        for (const w of this.#roomWaiters.splice(0)) w();
        const owned = this.#owned.get(keyOf(m));
        if (owned === undefined || owned.stopped) continue; // revoked while queued
        this.#last = m;
        return m;
      }
      await new Promise<void>((r) => (this.#waiter = r));
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ReceivedMessage> {
    for (;;) {
      const m = await this.next();
      if (m === null) return;
      yield m;
    }
  }

  #processed(m: ReceivedMessage): void {
    const owned = this.#owned.get(keyOf(m));
    if (owned === undefined || owned.stopped) return;
    if (m.offset + 1 > owned.position) owned.position = m.offset + 1;
    m.ack();
  }

  /** Moves one partition's messages into the shared queue, waiting for room. */
  async #pump(o: Owned): Promise<void> {
    const c = o.consumer!;
    try {
      for (;;) {
        const m = await c.next();
        if (m === null || o.stopped) return;
        while (this.#queue.length - this.#queueHead >= this.#o.bufferMessagesMax && !o.stopped) {
          await new Promise<void>((r) => this.#roomWaiters.push(r));
        }
        if (o.stopped) return;
        this.#queue.push(m);
        const w = this.#waiter;
        this.#waiter = null;
        w?.();
      }
    } catch (err) {
      if (!o.stopped) this.#fail(err);
    }
  }

  // --- Membership --------------------------------------------------------------------------

  async #heartbeatLoop(): Promise<void> {
    let retryMs = RETRY_MS_MIN;
    while (!this.#closed) {
      let waitMs: number;
      try {
        waitMs = await this.#beat();
        retryMs = RETRY_MS_MIN;
      } catch (err) {
        if (this.#closed) return;
        if (err instanceof GregorError && err.code === ErrorCode.FENCED_INSTANCE) {
          await this.#dropAll();
          this.#fail(err);
          return;
        }
        if (!(err instanceof ConnectionError || err instanceof GregorError)) {
          this.#fail(err);
          return;
        }
        // Out of touch for a whole session: the coordinator has given our partitions away.
        if (this.#clock.now() - this.#lastBeatOkMs > this.#o.sessionTimeoutMs) {
          await this.#dropAll();
          this.#memberId = "";
        }
        waitMs = retryMs;
        retryMs = Math.min(RETRY_MS_MAX, retryMs * 2);
      }
      await this.#pause(waitMs);
    }
  }

  /** Sleeps `ms` unless woken early (a commit found the generation stale, or close). */
  async #pause(ms: number): Promise<void> {
    const timer = new AbortController();
    const woken = new Promise<void>((r) => (this.#wakeLoop = r));
    await Promise.race([this.#clock.sleep(ms, timer.signal).catch(() => {}), woken]);
    timer.abort(GUARD_DONE);
    this.#wakeLoop = null;
  }

  /** One heartbeat (waiting for one under way); returns the interval to the next. */
  #beat(): Promise<number> {
    if (this.#beating !== null) return this.#beating.then(() => this.#beat());
    const p = this.#heartbeatOnce().finally(() => (this.#beating = null));
    this.#beating = p;
    return p;
  }

  async #heartbeatOnce(): Promise<number> {
    let r: GroupHeartbeatResponse;
    try {
      r = await this.#conn.request<GroupHeartbeatResponse>("GROUP_HEARTBEAT", {
        group: this.group,
        memberId: this.#memberId,
        instanceId: this.#o.instanceId,
        generation: this.#generation,
        sessionTimeoutMs: this.#o.sessionTimeoutMs,
        assignor: this.#o.assignor,
        topics: this.topics.map((name) => ({ name })),
        owned: this.assignment(),
      });
    } catch (err) {
      if (err instanceof GregorError && err.code === ErrorCode.UNKNOWN_MEMBER) {
        // Our session ended: the partitions may be someone else's now. Drop them uncommitted and
        // join again at once.
        await this.#dropAll();
        this.#memberId = "";
        this.#generation = -1;
        return 0;
      }
      throw err;
    }
    this.#lastBeatOkMs = this.#clock.now();
    this.#memberId = r.memberId;
    this.#generation = r.generation;
    const assigned = new Set(r.assigned.map(keyOf));
    const revoked = [...this.#owned.values()].filter((o) => !assigned.has(keyOf(o.tp)));
    if (revoked.length > 0) {
      await this.#revoke(revoked);
      return 0; // tell the coordinator at once that they are free
    }
    const added = r.assigned.filter((tp) => !this.#owned.has(keyOf(tp)));
    if (added.length > 0) await this.#assign(added);
    return r.heartbeatIntervalMs;
  }

  async #assign(tps: TopicPartition[]): Promise<void> {
    const fetched = await this.#conn.request<OffsetFetchResponse>("OFFSET_FETCH", {
      group: this.group,
      partitions: tps,
    });
    await this.#onAssigned?.(tps);
    for (const tp of tps) {
      const committed = fetched.offsets.find((o) =>
        o.topic === tp.topic && o.partition === tp.partition
      )?.offset ?? -1;
      const o: Owned = { tp, consumer: null, position: -1, committed, stopped: false };
      this.#owned.set(keyOf(tp), o);
      const from: From = committed >= 0 ? { offset: committed } : this.#o.reset;
      try {
        o.consumer = await this.#subscriber.subscribe(tp.topic, {
          partition: tp.partition,
          from,
          windowMessages: this.#o.windowMessages,
          windowBytes: this.#o.windowBytes,
        });
      } catch (err) {
        if (!(err instanceof GregorError && err.code === ErrorCode.OFFSET_OUT_OF_RANGE)) {
          this.#owned.delete(keyOf(tp));
          throw err;
        }
        // The committed offset fell to retention: start where the reset policy says.
        o.consumer = await this.#subscriber.subscribe(tp.topic, {
          partition: tp.partition,
          from: this.#o.reset,
          windowMessages: this.#o.windowMessages,
          windowBytes: this.#o.windowBytes,
        });
      }
      o.position = o.consumer.startOffset;
      if (o.stopped) {
        await this.#subscriber.unsubscribe(o.consumer);
        continue;
      }
      void this.#pump(o);
    }
  }

  /** Gives partitions back: stop, tell the listener, commit, release. */
  async #revoke(list: Owned[]): Promise<void> {
    for (const o of list) this.#stopPartition(o);
    if (this.#last !== null && list.some((o) => keyOf(o.tp) === keyOf(this.#last!))) {
      // The message in the application's hands belongs to a revoked partition; it counts as
      // processed only if the application asks for the next one, which it can no longer do here.
      this.#last = null;
    }
    await this.#onRevoked?.(list.map((o) => ({ ...o.tp })));
    // Inside a heartbeat, so no stale-generation retry (it would wait for this very heartbeat).
    if (this.#o.autoCommit) await this.#commitOwned(list, false).catch(() => {});
    for (const o of list) {
      this.#owned.delete(keyOf(o.tp));
      if (o.consumer !== null) await this.#subscriber.unsubscribe(o.consumer);
    }
  }

  /** Forgets every partition without committing (the session was lost). */
  async #dropAll(): Promise<void> {
    const list = [...this.#owned.values()];
    for (const o of list) this.#stopPartition(o);
    this.#last = null;
    this.#owned.clear();
    for (const o of list) if (o.consumer !== null) await this.#subscriber.unsubscribe(o.consumer);
  }

  #stopPartition(o: Owned): void {
    o.stopped = true;
    for (const w of this.#roomWaiters.splice(0)) w();
  }

  // --- Commits -----------------------------------------------------------------------------

  /**
   * Commits offsets and resolves once they are durable. Without arguments, commits every owned
   * partition up to and including the last message handed out (like Kafka's `commitSync()`).
   *
   * @throws {GregorError} STALE_GENERATION if a partition was taken away meanwhile.
   */
  async commit(offsets?: { topic: string; partition: number; offset: number }[]): Promise<void> {
    if (offsets === undefined) {
      if (this.#last !== null) this.#processed(this.#last);
      return await this.#commitOwned([...this.#owned.values()]);
    }
    await this.#sendCommit(offsets);
  }

  async #commitOwned(list: Owned[], retryStale = true): Promise<void> {
    const due = list.filter((o) => o.position >= 0 && o.position > o.committed);
    if (due.length === 0) return;
    const offsets = due.map((o) => ({ ...o.tp, offset: o.position }));
    await this.#sendCommit(offsets, retryStale);
    due.forEach((o, i) => (o.committed = Math.max(o.committed, offsets[i]!.offset)));
  }

  async #sendCommit(
    offsets: { topic: string; partition: number; offset: number }[],
    retryStale = true,
  ): Promise<void> {
    const body = () => ({
      group: this.group,
      memberId: this.#memberId,
      generation: this.#generation,
      offsets,
    });
    try {
      await this.#conn.request("OFFSET_COMMIT", body());
    } catch (err) {
      const stale = err instanceof GregorError && err.code === ErrorCode.STALE_GENERATION;
      if (!stale || !retryStale) throw err;
      // The group moved on: learn the new generation, then commit again if every partition is
      // still ours. One that moved is the caller's to hear about (Kafka's CommitFailedException):
      // dropping it quietly would report offsets committed that never were.
      await this.#beat();
      const moved = offsets.filter((o) => !this.#owned.has(keyOf(o)));
      if (moved.length > 0) {
        throw new GregorError(
          ErrorCode.STALE_GENERATION,
          `Cannot commit ${moved.map((o) => `${o.topic}/${o.partition}`).join(", ")} for ` +
            `group ${this.group}: this member no longer owns it (generation ${this.#generation})`,
        );
      }
      await this.#conn.request("OFFSET_COMMIT", body());
    }
  }

  async #autoCommitLoop(): Promise<void> {
    while (!this.#closed) {
      try {
        await this.#clock.sleep(this.#o.autoCommitIntervalMs, this.#stop.signal);
      } catch {
        return;
      }
      await this.#commitOwned([...this.#owned.values()]).catch(() => {});
    }
  }

  // --- Ending ------------------------------------------------------------------------------

  #fail(err: unknown): void {
    if (this.#failure === null) this.#failure = err;
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }

  /**
   * Commits (with auto-commit), leaves the group so its partitions move at once, and ends every
   * subscription. A static member does not leave: its partitions wait for it to come back until
   * the session times out.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#o.autoCommit) await this.commit().catch(() => {});
    this.#closed = true;
    this.#stop.abort();
    this.#wakeLoop?.();
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
    await this.#beating?.catch(() => {});
    const list = [...this.#owned.values()];
    for (const o of list) this.#stopPartition(o);
    this.#owned.clear();
    for (const o of list) if (o.consumer !== null) await this.#subscriber.unsubscribe(o.consumer);
    if (this.#memberId !== "" && this.#o.instanceId === "") {
      await this.#conn.request("GROUP_LEAVE", { group: this.group, memberId: this.#memberId })
        .catch(() => {});
    }
    await Promise.allSettled(this.#loops);
  }
}
