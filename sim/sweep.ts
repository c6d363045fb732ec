// Runs a range of a scenario's seeds in worker threads (one per core, see sweepJobs): each
// worker takes the next seed as soon as it finishes one, so a slow seed holds up one worker, not the
// sweep. The result is the same whatever the order seeds finish in: failures are listed by seed and
// counters are sums, and each seed runs alone in its worker as it would in `deno task sim`.

import { type Overrides, reproLine, type ScenarioName } from "./runner.ts";

/** One seed for a worker. */
export interface SeedJob {
  scenario: ScenarioName;
  seed: number;
  overrides: Overrides;
}

/** What a worker found for one seed. */
export interface SeedReport {
  seed: number;
  outcome: "pass" | "fail";
  violations: string[];
  stats: Record<string, number>;
}

/** What a sweep found. */
export interface SweepResult {
  /** One entry per failing seed, in seed order: its reproduction line and first violations. */
  failures: string[];
  /** Every counter summed over the seeds. */
  totals: Record<string, number>;
  /** Seeds run. */
  seeds: number;
}

/** Workers at most, whatever the machine reports. */
const SWEEP_JOBS_MAX = 4;

/**
 * Workers for a sweep: one per core, at least one, at most SWEEP_JOBS_MAX. (One per core but one
 * left CI's process tests a core of their own, and made the whole run 7 s longer: 577 against 570
 * s, docs/architecture.md, "CI's seed ranges".)
 */
export function sweepJobs(): number {
  const cores = navigator.hardwareConcurrency || 1;
  return Math.max(1, Math.min(SWEEP_JOBS_MAX, cores));
}

/** Runs seeds `from`..`to` of `scenario` with `overrides` in `jobs` workers. */
export async function sweep(
  scenario: ScenarioName,
  from: number,
  to: number,
  overrides: Overrides = {},
  jobs = sweepJobs(),
): Promise<SweepResult> {
  const reports: SeedReport[] = [];
  let next = from;
  const workers: Worker[] = [];
  try {
    const runs: Promise<void>[] = [];
    for (let w = 0; w < Math.min(jobs, to - from + 1); w++) {
      const worker = new Worker(new URL("./sweep_worker.ts", import.meta.url), { type: "module" });
      workers.push(worker);
      runs.push(
        new Promise<void>((resolve, reject) => {
          const give = () => {
            if (next > to) return resolve();
            const job: SeedJob = { scenario, seed: next++, overrides };
            worker.postMessage(job);
          };
          worker.onmessage = (e: MessageEvent<SeedReport>) => {
            reports.push(e.data);
            give();
          };
          worker.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`sweep worker for ${scenario} failed: ${e.message}`));
          };
          give();
        }),
      );
    }
    await Promise.all(runs);
  } finally {
    for (const w of workers) w.terminate();
  }
  reports.sort((a, b) => a.seed - b.seed);
  const totals: Record<string, number> = {};
  const failures: string[] = [];
  for (const r of reports) {
    if (r.outcome === "fail") {
      failures.push(`${reproLine(scenario, r.seed, overrides)}\n  ${r.violations.join("\n  ")}`);
    }
    for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
  }
  return { failures, totals, seeds: reports.length };
}
