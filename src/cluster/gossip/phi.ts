// Phi-accrual failure detection (Hayashibara et al.) over the times this node sees a member's
// heartbeat advance. Heartbeats travel by gossip, so their inter-arrival times are irregular; like
// Cassandra we model them as exponentially distributed, which makes phi = t / (mean · ln 10): the
// suspicion grows linearly with silence, scaled by how often the member was heard from before.

/** Inter-arrival samples kept per member at most. */
export const PHI_SAMPLES_MAX = 100;
/** Below this many samples the mean is the bootstrap estimate, not the measured one. */
export const PHI_SAMPLES_MIN = 5;

/** Options for an ArrivalWindow. */
export interface ArrivalWindowOptions {
  /** Samples kept (the newest); 1..PHI_SAMPLES_MAX. Default PHI_SAMPLES_MAX. */
  samplesMax?: number;
  /** The mean inter-arrival time assumed until PHI_SAMPLES_MIN samples exist, ms. */
  bootstrapMs: number;
  /** The mean never counts as lower than this, ms: a burst of arrivals must not make phi twitchy. */
  meanMsMin: number;
}

/** The arrival history of one member's heartbeat, and the phi it implies. */
export class ArrivalWindow {
  readonly #samplesMax: number;
  readonly #bootstrapMs: number;
  readonly #meanMsMin: number;
  readonly #samples: number[] = [];
  /** Index in `#samples` the next sample overwrites once the window is full. */
  #next = 0;
  #sum = 0;
  #lastMs: number;

  /** A window whose first arrival (the member becoming known) is at `nowMs`. */
  constructor(opts: ArrivalWindowOptions, nowMs: number) {
    const samplesMax = opts.samplesMax ?? PHI_SAMPLES_MAX;
    if (!Number.isInteger(samplesMax) || samplesMax < 1 || samplesMax > PHI_SAMPLES_MAX) {
      throw new RangeError(`samplesMax must be 1..${PHI_SAMPLES_MAX}, got ${samplesMax}`);
    }
    if (!(opts.bootstrapMs > 0) || !(opts.meanMsMin > 0)) {
      throw new RangeError(
        `bootstrapMs and meanMsMin must be > 0, got ${opts.bootstrapMs}, ${opts.meanMsMin}`,
      );
    }
    this.#samplesMax = samplesMax;
    this.#bootstrapMs = opts.bootstrapMs;
    this.#meanMsMin = opts.meanMsMin;
    this.#lastMs = nowMs;
  }

  /** Samples held. */
  get samples(): number {
    return this.#samples.length;
  }

  /** When the heartbeat last advanced (or the window was restarted), ms. */
  get lastMs(): number {
    return this.#lastMs;
  }

  /** The heartbeat advanced at `nowMs`: records the interval since the last arrival. */
  record(nowMs: number): void {
    const interval = nowMs - this.#lastMs;
    this.#lastMs = Math.max(this.#lastMs, nowMs);
    if (!(interval > 0)) return;
    if (this.#samples.length < this.#samplesMax) {
      this.#samples.push(interval);
    } else {
      this.#sum -= this.#samples[this.#next] as number;
      this.#samples[this.#next] = interval;
      this.#next = (this.#next + 1) % this.#samplesMax;
    }
    this.#sum += interval;
  }

  /**
   * The heartbeat advanced at `nowMs` after a silence that says nothing about the usual rhythm (the
   * member was suspected, or this node was paused): starts timing from now without a sample.
   */
  restart(nowMs: number): void {
    this.#lastMs = Math.max(this.#lastMs, nowMs);
  }

  /** The mean inter-arrival time phi is scaled by, ms. */
  mean(): number {
    const n = this.#samples.length;
    const measured = n < PHI_SAMPLES_MIN ? this.#bootstrapMs : this.#sum / n;
    return Math.max(measured, this.#meanMsMin);
  }

  /** The suspicion level at `nowMs`: -log10 of the probability that the heartbeat is just late. */
  phi(nowMs: number): number {
    const silentMs = Math.max(0, nowMs - this.#lastMs);
    return silentMs / (this.mean() * Math.LN10);
  }
}
