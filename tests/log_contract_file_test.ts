// Runs the Log contract suite against FileLog, on the simulated disk and on real files in a
// temporary directory.

import { denoEnv } from "../src/io/deno/mod.ts";
import type { Env } from "../src/io/types.ts";
import { FileLog, type Log } from "../src/storage/mod.ts";
import { calmDisk } from "../sim/disk.ts";
import { runOnNode } from "../sim/harness.ts";
import { Simulation } from "../sim/simulation.ts";
import { defineLogContractTests, type LogShape, type LogWorld } from "./log_contract.ts";

/** A world whose logs are FileLogs in fresh directories under `root`. */
function fileWorld(env: Env, root: string): LogWorld {
  let dirs = 0;
  return {
    open: (shape: LogShape = {}): Promise<Log> =>
      FileLog.open(env, {
        dir: `${root}/log-${dirs++}`,
        fsync: { kind: "always" },
        segmentBytes: shape.segmentBytes ?? 1 << 20,
        segmentMs: 7 * 24 * 3_600_000,
        indexIntervalBytes: 256,
        retentionBytes: -1,
        retentionMs: -1,
        onFatal: (reason) => {
          throw new Error(`The log failed: ${reason}`);
        },
      }),
    retain: async (log, limits) => {
      const file = log as FileLog;
      file.setRetention({
        bytes: Number.isFinite(limits.bytes) ? limits.bytes : -1,
        ms: limits.ms ?? -1,
      });
      await file.enforceRetention();
    },
    wallMs: () => env.clock.wallMs(),
  };
}

defineLogContractTests({
  name: "FileLog on the simulated disk",
  retainsByTime: true,
  async run(body) {
    const sim = new Simulation(20261214, { disk: calmDisk() });
    await runOnNode(sim, "n", (env) => body(fileWorld(env, "logs")));
  },
});

defineLogContractTests({
  name: "FileLog on real files",
  retainsByTime: true,
  async run(body) {
    const dir = await Deno.makeTempDir({ prefix: "gregormq_log_contract_" });
    try {
      await body(fileWorld(denoEnv(), dir));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
