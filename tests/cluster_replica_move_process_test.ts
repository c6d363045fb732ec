// Replicas of a dead node move, on real broker processes: four brokers, a topic whose partitions
// each have three replicas; one node holding replicas is SIGKILLed for good; after
// `--cluster-replica-move-after-ms` the controller reassigns its partitions to the fourth node,
// whose replicas fetch every batch; every partition is back to three replicas in sync, and every
// acknowledged message reads back from the node that took them over.

import assert from "node:assert/strict";
import type { Client } from "../src/client/mod.ts";
import {
  connectTo,
  createTopicRetrying,
  killAll,
  retry,
  sleep,
  startCluster,
} from "./_broker_process.ts";

const TOPIC = "moving";
const MESSAGES = 300;
/** How long a node is dead before its replicas move, ms (the default is 10 min). */
const MOVE_AFTER_MS = 2_000;
/** Time the move gets: failure detection, the wait, the catch-up and the group changes, ms. */
const MOVED_MS_MAX = 40_000;

Deno.test({
  name:
    "4 replicating brokers: the replicas of a node dead past replicaMoveAfterMs move to a live node and catch up",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gregormq-move-" });
    const extra = [
      "--cluster-bootstrap-expect",
      "3",
      "--cluster-replica-move-after-ms",
      String(MOVE_AFTER_MS),
    ];
    // Started one by one, again on other ports if a parallel test takes one first.
    const { procs } = await startCluster(root, extra, () => ({}), 4);
    const clients: Client[] = [];
    try {
      for (const p of procs) clients.push(await connectTo(p));
      await retry("four members", async () => {
        const m = await clients[0]!.admin.metadata([]);
        if (m.nodes.length < 4 || m.controller === "") throw new Error(JSON.stringify(m.nodes));
      });
      await createTopicRetrying(clients[0]!, TOPIC, {
        partitions: 4,
        configs: { "replication.factor": "3" },
      });
      const producer = clients[0]!.producer({ acks: "quorum", lingerMs: 2 });
      const acks: Promise<number>[] = [];
      for (let i = 0; i < MESSAGES; i++) {
        acks.push(producer.send(TOPIC, { key: `k${i}`, value: `m${i}` }));
      }
      await Promise.all(acks);

      // The victim: a node holding replicas that does not lead the metadata group.
      const meta = await clients[0]!.admin.metadata([TOPIC]);
      const placed = meta.topics[0]!.partitions.map((p) => p.replicas.map((r) => r.id));
      const victim = procs.findIndex((p) =>
        p.nodeId !== meta.controller && placed.some((rs) => rs.includes(p.nodeId))
      );
      assert.ok(victim >= 0, "no node to kill");
      const dead = procs[victim]!.nodeId;
      const survivor = clients[procs.findIndex((_, i) => i !== victim)]!;
      clients[victim]!.close();
      await killAll([procs[victim]!]);
      const killedAt = Date.now();

      let last = "";
      let moved = false;
      while (Date.now() - killedAt < MOVED_MS_MAX) {
        const d = await survivor.admin.describeTopic(TOPIC).catch(() => null);
        const m = await survivor.admin.metadata([TOPIC]).catch(() => null);
        if (d !== null && m !== null) {
          const parts = m.topics[0]!.partitions;
          last = JSON.stringify(parts.map((p) => [p.leader, p.replicas.map((r) => r.id)]));
          const replicasOk = parts.every((p) =>
            p.replicas.length === 3 && !p.replicas.some((r) => r.id === dead)
          );
          // Each partition's leader reports its in-sync replicas; ask the leaders.
          let inSync = replicasOk;
          for (const p of parts) {
            if (!inSync) break;
            const owner = procs.findIndex((x, i) => i !== victim && x.nodeId === p.leader);
            if (owner < 0) {
              inSync = false;
              break;
            }
            const info = (await clients[owner]!.admin.describeTopic(TOPIC).catch(() => null))
              ?.partitions[p.partition];
            inSync = info !== undefined && info.isr.length === 3;
          }
          if (inSync) {
            moved = true;
            break;
          }
        }
        await sleep(250);
      }
      const tookMs = Date.now() - killedAt;
      console.log(`replicas of ${dead} moved ${tookMs} ms after it died: ${last}`);
      assert.ok(moved, `the partitions were not back to 3 in-sync replicas: ${last}`);

      // Every acknowledged message reads back, from each node still up.
      const values = new Set<string>();
      for (let p = 0; p < 4; p++) {
        for (const [i, c] of clients.entries()) {
          if (i === victim) continue;
          const sub = await c.subscribe(TOPIC, { from: "earliest", partition: p });
          const end = (await c.admin.describeTopic(TOPIC)).partitions[p]!.highWatermark;
          let n = 0;
          if (end > 0) {
            for await (const msg of sub) {
              values.add(msg.text());
              n++;
              msg.ack();
              if (msg.offset + 1 >= end) break;
            }
          }
          await sub.close();
          assert.equal(n, end, `node ${i} served partition ${p} whole`);
        }
      }
      assert.equal(values.size, MESSAGES);
    } finally {
      for (const c of clients) c.close();
      await killAll(procs);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
