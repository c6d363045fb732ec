// Stopping a broker the way a supervisor does, with real processes: SIGTERM to the pid it started
// must reach the broker. `deno task start` passes it on; the systemd unit in deploy/ runs the
// task's `deno run` line itself, with no wrapper in between (npx does not pass SIGTERM on).

import assert from "node:assert/strict";
import denoJson from "../deno.json" with { type: "json" };

const root = new URL("..", import.meta.url).pathname;
const UNIT = `${root}deploy/systemd/gregormq.service`;
/** A broker that has not said it listens by then has failed to start. */
const STARTUP_MS_MAX = 30_000;
/** A broker that has not shut down by then after SIGTERM did not hear it. */
const STOP_MS_MAX = 10_000;

/** Starts `args` (a broker, directly or through a wrapper) and waits for its listen line. */
async function start(command: string, args: string[], dataDir: string) {
  const child = new Deno.Command(command, {
    args,
    cwd: root,
    env: { GREGOR_DATA_DIR: dataDir, GREGOR_PORT: "0", GREGOR_METRICS_ENABLED: "false" },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), STARTUP_MS_MAX);
  try {
    while (!/"listen".*\n/.test(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${command} ${args.join(" ")} exited before listening`);
      text += value;
    }
  } finally {
    clearTimeout(timer);
  }
  const listen = JSON.parse(text.split("\n").find((l) => l.includes('"listen"'))!) as {
    listen: string;
    pid: number;
  };
  return {
    child,
    port: Number(listen.listen.split(":")[1]),
    /** Everything it logs from now until it closes its output, or STOP_MS_MAX passes. */
    async rest(): Promise<string> {
      const timer = setTimeout(() => reader.cancel(), STOP_MS_MAX);
      try {
        for (let r = await reader.read(); !r.done; r = await reader.read()) text += r.value;
      } finally {
        clearTimeout(timer);
        // A broker a wrapper left behind is the test's to end: by its own pid, never by name.
        try {
          Deno.kill(listen.pid, "SIGKILL");
        } catch {
          // Gone already, as it should be.
        }
      }
      return text;
    },
  };
}

/** SIGTERMs the pid that was started, then checks the broker shut down and let go of its port. */
async function stopsOnSigterm(p: Awaited<ReturnType<typeof start>>): Promise<void> {
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), STOP_MS_MAX);
  const status = await p.child.status.finally(() => clearTimeout(timer));
  const log = await p.rest();
  assert.match(log, /"msg":"Shutting down","signal":"SIGTERM"/, "the broker heard SIGTERM");
  assert.equal(status.code, 0, log);
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: p.port }),
    Deno.errors.ConnectionRefused,
    "the broker is gone, not orphaned behind its wrapper",
  );
}

/** The systemd unit's ExecStart, split into words. */
async function execStart(): Promise<string[]> {
  const line = (await Deno.readTextFile(UNIT)).split("\n").find((l) => l.startsWith("ExecStart="));
  assert.ok(line !== undefined, "the unit has an ExecStart line");
  return line.slice("ExecStart=".length).trim().split(/\s+/);
}

Deno.test("SIGTERM to `deno task start` reaches the broker, which shuts down cleanly", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-task-sigterm-" });
  try {
    await stopsOnSigterm(await start(Deno.execPath(), ["task", "-q", "start"], dataDir));
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("the systemd unit runs the start task's own deno run line, and SIGTERM stops it", async () => {
  const [deno, ...args] = await execStart();
  assert.equal(deno, "/usr/local/bin/deno");
  // The same permissions and entry point as `deno task start`, so the two cannot drift apart.
  assert.deepEqual(
    args.filter((a) => a !== "--cached-only"),
    denoJson.tasks.start.split(/\s+/).slice(1),
  );
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-unit-sigterm-" });
  try {
    await stopsOnSigterm(await start(Deno.execPath(), args, dataDir));
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** Whether systemd-analyze runs here (CI installs systemd for it; `.ci/run`). */
const SYSTEMD_ANALYZE = await new Deno.Command("systemd-analyze", {
  args: ["--version"],
  stdout: "null",
  stderr: "null",
}).output().then((r) => r.success, () => false);
if (!SYSTEMD_ANALYZE) {
  console.log("supervise_process_test: the unit check skips: systemd-analyze is missing");
}

Deno.test({
  name: "systemd-analyze accepts the unit without a warning",
  ignore: !SYSTEMD_ANALYZE,
  async fn() {
    // verify insists that ExecStart's program exists. Where Deno is installed is the machine's
    // business (the test above checks the unit names /usr/local/bin/deno), so the copy verified
    // runs this Deno instead: the rest of the unit is checked as shipped.
    const dir = await Deno.makeTempDir({ prefix: "gregormq-unit-" });
    try {
      const unit = `${dir}/gregormq.service`;
      const text = await Deno.readTextFile(UNIT);
      assert.ok(text.includes("ExecStart=/usr/local/bin/deno "), "the unit runs Deno from there");
      await Deno.writeTextFile(
        unit,
        text.replace("ExecStart=/usr/local/bin/deno ", `ExecStart=${Deno.execPath()} `),
      );
      const r = await new Deno.Command("systemd-analyze", { args: ["verify", unit] }).output();
      const stderr = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, stderr);
      assert.equal(stderr, "");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
