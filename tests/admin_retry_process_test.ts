// The admin API as a tool-builder meets it, against real broker processes: calls made right after
// a cluster starts wait out its elections (NOT_LEADER is retried within the call's deadline), a
// refusal that retrying cannot change comes back at once, and the metadata types are exported
// from the package's face.

import assert from "node:assert/strict";
import {
  type Client,
  connect,
  ErrorCode,
  GregorError,
  type MetadataPartition,
  type MetadataResponse,
  type MetadataTopic,
} from "../mod.ts";
import { cleanUp, startCluster } from "./_broker_process.ts";

Deno.test({
  name: "admin calls right after a cluster starts succeed: NOT_LEADER is retried in the deadline",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gregormq-admin-retry-" });
    const { procs } = await startCluster(root);
    const clients: Client[] = [];
    try {
      // At once, while the metadata group is still electing its leader.
      for (const p of procs) {
        clients.push(await connect({ port: p.clientPort, requestTimeoutMs: 30_000 }));
      }
      await Promise.all(
        clients.map((c, i) => c.admin.createTopic(`early-${i}`, { partitions: 2 })),
      );
      const meta: MetadataResponse = await clients[0]!.admin.metadata(["early-0", "early-2"]);
      const topics: MetadataTopic[] = meta.topics;
      assert.deepEqual(topics.map((t) => [t.name, t.error]), [["early-0", 0], ["early-2", 0]]);
      const partitions: MetadataPartition[] = topics.flatMap((t) => t.partitions);
      assert.equal(partitions.length, 4);
      for (const p of partitions) assert.ok(p.replicas.length > 0, JSON.stringify(p));
      assert.equal(meta.nodes.length, 3);

      const startMs = performance.now();
      await assert.rejects(
        clients[1]!.admin.createTopic("early-0"),
        (err) => err instanceof GregorError && err.code === ErrorCode.TOPIC_EXISTS,
      );
      const refusedMs = performance.now() - startMs;
      assert.ok(refusedMs < 2_000, `a final refusal took ${Math.round(refusedMs)} ms`);
    } finally {
      await cleanUp(root, procs, clients);
    }
  },
});
