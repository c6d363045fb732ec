import assert from "node:assert/strict";
import { runOnNode } from "../../../sim/harness.ts";
import { Simulation } from "../../../sim/simulation.ts";
import type { Clock } from "../../io/types.ts";
import { RaftTicker, type Ticked } from "./ticker.ts";

/** A group due at fixed times; records when it was ticked. */
class FakeGroup implements Ticked {
  dueMs: number;
  readonly ticks: number[] = [];
  constructor(private readonly clock: Clock, dueMs: number, private readonly everyMs = 100) {
    this.dueMs = dueMs;
  }
  tickDueMs(): number {
    return this.dueMs;
  }
  tickNow(): void {
    const now = this.clock.now();
    this.ticks.push(Math.round(now));
    this.dueMs = now + this.everyMs;
  }
}

Deno.test("RaftTicker ticks the groups due in one tick together, on the tick grid", async () => {
  await runOnNode(new Simulation(1), "a", async (env) => {
    const t0 = Math.ceil(env.clock.now() / 20) * 20;
    const ticker = new RaftTicker(env.clock, 20);
    // Due 3 ms and 17 ms into the same 20 ms tick, and one in the next tick.
    const a = new FakeGroup(env.clock, t0 + 23);
    const b = new FakeGroup(env.clock, t0 + 37);
    const c = new FakeGroup(env.clock, t0 + 45);
    for (const g of [a, b, c]) ticker.add(g);
    await env.clock.sleep(t0 + 70 - env.clock.now());
    assert.deepEqual(a.ticks.map((t) => t - t0), [40]);
    assert.deepEqual(b.ticks.map((t) => t - t0), [40]);
    assert.deepEqual(c.ticks.map((t) => t - t0), [60]);
    for (const g of [a, b, c]) ticker.remove(g);
  });
});

Deno.test("RaftTicker wakes sooner when a group's due time moves earlier, and stops with no group", async () => {
  await runOnNode(new Simulation(2), "a", async (env) => {
    const t0 = Math.ceil(env.clock.now() / 10) * 10;
    const ticker = new RaftTicker(env.clock, 10);
    const g = new FakeGroup(env.clock, t0 + 500);
    ticker.add(g);
    await env.clock.sleep(t0 + 30 - env.clock.now());
    assert.deepEqual(g.ticks, [], "not due yet");
    g.dueMs = t0 + 42; // an input brought a timeout closer
    ticker.poke(g.dueMs);
    await env.clock.sleep(t0 + 60 - env.clock.now());
    assert.deepEqual(g.ticks.map((t) => t - t0), [50]);
    ticker.remove(g);
    assert.equal(ticker.size, 0);
    const ticked = g.ticks.length;
    await env.clock.sleep(1_000);
    assert.equal(g.ticks.length, ticked, "a removed group is not ticked");
  });
});
