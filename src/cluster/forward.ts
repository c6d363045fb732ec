// Frame-level forwarding between the nodes of a cluster. A node that gets a request it does not
// lead (a produce for a partition led elsewhere, a metadata change, a group request) sends the
// client's request frame, as it arrived (opcode and payload), in a FORWARD envelope over one
// connection per peer on the cluster port, and relays the answer frame the peer sends back. The
// request is neither decoded into the client SDK nor encoded again; the client's ACLs were checked
// where it is connected. The envelope marks the request as forwarded: its receiver serves it or
// answers NOT_LEADER, never forwards it again, so a stale view costs one retry, not a loop.

import { GUARD_DONE } from "../io/errors.ts";
import type { Addr, Conn, Env } from "../io/types.ts";
import { writeAllOf } from "../io/util.ts";
import { ErrorCode, GregorError, MalformedError } from "../protocol/errors.ts";
import {
  Flag,
  type Frame,
  FrameParser,
  HEADER_BYTES,
  MAGIC,
  PROTOCOL_VERSION,
  readFrame,
  writeHeader,
} from "../protocol/frame.ts";
import { opName } from "../protocol/messages.ts";
import { Reader, Writer } from "../protocol/wire.ts";
import { isNodeId } from "./gossip/limits.ts";
import type { ForwardedRequest } from "../broker/control_plane.ts";

/**
 * FORWARD, node to node on the cluster port only (the 0x06 band): a request forwarded to the node
 * that serves it. The client port does not know it, so no client can pass a request off as one a
 * node already authorized.
 */
export const FORWARD_OPCODE = 0x0606;

/** Defaults of the optional `ForwarderOptions`. */
export const FORWARDER_DEFAULTS = {
  inFlightMax: 1024,
  inFlightBytesMax: 64 * 1024 * 1024,
  waitingMax: 4096,
  requestTimeoutMs: 10_000,
  connectTimeoutMs: 500,
  silenceMsMax: 1_000,
  keepaliveMs: 250,
} as const;

/** Bytes of a FORWARD request envelope besides its strings and the forwarded payload. */
const ENVELOPE_FIXED_BYTES = 3 * 2 + 2 + 4;
/** Longest string of an envelope (a node id, client id or principal), bytes. */
const ENVELOPE_STRING_BYTES_MAX = 0xffff;
/** Largest answer frame a peer may relay, bytes (answers of forwarded requests are small). */
const ANSWER_BYTES_MAX = 64 * 1024 * 1024;
/** Bytes taken from a connection per read. */
const READ_BYTES = 64 * 1024;
/** Forwarded requests one inbound connection runs at once; past it, that connection is not read. */
const SERVE_IN_FLIGHT_MAX = FORWARDER_DEFAULTS.inFlightMax;

/**
 * Runs a forwarded request on the node that received it and returns its answer as a whole frame
 * (with correlation id 0), or null if the request has no answer (a one-way request that worked).
 * Never forwards it again.
 */
export type ServeForwarded = (req: ForwardedRequest) => Promise<Uint8Array | null>;

/** Options for a `Forwarder`. */
export interface ForwarderOptions {
  /** This node's id, sent in every envelope. */
  nodeId: string;
  /** Where node `nodeId`'s cluster port is now, or null if it is not a known member. */
  resolve(nodeId: string): Addr | null;
  /** Runs the requests peers forward here. Without it, their connections are closed. */
  serve?: ServeForwarded;
  /** Requests waiting for their answer from one peer at most; more wait for a slot. 1024. */
  inFlightMax?: number;
  /** Request payload bytes waiting for their answers from one peer at most. 64 MiB. */
  inFlightBytesMax?: number;
  /** Requests waiting for a slot for one peer at most; more are refused at once. 4096. */
  waitingMax?: number;
  /** How long a forwarded request may take, slot wait included, ms. 10,000. */
  requestTimeoutMs?: number;
  /**
   * How long connecting to a peer may take, ms; past it the request is NOT_LEADER. The peer's
   * kernel answers a SYN in a round trip however busy the broker is, so a connect still pending
   * after this long lost its SYN to a cut network (the kernel would send it again only after a
   * second): the client asks again, by then likely of a new leader. 500.
   */
  connectTimeoutMs?: number;
  /**
   * How long a connection with requests waiting may stay silent, ms, before it counts as lost
   * (they fail as TIMEOUT): a peer cut off by the network answers nothing, not even an error, and
   * its TCP connection looks open for minutes. 1000.
   */
  silenceMsMax?: number;
  /**
   * How often this node, while serving forwarded requests on a connection, tells the sender it is
   * still there (an empty answer with correlation id 0), ms. Well under the sender's silenceMsMax.
   * 250.
   */
  keepaliveMs?: number;
}

/** Counters of one forwarder. */
export interface ForwarderStats {
  /** Requests sent to a peer. */
  forwarded: number;
  /** Requests that failed: peer unknown, unreachable, gone, too slow, or too busy. */
  failed: number;
  /** Forwarded requests this node served for its peers. */
  served: number;
  /** Connections to peers established. */
  connects: number;
}

type Resolved = Required<Omit<ForwarderOptions, "resolve" | "serve">>;

/** A request sent to a peer, waiting for its answer. */
interface Pending {
  bytes: number;
  what: string;
  resolve(frame: Uint8Array | null): void;
  reject(err: GregorError): void;
}

/** One peer: its connection (while it lasts), what waits on it, and what waits for a slot. */
interface Peer {
  readonly id: string;
  /** The connection, or the attempt to open it; null once it is lost. */
  link: Promise<Link> | null;
  /** The connection once open, until it is lost. */
  open: Link | null;
  readonly inFlight: Map<number, Pending>;
  /** Requests holding a slot (sent, or about to be), and their payload bytes. */
  slots: number;
  bytes: number;
  /** Requests waiting for room in flight, first come first served. */
  readonly waiting: { wake(): void }[];
  nextCorrelationId: number;
}

/** An open connection to a peer, and its write chain. */
interface Link {
  readonly conn: Conn;
  writing: Promise<void>;
  closed: boolean;
  /** When a frame last came from the peer, or a request was sent while none waited, ms. */
  heardMs: number;
}

/**
 * Sends requests this node does not serve to the nodes that do, and serves the ones they send.
 *
 * @example
 * ```ts ignore
 * const forwarder = new Forwarder(env, {
 *   nodeId,
 *   resolve: (id) => clusterAddrOf(id),
 *   serve: (req) => serveForwarded(broker, req),
 * });
 * gossip.handle(FORWARD_OPCODE, (conn, first, parser) => forwarder.serve(conn, first, parser), {
 *   payloadBytesMax: forwardPayloadBytesMax(payloadBytesMax),
 * });
 * const answer = await forwarder.forward("node-b", { opcode, payload, clientId, principal: "" });
 * ```
 */
export class Forwarder {
  readonly #env: Env;
  readonly #o: Resolved;
  readonly #resolve: (nodeId: string) => Addr | null;
  readonly #serve: ServeForwarded | null;
  readonly #peers = new Map<string, Peer>();
  readonly #inbound = new Set<Conn>();
  readonly #stop = new AbortController();
  readonly #stats: ForwarderStats = { forwarded: 0, failed: 0, served: 0, connects: 0 };

  /**
   * @param env The I/O seam every socket and timer goes through (the cluster's, with its TLS).
   * @param opts Identity, peer lookup, bounds and timeouts; see `ForwarderOptions`.
   * @throws RangeError for an invalid option.
   */
  constructor(env: Env, opts: ForwarderOptions) {
    const { resolve, serve, ...rest } = opts;
    const o = { ...FORWARDER_DEFAULTS } as Resolved;
    for (const [k, v] of Object.entries(rest)) {
      if (v !== undefined) (o as unknown as Record<string, unknown>)[k] = v;
    }
    if (!isNodeId(o.nodeId)) {
      throw new RangeError(`Invalid forwarder option nodeId ${JSON.stringify(o.nodeId)}`);
    }
    for (const k of Object.keys(FORWARDER_DEFAULTS) as (keyof typeof FORWARDER_DEFAULTS)[]) {
      if (!Number.isSafeInteger(o[k]) || o[k] < 1) {
        throw new RangeError(`Invalid forwarder option ${k} ${o[k]}: must be an integer >= 1`);
      }
    }
    this.#env = env;
    this.#o = o;
    this.#resolve = resolve;
    this.#serve = serve ?? null;
  }

  /** Counters since start. */
  get stats(): ForwarderStats {
    return { ...this.#stats };
  }

  /**
   * Sends `req` to node `to` and resolves with its answer frame (correlation id 0; the caller sets
   * its own), or null if the request has no answer.
   *
   * @throws {GregorError} NOT_LEADER if `to` is not a known member or cannot be reached (nothing
   * was sent: the client may ask another node); TIMEOUT if the connection was lost or the answer
   * did not come in time (the outcome is unknown); LIMIT_EXCEEDED if waitingMax requests already
   * wait for `to`.
   */
  async forward(to: string, req: ForwardedRequest): Promise<Uint8Array | null> {
    const what = `${opLabel(req.opcode)} to ${to}`;
    const deadline = this.#env.clock.now() + this.#o.requestTimeoutMs;
    try {
      if (this.#stop.signal.aborted) {
        throw new GregorError(ErrorCode.NOT_LEADER, `Cannot forward ${what}: this node is closing`);
      }
      const peer = this.#peer(to);
      await this.#slot(peer, req.payload.length, what, deadline);
      let link: Link;
      try {
        link = await this.#link(peer);
      } catch (err) {
        this.#release(peer, req.payload.length);
        throw err;
      }
      return await this.#send(peer, link, req, what, deadline);
    } catch (err) {
      this.#stats.failed++;
      throw err;
    }
  }

  /**
   * Serves an inbound connection whose first frame `first` was FORWARD (the cluster listener's
   * dispatch calls it): runs each request with `opts.serve`, up to SERVE_IN_FLIGHT_MAX at once, and
   * answers each on this connection as it completes. A malformed frame closes this connection
   * only. Never rejects.
   */
  async serve(conn: Conn, first: Frame, parser: FrameParser): Promise<void> {
    const serve = this.#serve;
    if (this.#stop.signal.aborted || serve === null) {
      conn.close();
      return;
    }
    this.#inbound.add(conn);
    let inFlight = 0;
    let resume: (() => void) | null = null;
    let writing = Promise.resolve();
    const answer = (correlationId: number, frame: Uint8Array | null) => {
      const header = new Uint8Array(HEADER_BYTES);
      writeHeader(header, {
        version: PROTOCOL_VERSION,
        flags: Flag.RESPONSE,
        opcode: FORWARD_OPCODE,
        correlationId,
        payloadLength: frame?.length ?? 0,
      });
      writing = writing.then(() => writeAllOf(conn, frame === null ? [header] : [header, frame]))
        .then(() => {}, () => conn.close());
    };
    // While requests run, an empty answer now and then tells the sender this node is still there.
    const served = new AbortController();
    void (async () => {
      while (!served.signal.aborted) {
        try {
          await this.#env.clock.sleep(this.#o.keepaliveMs, served.signal);
        } catch {
          return;
        }
        if (inFlight > 0) answer(0, null);
      }
    })();
    try {
      const buf = new Uint8Array(READ_BYTES);
      for (let f: Frame | null = first; f !== null; f = await readFrame(conn, parser, buf)) {
        if (f.opcode !== FORWARD_OPCODE || f.flags !== 0) {
          throw new MalformedError(
            `Expected FORWARD, got opcode 0x${f.opcode.toString(16)} flags ${f.flags}`,
          );
        }
        const { fromId, req } = decodeEnvelope(f.payload);
        // On a cluster port that checks the secret, a peer speaks only for the node it proved.
        if (conn.peerNodeId !== undefined && fromId !== conn.peerNodeId) {
          throw new MalformedError(
            `FORWARD from ${fromId} on a connection authenticated as ${conn.peerNodeId}`,
          );
        }
        const correlationId = f.correlationId;
        inFlight++;
        this.#stats.served++;
        void serve(req).then(
          (frame) => answer(correlationId, frame),
          // ServeForwarded answers every failure with an error frame; this is a bug's last stop.
          () => conn.close(),
        ).finally(() => {
          inFlight--;
          const r = resume;
          resume = null;
          r?.();
        });
        while (inFlight >= SERVE_IN_FLIGHT_MAX) await new Promise<void>((r) => (resume = r));
      }
    } catch {
      // A malformed frame or a lost connection: the sender fails what it waits for.
    } finally {
      served.abort();
      await writing;
      conn.close();
      this.#inbound.delete(conn);
    }
  }

  /** Closes every connection; requests waiting on them fail as TIMEOUT (outcome unknown). */
  close(): void {
    if (this.#stop.signal.aborted) return;
    this.#stop.abort();
    for (const peer of this.#peers.values()) {
      if (peer.open !== null) this.#lost(peer, peer.open, "this node is closing");
      for (const w of peer.waiting.splice(0)) w.wake();
    }
    for (const conn of this.#inbound) conn.close();
  }

  #peer(id: string): Peer {
    let peer = this.#peers.get(id);
    if (peer === undefined) {
      if (this.#resolve(id) === null) {
        throw new GregorError(
          ErrorCode.NOT_LEADER,
          `The leader ${id} is not a known member; ask another node`,
        );
      }
      peer = {
        id,
        link: null,
        open: null,
        inFlight: new Map(),
        slots: 0,
        bytes: 0,
        waiting: [],
        nextCorrelationId: 1,
      };
      this.#peers.set(id, peer);
    }
    return peer;
  }

  /** Waits until `bytes` more fit within the peer's in-flight bounds, then takes them. */
  async #slot(peer: Peer, bytes: number, what: string, deadline: number): Promise<void> {
    const fits = () =>
      peer.slots < this.#o.inFlightMax &&
      (peer.bytes === 0 || peer.bytes + bytes <= this.#o.inFlightBytesMax);
    const take = () => {
      peer.slots++;
      peer.bytes += bytes;
    };
    if (peer.waiting.length === 0 && fits()) return take();
    if (peer.waiting.length >= this.#o.waitingMax) {
      throw new GregorError(
        ErrorCode.LIMIT_EXCEEDED,
        `Cannot forward ${what}: ${this.#o.waitingMax} requests already wait for it ` +
          `(${peer.slots} in flight); retry`,
      );
    }
    const timer = new AbortController();
    const timedOut = this.#env.clock.sleep(deadline - this.#env.clock.now(), timer.signal)
      .then(() => true, () => false);
    let me: { wake(): void } | null = null;
    try {
      // Woken when a request in flight ends; one that still does not fit waits first in line.
      for (let first = false;; first = true) {
        const turn = new Promise<boolean>((r) => {
          me = { wake: () => r(false) };
          if (first) peer.waiting.unshift(me);
          else peer.waiting.push(me);
        });
        if (await Promise.race([turn, timedOut])) {
          throw new GregorError(
            ErrorCode.TIMEOUT,
            `Cannot forward ${what}: no room among its ${peer.slots} requests in flight ` +
              `within ${this.#o.requestTimeoutMs} ms; nothing was sent, retry`,
          );
        }
        me = null;
        if (this.#stop.signal.aborted) {
          throw new GregorError(
            ErrorCode.NOT_LEADER,
            `Cannot forward ${what}: this node is closing`,
          );
        }
        if (fits()) {
          take();
          // The next in line may fit too.
          peer.waiting.shift()?.wake();
          return;
        }
      }
    } finally {
      timer.abort(GUARD_DONE);
      if (me !== null) peer.waiting.splice(peer.waiting.indexOf(me), 1);
    }
  }

  #release(peer: Peer, bytes: number): void {
    peer.slots--;
    peer.bytes -= bytes;
    peer.waiting.shift()?.wake();
  }

  /** The peer's connection, opened if it has none. */
  #link(peer: Peer): Promise<Link> {
    if (peer.link !== null) return peer.link;
    const addr = this.#resolve(peer.id);
    if (addr === null) {
      return Promise.reject(
        new GregorError(
          ErrorCode.NOT_LEADER,
          `The leader ${peer.id} is not a known member; ask another node`,
        ),
      );
    }
    const dialed = this.#env.net.connect(addr, { timeoutMs: this.#o.connectTimeoutMs }).then(
      (conn) => {
        if (conn.peerNodeId !== undefined && conn.peerNodeId !== peer.id) {
          // The address now belongs to another node (gossip has not caught up with it).
          conn.close();
          throw new Error(`the node there proved to be ${conn.peerNodeId}`);
        }
        return conn;
      },
    );
    const link = dialed.then(
      (conn) => {
        const l: Link = {
          conn,
          writing: Promise.resolve(),
          closed: false,
          heardMs: this.#env.clock.now(),
        };
        if (this.#stop.signal.aborted) {
          l.closed = true;
          conn.close();
        }
        this.#stats.connects++;
        if (peer.link === link) peer.open = l;
        void this.#readAnswers(peer, l);
        void this.#watchSilence(peer, l);
        return l;
      },
      (err) => {
        // Every request waiting on this attempt gets the same retriable error; the next connects
        // again.
        if (peer.link === link) peer.link = null;
        throw new GregorError(
          ErrorCode.NOT_LEADER,
          `Cannot reach ${peer.id} at ${addr.host}:${addr.port} to forward a request: ` +
            `${(err as Error).message}; ask another node`,
          { cause: err },
        );
      },
    );
    peer.link = link;
    return link;
  }

  async #send(
    peer: Peer,
    link: Link,
    req: ForwardedRequest,
    what: string,
    deadline: number,
  ): Promise<Uint8Array | null> {
    if (link.closed) {
      this.#release(peer, req.payload.length);
      throw new GregorError(
        ErrorCode.NOT_LEADER,
        `Cannot forward ${what}: the connection closed before it was sent; retry`,
      );
    }
    const correlationId = peer.nextCorrelationId;
    peer.nextCorrelationId = correlationId >= 0xffff_ffff ? 1 : correlationId + 1;
    const bytes = req.payload.length;
    // Silence counts from now if nothing was waiting: an idle link hears nothing, rightly.
    if (peer.inFlight.size === 0) link.heardMs = this.#env.clock.now();
    const answered = new Promise<Uint8Array | null>((resolve, reject) => {
      peer.inFlight.set(correlationId, { bytes, what, resolve, reject });
    });
    const head = encodeEnvelopeHead(this.#o.nodeId, req, correlationId);
    link.writing = link.writing.then(async () => {
      if (link.closed) return;
      await writeAllOf(link.conn, [head, req.payload]);
    }).catch(() => this.#lost(peer, link, "a write failed"));
    this.#stats.forwarded++;
    const timer = new AbortController();
    const never = new Promise<never>(() => {});
    const late: Promise<never> = this.#env.clock.sleep(
      deadline - this.#env.clock.now(),
      timer.signal,
    ).then(
      () => {
        // Answered at the same moment: the answer wins the race.
        if (!peer.inFlight.delete(correlationId)) return never;
        this.#release(peer, bytes);
        throw new GregorError(
          ErrorCode.TIMEOUT,
          `Forwarding ${what} took over ${this.#o.requestTimeoutMs} ms; its outcome is unknown`,
        );
      },
      () => never,
    );
    try {
      return await Promise.race([answered, late]);
    } finally {
      timer.abort(GUARD_DONE);
    }
  }

  /** Reads answers off the peer's connection until it ends, then fails what still waits. */
  async #readAnswers(peer: Peer, link: Link): Promise<void> {
    const parser = new FrameParser({ payloadBytesMax: ANSWER_BYTES_MAX });
    const buf = new Uint8Array(READ_BYTES);
    let why = "it closed";
    try {
      for (let f = await readFrame(link.conn, parser, buf); f !== null;) {
        link.heardMs = this.#env.clock.now();
        if (f.opcode !== FORWARD_OPCODE || (f.flags & Flag.RESPONSE) === 0) {
          throw new MalformedError(
            `Expected a FORWARD answer, got opcode 0x${f.opcode.toString(16)} flags ${f.flags}`,
          );
        }
        // The answer goes to a client as it is: one that is not a whole answer frame would
        // garble the client's stream, so the connection it came on is not trusted further.
        if (f.payload.length > 0 && !isAnswerFrame(f.payload)) {
          throw new MalformedError(`${peer.id} relayed an answer that is not a whole answer frame`);
        }
        const p = peer.inFlight.get(f.correlationId);
        if (p !== undefined) {
          peer.inFlight.delete(f.correlationId);
          this.#release(peer, p.bytes);
          p.resolve(f.payload.length === 0 ? null : f.payload);
        }
        f = await readFrame(link.conn, parser, buf);
      }
    } catch (err) {
      why = (err as Error).message;
    }
    this.#lost(peer, link, why);
  }

  /**
   * Loses the link once requests have waited on it for silenceMsMax without a word from the peer
   * (an answer or a keepalive): a peer cut off by the network sends nothing, and its connection
   * would otherwise hold them until requestTimeoutMs, long after the cluster elected another
   * leader they could go to.
   */
  async #watchSilence(peer: Peer, link: Link): Promise<void> {
    const stop = this.#stop.signal;
    const checkMs = Math.max(1, Math.floor(this.#o.silenceMsMax / 4));
    while (!link.closed && !stop.aborted) {
      try {
        await this.#env.clock.sleep(checkMs, stop);
      } catch {
        return;
      }
      if (link.closed || peer.open !== link || peer.inFlight.size === 0) continue;
      const silentMs = this.#env.clock.now() - link.heardMs;
      if (silentMs > this.#o.silenceMsMax) {
        this.#lost(
          peer,
          link,
          `no word from ${peer.id} for ${silentMs} ms while ${peer.inFlight.size} requests waited`,
        );
      }
    }
  }

  /** The peer's connection is gone: everything sent on it fails, the next request reconnects. */
  #lost(peer: Peer, link: Link, why: string): void {
    if (link.closed) return;
    link.closed = true;
    link.conn.close();
    if (peer.open === link) {
      peer.open = null;
      peer.link = null;
    }
    for (const [id, p] of peer.inFlight) {
      peer.inFlight.delete(id);
      this.#release(peer, p.bytes);
      p.reject(
        new GregorError(
          ErrorCode.TIMEOUT,
          `Forwarding ${p.what} failed: the connection was lost (${why}); its outcome is unknown`,
        ),
      );
    }
  }
}

/**
 * The FORWARD payload limit a node accepts, for a client payload limit of `payloadBytesMax`:
 * the payload and the envelope around it.
 */
export function forwardPayloadBytesMax(payloadBytesMax: number): number {
  return payloadBytesMax + ENVELOPE_FIXED_BYTES + 3 * ENVELOPE_STRING_BYTES_MAX;
}

/** The header and envelope fields of a FORWARD request, for a frame whose payload follows. */
function encodeEnvelopeHead(
  fromId: string,
  req: ForwardedRequest,
  correlationId: number,
): Uint8Array {
  const w = new Writer(HEADER_BYTES + 128);
  w.skip(HEADER_BYTES);
  w.string(fromId).string(req.clientId).string(req.principal).u16(req.opcode);
  w.u32(req.payload.length);
  const head = w.finish();
  writeHeader(head, {
    version: PROTOCOL_VERSION,
    flags: 0,
    opcode: FORWARD_OPCODE,
    correlationId,
    payloadLength: head.length - HEADER_BYTES + req.payload.length,
  });
  return head;
}

/** A FORWARD request's envelope: who sent it, and the request. Throws MalformedError. */
function decodeEnvelope(payload: Uint8Array): { fromId: string; req: ForwardedRequest } {
  const r = new Reader(payload);
  const fromId = r.string("FORWARD.fromId");
  if (!isNodeId(fromId)) {
    throw new MalformedError(`FORWARD from ${JSON.stringify(fromId)}: not a node's id`);
  }
  const clientId = r.string("FORWARD.clientId");
  const principal = r.string("FORWARD.principal");
  const opcode = r.u16("FORWARD.opcode");
  const n = r.u32("FORWARD.payload");
  const inner = r.raw(n, "FORWARD.payload");
  r.end("FORWARD");
  return { fromId, req: { opcode, payload: inner, clientId, principal } };
}

/** True for a whole frame with a RESPONSE header that describes it. */
function isAnswerFrame(frame: Uint8Array): boolean {
  if (frame.length < HEADER_BYTES) return false;
  const dv = new DataView(frame.buffer, frame.byteOffset, HEADER_BYTES);
  return dv.getUint16(0) === MAGIC && (dv.getUint8(3) & Flag.RESPONSE) !== 0 &&
    dv.getUint32(12) === frame.length - HEADER_BYTES;
}

function opLabel(opcode: number): string {
  return opName(opcode) ?? `opcode 0x${opcode.toString(16).padStart(4, "0")}`;
}
