// The broker's Prometheus metrics: one prom-client Registry per broker (never the global default
// one: many brokers share an isolate in tests and the simulator). The broker's events (requests,
// records in and out, fsyncs) are tallied in plain counters as it works, which costs a map lookup
// and an add; prom-client itself is loaded on the first scrape (it is the biggest module a broker
// would otherwise load at start-up), and its metrics read the tallies and the broker at scrape time.

import type { Counter, Gauge, Registry } from "prom-client";
import type { Broker } from "../broker/broker.ts";
import type { BrokerObserver } from "../broker/observer.ts";
import type { Partition } from "../broker/topic.ts";
import type { MemberState } from "../cluster/gossip/mod.ts";
import type { ClusterNode } from "../cluster/cluster.ts";
import type { RaftGroup } from "../cluster/raft/shell.ts";
import { FileLog } from "../storage/file_log.ts";

/** The metadata group's fault tolerance, as a cluster node reports it. */
type MetaTolerance = ReturnType<ClusterNode["metaFaultTolerance"]>;

/** The Content-Type of the Prometheus text format that `Registry.metrics()` writes. */
const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Latency buckets, seconds: 100 µs to 10 s. */
const LATENCY_BUCKETS_SECONDS = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];
/** Batches made durable by one fsync (group commit). */
const BATCHES_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
const MEMBER_STATES: readonly MemberState[] = ["alive", "suspect", "dead", "left"];

/** Every metric the broker exports, by name. */
export const METRIC_NAMES = {
  connectionsOpen: "gregormq_connections_open",
  requests: "gregormq_requests_total",
  messagesIn: "gregormq_messages_in_total",
  bytesIn: "gregormq_bytes_in_total",
  messagesOut: "gregormq_messages_out_total",
  bytesOut: "gregormq_bytes_out_total",
  produceDuration: "gregormq_produce_duration_seconds",
  fsyncDuration: "gregormq_fsync_duration_seconds",
  fsyncBatches: "gregormq_fsync_batches",
  logSize: "gregormq_log_size_bytes",
  logSegments: "gregormq_log_segments",
  logEndOffset: "gregormq_log_end_offset",
  partitionDamaged: "gregormq_partition_damaged",
  topicsUnloadable: "gregormq_topics_unloadable",
  consumerLag: "gregormq_consumer_lag_messages",
  subscriptions: "gregormq_subscriptions",
  clusterMembers: "gregormq_cluster_members",
  groupLag: "gregormq_group_lag_messages",
  groupMembers: "gregormq_group_members",
  groupGeneration: "gregormq_group_generation",
  raftTerm: "gregormq_raft_term",
  raftLeader: "gregormq_raft_leader",
  raftCommitIndex: "gregormq_raft_commit_index",
  raftAppliedIndex: "gregormq_raft_applied_index",
  raftLeaderChanges: "gregormq_raft_leader_changes_total",
  underReplicated: "gregormq_under_replicated_partitions",
  partitionsMoving: "gregormq_partitions_moving",
  replicaRepairs: "gregormq_replica_repairs_total",
  metaVoters: "gregormq_meta_voters",
  metaVotersAlive: "gregormq_meta_voters_alive",
  metaNodesLosable: "gregormq_meta_nodes_losable",
  storageErrors: "gregormq_storage_errors_total",
  authFailures: "gregormq_auth_failures_total",
  authorizationDenials: "gregormq_authorization_denials_total",
} as const;

/** Counts by topic. */
interface TopicTally {
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
}

/** A histogram's observations: per bucket (not cumulative; the last is +Inf), sum and count. */
class HistogramTally {
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    let i = 0;
    while (i < this.bounds.length && v > (this.bounds[i] as number)) i++;
    this.counts[i]! += 1;
    this.sum += v;
    this.count++;
  }
}

/** A metric object as prom-client's Registry reads it (`registerMetric`, then `get()`). */
interface CollectedMetric {
  name: string;
  help: string;
  type: "counter" | "histogram";
  aggregator: "sum";
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

/** A broker's metrics. Attach it with `metrics.attach(broker)`. */
export class BrokerMetrics {
  /** Feeds the tallies; `attach` gives it to `Broker.observer`. */
  readonly observer: BrokerObserver;
  #broker: Broker | null = null;
  #cluster: ClusterNode | null = null;
  /** Requests answered, by opcode name and then result. */
  readonly #requests = new Map<string, Map<string, number>>();
  readonly #topics = new Map<string, TopicTally>();
  readonly #produceDuration = new HistogramTally(LATENCY_BUCKETS_SECONDS);
  readonly #fsyncDuration = new HistogramTally(LATENCY_BUCKETS_SECONDS);
  readonly #fsyncBatches = new HistogramTally(BATCHES_BUCKETS);
  #registry: Promise<Registry> | null = null;

  constructor() {
    const topic = (name: string): TopicTally => {
      let t = this.#topics.get(name);
      if (t === undefined) {
        t = { messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0 };
        this.#topics.set(name, t);
      }
      return t;
    };
    this.observer = {
      request: (op, code) => {
        let byCode = this.#requests.get(op);
        if (byCode === undefined) {
          byCode = new Map();
          this.#requests.set(op, byCode);
        }
        byCode.set(code, (byCode.get(code) ?? 0) + 1);
      },
      produced: (name, records, bytes, seconds) => {
        const t = topic(name);
        t.messagesIn += records;
        t.bytesIn += bytes;
        this.#produceDuration.observe(seconds);
      },
      delivered: (name, records, bytes) => {
        const t = topic(name);
        t.messagesOut += records;
        t.bytesOut += bytes;
      },
      synced: (seconds, batches) => {
        this.#fsyncDuration.observe(seconds);
        this.#fsyncBatches.observe(batches);
      },
    };
  }

  /** The registry `/metrics` serves, built (and prom-client loaded) on first use. */
  registry(): Promise<Registry> {
    this.#registry ??= import("prom-client").then((prom) => this.#build(prom));
    return this.#registry;
  }

  #build(prom: typeof import("prom-client")): Registry {
    const { Counter, Gauge } = prom;
    const registry = new prom.Registry();
    const registers = [registry];
    const counter = (
      name: string,
      help: string,
      values: () => CollectedMetric["values"],
    ): void => {
      const metric = {
        name,
        help,
        get: (): CollectedMetric => ({
          name,
          help,
          type: "counter",
          aggregator: "sum",
          values: values(),
        }),
      };
      registry.registerMetric(metric as unknown as Counter);
    };
    const histogram = (name: string, help: string, tally: HistogramTally): void => {
      const metric = {
        name,
        help,
        get: (): CollectedMetric => {
          const values: CollectedMetric["values"] = [];
          let cumulative = 0;
          tally.bounds.forEach((le, i) => {
            cumulative += tally.counts[i] as number;
            values.push({ value: cumulative, labels: { le }, metricName: `${name}_bucket` });
          });
          values.push(
            { value: tally.count, labels: { le: "+Inf" }, metricName: `${name}_bucket` },
            { value: tally.sum, labels: {}, metricName: `${name}_sum` },
            { value: tally.count, labels: {}, metricName: `${name}_count` },
          );
          return { name, help, type: "histogram", aggregator: "sum", values };
        },
      };
      registry.registerMetric(metric as unknown as Counter);
    };
    counter(
      METRIC_NAMES.requests,
      "Requests answered, by opcode name and result (OK or the error code's name).",
      () => {
        const values: CollectedMetric["values"] = [];
        for (const [op, byCode] of this.#requests) {
          for (const [code, value] of byCode) values.push({ value, labels: { op, code } });
        }
        return values;
      },
    );
    const perTopic = (name: string, help: string, field: keyof TopicTally): void =>
      counter(name, help, () => {
        const values: CollectedMetric["values"] = [];
        for (const [topic, t] of this.#topics) values.push({ value: t[field], labels: { topic } });
        return values;
      });
    perTopic(
      METRIC_NAMES.messagesIn,
      "Records stored by produce requests, by topic.",
      "messagesIn",
    );
    perTopic(
      METRIC_NAMES.bytesIn,
      "Record batch bytes stored by produce requests, by topic.",
      "bytesIn",
    );
    perTopic(
      METRIC_NAMES.messagesOut,
      "Records pushed to subscribers (redeliveries included), by topic.",
      "messagesOut",
    );
    perTopic(
      METRIC_NAMES.bytesOut,
      "Record batch bytes pushed to subscribers (redeliveries included), by topic.",
      "bytesOut",
    );
    histogram(
      METRIC_NAMES.produceDuration,
      "Time from a produce request's arrival until its batch is stored as its fsync " +
        "policy requires.",
      this.#produceDuration,
    );
    histogram(
      METRIC_NAMES.fsyncDuration,
      "Duration of one fsync of a partition's active segment.",
      this.#fsyncDuration,
    );
    histogram(
      METRIC_NAMES.fsyncBatches,
      "Record batches made durable by one fsync (group commit).",
      this.#fsyncBatches,
    );

    const broker = (): Broker | null => this.#broker;
    counter(
      METRIC_NAMES.authFailures,
      "Failed client authentications (wrong password, unknown user, replayed or malformed SCRAM).",
      () => [{ value: broker()?.auth.failures ?? 0, labels: {} }],
    );
    counter(
      METRIC_NAMES.authorizationDenials,
      "Requests the ACLs denied (each also logged as an audit line).",
      () => [{ value: broker()?.auth.denials ?? 0, labels: {} }],
    );
    const storageCounted = new Map<string, number>();
    new Counter({
      name: METRIC_NAMES.storageErrors,
      help: "Failed storage writes (full disk, I/O errors), by cause; each cause is logged once.",
      labelNames: ["cause"] as const,
      registers,
      collect(this: Counter<"cause">) {
        for (const [cause, now] of broker()?.storage.counts ?? []) {
          const before = storageCounted.get(cause) ?? 0;
          if (now > before) this.inc({ cause }, now - before);
          storageCounted.set(cause, now);
        }
      },
    });
    new Gauge({
      name: METRIC_NAMES.connectionsOpen,
      help: "Open client connections.",
      registers,
      collect(this: Gauge) {
        this.set(broker()?.connectionCount ?? 0);
      },
    });
    this.#partitionGauge(
      prom,
      registry,
      METRIC_NAMES.logSize,
      "Bytes stored in a partition's log.",
      (p) => p.log.sizeBytes,
    );
    this.#partitionGauge(
      prom,
      registry,
      METRIC_NAMES.logSegments,
      "Segment files of a disk partition.",
      (p) => (p.log instanceof FileLog ? p.log.segmentCount : null),
    );
    this.#partitionGauge(
      prom,
      registry,
      METRIC_NAMES.logEndOffset,
      "The offset the partition's next record will get (high-water mark).",
      (p) => p.log.nextOffset,
    );
    this.#partitionGauge(
      prom,
      registry,
      METRIC_NAMES.partitionDamaged,
      "1 if the partition's log failed its checks (it serves offsets up to the damage, refuses " +
        "later ones and appends until repaired: gregorctl topic repair), else 0.",
      (p) => (p.log.damage == null ? 0 : 1),
    );
    new Gauge({
      name: METRIC_NAMES.topicsUnloadable,
      help:
        "Topics whose files were found at start but could not be loaded (see the broker's log).",
      registers,
      collect(this: Gauge) {
        this.set(broker()?.unloadableTopics().size ?? 0);
      },
    });
    this.#partitionGauge(
      prom,
      registry,
      METRIC_NAMES.subscriptions,
      "Live subscriptions on a partition.",
      (p) => p.subscriptions.size,
    );
    this.#partitionGauge(
      prom,
      registry,
      METRIC_NAMES.consumerLag,
      "Records not yet acknowledged, summed over the partition's live subscriptions.",
      (p) => {
        let lag = 0;
        for (const s of p.subscriptions) {
          lag += Math.max(0, p.log.nextOffset - Math.max(s.ackedOffset + 1, p.log.logStartOffset));
        }
        return lag;
      },
    );
    new Gauge({
      name: METRIC_NAMES.clusterMembers,
      help: "Cluster members this node knows, by gossip state (absent outside a cluster).",
      labelNames: ["state"] as const,
      registers,
      collect(this: Gauge<"state">) {
        this.reset();
        const all = broker()?.membership?.();
        if (all === undefined) return;
        for (const state of MEMBER_STATES) this.set({ state }, 0);
        for (const m of all) this.inc({ state: m.state });
      },
    });
    this.#groupGauges(prom, registers, broker);
    this.#raftGauges(prom, registers);
    return registry;
  }

  #groupGauges(
    { Gauge }: typeof import("prom-client"),
    registers: Registry[],
    broker: () => Broker | null,
  ): void {
    new Gauge({
      name: METRIC_NAMES.groupLag,
      help: "Records after a consumer group's committed offset, per partition it committed.",
      labelNames: ["group", "topic", "partition"] as const,
      registers,
      collect(this: Gauge<"group" | "topic" | "partition">) {
        this.reset();
        for (const o of broker()?.groups.allOffsets() ?? []) {
          if (o.highWatermark < 0) continue;
          this.set(
            { group: o.group, topic: o.topic, partition: String(o.partition) },
            Math.max(0, o.highWatermark - o.offset),
          );
        }
      },
    });
    new Gauge({
      name: METRIC_NAMES.groupMembers,
      help: "Live members of each consumer group.",
      labelNames: ["group"] as const,
      registers,
      collect(this: Gauge<"group">) {
        this.reset();
        for (const g of broker()?.groups.list().groups ?? []) {
          this.set({ group: g.group }, g.members);
        }
      },
    });
    new Gauge({
      name: METRIC_NAMES.groupGeneration,
      help: "Each live consumer group's generation; it rises with every rebalance.",
      labelNames: ["group"] as const,
      registers,
      collect(this: Gauge<"group">) {
        this.reset();
        for (const g of broker()?.groups.list().groups ?? []) {
          if (g.members > 0) this.set({ group: g.group }, g.generation);
        }
      },
    });
  }

  /** Lets scrapes read the Raft gauges of a replicating node. */
  attachCluster(cluster: ClusterNode): void {
    this.#cluster = cluster;
  }

  #raftGauges({ Counter, Gauge }: typeof import("prom-client"), registers: Registry[]): void {
    const cluster = (): ClusterNode | null => this.#cluster;
    const perGroup = (name: string, help: string, value: (g: RaftGroup) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["group"] as const,
        registers,
        collect(this: Gauge<"group">) {
          this.reset();
          for (const g of cluster()?.groups() ?? []) this.set({ group: g.group }, value(g));
        },
      });
    perGroup(METRIC_NAMES.raftTerm, "Each Raft group's current term on this node.", (g) => g.term);
    perGroup(
      METRIC_NAMES.raftLeader,
      "1 if this node leads the Raft group, else 0.",
      (g) => (g.isLeader ? 1 : 0),
    );
    perGroup(
      METRIC_NAMES.raftCommitIndex,
      "The Raft group's commit index as this node knows it.",
      (g) => g.node.commitIndex,
    );
    perGroup(
      METRIC_NAMES.raftAppliedIndex,
      "The index through which this node applied the Raft group's entries.",
      (g) => g.node.appliedIndex,
    );
    let counted = 0;
    new Counter({
      name: METRIC_NAMES.raftLeaderChanges,
      help: "Changes of leader or term seen by this node's Raft groups.",
      registers,
      collect(this: Counter) {
        const now = cluster()?.stats.leaderChanges ?? counted;
        if (now > counted) this.inc(now - counted);
        counted = now;
      },
    });
    let repairs = 0;
    new Counter({
      name: METRIC_NAMES.replicaRepairs,
      help: "Damaged replica logs this node cut at the damage and filled again from its peers.",
      registers,
      collect(this: Counter) {
        const now = cluster()?.stats.replicaRepairs ?? repairs;
        if (now > repairs) this.inc(now - repairs);
        repairs = now;
      },
    });
    const meta = (name: string, help: string, value: (f: MetaTolerance) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect(this: Gauge) {
          const c = cluster();
          if (c !== null) this.set(value(c.metaFaultTolerance()));
        },
      });
    meta(METRIC_NAMES.metaVoters, "Voters of the metadata Raft group.", (f) => f.voters);
    meta(
      METRIC_NAMES.metaVotersAlive,
      "Voters of the metadata Raft group alive as this node sees them.",
      (f) => f.votersAlive,
    );
    meta(
      METRIC_NAMES.metaNodesLosable,
      "Voters the metadata group can lose and keep a quorum (0: one more failure stops it).",
      (f) => Math.max(0, f.canLose),
    );
    new Gauge({
      name: METRIC_NAMES.underReplicated,
      help: "Partitions this node leads with a replica that is not alive.",
      registers,
      collect(this: Gauge) {
        const c = cluster();
        if (c !== null) this.set(c.underReplicated());
      },
    });
    new Gauge({
      name: METRIC_NAMES.partitionsMoving,
      help: "Partitions whose replicas the cluster is moving (every node reports the same count).",
      registers,
      collect(this: Gauge) {
        const c = cluster();
        if (c !== null) this.set(c.partitionsMoving());
      },
    });
  }

  /** Lets scrapes read gauges from `broker` and feeds its events into the counters. */
  attach(broker: Broker): void {
    this.#broker = broker;
    broker.observer = this.observer;
  }

  /** The exposition text for `/metrics`. */
  async scrape(): Promise<string> {
    const registry = await this.registry();
    if (registry.contentType !== PROMETHEUS_CONTENT_TYPE) {
      throw new Error(`prom-client writes ${registry.contentType}, not ${PROMETHEUS_CONTENT_TYPE}`);
    }
    return await registry.metrics();
  }

  /** The Content-Type of `scrape()`'s text (known before prom-client is loaded). */
  get contentType(): string {
    return PROMETHEUS_CONTENT_TYPE;
  }

  #partitionGauge(
    { Gauge }: typeof import("prom-client"),
    registry: Registry,
    name: string,
    help: string,
    value: (p: Partition) => number | null,
  ): void {
    const broker = (): Broker | null => this.#broker;
    new Gauge({
      name,
      help,
      labelNames: ["topic", "partition"] as const,
      registers: [registry],
      collect(this: Gauge<"topic" | "partition">) {
        this.reset();
        for (const t of broker()?.topics() ?? []) {
          for (const p of t.partitions) {
            const v = value(p);
            if (v !== null) this.set({ topic: t.name, partition: String(p.id) }, v);
          }
        }
      },
    });
  }
}
