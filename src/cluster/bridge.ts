// The control plane of a broker in a replicating cluster: topics are decided by the replicated
// metadata, appends run through the partition's Raft group, reads only where a replica is held.
// Requests that must run where a Raft group leads are served here when this node leads, and
// otherwise forwarded over an ordinary client connection to the node that does. A forwarded request
// is never forwarded again, so a stale view costs one NOT_LEADER answer, not a loop; clients retry
// it (idempotently).

import type { Env } from "../io/types.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { BatchHeader } from "../protocol/batch.ts";
import type {
  AlterTopicRequest,
  CreatePartitionsRequest,
  CreateTopicRequest,
  DurableCommitRequest,
  DurableFetchRequest,
  DurableFetchResponse,
  InitProducerIdResponse,
  MetadataRequest,
  MetadataResponse,
  OpName,
  ProduceRequest,
  ProduceResponse,
  RepairPartitionsResponse,
} from "../protocol/messages.ts";
import {
  type ControlPlane,
  FORWARD_CLIENT_ID,
  type PartitionReplication,
  type PlaneHost,
} from "../broker/control_plane.ts";
import { ALTERABLE_TOPIC_CONFIGS } from "../broker/broker.ts";
import { checkTopicName, type Topic } from "../broker/topic.ts";
import { effectiveConfigs } from "../broker/topic_store.ts";
import { type Client, connectWith } from "../client/client.ts";
import type { Gossip } from "./gossip/mod.ts";
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
/** How long a forwarded request may take, ms. */
const FORWARD_TIMEOUT_MS = 10_000;
/** How long forwarding waits to connect to a leader, ms; past it the client is told to retry. */
const FORWARD_CONNECT_TIMEOUT_MS = 2_000;
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
  #attached: { node: ClusterNode; gossip: Gossip } | null = null;
  #host: PlaneHost | null = null;
  readonly #clients = new Map<string, { key: string; client: Promise<Client> }>();
  #ids: { next: number; end: number; term: number } | null = null;
  #allocating: Promise<number> | null = null;
  #lastBlock = -1;
  /** Durable subscriptions' acks taken here, on their way into the metadata. */
  readonly #durables = new DurableCommits((offsets) => this.commitDurables({ offsets }, false));

  constructor(env: Env) {
    this.#env = env;
  }

  bind(host: PlaneHost): void {
    if (this.#host !== null) throw new Error("A control plane serves one broker");
    this.#host = host;
  }

  /** Starts serving through `node`, once it runs. */
  attach(node: ClusterNode, gossip: Gossip): void {
    this.#attached = { node, gossip };
  }

  get #node(): ClusterNode {
    if (this.#attached === null) {
      throw new GregorError(
        ErrorCode.NOT_LEADER,
        "This node has not joined its cluster yet; retry",
      );
    }
    return this.#attached.node;
  }

  get #gossip(): Gossip {
    if (this.#attached === null) {
      throw new GregorError(
        ErrorCode.NOT_LEADER,
        "This node has not joined its cluster yet; retry",
      );
    }
    return this.#attached.gossip;
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

  async commitDurables(req: DurableCommitRequest, forwarded: boolean): Promise<void> {
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
      req,
      forwarded,
    );
  }

  async durableOffset(req: DurableFetchRequest, forwarded: boolean): Promise<number> {
    const key = durableKey(req.topic, req.partition, req.name);
    const r = await this.atCoordinator<DurableFetchResponse>(
      "DURABLE_FETCH",
      req,
      forwarded,
      () => ({ offset: this.#node.meta.durables.get(key) ?? -1 }),
    );
    return r.offset;
  }

  async resumeOffset(topic: string, partition: number, name: string): Promise<number> {
    // Acked on any node: the metadata's leader knows.
    if (name.includes("\u0000")) {
      throw new GregorError(ErrorCode.INVALID_REQUEST, `A durable name may not contain NUL`);
    }
    return await this.durableOffset({ topic, partition, name }, false);
  }

  /** Through the metadata group; resolves once this node knows the topic. */
  async createTopic(req: CreateTopicRequest, forwarded: boolean): Promise<Topic> {
    const b = this.#b;
    b.checkPartitionCount(req.partitions);
    b.checkPartitionsTotal(req.partitions, `create topic ${req.name}`);
    const configs = effectiveConfigs(req.configs, b.opts);
    await this.#atController(
      () => this.#node.createTopic(req.name, req.partitions, configs),
      "CREATE_TOPIC",
      { ...req, configs },
      forwarded,
    );
    for (let waited = 0; waited < TOPIC_APPLY_WAIT_MS; waited += TOPIC_APPLY_POLL_MS) {
      const t = b.knownTopic(req.name);
      if (t !== undefined) return t;
      await this.#env.clock.sleep(TOPIC_APPLY_POLL_MS);
    }
    throw new GregorError(
      ErrorCode.TIMEOUT,
      `Topic ${req.name} was created but this node has not learnt of it yet; retry`,
    );
  }

  deleteTopic(name: string, forwarded: boolean): Promise<void> {
    checkTopicName(name);
    return this.#atController(
      () => this.#node.deleteTopic(name),
      "DELETE_TOPIC",
      { name },
      forwarded,
    );
  }

  createPartitions(req: CreatePartitionsRequest, forwarded: boolean): Promise<void> {
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
      req,
      forwarded,
    );
  }

  alterTopic(req: AlterTopicRequest, forwarded: boolean): Promise<void> {
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
      req,
      forwarded,
    );
  }

  async initProducerId(forwarded: boolean): Promise<InitProducerIdResponse> {
    const g = this.#node.metaGroup;
    if (g !== null && g.isLeader) {
      return { producerId: await this.#nextProducerId(g.term), producerEpoch: 0 };
    }
    return await this.#forward(this.#node.controller, "INIT_PRODUCER_ID", {}, forwarded);
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

  async append(
    req: ProduceRequest,
    header: BatchHeader,
    forwarded: boolean,
  ): Promise<ProduceResponse> {
    const startMs = this.#env.clock.now();
    const answer = await this.#produce(req, header, forwarded);
    const seconds = (this.#env.clock.now() - startMs) / 1000;
    this.#b.observer.produced(req.topic, header.recordCount, req.batch!.length, seconds);
    return answer;
  }

  async #produce(
    req: ProduceRequest,
    header: BatchHeader,
    forwarded: boolean,
  ): Promise<ProduceResponse> {
    const group = this.#node.replica(req.topic, req.partition);
    if (group !== null && group.isLeader) {
      return await this.#node.produce(req.topic, req.partition, req.batch!, header);
    }
    const leader = group?.leaderId ?? this.#leaderFromMetadata(req.topic, req.partition);
    return await this.#forward(leader, "PRODUCE", req, forwarded);
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
    return this.#attached?.node.holds(topic, partition) ?? false;
  }

  /** Only nodes holding a replica serve a partition's reads. */
  checkReadable(topic: string, partition: number): void {
    const node = this.#node;
    if (node.holds(topic, partition)) return;
    const replicas = node.metadata({ topics: [{ name: topic }], autoCreate: 0 }).topics[0]
      ?.partitions[partition]?.replicas.map((r) => r.id);
    if (replicas === undefined) return; // unknown topic or partition: the usual errors follow
    throw new GregorError(
      ErrorCode.NOT_LEADER,
      `This node holds no replica of ${topic}/${partition}; ask one of ${replicas.join(", ")}`,
    );
  }

  replication(topic: string, partition: number): PartitionReplication {
    return this.#node.replication(topic, partition);
  }

  async atCoordinator<R>(
    op: OpName,
    body: object,
    forwarded: boolean,
    local: () => R | Promise<R>,
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
    return await this.#forward<R>(this.#node.controller, op, body, forwarded);
  }

  async #atController<T extends object>(
    local: () => Promise<void>,
    op: OpName,
    body: T,
    forwarded: boolean,
  ): Promise<void> {
    const g = this.#node.metaGroup;
    if (g !== null && g.isLeader) return await local();
    await this.#forward(this.#node.controller, op, body, forwarded);
  }

  /** Sends `body` as `op` to node `to` and returns its answer (or its error). */
  async #forward<T>(to: string | null, op: OpName, body: object, forwarded: boolean): Promise<T> {
    if (forwarded || to === null || to === this.#node.nodeId) {
      throw new GregorError(
        ErrorCode.NOT_LEADER,
        to === null || to === this.#node.nodeId
          ? `No leader is known for this request yet (${op}); retry`
          : `This node does not lead the request (${op}); its leader is ${to}`,
      );
    }
    const client = await this.#client(to);
    try {
      return await client.connection.request<T>(op, body);
    } catch (err) {
      if (err instanceof GregorError) throw err;
      throw new GregorError(
        ErrorCode.TIMEOUT,
        `Forwarding ${op} to ${to} failed (${(err as Error).message}); its outcome is unknown`,
      );
    }
  }

  async #client(nodeId: string): Promise<Client> {
    const m = this.#gossip.member(nodeId);
    if (m === null) {
      throw new GregorError(ErrorCode.NOT_LEADER, `The leader ${nodeId} is not a known member`);
    }
    const key = `${m.host}:${m.clientPort}`;
    const cached = this.#clients.get(nodeId);
    if (cached !== undefined && cached.key === key) return await cached.client;
    if (cached !== undefined) void cached.client.then((c) => c.close()).catch(() => {});
    // Every request waiting on this connection attempt gets the same retriable error if it fails
    // (a raw connection error used to reach the client of the second and later ones as INTERNAL).
    const client = connectWith(this.#env, {
      host: m.host,
      port: m.clientPort,
      clientId: FORWARD_CLIENT_ID,
      requestTimeoutMs: FORWARD_TIMEOUT_MS,
      connectTimeoutMs: FORWARD_CONNECT_TIMEOUT_MS,
      // A dead leader's port refuses: requests waiting to be forwarded fail at once, retriably,
      // rather than wait out the connect timeout while another node is elected.
      refusalEndsDial: true,
    }).catch((err) => {
      if (this.#clients.get(nodeId)?.client === client) this.#clients.delete(nodeId);
      throw new GregorError(
        ErrorCode.NOT_LEADER,
        `Cannot reach ${nodeId} to forward a request: ${(err as Error).message}; ask another node`,
        { cause: err },
      );
    });
    this.#clients.set(nodeId, { key, client });
    return await client;
  }

  /** Closes the forwarding connections. */
  async close(): Promise<void> {
    for (const { client } of this.#clients.values()) {
      await client.then((c) => c.close()).catch(() => {});
    }
    this.#clients.clear();
  }
}
