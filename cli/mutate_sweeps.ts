// The child process of `deno task mutate`, run in a scratch copy of the repository with one planted
// bug: `mutate_sweeps.ts <seeds cap> <sweep,sweep,...>` runs the sweeps in that order until one
// fails, printing each outcome on a line of its own.

import { OUTCOME_PREFIX, runSweep, type SweepName, SWEEPS } from "../sim/mutate/sweeps.ts";

const cap = Number(Deno.args[0]);
const names = (Deno.args[1] ?? "").split(",") as SweepName[];
for (const name of names) {
  const sweep = SWEEPS[name];
  if (sweep === undefined) throw new Error(`Unknown sweep ${name}`);
  const outcome = await runSweep(sweep, Math.min(cap, sweep.ciSeeds));
  console.log(OUTCOME_PREFIX + JSON.stringify(outcome));
  if (outcome.failedSeed !== null) break;
}
Deno.exit(0);
