// The conformance suite (conformance/) run by the TypeScript client: every scenario against live
// broker processes. A scenario that fails here fails for every SDK: the Go SDK runs the same file
// (tests/conformance_go_test.ts).

import assert from "node:assert/strict";
import { murmur2, partitionForKey } from "../src/client/partitioner.ts";
import { runScenario, SCENARIOS, startBrokers, stopBrokers } from "./_conformance.ts";

Deno.test("conformance: murmur2.json's Kafka vectors hash and partition as the client does", async () => {
  const doc = JSON.parse(
    await Deno.readTextFile(new URL("../conformance/murmur2.json", import.meta.url)),
  );
  assert.ok(doc.vectors.length >= 10);
  for (const v of doc.vectors) {
    const key = new TextEncoder().encode(v.key);
    assert.equal(murmur2(key), v.murmur2, v.key);
    for (const [n, p] of Object.entries(v.partitions)) {
      assert.equal(partitionForKey(key, Number(n)), p, `${v.key} over ${n}`);
    }
  }
});

Deno.test("conformance: every scenario passes with the TypeScript client", async (t) => {
  assert.ok(SCENARIOS.length >= 10);
  const shared = await startBrokers(1);
  try {
    for (const s of SCENARIOS) {
      await t.step(s.name, async () => {
        if ((s.brokers ?? 1) === 1) {
          await runScenario(s, shared.procs);
          return;
        }
        const own = await startBrokers(s.brokers!, s.cluster === true);
        try {
          await runScenario(s, own.procs);
        } finally {
          await stopBrokers(own);
        }
      });
    }
  } finally {
    await stopBrokers(shared);
  }
});
