import assert from "node:assert/strict";
import { denoEnv } from "../io/deno/mod.ts";
import { ErrorCode, GregorError, RETRIABLE_CODES } from "../protocol/errors.ts";
import { ClusterBridge } from "./bridge.ts";
import type { ClusterNode } from "./cluster.ts";
import type { Gossip } from "./gossip/mod.ts";

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
async function deadPort(): Promise<number> {
  const l = await denoEnv().net.listen({ host: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

Deno.test("ClusterBridge: forwarding to a leader that cannot be reached is a retriable error for every caller", async () => {
  const port = await deadPort();
  // This node does not lead the metadata group; the controller it knows of is dead.
  const node = { metaGroup: null, controller: "dead-node", nodeId: "me" } as unknown as ClusterNode;
  const gossip = {
    member: (id: string) => id === "dead-node" ? { host: "127.0.0.1", clientPort: port } : null,
  } as unknown as Gossip;
  const bridge = new ClusterBridge(denoEnv());
  bridge.attach(node, gossip);
  try {
    // Several requests at once share one connection attempt to the dead node.
    const outcomes = await Promise.allSettled([0, 1, 2].map(() => bridge.initProducerId(false)));
    for (const o of outcomes) {
      assert.equal(o.status, "rejected");
      const err = (o as PromiseRejectedResult).reason;
      assert.ok(
        err instanceof GregorError,
        `a forwarding failure must be a protocol error, not ${err?.name}: ${err?.message}`,
      );
      assert.ok(RETRIABLE_CODES.has(err.code), `code ${err.codeName} must be retriable`);
      assert.notEqual(err.code, ErrorCode.INTERNAL);
      assert.match(err.message, /dead-node/);
    }
  } finally {
    await bridge.close();
  }
});
