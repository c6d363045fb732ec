// The real Clock: monotonic time from performance.now(), wall time from Date.now(), sleeps on
// timers that are always cleared, so nothing outlives an aborted sleep.

import { abortError } from "../errors.ts";
import type { Clock } from "../types.ts";

/** A `Clock` on the host's monotonic and wall clocks. */
export class DenoClock implements Clock {
  now(): number {
    return performance.now();
  }

  wallMs(): number {
    return Date.now();
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      const deadline = this.now() + ms;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(abortError(signal as AbortSignal));
      };
      // Timers are scheduled on a millisecond grid that need not match performance.now(), so
      // re-arm until this clock has really advanced by `ms`: callers rely on now() having moved.
      const fire = (): void => {
        const leftMs = deadline - this.now();
        if (leftMs > 0) {
          timer = setTimeout(fire, Math.ceil(leftMs));
          return;
        }
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      timer = setTimeout(fire, Math.max(0, Math.ceil(ms)));
    });
  }
}
