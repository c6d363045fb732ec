// The broker with a real data directory (a temporary one): answers to failures.

import assert from "node:assert/strict";
import { denoEnv } from "../src/io/deno/mod.ts";
import { NoSpace } from "../src/io/errors.ts";
import { ErrorCode, GregorError } from "../src/protocol/errors.ts";
import { Broker } from "../src/broker/broker.ts";

async function withBroker(fn: (b: Broker, logged: string[]) => Promise<void>): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-broker-" });
  const logged: string[] = [];
  const b = await Broker.open(denoEnv(), { dataDir }, {
    onInternalError: (msg) => logged.push(msg),
  });
  try {
    await fn(b, logged);
  } finally {
    await b.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

Deno.test("Broker.answerFor() answers a bug INTERNAL and reports it with its stack, never as a client error", async () => {
  await withBroker(async (b, logged) => {
    // A RangeError is a programmer's error here (client input fails as a GregorError).
    const bug = new RangeError("admit() needs a producer id of 0 or more");
    const e = b.answerFor("PRODUCE", bug);
    assert.equal(e.code, ErrorCode.INTERNAL);
    assert.match(e.message, /PRODUCE.*admit\(\) needs a producer id/);
    assert.equal(logged.length, 1);
    assert.match(logged[0]!, /^INTERNAL error serving PRODUCE: RangeError: admit\(\)/);
    assert.match(logged[0]!, /broker_test\.ts/, "the report carries the stack");
    assert.equal(b.internalErrors, 1);
    await Promise.resolve();
  });
});

Deno.test("Broker.answerFor() passes protocol errors through unreported, and reports deliberate INTERNAL ones", async () => {
  await withBroker(async (b, logged) => {
    const client = new GregorError(ErrorCode.UNKNOWN_TOPIC, "Topic x does not exist");
    assert.equal(b.answerFor("FETCH", client), client);
    assert.deepEqual(logged, []);
    const deliberate = new GregorError(ErrorCode.INTERNAL, "A replica snapshot names offset -1");
    assert.equal(b.answerFor("SUBSCRIBE", deliberate), deliberate);
    assert.equal(logged.length, 1);
    assert.match(logged[0]!, /SUBSCRIBE: GregorError: A replica snapshot/);
    await Promise.resolve();
  });
});

Deno.test("Broker.answerFor() answers a full disk STORAGE_ERROR, a condition to retry, not a bug", async () => {
  await withBroker(async (b, logged) => {
    const e = b.answerFor(
      "CREATE_TOPIC",
      new NoSpace("Cannot write data/topics/t/topic.json.tmp: no space left on device"),
    );
    assert.equal(e.code, ErrorCode.STORAGE_ERROR);
    assert.ok(e.retriable);
    assert.match(e.message, /CREATE_TOPIC: Cannot write .*no space left on device/);
    assert.deepEqual(logged, []);
    await Promise.resolve();
  });
});
