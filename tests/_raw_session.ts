// A bare client connection for tests that must send exact frames (a replayed SCRAM message, a
// fuzzed one): one request at a time, each answered by its response, its error, or the close.

import { Flag, FrameParser } from "../src/protocol/frame.ts";
import {
  decode,
  encodeFramed,
  ERROR_SCHEMA,
  Op,
  type OpName,
  SCHEMAS,
} from "../src/protocol/messages.ts";

/** Largest response payload a session accepts. */
const RESPONSE_BYTES_MAX = 1024 * 1024;

/** What came back for one request. */
export type Answer =
  | { kind: "ok"; body: Record<string, unknown> }
  | { kind: "error"; code: number; message: string }
  | { kind: "closed" };

/** One TCP connection to a broker's client port. */
export class RawSession {
  readonly #conn: Deno.TcpConn;
  readonly #parser = new FrameParser({ payloadBytesMax: RESPONSE_BYTES_MAX });
  readonly #buf = new Uint8Array(64 * 1024);
  #nextId = 1;
  #ended = false;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  /** Connects to 127.0.0.1:`port`. */
  static async open(port: number): Promise<RawSession> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new RawSession(conn);
  }

  /** Sends `op` with `body` encoded by its schema. */
  call(op: OpName, body: object): Promise<Answer> {
    return this.send(
      op,
      encodeFramed(SCHEMAS[op].request, body, { opcode: Op[op], correlationId: this.#nextId }),
    );
  }

  /** Sends `frame` (a request of `op` with the next correlation id) and reads its answer. */
  async send(op: OpName, frame: Uint8Array): Promise<Answer> {
    const id = this.#nextId++;
    try {
      for (let off = 0; off < frame.length;) off += await this.#conn.write(frame.subarray(off));
    } catch {
      this.#ended = true;
      return { kind: "closed" };
    }
    for (;;) {
      const r = this.#parser.next();
      if (r.kind === "frame") {
        const f = r.frame;
        if (f.correlationId !== id && f.correlationId !== 0) continue;
        if ((f.flags & Flag.ERROR) !== 0) {
          const e = decode<{ code: number; message: string }>(ERROR_SCHEMA, f.payload, "error");
          return { kind: "error", code: e.code, message: e.message };
        }
        return { kind: "ok", body: decode(SCHEMAS[op].response, f.payload, `${op} response`) };
      }
      if (r.kind === "error") throw new Error(`The broker sent a bad frame: ${r.message}`);
      if (this.#ended) return { kind: "closed" };
      let n: number | null;
      try {
        n = await this.#conn.read(this.#buf);
      } catch {
        n = null;
      }
      if (n === null) {
        this.#ended = true;
        continue;
      }
      this.#parser.push(this.#buf.slice(0, n));
    }
  }

  /** The next correlation id `send` will expect an answer to. */
  get nextCorrelationId(): number {
    return this.#nextId;
  }

  /** Resolves true once the broker has closed the connection (reads end), within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    const timer = setTimeout(() => this.close(), ms);
    try {
      while (!this.#ended) {
        const n = await this.#conn.read(this.#buf).catch(() => null);
        if (n === null) return !this.#closedByUs;
      }
      return true;
    } finally {
      clearTimeout(timer);
    }
  }

  #closedByUs = false;

  close(): void {
    if (this.#closedByUs) return;
    this.#closedByUs = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** HELLO's request body for a test client. */
export const HELLO_BODY = { versionMin: 1, versionMax: 1, clientId: "raw-test", credential: null };
