// SDKs side by side, in the same run against one broker process: the TypeScript client on Deno, each
// SDK given, and the TypeScript client on Node (where `node` and `npm` are on PATH). Each runs
// produce of `size`-byte messages, and produce→consume, with at most `window` unconfirmed messages,
// to memory topics, every producer lingering 2 ms. Every run of each is printed, then the medians.
// bench/go_sdk.ts, python_sdk.ts and java_sdk.ts each give one SDK's side (how to build it and the
// command of one run, which prints one JSON line per scenario: {"scenario": …, "msgsPerSec": …})
// and run it alone beside the TypeScript client; bench/sdks.ts runs them all together.

import { parseArgs } from "node:util";
import { median } from "./_harness.ts";
import { tsClientRun } from "./_ts_client_run.ts";
import { killAll, spawnBroker } from "../tests/_broker_process.ts";

/** What every run of both sides does. */
export interface Settings {
  /** The broker, "host:port". */
  server: string;
  count: number;
  window: number;
  size: number;
  lingerMs: number;
}

/** The SDK's side of the comparison. */
export interface SdkSide {
  /** Its name in the report ("go", "python", "java"). */
  name: string;
  /** A name for its topics: letters and dashes. */
  id: string;
  /** Messages per run unless --count says otherwise. */
  countDefault: number;
  /** Builds or installs the SDK, before anything is timed. */
  prepare(): Promise<void>;
  /** One run's command, with topics named from `topicPrefix`. */
  command(s: Settings, topicPrefix: string): { cmd: string; args: string[]; cwd?: string };
  /** Removes what `prepare` made, once every run is over. */
  cleanup?(): Promise<void>;
}

/** Both producers wait this long for a batch to fill, as bench/throughput.ts does. */
const LINGER_MS = 2;
const SCENARIOS = ["produce", "produce-consume"] as const;
const NPM_DIR = new URL("../npm/", import.meta.url).pathname;
/** Messages per run of the TypeScript client (Deno and Node) unless --count says otherwise. */
const TS_COUNT_DEFAULT = 200_000;

/**
 * The TypeScript client on Node (bench/node/ts_client_side.ts, built by npm/build.mjs), or null
 * where node or npm is missing.
 */
async function nodeSide(): Promise<SdkSide | null> {
  const ran = async (cmd: string, args: string[]) => {
    try {
      const out = await new Deno.Command(cmd, { args, cwd: NPM_DIR }).output();
      if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
  };
  if (!(await ran("node", ["--version"])) || !(await ran("npm", ["--version"]))) {
    console.log("ts (node) skipped: node or npm is not on PATH");
    return null;
  }
  return {
    name: "ts (node)",
    id: "node",
    countDefault: TS_COUNT_DEFAULT,
    async prepare() {
      await ran("npm", ["ci", "--no-audit", "--no-fund", "--prefer-offline"]);
      await ran("node", ["build.mjs"]);
    },
    command: (s, prefix) => ({
      cmd: "node",
      args: [
        `${NPM_DIR}build/ts_client_bench.mjs`,
        ...["--server", s.server, "--topic", prefix, "--count", `${s.count}`],
        ...["--window", `${s.window}`, "--size", `${s.size}`, "--linger", `${s.lingerMs}`],
      ],
    }),
  };
}

/**
 * Runs `sides` beside the TypeScript client on Deno (and on Node where it can), against one broker
 * in the same run, from the command line's `--count` (every side; default: each side's own),
 * `--runs`, `--window` and `--size`. Every run of every side is printed, then the medians, each
 * as a ratio to the TypeScript client on Deno.
 */
export async function compareSdks(sides: SdkSide[]): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: "string" },
      runs: { type: "string", default: "3" },
      window: { type: "string", default: "10000" },
      size: { type: "string", default: "100" },
    },
  });
  const runs = Number(values.runs);
  const node = await nodeSide();
  const all = node === null ? sides : [...sides, node];
  for (const side of all) await side.prepare();
  const dir = await Deno.makeTempDir({ prefix: "gregor-bench-sdks-" });
  const broker = await spawnBroker([
    "--port",
    "0",
    "--data-dir",
    `${dir}/data`,
    "--no-metrics-enabled",
  ]);
  const settings = (countDefault: number): Settings => ({
    server: broker.listen.listen,
    count: Number(values.count ?? countDefault),
    window: Number(values.window),
    size: Number(values.size),
    lingerMs: LINGER_MS,
  });
  const names = ["ts (deno)", ...all.map((x) => x.name)];
  /** figures[scenario][name]: msg/s of every run. */
  const figures = Object.fromEntries(
    SCENARIOS.map((k) => [k, Object.fromEntries(names.map((n) => [n, [] as number[]]))]),
  );
  const show = (x: number) => Math.round(x).toLocaleString("en");
  try {
    for (let r = 0; r < runs; r++) {
      for (const k of SCENARIOS) {
        figures[k]!["ts (deno)"]!.push(
          await tsClientRun({
            ...settings(TS_COUNT_DEFAULT),
            topic: `bench-ts-${r}-${k}`,
            consume: k !== "produce",
          }),
        );
      }
      for (const side of all) {
        const got = await sdkRun(side, settings(side.countDefault), `bench-${r}-${side.id}`);
        for (const k of SCENARIOS) figures[k]![side.name]!.push(got[k]!);
      }
      for (const k of SCENARIOS) {
        const line = names.map((n) => `${n} ${show(figures[k]![n]!.at(-1)!)}`).join("   ");
        console.log(`run ${r + 1} ${k.padEnd(16)} ${line} msg/s`);
      }
    }
  } finally {
    await killAll([broker]);
    await Deno.remove(dir, { recursive: true });
    for (const side of all) await side.cleanup?.();
  }
  const counts = names.map((n) => {
    const side = all.find((x) => x.name === n);
    return `${n} ${settings(side?.countDefault ?? TS_COUNT_DEFAULT).count}`;
  });
  console.log(
    `messages of ${values.size} B per run (${counts.join(", ")}), window ${values.window}, ` +
      `median of ${runs} runs, one broker`,
  );
  for (const k of SCENARIOS) {
    const ts = median(figures[k]!["ts (deno)"]!);
    const line = names.map((n) => {
      const m = median(figures[k]![n]!);
      return n === "ts (deno)" ? `${n} ${show(m)}` : `${n} ${show(m)} (${(m / ts).toFixed(2)}x)`;
    });
    console.log(`${k.padEnd(16)} ${line.join("   ")} msg/s; (x): to ts (deno)`);
  }
}

/** One run of the SDK's side: messages/s per scenario. */
async function sdkRun(side: SdkSide, s: Settings, prefix: string): Promise<Record<string, number>> {
  const { cmd, args, cwd } = side.command(s, prefix);
  const out = await new Deno.Command(cmd, { args, ...(cwd === undefined ? {} : { cwd }) }).output();
  if (out.code !== 0) {
    throw new Error(new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout));
  }
  const rows = new TextDecoder().decode(out.stdout).trim().split("\n").map((l) => JSON.parse(l));
  return Object.fromEntries(rows.map((r) => [r.scenario, r.msgsPerSec]));
}
