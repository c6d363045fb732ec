// Named limits and defaults of the Raft state machine and its wire encoding.

/** Voters in one group at most. */
export const VOTERS_MAX = 64;
/** Learners (non-voting members) in one group at most. */
export const LEARNERS_MAX = 1024;
/** Entries one AppendEntries carries at most (also what the decoder accepts). */
export const APPEND_ENTRIES_MAX = 4096;
/** Largest single entry's data, bytes. */
export const ENTRY_DATA_BYTES_MAX = 16 * 1024 * 1024;
/** Largest snapshot image, bytes. */
export const SNAPSHOT_DATA_BYTES_MAX = 256 * 1024 * 1024;
/** Messages queued between two Readys at most; more are dropped (Raft tolerates loss). */
export const OUTBOX_MESSAGES_MAX = 4096;
/**
 * Times a (pre)candidate asks a silent voter for its vote in one campaign at most, a heartbeat
 * interval apart: enough to get past a lost request or a peer that opened the group a moment
 * late, without a node cut off from its peers asking every group's peers ten times a second.
 */
export const VOTE_ASKS_PER_CAMPAIGN_MAX = 3;
/** Accounting overhead of one entry besides its data, bytes. */
export const ENTRY_OVERHEAD_BYTES = 24;
/** Largest term or index: leaves room to count up in safe integers. */
export const TERM_MAX = 2 ** 52;
export const INDEX_MAX = 2 ** 52;

/** Defaults of the tunable options of a RaftNode. */
export const RAFT_DEFAULTS = {
  /** Base election timeout; each wait is drawn from [base, 2 × base). */
  electionTimeoutMs: 700,
  heartbeatIntervalMs: 100,
  /** Entries per AppendEntries. */
  appendEntriesMax: 256,
  /** Entry bytes per AppendEntries (at least one entry is always sent). */
  appendBytesMax: 1024 * 1024,
  /** Pipelined AppendEntries in flight to one follower. */
  inflightMax: 64,
  /** Bytes of uncommitted entries a leader accepts before refusing proposals as "busy". */
  uncommittedBytesMax: 64 * 1024 * 1024,
  /** Bytes of committed entries handed out in one Ready (at least one entry). */
  applyBytesMax: 4 * 1024 * 1024,
} as const;

/** Accounted size of an entry, bytes. */
export function entryBytes(e: { readonly data: Uint8Array }): number {
  return e.data.length + ENTRY_OVERHEAD_BYTES;
}
