// The I/O seam's public face: interfaces, errors and helpers. Implementations live in
// src/io/deno/ (real) and sim/ (simulated).

export type {
  Addr,
  Clock,
  Conn,
  ConnectOptions,
  Crypto,
  Disk,
  Env,
  File,
  Listener,
  ListenOptions,
  Network,
  OpenOptions,
  Random,
  TlsClientOptions,
  TlsFailure,
  TlsHandshakeError,
  TlsServerOptions,
} from "./types.ts";
export * from "./errors.ts";
export * from "./util.ts";
