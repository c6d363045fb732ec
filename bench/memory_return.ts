// Memory after load, side by side with core NATS in the same run (issue [N]: after any load the
// broker's RSS comes back within 25 % of idle within 60 s). Each run starts a fresh server, takes
// its idle RSS, then puts two loads on it, each from a process of its own (bench/_memory_load.ts):
//
//   flood  CLIENTS connections each subscribed to one topic, 100 messages of 1 KiB delivered to
//          every one of them, then all closed at once;
//   burst  one producer sending 100 B messages as fast as its window allows for SECONDS, one
//          consumer reading all of them (GregorMQ: a disk topic with fsync never, so what it stores
//          sits in the page cache and the RSS is what the broker itself holds).
//
// After each load the server's VmRSS is sampled every second for WATCH seconds: the run reports
// the peak during the load, the first second at which RSS was back within 25 % of idle, and the
// RSS at the end of the watch. Every run is printed; a load that fails fails the bench.
//
//   deno task bench:memory [--runs N] [--clients N] [--burst-s S] [--watch-s S] [--only gregormq|nats]

import { Child, median, mustRss, readLines, runHarness } from "./_harness.ts";
import {
  children,
  cleanUp,
  findNatsServer,
  startGregor,
  startNats,
  tempDirs,
} from "./throughput.ts";

/** Issue [N]'s target: back within this fraction over idle, within WATCH_S_DEFAULT seconds. */
const WITHIN = 0.25;
const WATCH_S_DEFAULT = 60;
const RUNS_DEFAULT = 3;
const CLIENTS_DEFAULT = 2_000;
const BURST_S_DEFAULT = 10;
/** Before the idle figure: the server has started and settled, ms. */
const SETTLE_MS = 2_000;
/** Samples of the idle RSS (their median), and their spacing, ms. */
const IDLE_SAMPLES = 5;
const IDLE_SAMPLE_MS = 400;
/** RSS samples during a load, ms apart. */
const LOAD_SAMPLE_MS = 100;

type System = "gregormq" | "nats";
type Load = "flood" | "burst";

interface Options {
  runs: number;
  clients: number;
  burstS: number;
  watchS: number;
  only: System | null;
}

interface LoadResult {
  load: Load;
  what: string;
  peakMiB: number;
  /** Seconds after the load ended until RSS was within WITHIN of idle; null if it never was. */
  backAfterS: number | null;
  endMiB: number;
}

interface RunResult {
  system: System;
  run: number;
  idleMiB: number;
  loads: LoadResult[];
}

function parse(argv: string[]): Options {
  const o: Options = {
    runs: RUNS_DEFAULT,
    clients: CLIENTS_DEFAULT,
    burstS: BURST_S_DEFAULT,
    watchS: WATCH_S_DEFAULT,
    only: null,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--only") {
      if (value !== "gregormq" && value !== "nats") throw new Error("--only gregormq|nats");
      o.only = value;
      continue;
    }
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} must be a positive whole number`);
    if (flag === "--runs") o.runs = n;
    else if (flag === "--clients") o.clients = n;
    else if (flag === "--burst-s") o.burstS = n;
    else if (flag === "--watch-s") o.watchS = n;
    else throw new Error(`unknown option ${flag}`);
  }
  return o;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs the load process to its end, sampling the server's RSS meanwhile; the peak and its line. */
async function runLoad(
  system: System,
  port: number,
  serverPid: number,
  load: Load,
  amount: number,
): Promise<{ peakMiB: number; what: string }> {
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "bench/_memory_load.ts", system, String(port), load, String(amount)],
    cwd: new URL("..", import.meta.url).pathname,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const reading = Promise.all([
    readLines(proc.stdout, (l) => void lines.push(l)),
    readLines(proc.stderr, (l) => void lines.push(l)),
  ]);
  let done = false;
  const status = proc.status.finally(() => (done = true));
  let peak = await mustRss(serverPid);
  while (!done) {
    peak = Math.max(peak, await mustRss(serverPid));
    await Promise.race([status, sleep(LOAD_SAMPLE_MS)]);
  }
  const s = await status;
  await reading;
  const what = lines.find((l) => l.startsWith("done "))?.slice(5);
  if (!s.success || what === undefined) {
    throw new Error(
      `${system} ${load} load failed (exit ${s.code}):\n${lines.slice(-20).join("\n")}`,
    );
  }
  return { peakMiB: Math.max(peak, await mustRss(serverPid)), what };
}

/** Samples every second for `watchS` seconds after a load. */
async function watch(
  pid: number,
  idleMiB: number,
  watchS: number,
): Promise<{ backAfterS: number | null; endMiB: number }> {
  let backAfterS: number | null = null;
  let now = await mustRss(pid);
  if (now <= idleMiB * (1 + WITHIN)) backAfterS = 0;
  for (let s = 1; s <= watchS; s++) {
    await sleep(1_000);
    now = await mustRss(pid);
    if (backAfterS === null && now <= idleMiB * (1 + WITHIN)) backAfterS = s;
  }
  return { backAfterS, endMiB: now };
}

async function oneRun(
  system: System,
  run: number,
  o: Options,
  natsPath: string | null,
): Promise<RunResult> {
  let server: { child: Child; port: number };
  if (system === "gregormq") {
    const dir = await Deno.makeTempDir({ prefix: "gregormq-bench-memory-" });
    tempDirs.add(dir);
    server = await startGregor(["--data-dir", dir], null);
  } else {
    server = await startNats(natsPath!);
  }
  try {
    await sleep(SETTLE_MS);
    const idle: number[] = [];
    for (let i = 0; i < IDLE_SAMPLES; i++) {
      idle.push(await mustRss(server.child.pid));
      await sleep(IDLE_SAMPLE_MS);
    }
    const idleMiB = median(idle);
    const loads: LoadResult[] = [];
    for (const [load, amount] of [["flood", o.clients], ["burst", o.burstS]] as const) {
      const { peakMiB, what } = await runLoad(system, server.port, server.child.pid, load, amount);
      const w = await watch(server.child.pid, idleMiB, o.watchS);
      const r: LoadResult = { load, what, peakMiB, ...w };
      loads.push(r);
      console.log(
        `${system} run ${run} ${load} (${what}): idle ${idleMiB.toFixed(1)} MiB, peak ` +
          `${peakMiB.toFixed(1)}, after ${o.watchS} s ${w.endMiB.toFixed(1)} MiB ` +
          `(${pctOver(w.endMiB, idleMiB)} over idle); within ${WITHIN * 100} % of idle ` +
          (w.backAfterS === null ? `NOT within ${o.watchS} s` : `after ${w.backAfterS} s`),
      );
    }
    return { system, run, idleMiB, loads };
  } finally {
    await server.child.stop();
    children.delete(server.child);
  }
}

function pctOver(x: number, idle: number): string {
  return `${(((x - idle) / idle) * 100).toFixed(0)} %`;
}

async function main(): Promise<void> {
  const o = parse(Deno.args);
  const nats = await findNatsServer();
  const natsPath = "path" in nats ? nats.path : null;
  if (natsPath === null && o.only !== "gregormq") {
    console.log(`no NATS peer: ${"missing" in nats ? nats.missing : ""}`);
  }
  const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
  console.log(
    `memory after load: ${o.runs} run(s), flood ${o.clients} connections, burst ${o.burstS} s, ` +
      `watched ${o.watchS} s; load average ${load}`,
  );
  const systems: System[] = (["gregormq", "nats"] as const).filter((s) =>
    (o.only === null || o.only === s) && (s === "gregormq" || natsPath !== null)
  );
  const results: RunResult[] = [];
  for (let run = 1; run <= o.runs; run++) {
    for (const system of systems) results.push(await oneRun(system, run, o, natsPath));
  }
  console.log(
    "\nsystem    run  idle MiB  load   peak MiB  end MiB  end over idle  back within 25 %",
  );
  let missed = 0;
  for (const r of results) {
    for (const l of r.loads) {
      const back = l.backAfterS === null ? `not in ${o.watchS} s` : `${l.backAfterS} s`;
      if (r.system === "gregormq" && l.backAfterS === null) missed++;
      console.log(
        `${r.system.padEnd(9)} ${String(r.run).padStart(3)}  ${
          r.idleMiB.toFixed(1).padStart(8)
        }  ` +
          `${l.load.padEnd(5)}  ${l.peakMiB.toFixed(1).padStart(8)}  ${
            l.endMiB.toFixed(1).padStart(7)
          }  ` +
          `${pctOver(l.endMiB, r.idleMiB).padStart(13)}  ${back}`,
      );
    }
  }
  const gregorLoads = results.filter((r) => r.system === "gregormq").flatMap((r) => r.loads).length;
  console.log(
    `\ntarget (GregorMQ back within ${WITHIN * 100} % of idle within ${o.watchS} s): ` +
      `met in ${gregorLoads - missed} of ${gregorLoads} loads`,
  );
}

await runHarness("bench/memory_return.ts", main, cleanUp);
