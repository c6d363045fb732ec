// Sums the self time of every function in a V8 .cpuprofile (as `deno run --cpu-prof` writes them)
// and prints the top ones with their share: how docs/performance.md's profile tables were made.
// `deno run --allow-read bench/cpuprofile_top.ts FILE.cpuprofile [N]`; with `--minus BASE --per K`,
// the self time per unit of work: FILE's less BASE's (the same program doing less), over K.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}

interface CpuProfile {
  nodes: ProfileNode[];
  /** Node id of each sample. */
  samples: number[];
  /** Microseconds between one sample and the one before. */
  timeDeltas: number[];
}

/** Functions listed when no count is given. */
const TOP_DEFAULT = 30;

/** Self time per function (name, file relative to the repository, line), in microseconds. */
export function selfTimes(profile: CpuProfile): { total: number; byFunction: Map<string, number> } {
  const frames = new Map<number, CallFrame>();
  for (const n of profile.nodes) frames.set(n.id, n.callFrame);
  const byFunction = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const f = frames.get(id);
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    if (f === undefined) return;
    const file = f.url.replace(/^.*?\/(src|bench|cli|sim|tests)\//, "$1/");
    const key = `${f.functionName || "(anonymous)"} ${file}${
      file === "" ? "" : `:${f.lineNumber + 1}`
    }`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + dt);
  });
  return { total, byFunction };
}

/**
 * Self time per function of `run` less that of `base` (a run of the same program doing less, e.g.
 * one round instead of forty), divided by `per`: what each of the extra `per` units of work cost.
 */
export function selfTimesBeyond(
  run: CpuProfile,
  base: CpuProfile,
  per: number,
): Map<string, number> {
  const a = selfTimes(run).byFunction;
  const b = selfTimes(base).byFunction;
  const out = new Map<string, number>();
  for (const [k, us] of a) out.set(k, (us - (b.get(k) ?? 0)) / per);
  return out;
}

const USAGE = "usage: deno run --allow-read bench/cpuprofile_top.ts FILE.cpuprofile [N] " +
  "[--minus BASE.cpuprofile --per K]";

async function readProfile(path: string): Promise<CpuProfile> {
  return JSON.parse(await Deno.readTextFile(path)) as CpuProfile;
}

if (import.meta.main) {
  const args = [...Deno.args];
  const option = (name: string): string | null => {
    const i = args.indexOf(name);
    if (i < 0) return null;
    const [, v] = args.splice(i, 2);
    if (v === undefined) {
      console.error(USAGE);
      Deno.exit(2);
    }
    return v;
  };
  const minus = option("--minus");
  const per = Number(option("--per") ?? 1);
  const [file, count] = args;
  if (file === undefined || !(per >= 1)) {
    console.error(USAGE);
    Deno.exit(2);
  }
  const n = Number(count ?? TOP_DEFAULT);
  if (minus === null) {
    const { total, byFunction } = selfTimes(await readProfile(file));
    console.log(`${(total / 1000).toFixed(0)} ms sampled`);
    const top = [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, n);
    for (const [name, us] of top) {
      const share = `${(100 * us / total).toFixed(1)}%`.padStart(6);
      console.log(`${share} ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}`);
    }
  } else {
    // Idle time is not work: shares are of the busy time only.
    const each = selfTimesBeyond(await readProfile(file), await readProfile(minus), per);
    each.delete("(idle) ");
    const busy = [...each.values()].reduce((a, b) => a + b, 0);
    console.log(`${(busy / 1000).toFixed(1)} ms busy per unit (of ${per})`);
    const top = [...each].sort((a, b) => b[1] - a[1]).slice(0, n);
    for (const [name, us] of top) {
      const share = `${(100 * us / busy).toFixed(1)}%`.padStart(6);
      console.log(`${share} ${(us / 1000).toFixed(2).padStart(7)} ms  ${name}`);
    }
  }
}
