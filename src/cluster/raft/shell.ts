// The async shell around one RaftNode: it ticks the node's clock, makes each Ready durable through
// a store before releasing its messages, applies committed entries to the group's state machine
// in order, and turns proposals into promises that settle with what applying them produced.
// The node stays a pure state machine (node.ts); everything that waits lives here.

import type { Clock, FaultPoints, Random } from "../../io/types.ts";
import { ErrorCode, GregorError } from "../../protocol/errors.ts";
import { AssertionFailed } from "../../util/assert.ts";
import { decodeMessage, encodeMessage } from "./codec.ts";
import { RaftNode, type RaftNodeOptions } from "./node.ts";
import { RaftTicker } from "./ticker.ts";
import type {
  Entry,
  Message,
  PersistentState,
  ProposeResult,
  Ready,
  Role,
  Snapshot,
} from "./types.ts";

/** Where a group's durable state lives (the WAL, or memory in tests). */
export interface RaftStore {
  state(): PersistentState;
  /** Makes a Ready's snapshot, entries and hard state durable; resolves once they are. */
  save(ready: Ready): Promise<void>;
  /** Replaces the log through `snapshot.index` with the snapshot, durably. */
  compact?(snapshot: Snapshot): Promise<void>;
}

/** The replicated state machine of a group. */
export interface StateMachine {
  /** Applies one committed "normal" entry; the result settles the proposal that made it. */
  apply(entry: Entry): Promise<unknown> | unknown;
  /** Replaces the state with a snapshot's image (a follower far behind the leader). */
  restore(snapshot: Snapshot): Promise<void> | void;
  /** The state's image through the last applied entry, for compaction (none: never compacted). */
  image?(): Uint8Array;
  /**
   * Instead of `image` with `compactEvery`: the newest point at or before `upTo` the machine lets
   * the log be compacted through, with the image of its state as of that entry, or null while
   * there is none. The machine chooses (e.g. once what the entries before it hold is durable
   * elsewhere); the shell bounds it (a leader keeps what its in-sync followers still need).
   */
  compactionPoint?(upTo: number): { index: number; image: Uint8Array } | null;
}

/**
 * Watches a group from outside without changing it (the simulator's safety checkers): told of every
 * Ready once it is durable, every message as it leaves, every message once the node has handled it
 * (with its commit index before), and every entry as it is applied.
 */
export interface RaftObserver {
  /** A Ready is about to be saved: a crash from here on may leave it on disk, whole or in part. */
  saving?(ready: Ready): void;
  saved(ready: Ready): void;
  sent(m: Message): void;
  received(m: Message, commitBefore: number): void;
  applied(e: Entry): void;
}

/** Options of a RaftGroup. */
export interface RaftGroupOptions {
  /** The group's name on the wire (e.g. "__meta" or "topic/3"). */
  group: string;
  nodeId: string;
  store: RaftStore;
  machine: StateMachine;
  /** Sends an encoded message to a peer (best effort: Raft tolerates loss). */
  send(to: string, bytes: Uint8Array): void;
  clock: Clock;
  random: Pick<Random, "float">;
  /**
   * The tick grid, ms: Raft's timeouts fire on it (when due), and held-back messages count down
   * one tick each.
   */
  tickMs?: number;
  /**
   * The node's ticker, shared by its groups so their timeouts due together run together; without
   * one the group has its own.
   */
  ticker?: RaftTicker;
  electionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** Index through which the state machine already holds the entries (after a restart). */
  applied?: number;
  /** The store failed: the group can no longer keep its promises. */
  onFatal(reason: string): void;
  /** After any change of leader or term. */
  onLeaderChange?(leader: string | null, term: number): void;
  /** A proposal this node took could not be vouched for any more (leadership moved). */
  onProposalLost?(): void;
  /** Compact the log once this many applied entries follow the snapshot (needs `image`). */
  compactEvery?: number;
  /** After each compaction. */
  onCompacted?(snapshot: Snapshot): void;
  /** Deliberate protocol bugs, to prove the checkers catch them. Never set outside tests. */
  plantedBugs?: RaftNodeOptions["plantedBugs"];
  /** Flow limits of the node (the simulator varies them per seed); default RAFT_DEFAULTS. */
  flow?: Pick<RaftNodeOptions, "appendEntriesMax" | "appendBytesMax" | "inflightMax">;
}

/** Proposals waiting to be applied, per group, at most. */
export const PROPOSALS_PENDING_MAX = 100_000;
/**
 * Default tick, ms: how often a fault point's held-back messages count down, and the unit of a
 * slowed save. Raft's own timeouts fire when due (see RaftGroup's tick loop).
 */
export const RAFT_TICK_MS = 20;

/** Messages a fault point holds back at once, at most (more are delivered at once). */
export const HELD_MESSAGES_MAX = 16;
/** Ticks a held-back message waits at most before it is delivered. */
export const HELD_TICKS_MAX = 40;
/** Ticks a save a fault point slows down waits at most. */
const SLOW_SAVE_TICKS_MAX = 5;

interface Pending {
  term: number;
  resolve(v: unknown): void;
  reject(err: unknown): void;
}

/** One Raft group on this node. */
export class RaftGroup {
  readonly group: string;
  readonly node: RaftNode;
  readonly #o: RaftGroupOptions;
  readonly #pending = new Map<number, Pending>();
  readonly #stop = new AbortController();
  /** The term of the last entry applied. */
  #appliedTerm = 0;
  #looping = false;
  #again = false;
  #failed: string | null = null;
  #leader: string | null = null;
  #term = 0;
  #loop: Promise<void> = Promise.resolve();
  /** Settles once the machine holds the stored snapshot's image. */
  readonly #ready: Promise<void>;
  /** Set right after construction, before the group does anything, by a checker that watches. */
  observer: RaftObserver | null = null;
  /**
   * Fault points (a simulation's, set right after construction; null on a real node): messages
   * dropped, duplicated or held back and delivered out of order, saves slowed down. Raft must
   * tolerate all of these; the network may do each of them.
   */
  faults: FaultPoints | null = null;
  /** Messages a fault point holds back, with the ticks each still waits. */
  readonly #held: { m: Message; ticks: number }[] = [];
  readonly #ticker: RaftTicker;

  constructor(opts: RaftGroupOptions) {
    this.#o = opts;
    this.group = opts.group;
    const state = opts.store.state();
    // A compacted log starts from its snapshot: the machine takes the image before any entry.
    this.#ready = state.snapshot.index > 0
      ? Promise.resolve(opts.machine.restore(state.snapshot))
      : Promise.resolve();
    this.node = new RaftNode({
      id: opts.nodeId,
      state,
      random: opts.random,
      nowMs: opts.clock.now(),
      ...(opts.applied === undefined ? {} : { applied: opts.applied }),
      ...(opts.electionTimeoutMs === undefined
        ? {}
        : { electionTimeoutMs: opts.electionTimeoutMs }),
      ...(opts.heartbeatIntervalMs === undefined
        ? {}
        : { heartbeatIntervalMs: opts.heartbeatIntervalMs }),
      ...(opts.plantedBugs === undefined ? {} : { plantedBugs: opts.plantedBugs }),
      ...opts.flow,
    });
    this.#ticker = opts.ticker ?? new RaftTicker(opts.clock, opts.tickMs ?? RAFT_TICK_MS);
    this.#ticker.add(this);
    this.#kick();
  }

  get leaderId(): string | null {
    return this.node.leaderId;
  }

  get term(): number {
    return this.node.term;
  }

  get role(): Role {
    return this.node.role;
  }

  get isLeader(): boolean {
    return this.node.role === "leader" && !this.stopped;
  }

  /**
   * True while this node leads and has applied an entry of its own term (the no-op a new leader
   * appends): everything committed before its election is then applied here too, so its state
   * machine may answer reads without going back on what an earlier leader acknowledged.
   */
  get readable(): boolean {
    return this.isLeader && this.#appliedTerm === this.node.term;
  }

  /** True once the store failed or the group was stopped. */
  get stopped(): boolean {
    return this.#failed !== null || this.#stop.signal.aborted;
  }

  /** Feeds an encoded message from a peer. Malformed or misaddressed ones are dropped. */
  receive(bytes: Uint8Array): void {
    if (this.stopped) return;
    let m;
    try {
      m = decodeMessage(bytes);
    } catch {
      return;
    }
    if (m.to !== this.#o.nodeId) return;
    this.node.advanceClock(this.#o.clock.now());
    const faults = this.faults;
    if (faults !== null) {
      if (faults.fires("raft.receive.drop")) return;
      if (faults.fires("raft.receive.hold") && this.#held.length < HELD_MESSAGES_MAX) {
        this.#held.push({ m, ticks: 1 + faults.pick(HELD_TICKS_MAX) });
        return;
      }
      // A retransmission that overtook nothing: the same message handled twice.
      if (faults.fires("raft.receive.duplicate")) this.#deliver(m);
    }
    this.#deliver(m);
    this.#kick();
  }

  #deliver(m: Message): void {
    const commitBefore = this.node.commitIndex;
    this.#guard(() => this.node.receive(m));
    this.observer?.received(m, commitBefore);
  }

  /** Delivers the held-back messages whose wait is over (a tick each). */
  #releaseHeld(): void {
    for (let i = 0; i < this.#held.length;) {
      const h = this.#held[i]!;
      if (--h.ticks > 0) {
        i++;
        continue;
      }
      this.#held.splice(i, 1);
      this.#deliver(h.m);
    }
  }

  /**
   * Proposes `data`; resolves with what applying it returned, once it is committed and applied
   * here. Rejects with NOT_LEADER (naming the leader if known) when this node does not lead, and
   * with NOT_LEADER too when leadership is lost before it applied — its outcome is then unknown:
   * it may still commit under the next leader (retry idempotently).
   */
  propose(data: Uint8Array): Promise<unknown> {
    this.node.advanceClock(this.#o.clock.now());
    return this.#await(this.node.propose(data));
  }

  /**
   * Starts an election now rather than after an election timeout (see `RaftNode.campaign`).
   * @returns false if this node leads or campaigns already, may not campaign, or has stopped.
   */
  campaign(): boolean {
    if (this.stopped) return false;
    let started = false;
    this.node.advanceClock(this.#o.clock.now());
    this.#guard(() => (started = this.node.campaign()));
    this.#kick();
    return started;
  }

  /**
   * Hands leadership to voter `target` once its log matches (see RaftNode.transferLeadership).
   * @returns false if this node does not lead, or `target` is not another voter.
   */
  transferLeadership(target: string): boolean {
    if (this.stopped) return false;
    let started = false;
    this.node.advanceClock(this.#o.clock.now());
    this.#guard(() => (started = this.node.transferLeadership(target)));
    this.#kick();
    return started;
  }

  /**
   * The in-sync rule seen from this replica, at the time now (see RaftNode.keepsUp): read it here
   * rather than on the node, whose clock moves only with inputs and ticks.
   */
  keepsUp(): boolean {
    this.node.advanceClock(this.#o.clock.now());
    return this.node.keepsUp();
  }

  /** On a leader, the voters in sync with it at the time now (see RaftNode.inSyncVoters). */
  inSyncVoters(): string[] | null {
    this.node.advanceClock(this.#o.clock.now());
    return this.node.inSyncVoters();
  }

  /** Proposes adding a voter, or promoting a learner (one change at a time). */
  addServer(id: string): Promise<unknown> {
    this.node.advanceClock(this.#o.clock.now());
    return this.#await(this.node.addServer(id));
  }

  /** Proposes adding a learner (it receives the log, never votes in a quorum). */
  addLearner(id: string): Promise<unknown> {
    this.node.advanceClock(this.#o.clock.now());
    return this.#await(this.node.addLearner(id));
  }

  /** Proposes removing a voter or a learner. */
  removeServer(id: string): Promise<unknown> {
    this.node.advanceClock(this.#o.clock.now());
    return this.#await(this.node.removeServer(id));
  }

  #await(r: ProposeResult): Promise<unknown> {
    if (this.#failed !== null) {
      return Promise.reject(new GregorError(ErrorCode.STORAGE_ERROR, this.#failed));
    }
    if (this.#stop.signal.aborted) {
      return Promise.reject(
        new GregorError(ErrorCode.SHUTTING_DOWN, `Group ${this.group} stopped`),
      );
    }
    if (!r.ok) {
      const hint = r.leaderHint === null ? "" : `; the leader is ${r.leaderHint}`;
      return Promise.reject(
        new GregorError(
          r.reason === "not-leader" ? ErrorCode.NOT_LEADER : ErrorCode.LIMIT_EXCEEDED,
          `Group ${this.group}: this node cannot take the proposal (${r.reason})${hint}`,
        ),
      );
    }
    if (this.#pending.size >= PROPOSALS_PENDING_MAX) {
      return Promise.reject(
        new GregorError(ErrorCode.LIMIT_EXCEEDED, `Group ${this.group} has too many proposals`),
      );
    }
    this.#kick();
    return new Promise((resolve, reject) => {
      this.#pending.set(r.index, { term: r.term, resolve, reject });
    });
  }

  /** Stops ticking and processing; pending proposals fail. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#ticker.remove(this);
    this.#failAll(new GregorError(ErrorCode.SHUTTING_DOWN, `Group ${this.group} stopped`));
    await this.#loop;
  }

  /** For the ticker: runs the node's due timeouts and counts held-back messages down a tick. */
  tickNow(): void {
    if (this.stopped) return;
    this.#guard(() => this.node.tick(this.#o.clock.now()));
    if (this.#held.length > 0) this.#releaseHeld();
    this.#kick();
  }

  /**
   * For the ticker: when this group next needs a tick (the node's next timeout, or the next tick
   * while messages are held back); Infinity once stopped.
   */
  tickDueMs(): number {
    if (this.stopped) return Infinity;
    const due = this.node.nextTickDueMs();
    if (this.#held.length === 0) return due;
    return Math.min(due, this.#o.clock.now() + (this.#o.tickMs ?? RAFT_TICK_MS));
  }

  /**
   * Runs a step of the node. The node throws only when one of its own invariants broke (a bug, or
   * a peer that broke the protocol): the group stops rather than go on with state it cannot trust.
   */
  #guard(step: () => void): void {
    try {
      step();
    } catch (err) {
      this.#failOn(`Raft invariant broken in ${this.group}`, err);
    }
  }

  /** Runs the Ready loop unless it is running; then it runs once more. */
  #kick(): void {
    if (this.stopped) return;
    this.#ticker.poke(this.tickDueMs());
    if (this.#looping) {
      this.#again = true;
      return;
    }
    this.#looping = true;
    this.#loop = this.#drain()
      .catch((err) => this.#failOn(`Raft group ${this.group} failed`, err))
      .finally(() => (this.#looping = false));
  }

  async #drain(): Promise<void> {
    try {
      await this.#ready;
    } catch (err) {
      this.#fail(`cannot restore ${this.group} from its snapshot: ${(err as Error).message}`);
      return;
    }
    do {
      this.#again = false;
      while (!this.stopped && this.node.hasReady()) {
        const ready = this.node.ready();
        if (ready === null) break;
        for (const m of ready.sendNow ?? []) this.#sendOne(m);
        // A slow disk: the leader's appends are out while its own copy is not yet durable.
        if (this.faults?.fires("raft.ready.slow-save")) {
          const tickMs = this.#o.tickMs ?? RAFT_TICK_MS;
          const ms = tickMs * (1 + this.faults.pick(SLOW_SAVE_TICKS_MAX));
          await this.#o.clock.sleep(ms, this.#stop.signal).catch(() => {});
          if (this.stopped) return;
        }
        this.observer?.saving?.(ready);
        try {
          await this.#o.store.save(ready);
        } catch (err) {
          this.#failOn(`cannot persist Raft state of ${this.group}`, err);
          return;
        }
        this.observer?.saved(ready);
        if (ready.snapshot !== null) await this.#o.machine.restore(ready.snapshot);
        for (const e of ready.committedEntries) await this.#apply(e);
        for (const m of this.node.advance(ready)) this.#sendOne(m);
        this.#noticeLeader();
        // Here the machine holds exactly the entries through appliedIndex: a faithful image.
        if (!(await this.#maybeCompact())) return;
      }
      this.#noticeLeader();
    } while (this.#again && !this.stopped);
  }

  /**
   * Sends one message. One the transport refuses (e.g. a snapshot over its size limit) is dropped
   * like a lost one — Raft retries — rather than stopping the group.
   */
  #sendOne(m: Message): void {
    this.observer?.sent(m);
    try {
      this.#o.send(m.to, encodeMessage(m));
    } catch {
      this.sendFailures++;
    }
  }

  /** Messages the transport refused (dropped). */
  sendFailures = 0;

  /** Compacts when due; false if the store failed (the group has stopped). */
  async #maybeCompact(): Promise<boolean> {
    const compact = this.#o.store.compact;
    if (compact === undefined) return true;
    const point = this.#compactionPoint();
    if (point === null) return true;
    try {
      const snapshot = this.node.compact(point.index, point.image);
      await compact.call(this.#o.store, snapshot);
      this.#o.onCompacted?.(snapshot);
      return true;
    } catch (err) {
      this.#failOn(`cannot compact the Raft log of ${this.group}`, err);
      return false;
    }
  }

  /** Where to compact through now, if anywhere. */
  #compactionPoint(): { index: number; image: Uint8Array } | null {
    const m = this.#o.machine;
    const applied = this.node.appliedIndex;
    if (m.compactionPoint !== undefined) {
      const point = m.compactionPoint(this.#compactionLimit());
      return point !== null && point.index > this.node.snapshot.index && point.index <= applied &&
          this.node.knowsConfigAt(point.index)
        ? point
        : null;
    }
    const every = this.#o.compactEvery;
    if (every === undefined || m.image === undefined) return null;
    if (applied - this.node.snapshot.index < every) return null;
    if (!this.node.knowsConfigAt(applied)) return null;
    return { index: applied, image: m.image() };
  }

  /**
   * How far the log may be compacted: what is applied here, and on a leader no further than its
   * in-sync followers have: a follower a few entries behind then gets entries, not a snapshot
   * (which would make it fetch what it lacks, and stop voting until it has it). A follower out of
   * sync (dead, cut off, far behind) holds nothing back.
   */
  #compactionLimit(): number {
    let limit = this.node.appliedIndex;
    for (const id of this.inSyncVoters() ?? []) {
      if (id !== this.node.id) limit = Math.min(limit, this.node.matchOf(id) ?? limit);
    }
    return limit;
  }

  async #apply(e: Entry): Promise<void> {
    this.observer?.applied(e);
    this.#appliedTerm = e.term;
    let result: unknown = undefined;
    let error: unknown = null;
    if (e.kind === "normal") {
      try {
        result = await this.#o.machine.apply(e);
      } catch (err) {
        error = err;
      }
    }
    const p = this.#pending.get(e.index);
    if (p === undefined) return;
    this.#pending.delete(e.index);
    if (p.term !== e.term) {
      p.reject(this.#lost(`its entry ${e.index} was replaced by another leader's`));
    } else if (error !== null) p.reject(error);
    else p.resolve(result);
  }

  #lost(why: string): GregorError {
    this.#o.onProposalLost?.();
    return new GregorError(
      ErrorCode.NOT_LEADER,
      `Group ${this.group}: leadership changed before the proposal applied (${why}); ` +
        `its outcome is unknown`,
    );
  }

  #noticeLeader(): void {
    const leader = this.node.leaderId;
    const term = this.node.term;
    if (leader === this.#leader && term === this.#term) return;
    this.#leader = leader;
    this.#term = term;
    // A node that no longer leads can no longer vouch for the proposals it took: they may still
    // commit under the next leader, or not. Their callers learn the outcome is unknown.
    if (this.node.role !== "leader") {
      for (const [index, p] of this.#pending) {
        this.#pending.delete(index);
        p.reject(this.#lost(`term ${term}, leader ${leader ?? "unknown"}`));
      }
    }
    this.#o.onLeaderChange?.(leader, term);
  }

  /**
   * Stops the group over `err`, met while doing `what`. A broken assertion is a bug whatever step
   * met it: the reason says so (the simulator's checkers count it as a violation) and carries the
   * stack, for the one fatal line an operator reads.
   */
  #failOn(what: string, err: unknown): void {
    if (err instanceof AssertionFailed) {
      this.#fail(`Raft invariant broken in ${this.group}: ${err.stack ?? err.message}`);
    } else this.#fail(`${what}: ${(err as Error).message}`);
  }

  #fail(reason: string): void {
    // A step cut short by the group's own stop (a restore whose fetch was aborted) is no failure.
    if (this.#failed !== null || this.stopped) return;
    this.#failed = reason;
    this.#ticker.remove(this);
    this.#failAll(new GregorError(ErrorCode.STORAGE_ERROR, reason));
    this.#o.onFatal(reason);
  }

  #failAll(err: unknown): void {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}
