// Errors the I/O seam raises. Both the Deno and the simulated implementations map their failures
// onto these classes, so code above the seam handles one set of errors whichever world it runs in.

import type { TlsFailure } from "./types.ts";

/** Stable codes for I/O failures, one per error class below. */
export type IoErrorCode =
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "NO_SPACE"
  | "TOO_MANY_OPEN_FILES"
  | "IO_FAILURE"
  | "CONNECTION_REFUSED"
  | "CONNECTION_RESET"
  | "BROKEN_PIPE"
  | "TIMED_OUT"
  | "ADDRESS_IN_USE"
  | "CLOSED"
  | "LOCKED"
  | "TLS_HANDSHAKE_FAILED"
  | "TLS_CONFIG";

/** Base class of every error the I/O seam raises. */
export class IoError extends Error {
  /** The stable code of this failure. */
  readonly code: IoErrorCode;
  constructor(code: IoErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = "IoError";
  }
}

/** A path does not exist. */
export class NotFound extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("NOT_FOUND", message, options);
    this.name = "NotFound";
  }
}

/** A path exists where a new one was demanded. */
export class AlreadyExists extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("ALREADY_EXISTS", message, options);
    this.name = "AlreadyExists";
  }
}

/** The disk is full. */
export class NoSpace extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("NO_SPACE", message, options);
    this.name = "NoSpace";
  }
}

/**
 * The process (or the system) has no file descriptor left, or a handle budget is spent: nothing
 * is wrong with the file; an open may succeed once other handles are closed.
 */
export class TooManyOpenFiles extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("TOO_MANY_OPEN_FILES", message, options);
    this.name = "TooManyOpenFiles";
  }
}

/** A device error: a failed read, write or sync. After a failed sync, dirty data may be lost. */
export class IoFailure extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("IO_FAILURE", message, options);
    this.name = "IoFailure";
  }
}

/** Nothing listens at the address. */
export class ConnectionRefused extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("CONNECTION_REFUSED", message, options);
    this.name = "ConnectionRefused";
  }
}

/** The peer reset the connection; bytes in flight are lost. */
export class ConnectionReset extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("CONNECTION_RESET", message, options);
    this.name = "ConnectionReset";
  }
}

/** Wrote to a connection the peer has closed. */
export class BrokenPipe extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("BROKEN_PIPE", message, options);
    this.name = "BrokenPipe";
  }
}

/** No answer within the time allowed. */
export class TimedOut extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("TIMED_OUT", message, options);
    this.name = "TimedOut";
  }
}

/** The address is already bound. */
export class AddressInUse extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("ADDRESS_IN_USE", message, options);
    this.name = "AddressInUse";
  }
}

/** The handle was used after `close()`. */
export class Closed extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("CLOSED", message, options);
    this.name = "Closed";
  }
}

/** Someone else holds the lock `Disk.lock` asked for. */
export class Locked extends IoError {
  /** Who holds it, as the holder wrote it (e.g. "pid 4242"), or "another process" if unknown. */
  readonly holder: string;
  constructor(message: string, holder: string, options?: ErrorOptions) {
    super("LOCKED", message, options);
    this.name = "Locked";
    this.holder = holder;
  }
}

/** A TLS handshake failed; `reason` says why in a stable form (see `TlsFailure`). */
export class TlsHandshakeFailed extends IoError {
  /** Why, e.g. "UNKNOWN_CA" or "NOT_TLS". */
  readonly reason: TlsFailure;
  constructor(reason: TlsFailure, message: string, options?: ErrorOptions) {
    super("TLS_HANDSHAKE_FAILED", message, options);
    this.name = "TlsHandshakeFailed";
    this.reason = reason;
  }
}

/** A certificate, key or CA given for TLS cannot be used (not PEM, key does not match). */
export class TlsConfigError extends IoError {
  constructor(message: string, options?: ErrorOptions) {
    super("TLS_CONFIG", message, options);
    this.name = "TlsConfigError";
  }
}

/**
 * The reason a timeout's sleep is aborted with once what it guarded is over. `abort()` without a
 * reason builds a DOMException on every call, some 20 µs with its stack trace: too much for a
 * guard per frame written. One frozen instance, shared by every node of a process.
 */
export const GUARD_DONE: Error = Object.freeze(
  Object.assign(new Error("The guarded operation is over"), { name: "AbortError" }),
);

/** The error a `Clock.sleep` rejects with when its signal aborts. */
export function abortError(signal: AbortSignal): Error {
  if (signal.reason instanceof Error) return signal.reason;
  const err = new Error("The operation was aborted");
  err.name = "AbortError";
  return err;
}
