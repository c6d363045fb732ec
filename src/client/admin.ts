// Administration: topics (create, alter, delete, list, describe, repair), consumer groups (list, describe,
// offsets, reset) and the cluster view.

import {
  type ClusterMembersResponse,
  type DescribeGroupResponse,
  type DescribeTopicResponse,
  type GroupOffset,
  type GroupSummary,
  type ListGroupsResponse,
  type ListTopicsResponse,
  type MetadataResponse,
  type OffsetFetchResponse,
  type PartitionInfo,
  type RebalanceLeadersResponse,
  type RepairedPartition,
  type RepairPartitionsResponse,
  type ResetOffsetsResponse,
  Start,
  type TopicPartition,
  type TopicSummary,
} from "../protocol/messages.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { OpName } from "../protocol/messages.ts";
import type { Random } from "../io/types.ts";
import type { ClientConnection } from "./connection.ts";
import type { AclEntry } from "../auth/acl.ts";
import { deriveCredential, ITERATIONS_DEFAULT, SALT_BYTES } from "../auth/scram.ts";
import type { UserInfo } from "../auth/store.ts";

/** Wait before an admin request's first retry, ms; it doubles (with jitter) up to the max. */
const RETRY_BACKOFF_MS = 50;
const RETRY_BACKOFF_MS_MAX = 1_000;

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

  /** Jitter for retries, a stream of its own so retries do not shift anyone else's draws. */
  readonly #random: Random;

  /** @internal Use `client.admin`. */
  constructor(conn: ClientConnection) {
    this.#conn = conn;
    this.#random = conn.opts.env.random.fork("admin-retry");
  }

  /**
   * Sends a request, and again while the broker answers with a retriable error (NOT_LEADER while
   * a cluster elects its leaders, LIMIT_EXCEEDED, SHUTTING_DOWN), with backoff, until the call's
   * deadline (`requestTimeoutMs` from now); then the last error is thrown. TIMEOUT is not retried:
   * the broker may have done what was asked, and doing a create or delete twice is not the same.
   */
  async #request<T>(op: OpName, body: object): Promise<T> {
    const clock = this.#conn.opts.env.clock;
    const deadline = clock.now() + this.#conn.opts.requestTimeoutMs;
    let backoffMs = RETRY_BACKOFF_MS;
    for (;;) {
      try {
        return await this.#conn.request<T>(op, body);
      } catch (err) {
        const retriable = err instanceof GregorError && err.retriable &&
          err.code !== ErrorCode.TIMEOUT;
        const waitMs = backoffMs * (0.5 + this.#random.float() / 2);
        if (!retriable || clock.now() + waitMs >= deadline) throw err;
        await clock.sleep(waitMs);
        backoffMs = Math.min(backoffMs * 2, RETRY_BACKOFF_MS_MAX);
      }
    }
  }

  /**
   * Creates a topic.
   * @throws {GregorError} TOPIC_EXISTS, INVALID_TOPIC or INVALID_REQUEST (bad config).
   */
  async createTopic(name: string, opts: CreateTopicOptions = {}): Promise<void> {
    await this.#request("CREATE_TOPIC", {
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
    await this.#request("DELETE_TOPIC", { name });
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
    await this.#request("ALTER_TOPIC", { name, configs });
  }

  /** Lists topics, sorted by name. */
  async listTopics(): Promise<TopicSummary[]> {
    return (await this.#request<ListTopicsResponse>("LIST_TOPICS", {})).topics;
  }

  /**
   * Describes a topic: its configuration and per partition the offset range, size and subscribers.
   * @throws {GregorError} UNKNOWN_TOPIC.
   */
  async describeTopic(name: string): Promise<TopicDescription> {
    return await this.#request<DescribeTopicResponse>("DESCRIBE_TOPIC", { name });
  }

  /**
   * The cluster as the connected node sees it: its own id and every member it knows, with state
   * ("alive", "suspect", "dead", "left") and addresses. Empty for a node outside any cluster.
   */
  async clusterMembers(): Promise<ClusterMembersResponse> {
    return await this.#request<ClusterMembersResponse>("CLUSTER_MEMBERS", {});
  }

  /** Consumer groups with live members or committed offsets, sorted by name. */
  async listGroups(): Promise<GroupSummary[]> {
    return (await this.#request<ListGroupsResponse>("LIST_GROUPS", {})).groups;
  }

  /**
   * Describes a group: state, generation, members with what each consumes, and the committed
   * offset of every partition with the partition's end (lag = highWatermark - offset).
   * @throws {GregorError} INVALID_REQUEST if the group does not exist.
   */
  async describeGroup(group: string): Promise<DescribeGroupResponse> {
    return await this.#request<DescribeGroupResponse>("DESCRIBE_GROUP", { group });
  }

  /** A group's committed offsets (all of them, or of the given partitions; -1: none). */
  async groupOffsets(group: string, partitions: TopicPartition[] = []): Promise<GroupOffset[]> {
    const r = await this.#request<OffsetFetchResponse>("OFFSET_FETCH", { group, partitions });
    return r.offsets;
  }

  /**
   * Moves an empty group's committed offsets on a topic to the earliest or latest offset, an
   * explicit offset (clipped to what the log holds) or the first at or after a timestamp.
   *
   * @param to Where to.
   * @param opts `partitions` (default all of the topic's), `dryRun` to only see the result.
   * @returns The offsets set (or that would be set).
   * @throws {GregorError} GROUP_NOT_EMPTY while members are live, UNKNOWN_TOPIC.
   */
  async resetOffsets(
    group: string,
    topic: string,
    to: "earliest" | "latest" | { offset: number } | { timestamp: number },
    opts: { partitions?: number[]; dryRun?: boolean } = {},
  ): Promise<GroupOffset[]> {
    const [code, value] = typeof to === "string"
      ? [Start[to], 0]
      : "offset" in to
      ? [Start.offset, to.offset]
      : [Start.timestamp, to.timestamp];
    const r = await this.#request<ResetOffsetsResponse>("RESET_OFFSETS", {
      group,
      topic,
      partitions: (opts.partitions ?? []).map((partition) => ({ partition })),
      to: code,
      value,
      dryRun: opts.dryRun ? 1 : 0,
    });
    return r.offsets;
  }

  /**
   * Grows a topic to `count` partitions. Partitions are never removed, and keyed messages sent
   * afterwards may map to other partitions than before (the producer learns the new count within
   * a minute).
   * @throws {GregorError} UNKNOWN_TOPIC, or INVALID_REQUEST if `count` is not more than now.
   */
  async createPartitions(topic: string, count: number): Promise<void> {
    await this.#request("CREATE_PARTITIONS", { name: topic, count });
  }

  /**
   * Repairs damaged partitions of a disk topic on a single broker: each named partition (all if
   * none) is checked batch by batch and cut at its first bad batch. Records from the cut on are
   * dropped, and new records get their offsets again. A partition that checks out is left as it
   * is (its `cutOffset` equals its `endOffset`).
   * @param opts `partitions`: the partitions to repair; all if omitted.
   * @returns What was dropped from each partition: offsets `cutOffset` to `endOffset - 1`.
   * @throws {GregorError} UNKNOWN_TOPIC, UNKNOWN_PARTITION, or INVALID_REQUEST in a cluster.
   * @example
   * ```ts ignore
   * for (const p of await client.admin.repairPartitions("orders")) {
   *   console.log(p.partition, p.cutOffset, p.endOffset);
   * }
   * ```
   */
  async repairPartitions(
    topic: string,
    opts: { partitions?: number[] } = {},
  ): Promise<RepairedPartition[]> {
    const r = await this.#request<RepairPartitionsResponse>("REPAIR_PARTITIONS", {
      name: topic,
      partitions: (opts.partitions ?? []).map((partition) => ({ partition })),
    });
    return r.partitions;
  }

  /**
   * Moves a partition of a replicating cluster to other nodes. Resolves once the controller has
   * accepted the move; it carries on after: the new replicas catch up, then join the partition's
   * group, then the replicas left out delete their copy. `describeTopic` shows the partition
   * `moving` (1) until then, with `replicas` already naming the new ones.
   * @param replicas The node ids to hold the partition, distinct and alive; the first is its
   *   preferred leader.
   * @throws {GregorError} UNKNOWN_TOPIC, UNKNOWN_PARTITION, or INVALID_REQUEST (a node that is not
   *   alive, a node named twice, no nodes, a move already under way, or a single node).
   * @example
   * ```ts ignore
   * await client.admin.reassignPartition("orders", 0, ["node-b", "node-c"]);
   * ```
   */
  async reassignPartition(topic: string, partition: number, replicas: string[]): Promise<void> {
    await this.#request("REASSIGN_PARTITION", {
      name: topic,
      partition,
      replicas: replicas.map((id) => ({ id })),
    });
  }

  /**
   * Hands the leadership of every partition back to its preferred replica (the first of its
   * replicas) where that replica is alive and caught up, now rather than at the next balancing
   * interval. Every live node of the cluster is asked.
   * @returns `moved`: leaderships handed over (each takes effect within a round trip or two);
   *   `waiting`: partitions left where they are for now (their preferred replica is down or
   *   behind); `unreached`: nodes that could not be asked.
   * @throws {GregorError} INVALID_REQUEST on a single node.
   */
  async rebalanceLeaders(): Promise<RebalanceLeadersResponse> {
    return await this.#request<RebalanceLeadersResponse>("REBALANCE_LEADERS", { thisNodeOnly: 0 });
  }

  /**
   * Where the partitions of the named topics (all if none are named) live, and the nodes leading
   * them. A topic that cannot be described carries its error code instead of partitions.
   * @param opts `autoCreate`: create missing topics with the broker's defaults.
   */
  async metadata(
    topics: string[] = [],
    opts: { autoCreate?: boolean } = {},
  ): Promise<MetadataResponse> {
    return await this.#request<MetadataResponse>("METADATA", {
      topics: topics.map((name) => ({ name })),
      autoCreate: opts.autoCreate ? 1 : 0,
    });
  }

  /**
   * Adds a SCRAM-SHA-256 user, or sets a new password for one. The salted keys are derived here;
   * the password never leaves this process. Super-users only, once authentication is on.
   * @param opts `iterations` of PBKDF2 (default 4096); `salt` (default: 16 random bytes).
   * @throws {GregorError} AUTHORIZATION_FAILED if the caller is not a super-user.
   */
  async putUser(
    name: string,
    password: string,
    opts: { iterations?: number; salt?: Uint8Array } = {},
  ): Promise<void> {
    const salt = opts.salt ?? this.#conn.opts.env.random.secureBytes(SALT_BYTES);
    const cred = await deriveCredential(
      this.#conn.opts.env.crypto,
      password,
      salt,
      opts.iterations ?? ITERATIONS_DEFAULT,
    );
    await this.#request("USER_PUT", { name, ...cred });
  }

  /** Removes a user; INVALID_REQUEST if there is none. Super-users only. */
  async deleteUser(name: string): Promise<void> {
    await this.#request("USER_DELETE", { name });
  }

  /** The users (names and iterations; never keys). Super-users only. */
  async listUsers(): Promise<UserInfo[]> {
    return (await this.#request<{ users: UserInfo[] }>("USER_LIST", {})).users;
  }

  /** Adds an ACL entry (adding one that exists changes nothing). Super-users only. */
  async addAcl(entry: AclEntry): Promise<void> {
    await this.#request("ACL_ADD", entry);
  }

  /** Removes an ACL entry; INVALID_REQUEST if there is none. Super-users only. */
  async removeAcl(entry: AclEntry): Promise<void> {
    await this.#request("ACL_REMOVE", entry);
  }

  /** Every ACL entry. Super-users only. */
  async listAcls(): Promise<AclEntry[]> {
    return (await this.#request<{ acls: AclEntry[] }>("ACL_LIST", {})).acls;
  }

  /** Round trip to the broker; resolves when it answered. */
  async ping(): Promise<void> {
    await this.#request("PING", {});
  }
}
