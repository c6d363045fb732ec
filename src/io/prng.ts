// A small, fast, seedable PRNG (xoshiro128**) implementing the Random interface. The simulator
// seeds it from the run's seed; the real environment seeds it from the OS.

import type { Random } from "./types.ts";

/** Most bytes one `Random.secureBytes` call returns (what `crypto.getRandomValues` allows). */
export const SECURE_BYTES_MAX = 65_536;

const U32 = 0x1_0000_0000;

/** Mixes a 32-bit value (the finaliser of MurmurHash3); a bijection on u32. */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Derives four well-mixed state words from seed words and a label. */
function deriveState(words: readonly number[], label: string): [number, number, number, number] {
  let h = 0x9e3779b9;
  for (const w of words) h = mix32(h ^ mix32(w + 0x7f4a7c15));
  for (let i = 0; i < label.length; i++) h = mix32(h ^ Math.imul(label.charCodeAt(i), 0x01000193));
  const out: [number, number, number, number] = [0, 0, 0, 0];
  for (let i = 0; i < 4; i++) {
    h = mix32(h + 0x9e3779b9 + i);
    out[i] = h;
  }
  if ((out[0] | out[1] | out[2] | out[3]) === 0) out[0] = 1;
  return out;
}

/** xoshiro128** seeded from a number, forkable by label. */
export class SeededRandom implements Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  readonly #seedWords: readonly number[];

  /** A stream for `seed` (any safe integer) and an optional label. */
  constructor(seed: number | readonly number[], label = "") {
    const words = typeof seed === "number" ? [seed >>> 0, Math.floor(seed / U32) >>> 0] : seed;
    const [a, b, c, d] = deriveState(words, label);
    this.#seedWords = [a, b, c, d];
    this.#a = a;
    this.#b = b;
    this.#c = c;
    this.#d = d;
  }

  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.#b, 5), 7), 9) >>> 0;
    const t = this.#b << 9;
    this.#c ^= this.#a;
    this.#d ^= this.#b;
    this.#b ^= this.#c;
    this.#a ^= this.#d;
    this.#c ^= t;
    this.#d = rotl(this.#d, 11);
    return result;
  }

  float(): number {
    // 53 random bits, as Math.random would give.
    return ((this.u32() >>> 5) * 67108864 + (this.u32() >>> 6)) / 9007199254740992;
  }

  int(loInclusive: number, hiExclusive: number): number {
    if (!(hiExclusive > loInclusive)) {
      throw new RangeError(`Random.int needs lo < hi, got [${loInclusive}, ${hiExclusive})`);
    }
    return loInclusive + Math.floor(this.float() * (hiExclusive - loInclusive));
  }

  fork(label: string): SeededRandom {
    return new SeededRandom(this.#seedWords, label);
  }

  /**
   * Bytes from this stream: deterministic, as the simulator needs, and so for a real node only
   * through a Random whose `secureBytes` asks the OS (src/io/deno/random.ts).
   */
  secureBytes(n: number): Uint8Array {
    checkSecureBytes(n);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const w = this.u32();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (w >>> (8 * j)) & 0xff;
    }
    return out;
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return p > 0 && this.float() < p;
  }

  /** A uniformly chosen element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError("Random.pick needs a non-empty array");
    return items[this.int(0, items.length)] as T;
  }
}

/** Throws RangeError unless `n` is a byte count `Random.secureBytes` takes. */
export function checkSecureBytes(n: number): void {
  if (!(Number.isInteger(n) && n >= 0 && n <= SECURE_BYTES_MAX)) {
    throw new RangeError(`Random.secureBytes needs 0 to ${SECURE_BYTES_MAX} bytes, got ${n}`);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
