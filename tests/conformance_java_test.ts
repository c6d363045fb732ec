// The Java SDK (sdk/java) under `deno task test`: `mvn -q -B test` runs its JUnit suites — the
// golden frames, schemas and murmur2 vectors, and every conformance scenario against broker
// processes it starts with this Deno — and fails if any fails or skips.

import assert from "node:assert/strict";

const SDK = new URL("../sdk/java/", import.meta.url).pathname;
/** Bound of the whole Maven run: a cold one downloads the pinned plugins and libraries first. */
const MVN_TIMEOUT_MS = 480_000;
/** Scenarios in conformance/scenarios.json the driver must have run. */
const SCENARIOS = (JSON.parse(
  await Deno.readTextFile(new URL("../conformance/scenarios.json", import.meta.url)),
) as { scenarios: unknown[] }).scenarios.length;

function has(cmd: string, arg: string): boolean {
  try {
    new Deno.Command(cmd, { args: [arg], stdout: "null", stderr: "null" }).outputSync();
    return true;
  } catch {
    return false;
  }
}

const JAVA = has("mvn", "--version") && has("java", "-version");
if (!JAVA) {
  console.log("conformance_java_test: skipped, `mvn` or `java` is not on PATH (CI installs them)");
}

/** tests / failures / errors / skipped of one surefire report. */
async function report(name: string): Promise<Record<string, number>> {
  const xml = await Deno.readTextFile(
    `${SDK}target/surefire-reports/TEST-dev.gregormq.${name}.xml`,
  );
  const head = xml.match(/<testsuite [^>]*>/)?.[0] ?? "";
  const out: Record<string, number> = {};
  for (const key of ["tests", "failures", "errors", "skipped"]) {
    out[key] = Number(head.match(new RegExp(` ${key}="(\\d+)"`))?.[1] ?? NaN);
  }
  return out;
}

Deno.test({
  name: "java SDK: mvn test passes, golden frames and every conformance scenario included",
  ignore: !JAVA,
  async fn() {
    const out = await new Deno.Command("mvn", {
      args: ["-q", "-B", "test"],
      cwd: SDK,
      env: { GREGORMQ_DENO: Deno.execPath() },
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(MVN_TIMEOUT_MS),
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `mvn test failed:\n${text}`);
    const conformance = await report("ConformanceTest");
    assert.deepEqual(conformance, { tests: SCENARIOS, failures: 0, errors: 0, skipped: 0 }, text);
    const golden = await report("GoldenTest");
    assert.ok(golden.tests! >= 40, `GoldenTest ran ${golden.tests} tests`);
    assert.deepEqual([golden.failures, golden.errors, golden.skipped], [0, 0, 0], text);
  },
});
