// One SDK against the TypeScript client on Deno and on Node (where `node` and `npm` are on PATH), in
// the same run against one broker process: produce of `size`-byte messages, and produce→consume,
// each with at most `window` unconfirmed messages, to memory topics, every producer lingering 2 ms.
// Every run of each is printed, then the medians.
// bench/go_sdk.ts, python_sdk.ts and java_sdk.ts each give the SDK's side: how to build it and the
// command of one run, which prints one JSON line per scenario: {"scenario": …, "msgsPerSec": …}.

import { parseArgs } from "node:util";
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
  /** Messages per run unless --count says otherwise. */
  countDefault: number;
  /** Builds or installs the SDK, before anything is timed. */
  prepare(): Promise<void>;
  /** One run's command, with topics named from `topicPrefix`. */
  command(s: Settings, topicPrefix: string): { cmd: string; args: string[]; cwd?: string };
}

/** Both producers wait this long for a batch to fill, as bench/throughput.ts does. */
const LINGER_MS = 2;
const SCENARIOS = ["produce", "produce-consume"] as const;
const NPM_DIR = new URL("../npm/", import.meta.url).pathname;

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
    countDefault: 0,
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

/** Runs the comparison from the command line's `--count`, `--runs`, `--window` and `--size`. */
export async function compareWithTs(side: SdkSide): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: "string", default: String(side.countDefault) },
      runs: { type: "string", default: "3" },
      window: { type: "string", default: "10000" },
      size: { type: "string", default: "100" },
    },
  });
  const runs = Number(values.runs);
  await side.prepare();
  const node = await nodeSide();
  await node?.prepare();
  const dir = await Deno.makeTempDir({ prefix: `gregor-bench-${side.name}-` });
  const broker = await spawnBroker([
    "--port",
    "0",
    "--data-dir",
    `${dir}/data`,
    "--no-metrics-enabled",
  ]);
  const s: Settings = {
    server: broker.listen.listen,
    count: Number(values.count),
    window: Number(values.window),
    size: Number(values.size),
    lingerMs: LINGER_MS,
  };
  const figures = Object.fromEntries(
    SCENARIOS.map((k) => [k, { sdk: [] as number[], ts: [] as number[], node: [] as number[] }]),
  );
  const show = (x: number) => Math.round(x).toLocaleString("en");
  try {
    for (let r = 0; r < runs; r++) {
      const sdk = await sdkRun(side, s, `bench-${side.name}-${r}`);
      const onNode = node === null ? null : await sdkRun(node, s, `bench-node-${r}`);
      for (const k of SCENARIOS) {
        const ts = await tsClientRun({
          ...s,
          topic: `bench-ts-${r}-${k}`,
          consume: k !== "produce",
        });
        figures[k]!.sdk.push(sdk[k]!);
        figures[k]!.ts.push(ts);
        if (onNode !== null) figures[k]!.node.push(onNode[k]!);
        const nodeText = onNode === null ? "" : `   ts (node) ${show(onNode[k]!)} msg/s`;
        console.log(
          `run ${r + 1} ${k.padEnd(16)} ${side.name} ${show(sdk[k]!)} msg/s   ts (deno) ${
            show(ts)
          } msg/s${nodeText}`,
        );
      }
    }
  } finally {
    await killAll([broker]);
    await Deno.remove(dir, { recursive: true });
  }
  console.log(
    `${s.count} messages of ${s.size} B, window ${s.window}, median of ${runs} runs, one broker`,
  );
  for (const k of SCENARIOS) {
    const sdk = median(figures[k]!.sdk);
    const ts = median(figures[k]!.ts);
    const onNode = figures[k]!.node.length === 0 ? null : median(figures[k]!.node);
    const nodeText = onNode === null
      ? ""
      : `   ts (node) ${show(onNode)} msg/s   ${side.name}/ts (node) ${(sdk / onNode).toFixed(2)}x`;
    console.log(
      `${k.padEnd(16)} ${side.name} ${show(sdk)} msg/s   ts (deno) ${show(ts)} msg/s   ` +
        `${side.name}/ts (deno) ${(sdk / ts).toFixed(2)}x${nodeText}`,
    );
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

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}
