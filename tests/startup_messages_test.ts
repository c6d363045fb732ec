// What an operator reads when a broker cannot start as asked, with real processes: a port already
// taken is named with the setting (flag, variable, file key) that moves it, even the metrics port
// nobody chose; a seed name that does not resolve is logged, after the listen line.

import assert from "node:assert/strict";
import { freePort, killAll, spawnBroker } from "./_broker_process.ts";

const BROKER = new URL("../cli/broker.ts", import.meta.url).pathname;

/** Runs the broker with `args` to its exit; a start that fails exits at once. */
async function run(args: string[]): Promise<{ code: number; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BROKER, ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: r.code, stderr: new TextDecoder().decode(r.stderr) };
}

Deno.test("a port in use is named with the flag that changes it, exit 2", async () => {
  const root = await Deno.makeTempDir({ prefix: "gregormq-ports-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (taken.addr as Deno.NetAddr).port;
  try {
    const metrics = await run([
      "--port",
      String(freePort()),
      "--metrics-port",
      String(port),
      "--data-dir",
      `${root}/a`,
    ]);
    assert.equal(metrics.code, 2, metrics.stderr);
    assert.equal(
      metrics.stderr,
      `Cannot start: the metrics port 127.0.0.1:${port} is in use (another broker running?); ` +
        "choose another with --metrics-port N (or GREGOR_METRICS_PORT, or metrics.port in the " +
        "--config file); --no-metrics-enabled turns the metrics port off\n",
    );
    const client = await run([
      "--port",
      String(port),
      "--metrics-port",
      "0",
      "--data-dir",
      `${root}/b`,
    ]);
    assert.equal(client.code, 2, client.stderr);
    assert.match(
      client.stderr,
      /^Cannot start: the client port 127\.0\.0\.1:\d+ is in use .*--port N/,
    );
    const cluster = await run([
      "--port",
      "0",
      "--no-metrics-enabled",
      "--cluster-port",
      String(port),
      "--data-dir",
      `${root}/c`,
    ]);
    assert.equal(cluster.code, 2, cluster.stderr);
    assert.match(cluster.stderr, /the cluster port 127\.0\.0\.1:\d+ is in use .*--cluster-port N/);
  } finally {
    taken.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a seed name that does not resolve is logged as a warning after the listen line", async () => {
  const root = await Deno.makeTempDir({ prefix: "gregormq-seed-name-" });
  const broker = await spawnBroker([
    "--port",
    "0",
    "--no-metrics-enabled",
    "--cluster-port",
    "0",
    "--seeds",
    "no-such-seed.invalid:7072",
    "--data-dir",
    root,
  ]);
  try {
    const deadline = Date.now() + 10_000;
    const warned = () =>
      broker.lines.some((l) => l.includes("Seed name no-such-seed.invalid does not resolve"));
    while (!warned() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(warned(), broker.lines.join("\n"));
    const warning = JSON.parse(broker.lines.find((l) => l.includes("Seed name"))!);
    assert.equal(warning.level, "warn");
    assert.equal(broker.listen.listen.startsWith("127.0.0.1:"), true, "the listen line is first");
  } finally {
    await killAll([broker]);
    await Deno.remove(root, { recursive: true });
  }
});
