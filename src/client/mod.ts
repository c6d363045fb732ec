// The TypeScript client's public face.

export { Client, connectWith, type ReadPartitionOptions } from "./client.ts";
export { connect } from "./connect.ts";
export { Admin, type CreateTopicOptions, type TopicDescription } from "./admin.ts";
export {
  type ClientTls,
  ConnectionError,
  type ConnectOptions,
  DEFAULT_PORT,
} from "./connection.ts";
export { TlsHandshakeFailed } from "../io/errors.ts";
export type { TlsFailure } from "../io/types.ts";
export {
  Consumer,
  type From,
  type ReceivedMessage,
  type SubscribeOptions,
  type Until,
} from "./consumer.ts";
export { type Message, Producer, type ProducerOptions } from "./producer.ts";
export { GroupConsumer, type GroupConsumerOptions } from "./group_consumer.ts";
export type {
  ClusterMemberInfo,
  ClusterMembersResponse,
  DescribeGroupResponse as GroupDescription,
  GroupOffset,
  GroupSummary,
  MetadataNode,
  MetadataPartition,
  MetadataResponse,
  MetadataTopic,
  PartitionInfo,
  RebalanceLeadersResponse,
  RepairedPartition,
  TopicPartition,
  TopicSummary,
} from "../protocol/messages.ts";
export { ErrorCode, GregorError } from "../protocol/errors.ts";
export type { AclEntry, Operation, Pattern, ResourceType } from "../auth/acl.ts";
export type { UserInfo } from "../auth/store.ts";
export type { CodecName } from "../protocol/compression.ts";
