// Sums the self time of every function in a V8 .cpuprofile (as `deno run --cpu-prof` writes them)
// and prints the top ones with their share: how docs/performance.md's profile tables were made.
// `deno run --allow-read bench/cpuprofile_top.ts FILE.cpuprofile [N]`

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

if (import.meta.main) {
  const [file, count] = Deno.args;
  if (file === undefined) {
    console.error("usage: deno run --allow-read bench/cpuprofile_top.ts FILE.cpuprofile [N]");
    Deno.exit(2);
  }
  const { total, byFunction } = selfTimes(JSON.parse(await Deno.readTextFile(file)) as CpuProfile);
  console.log(`${(total / 1000).toFixed(0)} ms sampled`);
  const top = [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(count ?? TOP_DEFAULT));
  for (const [name, us] of top) {
    const share = `${(100 * us / total).toFixed(1)}%`.padStart(6);
    console.log(`${share} ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  }
}
