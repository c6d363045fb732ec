// The broker's control plane: who decides topics, where a partition's appends and reads run, where
// producer ids, durable subscription offsets and consumer groups are kept. The broker is given one
// at construction and asks it instead of asking whether it is clustered: `LocalControlPlane`
// (local_control_plane.ts) serves everything on this node; the cluster's (src/cluster/bridge.ts)
// goes through the replicated metadata and the partitions' Raft groups.

import type { AclEntry } from "../auth/acl.ts";
import type { Env } from "../io/types.ts";
import type { BatchHeader } from "../protocol/batch.ts";
import type {
  AlterTopicRequest,
  CreatePartitionsRequest,
  CreateTopicRequest,
  DurableCommitRequest,
  DurableFetchRequest,
  InitProducerIdResponse,
  MetadataRequest,
  MetadataResponse,
  OpName,
  PartitionInfo,
  ProduceRequest,
  ProduceResponse,
  ReassignPartitionRequest,
  RebalanceLeadersRequest,
  RebalanceLeadersResponse,
  RepairPartitionsRequest,
  RepairPartitionsResponse,
} from "../protocol/messages.ts";
import type { BrokerObserver } from "./observer.ts";
import type { BrokerOptions } from "./options.ts";
import type { Topic } from "./topic.ts";

/**
 * Where the broker's requests are decided. A request that must run on another node is refused
 * with `LedElsewhere`, naming the node: the connection it came in on forwards it there, or, if it
 * was itself forwarded here, answers NOT_LEADER (a request is never forwarded twice).
 */
export interface ControlPlane {
  /** Called once, by the broker the plane serves, as it is constructed. */
  bind(host: PlaneHost): void;
  /** Creates a topic a client asked for; resolves with it once this node knows it. */
  createTopic(req: CreateTopicRequest): Promise<Topic>;
  /**
   * Creates a topic the broker itself needs (auto-creation on first use, within another request):
   * never refused with `LedElsewhere`, as the request it serves runs here.
   */
  autoCreateTopic(req: CreateTopicRequest): Promise<Topic>;
  deleteTopic(name: string): Promise<void>;
  createPartitions(req: CreatePartitionsRequest): Promise<void>;
  alterTopic(req: AlterTopicRequest): Promise<void>;
  /**
   * Applies a change of users or ACLs wherever they are kept (`op` is the client's request that
   * asks for it); resolves true if it changed something (a removal of nothing does not). The local
   * plane runs `local`, which changes this node's files; the cluster's goes through the metadata
   * group, on its leader (the controller).
   */
  changeSecurity(
    change: SecurityChange,
    op: OpName,
    local: () => Promise<boolean>,
  ): Promise<boolean>;
  /** Cuts damaged partitions back to their last good batch, where that is how they are repaired. */
  repairPartitions(req: RepairPartitionsRequest): Promise<RepairPartitionsResponse>;
  /**
   * Moves a partition's replicas to the nodes an operator named; resolves once the move is
   * accepted (it carries on after). A single node has no replicas to move: INVALID_REQUEST.
   */
  reassignPartition(req: ReassignPartitionRequest): Promise<void>;
  /**
   * Hands partitions led elsewhere back to their preferred replicas now, rather than at the next
   * balancing round. A single node leads every partition: INVALID_REQUEST.
   */
  rebalanceLeaders(req: RebalanceLeadersRequest): Promise<RebalanceLeadersResponse>;
  /** Where each partition of the named topics lives. */
  metadata(req: MetadataRequest): Promise<MetadataResponse>;
  /** Appends a validated batch to its partition, wherever the partition's appends run. */
  append(req: ProduceRequest, header: BatchHeader): Promise<ProduceResponse>;
  /** A new producer id, unique wherever the plane's producers may write. */
  initProducerId(): Promise<InitProducerIdResponse>;
  /** True if this node holds the partition's log (and so may serve reads of it). */
  holds(topic: string, partition: number): boolean;
  /** Throws NOT_LEADER naming who holds the partition if this node holds no copy of it. */
  checkReadable(topic: string, partition: number): void;
  /**
   * False when a partition log held here may lag the partition (a follower's): group commits
   * are then not checked against its end.
   */
  readonly endsExact: boolean;
  /** Who leads and holds the partition, and which replicas are in sync. */
  replication(topic: string, partition: number): PartitionReplication;
  /**
   * Runs a consumer-group request on the group coordinator: `local` if this node coordinates,
   * else wherever the coordinator is.
   */
  atCoordinator<R>(op: OpName, local: () => R | Promise<R>): Promise<R>;
  /** Notes an ack of durable subscription `key`: it is kept with the next `flushDurables`. */
  durableAcked(key: string, offset: number): void;
  /** Keeps the acks noted since the last flush; throws on the first failure of an outage. */
  flushDurables(): Promise<void>;
  /** Takes durable subscriptions' acks another node sent. */
  commitDurables(req: DurableCommitRequest): Promise<void>;
  /** A durable subscription's last acked offset; -1 if it has none. */
  durableOffset(req: DurableFetchRequest): Promise<number>;
  /**
   * The acked offset a durable subscription resumes after beyond what this node remembers; -1
   * if the plane keeps none apart from the broker's own.
   */
  resumeOffset(topic: string, partition: number, name: string): Promise<number>;
  /**
   * Sends a request frame to node `to` (which a `LedElsewhere` named) and resolves with its answer
   * frame, or null for a request without one.
   * @throws {GregorError} NOT_LEADER if `to` cannot be reached; TIMEOUT if the outcome is unknown.
   */
  forward(to: string, req: ForwardedRequest): Promise<Uint8Array | null>;
  /** The broker is closing (before its logs close): last offsets are kept, connections closed. */
  close(): Promise<void>;
}

/** What a control plane needs from the broker it serves. */
export interface PlaneHost {
  readonly env: Env;
  readonly opts: Readonly<BrokerOptions>;
  readonly observer: BrokerObserver;
  /** This node's id in its cluster ("" outside one). */
  readonly nodeId: string;
  /** The topic `name` if this broker knows it. */
  knownTopic(name: string): Topic | undefined;
  /** The topic `name`, created with the defaults if it does not exist and auto-creation is on. */
  topic(name: string, create: boolean): Topic | Promise<Topic>;
  /** INVALID_REQUEST unless `n` is a partition count a topic may have. */
  checkPartitionCount(n: number): void;
  /** LIMIT_EXCEEDED if `adding` more partitions would pass partitionsTotalMax. */
  checkPartitionsTotal(adding: number, what: string): void;
  /** The broker's own single-node implementations, which the local plane runs. */
  readonly here: HereOps;
}

/** The single-node implementations of what the control plane decides, as the broker runs them. */
export interface HereOps {
  createTopic(req: CreateTopicRequest): Promise<Topic>;
  deleteTopic(name: string): Promise<void>;
  createPartitions(req: CreatePartitionsRequest): Promise<void>;
  alterTopic(req: AlterTopicRequest): Promise<void>;
  repairPartitions(req: RepairPartitionsRequest): Promise<RepairPartitionsResponse>;
  metadata(req: MetadataRequest): Promise<MetadataResponse>;
  append(req: ProduceRequest, header: BatchHeader): Promise<ProduceResponse>;
  initProducerId(): Promise<InitProducerIdResponse>;
  /** Marks the durable subscriptions' offsets as moved since they were last written. */
  offsetsMoved(): void;
  /** Writes the durable subscriptions' offsets if any moved. */
  flushOffsets(): Promise<void>;
  /** A durable subscription's acked offset as this broker holds it, -1 if none. */
  durableOffset(req: DurableFetchRequest): number;
}

/** A request as a client sent it, on its way to the node that serves it, and who sent it. */
export interface ForwardedRequest {
  opcode: number;
  payload: Uint8Array;
  /** The client id of the client's connection (group members are named after it). */
  clientId: string;
  /** The client's authenticated user ("" for none), already authorized where it connected. */
  principal: string;
}

/**
 * Thrown by a control plane for a request that runs on node `nodeId`, not here. Not a protocol
 * error: the connection turns it into a forward, or into NOT_LEADER for a forwarded request.
 */
export class LedElsewhere extends Error {
  /**
   * @param nodeId The node that serves the request.
   * @param op The request: only a request of this kind is forwarded (anything else is a bug).
   * @param settle Run here once `nodeId` answered the request with success, before that answer
   *   goes to the client (to wait, say, until this node knows a topic the leader created).
   */
  constructor(
    readonly nodeId: string,
    readonly op: OpName,
    readonly settle: (() => Promise<unknown>) | null = null,
  ) {
    super(`This node does not lead the request (${op}); its leader is ${nodeId}`);
    this.name = "LedElsewhere";
  }
}

/** A user's SCRAM credential as the cluster's metadata holds it (base64 of each byte string). */
export interface ReplicatedUser {
  salt: string;
  iterations: number;
  storedKey: string;
  serverKey: string;
}

/** A change to the users or ACLs. */
export type SecurityChange =
  | { op: "putUser"; name: string; user: ReplicatedUser }
  | { op: "removeUser"; name: string }
  | { op: "addAcl"; acl: AclEntry }
  | { op: "removeAcl"; acl: AclEntry };

/** DESCRIBE_TOPIC's replication fields of one partition. */
export type PartitionReplication = Pick<PartitionInfo, "leader" | "replicas" | "isr" | "moving">;
