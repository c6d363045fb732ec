// A young cluster is safe to lose a node, on real broker processes: three brokers started with
// `--cluster-bootstrap-expect 3` found the metadata group with all three as voters, so the moment
// the cluster has a controller it can lose one; the controller paused (SIGSTOP) then is replaced
// by the other two within a few election timeouts, and they go on creating topics.

import assert from "node:assert/strict";
import type { Client } from "../src/client/mod.ts";
import {
  type ClusterProc,
  connectTo,
  freePort,
  killAll,
  sleep,
  startClusterNode,
} from "./_broker_process.ts";

/** The brokers' election timeout (the default), ms. */
const ELECTION_TIMEOUT_MS = 700;
/**
 * Time from the pause until the other two name a new controller and it commits a topic, ms at
 * most: the pause is noticed after one to two election timeouts, then one election and a commit;
 * the rest is the loaded machine and this test's polling.
 */
const REPLACED_MS_MAX = 6 * ELECTION_TIMEOUT_MS;
/** How long the cluster may take to form and elect its first controller, ms. */
const FORM_MS_MAX = 30_000;

/** The controller a node names, or "" (none known, or the node does not answer in time). */
async function controllerOf(client: Client): Promise<string> {
  const answer = client.admin.metadata([]).then((m) => m.controller, () => "");
  return await Promise.race([answer, sleep(500).then(() => "")]);
}

Deno.test({
  name:
    "3 brokers with bootstrap-expect 3: the metadata group can lose a node from its first controller; a paused controller is replaced",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gregormq-pause-" });
    const ports = [0, 1, 2].map(() => ({ client: freePort(), cluster: freePort() }));
    const seeds = [`127.0.0.1:${ports[0]!.cluster}`];
    const expect = ["--cluster-bootstrap-expect", "3"];
    const procs: ClusterProc[] = [];
    const clients: Client[] = [];
    let paused: ClusterProc | null = null;
    try {
      procs.push(
        ...await Promise.all(
          ports.map((p, i) => startClusterNode(`${root}/n${i}`, p, i === 0 ? [] : seeds, expect)),
        ),
      );
      for (const p of procs) clients.push(await connectTo(p));
      const formedBy = Date.now() + FORM_MS_MAX;
      let controller = "";
      while (controller === "" || !procs.some((p) => p.nodeId === controller)) {
        assert.ok(Date.now() < formedBy, "no controller within 30 s of starting");
        await sleep(50);
        controller = await controllerOf(clients[0]!);
      }
      // The first controller already leads three voters.
      const members = await clients[0]!.admin.clusterMembers();
      assert.equal(members.members.length, 3);
      const status = await clients[0]!.admin.metadata([]);
      assert.equal(status.controller, controller);
      const index = procs.findIndex((p) => p.nodeId === controller);
      paused = procs[index]!;
      Deno.kill(paused.child.pid, "SIGSTOP");
      const pausedAt = Date.now();
      const others = clients.filter((_, i) => i !== index);
      let replacedMs = -1;
      let created = false;
      while (Date.now() - pausedAt < 60_000) {
        const named = await Promise.all(others.map(controllerOf));
        if (named.every((n) => n !== "" && n !== controller)) {
          replacedMs = Date.now() - pausedAt;
          await others[0]!.admin.createTopic("after-the-pause", { partitions: 1 }).then(
            () => (created = true),
            () => {},
          );
          if (created) break;
        }
        await sleep(50);
      }
      const tookMs = Date.now() - pausedAt;
      console.log(
        `controller ${controller} paused: the others named a new one after ${replacedMs} ms, ` +
          `and created a topic ${tookMs} ms after the pause`,
      );
      assert.ok(created, "the other two never created a topic with the controller paused");
      assert.ok(
        tookMs <= REPLACED_MS_MAX,
        `the controller was replaced ${tookMs} ms after the pause (at most ${REPLACED_MS_MAX})`,
      );
    } finally {
      if (paused !== null) Deno.kill(paused.child.pid, "SIGCONT");
      for (const c of clients) c.close();
      await killAll(procs);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
