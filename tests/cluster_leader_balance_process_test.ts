// Preferred-leader balancing on real broker processes: a topic's partitions start led by their
// preferred replicas (placement rotates them over the nodes); a node SIGKILLed loses its
// leaderships to the survivors; once it is back, they hand each partition it prefers back to it,
// so every node leads its share again.

import assert from "node:assert/strict";
import type { Client } from "../src/client/mod.ts";
import {
  type ClusterProc,
  connectTo,
  createTopicRetrying,
  freePort,
  killAll,
  retry,
  sleep,
  startClusterNode,
} from "./_broker_process.ts";

const TOPIC = "spread";
const PARTITIONS = 6;
/** The brokers' balancing interval, ms (the default is 30 s). */
const BALANCE_INTERVAL_MS = 1_000;
/** Time the leaders get to go back once the node is back, ms. */
const BALANCED_MS_MAX = 20_000;

/** Each partition's leader and preferred replica (the first of its replicas), as `c` sees them. */
async function leaders(c: Client): Promise<{ leader: string; preferred: string }[]> {
  const t = (await c.admin.metadata([TOPIC])).topics[0]!;
  return t.partitions.map((p) => ({ leader: p.leader, preferred: p.replicas[0]?.id ?? "" }));
}

Deno.test({
  name:
    "3 replicating brokers: leaders a killed node lost go back to it after it returns (preferred-leader balancing)",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gregormq-balance-" });
    const ports = [0, 1, 2].map(() => ({ client: freePort(), cluster: freePort() }));
    const seeds = [`127.0.0.1:${ports[0]!.cluster}`];
    const extra = [
      "--cluster-bootstrap-expect",
      "3",
      "--cluster-leader-balance-interval-ms",
      String(BALANCE_INTERVAL_MS),
    ];
    const start = (i: number) =>
      startClusterNode(`${root}/n${i}`, ports[i]!, i === 0 ? [] : seeds, extra);
    const procs: ClusterProc[] = await Promise.all([0, 1, 2].map(start));
    const clients: Client[] = [];
    try {
      for (const p of procs) clients.push(await connectTo(p));
      await createTopicRetrying(clients[0]!, TOPIC, {
        partitions: PARTITIONS,
        configs: { "replication.factor": "3" },
      });
      await retry("every partition is led by its preferred replica", async () => {
        const ls = await leaders(clients[0]!);
        if (ls.some((l) => l.leader !== l.preferred)) throw new Error(JSON.stringify(ls));
      });
      const counts = (ls: { leader: string }[]) =>
        procs.map((p) => ls.filter((l) => l.leader === p.nodeId).length);
      const before = counts(await leaders(clients[0]!));
      assert.deepEqual(before, [2, 2, 2], "placement spreads the preferred leaders");

      // Node 2 dies: its partitions fail over to the other two.
      const victim = 2;
      clients[victim]!.close();
      await killAll([procs[victim]!]);
      await retry("the survivors lead every partition", async () => {
        const ls = await leaders(clients[0]!);
        const led = ls.filter((l) => l.leader !== "" && l.leader !== procs[victim]!.nodeId);
        if (led.length !== PARTITIONS) throw new Error(JSON.stringify(ls));
      });
      const during = counts(await leaders(clients[0]!));
      assert.equal(during[victim], 0);

      // It comes back: within a few balancing rounds it leads its two partitions again.
      procs[victim] = await start(victim);
      clients[victim] = await connectTo(procs[victim]!);
      const back = Date.now();
      let after: number[] = [];
      while (Date.now() - back < BALANCED_MS_MAX) {
        const ls = await leaders(clients[0]!).catch(() => []);
        after = counts(ls);
        if (ls.length === PARTITIONS && ls.every((l) => l.leader === l.preferred)) break;
        await sleep(200);
      }
      console.log(
        `leaders per node: ${before.join("/")} at start, ${during.join("/")} with node ${victim} ` +
          `down, ${after.join("/")} ${Date.now() - back} ms after it returned`,
      );
      assert.deepEqual(after, [2, 2, 2], "every node leads its share again");
    } finally {
      for (const c of clients) c.close();
      await killAll(procs);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
