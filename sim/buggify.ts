// Fault points at protocol steps (FoundationDB's BUGGIFY) for a seeded run: each named point the
// code asks about is switched on for the whole run with some probability the first time it is
// asked, and an enabled point then fires on a small share of the times it is reached. So each seed
// stresses a different few steps hard instead of every step a little ("swarm" testing again).

import type { FaultPoints, Random } from "../src/io/types.ts";

/** How a run's fault points behave. */
export interface BuggifyOptions {
  /** Chance a point is enabled for the run, decided the first time it is asked about. */
  enabledChance: number;
  /** Chance an enabled point fires each time it is reached. */
  fireChance: number;
}

/** Per-run defaults: half the points on, each firing on one pass in 30. */
export const BUGGIFY_DEFAULTS: BuggifyOptions = { enabledChance: 0.5, fireChance: 1 / 30 };

/** A run's fault points, with a count of how often each fired. */
export class Buggify implements FaultPoints {
  /** Fires per point (points never fired are absent). */
  readonly fired = new Map<string, number>();
  readonly #enabled = new Map<string, boolean>();
  readonly #random: Random;
  readonly #o: BuggifyOptions;
  #calm = false;

  /** @param random a stream of the run's own (fork it: draws here must not shift others). */
  constructor(random: Random, opts: BuggifyOptions = BUGGIFY_DEFAULTS) {
    this.#random = random;
    this.#o = opts;
  }

  /** True if `point` fires now: enabled for this run, and this pass drawn. */
  fires(point: string): boolean {
    if (this.#calm) return false;
    let on = this.#enabled.get(point);
    if (on === undefined) {
      on = this.#random.float() < this.#o.enabledChance;
      this.#enabled.set(point, on);
    }
    if (!on || !(this.#random.float() < this.#o.fireChance)) return false;
    this.fired.set(point, (this.fired.get(point) ?? 0) + 1);
    return true;
  }

  /** No point fires from now on (the liveness phase). */
  calm(): void {
    this.#calm = true;
  }

  /** A seeded choice in [0, n). */
  pick(n: number): number {
    return this.#random.int(0, n);
  }

  /** Fires per point as run stats: `buggify:<point>`. */
  stats(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [point, n] of this.fired) out[`buggify:${point}`] = n;
    return out;
  }
}
