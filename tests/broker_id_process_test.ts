// The name a broker gives clients in the handshake, with real processes: the nodes of a cluster
// each go by their own node id unless a broker id is configured; a single node keeps the default.

import assert from "node:assert/strict";
import { connect } from "../src/client/mod.ts";
import { type BrokerProcess, killAll, spawnBroker } from "./_broker_process.ts";

/** What the broker at `listen` says its id is in the handshake. */
async function helloId(p: BrokerProcess): Promise<string> {
  const client = await connect({ port: Number(p.listen.listen.split(":")[1]) });
  try {
    return client.connection.hello!.brokerId;
  } finally {
    await client.close();
  }
}

Deno.test("each node of a cluster gets its own broker id; a configured one wins", async () => {
  const root = await Deno.makeTempDir({ prefix: "gregormq-broker-id-" });
  const procs: BrokerProcess[] = [];
  try {
    const base = ["--port", "0", "--cluster-port", "0", "--no-metrics-enabled"];
    procs.push(await spawnBroker([...base, "--data-dir", `${root}/a`]));
    const seeds = ["--seeds", procs[0]!.listen.cluster!];
    procs.push(await spawnBroker([...base, "--data-dir", `${root}/b`, ...seeds]));
    procs.push(
      await spawnBroker([...base, "--data-dir", `${root}/c`, ...seeds, "--broker-id", "east-3"]),
    );
    procs.push(
      await spawnBroker(["--port", "0", "--no-metrics-enabled", "--data-dir", `${root}/d`]),
    );
    const ids = await Promise.all(procs.map(helloId));
    assert.equal(ids[0], procs[0]!.listen.nodeId, "a clustered node goes by its node id");
    assert.equal(ids[1], procs[1]!.listen.nodeId);
    assert.notEqual(ids[0], ids[1]);
    assert.equal(ids[2], "east-3", "a configured broker id is kept in a cluster");
    assert.equal(ids[3], "gregormq-0", "a single node keeps the default");
    for (const [i, p] of procs.entries()) {
      assert.equal((JSON.parse(p.lines[0]!) as { brokerId: string }).brokerId, ids[i]);
    }
  } finally {
    await killAll(procs);
    await Deno.remove(root, { recursive: true });
  }
});
