// The real Random: the same xoshiro128** stream the simulator uses, seeded from the OS so that
// production nodes do not share a sequence, while forks keep their independence guarantees.

import { SeededRandom } from "../prng.ts";

/** Words of OS entropy in a seed; 128 bits, the whole xoshiro128** state. */
const SEED_WORDS = 4;

/** A `Random` seeded from `crypto.getRandomValues`; `fork` behaves as `SeededRandom.fork`. */
export function denoRandom(): SeededRandom {
  const words = crypto.getRandomValues(new Uint32Array(SEED_WORDS));
  return new SeededRandom(Array.from(words));
}
