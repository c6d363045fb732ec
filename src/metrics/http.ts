// A tiny HTTP/1.1 server over the Network seam for `/metrics`, `/healthz` and `/readyz`: one
// request per connection (Connection: close), a bounded request head, and deadlines for reading it
// and writing the answer. A bad request gets 400 and costs only its own connection; slow clients
// cannot crowd out a health check (see `CONNECTIONS_MAX`).

import { GUARD_DONE } from "../io/errors.ts";
import type { Addr, Conn, Env, Listener } from "../io/types.ts";
import { writeAll } from "../io/util.ts";

/** The default metrics port. */
export const DEFAULT_METRICS_PORT = 7071;
/** Bytes of a request head (request line and headers) at most; a longer one gets 400. */
export const REQUEST_BYTES_MAX = 8 * 1024;
/**
 * Time a client gets to send its request head, ms; then the connection is closed. A probe or a
 * scraper sends its head in one packet right after connecting.
 */
export const READ_TIMEOUT_MS = 2_000;
/** Time an answer gets to be written, ms; a client that does not read it is cut off. */
export const WRITE_TIMEOUT_MS = 5_000;
/**
 * Connections served at once at most. When a new one comes at the limit, the oldest connection
 * still sending its request head is closed to make room (a slow client cannot hold a slot a health
 * check needs); only if every slot is answering a request is the new connection closed.
 */
export const CONNECTIONS_MAX = 64;

/** An answer to one request. */
export interface HttpResponse {
  status: number;
  contentType: string;
  body: string;
}

/** What the server answers with. */
export interface HttpRoutes {
  /** The exposition text for `GET /metrics`. */
  metrics(): Promise<HttpResponse>;
  /**
   * Whether the node serves clients: true answers `GET /readyz` with 200; false or a reason (shown
   * in the body, e.g. why storage is failing) with 503.
   */
  ready(): boolean | string;
  /**
   * Warnings a ready node adds to its `/readyz` body, one a line after "ready" (it still answers
   * 200): e.g. a cluster whose metadata group cannot lose a node yet.
   */
  warnings?(): string[];
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  500: "Internal Server Error",
  503: "Service Unavailable",
};
const TEXT = "text/plain; charset=utf-8";

/** A running metrics and health server. */
export class HttpServer {
  readonly #env: Env;
  readonly #listener: Listener;
  readonly #routes: HttpRoutes;
  /** Open connections, oldest first, and whether their request head has arrived. */
  readonly #conns = new Map<Conn, { headRead: boolean }>();
  /** Connections closed to make room for newer ones. */
  evicted = 0;
  /** Resolves when the accept loop ends (after `close`). */
  readonly done: Promise<void>;

  private constructor(env: Env, listener: Listener, routes: HttpRoutes) {
    this.#env = env;
    this.#listener = listener;
    this.#routes = routes;
    this.done = this.#acceptLoop();
  }

  /** Binds `addr` and serves until closed. */
  static async start(env: Env, addr: Addr, routes: HttpRoutes): Promise<HttpServer> {
    return new HttpServer(env, await env.net.listen(addr), routes);
  }

  /** The bound address (the real port if 0 was asked for). */
  get addr(): Addr {
    return this.#listener.addr;
  }

  /** Stops accepting and closes open connections. */
  async close(): Promise<void> {
    this.#listener.close();
    for (const c of this.#conns.keys()) c.close();
    await this.done;
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      const conn = await this.#listener.accept();
      if (conn === null) return;
      if (this.#conns.size >= CONNECTIONS_MAX && !this.#evictSlowest()) {
        conn.close();
        continue;
      }
      const state = { headRead: false };
      this.#conns.set(conn, state);
      void this.#serve(conn, state).catch(() => {}).finally(() => {
        conn.close();
        this.#conns.delete(conn);
      });
    }
  }

  /** Closes the oldest connection still sending its request head; false if there is none. */
  #evictSlowest(): boolean {
    for (const [conn, state] of this.#conns) {
      if (state.headRead) continue;
      this.#conns.delete(conn);
      conn.close();
      this.evicted++;
      return true;
    }
    return false;
  }

  async #serve(conn: Conn, state: { headRead: boolean }): Promise<void> {
    const head = await this.#within(readHead(conn), READ_TIMEOUT_MS);
    if (head === null) return;
    state.headRead = true;
    const res = await this.#answer(head);
    await this.#within(writeAll(conn, encodeResponse(res)), WRITE_TIMEOUT_MS);
  }

  /** `work`'s result, or null once `ms` have passed (the caller then closes the connection). */
  async #within<T>(work: Promise<T>, ms: number): Promise<T | null> {
    const timer = new AbortController();
    try {
      return await Promise.race([
        work,
        this.#env.clock.sleep(ms, timer.signal).then(() => null, () => null),
      ]);
    } finally {
      timer.abort(GUARD_DONE);
    }
  }

  async #answer(head: string | "too-large"): Promise<HttpResponse> {
    if (head === "too-large") return text(400, "request head too large\n");
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]\r\n/.exec(head);
    if (m === null) return text(400, "bad request\n");
    const [, method, target] = m as unknown as [string, string, string];
    const path = target.split("?")[0];
    if (path !== "/metrics" && path !== "/healthz" && path !== "/readyz") {
      return text(404, "not found\n");
    }
    if (method !== "GET") return text(405, "only GET\n");
    if (path === "/healthz") return text(200, "ok\n");
    if (path === "/readyz") {
      const ready = this.#routes.ready();
      if (ready === true) {
        const warnings = this.#routes.warnings?.() ?? [];
        return text(200, ["ready", ...warnings.map((w) => `warning: ${w}`)].join("\n") + "\n");
      }
      return text(503, ready === false ? "not ready\n" : `not ready: ${ready}\n`);
    }
    try {
      return await this.#routes.metrics();
    } catch (err) {
      return text(500, `cannot collect metrics: ${(err as Error).message}\n`);
    }
  }
}

function text(status: number, body: string): HttpResponse {
  return { status, contentType: TEXT, body };
}

/**
 * Reads until the blank line that ends a request head. Resolves the head, "too-large" past
 * REQUEST_BYTES_MAX, or null if the peer closed first.
 */
async function readHead(conn: Conn): Promise<string | "too-large" | null> {
  const buf = new Uint8Array(REQUEST_BYTES_MAX + 1);
  let len = 0;
  for (;;) {
    const n = await conn.read(buf.subarray(len));
    if (n === null) return null;
    len += n;
    // Latin-1 keeps one character per byte, so any byte sequence decodes and nothing throws.
    const s = new TextDecoder("latin1").decode(buf.subarray(0, len));
    const end = s.indexOf("\r\n\r\n");
    if (end >= 0) return s.slice(0, end + 4);
    if (len > REQUEST_BYTES_MAX) return "too-large";
  }
}

function encodeResponse(res: HttpResponse): Uint8Array {
  const body = new TextEncoder().encode(res.body);
  const head = `HTTP/1.1 ${res.status} ${REASONS[res.status] ?? "Unknown"}\r\n` +
    `Content-Type: ${res.contentType}\r\n` +
    `Content-Length: ${body.length}\r\n` +
    `Connection: close\r\n\r\n`;
  const headBytes = new TextEncoder().encode(head);
  const out = new Uint8Array(headBytes.length + body.length);
  out.set(headBytes);
  out.set(body, headBytes.length);
  return out;
}
