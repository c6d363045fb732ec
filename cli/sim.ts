// `deno task sim`: runs simulated scenarios by seed and prints what each seed decided, the outcome,
// the trace hash, and for a failure the one line that reproduces it.
//
//   deno task sim --seed 42                  one seed, full report
//   deno task sim --seeds 1..500             many seeds, one line each, a summary at the end
//   deno task sim --seed 42 --bug ack-before-sync   plant the example's bug
//   deno task sim --seed 42 --json           the full result as JSON
//   deno task sim --scenario groups --nodes 3 --seed 42   consumer groups on a 3-broker cluster
//   deno task sim --scenario raft --seeds 1..300          Raft alone, leaders cut off after appending
//   deno task sim --scenario storage --seed 7             the file log with bytes flipped at rest

import {
  reproLine,
  type RunResult,
  runScenario,
  type ScenarioName,
  SCENARIOS,
} from "../sim/runner.ts";

const USAGE = `usage: deno task sim [--scenario register|pubsub|gossip|groups|cluster|raft|storage]
         (--seed N | --seeds A..B) [--json]
         [--faults swarm|calm]
  register: [--bug ack-before-sync|none] [--replicas N] [--writers N] [--readers N]
            [--safetyMs N] [--livenessMs N]
  pubsub:   [--subscribers N] [--messages N] [--inFlight N] [--safetyMs N] [--livenessMs N]
            [--segmentBytes N] [--durableSubscribers N]
  gossip:   [--nodes N] [--intervalMs N] [--safetyMs N] [--livenessMs N] [--lateJoiners N]
            [--keepDown 0|1] [--wallJumps 0|1] [--secret 0|1]
  groups:   [--nodes 1|3] [--members N] [--staticMembers N] [--partitions N] [--messages N]
            [--sessionTimeoutMs N] [--safetyMs N] [--livenessMs N] [--bugNoFence 0|1]
            [--bugReuseGenerations 0|1]
  raft:     [--nodes 3|5] [--tickMs N] [--electionTimeoutMs N] [--heartbeatIntervalMs N]
            [--appendEntriesMax N] [--inflightMax N] [--latencyMs N] [--safetyMs N] [--livenessMs N]
  storage:  [--batches N] [--segmentBytes N] [--indexIntervalBytes N] [--flips N] [--reads N]`;

interface Args {
  scenario: ScenarioName;
  seeds: number[];
  json: boolean;
  overrides: Record<string, string>;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { scenario: "register", seeds: [], json: false, overrides: {} };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (flag === "--json") {
      args.json = true;
      continue;
    }
    if (flag === "--help" || flag === "-h") throw new Error(USAGE);
    if (!flag.startsWith("--")) throw new Error(`Unexpected argument ${flag}\n${USAGE}`);
    const value = argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value\n${USAGE}`);
    const name = flag.slice(2);
    if (name === "scenario") {
      if (!(SCENARIOS as readonly string[]).includes(value)) {
        throw new Error(`--scenario must be one of ${SCENARIOS.join(", ")}, got ${value}`);
      }
      args.scenario = value as ScenarioName;
    } else if (name === "seed") {
      args.seeds = [parseSeed(value)];
    } else if (name === "seeds") {
      const m = /^(\d+)\.\.(\d+)$/.exec(value);
      if (m === null) throw new Error(`--seeds must look like 1..500, got ${value}`);
      const lo = parseSeed(m[1]!);
      const hi = parseSeed(m[2]!);
      if (hi < lo || hi - lo >= 100_000) {
        throw new Error(`--seeds range ${value} is empty or too big`);
      }
      args.seeds = Array.from({ length: hi - lo + 1 }, (_, k) => lo + k);
    } else {
      args.overrides[name] = value;
    }
  }
  if (args.seeds.length === 0) throw new Error(`Give --seed N or --seeds A..B\n${USAGE}`);
  return args;
}

function parseSeed(s: string): number {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`A seed is a whole number >= 0, got ${s}`);
  return n;
}

/** Violations printed per run; the rest are counted. */
const VIOLATIONS_SHOWN_MAX = 10;

function shown(violations: string[]): string[] {
  if (violations.length <= VIOLATIONS_SHOWN_MAX) return violations;
  const more = violations.length - VIOLATIONS_SHOWN_MAX;
  return [...violations.slice(0, VIOLATIONS_SHOWN_MAX), `... and ${more} more`];
}

function report(r: RunResult, realMs: number): string {
  const lines = [
    `scenario   ${r.scenario}`,
    `seed       ${r.seed}`,
    `options    ${JSON.stringify(r.options)}`,
    `faults     net=${JSON.stringify(r.plan.net)}`,
    `           disk=${JSON.stringify(r.plan.disk)}`,
    `           nemesis=${JSON.stringify(r.plan.nemesis)} every~${
      r.plan.nemesisIntervalMs.toFixed(0)
    }ms downMax=${r.plan.downNodesMax} drift<=${r.plan.clockDriftMax.toFixed(4)}`,
    `stats      ${JSON.stringify(r.stats)}`,
    `events     ${r.events} in ${r.virtualMs.toFixed(0)} virtual ms, ${
      realMs.toFixed(0)
    } real ms (${(r.virtualMs / Math.max(realMs, 0.001)).toFixed(0)}x real time)`,
    `trace      ${r.traceHash}`,
    `outcome    ${r.outcome.toUpperCase()}`,
  ];
  for (const n of (r.notes ?? []).slice(0, 50)) lines.push(`note       ${n}`);
  for (const v of shown(r.violations)) lines.push(`violation  ${v}`);
  return lines.join("\n");
}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(Deno.args);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  let failed = 0;
  const started = performance.now();
  for (const seed of args.seeds) {
    const t0 = performance.now();
    let r: RunResult;
    try {
      r = await runScenario(args.scenario, seed, args.overrides);
    } catch (err) {
      console.error((err as Error).message);
      return 2;
    }
    const realMs = performance.now() - t0;
    const repro = reproLine(args.scenario, seed, args.overrides);
    if (r.outcome === "fail") failed++;
    if (args.json) console.log(JSON.stringify({ ...r, realMs }));
    else if (args.seeds.length === 1) console.log(report(r, realMs));
    else {
      console.log(
        `seed ${seed} ${r.outcome} trace ${r.traceHash} events ${r.events} ${realMs.toFixed(0)}ms`,
      );
      for (const v of shown(r.violations)) console.log(`  violation ${v}`);
    }
    if (r.outcome === "fail") console.log(`reproduce: ${repro}`);
  }
  if (args.seeds.length > 1) {
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`${args.seeds.length - failed} passed, ${failed} failed (${secs} s)`);
  }
  return failed > 0 ? 1 : 0;
}

Deno.exit(await main());
