// The conformance suite's (conformance/scenarios.json) broker side on Deno: reads the scenarios,
// starts broker processes and runs a scenario against them with the driver in
// _conformance_driver.ts.

import { type BrokerProcess, killAll, spawnBroker } from "./_broker_process.ts";
import { runScenario as runScenarioOn, type Scenario } from "./_conformance_driver.ts";

export type { Scenario, Step } from "./_conformance_driver.ts";

/** The suite's data files, read once. */
export const SCENARIOS = JSON.parse(
  await Deno.readTextFile(new URL("../conformance/scenarios.json", import.meta.url)),
).scenarios as Scenario[];

/** Starts `n` brokers on free ports, each with its own data directory. */
export async function startBrokers(n: number): Promise<{ procs: BrokerProcess[]; dirs: string[] }> {
  const procs: BrokerProcess[] = [];
  const dirs: string[] = [];
  for (let i = 0; i < n; i++) {
    const dir = await Deno.makeTempDir({ prefix: "gregor-conformance-" });
    dirs.push(dir);
    procs.push(
      await spawnBroker([
        "--port",
        "0",
        "--data-dir",
        dir,
        "--no-metrics-enabled",
        "--fsync",
        "never",
      ]),
    );
  }
  return { procs, dirs };
}

/** Stops brokers started by `startBrokers` and removes their data. */
export async function stopBrokers(b: { procs: BrokerProcess[]; dirs: string[] }): Promise<void> {
  await killAll(b.procs);
  for (const d of b.dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
}

/** Runs one scenario with the TypeScript client on Deno against broker processes `procs`. */
export function runScenario(s: Scenario, procs: BrokerProcess[]): Promise<void> {
  return runScenarioOn(s, {
    addrs: procs.map((p) => p.listen.listen),
    stop: (i) => killAll([procs[i]!]),
  });
}
