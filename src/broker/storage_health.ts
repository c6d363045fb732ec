// Whether the broker's storage takes writes: a full disk or a failing device makes every write fail
// the same way, and logging each failure would bury the one line that says why. So each cause is
// logged once (again only after a long quiet spell) and counted after that; readiness reads the
// state, and a later successful write clears it.

import { IoError } from "../io/errors.ts";
import type { Clock } from "../io/types.ts";

/**
 * A cause logged once is logged again only after this long without a failure of that cause, ms:
 * a disk that fills up again next week is news; the thousandth failed append this minute is not.
 */
export const STORAGE_CAUSE_RELOG_MS = 10 * 60_000;

/** Storage failing now: the latest failure, and since when it has been failing. */
export interface StorageFailure {
  /** The kind of failure, from the I/O seam's codes: "no_space", "io_failure", ... */
  cause: string;
  /** The latest failure's message. */
  message: string;
  /** When storage started failing (monotonic ms of the broker's clock). */
  sinceMs: number;
}

/** Storage failures by cause, the current failing state, and the once-per-cause log. */
export class StorageHealth {
  readonly #clock: Clock;
  readonly #report: (msg: string) => void;
  #failing: StorageFailure | null = null;
  /** Failures by cause; the causes are the seam's error codes, so the map stays small. */
  readonly #counts = new Map<string, number>();
  readonly #lastSeenMs = new Map<string, number>();
  /** Whether this spell of failures was logged, so its end is logged too. */
  #spellLogged = false;

  constructor(clock: Clock, report: (msg: string) => void) {
    this.#clock = clock;
    this.#report = report;
  }

  /** Storage failing now, or null while writes succeed. */
  get failing(): StorageFailure | null {
    return this.#failing;
  }

  /** Failures counted so far, by cause. */
  get counts(): ReadonlyMap<string, number> {
    return this.#counts;
  }

  /** A write failed with `err`: counted, and logged if its cause is news. */
  failed(err: unknown): void {
    const cause = storageCause(err);
    const message = err instanceof Error ? err.message : String(err);
    const now = this.#clock.now();
    this.#counts.set(cause, (this.#counts.get(cause) ?? 0) + 1);
    const lastSeen = this.#lastSeenMs.get(cause);
    this.#lastSeenMs.set(cause, now);
    this.#failing = { cause, message, sinceMs: this.#failing?.sinceMs ?? now };
    if (lastSeen === undefined || now - lastSeen >= STORAGE_CAUSE_RELOG_MS) {
      this.#spellLogged = true;
      this.#report(
        `Storage is failing (${cause}): ${message}; not ready until a write succeeds. ` +
          `Further ${cause} failures are counted (gregormq_storage_errors_total), not logged`,
      );
    }
  }

  /** A write succeeded: storage works again. */
  succeeded(): void {
    if (this.#failing === null) return;
    const seconds = Math.round((this.#clock.now() - this.#failing.sinceMs) / 1000);
    if (this.#spellLogged) {
      this.#report(`Storage works again: a write succeeded after ${seconds} s of failures`);
    }
    this.#failing = null;
    this.#spellLogged = false;
  }
}

/**
 * The cause of a storage failure: the code of the I/O error behind it (followed through `cause`),
 * or "no_space" for a message that says so, else "io_failure".
 */
export function storageCause(err: unknown): string {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof IoError) return e.code.toLowerCase();
  }
  const message = err instanceof Error ? err.message : String(err);
  return /no space left on device/i.test(message) ? "no_space" : "io_failure";
}
