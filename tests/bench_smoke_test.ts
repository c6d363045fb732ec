// The smoke version of the benchmark suite (bench/suite.ts --quick), so the benchmarks never rot:
// it must finish, exit 0 and report a number for every scenario. It asserts nothing about speed.
// Without nats-server (CI installs it) the NATS figures are skipped, and the test says so.

import assert from "node:assert/strict";

const SUITE = new URL("../bench/suite.ts", import.meta.url).pathname;
const PINGPONG = new URL("../bench/pingpong.ts", import.meta.url).pathname;
const REPO = new URL("..", import.meta.url).pathname;
/** The quick suite takes about half a minute on 2 cores; this leaves room for a slow machine. */
const RUN_MS_MAX = 110_000;

/** Rows the quick suite reports per section (see bench/suite.ts). */
const ROWS_PER_SECTION: Record<string, number> = {
  "1 throughput": 13,
  "2 persistence": 4,
  "3 latency": 6,
  "4 cluster": 1,
  "5 memory": 2,
  "6 start-up": 2,
  "7 TLS": 2,
};

interface Row {
  section: string;
  scenario: string;
  unit: string;
  gregormq: number | null;
  nats: number | null;
  peer: string;
  notes: string[];
}

/** Runs a bench script from the repository root; its output, once it has exited 0. */
async function runBench(script: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    cwd: REPO,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(RUN_MS_MAX),
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const name = script.slice(REPO.length);
  assert.equal(out.code, 0, `${name} ${args.join(" ")} exited with ${out.code}:\n${text}`);
  return text;
}

Deno.test({
  name: "bench/suite.ts --quick reports a GregorMQ figure for every scenario and exits 0",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gregormq-bench-smoke-" });
    try {
      const json = `${dir}/suite.json`;
      await runBench(SUITE, ["--quick", "--json", json]);

      const report = JSON.parse(await Deno.readTextFile(json)) as {
        machine: { natsServer: string | null };
        rows: Row[];
        failures: string[];
      };
      assert.deepEqual(report.failures, []);
      const counts: Record<string, number> = {};
      for (const r of report.rows) counts[r.section] = (counts[r.section] ?? 0) + 1;
      assert.deepEqual(counts, ROWS_PER_SECTION);
      assert.equal(new Set(report.rows.map((r) => r.scenario)).size, report.rows.length);

      const natsThere = report.machine.natsServer !== null;
      for (const r of report.rows) {
        assert.ok(
          typeof r.gregormq === "number" && Number.isFinite(r.gregormq) && r.gregormq >= 0,
          `${r.scenario}: GregorMQ figure ${r.gregormq}`,
        );
        if (r.peer === "no peer") continue;
        if (r.peer.startsWith("GregorMQ")) {
          // Measured against GregorMQ itself (plaintext beside TLS): always there.
          assert.ok(
            typeof r.nats === "number" && r.nats >= 0,
            `${r.scenario}: ${r.peer} ${r.nats}`,
          );
          continue;
        }
        if (natsThere) {
          assert.ok(
            typeof r.nats === "number" && Number.isFinite(r.nats) && r.nats >= 0,
            `${r.scenario}: NATS figure ${r.nats} (${r.notes.join("; ")})`,
          );
        } else {
          assert.equal(r.nats, null);
          assert.ok(r.notes.some((n) => n.includes("NATS skipped")), r.scenario);
        }
      }
      if (!natsThere) {
        console.log("nats-server is not installed: the NATS figures were skipped, GregorMQ's ran");
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** Whether nats-server runs here: bench/pingpong.ts needs it, as its peer in every run. */
async function natsServerHere(): Promise<boolean> {
  try {
    return (await new Deno.Command("nats-server", { args: ["--version"] }).output()).success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "bench/pingpong.ts prints every run's round trips for both servers and a verdict",
  ignore: !(await natsServerHere()),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const text = await runBench(PINGPONG, ["--runs", "2", "--rounds", "200"]);
    for (const target of ["gregormq", "nats"]) {
      for (const run of [1, 2]) {
        assert.match(
          text,
          new RegExp(
            `${target} +run ${run}: 200 round trips, µs p50 \\d+ / p99 \\d+ / p99\\.9 \\d+ / worst \\d+`,
          ),
          text,
        );
      }
    }
    assert.match(
      text,
      /ping-pong round trip, median of the runs' p50: GregorMQ \d+ µs, NATS core \d+ µs/,
    );
  },
});
