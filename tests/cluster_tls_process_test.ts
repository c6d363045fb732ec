// The cluster's node-to-node traffic over mutual TLS, on three real broker processes with
// certificates made by openssl: a produce sent to a node that does not lead is forwarded to the
// leader over the TLS cluster port (src/cluster/forward.ts, through the bridge), the leader
// replicates it over TLS, and a third node serves it from its own replica. A node that holds a
// certificate from another CA (and trusts the cluster's) is refused at the handshake and never
// becomes a member, while the cluster keeps taking produces.

import assert from "node:assert/strict";
import { encodeBatch } from "../src/protocol/batch.ts";
import {
  Acks,
  type MetadataResponse,
  type ProduceResponse,
  Start,
  type SubscribeResponse,
} from "../src/protocol/messages.ts";
import {
  cleanUp,
  clusterFormed,
  connectTo,
  createTopicRetrying,
  freePort,
  readAll,
  retry,
  sleep,
  startCluster,
  startClusterNode,
} from "./_broker_process.ts";
import { haveOpenssl, makeTestCerts } from "./_tls_certs.ts";
import type { Client } from "../src/client/mod.ts";

const OPENSSL = await haveOpenssl();
if (!OPENSSL) console.log("cluster_tls_process_test: skipped, openssl is not installed");

/** Produces sent through the node that does not lead, before and while the rogue tries to join. */
const PRODUCES = 20;
/** How long the rogue gets to try to join (gossip rounds are 200 ms apart; a join takes ~4), ms. */
const ROGUE_WAIT_MS = 3_000;

function batch(value: string): Uint8Array {
  return encodeBatch([{ value: new TextEncoder().encode(value), timestamp: 1_000 }]);
}

Deno.test({
  name:
    "cluster TLS: a produce to a follower is forwarded and replicated over mutual TLS and read on a third node; a node certified by another CA is refused",
  ignore: !OPENSSL,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const certs = await makeTestCerts();
    const root = `${certs.dir}/cluster`;
    const tls = [
      "--cluster-tls-cert",
      certs.server.cert,
      "--cluster-tls-key",
      certs.server.key,
      "--cluster-tls-ca",
      certs.ca,
    ];
    const { procs, seeds } = await startCluster(root, tls);
    const clients: Client[] = [];
    try {
      for (const p of procs) clients.push(await connectTo(p));
      const controller = clients[await clusterFormed(procs, clients)]!;
      await createTopicRetrying(controller, "tls-r", {
        partitions: 1,
        configs: { "replication.factor": "3" },
      });
      const meta = await retry("tls-r/0 has a leader and three replicas", async () => {
        const m = await clients[0]!.connection.request<MetadataResponse>("METADATA", {
          topics: [{ name: "tls-r" }],
          autoCreate: 0,
        });
        const p = m.topics[0]?.partitions[0];
        if (p === undefined || p.leader === "" || p.replicas.length < 3) {
          throw new Error(`not yet: ${JSON.stringify(p)}`);
        }
        return p;
      });
      const leader = procs.findIndex((p) => p.nodeId === meta.leader);
      const via = [0, 1, 2].find((i) => i !== leader)!;
      const reader = [0, 1, 2].find((i) => i !== leader && i !== via)!;

      // Raw PRODUCE frames at a follower: the client SDK would go to the leader itself, so only
      // the follower's forwarder over the TLS cluster port can get them stored.
      const produceVia = async (from: number, to: number): Promise<number[]> => {
        const answers = await Promise.all(
          Array.from(
            { length: to - from },
            (_, i) =>
              clients[via]!.connection.request<ProduceResponse>("PRODUCE", {
                topic: "tls-r",
                partition: 0,
                acks: Acks.quorum,
                timeoutMs: 10_000,
                batch: batch(`m${from + i}`),
              }),
          ),
        );
        return answers.map((a) => a.baseOffset);
      };
      const half = PRODUCES / 2;
      const first = await retry("a quorum produce forwarded by a follower", async () => {
        const m = await clients[via]!.connection.request<ProduceResponse>("PRODUCE", {
          topic: "tls-r",
          partition: 0,
          acks: Acks.quorum,
          timeoutMs: 10_000,
          batch: batch("m0"),
        });
        return m.baseOffset;
      });
      assert.equal(first, 0);
      assert.deepEqual(
        await produceVia(1, half),
        Array.from({ length: half - 1 }, (_, i) => i + 1),
      );

      // The rogue trusts the cluster's CA, so it would gladly join; its own certificate is signed
      // by another CA, which the cluster's nodes do not trust.
      const rogue = await startClusterNode(
        `${root}/rogue`,
        {
          client: freePort(),
          cluster: freePort(),
        },
        seeds,
        [
          "--cluster-tls-cert",
          certs.otherClient.cert,
          "--cluster-tls-key",
          certs.otherClient.key,
          "--cluster-tls-ca",
          certs.ca,
        ],
      );
      procs.push(rogue);
      const during = produceVia(half, PRODUCES);
      await sleep(ROGUE_WAIT_MS);
      assert.deepEqual(
        await during,
        Array.from({ length: PRODUCES - half }, (_, i) => half + i),
        "forwarded produces keep their order while the rogue knocks",
      );
      for (const [i, c] of clients.entries()) {
        const members = (await c.admin.metadata([])).nodes.map((n) => n.id).sort();
        assert.deepEqual(
          members,
          procs.slice(0, 3).map((p) => p.nodeId).sort(),
          `node ${i} lists only the three`,
        );
      }
      const seedLog = procs[0]!.lines.join("\n");
      assert.match(
        seedLog,
        /Cluster port: .*(UNKNOWN_CA|BAD_CERTIFICATE)/,
        `the seed logs the refused certificate:\n${seedLog}`,
      );
      const rogueClient = await connectTo(rogue);
      clients.push(rogueClient);
      const rogueView = (await rogueClient.admin.metadata([])).nodes.map((n) => n.id);
      assert.deepEqual(rogueView, [rogue.nodeId], "the rogue learned no member of the cluster");

      // The third node, neither leader nor forwarder, serves every message from its own replica:
      // it takes the subscription itself (a node without a caught-up replica says NOT_LEADER, and
      // the SDK would go to the leader instead), with all of them below its high watermark.
      // Ids of their own, far above those the SDK numbers its subscriptions with from 1.
      let subscriptionId = 1_000_000;
      await retry(`node ${reader} serves the topic up to ${PRODUCES}`, async () => {
        const r = await clients[reader]!.connection.request<SubscribeResponse>("SUBSCRIBE", {
          subscriptionId: subscriptionId++,
          topic: "tls-r",
          partition: 0,
          start: Start.earliest,
          startValue: 0,
          durableName: "",
          ackTimeoutMs: 0,
          creditMessages: 0,
          creditBytes: 0,
        });
        if (r.highWatermark < PRODUCES) throw new Error(`high watermark ${r.highWatermark}`);
      });
      const values = await readAll(clients[reader]!, "tls-r");
      assert.deepEqual(values, Array.from({ length: PRODUCES }, (_, i) => `m${i}`));
    } finally {
      await cleanUp(root, procs, clients);
      await Deno.remove(certs.dir, { recursive: true }).catch(() => {});
    }
  },
});
