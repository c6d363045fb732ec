// Runs scenarios by name and reports them: every option the seed decided, the outcome, the trace
// hash, and for a failure the one command line that reproduces it.

import { registerOptions, runRegister } from "./example/register_scenario.ts";
import { pubsubOptions, runPubSub } from "./pubsub_scenario.ts";
export type { RunResult } from "./result.ts";
import type { RunResult } from "./result.ts";
import { gossipOptions, runGossip } from "./gossip_scenario.ts";
import { groupOptions, runGroups } from "./group_scenario.ts";
import { clusterOptions, runCluster } from "./cluster_scenario.ts";
import { raftOptions, runRaft } from "./raft_scenario.ts";
import { runStorage, storageOptions } from "./storage_scenario.ts";

/** Scenarios `deno task sim` can run. */
export const SCENARIOS = [
  "register",
  "pubsub",
  "gossip",
  "groups",
  "cluster",
  "raft",
  "storage",
] as const;
/** A scenario's name. */
export type ScenarioName = typeof SCENARIOS[number];

/** Option overrides a command line may give (strings as typed, parsed by the scenario). */
export type Overrides = Record<string, string>;

/** Runs `scenario` for `seed` with `overrides` applied to the options derived from the seed. */
export function runScenario(
  scenario: ScenarioName,
  seed: number,
  overrides: Overrides = {},
): Promise<RunResult> {
  switch (scenario) {
    case "register":
      return runRegister(registerOptions(seed, parseRegisterOverrides(overrides)));
    case "pubsub":
      return runPubSub(pubsubOptions(seed, parseNumbers("pubsub", overrides, PUBSUB_NUMBERS)));
    case "gossip":
      return runGossip(gossipOptions(seed, parseNumbers("gossip", overrides, GOSSIP_NUMBERS)));
    case "groups":
      return runGroups(groupOptions(seed, parseNumbers("groups", overrides, GROUP_NUMBERS)));
    case "cluster":
      return runCluster(clusterOptions(seed, parseNumbers("cluster", overrides, CLUSTER_NUMBERS)));
    case "raft":
      return runRaft(raftOptions(seed, parseNumbers("raft", overrides, RAFT_NUMBERS)));
    case "storage":
      return runStorage(storageOptions(seed, parseNumbers("storage", overrides, STORAGE_NUMBERS)));
  }
}

function parseRegisterOverrides(o: Overrides): Parameters<typeof registerOptions>[1] {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    switch (k) {
      case "replicas":
      case "writers":
      case "readers":
      case "safetyMs":
      case "livenessMs": {
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0) {
          throw new Error(`--${k} must be a whole number, got ${v}`);
        }
        out[k] = n;
        break;
      }
      case "faults":
        if (v !== "swarm" && v !== "calm") {
          throw new Error(`--faults must be swarm or calm, got ${v}`);
        }
        out[k] = v;
        break;
      case "bug":
        if (v !== "ack-before-sync" && v !== "none") {
          throw new Error(`--bug must be ack-before-sync or none, got ${v}`);
        }
        out[k] = v === "none" ? null : v;
        break;
      default:
        throw new Error(`Unknown option --${k} for scenario register`);
    }
  }
  return out;
}

const PUBSUB_NUMBERS = [
  "subscribers",
  "messages",
  "inFlight",
  "safetyMs",
  "livenessMs",
  "segmentBytes",
  "durableSubscribers",
  "windowMessages",
];

const GOSSIP_NUMBERS = [
  "nodes",
  "intervalMs",
  "safetyMs",
  "livenessMs",
  "lateJoiners",
  "keepDown",
  "wallJumps",
  "secret",
];

const RAFT_NUMBERS = [
  "nodes",
  "tickMs",
  "electionTimeoutMs",
  "heartbeatIntervalMs",
  "appendEntriesMax",
  "inflightMax",
  "latencyMs",
  "safetyMs",
  "livenessMs",
];

const STORAGE_NUMBERS = ["batches", "segmentBytes", "indexIntervalBytes", "flips", "reads"];

const CLUSTER_NUMBERS = [
  "nodes",
  "partitions",
  "replicationFactor",
  "messages",
  "safetyMs",
  "livenessMs",
  "bugVoteWithoutLogCheck",
  "bugAckBeforeCommit",
  "tickMs",
  "electionTimeoutMs",
  "heartbeatIntervalMs",
  "appendEntriesMax",
  "appendBytesMax",
  "inflightMax",
  "secret",
];

const GROUP_NUMBERS = [
  "members",
  "staticMembers",
  "partitions",
  "messages",
  "sessionTimeoutMs",
  "safetyMs",
  "livenessMs",
  "bugNoFence",
  "bugReuseGenerations",
  "nodes",
];

/** Parses whole-number options (and --faults) shared by the broker scenarios. */
function parseNumbers(
  scenario: string,
  o: Overrides,
  numeric: readonly string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    if (k === "faults") {
      if (v !== "swarm" && v !== "calm") {
        throw new Error(`--faults must be swarm or calm, got ${v}`);
      }
      out[k] = v;
    } else if (numeric.includes(k)) {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`--${k} must be a whole number, got ${v}`);
      out[k] = n;
    } else {
      throw new Error(`Unknown option --${k} for scenario ${scenario}`);
    }
  }
  return out;
}

/** The command that reruns exactly this run. */
export function reproLine(scenario: ScenarioName, seed: number, overrides: Overrides): string {
  const extra = Object.entries(overrides).map(([k, v]) => ` --${k} ${v}`).join("");
  return `deno task sim --scenario ${scenario} --seed ${seed}${extra}`;
}
