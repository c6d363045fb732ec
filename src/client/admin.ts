// Topic administration: create, alter, delete, list, describe.

import type {
  ClusterMembersResponse,
  DescribeTopicResponse,
  ListTopicsResponse,
  PartitionInfo,
  TopicSummary,
} from "../protocol/messages.ts";
import type { ClientConnection } from "./connection.ts";

/** Options for `Admin.createTopic`. */
export interface CreateTopicOptions {
  /** Partitions. Default 1. */
  partitions?: number;
  /** Topic configuration, e.g. `{ "retention.bytes": "1048576" }`. */
  configs?: Record<string, string>;
}

/** A topic's description. */
export interface TopicDescription {
  name: string;
  configs: Record<string, string>;
  partitions: PartitionInfo[];
}

/** Administrative requests. Reach it as `client.admin`. */
export class Admin {
  readonly #conn: ClientConnection;

  /** @internal Use `client.admin`. */
  constructor(conn: ClientConnection) {
    this.#conn = conn;
  }

  /**
   * Creates a topic.
   * @throws {GregorError} TOPIC_EXISTS, INVALID_TOPIC or INVALID_REQUEST (bad config).
   */
  async createTopic(name: string, opts: CreateTopicOptions = {}): Promise<void> {
    await this.#conn.request("CREATE_TOPIC", {
      name,
      partitions: opts.partitions ?? 1,
      configs: opts.configs ?? {},
    });
  }

  /**
   * Deletes a topic and everything in it.
   * @throws {GregorError} UNKNOWN_TOPIC.
   */
  async deleteTopic(name: string): Promise<void> {
    await this.#conn.request("DELETE_TOPIC", { name });
  }

  /**
   * Changes a topic's configs. Only retention (`retention.ms`, `retention.bytes`) can change after
   * creation; the broker applies the new limits at once.
   *
   * @param name The topic.
   * @param configs The configs to change; the others keep their values.
   * @throws {GregorError} UNKNOWN_TOPIC, or INVALID_REQUEST (a bad value or a fixed config).
   * @example
   * ```ts
   * await client.admin.alterTopic("clicks", { "retention.ms": "3600000" });
   * ```
   */
  async alterTopic(name: string, configs: Record<string, string>): Promise<void> {
    await this.#conn.request("ALTER_TOPIC", { name, configs });
  }

  /** Lists topics, sorted by name. */
  async listTopics(): Promise<TopicSummary[]> {
    return (await this.#conn.request<ListTopicsResponse>("LIST_TOPICS", {})).topics;
  }

  /**
   * Describes a topic: its configuration and per partition the offset range, size and subscribers.
   * @throws {GregorError} UNKNOWN_TOPIC.
   */
  async describeTopic(name: string): Promise<TopicDescription> {
    return await this.#conn.request<DescribeTopicResponse>("DESCRIBE_TOPIC", { name });
  }

  /**
   * The cluster as the connected node sees it: its own id and every member it knows, with state
   * ("alive", "suspect", "dead", "left") and addresses. Empty for a node outside any cluster.
   */
  async clusterMembers(): Promise<ClusterMembersResponse> {
    return await this.#conn.request<ClusterMembersResponse>("CLUSTER_MEMBERS", {});
  }

  /** Round trip to the broker; resolves when it answered. */
  async ping(): Promise<void> {
    await this.#conn.request("PING", {});
  }
}
