// A node's part in a replicated cluster: the metadata Raft group (topics and replica placement),
// one Raft group per partition replica it holds, the transport between nodes, and the rules that
// make a cluster assemble itself from gossip membership (bootstrap, adding and replacing voters).

import type { Env } from "../io/types.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { BatchHeader } from "../protocol/batch.ts";
import type {
  MetadataRequest,
  MetadataResponse,
  MetadataTopic,
  ProduceResponse,
} from "../protocol/messages.ts";
import { type Log, MemoryLog } from "../storage/mod.ts";
import { metaGroupDir, replicaDir, replicaLogDir } from "../storage/layout.ts";
import { Partition, Topic } from "../broker/topic.ts";
import type { Gossip } from "./gossip/mod.ts";
import { isNodeId, KEY_CLUSTER } from "./gossip/limits.ts";
import {
  encodeCommand,
  foundersOf,
  isMoving,
  isSecurityCommand,
  type MetaCommand,
  MetaState,
  placeReplicas,
  reassignProblem,
} from "./controller.ts";
import { type AppliedBatch, PartitionMachine } from "./replica.ts";
import {
  answerFetch,
  decodeFetchRequest,
  encodeFetchReply,
  FETCH_SUFFIX,
  ReplicaFetcher,
  REPLY_SUFFIX,
} from "./replica_fetch.ts";
import type { PartitionReplication } from "../broker/control_plane.ts";
import { RAFT_DEFAULTS } from "./raft/limits.ts";
import {
  RAFT_TICK_MS,
  RaftGroup,
  type RaftGroupOptions,
  type RaftStore,
  type StateMachine,
} from "./raft/shell.ts";
import { RaftTicker } from "./raft/ticker.ts";

/** The metadata group's name on the wire. */
export const META_GROUP = "__meta";
/** Gossip key under which a node running the metadata group names the cluster's founder. */
export const GOSSIP_META_KEY = "meta";
/**
 * Gossip key: the metadata group's founding voters, comma-separated (set before GOSSIP_META_KEY,
 * so a node that sees the founder also sees them: a node's entries travel in version order).
 */
export const GOSSIP_META_VOTERS_KEY = "meta-voters";
/**
 * Gossip key a replicating node sets as it starts, before it joins the metadata group: placement
 * counts it as a member at once, so a topic created while it is still joining is not silently
 * given fewer replicas than asked.
 */
export const GOSSIP_REPLICATES_KEY = "replicates";
/**
 * Gossip key: partitions this node leads whose group already matches a reassignment, as
 * "topic/partition#moves" (space-separated); the controller then marks the moves done.
 */
export const GOSSIP_MOVED_KEY = "moved";
/** Metadata voters a cluster aims for. */
export const META_VOTERS_TARGET = 3;
/**
 * Bytes of batches a partition replica applies between checkpoints, by default: the Raft log (in
 * memory and in the WAL) holds about this much, and the rest lives in the segment log.
 */
export const REPLICA_CHECKPOINT_BYTES_DEFAULT = 8 * 1024 * 1024;

/** Metadata entries applied after the last snapshot that trigger a compaction. */
export const META_COMPACT_EVERY = 1000;
/** Checks (100 ms apart) a node must stay the lowest live id before it founds a cluster. */
const FOUND_STABLE_CHECKS = 20;
/** How often the controller leader reviews voters, ms. */
const VOTER_REVIEW_MS = 500;
/** How long a voter must look dead before it is replaced, ms. */
export const VOTER_REPLACE_AFTER_MS = 30_000;
/** How often a node hands partitions it leads back to their preferred replicas, ms (default). */
export const LEADER_BALANCE_INTERVAL_MS_DEFAULT = 30_000;
/** Leadership hand-overs one node starts per balancing round at most. */
const LEADER_MOVES_PER_ROUND_MAX = 16;
/** How long a node may be dead before the controller moves its replicas to live nodes, ms. */
export const REPLICA_MOVE_AFTER_MS_DEFAULT = 10 * 60_000;
/** How often a partition's leader steps its group towards the partition's new replicas, ms. */
const MOVE_STEP_MS = 250;
/**
 * How long creating a topic (or adding partitions) waits for the new partitions' leaders, in
 * election timeouts; past it the request succeeds anyway and producers retry until one leads.
 */
const LEADERS_WAIT_ELECTIONS = 2;
/** How often that wait looks for the leaders, ms. */
const LEADERS_POLL_MS = 5;

/** What the cluster needs from the broker it serves. */
export interface ClusterBroker {
  /** Makes a topic known to the broker (with the partitions this node holds). */
  adoptTopic(topic: Topic): void;
  /** Forgets a topic (deleted from the cluster). */
  dropTopic(name: string): void;
  /** The broker's topic, if known. */
  knownTopic(name: string): Topic | undefined;
  /** Puts `partition` in place of partition `index` of topic `name` (a replica moved). */
  replacePartition(name: string, index: number, partition: Partition): void;
}

/** Opens a group's durable store (the WAL) in `dir`, for a group founded with `voters`. */
export type OpenStore = (dir: string, voters: readonly string[]) => Promise<RaftStore>;

/** What moves messages between nodes. */
export interface ClusterTransport {
  send(to: string, group: string, data: Uint8Array): void;
  onMessage: (from: string, group: string, data: Uint8Array) => void;
}

/** Options of a cluster node. */
export interface ClusterOptions {
  nodeId: string;
  dataDir: string;
  /** Nodes that must be alive before a fresh cluster founds its metadata group. */
  bootstrapExpect: number;
  /** True for a node started without seeds: with bootstrapExpect 1 it founds a cluster at once. */
  seedless: boolean;
  /** Replicas per partition (capped at the number of live nodes). */
  replicationFactor: number;
  tickMs?: number;
  electionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  openStore: OpenStore;
  /**
   * Opens the segment log of a partition replica in `dir`, as its topic's `configs` say (retention,
   * segments). It need not sync appends: the WAL holds each batch until a checkpoint synced it.
   */
  openLog(
    dir: string,
    partition: { topic: string; id: number },
    configs: Record<string, string>,
  ): Promise<Log>;
  /** Applies a topic's changed `configs` (its retention) to a replica's log. */
  reconfigureLog(log: Log, configs: Record<string, string>): Promise<void>;
  /** Removes a replica's log directory (closed before), once its topic is gone. */
  removeLog(dir: string): Promise<void>;
  /** Removes a group's store directory (the group stopped before): its replica moved away. */
  removeStore(dir: string): Promise<void>;
  /** True if a group's store in `dir` holds state (this node was a member of the group). */
  hasStore(dir: string): Promise<boolean>;
  /**
   * Bytes of batches a replica applies between checkpoints, after each of which its Raft log may
   * be compacted (default REPLICA_CHECKPOINT_BYTES_DEFAULT; the simulator uses a few hundred).
   */
  replicaCheckpointBytes?: number;
  /**
   * How often a node hands partitions it leads back to their preferred replicas (the first of
   * each partition's replicas), ms; 0 turns balancing off. Default 30 s.
   */
  leaderBalanceIntervalMs?: number;
  /**
   * How long a node may be dead before the controller moves its replicas to live nodes, ms
   * (0: never). Default 10 min.
   */
  replicaMoveAfterMs?: number;
  /** Metadata entries between snapshots (default META_COMPACT_EVERY; tests use a few). */
  metaCompactEvery?: number;
  /** Deliberate Raft bugs, to prove the simulator's checkers catch them. Never set outside tests. */
  plantedBugs?: RaftGroupOptions["plantedBugs"];
  /** A deliberate bug: produces are acknowledged before they commit. Never set outside tests. */
  plantedAckBeforeCommit?: boolean;
  /** Raft flow limits (the simulator varies them per seed). */
  raftFlow?: RaftGroupOptions["flow"];
  /** Told of each Raft group as it is created, before it runs (the simulator's checkers). */
  onRaftGroup?: (group: RaftGroup) => void;
  /** Told of a replica's group whose state this node deleted after the replica moved away. */
  onRaftGroupDropped?: (group: RaftGroup) => void;
  /**
   * The founding voters recorded once the group's store in `dir` first opened (the founder first;
   * comma-separated), or null if none were.
   */
  readFounder(dir: string): Promise<string | null>;
  /** Records the founding voters, durably, after the store first opened. */
  writeFounder(dir: string, founders: string): Promise<void>;
  /** Loud reports: a peer replica that sent damaged batches. */
  onReport?(msg: string): void;
  /** Removes what an interrupted first start left in the store's directory. */
  resetStore(dir: string): Promise<void>;
  onFatal(reason: string): void;
}

interface Replica {
  /** The topic's incarnation the replica belongs to, and its group's name on the wire. */
  incarnation: number;
  wire: string;
  dir: string;
  group: RaftGroup;
  partition: Partition;
  machine: PartitionMachine;
  /** Asks peers for batches while the replica catches up from a snapshot. */
  fetcher: ReplicaFetcher;
  /** Aborted when the replica stops (its topic deleted, the node stopping). */
  stop: AbortController;
  /**
   * The commit index persisted before this start: the log is served only once it is applied
   * again, so a restarted replica never shows a shorter log than it showed before.
   */
  servesFrom: number;
  /** Records proposed and not yet applied (only the planted ack-before-commit bug uses it). */
  unapplied: number;
}

/** This node's share of the cluster. */
export class ClusterNode {
  readonly meta = new MetaState();
  /** Proposals whose leader lost leadership before they applied (outcome unknown to it). */
  readonly stats = {
    proposalsLost: 0,
    metaCompactions: 0,
    metaRestores: 0,
    leaderChanges: 0,
    /** Partition Raft logs compacted, and replicas restored from a partition snapshot. */
    replicaCompactions: 0,
    replicaRestores: 0,
    /** Replicas opened from a compacted log (their snapshot, then the entries after it). */
    replicaSnapshotStarts: 0,
    /** Catch-up fetches answered by a peer, and peer answers that failed their checks. */
    replicaFetches: 0,
    replicaBadFetches: 0,
    /** Changes a replica's log refused (a full disk), then tried again. */
    replicaStorageRetries: 0,
    /** Damaged replica logs cut at the damage and filled again from peers. */
    replicaRepairs: 0,
    /** Leaderships handed to a partition's preferred replica (leader balancing). */
    leaderTransfers: 0,
    /** Partitions the controller moved off a dead node, and group changes their leaders made. */
    replicaMoves: 0,
    moveSteps: 0,
  };
  readonly #env: Env;
  readonly #o: ClusterOptions;
  readonly #gossip: Gossip;
  readonly #transport: ClusterTransport;
  /** Ticks every Raft group of this node from one timer (see RaftTicker). */
  readonly #ticker: RaftTicker;
  readonly #broker: ClusterBroker;
  readonly #replicas = new Map<string, Replica>();
  /**
   * Each replica's fetcher by wire name, from before its group starts: a replica restoring from a
   * snapshot as it opens fetches before it is among the replicas.
   */
  readonly #fetchers = new Map<string, ReplicaFetcher>();
  readonly #deadSince = new Map<string, number>();
  #leadingSince: number | null = null;
  /** The incarnation of each topic the broker was given. */
  readonly #adopted = new Map<string, number>();
  readonly #stop = new AbortController();
  #metaGroup: RaftGroup | null = null;
  /**
   * Told when this node starts or stops leading the metadata group (and so coordinating every
   * consumer group): the term it leads in, or null.
   */
  onCoordinating: (term: number | null) => void = () => {};
  #coordinatingTerm: number | null = null;
  /**
   * Told after the cluster's users or ACLs changed (a command applied, or a snapshot restored):
   * read them from `meta`. An exception thrown here is rethrown from a microtask: it is a bug.
   */
  onSecurityChange: () => void = () => {};
  /** Work run one at a time: reconciling replicas after metadata changes. */
  #chain: Promise<void> = Promise.resolve();

  private constructor(
    env: Env,
    opts: ClusterOptions,
    gossip: Gossip,
    transport: ClusterTransport,
    broker: ClusterBroker,
  ) {
    this.#env = env;
    this.#o = opts;
    this.#gossip = gossip;
    this.#transport = transport;
    this.#ticker = new RaftTicker(env.clock, opts.tickMs ?? RAFT_TICK_MS);
    this.#broker = broker;
    transport.onMessage = (from, group, data) => this.#receive(from, group, data);
    this.meta.onChange = (c) => this.#changed(c);
    this.meta.onRestore = () => {
      this.stats.metaRestores++;
      this.#securityChanged();
      this.#restored();
    };
  }

  /** Starts the node's cluster role; the metadata group starts once it can (bootstrap rules). */
  static start(
    env: Env,
    opts: ClusterOptions,
    gossip: Gossip,
    transport: ClusterTransport,
    broker: ClusterBroker,
  ): ClusterNode {
    const c = new ClusterNode(env, opts, gossip, transport, broker);
    gossip.setLocal(GOSSIP_REPLICATES_KEY, "1");
    void c.#startMeta().catch((err) => opts.onFatal(`Cannot start the metadata group: ${err}`));
    void c.#balanceLeaders();
    void c.#stepMoves();
    return c;
  }

  get nodeId(): string {
    return this.#o.nodeId;
  }

  /** The metadata group's leader, if known. */
  get controller(): string | null {
    return this.#metaGroup?.leaderId ?? null;
  }

  get metaGroup(): RaftGroup | null {
    return this.#metaGroup;
  }

  /** Every Raft group on this node: the metadata group (once started) and each replica's. */
  groups(): RaftGroup[] {
    const all = [...this.#replicas.values()].map((r) => r.group);
    return this.#metaGroup === null ? all : [this.#metaGroup, ...all];
  }

  /**
   * Partitions this node leads with fewer replicas in sync than it has replicas (`inSync`): one
   * died, is cut off or fell behind (a quorum may still commit, but one more failure would stop
   * it).
   */
  underReplicated(): number {
    let n = 0;
    for (const r of this.#replicas.values()) {
      const isr = r.group.inSyncVoters();
      if (isr !== null && isr.length < r.group.node.voters.length) n++;
    }
    return n;
  }

  /** Partitions whose replicas are moving, as this node's copy of the metadata says. */
  partitionsMoving(): number {
    let n = 0;
    for (const t of this.meta.topics.values()) {
      for (let p = 0; p < t.replicas.length; p++) if (isMoving(t, p)) n++;
    }
    return n;
  }

  /** The Raft group of a partition replica on this node, if it holds one. */
  replica(topic: string, partition: number): RaftGroup | null {
    return this.#replicas.get(partitionGroup(topic, partition))?.group ?? null;
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#metaGroup?.stop();
    for (const r of this.#replicas.values()) await this.#stopReplica(r);
  }

  /**
   * Stops a replica's group, then its log. The group is told first: a restore waiting on a fetch
   * from the peers ends when the fetcher is aborted, and must end as a stop, not as a failure (that
   * made a node whose restarted replica was being removed fail fatally, restart, and fail again:
   * cluster seed 8240).
   */
  async #stopReplica(r: Replica): Promise<void> {
    const stopped = r.group.stop();
    r.stop.abort();
    this.#fetchers.delete(r.wire);
    await stopped;
    await r.partition.log.close().catch(() => {});
  }

  // --- Requests -----------------------------------------------------------------------------

  #securityChanged(): void {
    try {
      this.onSecurityChange();
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  /** Proposes a metadata change; this node must lead the metadata group. */
  async propose(c: MetaCommand): Promise<unknown> {
    const g = this.#metaGroup;
    if (g === null) {
      throw new GregorError(ErrorCode.NOT_LEADER, "The cluster has no metadata group yet");
    }
    return await g.propose(encodeCommand(c));
  }

  /** Commits (or resets) a consumer group's offsets through the metadata group. */
  async commitOffsets(group: string, offsets: [string, number][], reset: boolean): Promise<void> {
    await this.propose({ op: "commitOffsets", group, offsets, ...(reset ? { reset } : {}) });
  }

  /**
   * The incarnation of topic `name` this node's broker serves (the creation its subscriptions'
   * acks belong to), if it serves one.
   */
  servedIncarnation(name: string): number | undefined {
    return this.#adopted.get(name);
  }

  /** Reserves `count` producer ids unique in the cluster; returns the first. */
  async allocateProducerIds(count: number): Promise<number> {
    return await this.propose({ op: "allocateProducerIds", count }) as number;
  }

  /** Creates a topic, placing its replicas on live nodes. */
  async createTopic(name: string, partitions: number, configs: Record<string, string>) {
    const nodes = this.#placeable(this.#factor(configs));
    const members = this.#members().size;
    if (this.#factor(configs) > members) {
      this.#o.onReport?.(
        `Topic ${name} asks for ${this.#factor(configs)} replicas per partition but the cluster ` +
          `has ${members} nodes: it gets ${members} (describe it to see them)`,
      );
    }
    const start = hashString(name) % Math.max(1, nodes.length);
    await this.propose({
      op: "createTopic",
      topic: {
        name,
        configs,
        replicas: placeReplicas(nodes, partitions, this.#factor(configs), start),
      },
    });
    await this.#chain;
    await this.#leadersKnown(name);
  }

  /**
   * Waits, for a bounded time, until this node knows a leader for every partition of `name`: a
   * client that produces right after creating a topic then finds a leader at once instead of
   * retrying with backoff until the new groups have elected one.
   */
  async #leadersKnown(name: string): Promise<void> {
    const electionMs = this.#o.electionTimeoutMs ?? RAFT_DEFAULTS.electionTimeoutMs;
    const deadline = this.#env.clock.now() + LEADERS_WAIT_ELECTIONS * electionMs;
    for (;;) {
      const count = this.meta.topics.get(name)?.replicas.length ?? 0;
      let led = 0;
      for (let p = 0; p < count; p++) if (this.#leaderOf(name, p) !== "") led++;
      if (led === count || this.#env.clock.now() >= deadline || this.#stop.signal.aborted) return;
      await this.#env.clock.sleep(LEADERS_POLL_MS, this.#stop.signal).catch(() => {});
    }
  }

  async deleteTopic(name: string): Promise<void> {
    await this.propose({ op: "deleteTopic", name });
    await this.#chain;
  }

  async addPartitions(name: string, count: number): Promise<void> {
    const t = this.meta.topics.get(name);
    if (t === undefined) {
      throw new GregorError(ErrorCode.UNKNOWN_TOPIC, `Topic ${name} does not exist`);
    }
    const nodes = this.#placeable(this.#factor(t.configs));
    const placed = placeReplicas(
      nodes,
      count,
      this.#factor(t.configs),
      hashString(name) % Math.max(1, nodes.length),
    ).slice(t.replicas.length);
    await this.propose({ op: "addPartitions", name, replicas: placed });
    await this.#chain;
    await this.#leadersKnown(name);
  }

  /**
   * Moves partition `partition` of `name` to `replicas`, as an operator asked; this node must lead
   * the metadata group. Resolves once the move is recorded: the partition's leader then changes its
   * group (newcomers catch up as learners before they vote), and the replicas left out delete
   * theirs once it is done.
   * @throws {GregorError} UNKNOWN_TOPIC, UNKNOWN_PARTITION, or INVALID_REQUEST for replicas that
   *   are not distinct live nodes, or a partition already moving.
   */
  async reassignPartition(name: string, partition: number, replicas: string[]): Promise<void> {
    const problem = reassignProblem(name, this.meta.topics.get(name), {
      partition,
      replicas,
      live: this.liveMembers(),
    });
    if (problem !== null) throw problem;
    const from = this.meta.topics.get(name)!.replicas[partition]!;
    await this.propose({ op: "reassignPartition", name, partition, replicas });
    this.#o.onReport?.(
      `Partition ${partitionGroup(name, partition)} moves from ${from.join(", ")} to ` +
        `${replicas.join(", ")}, as an operator asked`,
    );
    await this.#chain;
  }

  /**
   * Appends a validated batch through the partition's Raft group: resolves once it is committed
   * (on a quorum of replicas) and applied here, with its offset.
   */
  async produce(
    topic: string,
    partition: number,
    batch: Uint8Array,
    header: BatchHeader,
  ): Promise<ProduceResponse> {
    const r = this.#replicas.get(partitionGroup(topic, partition));
    if (r === undefined) {
      const t = this.meta.topics.get(topic);
      const replicas = t?.replicas[partition];
      if (replicas === undefined) {
        throw new GregorError(
          t === undefined ? ErrorCode.UNKNOWN_TOPIC : ErrorCode.UNKNOWN_PARTITION,
          `${topic}/${partition} does not exist`,
        );
      }
      throw new GregorError(
        ErrorCode.NOT_LEADER,
        `This node holds no replica of ${topic}/${partition}; its replicas are ${
          replicas.join(", ")
        }`,
      );
    }
    if (this.#o.plantedAckBeforeCommit === true) {
      // The planted bug: answer with the offset the batch would get, before any replica has it.
      const guess = r.partition.log.nextOffset + r.unapplied;
      r.unapplied += header.recordCount;
      void r.group.propose(batch).catch(() => {}).finally(() => r.unapplied -= header.recordCount);
      return { baseOffset: guess, logStartOffset: r.partition.log.logStartOffset };
    }
    const applied = await r.group.propose(batch) as AppliedBatch;
    return { baseOffset: applied.baseOffset, logStartOffset: r.partition.log.logStartOffset };
  }

  /**
   * Whether the metadata group can lose a node, as this node sees it: its voters, how many of them
   * are alive (gossip, and this node), how many a quorum needs, and how many more may fail with
   * one left (negative: no quorum now). A young cluster whose joiners are not voters yet has one
   * voter and can lose none, even though every node is up.
   */
  metaFaultTolerance(): { voters: number; votersAlive: number; quorum: number; canLose: number } {
    const g = this.#metaGroup;
    const voters = g === null ? [this.#o.nodeId] : [...g.node.voters];
    const live = new Set([...this.#liveNodes(), this.#o.nodeId]);
    const votersAlive = voters.filter((v) => live.has(v)).length;
    const quorum = Math.floor(voters.length / 2) + 1;
    return { voters: voters.length, votersAlive, quorum, canLose: votersAlive - quorum };
  }

  /** True if this node holds a replica of the partition, not mid-restore and not damaged. */
  holds(topic: string, partition: number): boolean {
    const r = this.#replicas.get(partitionGroup(topic, partition));
    if (r === undefined) return false;
    if (r.machine.damaged() && !r.machine.restoring) {
      // A read found damage: the replica stops serving until its peers have refilled the log.
      this.#o.onReport?.(
        `Replica ${partitionGroup(topic, partition)} is damaged; repairing it from its peers`,
      );
      r.machine.repair().catch(() => {});
    }
    return !r.machine.restoring && !r.machine.damaged() &&
      r.group.node.appliedIndex >= r.servesFrom;
  }

  /**
   * True if this node may serve reads of the partition: it holds a replica (`holds`) that keeps
   * up with its group (it leads, or it heard from the leader lately and trails its commit by at
   * most a few entries). A replica behind — just restarted, cut off, or catching up from a
   * snapshot, which may cut its log back or move its start — would hand a new subscriber stale or
   * discontinuous data; the subscriber is sent to the leader instead.
   */
  servesReads(topic: string, partition: number): boolean {
    if (!this.holds(topic, partition)) return false;
    return this.#replicas.get(partitionGroup(topic, partition))!.group.keepsUp();
  }

  /**
   * Who leads and holds the partition as far as this node knows, and, if this node leads it,
   * which replicas are in sync (`inSync`); elsewhere `isr` is empty. While the partition moves,
   * `replicas` are those it moves to.
   */
  replication(topic: string, partition: number): PartitionReplication {
    const t = this.meta.topics.get(topic);
    const ids = t?.replicas[partition] ?? [];
    const isr = this.#replicas.get(partitionGroup(topic, partition))?.group.inSyncVoters();
    return {
      leader: this.#leaderOf(topic, partition),
      replicas: ids.map((id) => ({ id })),
      isr: (isr ?? []).filter((id) => ids.includes(id)).map((id) => ({ id })),
      moving: t !== undefined && isMoving(t, partition) ? 1 : 0,
    };
  }

  /** Where partitions live and who leads them, as far as this node knows. */
  metadata(req: MetadataRequest): MetadataResponse {
    const names = req.topics.length > 0
      ? req.topics.map((t) => t.name)
      : [...this.meta.topics.keys()].sort();
    const topics: MetadataTopic[] = names.map((name) => {
      const t = this.meta.topics.get(name);
      if (t === undefined) return { name, error: ErrorCode.UNKNOWN_TOPIC, partitions: [] };
      return {
        name,
        error: 0,
        partitions: t.replicas.map((replicas, partition) => ({
          partition,
          leader: this.#leaderOf(name, partition),
          replicas: replicas.map((id) => ({ id })),
        })),
      };
    });
    const nodes = this.#gossip.members().filter((m) => m.state === "alive").map((m) => ({
      id: m.id,
      host: m.host,
      clientPort: m.clientPort,
    }));
    return { nodes, topics, controller: this.controller ?? "" };
  }

  #leaderOf(topic: string, partition: number): string {
    const local = this.#replicas.get(partitionGroup(topic, partition))?.group.leaderId;
    if (local !== undefined && local !== null) return local;
    // Other nodes publish the partitions they lead.
    const key = partitionGroup(topic, partition);
    for (const m of this.#gossip.members()) {
      if (m.state !== "alive") continue;
      if ((m.kv["leads"] ?? "").split(" ").includes(key)) return m.id;
    }
    return "";
  }

  // --- Metadata group -------------------------------------------------------------------------

  async #startMeta(): Promise<void> {
    const dir = metaGroupDir(this.#o.dataDir);
    // The founder is recorded (durably) only after the group's store first opened, so a record
    // means the store holds state; without one, whatever a crash left in the directory is wiped
    // and the bootstrap rules decide again. (Taking a half-created store for a founded one made a
    // joining node found a second cluster: cluster seed 1622.)
    const founder = await this.#o.readFounder(dir);
    let voters: string[];
    if (founder !== null) {
      // The store's state names the real voters; these are only the origin.
      voters = founder.split(",");
    } else {
      await this.#o.resetStore(dir);
      voters = await this.#bootstrapVoters();
    }
    if (this.#stop.signal.aborted) return;
    const store = await this.#o.openStore(dir, voters);
    if (founder === null) await this.#o.writeFounder(dir, voters.join(","));
    // Nodes that all had seeds found a cluster that has no name yet: its founder's id names it.
    const named = voters[0] ?? this.#o.nodeId;
    if (this.#gossip.clusterId === "" && isNodeId(named)) this.#gossip.joinCluster(named);
    this.#metaGroup = this.#group(
      META_GROUP,
      store,
      this.meta,
      this.#o.metaCompactEvery ?? META_COMPACT_EVERY,
    );
    this.#gossip.setLocal(GOSSIP_META_VOTERS_KEY, voters.join(","));
    this.#gossip.setLocal(GOSSIP_META_KEY, voters[0] ?? this.#o.nodeId);
    void this.#reviewVoters();
  }

  /**
   * The founding voters for a node that never ran the metadata group: those an existing cluster
   * names in gossip (a node among them is a voter from the start; any other waits to be added),
   * or — once `bootstrapExpect` nodes are alive and none has founded a cluster — the lowest ids,
   * up to META_VOTERS_TARGET of them, founded by the lowest. A cluster founded that way can lose a
   * node from its first election (a single founder could not until two more were promoted: a
   * controller paused then left the others without one for a minute). Only one node can found so
   * when `bootstrapExpect` is every node starting: a view of all of them has one lowest id. With
   * more, two views cut apart can each hold `bootstrapExpect` with a different lowest (cluster seed
   * 8771), so a node that sees more says so.
   */
  async #bootstrapVoters(): Promise<string[]> {
    let lowestFor = 0;
    let warnedOverExpect = false;
    while (!this.#stop.signal.aborted) {
      const alive = this.#gossip.members().filter((m) => m.state === "alive");
      // Until this node knows its cluster it may hold nodes of another (one that reached it on an
      // address once used by its own): it takes founders only from a node of a cluster it joined,
      // or from one that names no cluster (a version without them).
      const named = alive.find((m) =>
        m.kv[GOSSIP_META_KEY] !== undefined &&
        (m.kv[KEY_CLUSTER] === undefined || m.kv[KEY_CLUSTER] === this.#gossip.clusterId)
      );
      if (named !== undefined) {
        const founders = named.kv[GOSSIP_META_VOTERS_KEY]?.split(",") ?? [];
        const founder = named.kv[GOSSIP_META_KEY]!;
        // A node of an older version publishes only its founder.
        return founders[0] === founder ? founders : [founder];
      }
      // A node without seeds founds the cluster itself (bootstrapExpect 1). Otherwise the lowest
      // id among at least bootstrapExpect live nodes does — and only once that has held for
      // FOUND_STABLE_CHECKS checks in a row, so a partial gossip view at start does not found a
      // second cluster.
      if (this.#o.seedless && this.#o.bootstrapExpect <= 1) return [this.#o.nodeId];
      // Every live node counts, named or not: a node not yet in the cluster that a founder just
      // named must still see that founder as the lowest, or with more nodes than bootstrapExpect
      // it could found a second metadata group.
      const ids = alive.map((m) => m.id).sort();
      const need = Math.max(2, this.#o.bootstrapExpect);
      if (this.#o.bootstrapExpect >= 2 && ids.length > need && !warnedOverExpect) {
        // Two nodes can each see themselves lowest of `need` only if more than `need` start.
        warnedOverExpect = true;
        this.#o.onReport?.(
          `${ids.length} nodes are starting a new cluster but bootstrapExpect is ${need}: set it to ` +
            `the number of nodes started together, or a network cut now can found two clusters`,
        );
      }
      if (ids.length >= need && ids[0] === this.#o.nodeId) {
        if (++lowestFor >= FOUND_STABLE_CHECKS) {
          return ids.slice(0, Math.min(META_VOTERS_TARGET, this.#o.bootstrapExpect));
        }
      } else lowestFor = 0;
      try {
        await this.#env.clock.sleep(100, this.#stop.signal);
      } catch {
        break;
      }
    }
    return [this.#o.nodeId];
  }

  /**
   * The metadata leader keeps META_VOTERS_TARGET voters: it adds live nodes that run the group,
   * and replaces a voter dead for VOTER_REPLACE_AFTER_MS, one change at a time.
   */
  async #reviewVoters(): Promise<void> {
    while (!this.#stop.signal.aborted) {
      try {
        await this.#env.clock.sleep(VOTER_REVIEW_MS, this.#stop.signal);
      } catch {
        return;
      }
      const g = this.#metaGroup;
      if (g === null || !g.isLeader) {
        this.#leadingSince = null;
        continue;
      }
      // A leader judges deaths only from what it saw itself while leading, and only once its
      // gossip view had time to form (it may just have restarted with an empty one).
      if (this.#leadingSince === null) {
        this.#leadingSince = this.#env.clock.now();
        this.#deadSince.clear();
      }
      try {
        await this.#reviewOnce(g);
      } catch {
        // Leadership moved or the change did not commit: the next review tries again.
      }
      try {
        await this.#reviewPartitions();
      } catch {
        // As above: the next review tries again.
      }
    }
  }

  /**
   * The controller's part in moving partitions: a move whose group its leader reports done is
   * marked done (the replicas left out then delete theirs), and one partition with a replica on a
   * node dead for replicaMoveAfterMs is reassigned to a live node, one per review.
   */
  async #reviewPartitions(): Promise<void> {
    const done = new Set<string>();
    for (const m of this.#gossip.members()) {
      for (const k of (m.kv[GOSSIP_MOVED_KEY] ?? "").split(" ")) if (k !== "") done.add(k);
    }
    for (const t of this.meta.topics.values()) {
      for (const [p, replicas] of t.replicas.entries()) {
        if (!isMoving(t, p) || !done.has(`${partitionGroup(t.name, p)}#${t.moves?.[p] ?? 0}`)) {
          continue;
        }
        await this.propose({ op: "partitionMoved", name: t.name, partition: p, replicas });
      }
    }
    const afterMs = this.#o.replicaMoveAfterMs ?? REPLICA_MOVE_AFTER_MS_DEFAULT;
    if (afterMs <= 0) return;
    const now = this.#env.clock.now();
    const dead = new Set(
      [...this.#deadSince].filter(([, since]) => now - since >= afterMs).map(([id]) => id),
    );
    if (dead.size === 0) return;
    const live = this.#liveNodes().filter((id) => !dead.has(id));
    const load = new Map(live.map((id) => [id, 0]));
    for (const t of this.meta.topics.values()) {
      for (const rs of t.replicas) for (const id of rs) load.set(id, (load.get(id) ?? 0) + 1);
    }
    for (const t of this.meta.topics.values()) {
      for (const [p, replicas] of t.replicas.entries()) {
        const gone = replicas.find((id) => dead.has(id));
        if (gone === undefined || isMoving(t, p)) continue;
        const to = live.filter((id) => !replicas.includes(id))
          .sort((a, b) => load.get(a)! - load.get(b)! || (a < b ? -1 : 1))[0];
        if (to === undefined) continue;
        const next = replicas.map((id) => id === gone ? to : id);
        await this.propose({ op: "reassignPartition", name: t.name, partition: p, replicas: next });
        this.stats.replicaMoves++;
        this.#o.onReport?.(
          `Partition ${partitionGroup(t.name, p)} moves from ${gone}, dead for ${
            Math.round((now - this.#deadSince.get(gone)!) / 1000)
          } s, to ${to}: replicas ${next.join(", ")}`,
        );
        return;
      }
    }
  }

  /**
   * A partition's leader changes its Raft group, a step at a time, until the group's voters are
   * the partition's new replicas: a newcomer joins as a learner and is promoted once caught up,
   * then replicas left out are removed (a leader left out first hands leadership to a new
   * replica). It then reports the move done in gossip, for the controller to record.
   */
  async #stepMoves(): Promise<void> {
    /** What this node last published under GOSSIP_MOVED_KEY. */
    let movedPublished = "";
    while (!this.#stop.signal.aborted) {
      try {
        await this.#env.clock.sleep(MOVE_STEP_MS, this.#stop.signal);
      } catch {
        return;
      }
      const done: string[] = [];
      for (const [key, r] of [...this.#replicas]) {
        const t = this.meta.topics.get(r.partition.topic);
        if (t === undefined || !isMoving(t, r.partition.id) || !r.group.isLeader) continue;
        try {
          if (await this.#moveStep(r, t.replicas[r.partition.id]!)) {
            done.push(`${key}#${t.moves?.[r.partition.id] ?? 0}`);
          }
        } catch {
          // Leadership moved or the change did not commit: the next round tries again.
        }
      }
      const value = done.sort().join(" ").slice(0, 1000);
      if (value === movedPublished) continue;
      try {
        this.#gossip.setLocal(GOSSIP_MOVED_KEY, value);
        movedPublished = value;
      } catch {
        // The gossip service is stopping.
      }
    }
  }

  /** One change towards `target`; true once the group's voters are exactly `target`. */
  async #moveStep(r: Replica, target: readonly string[]): Promise<boolean> {
    const g = r.group;
    const self = this.#o.nodeId;
    const voters = g.node.voters;
    const learners = g.node.learners;
    const newcomer = target.find((id) => !voters.includes(id) && !learners.includes(id));
    if (newcomer !== undefined) {
      this.stats.moveSteps++;
      await g.addLearner(newcomer);
      return false;
    }
    // Only a learner that has caught up: a voter with an empty log would hold up commits.
    const commit = g.node.commitIndex;
    const ready = learners.find((id) =>
      target.includes(id) && (g.node.matchOf(id) ?? -1) >= commit
    );
    if (ready !== undefined) {
      this.stats.moveSteps++;
      await g.addServer(ready);
      return false;
    }
    if (target.some((id) => !voters.includes(id))) return false;
    const leaving = [...voters, ...learners].find((id) => !target.includes(id) && id !== self);
    if (leaving !== undefined) {
      this.stats.moveSteps++;
      await g.removeServer(leaving);
      return false;
    }
    if (!target.includes(self)) {
      const next = target.find((id) => (g.node.matchOf(id) ?? -1) >= g.node.lastIndex);
      if (next !== undefined) g.transferLeadership(next);
      return false;
    }
    // Done once the group committed it: the replicas left out then delete their state, which an
    // uncommitted removal lost with a leader would still count on.
    return g.node.configCommitted;
  }

  /**
   * One membership change, if one is due: a node running the metadata group joins as a learner
   * (so it receives the metadata); a learner is promoted while fewer than META_VOTERS_TARGET
   * voters are alive; a member dead for VOTER_REPLACE_AFTER_MS is removed.
   */
  async #reviewOnce(g: RaftGroup): Promise<void> {
    const now = this.#env.clock.now();
    const members = this.#gossip.members();
    const state = new Map(members.map((m) => [m.id, m]));
    const voters = g.node.voters;
    const learners = g.node.learners;
    const isAlive = (id: string) => {
      const m = state.get(id);
      return id === this.#o.nodeId || m?.state === "alive" || m?.state === "suspect";
    };
    for (const id of [...voters, ...learners]) {
      if (isAlive(id)) this.#deadSince.delete(id);
      else if (!this.#deadSince.has(id)) this.#deadSince.set(id, now);
    }
    const newcomer = members.find((m) =>
      m.state === "alive" && !voters.includes(m.id) && !learners.includes(m.id) &&
      m.kv[GOSSIP_META_KEY] !== undefined
    );
    if (newcomer !== undefined) {
      await g.addLearner(newcomer.id);
      return;
    }
    const liveVoters = voters.filter((v) => !this.#deadSince.has(v));
    // Only a learner that has caught up: promoting one with an empty log makes the leader depend
    // on a voter that cannot vote for it yet (cluster seed 7969 wedged that way).
    const commit = g.node.commitIndex;
    const promotable = learners.filter((l) =>
      !this.#deadSince.has(l) && (g.node.matchOf(l) ?? -1) >= commit
    ).sort();
    if (liveVoters.length < META_VOTERS_TARGET && promotable.length > 0) {
      await g.addServer(promotable[0]!);
      return;
    }
    for (const id of [...voters, ...learners]) {
      const since = this.#deadSince.get(id);
      if (since === undefined || now - since < VOTER_REPLACE_AFTER_MS) continue;
      if (voters.includes(id)) {
        // The new configuration takes effect when appended: remove a voter only if the voters
        // left that look alive are a majority of it, or the group could wedge on a wrong view.
        const rest = voters.filter((v) => v !== id);
        const aliveRest = rest.filter((v) => !this.#deadSince.has(v)).length;
        if (rest.length === 0 || aliveRest < Math.floor(rest.length / 2) + 1) continue;
      }
      await g.removeServer(id);
      this.#deadSince.delete(id);
      return;
    }
  }

  /**
   * Preferred-leader balancing. Placement rotates a partition's first replica, its preferred
   * leader, over the nodes, so leaders start spread; failovers pile them onto the survivors. Every
   * interval each node hands the partitions it leads to their preferred replicas where those are
   * alive, voters and caught up, so a node back from a restart leads its share again.
   */
  async #balanceLeaders(): Promise<void> {
    const everyMs = this.#o.leaderBalanceIntervalMs ?? LEADER_BALANCE_INTERVAL_MS_DEFAULT;
    if (everyMs <= 0) return;
    while (!this.#stop.signal.aborted) {
      try {
        await this.#env.clock.sleep(everyMs, this.#stop.signal);
      } catch {
        return;
      }
      this.balanceLeadersOnce();
    }
  }

  /**
   * One round of preferred-leader balancing: `moved`, the hand-overs it started, and `waiting`, the
   * partitions this node leads that it left with it although another replica is preferred (that
   * one is down, not a voter yet or behind, or the round reached its maximum of hand-overs).
   */
  balanceLeadersOnce(): { moved: number; waiting: number } {
    const live = new Set(this.#liveNodes());
    let moved = 0;
    let waiting = 0;
    for (const [key, r] of this.#replicas) {
      const g = r.group;
      if (!g.isLeader) continue;
      const preferred = this.meta.topics.get(r.partition.topic)?.replicas[r.partition.id]?.[0];
      if (preferred === undefined || preferred === this.#o.nodeId) continue;
      if (
        moved >= LEADER_MOVES_PER_ROUND_MAX || r.machine.restoring || !live.has(preferred) ||
        !g.node.voters.includes(preferred) ||
        (g.node.matchOf(preferred) ?? -1) < g.node.lastIndex ||
        !g.transferLeadership(preferred)
      ) {
        waiting++;
        continue;
      }
      moved++;
      this.stats.leaderTransfers++;
      this.#o.onReport?.(`Leadership of ${key} goes back to its preferred replica ${preferred}`);
    }
    return { moved, waiting };
  }

  #group(
    name: string,
    store: RaftStore,
    machine: StateMachine,
    compactEvery?: number,
  ): RaftGroup {
    const group = new RaftGroup({
      ...(compactEvery === undefined ? {} : { compactEvery }),
      group: name,
      nodeId: this.#o.nodeId,
      store,
      machine,
      send: (to, bytes) => this.#transport.send(to, name, bytes),
      clock: this.#env.clock,
      ticker: this.#ticker,
      random: this.#env.random.fork(`raft-${name}`),
      ...(this.#o.tickMs === undefined ? {} : { tickMs: this.#o.tickMs }),
      ...(this.#o.electionTimeoutMs === undefined
        ? {}
        : { electionTimeoutMs: this.#o.electionTimeoutMs }),
      ...(this.#o.heartbeatIntervalMs === undefined
        ? {}
        : { heartbeatIntervalMs: this.#o.heartbeatIntervalMs }),
      onFatal: (reason) => this.#o.onFatal(reason),
      onLeaderChange: () => {
        this.stats.leaderChanges++;
        this.#publishLeads();
        if (name === META_GROUP) this.#coordinatingChanged();
      },
      onProposalLost: () => void this.stats.proposalsLost++,
      onCompacted: () => {
        if (name === META_GROUP) this.stats.metaCompactions++;
        else this.stats.replicaCompactions++;
      },
      ...(this.#o.plantedBugs === undefined ? {} : { plantedBugs: this.#o.plantedBugs }),
      ...(this.#o.raftFlow === undefined ? {} : { flow: this.#o.raftFlow }),
    });
    this.#o.onRaftGroup?.(group);
    return group;
  }

  #receive(from: string, group: string, data: Uint8Array): void {
    if (group === META_GROUP) {
      this.#metaGroup?.receive(data);
      return;
    }
    if (group.endsWith(FETCH_SUFFIX)) return this.#answerFetch(from, group, data);
    if (group.endsWith(REPLY_SUFFIX)) {
      this.#fetchers.get(group.slice(0, -REPLY_SUFFIX.length))?.receive(data);
      return;
    }
    // A partition group's wire name is "topic/partition@incarnation": messages for an earlier or
    // later creation of the topic never reach this one.
    const r = this.#replicas.get(group.slice(0, group.lastIndexOf("@")));
    if (r !== undefined && r.wire === group) r.group.receive(data);
  }

  /** A peer replica catching up asked for batches: the answer goes back on its own group name. */
  #answerFetch(from: string, group: string, data: Uint8Array): void {
    const wire = group.slice(0, -FETCH_SUFFIX.length);
    let req;
    try {
      req = decodeFetchRequest(data);
    } catch {
      return;
    }
    const r = this.#replicas.get(wire.slice(0, wire.lastIndexOf("@")));
    const log = r !== undefined && r.wire === wire ? r.partition.log : undefined;
    void answerFetch(log, req).then((reply) => {
      try {
        this.#transport.send(from, wire + REPLY_SUFFIX, encodeFetchReply(reply));
      } catch {
        // Refused like a lost message: the asker times out and asks again.
      }
    });
  }

  #coordinatingChanged(): void {
    const g = this.#metaGroup;
    const term = g !== null && g.isLeader ? g.term : null;
    if (term === this.#coordinatingTerm) return;
    this.#coordinatingTerm = term;
    this.onCoordinating(term);
  }

  /** Publishes in gossip which partitions this node leads (clients route by it). */
  #publishLeads(): void {
    const leads: string[] = [];
    for (const [key, r] of this.#replicas) if (r.group.isLeader) leads.push(key);
    let value = leads.sort().join(" ");
    // Gossip values are small; past that, clients learn leaders from NOT_LEADER answers.
    if (value.length > 1000) value = value.slice(0, value.lastIndexOf(" ", 1000));
    try {
      this.#gossip.setLocal("leads", value);
    } catch {
      // The gossip service is stopping.
    }
  }

  // --- Replicas ---------------------------------------------------------------------------

  #changed(c: MetaCommand): void {
    if (isSecurityCommand(c)) {
      this.#securityChanged();
      return;
    }
    if (
      c.op === "allocateProducerIds" || c.op === "commitOffsets" || c.op === "commitDurables" ||
      c.op === "barrier"
    ) {
      return;
    }
    const name = c.op === "createTopic" ? c.topic.name : c.name;
    this.#chain = this.#chain.then(() => this.#reconcile(name)).catch((err) =>
      this.#o.onFatal(`Cannot open the replicas of ${name}: ${(err as Error).message}`)
    );
  }

  /** After a snapshot replaced the metadata: every topic known before or now is reconciled. */
  #restored(): void {
    const names = new Set([...this.meta.topics.keys()]);
    for (const key of this.#replicas.keys()) names.add(key.slice(0, key.lastIndexOf("/")));
    for (const name of names) {
      this.#chain = this.#chain.then(() => this.#reconcile(name)).catch((err) =>
        this.#o.onFatal(`Cannot open the replicas of ${name}: ${(err as Error).message}`)
      );
    }
  }

  /** Opens the replicas of `name` this node should hold, or drops the topic. */
  async #reconcile(name: string): Promise<void> {
    const t = this.meta.topics.get(name);
    const incarnation = t?.incarnation ?? -1;
    // Replicas of a deleted topic, or of an earlier creation of the name, go with their logs.
    let dropped = false;
    for (const [key, r] of [...this.#replicas]) {
      if (!key.startsWith(`${name}/`) || r.incarnation === incarnation) continue;
      this.#replicas.delete(key);
      await this.#stopReplica(r);
      await this.#o.removeStore(r.dir).catch(() => {});
      await this.#o.removeLog(replicaLogDir(r.dir)).catch(() => {});
      dropped = true;
    }
    if (t === undefined || this.#adopted.get(name) !== incarnation) {
      this.#broker.dropTopic(name);
      this.#adopted.delete(name);
      dropped = true;
    }
    if (t === undefined) {
      if (dropped) this.#publishLeads();
      return;
    }
    const partitions: Partition[] = [];
    for (const [p, replicas] of t.replicas.entries()) {
      const key = partitionGroup(name, p);
      let r = this.#replicas.get(key);
      const self = this.#o.nodeId;
      const mine = replicas.includes(self);
      const founders = foundersOf(t, p);
      // A replica being moved away still serves its group until the move is done: the group may
      // need its vote to elect the leader that makes the move (cluster seed 3045: a founder down
      // when the topic was made came back to a move away from it, never opened its replica, and
      // its group never had a quorum).
      const leaving = !mine && r === undefined && isMoving(t, p) &&
        (founders.includes(self) ||
          await this.#o.hasStore(
            replicaDir(this.#o.dataDir, { topic: name, incarnation, partition: p }),
          ));
      if (r === undefined && (mine || leaving)) {
        // A founder opens with the founding voters, as every founder did; a replica that came
        // with a move joins the group as a newcomer, which its leader adds.
        r = await this.#openReplica(name, p, founders.includes(self) ? founders : [], incarnation);
      } else if (r !== undefined && !mine && !isMoving(t, p)) {
        // Moved away, and the move is done: the new replicas hold every batch.
        this.#replicas.delete(key);
        await this.#stopReplica(r);
        await this.#o.removeStore(r.dir).catch(() => {});
        await this.#o.removeLog(replicaLogDir(r.dir)).catch(() => {});
        this.#o.onRaftGroupDropped?.(r.group);
        this.#o.onReport?.(
          `Replica ${key} moved to ${replicas.join(", ")}: this node's copy is deleted`,
        );
        r = undefined;
        dropped = true;
      }
      // A partition held elsewhere gets an empty stand-in; requests for it are refused.
      partitions.push(r?.partition ?? this.#standIn(name, p));
    }
    if (dropped) this.#publishLeads();
    const existing = this.#broker.knownTopic(name);
    if (existing === undefined) {
      this.#broker.adoptTopic(new Topic(name, { ...t.configs }, partitions));
      this.#adopted.set(name, incarnation);
    } else {
      for (let i = 0; i < partitions.length; i++) {
        const was = existing.partitions[i];
        const now = partitions[i]!;
        if (was === undefined) existing.partitions.push(now);
        else if (!(this.#standIns.has(was) && this.#standIns.has(now))) {
          this.#broker.replacePartition(name, i, now);
        }
      }
      Object.assign(existing.configs, t.configs);
      for (const [key, r] of this.#replicas) {
        if (key.startsWith(`${name}/`)) await this.#o.reconfigureLog(r.partition.log, t.configs);
      }
    }
  }

  /** Stand-ins for partitions held elsewhere, told apart from replicas when a partition moves. */
  readonly #standIns = new WeakSet<Partition>();

  #standIn(topic: string, p: number): Partition {
    const partition = new Partition(topic, p, new MemoryLog({ retentionBytes: 0 }));
    this.#standIns.add(partition);
    return partition;
  }

  async #openReplica(
    topic: string,
    p: number,
    replicas: string[],
    incarnation: number,
  ): Promise<Replica> {
    const key = partitionGroup(topic, p);
    const wire = `${key}@${incarnation}`;
    const dir = replicaDir(this.#o.dataDir, { topic, incarnation, partition: p });
    const configs = this.meta.topics.get(topic)?.configs ?? {};
    const log = await this.#o.openLog(replicaLogDir(dir), { topic, id: p }, configs);
    let store;
    try {
      store = await this.#o.openStore(dir, replicas);
      // Never compacted: the Raft log holds every entry, and applying them again rebuilds the log
      // (also what a crash on a full disk left hidden in its last segment).
      if (store.state().snapshot.index === 0) await log.resetTo(0);
    } catch (err) {
      await log.close().catch(() => {});
      throw err;
    }
    const servesFrom = store.state().hardState.commit;
    if (store.state().snapshot.index > 0) this.stats.replicaSnapshotStarts++;
    const partition = new Partition(topic, p, log);
    const stop = new AbortController();
    const fetcher = new ReplicaFetcher(this.#env, {
      self: this.#o.nodeId,
      wire,
      send: (to, group, data) => this.#transport.send(to, group, data),
      signal: stop.signal,
    });
    this.#fetchers.set(wire, fetcher);
    const machine = new PartitionMachine(log, () => partition.notify(), {
      checkpointBytes: this.#o.replicaCheckpointBytes ?? REPLICA_CHECKPOINT_BYTES_DEFAULT,
    }, fetcher);
    machine.onStorageRetry = (reason, attempt) => {
      this.stats.replicaStorageRetries++;
      // Once per refused change: a full disk refuses every try until it has room.
      if (attempt === 1) {
        this.#o.onReport?.(`Replica ${key} cannot store a batch; retrying: ${reason}`);
      }
    };
    machine.onFetched = () => {
      this.stats.replicaFetches++;
    };
    machine.onBadFetch = (reason) => {
      this.stats.replicaBadFetches++;
      this.#o.onReport?.(`Replica ${key} was sent batches that failed their checks: ${reason}`);
    };
    // Counted from here: a replica whose log was compacted starts from its snapshot.
    machine.onRestore = () => void this.stats.replicaRestores++;
    machine.onRepaired = ({ cut, fetchedTo, peers }) => {
      this.stats.replicaRepairs++;
      const d = cut.damage;
      const parts: string[] = [];
      if (fetchedTo > cut.cutOffset) {
        parts.push(
          `offsets ${cut.cutOffset}..${fetchedTo - 1} were fetched again from ${
            peers.join(", ")
          }, each batch verified`,
        );
      }
      if (cut.endOffset > fetchedTo) {
        parts.push(
          `offsets ${fetchedTo}..${cut.endOffset - 1} are applied again from its Raft log`,
        );
      }
      this.#o.onReport?.(
        `Replica ${key} repaired: its log was damaged from offset ${d.offset} (${d.file} at byte ` +
          `${d.byte}: ${d.reason}); ${parts.join("; ")}`,
      );
    };
    const group = this.#group(wire, store, machine);
    machine.peers = () => [...group.node.voters, ...group.node.learners];
    // A group just founded has no leader to wait for: its first replica, which placement spreads
    // over the nodes, campaigns at once, so the topic takes produces within a few round trips
    // rather than after an election timeout (1 to 2 s of refused produces).
    const fresh = store.state().hardState.term === 0 && group.node.lastIndex === 0;
    if (fresh && replicas[0] === this.#o.nodeId) group.campaign();
    const r = {
      incarnation,
      wire,
      dir,
      group,
      partition,
      machine,
      fetcher,
      stop,
      servesFrom,
      unapplied: 0,
    };
    this.#replicas.set(key, r);
    return r;
  }

  /** A topic's replication factor: its `replication.factor` config, else the cluster's. */
  #factor(configs: Record<string, string>): number {
    const rf = Number(configs["replication.factor"]);
    return Number.isInteger(rf) && rf > 0 ? rf : this.#o.replicationFactor;
  }

  /**
   * The live nodes to place `factor` replicas on. The factor is capped at the cluster's size (the
   * metadata group's members), but never silently at the live ones: with too few alive, placing
   * fewer replicas would lose the redundancy asked for, so the request fails and may be retried.
   */
  #placeable(factor: number): string[] {
    // The live members take replicas.
    const members = this.#members();
    const known = members.size;
    const live = this.#liveNodes().filter((id) => members.has(id));
    const need = Math.min(factor, known);
    if (live.length < need) {
      throw new GregorError(
        ErrorCode.TIMEOUT,
        `${need} replicas are wanted but only ${live.length} of ${known} nodes are alive; retry`,
      );
    }
    return live;
  }

  /**
   * The cluster's members: those of the metadata group (durable, unlike a gossip view that starts
   * empty after a restart), and nodes that announced they replicate but are not in it yet.
   */
  #members(): Set<string> {
    const g = this.#metaGroup;
    const members = new Set(g === null ? [this.#o.nodeId] : [...g.node.voters, ...g.node.learners]);
    for (const m of this.#gossip.members()) {
      const replicates = m.kv[GOSSIP_META_KEY] !== undefined ||
        m.kv[GOSSIP_REPLICATES_KEY] !== undefined;
      if (m.state !== "left" && replicates) members.add(m.id);
    }
    return members;
  }

  /** The cluster's members that gossip says are alive, this node included, sorted. */
  liveMembers(): string[] {
    const members = this.#members();
    return this.#liveNodes().filter((id) => members.has(id));
  }

  #liveNodes(): string[] {
    return this.#gossip.members().filter((m) => m.state === "alive").map((m) => m.id).sort();
  }
}

/** A partition group's name: "topic/partition". */
export function partitionGroup(topic: string, partition: number): string {
  return `${topic}/${partition}`;
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h;
}
