// What a broker asks of the cluster it is part of, when it is part of one: topic changes go
// through the replicated metadata, produces through the partition's Raft group, and requests this
// node cannot serve are forwarded or refused. The broker imports only this interface; the
// cluster (src/cluster/) implements it.

import type { AclEntry } from "../auth/acl.ts";
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
} from "../protocol/messages.ts";

/** A user's SCRAM credential as the cluster's metadata holds it (base64 of each byte string). */
export interface ReplicatedUser {
  salt: string;
  iterations: number;
  storedKey: string;
  serverKey: string;
}

/** A change to the cluster's users or ACLs. */
export type SecurityChange =
  | { op: "putUser"; name: string; user: ReplicatedUser }
  | { op: "removeUser"; name: string }
  | { op: "addAcl"; acl: AclEntry }
  | { op: "removeAcl"; acl: AclEntry };

/**
 * The cluster side of a clustered broker. `forwarded` is true for a request another node
 * forwarded here: it is served locally or refused, never forwarded again.
 */
export interface BrokerCluster {
  createTopic(req: CreateTopicRequest, forwarded: boolean): Promise<void>;
  deleteTopic(name: string, forwarded: boolean): Promise<void>;
  createPartitions(req: CreatePartitionsRequest, forwarded: boolean): Promise<void>;
  alterTopic(req: AlterTopicRequest, forwarded: boolean): Promise<void>;
  /**
   * Applies a change of users or ACLs through the metadata group, on the controller (forwarded
   * there as request `op` with `body`); resolves once the controller applied it: true if it
   * changed something (a removal of nothing does not).
   */
  changeSecurity(
    change: SecurityChange,
    forward: { op: OpName; body: object },
    forwarded: boolean,
  ): Promise<boolean>;
  /** Appends a validated batch through the partition's Raft group, wherever it leads. */
  produce(req: ProduceRequest, header: BatchHeader, forwarded: boolean): Promise<ProduceResponse>;
  /** A producer id unique in the whole cluster. */
  initProducerId(forwarded: boolean): Promise<InitProducerIdResponse>;
  metadata(req: MetadataRequest): MetadataResponse;
  /**
   * Runs a consumer-group request on the group coordinator: `local` if this node coordinates,
   * else the request (`op` with `body`) is forwarded to the coordinator and its answer returned.
   */
  atCoordinator<R>(
    op: OpName,
    body: object,
    forwarded: boolean,
    local: () => R | Promise<R>,
  ): Promise<R>;
  /**
   * Notes an ack of durable subscription `key` taken on this node (one-way): it reaches the
   * replicated metadata with the next `flushDurables`.
   */
  durableAcked(key: string, offset: number): void;
  /** Commits the acks noted since the last flush; throws on the first failure of an outage. */
  flushDurables(): Promise<void>;
  /** Puts durable subscriptions' acks into the replicated metadata, at its leader. */
  commitDurables(req: DurableCommitRequest, forwarded: boolean): Promise<void>;
  /**
   * A durable subscription's last acked offset as the metadata's leader holds it, after a
   * barrier (so a deposed leader cannot answer with an older one); -1 if it has none.
   */
  durableOffset(req: DurableFetchRequest, forwarded: boolean): Promise<number>;
  /** True if this node holds a replica of the partition (and so may serve reads of it). */
  holds(topic: string, partition: number): boolean;
  /** Who leads and holds the partition, and which replicas are in sync (known on its leader). */
  replication(topic: string, partition: number): PartitionReplication;
}

/** DESCRIBE_TOPIC's replication fields of one partition. */
export type PartitionReplication = Pick<PartitionInfo, "leader" | "replicas" | "isr">;

/** The client id a node uses when it forwards a request to another node. */
export const FORWARD_CLIENT_ID = "gregormq-forward";
