// Zero-touch clustering with real processes: three brokers on 127.0.0.1, the second and third
// given only the first one's cluster address, find each other by gossip; after one is killed with
// SIGKILL the other two mark it dead.

import assert from "node:assert/strict";
import { type Client, connect } from "../src/client/mod.ts";
import { spawnBroker } from "./_broker_process.ts";

interface Proc {
  child: Deno.ChildProcess;
  clientPort: number;
  cluster: string;
  nodeId: string;
}

async function start(dataDir: string, seeds: string[]): Promise<Proc> {
  const args = ["--port", "0", "--data-dir", dataDir, "--cluster-port", "0"];
  if (seeds.length > 0) args.push("--seeds", seeds.join(","));
  const { child, listen } = await spawnBroker(args);
  return {
    child,
    clientPort: Number(listen.listen.split(":")[1]),
    cluster: listen.cluster!,
    nodeId: listen.nodeId!,
  };
}

/** Polls until `check` holds for the cluster view of `client`, or fails after `ms`. */
async function until(
  client: Client,
  ms: number,
  what: string,
  check: (members: { id: string; state: string }[]) => boolean,
): Promise<void> {
  const deadline = Date.now() + ms;
  let last: unknown = null;
  while (Date.now() < deadline) {
    const view = await client.admin.clusterMembers();
    last = view.members.map((m) => `${m.id}=${m.state}`);
    if (check(view.members)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out waiting until ${what}; last view: ${JSON.stringify(last)}`);
}

Deno.test("three broker processes given one seed find each other; a SIGKILLed one is marked dead", async () => {
  const root = await Deno.makeTempDir({ prefix: "gregormq-gossip-" });
  const procs: Proc[] = [];
  const clients: Client[] = [];
  try {
    procs.push(await start(`${root}/a`, []));
    procs.push(await start(`${root}/b`, [procs[0]!.cluster]));
    procs.push(await start(`${root}/c`, [procs[0]!.cluster]));
    const ids = procs.map((p) => p.nodeId).sort();
    assert.equal(new Set(ids).size, 3, "every node has its own id");
    for (const p of procs) clients.push(await connect({ port: p.clientPort }));
    for (const c of clients) {
      await until(
        c,
        10_000,
        "all three see all three alive",
        (ms) => ms.filter((m) => m.state === "alive").map((m) => m.id).sort().join() === ids.join(),
      );
    }
    const victim = procs[2]!;
    victim.child.kill("SIGKILL");
    assert.equal((await victim.child.status).signal, "SIGKILL");
    for (const c of clients.slice(0, 2)) {
      await until(
        c,
        20_000,
        "the survivors mark the killed node dead",
        (ms) =>
          ms.some((m) => m.id === victim.nodeId && m.state === "dead") &&
          ms.filter((m) => m.state === "alive").length === 2,
      );
    }
  } finally {
    for (const c of clients) await c.close();
    for (const p of procs.slice(0, 2)) {
      p.child.kill("SIGTERM");
      await p.child.status;
    }
    await Deno.remove(root, { recursive: true });
  }
});
