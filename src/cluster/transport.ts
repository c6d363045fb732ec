// Node-to-node message transport for Raft, on the cluster port it shares with gossip: one outbound
// connection per peer carries that peer's messages in order, batched into RAFT frames; a peer
// answers on its own outbound connection, never on ours. Loss is allowed (Raft retries), so every
// queue is bounded and a full one drops.
//
// The receiver acknowledges what arrives (an empty RAFT answer, at most every ACK_EVERY_MS, for any
// bytes read: a frame of megabytes on a slow link is acknowledged as it comes in), so a
// sender can tell a connection that carries nothing any more: a network cut drops packets without a
// reset, and after it heals TCP may wait many seconds for its next retransmission (its timer doubled
// through the cut) while every message queued behind is late. A connection whose writes have gone
// unacknowledged for ackSilenceMsMax is closed and dialed again.

import type { Addr, Conn, Env, Random } from "../io/types.ts";
import { writeAll } from "../io/util.ts";
import { MalformedError } from "../protocol/errors.ts";
import { GUARD_DONE } from "../io/errors.ts";
import {
  Flag,
  type Frame,
  FrameParser,
  HEADER_BYTES,
  PROTOCOL_VERSION,
  readFrame,
  writeHeader,
} from "../protocol/frame.ts";
import { decode, Op, type RaftRequest, SCHEMAS } from "../protocol/messages.ts";
import { Writer } from "../protocol/wire.ts";
import { isNodeId, utf8Bytes } from "./gossip/limits.ts";
import { ENTRY_DATA_BYTES_MAX } from "./raft/limits.ts";

/** Defaults of the optional `TransportOptions`. */
export const TRANSPORT_DEFAULTS = {
  queueMessagesMax: 4096,
  queueBytesMax: 16 * 1024 * 1024,
  connectTimeoutMs: 2_000,
  writeTimeoutMs: 10_000,
  reconnectBackoffMsMin: 50,
  reconnectBackoffMsMax: 500,
  ackSilenceMsMax: 1_500,
} as const;

/** A receiver acknowledges at most this often, ms (and always within it after a frame). */
export const ACK_EVERY_MS = 250;

/**
 * Largest data of one message, bytes: an AppendEntries always carries at least one entry, so the
 * largest entry plus room for the message around it. A bigger message is a programmer error.
 */
export const MESSAGE_BYTES_MAX = ENTRY_DATA_BYTES_MAX + 1024 * 1024;
/** Longest group name, in UTF-8 bytes. */
export const GROUP_BYTES_MAX = 255;
/** Largest RAFT frame payload: one largest message with the longest ids around it. */
export const RAFT_FRAME_PAYLOAD_BYTES_MAX = MESSAGE_BYTES_MAX + 64 * 1024;
/** A frame takes queued messages until it holds this many bytes (always at least one message). */
export const FRAME_BYTES_TARGET = 1024 * 1024;
/** Peers one transport sends to at most; messages to more are dropped. */
export const PEERS_MAX = 1024;
/** Inbound connections at most; a new one beyond it closes the least recently active. */
export const INBOUND_CONNS_MAX = 128;
/** Bytes taken from a connection per read. */
const READ_BYTES = 64 * 1024;
/** A backoff waits its length times a factor in [1 - this, 1 + this). */
const BACKOFF_JITTER = 0.2;

/** Options for a `Transport`. */
export interface TransportOptions {
  /** This node's id, sent with every frame: 1 to 64 characters of [A-Za-z0-9_-]. */
  nodeId: string;
  /**
   * Where node `nodeId` can be reached now (its cluster address, e.g. from gossip membership), or
   * null if it is unknown. Asked before every frame, so a changed address is followed.
   */
  resolve(nodeId: string): Addr | null;
  /** Messages queued for one peer at most; more are dropped. Default 4096. */
  queueMessagesMax?: number;
  /** Data bytes queued for one peer at most (one message always fits); more are dropped. 16 MiB. */
  queueBytesMax?: number;
  /** A connection attempt gives up after this long, ms. Default 2000. */
  connectTimeoutMs?: number;
  /** A frame not written within this long closes its connection (the peer stopped reading), ms. */
  writeTimeoutMs?: number;
  /** First wait before reconnecting to a peer after a failure, ms. Default 50. */
  reconnectBackoffMsMin?: number;
  /** The wait doubles with every failure up to this, ms. Default 2000. */
  reconnectBackoffMsMax?: number;
  /**
   * A connection whose frames have waited this long for the receiver's acknowledgement is taken
   * for dead (a cut network) and dialed again, ms. Several ACK_EVERY_MS. Default 1500.
   */
  ackSilenceMsMax?: number;
}

/** Counters of one transport, in messages unless named otherwise. */
export interface TransportStats {
  /** Messages written to a connection (the peer may still lose them). */
  sent: number;
  /** Messages received and handed to `onMessage`. */
  received: number;
  /** Messages dropped: over a queue bound or PEERS_MAX, lost with a failed write, or at close. */
  dropped: number;
  /** Outbound connections established. */
  connects: number;
  /** Inbound connections closed for a frame that did not parse or validate. */
  malformed: number;
  /** Outbound connections closed because the receiver stopped acknowledging (a cut network). */
  silentConns: number;
}

type Resolved = Required<Omit<TransportOptions, "resolve">>;

interface Envelope {
  group: string;
  groupBytes: number;
  data: Uint8Array;
}

/** The send side of one peer: its queue, its connection, and its backoff. */
interface Peer {
  readonly id: string;
  /** Queued messages from `head` on; compacted as it drains. */
  queue: Envelope[];
  head: number;
  /** Data bytes queued. */
  bytes: number;
  conn: Conn | null;
  addr: Addr | null;
  /** When `conn` was established (this node's monotonic clock). */
  connectedAtMs: number;
  /** When the oldest frame the receiver has not acknowledged yet was written; null: none. */
  unackedSinceMs: number | null;
  backoffMs: number;
  /** No connection attempt before this time. */
  retryAtMs: number;
  /**
   * Ends the wait for the next connection attempt, or abandons the attempt in progress, once the
   * peer connected to this node: the network between the two works again (null: neither runs).
   */
  heard: (() => void) | null;
  /** Wakes the peer's loop when it waits for messages. */
  wake: (() => void) | null;
}

/** One inbound connection. */
interface Inbound {
  readonly conn: Conn;
  /** The sender, once its first frame named it. */
  from: string | null;
  lastActiveMs: number;
  /** Closed here (replaced, evicted, or the transport closed): deliver nothing more from it. */
  closed: boolean;
}

/**
 * Carries Raft messages between nodes over the cluster port.
 *
 * @example
 * ```ts ignore
 * const transport = new Transport(env, {
 *   nodeId: gossip.id,
 *   resolve: (id) => {
 *     const m = gossip.member(id);
 *     return m === null ? null : { host: m.host, port: m.clusterPort };
 *   },
 * });
 * gossip.handle(Op.RAFT, (conn, first, parser) => transport.serve(conn, first, parser), {
 *   payloadBytesMax: RAFT_FRAME_PAYLOAD_BYTES_MAX,
 * });
 * transport.onMessage = (from, group, data) => groups.get(group)?.step(from, data);
 * transport.send("node-b", "meta", bytes);
 * ```
 */
export class Transport {
  /**
   * Called for every message received, in the order its sender sent it (per sender, messages
   * arrive as an in-order subsequence of what it sent). `data` is the message's own copy. An
   * exception thrown here is rethrown from a microtask: it is a bug.
   */
  onMessage: (from: string, group: string, data: Uint8Array) => void = () => {};
  readonly #env: Env;
  readonly #random: Random;
  readonly #opts: Resolved;
  readonly #resolve: (nodeId: string) => Addr | null;
  readonly #peers = new Map<string, Peer>();
  readonly #inbound = new Set<Inbound>();
  readonly #stop = new AbortController();
  readonly #counters: TransportStats = {
    sent: 0,
    received: 0,
    dropped: 0,
    connects: 0,
    malformed: 0,
    silentConns: 0,
  };
  #closed = false;

  /**
   * A transport that sends once `send` is called and receives on connections handed to `serve`.
   *
   * @param env The I/O seam every socket, clock read and random draw goes through.
   * @param opts Identity, address lookup, bounds and timeouts; see `TransportOptions`.
   * @throws RangeError for an invalid option.
   */
  constructor(env: Env, opts: TransportOptions) {
    this.#opts = resolveOptions(opts);
    if (typeof opts.resolve !== "function") {
      throw new RangeError("Invalid transport option resolve: must be a function");
    }
    this.#resolve = (nodeId) => opts.resolve(nodeId);
    this.#env = env;
    this.#random = env.random.fork(`transport-${opts.nodeId}`);
  }

  /** Counters since start. */
  get stats(): TransportStats {
    return { ...this.#counters };
  }

  /**
   * Queues a message for node `to`; never blocks. When `to`'s queue is full the message is
   * dropped and counted. Messages to one peer go out in order over one connection. The transport
   * owns `data` from now on: do not change it.
   *
   * @throws RangeError for `to` that is this node or not a node id, a group that is empty or over
   * GROUP_BYTES_MAX, or data over MESSAGE_BYTES_MAX.
   */
  send(to: string, group: string, data: Uint8Array): void {
    if (!isNodeId(to) || to === this.#opts.nodeId) {
      throw new RangeError(`Cannot send to ${JSON.stringify(to)}: not another node's id`);
    }
    const groupBytes = utf8Bytes(group);
    if (groupBytes === 0 || groupBytes > GROUP_BYTES_MAX) {
      throw new RangeError(`Cannot send to group ${JSON.stringify(group)}: 1 to 255 bytes`);
    }
    if (data.length > MESSAGE_BYTES_MAX) {
      throw new RangeError(
        `Cannot send a message of ${data.length} bytes: over the limit of ${MESSAGE_BYTES_MAX}`,
      );
    }
    if (this.#closed) {
      this.#counters.dropped++;
      return;
    }
    const peer = this.#peer(to);
    if (peer === null) {
      this.#counters.dropped++;
      return;
    }
    const queued = peer.queue.length - peer.head;
    if (
      queued >= this.#opts.queueMessagesMax ||
      (queued > 0 && peer.bytes + data.length > this.#opts.queueBytesMax)
    ) {
      this.#counters.dropped++;
      return;
    }
    peer.queue.push({ group, groupBytes, data });
    peer.bytes += data.length;
    const wake = peer.wake;
    peer.wake = null;
    wake?.();
  }

  /**
   * Serves an inbound connection whose first frame `first` was RAFT (the cluster listener's
   * dispatch calls it), reading on with `parser` until the connection ends. A malformed frame
   * closes this connection only. Never rejects.
   */
  async serve(conn: Conn, first: Frame, parser: FrameParser): Promise<void> {
    if (this.#closed) {
      conn.close();
      return;
    }
    const me: Inbound = { conn, from: null, lastActiveMs: this.#env.clock.now(), closed: false };
    if (this.#inbound.size >= INBOUND_CONNS_MAX) this.#evictIdlest();
    this.#inbound.add(me);
    const ack = this.#acker(me);
    try {
      const buf = new Uint8Array(READ_BYTES);
      for (
        let f: Frame | null = first;
        f !== null && !me.closed;
        f = await readFrame(conn, parser, buf, ack)
      ) {
        this.#receive(me, f);
        ack();
      }
    } catch (err) {
      if (err instanceof MalformedError) this.#counters.malformed++;
    } finally {
      me.closed = true;
      conn.close();
      this.#inbound.delete(me);
    }
  }

  /** Stops sending and receiving: closes every connection and drops queued messages. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    for (const peer of this.#peers.values()) {
      this.#counters.dropped += peer.queue.length - peer.head;
      peer.queue = [];
      peer.head = 0;
      peer.bytes = 0;
      peer.conn?.close();
      peer.heard?.();
      const wake = peer.wake;
      peer.wake = null;
      wake?.();
    }
    for (const inbound of this.#inbound) {
      inbound.closed = true;
      inbound.conn.close();
    }
  }

  /** Validates one frame whole, then delivers its messages. Throws MalformedError. */
  #receive(me: Inbound, f: Frame): void {
    if (f.opcode !== Op.RAFT || f.flags !== 0) {
      throw new MalformedError(
        `Expected RAFT, got opcode 0x${f.opcode.toString(16)} flags ${f.flags}`,
      );
    }
    const m = decode<RaftRequest>(SCHEMAS.RAFT.request, f.payload, "RAFT");
    if (!isNodeId(m.fromId) || m.fromId === this.#opts.nodeId) {
      throw new MalformedError(`RAFT from ${JSON.stringify(m.fromId)}: not another node's id`);
    }
    if (me.conn.peerNodeId !== undefined && m.fromId !== me.conn.peerNodeId) {
      throw new MalformedError(
        `RAFT from ${m.fromId} on a connection authenticated as ${me.conn.peerNodeId}`,
      );
    }
    if (me.from !== null && m.fromId !== me.from) {
      throw new MalformedError(`RAFT from ${m.fromId} on a connection from ${me.from}`);
    }
    for (const e of m.messages) {
      const groupBytes = utf8Bytes(e.group);
      if (groupBytes === 0 || groupBytes > GROUP_BYTES_MAX || e.data === null) {
        throw new MalformedError(`RAFT from ${m.fromId} holds a message without group or data`);
      }
    }
    if (me.from === null) {
      me.from = m.fromId;
      this.#heardFrom(m.fromId);
      // A sender keeps one connection; a newer one means it reconnected (or restarted), and what
      // the old one still carries would arrive out of order.
      for (const other of this.#inbound) {
        if (other !== me && other.from === m.fromId) this.#closeInbound(other);
      }
    }
    me.lastActiveMs = this.#env.clock.now();
    for (const e of m.messages) {
      this.#counters.received++;
      try {
        this.onMessage(m.fromId, e.group, (e.data as Uint8Array).slice());
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /**
   * Acknowledges what arrived on `me`: at once if the last acknowledgement is ACK_EVERY_MS old,
   * else once it is (one timer at a time), so every frame is acknowledged within ACK_EVERY_MS.
   */
  #acker(me: Inbound): () => void {
    let lastMs = -Infinity;
    let timer = false;
    let writing = Promise.resolve();
    const send = () => {
      lastMs = this.#env.clock.now();
      writing = writing.then(() => writeAll(me.conn, ACK_FRAME)).catch(() => {
        // The connection failed: its reader ends too.
      });
    };
    return () => {
      if (me.closed) return;
      const dueMs = lastMs + ACK_EVERY_MS - this.#env.clock.now();
      if (dueMs <= 0) return send();
      if (timer) return;
      timer = true;
      this.#env.clock.sleep(dueMs, this.#stop.signal).then(() => {
        timer = false;
        if (!me.closed) send();
      }, () => {});
    };
  }

  #closeInbound(inbound: Inbound): void {
    inbound.closed = true;
    inbound.conn.close();
  }

  #evictIdlest(): void {
    let idlest: Inbound | null = null;
    for (const c of this.#inbound) {
      if (idlest === null || c.lastActiveMs < idlest.lastActiveMs) idlest = c;
    }
    if (idlest !== null) {
      this.#closeInbound(idlest);
      this.#inbound.delete(idlest);
    }
  }

  /** The send side of `id`, created (and its loop started) on first use; null past PEERS_MAX. */
  #peer(id: string): Peer | null {
    const known = this.#peers.get(id);
    if (known !== undefined) return known;
    if (this.#peers.size >= PEERS_MAX) return null;
    const peer: Peer = {
      id,
      queue: [],
      head: 0,
      bytes: 0,
      conn: null,
      addr: null,
      connectedAtMs: 0,
      unackedSinceMs: null,
      backoffMs: this.#opts.reconnectBackoffMsMin,
      retryAtMs: 0,
      heard: null,
      wake: null,
    };
    this.#peers.set(id, peer);
    void this.#run(peer);
    return peer;
  }

  /** The peer's sender: waits for messages, (re)connects, and writes frames, until close. */
  async #run(peer: Peer): Promise<void> {
    while (!this.#closed) {
      if (peer.queue.length - peer.head === 0) {
        await new Promise<void>((resolve) => (peer.wake = resolve));
        continue;
      }
      const addr = this.#resolve(peer.id);
      if (peer.conn !== null && (addr === null || !sameAddr(addr, peer.addr as Addr))) {
        // The peer moved (or was forgotten): its old address may now be someone else.
        this.#disconnect(peer, peer.conn);
      }
      if (peer.conn === null) {
        if (!(await this.#waitRetry(peer))) return;
        if (addr === null) {
          this.#failed(peer);
          continue;
        }
        if (!(await this.#connect(peer, addr))) continue;
      }
      // The watcher may already have seen the new connection end.
      const conn = peer.conn as Conn | null;
      if (conn === null) continue;
      const n = this.#batchLength(peer);
      const frame = this.#encode(peer, n);
      if (!(await this.#write(conn, frame))) {
        this.#counters.dropped += n;
        this.#disconnect(peer, conn);
        continue;
      }
      this.#counters.sent += n;
      peer.unackedSinceMs ??= this.#env.clock.now();
    }
  }

  /**
   * Waits until the peer's next connection attempt is due, or until the peer is heard from;
   * false if the transport closed.
   */
  async #waitRetry(peer: Peer): Promise<boolean> {
    const waitMs = peer.retryAtMs - this.#env.clock.now();
    if (waitMs > 0 && !this.#closed) {
      const wait = new AbortController();
      peer.heard = () => wait.abort(GUARD_DONE);
      try {
        await this.#env.clock.sleep(waitMs, wait.signal);
      } catch {
        // Heard from the peer, or closed (close() ends every wait).
      } finally {
        peer.heard = null;
      }
    }
    return !this.#closed;
  }

  /**
   * The peer connected to this node. If this node's own connection to it is down, the cut that
   * downed it has healed: connect now rather than after the backoff, and abandon an attempt whose
   * SYN went into the cut (the kernel would send it again only up to a second later). After a long
   * cut each side's backoff ran long, and a vote needs both directions.
   */
  #heardFrom(id: string): void {
    const peer = this.#peers.get(id);
    if (peer === undefined || peer.conn !== null) return;
    peer.backoffMs = this.#opts.reconnectBackoffMsMin;
    peer.retryAtMs = 0;
    peer.heard?.();
  }

  /** Schedules the next attempt after a backoff, and doubles the backoff. */
  #failed(peer: Peer): void {
    const jitter = 1 - BACKOFF_JITTER + 2 * BACKOFF_JITTER * this.#random.float();
    peer.retryAtMs = this.#env.clock.now() + peer.backoffMs * jitter;
    peer.backoffMs = Math.min(this.#opts.reconnectBackoffMsMax, peer.backoffMs * 2);
  }

  async #connect(peer: Peer, addr: Addr): Promise<boolean> {
    let conn: Conn | null;
    const attempt = this.#env.net.connect(addr, { timeoutMs: this.#opts.connectTimeoutMs });
    try {
      conn = await Promise.race([
        attempt,
        new Promise<null>((resolve) => (peer.heard = () => resolve(null))),
      ]);
    } catch {
      this.#failed(peer);
      return false;
    } finally {
      peer.heard = null;
    }
    if (conn === null) {
      // Heard from the peer while this attempt waited: a new one goes out at once.
      attempt.then((late) => late.close(), () => {});
      return false;
    }
    if (this.#closed) {
      conn.close();
      return false;
    }
    if (conn.peerNodeId !== undefined && conn.peerNodeId !== peer.id) {
      // The address now belongs to another node (gossip has not caught up): not peer's messages.
      conn.close();
      this.#failed(peer);
      return false;
    }
    peer.conn = conn;
    peer.addr = addr;
    peer.connectedAtMs = this.#env.clock.now();
    peer.unackedSinceMs = null;
    this.#counters.connects++;
    void this.#watch(peer, conn);
    void this.#watchAcks(peer, conn);
    return true;
  }

  /**
   * Reads the outbound connection for the receiver's acknowledgements (empty RAFT answers) until it
   * ends: end of stream, a reset, or anything else (an error frame from a node that does not speak
   * RAFT) closes it.
   */
  async #watch(peer: Peer, conn: Conn): Promise<void> {
    const parser = new FrameParser({ payloadBytesMax: 0 });
    const buf = new Uint8Array(256);
    try {
      for (let f = await readFrame(conn, parser, buf); f !== null;) {
        if (f.opcode !== Op.RAFT || f.flags !== Flag.RESPONSE || f.payload.length !== 0) break;
        if (peer.conn === conn) peer.unackedSinceMs = null;
        f = await readFrame(conn, parser, buf);
      }
    } catch {
      // Reset, closed, or not an acknowledgement: the same outcome.
    }
    this.#disconnect(peer, conn);
  }

  /** Closes the connection once a frame has waited ackSilenceMsMax for its acknowledgement. */
  async #watchAcks(peer: Peer, conn: Conn): Promise<void> {
    const checkMs = Math.max(1, Math.floor(this.#opts.ackSilenceMsMax / 4));
    while (peer.conn === conn && !this.#closed) {
      try {
        await this.#env.clock.sleep(checkMs, this.#stop.signal);
      } catch {
        return;
      }
      const since = peer.unackedSinceMs;
      if (peer.conn !== conn || since === null) continue;
      if (this.#env.clock.now() - since > this.#opts.ackSilenceMsMax) {
        this.#counters.silentConns++;
        this.#disconnect(peer, conn);
      }
    }
  }

  /** Closes `conn`; if it is the peer's current connection, schedules the reconnect. */
  #disconnect(peer: Peer, conn: Conn): void {
    conn.close();
    if (peer.conn !== conn) return;
    peer.conn = null;
    // A connection that lasted resets the backoff; one that failed fast grows it.
    const upMs = this.#env.clock.now() - peer.connectedAtMs;
    if (upMs >= this.#opts.reconnectBackoffMsMax) peer.backoffMs = this.#opts.reconnectBackoffMsMin;
    this.#failed(peer);
  }

  /** Writes a whole frame; false if the connection failed or the write timed out. */
  async #write(conn: Conn, frame: Uint8Array): Promise<boolean> {
    const guard = new AbortController();
    this.#env.clock.sleep(this.#opts.writeTimeoutMs, guard.signal).then(
      () => conn.close(),
      () => {},
    );
    try {
      await writeAll(conn, frame);
      return true;
    } catch {
      return false;
    } finally {
      guard.abort(GUARD_DONE);
    }
  }

  /** How many queued messages the next frame takes: up to FRAME_BYTES_TARGET, at least one. */
  #batchLength(peer: Peer): number {
    let n = 0;
    let bytes = 0;
    for (let i = peer.head; i < peer.queue.length; i++) {
      const e = peer.queue[i] as Envelope;
      if (n > 0 && bytes + e.data.length > FRAME_BYTES_TARGET) break;
      bytes += e.data.length;
      n++;
    }
    return n;
  }

  /** Removes the first `n` queued messages and encodes them as one RAFT frame. */
  #encode(peer: Peer, n: number): Uint8Array {
    const from = this.#opts.nodeId;
    let size = HEADER_BYTES + 2 + utf8Bytes(from) + 4;
    for (let i = peer.head; i < peer.head + n; i++) {
      const e = peer.queue[i] as Envelope;
      size += 2 + e.groupBytes + 4 + e.data.length;
    }
    const w = new Writer(size);
    w.raw(new Uint8Array(HEADER_BYTES)).string(from).u32(n);
    for (let i = peer.head; i < peer.head + n; i++) {
      const e = peer.queue[i] as Envelope;
      w.string(e.group).bytes(e.data);
      peer.bytes -= e.data.length;
    }
    peer.head += n;
    if (peer.head === peer.queue.length) {
      peer.queue = [];
      peer.head = 0;
    } else if (peer.head >= peer.queue.length / 2) {
      peer.queue = peer.queue.slice(peer.head);
      peer.head = 0;
    }
    const frame = w.finish();
    if (frame.length !== size) {
      throw new Error(`RAFT frame encoded to ${frame.length} bytes, expected ${size}`);
    }
    writeHeader(frame, {
      version: PROTOCOL_VERSION,
      flags: 0,
      opcode: Op.RAFT,
      correlationId: 0,
      payloadLength: size - HEADER_BYTES,
    });
    return frame;
  }
}

/** A receiver's acknowledgement: an empty RAFT answer. */
const ACK_FRAME = (() => {
  const f = new Uint8Array(HEADER_BYTES);
  writeHeader(f, {
    version: PROTOCOL_VERSION,
    flags: Flag.RESPONSE,
    opcode: Op.RAFT,
    correlationId: 0,
    payloadLength: 0,
  });
  return f;
})();

function sameAddr(a: Addr, b: Addr): boolean {
  return a.host === b.host && a.port === b.port;
}

function resolveOptions(opts: TransportOptions): Resolved {
  const { resolve: _, ...rest } = opts;
  const o = { ...TRANSPORT_DEFAULTS, ...withoutUndefined(rest) } as Resolved;
  const bad = (what: string): never => {
    throw new RangeError(`Invalid transport option ${what}`);
  };
  if (!isNodeId(o.nodeId)) bad(`nodeId ${JSON.stringify(o.nodeId)}: not 1 to 64 of [A-Za-z0-9_-]`);
  for (
    const name of [
      "queueMessagesMax",
      "queueBytesMax",
      "connectTimeoutMs",
      "writeTimeoutMs",
      "reconnectBackoffMsMin",
      "reconnectBackoffMsMax",
      "ackSilenceMsMax",
    ] as const
  ) {
    const v = o[name];
    if (!(Number.isInteger(v) && v > 0)) bad(`${name} ${v}: must be an integer > 0`);
  }
  if (o.reconnectBackoffMsMax < o.reconnectBackoffMsMin) {
    bad(
      `reconnectBackoffMsMax ${o.reconnectBackoffMsMax}: below reconnectBackoffMsMin ${o.reconnectBackoffMsMin}`,
    );
  }
  return o;
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
