// The Go SDK against the TypeScript client on Deno, in the same run against one broker process:
// produce of 100-byte messages, and produce→consume, each with at most `window` unconfirmed
// messages, the median of `runs` runs per client. `deno run -A bench/go_sdk.ts [--count N]
// [--runs N] [--window N]`. The Go side is sdk/go/cmd/gregormq-bench, built before timing.

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

/** Both producers wait this long for a batch to fill, as bench/throughput.ts does. */
const LINGER_MS = 2;
const SDK = new URL("../sdk/go/", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "gregor-bench-go-" });
const bin = `${dir}/gregormq-bench`;
const build = await new Deno.Command("go", {
  args: ["build", "-o", bin, "./cmd/gregormq-bench"],
  cwd: SDK,
}).output();
if (build.code !== 0) throw new Error(new TextDecoder().decode(build.stderr));

const broker = await spawnBroker([
  "--port",
  "0",
  "--data-dir",
  `${dir}/data`,
  "--no-metrics-enabled",
]);
const server = broker.listen.listen;

/** One TypeScript run: messages/s of produce, or of produce→consume. */
function tsRun(topic: string, consume: boolean): Promise<number> {
  return tsClientRun({ server, topic, consume, count, window, size, lingerMs: LINGER_MS });
}

/** One Go run: messages/s per scenario. */
async function goRun(prefix: string): Promise<Record<string, number>> {
  const out = await new Deno.Command(bin, {
    args: [
      "-server",
      server,
      "-topic",
      prefix,
      "-count",
      `${count}`,
      "-window",
      `${window}`,
      "-size",
      `${size}`,
    ],
  }).output();
  if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
  const rows = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
  return Object.fromEntries(rows.map((r) => [r.scenario, r.msgsPerSec]));
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results: Record<string, { go: number[]; ts: number[] }> = {
  produce: { go: [], ts: [] },
  "produce-consume": { go: [], ts: [] },
};
try {
  for (let r = 0; r < runs; r++) {
    const go = await goRun(`bench-go-${r}`);
    results.produce!.go.push(go.produce!);
    results["produce-consume"]!.go.push(go["produce-consume"]!);
    results.produce!.ts.push(await tsRun(`bench-ts-${r}-produce`, false));
    results["produce-consume"]!.ts.push(await tsRun(`bench-ts-${r}-produce-consume`, true));
  }
} finally {
  await killAll([broker]);
  await Deno.remove(dir, { recursive: true });
}
console.log(`${count} messages of ${size} B, window ${window}, median of ${runs} runs, one broker`);
for (const [scenario, r] of Object.entries(results)) {
  const go = median(r.go);
  const ts = median(r.ts);
  console.log(
    `${scenario.padEnd(16)} go ${Math.round(go).toLocaleString("en")} msg/s   ts (deno) ${
      Math.round(ts).toLocaleString("en")
    } msg/s   go/ts ${(go / ts).toFixed(2)}x`,
  );
}
