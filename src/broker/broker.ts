// The broker: topics, produce, fetch, subscriptions with credit and acknowledgements, admin. It
// knows nothing of sockets or frames (connection.ts does) and reaches the world only through Env.

import type { Env, Listener } from "../io/types.ts";
import { NotFound } from "../io/errors.ts";
import { readChecked, writeChecked } from "../storage/checked_file.ts";
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
  type RepairedPartition,
  type RepairPartitionsRequest,
  type RepairPartitionsResponse,
  Start,
  type SubscribeRequest,
} from "../protocol/messages.ts";
import { Connection } from "./connection.ts";
import { MemoryLog, OffsetOutOfRange } from "./log.ts";
import { type BrokerObserver, NO_OBSERVER } from "./observer.ts";
import { type BrokerOptions, DEFAULT_BROKER_OPTIONS } from "./options.ts";
import { type DeliverySink, type DurableState, Subscription } from "./subscription.ts";
import { checkTopicName, type Partition, type Topic } from "./topic.ts";
import { effectiveConfigs, TopicStore } from "./topic_store.ts";
import { FileLog } from "../storage/file_log.ts";
import { ProducerIds } from "./producer_ids.ts";
import { PartitionProducers, rebuildProducers } from "./producer_state.ts";
import { Groups } from "./groups/groups.ts";
import type { BrokerCluster } from "./cluster_hooks.ts";

/** Where durable subscription offsets are written, under the data directory. */
const OFFSETS_FILE = "subscriptions.json";

/** What the broker needs from the process it runs in. */
export interface BrokerHooks {
  /** Storage can no longer be trusted (a failed fsync): stop the process; restart recovers. */
  onFatal(reason: string): void;
  /**
   * Something an operator must see: corruption found, a torn tail truncated. `level` "error":
   * data is not served until an operator acts (a damaged partition, a topic that cannot load).
   */
  onReport(msg: string, level?: "warn" | "error"): void;
}

const DEFAULT_HOOKS: BrokerHooks = {
  onFatal: () => {},
  onReport: () => {},
};

/** Topic configs `alterTopic` may change; the others are fixed when the topic is created. */
export const ALTERABLE_TOPIC_CONFIGS: readonly string[] = ["retention.bytes", "retention.ms"];

/** How long a clustered broker waits to learn of a topic it just created, ms. */
const CLUSTER_APPLY_WAIT_MS = 10_000;

/** Durable subscriptions remembered at most. */
export const DURABLE_SUBSCRIPTIONS_MAX = 100_000;

/** A single-node broker. */
export class Broker {
  readonly opts: Readonly<BrokerOptions>;
  readonly env: Env;
  readonly #topics = new Map<string, Topic>();
  readonly #durable = new Map<string, DurableState>();
  readonly #connections = new Set<Connection>();
  /** Connections closed for being silent past idleTimeoutMs. */
  idleClosed = 0;
  /** The cluster view, once the node has joined one by gossip. */
  membership: (() => Member[]) | null = null;
  /** Told about requests, records in and out, and fsyncs (metrics); ignores them by default. */
  observer: BrokerObserver = NO_OBSERVER;
  /** This node's cluster id, once it has one. */
  nodeId = "";
  /** The replicated cluster this broker serves in, or null for a single node. */
  cluster: BrokerCluster | null = null;
  /** Consumer groups: membership, assignment and committed offsets. */
  readonly groups: Groups;
  readonly #stop = new AbortController();
  #listeners: Listener[] = [];
  #nextConnectionId = 1;

  readonly #store: TopicStore;
  readonly #hooks: BrokerHooks;
  readonly #creating = new Map<string, Promise<Topic>>();
  /** Disk topics found at start that could not be loaded, and why: never created over. */
  readonly #unloadable = new Map<string, string>();
  #offsetsDirty = false;
  /** Idempotent producers' state per partition (a deleted topic's goes with its partitions). */
  readonly #producerStates = new WeakMap<Partition, PartitionProducers>();
  readonly #producerIds: ProducerIds;
  /** Produces waiting for the codec libraries to load; later ones queue behind them. */
  #producesAwaitingCodecs = 0;

  private constructor(env: Env, opts: Readonly<BrokerOptions>, hooks: BrokerHooks) {
    this.env = env;
    this.opts = opts;
    this.#hooks = hooks;
    this.#producerIds = new ProducerIds(env.disk, opts.dataDir);
    this.#store = new TopicStore(env, opts, {
      ...hooks,
      onSync: (seconds, batches) => this.observer.synced(seconds, batches),
    });
    this.groups = new Groups(env, opts.dataDir, {
      partitionsOf: (topic) => this.#topics.get(topic)?.partitions.length ?? 0,
      log: (topic, partition) => {
        const held = this.cluster === null || this.cluster.holds(topic, partition);
        return held ? this.#topics.get(topic)?.partitions[partition]?.log ?? null : null;
      },
      remote: (topic, partition) =>
        this.cluster !== null && !this.cluster.holds(topic, partition) &&
        this.#topics.get(topic)?.partitions[partition] !== undefined,
      endsExact: () => this.cluster === null,
    });
  }

  /**
   * Starts a broker: recovers every disk topic (logs checked, torn tails truncated) and the durable
   * subscription offsets, then runs its background loops (redelivery, retention, offset flushes).
   */
  static async open(
    env: Env,
    opts: Partial<BrokerOptions> = {},
    hooks: Partial<BrokerHooks> = {},
  ): Promise<Broker> {
    const b = new Broker(env, { ...DEFAULT_BROKER_OPTIONS, ...opts }, {
      ...DEFAULT_HOOKS,
      ...hooks,
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
    void b.#every(b.opts.retentionCheckMs, () => b.enforceRetention());
    void b.#every(b.opts.offsetsFlushMs, () => b.#flushOffsets());
    return b;
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
    await this.#flushOffsets().catch((err) =>
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
        this.#hooks.onReport(`Background task failed: ${(err as Error).message}`);
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
        if (p.log instanceof FileLog) deleted += await p.log.enforceRetention();
      }
    }
    return deleted;
  }

  async #loadOffsets(): Promise<void> {
    let saved: Record<string, number>;
    try {
      saved = JSON.parse(await readChecked(this.env.disk, `${this.opts.dataDir}/${OFFSETS_FILE}`));
    } catch (err) {
      if (err instanceof NotFound) return;
      throw new Error(`Cannot load ${OFFSETS_FILE}: ${(err as Error).message}`, { cause: err });
    }
    for (const [key, ackedOffset] of Object.entries(saved)) {
      const topic = key.split("\u0000")[0] as string;
      // An unloadable topic's positions are kept (and written back) for when it is fixed.
      if (!this.#topics.has(topic) && !this.#unloadable.has(topic)) continue;
      this.#durable.set(key, this.#durableState(key, ackedOffset));
    }
  }

  #durableState(key: string, ackedOffset: number): DurableState {
    return { key, ackedOffset, owner: null, onChange: () => (this.#offsetsDirty = true) };
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
        `${this.opts.dataDir}/${OFFSETS_FILE}`,
        JSON.stringify(all),
      );
    } catch (err) {
      this.#offsetsDirty = true;
      throw err;
    }
  }

  // --- Topics -----------------------------------------------------------------------------

  /** Creates a topic (for a disk topic, its metadata is durable before this resolves). */
  createTopic(req: CreateTopicRequest, forwarded = false): Promise<Topic> {
    checkTopicName(req.name);
    this.#checkLoadable(req.name);
    if (this.cluster !== null) return this.#createInCluster(this.cluster, req, forwarded);
    if (this.#topics.has(req.name) || this.#creating.has(req.name)) {
      throw new GregorError(ErrorCode.TOPIC_EXISTS, `Topic ${req.name} already exists`);
    }
    this.#checkPartitionCount(req.partitions);
    if (this.#topics.size + this.#creating.size >= this.opts.topicsMax) {
      throw new GregorError(
        ErrorCode.LIMIT_EXCEEDED,
        `Topic limit of ${this.opts.topicsMax} reached`,
      );
    }
    const creating = this.#store.create(req.name, req.partitions, req.configs).then((topic) => {
      this.#topics.set(req.name, topic);
      return topic;
    }).finally(() => this.#creating.delete(req.name));
    this.#creating.set(req.name, creating);
    return creating;
  }

  #checkPartitionCount(n: number): void {
    if (!Number.isInteger(n) || n < 1 || n > this.opts.partitionsMax) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `A topic needs 1 to ${this.opts.partitionsMax} partitions, got ${n}`,
      );
    }
  }

  /** In a cluster: through the metadata group; resolves once this node knows the topic. */
  async #createInCluster(
    cluster: BrokerCluster,
    req: CreateTopicRequest,
    forwarded: boolean,
  ): Promise<Topic> {
    this.#checkPartitionCount(req.partitions);
    await cluster.createTopic(
      { ...req, configs: effectiveConfigs(req.configs, this.opts) },
      forwarded,
    );
    for (let waited = 0; waited < CLUSTER_APPLY_WAIT_MS; waited += 10) {
      const t = this.#topics.get(req.name);
      if (t !== undefined) return t;
      await this.env.clock.sleep(10);
    }
    throw new GregorError(
      ErrorCode.TIMEOUT,
      `Topic ${req.name} was created but this node has not learnt of it yet; retry`,
    );
  }

  /** A topic the cluster's metadata names (with the partitions this node holds). */
  adoptTopic(topic: Topic): void {
    this.#topics.set(topic.name, topic);
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
  }

  /** The topic `name` if this broker knows it. */
  knownTopic(name: string): Topic | undefined {
    return this.#topics.get(name);
  }

  /**
   * Runs a consumer-group request where groups are coordinated: here on a single node; in a
   * cluster on the metadata group's leader, forwarding it there (once) from any other node.
   */
  groupRequest<R>(
    op: OpName,
    body: object,
    forwarded: boolean,
    local: () => R | Promise<R>,
  ): Promise<R> {
    if (this.cluster === null) return Promise.resolve().then(local);
    return this.cluster.atCoordinator(op, body, forwarded, local);
  }

  /** Deletes a topic; its subscribers' subscriptions end. */
  async deleteTopic(name: string, forwarded = false): Promise<void> {
    if (this.cluster !== null) {
      checkTopicName(name);
      await this.cluster.deleteTopic(name, forwarded);
      return;
    }
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
        `${this.opts.dataDir}/topics and restart the broker`,
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
      return this.createTopic({ name, partitions: this.opts.defaultPartitions, configs: {} });
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
    if (this.cluster !== null) {
      if (req.autoCreate === 1 && this.opts.autoCreateTopics) {
        for (const { name } of req.topics) {
          if (!this.#topics.has(name)) {
            await (this.topic(name, true) as Promise<Topic>).catch(() => {});
          }
        }
      }
      return this.cluster.metadata(req);
    }
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
  async createPartitions(req: CreatePartitionsRequest, forwarded = false): Promise<void> {
    if (this.cluster !== null) {
      if (!Number.isInteger(req.count) || req.count > this.opts.partitionsMax) {
        throw new GregorError(
          ErrorCode.INVALID_REQUEST,
          `A topic has at most ${this.opts.partitionsMax} partitions, not ${req.count}`,
        );
      }
      await this.cluster.createPartitions(req, forwarded);
      return;
    }
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
    await this.#store.addPartitions(topic, req.count);
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
    return {
      name: t.name,
      configs: { ...t.configs },
      // In a cluster, a partition this node holds no (caught-up) replica of is not known here:
      // its offsets and size are -1 rather than an empty stand-in's zeros.
      partitions: t.partitions.map((p) =>
        this.cluster !== null && !this.cluster.holds(t.name, p.id)
          ? {
            partition: p.id,
            logStartOffset: -1,
            highWatermark: -1,
            sizeBytes: -1,
            subscribers: 0,
            damagedFromOffset: -1,
          }
          : {
            partition: p.id,
            logStartOffset: p.log.logStartOffset,
            highWatermark: p.log.nextOffset,
            sizeBytes: p.log.sizeBytes,
            subscribers: p.subscriptions.size,
            damagedFromOffset: p.log.damage?.offset ?? -1,
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
    if (this.cluster !== null) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        "In a cluster a damaged replica is repaired from its peers, not cut by REPAIR_PARTITIONS",
      );
    }
    const topic = this.#existing(req.name);
    const ids = req.partitions.length === 0
      ? topic.partitions.map((p) => p.id)
      : req.partitions.map((p) => topic.partition(p.partition).id);
    const out: RepairedPartition[] = [];
    for (const id of ids) {
      const p = topic.partition(id);
      const repair = p.log instanceof FileLog ? await p.log.repair() : null;
      if (repair === null) {
        const end = p.log.nextOffset;
        out.push({ partition: id, cutOffset: end, endOffset: end, bytesDropped: 0, damage: "" });
        continue;
      }
      const cut = repair.cutOffset;
      const producers = new PartitionProducers();
      await rebuildProducers(p.log, producers);
      this.#producerStates.set(p, producers);
      for (const s of p.subscriptions) s.truncatedAt(cut);
      const prefix = `${topic.name}\u0000${id}\u0000`;
      for (const [key, d] of this.#durable) {
        if (key.startsWith(prefix) && d.ackedOffset >= cut) {
          d.ackedOffset = cut - 1;
          this.#offsetsDirty = true;
        }
      }
      const d = repair.damage;
      out.push({
        partition: id,
        cutOffset: cut,
        endOffset: repair.endOffset,
        bytesDropped: repair.bytesDropped,
        damage: `${d.file} fails its checks at byte ${d.byte}: ${d.reason}`,
      });
      p.notify();
    }
    return { partitions: out };
  }

  /**
   * Changes a topic's retention configs (for a disk topic, its metadata is durable before this
   * resolves) and applies the new limits at once.
   */
  async alterTopic(req: AlterTopicRequest, forwarded = false): Promise<void> {
    const topic = this.#existing(req.name);
    if (this.cluster !== null) {
      for (const key of Object.keys(req.configs)) {
        if (!ALTERABLE_TOPIC_CONFIGS.includes(key)) {
          throw new GregorError(ErrorCode.INVALID_REQUEST, `Topic config ${key} cannot be changed`);
        }
      }
      effectiveConfigs({ ...topic.configs, ...req.configs }, this.opts);
      await this.cluster.alterTopic(req, forwarded);
      return;
    }
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
      await this.#store.writeMeta(req.name, topic.partitions.length, next);
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
  produce(req: ProduceRequest, forwarded = false): Promise<ProduceResponse> {
    const codec = req.batch === null ? 0 : batchCodec(req.batch);
    if (this.#producesAwaitingCodecs > 0 || (codec !== 0 && !codecsLoaded())) {
      // The codec libraries load on the first compressed batch; produces wait for them in call
      // order, so offsets are still assigned in the order the requests came.
      this.#producesAwaitingCodecs++;
      return loadCodecs().then(() => {
        this.#producesAwaitingCodecs--;
        return this.#produce(req, forwarded);
      }, (err) => {
        this.#producesAwaitingCodecs--;
        throw err;
      });
    }
    return this.#produce(req, forwarded);
  }

  #produce(req: ProduceRequest, forwarded: boolean): Promise<ProduceResponse> {
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
    const startMs = this.env.clock.now();
    const cluster = this.cluster;
    if (cluster !== null) {
      return cluster.produce(req, header, forwarded).then((r) => {
        const seconds = (this.env.clock.now() - startMs) / 1000;
        this.observer.produced(req.topic, header.recordCount, batch.length, seconds);
        return r;
      });
    }
    const t = this.topic(req.topic, true);
    const append = (topic: Topic): Promise<ProduceResponse> => {
      const partition = topic.partition(req.partition);
      const store = () => partition.log.append(batch, header).then((r) => r.baseOffset);
      // An idempotent batch is judged and remembered here, as its offset is assigned (§8.1).
      const admitted = header.producerId < 0
        ? { duplicate: false, baseOffset: store() }
        : this.#producers(partition).admit(header, store);
      return admitted.baseOffset.then((baseOffset) => {
        if (!admitted.duplicate) {
          partition.notify();
          const seconds = (this.env.clock.now() - startMs) / 1000;
          this.observer.produced(req.topic, header.recordCount, batch.length, seconds);
        }
        return { baseOffset, logStartOffset: partition.log.logStartOffset };
      });
    };
    // An existing topic appends now, in call order; one being created appends once it exists.
    return t instanceof Promise ? t.then(append) : append(t);
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
  async initProducerId(forwarded = false): Promise<InitProducerIdResponse> {
    if (this.cluster !== null) return await this.cluster.initProducerId(forwarded);
    return { producerId: await this.#producerIds.next(), producerEpoch: 0 };
  }

  /** Reads batches from an offset (a pull, for tools and catch-up). */
  async fetch(req: FetchRequest): Promise<FetchResponse> {
    this.#checkHeld(req.topic, req.partition);
    const log = this.#existing(req.topic).partition(req.partition).log;
    const bytesMax = Math.min(req.maxBytes, this.opts.deliverBytesMax);
    const got = await this.#read(() => log.read(req.offset, { bytesMax, recordsMax: Infinity }));
    return {
      logStartOffset: log.logStartOffset,
      highWatermark: log.nextOffset,
      records: got.bytes,
    };
  }

  /** In a cluster, only nodes holding a replica serve a partition's reads. */
  #checkHeld(topic: string, partition: number): void {
    const c = this.cluster;
    if (c === null || c.holds(topic, partition)) return;
    const replicas = c.metadata({ topics: [{ name: topic }], autoCreate: 0 }).topics[0]
      ?.partitions[partition]?.replicas.map((r) => r.id);
    if (replicas === undefined) return; // unknown topic or partition: the usual errors follow
    throw new GregorError(
      ErrorCode.NOT_LEADER,
      `This node holds no replica of ${topic}/${partition}; ask one of ${replicas.join(", ")}`,
    );
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
    if (this.cluster !== null && !this.#topics.has(req.topic)) await this.topic(req.topic, true);
    this.#checkHeld(req.topic, req.partition);
    const partition = (await this.topic(req.topic, true)).partition(req.partition);
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
        durable = this.#durableState(key, -1);
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
      onDelivered: (records, bytes) => this.observer.delivered(req.topic, records, bytes),
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
