// The conformance suite's driver as a Node program: npm/build.mjs compiles it, and
// tests/client_node_test.ts runs it once per scenario against brokers it started:
//   node conformance_driver.mjs <scenarios.json> <scenario name> <brokers JSON>
// where <brokers JSON> is [{"listen": "host:port", "pid": 1234, "nodeId": "…"}, ...]. Exits 0 when
// the scenario passed; otherwise prints what failed and exits 1.

import { readFile } from "node:fs/promises";
import * as zlib from "node:zlib";
import { runScenario, type Scenario } from "../_conformance_driver.ts";
import type { CodecName } from "../../src/client/mod.ts";
import { nodeEnv } from "../../src/io/node/mod.ts";

const [scenariosPath, name, brokersJson] = process.argv.slice(2);
if (scenariosPath === undefined || name === undefined || brokersJson === undefined) {
  console.error("usage: conformance_driver.mjs <scenarios.json> <scenario name> <brokers JSON>");
  process.exit(2);
}
const scenarios = JSON.parse(await readFile(scenariosPath, "utf8")).scenarios as Scenario[];
const scenario = scenarios.find((s) => s.name === name);
if (scenario === undefined) {
  console.error(`no scenario named ${name} in ${scenariosPath}`);
  process.exit(2);
}
/** Connection attempts, 20 ms apart, waiting for a killed broker's port to refuse. */
const STOP_POLLS_MAX = 250;
const net = nodeEnv().net;
const brokers = JSON.parse(brokersJson) as { listen: string; pid: number; nodeId: string }[];
// Node 20's node:zlib has no zstd (22.15 added it): the client must say so when asked for it.
const codecsMissing: CodecName[] = "zstdCompressSync" in zlib ? [] : ["zstd"];

try {
  await runScenario(scenario, {
    addrs: brokers.map((b) => b.listen),
    nodeIds: brokers.map((b) => b.nodeId),
    async stop(i) {
      process.kill(brokers[i]!.pid, "SIGKILL");
      // Gone once its port refuses; the Deno side reaps the process.
      const [host, port] = brokers[i]!.listen.split(":");
      for (let n = 0; n < STOP_POLLS_MAX; n++) {
        try {
          (await net.connect({ host: host!, port: Number(port) }, { timeoutMs: 500 })).close();
        } catch {
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error(`broker ${i} still accepts connections after SIGKILL`);
    },
    codecsMissing,
  });
  console.log(JSON.stringify({ scenario: name, ok: true, codecsMissing }));
} catch (err) {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
}
