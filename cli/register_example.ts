// Serves the simulator's example workload (one replica of the replicated register store) on real
// TCP and real files: the same code the simulator runs under faults. Used by
// tests/register_process_test.ts; not part of the broker.

import { parseArgs } from "node:util";
import { denoEnv } from "../src/io/deno/mod.ts";
import { runReplica } from "../sim/example/register_replica.ts";

const DEFAULT_PORT = 7000;
const DEFAULT_DATA_DIR = "./data";

function usage(): string {
  return `usage: deno run -A cli/register_example.ts [--host 127.0.0.1] [--port ${DEFAULT_PORT}] [--data-dir ${DEFAULT_DATA_DIR}]`;
}

function main(): Promise<void> | number {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        "data-dir": { type: "string", default: DEFAULT_DATA_DIR },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n${usage()}`);
    return 2;
  }
  if (values.help) {
    console.log(usage());
    return 0;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port must be a whole number from 0 to 65535, got ${values.port}`);
    return 2;
  }
  const dataDir = values["data-dir"];
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  Deno.addSignalListener("SIGINT", () => Deno.exit(0));
  return runReplica(denoEnv(), {
    incarnation: 0,
    fatal(reason) {
      console.error(JSON.stringify({ level: "fatal", msg: reason }));
      Deno.exit(1);
    },
  }, {
    host: values.host,
    port,
    dataDir,
    onListening(addr) {
      console.log(JSON.stringify({
        level: "info",
        msg: "serving the register example",
        listen: `${addr.host}:${addr.port}`,
        dataDir,
      }));
    },
  });
}

const result = main();
if (typeof result === "number") Deno.exit(result);
await result;
