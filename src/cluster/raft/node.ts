// A Raft consensus state machine with no I/O: time comes in through `tick`, messages through
// `receive`, and everything it wants done (persist, send, apply) goes out through Ready batches.
// Pre-vote, leader stickiness, check-quorum, fast log back-off, flow control, snapshots,
// single-server membership changes, learners (members that receive the log but never vote) and
// leadership transfer, after the Raft dissertation.

import type { Random } from "../../io/types.ts";
import { assert, unreachable } from "../../util/assert.ts";
import { configProblem, encodeConfig } from "./codec.ts";
import {
  entryBytes,
  OUTBOX_MESSAGES_MAX,
  RAFT_DEFAULTS,
  VOTE_ASKS_PER_CAMPAIGN_MAX,
} from "./limits.ts";
import { RaftLog } from "./log.ts";
import { inSync, ISR_HEARD_MS_MAX, ISR_LAG_ENTRIES_MAX } from "./isr.ts";
import { Progress } from "./progress.ts";
import type {
  AppendEntries,
  AppendEntriesResp,
  Configuration,
  Entry,
  EntryKind,
  HardState,
  InstallSnapshot,
  InstallSnapshotResp,
  Message,
  PersistentState,
  PreVote,
  PreVoteResp,
  ProposeResult,
  Ready,
  RefusalReason,
  RequestVote,
  RequestVoteResp,
  Role,
  Snapshot,
  TimeoutNow,
} from "./types.ts";

/** Options for a RaftNode. */
export interface RaftNodeOptions {
  /** This node's id. */
  id: string;
  /** What the shell made durable (from `MemoryStorage.state()` or the file store). */
  state: PersistentState;
  /** Randomness for election timeouts; a seeded stream in the simulator. */
  random: Pick<Random, "float">;
  /** The node's monotonic clock at creation, ms. */
  nowMs: number;
  /** Index through which the state machine already holds the entries; default the snapshot's. */
  applied?: number;
  electionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  appendEntriesMax?: number;
  appendBytesMax?: number;
  inflightMax?: number;
  uncommittedBytesMax?: number;
  applyBytesMax?: number;
  /**
   * Deliberate protocol bugs, for proving that tests catch them. Never set outside tests.
   * `commitPriorTermByCount`: a leader commits entries of earlier terms by counting replicas
   * (the unsafe rule of the Raft paper's Figure 8). `voteWithoutLogCheck`: votes and pre-votes
   * ignore whether the candidate's log is up to date.
   */
  plantedBugs?: { commitPriorTermByCount?: boolean; voteWithoutLogCheck?: boolean };
}

type Tunables = Required<Omit<RaftNodeOptions, "id" | "state" | "random" | "nowMs" | "applied">>;

/** The Ready handed out and not yet advanced, with the messages it holds back. */
interface PendingReady {
  readonly ready: Ready;
  readonly messages: Message[];
}

interface Transfer {
  readonly target: string;
  readonly deadlineMs: number;
  /** TimeoutNow went out; proposals stay refused until the term changes or the deadline. */
  sent: boolean;
}

const EMPTY = new Uint8Array(0);

/**
 * One member of a Raft group, as a deterministic state machine.
 *
 * The shell's loop: feed `tick(now)`, `receive(msg)`, `propose(data)`; whenever `hasReady()`, take
 * `ready()`, make its snapshot, entries and hard state durable, apply its committed entries, then
 * send the messages `advance(ready)` returns. A crash before `advance` loses that Ready, which is
 * safe: nothing that depended on it has left the node.
 */
export class RaftNode {
  /** This node's id. */
  readonly id: string;
  readonly #o: Tunables;
  readonly #random: Pick<Random, "float">;
  readonly #log: RaftLog;

  #term: number;
  #vote: string | null;
  #commit: number;
  #role: Role = "follower";
  #leaderId: string | null = null;
  /** Highest index known durable in this node's own storage. */
  #stable: number;
  /** Highest index handed to the state machine (through advanced Readys). */
  #applied: number;
  #persisted: HardState;
  #pendingSnapshot: Snapshot | null = null;
  #pending: PendingReady | null = null;
  #outbox: Message[] = [];
  #droppedMessages = 0;

  #voters: ReadonlySet<string>;
  #learners: ReadonlySet<string>;
  #configIndex: number;
  readonly #progress = new Map<string, Progress>();
  /** Votes (or pre-votes) received in the current campaign. */
  readonly #votes = new Map<string, boolean>();
  #transfer: Transfer | null = null;
  /** The current campaign is a leadership transfer's (its RequestVotes say so). */
  #campaignTransfer = false;
  #uncommittedBytes = 0;

  #nowMs: number;
  #electionDeadlineMs = 0;
  #heartbeatDueMs = 0;
  /** A (pre)candidate asks the voters that have not answered again at this time. */
  #voteResendDueMs = 0;
  /** Times the current campaign has asked for votes. */
  #voteAsks = 0;
  #quorumCheckDueMs = 0;
  #leaderContactMs = -Infinity;
  /**
   * The highest commit index the current leader has sent this node (0 after a term or leader
   * change): how far the group is, which a follower's own commit index — clipped to what it holds —
   * does not tell.
   */
  #leaderCommit = 0;

  /** A node restarting from `opts.state`, as a follower with no known leader. */
  constructor(opts: RaftNodeOptions) {
    this.id = opts.id;
    this.#o = { ...RAFT_DEFAULTS, plantedBugs: {}, ...definedOnly(opts) } as Tunables;
    checkTunables(this.#o);
    this.#random = opts.random;
    this.#nowMs = opts.nowMs;
    const { hardState, snapshot, entries } = opts.state;
    this.#log = new RaftLog(snapshot, entries);
    if (hardState.commit > this.#log.lastIndex || hardState.commit < snapshot.index) {
      throw new RangeError(
        `Persisted commit ${hardState.commit} is outside the log ${snapshot.index}..${this.#log.lastIndex}`,
      );
    }
    this.#term = hardState.term;
    this.#vote = hardState.vote;
    this.#commit = hardState.commit;
    this.#persisted = hardState;
    this.#stable = this.#log.lastIndex;
    this.#applied = Math.max(snapshot.index, Math.min(opts.applied ?? 0, this.#commit));
    const config = this.#log.configAt(this.#log.lastIndex);
    this.#voters = new Set(config.voters);
    this.#learners = new Set(config.learners);
    this.#configIndex = config.index;
    this.#resetElectionTimer();
  }

  // ---- getters -------------------------------------------------------------------------------

  get term(): number {
    return this.#term;
  }

  /** Whom this node voted for in the current term. */
  get vote(): string | null {
    return this.#vote;
  }

  get role(): Role {
    return this.#role;
  }

  /** The leader of the current term as far as this node knows, or null. */
  get leaderId(): string | null {
    return this.#leaderId;
  }

  get commitIndex(): number {
    return this.#commit;
  }

  /** Highest index handed to the state machine through an advanced Ready. */
  get appliedIndex(): number {
    return this.#applied;
  }

  get lastIndex(): number {
    return this.#log.lastIndex;
  }

  /**
   * True if this node's applied state keeps up with its group: it leads, or it follows a leader it
   * heard from within ISR_HEARD_MS_MAX and has applied to within ISR_LAG_ENTRIES_MAX entries of the
   * commit index that leader last sent (the in-sync rule, seen from the follower). A replica that
   * does not may be far behind, cut off, or about to be cut back and refilled from a snapshot.
   */
  keepsUp(): boolean {
    if (this.#role === "leader") return true;
    if (this.#role !== "follower" || this.#leaderId === null) return false;
    if (this.#nowMs - this.#leaderContactMs > ISR_HEARD_MS_MAX) return false;
    return this.#applied >= this.#leaderCommit - ISR_LAG_ENTRIES_MAX;
  }

  /** The first index still held as an entry; below it is the snapshot. */
  get firstIndex(): number {
    return this.#log.firstIndex;
  }

  /** The latest snapshot (index 0 before any compaction). */
  get snapshot(): Snapshot {
    return this.#log.snapshot;
  }

  /** The voter set in force (the latest config in the log, committed or not), sorted. */
  get voters(): string[] {
    return [...this.#voters].sort();
  }

  /** The learners in force (the latest config in the log, committed or not), sorted. */
  get learners(): string[] {
    return [...this.#learners].sort();
  }

  /** True once the latest configuration in the log is committed. */
  get configCommitted(): boolean {
    return this.#configIndex <= this.#commit;
  }

  /** The index of the latest configuration in the log (0: the founding one). */
  get configIndex(): number {
    return this.#configIndex;
  }

  /** Times this node cut a conflicting suffix off its log for its leader's entries. */
  truncations = 0;

  /** Messages dropped because the outbox was full. */
  get droppedMessages(): number {
    return this.#droppedMessages;
  }

  /** The term of the entry at `index`, or null if compacted away or past the end. */
  /** On a leader, the highest index known to match `peer`'s log; else null. */
  matchOf(peer: string): number | null {
    if (this.#role !== "leader") return null;
    return this.#progress.get(peer)?.match ?? null;
  }

  /**
   * On a leader, the voters in sync with it (itself included), by `inSync`; else null (only a
   * leader knows its followers' progress).
   */
  inSyncVoters(): string[] | null {
    if (this.#role !== "leader") return null;
    const at = { lastIndex: this.#log.lastIndex, nowMs: this.#nowMs };
    return [...this.#voters].filter((v) => {
      if (v === this.id) return true;
      const pr = this.#progress.get(v);
      return pr !== undefined && inSync({ match: pr.match, heardMs: pr.heardMs }, at);
    });
  }

  termAt(index: number): number | null {
    return this.#log.term(index);
  }

  /**
   * True if this node knows the group's members as of entry `index`. A node started with no
   * members (to be added later) does not for the entries before the first configuration entry it
   * receives: a snapshot through them would name no voters, so it may not compact there.
   */
  knowsConfigAt(index: number): boolean {
    return this.#log.configAt(index).voters.length > 0;
  }

  /** The entry at `index`, or null if compacted away or past the end. */
  entryAt(index: number): Entry | null {
    return this.#log.entry(index);
  }

  // ---- inputs --------------------------------------------------------------------------------

  /**
   * Moves the node's clock on to `nowMs` (monotonic) without firing a timeout: a shell that ticks
   * only when `nextTickDueMs` says so calls this before each input and read, so what the node
   * stamps and compares (leader contact, progress, the in-sync rule) uses the time now.
   */
  advanceClock(nowMs: number): void {
    if (nowMs > this.#nowMs) this.#nowMs = nowMs;
  }

  /**
   * When `tick` next has work (monotonic ms, on the clock `tick` is fed): a leader's heartbeat,
   * quorum check or the end of a leadership transfer; otherwise the election timeout, and a
   * campaigning node's next vote request. Until then a tick does nothing, so a shell may sleep
   * until this time instead of ticking at a fixed rate. An input may move it earlier (by making
   * the node a candidate or a leader): the shell asks again after each.
   */
  nextTickDueMs(): number {
    if (this.#role === "leader") {
      const transferEnds = this.#transfer?.deadlineMs ?? Infinity;
      return Math.min(this.#heartbeatDueMs, this.#quorumCheckDueMs, transferEnds);
    }
    if (this.#role !== "follower" && this.#voteAsks < VOTE_ASKS_PER_CAMPAIGN_MAX) {
      return Math.min(this.#electionDeadlineMs, this.#voteResendDueMs);
    }
    return this.#electionDeadlineMs;
  }

  /** Advances the node's clock to `nowMs` (monotonic) and fires any due timeout. */
  tick(nowMs: number): void {
    assert(nowMs >= this.#nowMs, () => `tick(${nowMs}) is before ${this.#nowMs}`);
    this.#nowMs = nowMs;
    if (this.#role === "leader") {
      this.#tickLeader();
    } else if (nowMs >= this.#electionDeadlineMs) {
      if (this.#mayCampaign()) this.#preCampaign();
      else this.#resetElectionTimer();
    } else if (
      this.#role !== "follower" && nowMs >= this.#voteResendDueMs &&
      this.#voteAsks < VOTE_ASKS_PER_CAMPAIGN_MAX
    ) {
      this.#askVotes();
    }
  }

  /**
   * Starts an election now instead of when the election timeout runs out (a group just founded,
   * whose designated first leader need not wait a timeout of silence that cannot have meant
   * anything). Safe at any time: it is the same pre-vote a timeout starts.
   * @returns false if this node leads already, campaigns already, or may not campaign.
   */
  campaign(): boolean {
    if (this.#role !== "follower" || !this.#mayCampaign()) return false;
    this.#preCampaign();
    return true;
  }

  /**
   * A voter of its latest configuration campaigns. So does a node that an uncommitted
   * configuration entry removed while the committed configuration still counts it a voter: the
   * entry may have reached it but none of the voters left (the leader that appended it stopped
   * before sending it on), and as its log is then the most up to date, no one else can win an
   * election. Like anyone, it wins only with a majority of its latest configuration (its own vote
   * does not count there), so this changes liveness, not safety; once leader it commits that
   * configuration and steps down.
   */
  #mayCampaign(): boolean {
    if (this.#voters.has(this.id)) return true;
    if (this.#configIndex <= this.#commit) return false;
    return this.#log.configAt(this.#commit).voters.includes(this.id);
  }

  /** Handles a message from a peer. Messages addressed to another node are ignored. */
  receive(m: Message): void {
    if (m.to !== this.id || m.from === this.id) return;
    if (m.term > this.#term) {
      if (!this.#acceptHigherTerm(m)) return;
    } else if (m.term < this.#term) {
      this.#answerStale(m);
      return;
    }
    this.#dispatch(m);
  }

  /**
   * Appends `data` as a new entry if this node leads.
   * @returns the entry's index and term, or why it was refused (with a leader hint).
   */
  propose(data: Uint8Array): ProposeResult {
    const refusal = this.#proposeRefusal(data.length);
    if (refusal !== null) return refusal;
    return this.#proposeEntry("normal", data.slice());
  }

  /**
   * Proposes making `id` a voter: promotes it if it is a learner, else adds it as a new voter. One
   * membership change at a time; in force once appended. Refused as "invalid" if it is a voter.
   */
  addServer(id: string): ProposeResult {
    if (this.#voters.has(id)) return this.#refuse("invalid");
    return this.#proposeConfig({
      voters: [...this.#voters, id],
      learners: [...this.#learners].filter((l) => l !== id),
    });
  }

  /**
   * Proposes making `id` a learner: adds it as a new learner, or demotes it if it is a voter (a
   * leader that demotes itself steps down once that commits). One membership change at a time.
   * Refused as "invalid" if it is a learner already or the last voter.
   */
  addLearner(id: string): ProposeResult {
    if (this.#learners.has(id)) return this.#refuse("invalid");
    if (this.#voters.has(id) && this.#voters.size === 1) return this.#refuse("invalid");
    return this.#proposeConfig({
      voters: [...this.#voters].filter((v) => v !== id),
      learners: [...this.#learners, id],
    });
  }

  /**
   * Proposes removing voter or learner `id`; a leader that removes itself steps down once that
   * commits. Refused as "invalid" if `id` is no member or the last voter.
   */
  removeServer(id: string): ProposeResult {
    const isVoter = this.#voters.has(id);
    if (!isVoter && !this.#learners.has(id)) return this.#refuse("invalid");
    if (isVoter && this.#voters.size === 1) return this.#refuse("invalid");
    return this.#proposeConfig({
      voters: [...this.#voters].filter((v) => v !== id),
      learners: [...this.#learners].filter((l) => l !== id),
    });
  }

  /**
   * Hands leadership to voter `target`: once its log matches, it is told to campaign at once.
   * Proposals are refused meanwhile; the attempt lapses after one election timeout.
   * @returns false if this node does not lead or `target` is not another voter.
   */
  transferLeadership(target: string): boolean {
    if (this.#role !== "leader" || target === this.id || !this.#voters.has(target)) return false;
    this.#transfer = { target, deadlineMs: this.#nowMs + this.#o.electionTimeoutMs, sent: false };
    this.#maybeSendTimeoutNow(target);
    return true;
  }

  /**
   * Compacts the log through `throughIndex` (at most the applied index) into a snapshot whose
   * image is `data`. The shell persists the returned snapshot (e.g. `MemoryStorage.compact`).
   */
  compact(throughIndex: number, data: Uint8Array): Snapshot {
    assert(
      throughIndex <= this.#applied && throughIndex > this.#log.snapshot.index,
      () =>
        `Cannot compact through ${throughIndex}: snapshot is at ${this.#log.snapshot.index}, ` +
        `applied at ${this.#applied}`,
    );
    assert(
      this.knowsConfigAt(throughIndex),
      () =>
        `Cannot compact through ${throughIndex}: this node does not know the group's members as ` +
        "of that entry (it started with none and has not received a configuration entry yet)",
    );
    const config = this.#log.configAt(throughIndex);
    const snapshot: Snapshot = {
      index: throughIndex,
      term: this.#log.term(throughIndex) as number,
      voters: [...config.voters],
      learners: [...config.learners],
      data: data.slice(),
    };
    this.#log.compact(snapshot);
    return snapshot;
  }

  // ---- Ready ---------------------------------------------------------------------------------

  /** True if a Ready has work in it and none is outstanding. */
  hasReady(): boolean {
    if (this.#pending !== null) return false;
    return this.#outbox.length > 0 || this.#hardStateChanged() || this.#pendingSnapshot !== null ||
      this.#stable < this.#log.lastIndex || this.#applyLimit() > this.#applied;
  }

  /**
   * The next batch of work, or null if there is none or one is outstanding. Its messages are
   * released by `advance(ready)` after the shell made its state durable.
   */
  ready(): Ready | null {
    if (!this.hasReady()) return null;
    const hs = this.#hardState();
    const lo = Math.max(this.#stable + 1, this.#log.firstIndex);
    const applyLimit = this.#applyLimit();
    // A leader's appends go out while it writes its own log (Raft thesis §10.2.1): they promise
    // nothing about its disk, and it counts itself towards a commit only once `advance` says its
    // entries are durable. Its term is durable (a candidate counts its own vote only once it is).
    // Everything else waits for the Ready to be durable.
    const sendNow: Message[] = [];
    const later: Message[] = [];
    for (const m of this.#outbox) {
      const early = this.#role === "leader" && m.term === this.#term &&
        (m.type === "AppendEntries" || m.type === "InstallSnapshot");
      (early ? sendNow : later).push(m);
    }
    const ready: Ready = {
      hardState: this.#hardStateChanged() ? hs : null,
      snapshot: this.#pendingSnapshot,
      entries: this.#log.slice(lo, this.#log.lastIndex),
      committedEntries: applyLimit > this.#applied
        ? this.#log.slice(this.#applied + 1, applyLimit, Infinity, this.#o.applyBytesMax)
        : [],
      sendNow,
    };
    this.#pending = { ready, messages: later };
    this.#outbox = [];
    return ready;
  }

  /**
   * Acknowledges that everything in `ready` is durable and its committed entries applied.
   * @returns the messages to send now.
   * @throws AssertionFailed if `ready` is not the outstanding Ready.
   */
  advance(ready: Ready): Message[] {
    const pending = this.#pending;
    assert(
      pending !== null && pending.ready === ready,
      "advance() got a Ready that is not the outstanding one",
    );
    this.#pending = null;
    if (ready.hardState !== null) this.#persisted = ready.hardState;
    if (ready.snapshot !== null) {
      if (this.#pendingSnapshot === ready.snapshot) this.#pendingSnapshot = null;
      this.#applied = Math.max(this.#applied, ready.snapshot.index);
    }
    this.#markStable(ready.entries);
    const lastApplied = ready.committedEntries.at(-1);
    if (lastApplied !== undefined) this.#applied = Math.max(this.#applied, lastApplied.index);
    this.#voteForSelfOnceDurable();
    if (this.#role === "leader") this.#maybeCommit();
    return pending.messages;
  }

  #markStable(entries: readonly Entry[]): void {
    for (let i = entries.length - 1; i >= 0; i--) {
      const e = entries[i] as Entry;
      if (this.#log.term(e.index) === e.term) {
        this.#stable = Math.max(this.#stable, e.index);
        return;
      }
    }
  }

  /** Committed entries up to here are durable locally and may be applied. */
  #applyLimit(): number {
    if (this.#pendingSnapshot !== null) return this.#applied;
    return Math.min(this.#commit, this.#stable);
  }

  #hardState(): HardState {
    return { term: this.#term, vote: this.#vote, commit: this.#commit };
  }

  #hardStateChanged(): boolean {
    const p = this.#persisted;
    return p.term !== this.#term || p.vote !== this.#vote || p.commit !== this.#commit;
  }

  // ---- timers --------------------------------------------------------------------------------

  #resetElectionTimer(): void {
    const t = this.#o.electionTimeoutMs;
    this.#electionDeadlineMs = this.#nowMs + t + Math.floor(this.#random.float() * t);
  }

  #tickLeader(): void {
    const now = this.#nowMs;
    if (this.#transfer !== null && now >= this.#transfer.deadlineMs) this.#transfer = null;
    if (now >= this.#quorumCheckDueMs) {
      this.#quorumCheckDueMs = now + this.#o.electionTimeoutMs;
      if (!this.#checkQuorum()) {
        this.#becomeFollower(this.#term, null);
        return;
      }
    }
    if (now >= this.#heartbeatDueMs) {
      this.#heartbeatDueMs = now + this.#o.heartbeatIntervalMs;
      for (const [peer, pr] of this.#progress) this.#heartbeat(peer, pr);
    }
  }

  /** True if a majority of voters was heard from since the last check; resets the marks. */
  #checkQuorum(): boolean {
    let active = this.#voters.has(this.id) ? 1 : 0;
    for (const [peer, pr] of this.#progress) {
      if (pr.recentActive && this.#voters.has(peer)) active++;
      pr.recentActive = false;
    }
    return active >= quorum(this.#voters.size);
  }

  /** A heartbeat, plus the housekeeping that unsticks a follower whose messages were lost. */
  #heartbeat(peer: string, pr: Progress): void {
    const now = this.#nowMs;
    const stuckMs = this.#o.electionTimeoutMs;
    if (pr.state === "snapshot" && now - pr.sentMs >= stuckMs) pr.becomeProbe(pr.match + 1);
    if (pr.state === "replicate" && pr.inflight > 0 && now - pr.progressMs >= stuckMs) {
      pr.becomeProbe(pr.match + 1);
    }
    if (pr.state === "probe") pr.paused = false;
    // Anchored at the known match, so a heartbeat never trips over entries still in flight.
    const prevTerm = this.#log.term(pr.match);
    const prevIndex = prevTerm === null ? 0 : pr.match;
    this.#send({
      type: "AppendEntries",
      from: this.id,
      to: peer,
      term: this.#term,
      prevIndex,
      prevTerm: prevTerm ?? 0,
      entries: [],
      // The whole commit index: the follower commits only through entries it holds that match
      // (prevIndex), and learns how far the group is (`keepsUp`).
      commit: this.#commit,
    });
    if (pr.match < this.#log.lastIndex) this.#sendAppend(peer, pr, false);
  }

  // ---- roles ---------------------------------------------------------------------------------

  #becomeFollower(term: number, leader: string | null): void {
    if (term > this.#term || leader !== this.#leaderId) this.#leaderCommit = 0;
    if (term > this.#term) {
      this.#term = term;
      this.#vote = null;
    }
    this.#role = "follower";
    this.#leaderId = leader;
    if (leader !== null) this.#leaderContactMs = this.#nowMs;
    this.#progress.clear();
    this.#votes.clear();
    this.#transfer = null;
    this.#resetElectionTimer();
  }

  /** Asks for pre-votes for the next term; the term moves only once a majority would vote. */
  #preCampaign(): void {
    this.#role = "precandidate";
    this.#leaderId = null;
    this.#votes.clear();
    this.#votes.set(this.id, true);
    this.#resetElectionTimer();
    if (this.#tally() === "won") {
      this.#campaign(false);
      return;
    }
    this.#voteAsks = 0;
    this.#askVotes();
  }

  #campaign(transfer: boolean): void {
    this.#term += 1;
    this.#vote = this.id;
    this.#role = "candidate";
    this.#leaderId = null;
    // The candidate's own vote counts only once the term and vote are durable (`advance`): a lone
    // voter would otherwise lead at once, append in a term it may forget in a crash, and after a
    // restart lead that term again with other entries at the same indexes.
    this.#votes.clear();
    this.#campaignTransfer = transfer;
    this.#resetElectionTimer();
    this.#voteAsks = 0;
    this.#askVotes();
  }

  /** Counts the candidate's own vote once its term and vote are durable; it may win by it. */
  #voteForSelfOnceDurable(): void {
    if (this.#role !== "candidate" || this.#votes.has(this.id)) return;
    if (this.#persisted.term !== this.#term || this.#persisted.vote !== this.id) return;
    this.#votes.set(this.id, true);
    if (this.#tally() === "won") this.#becomeLeader();
  }

  /**
   * Asks every voter that has not answered this campaign for its (pre-)vote, and again a heartbeat
   * interval later, up to VOTE_ASKS_PER_CAMPAIGN_MAX times: a request lost on the way (or dropped
   * by a peer that has not opened the group yet) then costs a heartbeat interval, not a whole
   * election timeout. Asking twice is harmless: a pre-vote changes nothing, and a vote goes to the
   * same candidate again or is refused again.
   */
  #askVotes(): void {
    this.#voteAsks++;
    this.#voteResendDueMs = this.#nowMs + this.#o.heartbeatIntervalMs;
    const pre = this.#role === "precandidate";
    for (const peer of this.#voters) {
      if (peer === this.id || this.#votes.has(peer)) continue;
      const ask = {
        from: this.id,
        to: peer,
        lastIndex: this.#log.lastIndex,
        lastTerm: this.#log.lastTerm,
      };
      if (pre) this.#send({ type: "PreVote", ...ask, term: this.#term + 1 });
      else {
        this.#send({
          type: "RequestVote",
          ...ask,
          term: this.#term,
          transfer: this.#campaignTransfer,
        });
      }
    }
  }

  #tally(): "won" | "lost" | "open" {
    let granted = 0;
    let rejected = 0;
    for (const [id, yes] of this.#votes) {
      if (!this.#voters.has(id)) continue;
      if (yes) granted++;
      else rejected++;
    }
    const q = quorum(this.#voters.size);
    if (granted >= q) return "won";
    return this.#voters.size - rejected < q ? "lost" : "open";
  }

  #becomeLeader(): void {
    this.#role = "leader";
    this.#leaderId = this.id;
    this.#votes.clear();
    this.#transfer = null;
    this.#progress.clear();
    this.#syncProgress();
    this.#uncommittedBytes = 0;
    for (let i = this.#commit + 1; i <= this.#log.lastIndex; i++) {
      this.#uncommittedBytes += entryBytes(this.#log.entry(i) as Entry);
    }
    this.#quorumCheckDueMs = this.#nowMs + this.#o.electionTimeoutMs;
    this.#heartbeatDueMs = this.#nowMs + this.#o.heartbeatIntervalMs;
    this.#appendLocal("noop", EMPTY);
    this.#broadcastAppend(true);
  }

  /**
   * Matches the leader's follower table to the members in force: learners are replicated to like
   * voters, and a promoted or demoted member keeps its progress.
   */
  #syncProgress(): void {
    for (const peer of this.#progress.keys()) {
      if (!this.#voters.has(peer) && !this.#learners.has(peer)) this.#progress.delete(peer);
    }
    for (const peer of [...this.#voters, ...this.#learners]) {
      if (peer === this.id || this.#progress.has(peer)) continue;
      this.#progress.set(
        peer,
        new Progress(this.#log.lastIndex + 1, this.#nowMs, this.#o.inflightMax),
      );
    }
  }

  // ---- message dispatch ----------------------------------------------------------------------

  /**
   * Decides whether a message from a higher term is processed, moving to that term if it must.
   * Votes are ignored while a live leader is known (stickiness), unless a transfer asks for them.
   */
  #acceptHigherTerm(m: Message): boolean {
    const isVote = m.type === "PreVote" || (m.type === "RequestVote" && !m.transfer);
    if (isVote && this.#inLease()) return false;
    if (m.type === "PreVote") return true;
    if (m.type === "PreVoteResp" && m.granted) return true;
    const fromLeader = m.type === "AppendEntries" || m.type === "InstallSnapshot" ||
      m.type === "TimeoutNow";
    this.#becomeFollower(m.term, fromLeader ? m.from : null);
    return true;
  }

  /** A stale leader learns the newer term from the answer; a stale pre-candidate likewise. */
  #answerStale(m: Message): void {
    if (m.type === "AppendEntries" || m.type === "InstallSnapshot") {
      this.#send({
        type: "AppendEntriesResp",
        from: this.id,
        to: m.from,
        term: this.#term,
        success: false,
        index: 0,
        hintTerm: 0,
        hintIndex: 0,
      });
    } else if (m.type === "PreVote") {
      this.#send({
        type: "PreVoteResp",
        from: this.id,
        to: m.from,
        term: this.#term,
        granted: false,
      });
    }
  }

  #inLease(): boolean {
    if (this.#role === "leader") return true;
    return this.#leaderId !== null &&
      this.#nowMs - this.#leaderContactMs < this.#o.electionTimeoutMs;
  }

  #dispatch(m: Message): void {
    switch (m.type) {
      case "PreVote":
        return this.#onPreVote(m);
      case "RequestVote":
        return this.#onRequestVote(m);
      case "PreVoteResp":
        return this.#onPreVoteResp(m);
      case "RequestVoteResp":
        return this.#onRequestVoteResp(m);
      case "AppendEntries":
        return this.#onAppendEntries(m);
      case "AppendEntriesResp":
        return this.#onAppendEntriesResp(m);
      case "InstallSnapshot":
        return this.#onInstallSnapshot(m);
      case "InstallSnapshotResp":
        return this.#onInstallSnapshotResp(m);
      case "TimeoutNow":
        return this.#onTimeoutNow(m);
      default:
        return unreachable(m, "RaftNode.step() message type");
    }
  }

  #upToDate(m: PreVote | RequestVote): boolean {
    if (this.#o.plantedBugs.voteWithoutLogCheck === true) return true;
    return this.#log.isUpToDate(m.lastIndex, m.lastTerm);
  }

  // Learners answer votes like voters: a candidate asks and counts only the voters of its own
  // config, which may be newer than ours. A learner whose promotion it has not yet received must
  // still vote, or a group that lost one old voter right after the promotion committed could never
  // elect a leader again.

  #onPreVote(m: PreVote): void {
    const granted = m.term > this.#term && this.#upToDate(m);
    const term = granted ? m.term : this.#term;
    this.#send({ type: "PreVoteResp", from: this.id, to: m.from, term, granted });
  }

  #onRequestVote(m: RequestVote): void {
    const canVote = this.#vote === m.from || (this.#vote === null && this.#leaderId === null);
    const granted = canVote && this.#upToDate(m);
    if (granted) {
      this.#vote = m.from;
      this.#resetElectionTimer();
    }
    this.#send({ type: "RequestVoteResp", from: this.id, to: m.from, term: this.#term, granted });
  }

  #onPreVoteResp(m: PreVoteResp): void {
    if (this.#role !== "precandidate") return;
    if (m.granted ? m.term !== this.#term + 1 : m.term !== this.#term) return;
    this.#votes.set(m.from, m.granted);
    const outcome = this.#tally();
    if (outcome === "won") this.#campaign(false);
    else if (outcome === "lost") this.#becomeFollower(this.#term, null);
  }

  #onRequestVoteResp(m: RequestVoteResp): void {
    if (this.#role !== "candidate") return;
    this.#votes.set(m.from, m.granted);
    const outcome = this.#tally();
    if (outcome === "won") this.#becomeLeader();
    else if (outcome === "lost") this.#becomeFollower(this.#term, null);
  }

  /** Common to AppendEntries and InstallSnapshot: the sender leads this term. */
  #followLeader(from: string): void {
    // At most one leader per term: a second one means a node (this one or the sender) broke
    // Raft, or a disk lied about a durable vote.
    assert(
      this.#role !== "leader",
      () => `Node ${this.id} leads term ${this.#term} but ${from} claims it too`,
    );
    if (this.#role !== "follower") this.#becomeFollower(this.#term, from);
    if (this.#leaderId !== from) this.#leaderCommit = 0;
    this.#leaderId = from;
    this.#leaderContactMs = this.#nowMs;
    this.#resetElectionTimer();
  }

  #onAppendEntries(m: AppendEntries): void {
    this.#followLeader(m.from);
    this.#leaderCommit = Math.max(this.#leaderCommit, m.commit);
    const reply = (success: boolean, index: number, hintTerm = 0, hintIndex = 0) =>
      this.#send({
        type: "AppendEntriesResp",
        from: this.id,
        to: m.from,
        term: this.#term,
        success,
        index,
        hintTerm,
        hintIndex,
      });
    if (m.prevIndex < this.#commit) {
      // Everything through our commit matches the leader's log; resume from there.
      reply(true, this.#commit);
      return;
    }
    if (this.#log.term(m.prevIndex) !== m.prevTerm) {
      const hint = this.#log.conflictHint(m.prevIndex, this.#commit);
      reply(false, m.prevIndex, hint.hintTerm, hint.hintIndex);
      return;
    }
    this.#appendFromLeader(m.entries);
    const lastNew = m.prevIndex + m.entries.length;
    this.#commitTo(Math.min(m.commit, lastNew));
    reply(true, lastNew);
  }

  /** Appends what the leader sent after a matching prefix, truncating a conflicting suffix. */
  #appendFromLeader(entries: readonly Entry[]): void {
    const conflict = this.#log.findConflict(entries);
    if (conflict === 0) return;
    assert(
      conflict > this.#commit,
      () => `Entry ${conflict} conflicts with the leader but is committed`,
    );
    const first = entries[0] as Entry;
    // Entries of this log dropped for the leader's: the Raft paper's conflict case (Figure 7).
    if (conflict <= this.#log.lastIndex) this.truncations++;
    this.#log.truncateAndAppend(entries.slice(conflict - first.index));
    this.#stable = Math.min(this.#stable, conflict - 1);
    if (conflict <= this.#configIndex || entries.some((e) => e.kind === "config")) {
      this.#reloadConfig();
    }
  }

  #onInstallSnapshot(m: InstallSnapshot): void {
    this.#followLeader(m.from);
    const s = m.snapshot;
    this.#leaderCommit = Math.max(this.#leaderCommit, s.index);
    let index = s.index;
    if (s.index <= this.#commit) {
      index = this.#commit;
    } else if (this.#log.term(s.index) === s.term) {
      // We hold the snapshot's last entry, so its prefix too: just commit through it.
      this.#commitTo(s.index);
    } else {
      this.#log.restore(s);
      this.#pendingSnapshot = s;
      this.#commit = s.index;
      this.#stable = s.index;
      this.#reloadConfig();
    }
    this.#send({ type: "InstallSnapshotResp", from: this.id, to: m.from, term: this.#term, index });
  }

  #onTimeoutNow(_m: TimeoutNow): void {
    if (this.#role === "leader" || !this.#voters.has(this.id)) return;
    this.#campaign(true);
  }

  #commitTo(index: number): void {
    if (index > this.#commit) this.#commit = index;
  }

  #reloadConfig(): void {
    const config = this.#log.configAt(this.#log.lastIndex);
    this.#voters = new Set(config.voters);
    this.#learners = new Set(config.learners);
    this.#configIndex = config.index;
  }

  // ---- leader: replication -------------------------------------------------------------------

  #onAppendEntriesResp(m: AppendEntriesResp): void {
    if (this.#role !== "leader") return;
    const pr = this.#progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.heardMs = this.#nowMs;
    if (m.success) {
      this.#onAck(m.from, pr, m.index);
      return;
    }
    // A reject at or below the known match is stale (reordered or duplicated).
    if (m.index <= pr.match || pr.state === "snapshot") return;
    if (pr.state === "probe" && m.index !== pr.next - 1) return;
    pr.becomeProbe(Math.min(this.#nextAfterReject(m), m.index));
    this.#sendAppend(m.from, pr, false);
  }

  /** Where to resume after a reject, skipping a whole conflicting term at once. */
  #nextAfterReject(m: AppendEntriesResp): number {
    if (m.hintTerm === 0) return m.hintIndex;
    const at = this.#log.lastIndexAtOrBelowTerm(m.index - 1, m.hintTerm);
    return at === null ? m.hintIndex : at + 1;
  }

  #onAck(peer: string, pr: Progress, index: number): void {
    assert(
      index <= this.#log.lastIndex,
      () => `Follower ${peer} acked ${index}, past the leader's last ${this.#log.lastIndex}`,
    );
    const moved = pr.acknowledge(index, this.#nowMs);
    if (pr.state === "probe" || (pr.state === "snapshot" && pr.match >= pr.pendingSnapshot)) {
      pr.becomeReplicate(this.#nowMs);
    }
    if (moved) this.#maybeCommit();
    if (this.#role !== "leader") return;
    this.#maybeSendTimeoutNow(peer);
    this.#sendAppend(peer, pr, false);
  }

  #onInstallSnapshotResp(m: InstallSnapshotResp): void {
    if (this.#role !== "leader") return;
    const pr = this.#progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.heardMs = this.#nowMs;
    if (m.index > this.#log.lastIndex) return;
    const moved = pr.acknowledge(m.index, this.#nowMs);
    pr.becomeProbe(pr.match + 1);
    if (moved) this.#maybeCommit();
    if (this.#role === "leader") this.#sendAppend(m.from, pr, false);
  }

  /** Sends the next entries (or, with `allowEmpty`, at least the commit index) if flow allows. */
  #sendAppend(peer: string, pr: Progress, allowEmpty: boolean): void {
    if (!pr.canSend()) return;
    if (pr.next > this.#log.lastIndex && !allowEmpty) return;
    const prevIndex = pr.next - 1;
    const prevTerm = this.#log.term(prevIndex);
    if (prevTerm === null) {
      this.#sendSnapshot(peer, pr);
      return;
    }
    const entries = this.#log.slice(
      pr.next,
      this.#log.lastIndex,
      this.#o.appendEntriesMax,
      this.#o.appendBytesMax,
    );
    this.#send({
      type: "AppendEntries",
      from: this.id,
      to: peer,
      term: this.#term,
      prevIndex,
      prevTerm,
      entries,
      commit: this.#commit,
    });
    pr.sent(entries.at(-1)?.index ?? prevIndex, this.#nowMs);
  }

  #sendSnapshot(peer: string, pr: Progress): void {
    const snapshot = this.#log.snapshot;
    pr.becomeSnapshot(snapshot.index, this.#nowMs);
    this.#send({ type: "InstallSnapshot", from: this.id, to: peer, term: this.#term, snapshot });
  }

  #broadcastAppend(allowEmpty: boolean): void {
    for (const [peer, pr] of this.#progress) this.#sendAppend(peer, pr, allowEmpty);
  }

  /** Commits the highest index a majority of voters holds, if it is of the current term. */
  #maybeCommit(): void {
    const matches: number[] = [];
    for (const v of this.#voters) {
      matches.push(v === this.id ? this.#stable : (this.#progress.get(v)?.match ?? 0));
    }
    matches.sort((a, b) => b - a);
    const n = matches[quorum(matches.length) - 1] ?? 0;
    if (n <= this.#commit) return;
    const countable = this.#log.term(n) === this.#term ||
      this.#o.plantedBugs.commitPriorTermByCount === true;
    if (!countable) return;
    for (let i = this.#commit + 1; i <= n; i++) {
      this.#uncommittedBytes -= entryBytes(this.#log.entry(i) as Entry);
    }
    this.#commit = n;
    if (!this.#voters.has(this.id) && this.#commit >= this.#configIndex) {
      this.#stepDownRemoved();
      return;
    }
    this.#broadcastAppend(true);
  }

  /**
   * A leader whose removal (or demotion) committed hands over to the most caught-up voter and
   * steps down.
   */
  #stepDownRemoved(): void {
    let best: string | null = null;
    let bestMatch = -1;
    for (const [peer, pr] of this.#progress) {
      if (this.#voters.has(peer) && pr.match > bestMatch) [best, bestMatch] = [peer, pr.match];
    }
    this.#broadcastAppend(true);
    if (best !== null && bestMatch === this.#log.lastIndex) {
      this.#send({ type: "TimeoutNow", from: this.id, to: best, term: this.#term });
    }
    this.#becomeFollower(this.#term, null);
  }

  #maybeSendTimeoutNow(peer: string): void {
    const t = this.#transfer;
    if (t === null || t.target !== peer || t.sent) return;
    if (this.#progress.get(peer)?.match !== this.#log.lastIndex) {
      const pr = this.#progress.get(peer);
      if (pr !== undefined) this.#sendAppend(peer, pr, false);
      return;
    }
    this.#send({ type: "TimeoutNow", from: this.id, to: peer, term: this.#term });
    t.sent = true;
  }

  // ---- leader: proposals ---------------------------------------------------------------------

  #refuse(reason: RefusalReason): ProposeResult {
    return { ok: false, reason, leaderHint: this.#leaderId === this.id ? null : this.#leaderId };
  }

  #proposeRefusal(dataBytes: number): ProposeResult | null {
    if (this.#role !== "leader") return this.#refuse("not-leader");
    if (this.#transfer !== null) return this.#refuse("transferring");
    const bytes = dataBytes + entryBytes({ data: EMPTY });
    if (this.#uncommittedBytes + bytes > this.#o.uncommittedBytesMax) return this.#refuse("busy");
    return null;
  }

  #proposeConfig(config: { voters: string[]; learners: string[] }): ProposeResult {
    const refusal = this.#proposeRefusal(0);
    if (refusal !== null) return refusal;
    // One change at a time, and not before this term committed its first entry (the fix to
    // single-server changes in Ongaro's errata).
    if (this.#configIndex > this.#commit || this.#log.term(this.#commit) !== this.#term) {
      return this.#refuse("config-pending");
    }
    const sorted: Configuration = {
      voters: config.voters.sort(),
      learners: config.learners.sort(),
    };
    if (configProblem(sorted) !== null) return this.#refuse("invalid");
    return this.#proposeEntry("config", encodeConfig(sorted));
  }

  #proposeEntry(kind: EntryKind, data: Uint8Array): ProposeResult {
    const e = this.#appendLocal(kind, data);
    this.#broadcastAppend(false);
    return { ok: true, index: e.index, term: e.term };
  }

  #appendLocal(kind: EntryKind, data: Uint8Array): Entry {
    const e: Entry = { index: this.#log.lastIndex + 1, term: this.#term, kind, data };
    this.#log.append([e]);
    this.#uncommittedBytes += entryBytes(e);
    if (kind === "config") {
      this.#reloadConfig();
      this.#syncProgress();
      if (this.#transfer !== null && !this.#voters.has(this.#transfer.target)) {
        this.#transfer = null;
      }
    }
    return e;
  }

  #send(m: Message): void {
    if (this.#outbox.length >= OUTBOX_MESSAGES_MAX) {
      this.#droppedMessages++;
      return;
    }
    this.#outbox.push(m);
  }
}

/** Votes or replicas that make a majority of `n` voters. */
export function quorum(n: number): number {
  return Math.floor(n / 2) + 1;
}

function definedOnly(opts: RaftNodeOptions): Partial<Tunables> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(opts)) {
    if (v !== undefined && k !== "id" && k !== "state" && k !== "random" && k !== "nowMs") {
      out[k] = v;
    }
  }
  return out as Partial<Tunables>;
}

function checkTunables(o: Tunables): void {
  const positive: (keyof Tunables)[] = [
    "electionTimeoutMs",
    "heartbeatIntervalMs",
    "appendEntriesMax",
    "appendBytesMax",
    "inflightMax",
    "uncommittedBytesMax",
    "applyBytesMax",
  ];
  for (const k of positive) {
    const v = o[k];
    if (typeof v !== "number" || !(v > 0)) throw new RangeError(`RaftNode option ${k} must be > 0`);
  }
  if (o.heartbeatIntervalMs >= o.electionTimeoutMs) {
    throw new RangeError("RaftNode heartbeatIntervalMs must be below electionTimeoutMs");
  }
}
