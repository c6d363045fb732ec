// The shapes a Raft node shares with its shell: log entries, snapshots, hard state, the messages
// peers exchange, and the Ready batch the shell persists before it may send anything.

/**
 * What an entry carries: application data, a new configuration, or the no-op a new leader appends.
 */
export type EntryKind = "normal" | "config" | "noop";

/** One log entry. `data` is owned by the log once appended: never mutate it. */
export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly kind: EntryKind;
  /** Application bytes ("normal"), an encoded Configuration ("config"), or empty ("noop"). */
  readonly data: Uint8Array;
}

/** The state that must be on disk before any message that depends on it leaves the node. */
export interface HardState {
  readonly term: number;
  /** Whom this node voted for in `term`, or null. */
  readonly vote: string | null;
  readonly commit: number;
}

/**
 * A group's members: voters elect the leader and make up every quorum; learners receive the log
 * and apply it, but never vote, campaign or count towards a quorum. Disjoint, each sorted.
 */
export interface Configuration {
  readonly voters: readonly string[];
  readonly learners: readonly string[];
}

/** A compacted prefix of the log: everything through `index`, and the members in force there. */
export interface Snapshot {
  readonly index: number;
  readonly term: number;
  /** Voter ids as of `index`, sorted (empty only for a node that was never a member). */
  readonly voters: readonly string[];
  /** Learner ids as of `index`, sorted, disjoint from `voters`. */
  readonly learners: readonly string[];
  /** The application state machine's image through `index`. */
  readonly data: Uint8Array;
}

/** Everything a node needs to restart: what the shell made durable from earlier Readys. */
export interface PersistentState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot;
  /** Entries after `snapshot.index`, contiguous. */
  readonly entries: readonly Entry[];
}

/** A node's part in the current term. */
export type Role = "follower" | "precandidate" | "candidate" | "leader";

interface MessageBase {
  readonly from: string;
  readonly to: string;
  /**
   * The sender's term; for PreVote the term it would campaign in (its term + 1), and for a granted
   * PreVoteResp that same future term.
   */
  readonly term: number;
}

/** Asks whether the receiver would vote for the sender in `term`, without changing any term. */
export interface PreVote extends MessageBase {
  readonly type: "PreVote";
  readonly lastIndex: number;
  readonly lastTerm: number;
}

/** Answer to PreVote. */
export interface PreVoteResp extends MessageBase {
  readonly type: "PreVoteResp";
  readonly granted: boolean;
}

/** Asks for the receiver's vote in `term`. */
export interface RequestVote extends MessageBase {
  readonly type: "RequestVote";
  readonly lastIndex: number;
  readonly lastTerm: number;
  /** Sent on a leader's TimeoutNow: bypasses the receiver's leader stickiness. */
  readonly transfer: boolean;
}

/** Answer to RequestVote; a grant is sent only after the vote is durable. */
export interface RequestVoteResp extends MessageBase {
  readonly type: "RequestVoteResp";
  readonly granted: boolean;
}

/** Replicates entries after (`prevIndex`, `prevTerm`); with no entries, a heartbeat. */
export interface AppendEntries extends MessageBase {
  readonly type: "AppendEntries";
  readonly prevIndex: number;
  readonly prevTerm: number;
  readonly entries: readonly Entry[];
  /** The leader's commit index. */
  readonly commit: number;
}

/** Answer to AppendEntries; an ack is sent only after the entries are durable. */
export interface AppendEntriesResp extends MessageBase {
  readonly type: "AppendEntriesResp";
  readonly success: boolean;
  /** On success, the last index known to match the leader; on reject, the rejected prevIndex. */
  readonly index: number;
  /** On reject: the term of the follower's conflicting entry, or 0 if its log is too short. */
  readonly hintTerm: number;
  /** On reject: the first index of `hintTerm` in the follower's log, or its last index + 1. */
  readonly hintIndex: number;
}

/** Sends a whole snapshot to a follower that needs entries the leader has compacted. */
export interface InstallSnapshot extends MessageBase {
  readonly type: "InstallSnapshot";
  readonly snapshot: Snapshot;
}

/** Answer to InstallSnapshot: the index through which the follower now matches the leader. */
export interface InstallSnapshotResp extends MessageBase {
  readonly type: "InstallSnapshotResp";
  readonly index: number;
}

/** A leader hands over: the receiver campaigns at once, skipping pre-vote. */
export interface TimeoutNow extends MessageBase {
  readonly type: "TimeoutNow";
}

/** Every message Raft peers exchange. */
export type Message =
  | PreVote
  | PreVoteResp
  | RequestVote
  | RequestVoteResp
  | AppendEntries
  | AppendEntriesResp
  | InstallSnapshot
  | InstallSnapshotResp
  | TimeoutNow;

/** The message type names. */
export type MessageType = Message["type"];

/**
 * A batch of work for the shell. Send `sendNow`; persist `snapshot` (if any), then `entries`
 * (truncating the stored log from `entries[0].index`), then `hardState` (if any), all durably;
 * apply `committedEntries`; then call `RaftNode.advance(ready)`, which returns the other messages
 * to send. Those are withheld until then because vote grants and acks promise that the state is on
 * disk.
 */
export interface Ready {
  /** The hard state to persist, or null when it has not changed since the last Ready. */
  readonly hardState: HardState | null;
  /** A snapshot received from the leader, to install before `entries`; or null. */
  readonly snapshot: Snapshot | null;
  /** Entries to append durably; the first one replaces the stored entry at its index and later. */
  readonly entries: readonly Entry[];
  /** Durable, committed entries to apply to the state machine, in order. */
  readonly committedEntries: readonly Entry[];
  /**
   * Messages the shell may send at once, before it persists this Ready: a leader's appends, which
   * promise nothing about its own disk (it counts itself towards a commit only once `advance`
   * says its entries are durable), so its write and its followers' run side by side.
   */
  readonly sendNow?: readonly Message[];
}

/** Why a proposal or membership change was refused. */
export type RefusalReason =
  /** This node is not the leader; retry at `leaderHint`. */
  | "not-leader"
  /** Too many uncommitted bytes; retry after some commit. */
  | "busy"
  /** A leadership transfer is under way. */
  | "transferring"
  /** A membership change is still uncommitted, or this term has committed nothing yet. */
  | "config-pending"
  /**
   * The change makes no sense: adding a voter or learner that already is one, removing a
   * non-member, removing or demoting the last voter, or going over VOTERS_MAX or LEARNERS_MAX.
   */
  | "invalid";

/** The outcome of `propose`, `addServer`, `addLearner` or `removeServer`. */
export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | { readonly ok: false; readonly reason: RefusalReason; readonly leaderHint: string | null };
