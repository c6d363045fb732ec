// The cluster port admits only the cluster's own nodes: before any gossip or Raft frame, the two
// ends of every cluster connection prove to each other that they hold the cluster secret. Each
// sends a fresh nonce; each then answers with an HMAC-SHA-256, keyed by the secret, over both node
// ids and both nonces. A captured proof is worth nothing on another connection (new nonces) or
// for another node id (the ids are in it), and a process without the secret learns nothing from a
// node (the node proves itself only after the dialer did). While the cluster moves to a new secret,
// a node may also hold the previous one: it proves both and accepts either, so nodes restarted one
// at a time with the new secret keep talking to those not yet restarted. It is a Network wrapper,
// like TlsNetwork, so gossip and the Raft transport listen and dial through it unchanged.

import { GUARD_DONE } from "../io/errors.ts";
import type {
  Addr,
  Conn,
  ConnectOptions,
  Env,
  Listener,
  ListenOptions,
  Network,
  Random,
} from "../io/types.ts";
import { readExactly, writeAll } from "../io/util.ts";
import { ErrorCode, errorName, MalformedError } from "../protocol/errors.ts";
import { encodeFrame, Flag, type Frame, FrameParser, HEADER_BYTES } from "../protocol/frame.ts";
import {
  type ClusterHello,
  type ClusterProof,
  decode,
  encode,
  ERROR_SCHEMA,
  type ErrorPayload,
  Op,
  opName,
  SCHEMAS,
} from "../protocol/messages.ts";
import { Writer } from "../protocol/wire.ts";
import { isNodeId } from "./gossip/limits.ts";

/** Fewest and most bytes of a cluster secret (UTF-8): fewer can be guessed, more is a mistake. */
export const CLUSTER_SECRET_BYTES_MIN = 16;
export const CLUSTER_SECRET_BYTES_MAX = 1024;
/** Bytes of each side's nonce. */
export const CLUSTER_NONCE_BYTES = 32;
/** Bytes of a proof: one HMAC-SHA-256. */
const PROOF_BYTES = 32;
/**
 * Secrets a node holds at most (the current one and the previous one), and so HMACs a dialer's
 * CLUSTER_PROOF carries at most, one after another.
 */
const SECRETS_MAX = 2;
/** Largest handshake frame payload: an id, a nonce, their length prefixes. */
const HANDSHAKE_PAYLOAD_BYTES_MAX = 256;
/** Defaults of the optional `ClusterAuthOptions`. */
export const CLUSTER_AUTH_DEFAULTS = {
  handshakeTimeoutMs: 5_000,
  handshakingMax: 64,
  readyMax: 64,
} as const;
/** A refusal of the same kind from the same address is logged again only after this long, ms. */
export const REFUSAL_LOG_INTERVAL_MS = 60_000;
/** Addresses whose refusals are remembered for that at most; past it, the oldest is forgotten. */
const REFUSAL_KEYS_MAX = 256;
/** After a failed accept (e.g. out of file descriptors), wait this long before the next, ms. */
const ACCEPT_RETRY_MS = 100;

/** What each proof is over, so a dialer's proof can never pass as a listener's or the reverse. */
const DIALER_LABEL = "GregorMQ cluster v1 dialer";
const LISTENER_LABEL = "GregorMQ cluster v1 listener";

/** Options for a `ClusterAuthNetwork`. */
export interface ClusterAuthOptions {
  /** This node's id, which it proves itself as. */
  nodeId: string;
  /** The cluster secret every node holds: 16 to 1024 bytes of UTF-8. */
  secret: string;
  /**
   * The secret the cluster is moving away from, while it does (a rolling restart): this node also
   * proves it when dialing and accepts peers that prove only it. Same length rules as `secret`.
   */
  previousSecret?: string;
  /** A handshake not finished within this long fails (both ways), ms. Default 5000. */
  handshakeTimeoutMs?: number;
  /** Inbound handshakes at once; a connection beyond it is closed at once. Default 64. */
  handshakingMax?: number;
  /** Authenticated connections waiting for `accept`; more are closed. Default 64. */
  readyMax?: number;
  /**
   * Told of each refused peer, in a line that says which end and why; one per address and kind
   * of refusal every REFUSAL_LOG_INTERVAL_MS.
   */
  onLog?: (level: "warn" | "error", msg: string) => void;
}

/** Counters of one `ClusterAuthNetwork`. */
export interface ClusterAuthStats {
  /** Connections that proved the secret, both ways. */
  accepted: number;
  dialed: number;
  /** Connections refused: the peer sent no, a bad or a late proof, or refused ours. */
  refusedInbound: number;
  refusedOutbound: number;
}

/** A cluster connection refused in the handshake: the other end lacks the secret, or refused ours. */
export class ClusterAuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ClusterAuthError";
  }
}

type Resolved = Required<Omit<ClusterAuthOptions, "onLog" | "previousSecret">>;

/**
 * Wraps a Network so that every listener it makes hands out only connections whose other end
 * proved the cluster secret, and every connection it dials proves it and checks the other end's.
 * Such a connection carries the proven node id as `peerNodeId`.
 *
 * @example
 * ```ts ignore
 * const net = new ClusterAuthNetwork(env, { nodeId: "node-a", secret: "…at least 16 bytes…" });
 * const gossip = await Gossip.start({ ...env, net }, gossipOptions);
 * ```
 */
export class ClusterAuthNetwork implements Network {
  readonly resolve?: (name: string) => Promise<string[]>;
  readonly #env: Env;
  readonly #opts: Resolved;
  /** The current secret first, then the previous one, if any. */
  readonly #secrets: Uint8Array[];
  readonly #random: Random;
  readonly #onLog: (level: "warn" | "error", msg: string) => void;
  /** Per address and kind of refusal, when it was last logged. */
  readonly #logged = new Map<string, number>();
  readonly #counters: ClusterAuthStats = {
    accepted: 0,
    dialed: 0,
    refusedInbound: 0,
    refusedOutbound: 0,
  };

  /**
   * @param env Its `net` carries the bytes (plain TCP or TLS), its clock times the handshakes, its
   * random makes the nonces, its crypto the proofs.
   * @param opts This node's id, the secret, limits; see `ClusterAuthOptions`.
   * @throws RangeError for a node id that is not one, or a secret of the wrong length.
   */
  constructor(env: Env, opts: ClusterAuthOptions) {
    this.#opts = resolveOptions(opts);
    this.#env = env;
    this.#onLog = opts.onLog ?? (() => {});
    const inner = env.net;
    if (inner.resolve !== undefined) this.resolve = (name) => inner.resolve!(name);
    const held = opts.previousSecret === undefined
      ? [opts.secret]
      : [opts.secret, opts.previousSecret];
    this.#secrets = held.map((s) => new TextEncoder().encode(s));
    // Its own stream: the handshakes' draws must not shift those of the node's other parts.
    this.#random = env.random.fork(`cluster-auth-${opts.nodeId}`);
  }

  /** Counters since start. */
  get stats(): ClusterAuthStats {
    return { ...this.#counters };
  }

  async listen(addr: Addr, opts?: ListenOptions): Promise<Listener> {
    const inner = await this.#env.net.listen(addr, opts);
    return new AuthListener(
      inner,
      this.#opts,
      (conn, timedOut) => this.#accept(conn, timedOut),
      this.#env,
    );
  }

  async connect(addr: Addr, opts: ConnectOptions = {}): Promise<Conn> {
    const conn = await this.#env.net.connect(addr, opts);
    const guard = new AbortController();
    const timeoutMs = opts.timeoutMs ?? this.#opts.handshakeTimeoutMs;
    let timedOut = false;
    this.#env.clock.sleep(timeoutMs, guard.signal).then(() => {
      timedOut = true;
      conn.close();
    }, () => {});
    try {
      return await this.#dial(conn);
    } catch (err) {
      conn.close();
      this.#counters.refusedOutbound++;
      const why = timedOut
        ? `it did not finish the cluster handshake within ${timeoutMs} ms`
        : err instanceof ClusterAuthError
        ? err.message
        : `the handshake failed (${(err as Error).message || "the connection closed"})`;
      this.#log("error", addr, "out", `Cluster peer at ${key(addr)} refused: ${why}`);
      throw err instanceof ClusterAuthError
        ? err
        : new ClusterAuthError(`Cluster handshake with ${key(addr)} failed: ${why}`);
    } finally {
      guard.abort(GUARD_DONE);
    }
  }

  /** The dialer's side: HELLO, the listener's HELLO, our proof, the listener's proof. */
  async #dial(conn: Conn): Promise<Conn> {
    const me = this.#opts.nodeId;
    const myNonce = this.#random.secureBytes(CLUSTER_NONCE_BYTES);
    const correlationId = this.#random.u32();
    const hello: ClusterHello = { nodeId: me, nonce: myNonce };
    await writeAll(
      conn,
      encodeFrame(Op.CLUSTER_HELLO, correlationId, encode(SCHEMAS.CLUSTER_HELLO.request, hello)),
    );
    const answer = await readHandshakeFrame(conn);
    const theirs = decode<ClusterHello>(
      SCHEMAS.CLUSTER_HELLO.response,
      expectResponse(answer, Op.CLUSTER_HELLO, correlationId),
      "CLUSTER_HELLO response",
    );
    const peer = theirs.nodeId;
    if (!isNodeId(peer) || peer === me) {
      throw new ClusterAuthError(`it answered as node ${JSON.stringify(peer)}, not another node`);
    }
    const theirNonce = checkNonce(theirs.nonce);
    // One HMAC per secret held: a peer that holds either (not yet restarted with the new one, or
    // already) finds one it can check.
    const proofs: Uint8Array[] = [];
    for (const secret of this.#secrets) {
      proofs.push(await this.#sign(secret, DIALER_LABEL, me, peer, myNonce, theirNonce));
    }
    const proof: ClusterProof = { proof: concat(proofs) };
    await writeAll(
      conn,
      encodeFrame(Op.CLUSTER_PROOF, correlationId, encode(SCHEMAS.CLUSTER_PROOF.request, proof)),
    );
    const reply = await readHandshakeFrame(conn);
    const theirProof = decode<ClusterProof>(
      SCHEMAS.CLUSTER_PROOF.response,
      expectResponse(reply, Op.CLUSTER_PROOF, correlationId, peer),
      "CLUSTER_PROOF response",
    ).proof;
    if (await this.#verify(theirProof, LISTENER_LABEL, me, peer, myNonce, theirNonce) === null) {
      throw new ClusterAuthError(
        `it claims to be node ${peer} but its proof does not verify: it holds another cluster secret`,
      );
    }
    this.#counters.dialed++;
    return new AuthenticatedConn(conn, peer);
  }

  /** The listener's side; null (the connection closed, the refusal logged) if it fails. */
  async #accept(conn: Conn, timedOut: () => boolean): Promise<Conn | null> {
    const from = key(conn.remote);
    let correlationId = 0;
    let peer: string | null = null;
    try {
      const first = await readHandshakeFrame(conn);
      correlationId = first.correlationId;
      if (first.opcode !== Op.CLUSTER_HELLO || first.flags !== 0) {
        const what = opName(first.opcode) ?? `opcode 0x${first.opcode.toString(16)}`;
        throw new Refusal(
          "unauthenticated",
          `it sent ${what} without authenticating first; give that node the cluster secret`,
        );
      }
      const hello = decode<ClusterHello>(
        SCHEMAS.CLUSTER_HELLO.request,
        first.payload,
        "CLUSTER_HELLO",
      );
      if (!isNodeId(hello.nodeId)) {
        throw new Refusal("malformed", `its node id ${JSON.stringify(hello.nodeId)} is not one`);
      }
      const me = this.#opts.nodeId;
      // A seed list that names this node (a DNS name resolving to every node) dials itself.
      if (hello.nodeId === me) throw new Refusal("self", "");
      peer = hello.nodeId;
      const theirNonce = checkNonce(hello.nonce);
      const myNonce = this.#random.secureBytes(CLUSTER_NONCE_BYTES);
      const answer: ClusterHello = { nodeId: me, nonce: myNonce };
      await writeAll(
        conn,
        encodeFrame(
          Op.CLUSTER_HELLO,
          correlationId,
          encode(SCHEMAS.CLUSTER_HELLO.response, answer),
          Flag.RESPONSE,
        ),
      );
      const second = await readHandshakeFrame(conn);
      if (
        second.opcode !== Op.CLUSTER_PROOF || second.flags !== 0 ||
        second.correlationId !== correlationId
      ) {
        throw new Refusal("malformed", "it did not send CLUSTER_PROOF after CLUSTER_HELLO");
      }
      const proof = decode<ClusterProof>(
        SCHEMAS.CLUSTER_PROOF.request,
        second.payload,
        "CLUSTER_PROOF",
      ).proof;
      const shared = await this.#verify(proof, DIALER_LABEL, peer, me, theirNonce, myNonce);
      if (shared === null) {
        throw new Refusal(
          "proof",
          `its proof as node ${peer} does not verify: it holds another cluster secret, or none`,
        );
      }
      // Signed with the secret the dialer proved, the one both ends are sure to hold.
      const mine: ClusterProof = {
        proof: await this.#sign(shared, LISTENER_LABEL, peer, me, theirNonce, myNonce),
      };
      await writeAll(
        conn,
        encodeFrame(
          Op.CLUSTER_PROOF,
          correlationId,
          encode(SCHEMAS.CLUSTER_PROOF.response, mine),
          Flag.RESPONSE,
        ),
      );
      this.#counters.accepted++;
      return new AuthenticatedConn(conn, peer);
    } catch (err) {
      const refusal = err instanceof Refusal ? err : timedOut()
        ? new Refusal(
          "timeout",
          `it did not finish the cluster handshake within ${this.#opts.handshakeTimeoutMs} ms`,
        )
        : new Refusal(
          "malformed",
          `the handshake failed (${(err as Error).message || "the connection closed"})`,
        );
      if (refusal.kind !== "self") {
        this.#counters.refusedInbound++;
        this.#log(
          "warn",
          conn.remote,
          refusal.kind,
          `Cluster connection from ${from}${
            peer === null ? "" : ` (claiming node ${peer})`
          } refused: ${refusal.message}`,
        );
      }
      // Told in one line that cannot be mistaken for an answer, as every refusal looks alike.
      const payload = encode(ERROR_SCHEMA, {
        code: ErrorCode.AUTHENTICATION_FAILED,
        message:
          "Cluster authentication failed: this node admits only nodes with the cluster secret",
      });
      await writeAll(
        conn,
        encodeFrame(0, correlationId, payload, Flag.RESPONSE | Flag.ERROR),
      ).catch(() => {});
      conn.close();
      return null;
    }
  }

  /** This end's proof under `secret`: the HMAC of the transcript. */
  #sign(
    secret: Uint8Array,
    label: string,
    dialer: string,
    listener: string,
    dialerNonce: Uint8Array,
    listenerNonce: Uint8Array,
  ): Promise<Uint8Array> {
    return this.#env.crypto.hmacSha256(
      secret,
      transcript(label, dialer, listener, dialerNonce, listenerNonce),
    );
  }

  /**
   * The secret under which one of the HMACs in `proof` (one to SECRETS_MAX of them, one after
   * another) is the other end's HMAC of the transcript, or null if none is.
   */
  async #verify(
    proof: Uint8Array | null,
    label: string,
    dialer: string,
    listener: string,
    dialerNonce: Uint8Array,
    listenerNonce: Uint8Array,
  ): Promise<Uint8Array | null> {
    if (proof === null || proof.length === 0 || proof.length % PROOF_BYTES !== 0) return null;
    if (proof.length / PROOF_BYTES > SECRETS_MAX) return null;
    for (const secret of this.#secrets) {
      const expected = await this.#sign(
        secret,
        label,
        dialer,
        listener,
        dialerNonce,
        listenerNonce,
      );
      for (let at = 0; at < proof.length; at += PROOF_BYTES) {
        if (sameBytes(proof.subarray(at, at + PROOF_BYTES), expected)) return secret;
      }
    }
    return null;
  }

  /** Logs a refusal unless one of the same kind from the same address was logged lately. */
  #log(level: "warn" | "error", addr: Addr, kind: string, msg: string): void {
    const k = `${kind} ${addr.host}`;
    const now = this.#env.clock.now();
    const last = this.#logged.get(k);
    if (last !== undefined && now - last < REFUSAL_LOG_INTERVAL_MS) return;
    this.#logged.delete(k);
    if (this.#logged.size >= REFUSAL_KEYS_MAX) {
      this.#logged.delete(this.#logged.keys().next().value as string);
    }
    this.#logged.set(k, now);
    this.#onLog(level, msg);
  }
}

/** Why the listener refused a connection, and which kind of refusal it was (for the log's limit). */
class Refusal extends Error {
  readonly kind: string;
  constructor(kind: string, message: string) {
    super(message);
    this.kind = kind;
  }
}

/** A listener whose `accept` yields only connections that proved the secret. */
class AuthListener implements Listener {
  readonly addr: Addr;
  readonly #inner: Listener;
  readonly #opts: Resolved;
  readonly #handshake: (conn: Conn, timedOut: () => boolean) => Promise<Conn | null>;
  readonly #env: Env;
  readonly #ready: Conn[] = [];
  readonly #waiters: ((conn: Conn | null) => void)[] = [];
  readonly #pending = new Set<Conn>();
  readonly #stop = new AbortController();
  #closed = false;
  readonly reloadTls?: Listener["reloadTls"];

  constructor(
    inner: Listener,
    opts: Resolved,
    handshake: (conn: Conn, timedOut: () => boolean) => Promise<Conn | null>,
    env: Env,
  ) {
    this.#inner = inner;
    this.addr = inner.addr;
    this.#opts = opts;
    this.#handshake = handshake;
    this.#env = env;
    if (inner.reloadTls !== undefined) this.reloadTls = (tls) => inner.reloadTls!(tls);
    void this.#loop();
  }

  accept(): Promise<Conn | null> {
    const ready = this.#ready.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    this.#inner.close();
    for (const c of this.#ready.splice(0)) c.close();
    for (const c of this.#pending) c.close();
    for (const w of this.#waiters.splice(0)) w(null);
  }

  async #loop(): Promise<void> {
    while (!this.#closed) {
      let conn: Conn | null;
      try {
        conn = await this.#inner.accept();
      } catch {
        try {
          await this.#env.clock.sleep(ACCEPT_RETRY_MS, this.#stop.signal);
        } catch {
          return;
        }
        continue;
      }
      if (conn === null) break;
      if (this.#closed || this.#pending.size >= this.#opts.handshakingMax) {
        conn.close();
        continue;
      }
      void this.#admit(conn);
    }
    this.close();
  }

  /** Runs one handshake under its deadline and hands the connection on if it passed. */
  async #admit(conn: Conn): Promise<void> {
    this.#pending.add(conn);
    const guard = new AbortController();
    let timedOut = false;
    this.#env.clock.sleep(this.#opts.handshakeTimeoutMs, guard.signal).then(() => {
      timedOut = true;
      conn.close();
    }, () => {});
    let authed: Conn | null;
    try {
      authed = await this.#handshake(conn, () => timedOut);
    } finally {
      guard.abort(GUARD_DONE);
      this.#pending.delete(conn);
    }
    if (authed === null) return;
    if (this.#closed) {
      authed.close();
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) waiter(authed);
    else if (this.#ready.length < this.#opts.readyMax) this.#ready.push(authed);
    else authed.close();
  }
}

/** A connection that passed the handshake: the inner one, with the node id the peer proved. */
class AuthenticatedConn implements Conn {
  readonly #inner: Conn;
  readonly peerNodeId: string;
  readonly local: Addr;
  readonly remote: Addr;
  readonly tlsPeerSubject?: string;

  constructor(inner: Conn, peerNodeId: string) {
    this.#inner = inner;
    this.peerNodeId = peerNodeId;
    this.local = inner.local;
    this.remote = inner.remote;
    if (inner.tlsPeerSubject !== undefined) this.tlsPeerSubject = inner.tlsPeerSubject;
  }

  read(buf: Uint8Array): Promise<number | null> {
    return this.#inner.read(buf);
  }

  write(bytes: Uint8Array): Promise<number> {
    return this.#inner.write(bytes);
  }

  close(): void {
    this.#inner.close();
  }
}

/**
 * One handshake frame, read exactly (header, then payload), so no byte that follows it is taken
 * from the stream. Throws ClusterAuthError at end of stream, MalformedError for a bad frame.
 */
async function readHandshakeFrame(conn: Conn): Promise<Frame> {
  const header = new Uint8Array(HEADER_BYTES);
  if (!await readExactly(conn, header)) {
    throw new ClusterAuthError("it closed the connection during the handshake");
  }
  const parser = new FrameParser({ payloadBytesMax: HANDSHAKE_PAYLOAD_BYTES_MAX });
  parser.push(header);
  let r = parser.next();
  if (r.kind === "need") {
    const length = new DataView(header.buffer).getUint32(12);
    const payload = new Uint8Array(length);
    await readExactly(conn, payload);
    parser.push(payload);
    r = parser.next();
  }
  if (r.kind === "error") throw new MalformedError(r.message);
  if (r.kind !== "frame") throw new MalformedError("A handshake frame ended short");
  return r.frame;
}

/** The payload of the expected answer; a ClusterAuthError for an error frame or anything else. */
function expectResponse(
  f: Frame,
  opcode: number,
  correlationId: number,
  peer?: string,
): Uint8Array {
  if ((f.flags & Flag.ERROR) !== 0) {
    const e = decode<ErrorPayload>(ERROR_SCHEMA, f.payload, "error");
    const code = errorName(e.code) ?? `code ${e.code}`;
    throw new ClusterAuthError(
      e.code === ErrorCode.AUTHENTICATION_FAILED
        ? `${peer === undefined ? "it" : `node ${peer}`} refused this node's proof: the cluster ` +
          `secrets differ (${code}: ${e.message})`
        : `it does not ask for the cluster secret, so it is not trusted (it answered ${code}: ${e.message})`,
    );
  }
  if (f.opcode !== opcode || f.flags !== Flag.RESPONSE || f.correlationId !== correlationId) {
    throw new ClusterAuthError(
      `it answered ${opName(opcode)} with ${opName(f.opcode) ?? "an unknown frame"}`,
    );
  }
  return f.payload;
}

function checkNonce(nonce: Uint8Array | null): Uint8Array {
  if (nonce === null || nonce.length !== CLUSTER_NONCE_BYTES) {
    throw new MalformedError(`A cluster nonce must be ${CLUSTER_NONCE_BYTES} bytes`);
  }
  return nonce;
}

/** What a proof signs: the label, the dialer's and the listener's ids and nonces, each framed. */
function transcript(
  label: string,
  dialer: string,
  listener: string,
  dialerNonce: Uint8Array,
  listenerNonce: Uint8Array,
): Uint8Array {
  return new Writer(256).string(label).string(dialer).string(listener).bytes(dialerNonce).bytes(
    listenerNonce,
  ).finish();
}

/** True if `a` and `b` hold the same bytes, in a time that does not depend on where they differ. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function key(a: Addr): string {
  return `${a.host}:${a.port}`;
}

/** Throws RangeError, saying why, unless `secret` is a usable cluster secret. */
export function checkClusterSecret(secret: string): void {
  const bytes = new TextEncoder().encode(secret).length;
  if (bytes < CLUSTER_SECRET_BYTES_MIN || bytes > CLUSTER_SECRET_BYTES_MAX) {
    throw new RangeError(
      `The cluster secret is ${bytes} bytes: it must be ${CLUSTER_SECRET_BYTES_MIN} to ` +
        `${CLUSTER_SECRET_BYTES_MAX} (make one with: openssl rand -base64 32)`,
    );
  }
}

function resolveOptions(opts: ClusterAuthOptions): Resolved {
  if (!isNodeId(opts.nodeId)) {
    throw new RangeError(`Invalid cluster auth option nodeId ${JSON.stringify(opts.nodeId)}`);
  }
  checkClusterSecret(opts.secret);
  if (opts.previousSecret !== undefined) checkClusterSecret(opts.previousSecret);
  const o: Resolved = {
    nodeId: opts.nodeId,
    secret: opts.secret,
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? CLUSTER_AUTH_DEFAULTS.handshakeTimeoutMs,
    handshakingMax: opts.handshakingMax ?? CLUSTER_AUTH_DEFAULTS.handshakingMax,
    readyMax: opts.readyMax ?? CLUSTER_AUTH_DEFAULTS.readyMax,
  };
  for (const name of ["handshakeTimeoutMs", "handshakingMax", "readyMax"] as const) {
    if (!(Number.isInteger(o[name]) && o[name] > 0)) {
      throw new RangeError(
        `Invalid cluster auth option ${name} ${o[name]}: must be an integer > 0`,
      );
    }
  }
  return o;
}
