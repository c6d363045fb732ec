// `deno task mutate`: measures the seeded sweeps CI runs against a catalog of planted bugs
// (sim/mutate/catalog.ts). Each bug is applied alone to a scratch copy of the repository (the
// working tree is never touched), then only the sweeps run there — no unit test — and the bug is
// caught when a seed fails, the sweep throws, or it runs out of time.
//
//   deno task mutate                  every bug, the CI seed budget, 2 at a time
//   deno task mutate --list           the catalog, one bug per line
//   deno task mutate --only raft-vote-twice,group-grant-owned
//   deno task mutate --seeds 50       at most 50 seeds per sweep
//   deno task mutate --check          type-check every mutant instead of running sweeps

import { type Mutant, type MutantArea, MUTANTS } from "../sim/mutate/catalog.ts";
import { OUTCOME_PREFIX, type SweepName, type SweepOutcome, SWEEPS } from "../sim/mutate/sweeps.ts";

const USAGE = `usage: deno task mutate [--list] [--only id,id] [--seeds N] [--jobs 1|2] [--check]`;

/** Processes run at once at most (the machine is shared). */
const JOBS_MAX = 2;
/** Time a mutant gets besides its seeds' budget, ms (start-up, module loading). */
const TIMEOUT_BASE_MS = 60_000;
/** Seeds' budget multiplier: a slow mutant or a busy machine is not a catch. */
const TIMEOUT_SLACK = 3;

/** Sweeps in the order tried for a bug of each area: those most likely to catch it first. */
const ORDER: Record<MutantArea, SweepName[]> = {
  raft: ["raft", "cluster", "groups3", "groups", "pubsub", "storage"],
  storage: ["storage", "pubsub", "groups", "cluster", "groups3", "raft"],
  idempotent: ["pubsub", "groups", "cluster", "groups3", "storage", "raft"],
  groups: ["groups", "groups3", "pubsub", "cluster", "storage", "raft"],
  durable: ["pubsub", "groups", "cluster", "groups3", "storage", "raft"],
  broker: ["pubsub", "groups", "cluster", "groups3", "storage", "raft"],
};

/** What the repository copy needs to run the sweeps. */
const COPIED = ["src", "sim", "cli", "deno.json", "deno.lock"];

interface Args {
  list: boolean;
  only: string[] | null;
  seeds: number;
  jobs: number;
  check: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { list: false, only: null, seeds: Infinity, jobs: JOBS_MAX, check: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (flag === "--list") args.list = true;
    else if (flag === "--check") args.check = true;
    else if (flag === "--only") args.only = (argv[++i] ?? "").split(",").filter((s) => s !== "");
    else if (flag === "--seeds" || flag === "--jobs") {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} needs a whole number >= 1`);
      if (flag === "--seeds") args.seeds = n;
      else args.jobs = Math.min(n, JOBS_MAX);
    } else throw new Error(`Unexpected argument ${flag}\n${USAGE}`);
  }
  if (args.only !== null) {
    const known = new Set(MUTANTS.map((m) => m.id));
    const unknown = args.only.filter((id) => !known.has(id));
    if (unknown.length > 0) throw new Error(`No planted bug called ${unknown.join(", ")}`);
  }
  return args;
}

/** The patched text of the mutant's file; throws unless `find` occurs exactly once. */
function patched(root: string, m: Mutant): string {
  const text = Deno.readTextFileSync(`${root}/${m.file}`);
  const at = text.indexOf(m.find);
  if (at < 0) {
    throw new Error(`Planted bug ${m.id}: the text to replace is not in ${m.file}: ${m.find}`);
  }
  if (text.indexOf(m.find, at + 1) >= 0) {
    throw new Error(`Planted bug ${m.id}: the text to replace occurs twice in ${m.file}`);
  }
  return text.slice(0, at) + m.replace + text.slice(at + m.find.length);
}

function copyTree(from: string, to: string): void {
  const info = Deno.statSync(from);
  if (info.isFile) {
    Deno.copyFileSync(from, to);
    return;
  }
  Deno.mkdirSync(to, { recursive: true });
  for (const e of Deno.readDirSync(from)) copyTree(`${from}/${e.name}`, `${to}/${e.name}`);
}

interface Verdict {
  caught: boolean;
  how: string;
}

/** Runs `cmd` in `cwd` until it exits or `timeoutMs` passes. */
async function run(cwd: string, cmd: string[], timeoutMs: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: cmd,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    timedOut,
  };
}

async function judge(root: string, m: Mutant, args: Args): Promise<Verdict> {
  const dir = await Deno.makeTempDir({ prefix: `gregor-mutant-${m.id}-` });
  try {
    for (const p of COPIED) copyTree(`${root}/${p}`, `${dir}/${p}`);
    Deno.writeTextFileSync(`${dir}/${m.file}`, patched(root, m));
    if (args.check) {
      const r = await run(dir, ["check", "cli/mutate_sweeps.ts"], 300_000);
      return { caught: r.code === 0, how: r.code === 0 ? "type-checks" : r.stderr.slice(0, 400) };
    }
    const order = ORDER[m.area];
    const budgetMs = order.reduce(
      (ms, s) => ms + Math.min(args.seeds, SWEEPS[s].ciSeeds) * SWEEPS[s].seedMs,
      0,
    );
    const r = await run(
      dir,
      ["run", "-A", "cli/mutate_sweeps.ts", String(args.seeds), order.join(",")],
      TIMEOUT_BASE_MS + budgetMs * TIMEOUT_SLACK,
    );
    if (r.timedOut) return { caught: true, how: "the sweeps ran out of time (a hang)" };
    const outcomes: SweepOutcome[] = r.stdout.split("\n")
      .filter((l) => l.startsWith(OUTCOME_PREFIX))
      .map((l) => JSON.parse(l.slice(OUTCOME_PREFIX.length)));
    const failed = outcomes.find((o) => o.failedSeed !== null);
    if (failed !== undefined) {
      return {
        caught: true,
        how: `${failed.sweep} seed ${failed.failedSeed}: ${failed.violation?.slice(0, 160)}`,
      };
    }
    if (r.code !== 0 || outcomes.length < order.length) {
      const why = r.stderr.trim().split("\n").slice(-3).join(" | ").slice(0, 200);
      return { caught: true, how: `the sweep process failed (exit ${r.code}): ${why}` };
    }
    return {
      caught: false,
      how: outcomes.map((o) => `${o.sweep} ${o.seeds} seeds`).join(", ") + " passed",
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(Deno.args);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  if (args.list) {
    for (const m of MUTANTS) console.log(`${m.id.padEnd(32)} ${m.file}: ${m.slip}`);
    return 0;
  }
  // Every patch must apply before anything runs: a catalog that no longer fits the code is loud.
  for (const m of MUTANTS) patched(root, m);
  const chosen = args.only === null ? MUTANTS : MUTANTS.filter((m) => args.only!.includes(m.id));
  const verdicts = new Map<string, Verdict>();
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < chosen.length) {
      const m = chosen[next++]!;
      const t0 = performance.now();
      const v = await judge(root, m, args);
      verdicts.set(m.id, v);
      const secs = ((performance.now() - t0) / 1000).toFixed(0);
      const label = args.check ? (v.caught ? "ok" : "BROKEN") : v.caught ? "caught" : "MISSED";
      console.log(`${label.padEnd(7)} ${m.id.padEnd(32)} ${secs.padStart(4)} s  ${v.how}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(args.jobs, chosen.length) }, worker));
  const caught = chosen.filter((m) => verdicts.get(m.id)?.caught).length;
  const secs = ((performance.now() - started) / 1000).toFixed(0);
  if (args.check) {
    console.log(`${caught} of ${chosen.length} mutants type-check (${secs} s)`);
    return caught === chosen.length ? 0 : 1;
  }
  const pct = chosen.length === 0 ? 0 : Math.round((100 * caught) / chosen.length);
  const seeds = args.seeds === Infinity
    ? "the CI seed budget"
    : `at most ${args.seeds} seeds a sweep`;
  console.log(`(${seeds}, ${secs} s)`);
  console.log(`mutation score: ${caught} of ${chosen.length} caught by the sweeps (${pct} %)`);
  return 0;
}

Deno.exit(await main());
