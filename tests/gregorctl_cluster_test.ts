// gregorctl against a real three-node replicating cluster, as an operator meets it: `topic describe`
// asked of any node shows every partition's leader, replicas and in-sync replicas (the ISR from
// each partition's leader) and says where a replicated topic's data really is; `cluster status`
// never reads another broker's metrics.

import assert from "node:assert/strict";
import {
  cleanUp,
  clusterFormed,
  type ClusterProc,
  connectTo,
  createTopicRetrying,
  retry,
  startCluster,
} from "./_broker_process.ts";
import type { Client } from "../src/client/mod.ts";

const GREGORCTL = new URL("../cli/gregorctl.ts", import.meta.url).pathname;
const PARTITIONS = 6;

/** Runs gregorctl against the broker on `port`; fails unless it exits 0; resolves with stdout. */
async function gregorctl(port: number, args: string[]): Promise<string> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-env", GREGORCTL, "--broker"]
      .concat(`127.0.0.1:${port}`, args),
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  assert.equal(r.code, 0, `gregorctl ${args.join(" ")}: ${dec.decode(r.stderr)}`);
  return dec.decode(r.stdout);
}

Deno.test("gregorctl on a cluster: topic describe shows each partition's leader, replicas and ISR from any node", async () => {
  const root = await Deno.makeTempDir({ prefix: "gregorctl-cluster-" });
  let procs: ClusterProc[] = [];
  const clients: Client[] = [];
  try {
    procs = (await startCluster(root)).procs;
    clients.push(await connectTo(procs[0]!));
    await clusterFormed(procs, clients);
    await createTopicRetrying(clients[0]!, "spread", {
      partitions: PARTITIONS,
      configs: { persistence: "memory" },
    });
    const ids = procs.map((p) => p.nodeId).sort();
    // Ask a node that does not lead every partition: the others' ISR only their leaders know.
    const leaders = await retry("every partition has a leader", async () => {
      const m = await clients[0]!.admin.metadata(["spread"]);
      const l = m.topics[0]!.partitions.map((p) => p.leader);
      if (l.length !== PARTITIONS || l.includes("")) throw new Error(`leaders ${l}`);
      return l;
    });
    const asked = procs.find((p) => leaders.some((l) => l !== p.nodeId))!;
    const rows = await retry("every replica is in sync, as the node asked shows", async () => {
      const out = await gregorctl(asked.clientPort, ["topic", "describe", "spread"]);
      const table = out.slice(out.indexOf("\nPARTITION")).trim().split("\n").slice(1);
      const parsed = table.map((r) => r.split(/\s{2,}/));
      for (const cols of parsed) {
        if (cols[8]?.split(",").sort().join() !== ids.join()) throw new Error(out);
      }
      return { out, parsed };
    });
    assert.equal(rows.parsed.length, PARTITIONS, rows.out);
    for (const cols of rows.parsed) {
      assert.ok(ids.includes(cols[6]!), `LEADER is a node: ${cols.join(" | ")}`);
      assert.deepEqual(cols[7]!.split(",").sort(), ids, "REPLICAS are the three nodes");
    }
    assert.ok(
      rows.parsed.some((cols) => cols[6] !== asked.nodeId),
      "a partition led by another node is shown with its ISR",
    );
    assert.match(
      rows.out,
      /^persistence\s+replicated: on disk on every replica, under <data-dir>\/raft\/p\/ \(persistence=memory does not apply\)$/m,
    );
    // --json carries the same ISR, and the configs as given.
    const doc = JSON.parse(
      await gregorctl(asked.clientPort, ["topic", "describe", "spread", "--json"]),
    );
    assert.equal(doc.configs.persistence, "memory");
    for (const p of doc.partitions) {
      assert.deepEqual(p.isr.map((r: { id: string }) => r.id).sort(), ids, JSON.stringify(p));
    }
  } finally {
    await cleanUp(root, procs, clients);
  }
});

Deno.test("gregorctl cluster status off port 7070 does not guess the metrics address", async () => {
  const root = await Deno.makeTempDir({ prefix: "gregorctl-cluster-status-" });
  let procs: ClusterProc[] = [];
  const clients: Client[] = [];
  try {
    procs = (await startCluster(root)).procs;
    clients.push(await connectTo(procs[0]!));
    await clusterFormed(procs, clients);
    const port = procs[1]!.clientPort;
    const status = JSON.parse(await gregorctl(port, ["cluster", "status", "--json"]));
    assert.equal(status.members, 3);
    // Port 7071 belongs to a broker on 7070, if any: reading it would describe another cluster.
    assert.equal(
      status.metadataFaultTolerance,
      `unknown: the metrics address of the broker at 127.0.0.1:${port} is not known (only a ` +
        "broker on port 7070 serves them on 7071 by default); pass --metrics-url " +
        'http://HOST:PORT/metrics (the broker\'s start line names it as "metrics")',
    );
  } finally {
    await cleanUp(root, procs, clients);
  }
});
