import assert from "node:assert/strict";
import { NoSpace, TooManyOpenFiles } from "../io/errors.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { assert as assertInvariant } from "../util/assert.ts";
import { runOnNode } from "../../sim/harness.ts";
import { Simulation } from "../../sim/simulation.ts";
import { Broker } from "./broker.ts";

/** Runs `fn` with a broker on a simulated node, and the INTERNAL reports it made. */
async function withBroker(fn: (b: Broker, logged: string[]) => Promise<void>): Promise<void> {
  await runOnNode(new Simulation(1), "broker", async (env) => {
    const logged: string[] = [];
    const b = await Broker.open(env, { dataDir: "data" }, {
      onInternalError: (msg) => logged.push(msg),
    });
    try {
      await fn(b, logged);
    } finally {
      await b.close();
    }
  });
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

Deno.test("Broker.answerFor() answers running out of file handles STORAGE_ERROR, to retry", async () => {
  await withBroker(async (b, logged) => {
    const e = b.answerFor("FETCH", new TooManyOpenFiles("Cannot open 0.log: too many open files"));
    assert.equal(e.code, ErrorCode.STORAGE_ERROR);
    assert.ok(e.retriable);
    assert.deepEqual(logged, []);
    await Promise.resolve();
  });
});

Deno.test("Broker.answerFor() answers a broken invariant INTERNAL, reported with its stack, and keeps serving", async () => {
  await withBroker(async (b, logged) => {
    let broken: unknown;
    try {
      assertInvariant(false, "Cannot cut data/topics/t/0: segment 42 is gone");
    } catch (err) {
      broken = err;
    }
    const e = b.answerFor("PRODUCE", broken);
    assert.equal(e.code, ErrorCode.INTERNAL);
    assert.equal(logged.length, 1);
    assert.match(
      logged[0]!,
      /^INTERNAL error serving PRODUCE: AssertionFailed: Internal invariant/,
    );
    assert.match(logged[0]!, /broker_test\.ts/, "the report carries the stack");
    // The broker goes on serving: the next request is answered as usual.
    await b.createTopic({ name: "after", partitions: 1, configs: {} });
    assert.equal(b.internalErrors, 1);
  });
});
