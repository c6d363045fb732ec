// The broker: topics, produce, fetch, subscriptions with credit and acknowledgements, admin. It
// knows nothing of sockets or frames (connection.ts does) and reaches the world only through Env.

import type { Env, Listener } from "../io/types.ts";
import { IoFailure, NoSpace, NotFound, TooManyOpenFiles } from "../io/errors.ts";
import { FileHandles } from "../storage/file_handles.ts";
import { readChecked, writeChecked } from "../storage/checked_file.ts";
import { subscriptionsFile, topicsDir } from "../storage/layout.ts";
import { batchCodec, type BatchHeader, validateBatch } from "../protocol/batch.ts";
import { codecsLoaded, loadCodecs } from "../protocol/codecs.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { Member } from "../cluster/gossip/mod.ts";
import {
  type AlterTopicRequest,
  type ClusterMembersResponse,
  type CreatePartitionsRequest,
  type CreateTopicRequest,
  type DescribeTopicResponse,
  type DurableCommitRequest,
  type DurableFetchRequest,
  type FetchRequest,
  type FetchResponse,
  type InitProducerIdResponse,
  type ListTopicsResponse,
  type MetadataRequest,
  type MetadataResponse,
  type MetadataTopic,
  type OpName,
  type ProduceRequest,
  type ProduceResponse,
  type ReassignPartitionRequest,
  type RebalanceLeadersRequest,
  type RebalanceLeadersResponse,
  type RepairedPartition,
  type RepairPartitionsRequest,
  type RepairPartitionsResponse,
  Start,
  type SubscribeRequest,
} from "../protocol/messages.ts";
import { Connection } from "./connection.ts";
import { type Log, MemoryLog, OffsetOutOfRange } from "../storage/mod.ts";
import { type BrokerObserver, NO_OBSERVER } from "./observer.ts";
import { type BrokerOptions, DEFAULT_BROKER_OPTIONS } from "./options.ts";
import { type DeliverySink, durableKey, type DurableState, Subscription } from "./subscription.ts";
import { checkTopicName, type Partition, type Topic } from "./topic.ts";
import { effectiveConfigs, TopicStore } from "./topic_store.ts";
import { FileLog } from "../storage/file_log.ts";
import { ProducerIds } from "./producer_ids.ts";
import { PartitionProducers, rebuildProducers } from "./producer_state.ts";
import { Groups } from "./groups/groups.ts";
import type {
  ControlPlane,
  ForwardedRequest,
  HereOps,
  PlaneHost,
  SecurityChange,
} from "./control_plane.ts";
import { LocalControlPlane } from "./local_control_plane.ts";
import { StorageHealth } from "./storage_health.ts";
import { Auth } from "../auth/auth.ts";
import type { Operation, ResourceType } from "../auth/acl.ts";
import { SecurityStore } from "../auth/store.ts";

/** What the broker needs from the process it runs in. */
export interface BrokerHooks {
  /** Storage can no longer be trusted (a failed fsync): stop the process; restart recovers. */
  onFatal(reason: string): void;
  /**
   * Something an operator must see: corruption found, a torn tail truncated. `level` "error":
   * data is not served until an operator acts (a damaged partition, a topic that cannot load).
   */
  onReport(msg: string, level?: "info" | "warn" | "error"): void;
  /**
   * A request failed inside the broker for a reason no client input explains (a bug, or a
   * failure nobody mapped to a protocol error): the message carries the cause and its stack.
   */
  onInternalError(msg: string): void;
  /**
   * The node was set up wrongly in a way found only while it runs (another live process runs as
   * this node, from a copy of its data directory): stop the process, and do not restart it as it
   * is. Omitted: `onFatal`.
   */
  onSetupError?(reason: string): void;
}

const DEFAULT_HOOKS: BrokerHooks = {
  onFatal: () => {},
  onReport: () => {},
  onInternalError: () => {},
};

/** Topic configs `alterTopic` may change; the others are fixed when the topic is created. */
export const ALTERABLE_TOPIC_CONFIGS: readonly string[] = ["retention.bytes", "retention.ms"];

/** How long the accept loop pauses after the process ran out of descriptors, ms. */
const ACCEPT_BACKOFF_MS = 100;
/** How long a fault point holds a stored produce's answer back at most, ms (simulation only). */
const SLOW_ANSWER_MS_MAX = 50;
/**
 * Connections over connectionsMax answered with LIMIT_EXCEEDED per second at most; the rest are
 * closed at once, since each answered one holds a descriptor while its answer drains.
 */
const REFUSALS_ANSWERED_PER_SECOND_MAX = 32;

/** Durable subscriptions remembered at most. */
export const DURABLE_SUBSCRIPTIONS_MAX = 100_000;

/** Subscribers of one partition from which an append wakes them on the next event-loop turn. */
const WAKE_LATER_SUBSCRIBERS = 64;

/** A broker node: its topics and their logs, connections and subscriptions. */
export class Broker implements PlaneHost {
  readonly opts: Readonly<BrokerOptions>;
  readonly env: Env;
  readonly #topics = new Map<string, Topic>();
  readonly #durable = new Map<string, DurableState>();
  readonly #connections = new Set<Connection>();
  /** Connections without a completed HELLO, oldest first (a Set keeps insertion order). */
  readonly #handshaking = new Set<Connection>();
  /** Connections closed for being silent past idleTimeoutMs. */
  idleClosed = 0;
  /** Connections closed for not completing HELLO within handshakeTimeoutMs. */
  handshakesExpired = 0;
  /** Unhandshaken connections closed to make room for new ones (handshakingConnectionsMax). */
  handshakesEvicted = 0;
  /** The cluster view, once the node has joined one by gossip. */
  membership: (() => Member[]) | null = null;
  /** Told about requests, records in and out, and fsyncs (metrics); ignores them by default. */
  observer: BrokerObserver = NO_OBSERVER;
  /** This node's cluster id, once it has one. */
  nodeId = "";
  /** Decides topics, where appends and reads run, and where offsets and groups are kept. */
  readonly #plane: ControlPlane;
  /** Consumer groups: membership, assignment and committed offsets. */
  readonly groups: Groups;
  /** Users, ACLs and whether clients must authenticate; set by `open` before any connection. */
  auth!: Auth;
  /** Whether storage takes writes; each failure cause is logged once through `onReport`. */
  readonly storage: StorageHealth;
  readonly #stop = new AbortController();
  #listeners: Listener[] = [];
  #nextConnectionId = 1;
  /** Refusals answered in the current second, and when that second started (clock ms). */
  #refusalsAnswered = 0;
  #refusalsSinceMs = -Infinity;
  /** The storage's file handles: every file the broker opens goes through this budget. */
  readonly fileHandles: FileHandles;

  readonly #store: TopicStore;
  readonly #hooks: BrokerHooks;
  readonly #creating = new Map<string, Promise<Topic>>();
  /** Disk topics found at start that could not be loaded, and why: never created over. */
  readonly #unloadable = new Map<string, string>();
  #offsetsDirty = false;
  /** Idempotent producers' state per partition (a deleted topic's goes with its partitions). */
  readonly #producerStates = new WeakMap<Partition, PartitionProducers>();
  /** Partitions held back after a crash on a full disk, being made durable now. */
  readonly #savingHeldBack = new Map<Partition, Promise<boolean>>();
  /**
   * Partitions whose producers' state is being rebuilt from the log after a repair (or tried
   * again after a rebuild failed): appends to them wait, as one taken meanwhile by the state
   * being replaced would be unknown to the new one (its retry stored again, an older epoch no
   * longer fenced). A held-back log's appends wait on its attempt in #savingHeldBack instead.
   * Groups seed 8795, pubsub seed 3517.
   */
  readonly #rebuilding = new Map<Partition, Promise<void>>();
  /**
   * Partitions whose producers' state could not be rebuilt (a read of the log failed): the state
   * they have is not to be trusted, so an append first tries the rebuild again, and fails if it
   * fails. Taking it on the old state would treat a producer as unknown, and its retry of a batch
   * already stored would then come back under a new producer id and be stored again (pubsub
   * seed 9436).
   */
  readonly #stale = new WeakSet<Partition>();
  readonly #producerIds: ProducerIds;
  /** Produces waiting for the codec libraries to load; later ones queue behind them. */
  #producesAwaitingCodecs = 0;
  /** Partitions being created or added, not yet in #topics. */
  #partitionsCreating = 0;

  private constructor(
    env: Env,
    opts: Readonly<BrokerOptions>,
    hooks: BrokerHooks,
    plane: ControlPlane,
  ) {
    this.fileHandles = new FileHandles(env.disk, { handlesMax: opts.fileHandlesMax });
    env = { ...env, disk: this.fileHandles };
    this.env = env;
    this.opts = opts;
    this.#hooks = hooks;
    this.#plane = plane;
    this.storage = new StorageHealth(env.clock, (msg) => hooks.onReport(msg));
    this.#producerIds = new ProducerIds(env.disk, opts.dataDir);
    this.#store = new TopicStore(env, opts, {
      ...hooks,
      onSync: (seconds, batches) => this.observer.synced(seconds, batches),
    });
    this.groups = new Groups(env, opts.dataDir, {
      partitionsOf: (topic) => this.#topics.get(topic)?.partitions.length ?? 0,
      log: (topic, partition) =>
        plane.holds(topic, partition)
          ? this.#topics.get(topic)?.partitions[partition]?.log ?? null
          : null,
      remote: (topic, partition) =>
        !plane.holds(topic, partition) &&
        this.#topics.get(topic)?.partitions[partition] !== undefined,
      endsExact: () => plane.endsExact,
    });
    plane.bind(this);
  }

  /** This broker's single-node implementations, which a local control plane runs. */
  readonly here: HereOps = {
    createTopic: (req) => this.#createHere(req),
    deleteTopic: (name) => this.#deleteHere(name),
    createPartitions: (req) => this.#createPartitionsHere(req),
    alterTopic: (req) => this.#alterHere(req),
    repairPartitions: (req) => this.#repairHere(req),
    metadata: (req) => this.#metadataHere(req),
    append: (req, header) => this.#appendHere(req, header),
    initProducerId: () => this.#initProducerIdHere(),
    offsetsMoved: () => void (this.#offsetsDirty = true),
    flushOffsets: () => this.#flushOffsets(),
    durableOffset: (req) =>
      this.#durable.get(durableKey(req.topic, req.partition, req.name))?.ackedOffset ?? -1,
  };

  /**
   * Starts a broker: recovers every disk topic (logs checked, torn tails truncated) and the durable
   * subscription offsets, then runs its background loops (redelivery, retention, offset flushes).
   * `plane` decides what the broker serves where (default: this node alone serves everything).
   */
  static async open(
    env: Env,
    opts: Partial<BrokerOptions> = {},
    hooks: Partial<BrokerHooks> = {},
    plane: ControlPlane = new LocalControlPlane(),
  ): Promise<Broker> {
    const b = new Broker(env, { ...DEFAULT_BROKER_OPTIONS, ...opts }, {
      ...DEFAULT_HOOKS,
      ...hooks,
    }, plane);
    b.auth = new Auth(await SecurityStore.open(b.env.disk, b.opts.dataDir), {
      mechanism: b.opts.auth,
      superUsers: b.opts.superUsers,
      random: env.random,
      crypto: env.crypto,
    });
    const loaded = await b.#store.loadAll();
    for (const t of loaded.topics) b.#topics.set(t.name, t);
    for (const [name, why] of loaded.unloadable) b.#unloadable.set(name, why);
    for (const t of b.#topics.values()) {
      for (const p of t.partitions) await rebuildProducers(p.log, b.#producers(p));
    }
    await b.#loadOffsets();
    await b.groups.load();
    void b.#every(b.opts.groupsTickMs, () => void b.groups.expire());
    void b.#every(b.opts.redeliveryTickMs, () => b.#checkRedeliveries());
    void b.#every(Math.max(100, b.opts.idleTimeoutMs / 4), () => b.#closeIdle());
    void b.#every(Math.max(100, b.opts.handshakeTimeoutMs / 4), () => b.#expireHandshakes());
    void b.#every(b.opts.retentionCheckMs, () => b.enforceRetention());
    void b.#every(b.opts.offsetsFlushMs, () => b.#plane.flushDurables());
    return b;
  }

  /** True until `close()`. */
  get running(): boolean {
    return !this.#stop.signal.aborted;
  }

  /** Accepts connections on `listener` until it or the broker closes. */
  async serve(listener: Listener): Promise<void> {
    this.#listeners.push(listener);
    let outOfHandles = false;
    for (;;) {
      let conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (!(err instanceof TooManyOpenFiles) || !this.running) throw err;
        // The connection waits in the backlog; later accepts may succeed once descriptors free up.
        if (!outOfHandles) {
          this.#hooks.onReport(
            `Cannot accept a client connection: too many open files (${this.#connections.size} ` +
              `connections open; raise the open-file limit or lower connectionsMax or ` +
              `fileHandlesMax); retrying every ${ACCEPT_BACKOFF_MS} ms`,
          );
        }
        outOfHandles = true;
        await this.env.clock.sleep(ACCEPT_BACKOFF_MS, this.#stop.signal).catch(() => {});
        continue;
      }
      if (conn === null) return;
      outOfHandles = false;
      if (this.#connections.size >= this.opts.connectionsMax && !this.#mayAnswerRefusal()) {
        conn.close();
        continue;
      }
      const c = new Connection(this, conn, this.#nextConnectionId++);
      // At the cap of unhandshaken connections an old one goes rather than the new one: a flood of
      // silent connections then keeps cycling through a bounded pool, while a real client, whose
      // HELLO follows its connect at once, gets in. The one closed is told TIMEOUT, as at the
      // handshake deadline: the broker stopped waiting for its HELLO, and a client dials again.
      const victim = this.#handshaking.size >= this.opts.handshakingConnectionsMax
        ? this.#evictionVictim()
        : undefined;
      if (victim !== undefined) {
        this.handshakesEvicted++;
        this.#drop(
          victim,
          new GregorError(
            ErrorCode.TIMEOUT,
            `Closed to make room: ${this.opts.handshakingConnectionsMax} connections are waiting ` +
              `for their HELLO (handshakingConnectionsMax)`,
          ),
        );
      }
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
      this.#handshaking.add(c);
      void c.run().finally(() => this.#drop(c, null));
    }
  }

  /**
   * The unhandshaken connection to close for a new one: the oldest that has sent nothing, else the
   * oldest. One whose HELLO has begun to arrive is likelier a real client than a silent one.
   */
  #evictionVictim(): Connection | undefined {
    for (const c of this.#handshaking) if (!c.heard) return c;
    return this.#handshaking.values().next().value;
  }

  /** Forgets `c` (it no longer counts against any limit), closing it with `err` if given. */
  #drop(c: Connection, err: GregorError | null): void {
    this.#connections.delete(c);
    this.#handshaking.delete(c);
    if (err !== null) c.refuse(err);
  }

  /** Called by a connection whose HELLO succeeded: it no longer counts as handshaking. */
  handshakeDone(c: Connection): void {
    this.#handshaking.delete(c);
  }

  /** A client failed to authenticate: counted, and logged with the user it claimed and why. */
  authFailed(c: Connection, user: string, why: string): void {
    this.auth.failures++;
    this.#hooks.onReport(
      `Authentication failed for user ${JSON.stringify(user)} from ${c.remote} ` +
        `(connection ${c.id}): ${why}`,
      "warn",
    );
  }

  /** The ACLs denied a request: counted, and logged as an audit line. */
  denied(c: Connection, op: Operation, type: ResourceType, name: string): void {
    this.auth.denials++;
    this.#hooks.onReport(
      `Authorization denied: principal=${JSON.stringify(c.principal ?? "")} operation=${op} ` +
        `resource=${type}:${JSON.stringify(name)} from ${c.remote} (connection ${c.id})`,
      "warn",
    );
  }

  /** Closes connections that have not completed HELLO within handshakeTimeoutMs. */
  #expireHandshakes(): void {
    const now = this.env.clock.now();
    const timeoutMs = this.opts.handshakeTimeoutMs;
    // Oldest first: the first one still in time ends the sweep.
    for (const c of this.#handshaking) {
      if (now - c.acceptedMs < timeoutMs) return;
      this.handshakesExpired++;
      this.#drop(
        c,
        new GregorError(ErrorCode.TIMEOUT, `No HELLO within ${timeoutMs} ms of connecting`),
      );
    }
  }

  /**
   * The answer to a request that failed with `err` while serving `op`: a protocol error passes
   * through; anything else is a bug or an unmapped failure, reported loudly with its stack and
   * answered INTERNAL (never a client-input code, which would hide the bug). INTERNAL errors
   * raised on purpose are reported too.
   */
  answerFor(op: string, err: unknown): GregorError {
    if (err instanceof GregorError && err.code !== ErrorCode.INTERNAL) return err;
    if (err instanceof NoSpace || err instanceof IoFailure || err instanceof TooManyOpenFiles) {
      // The disk refused (full, a device error, out of handles): an operating condition, not a
      // bug, and one that may pass: the client may retry.
      this.storage.failed(err);
      return new GregorError(
        ErrorCode.STORAGE_ERROR,
        `Storage failed serving ${op}: ${err.message}`,
        { cause: err },
      );
    }
    const e = err instanceof Error ? err : new Error(String(err));
    this.internalErrors++;
    this.#hooks.onInternalError(
      `INTERNAL error serving ${op}: ${e.name}: ${e.message}\n${e.stack ?? "(no stack)"}` +
        (e.cause === undefined ? "" : `\ncaused by: ${(e.cause as Error)?.stack ?? e.cause}`),
    );
    return err instanceof GregorError
      ? err
      : new GregorError(ErrorCode.INTERNAL, `Internal error serving ${op}: ${e.message}`);
  }

  /** Requests answered INTERNAL since start. */
  internalErrors = 0;

  /** Whether one more connection over the limit may be told why before it is closed. */
  #mayAnswerRefusal(): boolean {
    const now = this.env.clock.now();
    if (now - this.#refusalsSinceMs >= 1000) {
      this.#refusalsSinceMs = now;
      this.#refusalsAnswered = 0;
    }
    return this.#refusalsAnswered++ < REFUSALS_ANSWERED_PER_SECOND_MAX;
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
    await this.#plane.close().catch((err) =>
      this.#hooks.onReport(`Cannot save subscription offsets: ${err}`)
    );
    for (const t of this.#topics.values()) {
      for (const p of t.partitions) await p.log.close();
    }
  }

  /** Runs `fn` every `ms` until the broker closes; a failing run is reported, not fatal. */
  async #every(ms: number, fn: () => Promise<unknown> | void): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.env.clock.sleep(ms, signal);
      } catch {
        return;
      }
      try {
        await fn();
      } catch (err) {
        // A full or failing disk fails every run the same way: logged once per cause, not per run.
        if (isStorageFailure(err)) this.storage.failed(err);
        else this.#hooks.onReport(`Background task failed: ${(err as Error).message}`);
      }
    }
  }

  #closeIdle(): void {
    const now = this.env.clock.now();
    for (const c of this.#connections) {
      if (c.closeIfIdle(now, this.opts.idleTimeoutMs)) this.idleClosed++;
    }
  }

  #checkRedeliveries(): void {
    for (const t of this.#topics.values()) {
      for (const p of t.partitions) for (const s of p.subscriptions) s.checkRedelivery();
    }
  }

  /** Deletes old segments of every disk partition past its retention; returns how many. */
  async enforceRetention(): Promise<number> {
    let deleted = 0;
    for (const t of [...this.#topics.values()]) {
      for (const p of t.partitions) {
        if (!(p.log instanceof FileLog)) continue;
        // Retried here too, so readers get a held-back partition without waiting for a produce.
        if (p.log.heldBack) await this.#durableAgain(p);
        deleted += await p.log.enforceRetention();
      }
    }
    return deleted;
  }

  async #loadOffsets(): Promise<void> {
    let saved: Record<string, number>;
    try {
      saved = JSON.parse(await readChecked(this.env.disk, subscriptionsFile(this.opts.dataDir)));
    } catch (err) {
      if (err instanceof NotFound) return;
      const path = subscriptionsFile(this.opts.dataDir);
      throw new Error(`Cannot load ${path}: ${(err as Error).message}`, { cause: err });
    }
    for (const [key, ackedOffset] of Object.entries(saved)) {
      const topic = key.split("\u0000")[0] as string;
      // An unloadable topic's positions are kept (and written back) for when it is fixed.
      if (!this.#topics.has(topic) && !this.#unloadable.has(topic)) continue;
      this.#durable.set(key, this.#durableState(key, ackedOffset));
    }
  }

  #durableState(key: string, ackedOffset: number): DurableState {
    const d: DurableState = {
      key,
      ackedOffset,
      owner: null,
      // In a cluster the offset is replicated metadata, so any node can resume the subscription.
      onChange: () => this.#plane.durableAcked(key, d.ackedOffset),
    };
    return d;
  }

  /** Writes durable subscription offsets if any moved (atomic replace). */
  async #flushOffsets(): Promise<void> {
    if (!this.#offsetsDirty) return;
    this.#offsetsDirty = false;
    const all: Record<string, number> = {};
    for (const [key, d] of this.#durable) if (d.ackedOffset >= 0) all[key] = d.ackedOffset;
    try {
      await this.env.disk.mkdir(this.opts.dataDir);
      await writeChecked(
        this.env.disk,
        subscriptionsFile(this.opts.dataDir),
        JSON.stringify(all),
      );
      this.storage.succeeded();
    } catch (err) {
      this.#offsetsDirty = true;
      throw err;
    }
  }

  // --- Topics -----------------------------------------------------------------------------

  /** Creates a topic (for a disk topic, its metadata is durable before this resolves). */
  createTopic(req: CreateTopicRequest): Promise<Topic> {
    checkTopicName(req.name);
    this.#checkLoadable(req.name);
    return this.#plane.createTopic(req);
  }

  #createHere(req: CreateTopicRequest): Promise<Topic> {
    if (this.#topics.has(req.name) || this.#creating.has(req.name)) {
      throw new GregorError(ErrorCode.TOPIC_EXISTS, `Topic ${req.name} already exists`);
    }
    this.checkPartitionCount(req.partitions);
    if (this.#topics.size + this.#creating.size >= this.opts.topicsMax) {
      throw new GregorError(
        ErrorCode.LIMIT_EXCEEDED,
        `Topic limit of ${this.opts.topicsMax} reached`,
      );
    }
    this.checkPartitionsTotal(req.partitions, `create topic ${req.name}`);
    this.#partitionsCreating += req.partitions;
    const creating = this.#store.create(req.name, req.partitions, req.configs).then((topic) => {
      this.#topics.set(req.name, topic);
      if (topic.configs["persistence"] === "disk") this.storage.succeeded();
      return topic;
    }, (err) => {
      throw this.#storageFailure(`Cannot create topic ${req.name}`, err);
    }).finally(() => {
      this.#creating.delete(req.name);
      this.#partitionsCreating -= req.partitions;
    });
    this.#creating.set(req.name, creating);
    return creating;
  }

  /** INVALID_REQUEST unless `n` is a partition count a topic may have. */
  checkPartitionCount(n: number): void {
    if (!Number.isInteger(n) || n < 1 || n > this.opts.partitionsMax) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `A topic needs 1 to ${this.opts.partitionsMax} partitions, got ${n}`,
      );
    }
  }

  /** Partitions of every topic this node knows, and of those being created. */
  get partitionCount(): number {
    let n = this.#partitionsCreating;
    for (const t of this.#topics.values()) n += t.partitions.length;
    return n;
  }

  /** LIMIT_EXCEEDED if `adding` more partitions would pass partitionsTotalMax. */
  checkPartitionsTotal(adding: number, what: string): void {
    const have = this.partitionCount;
    if (have + adding > this.opts.partitionsTotalMax) {
      throw new GregorError(
        ErrorCode.LIMIT_EXCEEDED,
        `Cannot ${what}: the broker holds ${have} partitions and may hold at most ` +
          `${this.opts.partitionsTotalMax} (partitionsTotalMax); ${adding} more would pass it`,
      );
    }
  }

  /** A topic the cluster's metadata names (with the partitions this node holds). */
  adoptTopic(topic: Topic): void {
    this.#topics.set(topic.name, topic);
  }

  /**
   * Puts `partition` in place of partition `index` of a topic this node knows (a replica that
   * moved here, or away): subscriptions on the one replaced end.
   */
  replacePartition(name: string, index: number, partition: Partition): void {
    const topic = this.#topics.get(name);
    const was = topic?.partitions[index];
    if (topic === undefined || was === undefined || was === partition) return;
    for (const s of was.subscriptions) s.close();
    was.subscriptions.clear();
    topic.partitions[index] = partition;
  }

  /** Forgets a topic the cluster deleted: its subscriptions end. */
  dropTopic(name: string): void {
    const topic = this.#topics.get(name);
    if (topic === undefined) return;
    this.#topics.delete(name);
    for (const p of topic.partitions) {
      for (const s of p.subscriptions) s.close();
      p.subscriptions.clear();
    }
    // A topic created again under the name starts its durable subscriptions afresh.
    for (const key of [...this.#durable.keys()]) {
      if (key.startsWith(`${name}\u0000`)) this.#durable.delete(key);
    }
  }

  /**
   * The acknowledged offset this broker holds in memory for the durable subscription `key`
   * (topic, partition and name joined by NUL), or -1 if it has none: read-only, for checkers.
   */
  durableAckedOffset(key: string): number {
    return this.#durable.get(key)?.ackedOffset ?? -1;
  }

  /** The topic `name` if this broker knows it. */
  knownTopic(name: string): Topic | undefined {
    return this.#topics.get(name);
  }

  /**
   * Runs a consumer-group request where groups are coordinated: here on a single node; in a
   * cluster on the metadata group's leader, forwarding it there (once) from any other node.
   */
  groupRequest<R>(op: OpName, local: () => R | Promise<R>): Promise<R> {
    return this.#plane.atCoordinator(op, local);
  }

  /**
   * Applies a change of users or ACLs where they are kept: in a cluster through the metadata group
   * on its leader (the request `op` is forwarded there from any other node); alone with `local`,
   * to this node's files. Resolves true if it changed something.
   */
  changeSecurity(
    change: SecurityChange,
    op: OpName,
    local: () => Promise<boolean>,
  ): Promise<boolean> {
    return this.#plane.changeSecurity(change, op, local);
  }

  /** Sends a request another node serves there (see `LedElsewhere`); resolves with its answer. */
  forward(to: string, req: ForwardedRequest): Promise<Uint8Array | null> {
    return this.#plane.forward(to, req);
  }

  /** Deletes a topic; its subscribers' subscriptions end. */
  async deleteTopic(name: string): Promise<void> {
    return await this.#plane.deleteTopic(name);
  }

  async #deleteHere(name: string): Promise<void> {
    const topic = this.#existing(name);
    this.#topics.delete(name);
    for (const p of topic.partitions) {
      for (const s of p.subscriptions) s.close();
      p.subscriptions.clear();
      await p.log.close();
    }
    if (topic.configs["persistence"] === "disk") await this.#store.removeFiles(name);
    await this.groups.forgetTopic(name);
    this.#offsetsDirty = true;
    for (const key of this.#durable.keys()) {
      if (key.startsWith(`${name}\u0000`)) this.#durable.delete(key);
    }
  }

  /** Topics found at start that could not be loaded, with why (for metrics and operators). */
  unloadableTopics(): ReadonlyMap<string, string> {
    return this.#unloadable;
  }

  /**
   * Refuses a topic whose files are there but could not be loaded: creating it anew would write
   * over the metadata of the data still on disk.
   */
  #checkLoadable(name: string): void {
    const why = this.#unloadable.get(name);
    if (why === undefined) return;
    throw new GregorError(
      ErrorCode.PARTITION_DAMAGED,
      `Topic ${name} was not loaded at start: ${why}; fix or move away its directory under ` +
        `${topicsDir(this.opts.dataDir)} and restart the broker`,
    );
  }

  /** The topic `name` if it exists, else UNKNOWN_TOPIC (or INVALID_TOPIC for a bad name). */
  #existing(name: string): Topic {
    const t = this.#topics.get(name);
    if (t !== undefined) return t;
    this.#checkLoadable(name);
    checkTopicName(name);
    throw new GregorError(ErrorCode.UNKNOWN_TOPIC, `Topic ${name} does not exist`);
  }

  /** The topic `name`, created with the defaults if it does not exist and auto-creation is on. */
  topic(name: string, create: boolean): Topic | Promise<Topic> {
    const t = this.#topics.get(name);
    if (t !== undefined) return t;
    const pending = this.#creating.get(name);
    if (pending !== undefined) return pending;
    this.#checkLoadable(name);
    if (create && this.opts.autoCreateTopics) {
      checkTopicName(name);
      return this.#plane.autoCreateTopic({
        name,
        partitions: this.opts.defaultPartitions,
        configs: {},
      });
    }
    return this.#existing(name);
  }

  /** The cluster as this node sees it (empty when it is a single node outside any cluster). */
  clusterMembers(): ClusterMembersResponse {
    const members = this.membership?.() ?? [];
    return {
      self: this.nodeId,
      members: members.map((m) => ({
        id: m.id,
        host: m.host,
        clusterPort: m.clusterPort,
        clientPort: m.clientPort,
        state: m.state,
        incarnation: m.incarnation,
        heartbeat: m.heartbeat,
      })),
    };
  }

  /**
   * Where each partition of the named topics (all if none are named) lives: on a single node,
   * every partition is led by this node.
   */
  async metadata(req: MetadataRequest): Promise<MetadataResponse> {
    return await this.#plane.metadata(req);
  }

  async #metadataHere(req: MetadataRequest): Promise<MetadataResponse> {
    const self = this.nodeId;
    const names = req.topics.length > 0
      ? req.topics.map((t) => t.name)
      : [...this.#topics.keys()].sort();
    const topics: MetadataTopic[] = [];
    for (const name of names) {
      try {
        const t = await this.topic(name, req.autoCreate === 1);
        topics.push({
          name,
          error: 0,
          partitions: t.partitions.map((p) => ({
            partition: p.id,
            leader: self,
            replicas: [{ id: self }],
          })),
        });
      } catch (err) {
        if (!(err instanceof GregorError)) throw err;
        topics.push({ name, error: err.code, partitions: [] });
      }
    }
    const me = this.membership?.().find((m) => m.id === self);
    const nodes = me === undefined
      ? [{ id: self, host: "", clientPort: 0 }]
      : [{ id: self, host: me.host, clientPort: me.clientPort }];
    return { nodes, topics, controller: "" };
  }

  /**
   * Grows a topic to `count` partitions. Partitions are never removed: a key's partition would
   * change under its consumers. Existing partitions and their data are untouched.
   */
  async createPartitions(req: CreatePartitionsRequest): Promise<void> {
    return await this.#plane.createPartitions(req);
  }

  async #createPartitionsHere(req: CreatePartitionsRequest): Promise<void> {
    const topic = this.#existing(req.name);
    const have = topic.partitions.length;
    if (!Number.isInteger(req.count) || req.count <= have || req.count > this.opts.partitionsMax) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `Topic ${req.name} has ${have} partitions; it can grow to ${
          have + 1
        }..${this.opts.partitionsMax}, ` +
          `not ${req.count} (partitions are never removed)`,
      );
    }
    this.checkPartitionsTotal(req.count - have, `grow topic ${req.name} to ${req.count}`);
    this.#partitionsCreating += req.count - have;
    try {
      await this.#store.addPartitions(topic, req.count);
    } catch (err) {
      throw this.#storageFailure(`Cannot add partitions to ${req.name}`, err);
    } finally {
      this.#partitionsCreating -= req.count - have;
    }
  }

  /**
   * Notes a storage failure (logged once per cause) and returns what to answer: STORAGE_ERROR with
   * the cause for an I/O error, which would otherwise reach the client as INTERNAL. Any other error
   * is returned as it is.
   */
  #storageFailure(what: string, err: unknown): unknown {
    if (!isStorageFailure(err)) return err;
    this.storage.failed(err);
    if (err instanceof GregorError) return err;
    return new GregorError(ErrorCode.STORAGE_ERROR, `${what}: ${(err as Error).message}`, {
      cause: err,
    });
  }

  /** Every topic, in no particular order (for metrics). */
  topics(): Topic[] {
    return [...this.#topics.values()];
  }

  listTopics(): ListTopicsResponse {
    const topics = [...this.#topics.values()]
      .map((t) => ({ name: t.name, partitions: t.partitions.length }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { topics };
  }

  describeTopic(name: string): DescribeTopicResponse {
    const t = this.#existing(name);
    const replication = (p: number) => this.#plane.replication(t.name, p);
    return {
      name: t.name,
      configs: { ...t.configs },
      // In a cluster, a partition this node holds no (caught-up) replica of is not known here:
      // its offsets and size are -1 rather than an empty stand-in's zeros.
      partitions: t.partitions.map((p) =>
        !this.#plane.holds(t.name, p.id)
          ? {
            partition: p.id,
            logStartOffset: -1,
            highWatermark: -1,
            sizeBytes: -1,
            subscribers: 0,
            damagedFromOffset: -1,
            ...replication(p.id),
          }
          : {
            partition: p.id,
            logStartOffset: p.log.logStartOffset,
            highWatermark: p.log.nextOffset,
            sizeBytes: p.log.sizeBytes,
            subscribers: p.subscriptions.size,
            damagedFromOffset: p.log.damage?.offset ?? -1,
            ...replication(p.id),
          }
      ),
    };
  }

  /**
   * Repairs the named partitions of a disk topic (all if none are named): each is checked batch by
   * batch and cut at its first bad batch (FileLog.repair). Producer state is rebuilt from what
   * remains, and subscriptions and durable offsets past the cut move back to it, so they see the
   * records appended from there on (which get the dropped offsets again).
   */
  async repairPartitions(req: RepairPartitionsRequest): Promise<RepairPartitionsResponse> {
    return await this.#plane.repairPartitions(req);
  }

  /** Moves a partition's replicas to the nodes named (a cluster's control plane decides). */
  async reassignPartition(req: ReassignPartitionRequest): Promise<void> {
    return await this.#plane.reassignPartition(req);
  }

  /** Hands partitions back to their preferred replicas now (a cluster's control plane does). */
  async rebalanceLeaders(req: RebalanceLeadersRequest): Promise<RebalanceLeadersResponse> {
    return await this.#plane.rebalanceLeaders(req);
  }

  async #repairHere(req: RepairPartitionsRequest): Promise<RepairPartitionsResponse> {
    const topic = this.#existing(req.name);
    const ids = req.partitions.length === 0
      ? topic.partitions.map((p) => p.id)
      : req.partitions.map((p) => topic.partition(p.partition).id);
    const out: RepairedPartition[] = [];
    for (const id of ids) {
      const p = topic.partition(id);
      // Appends wait from the cut until the producers' state is rebuilt from what remains.
      const repaired = this.#repairOne(topic.name, p);
      this.#holdAppends(p, repaired);
      out.push(await repaired);
    }
    return { partitions: out };
  }

  async #repairOne(topic: string, p: Partition): Promise<RepairedPartition> {
    const repair = p.log instanceof FileLog ? await p.log.repair() : null;
    if (repair === null) {
      const end = p.log.nextOffset;
      return { partition: p.id, cutOffset: end, endOffset: end, bytesDropped: 0, damage: "" };
    }
    const cut = repair.cutOffset;
    await this.#rebuildProducers(p);
    for (const s of p.subscriptions) s.truncatedAt(cut);
    const prefix = `${topic}\u0000${p.id}\u0000`;
    for (const [key, d] of this.#durable) {
      if (key.startsWith(prefix) && d.ackedOffset >= cut) {
        d.ackedOffset = cut - 1;
        this.#offsetsDirty = true;
      }
    }
    p.notify();
    const d = repair.damage;
    return {
      partition: p.id,
      cutOffset: cut,
      endOffset: repair.endOffset,
      bytesDropped: repair.bytesDropped,
      damage: `${d.file} fails its checks at byte ${d.byte}: ${d.reason}`,
    };
  }

  /** Appends to `p` wait until `until` settles (see #rebuilding). */
  #holdAppends(p: Partition, until: Promise<unknown>): void {
    const gate: Promise<void> = until.then(() => {}, () => {}).finally(() => {
      if (this.#rebuilding.get(p) === gate) this.#rebuilding.delete(p);
    });
    this.#rebuilding.set(p, gate);
  }

  /** Rebuilds a partition's producers' state from its log, in place of the one it had. */
  async #rebuildProducers(p: Partition): Promise<void> {
    this.#stale.add(p); // until this rebuild succeeds
    const state = new PartitionProducers();
    await rebuildProducers(p.log, state);
    this.#producerStates.set(p, state);
    this.#stale.delete(p);
  }

  /**
   * Changes a topic's retention configs (for a disk topic, its metadata is durable before this
   * resolves) and applies the new limits at once.
   */
  async alterTopic(req: AlterTopicRequest): Promise<void> {
    // Checked here first: an unknown topic is UNKNOWN_TOPIC wherever it would be altered.
    this.#existing(req.name);
    return await this.#plane.alterTopic(req);
  }

  async #alterHere(req: AlterTopicRequest): Promise<void> {
    const topic = this.#existing(req.name);
    const next = effectiveConfigs({ ...topic.configs, ...req.configs }, this.opts);
    for (const key of Object.keys(req.configs)) {
      if (!ALTERABLE_TOPIC_CONFIGS.includes(key) || !(key in topic.configs)) {
        throw new GregorError(
          ErrorCode.INVALID_REQUEST,
          `Topic config ${key} of ${topic.configs["persistence"]} topic ${req.name} cannot be ` +
            `changed; alterable: ${
              ALTERABLE_TOPIC_CONFIGS.filter((k) => k in topic.configs).join(", ")
            }`,
        );
      }
    }
    if (topic.configs["persistence"] === "disk") {
      await this.#store.writeMeta(req.name, topic.partitions.length, next).catch((err) => {
        throw this.#storageFailure(`Cannot change the configs of ${req.name}`, err);
      });
    }
    Object.assign(topic.configs, next);
    const bytes = Number(next["retention.bytes"]);
    for (const p of topic.partitions) {
      if (p.log instanceof FileLog) {
        p.log.setRetention({ bytes, ms: Number(next["retention.ms"]) });
        await p.log.enforceRetention();
      } else if (p.log instanceof MemoryLog) {
        p.log.setRetention({ bytes: bytes < 0 ? Infinity : bytes });
      }
    }
  }

  // --- Produce and fetch ------------------------------------------------------------------

  /**
   * Validates and appends one batch. Offsets are assigned in call order per partition, before the
   * first await, so pipelined produces on one connection keep their order.
   */
  produce(req: ProduceRequest): Promise<ProduceResponse> {
    const codec = req.batch === null ? 0 : batchCodec(req.batch);
    if (this.#producesAwaitingCodecs > 0 || (codec !== 0 && !codecsLoaded())) {
      // The codec libraries load on the first compressed batch; produces wait for them in call
      // order, so offsets are still assigned in the order the requests came.
      this.#producesAwaitingCodecs++;
      return loadCodecs().then(() => {
        this.#producesAwaitingCodecs--;
        return this.#produce(req);
      }, (err) => {
        this.#producesAwaitingCodecs--;
        throw err;
      });
    }
    return this.#produce(req);
  }

  #produce(req: ProduceRequest): Promise<ProduceResponse> {
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
    const header: BatchHeader = validateBatch(batch, {
      recordsBytesMax: this.opts.recordsBytesMax,
    });
    return this.#plane.append(req, header);
  }

  #appendHere(req: ProduceRequest, header: BatchHeader): Promise<ProduceResponse> {
    const batch = req.batch!;
    const startMs = this.env.clock.now();
    const t = this.topic(req.topic, true);
    const append = (topic: Topic): Promise<ProduceResponse> => {
      const partition = topic.partition(req.partition);
      const rebuilding = this.#rebuilding.get(partition);
      if (rebuilding !== undefined) return rebuilding.then(() => append(topic));
      const heldBack = partition.log instanceof FileLog && partition.log.heldBack;
      if (heldBack || this.#savingHeldBack.has(partition)) {
        // Judged only once the log and its producers' state hold the held-back batches again.
        return this.#durableAgain(partition).then((durable) => {
          if (durable) return append(topic);
          throw this.#storageFailure(
            `Cannot append to ${req.topic}/${req.partition}`,
            new GregorError(
              ErrorCode.STORAGE_ERROR,
              `no space left on device to make the records a crash left in its active segment ` +
                `durable; they are held back, and appends refused, until there is room`,
            ),
          );
        });
      }
      // After the held-back wait, which rebuilds the state itself: a rebuild still marked as
      // failed is tried again here, not beside one under way.
      if (this.#stale.has(partition)) {
        const again = this.#rebuildProducers(partition);
        this.#holdAppends(partition, again);
        return again.then(() => append(topic), (err) => {
          throw this.#storageFailure(`Cannot append to ${req.topic}/${req.partition}`, err);
        });
      }
      const store = () => partition.log.append(batch, header).then((r) => r.baseOffset);
      // An idempotent batch is judged and remembered here, as its offset is assigned (§8.1).
      const admitted = header.producerId < 0
        ? { duplicate: false, baseOffset: store() }
        : this.#producers(partition).admit(header, store);
      const onDisk = partition.log instanceof FileLog;
      return admitted.baseOffset.then((baseOffset) => {
        if (onDisk) this.storage.succeeded();
        if (!admitted.duplicate) {
          this.#notify(partition);
          const seconds = (this.env.clock.now() - startMs) / 1000;
          this.observer.produced(req.topic, header.recordCount, batch.length, seconds);
        }
        const answer = { baseOffset, logStartOffset: partition.log.logStartOffset };
        // Stored, not yet answered: a fault point (simulation only) holds the answer back.
        const faults = this.env.faults;
        if (faults === undefined || !faults.fires("broker.produce.before-answer")) return answer;
        return this.env.clock.sleep(1 + faults.pick(SLOW_ANSWER_MS_MAX)).then(() => answer);
      }, (err) => {
        throw onDisk ? this.#storageFailure(`Cannot append to ${req.topic}`, err) : err;
      });
    };
    // An existing topic appends now, in call order; one being created appends once it exists.
    return t instanceof Promise ? t.then(append) : append(t);
  }

  /**
   * Makes a partition log held back after a crash on a full disk durable, if the disk has room now,
   * and rebuilds its producers' state from the log that then includes the held-back batches (a
   * retry of one of them must be a duplicate, not stored twice). One attempt at a time per
   * partition; false while there is still no room.
   */
  #durableAgain(partition: Partition): Promise<boolean> {
    // An attempt under way is awaited even once the log stopped holding back: the producers'
    // state is rebuilt after that, and appends must wait for it too.
    const running = this.#savingHeldBack.get(partition);
    if (running !== undefined) return running;
    const log = partition.log;
    if (!(log instanceof FileLog) || !log.heldBack) return Promise.resolve(true);
    const attempt = log.makeDurable().then(async (durable) => {
      if (!durable) return false;
      await this.#rebuildProducers(partition);
      partition.notify();
      return true;
    }).finally(() => this.#savingHeldBack.delete(partition));
    this.#savingHeldBack.set(partition, attempt);
    return attempt;
  }

  /** Partitions whose subscribers are woken on the next turn of the event loop. */
  readonly #wakeSoon = new Set<Partition>();

  /**
   * Wakes `partition`'s subscribers after an append. With many of them the wake-up waits for the
   * next turn of the event loop, so the producer's answer goes out first: 10,000 subscribers of
   * one topic, woken at once, held a publish's answer back behind all their deliveries (75 ms).
   * Appends until then share the one wake-up.
   */
  #notify(partition: Partition): void {
    if (partition.subscriptions.size < WAKE_LATER_SUBSCRIBERS) {
      partition.notify();
      return;
    }
    if (this.#wakeSoon.has(partition)) return;
    this.#wakeSoon.add(partition);
    void this.env.clock.sleep(0).then(() => {
      this.#wakeSoon.delete(partition);
      partition.notify(this.env.clock.now());
    });
  }

  /** The idempotent-producer state of `partition`. */
  #producers(partition: Partition): PartitionProducers {
    let s = this.#producerStates.get(partition);
    if (s === undefined) {
      s = new PartitionProducers();
      this.#producerStates.set(partition, s);
    }
    return s;
  }

  /**
   * A new producer id for an idempotent producer, unique across restarts of this broker, with
   * epoch 0.
   * @throws {GregorError} STORAGE_ERROR if the id block cannot be reserved durably.
   */
  async initProducerId(): Promise<InitProducerIdResponse> {
    return await this.#plane.initProducerId();
  }

  async #initProducerIdHere(): Promise<InitProducerIdResponse> {
    try {
      return { producerId: await this.#producerIds.next(), producerEpoch: 0 };
    } catch (err) {
      throw this.#storageFailure("Cannot reserve producer ids", err);
    }
  }

  /** Reads batches from an offset (a pull, for tools and catch-up). */
  async fetch(req: FetchRequest): Promise<FetchResponse> {
    this.#plane.checkReadable(req.topic, req.partition);
    const log = this.#existing(req.topic).partition(req.partition).log;
    const bytesMax = Math.min(req.maxBytes, this.opts.deliverBytesMax);
    if (req.offset > log.nextOffset && req.offset <= knownEnd(log)) {
      // Held back after a crash on a full disk: there, but nothing to serve yet.
      return {
        logStartOffset: log.logStartOffset,
        highWatermark: log.nextOffset,
        records: new Uint8Array(0),
      };
    }
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
    const topic = await this.topic(req.topic, true);
    this.#plane.checkReadable(req.topic, req.partition);
    const partition = topic.partition(req.partition);
    const log = partition.log;
    if (req.ackTimeoutMs > this.opts.ackTimeoutMsMax) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `Ack timeout ${req.ackTimeoutMs} ms is over the limit of ${this.opts.ackTimeoutMsMax}`,
      );
    }
    let durable: DurableState | null = null;
    if (req.durableName !== "") {
      const key = durableKey(req.topic, req.partition, req.durableName);
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
        durable = this.#durableState(key, -1);
      }
      // In a cluster it may have been acked on another node. "In use" is this node's knowledge.
      const acked = await this.#plane.resumeOffset(req.topic, req.partition, req.durableName);
      durable.ackedOffset = Math.max(durable.ackedOffset, acked);
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
      onDelivered: (records, bytes) => this.observer.delivered(req.topic, records, bytes),
      held: true,
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
      case Start.offset: {
        // Offsets held back after a crash on a full disk exist: a subscriber that had some
        // resumes after them, and waits until they are served (out of range would send its
        // client back to the earliest offset).
        const end = knownEnd(log);
        if (req.startValue < log.logStartOffset || req.startValue > end) {
          throw new GregorError(
            ErrorCode.OFFSET_OUT_OF_RANGE,
            `Offset ${req.startValue} is outside ${req.topic}/${req.partition}'s range [${log.logStartOffset}, ${end}]`,
          );
        }
        return req.startValue;
      }
      case Start.timestamp:
        return await log.offsetForTimestamp(req.startValue);
      default:
        throw new GregorError(ErrorCode.INVALID_REQUEST, `Unknown subscription start ${req.start}`);
    }
  }

  /** A durable subscription's last acked offset (-1: none); in a cluster, as replicated. */
  async durableOffset(req: DurableFetchRequest): Promise<number> {
    return await this.#plane.durableOffset(req);
  }

  /** Takes durable subscriptions' acks another node forwarded, for the replicated metadata. */
  async commitDurables(req: DurableCommitRequest): Promise<void> {
    return await this.#plane.commitDurables(req);
  }

  /** Ends a subscription. */
  unsubscribe(sub: Subscription): void {
    sub.close();
    sub.partition.subscriptions.delete(sub);
  }
}

/** An error of the storage itself (not of the request): a full or failing disk, or STORAGE_ERROR. */
function isStorageFailure(err: unknown): boolean {
  return err instanceof NoSpace || err instanceof IoFailure ||
    (err instanceof GregorError && err.code === ErrorCode.STORAGE_ERROR);
}

/**
 * One past the last offset `log` holds: its next offset, or past the offsets it holds back after a
 * crash on a full disk (they exist, and are served once it is durable again).
 */
function knownEnd(log: Log): number {
  return Math.max(log.nextOffset, log instanceof FileLog ? log.heldBackNextOffset ?? 0 : 0);
}
