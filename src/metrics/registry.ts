// The broker's Prometheus metrics: one prom-client Registry per broker (never the global default
// one: many brokers share an isolate in tests and the simulator). Counters and histograms are fed by
// the broker as it works (BrokerObserver); gauges are read from the broker at scrape time.

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Broker } from "../broker/broker.ts";
import type { BrokerObserver } from "../broker/observer.ts";
import type { Partition } from "../broker/topic.ts";
import type { MemberState } from "../cluster/gossip/mod.ts";
import type { ClusterNode } from "../cluster/cluster.ts";
import type { RaftGroup } from "../cluster/raft/shell.ts";
import { FileLog } from "../storage/file_log.ts";

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
} as const;

/** A broker's metrics. Attach it with `broker.observer = metrics.observer`. */
export class BrokerMetrics {
  /** The registry `/metrics` serves. */
  readonly registry: Registry = new Registry();
  /** Feeds the counters and histograms; give it to `Broker.observer`. */
  readonly observer: BrokerObserver;
  #broker: Broker | null = null;
  #cluster: ClusterNode | null = null;

  constructor() {
    const registers = [this.registry];
    const requests = new Counter({
      name: METRIC_NAMES.requests,
      help: "Requests answered, by opcode name and result (OK or the error code's name).",
      labelNames: ["op", "code"] as const,
      registers,
    });
    const messagesIn = new Counter({
      name: METRIC_NAMES.messagesIn,
      help: "Records stored by produce requests, by topic.",
      labelNames: ["topic"] as const,
      registers,
    });
    const bytesIn = new Counter({
      name: METRIC_NAMES.bytesIn,
      help: "Record batch bytes stored by produce requests, by topic.",
      labelNames: ["topic"] as const,
      registers,
    });
    const messagesOut = new Counter({
      name: METRIC_NAMES.messagesOut,
      help: "Records pushed to subscribers (redeliveries included), by topic.",
      labelNames: ["topic"] as const,
      registers,
    });
    const bytesOut = new Counter({
      name: METRIC_NAMES.bytesOut,
      help: "Record batch bytes pushed to subscribers (redeliveries included), by topic.",
      labelNames: ["topic"] as const,
      registers,
    });
    const produceDuration = new Histogram({
      name: METRIC_NAMES.produceDuration,
      help: "Time from a produce request's arrival until its batch is stored as its fsync " +
        "policy requires.",
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    const fsyncDuration = new Histogram({
      name: METRIC_NAMES.fsyncDuration,
      help: "Duration of one fsync of a partition's active segment.",
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    const fsyncBatches = new Histogram({
      name: METRIC_NAMES.fsyncBatches,
      help: "Record batches made durable by one fsync (group commit).",
      buckets: BATCHES_BUCKETS,
      registers,
    });
    this.observer = {
      request: (op, code) => requests.inc({ op, code }),
      produced: (topic, records, bytes, seconds) => {
        messagesIn.inc({ topic }, records);
        bytesIn.inc({ topic }, bytes);
        produceDuration.observe(seconds);
      },
      delivered: (topic, records, bytes) => {
        messagesOut.inc({ topic }, records);
        bytesOut.inc({ topic }, bytes);
      },
      synced: (seconds, batches) => {
        fsyncDuration.observe(seconds);
        fsyncBatches.observe(batches);
      },
    };

    const broker = (): Broker | null => this.#broker;
    new Gauge({
      name: METRIC_NAMES.connectionsOpen,
      help: "Open client connections.",
      registers,
      collect(this: Gauge) {
        this.set(broker()?.connectionCount ?? 0);
      },
    });
    this.#partitionGauge(
      METRIC_NAMES.logSize,
      "Bytes stored in a partition's log.",
      (p) => p.log.sizeBytes,
    );
    this.#partitionGauge(
      METRIC_NAMES.logSegments,
      "Segment files of a disk partition.",
      (p) => (p.log instanceof FileLog ? p.log.segmentCount : null),
    );
    this.#partitionGauge(
      METRIC_NAMES.logEndOffset,
      "The offset the partition's next record will get (high-water mark).",
      (p) => p.log.nextOffset,
    );
    this.#partitionGauge(
      METRIC_NAMES.subscriptions,
      "Live subscriptions on a partition.",
      (p) => p.subscriptions.size,
    );
    this.#partitionGauge(
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
    this.#groupGauges(registers, broker);
    this.#raftGauges(registers);
  }

  #groupGauges(registers: Registry[], broker: () => Broker | null): void {
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

  #raftGauges(registers: Registry[]): void {
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
    new Gauge({
      name: METRIC_NAMES.underReplicated,
      help: "Partitions this node leads with a replica that is not alive.",
      registers,
      collect(this: Gauge) {
        const c = cluster();
        if (c !== null) this.set(c.underReplicated());
      },
    });
  }

  /** Lets scrapes read gauges from `broker` and feeds its events into the counters. */
  attach(broker: Broker): void {
    this.#broker = broker;
    broker.observer = this.observer;
  }

  /** The exposition text for `/metrics`. */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** The Content-Type of `scrape()`'s text. */
  get contentType(): string {
    return this.registry.contentType;
  }

  #partitionGauge(
    name: string,
    help: string,
    value: (p: Partition) => number | null,
  ): void {
    const broker = (): Broker | null => this.#broker;
    new Gauge({
      name,
      help,
      labelNames: ["topic", "partition"] as const,
      registers: [this.registry],
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
