// The checker for durable subscriptions: each time a durable subscriber (re)subscribes, the broker
// must resume it no later than its first unacknowledged offset (nothing it did not acknowledge is
// skipped) and no earlier than just after the offset the broker had saved for it on disk when it
// asked (a saved acknowledgement survives every crash).

const TRAILER = "\n#crc32c:";

/**
 * The acknowledged offset saved for `key` in the durable bytes of the broker's offsets file, or
 * -1 if there is none (or the file does not parse: then nothing can be held against the broker).
 */
export function savedOffset(bytes: Uint8Array, key: string): number {
  const text = new TextDecoder().decode(bytes);
  const at = text.lastIndexOf(TRAILER);
  try {
    const saved = JSON.parse(at < 0 ? text : text.slice(0, at)) as Record<string, number>;
    return typeof saved[key] === "number" ? saved[key] : -1;
  } catch {
    return -1;
  }
}

/** Holds every durable resume against what was acknowledged and what was saved. */
export class DurableResumeChecker {
  readonly violations: string[] = [];
  /** Resumes after a broker crash that found progress saved for the subscriber: must fire in CI. */
  resumedAfterCrash = 0;
  readonly #crashes: () => number;
  readonly #saved: (key: string) => number;

  /**
   * @param crashes how many times the broker has crashed so far
   * @param saved the offset durably saved for a durable key right now, or -1
   */
  constructor(crashes: () => number, saved: (key: string) => number) {
    this.#crashes = crashes;
    this.#saved = saved;
  }

  /** What the disk holds for `key` now: call just before subscribing, and pass it to `resumed`. */
  saved(key: string): number {
    return this.#saved(key);
  }

  /**
   * A durable subscriber named `name` was resumed at `start`; it had acknowledged every offset
   * below `next`, and `saved` was on the broker's disk for it when it asked.
   */
  resumed(name: string, start: number, next: number, saved: number): void {
    if (start > next) {
      this.violations.push(
        `durable ${name} resumed at offset ${start}, skipping offsets ${next}..${
          start - 1
        } it never acknowledged`,
      );
    }
    if (saved >= 0 && start < saved + 1) {
      this.violations.push(
        `durable ${name} resumed at offset ${start}, although its acknowledgement of ${saved} ` +
          `was saved on disk`,
      );
    }
    if (saved >= 0 && this.#crashes() > 0) this.resumedAfterCrash++;
  }
}
