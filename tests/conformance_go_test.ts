// The Go SDK (sdk/go) under `deno task test`: go vet, `go test -race` (the golden frames, the
// conformance scenarios against broker processes it starts with this Deno, the README's quick
// start, idempotent retries through a cutting proxy) and a bounded run of each fuzz target.

import assert from "node:assert/strict";

const SDK = new URL("../sdk/go/", import.meta.url).pathname;
/**
 * Inputs each fuzz target tries, with one worker: a count, not a time, so a loaded machine runs
 * the same fuzzing slower rather than a worker that looks hung to the coordinator (seen once in a
 * full suite at load average 15).
 */
const FUZZ_EXECS = 100_000;
/** Bound of the whole `go test -race` run: a cold -race build takes about a minute on 2 cores. */
const GO_TEST_TIMEOUT = "150s";

function hasGo(): boolean {
  try {
    new Deno.Command("go", { args: ["version"], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
}

const GO = hasGo();
if (!GO) console.log("conformance_go_test: skipped, `go` is not on PATH (CI installs Go)");

async function go(...args: string[]): Promise<string> {
  const out = await new Deno.Command("go", {
    args,
    cwd: SDK,
    env: { GREGORMQ_DENO: Deno.execPath(), GOFLAGS: "-mod=readonly -buildvcs=false" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `go ${args.join(" ")} failed:\n${text}`);
  return text;
}

Deno.test({
  name: "go SDK: go vet and go test -race pass, conformance scenarios included",
  ignore: !GO,
  async fn() {
    await go("vet", "./...");
    const out = await go("test", "-race", "-count=1", "-timeout", GO_TEST_TIMEOUT, "-v", "./...");
    // The scenarios and the quick start need live brokers: they must have run, not skipped.
    for (
      const name of [
        "TestConformanceScenarios",
        "TestReadmeQuickStart",
        "TestGoldenFramesReencodeByteForByte",
      ]
    ) {
      assert.match(out, new RegExp(`--- PASS: ${name} `), `${name} did not pass:\n${out}`);
    }
    assert.doesNotMatch(out, /--- SKIP/, out);
  },
});

for (const target of ["FuzzDecodeFrame", "FuzzDecodeBatches"]) {
  Deno.test({
    name: `go SDK: ${target} finds nothing in ${FUZZ_EXECS} inputs`,
    ignore: !GO,
    async fn() {
      await go(
        "test",
        "-run",
        "^$",
        "-fuzz",
        `^${target}$`,
        "-fuzztime",
        `${FUZZ_EXECS}x`,
        "-parallel",
        "1",
        ".",
      );
    },
  });
}
