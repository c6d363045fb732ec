// Simulator scheduler speed: events fired per second, with and without promise work per event.
// `deno bench bench/scheduler_bench.ts`; the per-iteration time divided by EVENTS is the cost of
// one event, including the macrotask yield that drains microtasks after it.

import { SeededRandom } from "../src/io/prng.ts";
import { World } from "../sim/world.ts";

const EVENTS = 10_000;

Deno.bench(
  "World.run: 10k timer events, no promise work",
  { group: "scheduler", baseline: true },
  async () => {
    const world = new World(new SeededRandom(1, "scheduler"));
    for (let i = 0; i < EVENTS; i++) world.schedule(i % 97, () => {});
    await world.run();
  },
);

Deno.bench("World.run: 10k events that each resolve a promise chain of 3 awaits", {
  group: "scheduler",
}, async () => {
  const world = new World(new SeededRandom(1, "scheduler"));
  let left = EVENTS;
  const sleep = (ms: number) => new Promise<void>((r) => world.schedule(ms, r));
  async function worker(): Promise<void> {
    while (left-- > 0) {
      await sleep(1);
      await Promise.resolve();
      await Promise.resolve();
    }
  }
  for (let i = 0; i < 10; i++) void worker();
  await world.run();
});
