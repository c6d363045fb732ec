// The simulated network: TCP-like byte streams between simulated nodes, with latency, chunk
// splitting and merging, short writes, flow control, resets, and symmetric or one-way partitions
// that hold traffic until they heal.

import type { Addr, Conn, ConnectOptions, Listener, Network } from "../src/io/types.ts";
import {
  AddressInUse,
  BrokenPipe,
  Closed,
  ConnectionRefused,
  ConnectionReset,
  TimedOut,
} from "../src/io/errors.ts";
import type { SeededRandom } from "../src/io/prng.ts";
import type { World } from "./world.ts";
import type { SimNode } from "./node.ts";

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
/** Segments a single write may be cut into. */
const SPLIT_SEGMENTS_MAX = 4;
/** First port handed out for port 0 and for the local side of connections. */
const EPHEMERAL_PORT_MIN = 40_000;

const TAG_DELIVER = 10;
const TAG_CONNECT = 11;
const TAG_WAKE = 12;
const TAG_RESET = 13;

interface Segment {
  bytes: Uint8Array | null; // null = FIN
  at: number;
}

type Waiter<T> = { resolve: (v: T) => void; reject: (e: unknown) => void };

/** One direction of a connection: what `from` wrote, on its way to and waiting at `to`. */
class Pipe {
  readonly from: SimNode;
  readonly to: SimNode;
  readonly inflight: Segment[] = [];
  inflightBytes = 0;
  readonly unread: Uint8Array[] = [];
  unreadBytes = 0;
  lastAt = 0;
  scheduled = false;
  held = false;
  finDelivered = false;
  /** The receiver closed its end: arriving bytes are discarded. */
  readerClosed = false;
  /** The sender learnt that the receiver is gone: further writes fail. */
  broken = false;
  reset = false;
  reader: Waiter<number | null> & { buf: Uint8Array } | null = null;
  writer: { bytes: Uint8Array } & Waiter<number> | null = null;

  constructor(from: SimNode, to: SimNode) {
    this.from = from;
    this.to = to;
  }

  get space(): number {
    return PIPE_BYTES_MAX - this.inflightBytes - this.unreadBytes;
  }
}

/** The shared fabric all simulated nodes' networks plug into. */
export class SimNetwork {
  readonly faults: NetFaults;
  readonly #world: World;
  readonly #random: SeededRandom;
  readonly #listeners = new Map<string, SimListener>();
  readonly #blocked = new Set<string>();
  readonly #held = new Set<Pipe>();
  readonly #conns = new Set<SimConn>();
  readonly #nextPort = new Map<string, number>();
  /** Counters for reports and "sometimes" checks. */
  readonly stats = { connects: 0, refused: 0, resets: 0, segments: 0, heldSegments: 0 };

  constructor(world: World, random: SeededRandom, faults: NetFaults) {
    this.#world = world;
    this.#random = random;
    this.faults = faults;
  }

  /** The Network a node's code sees. */
  viewFor(node: SimNode): Network {
    return {
      listen: (addr) => this.#listen(node, addr),
      connect: (addr, opts) => this.#connect(node, addr, opts),
      resolve: (name) => Promise.resolve([name]),
    };
  }

  /** Stops traffic from host `from` to host `to` (one way). Held bytes wait for `heal`. */
  block(from: string, to: string): void {
    this.#blocked.add(`${from}>${to}`);
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
    for (const pipe of this.#held) {
      pipe.held = false;
      this.#scheduleDelivery(pipe);
    }
    this.#held.clear();
  }

  /** True if traffic from `from` to `to` is blocked. */
  isBlocked(from: string, to: string): boolean {
    return this.#blocked.has(`${from}>${to}`);
  }

  /** Open connection ends, for the nemesis to pick one to reset. */
  openConns(): SimConn[] {
    return [...this.#conns];
  }

  /** Resets a connection: both ends fail their pending and later reads and writes. */
  resetConn(conn: SimConn): void {
    this.stats.resets++;
    this.#world.schedule(0, () => this.#resetEnd(conn), { owner: conn.node, tag: TAG_RESET });
    const peer = conn.peer;
    if (peer !== null) {
      this.#world.schedule(this.#delay(), () => this.#resetEnd(peer), {
        owner: peer.node,
        tag: TAG_RESET,
      });
    }
  }

  /**
   * A node died. Its listeners vanish and its code's pending reads and writes are abandoned (never
   * settled). After a process crash the kernel closes its sockets: peers see end of stream, or a
   * reset where unread bytes were thrown away. After a power loss peers see a reset, a network
   * delay later (as the first packet to the rebooted host would bring).
   */
  crashNode(node: SimNode, kind: "power" | "process"): void {
    for (const [key, l] of this.#listeners) {
      if (l.node === node) {
        this.#listeners.delete(key);
        l.closed = true;
      }
    }
    for (const conn of [...this.#conns]) {
      if (conn.node !== node) continue;
      conn.inbound.reader = null;
      conn.outbound.writer = null;
      if (kind === "process" && conn.inbound.unreadBytes === 0) {
        conn.close();
        continue;
      }
      this.#conns.delete(conn);
      conn.closed = true;
      const peer = conn.peer;
      if (peer !== null && peer.node !== node) {
        this.#world.schedule(this.#delay(), () => this.#resetEnd(peer), {
          owner: peer.node,
          tag: TAG_RESET,
        });
      }
    }
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

  #listen(node: SimNode, addr: Addr): Promise<Listener> {
    const host = addr.host === "0.0.0.0" || addr.host === "127.0.0.1" ? node.host : addr.host;
    if (host !== node.host) {
      return Promise.reject(new AddressInUse(`Cannot listen on ${host}: not this node's address`));
    }
    let port = addr.port;
    if (port === 0) {
      do port = this.#port(host); while (this.#listeners.has(`${host}:${port}`));
    }
    const key = `${host}:${port}`;
    if (this.#listeners.has(key)) {
      return Promise.reject(new AddressInUse(`Cannot listen on ${key}: address in use`));
    }
    const l = new SimListener(node, { host, port }, () => this.#listeners.delete(key));
    this.#listeners.set(key, l);
    return Promise.resolve(l);
  }

  #connect(node: SimNode, addr: Addr, opts?: ConnectOptions): Promise<Conn> {
    const host = addr.host === "127.0.0.1" || addr.host === "localhost" ? node.host : addr.host;
    const key = `${host}:${addr.port}`;
    const timeoutMs = opts?.timeoutMs ?? 5000;
    this.stats.connects++;
    return new Promise((resolve, reject) => {
      const cut = this.isBlocked(node.host, host) || this.isBlocked(host, node.host);
      if (cut) {
        // The SYN is lost; the caller hears nothing until its timeout.
        this.#world.schedule(timeoutMs, () => {
          reject(new TimedOut(`Cannot connect to ${key}: timed out after ${timeoutMs} ms`));
        }, { owner: node, tag: TAG_CONNECT });
        return;
      }
      const rtt = this.#delay() + this.#delay();
      this.#world.schedule(rtt, () => {
        const l = this.#listeners.get(key);
        if (l === undefined || l.closed || l.backlog.length >= ACCEPT_BACKLOG_MAX) {
          this.stats.refused++;
          reject(new ConnectionRefused(`Cannot connect to ${key}: connection refused`));
          return;
        }
        const local = { host: node.host, port: this.#port(node.host) };
        const out = new Pipe(node, l.node);
        const back = new Pipe(l.node, node);
        const mine = new SimConn(this, node, local, l.addr, out, back);
        const theirs = new SimConn(this, l.node, l.addr, local, back, out);
        mine.peer = theirs;
        theirs.peer = mine;
        this.#conns.add(mine);
        this.#conns.add(theirs);
        // The server side appears in its accept queue at once; hand it over in its own event.
        this.#world.schedule(0, () => l.offer(theirs), { owner: l.node, tag: TAG_CONNECT });
        resolve(mine);
      }, { owner: node, tag: TAG_CONNECT });
    });
  }

  /** Called by a SimConn write: queues bytes on `pipe`, maybe split into several segments. */
  send(pipe: Pipe, bytes: Uint8Array | null): void {
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
    for (const part of parts) {
      const at = Math.max(pipe.lastAt, now + this.#delay());
      pipe.lastAt = at;
      pipe.inflight.push({ bytes: part, at });
      if (part !== null) pipe.inflightBytes += part.length;
      this.stats.segments++;
    }
    if (!pipe.scheduled && !pipe.held) this.#scheduleDelivery(pipe);
  }

  #scheduleDelivery(pipe: Pipe): void {
    const head = pipe.inflight[0];
    if (head === undefined || pipe.reset) return;
    pipe.scheduled = true;
    this.#world.schedule(head.at - this.#world.now, () => this.#deliver(pipe), {
      owner: pipe.to,
      tag: TAG_DELIVER,
    });
  }

  #deliver(pipe: Pipe): void {
    pipe.scheduled = false;
    if (pipe.reset) return;
    if (this.isBlocked(pipe.from.host, pipe.to.host)) {
      pipe.held = true;
      this.#held.add(pipe);
      this.stats.heldSegments += pipe.inflight.length;
      return;
    }
    const now = this.#world.now;
    while (pipe.inflight.length > 0 && (pipe.inflight[0] as Segment).at <= now) {
      const seg = pipe.inflight.shift() as Segment;
      if (seg.bytes === null) {
        pipe.finDelivered = true;
        continue;
      }
      pipe.inflightBytes -= seg.bytes.length;
      if (pipe.readerClosed) continue;
      pipe.unread.push(seg.bytes);
      pipe.unreadBytes += seg.bytes.length;
    }
    this.#serveReader(pipe);
    if (pipe.inflight.length > 0) this.#scheduleDelivery(pipe);
  }

  /** The receiver closed; after a network delay the sender learns it and its writes fail. */
  #breakFor(pipe: Pipe): void {
    pipe.broken = true;
    this.#world.schedule(this.#delay(), () => this.#wakeWriter(pipe), {
      owner: pipe.from,
      tag: TAG_WAKE,
    });
  }

  /** Hands buffered bytes to a waiting reader, if any. Runs on the reader's node. */
  #serveReader(pipe: Pipe): void {
    const r = pipe.reader;
    if (r === null) return;
    if (pipe.unreadBytes > 0) {
      pipe.reader = null;
      r.resolve(this.take(pipe, r.buf));
    } else if (pipe.finDelivered && pipe.inflight.length === 0) {
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
      this.#world.schedule(0, () => this.#wakeWriter(pipe), { owner: pipe.from, tag: TAG_WAKE });
    }
    return n;
  }

  /** Retries a writer blocked on a full window. Runs on the writer's node. */
  #wakeWriter(pipe: Pipe): void {
    const w = pipe.writer;
    if (w === null) return;
    if (pipe.reset) {
      pipe.writer = null;
      w.reject(new ConnectionReset("Cannot write: connection reset by peer"));
    } else if (pipe.broken) {
      pipe.writer = null;
      w.reject(new BrokenPipe("Cannot write: the peer closed the connection"));
    } else if (pipe.space > 0) {
      pipe.writer = null;
      w.resolve(this.accept(pipe, w.bytes));
    }
  }

  /** Takes as much of `bytes` as the window allows (maybe less), copies and sends it. */
  accept(pipe: Pipe, bytes: Uint8Array): number {
    let n = Math.min(bytes.length, pipe.space);
    if (n > 1 && this.#random.chance(this.faults.shortWriteProb)) n = this.#random.int(1, n);
    this.send(pipe, bytes.slice(0, n));
    return n;
  }

  #resetEnd(conn: SimConn): void {
    this.#conns.delete(conn);
    for (const pipe of [conn.inbound, conn.outbound]) {
      pipe.reset = true;
      pipe.inflight.length = 0;
      pipe.inflightBytes = 0;
      pipe.unread.length = 0;
      pipe.unreadBytes = 0;
      this.#held.delete(pipe);
    }
    const r = conn.inbound.reader;
    if (r !== null) {
      conn.inbound.reader = null;
      if (conn.closed) r.resolve(null);
      else r.reject(new ConnectionReset("Cannot read: connection reset by peer"));
    }
    const w = conn.outbound.writer;
    if (w !== null) {
      conn.outbound.writer = null;
      w.reject(new ConnectionReset("Cannot write: connection reset by peer"));
    }
  }

  /** Local close: FIN goes out after the written bytes; incoming bytes are dropped from now on. */
  closeEnd(conn: SimConn): void {
    this.#conns.delete(conn);
    const out = conn.outbound;
    if (!out.reset) this.send(out, null);
    const inbound = conn.inbound;
    inbound.readerClosed = true;
    inbound.unread.length = 0;
    inbound.unreadBytes = 0;
    const r = inbound.reader;
    if (r !== null) {
      inbound.reader = null;
      r.resolve(null);
    }
    const w = out.writer;
    if (w !== null) {
      out.writer = null;
      w.reject(new BrokenPipe("Cannot write: the connection was closed locally"));
    }
    if (!inbound.broken && !inbound.reset) this.#breakFor(inbound);
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

/** One end of a simulated connection. */
export class SimConn implements Conn {
  readonly node: SimNode;
  readonly local: Addr;
  readonly remote: Addr;
  readonly outbound: Pipe;
  readonly inbound: Pipe;
  peer: SimConn | null = null;
  closed = false;
  readonly #net: SimNetwork;

  constructor(net: SimNetwork, node: SimNode, local: Addr, remote: Addr, out: Pipe, back: Pipe) {
    this.#net = net;
    this.node = node;
    this.local = local;
    this.remote = remote;
    this.outbound = out;
    this.inbound = back;
  }

  read(buf: Uint8Array): Promise<number | null> {
    const pipe = this.inbound;
    if (this.closed) return Promise.resolve(null);
    if (pipe.reset) return Promise.reject(new ConnectionReset("Cannot read: connection reset"));
    if (buf.length === 0) return Promise.resolve(0);
    if (pipe.unreadBytes > 0) return Promise.resolve(this.#net.take(pipe, buf));
    if (pipe.finDelivered && pipe.inflight.length === 0) return Promise.resolve(null);
    return this.#net.waitRead(pipe, buf);
  }

  write(bytes: Uint8Array): Promise<number> {
    const pipe = this.outbound;
    if (this.closed) return Promise.reject(new Closed("Cannot write: connection closed"));
    if (pipe.reset) return Promise.reject(new ConnectionReset("Cannot write: connection reset"));
    if (pipe.broken) {
      return Promise.reject(new BrokenPipe("Cannot write: the peer closed the connection"));
    }
    if (bytes.length === 0) return Promise.resolve(0);
    if (pipe.space > 0) return Promise.resolve(this.#net.accept(pipe, bytes));
    return this.#net.waitWrite(pipe, bytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#net.closeEnd(this);
  }
}

/** A simulated server socket. */
export class SimListener implements Listener {
  readonly node: SimNode;
  readonly addr: Addr;
  readonly backlog: SimConn[] = [];
  closed = false;
  #waiter: ((c: Conn | null) => void) | null = null;
  readonly #onClose: () => void;

  constructor(node: SimNode, addr: Addr, onClose: () => void) {
    this.node = node;
    this.addr = addr;
    this.#onClose = onClose;
  }

  /** A new connection arrives (called on the listener's node). */
  offer(conn: SimConn): void {
    if (this.closed) {
      conn.close();
      return;
    }
    const w = this.#waiter;
    if (w !== null) {
      this.#waiter = null;
      w(conn);
    } else {
      this.backlog.push(conn);
    }
  }

  accept(): Promise<Conn | null> {
    if (this.closed) return Promise.resolve(null);
    const c = this.backlog.shift();
    if (c !== undefined) return Promise.resolve(c);
    if (this.#waiter !== null) {
      return Promise.reject(new Error("Listener.accept called while another accept is pending"));
    }
    return new Promise((resolve) => (this.#waiter = resolve));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#onClose();
    for (const c of this.backlog.splice(0)) c.close();
    const w = this.#waiter;
    this.#waiter = null;
    w?.(null);
  }
}
