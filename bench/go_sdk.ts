// The Go SDK against the TypeScript client on Deno (bench/_sdk_compare.ts says what runs and what
// is printed). `deno run -A bench/go_sdk.ts [--count N] [--runs N] [--window N] [--size N]`. The Go
// side is sdk/go/cmd/gregormq-bench, built before timing.

import { compareWithTs } from "./_sdk_compare.ts";

const SDK = new URL("../sdk/go/", import.meta.url).pathname;
const binDir = await Deno.makeTempDir({ prefix: "gregor-bench-go-bin-" });
const bin = `${binDir}/gregormq-bench`;

try {
  await compareWithTs({
    name: "go",
    countDefault: 200_000,
    async prepare() {
      const build = await new Deno.Command("go", {
        args: ["build", "-o", bin, "./cmd/gregormq-bench"],
        cwd: SDK,
      }).output();
      if (build.code !== 0) throw new Error(new TextDecoder().decode(build.stderr));
    },
    command: (s, prefix) => ({
      cmd: bin,
      args: [
        ...["-server", s.server, "-topic", prefix, "-count", `${s.count}`],
        ...["-window", `${s.window}`, "-size", `${s.size}`],
      ],
    }),
  });
} finally {
  await Deno.remove(binDir, { recursive: true });
}
