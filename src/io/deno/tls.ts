// TLS for the real Network, on Deno's node:tls (rustls underneath). node:tls rather than
// Deno.listenTls because only it can require and verify a client certificate (mutual TLS) and swap
// a listener's certificate in place (reload without rebinding).

import { Buffer } from "node:buffer";
import { createPrivateKey, X509Certificate } from "node:crypto";
import type * as net from "node:net";
import * as tls from "node:tls";
import {
  AddressInUse,
  BrokenPipe,
  Closed,
  ConnectionRefused,
  ConnectionReset,
  IoFailure,
  TimedOut,
  TlsConfigError,
  TlsHandshakeFailed,
} from "../errors.ts";
import type {
  Addr,
  Conn,
  Listener,
  TlsClientOptions,
  TlsFailure,
  TlsHandshakeError,
  TlsServerOptions,
} from "../types.ts";

/** How long a server waits for a client's TLS handshake when the options do not say. */
export const TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT = 10_000;

/** Handshaken connections waiting for `accept`; more are dropped (the broker is not accepting). */
const TLS_BACKLOG_MAX = 128;

/** Bytes a connection buffers ahead of `read` before it stops reading the socket. */
const READ_AHEAD_BYTES_MAX = 256 * 1024;

/** Binds a TLS listener. */
export async function listenTls(addr: Addr, opts: TlsServerOptions): Promise<Listener> {
  const what = `Cannot listen on ${formatAddr(addr)} with TLS`;
  const server = tls.createServer({
    ...secureContextOptions(opts, what),
    requestCert: opts.requireClientCert === true,
    // Checked in secureConnection instead: Deno's node:tls drops a client whose certificate it
    // refuses without saying why ("socket hang up"), and the log must say why.
    rejectUnauthorized: false,
    handshakeTimeout: opts.handshakeTimeoutMs ?? TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT,
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: Error) => reject(mapNodeError(err, what)));
    server.listen(addr.port, addr.host, () => resolve());
  });
  return new NodeTlsListener(server, opts);
}

/** Opens a TLS connection and completes its handshake within `timeoutMs`. */
export function connectTls(addr: Addr, opts: TlsClientOptions, timeoutMs: number): Promise<Conn> {
  const name = opts.serverName ?? addr.host;
  const what = `Cannot connect to ${formatAddr(addr)} with TLS (server name ${name})`;
  if ((opts.certPem === undefined) !== (opts.keyPem === undefined)) {
    return Promise.reject(new TlsConfigError(`${what}: a client certificate needs its key`));
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    const sock = tls.connect({
      host: addr.host,
      port: addr.port,
      // SNI carries names only; an IP literal is checked against the certificate's IP SANs.
      ...(isIpLiteral(name) ? {} : { servername: name }),
      ca: opts.caPem,
      ...(opts.certPem === undefined ? {} : { cert: opts.certPem, key: opts.keyPem }),
      rejectUnauthorized: true,
    });
    const timer = setTimeout(() => {
      fail(new TimedOut(`${what}: no handshake within ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.once("error", (err: Error) => {
      const code = (err as { code?: string }).code;
      if (code === "ECONNREFUSED") fail(new ConnectionRefused(`${what}: connection refused`));
      else fail(handshakeFailed(err, what, name));
    });
    sock.once("close", () => {
      fail(
        new TlsHandshakeFailed(
          "NOT_TLS",
          `${what}: the server closed the connection during the TLS handshake; is it a plaintext port?`,
        ),
      );
    });
    sock.once("secureConnect", () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.removeAllListeners("error");
      sock.removeAllListeners("close");
      resolve(new NodeSocketConn(sock, addr));
    });
  });
}

/**
 * Connections a node:net or node:tls server took, waiting for `accept()`: at most `max` (more are
 * closed at once), handed to one pending `accept()` at a time. src/io/node/ listens with it too.
 */
export class AcceptQueue {
  readonly #max: number;
  readonly #backlog: Conn[] = [];
  #waiter: ((conn: Conn | null) => void) | null = null;
  #closed = false;

  constructor(max: number) {
    this.#max = max;
  }

  /** A connection the server took: handed to a waiting `accept()`, queued, or closed if full. */
  offer(conn: Conn): void {
    if (this.#closed || this.#backlog.length >= this.#max) {
      conn.close();
      return;
    }
    const w = this.#waiter;
    this.#waiter = null;
    if (w !== null) w(conn);
    else this.#backlog.push(conn);
  }

  accept(): Promise<Conn | null> {
    if (this.#closed) return Promise.resolve(null);
    const conn = this.#backlog.shift();
    if (conn !== undefined) return Promise.resolve(conn);
    if (this.#waiter !== null) {
      return Promise.reject(new Error("Listener.accept called while another accept is pending"));
    }
    return new Promise((resolve) => (this.#waiter = resolve));
  }

  /** Closes what waits and ends a pending `accept()` with null; false if closed before. */
  close(): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    for (const c of this.#backlog.splice(0)) c.close();
    const w = this.#waiter;
    this.#waiter = null;
    w?.(null);
    return true;
  }
}

/** A TLS listener; `accept` hands out connections whose handshake is done. */
class NodeTlsListener implements Listener {
  readonly #server: tls.Server;
  readonly #queue = new AcceptQueue(TLS_BACKLOG_MAX);
  readonly addr: Addr;

  constructor(server: tls.Server, opts: TlsServerOptions) {
    this.#server = server;
    const bound = server.address() as { address: string; port: number };
    this.addr = { host: bound.address, port: bound.port };
    server.on("secureConnection", (sock: tls.TLSSocket) => {
      if (opts.requireClientCert === true && !sock.authorized) {
        this.#refuse(sock, opts, String(sock.authorizationError ?? "no certificate"));
        return;
      }
      const subject = opts.requireClientCert === true ? peerSubject(sock) : undefined;
      this.#queue.offer(new NodeSocketConn(sock, this.addr, subject));
    });
    server.on("tlsClientError", (err: Error, sock: tls.TLSSocket) => {
      // Deno's node:tls does not always know the address of a socket that failed its handshake.
      const remote = sock.remoteAddress === undefined
        ? undefined
        : { host: sock.remoteAddress, port: sock.remotePort ?? 0 };
      sock.destroy();
      const from = remote === undefined ? "a client" : formatAddr(remote);
      const failed = handshakeFailed(err, `TLS handshake with ${from} failed`, null);
      const report: TlsHandshakeError = { reason: failed.reason, message: failed.message };
      if (remote !== undefined) report.remote = remote;
      opts.onHandshakeError?.(report);
    });
    // A socket error after listen (EMFILE on accept) must not crash the process.
    server.on("error", () => {});
  }

  /** Drops a client whose certificate does not pass, and reports why. */
  #refuse(sock: tls.TLSSocket, opts: TlsServerOptions, code: string): void {
    const remote = { host: sock.remoteAddress ?? "?", port: sock.remotePort ?? 0 };
    const presented = Object.keys(sock.getPeerCertificate() ?? {}).length > 0;
    sock.destroy();
    const [reason, why] = presented
      ? classify(code, null)
      : ["CLIENT_CERT_REQUIRED" as const, "a client certificate is required (mutual TLS)"];
    opts.onHandshakeError?.({
      reason: reason === "PROTOCOL" ? "BAD_CERTIFICATE" : reason,
      message: `TLS client ${formatAddr(remote)} refused: ${why} (${code})`,
      remote,
    });
  }

  accept(): Promise<Conn | null> {
    return this.#queue.accept();
  }

  close(): void {
    if (this.#queue.close()) this.#server.close();
  }

  reloadTls(opts: TlsServerOptions): Promise<void> {
    const what = `Cannot reload the TLS certificate of ${formatAddr(this.addr)}`;
    try {
      this.#server.setSecureContext(secureContextOptions(opts, what));
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(
        err instanceof TlsConfigError ? err : new TlsConfigError(`${what}: ${message(err)}`, {
          cause: err,
        }),
      );
    }
  }
}

/**
 * A node:net or node:tls socket as a pull-style `Conn`: data is buffered up to
 * READ_AHEAD_BYTES_MAX. src/io/node/ serves its plain TCP connections with it too.
 */
export class NodeSocketConn implements Conn {
  readonly #sock: net.Socket;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | null = null;
  #closed = false;
  #reader: {
    buf: Uint8Array;
    resolve: (n: number | null) => void;
    reject: (err: Error) => void;
  } | null = null;
  readonly local: Addr;
  readonly remote: Addr;
  readonly tlsPeerSubject?: string;

  constructor(sock: net.Socket, fallback: Addr, subject?: string) {
    this.#sock = sock;
    sock.setNoDelay(true);
    this.local = { host: sock.localAddress ?? fallback.host, port: sock.localPort ?? 0 };
    this.remote = {
      host: sock.remoteAddress ?? fallback.host,
      port: sock.remotePort ?? fallback.port,
    };
    if (subject !== undefined) this.tlsPeerSubject = subject;
    sock.on("data", (data: Buffer) => {
      this.#chunks.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.#buffered += data.byteLength;
      if (this.#buffered >= READ_AHEAD_BYTES_MAX) sock.pause();
      this.#wake();
    });
    sock.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    sock.on("close", () => {
      this.#ended = true;
      this.#wake();
    });
    sock.on("error", (err: Error) => {
      this.#error = err;
      this.#wake();
    });
  }

  read(buf: Uint8Array): Promise<number | null> {
    if (buf.length === 0) {
      return Promise.reject(new RangeError("Conn.read needs a non-empty buffer"));
    }
    if (this.#closed) return Promise.resolve(null);
    if (this.#buffered > 0) return Promise.resolve(this.#take(buf));
    if (this.#error !== null) return Promise.reject(this.#readError());
    if (this.#ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => (this.#reader = { buf, resolve, reject }));
  }

  write(bytes: Uint8Array): Promise<number> {
    const what = `Cannot write to ${formatAddr(this.remote)}`;
    if (this.#closed) return Promise.reject(new Closed(`${what}: connection closed`));
    if (this.#error !== null) return Promise.reject(mapNodeError(this.#error, what));
    if (bytes.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#sock.write(bytes, (err?: Error | null) => {
        if (err === undefined || err === null) resolve(bytes.length);
        else if (this.#closed) reject(new Closed(`${what}: connection closed`, { cause: err }));
        else reject(mapNodeError(err, what));
      });
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sock.end();
    this.#sock.destroySoon();
    this.#wake();
  }

  #take(buf: Uint8Array): number {
    let n = 0;
    while (n < buf.length && this.#chunks.length > 0) {
      const head = this.#chunks[0]!;
      const k = Math.min(head.length, buf.length - n);
      buf.set(head.subarray(0, k), n);
      n += k;
      if (k === head.length) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(k);
    }
    this.#buffered -= n;
    if (this.#buffered < READ_AHEAD_BYTES_MAX && this.#sock.isPaused()) this.#sock.resume();
    return n;
  }

  #readError(): Error {
    const err = this.#error as Error;
    const what = `Cannot read from ${formatAddr(this.remote)}`;
    // Under TLS 1.3 a server checks the client's certificate after the client's handshake is
    // done, so a refusal arrives as an alert on the first read.
    if (/received fatal alert/i.test(message(err))) return handshakeFailed(err, what, null);
    return mapNodeError(err, what);
  }

  #wake(): void {
    const r = this.#reader;
    if (r === null) return;
    if (this.#closed) {
      this.#reader = null;
      r.resolve(null);
    } else if (this.#buffered > 0) {
      this.#reader = null;
      r.resolve(this.#take(r.buf));
    } else if (this.#error !== null || this.#ended) {
      this.#reader = null;
      if (this.#error !== null) r.reject(this.#readError());
      else r.resolve(null);
    }
  }
}

/** The secure-context options of `opts`, checked enough to fail at start rather than per client. */
function secureContextOptions(opts: TlsServerOptions, what: string): tls.SecureContextOptions {
  if (!/-----BEGIN [A-Z ]*CERTIFICATE-----/.test(opts.certPem)) {
    throw new TlsConfigError(`${what}: the certificate is not a PEM certificate`);
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(opts.keyPem)) {
    throw new TlsConfigError(`${what}: the key is not a PEM private key`);
  }
  if (opts.requireClientCert === true && opts.caPem === undefined) {
    throw new TlsConfigError(`${what}: requiring client certificates needs a CA to check them`);
  }
  const context = {
    cert: opts.certPem,
    key: opts.keyPem,
    ...(opts.caPem === undefined ? {} : { ca: opts.caPem }),
  };
  // Deno's createSecureContext accepts a key of another certificate; every handshake would fail.
  let matches: boolean;
  try {
    tls.createSecureContext(context);
    matches = new X509Certificate(opts.certPem).checkPrivateKey(createPrivateKey(opts.keyPem));
  } catch (err) {
    throw new TlsConfigError(`${what}: ${message(err)}`, { cause: err });
  }
  if (!matches) throw new TlsConfigError(`${what}: the key does not match the certificate`);
  return context;
}

/** A handshake error, sorted by what the TLS library said. */
function handshakeFailed(err: Error, what: string, name: string | null): TlsHandshakeFailed {
  const raw = message(err);
  const byPeer = /received fatal alert/i.test(raw);
  const [reason, why] = classify(`${(err as { code?: string }).code ?? ""} ${raw}`, name);
  const who = byPeer ? "the peer refused this end's certificate: " : "";
  return new TlsHandshakeFailed(reason, `${what}: ${who}${why} (${raw})`, { cause: err });
}

function classify(raw: string, name: string | null): [TlsFailure, string] {
  if (/CertificateRequired|peer sent no certificates/i.test(raw)) {
    return ["CLIENT_CERT_REQUIRED", "a client certificate is required (mutual TLS)"];
  }
  if (/UnknownIssuer|UnknownCA|SELF_SIGNED|UNABLE_TO_(GET_ISSUER|VERIFY_LEAF)/i.test(raw)) {
    return ["UNKNOWN_CA", "the certificate is not signed by a trusted CA"];
  }
  if (/Expired|NotValidYet|CERT_NOT_YET_VALID/i.test(raw)) {
    return ["EXPIRED", "the certificate has expired or is not valid yet"];
  }
  if (/not valid for name|NotValidForName|does not match certificate's altnames/i.test(raw)) {
    return [
      "HOSTNAME_MISMATCH",
      `the certificate is not valid for the name ${name ?? "asked for"}`,
    ];
  }
  if (
    /InvalidContentType|corrupt message|unexpected end of file|UnexpectedEof|ECONNRESET|disconnected before secure/i
      .test(raw)
  ) {
    return ["NOT_TLS", "the other end does not speak TLS; is it a plaintext port?"];
  }
  if (/certificate/i.test(raw)) return ["BAD_CERTIFICATE", "the certificate was refused"];
  return ["PROTOCOL", "the TLS handshake failed"];
}

/** The subject of the verified client certificate, as "CN=alice,O=Shop". */
function peerSubject(sock: tls.TLSSocket): string | undefined {
  const subject: object | undefined = sock.getPeerCertificate()?.subject;
  if (subject === undefined) return undefined;
  return Object.entries(subject).map(([k, v]) => `${k}=${v}`).join(",");
}

/** A Node socket error as the seam's typed error. */
export function mapNodeError(err: Error, what: string): Error {
  const code = (err as { code?: string }).code;
  const options = { cause: err };
  if (code === "EADDRINUSE") return new AddressInUse(`${what}: address in use`, options);
  if (code === "ECONNRESET") return new ConnectionReset(`${what}: connection reset`, options);
  if (
    code === "EPIPE" || code === "ERR_STREAM_DESTROYED" || code === "ERR_STREAM_WRITE_AFTER_END"
  ) {
    return new BrokenPipe(`${what}: broken pipe`, options);
  }
  return new IoFailure(`${what}: ${message(err)}`, options);
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isIpLiteral(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(":");
}

function formatAddr(addr: Addr): string {
  return addr.host.includes(":") ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}
