// The network shell of gossip membership: a listener that answers exchanges, a loop that starts
// them, seed resolution, and event delivery. What to send and what it means is decided by the pure
// state table (state.ts); this file only moves frames, with a deadline on every exchange.

import type { Addr, Conn, Env, Listener, Random } from "../../io/types.ts";
import { writeAll } from "../../io/util.ts";
import { ErrorCode, GregorError, MalformedError } from "../../protocol/errors.ts";
import { GUARD_DONE } from "../../io/errors.ts";
import { encodeFrame, Flag, type Frame, FrameParser, readFrame } from "../../protocol/frame.ts";
import {
  decode,
  encode,
  ERROR_SCHEMA,
  type ErrorPayload,
  type GossipDigestEntry,
  Op,
} from "../../protocol/messages.ts";
import {
  decodeAck2,
  decodeSyn,
  decodeSynResponse,
  encodeAck2,
  encodeSyn,
  encodeSynResponse,
} from "./codec.ts";
import {
  GOSSIP_PAYLOAD_BYTES_MAX,
  INCARNATION_MAX,
  isHost,
  isNodeId,
  isPort,
  MESSAGE_BYTES_MAX,
  MESSAGE_BYTES_MIN,
} from "./limits.ts";
import { addrKey, choosePeers, isIpLiteral, parseSeed, sample, SEEDS_MAX } from "./peers.ts";
import { GossipState, type ImpostorClaim } from "./state.ts";
import type { GossipOptions, GossipStats, Member, MembershipEvent } from "./types.ts";

/** Defaults of the optional `GossipOptions`. */
export const GOSSIP_DEFAULTS = {
  intervalMs: 200,
  phiSuspect: 8,
  phiDead: 12,
  deadForgetMs: 60_000,
  messageBytesMax: 64 * 1024,
  resolveSeedsEveryMs: 30_000,
  exchangeTimeoutMs: 1_000,
} as const;

/** Exchanges this node runs as initiator at once; a round that finds them all busy skips. */
export const OUTBOUND_EXCHANGES_MAX = 4;
/** Exchanges this node answers at once; more connections are closed at once. */
export const INBOUND_EXCHANGES_MAX = 32;
/** Rounds a leaving node spends telling others, and peers it tells per round. */
export const LEAVE_ROUNDS = 3;
export const LEAVE_FANOUT = 3;
/** A seed name that does not resolve within this long keeps its previous addresses, ms. */
export const RESOLVE_TIMEOUT_MS = 5_000;
/** Peers whose refusal of this node is remembered (so logged once) at most. */
const REFUSED_PEERS_MAX = 1024;
/** Other clusters whose nodes were dropped remembered (so reported once each) at most. */
const FOREIGN_CLUSTERS_MAX = 64;
/**
 * Claims on this node's id by another process before it is judged a live copy: a predecessor that
 * is gone (its state still circulating) makes one, a live copy one per refutation.
 */
export const IMPOSTOR_CLAIMS_MAX = 3;
/**
 * Heartbeats two processes claiming one node id must be apart for the one with fewer to be taken
 * as the later start (a claim's heartbeat may be a few rounds old when it arrives).
 */
export const IMPOSTOR_BEATS_APART = 25;
/** Each round starts after the interval times a factor in [1 - this, 1 + this). */
const INTERVAL_JITTER = 0.1;
const READ_BYTES = 16 * 1024;

/**
 * Takes over a cluster-port connection whose first frame (`first`, already read by `parser`) has an
 * opcode it registered with `Gossip.handle`. It reads on with `parser`, which may hold further
 * bytes, and resolves once it is done with the connection; it must not throw.
 */
export type ClusterConnHandler = (
  conn: Conn,
  first: Frame,
  parser: FrameParser,
) => Promise<void>;

/** Options for `Gossip.handle`. */
export interface ClusterHandlerOptions {
  /** Largest frame payload the handler accepts on its connections, bytes. */
  payloadBytesMax: number;
}

type Resolved = Required<Omit<GossipOptions, "incarnation">> & { incarnation?: number };

/** Why a node of another cluster reached this one, in the report of it. */
const FOREIGN_WHY = "an address this cluster used now serves a node of the other (a node " +
  "replaced on a reused address), or a node was given seeds of both clusters";

/**
 * Scuttlebutt gossip membership with phi-accrual failure detection, on the Env's network.
 *
 * @example
 * ```ts ignore
 * const gossip = await Gossip.start(env, {
 *   nodeId: await loadOrCreateNodeId(env, "data"),
 *   host: "10.0.0.5",
 *   bindHost: "0.0.0.0",
 *   clusterPort: 7071,
 *   clientPort: 7070,
 *   seeds: ["gregormq-headless.default.svc:7071"],
 * });
 * gossip.onEvent((e) => console.log(e.kind, e.member.id, e.member.state));
 * ```
 */
export class Gossip {
  /** This node's id. */
  readonly id: string;
  /** The bound cluster address (its port is the one advertised). */
  readonly addr: Addr;
  readonly #env: Env;
  readonly #random: Random;
  readonly #opts: Resolved;
  readonly #listener: Listener;
  readonly #state: GossipState;
  readonly #self: Addr[];
  readonly #seedSpecs: Addr[];
  /**
   * Per seed name that does not resolve, why, as last reported: a name that keeps failing the same
   * way is reported once, not every `resolveSeedsEveryMs`.
   */
  readonly #seedFailures = new Map<string, string>();
  #seeds: Addr[];
  #resolveAtMs: number;
  #resolving = false;
  readonly #subscribers = new Set<{ fn: (e: MembershipEvent) => void }>();
  readonly #counters = {
    rounds: 0,
    exchanges: 0,
    failedExchanges: 0,
    bytesSent: 0,
    bytesReceived: 0,
    malformed: 0,
    foreign: 0,
  };
  /** Other clusters already reported. */
  readonly #foreignClusters = new Set<string>();
  /** Claims on this node's id by other processes so far; past IMPOSTOR_CLAIMS_MAX, judged once. */
  #impostorClaims = 0;
  readonly #stop = new AbortController();
  readonly #conns = new Set<Conn>();
  readonly #tasks = new Set<Promise<unknown>>();
  readonly #handlers = new Map<number, ClusterConnHandler>();
  /** Peers that refused this node as unauthenticated, already logged. */
  readonly #refusedBy = new Set<string>();
  /** Largest payload a first frame may have: gossip's, or a bigger one a handler registered. */
  #payloadBytesMax: number = GOSSIP_PAYLOAD_BYTES_MAX;
  #outbound = 0;
  #inbound = 0;
  #closed = false;

  /**
   * Binds the cluster listener and starts gossip rounds (the first at once).
   *
   * @param env The I/O seam every socket, clock read and random draw goes through.
   * @param opts Identity, addresses, seeds and tuning; see `GossipOptions`.
   * @returns The running gossip instance.
   * @throws RangeError for an invalid option; the listener's error if the port cannot be bound.
   */
  static async start(env: Env, opts: GossipOptions): Promise<Gossip> {
    const o = resolveOptions(opts);
    const listener = await env.net.listen({ host: o.bindHost, port: o.clusterPort });
    return new Gossip(env, o, listener);
  }

  private constructor(env: Env, opts: Resolved, listener: Listener) {
    this.#env = env;
    this.#opts = opts;
    this.#listener = listener;
    this.#random = env.random.fork(`gossip-${opts.nodeId}`);
    this.id = opts.nodeId;
    this.addr = listener.addr;
    const now = env.clock.now();
    this.#state = new GossipState({
      selfId: opts.nodeId,
      // A persisted incarnation outranks every earlier start even if the wall clock went back;
      // without one, the wall clock, and a predecessor still circulating is refuted.
      incarnation: opts.incarnation ??
        Math.min(INCARNATION_MAX - 1, Math.max(1, Math.floor(env.clock.wallMs()))),
      host: opts.host,
      clusterPort: listener.addr.port,
      clientPort: opts.clientPort,
      nowMs: now,
      intervalMs: opts.intervalMs,
      phiSuspect: opts.phiSuspect,
      phiDead: opts.phiDead,
      deadForgetMs: opts.deadForgetMs,
      clusterId: opts.clusterId,
      onForeign: (nodeId, clusterId) => this.#foreign(nodeId, clusterId),
      startedMs: Math.max(0, Math.floor(env.clock.wallMs())),
      onImpostor: (claim) => this.#impostor(claim),
    });
    this.#self = [{ host: opts.host, port: listener.addr.port }, listener.addr];
    this.#seedSpecs = opts.seeds.map(parseSeed);
    this.#seeds = this.#seedSpecs;
    this.#resolveAtMs = now;
    this.#track(this.#acceptLoop());
    this.#track(this.#roundLoop());
  }

  /** The cluster this node belongs to, or "" while it joins the cluster of its seeds. */
  get clusterId(): string {
    return this.#state.clusterId;
  }

  /**
   * Makes this node a member of cluster `id` (a node that founds one, or learns it otherwise):
   * from now on gossip about nodes of any other cluster is dropped, and those held are forgotten
   * (with "leave" events). Reports `id` through `onClusterId`. Does nothing if it is the cluster.
   *
   * @throws RangeError if `id` is not 1 to 64 of [A-Za-z0-9_-], or this node belongs to another
   * cluster.
   */
  joinCluster(id: string): void {
    if (id === this.#state.clusterId) return;
    this.#emit(this.#state.joinCluster(id));
    this.#opts.onLog("info", `This node belongs to cluster ${id}`);
    this.#opts.onClusterId(id);
  }

  /** Counters since start. */
  get stats(): GossipStats {
    return { ...this.#counters, refutations: this.#state.refutations };
  }

  /** Every member this node knows, itself included, sorted by id; dead and left ones until forgotten. */
  members(): Member[] {
    return this.#state.members();
  }

  /** The member with `id`, or null if it is unknown (or forgotten). */
  member(id: string): Member | null {
    return this.#state.member(id);
  }

  /**
   * Calls `fn` for every membership event from now on (see `MembershipEvent`), synchronously as
   * gossip learns of it. An exception thrown by `fn` is rethrown from a microtask: it is a bug.
   *
   * @returns A function that unsubscribes `fn`.
   */
  onEvent(fn: (e: MembershipEvent) => void): () => void {
    const entry = { fn };
    this.#subscribers.add(entry);
    return () => void this.#subscribers.delete(entry);
  }

  /**
   * Shares the cluster port: a connection whose first frame has `opcode` is handed to `handler`
   * instead of being answered as gossip. It then no longer counts against INBOUND_EXCHANGES_MAX nor
   * the exchange deadline, so the handler bounds its own connections; `close` closes them too.
   *
   * @throws RangeError for a gossip opcode, an opcode already handled, or a bad payloadBytesMax.
   */
  handle(opcode: number, handler: ClusterConnHandler, opts: ClusterHandlerOptions): void {
    if (opcode === Op.GOSSIP_SYN || opcode === Op.GOSSIP_ACK2 || this.#handlers.has(opcode)) {
      throw new RangeError(
        `Cannot handle opcode 0x${opcode.toString(16)}: the cluster port already answers it`,
      );
    }
    if (!(Number.isInteger(opts.payloadBytesMax) && opts.payloadBytesMax > 0)) {
      throw new RangeError(
        `Invalid payloadBytesMax ${opts.payloadBytesMax}: must be an integer > 0`,
      );
    }
    this.#handlers.set(opcode, handler);
    this.#payloadBytesMax = Math.max(this.#payloadBytesMax, opts.payloadBytesMax);
  }

  /**
   * Sets a key of this node's gossiped state (e.g. "role", "load") under a new version.
   *
   * @throws RangeError for a reserved key (host, clusterPort, clientPort, heartbeat, left), a key
   * that is not a letter plus up to 63 of [A-Za-z0-9_.:-], a value over 1024 UTF-8 bytes, or a
   * 65th key.
   */
  setLocal(key: string, value: string): void {
    this.#state.setLocal(key, value);
  }

  /**
   * Announces that this node leaves: it shows as "left" everywhere (not dead). Tells a few peers
   * directly for LEAVE_ROUNDS rounds, then stops as `close` does.
   */
  async leave(): Promise<void> {
    if (this.#closed) return;
    this.#state.leave();
    for (let round = 0; round < LEAVE_ROUNDS && !this.#closed; round++) {
      const { alive } = this.#state.peers();
      const peers = alive.length > 0 ? sample(this.#random, alive, LEAVE_FANOUT) : sample(
        this.#random,
        this.#seeds.filter((s) => !this.#isSelf(s)),
        1,
      );
      await Promise.all(peers.map((p) => this.#track(this.#exchange(p))));
      try {
        await this.#env.clock.sleep(this.#opts.intervalMs, this.#stop.signal);
      } catch {
        break;
      }
    }
    await this.close();
  }

  /** Stops rounds and the listener and drops open exchanges, without telling anyone. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#stop.abort();
      this.#listener.close();
      for (const c of this.#conns) c.close();
    }
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#tasks.add(p);
    void p.finally(() => this.#tasks.delete(p)).catch(() => {});
    return p;
  }

  #isSelf(a: Addr): boolean {
    const key = addrKey(a);
    return this.#self.some((s) => addrKey(s) === key);
  }

  #emit(events: readonly MembershipEvent[]): void {
    for (const e of events) {
      for (const s of [...this.#subscribers]) {
        try {
          s.fn(e);
        } catch (err) {
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
  }

  async #roundLoop(): Promise<void> {
    while (!this.#closed) {
      this.#round();
      const jitter = 1 - INTERVAL_JITTER + 2 * INTERVAL_JITTER * this.#random.float();
      try {
        await this.#env.clock.sleep(this.#opts.intervalMs * jitter, this.#stop.signal);
      } catch {
        return;
      }
    }
  }

  #round(): void {
    this.#counters.rounds++;
    const now = this.#env.clock.now();
    this.#state.beat();
    this.#emit(this.#state.tick(now));
    if (now >= this.#resolveAtMs && !this.#resolving) {
      this.#resolveAtMs = now + this.#opts.resolveSeedsEveryMs;
      this.#track(this.#resolveSeeds());
    }
    const { alive, unreachable } = this.#state.peers();
    const peers = choosePeers(this.#random, {
      alive,
      unreachable,
      seeds: this.#seeds,
      self: this.#self,
    });
    for (const peer of peers) {
      if (this.#outbound >= OUTBOUND_EXCHANGES_MAX) break;
      this.#track(this.#exchange(peer));
    }
  }

  /** Resolves seeds given by name; a name that fails keeps its previous addresses. */
  async #resolveSeeds(): Promise<void> {
    const resolve = this.#env.net.resolve?.bind(this.#env.net);
    if (resolve === undefined || this.#seedSpecs.every((s) => isIpLiteral(s.host))) return;
    this.#resolving = true;
    const timeout = new AbortController();
    const signal = AbortSignal.any([this.#stop.signal, timeout.signal]);
    try {
      const out: Addr[] = [];
      for (const spec of this.#seedSpecs) {
        if (isIpLiteral(spec.host)) {
          out.push(spec);
          continue;
        }
        const previous = this.#seeds.filter((s) => s.port === spec.port);
        try {
          const hosts = await Promise.race([
            resolve(spec.host),
            this.#env.clock.sleep(RESOLVE_TIMEOUT_MS, signal).then((): string[] => {
              throw new Error(`Resolving ${spec.host} timed out`);
            }),
          ]);
          const usable = hosts.filter(isHost).slice(0, SEEDS_MAX);
          out.push(
            ...(usable.length > 0 ? usable.map((host) => ({ host, port: spec.port })) : [spec]),
          );
          if (this.#seedFailures.delete(spec.host)) {
            this.#opts.onLog(
              "info",
              `Seed name ${spec.host} resolves again, to ${usable.join(", ")}`,
            );
          }
        } catch (err) {
          if (this.#stop.signal.aborted) return;
          out.push(...(previous.length > 0 ? previous : [spec]));
          const reason = (err as Error).message;
          if (this.#seedFailures.get(spec.host) !== reason) {
            this.#seedFailures.set(spec.host, reason);
            this.#opts.onLog(
              "warn",
              `Seed name ${spec.host} does not resolve (${reason}); gossip tries ${
                previous.some((a) => a.host !== spec.host)
                  ? "the addresses it had"
                  : "the name as given"
              } and resolves it again every ${this.#opts.resolveSeedsEveryMs} ms`,
            );
          }
        }
      }
      const unique = new Map(out.map((a) => [addrKey(a), a]));
      this.#seeds = [...unique.values()].slice(0, SEEDS_MAX);
    } finally {
      timeout.abort(GUARD_DONE);
      this.#resolving = false;
    }
  }

  /**
   * Logs that `peer` refused this node for want of the cluster secret: once, until an exchange
   * with it succeeds, so a node left out logs one line per peer rather than one per round.
   */
  #refused(peer: Addr, why: string): void {
    const k = addrKey(peer);
    if (this.#refusedBy.has(k) || this.#refusedBy.size >= REFUSED_PEERS_MAX) return;
    this.#refusedBy.add(k);
    this.#opts.onLog(
      "error",
      `${why}; this node does not run with the cluster's secret, so the cluster refuses it`,
    );
  }

  /** Counts a delta about a node of another cluster, and reports each such cluster once. */
  #foreign(nodeId: string, clusterId: string): void {
    this.#counters.foreign++;
    if (
      this.#foreignClusters.has(clusterId) || this.#foreignClusters.size >= FOREIGN_CLUSTERS_MAX
    ) return;
    this.#foreignClusters.add(clusterId);
    this.#opts.onLog(
      "warn",
      `Ignoring node ${nodeId} of cluster ${clusterId}: this node belongs to cluster ` +
        `${this.#state.clusterId}. Likely ${FOREIGN_WHY}`,
    );
  }

  /**
   * Another process claims this node's id. Once it has kept doing so through IMPOSTOR_CLAIMS_MAX
   * refutations it is live, not a predecessor's state still circulating. The one that has run fewer
   * gossip rounds (heartbeats; no clock is compared) started later and must stop; where the two are
   * within IMPOSTOR_BEATS_APART of each other neither can tell, and both stop.
   */
  #impostor(claim: ImpostorClaim): void {
    // A claim whose heartbeat did not fit in its message says nothing of how long it has run.
    if (claim.heartbeat === null) return;
    if (++this.#impostorClaims !== IMPOSTOR_CLAIMS_MAX) return;
    const where = claim.host === null
      ? "another address"
      : `${claim.host}:${claim.clusterPort ?? "?"}`;
    const here = `${this.#opts.host}:${this.addr.port}`;
    const ours = this.#state.heartbeat;
    const theirs = claim.heartbeat;
    const what = `Another process at ${where} runs as node ${this.id}, as this one at ${here} ` +
      "does: a copy of this node's data directory? Two processes acting as one node can vote " +
      "twice in one Raft election";
    if (theirs + IMPOSTOR_BEATS_APART <= ours) {
      this.#opts.onLog(
        "error",
        `${what}. It has run ${theirs} gossip rounds, this one ${ours}: it started later and ` +
          "must stop, or be started on a data directory of its own",
      );
      return;
    }
    const message = `${what}. It has run ${theirs} gossip rounds, this one ${ours}: ${
      ours + IMPOSTOR_BEATS_APART <= theirs
        ? "this one started later, so it stops"
        : "they started too close together to tell which came first, so this one stops too"
    }; start a new node on a data directory of its own (a new node id)`;
    this.#opts.onLog("error", message);
    this.#opts.onDuplicate(message);
  }

  /**
   * A node joining a cluster takes its seeds': that of every node a seed holds that names one
   * (nodes joining too name none). A seed whose nodes name two clusters teaches nothing.
   */
  #learnCluster(peer: Addr, theirs: readonly GossipDigestEntry[]): void {
    const key = addrKey(peer);
    if (this.#seeds.some((s) => addrKey(s) === key)) this.#learnFrom(theirs);
  }

  /** Joins the one cluster that every node in `theirs` this node holds and that names one names. */
  #learnFrom(theirs: readonly GossipDigestEntry[]): void {
    const named = new Set<string>();
    for (const d of theirs) {
      if (d.id === this.id) continue;
      const c = this.#state.clusterOf(d.id);
      if (c !== undefined && c !== "") named.add(c);
    }
    if (named.size === 1) this.joinCluster([...named][0]!);
  }

  /** Closes `conn` once `ms` have passed, unless `signal` aborts first. */
  #closeAfter(conn: Conn, ms: number, signal: AbortSignal): void {
    this.#env.clock.sleep(Math.max(0, ms), signal).then(() => conn.close(), () => {});
  }

  async #send(conn: Conn, frame: Uint8Array): Promise<void> {
    await writeAll(conn, frame);
    this.#counters.bytesSent += frame.length;
  }

  /** The next frame, or null at end of stream, counting the bytes read. Throws MalformedError. */
  #readFrame(conn: Conn, parser: FrameParser, buf: Uint8Array): Promise<Frame | null> {
    return readFrame(conn, parser, buf, (n) => void (this.#counters.bytesReceived += n));
  }

  /** One exchange as initiator: SYN, the answer's deltas applied, ACK2 with what the peer lacks. */
  async #exchange(peer: Addr): Promise<void> {
    this.#outbound++;
    const deadlineMs = this.#env.clock.now() + this.#opts.exchangeTimeoutMs;
    const guard = new AbortController();
    let conn: Conn | null = null;
    try {
      conn = await this.#env.net.connect(peer, { timeoutMs: this.#opts.exchangeTimeoutMs });
      this.#conns.add(conn);
      if (this.#closed) throw new Error("Gossip is closed");
      this.#closeAfter(conn, deadlineMs - this.#env.clock.now(), guard.signal);
      const correlationId = this.#random.u32();
      const syn = encodeSyn({ fromId: this.id, digest: this.#state.digest() });
      await this.#send(conn, encodeFrame(Op.GOSSIP_SYN, correlationId, syn));
      const parser = new FrameParser({ payloadBytesMax: GOSSIP_PAYLOAD_BYTES_MAX });
      const f = await this.#readFrame(conn, parser, new Uint8Array(READ_BYTES));
      if (f === null) throw new Error(`${addrKey(peer)} closed without answering GOSSIP_SYN`);
      if (f.flags === (Flag.RESPONSE | Flag.ERROR) && f.correlationId === correlationId) {
        const e = decode<ErrorPayload>(ERROR_SCHEMA, f.payload, "error");
        throw new GregorError(e.code, `${addrKey(peer)} refused GOSSIP_SYN: ${e.message}`);
      }
      if (
        f.opcode !== Op.GOSSIP_SYN || f.flags !== Flag.RESPONSE ||
        f.correlationId !== correlationId
      ) {
        throw new MalformedError(`${addrKey(peer)} answered GOSSIP_SYN with an unexpected frame`);
      }
      const answer = decodeSynResponse(f.payload);
      // Deltas first: a newer claim on this node's id there says who makes it (the digest only
      // that it is newer), and either refutes it.
      this.#emit(this.#state.apply(answer.deltas, this.#env.clock.now()));
      this.#state.observeDigest(answer.digest);
      if (this.#state.clusterId === "") this.#learnCluster(peer, answer.digest);
      const ack2 = encodeAck2({
        fromId: this.id,
        deltas: this.#state.deltasFor(answer.digest, this.#opts.messageBytesMax),
      });
      await this.#send(conn, encodeFrame(Op.GOSSIP_ACK2, correlationId, ack2));
      this.#counters.exchanges++;
      this.#refusedBy.delete(addrKey(peer));
    } catch (err) {
      if (err instanceof MalformedError) this.#counters.malformed++;
      else if (err instanceof GregorError && err.code === ErrorCode.AUTHENTICATION_FAILED) {
        this.#refused(peer, err.message);
      }
      this.#counters.failedExchanges++;
    } finally {
      guard.abort(GUARD_DONE);
      if (conn !== null) {
        conn.close();
        this.#conns.delete(conn);
      }
      this.#outbound--;
    }
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let conn: Conn | null;
      try {
        conn = await this.#listener.accept();
      } catch {
        // An accept error (e.g. out of file descriptors) must not spin: wait a round.
        try {
          await this.#env.clock.sleep(this.#opts.intervalMs, this.#stop.signal);
        } catch {
          return;
        }
        continue;
      }
      if (conn === null) return;
      if (this.#closed || this.#inbound >= INBOUND_EXCHANGES_MAX) {
        conn.close();
        continue;
      }
      this.#track(this.#serve(conn));
    }
  }

  /**
   * One exchange as responder: SYN, the answer, ACK2. A malformed frame closes the connection. A
   * first frame with a handled opcode hands the connection to its handler instead.
   */
  async #serve(conn: Conn): Promise<void> {
    this.#inbound++;
    let inbound = true;
    this.#conns.add(conn);
    const guard = new AbortController();
    this.#closeAfter(conn, this.#opts.exchangeTimeoutMs, guard.signal);
    let correlationId = 0;
    try {
      const parser = new FrameParser({ payloadBytesMax: this.#payloadBytesMax });
      const readBuf = new Uint8Array(READ_BYTES);
      const f = await this.#readFrame(conn, parser, readBuf);
      if (f === null) return;
      correlationId = f.correlationId;
      const handler = this.#handlers.get(f.opcode);
      if (handler !== undefined) {
        guard.abort(GUARD_DONE);
        this.#inbound--;
        inbound = false;
        await handler(conn, f, parser);
        return;
      }
      if (f.payload.length > GOSSIP_PAYLOAD_BYTES_MAX) {
        throw new MalformedError(`Gossip frame of ${f.payload.length} bytes is over the limit`);
      }
      if (f.opcode !== Op.GOSSIP_SYN || f.flags !== 0) {
        throw new MalformedError(
          `Expected GOSSIP_SYN, got opcode 0x${f.opcode.toString(16)} flags ${f.flags}`,
        );
      }
      const syn = decodeSyn(f.payload);
      // A seed list that names this node (e.g. a DNS name resolving to every node) dials itself.
      if (syn.fromId === this.id) return;
      if (conn.peerNodeId !== undefined && syn.fromId !== conn.peerNodeId) {
        throw new MalformedError(
          `GOSSIP_SYN from ${syn.fromId} on a connection authenticated as ${conn.peerNodeId}`,
        );
      }
      // The digest is judged once the exchange is over: a newer claim on this node's id in it
      // then comes with the claim's entries in the ACK2 (this node's digest still shows it
      // lacks them), which say who makes it.
      const answer = encodeSynResponse({
        digest: this.#state.digest(),
        deltas: this.#state.deltasFor(syn.digest, this.#opts.messageBytesMax),
      });
      await this.#send(conn, encodeFrame(Op.GOSSIP_SYN, correlationId, answer, Flag.RESPONSE));
      const ack = await this.#readFrame(conn, parser, readBuf);
      if (ack === null) return;
      if (
        ack.opcode !== Op.GOSSIP_ACK2 || ack.flags !== 0 || ack.correlationId !== correlationId ||
        ack.payload.length > GOSSIP_PAYLOAD_BYTES_MAX
      ) {
        throw new MalformedError(`Expected GOSSIP_ACK2 #${correlationId}`);
      }
      const m = decodeAck2(ack.payload);
      if (m.fromId !== syn.fromId) {
        throw new MalformedError(`GOSSIP_ACK2 from ${m.fromId} in an exchange with ${syn.fromId}`);
      }
      this.#emit(this.#state.apply(m.deltas, this.#env.clock.now()));
      this.#state.observeDigest(syn.digest);
      // A node whose only seed is itself (one config for every node) is never the one to call:
      // it learns its cluster from those that call it.
      if (this.#state.clusterId === "" && this.#seeds.every((a) => this.#isSelf(a))) {
        this.#learnFrom(syn.digest);
      }
    } catch (err) {
      if (err instanceof MalformedError) {
        this.#counters.malformed++;
        const payload = encode(ERROR_SCHEMA, {
          code: ErrorCode.MALFORMED_REQUEST,
          message: err.message.slice(0, 1000),
        });
        await this.#send(
          conn,
          encodeFrame(0, correlationId, payload, Flag.RESPONSE | Flag.ERROR),
        ).catch(() => {});
      }
    } finally {
      guard.abort(GUARD_DONE);
      conn.close();
      this.#conns.delete(conn);
      if (inbound) this.#inbound--;
    }
  }
}

function resolveOptions(opts: GossipOptions): Resolved {
  const o: Resolved = {
    ...GOSSIP_DEFAULTS,
    onLog: () => {},
    clusterId: "",
    onClusterId: () => {},
    onDuplicate: () => {},
    bindHost: opts.host,
    ...withoutUndefined(opts),
  } as Resolved;
  const bad = (what: string): never => {
    throw new RangeError(`Invalid gossip option ${what}`);
  };
  if (!isNodeId(o.nodeId)) bad(`nodeId ${JSON.stringify(o.nodeId)}: not 1 to 64 of [A-Za-z0-9_-]`);
  if (!isHost(o.host)) bad(`host ${JSON.stringify(o.host)}: not a host name or address`);
  if (!isHost(o.bindHost)) bad(`bindHost ${JSON.stringify(o.bindHost)}: not an address`);
  if (!(Number.isInteger(o.clusterPort) && o.clusterPort >= 0 && o.clusterPort <= 65535)) {
    bad(`clusterPort ${o.clusterPort}: not 0..65535`);
  }
  if (!isPort(o.clientPort)) bad(`clientPort ${o.clientPort}: not 1..65535`);
  if (o.clusterId !== "" && !isNodeId(o.clusterId)) {
    bad(`clusterId ${JSON.stringify(o.clusterId)}: not 1 to 64 of [A-Za-z0-9_-]`);
  }
  if (!Array.isArray(o.seeds) || o.seeds.length > SEEDS_MAX) bad(`seeds: at most ${SEEDS_MAX}`);
  for (const s of o.seeds) {
    try {
      parseSeed(s);
    } catch (err) {
      bad(`seeds: ${(err as Error).message}`);
    }
  }
  const positive = (name: keyof Resolved, v: number): void => {
    if (!(Number.isFinite(v) && v > 0)) bad(`${name} ${v}: must be a number > 0`);
  };
  positive("intervalMs", o.intervalMs);
  positive("phiSuspect", o.phiSuspect);
  positive("resolveSeedsEveryMs", o.resolveSeedsEveryMs);
  positive("exchangeTimeoutMs", o.exchangeTimeoutMs);
  if (!(Number.isFinite(o.phiDead) && o.phiDead > o.phiSuspect)) {
    bad(`phiDead ${o.phiDead}: must be above phiSuspect (${o.phiSuspect})`);
  }
  if (!(Number.isFinite(o.deadForgetMs) && o.deadForgetMs >= 0)) {
    bad(`deadForgetMs ${o.deadForgetMs}: must be >= 0`);
  }
  if (
    !(Number.isInteger(o.messageBytesMax) && o.messageBytesMax >= MESSAGE_BYTES_MIN &&
      o.messageBytesMax <= MESSAGE_BYTES_MAX)
  ) {
    bad(`messageBytesMax ${o.messageBytesMax}: must be ${MESSAGE_BYTES_MIN}..${MESSAGE_BYTES_MAX}`);
  }
  return o;
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
