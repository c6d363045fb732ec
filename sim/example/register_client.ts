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

/** One connection to one replica, reconnected on demand, with requests matched by id. */
class ReplicaLink {
  readonly #env: Env;
  readonly #addr: Addr;
  #conn: Conn | null = null;
  #connecting: Promise<Conn> | null = null;
  #nextId = 1;
  readonly #waiting = new Map<number, (f: Frame | null) => void>();
  #sending: Promise<void> = Promise.resolve();

  constructor(env: Env, addr: Addr) {
    this.#env = env;
    this.#addr = addr;
  }

  /** Sends a request; resolves its reply, or null if the link failed first. */
  async call(op: number, body: Versioned): Promise<Frame | null> {
    if (this.#waiting.size >= LINK_INFLIGHT_MAX) return null;
    let conn: Conn;
    try {
      conn = await this.#open();
    } catch {
      return null;
    }
    const id = this.#nextId++;
    const answer = new Promise<Frame | null>((resolve) => this.#waiting.set(id, resolve));
    const frame = encodeFrame(op, id, body);
    this.#sending = this.#sending.then(() => writeAll(conn, frame)).catch(() => this.#fail(conn));
    return answer;
  }

  #open(): Promise<Conn> {
    if (this.#conn !== null) return Promise.resolve(this.#conn);
    if (this.#connecting === null) {
      this.#connecting = this.#env.net.connect(this.#addr, { timeoutMs: 300 }).then((conn) => {
        this.#conn = conn;
        void this.#readLoop(conn);
        return conn;
      }).finally(() => (this.#connecting = null));
    }
    return this.#connecting;
  }

  async #readLoop(conn: Conn): Promise<void> {
    const frames = new FrameReader();
    const buf = new Uint8Array(4096);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        frames.push(buf.subarray(0, n));
        for (let f = frames.next(); f !== null; f = frames.next()) {
          const resolve = this.#waiting.get(f.id);
          this.#waiting.delete(f.id);
          resolve?.(f);
        }
      }
    } catch {
      // Reset or garbage: fail everything in flight below and reconnect on the next call.
    }
    this.#fail(conn);
  }

  #fail(conn: Conn): void {
    if (this.#conn !== conn) return;
    this.#conn = null;
    conn.close();
    for (const resolve of this.#waiting.values()) resolve(null);
    this.#waiting.clear();
  }
}

/** Options for the client. */
export interface RegisterClientOptions {
  replicas: Addr[];
  /** Give up on an operation after this long (its outcome may then be unknown). */
  opTimeoutMs: number;
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
    this.#links = opts.replicas.map((a) => new ReplicaLink(env, a));
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
