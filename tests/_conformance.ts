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

/**
 * Starts `n` brokers on free ports, each with its own data directory; with `cluster`, they form
 * one replicating cluster as conformance/README.md says: the first founds it, the others join it
 * through its cluster address, each started once the one before listens.
 */
export async function startBrokers(
  n: number,
  cluster = false,
): Promise<{ procs: BrokerProcess[]; dirs: string[] }> {
  const procs: BrokerProcess[] = [];
  const dirs: string[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const dir = await Deno.makeTempDir({ prefix: "gregor-conformance-" });
      dirs.push(dir);
      const args = ["--port", "0", "--data-dir", dir, "--no-metrics-enabled", "--fsync", "never"];
      if (cluster) {
        args.push(
          "--cluster-port",
          "0",
          "--cluster-replicate",
          "--cluster-bootstrap-expect",
          String(n),
        );
        if (i > 0) args.push("--seeds", procs[0]!.listen.cluster!);
      }
      procs.push(await spawnBroker(args));
    }
  } catch (err) {
    await stopBrokers({ procs, dirs });
    throw err;
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
    nodeIds: procs.map((p) => p.listen.nodeId ?? ""),
    stop: (i) => killAll([procs[i]!]),
  });
}
