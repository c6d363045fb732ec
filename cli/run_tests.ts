// `deno task test`: `deno test --allow-all --parallel` with one more test file at a time than the
// machine has cores, and any arguments passed through (`deno task test tests/broker_tcp_test.ts`).
//
// Why more files than cores: much of the suite waits, not computes — real processes starting,
// failovers timed on real clocks, network namespaces cut for seconds — so with one file per core
// CI's 2 cores sat idle about a fifth of its run. `DENO_JOBS`, when set, wins, as with `deno test`.
// (Not named `test.ts`: `deno test` would take it for a test file and start itself again.)

// A test that ran this file would start the whole suite inside itself, and so on without end.
if (Deno.env.get("GREGORMQ_TEST_RUN") !== undefined) {
  console.error("cli/run_tests.ts: already inside a test run; refusing to start another");
  Deno.exit(2);
}
const jobs = Deno.env.get("DENO_JOBS") ?? String(Math.max(1, navigator.hardwareConcurrency) + 1);
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "--allow-all", "--parallel", ...Deno.args],
  env: { DENO_JOBS: jobs, GREGORMQ_TEST_RUN: "1" },
  stdin: "inherit",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
// A terminal's Ctrl-C reaches the whole process group, `deno test` included: nothing to pass on.
// A SIGTERM or SIGHUP sent to this process alone (a supervisor, an editor's stop button) is passed
// on, or `deno test` and the brokers it started would outlive it.
Deno.addSignalListener("SIGINT", () => {});
for (const signal of ["SIGTERM", "SIGHUP"] as const) {
  Deno.addSignalListener(signal, () => {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  });
}
Deno.exit((await child.status).code);
