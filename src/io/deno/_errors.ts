// Maps the errors Deno raises onto the seam's error classes (src/io/errors.ts), so code above the
// seam sees the same failures on Deno as in the simulator.

import {
  AddressInUse,
  AlreadyExists,
  BrokenPipe,
  Closed,
  ConnectionRefused,
  ConnectionReset,
  IoFailure,
  NoSpace,
  NotFound,
  TimedOut,
  TooManyOpenFiles,
} from "../errors.ts";

/**
 * The seam error for `err`, raised while doing `what` (e.g. "Cannot open /x/y.log"). The message
 * reads `<what>: <reason>`; the Deno error is kept as `cause`.
 */
export function mapDenoError(err: unknown, what: string): Error {
  const options = { cause: err };
  if (isNoSpace(err)) return new NoSpace(`${what}: no space left on device`, options);
  if (isTooManyOpenFiles(err)) {
    return new TooManyOpenFiles(`${what}: too many open files`, options);
  }
  if (err instanceof Deno.errors.NotFound) return new NotFound(`${what}: not found`, options);
  if (err instanceof Deno.errors.AlreadyExists) {
    return new AlreadyExists(`${what}: already exists`, options);
  }
  if (err instanceof Deno.errors.ConnectionRefused) {
    return new ConnectionRefused(`${what}: connection refused`, options);
  }
  // An abort on our side is not a reset by the peer, but both leave the stream unusable with
  // bytes in flight lost, which is what ConnectionReset promises the caller.
  if (err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.ConnectionAborted) {
    return new ConnectionReset(`${what}: connection reset`, options);
  }
  if (err instanceof Deno.errors.BrokenPipe) return new BrokenPipe(`${what}: broken pipe`, options);
  if (err instanceof Deno.errors.TimedOut) return new TimedOut(`${what}: timed out`, options);
  if (err instanceof Deno.errors.AddrInUse) {
    return new AddressInUse(`${what}: address in use`, options);
  }
  if (err instanceof Deno.errors.BadResource) return new Closed(`${what}: closed`, options);
  const reason = err instanceof Error ? err.message : String(err);
  return new IoFailure(`${what}: ${reason}`, options);
}

/** Whether `err` is a Deno close race: the resource went away under a pending operation. */
export function isClosedUnderneath(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted;
}

// Deno has no error class for ENOSPC; it raises a plain Error carrying the errno name in `code`.
function isNoSpace(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  return code === "ENOSPC" || code === "EDQUOT" || /\(os error 28\)/.test(err.message);
}

// EMFILE (this process is out of descriptors) and ENFILE (the whole system is) come as plain
// Errors too, with the errno name in `code`.
function isTooManyOpenFiles(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  return code === "EMFILE" || code === "ENFILE" || /\(os error 2[34]\)/.test(err.message);
}
