// Raft's safety properties, checked while a simulated cluster runs, across every node and every
// incarnation of each Raft group (the metadata group and each partition's). Fed from the groups'
// observers (what became durable, what was sent, what was applied) and by polling the nodes.
//
// - Election Safety: at most one leader per group and term, as polled, and as the appends and
//   snapshots sent show (only a term's leader sends them in its term).
// - Log Matching: two logs holding an entry with the same index and term hold the same entry, and
//   the same term just before it (so, by induction, the same prefix); an entry sits at its index.
// - Leader Completeness: a leader's log holds every entry any node had committed when it was seen
//   leading; committed entries never differ between nodes.
// - State Machine Safety: every node applies the same entry at an index, and only once committed.
// - A node's commit index never goes back within an incarnation.
// - Leases (availability, when watched): a leader that another node has replaced in a later term
//   stops leading within its lease (check-quorum), unless it is paused.
// - Persistence before sending: a vote is granted, an append acknowledged, and a term used in a
//   message only once durable; and a restarted node still holds all it had promised that way.
//
// And the steps that lead there, checked as each happens, so a slip shows even when the run's
// interleaving never turns it into a lost or divergent entry:
// - Elections: a node leads a term only with the votes of a majority of its voters in that term
//   (counted from the grants sent), itself included; a (pre-)vote goes only to a candidate whose
//   log is at least as up to date as the voter's when it asked.
// - Leader commit: a leader moves its commit index only to an entry of its own term (Figure 8).
// - Progress: a leader's match index for a follower is never past what that follower
//   acknowledged in the leader's term (stale, duplicated or reordered answers change nothing).
// - Follower commit: an append moves a follower's commit index at most to the leader's commit and
//   to the last entry the append showed matching; a snapshot at most to its index; nothing else
//   moves it.

import type { RaftGroup } from "../src/cluster/raft/shell.ts";
import type { Entry, Message, Ready } from "../src/cluster/raft/types.ts";

interface Seen {
  term: number;
  hash: number;
}

/** One incarnation of a node's group, as the checker tracks it. */
interface View {
  commit: number;
  /** The log was checked for Log Matching through here, when it held `checkedTerm` there. */
  checkedTo: number;
  checkedTerm: number | null;
  /** Committed entries recorded through here. */
  committedTo: number;
  durableTerm: number;
  durableVote: string | null;
  durableLast: number;
  /**
   * Per term, the highest index durable while the node was in it: an answer made in a term may
   * leave after the node moved on and replaced those entries (a delayed message, which is legal).
   */
  durableHigh: Map<number, number>;
  /**
   * Per term, the lowest index at which an entry of that term was saved in this incarnation. An
   * answer acknowledging entries of an earlier term that were still only in memory may leave once
   * a later term's leader has overwritten them durably: the node then holds a log a correct node
   * could hold after accepting those entries and then being told to replace them (raft seed 7308).
   */
  durableLow: Map<number, number>;
  /** Since when (virtual ms) this node leads although another leads a later term; else null. */
  supersededSinceMs: number | null;
  /** The term this node was last seen leading (0: not leading then), and its commit then. */
  ledTerm: number;
  ledCommit: number;
}

/** What the lease check needs of the scenario. */
export interface LeaseWatch {
  /** Virtual time now, ms. */
  nowMs(): number;
  /** How long a superseded leader may go on leading, ms (running time, pauses excluded). */
  leaseMs: number;
  /** True while the node holding `g` is paused (it cannot step down then). */
  paused(g: RaftGroup): boolean;
}

/** What a node told peers about its durable state, per group: it must survive a restart. */
interface Promised {
  term: number;
  votes: Map<number, string>;
  /** An append acknowledged through this index, holding `ackedTerm` there. */
  ackedTo: number;
  ackedTerm: number;
}

/** Raft safety across a cluster's nodes; violations collect in `violations`. */
export class RaftChecker {
  readonly violations: string[] = [];
  /** Checks done, for the run's stats. */
  readonly stats = { raftPolls: 0, raftRestartsChecked: 0, raftEntriesMatched: 0 };
  readonly #views = new WeakMap<RaftGroup, View>();
  /** group → node id → the node's latest incarnation of the group (what its disk holds). */
  readonly #current = new Map<string, Map<string, RaftGroup>>();
  readonly #promised = new Map<string, Promised>();
  /** `group@term` → the node seen leading it. */
  readonly #leaders = new Map<string, string>();
  /** `group@term` → the node seen sending appends or snapshots in it. */
  readonly #senders = new Map<string, string>();
  /** group → `index:term` → the entry's hash and the term before it. */
  readonly #entries = new Map<string, Map<string, { hash: number; prevTerm: number | null }>>();
  /**
   * group → index → the committed entry, and the lowest term of a node seen holding it committed
   * (the term it was committed in is at most that).
   */
  readonly #committed = new Map<string, Map<number, Seen & { atTerm: number }>>();
  readonly #applied = new Map<string, Map<number, Seen & { node: string }>>();
  /** `group@term@candidate` → the voters that sent it a granted RequestVoteResp in that term. */
  readonly #grants = new Map<string, Set<string>>();
  /** `group@term@follower>leader` → the highest index the follower acknowledged in that term. */
  readonly #acks = new Map<string, number>();
  /**
   * `node/group|type|term|candidate` → for each (pre-)vote request the node handled, whether the
   * candidate's log was at least as up to date as the node's then.
   */
  readonly #asks = new Map<string, boolean[]>();
  /** group → the latest configuration any node held committed: its index and members. */
  readonly #configs = new Map<string, { index: number; members: Set<string> }>();
  readonly #violationsMax: number;
  readonly #skip: (group: string) => number;
  #lease: LeaseWatch | null = null;

  /**
   * @param skipBytes leading bytes of a group's entries left out of comparisons: a partition
   *   replica's log writes each batch's base offset into the entry's bytes as it applies it, so a
   *   replica may send an entry before or after that happened.
   */
  constructor(skipBytes: (group: string) => number = () => 0, violationsMax = 20) {
    this.#skip = skipBytes;
    this.#violationsMax = violationsMax;
  }

  /** Also checks that superseded leaders step down within `lease.leaseMs`. */
  watchLeases(lease: LeaseWatch): void {
    this.#lease = lease;
  }

  #hash(group: string, data: Uint8Array): number {
    return hashOf(data.subarray(Math.min(this.#skip(group), data.length)));
  }

  #violate(msg: string): void {
    if (this.violations.length < this.#violationsMax) this.violations.push(msg);
  }

  /**
   * Forgets what a node promised in a group it left: a replica moved away, whose state the node
   * deleted once the group had committed a configuration without it. If it is added back later it
   * joins afresh, as a newcomer the leader catches up.
   */
  forget(g: RaftGroup): void {
    const key = `${g.node.id}/${g.group}`;
    const config = this.#configs.get(g.group);
    if (config === undefined || config.members.has(g.node.id)) {
      this.#violate(
        `${key} deleted its state while a member of the latest committed configuration ` +
          `(${config === undefined ? "none seen" : [...config.members].join(",")})`,
      );
    }
    this.#promised.delete(key);
    const nodes = this.#current.get(g.group);
    if (nodes?.get(g.node.id) === g) nodes.delete(g.node.id);
  }

  /** Starts watching a group just created (a node started, or opened a partition replica). */
  attach(g: RaftGroup): void {
    const n = g.node;
    const key = `${n.id}/${g.group}`;
    const p = this.#promised.get(key);
    if (p !== undefined) {
      this.stats.raftRestartsChecked++;
      if (n.term < p.term) {
        this.#violate(
          `${key} restarted in term ${n.term}, but it had sent messages in term ${p.term}`,
        );
      }
      const vote = p.votes.get(n.term);
      if (vote !== undefined && n.vote !== vote) {
        this.#violate(
          `${key} granted its vote in term ${n.term} to ${vote}, but restarted with vote ` +
            `${n.vote ?? "none"} (the vote was not durable)`,
        );
      }
      if (p.ackedTo > n.snapshot.index && n.termAt(p.ackedTo) !== p.ackedTerm) {
        this.#violate(
          `${key} acknowledged entries through ${p.ackedTo} (term ${p.ackedTerm}), but restarted ` +
            `holding ${n.termAt(p.ackedTo) ?? "nothing"} there (log ends at ${n.lastIndex})`,
        );
      }
    }
    const promised: Promised = p ?? { term: 0, votes: new Map(), ackedTo: 0, ackedTerm: 0 };
    this.#promised.set(key, promised);
    const view: View = {
      commit: n.commitIndex,
      checkedTo: 0,
      checkedTerm: null,
      committedTo: n.snapshot.index,
      durableTerm: n.term,
      durableVote: n.vote,
      durableLast: n.lastIndex,
      durableHigh: new Map([[n.term, n.lastIndex]]),
      durableLow: new Map(),
      supersededSinceMs: null,
      ledTerm: 0,
      ledCommit: 0,
    };
    this.#views.set(g, view);
    let nodes = this.#current.get(g.group);
    if (nodes === undefined) this.#current.set(g.group, nodes = new Map());
    nodes.set(n.id, g);
    g.observer = {
      saving: (ready) => this.#saving(g, promised, ready),
      saved: (ready) => this.#saved(view, promised, ready),
      sent: (m) => this.#sent(key, g, view, promised, m),
      received: (m, commitBefore) => this.#received(key, g, view, m, commitBefore),
      applied: (e) => this.#appliedEntry(key, g, e),
    };
  }

  /**
   * A node's commit index never goes back within an incarnation: checked at every message sent,
   * not only at polls, so a dip between two polls is seen too.
   */
  #commitMonotone(view: View, key: string, commit: number): void {
    if (commit < view.commit) {
      this.#violate(`${key}: commit index went back from ${view.commit} to ${commit}`);
    }
    view.commit = Math.max(view.commit, commit);
  }

  /**
   * Entries a later leader's replace void what was acknowledged of them — from the moment their
   * save begins: a crash during it may leave the new ones on disk (cluster seed 545).
   */
  #saving(g: RaftGroup, p: Promised, ready: Ready): void {
    const first = ready.entries[0];
    if (first === undefined || first.index > p.ackedTo) return;
    p.ackedTo = first.index - 1;
    p.ackedTerm = g.node.termAt(p.ackedTo) ?? 0;
    if (p.ackedTo <= g.node.snapshot.index) p.ackedTo = 0;
  }

  #saved(view: View, p: Promised, ready: Ready): void {
    if (ready.hardState !== null) {
      view.durableTerm = ready.hardState.term;
      view.durableVote = ready.hardState.vote;
    }
    if (ready.snapshot !== null) {
      view.durableLast = ready.snapshot.index;
      if (p.ackedTo > ready.snapshot.index) {
        p.ackedTo = ready.snapshot.index;
        p.ackedTerm = ready.snapshot.term;
      }
    }
    const first = ready.entries[0];
    if (first !== undefined) view.durableLast = ready.entries.at(-1)!.index;
    let termSeen = -1;
    for (const e of ready.entries) {
      if (e.term === termSeen) continue;
      termSeen = e.term;
      const low = view.durableLow.get(e.term);
      if (low === undefined || e.index < low) view.durableLow.set(e.term, e.index);
    }
    const high = view.durableHigh.get(view.durableTerm) ?? 0;
    view.durableHigh.set(view.durableTerm, Math.max(high, view.durableLast));
  }

  #sent(key: string, g: RaftGroup, view: View, p: Promised, m: Message): void {
    if (m.type === "AppendEntries" || m.type === "InstallSnapshot") {
      const lt = `${g.group}@${m.term}`;
      const known = this.#senders.get(lt);
      if (known === undefined) {
        this.#senders.set(lt, m.from);
        this.#elected(g, key, m.term);
      } else if (known !== m.from) {
        this.#violate(
          `${g.group} had two leaders in term ${m.term}: ${known}, and ${m.from}, which sent ` +
            `${m.type} in that term`,
        );
      }
    }
    this.#commitMonotone(view, key, g.node.commitIndex);
    this.#leaderCommit(g, view, key);
    this.#voteForFresherLog(key, g, m);
    this.#recordAnswer(g, m);
    // A pre-vote (and a pre-vote granted) speaks of a term the node has not entered.
    const future = m.type === "PreVote" || (m.type === "PreVoteResp" && m.granted);
    if (!future) {
      if (m.term > view.durableTerm) {
        this.#violate(`${key} sent ${m.type} in term ${m.term} before that term was durable`);
      }
      p.term = Math.max(p.term, m.term);
    }
    if (m.type === "RequestVoteResp" && m.granted) {
      // A later durable term also keeps the node from ever voting in this one again.
      if (view.durableTerm < m.term || (view.durableTerm === m.term && view.durableVote !== m.to)) {
        this.#violate(
          `${key} granted its vote in term ${m.term} to ${m.to} before the vote was durable ` +
            `(durable: term ${view.durableTerm}, vote ${view.durableVote ?? "none"})`,
        );
      }
      p.votes.set(m.term, m.to);
    }
    if (m.type === "AppendEntriesResp" && m.success) {
      // An answer made in an earlier term, released only now: judged by what was durable then.
      const durable = m.term < view.durableTerm
        ? Math.max(view.durableLast, view.durableHigh.get(m.term) ?? 0)
        : view.durableLast;
      if (m.index > durable && !overwrittenLater(view, m.term, m.index)) {
        this.#violate(
          `${key} acknowledged entries through ${m.index} while only ${durable} were durable`,
        );
      }
      this.#ackMatchesLeader(key, g, m.to, m.term, m.index);
      const term = g.node.termAt(m.index);
      if (term !== null && m.index >= p.ackedTo && m.term === g.node.term) {
        p.ackedTo = m.index;
        p.ackedTerm = term;
      }
    }
  }

  /** After the node handled `m`: its commit index moved only as Raft lets that message move it. */
  #received(key: string, g: RaftGroup, view: View, m: Message, commitBefore: number): void {
    const n = g.node;
    if (m.type === "PreVote" || m.type === "RequestVote") {
      // Handling a vote request never changes the log, so this is the log the node judged by.
      const lastTerm = n.termAt(n.lastIndex) ?? n.snapshot.term;
      const fresh = m.lastTerm > lastTerm ||
        (m.lastTerm === lastTerm && m.lastIndex >= n.lastIndex);
      const k = `${key}|${m.type}|${m.term}|${m.from}`;
      const asks = this.#asks.get(k) ?? [];
      asks.push(fresh);
      this.#asks.set(k, asks);
    }
    const commit = n.commitIndex;
    if (commit > commitBefore) {
      let limit = commitBefore;
      let why = "";
      if (m.type === "AppendEntries") {
        const matched = m.prevIndex + m.entries.length;
        limit = Math.min(m.commit, matched);
        why = `an append from ${m.from} in term ${m.term} that matched through ${matched} with ` +
          `the leader's commit at ${m.commit}`;
      } else if (m.type === "InstallSnapshot") {
        limit = m.snapshot.index;
        why = `a snapshot through ${m.snapshot.index} from ${m.from}`;
      } else if (n.role === "leader") {
        limit = commit;
      } else {
        why = `a ${m.type} from ${m.from}, which carries no commit index`;
      }
      if (commit > limit) {
        this.#violate(
          `${key} moved its commit index from ${commitBefore} to ${commit} on ${why}: a ` +
            "follower commits only entries the leader committed and its append showed matching",
        );
      }
    }
    this.#commitMonotone(view, key, commit);
    this.#leaderCommit(g, view, key);
  }

  /**
   * A leader moves its commit index only to an entry of its own term: entries of earlier terms
   * commit with it, never by counting their replicas (Raft §5.4.2, Figure 8).
   */
  #leaderCommit(g: RaftGroup, view: View, key: string): void {
    const n = g.node;
    if (n.role !== "leader") {
      view.ledTerm = 0;
      return;
    }
    if (view.ledTerm !== n.term) {
      view.ledTerm = n.term;
      view.ledCommit = n.commitIndex;
      return;
    }
    if (n.commitIndex <= view.ledCommit) return;
    const term = n.termAt(n.commitIndex);
    if (term !== null && term !== n.term) {
      this.#violate(
        `${key} leads term ${n.term} and moved its commit index from ${view.ledCommit} to ` +
          `${n.commitIndex}, an entry of term ${term}: a leader commits by counting replicas only ` +
          "entries of its own term (Raft Figure 8)",
      );
    }
    this.#commitDurable(g, key, term);
    view.ledCommit = n.commitIndex;
  }

  /**
   * A follower that acknowledges an append through `index` holds there the entry its leader
   * holds (Log Matching, as the answer claims it): an answer that reaches past what the append
   * checked — an old suffix the follower never compared — would let the leader count a copy
   * that is not one. Judged while both are still in the answer's term.
   */
  #ackMatchesLeader(key: string, g: RaftGroup, leaderId: string, term: number, index: number) {
    if (g.node.term !== term) return;
    const leader = this.#current.get(g.group)?.get(leaderId)?.node;
    if (leader === undefined || leader.term !== term || leader.role !== "leader") return;
    const mine = g.node.termAt(index);
    const theirs = leader.termAt(index);
    if (mine === null || theirs === null || mine === theirs) return;
    this.#violate(
      `${key} acknowledged ${leaderId}'s append through ${index} in term ${term}, holding an ` +
        `entry of term ${mine} there where its leader holds one of term ${theirs}`,
    );
  }

  /**
   * What a leader commits is on the disks of a majority of its voters, its own counted only once
   * its write is durable: a leader that counts a copy still in memory (its own, or one a
   * follower acknowledged too early) can lose a committed entry to a crash.
   */
  #commitDurable(g: RaftGroup, key: string, term: number | null): void {
    const n = g.node;
    const index = n.commitIndex;
    const voters = n.voters;
    const nodes = this.#current.get(g.group);
    const holding: string[] = [];
    for (const id of voters) {
      const other = nodes?.get(id);
      const view = other === undefined ? undefined : this.#views.get(other);
      if (other === undefined || view === undefined) continue;
      const on = other.node;
      const holds = index <= on.snapshot.index ||
        (view.durableLast >= index && on.termAt(index) === term);
      if (holds) holding.push(id);
    }
    if (holding.length < Math.floor(voters.length / 2) + 1) {
      this.#violate(
        `${key} leads term ${n.term} and moved its commit index to ${index}, which only ` +
          `${holding.length === 0 ? "no voter" : holding.join(",")} of ${voters.join(",")} ` +
          "held on disk: a commit needs a majority of durable copies",
      );
    }
  }

  /** A granted (pre-)vote: some request it answers showed a log at least as up to date. */
  #voteForFresherLog(key: string, g: RaftGroup, m: Message): void {
    if ((m.type !== "PreVoteResp" && m.type !== "RequestVoteResp") || !m.granted) return;
    const ask = m.type === "PreVoteResp" ? "PreVote" : "RequestVote";
    const asks = this.#asks.get(`${key}|${ask}|${m.term}|${m.to}`);
    if (asks === undefined || asks.some((fresh) => fresh)) return;
    const n = g.node;
    this.#violate(
      `${key} granted its ${ask === "PreVote" ? "pre-vote" : "vote"} in term ${m.term} to ` +
        `${m.to}, whose log was behind its own (last ${n.lastIndex}, term ` +
        `${n.termAt(n.lastIndex) ?? n.snapshot.term}) every time it asked`,
    );
  }

  /** Records vote grants and acknowledged indexes, per term, as they leave their sender. */
  #recordAnswer(g: RaftGroup, m: Message): void {
    if (m.type === "RequestVoteResp" && m.granted) {
      const k = `${g.group}@${m.term}@${m.to}`;
      const voters = this.#grants.get(k) ?? new Set<string>();
      voters.add(m.from);
      this.#grants.set(k, voters);
    } else if (
      (m.type === "AppendEntriesResp" && m.success) || m.type === "InstallSnapshotResp"
    ) {
      const k = `${g.group}@${m.term}@${m.from}>${m.to}`;
      this.#acks.set(k, Math.max(this.#acks.get(k) ?? 0, m.index));
    }
  }

  /** A node that sends appends in `term` won that term's election: a majority voted for it. */
  #elected(g: RaftGroup, key: string, term: number): void {
    const n = g.node;
    if (n.term !== term || n.role !== "leader") return;
    const voters = n.voters;
    const grants = this.#grants.get(`${g.group}@${term}@${n.id}`) ?? new Set<string>();
    let votes = 0;
    for (const v of voters) {
      if (v === n.id ? n.vote === n.id : grants.has(v)) votes++;
    }
    if (votes < Math.floor(voters.length / 2) + 1) {
      this.#violate(
        `${key} leads term ${term} with the votes of ${votes} of its ${voters.length} voters ` +
          `(${[...grants].join(", ") || "none"} granted, its own vote ${n.vote ?? "none"}): ` +
          "a leader needs a majority of votes in its own term",
      );
    }
  }

  /** A leader's match index for a follower is what the follower acknowledged in its term. */
  #matchAcked(g: RaftGroup, key: string): void {
    const n = g.node;
    for (const peer of [...n.voters, ...n.learners]) {
      if (peer === n.id) continue;
      const match = n.matchOf(peer) ?? 0;
      if (match === 0) continue;
      const acked = this.#acks.get(`${g.group}@${n.term}@${peer}>${n.id}`) ?? 0;
      if (match > acked) {
        this.#violate(
          `${key} leads term ${n.term} and holds ${peer} matching through ${match}, but ${peer} ` +
            `acknowledged only through ${acked} in that term: an answer from another term moved ` +
            "the leader's progress",
        );
      }
    }
  }

  #appliedEntry(key: string, g: RaftGroup, e: Entry): void {
    if (e.index > g.node.commitIndex) {
      this.#violate(
        `${key} applied entry ${e.index} (term ${e.term}) while its commit index was ` +
          `${g.node.commitIndex}`,
      );
    }
    const applied = mapOf(this.#applied, g.group);
    const hash = this.#hash(g.group, e.data);
    const before = applied.get(e.index);
    if (before === undefined) applied.set(e.index, { term: e.term, hash, node: key });
    else if (before.term !== e.term || before.hash !== hash) {
      this.#violate(
        `${g.group}: ${before.node} applied entry ${e.index} of term ${before.term}, ${key} ` +
          `applied a different one (term ${e.term}) at that index`,
      );
    }
  }

  /** Checks the groups of every node that runs now (call often: every few virtual ms). */
  poll(groups: Iterable<RaftGroup>): void {
    this.stats.raftPolls++;
    const leading: { g: RaftGroup; view: View }[] = [];
    for (const g of groups) {
      const view = this.#views.get(g);
      if (view === undefined || g.stopped) continue;
      const n = g.node;
      const key = `${n.id}/${g.group}`;
      this.#commitMonotone(view, key, n.commitIndex);
      this.#leaderCommit(g, view, key);
      this.#matchLog(g, view, key);
      this.#recordCommitted(g, view, key);
      const known = this.#configs.get(g.group);
      if (n.configCommitted && (known === undefined || known.index < n.configIndex)) {
        this.#configs.set(g.group, {
          index: n.configIndex,
          members: new Set([...n.voters, ...n.learners]),
        });
      }
      if (n.role === "leader") {
        leading.push({ g, view });
        this.#matchAcked(g, key);
        if (n.vote !== n.id) {
          this.#violate(
            `${key} leads term ${n.term} but its vote in that term is ` +
              `${n.vote ?? "none"}: it took a later term without stepping down`,
          );
        }
        const lt = `${g.group}@${n.term}`;
        const known = this.#leaders.get(lt);
        if (known === undefined) {
          this.#leaders.set(lt, n.id);
          this.#complete(g, key);
        } else if (known !== n.id) {
          this.#violate(`${g.group} had two leaders in term ${n.term}: ${known} and ${n.id}`);
        }
      }
    }
    this.#checkLeases(leading);
  }

  /** Leases: a leader another node superseded in a later term must step down within its lease. */
  #checkLeases(leading: readonly { g: RaftGroup; view: View }[]): void {
    const lease = this.#lease;
    if (lease === null) return;
    const now = lease.nowMs();
    const newest = new Map<string, { term: number; id: string }>();
    for (const { g } of leading) {
      const top = newest.get(g.group);
      if (top === undefined || g.node.term > top.term) {
        newest.set(g.group, { term: g.node.term, id: g.node.id });
      }
    }
    for (const { g, view } of leading) {
      const top = newest.get(g.group)!;
      if (top.term === g.node.term || lease.paused(g)) {
        view.supersededSinceMs = null;
        continue;
      }
      view.supersededSinceMs ??= now;
      const forMs = now - view.supersededSinceMs;
      if (forMs > lease.leaseMs) {
        this.#violate(
          `${g.node.id}/${g.group} still leads term ${g.node.term} ${Math.round(forMs)} ms after ` +
            `it was seen superseded by ${top.id} leading term ${top.term} (lease ` +
            `${lease.leaseMs} ms): a leader cut off from its quorum must step down`,
        );
        view.supersededSinceMs = null;
      }
    }
  }

  /** Log Matching over the part of the log not yet checked (all of it after a truncation). */
  #matchLog(g: RaftGroup, view: View, key: string): void {
    const n = g.node;
    const unchanged = view.checkedTo < n.firstIndex ||
      (view.checkedTo <= n.lastIndex && n.termAt(view.checkedTo) === view.checkedTerm);
    const from = unchanged ? Math.max(view.checkedTo + 1, n.firstIndex) : n.firstIndex;
    const entries = mapOf(this.#entries, g.group);
    for (let i = from; i <= n.lastIndex; i++) {
      const e = n.entryAt(i);
      if (e === null) break;
      if (e.index !== i) {
        this.#violate(`${key} holds entry ${e.index} at index ${i} of its log`);
        break;
      }
      const prevTerm = n.termAt(i - 1);
      const hash = this.#hash(g.group, e.data);
      const k = `${i}:${e.term}`;
      const known = entries.get(k);
      this.stats.raftEntriesMatched++;
      if (known === undefined) {
        entries.set(k, { hash, prevTerm });
        continue;
      }
      if (known.hash !== hash) {
        this.#violate(`${g.group}: two different entries at index ${i} in term ${e.term} (${key})`);
      } else if (known.prevTerm !== null && prevTerm !== null && known.prevTerm !== prevTerm) {
        this.#violate(
          `${g.group}: logs agree on entry ${i} of term ${e.term} but not on the term before it ` +
            `(${known.prevTerm} vs ${prevTerm} on ${key})`,
        );
      }
    }
    view.checkedTo = n.lastIndex;
    view.checkedTerm = n.termAt(n.lastIndex);
  }

  /** Committed entries are the same on every node that holds them. */
  #recordCommitted(g: RaftGroup, view: View, key: string): void {
    const n = g.node;
    const committed = mapOf(this.#committed, g.group);
    for (let i = Math.max(view.committedTo + 1, n.firstIndex); i <= n.commitIndex; i++) {
      const e = n.entryAt(i);
      if (e === null) break;
      const hash = this.#hash(g.group, e.data);
      const known = committed.get(i);
      if (known === undefined) committed.set(i, { term: e.term, hash, atTerm: n.term });
      else if (known.term === e.term && known.hash === hash) {
        known.atTerm = Math.min(known.atTerm, n.term);
      } else {
        this.#violate(
          `${g.group}: entry ${i} was committed with term ${known.term}, but ${key} committed ` +
            `one of term ${e.term} there`,
        );
      }
    }
    view.committedTo = Math.max(view.committedTo, n.commitIndex);
  }

  /**
   * Leader Completeness: a new leader holds every entry committed in an earlier term. Only entries
   * seen committed by a node in an earlier term count: a leader first seen late (a node paused
   * just after it won) need not hold what later terms committed (cluster seeds 4518 and 7979: a
   * leader of term 1, frozen, was first polled after term 2 had committed entry 2).
   */
  #complete(g: RaftGroup, key: string): void {
    const n = g.node;
    for (const [i, c] of mapOf(this.#committed, g.group)) {
      if (i <= n.snapshot.index || c.atTerm >= n.term) continue;
      const term = n.termAt(i);
      if (term !== c.term) {
        this.#violate(
          `${g.group}: ${key} leads term ${n.term} without committed entry ${i} (term ${c.term}; ` +
            `it holds ${term === null ? "nothing" : `term ${term}`} there)`,
        );
        return;
      }
    }
  }
}

function mapOf<K, V>(m: Map<string, Map<K, V>>, group: string): Map<K, V> {
  let inner = m.get(group);
  if (inner === undefined) m.set(group, inner = new Map());
  return inner;
}

/** FNV-1a of the bytes: entries compared by content. */
function hashOf(data: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  return (h >>> 0) + data.length * 2 ** 32;
}

/** True if an entry of a term after `term` was saved at or below `index` (see View.durableLow). */
function overwrittenLater(view: View, term: number, index: number): boolean {
  for (const [t, low] of view.durableLow) {
    if (t > term && low <= index) return true;
  }
  return false;
}
