import assert from "node:assert/strict";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { Flag, HEADER_BYTES } from "../protocol/frame.ts";
import { decode, encode, ERROR_SCHEMA, Op, SCHEMAS } from "../protocol/messages.ts";
import { runOnNode } from "../../sim/harness.ts";
import { Simulation } from "../../sim/simulation.ts";
import { Broker } from "../broker/broker.ts";
import { serveForwarded } from "../broker/connection.ts";
import { LedElsewhere } from "../broker/control_plane.ts";
import { Partition, Topic } from "../broker/topic.ts";
import { MemoryLog } from "../storage/mod.ts";
import type { Env } from "../io/types.ts";
import { ClusterBridge } from "./bridge.ts";
import type { ClusterNode } from "./cluster.ts";
import { Forwarder } from "./forward.ts";

/** Runs `fn` with a broker served by a ClusterBridge over a node that knows `controller`. */
async function withBridge(
  controller: string | null,
  fn: (b: Broker, env: Env) => Promise<void>,
): Promise<void> {
  await runOnNode(new Simulation(1), "me", async (env) => {
    const bridge = new ClusterBridge(env);
    const b = await Broker.open(env, { dataDir: "data" }, {}, bridge);
    // This node does not lead the metadata group.
    const node = { metaGroup: null, controller, nodeId: "me" } as unknown as ClusterNode;
    bridge.attach(node, new Forwarder(env, { nodeId: "me", resolve: () => null }));
    try {
      await fn(b, env);
    } finally {
      await b.close();
    }
  });
}

const INIT_PRODUCER_ID = {
  opcode: Op.INIT_PRODUCER_ID,
  payload: encode(SCHEMAS.INIT_PRODUCER_ID.request, {}),
  clientId: "app",
  principal: "",
};

Deno.test("ClusterBridge: a request another node leads is refused with LedElsewhere naming it, for its connection to forward", async () => {
  await withBridge("node-b", async (b) => {
    await assert.rejects(b.initProducerId(), (err) => {
      assert.ok(err instanceof LedElsewhere, `not LedElsewhere: ${err}`);
      assert.equal(err.nodeId, "node-b");
      return true;
    });
  });
});

Deno.test("serveForwarded() answers a forwarded request this node does not lead NOT_LEADER: it is never forwarded twice", async () => {
  await withBridge("node-b", async (b) => {
    const frame = await serveForwarded(b, INIT_PRODUCER_ID);
    assert.ok(frame !== null);
    assert.equal(frame[3]! & Flag.ERROR, Flag.ERROR);
    const e = decode<{ code: number; message: string }>(
      ERROR_SCHEMA,
      frame.subarray(HEADER_BYTES),
      "ERROR",
    );
    assert.equal(e.code, ErrorCode.NOT_LEADER);
    assert.match(e.message, /INIT_PRODUCER_ID.*its leader is node-b/);
  });
});

Deno.test("serveForwarded() refuses a request that is not forwarded between nodes (SUBSCRIBE)", async () => {
  await withBridge("node-b", async (b) => {
    const frame = await serveForwarded(b, { ...INIT_PRODUCER_ID, opcode: Op.SUBSCRIBE });
    assert.ok(frame !== null);
    const e = decode<{ code: number; message: string }>(
      ERROR_SCHEMA,
      frame.subarray(HEADER_BYTES),
      "ERROR",
    );
    assert.equal(e.code, ErrorCode.INVALID_REQUEST);
    assert.match(e.message, /SUBSCRIBE is not a request one node forwards/);
  });
});

Deno.test("ClusterBridge: with no leader known the request is NOT_LEADER at once, not forwarded", async () => {
  await withBridge(null, async (b) => {
    await assert.rejects(b.initProducerId(), (err) => {
      assert.ok(err instanceof GregorError);
      assert.equal(err.code, ErrorCode.NOT_LEADER);
      assert.match(err.message, /No leader is known/);
      return true;
    });
  });
});

Deno.test("ClusterBridge: a topic created through another node is answered only once this node knows it", async () => {
  await withBridge("node-b", async (b, env) => {
    let elsewhere: LedElsewhere | null = null;
    await b.createTopic({ name: "t", partitions: 1, configs: {} }).catch((err) => {
      elsewhere = err;
    });
    assert.ok(elsewhere !== null && (elsewhere as LedElsewhere).settle !== null);
    let settled = false;
    const settling = (elsewhere as LedElsewhere).settle!().then(() => (settled = true));
    await env.clock.sleep(50);
    assert.equal(settled, false, "the creation's answer waits while this node does not know it");
    // The metadata group's entry reaches this node.
    b.adoptTopic(new Topic("t", {}, [new Partition("t", 0, new MemoryLog({ retentionBytes: 0 }))]));
    await settling;
  });
});
