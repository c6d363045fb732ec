// The real Random: the same xoshiro128** stream the simulator uses, seeded from the OS so that
// production nodes do not share a sequence, while forks keep their independence guarantees. Bytes
// for secrets and nonces come from the OS's cryptographic generator, never from that stream.

import { checkSecureBytes, SeededRandom } from "../prng.ts";
import type { Random } from "../types.ts";

/** Words of OS entropy in a seed; 128 bits, the whole xoshiro128** state. */
const SEED_WORDS = 4;

/**
 * A seeded stream for the draws that tune behaviour (jitter, backoff, choices), with
 * `secureBytes` from `crypto.getRandomValues`: an observer who saw enough of the stream could
 * predict it, so nothing secret comes from it.
 */
class OsRandom implements Random {
  readonly #stream: SeededRandom;

  constructor(stream: SeededRandom) {
    this.#stream = stream;
  }

  u32(): number {
    return this.#stream.u32();
  }

  float(): number {
    return this.#stream.float();
  }

  int(loInclusive: number, hiExclusive: number): number {
    return this.#stream.int(loInclusive, hiExclusive);
  }

  fork(label: string): Random {
    return new OsRandom(this.#stream.fork(label));
  }

  secureBytes(n: number): Uint8Array {
    checkSecureBytes(n);
    return crypto.getRandomValues(new Uint8Array(n));
  }
}

/** A `Random` seeded from `crypto.getRandomValues`, whose `secureBytes` ask it every time. */
export function denoRandom(): Random {
  const words = crypto.getRandomValues(new Uint32Array(SEED_WORDS));
  return new OsRandom(new SeededRandom(Array.from(words)));
}
