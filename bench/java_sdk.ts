// The Java SDK against the TypeScript client on Deno, in the same run against one broker process:
// produce of 100-byte messages and produce→consume, at most `window` unconfirmed messages, memory
// topics, both producers lingering 2 ms, the median of `runs` runs per client.
// `deno run -A bench/java_sdk.ts [--count N] [--runs N] [--window N]`. The Java side is
// sdk/java/src/test/java/dev/gregormq/Bench.java, compiled by Maven before timing.

import { parseArgs } from "node:util";
import { tsClientRun } from "./_ts_client_run.ts";
import { killAll, spawnBroker } from "../tests/_broker_process.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "200000" },
    runs: { type: "string", default: "3" },
    window: { type: "string", default: "10000" },
    size: { type: "string", default: "100" },
  },
});
const count = Number(values.count);
const runs = Number(values.runs);
const window = Number(values.window);
const size = Number(values.size);
const LINGER_MS = 2;
const SDK = new URL("../sdk/java/", import.meta.url).pathname;

const build = await new Deno.Command("mvn", {
  args: [
    "-q",
    "-B",
    "test-compile",
    "dependency:build-classpath",
    "-Dmdep.outputFile=target/cp.txt",
  ],
  cwd: SDK,
}).output();
if (build.code !== 0) throw new Error(new TextDecoder().decode(build.stdout));
const classpath = `target/classes:target/test-classes:${
  (await Deno.readTextFile(`${SDK}target/cp.txt`)).trim()
}`;

const dir = await Deno.makeTempDir({ prefix: "gregor-bench-java-" });
const broker = await spawnBroker([
  "--port",
  "0",
  "--data-dir",
  `${dir}/data`,
  "--no-metrics-enabled",
]);
const server = broker.listen.listen;

/** One Java run: messages/s per scenario, from the JSON lines Bench prints. */
async function javaRun(prefix: string): Promise<Record<string, number>> {
  const out = await new Deno.Command("java", {
    args: [
      "-cp",
      classpath,
      "dev.gregormq.Bench",
      server,
      prefix,
      `${count}`,
      `${size}`,
      `${window}`,
      `${LINGER_MS}`,
    ],
    cwd: SDK,
  }).output();
  if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
  const rows = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
  return Object.fromEntries(rows.map((r) => [r.scenario, r.msgsPerSec]));
}

/** One TypeScript run: messages/s of produce, or of produce→consume. */
function tsRun(topic: string, consume: boolean): Promise<number> {
  return tsClientRun({ server, topic, consume, count, window, size, lingerMs: LINGER_MS });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const java: Record<string, number[]> = { produce: [], "produce-consume": [] };
const ts: Record<string, number[]> = { produce: [], "produce-consume": [] };
try {
  for (let r = 0; r < runs; r++) {
    const j = await javaRun(`bench-java-${r}`);
    for (const s of Object.keys(java)) java[s]!.push(j[s]!);
    ts.produce!.push(await tsRun(`bench-ts-${r}-produce`, false));
    ts["produce-consume"]!.push(await tsRun(`bench-ts-${r}-produce-consume`, true));
  }
} finally {
  await killAll([broker]);
  await Deno.remove(dir, { recursive: true });
}
console.log(`${count} messages of ${size} B, window ${window}, median of ${runs} runs, one broker`);
for (const s of Object.keys(java)) {
  const j = median(java[s]!);
  const t = median(ts[s]!);
  const fmt = (x: number) => Math.round(x).toLocaleString("en");
  console.log(
    `${s.padEnd(16)} java ${fmt(j)} msg/s   ts (deno) ${fmt(t)} msg/s   java/ts ${
      (j / t).toFixed(2)
    }x`,
  );
}
