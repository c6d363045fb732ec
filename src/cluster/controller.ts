// The cluster's metadata, replicated by the metadata Raft group ("the controller"): which topics
// exist, their configs, and for each partition the nodes holding its replicas. Every node applies
// the same commands in the same order, so every node agrees on where each partition lives.

import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { type AclEntry, sameAcl } from "../auth/acl.ts";
import type { ReplicatedUser, SecurityChange } from "../broker/control_plane.ts";
import { ACLS_MAX, USERS_MAX } from "../auth/store.ts";
import type { Entry, Snapshot } from "./raft/types.ts";
import type { StateMachine } from "./raft/shell.ts";

/** One topic as the cluster knows it. */
export interface TopicMeta {
  name: string;
  configs: Record<string, string>;
  /** Per partition, the ids of the nodes holding a replica; the first is the preferred leader. */
  replicas: string[][];
  /**
   * Which creation of the name this is: the index of its createTopic entry (set when applied).
   * A topic deleted and created again is another topic, with other Raft groups and logs.
   */
  incarnation?: number;
  /**
   * Per partition, how many times its replicas were reassigned (absent or 0: never). A node that
   * opens a replica of a partition moved before joins its group as a newcomer (the leader adds
   * it), never with the founding voters.
   */
  moves?: number[];
  /** Per partition, true while a reassignment is under way (its leader changes the group). */
  moving?: boolean[];
  /**
   * Per partition moved at least once, the replicas its group was founded with (before the first
   * move `replicas` says it): a founder opens its replica with them, even one that was down when
   * the topic was made, so the group it belongs to can reach a quorum.
   */
  founders?: string[][];
}

/** The replicas partition `p` of `t` was founded with. */
export function foundersOf(t: TopicMeta, p: number): string[] {
  return (t.moves?.[p] ?? 0) === 0 ? t.replicas[p] ?? [] : t.founders?.[p] ?? [];
}

/** True while partition `p` of `t` is being moved to other replicas. */
export function isMoving(t: TopicMeta, p: number): boolean {
  return t.moving?.[p] === true;
}

/** A change to the users or ACLs of the cluster; it applies to 1 if it changed something. */
export type SecurityCommand = SecurityChange;

/** True for the commands that change users or ACLs. */
export function isSecurityCommand(c: MetaCommand): c is SecurityCommand {
  return c.op === "putUser" || c.op === "removeUser" || c.op === "addAcl" ||
    c.op === "removeAcl";
}

/** A change to the metadata. */
export type MetaCommand =
  | SecurityCommand
  | { op: "createTopic"; topic: TopicMeta }
  | { op: "deleteTopic"; name: string }
  | { op: "addPartitions"; name: string; replicas: string[][] }
  | { op: "alterTopic"; name: string; configs: Record<string, string> }
  /** Moves a partition to `replicas` (its leader then changes the group to match). */
  | { op: "reassignPartition"; name: string; partition: number; replicas: string[] }
  /** The group of a partition matches its replicas: the move is done, the others drop theirs. */
  | { op: "partitionMoved"; name: string; partition: number; replicas: string[] }
  | { op: "allocateProducerIds"; count: number }
  /** Changes nothing: once it applies, the leader that proposed it still led (a read barrier). */
  | { op: "barrier" }
  | {
    op: "commitOffsets";
    group: string;
    /** [topic-partition key, offset] pairs. */
    offsets: [string, number][];
    /** A reset sets offsets as given; a commit never moves one backwards. */
    reset?: boolean;
  }
  | {
    op: "commitDurables";
    /**
     * Durable subscriptions' acknowledged offsets: [durable key, offset, incarnation of the topic
     * the acks were taken on]. The key is "topic\0partition\0name", as on a single node.
     */
    offsets: [string, number, number][];
  };

/** Offsets one group may hold at most in the replicated metadata. */
export const META_OFFSETS_PER_GROUP_MAX = 100_000;
/** Committed offsets the whole metadata may hold (they travel in every snapshot). */
export const META_OFFSETS_MAX = 1_000_000;
/** Durable subscriptions the whole metadata may hold (as many as one node may remember). */
export const META_DURABLES_MAX = 100_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Encodes a command as an entry's data. */
export function encodeCommand(c: MetaCommand): Uint8Array {
  return encoder.encode(JSON.stringify(c));
}

/** The metadata state machine. */
export class MetaState implements StateMachine {
  readonly topics = new Map<string, TopicMeta>();
  /** The first producer id not yet handed out in a block. */
  nextProducerId = 0;
  /** Consumer groups' committed offsets: group → topic-partition key → offset. */
  readonly offsets = new Map<string, Map<string, number>>();
  #offsetCount = 0;
  /** Durable subscriptions' acknowledged offsets: "topic\0partition\0name" → offset. */
  readonly durables = new Map<string, number>();
  /** The cluster's users, by name (a node's own users file adds to them). */
  readonly users = new Map<string, ReplicatedUser>();
  /** The cluster's ACL entries, in the order added. */
  acls: AclEntry[] = [];
  /** Told after the state was replaced by a snapshot's image. */
  onRestore: () => void = () => {};
  /** Told of every applied command, after it changed the state. */
  onChange: (c: MetaCommand) => void = () => {};

  /**
   * Applies a command; an allocation returns the first id of its block, a commit of durable
   * offsets the number of new subscriptions it refused for want of room.
   */
  apply(entry: Entry): number | void {
    const c = JSON.parse(decoder.decode(entry.data)) as MetaCommand;
    switch (c.op) {
      case "allocateProducerIds": {
        const first = this.nextProducerId;
        this.nextProducerId += c.count;
        return first;
      }
      case "createTopic":
        if (this.topics.has(c.topic.name)) {
          throw new GregorError(ErrorCode.TOPIC_EXISTS, `Topic ${c.topic.name} already exists`);
        }
        this.topics.set(c.topic.name, { ...structuredClone(c.topic), incarnation: entry.index });
        break;
      case "deleteTopic":
        this.#topic(c.name);
        this.topics.delete(c.name);
        this.#forgetOffsets(c.name);
        this.#forgetDurables(c.name);
        break;
      case "addPartitions":
        this.#topic(c.name).replicas.push(...c.replicas);
        break;
      case "alterTopic":
        Object.assign(this.#topic(c.name).configs, c.configs);
        break;
      case "reassignPartition": {
        const t = this.#topic(c.name);
        const p = this.#partitionOf(t, c.partition);
        const problem = replicasProblem(c.replicas);
        if (problem !== null) {
          throw new GregorError(
            ErrorCode.INVALID_REQUEST,
            `Cannot reassign ${c.name}/${p}: ${problem}`,
          );
        }
        if (isMoving(t, p)) {
          throw new GregorError(
            ErrorCode.INVALID_REQUEST,
            `Cannot reassign ${c.name}/${p}: a move to ${t.replicas[p]!.join(",")} is under way`,
          );
        }
        (t.founders ??= [])[p] ??= [...t.replicas[p]!];
        t.replicas[p] = [...c.replicas];
        (t.moves ??= [])[p] = (t.moves[p] ?? 0) + 1;
        (t.moving ??= [])[p] = true;
        break;
      }
      case "partitionMoved": {
        const t = this.#topic(c.name);
        const p = this.#partitionOf(t, c.partition);
        // Only the move it reports: a later reassignment of the partition is still under way.
        if (t.replicas[p]!.join(",") === c.replicas.join(",") && t.moving !== undefined) {
          t.moving[p] = false;
        }
        break;
      }
      case "commitOffsets":
        this.#commitOffsets(c.group, c.offsets, c.reset === true);
        break;
      case "commitDurables": {
        const refused = this.#commitDurables(c.offsets);
        this.onChange(c);
        return refused;
      }
      case "barrier":
        return;
      case "putUser":
      case "removeUser":
      case "addAcl":
      case "removeAcl": {
        const changed = this.#security(c);
        if (changed === 1) this.onChange(c);
        return changed;
      }
      default:
        throw new GregorError(ErrorCode.INTERNAL, `Unknown metadata command`);
    }
    this.onChange(c);
  }

  #partitionOf(t: TopicMeta, p: number): number {
    if (!Number.isInteger(p) || p < 0 || p >= t.replicas.length) {
      throw new GregorError(
        ErrorCode.UNKNOWN_PARTITION,
        `Topic ${t.name} has no partition ${p} (it has ${t.replicas.length})`,
      );
    }
    return p;
  }

  /** Applies a change of users or ACLs: 1 if it changed something, else 0. */
  #security(c: SecurityCommand): number {
    switch (c.op) {
      case "putUser":
        if (!this.users.has(c.name) && this.users.size >= USERS_MAX) {
          throw new GregorError(
            ErrorCode.INVALID_REQUEST,
            `the user limit of ${USERS_MAX} is reached`,
          );
        }
        this.users.set(c.name, { ...c.user });
        return 1;
      case "removeUser":
        return this.users.delete(c.name) ? 1 : 0;
      case "addAcl":
        if (this.acls.some((a) => sameAcl(a, c.acl))) return 0;
        if (this.acls.length >= ACLS_MAX) {
          throw new GregorError(
            ErrorCode.INVALID_REQUEST,
            `the ACL limit of ${ACLS_MAX} entries is reached`,
          );
        }
        this.acls = [...this.acls, { ...c.acl }];
        return 1;
      case "removeAcl": {
        const next = this.acls.filter((a) => !sameAcl(a, c.acl));
        if (next.length === this.acls.length) return 0;
        this.acls = next;
        return 1;
      }
    }
  }

  #topic(name: string): TopicMeta {
    const t = this.topics.get(name);
    if (t === undefined) {
      throw new GregorError(ErrorCode.UNKNOWN_TOPIC, `Topic ${name} does not exist`);
    }
    return t;
  }

  /**
   * Applies a group's commit. The same entry applies identically everywhere: limits are checked
   * against the replicated state, and a commit keeps the larger of the stored and the new offset
   * (a commit that raced a newer one, e.g. from a coordinator that lost its leadership, loses).
   */
  #commitOffsets(group: string, offsets: [string, number][], reset: boolean): void {
    const stored = this.offsets.get(group) ?? new Map<string, number>();
    const added = new Set(offsets.map(([k]) => k).filter((k) => !stored.has(k))).size;
    if (
      stored.size + added > META_OFFSETS_PER_GROUP_MAX ||
      this.#offsetCount + added > META_OFFSETS_MAX
    ) {
      throw new GregorError(
        ErrorCode.LIMIT_EXCEEDED,
        `Group ${group} would hold ${stored.size + added} offsets (at most ` +
          `${META_OFFSETS_PER_GROUP_MAX}; the cluster holds ${this.#offsetCount} of ${META_OFFSETS_MAX})`,
      );
    }
    for (const [key, offset] of offsets) {
      const before = stored.get(key);
      stored.set(key, reset || before === undefined ? offset : Math.max(before, offset));
    }
    this.#offsetCount += added;
    if (stored.size > 0) this.offsets.set(group, stored);
  }

  /**
   * Applies durable subscriptions' acks, each only to the creation of its topic it was taken on
   * (an ack that raced the topic's deletion must not reach the next topic of that name), never
   * moving an offset back (acks forwarded from several nodes may arrive in any order). New
   * subscriptions past META_DURABLES_MAX are refused (the subscribe checked for room); returns how
   * many were. Nobody waits on these: the node that took the acks commits them again later.
   */
  #commitDurables(offsets: [string, number, number][]): number {
    let refused = 0;
    for (const [key, offset, incarnation] of offsets) {
      const parts = key.split("\u0000");
      if (parts.length !== 3 || this.topics.get(parts[0]!)?.incarnation !== incarnation) continue;
      const before = this.durables.get(key);
      if (before === undefined && this.durables.size >= META_DURABLES_MAX) {
        refused++;
        continue;
      }
      this.durables.set(key, before === undefined ? offset : Math.max(before, offset));
    }
    return refused;
  }

  /** Drops a deleted topic's durable subscriptions. */
  #forgetDurables(topic: string): void {
    const prefix = `${topic}\u0000`;
    for (const key of [...this.durables.keys()]) {
      if (key.startsWith(prefix)) this.durables.delete(key);
    }
  }

  /** Drops a deleted topic's offsets from every group. */
  #forgetOffsets(topic: string): void {
    const prefix = `${topic}\u0000`;
    for (const [group, stored] of this.offsets) {
      for (const key of [...stored.keys()]) {
        if (!key.startsWith(prefix)) continue;
        stored.delete(key);
        this.#offsetCount--;
      }
      if (stored.size === 0) this.offsets.delete(group);
    }
  }

  /** The whole state, for a snapshot. */
  image(): Uint8Array {
    return encoder.encode(JSON.stringify({
      topics: [...this.topics.values()],
      nextProducerId: this.nextProducerId,
      offsets: [...this.offsets].map(([group, stored]) => [group, [...stored]]),
      durables: [...this.durables],
      users: [...this.users],
      acls: this.acls,
    }));
  }

  restore(snapshot: Snapshot): void {
    this.topics.clear();
    this.nextProducerId = 0;
    this.offsets.clear();
    this.#offsetCount = 0;
    this.durables.clear();
    this.users.clear();
    this.acls = [];
    if (snapshot.data.length === 0) {
      this.onRestore();
      return;
    }
    const image = JSON.parse(decoder.decode(snapshot.data)) as {
      topics: TopicMeta[];
      nextProducerId: number;
      /** Absent in images written before groups were replicated. */
      offsets?: [string, [string, number][]][];
      /** Absent in images written before durable subscriptions were replicated. */
      durables?: [string, number][];
      /** Absent in images written before users and ACLs were replicated. */
      users?: [string, ReplicatedUser][];
      acls?: AclEntry[];
    };
    for (const t of image.topics) this.topics.set(t.name, t);
    this.nextProducerId = image.nextProducerId;
    for (const [group, stored] of image.offsets ?? []) {
      this.offsets.set(group, new Map(stored));
      this.#offsetCount += stored.length;
    }
    for (const [key, offset] of image.durables ?? []) this.durables.set(key, offset);
    for (const [name, user] of image.users ?? []) this.users.set(name, user);
    this.acls = image.acls ?? [];
    this.onRestore();
  }
}

/** Why `replicas` cannot be a partition's replicas, or null. */
export function replicasProblem(replicas: readonly string[]): string | null {
  if (replicas.length === 0) return "no replicas given";
  if (new Set(replicas).size !== replicas.length) {
    return `a node is named twice (${replicas.join(",")})`;
  }
  if (replicas.some((r) => typeof r !== "string" || r === "")) return "an empty node id";
  return null;
}

/**
 * Why partition `partition` of topic `name` (`t`, undefined if there is none) cannot be moved to
 * `replicas` by an operator now, as the error to answer, or null if it can. `live`: the cluster's
 * members that are alive (a replica on a node that is down or unknown could never catch up).
 */
export function reassignProblem(
  name: string,
  t: TopicMeta | undefined,
  move: { partition: number; replicas: readonly string[]; live: readonly string[] },
): GregorError | null {
  if (t === undefined) {
    return new GregorError(ErrorCode.UNKNOWN_TOPIC, `Topic ${name} does not exist`);
  }
  const p = move.partition;
  if (!Number.isInteger(p) || p < 0 || p >= t.replicas.length) {
    return new GregorError(
      ErrorCode.UNKNOWN_PARTITION,
      `Topic ${name} has no partition ${p} (it has ${t.replicas.length})`,
    );
  }
  const refuse = (why: string) =>
    new GregorError(ErrorCode.INVALID_REQUEST, `Cannot reassign ${name}/${p}: ${why}`);
  const problem = replicasProblem(move.replicas);
  if (problem !== null) return refuse(problem);
  const live = [...move.live].sort();
  if (move.replicas.length > live.length) {
    return refuse(
      `${move.replicas.length} replicas named but only ${live.length} nodes are alive ` +
        `(${live.join(", ")})`,
    );
  }
  const unknown = move.replicas.filter((id) => !live.includes(id));
  if (unknown.length > 0) {
    return refuse(
      `${unknown.join(", ")} ${
        unknown.length === 1 ? "is not a live node" : "are not live nodes"
      }` +
        ` of the cluster (alive: ${live.join(", ")})`,
    );
  }
  if (isMoving(t, p)) {
    return refuse(`a move to ${t.replicas[p]!.join(",")} is under way; wait until it is done`);
  }
  if (t.replicas[p]!.join(",") === move.replicas.join(",")) {
    return refuse(`its replicas are ${move.replicas.join(",")} already`);
  }
  return null;
}

/**
 * Places `count` partitions' replicas on `nodes` (sorted ids of live nodes): `factor` distinct
 * nodes each, spread round-robin from `start` so leaders (the first replica) spread too.
 */
export function placeReplicas(
  nodes: readonly string[],
  count: number,
  factor: number,
  start: number,
): string[][] {
  const sorted = [...nodes].sort();
  const rf = Math.min(factor, sorted.length);
  const out: string[][] = [];
  for (let p = 0; p < count; p++) {
    const replicas: string[] = [];
    for (let r = 0; r < rf; r++) replicas.push(sorted[(start + p + r) % sorted.length]!);
    out.push(replicas);
  }
  return out;
}
