// The simulated network: TCP-like byte streams between simulated nodes, with latency, chunk
// splitting and merging, short writes, flow control, resets, and symmetric or one-way partitions
// that hold traffic until they heal. Nothing is known at a distance: a peer learns of a close, a
// crash or a reset only from a segment (FIN or RST) that crossed the network to it.

import type {
  Addr,
  Conn,
  ConnectOptions,
  Listener,
  ListenOptions,
  Network,
  TlsFailure,
  TlsServerOptions,
} from "../src/io/types.ts";
import {
  AddressInUse,
  BrokenPipe,
  Closed,
  ConnectionRefused,
  ConnectionReset,
  TimedOut,
  TlsConfigError,
  TlsHandshakeFailed,
} from "../src/io/errors.ts";
import type { SeededRandom } from "../src/io/prng.ts";
import type { World } from "./world.ts";
import { never, type SimNode } from "./node.ts";
import { checkServerTls, simHandshake, TLS_ALERT_BYTES } from "./tls.ts";

/** Network fault knobs; mutable so the runner can calm the network for the liveness phase. */
export interface NetFaults {
  /** One-way delay of a segment, ms. */
  latencyMs: number;
  /** Extra random delay, uniform in [0, jitterMs). Order on a connection is kept regardless. */
  jitterMs: number;
  /** Probability a write is cut into several segments that arrive at different times. */
  splitProb: number;
  /** Probability a write takes only part of the bytes offered. */
  shortWriteProb: number;
  /** Probability a read returns fewer bytes than are buffered. */
  shortReadProb: number;
}

/** A calm network: fixed small latency, no splitting. */
export function calmNet(): NetFaults {
  return { latencyMs: 0.1, jitterMs: 0, splitProb: 0, shortWriteProb: 0, shortReadProb: 0 };
}

/** Bytes a connection direction holds in flight plus unread, like a TCP window plus buffer. */
export const PIPE_BYTES_MAX = 256 * 1024;
/** Connections waiting to be accepted per listener; more are refused. */
export const ACCEPT_BACKLOG_MAX = 128;
/** `connect` gives up after this long unless told otherwise, ms. */
export const CONNECT_TIMEOUT_MS_DEFAULT = 5000;
/**
 * A connecting kernel sends its SYN again after this long without an answer, ms, then after twice
 * as long each time (Linux: an initial retransmission timeout of 1 s).
 */
export const SYN_RTO_MS_FIRST = 1000;
/** SYNs sent again at most per connection attempt (Linux's `tcp_syn_retries` default). */
export const SYN_RETRIES_MAX = 6;
/**
 * An established connection whose segments go unacknowledged sends them again after this long,
 * ms, then after twice as long each time (Linux's TCP_RTO_MIN on a fast network)...
 */
export const RTO_MS_MIN = 200;
/** ...up to this long between two retransmissions, ms (Linux's TCP_RTO_MAX). */
export const RTO_MS_MAX = 120_000;
/** Segments a single write may be cut into. */
const SPLIT_SEGMENTS_MAX = 4;
/** First port handed out for port 0 and for the local side of connections. */
const EPHEMERAL_PORT_MIN = 40_000;
/** The address loopback listeners report and loopback connections use. */
const LOOPBACK = "127.0.0.1";

const TAG_DELIVER = 10;
const TAG_CONNECT = 11;
const TAG_WAKE = 12;
const TAG_SYN = 14;

type SegmentKind = "data" | "fin" | "rst";

interface Segment {
  kind: SegmentKind;
  /** The bytes of a "data" segment; null for FIN and RST. */
  bytes: Uint8Array | null;
  at: number;
  /** The sender's power-loss count when sent: a power loss loses what its kernel still held. */
  boot: number;
  /** Already counted in `heldSegments`. */
  counted: boolean;
}

type Waiter<T> = { resolve: (v: T) => void; reject: (e: unknown) => void };

/** One direction of a connection: what `src` wrote, on its way to and waiting at `dst`. */
class Pipe {
  src!: SimConn;
  dst!: SimConn;
  readonly inflight: Segment[] = [];
  /** Data bytes in `inflight`. */
  inflightBytes = 0;
  readonly unread: Uint8Array[] = [];
  unreadBytes = 0;
  lastAt = 0;
  scheduled = false;
  held = false;
  /** When the head segment was first held (a cut, or the receiving host down); -1: not held. */
  heldSinceMs = -1;
  /** Nothing is delivered before this: the sender's next retransmission after a hold ended. */
  resumeAtMs = 0;
  finDelivered = false;
  reader: Waiter<number | null> & { buf: Uint8Array } | null = null;
  writer: { bytes: Uint8Array } & Waiter<number> | null = null;

  get space(): number {
    return PIPE_BYTES_MAX - this.inflightBytes - this.unreadBytes;
  }

  /** Forgets every segment not yet delivered. */
  dropInflight(): void {
    this.inflight.length = 0;
    this.inflightBytes = 0;
  }

  dropUnread(): void {
    this.unread.length = 0;
    this.unreadBytes = 0;
  }
}

/** Counters for reports and "sometimes" checks. */
export interface NetStats {
  connects: number;
  refused: number;
  connectTimeouts: number;
  /** SYNs sent again after one got no answer (host down or partition). */
  synRetries: number;
  /** Connections the nemesis (or a test) reset. */
  resets: number;
  /** RST segments sent by a kernel: to a closed or dead end, or as an abort. */
  rstSent: number;
  /** RSTs that reached a live end which still had unread or undelivered bytes: those are lost. */
  resetsLosingBytes: number;
  segments: number;
  /** Segments held by a partition, each counted once. */
  heldSegments: number;
}

/** The shared fabric all simulated nodes' networks plug into. */
export class SimNetwork {
  readonly faults: NetFaults;
  readonly stats: NetStats = {
    connects: 0,
    refused: 0,
    connectTimeouts: 0,
    synRetries: 0,
    resets: 0,
    rstSent: 0,
    resetsLosingBytes: 0,
    segments: 0,
    heldSegments: 0,
  };
  readonly #world: World;
  readonly #random: SeededRandom;
  readonly #hosts = new Map<string, SimNode>();
  readonly #listeners = new Map<string, SimListener>();
  /** Sender host → the hosts its traffic may not reach (keyed twice: no string built per lookup). */
  readonly #blocked = new Map<string, Set<string>>();
  /** Pipes whose head cannot be delivered: blocked by a partition or the receiver has no power. */
  readonly #held = new Set<Pipe>();
  /** Open ends of running processes (not closed, not reset). */
  readonly #conns = new Set<SimConn>();
  readonly #nextPort = new Map<string, number>();

  constructor(world: World, random: SeededRandom, faults: NetFaults) {
    this.#world = world;
    this.#random = random;
    this.faults = faults;
  }

  /** Plugs a node's machine into the network under its host name. */
  attach(node: SimNode): void {
    if (this.#hosts.has(node.host)) throw new Error(`Host ${node.host} is already attached`);
    this.#hosts.set(node.host, node);
  }

  /** The Network one incarnation of a node sees; it goes silent when that incarnation ends. */
  viewFor(node: SimNode, incarnation: number): Network {
    return {
      listen: (addr, opts) => this.#listen(node, incarnation, addr, opts),
      connect: (addr, opts) => this.#connect(node, incarnation, addr, opts),
      resolve: (name) => node.isCurrent(incarnation) ? Promise.resolve([name]) : never(),
    };
  }

  /** Stops traffic from host `from` to host `to` (one way). Held bytes wait for `heal`. */
  block(from: string, to: string): void {
    let unreachable = this.#blocked.get(from);
    if (unreachable === undefined) this.#blocked.set(from, unreachable = new Set());
    unreachable.add(to);
  }

  /** Splits hosts into groups that cannot reach each other (both ways). */
  partition(groups: readonly (readonly string[])[]): void {
    for (const a of groups) {
      for (const b of groups) {
        if (a === b) continue;
        for (const x of a) for (const y of b) this.block(x, y);
      }
    }
  }

  /** Ends every partition; held traffic resumes in order. */
  heal(): void {
    this.#blocked.clear();
    this.#release(() => true);
  }

  /** True if traffic from `from` to `to` is blocked. */
  isBlocked(from: string, to: string): boolean {
    if (this.#blocked.size === 0) return false;
    return this.#blocked.get(from)?.has(to) ?? false;
  }

  /** Open connection ends, for the nemesis to pick one to reset. */
  openConns(): SimConn[] {
    return [...this.#conns];
  }

  /**
   * Resets a connection as its local kernel would abort it: that end fails its pending and later
   * reads and writes at once, and a RST travels to the peer, which fails when it arrives.
   */
  resetConn(conn: SimConn): void {
    if (!this.#conns.has(conn)) return;
    this.stats.resets++;
    this.#abort(conn);
    this.#runOn(conn, () => this.#failWaiters(conn));
  }

  /**
   * A node's process ended. Its listeners vanish and its code's pending reads and writes are
   * abandoned (never settled). After a process crash or exit the kernel closes its sockets: a FIN
   * after the data already written, or a RST (unsent data discarded) where unread bytes were
   * thrown away; un-accepted connections are reset. A power loss sends nothing at all.
   */
  processDown(node: SimNode, kind: "power" | "process"): void {
    for (const [key, l] of this.#listeners) {
      if (l.node !== node) continue;
      this.#listeners.delete(key);
      for (const c of l.drop()) {
        this.#conns.delete(c);
        c.closed = true;
        if (kind === "process") this.#abort(c);
      }
    }
    for (const end of [...this.#conns]) {
      if (end.node !== node) continue;
      this.#conns.delete(end);
      end.inbound.reader = null;
      end.outbound.writer = null;
      if (kind === "power") continue;
      end.closed = true;
      if (end.inbound.unreadBytes > 0) this.#abort(end);
      else this.#send(end.outbound, "fin", null);
      end.inbound.dropUnread();
    }
  }

  /** A node's machine is powered again: traffic that waited for it is delivered (and reset). */
  hostStarted(node: SimNode): void {
    this.#release((pipe) => pipe.dst.node === node);
  }

  #delay(): number {
    const f = this.faults;
    return f.latencyMs + (f.jitterMs > 0 ? this.#random.float() * f.jitterMs : 0);
  }

  #port(host: string): number {
    const p = this.#nextPort.get(host) ?? EPHEMERAL_PORT_MIN;
    this.#nextPort.set(host, p + 1);
    return p;
  }

  #listen(node: SimNode, incarnation: number, addr: Addr, opts?: ListenOptions): Promise<Listener> {
    if (!node.isCurrent(incarnation)) return never();
    if (opts?.tls !== undefined) {
      try {
        checkServerTls(opts.tls, `Cannot listen on ${addr.host}:${addr.port} with TLS`);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    const loopbackOnly = addr.host === LOOPBACK || addr.host === "localhost";
    if (!loopbackOnly && addr.host !== "0.0.0.0" && addr.host !== node.host) {
      return Promise.reject(
        new AddressInUse(`Cannot listen on ${addr.host}: not this node's address`),
      );
    }
    let port = addr.port;
    if (port === 0) {
      do port = this.#port(node.host); while (this.#listeners.has(`${node.host}:${port}`));
    }
    const key = `${node.host}:${port}`;
    if (this.#listeners.has(key)) {
      return Promise.reject(new AddressInUse(`Cannot listen on ${key}: address in use`));
    }
    const bound = { host: loopbackOnly ? LOOPBACK : addr.host, port };
    const l = new SimListener(this, node, incarnation, bound, {
      loopbackOnly,
      onClose: () => this.#listeners.delete(key),
      tls: opts?.tls,
    });
    this.#listeners.set(key, l);
    return Promise.resolve(l);
  }

  #connect(node: SimNode, incarnation: number, addr: Addr, opts?: ConnectOptions): Promise<Conn> {
    if (!node.isCurrent(incarnation)) return never();
    const loop = addr.host === LOOPBACK || addr.host === "localhost" || addr.host === "0.0.0.0";
    const host = loop ? node.host : addr.host;
    const dialed: Addr = { host: loop ? LOOPBACK : host, port: addr.port };
    const timeoutMs = opts?.timeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT;
    const owned = { owner: node, incarnation, tag: TAG_CONNECT };
    this.stats.connects++;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): boolean => {
        if (settled) return false;
        settled = true;
        timer.cancel();
        fn();
        return true;
      };
      // The caller gives up after timeoutMs, however many SYNs went unanswered until then.
      const timer = this.#world.schedule(timeoutMs, () => {
        if (settled) return;
        settled = true;
        this.stats.connectTimeouts++;
        reject(
          new TimedOut(`Cannot connect to ${host}:${addr.port}: timed out after ${timeoutMs} ms`),
        );
      }, owned);
      const sendSyn = (rtoMs: number, retries: number): void => {
        const sentAt = this.#world.now;
        this.#world.schedule(this.#delay(), () => synArrives(sentAt, rtoMs, retries), {
          tag: TAG_SYN,
        });
      };
      // A lost SYN is sent again on the connecting kernel's schedule, so an attempt that outlives
      // the partition (or the host's downtime) still connects.
      const lost = (sentAt: number, rtoMs: number, retries: number): void => {
        if (retries >= SYN_RETRIES_MAX) return;
        this.#world.schedule(sentAt + rtoMs - this.#world.now, () => {
          if (settled || !node.isCurrent(incarnation)) return;
          this.stats.synRetries++;
          sendSyn(rtoMs * 2, retries + 1);
        }, { tag: TAG_SYN });
      };
      const synArrives = (sentAt: number, rtoMs: number, retries: number): void => {
        if (settled || !node.isCurrent(incarnation)) return;
        const dst = this.#hosts.get(host);
        if (
          dst === undefined || !dst.hostUp || this.isBlocked(node.host, host) ||
          this.isBlocked(host, node.host)
        ) {
          lost(sentAt, rtoMs, retries);
          return;
        }
        const l = this.#listeners.get(`${host}:${addr.port}`);
        if (
          l === undefined || (l.loopbackOnly && node.host !== host) ||
          l.backlog.length >= ACCEPT_BACKLOG_MAX
        ) {
          // The kernel there answers with a RST.
          this.stats.refused++;
          this.#world.schedule(this.#delay(), () => {
            this.#runOn({ node, incarnation }, () =>
              settle(() => {
                reject(new ConnectionRefused(`Cannot connect to ${host}:${addr.port}: refused`));
              }));
          }, { tag: TAG_SYN });
          return;
        }
        const tls = simHandshake(l.tls, opts?.tls, { dialed: addr.host, nowMs: this.#world.now });
        if (tls.kind === "clientFails") {
          this.#tlsRefused(l, { node, incarnation }, tls, (err) => settle(() => reject(err)), addr);
          return;
        }
        const local = { host: loop ? LOOPBACK : node.host, port: this.#port(node.host) };
        const out = new Pipe();
        const back = new Pipe();
        const mine = new SimConn(this, node, incarnation, { local, remote: dialed, out, back });
        const theirs = new SimConn(this, l.node, l.incarnation, {
          local: dialed,
          remote: local,
          out: back,
          back: out,
        });
        out.src = back.dst = mine;
        out.dst = back.src = theirs;
        mine.peer = theirs;
        theirs.peer = mine;
        // The connection waits in the backlog from now on, whether or not the listener runs.
        this.#conns.add(theirs);
        if (tls.kind === "ok") {
          if (tls.subject !== undefined) theirs.tlsPeerSubject = tls.subject;
          l.backlog.push(theirs);
          this.#runOn(theirs, () => l.handOver());
        } else {
          // The server's TLS layer ends it without the listener ever seeing it.
          const report = l.tls?.onHandshakeError;
          this.#runOn(theirs, () => {
            if (tls.kind === "plainToTls") theirs.write(TLS_ALERT_BYTES).catch(() => {});
            theirs.close();
            report?.(
              tls.kind === "plainToTls"
                ? { reason: "NOT_TLS", message: "TLS client refused: it does not speak TLS" }
                : { reason: tls.reason, message: `TLS client refused: ${tls.message}` },
            );
          });
        }
        this.#world.schedule(this.#delay(), () => {
          const established = node.isCurrent(incarnation) && !settled;
          if (!established) {
            // Nobody waits for this connection any more; its kernel answers with a RST.
            this.#forget(mine);
            return;
          }
          this.#runOn(mine, () => {
            if (settle(() => resolve(mine))) this.#conns.add(mine);
            else this.#forget(mine);
          });
        }, { tag: TAG_SYN });
      };
      sendSyn(SYN_RTO_MS_FIRST, 0);
    });
  }

  /**
   * A client that refused the server's certificate (or found no TLS there) learns it a round trip
   * later; a TLS server hears that its certificate was refused.
   */
  #tlsRefused(
    l: SimListener,
    client: { node: SimNode; incarnation: number },
    tls: { reason: TlsFailure; message: string },
    fail: (err: Error) => void,
    addr: Addr,
  ): void {
    const report = l.tls?.onHandshakeError;
    if (report !== undefined) {
      this.#runOn(l, () =>
        report({
          reason: tls.reason,
          message: `TLS handshake with a client failed: the peer refused this end's ` +
            `certificate: ${tls.message}`,
        }));
    }
    this.#world.schedule(2 * this.#delay(), () => {
      this.#runOn(client, () =>
        fail(
          new TlsHandshakeFailed(
            tls.reason,
            `Cannot connect to ${addr.host}:${addr.port} with TLS: ${tls.message}`,
          ),
        ));
    }, { tag: TAG_SYN });
  }

  /** Queues a segment on `pipe`; a data write may be cut into several segments. */
  #send(pipe: Pipe, kind: SegmentKind, bytes: Uint8Array | null): void {
    const now = this.#world.now;
    const parts: (Uint8Array | null)[] = [];
    if (bytes !== null && bytes.length > 1 && this.#random.chance(this.faults.splitProb)) {
      const pieces = this.#random.int(2, SPLIT_SEGMENTS_MAX + 1);
      let off = 0;
      for (let i = 1; i < pieces && off < bytes.length - 1; i++) {
        const cut = this.#random.int(off + 1, bytes.length);
        parts.push(bytes.subarray(off, cut));
        off = cut;
      }
      parts.push(bytes.subarray(off));
    } else {
      parts.push(bytes);
    }
    const boot = pipe.src.node.powerLosses;
    for (const part of parts) {
      const at = Math.max(pipe.lastAt, now + this.#delay());
      pipe.lastAt = at;
      pipe.inflight.push({ kind, bytes: part, at, boot, counted: false });
      if (part !== null) pipe.inflightBytes += part.length;
      this.stats.segments++;
    }
    if (!pipe.scheduled && !pipe.held) this.#scheduleDelivery(pipe);
  }

  #scheduleDelivery(pipe: Pipe): void {
    const head = pipe.inflight[0];
    if (head === undefined) return;
    pipe.scheduled = true;
    const at = Math.max(head.at, pipe.resumeAtMs);
    this.#world.schedule(at - this.#world.now, () => this.#deliver(pipe), {
      tag: TAG_DELIVER,
    });
  }

  /** A network event: the segments due on `pipe` reach the receiving machine. */
  #deliver(pipe: Pipe): void {
    pipe.scheduled = false;
    const now = this.#world.now;
    for (;;) {
      const seg = pipe.inflight[0];
      if (seg === undefined || seg.at > now) break;
      if (seg.boot === pipe.src.node.powerLosses) {
        const partitioned = this.isBlocked(pipe.src.node.host, pipe.dst.node.host);
        if (partitioned || !pipe.dst.node.hostUp) {
          this.#hold(pipe, partitioned);
          return;
        }
      }
      pipe.heldSinceMs = -1;
      pipe.inflight.shift();
      if (seg.bytes !== null) pipe.inflightBytes -= seg.bytes.length;
      // Whatever the sender's kernel still held when it lost power never arrives.
      if (seg.boot === pipe.src.node.powerLosses) this.#arrive(pipe, seg);
    }
    if (pipe.inflight.length > 0 && !pipe.scheduled) this.#scheduleDelivery(pipe);
  }

  #hold(pipe: Pipe, partitioned: boolean): void {
    pipe.held = true;
    if (pipe.heldSinceMs < 0) pipe.heldSinceMs = this.#world.now;
    this.#held.add(pipe);
    if (!partitioned) return;
    for (const seg of pipe.inflight) {
      if (seg.counted) continue;
      seg.counted = true;
      this.stats.heldSegments++;
    }
  }

  #release(which: (pipe: Pipe) => boolean): void {
    for (const pipe of [...this.#held]) {
      if (!which(pipe)) continue;
      this.#held.delete(pipe);
      pipe.held = false;
      pipe.resumeAtMs = nextRetransmission(pipe.heldSinceMs, this.#world.now);
      if (!pipe.scheduled) this.#scheduleDelivery(pipe);
    }
  }

  /** One segment reaches the receiving end's machine, which has power. */
  #arrive(pipe: Pipe, seg: Segment): void {
    const end = pipe.dst;
    const open = end.node.isCurrent(end.incarnation) && !end.closed && !end.reset;
    if (seg.kind === "rst") {
      if (open) this.#resetByPeer(end);
      return;
    }
    if (!open) {
      // No socket takes these bytes: the kernel answers with a RST. A FIN needs no answer.
      if (seg.kind === "data") this.#sendRst(end);
      return;
    }
    if (seg.kind === "fin") pipe.finDelivered = true;
    else {
      pipe.unread.push(seg.bytes as Uint8Array);
      pipe.unreadBytes += (seg.bytes as Uint8Array).length;
    }
    this.#runOn(end, () => this.#serveReader(pipe));
  }

  /** The kernel of `end`'s machine answers for a socket that is gone or closed. */
  #sendRst(end: SimConn): void {
    const boot = end.node.powerLosses;
    if (end.rstBoot === boot) return;
    end.rstBoot = boot;
    this.stats.rstSent++;
    this.#send(end.outbound, "rst", null);
  }

  /** Aborts `end` locally: unsent data is discarded, a RST goes out, the end is reset. */
  #abort(end: SimConn): void {
    this.#conns.delete(end);
    end.reset = true;
    end.outbound.dropInflight();
    end.inbound.dropUnread();
    this.#sendRst(end);
  }

  /** Makes a half-made connection end disappear (nobody will ever use it). */
  #forget(end: SimConn): void {
    end.closed = true;
    if (end.node.hostUp) this.#sendRst(end);
  }

  /** A RST from the peer reached a live end: bytes it had not read or not delivered are lost. */
  #resetByPeer(end: SimConn): void {
    this.#conns.delete(end);
    end.reset = true;
    if (end.inbound.unreadBytes + end.outbound.inflightBytes > 0) this.stats.resetsLosingBytes++;
    end.inbound.dropUnread();
    end.outbound.dropInflight();
    this.#held.delete(end.outbound);
    end.outbound.held = false;
    this.#runOn(end, () => this.#failWaiters(end));
  }

  /** Fails `end`'s pending read and write after a reset. Runs on `end`'s node. */
  #failWaiters(end: SimConn): void {
    const r = end.inbound.reader;
    if (r !== null) {
      end.inbound.reader = null;
      r.reject(new ConnectionReset("Cannot read: connection reset by peer"));
    }
    const w = end.outbound.writer;
    if (w !== null) {
      end.outbound.writer = null;
      w.reject(new ConnectionReset("Cannot write: connection reset by peer"));
    }
  }

  /**
   * Runs `fn`, which settles promises of `end`'s incarnation, from a network event: at once if that
   * process runs, later in an event of its own if it is paused, never if it is gone.
   */
  #runOn(end: { node: SimNode; incarnation: number }, fn: () => void): void {
    if (!end.node.isCurrent(end.incarnation)) return;
    if (!end.node.paused) {
      fn();
      return;
    }
    this.#world.schedule(0, fn, { owner: end.node, incarnation: end.incarnation, tag: TAG_WAKE });
  }

  /** Hands buffered bytes or the end of stream to a waiting reader, if any. */
  #serveReader(pipe: Pipe): void {
    const r = pipe.reader;
    if (r === null) return;
    if (pipe.unreadBytes > 0) {
      pipe.reader = null;
      r.resolve(this.take(pipe, r.buf));
    } else if (pipe.finDelivered) {
      pipe.reader = null;
      r.resolve(null);
    }
  }

  /** Copies unread bytes into `buf` (maybe fewer than available) and frees window space. */
  take(pipe: Pipe, buf: Uint8Array): number {
    let want = Math.min(buf.length, pipe.unreadBytes);
    if (want > 1 && this.#random.chance(this.faults.shortReadProb)) {
      want = this.#random.int(1, want);
    }
    let n = 0;
    while (n < want) {
      const chunk = pipe.unread[0] as Uint8Array;
      const k = Math.min(chunk.length, want - n);
      buf.set(chunk.subarray(0, k), n);
      n += k;
      if (k === chunk.length) pipe.unread.shift();
      else pipe.unread[0] = chunk.subarray(k);
    }
    pipe.unreadBytes -= n;
    if (pipe.writer !== null) {
      // The window update reaches the writer's process in an event of its own.
      const src = pipe.src;
      this.#world.schedule(0, () => this.#wakeWriter(pipe), {
        owner: src.node,
        incarnation: src.incarnation,
        tag: TAG_WAKE,
      });
    }
    return n;
  }

  /** Retries a writer blocked on a full window. Runs on the writer's node. */
  #wakeWriter(pipe: Pipe): void {
    const w = pipe.writer;
    if (w === null || pipe.space <= 0) return;
    pipe.writer = null;
    w.resolve(this.accept(pipe, w.bytes));
  }

  /** Takes as much of `bytes` as the window allows (maybe less), copies and sends it. */
  accept(pipe: Pipe, bytes: Uint8Array): number {
    let n = Math.min(bytes.length, pipe.space);
    if (n > 1 && this.#random.chance(this.faults.shortWriteProb)) n = this.#random.int(1, n);
    this.#send(pipe, "data", bytes.slice(0, n));
    return n;
  }

  /**
   * Local close: a FIN goes out after the written bytes; unread bytes are dropped, and bytes that
   * arrive later are answered with a RST. The peer learns of the close only from those segments.
   */
  closeEnd(conn: SimConn): void {
    this.#conns.delete(conn);
    if (!conn.reset) this.#send(conn.outbound, "fin", null);
    const inbound = conn.inbound;
    inbound.dropUnread();
    const r = inbound.reader;
    if (r !== null) {
      inbound.reader = null;
      r.resolve(null);
    }
    const w = conn.outbound.writer;
    if (w !== null) {
      conn.outbound.writer = null;
      w.reject(new BrokenPipe("Cannot write: the connection was closed locally"));
    }
  }

  /** A listener was closed by its code: connections not yet accepted are reset. */
  closeListener(l: SimListener): void {
    for (const c of l.drop()) this.#abort(c);
  }

  /** Parks a reader until bytes, end of stream or reset. */
  waitRead(pipe: Pipe, buf: Uint8Array): Promise<number | null> {
    if (pipe.reader !== null) {
      return Promise.reject(new Error("Conn.read called while another read is pending"));
    }
    return new Promise((resolve, reject) => (pipe.reader = { buf, resolve, reject }));
  }

  /** Parks a writer until the window has room. */
  waitWrite(pipe: Pipe, bytes: Uint8Array): Promise<number> {
    if (pipe.writer !== null) {
      return Promise.reject(new Error("Conn.write called while another write is pending"));
    }
    return new Promise((resolve, reject) => (pipe.writer = { bytes, resolve, reject }));
  }
}

/** One end of a simulated connection, owned by the incarnation that opened or accepted it. */
export class SimConn implements Conn {
  readonly node: SimNode;
  readonly incarnation: number;
  readonly local: Addr;
  readonly remote: Addr;
  readonly outbound: Pipe;
  readonly inbound: Pipe;
  peer: SimConn | null = null;
  /** Closed by its code, or by the kernel when its process ended. */
  closed = false;
  /** A RST arrived, or the end was aborted. */
  reset = false;
  /** The verified client certificate's subject, on the server end of a mutual-TLS connection. */
  tlsPeerSubject?: string;
  /** The power-loss count at which this end's kernel last sent a RST: one per boot is enough. */
  rstBoot = -1;
  readonly #net: SimNetwork;

  constructor(
    net: SimNetwork,
    node: SimNode,
    incarnation: number,
    opts: { local: Addr; remote: Addr; out: Pipe; back: Pipe },
  ) {
    this.#net = net;
    this.node = node;
    this.incarnation = incarnation;
    this.local = opts.local;
    this.remote = opts.remote;
    this.outbound = opts.out;
    this.inbound = opts.back;
  }

  read(buf: Uint8Array): Promise<number | null> {
    if (!this.node.isCurrent(this.incarnation)) return never();
    if (buf.length === 0) {
      return Promise.reject(new RangeError("Conn.read needs a non-empty buffer"));
    }
    const pipe = this.inbound;
    if (this.closed) return Promise.resolve(null);
    if (this.reset) return Promise.reject(new ConnectionReset("Cannot read: connection reset"));
    if (pipe.unreadBytes > 0) return Promise.resolve(this.#net.take(pipe, buf));
    if (pipe.finDelivered) return Promise.resolve(null);
    return this.#net.waitRead(pipe, buf);
  }

  write(bytes: Uint8Array): Promise<number> {
    if (!this.node.isCurrent(this.incarnation)) return never();
    const pipe = this.outbound;
    if (this.closed) return Promise.reject(new Closed("Cannot write: connection closed"));
    if (this.reset) return Promise.reject(new ConnectionReset("Cannot write: connection reset"));
    if (bytes.length === 0) return Promise.resolve(0);
    if (pipe.space > 0) return Promise.resolve(this.#net.accept(pipe, bytes));
    return this.#net.waitWrite(pipe, bytes);
  }

  close(): void {
    // A dead incarnation's sockets were already dealt with by its kernel.
    if (this.closed || !this.node.isCurrent(this.incarnation)) return;
    this.closed = true;
    this.#net.closeEnd(this);
  }
}

/** A simulated server socket, owned by the incarnation that bound it. */
export class SimListener implements Listener {
  readonly node: SimNode;
  readonly incarnation: number;
  readonly addr: Addr;
  /** Bound to 127.0.0.1: only connections from its own host reach it. */
  readonly loopbackOnly: boolean;
  /** Connections made but not yet accepted; at most ACCEPT_BACKLOG_MAX. */
  readonly backlog: SimConn[] = [];
  closed = false;
  /** Its TLS certificate and policy; replaced by `reloadTls`. */
  tls: TlsServerOptions | undefined;
  #waiter: ((c: Conn | null) => void) | null = null;
  readonly #net: SimNetwork;
  readonly #onClose: () => void;

  constructor(
    net: SimNetwork,
    node: SimNode,
    incarnation: number,
    addr: Addr,
    opts: { loopbackOnly: boolean; onClose: () => void; tls: TlsServerOptions | undefined },
  ) {
    this.tls = opts.tls;
    this.#net = net;
    this.node = node;
    this.incarnation = incarnation;
    this.addr = addr;
    this.loopbackOnly = opts.loopbackOnly;
    this.#onClose = opts.onClose;
  }

  /** Gives the oldest waiting connection to a pending `accept` (runs on the listener's node). */
  handOver(): void {
    const w = this.#waiter;
    if (w === null || this.closed) return;
    const c = this.backlog.shift();
    if (c === undefined) return;
    this.#waiter = null;
    w(c);
  }

  /** Marks the listener closed and empties its backlog (returned); a pending accept is dropped. */
  drop(): SimConn[] {
    this.closed = true;
    this.#waiter = null;
    return this.backlog.splice(0);
  }

  accept(): Promise<Conn | null> {
    if (!this.node.isCurrent(this.incarnation)) return never();
    if (this.closed) return Promise.resolve(null);
    const c = this.backlog.shift();
    if (c !== undefined) return Promise.resolve(c);
    if (this.#waiter !== null) {
      return Promise.reject(new Error("Listener.accept called while another accept is pending"));
    }
    return new Promise((resolve) => (this.#waiter = resolve));
  }

  reloadTls(tls: TlsServerOptions): Promise<void> {
    if (this.tls === undefined) {
      return Promise.reject(
        new TlsConfigError(`Cannot reload TLS on ${this.addr.host}: plaintext`),
      );
    }
    try {
      checkServerTls(tls, `Cannot reload the TLS certificate of ${this.addr.host}`);
    } catch (err) {
      return Promise.reject(err);
    }
    this.tls = tls;
    return Promise.resolve();
  }

  close(): void {
    if (this.closed || !this.node.isCurrent(this.incarnation)) return;
    const w = this.#waiter;
    this.#onClose();
    this.#net.closeListener(this);
    w?.(null);
  }
}

/**
 * When a sender whose segments went unanswered since `sinceMs` next sends them again, at or after
 * `nowMs`: its retransmission timer doubles from RTO_MS_MIN up to RTO_MS_MAX, so after a long cut
 * a connection resumes only seconds after the network healed (a sender that sent nothing during
 * the cut has nothing to resend and resumes at once).
 */
export function nextRetransmission(sinceMs: number, nowMs: number): number {
  if (sinceMs < 0) return nowMs;
  let at = sinceMs;
  for (let rto = RTO_MS_MIN; at < nowMs; rto = Math.min(rto * 2, RTO_MS_MAX)) at += rto;
  return at;
}
