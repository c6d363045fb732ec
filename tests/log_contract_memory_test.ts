// Runs the Log contract suite against MemoryLog.

import { MemoryLog } from "../src/storage/mod.ts";
import { defineLogContractTests } from "./log_contract.ts";

defineLogContractTests({
  name: "MemoryLog",
  retainsByTime: false,
  async run(body) {
    await body({
      open: () => Promise.resolve(new MemoryLog({ retentionBytes: Infinity })),
      retain: (log, limits) => {
        (log as MemoryLog).setRetention({ bytes: limits.bytes });
        return Promise.resolve();
      },
      wallMs: () => 1_800_000_000_000,
    });
  },
});
