// Runs the I/O seam's contract suite against the real implementations: loopback TCP and a
// temporary directory per test.

import { denoEnv } from "../src/io/deno/mod.ts";
import { type ContractWorld, defineIoContractTests } from "./io_contract.ts";

const denoWorld: ContractWorld = {
  name: "deno",
  async run(body) {
    const dir = await Deno.makeTempDir({ prefix: "gregormq_contract_" });
    try {
      await body({ env: denoEnv(), dir, host: "127.0.0.1" });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
};

defineIoContractTests(denoWorld);
