// Two real clusters on one host, where a node of the second starts on the cluster port a dead node
// of the first had: the first still gossips to that address, and neither cluster may take in a
// node of the other (found in CI: a test cluster counted six members, three of another test's).

import assert from "node:assert/strict";
import {
  cleanUp,
  clusterFormed,
  type ClusterProc,
  connectTo,
  freePort,
  retry,
  sleep,
  startCluster,
  startClusterNode,
} from "./_broker_process.ts";
import type { Client } from "../src/client/mod.ts";

/** The ids of the members `client`'s node holds. */
async function memberIds(client: Client): Promise<string[]> {
  return (await client.admin.clusterMembers()).members.map((m) => m.id).sort();
}

Deno.test("a node on an address a dead node of another cluster had joins its own cluster only", async () => {
  const rootA = await Deno.makeTempDir({ prefix: "cluster-identity-a-" });
  const rootB = await Deno.makeTempDir({ prefix: "cluster-identity-b-" });
  let a: ClusterProc[] = [];
  const b: ClusterProc[] = [];
  const clients: Client[] = [];
  const logged: string[] = [];
  const spawn = { onLine: (line: string) => void logged.push(line) };
  try {
    a = (await startCluster(rootA, [], () => spawn)).procs;
    clients.push(await connectTo(a[0]!));
    await clusterFormed(a, clients);
    const idsA = a.map((p) => p.nodeId).sort();
    assert.deepEqual(await memberIds(clients[0]!), idsA);
    // A's third node dies; B's founder starts, then a node of B joins it on the dead node's port.
    a[2]!.child.kill("SIGKILL");
    await a[2]!.child.status;
    const reused = a[2]!.clusterPort;
    const seeds: string[] = [];
    b.push(
      await startClusterNode(
        `${rootB}/n0`,
        { client: freePort(), cluster: freePort() },
        seeds,
        [],
        spawn,
      ),
    );
    seeds.push(`127.0.0.1:${b[0]!.clusterPort}`);
    for (const [name, cluster] of [["n1", reused], ["n2", freePort()]] as const) {
      b.push(
        await startClusterNode(
          `${rootB}/${name}`,
          { client: freePort(), cluster },
          seeds,
          [],
          spawn,
        ),
      );
    }
    const clientB = await connectTo(b[0]!);
    clients.push(clientB);
    await clusterFormed(b, [clientB]);
    const idsB = b.map((p) => p.nodeId).sort();
    // A's nodes dial the reused port every few rounds (it was a member they lost): give them
    // many chances to merge the clusters.
    await retry("B's nodes see exactly B", async () => {
      const seen = await memberIds(clientB);
      if (seen.join() !== idsB.join()) throw new Error(`B's founder holds ${seen}`);
    });
    await sleep(5_000);
    const clientB1 = await connectTo(b[1]!);
    clients.push(clientB1);
    assert.deepEqual(await memberIds(clientB), idsB, "B's founder holds B's nodes only");
    assert.deepEqual(await memberIds(clientB1), idsB, "the node on the reused port holds B only");
    const seenByA = await memberIds(clients[0]!);
    assert.deepEqual(
      seenByA.filter((id) => !idsA.includes(id)),
      [],
      "A's founder holds none of B's nodes",
    );
    // Whoever of B reached A said so in its log, naming the other cluster.
    assert.match(
      logged.join("\n"),
      /Ignoring node \w+ of cluster \w+: this node belongs to cluster \w+/,
    );
  } finally {
    await cleanUp(rootB, b, []);
    await cleanUp(rootA, a, clients);
  }
});

Deno.test("a copy of a running node's data directory started as another process stops, and the node stays itself", async () => {
  const root = await Deno.makeTempDir({ prefix: "cluster-identity-copy-" });
  let procs: ClusterProc[] = [];
  const clients: Client[] = [];
  const logged: string[] = [];
  let copy: ClusterProc | null = null;
  try {
    const started = await startCluster(root);
    procs = started.procs;
    clients.push(await connectTo(procs[0]!));
    await clusterFormed(procs, clients);
    // The original must be well ahead in gossip rounds (one per 200 ms) for the copy to be told
    // apart as the later start.
    await sleep(6_000);
    await Deno.mkdir(`${root}/copy`);
    for (const f of ["node-id", "cluster-id"]) {
      await Deno.copyFile(`${root}/n2/${f}`, `${root}/copy/${f}`);
    }
    copy = await startClusterNode(
      `${root}/copy`,
      { client: freePort(), cluster: freePort() },
      started.seeds,
      [],
      { onLine: (line) => void logged.push(line) },
    );
    assert.equal(copy.nodeId, procs[2]!.nodeId);
    const timer = setTimeout(() => copy?.child.kill("SIGKILL"), 30_000);
    const status = await copy.child.status.finally(() => clearTimeout(timer));
    assert.equal(status.code, 2, `the copy exits as for a setup mistake:\n${logged.join("\n")}`);
    assert.match(
      logged.join("\n"),
      /Stopping; fix the setup before starting it again: Another process at 127\.0\.0\.1:\d+ runs as node \w+/,
    );
    // The original goes on as itself, everywhere.
    const n2 = procs[2]!;
    await retry("n2 is alive at its own address on n0", async () => {
      const m = (await clients[0]!.admin.clusterMembers()).members.find((x) => x.id === n2.nodeId);
      if (m?.state !== "alive" || m.clusterPort !== n2.clusterPort) {
        throw new Error(JSON.stringify(m));
      }
    });
    const stillRunning = await Promise.race([
      procs[2]!.child.status.then(() => false),
      sleep(500).then(() => true),
    ]);
    assert.ok(stillRunning, "the original was not told to stop");
  } finally {
    await cleanUp(root, copy === null ? procs : [...procs, copy], clients);
  }
});
