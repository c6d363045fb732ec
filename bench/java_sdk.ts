// The Java SDK beside the TypeScript client (bench/_sdk_compare.ts says what runs and what is
// printed). `deno run -A bench/java_sdk.ts [--count N] [--runs N] [--window N] [--size N]`. The
// Java side is sdk/java/src/test/java/dev/gregormq/Bench.java, compiled by Maven before timing.

import { compareSdks, type SdkSide } from "./_sdk_compare.ts";

const SDK = new URL("../sdk/java/", import.meta.url).pathname;
let classpath = "";

/** The Java SDK's side of the SDK benchmarks. */
export const javaSide: SdkSide = {
  name: "java",
  id: "java",
  countDefault: 200_000,
  async prepare() {
    const build = await new Deno.Command("mvn", {
      args: [
        ...["-q", "-B", "test-compile", "dependency:build-classpath"],
        "-Dmdep.outputFile=target/cp.txt",
      ],
      cwd: SDK,
    }).output();
    if (build.code !== 0) throw new Error(new TextDecoder().decode(build.stdout));
    classpath = `target/classes:target/test-classes:${
      (await Deno.readTextFile(`${SDK}target/cp.txt`)).trim()
    }`;
  },
  command: (s, prefix) => ({
    cmd: "java",
    args: [
      ...["-cp", classpath, "dev.gregormq.Bench", s.server, prefix],
      ...[`${s.count}`, `${s.size}`, `${s.window}`, `${s.lingerMs}`],
    ],
    cwd: SDK,
  }),
};

if (import.meta.main) await compareSdks([javaSide]);
