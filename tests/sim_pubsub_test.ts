// Seeded chaos for the broker itself: the real broker, client and file log on the simulated
// network and disk, with broker crashes (power and process), torn and corrupted unsynced writes,
// bit flips on read, failed fsyncs, full disks, partitions and resets. Fixed seed ranges, so a
// failure names its seed and `deno task sim --scenario pubsub --seed N` replays it.

import assert from "node:assert/strict";
import { pubsubOptions, runPubSub } from "../sim/pubsub_scenario.ts";

Deno.test("pubsub: a retry after the producers' state was rebuilt is not stored twice (seed 3517)", async () => {
  // The same race as groups seed 8795: appends taken while the state was rebuilt were unknown to
  // the rebuilt one, so their retries were stored a second time.
  const r = await runPubSub(pubsubOptions(3517));
  assert.deepEqual(r.violations, []);
});

Deno.test("pubsub: a producer state that could not be rebuilt is rebuilt before the next append (seed 9436)", async () => {
  // A failed fsync made the broker exit; after the restart the rebuild of the producers' state
  // failed on a read, the append went on with the empty state, refused the retry as coming from
  // an unknown producer, and the client resent it under a new producer id: stored twice.
  const r = await runPubSub(pubsubOptions(9436));
  assert.deepEqual(r.violations, []);
});

Deno.test("pubsub: a subscriber failing a copy of a message it acknowledged before waits for nothing (seeds 600, 804, 900)", async () => {
  // After a broker crash on a full disk a subscription resumed from the start and delivered
  // messages the subscriber had acknowledged before the crash; it failed one of those copies and
  // waited for a redelivery the broker does not owe (the message was acknowledged).
  for (const seed of [600, 804, 900]) {
    const r = await runPubSub(pubsubOptions(seed));
    assert.deepEqual(r.violations, [], `seed ${seed}`);
  }
});

Deno.test("pubsub: redeliveries to a subscriber that stopped acknowledging never drain its window (seeds 1513, 3432, 6091, 6873, 7760)", async () => {
  // The client dropped copies it still held, or already had, without giving their credit back;
  // after a few ack timeouts the broker had no credit left for the subscription, which stalled.
  for (const seed of [1513, 3432, 6091, 6873, 7760]) {
    const r = await runPubSub(pubsubOptions(seed));
    assert.deepEqual(r.violations, [], `seed ${seed}`);
  }
});

Deno.test("pubsub: a seed gives the same trace twice, different seeds different traces", async () => {
  const hashes = new Set<string>();
  for (let seed = 2000; seed < 2010; seed++) {
    const a = await runPubSub(pubsubOptions(seed));
    const b = await runPubSub(pubsubOptions(seed));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic`);
    assert.deepEqual(a.stats, b.stats);
    hashes.add(a.traceHash);
  }
  assert.equal(hashes.size, 10);
});
