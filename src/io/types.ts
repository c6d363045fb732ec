// The I/O seam: every clock read, random draw, socket and file the broker touches goes through
// these interfaces, so the same code runs on Deno (src/io/deno/) or in the simulator (sim/).

/** A network endpoint. `host` is an IP literal or a name the Network resolves. */
export interface Addr {
  host: string;
  port: number;
}

/**
 * Time as the code under test sees it. In the simulator it is virtual and may be skewed per node.
 */
export interface Clock {
  /** Monotonic milliseconds since an arbitrary origin; never decreases. Use for timeouts. */
  now(): number;
  /** Wall-clock milliseconds since the Unix epoch; may jump. Use only for record timestamps. */
  wallMs(): number;
  /**
   * Resolves after `ms` milliseconds of this clock. Rejects with an `AbortError` (`name` is
   * "AbortError") if `signal` aborts first. `ms` <= 0 still yields to other tasks.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** A deterministic source of randomness when seeded; forks are independent streams. */
export interface Random {
  /** A uniformly distributed unsigned 32-bit integer. */
  u32(): number;
  /** A uniformly distributed float in [0, 1). */
  float(): number;
  /** A uniformly distributed integer in [loInclusive, hiExclusive). Requires lo < hi. */
  int(loInclusive: number, hiExclusive: number): number;
  /**
   * A new independent stream derived from this stream's seed and `label` only, never from how many
   * values were drawn, so an extra draw in one subsystem does not reshuffle another.
   */
  fork(label: string): Random;
  /**
   * `n` bytes for secrets and security nonces (SCRAM nonces and salts, the cluster challenge). On
   * a real node they come from the operating system's cryptographic generator, never from the
   * seeded stream, which an observer of enough draws could predict; in the simulator they are
   * deterministic, so a seed still replays. Requires an integer 0 <= n <= 65 536; throws
   * RangeError otherwise.
   */
  secureBytes(n: number): Uint8Array;
}

/** Options for `Network.connect`. */
export interface ConnectOptions {
  /**
   * Give up with a `TimedOut` error after this many milliseconds (the TLS handshake included).
   * Default 5000.
   */
  timeoutMs?: number;
  /** Speak TLS, verifying the server's certificate; omitted: plain TCP. */
  tls?: TlsClientOptions;
}

/** How a client end verifies a TLS server and, for mutual TLS, proves who it is. */
export interface TlsClientOptions {
  /** PEM certificates of the CAs trusted to sign the server's certificate. */
  caPem: string;
  /** PEM certificate chain presented to a server that asks for one (mutual TLS). */
  certPem?: string;
  /** PEM private key of `certPem`. */
  keyPem?: string;
  /** The name the server's certificate must carry. Default: the host connected to. */
  serverName?: string;
}

/** The certificate a TLS server presents, and whom it lets in. */
export interface TlsServerOptions {
  /** PEM certificate chain, the server's own first. */
  certPem: string;
  /** PEM private key of `certPem`. */
  keyPem: string;
  /** PEM certificates of the CAs that sign client certificates; needed for `requireClientCert`. */
  caPem?: string;
  /** Refuse a client without a certificate signed by `caPem` (mutual TLS). Default false. */
  requireClientCert?: boolean;
  /** A client that has not finished its handshake in this long is dropped. Default 10 000 ms. */
  handshakeTimeoutMs?: number;
  /** Told of each failed handshake (the connection is already dropped), for logs and counters. */
  onHandshakeError?: (err: TlsHandshakeError) => void;
}

/** Why a TLS handshake failed, as a stable value to log, count and test against. */
export type TlsFailure =
  | "UNKNOWN_CA"
  | "EXPIRED"
  | "HOSTNAME_MISMATCH"
  | "BAD_CERTIFICATE"
  | "CLIENT_CERT_REQUIRED"
  | "NOT_TLS"
  | "PROTOCOL";

/** A TLS handshake failure: its reason and the message the TLS library gave. */
export interface TlsHandshakeError {
  reason: TlsFailure;
  message: string;
  /** The client's address, when the server side saw the failure. */
  remote?: Addr;
}

/** Options for `Network.listen`. */
export interface ListenOptions {
  /** Serve TLS; omitted: plain TCP. */
  tls?: TlsServerOptions;
}

/**
 * A reliable, ordered byte stream, like a TCP connection.
 *
 * Contract: `read` may return any chunking of the bytes the peer wrote (one write may arrive as
 * several reads, several writes as one read); bytes stay in order; `write` may be short and
 * returns how many bytes it took (use `writeAll`). A pending or later `read` after the local side
 * called `close()` resolves `null`; after the peer closed and all its bytes were read, `read`
 * resolves `null` (end of stream). A reset connection rejects reads and writes with
 * `ConnectionReset`. Writing after the peer is gone may reject with `ConnectionReset` or
 * `BrokenPipe`.
 */
export interface Conn {
  /** Reads into `buf`; resolves the count (> 0), or `null` at end of stream. */
  read(buf: Uint8Array): Promise<number | null>;
  /** Writes a prefix of `bytes`; resolves its length (> 0 unless `bytes` is empty). */
  write(bytes: Uint8Array): Promise<number>;
  /** Closes both directions. Idempotent. Bytes already written are still delivered. */
  close(): void;
  readonly local: Addr;
  readonly remote: Addr;
  /**
   * On the server end of a mutual-TLS connection, the subject of the client's verified
   * certificate ("CN=alice,O=Shop"); absent otherwise.
   */
  readonly tlsPeerSubject?: string;
  /**
   * On a cluster-port connection whose other end proved that it holds the cluster secret, the node
   * id it proved it with; absent otherwise.
   */
  readonly peerNodeId?: string;
}

/** A bound server socket. */
export interface Listener {
  /** The bound address; the real port when port 0 was asked for. */
  readonly addr: Addr;
  /** The next incoming connection, or `null` once the listener is closed. */
  accept(): Promise<Conn | null>;
  /** Stops accepting; a pending `accept` resolves `null`. Idempotent. */
  close(): void;
  /**
   * Serves connections accepted from now on with new certificates; open connections keep theirs.
   * Rejects (and keeps the old ones) if the new ones are unusable. Only for a TLS listener.
   */
  reloadTls?(tls: TlsServerOptions): Promise<void>;
}

/** Stream networking. */
export interface Network {
  /**
   * Binds `addr` (port 0 picks a free port). Rejects with `AddressInUse` if taken, `TlsConfigError`
   * if `opts.tls` holds an unusable certificate or key. With `tls`, `accept` returns only
   * connections whose handshake succeeded; the others go to `tls.onHandshakeError`.
   */
  listen(addr: Addr, opts?: ListenOptions): Promise<Listener>;
  /**
   * Opens a connection. Rejects with `ConnectionRefused` when nothing listens there, `TimedOut`
   * when no answer comes within `timeoutMs`, and with `tls`, `TlsHandshakeFailed` when the
   * handshake fails (its `reason` says why; `NOT_TLS` when the server does not speak TLS).
   */
  connect(addr: Addr, opts?: ConnectOptions): Promise<Conn>;
  /** Resolves a host name to addresses (e.g. a Kubernetes headless service). Optional. */
  resolve?(name: string): Promise<string[]>;
}

/** Options for `Disk.open`. A file is always opened for reading and writing. */
export interface OpenOptions {
  /** Create the file if it does not exist. */
  create?: boolean;
  /** Create the file and fail with `AlreadyExists` if it exists. Implies `create`. */
  createNew?: boolean;
}

/**
 * An open file with positional I/O.
 *
 * Contract: `writeAt` changes what `readAt` returns at once, but it is durable only after a
 * `sync()` that resolved. `close()` is not `sync()`. A `sync()` that rejects may have lost the
 * dirty data for good; a later `sync()` that resolves does not bring it back.
 */
export interface File {
  /**
   * Reads from `pos` into `buf`; resolves the count, which is less than `buf.length` only at end of
   * file (0 at or past it). Rejects with `IoFailure` on a device error.
   */
  readAt(pos: number, buf: Uint8Array): Promise<number>;
  /**
   * Writes all of `bytes` at `pos`, extending the file (with zeros) as needed; resolves
   * `bytes.length`. Rejects with `NoSpace` or `IoFailure`; then an unknown prefix may be written.
   */
  writeAt(pos: number, bytes: Uint8Array): Promise<number>;
  /** Makes data and size durable (fdatasync). Rejects with `IoFailure` if it could not. */
  sync(): Promise<void>;
  /** The current size in bytes, as readers see it. */
  size(): Promise<number>;
  /** Cuts or extends (with zeros) the file to `len` bytes. Durable after `sync()`. */
  truncate(len: number): Promise<void>;
  /** Releases the handle. Idempotent. Does not sync. */
  close(): void;
}

/**
 * A filesystem. Paths use "/" separators.
 *
 * Contract: creating, renaming or removing a file changes the directory at once for readers, but
 * the change is durable only after `syncDir` on the directory that holds the entry.
 */
export interface Disk {
  /** Opens (and with `create`, creates) a file. Rejects with `NotFound` or `AlreadyExists`. */
  open(path: string, opts?: OpenOptions): Promise<File>;
  /** Atomically replaces `to` with `from` (same filesystem). Rejects with `NotFound`. */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file or an empty directory. Rejects with `NotFound`. */
  remove(path: string): Promise<void>;
  /** Names of the entries in `dir`, sorted. Rejects with `NotFound`. */
  list(dir: string): Promise<string[]>;
  /** Creates `dir` and its missing parents; no error if it exists. */
  mkdir(dir: string): Promise<void>;
  /** Makes the entries of `dir` (creations, renames, removals) durable. */
  syncDir(dir: string): Promise<void>;
  /**
   * Takes an exclusive lock on the file at `path` (created if missing) without waiting, and writes
   * a one-line description of the holder into it ("pid 4242" on a real disk), so another process
   * refused the lock can name the holder. The lock holds until `release()` or until the process
   * ends, however it ends (an OS file lock, released by the kernel on SIGKILL too). Rejects with
   * `Locked` (naming the holder) if anyone else holds it, including another handle of this process;
   * otherwise as `open` and `writeAt` do, except that a full disk only leaves the holder unwritten.
   */
  lock(path: string): Promise<FileLock>;
}

/** An exclusive lock taken with `Disk.lock`. */
export interface FileLock {
  /** Releases the lock and closes its handle. Idempotent. */
  release(): void;
}

/**
 * Fault points at protocol steps (FoundationDB's BUGGIFY): named places in the code where a seeded
 * simulation may make something legal but rare happen — a message dropped, duplicated or held
 * back, a step slowed down. Only the simulator provides one; code asks `faults?.fires(point)`, so
 * a real node pays one property read. What a point does when it fires must be behaviour the real
 * world could produce, never a bug of its own.
 */
export interface FaultPoints {
  /** True if the named point fires now (each run enables some points, each fires rarely). */
  fires(point: string): boolean;
  /** A seeded choice in [0, n), for how long or how far a fired point acts. */
  pick(n: number): number;
}

/**
 * Keyed hashes. The real one is WebCrypto's, whose promises settle on a thread pool at a time no
 * simulation can replay; the simulator's twin settles at once, so a seed replays.
 */
export interface Crypto {
  /** HMAC-SHA-256 of `data` under `key` (any length): 32 bytes. */
  hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array>;
  /** SHA-256 of `data`: 32 bytes. */
  sha256(data: Uint8Array): Promise<Uint8Array>;
  /**
   * PBKDF2 with HMAC-SHA-256 (RFC 8018): `bytes` bytes derived from `password` and `salt` over
   * `iterations` rounds (SCRAM's Hi()).
   */
  pbkdf2Sha256(
    password: Uint8Array,
    salt: Uint8Array,
    iterations: number,
    bytes: number,
  ): Promise<Uint8Array>;
}

/** Everything a node needs from the outside world. */
export interface Env {
  clock: Clock;
  random: Random;
  net: Network;
  disk: Disk;
  crypto: Crypto;
  /** Fault points (simulation only; absent on a real node). */
  faults?: FaultPoints;
}
