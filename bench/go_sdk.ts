// The Go SDK beside the TypeScript client (bench/_sdk_compare.ts says what runs and what is
// printed). `deno run -A bench/go_sdk.ts [--count N] [--runs N] [--window N] [--size N]`. The Go
// side is sdk/go/cmd/gregormq-bench, built before timing.

import { compareSdks, type SdkSide } from "./_sdk_compare.ts";

const SDK = new URL("../sdk/go/", import.meta.url).pathname;
let binDir = "";

/** The Go SDK's side of the SDK benchmarks. */
export const goSide: SdkSide = {
  name: "go",
  id: "go",
  countDefault: 200_000,
  async prepare() {
    binDir = await Deno.makeTempDir({ prefix: "gregor-bench-go-bin-" });
    const build = await new Deno.Command("go", {
      args: ["build", "-o", `${binDir}/gregormq-bench`, "./cmd/gregormq-bench"],
      cwd: SDK,
    }).output();
    if (build.code !== 0) throw new Error(new TextDecoder().decode(build.stderr));
  },
  command: (s, prefix) => ({
    cmd: `${binDir}/gregormq-bench`,
    args: [
      ...["-server", s.server, "-topic", prefix, "-count", `${s.count}`],
      ...["-window", `${s.window}`, "-size", `${s.size}`],
    ],
  }),
  async cleanup() {
    if (binDir !== "") await Deno.remove(binDir, { recursive: true });
  },
};

if (import.meta.main) await compareSdks([goSide]);
