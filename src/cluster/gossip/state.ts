// The gossip state table: every known node's versioned entries, Scuttlebutt digests and delta
// selection, the rules for applying deltas (incarnations, self-protection), and the failure
// detector's state transitions. Pure and synchronous: time comes in as numbers, events go out as
// return values.

import type { Addr } from "../../io/types.ts";
import type { GossipDelta, GossipDeltaEntry, GossipDigestEntry } from "../../protocol/messages.ts";
import {
  ENTRIES_PER_NODE_MAX,
  entryProblem,
  INCARNATION_MAX,
  isNodeId,
  KEY_CLIENT_PORT,
  KEY_CLUSTER,
  KEY_CLUSTER_PORT,
  KEY_HEARTBEAT,
  KEY_HOST,
  KEY_LEFT,
  KEY_STARTED,
  MEMBERS_MAX,
  parseCount,
  parsePort,
  RESERVED_KEYS,
  utf8Bytes,
  VERSION_MAX,
} from "./limits.ts";
import { ArrivalWindow } from "./phi.ts";
import type { Member, MembershipEvent, MemberState } from "./types.ts";

/** Forgotten nodes remembered (so stale gossip cannot bring them back) at most. */
export const TOMBSTONES_MAX = MEMBERS_MAX;
/** A gap between two ticks over this many intervals means this node was paused, not its peers. */
export const PAUSE_INTERVALS = 5;
/** How far above its own incarnation a claim on this node's id may be and still be outbid. */
export const REFUTE_STEP_MAX = 2 ** 32;
/** Until measured, a member's heartbeat is expected every this many gossip intervals. */
export const BOOTSTRAP_INTERVALS = 2;

/** Keys a node's entry needs before it is shown as a member: without them it cannot be reached. */
const ADDRESS_KEYS = [KEY_HOST, KEY_CLUSTER_PORT, KEY_CLIENT_PORT] as const;
/** Encoded bytes of a delta group around its entries: id length, incarnation, entry count. */
const GROUP_OVERHEAD_BYTES = 2 + 8 + 4;
/** Encoded bytes of an entry besides its key and value: two lengths and the version. */
const ENTRY_OVERHEAD_BYTES = 2 + 2 + 8;
/** The u32 count in front of the delta list. */
const DELTAS_OVERHEAD_BYTES = 4;

/** Options for a GossipState. */
export interface GossipStateOptions {
  selfId: string;
  /** This node's incarnation; higher than any earlier run of the same id. */
  incarnation: number;
  host: string;
  clusterPort: number;
  clientPort: number;
  /** When the table is created, ms of the node's monotonic clock. */
  nowMs: number;
  intervalMs: number;
  phiSuspect: number;
  phiDead: number;
  deadForgetMs: number;
  /** The cluster this node belongs to; omitted or "" while it joins one (see `joinCluster`). */
  clusterId?: string;
  /** Hears of each delta dropped because its node belongs to another cluster. */
  onForeign?: (nodeId: string, clusterId: string) => void;
  /** When this process started, wall-clock ms (published as "started"); omitted: not published. */
  startedMs?: number;
  /**
   * Hears of each claim on this node's id, newer than its own state, made by another process: one
   * at another address, or started at another time. A predecessor that is gone makes one at most
   * (this node outbids it); a live copy of this node answers every refutation with another.
   */
  onImpostor?: (claim: ImpostorClaim) => void;
}

/** What a claim on this node's id by another process says of it (null: the claim lacks it). */
export interface ImpostorClaim {
  host: string | null;
  clusterPort: number | null;
  /** Its heartbeat: the gossip rounds it has run since it started. */
  heartbeat: number | null;
}

interface Entry {
  value: string;
  version: number;
}

interface Tombstone {
  incarnation: number;
  heartbeat: number;
  left: boolean;
  untilMs: number;
}

interface NodeRecord {
  readonly id: string;
  incarnation: number;
  entries: Map<string, Entry>;
  /** Highest version seen at this incarnation: what the digest advertises. */
  maxVersion: number;
  heartbeat: number;
  state: MemberState;
  /** When `state` was entered, ms. */
  sinceMs: number;
  window: ArrivalWindow;
  /** Shown in `members()`: the address keys have arrived and "join" was emitted. */
  visible: boolean;
}

/** Where to reach the members gossip may pick next. */
export interface PeerAddrs {
  /** Alive members. */
  alive: Addr[];
  /** Suspect and dead members (left ones are not worth a call). */
  unreachable: Addr[];
}

/**
 * This node's view of the cluster. The service feeds it ticks, digests and deltas that already
 * passed the codec's validation, and forwards the events it returns.
 */
export class GossipState {
  readonly #self: NodeRecord;
  readonly #others = new Map<string, NodeRecord>();
  /**
   * Forgotten nodes, until `untilMs`: gossip about an older incarnation, or about the same one
   * without a heartbeat past the last one seen (stale news still circulating), is ignored. A newer
   * heartbeat proves the node lived on (a healed partition) unless it had left.
   */
  readonly #tombstones = new Map<string, Tombstone>();
  readonly #intervalMs: number;
  readonly #phiSuspect: number;
  readonly #phiDead: number;
  readonly #deadForgetMs: number;
  readonly #onForeign: (nodeId: string, clusterId: string) => void;
  readonly #onImpostor: (claim: ImpostorClaim) => void;
  #lastTickMs: number | null = null;
  #refutations = 0;

  constructor(opts: GossipStateOptions) {
    if (!(opts.phiDead > opts.phiSuspect && opts.phiSuspect > 0)) {
      throw new RangeError(
        `phiDead (${opts.phiDead}) must be above phiSuspect (${opts.phiSuspect}) > 0`,
      );
    }
    if (!isNodeId(opts.selfId)) {
      throw new RangeError(
        `Node id ${JSON.stringify(opts.selfId)} is not 1 to 64 of [A-Za-z0-9_-]`,
      );
    }
    if (!Number.isSafeInteger(opts.incarnation) || opts.incarnation > INCARNATION_MAX) {
      throw new RangeError(`Incarnation ${opts.incarnation} is not 0..${INCARNATION_MAX}`);
    }
    this.#intervalMs = opts.intervalMs;
    this.#phiSuspect = opts.phiSuspect;
    this.#phiDead = opts.phiDead;
    this.#deadForgetMs = opts.deadForgetMs;
    this.#onForeign = opts.onForeign ?? (() => {});
    this.#onImpostor = opts.onImpostor ?? (() => {});
    this.#self = this.#newRecord(opts.selfId, opts.incarnation, opts.nowMs);
    this.#self.visible = true;
    const clusterId = opts.clusterId ?? "";
    if (clusterId !== "") {
      const problem = entryProblem(KEY_CLUSTER, clusterId);
      if (problem !== null) throw new RangeError(`Cannot start gossip: ${problem}`);
      // First, so no peer ever holds this node's address without its cluster: deltas carry a
      // node's entries as a prefix by version.
      this.#setSelf(KEY_CLUSTER, clusterId);
    }
    this.#setSelf(KEY_HOST, opts.host);
    this.#setSelf(KEY_CLUSTER_PORT, String(opts.clusterPort));
    this.#setSelf(KEY_CLIENT_PORT, String(opts.clientPort));
    this.#setSelf(KEY_HEARTBEAT, "0");
    if (opts.startedMs !== undefined) this.#setSelf(KEY_STARTED, String(opts.startedMs));
    const given = opts.startedMs === undefined ? ADDRESS_KEYS : [...ADDRESS_KEYS, KEY_STARTED];
    for (const key of given) {
      const problem = entryProblem(key, this.#self.entries.get(key)?.value ?? "");
      if (problem !== null) throw new RangeError(`Cannot start gossip: ${problem}`);
    }
  }

  /** This node's id. */
  get selfId(): string {
    return this.#self.id;
  }

  /** This node's heartbeat: the gossip rounds it has run since it started. */
  get heartbeat(): number {
    return this.#self.heartbeat;
  }

  /** This node's current incarnation (raised by refutations). */
  get incarnation(): number {
    return this.#self.incarnation;
  }

  /** Times this node raised its incarnation to refute a claim on its id. */
  get refutations(): number {
    return this.#refutations;
  }

  /** The cluster this node belongs to, or "" while it joins one. */
  get clusterId(): string {
    return this.#self.entries.get(KEY_CLUSTER)?.value ?? "";
  }

  /**
   * The cluster node `id` says it belongs to: "" if it says none (it is joining one, or runs a
   * version without clusters), undefined if this node holds nothing of it.
   */
  clusterOf(id: string): string | undefined {
    const r = id === this.#self.id ? this.#self : this.#others.get(id);
    return r === undefined ? undefined : r.entries.get(KEY_CLUSTER)?.value ?? "";
  }

  /**
   * Makes this node a member of cluster `id`: it says so in its state, and from now on holds no
   * node of another cluster — those it held are dropped, each visible one with a "leave" event.
   *
   * @throws RangeError if `id` is not shaped like a node id, or this node belongs to another
   * cluster already: a node never changes cluster.
   */
  joinCluster(id: string): MembershipEvent[] {
    const problem = entryProblem(KEY_CLUSTER, id);
    if (problem !== null) throw new RangeError(`Cannot join cluster: ${problem}`);
    const current = this.clusterId;
    if (current === id) return [];
    if (current !== "") {
      throw new RangeError(`Cannot join cluster ${id}: this node belongs to cluster ${current}`);
    }
    this.#setSelf(KEY_CLUSTER, id);
    const events: MembershipEvent[] = [];
    for (const r of [...this.#others.values()]) {
      const theirs = r.entries.get(KEY_CLUSTER)?.value;
      if (theirs === undefined || theirs === id) continue;
      this.#onForeign(r.id, theirs);
      const event = this.#drop(r);
      if (event !== null) events.push(event);
    }
    return events;
  }

  /** Other nodes held, shown or not yet complete. */
  get size(): number {
    return this.#others.size;
  }

  /**
   * Sets an entry of this node's state under a new version. Throws RangeError for a reserved or
   * malformed key, a value over VALUE_BYTES_MAX, or a key past ENTRIES_PER_NODE_MAX.
   */
  setLocal(key: string, value: string): void {
    if (RESERVED_KEYS.has(key)) {
      throw new RangeError(`Cannot set ${key}: the key is reserved for gossip itself`);
    }
    const problem = entryProblem(key, value);
    if (problem !== null) throw new RangeError(`Cannot set ${key}: ${problem}`);
    const current = this.#self.entries.get(key);
    if (current === undefined && this.#self.entries.size >= ENTRIES_PER_NODE_MAX) {
      throw new RangeError(`Cannot set ${key}: a node holds at most ${ENTRIES_PER_NODE_MAX} keys`);
    }
    if (current?.value === value) return;
    this.#setSelf(key, value);
  }

  /** Bumps this node's heartbeat: once per gossip round. */
  beat(): void {
    this.#self.heartbeat++;
    this.#setSelf(KEY_HEARTBEAT, String(this.#self.heartbeat));
  }

  /** Announces that this node leaves: it becomes "left" everywhere for this incarnation. */
  leave(): void {
    if (!this.#self.entries.has(KEY_LEFT)) this.#setSelf(KEY_LEFT, "1");
    this.#self.state = "left";
  }

  /** What this node holds: one entry per node, itself included, sorted by id. */
  digest(): GossipDigestEntry[] {
    const out: GossipDigestEntry[] = [];
    for (const r of this.#all()) {
      out.push({ id: r.id, incarnation: r.incarnation, maxVersion: r.maxVersion });
    }
    return out.sort((a, b) => compare(a.id, b.id));
  }

  /**
   * The entries a peer with digest `peer` lacks, oldest versions first, at most `bytesMax` encoded
   * bytes. Per node they always form a prefix by version, so the peer's digest stays truthful and
   * the rest follows next round. A node the peer does not know is introduced to it only while this
   * node thinks it alive: a suspect, dead or left node only matters to those who knew it.
   */
  deltasFor(peer: readonly GossipDigestEntry[], bytesMax: number): GossipDelta[] {
    const known = new Map<string, GossipDigestEntry>();
    for (const d of peer) known.set(d.id, d);
    const candidates: { r: NodeRecord; key: string; entry: Entry }[] = [];
    for (const r of this.#all()) {
      const theirs = known.get(r.id);
      let from: number;
      if (theirs === undefined) {
        if (r !== this.#self && r.state !== "alive") continue;
        from = 0;
      } else if (theirs.incarnation > r.incarnation) {
        continue;
      } else {
        from = theirs.incarnation < r.incarnation ? 0 : theirs.maxVersion;
      }
      for (const [key, entry] of r.entries) {
        if (entry.version > from) candidates.push({ r, key, entry });
      }
    }
    candidates.sort((a, b) =>
      a.entry.version - b.entry.version || compare(a.r.id, b.r.id) || compare(a.key, b.key)
    );
    const groups = new Map<string, GossipDelta>();
    const full = new Set<string>();
    let used = DELTAS_OVERHEAD_BYTES;
    for (const { r, key, entry } of candidates) {
      if (full.has(r.id)) continue;
      const group = groups.get(r.id);
      const cost = ENTRY_OVERHEAD_BYTES + utf8Bytes(key) + utf8Bytes(entry.value) +
        (group === undefined ? GROUP_OVERHEAD_BYTES + utf8Bytes(r.id) : 0);
      if (used + cost > bytesMax) {
        // Skipping one entry of a node would leave a gap under its version: stop that node here.
        full.add(r.id);
        continue;
      }
      used += cost;
      const item: GossipDeltaEntry = { key, value: entry.value, version: entry.version };
      if (group === undefined) {
        groups.set(r.id, { id: r.id, incarnation: r.incarnation, entries: [item] });
      } else group.entries.push(item);
    }
    return [...groups.values()];
  }

  /**
   * Checks a peer's digest for a claim on this node's id newer than this node's own state (an
   * impostor, or a predecessor whose clock ran ahead), and refutes it.
   */
  observeDigest(peer: readonly GossipDigestEntry[]): void {
    for (const d of peer) {
      if (d.id === this.#self.id) this.#guardSelf(d.incarnation, d.maxVersion);
    }
  }

  /**
   * Applies deltas received from a peer. Entries about this node are never taken; a newer claim on
   * its id is refuted. A higher incarnation of a node replaces all of its entries.
   */
  apply(deltas: readonly GossipDelta[], nowMs: number): MembershipEvent[] {
    const events: MembershipEvent[] = [];
    for (const d of deltas) {
      if (d.id === this.#self.id) {
        let maxVersion = 0;
        for (const e of d.entries) maxVersion = Math.max(maxVersion, e.version);
        if (this.#newerThanSelf(d.incarnation, maxVersion)) this.#checkClaim(d);
        this.#guardSelf(d.incarnation, maxVersion);
        continue;
      }
      const event = this.#applyOne(d, nowMs);
      if (event !== null) events.push(event);
    }
    return events;
  }

  /**
   * Runs the failure detector and forgets members dead or left for `deadForgetMs`. Call once per
   * gossip round.
   */
  tick(nowMs: number): MembershipEvent[] {
    const events: MembershipEvent[] = [];
    const last = this.#lastTickMs;
    this.#lastTickMs = nowMs;
    if (last !== null && nowMs - last > PAUSE_INTERVALS * this.#intervalMs) {
      // This node did not run, so it heard nothing: that silence says nothing about the others.
      for (const r of this.#others.values()) r.window.restart(nowMs);
    }
    for (const r of [...this.#others.values()]) {
      if (r.state === "alive" || r.state === "suspect") {
        const phi = r.window.phi(nowMs);
        const next: MemberState = phi >= this.#phiDead
          ? "dead"
          : phi >= this.#phiSuspect
          ? "suspect"
          : r.state;
        if (next !== r.state) {
          const previous = r.state;
          this.#enter(r, next, nowMs);
          if (r.visible) events.push({ kind: "state", member: snapshot(r, false), previous });
        }
      }
      if ((r.state === "dead" || r.state === "left") && nowMs - r.sinceMs >= this.#deadForgetMs) {
        this.#forget(r, nowMs);
        if (r.visible) {
          events.push({ kind: "leave", member: snapshot(r, false), previous: r.state });
        }
      }
    }
    for (const [id, t] of this.#tombstones) {
      if (nowMs >= t.untilMs) this.#tombstones.delete(id);
    }
    return events;
  }

  /** Every member shown, this node included, sorted by id. */
  members(): Member[] {
    const out = [snapshot(this.#self, true)];
    for (const r of this.#others.values()) if (r.visible) out.push(snapshot(r, false));
    return out.sort((a, b) => compare(a.id, b.id));
  }

  /** The member with `id`, or null if it is not shown. */
  member(id: string): Member | null {
    if (id === this.#self.id) return snapshot(this.#self, true);
    const r = this.#others.get(id);
    return r !== undefined && r.visible ? snapshot(r, false) : null;
  }

  /** Cluster addresses of the other members, by how reachable they seem. */
  peers(): PeerAddrs {
    const out: PeerAddrs = { alive: [], unreachable: [] };
    for (const r of this.#others.values()) {
      if (!r.visible || r.state === "left") continue;
      const addr = {
        host: r.entries.get(KEY_HOST)?.value ?? "",
        port: parsePort(r.entries.get(KEY_CLUSTER_PORT)?.value ?? "") ?? 0,
      };
      (r.state === "alive" ? out.alive : out.unreachable).push(addr);
    }
    return out;
  }

  *#all(): Iterable<NodeRecord> {
    yield this.#self;
    yield* this.#others.values();
  }

  #newRecord(id: string, incarnation: number, nowMs: number): NodeRecord {
    return {
      id,
      incarnation,
      entries: new Map(),
      maxVersion: 0,
      heartbeat: 0,
      state: "alive",
      sinceMs: nowMs,
      window: this.#newWindow(nowMs),
      visible: false,
    };
  }

  #newWindow(nowMs: number): ArrivalWindow {
    return new ArrivalWindow({
      bootstrapMs: BOOTSTRAP_INTERVALS * this.#intervalMs,
      meanMsMin: this.#intervalMs / 2,
    }, nowMs);
  }

  #setSelf(key: string, value: string): void {
    const self = this.#self;
    if (self.maxVersion >= VERSION_MAX) {
      throw new RangeError(`Node ${self.id} ran out of versions at ${VERSION_MAX}`);
    }
    self.maxVersion++;
    self.entries.set(key, { value, version: self.maxVersion });
  }

  #newerThanSelf(incarnation: number, maxVersion: number): boolean {
    const self = this.#self;
    return incarnation > self.incarnation ||
      (incarnation === self.incarnation && maxVersion > self.maxVersion);
  }

  /** Tells `onImpostor` of a newer claim on this node's id that names another process. */
  #checkClaim(d: GossipDelta): void {
    const theirs = (key: string) => d.entries.find((e) => e.key === key)?.value;
    const ours = (key: string) => this.#self.entries.get(key)?.value;
    const differs = [KEY_HOST, KEY_CLUSTER_PORT, KEY_STARTED].some((key) => {
      const v = theirs(key);
      return v !== undefined && ours(key) !== undefined && v !== ours(key);
    });
    if (!differs) return;
    const host = theirs(KEY_HOST);
    const port = theirs(KEY_CLUSTER_PORT);
    const heartbeat = theirs(KEY_HEARTBEAT);
    this.#onImpostor({
      host: host ?? null,
      clusterPort: port === undefined ? null : parsePort(port),
      heartbeat: heartbeat === undefined ? null : parseCount(heartbeat),
    });
  }

  /** Refutes a claim on this node's id that is newer than what this node holds of itself. */
  #guardSelf(incarnation: number, maxVersion: number): void {
    const self = this.#self;
    const newer = this.#newerThanSelf(incarnation, maxVersion);
    // Outbid claims only within a bounded step: one forged huge number must not push this node
    // near INCARNATION_MAX, or after its next restart nobody could ever take it back.
    if (!newer || incarnation > self.incarnation + REFUTE_STEP_MAX) return;
    self.incarnation = incarnation + 1;
    this.#refutations++;
  }

  #applyOne(d: GossipDelta, nowMs: number): MembershipEvent | null {
    const tomb = this.#tombstones.get(d.id);
    if (tomb !== undefined && !outlived(tomb, d)) return null;
    let r = this.#others.get(d.id);
    // A node of another cluster, here because an address once of this cluster now belongs to it
    // (or a node of this one still holds it): it is no member, and never relayed on.
    const ours = this.clusterId;
    const theirs = d.entries.find((e) => e.key === KEY_CLUSTER)?.value ??
      (r !== undefined && r.incarnation === d.incarnation
        ? r.entries.get(KEY_CLUSTER)?.value
        : undefined);
    if (ours !== "" && theirs !== undefined && theirs !== ours) {
      this.#onForeign(d.id, theirs);
      return r === undefined ? null : this.#drop(r);
    }
    if (r === undefined) {
      if (this.#others.size >= MEMBERS_MAX) return null;
      r = this.#newRecord(d.id, d.incarnation, nowMs);
      this.#others.set(d.id, r);
      this.#tombstones.delete(d.id);
    } else if (d.incarnation < r.incarnation) {
      return null;
    }
    const wasVisible = r.visible;
    const previous = r.state;
    let changed = false;
    if (d.incarnation > r.incarnation) {
      this.#restart(r, d.incarnation, nowMs);
      changed = true;
    }
    for (const e of d.entries) {
      r.maxVersion = Math.max(r.maxVersion, e.version);
      const current = r.entries.get(e.key);
      if (current !== undefined && current.version >= e.version) continue;
      if (current === undefined && r.entries.size >= ENTRIES_PER_NODE_MAX) continue;
      r.entries.set(e.key, { value: e.value, version: e.version });
      if (e.key !== KEY_HEARTBEAT && current?.value !== e.value) changed = true;
    }
    const heartbeat = parseCount(r.entries.get(KEY_HEARTBEAT)?.value ?? "0") ?? 0;
    if (heartbeat > r.heartbeat) {
      r.heartbeat = heartbeat;
      // An interval that spans a suspicion, or a silence many rounds long (a partition, a pause),
      // is an outage, not the member's usual rhythm: it must not teach the detector patience.
      const gapMs = nowMs - r.window.lastMs;
      if (r.state === "alive" && gapMs <= PAUSE_INTERVALS * this.#intervalMs) {
        r.window.record(nowMs);
      } else r.window.restart(nowMs);
      if (r.state === "suspect" || r.state === "dead") this.#enter(r, "alive", nowMs);
    }
    if (r.entries.has(KEY_LEFT) && r.state !== "left") this.#enter(r, "left", nowMs);
    if (!wasVisible) {
      if (!ADDRESS_KEYS.every((k) => r.entries.has(k))) return null;
      r.visible = true;
      return { kind: "join", member: snapshot(r, false), previous: null };
    }
    if (!changed && r.state === previous) return null;
    return { kind: "state", member: snapshot(r, false), previous };
  }

  /**
   * A new incarnation of `r`: its old entries go, except its address at version 0, which keeps it
   * reachable until the new one arrives and is overwritten by any real version.
   */
  #restart(r: NodeRecord, incarnation: number, nowMs: number): void {
    const kept = new Map<string, Entry>();
    for (const key of ADDRESS_KEYS) {
      const e = r.entries.get(key);
      if (e !== undefined) kept.set(key, { value: e.value, version: 0 });
    }
    r.incarnation = incarnation;
    r.entries = kept;
    r.maxVersion = 0;
    r.heartbeat = 0;
    r.window = this.#newWindow(nowMs);
    this.#enter(r, "alive", nowMs);
  }

  #enter(r: NodeRecord, state: MemberState, nowMs: number): void {
    if (r.state === state) return;
    r.state = state;
    r.sinceMs = nowMs;
  }

  /** Drops a node of another cluster without a tombstone: its cluster keeps it out. */
  #drop(r: NodeRecord): MembershipEvent | null {
    this.#others.delete(r.id);
    return r.visible ? { kind: "leave", member: snapshot(r, false), previous: r.state } : null;
  }

  #forget(r: NodeRecord, nowMs: number): void {
    this.#others.delete(r.id);
    if (this.#tombstones.size >= TOMBSTONES_MAX) {
      const oldest = this.#tombstones.keys().next();
      if (oldest.done !== true) this.#tombstones.delete(oldest.value);
    }
    this.#tombstones.set(r.id, {
      incarnation: r.incarnation,
      heartbeat: r.heartbeat,
      left: r.state === "left",
      untilMs: nowMs + this.#deadForgetMs,
    });
  }
}

/** True if `d` shows its node alive after it was forgotten as `tomb` records. */
function outlived(tomb: Tombstone, d: GossipDelta): boolean {
  if (d.incarnation !== tomb.incarnation) return d.incarnation > tomb.incarnation;
  if (tomb.left) return false;
  const beat = d.entries.find((e) => e.key === KEY_HEARTBEAT);
  return beat !== undefined && (parseCount(beat.value) ?? 0) > tomb.heartbeat;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function snapshot(r: NodeRecord, self: boolean): Member {
  // Sorted keys: two nodes holding the same state show the same snapshot, whatever the order of
  // arrival. Keys start with a letter, so none is "__proto__" or an array index.
  const kv: Record<string, string> = {};
  for (const key of [...r.entries.keys()].sort(compare)) {
    if (key !== KEY_HEARTBEAT && key !== KEY_LEFT) kv[key] = (r.entries.get(key) as Entry).value;
  }
  return {
    id: r.id,
    host: kv[KEY_HOST] ?? "",
    clusterPort: parsePort(kv[KEY_CLUSTER_PORT] ?? "") ?? 0,
    clientPort: parsePort(kv[KEY_CLIENT_PORT] ?? "") ?? 0,
    state: r.state,
    incarnation: r.incarnation,
    heartbeat: r.heartbeat,
    kv,
    self,
  };
}
