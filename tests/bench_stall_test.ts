// The benchmark's stall detection (bench/throughput.ts): a run whose confirmations stop while
// messages are outstanding, or that ends with messages unconfirmed, is marked stalled, so the
// suite fails it instead of hiding it in a median.

import assert from "node:assert/strict";
import { ProgressWatch, runOf, STALL_MS_MAX, Window } from "../bench/throughput.ts";

const SCENARIO = { name: "stall check", mode: "produce" as const, payloadBytes: 100 };

function wait(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

Deno.test("bench: a run whose confirmations stop while messages are outstanding is stalled", async () => {
  const acks = new Window(100);
  const watch = new ProgressWatch([acks]);
  acks.sent(10);
  acks.confirm(5);
  await wait(STALL_MS_MAX + 200);
  acks.confirm(5);
  const run = runOf(SCENARIO, {
    messages: 10,
    confirmed: acks.confirmed,
    seconds: 1,
    longestGapMs: watch.stop(),
  });
  assert.ok(run.longestGapMs > STALL_MS_MAX, `gap ${run.longestGapMs} ms`);
  assert.match(run.stalled ?? "", /no confirmation for \d+ ms/);
});

Deno.test("bench: steady confirmations, and idle time with nothing outstanding, are no stall", async () => {
  const acks = new Window(100);
  const watch = new ProgressWatch([acks]);
  for (let i = 0; i < 10; i++) {
    acks.sent(1);
    await wait(STALL_MS_MAX / 10);
    acks.confirm(1);
  }
  await wait(STALL_MS_MAX + 200); // nothing outstanding: not waiting for anything
  const run = runOf(SCENARIO, {
    messages: 10,
    confirmed: acks.confirmed,
    seconds: 1,
    longestGapMs: watch.stop(),
  });
  assert.ok(run.longestGapMs < STALL_MS_MAX, `gap ${run.longestGapMs} ms`);
  assert.equal(run.stalled, null);
});

Deno.test("bench: a run that ends with messages unconfirmed is stalled", () => {
  const run = runOf(SCENARIO, { messages: 10_240, confirmed: 10_000, seconds: 2, longestGapMs: 0 });
  assert.equal(run.stalled, "240 of 10240 never confirmed");
});
