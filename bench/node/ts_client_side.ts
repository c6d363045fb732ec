// The TypeScript client's side of the SDK benchmarks on Node 20+: the same runs as on Deno
// (bench/_ts_client_run.ts), bundled by npm/build.mjs into npm/build/ts_client_bench.mjs, where
// `connect()` finds itself on Node. Prints one JSON line per scenario, as the other SDKs' sides:
// `node npm/build/ts_client_bench.mjs --server HOST:PORT --topic PREFIX --count N --window N --size N`

import { parseArgs } from "node:util";
import { tsClientRun } from "../_ts_client_run.ts";

const { values } = parseArgs({
  options: {
    server: { type: "string", default: "127.0.0.1:7070" },
    topic: { type: "string", default: "bench-node" },
    count: { type: "string", default: "200000" },
    window: { type: "string", default: "10000" },
    size: { type: "string", default: "100" },
    linger: { type: "string", default: "2" },
  },
});
for (const scenario of ["produce", "produce-consume"]) {
  const msgsPerSec = await tsClientRun({
    server: values.server,
    topic: `${values.topic}-${scenario}`,
    consume: scenario !== "produce",
    count: Number(values.count),
    window: Number(values.window),
    size: Number(values.size),
    lingerMs: Number(values.linger),
  });
  console.log(JSON.stringify({ scenario, msgsPerSec }));
}
