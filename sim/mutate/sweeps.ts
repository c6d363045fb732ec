// The seeded sweeps CI runs (sim/sweeps_test.ts), as plain loops the mutation tool can run in a
// scratch copy of the repository: each stops at its first failing seed.

import { clusterOptions, runCluster } from "../cluster_scenario.ts";
import { groupOptions, runGroups } from "../group_scenario.ts";
import { pubsubOptions, runPubSub } from "../pubsub_scenario.ts";
import { raftOptions, runRaft } from "../raft_scenario.ts";
import { runStorage, storageOptions } from "../storage_scenario.ts";
import type { RunResult } from "../result.ts";

/** A sweep: a scenario over seeds 1..ciSeeds. */
export interface Sweep {
  name: SweepName;
  /** Seeds CI runs (sim/sweeps_test.ts): twice what issue [M] found CI running. */
  ciSeeds: number;
  /** Rough real time of one seed, ms: budgets the tool's timeout. */
  seedMs: number;
  run(seed: number): Promise<RunResult>;
}

/** The sweeps' names. */
export type SweepName = "cluster" | "groups" | "groups3" | "pubsub" | "storage" | "raft";

/** Every sweep CI runs, with its CI seed budget. */
export const SWEEPS: Readonly<Record<SweepName, Sweep>> = {
  cluster: {
    name: "cluster",
    ciSeeds: 600,
    seedMs: 400,
    run: (seed) => runCluster(clusterOptions(seed)),
  },
  groups: {
    name: "groups",
    ciSeeds: 600,
    seedMs: 120,
    run: (seed) => runGroups(groupOptions(seed)),
  },
  groups3: {
    name: "groups3",
    ciSeeds: 200,
    seedMs: 400,
    run: (seed) => runGroups(groupOptions(seed, { nodes: 3 })),
  },
  pubsub: {
    name: "pubsub",
    ciSeeds: 1000,
    seedMs: 100,
    run: (seed) => runPubSub(pubsubOptions(seed)),
  },
  storage: {
    name: "storage",
    ciSeeds: 600,
    seedMs: 60,
    run: (seed) => runStorage(storageOptions(seed)),
  },
  raft: {
    name: "raft",
    ciSeeds: 600,
    seedMs: 150,
    run: (seed) => runRaft(raftOptions(seed)),
  },
};

/** What a sweep found: the first failing seed and its first violation, or none. */
export interface SweepOutcome {
  sweep: SweepName;
  seeds: number;
  failedSeed: number | null;
  violation: string | null;
}

/** Runs `sweep` over seeds 1..seeds, stopping at the first failure (a thrown error counts). */
export async function runSweep(sweep: Sweep, seeds: number): Promise<SweepOutcome> {
  for (let seed = 1; seed <= seeds; seed++) {
    let violation: string | null = null;
    try {
      const r = await sweep.run(seed);
      if (r.outcome === "fail") violation = r.violations[0] ?? "failed without a violation";
    } catch (err) {
      violation = `the run threw: ${(err as Error).message}`;
    }
    if (violation !== null) return { sweep: sweep.name, seeds, failedSeed: seed, violation };
  }
  return { sweep: sweep.name, seeds, failedSeed: null, violation: null };
}

/** The line a child process prints its outcome on, for the mutation tool to parse. */
export const OUTCOME_PREFIX = "sweep-outcome ";
