// The simulator's example on real processes, real TCP and real fsync: three replica processes are
// SIGKILLed after acknowledging writes and restarted on their data directories; nothing
// acknowledged may be missing. The same replica code runs under faults in sim_register_test.ts.

import assert from "node:assert/strict";
import { RegisterClient } from "../sim/example/register_client.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import type { Addr } from "../src/io/types.ts";

const BROKER = new URL("../cli/register_example.ts", import.meta.url).pathname;

interface Replica {
  child: Deno.ChildProcess;
  addr: Addr;
}

async function startReplica(dataDir: string, port: number): Promise<Replica> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      "--allow-read",
      "--allow-write",
      BROKER,
      "--port",
      String(port),
      "--data-dir",
      dataDir,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Replica on ${dataDir} exited before listening`);
    text += value;
  }
  reader.releaseLock();
  void child.stdout.cancel().catch(() => {});
  const listen = JSON.parse(text.split("\n")[0]!).listen as string;
  const [host, p] = listen.split(":");
  return { child, addr: { host: host!, port: Number(p) } };
}

async function kill9(r: Replica): Promise<void> {
  r.child.kill("SIGKILL");
  const status = await r.child.status;
  assert.equal(status.signal, "SIGKILL");
}

Deno.test("register example: acknowledged writes survive SIGKILL of every replica process", async () => {
  const root = await Deno.makeTempDir({ prefix: "gregormq-register-" });
  try {
    const dirs = [0, 1, 2].map((i) => `${root}/r${i}`);
    let replicas = await Promise.all(dirs.map((d) => startReplica(d, 0)));
    const ports = replicas.map((r) => r.addr.port);
    const env = denoEnv();
    const client = new RegisterClient(env, {
      replicas: replicas.map((r) => r.addr),
      opTimeoutMs: 5000,
    });
    const acked = new Map<string, number>();
    for (let version = 1; version <= 50; version++) {
      const puts = ["a", "b", "c"].map(async (key) => {
        const outcome = await client.put({ key, version, value: `${key}-${version}` });
        assert.equal(outcome, "ok");
        acked.set(key, version);
      });
      await Promise.all(puts);
    }
    await Promise.all(replicas.map(kill9));
    // Same ports, so the client's links reconnect to the restarted processes.
    replicas = await Promise.all(dirs.map((d, i) => startReplica(d, ports[i]!)));
    for (const [key, version] of acked) {
      let got = null;
      for (let attempt = 0; attempt < 20 && got === null; attempt++) {
        got = await client.get(key);
        if (got === null) await env.clock.sleep(50);
      }
      assert.deepEqual(got, { key, version, value: `${key}-${version}` });
    }
    await Promise.all(replicas.map(kill9));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
