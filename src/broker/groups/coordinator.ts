// The consumer-group coordinator: membership, generations, and cooperative (incremental)
// rebalancing, as a synchronous state machine with time passed in. It does no I/O; committed
// offsets live in offset_store.ts and the broker glues the two (groups.ts).
//
// How a rebalance goes. Every change of membership, of a member's subscription or of a subscribed
// topic's partition count starts a new generation and computes a new target assignment. A
// partition is granted to its target member only while no other member owns it; a member told it
// no longer owns a partition stops consuming it, commits, and says so in its next heartbeat, which
// frees the partition for its new owner. Partitions that do not move keep flowing throughout.
// So at any moment, and so in any generation, a partition has at most one owner.

import { ErrorCode, GregorError } from "../../protocol/errors.ts";
import type {
  GroupHeartbeatRequest,
  GroupHeartbeatResponse,
  GroupMemberInfo,
  GroupSummary,
  TopicPartition,
} from "../../protocol/messages.ts";
import { type Assignment, ASSIGNORS, DEFAULT_ASSIGNOR, parseTpKey, tpKey } from "./assignors.ts";

/** Coordinator limits and timings. */
export interface CoordinatorOptions {
  /** How often members should heartbeat when nothing is moving, ms. */
  heartbeatIntervalMs: number;
  /** How often a member still waiting for partitions (or holding revoked ones) should, ms. */
  reconcileIntervalMs: number;
  sessionTimeoutMsMin: number;
  sessionTimeoutMsMax: number;
  /** Groups with members at most (groups with only offsets do not count). */
  groupsMax: number;
  membersPerGroupMax: number;
  /** Topics one member may subscribe to at most. */
  topicsPerMemberMax: number;
}

export const DEFAULT_COORDINATOR_OPTIONS: CoordinatorOptions = {
  heartbeatIntervalMs: 1000,
  reconcileIntervalMs: 50,
  sessionTimeoutMsMin: 1000,
  sessionTimeoutMsMax: 300_000,
  groupsMax: 10_000,
  membersPerGroupMax: 1000,
  topicsPerMemberMax: 1000,
};

/** Why a member lost a partition. */
export type ReleaseReason = "revoked" | "left" | "expired" | "fenced";

/** What the coordinator tells its observers (metrics, the simulator's checkers). */
export interface CoordinatorEvents {
  granted(group: string, generation: number, memberId: string, tp: TopicPartition): void;
  released(
    group: string,
    generation: number,
    memberId: string,
    tp: TopicPartition,
    reason: ReleaseReason,
  ): void;
  newGeneration(group: string, generation: number, members: number): void;
}

const NO_EVENTS: CoordinatorEvents = {
  granted: () => {},
  released: () => {},
  newGeneration: () => {},
};

interface Member {
  id: string;
  instanceId: string;
  clientId: string;
  topics: string[];
  sessionTimeoutMs: number;
  lastSeenMs: number;
  /** The group generation this member last heard. */
  generation: number;
}

interface Group {
  name: string;
  generation: number;
  assignor: string;
  members: Map<string, Member>;
  /** Where each partition should be in this generation. */
  target: Assignment;
  /** Who owns each partition now ("topic\0partition" → member id). */
  owner: Map<string, string>;
  /** Partition counts of the subscribed topics when the target was computed. */
  shape: string;
}

/** Member ids replaced by a static member's new incarnation, remembered at most. */
const FENCED_REMEMBERED_MAX = 10_000;
/** Emptied groups whose last generation is remembered, at most. */
const EMPTY_GROUPS_REMEMBERED_MAX = 10_000;

/** Consumer-group membership and assignment. */
export class GroupCoordinator {
  readonly opts: Readonly<CoordinatorOptions>;
  readonly #groups = new Map<string, Group>();
  readonly #partitionsOf: (topic: string) => number;
  readonly #newMemberId: (clientId: string) => string;
  /** Member ids fenced by a static member's restart → the instance id. */
  readonly #fenced = new Map<string, string>();
  /** The last generation of groups that emptied and were forgotten. */
  readonly #lastGeneration = new Map<string, number>();
  /** Generations of groups created from now on start here (see `restart`). */
  #generationBase = 0;
  events: CoordinatorEvents = NO_EVENTS;

  constructor(
    opts: Partial<CoordinatorOptions>,
    partitionsOf: (topic: string) => number,
    newMemberId: (clientId: string) => string,
  ) {
    this.opts = { ...DEFAULT_COORDINATOR_OPTIONS, ...opts };
    this.#partitionsOf = partitionsOf;
    this.#newMemberId = newMemberId;
  }

  /** Joins, stays in, and reconciles: the one request a live member sends. */
  heartbeat(req: GroupHeartbeatRequest, clientId: string, nowMs: number): GroupHeartbeatResponse {
    this.#checkRequest(req);
    let group = this.#groups.get(req.group);
    let member: Member;
    if (req.memberId === "") {
      // An empty group counts against groupsMax again once someone joins it.
      if ((group?.members.size ?? 0) === 0) this.#checkGroupsMax();
      group ??= this.#newGroup(req.group, req.assignor);
      member = this.#join(group, req, clientId, nowMs);
    } else {
      member = this.#member(group, req.group, req.memberId);
      group = group as Group;
      member.lastSeenMs = nowMs;
      const topics = uniqueSorted(req.topics.map((t) => t.name));
      if (topics.join("\u0000") !== member.topics.join("\u0000")) {
        member.topics = topics;
        this.#bump(group);
      }
    }
    if (this.#shape(group) !== group.shape) this.#bump(group);
    // `owned` is only trusted from a member that heard our last answer: a request built before it
    // (a retry after a lost response) would omit partitions just granted and so release them.
    if (req.generation === member.generation) this.#releaseUnowned(group, member, req.owned);
    this.#grant(group, member);
    member.generation = group.generation;
    const assigned: TopicPartition[] = [];
    let pending = 0;
    for (const key of group.target.get(member.id) ?? []) {
      if (group.owner.get(key) === member.id) assigned.push(parseTpKey(key));
      else pending++;
    }
    const revoking = req.owned.some((tp) =>
      group.owner.get(tpKey(tp.topic, tp.partition)) === member.id &&
      !group.target.get(member.id)?.has(tpKey(tp.topic, tp.partition))
    );
    return {
      memberId: member.id,
      generation: group.generation,
      heartbeatIntervalMs: pending > 0 || revoking
        ? this.opts.reconcileIntervalMs
        : this.opts.heartbeatIntervalMs,
      assigned,
      pending,
    };
  }

  /** A member leaves: its partitions are free at once and the others rebalance. */
  leave(groupName: string, memberId: string): void {
    const group = this.#groups.get(groupName);
    this.#member(group, groupName, memberId);
    this.#remove(group as Group, memberId, "left");
  }

  /**
   * Forgets every member, as a coordinator that just took over (or gave up) the role. Groups
   * created afterwards number their generations from `generationBase`, which the caller makes
   * larger than any generation an earlier coordinator could have handed out, so a generation
   * names one coordinator's view of a group and no other.
   */
  restart(generationBase: number): void {
    this.#groups.clear();
    this.#fenced.clear();
    this.#lastGeneration.clear();
    this.#generationBase = generationBase;
  }

  /** Removes members silent for longer than their session timeout; returns how many. */
  expire(nowMs: number): number {
    let removed = 0;
    for (const group of this.#groups.values()) {
      for (const m of [...group.members.values()]) {
        if (nowMs - m.lastSeenMs > m.sessionTimeoutMs) {
          this.#remove(group, m.id, "expired");
          removed++;
        }
      }
    }
    return removed;
  }

  /**
   * Throws unless `memberId` is in the group at `generation` and owns every partition in `tps`:
   * the fence that keeps a stale or zombie member from committing.
   */
  checkOwner(
    groupName: string,
    memberId: string,
    generation: number,
    tps: readonly TopicPartition[],
  ): void {
    const group = this.#groups.get(groupName);
    this.#member(group, groupName, memberId);
    const g = group as Group;
    const member = g.members.get(memberId)!;
    // The member's generation, not the group's: a member that has not yet heard of a newer
    // generation still commits what it owns; ownership is the fence that matters.
    if (generation !== member.generation) {
      throw new GregorError(
        ErrorCode.STALE_GENERATION,
        `Member ${memberId} of group ${groupName} is at generation ${member.generation}, not ` +
          `${generation}; heartbeat first`,
      );
    }
    for (const tp of tps) {
      if (g.owner.get(tpKey(tp.topic, tp.partition)) !== memberId) {
        throw new GregorError(
          ErrorCode.STALE_GENERATION,
          `Member ${memberId} does not own ${tp.topic}/${tp.partition} in generation ${generation}`,
        );
      }
    }
  }

  /** True if the group has no members (offsets may be reset). */
  isEmpty(groupName: string): boolean {
    return (this.#groups.get(groupName)?.members.size ?? 0) === 0;
  }

  /** Every group with members. */
  list(): GroupSummary[] {
    return [...this.#groups.values()].filter((g) => g.members.size > 0).map((g) => ({
      group: g.name,
      state: stateOf(g),
      members: g.members.size,
      generation: g.generation,
    }));
  }

  /** A group's members and what each owns, or null if it has no members. */
  describe(
    groupName: string,
  ): { state: string; generation: number; assignor: string; members: GroupMemberInfo[] } | null {
    const g = this.#groups.get(groupName);
    if (g === undefined) return null;
    const owned = new Map<string, TopicPartition[]>();
    for (const [key, id] of g.owner) {
      const list = owned.get(id) ?? [];
      list.push(parseTpKey(key));
      owned.set(id, list);
    }
    return {
      state: stateOf(g),
      generation: g.generation,
      assignor: g.assignor,
      members: [...g.members.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((m) => ({
        memberId: m.id,
        instanceId: m.instanceId,
        clientId: m.clientId,
        generation: m.generation,
        assigned: (owned.get(m.id) ?? []).sort(byTopicPartition),
      })),
    };
  }

  // --- Internals ---------------------------------------------------------------------------

  #checkRequest(req: GroupHeartbeatRequest): void {
    checkGroupName(req.group);
    const o = this.opts;
    if (
      req.sessionTimeoutMs < o.sessionTimeoutMsMin || req.sessionTimeoutMs > o.sessionTimeoutMsMax
    ) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `Session timeout ${req.sessionTimeoutMs} ms is outside ${o.sessionTimeoutMsMin}..${o.sessionTimeoutMsMax}`,
      );
    }
    if (req.assignor !== "" && ASSIGNORS[req.assignor] === undefined) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `Unknown assignor ${JSON.stringify(req.assignor)}; known: ${
          Object.keys(ASSIGNORS).join(", ")
        }`,
      );
    }
    if (req.topics.length === 0 || req.topics.length > o.topicsPerMemberMax) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `A member subscribes to 1..${o.topicsPerMemberMax} topics, not ${req.topics.length}`,
      );
    }
  }

  #checkGroupsMax(): void {
    const active = [...this.#groups.values()].filter((g) => g.members.size > 0).length;
    if (active >= this.opts.groupsMax) {
      throw new GregorError(
        ErrorCode.LIMIT_EXCEEDED,
        `Group limit of ${this.opts.groupsMax} reached`,
      );
    }
  }

  #newGroup(name: string, assignor: string): Group {
    const g: Group = {
      name,
      generation: this.#lastGeneration.get(name) ?? this.#generationBase,
      assignor: assignor === "" ? DEFAULT_ASSIGNOR : assignor,
      members: new Map(),
      target: new Map(),
      owner: new Map(),
      shape: "",
    };
    this.#groups.set(name, g);
    return g;
  }

  #member(group: Group | undefined, groupName: string, memberId: string): Member {
    const m = group?.members.get(memberId);
    if (m !== undefined) return m;
    const instance = this.#fenced.get(memberId);
    if (instance !== undefined) {
      throw new GregorError(
        ErrorCode.FENCED_INSTANCE,
        `Member ${memberId} was replaced by a newer process with instance id ${instance}`,
      );
    }
    throw new GregorError(
      ErrorCode.UNKNOWN_MEMBER,
      `Group ${groupName} has no member ${memberId} (it left or its session expired); join again`,
    );
  }

  #join(group: Group, req: GroupHeartbeatRequest, clientId: string, nowMs: number): Member {
    if (group.members.size === 0 && req.assignor !== "") group.assignor = req.assignor;
    const member: Member = {
      id: this.#newMemberId(clientId),
      instanceId: req.instanceId,
      clientId,
      topics: uniqueSorted(req.topics.map((t) => t.name)),
      sessionTimeoutMs: req.sessionTimeoutMs,
      lastSeenMs: nowMs,
      generation: -1,
    };
    const previous = req.instanceId === ""
      ? undefined
      : [...group.members.values()].find((m) => m.instanceId === req.instanceId);
    if (previous !== undefined) {
      // Static membership: the new process takes the old one's place and partitions; the old
      // member id is fenced. The generation moves on (so the old one's commits are refused) but
      // the target assignment is kept: nothing moves.
      this.#rememberFenced(previous.id, req.instanceId);
      group.members.delete(previous.id);
      group.members.set(member.id, member);
      const target = group.target.get(previous.id) ?? new Set<string>();
      group.target.delete(previous.id);
      group.target.set(member.id, target);
      for (const [key, id] of group.owner) {
        if (id !== previous.id) continue;
        const tp = parseTpKey(key);
        this.events.released(group.name, group.generation, previous.id, tp, "fenced");
        group.owner.delete(key);
      }
      const sameTopics = previous.topics.join("\u0000") === member.topics.join("\u0000");
      group.generation++;
      this.events.newGeneration(group.name, group.generation, group.members.size);
      if (!sameTopics) this.#retarget(group);
      return member;
    }
    if (group.members.size >= this.opts.membersPerGroupMax) {
      throw new GregorError(
        ErrorCode.LIMIT_EXCEEDED,
        `Group ${group.name} has ${group.members.size} members, the limit`,
      );
    }
    group.members.set(member.id, member);
    this.#bump(group);
    return member;
  }

  #rememberFenced(memberId: string, instanceId: string): void {
    this.#fenced.set(memberId, instanceId);
    if (this.#fenced.size > FENCED_REMEMBERED_MAX) {
      this.#fenced.delete(this.#fenced.keys().next().value as string);
    }
  }

  #remove(group: Group, memberId: string, reason: ReleaseReason): void {
    for (const [key, id] of group.owner) {
      if (id !== memberId) continue;
      group.owner.delete(key);
      this.events.released(group.name, group.generation, memberId, parseTpKey(key), reason);
    }
    group.members.delete(memberId);
    group.target.delete(memberId);
    this.#bump(group);
    if (group.members.size === 0) {
      // Forget the empty group, but not its generation: a later one continues the count.
      this.#groups.delete(group.name);
      this.#lastGeneration.set(group.name, group.generation);
      if (this.#lastGeneration.size > EMPTY_GROUPS_REMEMBERED_MAX) {
        this.#lastGeneration.delete(this.#lastGeneration.keys().next().value as string);
      }
    }
  }

  /** A new generation with a new target assignment. */
  #bump(group: Group): void {
    group.generation++;
    this.events.newGeneration(group.name, group.generation, group.members.size);
    this.#retarget(group);
  }

  #retarget(group: Group): void {
    group.shape = this.#shape(group);
    const assignor = ASSIGNORS[group.assignor] ?? ASSIGNORS[DEFAULT_ASSIGNOR]!;
    const members = [...group.members.values()].map((m) => ({ id: m.id, topics: m.topics }));
    // The assignor keeps partitions where they are now (owners), not where they were headed.
    const current: Assignment = new Map(members.map((m) => [m.id, new Set<string>()]));
    for (const [key, id] of group.owner) current.get(id)?.add(key);
    group.target = assignor(members, this.#partitionsOf, current);
  }

  /** Partition counts of every topic the group subscribes to. */
  #shape(group: Group): string {
    const topics = new Set<string>();
    for (const m of group.members.values()) for (const t of m.topics) topics.add(t);
    return [...topics].sort().map((t) => `${t}:${this.#partitionsOf(t)}`).join(",");
  }

  /** Frees the partitions the coordinator thinks `member` owns but it says it does not. */
  #releaseUnowned(group: Group, member: Member, owned: readonly TopicPartition[]): void {
    const says = new Set(owned.map((tp) => tpKey(tp.topic, tp.partition)));
    for (const [key, id] of group.owner) {
      if (id !== member.id || says.has(key)) continue;
      if (group.target.get(member.id)?.has(key)) continue; // granted, not yet heard of
      group.owner.delete(key);
      this.events.released(group.name, group.generation, member.id, parseTpKey(key), "revoked");
    }
  }

  /** Grants `member` every partition of its target that nobody owns. */
  #grant(group: Group, member: Member): void {
    for (const key of group.target.get(member.id) ?? []) {
      if (group.owner.has(key)) continue;
      group.owner.set(key, member.id);
      this.events.granted(group.name, group.generation, member.id, parseTpKey(key));
    }
  }
}

function stateOf(g: Group): string {
  if (g.members.size === 0) return "empty";
  for (const [id, keys] of g.target) {
    for (const key of keys) if (g.owner.get(key) !== id) return "reconciling";
  }
  return "stable";
}

function uniqueSorted(xs: string[]): string[] {
  return [...new Set(xs)].sort();
}

function byTopicPartition(a: TopicPartition, b: TopicPartition): number {
  return a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition;
}

/** Longest group name, in characters. */
export const GROUP_NAME_CHARS_MAX = 200;
const GROUP_NAME = /^[A-Za-z0-9._-]+$/;

/** Throws INVALID_REQUEST unless `name` is a legal group name (it names a file). */
export function checkGroupName(name: string): void {
  if (
    name.length === 0 || name.length > GROUP_NAME_CHARS_MAX || !GROUP_NAME.test(name) ||
    name === "." || name === ".."
  ) {
    throw new GregorError(
      ErrorCode.INVALID_REQUEST,
      `Invalid group name ${
        JSON.stringify(name)
      }: use 1 to ${GROUP_NAME_CHARS_MAX} of A-Z a-z 0-9 . _ - (not "." or "..")`,
    );
  }
}
