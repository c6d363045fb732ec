// The I/O contract suite run against the simulator's twins, on a network that splits, merges and
// shortens reads and writes, and a disk with realistic latencies.

import { runOnNode } from "../sim/harness.ts";
import { Simulation } from "../sim/simulation.ts";
import { defineIoContractTests } from "./io_contract.ts";

defineIoContractTests({
  name: "sim",
  async run(body) {
    const sim = new Simulation(20261127, {
      net: { latencyMs: 0.5, jitterMs: 1, splitProb: 0.3, shortWriteProb: 0.3, shortReadProb: 0.3 },
    });
    await runOnNode(sim, "contract", async (env) => {
      await env.disk.mkdir("work");
      await body({ env, dir: "work", host: "contract" });
    });
  },
});
