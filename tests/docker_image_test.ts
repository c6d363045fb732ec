// The repository's Dockerfile builds (deploy/docker/build-local.sh: local stand-ins for its base
// images, then the Dockerfile unchanged) and its image serves: a container started from it answers
// /readyz and its HEALTHCHECK, runs as the non-root user, and messages go both ways between a
// client on the host and the image's own gregorctl, and survive a restart in the data volume.
// Needs root, buildah and podman (.ci/run installs them); skipped with the reason otherwise.

import assert from "node:assert/strict";
import { type Client, connect } from "../src/client/mod.ts";
import { readAll } from "./_broker_process.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const IMAGE = "localhost/gregormq:test";
/** The build (dependencies are cached in a layer after the first), run and checks together, ms. */
const TEST_TIMEOUT_MS = 240_000;
/** One podman or build command at most, ms. */
const COMMAND_TIMEOUT_MS = 180_000;
/** From `podman run` to `/readyz` answering 200 at most, ms. */
const READY_TIMEOUT_MS = 30_000;
const MESSAGES = 20;

/** Why the test cannot run here, or null if it can. */
function skipReason(): string | null {
  if (Deno.build.os !== "linux") return `needs Linux, this is ${Deno.build.os}`;
  if (Deno.uid() !== 0) return "needs root (buildah and podman run rootful here)";
  for (const tool of ["buildah", "podman", "runc"]) {
    const found = ["/usr/bin", "/usr/sbin", "/usr/local/bin"].some((dir) => {
      try {
        return Deno.statSync(`${dir}/${tool}`).isFile;
      } catch {
        return false;
      }
    });
    if (!found) return `${tool} is not installed (apt-get install -y buildah podman runc)`;
  }
  return null;
}

const reason = skipReason();
if (reason !== null) console.log(`docker_image_test skipped: ${reason}`);

/** Runs a command to its end within COMMAND_TIMEOUT_MS; fails with its output unless `mayFail`. */
async function run(
  cmd: string,
  args: string[],
  opts: { mayFail?: boolean } = {},
): Promise<{ code: number; out: string; stdout: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    // The stand-in base image gets the deno running this test (CI runs it through npx).
    env: { DENO_BIN: Deno.execPath() },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS),
  }).output();
  const dec = new TextDecoder();
  const text = dec.decode(out.stdout) + dec.decode(out.stderr);
  if (out.code !== 0 && !opts.mayFail) {
    throw new Error(`${cmd} ${args.join(" ")} exited with ${out.code}:\n${text}`);
  }
  return { code: out.code, out: text, stdout: dec.decode(out.stdout) };
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitReady(metricsPort: number, name: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
      await res.body?.cancel();
      if (res.status === 200) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      const logs = await run("podman", ["logs", name], { mayFail: true });
      throw new Error(`The container did not become ready in ${READY_TIMEOUT_MS} ms:\n${logs.out}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

Deno.test({
  name: "Dockerfile: the image serves clients and its own gregorctl as a non-root user",
  ignore: reason !== null,
  sanitizeResources: false,
  fn: async () => {
    const timeout = AbortSignal.timeout(TEST_TIMEOUT_MS);
    await run("deploy/docker/build-local.sh", [IMAGE]);

    const image = JSON.parse((await run("podman", ["image", "inspect", IMAGE])).out)[0];
    const config = image.Config;
    assert.equal(config.User, "65532:65532");
    assert.deepEqual(Object.keys(config.ExposedPorts).sort(), ["7070/tcp", "7071/tcp", "7072/tcp"]);
    assert.deepEqual(Object.keys(config.Volumes), ["/data"]);
    assert.ok(image.Healthcheck.Test.join(" ").includes("cli/healthcheck.ts"));

    const name = `gregormq-test-${Deno.pid}`;
    const volume = `${name}-data`;
    const port = freePort();
    const metricsPort = freePort();
    let client: Client | null = null;
    try {
      await run("podman", [
        "run",
        "--detach",
        "--runtime",
        "runc",
        "--name",
        name,
        // The check runs on demand below; a timer would need systemd, absent here.
        "--health-interval",
        "disable",
        "--publish",
        `127.0.0.1:${port}:7070`,
        "--publish",
        `127.0.0.1:${metricsPort}:7071`,
        "--volume",
        `${volume}:/data`,
        IMAGE,
      ]);
      await waitReady(metricsPort, name);
      assert.equal((await run("podman", ["healthcheck", "run", name], { mayFail: true })).code, 0);
      const uid = await run("podman", [
        "exec",
        name,
        "/usr/local/bin/deno",
        "eval",
        "console.log(Deno.uid())",
      ]);
      assert.equal(uid.out.trim(), "65532");

      // Host client → broker in the container → gregorctl in the container.
      client = await connect({ port, connectTimeoutMs: 10_000 });
      await client.admin.createTopic("from-host", { partitions: 1 });
      const producer = client.producer();
      const sent = Array.from({ length: MESSAGES }, (_, i) => `host ${i}`);
      for (const value of sent) await producer.send("from-host", { value });
      await producer.close();
      const consumed = await run("podman", [
        "exec",
        name,
        "gregorctl",
        "consume",
        "from-host",
        "--count",
        String(MESSAGES),
        "--format",
        "json",
      ]);
      // stdout only: gregorctl's summary line goes to stderr.
      const values = consumed.stdout.trim().split("\n").map((l) => JSON.parse(l).value);
      assert.deepEqual(values, sent);

      // gregorctl in the container → the host client.
      await run("podman", ["exec", name, "gregorctl", "topic", "create", "from-image"]);
      await run("podman", ["exec", name, "gregorctl", "produce", "from-image", "one", "two"]);
      assert.deepEqual(await readAll(client, "from-image"), ["one", "two"]);
      client.close();
      client = null;

      // SIGTERM stops it cleanly, and the volume keeps what it stored.
      await run("podman", ["stop", "--time", "10", name]);
      const state = JSON.parse((await run("podman", ["inspect", name])).out)[0].State;
      assert.equal(state.ExitCode, 0);
      await run("podman", ["start", name]);
      await waitReady(metricsPort, name);
      client = await connect({ port, connectTimeoutMs: 10_000 });
      assert.deepEqual(await readAll(client, "from-host"), sent);
      assert.ok(!timeout.aborted, `the test took over ${TEST_TIMEOUT_MS} ms`);
    } finally {
      client?.close();
      await run("podman", ["rm", "--force", "--time", "0", name], { mayFail: true });
      await run("podman", ["volume", "rm", "--force", volume], { mayFail: true });
    }
  },
});
