// Consumer groups as the broker serves them: the coordinator (membership and assignment) joined to
// the offset store (durable commits), plus offset fetch, reset and lag.

import type { Env } from "../../io/types.ts";
import { ErrorCode, GregorError } from "../../protocol/errors.ts";
import {
  type DescribeGroupResponse,
  type GroupHeartbeatRequest,
  type GroupHeartbeatResponse,
  type GroupLeaveRequest,
  type GroupOffset,
  type ListGroupsResponse,
  type OffsetCommitRequest,
  type OffsetFetchRequest,
  type OffsetFetchResponse,
  type ResetOffsetsRequest,
  type ResetOffsetsResponse,
  Start,
} from "../../protocol/messages.ts";
import type { Log } from "../../storage/mod.ts";
import { parseTpKey, tpKey } from "./assignors.ts";
import { checkGroupName, type CoordinatorOptions, GroupCoordinator } from "./coordinator.ts";
import { type OffsetBackend, OffsetStore } from "./offset_store.ts";

/** What groups need to know of the broker's topics. */
export interface GroupTopics {
  /** Partitions of `topic`, 0 if it does not exist. */
  partitionsOf(topic: string): number;
  /** The log of one partition, or null if there is none here. */
  log(topic: string, partition: number): Log | null;
  /**
   * True if the partition exists but its log lives on other nodes (in a cluster): commits to it
   * are not checked against its end, and its end is reported as -1 (unknown here).
   */
  remote?(topic: string, partition: number): boolean;
  /**
   * False when a local log may lag the partition (a follower replica in a cluster): a commit is
   * then not checked against its end, which a consumer reading from the leader may be past.
   */
  endsExact?(): boolean;
}

/**
 * How long a coordinator that just took over refuses resets, ms: it has forgotten the members,
 * and one still consuming may not have heard of it yet. The clients' default session timeout: a
 * member silent that long is gone for any coordinator.
 */
export const RESET_SETTLE_MS = 10_000;

/** Commit entries one request may carry at most. */
export const COMMIT_OFFSETS_MAX = 10_000;

/** The broker's consumer groups. */
export class Groups {
  readonly coordinator: GroupCoordinator;
  #store: OffsetBackend;
  readonly #topics: GroupTopics;
  readonly #env: Env;
  /** Told of each commit that passed the ownership fence, before it is written (for checkers). */
  onCommit: (req: OffsetCommitRequest) => void = () => {};
  /** Told of each commit the fence refused (stale generation, not the owner, unknown member). */
  onCommitRefused: (req: OffsetCommitRequest, err: unknown) => void = () => {};

  constructor(
    env: Env,
    dataDir: string,
    topics: GroupTopics,
    opts: Partial<CoordinatorOptions> = {},
  ) {
    this.#env = env;
    this.#topics = topics;
    this.#store = new OffsetStore(env, dataDir);
    let next = 0;
    this.coordinator = new GroupCoordinator(
      opts,
      (t) => topics.partitionsOf(t),
      (clientId) => {
        const tag = env.random.u32().toString(16).padStart(8, "0");
        return `${clientId === "" ? "member" : clientId}-${(++next).toString(36)}-${tag}`;
      },
    );
  }

  /** When this node took over as coordinator (in a cluster), or null. */
  #inOfficeSinceMs: number | null = null;

  /**
   * This node takes over (or gives up) coordinating, in a cluster: every member is forgotten, and
   * generations start at `generationBase` (see GroupCoordinator.restart).
   */
  restartCoordinator(generationBase: number): void {
    this.coordinator.restart(generationBase);
    this.#inOfficeSinceMs = this.#env.clock.now();
  }

  /** Loads committed offsets (at start). */
  load(): Promise<void> {
    return this.#store.load();
  }

  /**
   * Keeps offsets in `backend` from now on (a clustered broker's replicated metadata). Offsets
   * this node committed on its own disk before are left there, unread.
   */
  useBackend(backend: OffsetBackend): void {
    this.#store = backend;
  }

  heartbeat(req: GroupHeartbeatRequest, clientId: string): GroupHeartbeatResponse {
    return this.coordinator.heartbeat(req, clientId, this.#env.clock.now());
  }

  leave(req: GroupLeaveRequest): void {
    this.coordinator.leave(req.group, req.memberId);
  }

  /** Removes members whose sessions expired. */
  expire(): number {
    return this.coordinator.expire(this.#env.clock.now());
  }

  /**
   * Commits offsets of partitions the member owns in the current generation, durably. A commit
   * never moves an offset backwards (that takes RESET_OFFSETS on an empty group) nor past the
   * partition's end.
   */
  async commit(req: OffsetCommitRequest): Promise<void> {
    if (req.offsets.length > COMMIT_OFFSETS_MAX) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `A commit carries at most ${COMMIT_OFFSETS_MAX} offsets, not ${req.offsets.length}`,
      );
    }
    try {
      this.coordinator.checkOwner(req.group, req.memberId, req.generation, req.offsets);
    } catch (err) {
      this.onCommitRefused(req, err);
      throw err;
    }
    const entries: [string, number][] = [];
    for (const o of req.offsets) {
      const key = tpKey(o.topic, o.partition);
      const log = this.#topics.log(o.topic, o.partition);
      const remote = log === null && this.#topics.remote?.(o.topic, o.partition) === true;
      if (log === null && !remote) {
        throw new GregorError(
          ErrorCode.UNKNOWN_PARTITION,
          `Topic ${o.topic} has no partition ${o.partition}`,
        );
      }
      // A partition held on other nodes, or a replica that may lag its leader: its end is not
      // known here, only that offsets are >= 0.
      const exact = log !== null && (this.#topics.endsExact?.() ?? true);
      const end = exact ? log.nextOffset : Number.MAX_SAFE_INTEGER;
      const before = this.#store.latest(req.group, key) ?? -1;
      if (!Number.isSafeInteger(o.offset) || o.offset < 0 || o.offset > end) {
        throw new GregorError(
          ErrorCode.INVALID_OFFSET,
          `Offset ${o.offset} for ${o.topic}/${o.partition} is outside 0..${end}`,
        );
      }
      if (o.offset < before) {
        throw new GregorError(
          ErrorCode.INVALID_OFFSET,
          `Group ${req.group} committed ${before} for ${o.topic}/${o.partition}; a commit never ` +
            `moves back to ${o.offset} (reset the offsets of the empty group instead)`,
        );
      }
      entries.push([key, o.offset]);
    }
    this.onCommit(req);
    await this.#durably(() => this.#store.commit(req.group, entries, false));
  }

  /** Committed offsets with each partition's end (lag = end - offset). */
  fetch(req: OffsetFetchRequest): OffsetFetchResponse {
    checkGroupName(req.group);
    const keys = req.partitions.length > 0
      ? req.partitions.map((tp) => tpKey(tp.topic, tp.partition))
      : this.#store.entries(req.group).map(([k]) => k).sort();
    return { offsets: keys.map((k) => this.#offsetOf(req.group, k)) };
  }

  #offsetOf(group: string, key: string): GroupOffset {
    const { topic, partition } = parseTpKey(key);
    return {
      topic,
      partition,
      offset: this.#store.get(group, key) ?? -1,
      highWatermark: this.#topics.log(topic, partition)?.nextOffset ?? -1,
    };
  }

  /** Every group's committed offsets with their partitions' ends (for lag metrics). */
  allOffsets(): (GroupOffset & { group: string })[] {
    return this.#store.groups().flatMap((group) =>
      this.#store.entries(group).map(([k]) => ({ group, ...this.#offsetOf(group, k) }))
    );
  }

  list(): ListGroupsResponse {
    const live = this.coordinator.list();
    const names = new Set(live.map((g) => g.group));
    const idle = this.#store.groups().filter((g) => !names.has(g)).map((group) => ({
      group,
      state: "empty",
      members: 0,
      generation: 0,
    }));
    const groups = [...live, ...idle].sort((a, b) => (a.group < b.group ? -1 : 1));
    return { groups };
  }

  describe(group: string): DescribeGroupResponse {
    checkGroupName(group);
    const d = this.coordinator.describe(group);
    const offsets = this.#store.entries(group).map(([k]) => k).sort().map((k) =>
      this.#offsetOf(group, k)
    );
    if (d === null && offsets.length === 0) {
      throw new GregorError(ErrorCode.INVALID_REQUEST, `Group ${group} does not exist`);
    }
    return {
      group,
      state: d?.state ?? "empty",
      generation: d?.generation ?? 0,
      assignor: d?.assignor ?? "",
      members: d?.members ?? [],
      offsets,
    };
  }

  /** Moves an empty group's offsets on a topic (all partitions, or the named ones). */
  async reset(req: ResetOffsetsRequest): Promise<ResetOffsetsResponse> {
    checkGroupName(req.group);
    const inOfficeMs = this.#env.clock.now() - (this.#inOfficeSinceMs ?? -Infinity);
    if (inOfficeMs < RESET_SETTLE_MS) {
      throw new GregorError(
        ErrorCode.GROUP_NOT_EMPTY,
        `The group coordinator took over ${Math.round(inOfficeMs)} ms ago and cannot yet tell ` +
          `whether group ${req.group} has live members; retry in ${
            Math.ceil((RESET_SETTLE_MS - inOfficeMs) / 1000)
          } s`,
      );
    }
    if (!this.coordinator.isEmpty(req.group)) {
      throw new GregorError(
        ErrorCode.GROUP_NOT_EMPTY,
        `Group ${req.group} has live members; stop them before resetting its offsets`,
      );
    }
    const count = this.#topics.partitionsOf(req.topic);
    if (count === 0) {
      throw new GregorError(ErrorCode.UNKNOWN_TOPIC, `Topic ${req.topic} does not exist`);
    }
    const ids = req.partitions.length > 0
      ? req.partitions.map((p) => p.partition)
      : Array.from({ length: count }, (_, i) => i);
    const offsets: GroupOffset[] = [];
    for (const partition of ids) {
      const log = this.#topics.log(req.topic, partition);
      if (log === null && this.#topics.remote?.(req.topic, partition) === true) {
        offsets.push({ topic: req.topic, partition, ...remoteResetTarget(req, partition) });
        continue;
      }
      if (log === null) {
        throw new GregorError(
          ErrorCode.UNKNOWN_PARTITION,
          `Topic ${req.topic} has no partition ${partition} (it has ${count})`,
        );
      }
      offsets.push({
        topic: req.topic,
        partition,
        offset: await resetTarget(log, req.to, req.value),
        highWatermark: log.nextOffset,
      });
    }
    if (req.dryRun !== 1) {
      // Looking up timestamps awaited: a member may have joined meanwhile and be consuming.
      if (!this.coordinator.isEmpty(req.group)) {
        throw new GregorError(
          ErrorCode.GROUP_NOT_EMPTY,
          `Group ${req.group} gained members during the reset; stop them and reset again`,
        );
      }
      const entries = offsets.map((o) =>
        [tpKey(o.topic, o.partition), o.offset] as [string, number]
      );
      await this.#durably(() => this.#store.commit(req.group, entries, true));
    }
    return { offsets };
  }

  /** Drops a deleted topic's offsets. */
  forgetTopic(topic: string): Promise<void> {
    return this.#durably(() => this.#store.forgetTopic(topic));
  }

  async #durably(write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (err) {
      if (err instanceof GregorError) throw err;
      if (err instanceof RangeError) throw new GregorError(ErrorCode.LIMIT_EXCEEDED, err.message);
      throw new GregorError(
        ErrorCode.STORAGE_ERROR,
        `Cannot store group offsets: ${(err as Error).message}`,
      );
    }
  }
}

/**
 * Where RESET_OFFSETS puts a partition whose log is on other nodes: only an explicit offset can be
 * set without reading the log (a consumer starting past the end reads from the end).
 */
function remoteResetTarget(
  req: ResetOffsetsRequest,
  partition: number,
): { offset: number; highWatermark: number } {
  if (req.to !== Start.offset) {
    throw new GregorError(
      ErrorCode.INVALID_REQUEST,
      `Partition ${req.topic}/${partition} has no replica on the group coordinator, which would ` +
        `need its log to reset to the earliest, latest or a timestamp; reset it to an explicit ` +
        `offset instead`,
    );
  }
  return { offset: Math.max(0, req.value), highWatermark: -1 };
}

/** Where RESET_OFFSETS puts one partition: offsets are clipped to the log's range. */
async function resetTarget(log: Log, to: number, value: number): Promise<number> {
  switch (to) {
    case Start.earliest:
      return log.logStartOffset;
    case Start.latest:
      return log.nextOffset;
    case Start.offset:
      return Math.min(Math.max(value, log.logStartOffset), log.nextOffset);
    case Start.timestamp:
      return await log.offsetForTimestamp(value);
    default:
      throw new GregorError(ErrorCode.INVALID_REQUEST, `Unknown reset target ${to}`);
  }
}
