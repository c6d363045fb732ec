// Opcodes and the payload of every request, response and push, described once as field schemas
// that drive one encoder and one strict decoder. docs/protocol.md is the prose twin of this file.

import { MalformedError } from "./errors.ts";
import { HEADER_BYTES, PROTOCOL_VERSION, writeHeader } from "./frame.ts";
import { Reader, Writer } from "./wire.ts";

/**
 * Opcodes, in bands by resource: 0x00 session, 0x01 produce, 0x02 consume, 0x03 admin, 0x04
 * consumer groups, 0x05 cluster metadata, 0x06 node to node (gossip and Raft, on the cluster port
 * only), 0x07 security administration (users and ACLs). 0x0606 is taken too: FORWARD, node to node
 * only and no part of the client protocol, lives in src/cluster/forward.ts.
 */
export const Op = {
  HELLO: 0x0001,
  PING: 0x0002,
  AUTH_START: 0x0003,
  AUTH_FINISH: 0x0004,
  PRODUCE: 0x0101,
  INIT_PRODUCER_ID: 0x0102,
  SUBSCRIBE: 0x0201,
  DELIVER: 0x0202,
  CREDIT: 0x0203,
  ACK: 0x0204,
  UNSUBSCRIBE: 0x0205,
  FETCH: 0x0206,
  DURABLE_COMMIT: 0x0207,
  DURABLE_FETCH: 0x0208,
  CREATE_TOPIC: 0x0301,
  DELETE_TOPIC: 0x0302,
  LIST_TOPICS: 0x0303,
  DESCRIBE_TOPIC: 0x0304,
  ALTER_TOPIC: 0x0305,
  CREATE_PARTITIONS: 0x0306,
  REPAIR_PARTITIONS: 0x0307,
  REASSIGN_PARTITION: 0x0308,
  REBALANCE_LEADERS: 0x0309,
  GROUP_HEARTBEAT: 0x0401,
  GROUP_LEAVE: 0x0402,
  OFFSET_COMMIT: 0x0403,
  OFFSET_FETCH: 0x0404,
  LIST_GROUPS: 0x0405,
  DESCRIBE_GROUP: 0x0406,
  RESET_OFFSETS: 0x0407,
  CLUSTER_MEMBERS: 0x0501,
  METADATA: 0x0502,
  GOSSIP_SYN: 0x0601,
  GOSSIP_ACK2: 0x0602,
  RAFT: 0x0603,
  CLUSTER_HELLO: 0x0604,
  CLUSTER_PROOF: 0x0605,
  USER_PUT: 0x0701,
  USER_DELETE: 0x0702,
  USER_LIST: 0x0703,
  ACL_ADD: 0x0704,
  ACL_REMOVE: 0x0705,
  ACL_LIST: 0x0706,
} as const;

/** An opcode's name. */
export type OpName = keyof typeof Op;

const OP_NAMES = new Map<number, OpName>(
  (Object.entries(Op) as [OpName, number][]).map(([name, code]) => [code, name]),
);

/** The name of an opcode, or null if unknown. */
export function opName(code: number): OpName | null {
  return OP_NAMES.get(code) ?? null;
}

/** Produce acknowledgement levels. */
export const Acks = { none: 0, leader: 1, quorum: 2 } as const;
/** Where a subscription starts, and where RESET_OFFSETS moves a group's offsets. */
export const Start = { earliest: 0, latest: 1, offset: 2, timestamp: 3 } as const;

/** A field type in a payload schema. */
export type FieldType =
  | "u8"
  | "u16"
  | "u32"
  | "i64"
  | "string"
  | "bytes"
  | { list: Schema }
  | { map: true };
/** A payload schema: its fields in wire order. */
export type Schema = readonly (readonly [string, FieldType])[];

/** Largest element count of a list or map in a payload. */
export const LIST_ITEMS_MAX = 100_000;

const TOPIC_PARTITION: Schema = [["topic", "string"], ["partition", "u32"]];
/** A list of (topic, partition) pairs. */
const PARTITION_LIST: FieldType = { list: TOPIC_PARTITION };
/** A committed offset of one partition, with the partition's end for lag. */
const GROUP_OFFSET: Schema = [
  ...TOPIC_PARTITION,
  ["offset", "i64"],
  ["highWatermark", "i64"],
];
/** One node in a gossip digest: what the sender holds of it. */
const GOSSIP_DIGEST: Schema = [["id", "string"], ["incarnation", "i64"], ["maxVersion", "i64"]];
/** Versioned entries of one node's state, at one incarnation. */
const GOSSIP_DELTA: Schema = [
  ["id", "string"],
  ["incarnation", "i64"],
  ["entries", { list: [["key", "string"], ["value", "string"], ["version", "i64"]] }],
];

/** One Raft message in a RAFT frame: the group it belongs to and its opaque bytes. */
const RAFT_ENVELOPE: Schema = [["group", "string"], ["data", "bytes"]];

/** One ACL entry: every field a string (docs/protocol.md §6.20 lists the values). */
const ACL_ENTRY: Schema = [
  ["principal", "string"],
  ["resourceType", "string"],
  ["pattern", "string"],
  ["name", "string"],
  ["operation", "string"],
];

/** Payload schemas by opcode: request, response, and for DELIVER the push. */
export const SCHEMAS = {
  HELLO: {
    request: [["versionMin", "u8"], ["versionMax", "u8"], ["clientId", "string"], [
      "credential",
      "bytes",
    ]],
    response: [["version", "u8"], ["brokerId", "string"], ["payloadBytesMax", "u32"], [
      "codecs",
      "u32",
    ]],
  },
  PING: { request: [], response: [] },
  AUTH_START: {
    request: [["mechanism", "string"], ["message", "bytes"]],
    response: [["message", "bytes"]],
  },
  AUTH_FINISH: { request: [["message", "bytes"]], response: [["message", "bytes"]] },
  PRODUCE: {
    request: [...TOPIC_PARTITION, ["acks", "u8"], ["timeoutMs", "u32"], ["batch", "bytes"]],
    response: [["baseOffset", "i64"], ["logStartOffset", "i64"]],
  },
  INIT_PRODUCER_ID: {
    request: [],
    response: [["producerId", "i64"], ["producerEpoch", "u16"]],
  },
  SUBSCRIBE: {
    request: [
      ["subscriptionId", "u32"],
      ...TOPIC_PARTITION,
      ["start", "u8"],
      ["startValue", "i64"],
      ["durableName", "string"],
      ["ackTimeoutMs", "u32"],
      ["creditMessages", "u32"],
      ["creditBytes", "u32"],
    ],
    response: [["startOffset", "i64"], ["logStartOffset", "i64"], ["highWatermark", "i64"]],
  },
  DELIVER: {
    request: [["subscriptionId", "u32"], ["firstOffset", "i64"], ["redelivery", "u8"], [
      "records",
      "bytes",
    ]],
    response: [],
  },
  CREDIT: {
    request: [["subscriptionId", "u32"], ["messages", "u32"], ["bytes", "u32"]],
    response: [],
  },
  ACK: { request: [["subscriptionId", "u32"], ["offset", "i64"]], response: [] },
  UNSUBSCRIBE: { request: [["subscriptionId", "u32"]], response: [] },
  FETCH: {
    request: [...TOPIC_PARTITION, ["offset", "i64"], ["maxBytes", "u32"]],
    response: [["logStartOffset", "i64"], ["highWatermark", "i64"], ["records", "bytes"]],
  },
  DURABLE_COMMIT: {
    request: [["offsets", {
      list: [...TOPIC_PARTITION, ["name", "string"], ["offset", "i64"], ["incarnation", "i64"]],
    }]],
    response: [],
  },
  DURABLE_FETCH: {
    request: [...TOPIC_PARTITION, ["name", "string"]],
    response: [["offset", "i64"]],
  },
  CREATE_TOPIC: {
    request: [["name", "string"], ["partitions", "u32"], ["configs", { map: true }]],
    response: [],
  },
  DELETE_TOPIC: { request: [["name", "string"]], response: [] },
  LIST_TOPICS: {
    request: [],
    response: [["topics", { list: [["name", "string"], ["partitions", "u32"]] }]],
  },
  ALTER_TOPIC: {
    request: [["name", "string"], ["configs", { map: true }]],
    response: [],
  },
  CREATE_PARTITIONS: {
    request: [["name", "string"], ["count", "u32"]],
    response: [],
  },
  REPAIR_PARTITIONS: {
    request: [["name", "string"], ["partitions", { list: [["partition", "u32"]] }]],
    response: [["partitions", {
      list: [
        ["partition", "u32"],
        ["cutOffset", "i64"],
        ["endOffset", "i64"],
        ["bytesDropped", "i64"],
        ["damage", "string"],
      ],
    }]],
  },
  REASSIGN_PARTITION: {
    request: [["name", "string"], ["partition", "u32"], ["replicas", { list: [["id", "string"]] }]],
    response: [],
  },
  REBALANCE_LEADERS: {
    request: [["thisNodeOnly", "u8"]],
    response: [["moved", "u32"], ["waiting", "u32"], ["unreached", { list: [["id", "string"]] }]],
  },
  GROUP_HEARTBEAT: {
    request: [
      ["group", "string"],
      ["memberId", "string"],
      ["instanceId", "string"],
      ["generation", "i64"],
      ["sessionTimeoutMs", "u32"],
      ["assignor", "string"],
      ["topics", { list: [["name", "string"]] }],
      ["owned", PARTITION_LIST],
    ],
    response: [
      ["memberId", "string"],
      ["generation", "i64"],
      ["heartbeatIntervalMs", "u32"],
      ["assigned", PARTITION_LIST],
      ["pending", "u32"],
    ],
  },
  GROUP_LEAVE: {
    request: [["group", "string"], ["memberId", "string"]],
    response: [],
  },
  OFFSET_COMMIT: {
    request: [
      ["group", "string"],
      ["memberId", "string"],
      ["generation", "i64"],
      ["offsets", { list: [...TOPIC_PARTITION, ["offset", "i64"]] }],
    ],
    response: [],
  },
  OFFSET_FETCH: {
    request: [["group", "string"], ["partitions", PARTITION_LIST]],
    response: [["offsets", { list: GROUP_OFFSET }]],
  },
  LIST_GROUPS: {
    request: [],
    response: [["groups", {
      list: [["group", "string"], ["state", "string"], ["members", "u32"], ["generation", "i64"]],
    }]],
  },
  DESCRIBE_GROUP: {
    request: [["group", "string"]],
    response: [
      ["group", "string"],
      ["state", "string"],
      ["generation", "i64"],
      ["assignor", "string"],
      ["members", {
        list: [
          ["memberId", "string"],
          ["instanceId", "string"],
          ["clientId", "string"],
          ["generation", "i64"],
          ["assigned", PARTITION_LIST],
        ],
      }],
      ["offsets", { list: GROUP_OFFSET }],
    ],
  },
  RESET_OFFSETS: {
    request: [
      ["group", "string"],
      ["topic", "string"],
      ["partitions", { list: [["partition", "u32"]] }],
      ["to", "u8"],
      ["value", "i64"],
      ["dryRun", "u8"],
    ],
    response: [["offsets", { list: GROUP_OFFSET }]],
  },
  METADATA: {
    request: [["topics", { list: [["name", "string"]] }], ["autoCreate", "u8"]],
    response: [
      ["nodes", {
        list: [["id", "string"], ["host", "string"], ["clientPort", "u32"]],
      }],
      ["topics", {
        list: [
          ["name", "string"],
          ["error", "u16"],
          ["partitions", {
            list: [["partition", "u32"], ["leader", "string"], [
              "replicas",
              { list: [["id", "string"]] },
            ]],
          }],
        ],
      }],
      ["controller", "string"],
    ],
  },
  CLUSTER_MEMBERS: {
    request: [],
    response: [
      ["self", "string"],
      ["members", {
        list: [
          ["id", "string"],
          ["host", "string"],
          ["clusterPort", "u32"],
          ["clientPort", "u32"],
          ["state", "string"],
          ["incarnation", "i64"],
          ["heartbeat", "i64"],
        ],
      }],
    ],
  },
  DESCRIBE_TOPIC: {
    request: [["name", "string"]],
    response: [
      ["name", "string"],
      ["configs", { map: true }],
      ["partitions", {
        list: [
          ["partition", "u32"],
          ["logStartOffset", "i64"],
          ["highWatermark", "i64"],
          ["sizeBytes", "i64"],
          ["subscribers", "u32"],
          ["damagedFromOffset", "i64"],
          ["leader", "string"],
          ["replicas", { list: [["id", "string"]] }],
          ["isr", { list: [["id", "string"]] }],
          ["moving", "u8"],
        ],
      }],
    ],
  },
  GOSSIP_SYN: {
    request: [["fromId", "string"], ["digest", { list: GOSSIP_DIGEST }]],
    response: [["digest", { list: GOSSIP_DIGEST }], ["deltas", { list: GOSSIP_DELTA }]],
  },
  GOSSIP_ACK2: {
    request: [["fromId", "string"], ["deltas", { list: GOSSIP_DELTA }]],
    response: [],
  },
  RAFT: {
    request: [["fromId", "string"], ["messages", { list: RAFT_ENVELOPE }]],
    response: [],
  },
  CLUSTER_HELLO: {
    request: [["nodeId", "string"], ["nonce", "bytes"]],
    response: [["nodeId", "string"], ["nonce", "bytes"]],
  },
  CLUSTER_PROOF: { request: [["proof", "bytes"]], response: [["proof", "bytes"]] },
  USER_PUT: {
    request: [
      ["name", "string"],
      ["salt", "bytes"],
      ["iterations", "u32"],
      ["storedKey", "bytes"],
      ["serverKey", "bytes"],
    ],
    response: [],
  },
  USER_DELETE: { request: [["name", "string"]], response: [] },
  USER_LIST: {
    request: [],
    response: [["users", {
      list: [["name", "string"], ["mechanism", "string"], ["iterations", "u32"]],
    }]],
  },
  ACL_ADD: { request: ACL_ENTRY, response: [] },
  ACL_REMOVE: { request: ACL_ENTRY, response: [] },
  ACL_LIST: { request: [], response: [["acls", { list: ACL_ENTRY }]] },
} as const satisfies Record<OpName, { request: Schema; response: Schema }>;

/** The error payload: a code and a message. */
export const ERROR_SCHEMA: Schema = [["code", "u16"], ["message", "string"]];

// The TypeScript shapes of the payloads above.

export interface HelloRequest {
  versionMin: number;
  versionMax: number;
  clientId: string;
  credential: Uint8Array | null;
}
/** AUTH_START: the SASL mechanism and the client-first message. */
export interface AuthStartRequest {
  mechanism: string;
  message: Uint8Array | null;
}
/** AUTH_START and AUTH_FINISH answers, and AUTH_FINISH's request: one SCRAM message. */
export interface AuthMessage {
  message: Uint8Array | null;
}
/** USER_PUT: a user's SCRAM credential, derived by the caller (no password on the wire). */
export interface UserPutRequest {
  name: string;
  salt: Uint8Array | null;
  iterations: number;
  storedKey: Uint8Array | null;
  serverKey: Uint8Array | null;
}
/** USER_LIST's answer. */
export interface UserListResponse {
  users: { name: string; mechanism: string; iterations: number }[];
}
/** An ACL entry as it travels (ACL_ADD, ACL_REMOVE, ACL_LIST). */
export interface AclWire {
  principal: string;
  resourceType: string;
  pattern: string;
  name: string;
  operation: string;
}
export interface HelloResponse {
  version: number;
  brokerId: string;
  payloadBytesMax: number;
  /** Bit i set = compression codec i is supported. */
  codecs: number;
}
export interface ProduceRequest {
  topic: string;
  partition: number;
  acks: number;
  timeoutMs: number;
  batch: Uint8Array | null;
}
export interface ProduceResponse {
  baseOffset: number;
  logStartOffset: number;
}
export interface SubscribeRequest {
  subscriptionId: number;
  topic: string;
  partition: number;
  start: number;
  startValue: number;
  durableName: string;
  ackTimeoutMs: number;
  creditMessages: number;
  creditBytes: number;
}
export interface SubscribeResponse {
  startOffset: number;
  logStartOffset: number;
  highWatermark: number;
}
export interface DeliverPush {
  subscriptionId: number;
  /** Records before this offset in the first batch were delivered before; skip them. */
  firstOffset: number;
  redelivery: number;
  records: Uint8Array | null;
}
export interface CreditRequest {
  subscriptionId: number;
  messages: number;
  bytes: number;
}
export interface AckRequest {
  subscriptionId: number;
  offset: number;
}
export interface UnsubscribeRequest {
  subscriptionId: number;
}
export interface FetchRequest {
  topic: string;
  partition: number;
  offset: number;
  maxBytes: number;
}
export interface FetchResponse {
  logStartOffset: number;
  highWatermark: number;
  records: Uint8Array | null;
}
export interface CreateTopicRequest {
  name: string;
  partitions: number;
  configs: Record<string, string>;
}
/** ALTER_TOPIC: the configs to change (the others keep their values). */
export interface AlterTopicRequest {
  name: string;
  configs: Record<string, string>;
}
export interface NameRequest {
  name: string;
}
/** One topic in LIST_TOPICS. */
export interface TopicSummary {
  name: string;
  partitions: number;
}
export interface ListTopicsResponse {
  topics: TopicSummary[];
}
/** One partition in DESCRIBE_TOPIC: offsets, size, subscribers, damage and replication. */
export interface PartitionInfo {
  partition: number;
  logStartOffset: number;
  highWatermark: number;
  sizeBytes: number;
  subscribers: number;
  /** The first offset the partition's log cannot serve (it is damaged), or -1. */
  damagedFromOffset: number;
  /** The node leading the partition; "" if none is known. */
  leader: string;
  /** The nodes holding a replica. */
  replicas: { id: string }[];
  /**
   * The replicas in sync with the leader (the leader included); empty where the node asked does
   * not lead the partition, as only a leader knows its followers' progress.
   */
  isr: { id: string }[];
  /**
   * 1 while the partition moves to `replicas` (new replicas catch up, then the group changes and
   * the replicas left out delete theirs); 0 otherwise.
   */
  moving: number;
}
export interface DescribeTopicResponse {
  name: string;
  configs: Record<string, string>;
  partitions: PartitionInfo[];
}
/** What a gossip message's sender holds of one node. */
export interface GossipDigestEntry {
  id: string;
  incarnation: number;
  /** Highest version of the node's entries the sender holds at that incarnation. */
  maxVersion: number;
}
/** One versioned key/value entry of a node's gossiped state. */
export interface GossipDeltaEntry {
  key: string;
  value: string;
  version: number;
}
/** Entries of one node's state at one incarnation. */
export interface GossipDelta {
  id: string;
  incarnation: number;
  entries: GossipDeltaEntry[];
}
/** GOSSIP_SYN: the initiator's digest. */
export interface GossipSynRequest {
  fromId: string;
  digest: GossipDigestEntry[];
}
/** The answer to GOSSIP_SYN: the responder's digest and the deltas the initiator lacks. */
export interface GossipSynResponse {
  digest: GossipDigestEntry[];
  deltas: GossipDelta[];
}
/** GOSSIP_ACK2 (one-way): the deltas the responder lacks. */
export interface GossipAck2Request {
  fromId: string;
  deltas: GossipDelta[];
}
/** One Raft message for one group, opaque to the transport. */
export interface RaftEnvelope {
  group: string;
  data: Uint8Array | null;
}
/** RAFT (one-way): Raft messages from node `fromId`, in the order it sent them. */
export interface RaftRequest {
  fromId: string;
  messages: RaftEnvelope[];
}
/** CLUSTER_HELLO, both ways: who this end is and its fresh nonce. */
export interface ClusterHello {
  nodeId: string;
  nonce: Uint8Array | null;
}
/** CLUSTER_PROOF, both ways: this end's HMAC over both ids and both nonces. */
export interface ClusterProof {
  proof: Uint8Array | null;
}
/** One member of the gossip view, as CLUSTER_MEMBERS lists it. */
export interface ClusterMemberInfo {
  id: string;
  host: string;
  clusterPort: number;
  clientPort: number;
  /** "alive", "suspect", "dead" or "left". */
  state: string;
  incarnation: number;
  heartbeat: number;
}
export interface ClusterMembersResponse {
  /** The id of the node that answered ("" if it is not in a cluster). */
  self: string;
  members: ClusterMemberInfo[];
}
export interface InitProducerIdResponse {
  producerId: number;
  producerEpoch: number;
}
/** CREATE_PARTITIONS: grow topic `name` to `count` partitions (never fewer). */
export interface CreatePartitionsRequest {
  name: string;
  count: number;
}
/** REPAIR_PARTITIONS: cut the named partitions of topic `name` (all if none) at their damage. */
export interface RepairPartitionsRequest {
  name: string;
  partitions: { partition: number }[];
}
/**
 * What a repair did to one partition: offsets `cutOffset` to `endOffset - 1` were dropped (none if
 * the two are equal: every batch checked out), with the damage that made the cut.
 */
export interface RepairedPartition {
  partition: number;
  cutOffset: number;
  endOffset: number;
  bytesDropped: number;
  /** Where and why the log failed its checks ("" if it did not). */
  damage: string;
}
export interface RepairPartitionsResponse {
  partitions: RepairedPartition[];
}
/**
 * REASSIGN_PARTITION: move partition `partition` of topic `name` to the nodes `replicas` (the first
 * is its preferred leader). Answered once the controller accepted the move; it runs on after.
 */
export interface ReassignPartitionRequest {
  name: string;
  partition: number;
  replicas: { id: string }[];
}
/**
 * REBALANCE_LEADERS: hand every partition to its preferred replica now. `thisNodeOnly` 0: the node
 * asked does so for the partitions it leads and asks every other live node to; 1: only its own.
 */
export interface RebalanceLeadersRequest {
  thisNodeOnly: number;
}
/** What REBALANCE_LEADERS did. */
export interface RebalanceLeadersResponse {
  /** Leaderships handed to the preferred replica (each completes within a round trip or two). */
  moved: number;
  /**
   * Partitions led elsewhere than their preferred replica that stay so for now: it is down, not a
   * voter yet, or behind its leader (ask again once it caught up).
   */
  waiting: number;
  /** Nodes that could not be asked (down, or did not answer in time). */
  unreached: { id: string }[];
}
export interface TopicPartition {
  topic: string;
  partition: number;
}
/**
 * GROUP_HEARTBEAT: joins (empty `memberId`, generation -1), stays in, and reconciles. `owned` is
 * what the member consumes now; the answer is what it may own.
 */
export interface GroupHeartbeatRequest {
  group: string;
  memberId: string;
  /** Static membership: a stable id that survives restarts without a rebalance ("" for none). */
  instanceId: string;
  generation: number;
  sessionTimeoutMs: number;
  /** "range", "roundrobin" or "sticky"; the group uses the one its first member named. */
  assignor: string;
  topics: { name: string }[];
  owned: TopicPartition[];
}
export interface GroupHeartbeatResponse {
  memberId: string;
  generation: number;
  heartbeatIntervalMs: number;
  /** The partitions this member may consume now (a subset of its target while others revoke). */
  assigned: TopicPartition[];
  /** Partitions the member will get once their previous owners let go. */
  pending: number;
}
export interface GroupLeaveRequest {
  group: string;
  memberId: string;
}
export interface CommitOffset extends TopicPartition {
  /** The next offset to consume (Kafka's convention). */
  offset: number;
}
/** A durable subscription's acknowledged offset, as one node tells the cluster's controller. */
export interface DurableOffset extends TopicPartition {
  name: string;
  offset: number;
  /** The creation of the topic the acks were taken on (its createTopic entry's index). */
  incarnation: number;
}
/** Acks of durable subscriptions a node took, for the cluster's metadata (node to node). */
export interface DurableCommitRequest {
  offsets: DurableOffset[];
}
/** Where a durable subscription stands. */
export interface DurableFetchRequest extends TopicPartition {
  name: string;
}
export interface DurableFetchResponse {
  /** The last acknowledged offset, or -1 if none. */
  offset: number;
}
export interface OffsetCommitRequest {
  group: string;
  memberId: string;
  generation: number;
  offsets: CommitOffset[];
}
export interface OffsetFetchRequest {
  group: string;
  /** Empty: every partition the group has an offset for. */
  partitions: TopicPartition[];
}
export interface GroupOffset extends TopicPartition {
  /** The committed next offset, or -1 if none. */
  offset: number;
  highWatermark: number;
}
export interface OffsetFetchResponse {
  offsets: GroupOffset[];
}
export interface GroupSummary {
  group: string;
  /** "empty", "stable" or "reconciling". */
  state: string;
  members: number;
  generation: number;
}
export interface ListGroupsResponse {
  groups: GroupSummary[];
}
export interface GroupMemberInfo {
  memberId: string;
  instanceId: string;
  clientId: string;
  generation: number;
  assigned: TopicPartition[];
}
export interface DescribeGroupResponse {
  group: string;
  state: string;
  generation: number;
  assignor: string;
  members: GroupMemberInfo[];
  offsets: GroupOffset[];
}
export interface ResetOffsetsRequest {
  group: string;
  topic: string;
  /** Empty: every partition of the topic. */
  partitions: { partition: number }[];
  /** A `Start` value: earliest, latest, offset or timestamp. */
  to: number;
  value: number;
  /** 1: answer with the offsets it would set, change nothing. */
  dryRun: number;
}
export interface ResetOffsetsResponse {
  offsets: GroupOffset[];
}
export interface MetadataRequest {
  /** Empty: every topic. */
  topics: { name: string }[];
  /** 1: create missing topics with the defaults (if the broker auto-creates). */
  autoCreate: number;
}
/** A node of the cluster, as METADATA lists it: where clients reach it. */
export interface MetadataNode {
  id: string;
  host: string;
  clientPort: number;
}
/** One partition in METADATA: its leader and the nodes holding a replica. */
export interface MetadataPartition {
  partition: number;
  /** The id of the node leading it ("" if none is known). */
  leader: string;
  replicas: { id: string }[];
}
/** One topic in METADATA: its partitions, or the error that kept it from being described. */
export interface MetadataTopic {
  name: string;
  /** 0, or the error code that prevented describing it (e.g. UNKNOWN_TOPIC). */
  error: number;
  partitions: MetadataPartition[];
}
/** What METADATA answers (`client.admin.metadata()`): the nodes, topics and controller. */
export interface MetadataResponse {
  nodes: MetadataNode[];
  topics: MetadataTopic[];
  /**
   * The node leading the metadata group, which also coordinates every consumer group; `""` if
   * none is known (or outside a cluster, where the node asked does both).
   */
  controller: string;
}
export interface ErrorPayload {
  code: number;
  message: string;
}
export type Empty = Record<string, never>;

/** Encodes `value` by `schema`. */
export function encode(schema: Schema, value: object): Uint8Array {
  const w = new Writer();
  write(w, schema, value as Record<string, unknown>);
  return w.finish();
}

/** What `encodeFramed` writes in the frame header. */
export interface FramedOptions {
  opcode: number;
  correlationId: number;
  flags?: number;
}

/**
 * Encodes `value` by `schema` as the payload of a whole frame, header included: the same bytes as
 * `encodeFrame(opcode, correlationId, encode(schema, value), flags)`, built in one buffer, so a
 * record batch in the payload is copied once rather than twice.
 */
export function encodeFramed(schema: Schema, value: object, opts: FramedOptions): Uint8Array {
  const w = new Writer();
  encodeFramedInto(w, schema, value, opts);
  return w.finish();
}

/**
 * Appends the frame `encodeFramed` makes to `w`, so frames sent together share one buffer. If
 * `value` does not fit `schema` it throws and leaves `w` as it was.
 */
export function encodeFramedInto(
  w: Writer,
  schema: Schema,
  value: object,
  opts: FramedOptions,
): void {
  const start = w.length;
  try {
    w.skip(HEADER_BYTES);
    write(w, schema, value as Record<string, unknown>);
  } catch (err) {
    w.rewind(start);
    throw err;
  }
  const frame = w.finish().subarray(start);
  writeHeader(frame, {
    version: PROTOCOL_VERSION,
    flags: opts.flags ?? 0,
    opcode: opts.opcode,
    correlationId: opts.correlationId,
    payloadLength: frame.length - HEADER_BYTES,
  });
}

function write(w: Writer, schema: Schema, v: Record<string, unknown>): void {
  for (const [name, type] of schema) {
    const x = v[name];
    switch (type) {
      case "u8":
        w.u8(x as number);
        break;
      case "u16":
        w.u16(x as number);
        break;
      case "u32":
        w.u32(x as number);
        break;
      case "i64":
        w.i64(x as number);
        break;
      case "string":
        w.string(x as string);
        break;
      case "bytes":
        w.bytes((x ?? null) as Uint8Array | null);
        break;
      default:
        if ("list" in type) {
          const items = x as Record<string, unknown>[];
          w.u32(items.length);
          for (const item of items) write(w, type.list, item);
        } else {
          const entries = Object.entries(x as Record<string, string>);
          w.u32(entries.length);
          for (const [k, val] of entries) w.string(k).string(val);
        }
    }
  }
}

/** Bytes of a DELIVER payload before its records: u32 id, i64 first offset, u8 flag, u32 length. */
const DELIVER_FIELDS_BYTES = 17;

/**
 * Decodes a DELIVER push, as `decode(SCHEMAS.DELIVER.request, payload, "DELIVER")` does, without
 * its per-field bookkeeping: a consumer of many subscriptions decodes one per message. Anything
 * that is not a well-formed push goes to `decode`, which says what is wrong with it.
 */
export function decodeDeliver(payload: Uint8Array): DeliverPush {
  const n = payload.length;
  if (n >= DELIVER_FIELDS_BYTES) {
    const length = u32At(payload, 13);
    const firstOffset = (u32At(payload, 4) | 0) * 0x1_0000_0000 + u32At(payload, 8);
    if (
      length !== 0xffffffff && DELIVER_FIELDS_BYTES + length === n &&
      Number.isSafeInteger(firstOffset)
    ) {
      return {
        subscriptionId: u32At(payload, 0),
        firstOffset,
        redelivery: payload[12]!,
        records: payload.subarray(DELIVER_FIELDS_BYTES),
      };
    }
  }
  return decode<DeliverPush>(SCHEMAS.DELIVER.request, payload, "DELIVER");
}

/** Bytes of an ACK payload: u32 subscription id, i64 offset. */
const ACK_BYTES = 12;

/**
 * Decodes an ACK, as `decode(SCHEMAS.ACK.request, payload, "ACK")` does, without its per-field
 * bookkeeping: a broker gets one per message per subscription. Anything else goes to `decode`.
 */
export function decodeAck(payload: Uint8Array): AckRequest {
  if (payload.length === ACK_BYTES) {
    const offset = (u32At(payload, 4) | 0) * 0x1_0000_0000 + u32At(payload, 8);
    if (Number.isSafeInteger(offset)) return { subscriptionId: u32At(payload, 0), offset };
  }
  return decode<AckRequest>(SCHEMAS.ACK.request, payload, "ACK");
}

/** The big-endian u32 at `at` of `b` (which must hold it). */
function u32At(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** Decodes a whole payload by `schema`; throws MalformedError on any mismatch or leftover byte. */
export function decode<T>(schema: Schema, payload: Uint8Array, what: string): T {
  const r = new Reader(payload);
  const out = read(r, schema, what);
  r.end(what);
  return out as T;
}

function read(r: Reader, schema: Schema, what: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, type] of schema) {
    const label = `${what}.${name}`;
    switch (type) {
      case "u8":
        out[name] = r.u8(label);
        break;
      case "u16":
        out[name] = r.u16(label);
        break;
      case "u32":
        out[name] = r.u32(label);
        break;
      case "i64":
        out[name] = r.i64(label);
        break;
      case "string":
        out[name] = r.string(label);
        break;
      case "bytes":
        out[name] = r.bytes(label);
        break;
      default: {
        const n = r.u32(`${label} count`);
        if (n > LIST_ITEMS_MAX) {
          throw new MalformedError(`${label} has ${n} items, over ${LIST_ITEMS_MAX}`);
        }
        if ("list" in type) {
          const items: Record<string, unknown>[] = [];
          for (let i = 0; i < n; i++) items.push(read(r, type.list, `${label}[${i}]`));
          out[name] = items;
        } else {
          const map: Record<string, string> = {};
          for (let i = 0; i < n; i++) {
            const k = r.string(`${label} key`);
            if (Object.hasOwn(map, k)) throw new MalformedError(`${label} repeats key ${k}`);
            if (k === "__proto__") {
              throw new MalformedError(`${label} key __proto__ is not allowed`);
            }
            map[k] = r.string(`${label} value`);
          }
          out[name] = map;
        }
      }
    }
  }
  return out;
}
