// EXAMPLE: the register example's client. Writes go to every replica and count once a majority
// acknowledged them; reads ask every replica and take the highest version among a majority.

import type { Addr, Conn, Env } from "../../src/io/types.ts";
import { writeAll } from "../../src/io/util.ts";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  OP_GET,
  OP_OK,
  OP_PUT,
  OP_VALUE,
  type Versioned,
} from "./register_wire.ts";

/** Requests waiting for a reply on one link, at most. */
const LINK_INFLIGHT_MAX = 256;
/** How long a connection attempt may take, ms. */
const CONNECT_TIMEOUT_MS = 300;

/** A request waiting for its reply. */
interface Waiting {
  resolve: (f: Frame | null) => void;
  sentAtMs: number;
  /** `framesHeard` of its session when it was sent. */
  heardBefore: number;
}

/** One connection of a link and the requests waiting on it. */
interface Session {
  conn: Conn;
  /** Requests waiting for a reply, by id, oldest first; at most LINK_INFLIGHT_MAX. */
  waiting: Map<number, Waiting>;
  sending: Promise<void>;
  /** Frames received so far: a request that times out with none since it went out drops the link. */
  framesHeard: number;
  /** A timer is armed for the oldest waiting request. */
  watching: boolean;
  failed: boolean;
}

/** One connection to one replica, reconnected on demand, with requests matched by id. */
class ReplicaLink {
  readonly #env: Env;
  readonly #addr: Addr;
  readonly #requestTimeoutMs: number;
  #session: Session | null = null;
  #connecting: Promise<Session> | null = null;
  #nextId = 1;

  constructor(env: Env, addr: Addr, requestTimeoutMs: number) {
    this.#env = env;
    this.#addr = addr;
    this.#requestTimeoutMs = requestTimeoutMs;
  }

  /** Sends a request; resolves its reply, or null if the link failed or it timed out first. */
  async call(op: number, body: Versioned): Promise<Frame | null> {
    if ((this.#session?.waiting.size ?? 0) >= LINK_INFLIGHT_MAX) return null;
    let s: Session;
    try {
      s = await this.#open();
    } catch {
      return null;
    }
    // The connection may have failed, or filled up, while this call waited for it.
    if (s.failed || s.waiting.size >= LINK_INFLIGHT_MAX) return null;
    const id = this.#nextId++;
    const answer = new Promise<Frame | null>((resolve) => {
      s.waiting.set(id, {
        resolve,
        sentAtMs: this.#env.clock.now(),
        heardBefore: s.framesHeard,
      });
    });
    this.#watch(s);
    const frame = encodeFrame(op, id, body);
    s.sending = s.sending.then(() => writeAll(s.conn, frame)).catch(() => this.#fail(s));
    return answer;
  }

  /** One timer per connection, for its oldest request: expires what is overdue, then re-arms. */
  #watch(s: Session): void {
    if (s.watching || s.failed) return;
    const oldest = s.waiting.values().next().value;
    if (oldest === undefined) return;
    s.watching = true;
    const dueMs = oldest.sentAtMs + this.#requestTimeoutMs - this.#env.clock.now();
    void this.#env.clock.sleep(dueMs).then(() => {
      s.watching = false;
      if (s.failed) return;
      const now = this.#env.clock.now();
      let silent = false;
      for (const [id, w] of s.waiting) {
        if (w.sentAtMs + this.#requestTimeoutMs > now) break;
        s.waiting.delete(id);
        w.resolve(null);
        if (s.framesHeard === w.heardBefore) silent = true;
      }
      // Not a word since an expired request went out: the replica may be gone without a FIN or
      // RST (a power loss sends nothing), so drop the connection and reconnect on the next call.
      if (silent) this.#fail(s);
      else this.#watch(s);
    });
  }

  #open(): Promise<Session> {
    if (this.#session !== null) return Promise.resolve(this.#session);
    if (this.#connecting === null) {
      const connect = this.#env.net.connect(this.#addr, { timeoutMs: CONNECT_TIMEOUT_MS });
      this.#connecting = connect.then((conn) => {
        const s: Session = {
          conn,
          waiting: new Map(),
          sending: Promise.resolve(),
          framesHeard: 0,
          watching: false,
          failed: false,
        };
        this.#session = s;
        void this.#readLoop(s);
        return s;
      }).finally(() => (this.#connecting = null));
    }
    return this.#connecting;
  }

  async #readLoop(s: Session): Promise<void> {
    const frames = new FrameReader();
    const buf = new Uint8Array(4096);
    try {
      for (;;) {
        const n = await s.conn.read(buf);
        if (n === null) break;
        frames.push(buf.subarray(0, n));
        for (let f = frames.next(); f !== null; f = frames.next()) {
          s.framesHeard++;
          const w = s.waiting.get(f.id);
          s.waiting.delete(f.id);
          w?.resolve(f);
        }
      }
    } catch {
      // Reset or garbage: fail everything in flight below and reconnect on the next call.
    }
    this.#fail(s);
  }

  #fail(s: Session): void {
    if (s.failed) return;
    s.failed = true;
    if (this.#session === s) this.#session = null;
    s.conn.close();
    for (const w of s.waiting.values()) w.resolve(null);
    s.waiting.clear();
  }
}

/** Options for the client. */
export interface RegisterClientOptions {
  replicas: Addr[];
  /** Give up on an operation after this long (its outcome may then be unknown). */
  opTimeoutMs: number;
  /**
   * Give up on one replica's reply after this long; a connection that stays silent that long is
   * dropped and reopened. Default `opTimeoutMs`.
   */
  requestTimeoutMs?: number;
}

/** Outcome of a replicated put: acked by a majority, or unknown. */
export type PutOutcome = "ok" | "unknown";

/** A client of the replicated register store. */
export class RegisterClient {
  readonly #env: Env;
  readonly #links: ReplicaLink[];
  readonly #opts: RegisterClientOptions;

  constructor(env: Env, opts: RegisterClientOptions) {
    this.#env = env;
    this.#opts = opts;
    const requestTimeoutMs = opts.requestTimeoutMs ?? opts.opTimeoutMs;
    this.#links = opts.replicas.map((a) => new ReplicaLink(env, a, requestTimeoutMs));
  }

  get #majority(): number {
    return Math.floor(this.#links.length / 2) + 1;
  }

  /** Writes `v` to every replica; "ok" once a majority acknowledged it durable. */
  async put(v: Versioned): Promise<PutOutcome> {
    const replies = await this.#quorum(OP_PUT, v, (f) => f.op === OP_OK);
    return replies === null ? "unknown" : "ok";
  }

  /** Reads `key` from a majority; the highest version wins. Null if no majority answered. */
  async get(key: string): Promise<Versioned | null> {
    const replies = await this.#quorum(
      OP_GET,
      { key, version: 0, value: "" },
      (f) => f.op === OP_VALUE && f.body.key === key,
    );
    if (replies === null) return null;
    let best = replies[0]!.body;
    for (const r of replies) if (r.body.version > best.version) best = r.body;
    return best;
  }

  /** Sends to all replicas; resolves the first majority of good replies, or null. */
  #quorum(op: number, body: Versioned, good: (f: Frame) => boolean): Promise<Frame[] | null> {
    const need = this.#majority;
    const total = this.#links.length;
    return new Promise((resolve) => {
      const oks: Frame[] = [];
      let bad = 0;
      let done = false;
      const abort = new AbortController();
      const finish = (result: Frame[] | null) => {
        if (done) return;
        done = true;
        abort.abort();
        resolve(result);
      };
      this.#env.clock.sleep(this.#opts.opTimeoutMs, abort.signal).then(
        () => finish(null),
        () => {},
      );
      for (const link of this.#links) {
        void link.call(op, body).then((f) => {
          if (f !== null && good(f)) oks.push(f);
          else bad++;
          if (oks.length >= need) finish(oks.slice());
          else if (total - bad < need) finish(null);
        });
      }
    });
  }
}
