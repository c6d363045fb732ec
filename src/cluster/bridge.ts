// The broker's view of the cluster (BrokerCluster): requests that must run where a Raft group
// leads are served here when this node leads, and otherwise forwarded over an ordinary client
// connection to the node that does. A forwarded request is never forwarded again, so a stale view
// costs one NOT_LEADER answer, not a loop; clients retry it (idempotently).

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
} from "../protocol/messages.ts";
import {
  type BrokerCluster,
  FORWARD_CLIENT_ID,
  type PartitionReplication,
  type SecurityChange,
} from "../broker/cluster_hooks.ts";
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

/** BrokerCluster over a ClusterNode. */
export class ClusterBridge implements BrokerCluster {
  readonly #env: Env;
  readonly #node: ClusterNode;
  readonly #gossip: Gossip;
  readonly #login: { username: string; password: string } | undefined;
  readonly #clients = new Map<string, { key: string; client: Promise<Client> }>();
  #ids: { next: number; end: number; term: number } | null = null;
  #allocating: Promise<number> | null = null;
  #lastBlock = -1;
  /** Durable subscriptions' acks taken here, on their way into the metadata. */
  readonly #durables = new DurableCommits((offsets) => this.commitDurables({ offsets }, false));

  /**
   * @param login The user and password requests are forwarded as, when the nodes require
   * authentication (the cluster's node principal); omitted: none.
   */
  constructor(
    env: Env,
    node: ClusterNode,
    gossip: Gossip,
    login?: { username: string; password: string },
  ) {
    this.#env = env;
    this.#node = node;
    this.#gossip = gossip;
    this.#login = login;
  }

  durableAcked(key: string, offset: number): void {
    const incarnation = this.#node.servedIncarnation(key.slice(0, key.indexOf("\u0000")));
    // A topic no longer served here was deleted: its acks have nowhere to go.
    if (incarnation !== undefined) this.#durables.acked(key, offset, incarnation);
  }

  flushDurables(): Promise<void> {
    return this.#durables.flush();
  }

  async changeSecurity(
    change: SecurityChange,
    forward: { op: OpName; body: object },
    forwarded: boolean,
  ): Promise<boolean> {
    const g = this.#node.metaGroup;
    if (g !== null && g.isLeader) return await this.#node.propose(change) === 1;
    // The controller answers a removal of nothing with INVALID_REQUEST, which comes back here.
    await this.#forward(this.#node.controller, forward.op, forward.body, forwarded);
    return true;
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

  createTopic(req: CreateTopicRequest, forwarded: boolean): Promise<void> {
    return this.#atController(
      () => this.#node.createTopic(req.name, req.partitions, req.configs),
      "CREATE_TOPIC",
      req,
      forwarded,
    );
  }

  deleteTopic(name: string, forwarded: boolean): Promise<void> {
    return this.#atController(
      () => this.#node.deleteTopic(name),
      "DELETE_TOPIC",
      { name },
      forwarded,
    );
  }

  createPartitions(req: CreatePartitionsRequest, forwarded: boolean): Promise<void> {
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

  async produce(
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

  metadata(req: MetadataRequest): MetadataResponse {
    return this.#node.metadata(req);
  }

  holds(topic: string, partition: number): boolean {
    return this.#node.holds(topic, partition);
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
      ...this.#login,
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
