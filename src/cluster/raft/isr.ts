// The in-sync rule: which of a leader's followers count as in sync. DESCRIBE_TOPIC's `isr` and the
// under-replicated gauge use it, so an operator sees a replica drop out whether it died or fell
// behind.

/**
 * How many entries a follower may trail the leader's last index and still be in sync. Entries are
 * whole batches, so this is a few round trips of a busy producer's pipeline, not records.
 */
export const ISR_LAG_ENTRIES_MAX = 64;
/**
 * How long ago a follower must last have answered the leader to be in sync, ms. Leaders send
 * heartbeats every 100 ms (RAFT_DEFAULTS.heartbeatIntervalMs), so 2 s is 20 missed answers: a
 * dead or cut-off follower drops out within 2 s, a merely slow one does not flap.
 */
export const ISR_HEARD_MS_MAX = 2_000;

/** What a leader knows of one follower. */
export interface FollowerStatus {
  /** Highest index known to match the leader's log. */
  match: number;
  /** When the follower last answered, ms on the leader's clock; null: never. */
  heardMs: number | null;
}

/** The leader's side of the comparison. */
export interface LeaderPosition {
  lastIndex: number;
  nowMs: number;
}

/**
 * True if the follower is in sync: its log matches the leader's to within ISR_LAG_ENTRIES_MAX
 * entries of the last index AND it answered within ISR_HEARD_MS_MAX. Both are needed: a caught-up
 * follower that died stays caught up while nothing is produced, and one that answers every
 * heartbeat may still be far behind.
 */
export function inSync(f: FollowerStatus, at: LeaderPosition): boolean {
  if (f.heardMs === null || at.nowMs - f.heardMs > ISR_HEARD_MS_MAX) return false;
  return f.match >= at.lastIndex - ISR_LAG_ENTRIES_MAX;
}
