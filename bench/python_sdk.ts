// The Python SDK beside the TypeScript client (bench/_sdk_compare.ts says what runs and what is
// printed). `deno run -A bench/python_sdk.ts [--count N] [--runs N] [--window N]
// [--size N]`. The Python side is sdk/python/bench.py in sdk/python/.venv (made by
// sdk/python/setup_venv.sh, which this runs first).

import { compareSdks, type SdkSide } from "./_sdk_compare.ts";

const SDK = new URL("../sdk/python/", import.meta.url).pathname;

/** The Python SDK's side of the SDK benchmarks. */
export const pythonSide: SdkSide = {
  name: "python",
  id: "python",
  countDefault: 50_000,
  async prepare() {
    const setup = await new Deno.Command("bash", { args: ["setup_venv.sh"], cwd: SDK }).output();
    if (setup.code !== 0) throw new Error(new TextDecoder().decode(setup.stderr));
  },
  command: (s, prefix) => ({
    cmd: `${SDK}.venv/bin/python`,
    args: [
      ...[`${SDK}bench.py`, "--server", s.server, "--topic", prefix, "--count", `${s.count}`],
      ...["--window", `${s.window}`, "--size", `${s.size}`, "--linger-ms", `${s.lingerMs}`],
    ],
  }),
};

if (import.meta.main) await compareSdks([pythonSide]);
