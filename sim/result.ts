// What a simulated run reports, and the one way scenarios assemble it.

import type { FaultPlan } from "./faults.ts";
import type { Simulation } from "./simulation.ts";

/** What one simulated run did and found. */
export interface RunResult {
  scenario: string;
  seed: number;
  /** Every option of the run, derived from the seed or given. */
  options: Record<string, unknown>;
  plan: FaultPlan;
  outcome: "pass" | "fail";
  violations: string[];
  /** Hash of every fired event and history entry; equal for two runs of the same seed. */
  traceHash: string;
  events: number;
  virtualMs: number;
  /** Counters: operations, faults injected, fault paths taken. */
  stats: Record<string, number>;
  /** What the nodes reported and how they exited, in order: printed for a single seed. */
  notes?: string[];
}

/** The scenario-specific parts of a result; the rest comes from the simulation itself. */
export interface RunReport {
  scenario: string;
  seed: number;
  options: object;
  plan: FaultPlan;
  violations: string[];
  stats: Record<string, number>;
  notes?: string[];
}

/** Assembles a run's result: outcome from the violations, trace and counts from the world. */
export function runResult(sim: Simulation, report: RunReport): RunResult {
  return {
    scenario: report.scenario,
    seed: report.seed,
    options: { ...report.options },
    plan: report.plan,
    outcome: report.violations.length === 0 ? "pass" : "fail",
    violations: report.violations,
    traceHash: sim.world.trace.hex(),
    events: sim.world.eventsFired,
    virtualMs: sim.world.now,
    stats: report.stats,
    ...(report.notes === undefined ? {} : { notes: report.notes }),
  };
}
