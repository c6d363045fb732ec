// The control plane of a broker in a replicating cluster: topics are decided by the replicated
// metadata, appends run through the partition's Raft group, reads only where a replica is held.
// Requests that must run where a Raft group leads are served here when this node leads; otherwise
// they are refused with `LedElsewhere`, and the connection they came in on forwards their frame to
// the node that does (forward.ts). A forwarded request is never forwarded again, so a stale view
// costs one NOT_LEADER answer, not a loop; clients retry it (idempotently).

import type { Env } from "../io/types.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { BatchHeader } from "../protocol/batch.ts";
import { Flag, HEADER_BYTES } from "../protocol/frame.ts";
import {
  type AlterTopicRequest,
  type CreatePartitionsRequest,
  type CreateTopicRequest,
  decode,
  type DurableCommitRequest,
  type DurableFetchRequest,
  type DurableFetchResponse,
  encode,
  ERROR_SCHEMA,
  type InitProducerIdResponse,
  type MetadataRequest,
  type MetadataResponse,
  Op,
  type OpName,
  type ProduceRequest,
  type ProduceResponse,
  type ReassignPartitionRequest,
  type RebalanceLeadersRequest,
  type RebalanceLeadersResponse,
  type RepairPartitionsResponse,
  SCHEMAS,
} from "../protocol/messages.ts";
import {
  type ControlPlane,
  type ForwardedRequest,
  LedElsewhere,
  type PartitionReplication,
  type PlaneHost,
  type SecurityChange,
} from "../broker/control_plane.ts";
import { ALTERABLE_TOPIC_CONFIGS } from "../broker/broker.ts";
import { checkTopicName, type Topic } from "../broker/topic.ts";
import { effectiveConfigs } from "../broker/topic_store.ts";
import type { Forwarder } from "./forward.ts";
import type { ClusterNode } from "./cluster.ts";
import { DURABLE_COMMIT_ENTRIES_MAX, DurableCommits } from "./durable_offsets.ts";
import { durableKey } from "../broker/subscription.ts";

/** Producer ids a controller reserves at a time. */
export const PRODUCER_ID_BLOCK = 1000;
/** Requests at the controller that answer with committed offsets. */
const READS_OFFSETS: ReadonlySet<OpName> = new Set([
  "OFFSET_FETCH",
  "DESCRIBE_GROUP",
  "DURABLE_FETCH",
]);
/** Replicas a REASSIGN_PARTITION may name at most (more than any cluster has nodes to place). */
const REASSIGN_REPLICAS_MAX = 64;
/** The client id of requests a node sends another on its own behalf (not a client's). */
const OWN_CLIENT_ID = "gregormq-node";
/** How long a node waits to learn of a topic it just created, ms. */
const TOPIC_APPLY_WAIT_MS = 10_000;
/** How often it looks for the topic meanwhile, ms. */
const TOPIC_APPLY_POLL_MS = 10;

/**
 * The control plane over a ClusterNode. It exists before the node does (the broker is given it as
 * it opens, and the node needs the broker): until `attach`, requests are refused as NOT_LEADER.
 */
export class ClusterBridge implements ControlPlane {
  readonly #env: Env;
  #attached: { node: ClusterNode; forwarder: Forwarder } | null = null;
  #host: PlaneHost | null = null;
  #ids: { next: number; end: number; term: number } | null = null;
  #allocating: Promise<number> | null = null;
  #lastBlock = -1;
  /** Durable subscriptions' acks taken here, on their way into the metadata. */
  readonly #durables = new DurableCommits((offsets) => this.#commitDurables({ offsets }, true));

  constructor(env: Env) {
    this.#env = env;
  }

  bind(host: PlaneHost): void {
    if (this.#host !== null) throw new Error("A control plane serves one broker");
    this.#host = host;
  }

  /** Starts serving through `node`, once it runs, forwarding with `forwarder`. */
  attach(node: ClusterNode, forwarder: Forwarder): void {
    this.#attached = { node, forwarder };
  }

  get #node(): ClusterNode {
    return this.#joined().node;
  }

  get #forwarder(): Forwarder {
    return this.#joined().forwarder;
  }

  #joined(): { node: ClusterNode; forwarder: Forwarder } {
    if (this.#attached === null) {
      throw new GregorError(
        ErrorCode.NOT_LEADER,
        "This node has not joined its cluster yet; retry",
      );
    }
    return this.#attached;
  }

  get #b(): PlaneHost {
    if (this.#host === null) throw new Error("The control plane is not bound to a broker");
    return this.#host;
  }

  readonly endsExact = false;

  durableAcked(key: string, offset: number): void {
    if (this.#attached === null) return;
    const incarnation = this.#node.servedIncarnation(key.slice(0, key.indexOf("\u0000")));
    // A topic no longer served here was deleted: its acks have nowhere to go.
    if (incarnation !== undefined) this.#durables.acked(key, offset, incarnation);
  }

  flushDurables(): Promise<void> {
    return this.#durables.flush();
  }

  /** On the controller, through the metadata group; from any other node, forwarded there. */
  async changeSecurity(change: SecurityChange, op: OpName): Promise<boolean> {
    const g = this.#node.metaGroup;
    if (g !== null && g.isLeader) return await this.#node.propose(change) === 1;
    throw this.#elsewhere(this.#node.controller, op);
  }

  commitDurables(req: DurableCommitRequest): Promise<void> {
    return this.#commitDurables(req, false);
  }

  /** `ask`: sent on this node's own behalf (its acks), not a client's frame to forward. */
  async #commitDurables(req: DurableCommitRequest, ask: boolean): Promise<void> {
    if (req.offsets.length > DURABLE_COMMIT_ENTRIES_MAX) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `A durable commit carries at most ${DURABLE_COMMIT_ENTRIES_MAX} offsets, not ${req.offsets.length}`,
      );
    }
    await this.#atController(
      async () => {
        const refused = await this.#node.propose({
          op: "commitDurables",
          offsets: req.offsets.map((
            o,
          ) => [durableKey(o.topic, o.partition, o.name), o.offset, o.incarnation]),
        }) as number;
        if (refused > 0) {
          throw new GregorError(
            ErrorCode.LIMIT_EXCEEDED,
            `${refused} new durable subscriptions were not recorded: the cluster holds its ` +
              `maximum of durable subscriptions`,
          );
        }
      },
      "DURABLE_COMMIT",
      ask ? (to) => this.#ask(to, "DURABLE_COMMIT", req) : undefined,
    );
  }

  durableOffset(req: DurableFetchRequest): Promise<number> {
    return this.#durableOffset(req, false);
  }

  async #durableOffset(req: DurableFetchRequest, ask: boolean): Promise<number> {
    const key = durableKey(req.topic, req.partition, req.name);
    const r = await this.#atCoordinator<DurableFetchResponse>(
      "DURABLE_FETCH",
      () => ({ offset: this.#node.meta.durables.get(key) ?? -1 }),
      ask ? (to) => this.#ask<DurableFetchResponse>(to, "DURABLE_FETCH", req) : undefined,
    );
    return r.offset;
  }

  async resumeOffset(topic: string, partition: number, name: string): Promise<number> {
    // Acked on any node: the metadata's leader knows.
    if (name.includes("\u0000")) {
      throw new GregorError(ErrorCode.INVALID_REQUEST, `A durable name may not contain NUL`);
    }
    // Asked on the subscriber's behalf: the SUBSCRIBE itself is served here.
    return await this.#durableOffset({ topic, partition, name }, true);
  }

  createTopic(req: CreateTopicRequest): Promise<Topic> {
    return this.#createTopic(req, false);
  }

  autoCreateTopic(req: CreateTopicRequest): Promise<Topic> {
    return this.#createTopic(req, true);
  }

  /**
   * Through the metadata group; resolves once this node knows the topic. `ask`: on this node's
   * own behalf (auto-creation), not a client's frame to forward.
   */
  async #createTopic(req: CreateTopicRequest, ask: boolean): Promise<Topic> {
    const b = this.#b;
    b.checkPartitionCount(req.partitions);
    b.checkPartitionsTotal(req.partitions, `create topic ${req.name}`);
    const configs = effectiveConfigs(req.configs, b.opts);
    await this.#atController(
      () => this.#node.createTopic(req.name, req.partitions, configs),
      "CREATE_TOPIC",
      ask ? (to) => this.#ask(to, "CREATE_TOPIC", { ...req, configs }) : undefined,
      () => this.#learnt(req.name),
    );
    return await this.#learnt(req.name);
  }

  /** The topic `name` once this node has applied its creation; TIMEOUT if that takes too long. */
  async #learnt(name: string): Promise<Topic> {
    const b = this.#b;
    for (let waited = 0; waited < TOPIC_APPLY_WAIT_MS; waited += TOPIC_APPLY_POLL_MS) {
      const t = b.knownTopic(name);
      if (t !== undefined) return t;
      await this.#env.clock.sleep(TOPIC_APPLY_POLL_MS);
    }
    throw new GregorError(
      ErrorCode.TIMEOUT,
      `Topic ${name} was created but this node has not learnt of it yet; retry`,
    );
  }

  deleteTopic(name: string): Promise<void> {
    checkTopicName(name);
    return this.#atController(
      () => this.#node.deleteTopic(name),
      "DELETE_TOPIC",
    );
  }

  createPartitions(req: CreatePartitionsRequest): Promise<void> {
    const b = this.#b;
    if (!Number.isInteger(req.count) || req.count > b.opts.partitionsMax) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `A topic has at most ${b.opts.partitionsMax} partitions, not ${req.count}`,
      );
    }
    const have = b.knownTopic(req.name)?.partitions.length ?? 0;
    b.checkPartitionsTotal(req.count - have, `grow topic ${req.name} to ${req.count}`);
    return this.#atController(
      async () => {
        const t = this.#node.meta.topics.get(req.name);
        if (t !== undefined && req.count <= t.replicas.length) {
          throw new GregorError(
            ErrorCode.INVALID_REQUEST,
            `Topic ${req.name} has ${t.replicas.length} partitions; it can only grow, not to ${req.count}`,
          );
        }
        await this.#node.addPartitions(req.name, req.count);
      },
      "CREATE_PARTITIONS",
    );
  }

  alterTopic(req: AlterTopicRequest): Promise<void> {
    for (const key of Object.keys(req.configs)) {
      if (!ALTERABLE_TOPIC_CONFIGS.includes(key)) {
        throw new GregorError(ErrorCode.INVALID_REQUEST, `Topic config ${key} cannot be changed`);
      }
    }
    const b = this.#b;
    effectiveConfigs({ ...b.knownTopic(req.name)?.configs, ...req.configs }, b.opts);
    return this.#atController(
      async () => void await this.#node.propose({ op: "alterTopic", ...req }),
      "ALTER_TOPIC",
    );
  }

  async initProducerId(): Promise<InitProducerIdResponse> {
    const g = this.#node.metaGroup;
    if (g !== null && g.isLeader) {
      return { producerId: await this.#nextProducerId(g.term), producerEpoch: 0 };
    }
    throw this.#elsewhere(this.#node.controller, "INIT_PRODUCER_ID");
  }

  /** Hands out ids from a block the metadata group reserved for this leader's term. */
  async #nextProducerId(term: number): Promise<number> {
    for (;;) {
      const ids = this.#ids;
      if (ids !== null && ids.term === term && ids.next < ids.end) return ids.next++;
      this.#allocating ??= this.#node.allocateProducerIds(PRODUCER_ID_BLOCK).finally(() =>
        this.#allocating = null
      );
      const first = await this.#allocating;
      // Each block is installed once, whoever awaited its allocation: a block installed twice
      // would hand its ids out twice.
      if (first !== this.#lastBlock) {
        this.#lastBlock = first;
        this.#ids = { next: first, end: first + PRODUCER_ID_BLOCK, term };
      }
    }
  }

  repairPartitions(): Promise<RepairPartitionsResponse> {
    return Promise.reject(
      new GregorError(
        ErrorCode.INVALID_REQUEST,
        "In a cluster a damaged replica is repaired from its peers, not cut by REPAIR_PARTITIONS",
      ),
    );
  }

  /** On the controller, which checks the replicas against the live nodes and records the move. */
  reassignPartition(req: ReassignPartitionRequest): Promise<void> {
    if (req.replicas.length > REASSIGN_REPLICAS_MAX) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `A partition has at most ${REASSIGN_REPLICAS_MAX} replicas, not ${req.replicas.length}`,
      );
    }
    return this.#atController(
      () => this.#node.reassignPartition(req.name, req.partition, req.replicas.map((r) => r.id)),
      "REASSIGN_PARTITION",
    );
  }

  /**
   * Each node hands the partitions it leads to their preferred replicas: this one at once, and,
   * unless asked for itself only, every other live node asked in parallel (a node that cannot be
   * reached is named in `unreached`; it balances at its next interval anyway).
   */
  async rebalanceLeaders(req: RebalanceLeadersRequest): Promise<RebalanceLeadersResponse> {
    if (req.thisNodeOnly !== 0 && req.thisNodeOnly !== 1) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `REBALANCE_LEADERS thisNodeOnly is 0 (every node) or 1 (this one), not ${req.thisNodeOnly}`,
      );
    }
    const node = this.#node;
    const here = node.balanceLeadersOnce();
    const answer: RebalanceLeadersResponse = { ...here, unreached: [] };
    if (req.thisNodeOnly === 1) return answer;
    const others = node.liveMembers().filter((id) => id !== node.nodeId);
    const asked = await Promise.allSettled(
      others.map((id) =>
        this.#ask<RebalanceLeadersResponse>(id, "REBALANCE_LEADERS", { thisNodeOnly: 1 })
      ),
    );
    for (const [i, r] of asked.entries()) {
      if (r.status === "fulfilled") {
        answer.moved += r.value.moved;
        answer.waiting += r.value.waiting;
      } else answer.unreached.push({ id: others[i]! });
    }
    return answer;
  }

  async append(req: ProduceRequest, header: BatchHeader): Promise<ProduceResponse> {
    const startMs = this.#env.clock.now();
    const answer = await this.#produce(req, header);
    const seconds = (this.#env.clock.now() - startMs) / 1000;
    this.#b.observer.produced(req.topic, header.recordCount, req.batch!.length, seconds);
    return answer;
  }

  async #produce(req: ProduceRequest, header: BatchHeader): Promise<ProduceResponse> {
    const group = this.#node.replica(req.topic, req.partition);
    if (group !== null && group.isLeader) {
      return await this.#node.produce(req.topic, req.partition, req.batch!, header);
    }
    const leader = group?.leaderId ?? this.#leaderFromMetadata(req.topic, req.partition);
    throw this.#elsewhere(leader, "PRODUCE");
  }

  #leaderFromMetadata(topic: string, partition: number): string | null {
    const t = this.#node.metadata({ topics: [{ name: topic }], autoCreate: 0 }).topics[0];
    if (t === undefined || t.error !== 0) {
      // Only the controller knows for sure; this node may not have caught up with it yet.
      const g = this.#node.metaGroup;
      if (g === null || !g.isLeader) {
        throw new GregorError(
          ErrorCode.NOT_LEADER,
          `This node does not know topic ${topic} (yet); ask again or ask the controller`,
        );
      }
      throw new GregorError(t?.error ?? ErrorCode.UNKNOWN_TOPIC, `Topic ${topic} does not exist`);
    }
    const p = t.partitions[partition];
    if (p === undefined) {
      throw new GregorError(
        ErrorCode.UNKNOWN_PARTITION,
        `Topic ${topic} has no partition ${partition} (it has ${t.partitions.length})`,
      );
    }
    return p.leader === "" ? null : p.leader;
  }

  async metadata(req: MetadataRequest): Promise<MetadataResponse> {
    const b = this.#b;
    if (req.autoCreate === 1 && b.opts.autoCreateTopics) {
      for (const { name } of req.topics) {
        if (b.knownTopic(name) === undefined) {
          await (b.topic(name, true) as Promise<Topic>).catch(() => {});
        }
      }
    }
    return this.#node.metadata(req);
  }

  holds(topic: string, partition: number): boolean {
    return this.#attached?.node.servesReads(topic, partition) ?? false;
  }

  /**
   * Only nodes holding a replica that keeps up serve a partition's reads (Cluster.holds); others
   * refuse with NOT_LEADER, naming where to go.
   */
  checkReadable(topic: string, partition: number): void {
    const node = this.#node;
    if (node.servesReads(topic, partition)) return;
    const p = node.metadata({ topics: [{ name: topic }], autoCreate: 0 }).topics[0]
      ?.partitions[partition];
    if (p === undefined) return; // unknown topic or partition: the usual errors follow
    const replicas = p.replicas.map((r) => r.id);
    const leader = p.leader === "" ? "its leader (none known here yet)" : `the leader ${p.leader}`;
    throw new GregorError(
      ErrorCode.NOT_LEADER,
      replicas.includes(node.nodeId)
        ? `This node's replica of ${topic}/${partition} is not caught up (restarting, restoring, or out of touch with its leader); ask ${leader}`
        : `This node holds no replica of ${topic}/${partition}; ask one of ${replicas.join(", ")}`,
    );
  }

  replication(topic: string, partition: number): PartitionReplication {
    return this.#node.replication(topic, partition);
  }

  atCoordinator<R>(op: OpName, local: () => R | Promise<R>): Promise<R> {
    return this.#atCoordinator(op, local);
  }

  /**
   * Runs `local` if this node coordinates groups; else `remote` with the coordinator's id if
   * given, or refuses with `LedElsewhere` so the request is forwarded there.
   */
  async #atCoordinator<R>(
    op: OpName,
    local: () => R | Promise<R>,
    remote?: (to: string) => Promise<R>,
  ): Promise<R> {
    // The metadata group's leader coordinates every group: it applies their commits, and it
    // answers only once it has applied everything its predecessors committed (a read from a
    // leader elected a moment ago could otherwise show an offset older than one acknowledged).
    const g = this.#node.metaGroup;
    if (g !== null && g.isLeader) {
      if (!g.readable) {
        throw new GregorError(
          ErrorCode.NOT_LEADER,
          `The group coordinator was just elected and is catching up (${op}); retry`,
        );
      }
      // A leader cut off from the others may not know yet that another leads now and has
      // taken newer commits: a read of offsets first commits a barrier, which only a leader
      // still in office can. (Heartbeats and commits need none: commits go through the log.)
      if (READS_OFFSETS.has(op)) await this.#node.propose({ op: "barrier" });
      return await local();
    }
    const elsewhere = this.#elsewhere(this.#node.controller, op);
    if (remote === undefined) throw elsewhere;
    return await remote(elsewhere.nodeId);
  }

  /**
   * Runs `local` if this node leads the metadata group; else `remote` with the leader's id if
   * given, or refuses with `LedElsewhere` (with `settle` for after the leader's answer).
   */
  async #atController(
    local: () => Promise<void>,
    op: OpName,
    remote?: (to: string) => Promise<unknown>,
    settle?: () => Promise<unknown>,
  ): Promise<void> {
    const g = this.#node.metaGroup;
    if (g !== null && g.isLeader) return await local();
    const elsewhere = this.#elsewhere(this.#node.controller, op, settle);
    if (remote === undefined) throw elsewhere;
    await remote(elsewhere.nodeId);
  }

  /** Where a request this node does not lead runs: NOT_LEADER if no other node is known to. */
  #elsewhere(to: string | null, op: OpName, settle?: () => Promise<unknown>): LedElsewhere {
    if (to === null || to === this.#node.nodeId) {
      throw new GregorError(
        ErrorCode.NOT_LEADER,
        `No leader is known for this request yet (${op}); retry`,
      );
    }
    return new LedElsewhere(to, op, settle);
  }

  forward(to: string, req: ForwardedRequest): Promise<Uint8Array | null> {
    return this.#forwarder.forward(to, req);
  }

  /** Sends `body` as `op` to node `to` on this node's own behalf; returns its answer or throws it. */
  async #ask<T>(to: string, op: OpName, body: object): Promise<T> {
    const answer = await this.#forwarder.forward(to, {
      opcode: Op[op],
      payload: encode(SCHEMAS[op].request, body),
      clientId: OWN_CLIENT_ID,
      principal: "",
    });
    if (answer === null) {
      throw new GregorError(ErrorCode.INTERNAL, `${op} sent to ${to} was answered with nothing`);
    }
    const flags = answer[3]!;
    const payload = answer.subarray(HEADER_BYTES);
    if ((flags & Flag.ERROR) !== 0) {
      const e = decode<{ code: number; message: string }>(ERROR_SCHEMA, payload, "ERROR");
      throw new GregorError(e.code, `${to}: ${e.message}`);
    }
    return decode<T>(SCHEMAS[op].response, payload, op);
  }

  /** Closes the forwarding connections. */
  close(): Promise<void> {
    this.#attached?.forwarder.close();
    return Promise.resolve();
  }
}
