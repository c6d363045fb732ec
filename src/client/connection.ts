// The client's connection to a broker: handshake, pipelined requests matched by correlation id,
// pushes routed to subscriptions, request timeouts, and reconnection with jittered exponential
// backoff. Everything above it (producer, consumer, admin) just calls `request`.

import { NONCE_BYTES, nonceFrom, SCRAM_SHA_256, ScramClient, ScramError } from "../auth/scram.ts";
import { ConnectionRefused, TlsHandshakeFailed } from "../io/errors.ts";
import type { Conn, Env, TlsClientOptions } from "../io/types.ts";
import { writeAllOf } from "../io/util.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import {
  encodeFrame,
  Flag,
  FRAME_PAYLOAD_BYTES_MAX_DEFAULT,
  FrameParser,
  PROTOCOL_VERSION,
} from "../protocol/frame.ts";
import {
  type AuthMessage,
  decode,
  decodeDeliver,
  type DeliverPush,
  encodeFramedInto,
  ERROR_SCHEMA,
  type ErrorPayload,
  type HelloResponse,
  Op,
  type OpName,
  SCHEMAS,
} from "../protocol/messages.ts";
import { Writer } from "../protocol/wire.ts";

/** What `post` does with a one-way request's outcome: nothing. */
function ignore(): void {}

/** The broker's default client port. */
export const DEFAULT_PORT = 7070;
/**
 * With several servers, one attempt to connect to one of them (TLS handshake included) gives up
 * after this long, ms, and the client tries the next: a server whose machine is gone, or cut off,
 * answers nothing at all, and waiting out the whole connectTimeoutMs on it would never reach the
 * others (as NATS clients, which wait 2 s per server).
 */
export const CONNECT_ATTEMPT_MS_MAX = 2_000;

/** The connection is down or was closed; the request may be retried once it is back. */
export class ConnectionError extends Error {
  /** Always true: the same request may succeed after reconnecting. */
  readonly retriable = true;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectionError";
  }
}

/** Options for connecting to a broker. */
export interface ConnectOptions {
  /** Broker host. Default "127.0.0.1". */
  host?: string;
  /** Broker port. Default 7070. */
  port?: number;
  /**
   * Several brokers of a cluster, as "host:port" (any of them will do: each forwards what it
   * does not lead). The client connects to the first that answers and, after a connection is
   * lost, tries the next one first, so it carries on while a node is down. Overrides `host` and
   * `port`.
   */
  servers?: string[];
  /** Sent in the handshake; shows in broker logs. Default "gregormq-ts". */
  clientId?: string;
  /** Optional credential for brokers that require one. */
  credential?: string;
  /**
   * User to authenticate as with SCRAM-SHA-256 after HELLO (brokers started with `--auth scram`).
   * The password never crosses the wire, and the client checks that the broker knows the user's
   * keys too. Give `password` with it.
   */
  username?: string;
  /** The password of `username`. */
  password?: string;
  /**
   * Speak TLS to a broker that serves it (`--tls-cert`). A handshake that fails (wrong CA, expired
   * or misnamed certificate, a client certificate missing under mutual TLS, a plaintext port)
   * rejects at once with a `TlsHandshakeFailed` whose `reason` says why; no retry fixes those.
   */
  tls?: ClientTls;
  /** A request without an answer this long fails with TIMEOUT. Default 30 000 ms. */
  requestTimeoutMs?: number;
  /** Wait between reconnection attempts: doubles from min to max, with jitter. */
  reconnectBackoffMsMin?: number;
  reconnectBackoffMsMax?: number;
  /**
   * Give up connecting (first connect and reconnects) after this long. Default 30 000 ms. With
   * several `servers`, one attempt at one of them gives up after CONNECT_ATTEMPT_MS_MAX (2 s) and
   * the next is tried.
   */
  connectTimeoutMs?: number;
  /** Requests in flight at most; more wait. Default 4096. */
  requestsInFlightMax?: number;
  /**
   * Ping a broker silent this long, and drop the connection if it stays silent as long again; half
   * as long while requests wait for answers. Default 2000 ms; 0: never.
   */
  heartbeatMs?: number;
  /**
   * Told of every change of the connection's state: "connected" (with the broker's address),
   * "disconnected" (with why), "reconnecting", "closed". After a connection is lost the client
   * keeps reconnecting, with its backoff, until it is closed.
   */
  onStateChange?: (state: ConnectionState, detail: string) => void;
}

/** Where a client's connection stands. */
export type ConnectionState = "connected" | "disconnected" | "reconnecting" | "closed";

/** How a client verifies the broker's certificate and, for mutual TLS, proves who it is. */
export interface ClientTls {
  /** PEM certificates of the CAs that sign the broker's certificate. */
  ca: string;
  /** PEM client certificate, for a broker that requires one (mutual TLS). */
  cert?: string;
  /** PEM private key of `cert`. */
  key?: string;
  /** The name the broker's certificate must carry. Default: the host connected to. */
  serverName?: string;
}

/** Resolved options. */
export type ConnectionOptions =
  & Required<
    Omit<ConnectOptions, "credential" | "username" | "password" | "tls">
  >
  & {
    credential: string | null;
    /** SCRAM user and password, or null for none. */
    scram: { username: string; password: string } | null;
    tls: ClientTls | null;
    env: Env;
    /**
     * A refused connect ends the attempt at once instead of being retried until connectTimeoutMs:
     * for a pooled connection to a partition leader's node, whose port is closed once it died (the
     * request then goes through the bootstrap node, which knows the next leader).
     */
    refusalEndsDial?: boolean;
  };

interface Queued {
  op: OpName;
  body: object;
  oneWay: boolean;
  resolve: (payload: Uint8Array) => void;
  reject: (err: Error) => void;
  deadline: number;
}

const EMPTY = new Uint8Array(0);

interface Pending {
  op: OpName;
  resolve: (payload: Uint8Array) => void;
  reject: (err: Error) => void;
  deadline: number;
}

/** Something that receives pushes and hears about reconnects. */
export interface PushListener {
  onDeliver(push: DeliverPush): void;
  /** The connection came back; re-establish server-side state. */
  onReconnect(): void;
  /**
   * Reconnecting cannot succeed (the broker refused this client for good, e.g. its credentials)
   * or the client closed; the listener will hear nothing more.
   */
  onLost(err: unknown): void;
}

const READ_BYTES = 64 * 1024;
/**
 * Requests are packed back to back into one buffer until the next write: one buffer per write
 * rather than one per request, as a consumer acknowledging each message of a hundred
 * subscriptions sends a hundred ACKs at once. A buffer starts at twice what the last one held,
 * within these bounds (so one request at a time stays cheap), and grows for more.
 */
const PACKING_BYTES_MIN = 256;
const PACKING_BYTES_MAX = 16 * 1024;
const TIMEOUT_SWEEP_MS = 100;

/** A TLS record header (alert or handshake, version 3.x), which no GregorMQ frame starts with. */
function isTlsRecord(buf: Uint8Array, n: number): boolean {
  return n >= 3 && (buf[0] === 0x15 || buf[0] === 0x16) && buf[1] === 0x03;
}

function seamTls(tls: ClientTls): TlsClientOptions {
  return {
    caPem: tls.ca,
    ...(tls.cert === undefined ? {} : { certPem: tls.cert }),
    ...(tls.key === undefined ? {} : { keyPem: tls.key }),
    ...(tls.serverName === undefined ? {} : { serverName: tls.serverName }),
  };
}

/** A self-healing connection to one broker. */
export class ClientConnection {
  readonly opts: ConnectionOptions;
  /** What the broker said in the handshake. */
  hello: HelloResponse | null = null;
  /** Errors that answered one-way requests (CREDIT, ACK), which have no caller to tell. */
  unmatchedErrors = 0;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Map<number, PushListener>();
  #conn: Conn | null = null;
  /** True once the current connection's HELLO was answered; queued requests wait for it. */
  #handshaken = false;
  #lastHeardMs = 0;
  #pinging = false;
  #ready: Promise<Conn> | null = null;
  #nextId = 1;
  #closed = false;
  readonly #stop = new AbortController();
  #queue: Queued[] = [];
  #outbound: Uint8Array[] = [];
  /** Requests encoded since the last write, back to back (see PACKING_BYTES_MAX). */
  #packing: Writer | null = null;
  /** Bytes the last packing buffer held. */
  #packedLast = 0;
  #writing = false;

  constructor(opts: ConnectionOptions) {
    this.opts = opts;
    void this.#sweepTimeouts();
  }

  get #env(): Env {
    return this.opts.env;
  }

  /** Connects (with retries up to `connectTimeoutMs`) and handshakes. */
  connect(): Promise<Conn> {
    if (this.#closed) return Promise.reject(new ConnectionError("The client is closed"));
    if (this.#conn !== null && this.#handshaken) return Promise.resolve(this.#conn);
    if (this.#ready === null) {
      this.#ready = this.#dial().finally(() => (this.#ready = null));
    }
    return this.#ready;
  }

  /** Where to connect, in order of preference: `servers`, or `host` and `port`. */
  get addresses(): { host: string; port: number }[] {
    if (this.opts.servers.length === 0) return [{ host: this.opts.host, port: this.opts.port }];
    return this.opts.servers.map(parseServer);
  }

  /** Which of `addresses` to try next. */
  #nextAddress = 0;

  async #dial(): Promise<Conn> {
    const addresses = this.addresses;
    const deadline = this.#env.clock.now() + this.opts.connectTimeoutMs;
    let backoff = this.opts.reconnectBackoffMsMin;
    let lastErr: unknown = null;
    /** Addresses of the current round whose broker answered the HELLO with an error. */
    let refusals = 0;
    while (!this.#closed && this.#env.clock.now() < deadline) {
      const { host, port } = addresses[this.#nextAddress % addresses.length]!;
      try {
        const leftMs = deadline - this.#env.clock.now();
        const conn = await this.#env.net.connect({ host, port }, {
          timeoutMs: Math.max(
            1,
            addresses.length > 1 ? Math.min(leftMs, CONNECT_ATTEMPT_MS_MAX) : leftMs,
          ),
          ...(this.opts.tls === null ? {} : { tls: seamTls(this.opts.tls) }),
        });
        this.#conn = conn;
        void this.#readLoop(conn);
        try {
          const answer = await this.#call(conn, "HELLO", {
            versionMin: PROTOCOL_VERSION,
            versionMax: PROTOCOL_VERSION,
            clientId: this.opts.clientId,
            credential: this.opts.credential === null
              ? null
              : new TextEncoder().encode(this.opts.credential),
          });
          this.hello = decode<HelloResponse>(SCHEMAS.HELLO.response, answer, "HELLO response");
          if (this.opts.scram !== null) await this.#authenticate(conn, this.opts.scram);
          this.#handshaken = true;
          this.#setState("connected", `${host}:${port}`);
          this.#lastHeardMs = this.#env.clock.now();
          this.#pinging = false;
        } catch (err) {
          this.#lose(conn, err);
          // Under TLS 1.3 a broker refuses a client certificate after the client's handshake.
          const cause = (err as { cause?: unknown }).cause;
          if (cause instanceof TlsHandshakeFailed) throw cause;
          if (err instanceof TlsHandshakeFailed) throw err;
          // The broker's own answer (LIMIT_EXCEEDED at its connection cap, AUTHENTICATION_FAILED)
          // says more than "the handshake failed".
          if (err instanceof GregorError) throw err;
          throw new ConnectionError(`Handshake with ${host}:${port} failed`, { cause: err });
        }
        return conn;
      } catch (err) {
        if (err instanceof GregorError && !err.retriable) throw err;
        if (err instanceof TlsHandshakeFailed) throw err;
        if (err instanceof ConnectionRefused && this.opts.refusalEndsDial === true) {
          throw new ConnectionError(
            `Cannot connect to ${host}:${port}: connection refused (the node is down)`,
            { cause: err },
          );
        }
        lastErr = err;
        // TIMEOUT is the broker giving up on this connection's HELLO (its deadline passed, or it
        // was closed to make room under a flood of silent connections), not a no: dial again.
        if (err instanceof GregorError && err.code !== ErrorCode.TIMEOUT) refusals++;
        this.#nextAddress++;
        // A whole round of the addresses failed before the client waits; not each of them.
        if (this.#nextAddress % addresses.length !== 0) continue;
        // Every broker answered, and refused: waiting out connectTimeoutMs would only hide why.
        if (refusals === addresses.length) throw err;
        refusals = 0;
        const wait = Math.min(backoff, Math.max(0, deadline - this.#env.clock.now()));
        await this.#env.clock.sleep(wait * (0.5 + this.#env.random.float() / 2), this.#stop.signal)
          .catch(() => {});
        backoff = Math.min(backoff * 2, this.opts.reconnectBackoffMsMax);
      }
    }
    throw new ConnectionError(
      this.#closed
        ? "The client is closed"
        : `Cannot connect to ${
          addresses.map((a) => `${a.host}:${a.port}`).join(" or ")
        } within ${this.opts.connectTimeoutMs} ms`,
      { cause: lastErr },
    );
  }

  /**
   * Sends a request and resolves its decoded response. Requests go out in call order, across
   * reconnects, so pipelined produces to one partition keep their order.
   */
  request<T>(op: OpName, body: object): Promise<T> {
    return new Promise<Uint8Array>((resolve, reject) => {
      this.#enqueue({ op, body, oneWay: false, resolve, reject, deadline: this.#deadline() });
    }).then((payload) => decode<T>(SCHEMAS[op].response, payload, `${op} response`));
  }

  /**
   * Sends a request that has no response and whose loss with the connection nobody awaits (CREDIT,
   * ACK: what they say is said again after a reconnect): `send` without its promise, as a consumer
   * sends one per message.
   */
  post(op: OpName, body: object): void {
    this.#enqueue({
      op,
      body,
      oneWay: true,
      resolve: ignore,
      reject: ignore,
      deadline: this.#deadline(),
    });
  }

  /** Sends a request that has no response (CREDIT, ACK, produce with acks none). */
  send(op: OpName, body: object): Promise<void> {
    return new Promise<Uint8Array>((resolve, reject) => {
      this.#enqueue({ op, body, oneWay: true, resolve, reject, deadline: this.#deadline() });
    }).then(() => {});
  }

  #deadline(): number {
    return this.#env.clock.now() + this.opts.requestTimeoutMs;
  }

  #enqueue(q: Queued): void {
    if (this.#closed) {
      q.reject(new ConnectionError("The client is closed"));
      return;
    }
    this.#queue.push(q);
    this.#pump();
  }

  /** Moves queued requests onto the wire while connected and slots are free. */
  #pump(): void {
    const conn = this.#conn;
    if (conn === null || !this.#handshaken) {
      if (this.#queue.length > 0) {
        this.connect().then(() => this.#pump(), (err) => this.#failQueue(err));
      }
      return;
    }
    while (this.#queue.length > 0 && this.#pending.size < this.opts.requestsInFlightMax) {
      const q = this.#queue.shift() as Queued;
      this.#issue(conn, q);
    }
  }

  #issue(conn: Conn, q: Queued): void {
    const id = this.#id();
    this.#packing ??= new Writer(
      Math.min(PACKING_BYTES_MAX, Math.max(PACKING_BYTES_MIN, 2 * this.#packedLast)),
    );
    encodeFramedInto(this.#packing, SCHEMAS[q.op].request, q.body, {
      opcode: Op[q.op],
      correlationId: id,
    });
    if (q.oneWay) q.resolve(EMPTY);
    else {this.#pending.set(id, {
        op: q.op,
        resolve: q.resolve,
        reject: q.reject,
        deadline: q.deadline,
      });}
    if (!this.#writing) void this.#writeLoop(conn);
  }

  #failQueue(err: unknown): void {
    for (const q of this.#queue.splice(0)) {
      q.reject(err instanceof Error ? err : new ConnectionError(String(err)));
    }
  }

  /**
   * The SCRAM-SHA-256 exchange after HELLO (docs/protocol.md §4.1). A server-final that does not
   * verify means the peer does not hold this user's keys: AUTHENTICATION_FAILED, not retried.
   */
  async #authenticate(conn: Conn, who: { username: string; password: string }): Promise<void> {
    const scram = new ScramClient(
      this.#env.crypto,
      who.username,
      who.password,
      nonceFrom(this.#env.random.secureBytes(NONCE_BYTES)),
    );
    const message = (payload: Uint8Array, what: string): Uint8Array =>
      decode<AuthMessage>(SCHEMAS.AUTH_START.response, payload, what).message ?? EMPTY;
    try {
      const serverFirst = message(
        await this.#call(conn, "AUTH_START", { mechanism: SCRAM_SHA_256, message: scram.first() }),
        "AUTH_START response",
      );
      const serverFinal = message(
        await this.#call(conn, "AUTH_FINISH", { message: await scram.final(serverFirst) }),
        "AUTH_FINISH response",
      );
      scram.verify(serverFinal);
    } catch (err) {
      if (!(err instanceof ScramError)) throw err;
      throw new GregorError(
        ErrorCode.AUTHENTICATION_FAILED,
        `The broker's SCRAM answer was refused: ${err.message}`,
      );
    }
  }

  /** The handshake, which must go first on a fresh connection, ahead of any queued request. */
  #call(conn: Conn, op: OpName, body: object): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.#issue(conn, { op, body, oneWay: false, resolve, reject, deadline: this.#deadline() });
    });
  }

  #id(): number {
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffffffff ? 1 : this.#nextId + 1;
    return id;
  }

  #write(conn: Conn, frame: Uint8Array): void {
    this.#seal();
    this.#outbound.push(frame);
    if (!this.#writing) void this.#writeLoop(conn);
  }

  /** Queues the requests packed so far, ahead of whatever is queued next. */
  #seal(): void {
    if (this.#packing === null || this.#packing.length === 0) return;
    this.#packedLast = this.#packing.length;
    this.#outbound.push(this.#packing.finish());
    this.#packing = null;
  }

  async #writeLoop(conn: Conn): Promise<void> {
    this.#writing = true;
    try {
      for (this.#seal(); this.#outbound.length > 0 && this.#conn === conn; this.#seal()) {
        const frames = this.#outbound;
        this.#outbound = [];
        await writeAllOf(conn, frames);
      }
    } catch (err) {
      this.#lose(conn, err);
    } finally {
      this.#writing = false;
    }
  }

  /** Routes pushes for `subscriptionId` to `listener`. */
  listen(subscriptionId: number, listener: PushListener): void {
    this.#listeners.set(subscriptionId, listener);
  }

  /** Stops routing pushes for `subscriptionId`. */
  unlisten(subscriptionId: number): void {
    this.#listeners.delete(subscriptionId);
  }

  async #readLoop(conn: Conn): Promise<void> {
    const parser = new FrameParser({ payloadBytesMax: FRAME_PAYLOAD_BYTES_MAX_DEFAULT * 2 });
    const buf = new Uint8Array(READ_BYTES);
    let first = true;
    try {
      for (;;) {
        // A big payload (a delivery) is read straight into its own buffer.
        const target = parser.readTarget();
        const n = await conn.read(target ?? buf);
        if (n === null) break;
        if (first && target === null && this.opts.tls === null && isTlsRecord(buf, n)) {
          throw new TlsHandshakeFailed(
            "NOT_TLS",
            `The broker at ${conn.remote.host}:${conn.remote.port} speaks TLS on this port and ` +
              "this client does not; connect with the tls option (gregorctl: --tls-ca)",
          );
        }
        first = false;
        // Heard from once per read, not per frame: a read may hold a hundred deliveries.
        this.#lastHeardMs = this.#env.clock.now();
        // The parser keeps views into what it is given: hand it a copy of the bytes read.
        if (target !== null) parser.filled(n);
        else parser.push(buf.slice(0, n));
        for (let r = parser.next(); r.kind !== "need"; r = parser.next()) {
          if (r.kind === "error") {
            throw new GregorError(r.code, `Broker sent a bad frame: ${r.message}`);
          }
          this.#onFrame(r.frame.opcode, r.frame.flags, r.frame.correlationId, r.frame.payload);
        }
      }
      if (first && this.opts.tls !== null && !this.#handshaken) {
        // A mutual-TLS broker drops a client whose certificate it refuses once the TLS handshake
        // is over (TLS 1.3 checks it last), before a byte of GregorMQ: no retry will change that.
        throw this.opts.tls.cert === undefined
          ? new TlsHandshakeFailed(
            "CLIENT_CERT_REQUIRED",
            `The broker at ${conn.remote.host}:${conn.remote.port} closed the connection right ` +
              "after the TLS handshake: it requires a client certificate (mutual TLS); give " +
              "tls.cert and tls.key (gregorctl: --tls-cert, --tls-key)",
          )
          : new TlsHandshakeFailed(
            "BAD_CERTIFICATE",
            `The broker at ${conn.remote.host}:${conn.remote.port} closed the connection right ` +
              "after the TLS handshake: it refused this client's certificate (not signed by a " +
              "CA it trusts, or expired); its log says which",
          );
      }
      this.#lose(conn, new ConnectionError("The broker closed the connection"));
    } catch (err) {
      this.#lose(conn, err);
    }
  }

  #onFrame(opcode: number, flags: number, correlationId: number, payload: Uint8Array): void {
    if ((flags & Flag.PUSH) !== 0) {
      if (opcode !== Op.DELIVER) return;
      const push = decodeDeliver(payload);
      this.#listeners.get(push.subscriptionId)?.onDeliver(push);
      return;
    }
    const p = this.#pending.get(correlationId);
    if ((flags & Flag.ERROR) !== 0) {
      const e = decode<ErrorPayload>(ERROR_SCHEMA, payload, "error");
      const err = new GregorError(e.code, e.message);
      // Correlation id 0 is no request's: the error is about the connection (the broker refused
      // it, or found its bytes untrustworthy) and the broker closes it. Everything in flight,
      // the HELLO included, fails with the broker's reason rather than a bare close.
      if (correlationId === 0) throw err;
      if (p !== undefined) {
        this.#settle(correlationId);
        p.reject(err);
      } else {
        // An error answering a one-way request (CREDIT or ACK on a subscription that just ended).
        this.unmatchedErrors++;
      }
      return;
    }
    if (p === undefined) return;
    this.#settle(correlationId);
    p.resolve(payload);
  }

  #settle(id: number): void {
    this.#pending.delete(id);
    if (this.#queue.length > 0) this.#pump();
  }

  /** The connection broke: fail what was in flight, then reconnect for those who listen. */
  #lose(conn: Conn, err: unknown): void {
    if (this.#conn !== conn) return;
    this.#conn = null;
    // The node may be down: the reconnection tries the next address first.
    this.#nextAddress++;
    this.#handshaken = false;
    this.#outbound = [];
    this.#packing = null;
    conn.close();
    const reason = err instanceof Error ? err.message : String(err);
    if (!this.#closed && this.#state === "connected") {
      this.#setState("disconnected", reason);
    }
    for (const [id, p] of this.#pending) {
      this.#settle(id);
      p.reject(
        err instanceof GregorError && err.code !== ErrorCode.INTERNAL
          ? err
          : new ConnectionError(`Connection lost during ${p.op}: ${reason}`, { cause: err }),
      );
    }
    // A handshake that fails inside a dial is retried by that dial: a second reconnection would
    // tell every listener twice, and a subscription resubscribed twice is refused as in use.
    if (!this.#closed && this.#listeners.size > 0 && this.#ready === null) void this.#reconnect();
  }

  /**
   * Reconnects for the subscriptions, until it succeeds or the client is closed: each round is a
   * dial of up to connectTimeoutMs with its backoff, and another follows while the brokers are
   * gone. Only a broker's refusal that retrying cannot change ends it, or, on a connection to one
   * node (`refusalEndsDial`), a dial that finds the node down.
   */
  async #reconnect(): Promise<void> {
    this.#setState("reconnecting", "");
    for (;;) {
      try {
        await this.connect();
        break;
      } catch (err) {
        // A connection to one node (a leader's, from the pool) that finds the node down tells its
        // subscriptions, which then go where their partitions are served now.
        const final = this.#closed || (err instanceof GregorError && !err.retriable) ||
          this.opts.refusalEndsDial === true;
        if (final) {
          for (const l of [...this.#listeners.values()]) l.onLost(err);
          this.#listeners.clear();
          return;
        }
      }
    }
    for (const l of [...this.#listeners.values()]) l.onReconnect();
  }

  #state: ConnectionState | null = null;

  #setState(state: ConnectionState, detail: string): void {
    if (state === this.#state && state !== "connected") return;
    this.#state = state;
    try {
      this.opts.onStateChange(state, detail);
    } catch {
      // A listener's bug must not break the connection.
    }
  }

  async #sweepTimeouts(): Promise<void> {
    while (!this.#closed) {
      try {
        await this.#env.clock.sleep(TIMEOUT_SWEEP_MS, this.#stop.signal);
      } catch {
        return;
      }
      const now = this.#env.clock.now();
      const expired = this.#queue.filter((q) => q.deadline <= now);
      if (expired.length > 0) {
        this.#queue = this.#queue.filter((q) => q.deadline > now);
        for (const q of expired) q.reject(this.#timeout(q.op));
      }
      for (const [id, p] of this.#pending) {
        if (p.deadline > now) continue;
        this.#settle(id);
        p.reject(this.#timeout(p.op));
      }
      this.#heartbeat(now);
    }
  }

  /**
   * A connection that has been silent for `heartbeatMs` gets a PING; if that goes unanswered for
   * another `heartbeatMs`, the broker is taken for gone (a machine that lost power sends nothing)
   * and the connection is dropped, so subscriptions reconnect instead of waiting forever.
   */
  #heartbeat(now: number): void {
    const conn = this.#conn;
    if (this.opts.heartbeatMs <= 0 || conn === null || !this.#handshaken || this.#pinging) return;
    // With requests waiting, silence counts twice as fast: a broker cut off by the network says
    // nothing, and those requests could go to another node (a produce to the new leader) as soon
    // as the connection is known lost.
    const every = this.#pending.size > 0 ? this.opts.heartbeatMs / 2 : this.opts.heartbeatMs;
    if (now - this.#lastHeardMs < every) return;
    this.#pinging = true;
    const id = this.#id();
    this.#pending.set(id, {
      op: "PING",
      resolve: () => (this.#pinging = false),
      reject: () => {
        this.#pinging = false;
        this.#lose(conn, new ConnectionError(`No answer from the broker for ${2 * every} ms`));
      },
      deadline: now + every,
    });
    this.#write(conn, encodeFrame(Op.PING, id, new Uint8Array(0)));
  }

  #timeout(op: OpName): GregorError {
    return new GregorError(
      ErrorCode.TIMEOUT,
      `${op} got no answer within ${this.opts.requestTimeoutMs} ms`,
    );
  }

  /**
   * Leaves the broker this connection talks to for the next of `servers` (if there is another),
   * because of `why`: requests in flight fail as on a lost connection, and the next one dials on.
   */
  moveOn(why: string): void {
    const conn = this.#conn;
    if (this.#closed || conn === null || this.addresses.length < 2) return;
    this.#lose(conn, new ConnectionError(`Left the broker: ${why}`));
  }

  /** Closes the connection for good; pending requests fail with ConnectionError. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    this.#setState("closed", "");
    this.#listeners.clear();
    const conn = this.#conn;
    if (conn !== null) this.#lose(conn, new ConnectionError("The client was closed"));
    this.#failQueue(new ConnectionError("The client was closed"));
  }

  /** True until `close()`. */
  get closed(): boolean {
    return this.#closed;
  }
}

/** Parses "host:port" (an IPv6 host in brackets: "[::1]:7070"). */
export function parseServer(s: string): { host: string; port: number } {
  const colon = s.lastIndexOf(":");
  const host = s.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const port = Number(s.slice(colon + 1));
  if (colon <= 0 || host === "" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new GregorError(
      ErrorCode.INVALID_REQUEST,
      `A server address must be "host:port", not ${JSON.stringify(s)}`,
    );
  }
  return { host, port };
}
