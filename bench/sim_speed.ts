// Simulator speed: simulated seconds per CPU second of this process, per scenario.
//
//   deno task bench:sim                                  every scenario CI sweeps, default seeds
//   deno task bench:sim --scenario cluster --nodes 5 --seeds 1..30
//   deno task bench:sim --runs 3                         each measurement three times
//
// Seeds run one after another in this process, after a warm-up of two seeds. CPU time (user +
// system, from process.cpuUsage) is what a run costs whatever else shares the machine; on an
// idle core it equals wall time. Every run is printed, with its events per CPU second, so a
// change that fires fewer events and one that makes each event cheaper are told apart.

import process from "node:process";
import { runScenario, type ScenarioName, SCENARIOS } from "../sim/runner.ts";

interface Measure {
  scenario: ScenarioName;
  seeds: number[];
  overrides: Record<string, string>;
}

/** What CI sweeps, a slice of each (seeds 1..N of the same options). */
const DEFAULTS: Measure[] = [
  { scenario: "cluster", seeds: range(1, 30), overrides: { nodes: "5" } },
  { scenario: "cluster", seeds: range(1, 30), overrides: {} },
  { scenario: "pubsub", seeds: range(1, 60), overrides: {} },
  { scenario: "groups", seeds: range(1, 40), overrides: {} },
  { scenario: "groups", seeds: range(1, 20), overrides: { nodes: "3" } },
  { scenario: "raft", seeds: range(1, 100), overrides: {} },
  { scenario: "gossip", seeds: range(1, 40), overrides: {} },
];

function range(lo: number, hi: number): number[] {
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

function parse(argv: string[]): { measures: Measure[]; runs: number } {
  let runs = 1;
  let scenario: ScenarioName | null = null;
  let seeds: number[] | null = null;
  const overrides: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (value === undefined || !flag.startsWith("--")) throw new Error(`bad argument ${flag}`);
    const name = flag.slice(2);
    if (name === "runs") runs = Math.max(1, Number(value));
    else if (name === "scenario") {
      if (!(SCENARIOS as readonly string[]).includes(value)) {
        throw new Error(`no scenario ${value}`);
      }
      scenario = value as ScenarioName;
    } else if (name === "seeds") {
      const m = /^(\d+)\.\.(\d+)$/.exec(value);
      if (m === null) throw new Error(`--seeds must look like 1..30, got ${value}`);
      seeds = range(Number(m[1]), Number(m[2]));
    } else overrides[name] = value;
  }
  if (scenario === null) return { measures: DEFAULTS, runs };
  return { measures: [{ scenario, seeds: seeds ?? range(1, 30), overrides }], runs };
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

async function measure(m: Measure): Promise<{ simS: number; cpuS: number; events: number }> {
  let virtualMs = 0;
  let events = 0;
  const cpu0 = cpuMs();
  for (const seed of m.seeds) {
    const r = await runScenario(m.scenario, seed, m.overrides);
    if (r.outcome !== "pass") {
      throw new Error(`${m.scenario} seed ${seed} failed: ${r.violations.slice(0, 2).join("; ")}`);
    }
    virtualMs += r.virtualMs;
    events += r.events;
  }
  return { simS: virtualMs / 1000, cpuS: (cpuMs() - cpu0) / 1000, events };
}

const { measures, runs } = parse(Deno.args);
console.log(`simulator speed, ${runs} run(s) each; load average ${Deno.loadavg()[0]!.toFixed(1)}`);
for (const m of measures) {
  const label = `${m.scenario}${
    Object.entries(m.overrides).map(([k, v]) => ` --${k} ${v}`).join("")
  }` +
    ` seeds ${m.seeds[0]}..${m.seeds.at(-1)}`;
  for (const seed of m.seeds.slice(0, 2)) await runScenario(m.scenario, seed, m.overrides);
  const ratios: number[] = [];
  for (let run = 1; run <= runs; run++) {
    const r = await measure(m);
    const ratio = r.simS / r.cpuS;
    ratios.push(ratio);
    console.log(
      `${label} run ${run}: ${r.simS.toFixed(1)} simulated s in ${r.cpuS.toFixed(2)} CPU s = ` +
        `${ratio.toFixed(1)} sim-s/CPU-s; ${r.events} events, ` +
        `${Math.round(r.events / r.cpuS)} events/CPU-s`,
    );
  }
  ratios.sort((a, b) => a - b);
  console.log(`${label}: median ${ratios[Math.floor(ratios.length / 2)]!.toFixed(1)} sim-s/CPU-s`);
}
