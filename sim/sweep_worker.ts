// A worker of sim/sweep.ts: runs the seeds it is handed, one at a time, and posts back what each
// found. Nothing here touches the OS: the scenarios run on the simulator's clock, network and disks.

/// <reference lib="deno.worker" />

import { type Overrides, runScenario, type ScenarioName } from "./runner.ts";
import type { SeedJob, SeedReport } from "./sweep.ts";

/** Violations of a failing seed kept in its report. */
const VIOLATIONS_KEPT = 3;

self.onmessage = async (e: MessageEvent<SeedJob>) => {
  const { scenario, seed, overrides } = e.data;
  let report: SeedReport;
  try {
    const r = await runScenario(scenario as ScenarioName, seed, overrides as Overrides);
    report = {
      seed,
      outcome: r.outcome,
      violations: r.violations.slice(0, VIOLATIONS_KEPT),
      stats: r.stats,
    };
  } catch (err) {
    // A scenario that throws is a failure of that seed, not of the sweep.
    report = {
      seed,
      outcome: "fail",
      violations: [`the run threw: ${(err as Error).stack ?? err}`],
      stats: {},
    };
  }
  self.postMessage(report);
};
