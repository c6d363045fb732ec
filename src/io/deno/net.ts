// The real Network: TCP on Deno.listen / Deno.connect, with Deno's close races and errors turned
// into the seam's contract (a read or accept pending on close resolves null; typed errors).

import { Closed, TimedOut } from "../errors.ts";
import type { Addr, Conn, ConnectOptions, Listener, ListenOptions, Network } from "../types.ts";
import { isClosedUnderneath, mapDenoError } from "./_errors.ts";

/** How long `connect` waits for an answer when `timeoutMs` is not given. */
export const CONNECT_TIMEOUT_MS_DEFAULT = 5000;

/**
 * Accept failures in a row, for connections that died in the backlog, before `accept` gives up.
 * Like Go's net package we skip those (they are the peer's problem, not the listener's), but not
 * forever.
 */
const ACCEPT_ABORTED_RETRIES_MAX = 64;

/** A `Network` on the host's TCP stack. */
export class DenoNetwork implements Network {
  async listen(addr: Addr, opts: ListenOptions = {}): Promise<Listener> {
    // node:tls is loaded only by a process that speaks TLS (start-up time and memory).
    if (opts.tls !== undefined) return (await import("./tls.ts")).listenTls(addr, opts.tls);
    try {
      return new DenoListener(
        Deno.listen({ hostname: addr.host, port: addr.port, transport: "tcp" }),
      );
    } catch (err) {
      throw mapDenoError(err, `Cannot listen on ${formatAddr(addr)}`);
    }
  }

  async connect(addr: Addr, opts: ConnectOptions = {}): Promise<Conn> {
    const timeoutMs = opts.timeoutMs ?? CONNECT_TIMEOUT_MS_DEFAULT;
    if (opts.tls !== undefined) {
      return await (await import("./tls.ts")).connectTls(addr, opts.tls, timeoutMs);
    }
    const what = `Cannot connect to ${formatAddr(addr)}`;
    // Deno.connect aborts a pending connect on its signal and leaves an established connection
    // alone, so a late timer cannot cut a connection we already returned.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const conn = await Deno.connect({
        hostname: addr.host,
        port: addr.port,
        transport: "tcp",
        signal: controller.signal,
      });
      return new DenoConn(conn);
    } catch (err) {
      if (controller.signal.aborted) {
        throw new TimedOut(`${what}: no answer within ${timeoutMs} ms`, { cause: err });
      }
      throw mapDenoError(err, what);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves `name` through DNS (A and AAAA records, IPv4 first); an IP literal resolves to
   * itself. Rejects with `NotFound` when neither record type exists. DNS only: /etc/hosts is not
   * consulted, so "localhost" is not a name this resolves.
   */
  async resolve(name: string): Promise<string[]> {
    if (isIpLiteral(name)) return [name];
    const [v4, v6] = await Promise.allSettled([
      Deno.resolveDns(name, "A"),
      Deno.resolveDns(name, "AAAA"),
    ]);
    if (v4.status === "rejected" && v6.status === "rejected") {
      throw mapDenoError(v4.reason, `Cannot resolve ${name}`);
    }
    return [
      ...(v4.status === "fulfilled" ? v4.value : []),
      ...(v6.status === "fulfilled" ? v6.value : []),
    ];
  }
}

/** A TCP connection, with no-delay set: the broker frames its own writes. */
export class DenoConn implements Conn {
  readonly #conn: Deno.TcpConn;
  #closed = false;
  readonly local: Addr;
  readonly remote: Addr;

  /** Wraps an open connection; the wrapper owns it from now on. */
  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    conn.setNoDelay(true);
    this.local = toAddr(conn.localAddr);
    this.remote = toAddr(conn.remoteAddr);
  }

  async read(buf: Uint8Array): Promise<number | null> {
    if (buf.length === 0) throw new RangeError("Conn.read needs a non-empty buffer");
    if (this.#closed) return null;
    try {
      return await this.#conn.read(buf);
    } catch (err) {
      // Deno rejects a read pending on close() with Interrupted, and later ones with
      // BadResource; the contract makes both a quiet end of stream.
      if (this.#closed) return null;
      throw mapDenoError(err, `Cannot read from ${formatAddr(this.remote)}`);
    }
  }

  async write(bytes: Uint8Array): Promise<number> {
    if (this.#closed) throw new Closed(`${this.#cannotWrite()}: connection closed`);
    if (bytes.length === 0) return 0;
    try {
      return await this.#conn.write(bytes);
    } catch (err) {
      if (this.#closed && isClosedUnderneath(err)) {
        throw new Closed(`${this.#cannotWrite()}: connection closed`, { cause: err });
      }
      throw mapDenoError(err, this.#cannotWrite());
    }
  }

  /** The start of a failed write's message, made only then: writes are many, failures few. */
  #cannotWrite(): string {
    return `Cannot write to ${formatAddr(this.remote)}`;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn.close();
  }
}

/** A bound TCP listener. */
export class DenoListener implements Listener {
  readonly #listener: Deno.TcpListener;
  #closed = false;
  readonly addr: Addr;

  /** Wraps a bound listener; the wrapper owns it from now on. */
  constructor(listener: Deno.TcpListener) {
    this.#listener = listener;
    this.addr = toAddr(listener.addr);
  }

  async accept(): Promise<Conn | null> {
    for (let aborted = 0;; aborted++) {
      if (this.#closed) return null;
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        // A pending accept rejects with BadResource ("Listener has been closed") on close().
        if (this.#closed) return null;
        if (
          err instanceof Deno.errors.ConnectionAborted && aborted < ACCEPT_ABORTED_RETRIES_MAX
        ) {
          continue;
        }
        throw mapDenoError(err, `Cannot accept on ${formatAddr(this.addr)}`);
      }
      // Closed while the connection was on its way up: nobody is left to own it.
      if (this.#closed) {
        conn.close();
        return null;
      }
      return new DenoConn(conn);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.close();
  }
}

function toAddr(addr: Deno.NetAddr): Addr {
  return { host: addr.hostname, port: addr.port };
}

function formatAddr(addr: Addr): string {
  return addr.host.includes(":") ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

function isIpLiteral(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(":");
}
