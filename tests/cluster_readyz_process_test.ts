// A young cluster says whether its metadata group can lose a node, on real broker processes: a
// node that founded a cluster alone is its only voter, so `/readyz` answers 200 with a warning and
// `gregorctl cluster status` says NO; once two more nodes joined and became voters both say it
// can lose one; with one of the three killed, they say NO again.

import assert from "node:assert/strict";
import { freePort, killAll, sleep, spawnBroker } from "./_broker_process.ts";

const GREGORCTL = new URL("../cli/gregorctl.ts", import.meta.url).pathname;
/** How long a condition may take to show (joining, voter promotion, failure detection), ms. */
const SETTLE_MS_MAX = 30_000;

interface Node {
  child: Deno.ChildProcess;
  client: number;
  cluster: number;
  metrics: number;
}

async function startNode(root: string, i: number, seeds: string[]): Promise<Node> {
  const client = freePort();
  const cluster = freePort();
  const metrics = freePort();
  const args = [
    "--port",
    String(client),
    "--data-dir",
    `${root}/n${i}`,
    "--cluster-port",
    String(cluster),
    "--cluster-replicate",
    "--metrics-host",
    "127.0.0.1",
    "--metrics-port",
    String(metrics),
  ];
  if (seeds.length > 0) args.push("--seeds", seeds.join(","));
  const { child } = await spawnBroker(args);
  return { child, client, cluster, metrics };
}

async function readyz(n: Node): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${n.metrics}/readyz`);
  return { status: res.status, body: await res.text() };
}

async function clusterStatus(n: Node): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      GREGORCTL,
      "--broker",
      `127.0.0.1:${n.client}`,
      "--metrics-url",
      `http://127.0.0.1:${n.metrics}/metrics`,
      "cluster",
      "status",
      "--json",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assert.equal(out.code, 0, dec.decode(out.stderr));
  return JSON.parse(dec.decode(out.stdout)).metadataFaultTolerance;
}

/** Waits until `check` passes (it throws until then), at most SETTLE_MS_MAX. */
async function until(what: string, check: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + SETTLE_MS_MAX;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${(err as Error).message}`);
      await sleep(200);
    }
  }
}

Deno.test({
  name:
    "3 replicating brokers: /readyz and gregorctl cluster status say whether the metadata group can lose a node",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gregormq-readyz-" });
    const nodes: Node[] = [];
    try {
      nodes.push(await startNode(root, 0, []));
      const first = nodes[0]!;
      await until("the founder warns that it cannot lose a node", async () => {
        const r = await readyz(first);
        assert.equal(r.status, 200, r.body);
        assert.match(
          r.body,
          /^ready\nwarning: metadata group not fault tolerant: 1 of 1 voters alive, 1 needed; it cannot lose a node\n$/,
        );
      });
      assert.match(await clusterStatus(first), /^NO: 1 of 1 voters alive, 1 needed; /);

      const seed = `127.0.0.1:${first.cluster}`;
      nodes.push(await startNode(root, 1, [seed]));
      nodes.push(await startNode(root, 2, [seed]));
      await until("three voters make it fault tolerant", async () => {
        for (const n of nodes) assert.equal((await readyz(n)).body, "ready\n");
      });
      assert.equal(
        await clusterStatus(nodes[1]!),
        "yes: 3 of 3 voters alive, 2 needed; it can lose 1 node",
      );

      // One voter gone: the others still have a quorum, but cannot lose another node.
      await killAll([nodes[2]!]);
      await until("a dead voter shows", async () => {
        const r = await readyz(first);
        assert.equal(r.status, 200);
        assert.match(r.body, /2 of 3 voters alive, 2 needed; it cannot lose a node/);
      });
      assert.match(await clusterStatus(first), /^NO: 2 of 3 voters alive, 2 needed; /);
    } finally {
      await killAll(nodes);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
