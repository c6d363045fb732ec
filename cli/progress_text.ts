// How gregorctl words the progress of a produce or consume whose end is known: a bar, a percentage
// and an estimate of the time left, from the fraction done so far and the time it took.

/** Cells of the bar: short enough to leave room for the counts on an 80-column terminal. */
export const PROGRESS_BAR_CELLS = 20;

/**
 * `[#####...............] 25%, ETA 3 s` for `fraction` (0..1) done in `elapsedMs`; the ETA
 * assumes the rate so far holds, and is left out until there is a rate to go by.
 */
export function knownEndProgress(fraction: number, elapsedMs: number): string {
  const f = Math.min(Math.max(Number.isFinite(fraction) ? fraction : 0, 0), 1);
  const filled = Math.floor(f * PROGRESS_BAR_CELLS);
  const bar = `[${"#".repeat(filled)}${".".repeat(PROGRESS_BAR_CELLS - filled)}]`;
  const left = f > 0 ? `, ETA ${Math.ceil((elapsedMs * (1 - f)) / f / 1000)} s` : "";
  return `${bar} ${Math.floor(f * 100)}%${left}`;
}
