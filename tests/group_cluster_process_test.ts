// Consumer groups in a cluster, with real processes: three replicating brokers on 127.0.0.1, a
// group of two members consuming a 4-partition topic through one node, and the node coordinating
// the group (the metadata group's leader) SIGKILLed in the middle. The group must carry on under
// the new coordinator, every message must be consumed, and the offsets committed before the kill
// must still be there afterwards (they are replicated metadata, not the dead node's files).

import assert from "node:assert/strict";
import type { GroupConsumer } from "../src/client/mod.ts";
import type { DescribeGroupResponse } from "../src/protocol/messages.ts";
import {
  clusterFormed,
  clusterTest,
  connectTo,
  createTopicRetrying,
  META_VOTERS_SETTLE_MS,
  retry,
  sleep,
  startClusterNode,
} from "./_broker_process.ts";

const TOPIC = "jobs";
const GROUP = "workers";
const PARTITIONS = 4;
const PER_ROUND = 200;

/** Keeps taking messages from `g` into `seen` until `stop()` says so. */
async function drain(g: GroupConsumer, seen: Set<string>, stop: () => boolean): Promise<void> {
  while (!stop()) {
    const m = await Promise.race([g.next(), sleep(200).then(() => null)]);
    if (m !== null) seen.add(m.text());
  }
}

/** The group's committed offsets by partition, once every partition has one. */
function committed(d: DescribeGroupResponse): number[] {
  const out = Array<number>(PARTITIONS).fill(-1);
  for (const o of d.offsets) if (o.topic === TOPIC) out[o.partition] = o.offset;
  return out;
}

clusterTest(
  "3 replicating brokers: a group survives SIGKILL of its coordinator; commits are kept",
  async ({ root, procs, ports, seeds, clients }) => {
    let stopping = false;
    try {
      await clusterFormed(procs, clients);
      // The metadata group takes the two joiners as learners, then as voters, one change per
      // review (500 ms) once each has caught up: until both vote, killing the controller leaves
      // no quorum to elect another. No request shows the voters, so give it time.
      await sleep(META_VOTERS_SETTLE_MS);
      const victim = await clusterFormed(procs, clients);
      const controller = procs[victim]!.nodeId;
      // Everything goes through a node that stays up; it forwards group requests to the
      // coordinator, wherever that is.
      const home = (victim + 1) % 3;
      const c = clients[home]!;
      await createTopicRetrying(c, TOPIC, { partitions: PARTITIONS });
      const producer = c.producer({ acks: "quorum", deliveryTimeoutMs: 60_000 });
      const produce = (from: number) =>
        Promise.all(
          Array.from(
            { length: PER_ROUND },
            (_, k) =>
              producer.send(TOPIC, { value: `j${from + k}`, partition: (from + k) % PARTITIONS }),
          ),
        );
      await retry("produce", () => produce(0));

      const members = [await connectTo(procs[home]!), await connectTo(procs[home]!)];
      clients.push(...members);
      const seen = new Set<string>();
      const groups: GroupConsumer[] = [];
      for (const m of members) {
        groups.push(
          await m.groupConsumer(GROUP, [TOPIC], {
            reset: "earliest",
            sessionTimeoutMs: 3000,
            autoCommitIntervalMs: 200,
          }),
        );
      }
      const drained = groups.map((g) => drain(g, seen, () => stopping));

      // Round one: everything consumed and committed under the first coordinator.
      const before = await retry("round one committed", async () => {
        const d = await c.admin.describeGroup(GROUP);
        const sum = committed(d).reduce((a, b) => a + b, 0);
        if (seen.size < PER_ROUND || sum < PER_ROUND) {
          throw new Error(`${seen.size} seen, ${sum} committed`);
        }
        return d;
      });

      const killedAt = Date.now();
      procs[victim]!.child.kill("SIGKILL");
      await procs[victim]!.child.status;
      // The new coordinator answers for the group with a generation of its own term.
      const after = await retry("a new coordinator answers", async () => {
        const d = await c.admin.describeGroup(GROUP);
        if (d.generation <= before.generation || d.members.length < 2) {
          throw new Error(`generation ${d.generation}, ${d.members.length} members`);
        }
        return d;
      });
      const failoverMs = Date.now() - killedAt;
      // Commits survived the coordinator: nothing went back.
      const kept = committed(after);
      committed(before).forEach((o, p) =>
        assert.ok(kept[p]! >= o, `partition ${p}: committed ${o} before the kill, ${kept[p]} after`)
      );

      // Round two under the new coordinator.
      await retry("produce", () => produce(PER_ROUND));
      const final = await retry("round two consumed and committed", async () => {
        const d = await c.admin.describeGroup(GROUP);
        const sum = committed(d).reduce((a, b) => a + b, 0);
        if (seen.size < 2 * PER_ROUND || sum < 2 * PER_ROUND) {
          throw new Error(`${seen.size} seen, ${sum} committed`);
        }
        return d;
      });
      for (let i = 0; i < 2 * PER_ROUND; i++) assert.ok(seen.has(`j${i}`), `j${i} never consumed`);
      for (const o of final.offsets) assert.equal(o.offset, o.highWatermark, "lag is 0");

      // The killed node comes back and sees the same offsets (its requests are forwarded).
      procs[victim] = await startClusterNode(
        `${root}/n${victim}`,
        ports[victim]!,
        victim === 0 ? [] : seeds,
      );
      clients[victim]!.close();
      clients[victim] = await connectTo(procs[victim]!);
      const back = clients[victim]!;
      await retry("the restarted node answers", async () => {
        assert.deepEqual(committed(await back.admin.describeGroup(GROUP)), committed(final));
      });
      console.log(
        `coordinator ${controller} killed: a new one answered after ${failoverMs} ms ` +
          `(generation ${before.generation} → ${after.generation}); ${2 * PER_ROUND} messages ` +
          `consumed, committed offsets ${committed(before).join("/")} kept, final ` +
          `${committed(final).join("/")}`,
      );
      stopping = true;
      for (const g of groups) await g.close().catch(() => {});
      await Promise.all(drained);
    } finally {
      stopping = true; // the drain loops end; the cluster is cleaned up by clusterTest
    }
  },
);
