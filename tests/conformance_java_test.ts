// The Java SDK (sdk/java) under `deno task test`: `mvn -q -B test` runs its JUnit suites — the
// golden frames, schemas and murmur2 vectors, every conformance scenario and the consumer-group
// tests against broker processes it starts with this Deno — and fails if any fails or skips.

import assert from "node:assert/strict";
import { killAll, spawnBroker } from "./_broker_process.ts";

const SDK = new URL("../sdk/java/", import.meta.url).pathname;
/** Bound of the whole Maven run: a cold one downloads the pinned plugins and libraries first. */
const MVN_TIMEOUT_MS = 480_000;
/** Bound of each step of the quick start: package, install, build the fresh project, run it. */
const STEP_TIMEOUT_MS = 240_000;
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
    const groups = await report("GroupConsumerTest");
    assert.deepEqual(groups, { tests: 3, failures: 0, errors: 0, skipped: 0 }, text);
    const golden = await report("GoldenTest");
    assert.ok(golden.tests! >= 40, `GoldenTest ran ${golden.tests} tests`);
    assert.deepEqual([golden.failures, golden.errors, golden.skipped], [0, 0, 0], text);
  },
});

async function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    env,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(STEP_TIMEOUT_MS),
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")} failed:\n${text}`);
  return text;
}

/** The fresh project's pom: the README's dependency block, the SDK from a temp local repository. */
function appPom(dependency: string, cache: string): string {
  const plugin = (id: string, version: string) =>
    `<plugin><groupId>org.apache.maven.plugins</groupId><artifactId>${id}</artifactId>` +
    `<version>${version}</version></plugin>`;
  // The user's Maven cache is offered as a file repository, so the plugins and codec libraries
  // the SDK's own build fetched are copied rather than downloaded again.
  return `<project><modelVersion>4.0.0</modelVersion>
<groupId>example</groupId><artifactId>hello</artifactId><version>1</version>
<properties><maven.compiler.release>17</maven.compiler.release>
<project.build.sourceEncoding>UTF-8</project.build.sourceEncoding></properties>
<repositories><repository><id>cache</id><url>${cache}</url></repository></repositories>
<pluginRepositories><pluginRepository><id>cache</id><url>${cache}</url></pluginRepository>
</pluginRepositories>
<dependencies>${dependency}</dependencies>
<build><plugins>${plugin("maven-resources-plugin", "3.3.1")}
${plugin("maven-compiler-plugin", "3.13.0")}${plugin("maven-dependency-plugin", "3.8.1")}
</plugins></build></project>
`;
}

Deno.test({
  name: "java SDK: the README's quick start runs from a fresh Maven project against a broker",
  ignore: !JAVA,
  async fn() {
    const readme = await Deno.readTextFile(`${SDK}README.md`);
    const xml = [...readme.matchAll(/```xml\n(.*?)```/gs)].map((m) => m[1]!);
    const java = [...readme.matchAll(/```java\n(.*?)```/gs)].map((m) => m[1]!);
    assert.equal(xml.length, 1, "README.md needs exactly one xml block (the dependency)");
    assert.equal(java.length, 1, "README.md needs exactly one java block (the quick start)");
    const tmp = await Deno.makeTempDir({ prefix: "gregormq-java-quickstart" });
    const broker = await spawnBroker([
      "--port",
      "0",
      "--data-dir",
      `${tmp}/data`,
      "--no-metrics-enabled",
      "--fsync",
      "never",
    ]);
    try {
      await run("mvn", ["-q", "-B", "-Dmaven.test.skip=true", "package"], SDK);
      const repo = `${tmp}/repo`;
      await run("mvn", [
        "-q",
        "-B",
        "org.apache.maven.plugins:maven-install-plugin:3.1.4:install-file",
        "-Dfile=target/gregormq-client-0.1.0.jar",
        "-DpomFile=pom.xml",
        `-DlocalRepositoryPath=${repo}`,
      ], SDK);
      const app = `${tmp}/app`;
      await Deno.mkdir(`${app}/src/main/java`, { recursive: true });
      await Deno.writeTextFile(`${app}/src/main/java/QuickStart.java`, java[0]!);
      const home = Deno.env.get("HOME") ?? "/root";
      await Deno.writeTextFile(`${app}/pom.xml`, appPom(xml[0]!, `file://${home}/.m2/repository`));
      await run("mvn", [
        "-q",
        "-B",
        `-Dmaven.repo.local=${repo}`,
        "compile",
        "dependency:build-classpath",
        "-Dmdep.outputFile=cp.txt",
      ], app);
      const cp = `target/classes:${(await Deno.readTextFile(`${app}/cp.txt`)).trim()}`;
      const env = { GREGORMQ_SERVER: broker.listen.listen };
      const first = await run("java", ["-cp", cp, "QuickStart"], app, env);
      assert.match(first, /^offset 0: hello, world\n$/);
      // A second run meets TOPIC_EXISTS and carries on.
      const second = await run("java", ["-cp", cp, "QuickStart"], app, env);
      assert.match(second, /^offset 1: hello, world\n$/);
    } finally {
      await killAll([broker]);
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
