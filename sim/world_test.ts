import assert from "node:assert/strict";
import { SeededRandom } from "../src/io/prng.ts";
import { runOnNode } from "./harness.ts";
import { Simulation } from "./simulation.ts";
import { World } from "./world.ts";

Deno.test("World fires events in time order and breaks ties by seed, the same way every run", async () => {
  const order = async (seed: number) => {
    const world = new World(new SeededRandom(seed));
    const fired: string[] = [];
    for (
      const [t, name] of [[5, "c"], [1, "a"], [3, "b"], [3, "b2"], [3, "b3"], [9, "d"]] as const
    ) {
      world.schedule(t, () => fired.push(name));
    }
    await world.run();
    return fired.join(",");
  };
  const first = await order(1);
  assert.equal(first, await order(1));
  assert.match(first, /^a,(b|b2|b3),(b|b2|b3),(b|b2|b3),c,d$/);
  const ties = new Set<string>();
  for (let seed = 1; seed <= 20; seed++) ties.add(await order(seed));
  assert.ok(ties.size > 1, "different seeds should order same-time events differently");
});

Deno.test("World drains every microtask of an event before firing the next one", async () => {
  const world = new World(new SeededRandom(1));
  const log: string[] = [];
  world.schedule(1, () => {
    void (async () => {
      for (let i = 0; i < 50; i++) await Promise.resolve();
      log.push(`deep chain done at ${world.now}`);
    })();
  });
  world.schedule(1, () => log.push(`second event at ${world.now}`));
  world.schedule(2, () => log.push(`third event at ${world.now}`));
  await world.run();
  assert.equal(log.at(-1), "third event at 2");
  assert.ok(log.indexOf("deep chain done at 1") < 2);
});

Deno.test("World.run stops at untilMs, eventsMax and stop(), and reports idle when empty", async () => {
  const world = new World(new SeededRandom(1));
  let n = 0;
  for (let i = 1; i <= 10; i++) world.schedule(i * 10, () => n++);
  assert.equal(await world.run({ untilMs: 35 }), "time");
  assert.equal(n, 3);
  assert.equal(world.now, 35);
  assert.equal(await world.run({ eventsMax: 2 }), "events");
  assert.equal(n, 5);
  assert.equal(await world.run({ stop: () => n >= 7 }), "stopped");
  const t = world.schedule(1, () => n++);
  t.cancel();
  assert.equal(await world.run(), "idle");
  assert.equal(n, 10);
});

Deno.test("A crashed node's pending timers never fire, and a restart runs its program afresh", async () => {
  const sim = new Simulation(1);
  const log: string[] = [];
  const node = sim.addNode({
    name: "n",
    main: async (env, ctl) => {
      log.push(`start ${ctl.incarnation}`);
      await env.clock.sleep(100);
      log.push(`woke ${ctl.incarnation}`);
    },
  });
  await sim.world.run({ untilMs: 50 });
  node.crash("power");
  await sim.world.run({ untilMs: 200 });
  node.start();
  await sim.world.run();
  assert.deepEqual(log, ["start 0", "start 1", "woke 1"]);
});

Deno.test("A paused node's events wait for it to resume", async () => {
  const sim = new Simulation(1);
  let wokeAt = -1;
  const node = sim.addNode({
    name: "n",
    main: async (env) => {
      await env.clock.sleep(10);
      wokeAt = sim.world.now;
    },
  });
  await sim.world.run({ untilMs: 5 });
  node.pause();
  await sim.world.run({ untilMs: 500 });
  assert.equal(wokeAt, -1);
  node.resume();
  await sim.world.run();
  assert.equal(wokeAt, 500);
});

Deno.test("A skewed clock runs fast or slow and its wall clock can jump", async () => {
  const sim = new Simulation(1);
  const node = sim.addNode({
    name: "n",
    skew: { drift: 0.25, wallOffsetMs: 0 },
    main: async (env) => {
      const t0 = env.clock.now();
      await env.clock.sleep(100);
      assert.ok(Math.abs(env.clock.now() - t0 - 100) < 1e-9, "its own clock saw 100 ms");
      assert.equal(sim.world.now, 80, "true time moved 80 ms");
    },
  });
  await sim.world.run();
  const wall = node.clock.wallMs();
  node.clock.skew.wallOffsetMs -= 60_000;
  assert.equal(node.clock.wallMs(), wall - 60_000);
  assert.equal(sim.exits[0]?.reason, "exited");
});

Deno.test("runOnNode reports a deadlock when the code waits and no event is left", async () => {
  const sim = new Simulation(1);
  await assert.rejects(
    runOnNode(sim, "n", async (env) => {
      const l = await env.net.listen({ host: "n", port: 1 });
      await l.accept(); // nobody will ever connect
    }),
    /Deadlock: n still waits but no event is left \(seed 1\)/,
  );
});

Deno.test("A node whose program throws is recorded as exited and restarted when configured", async () => {
  const sim = new Simulation(1, { restartAfterExitMs: 10 });
  let starts = 0;
  sim.addNode({
    name: "n",
    main: (_env, ctl) => {
      starts++;
      if (ctl.incarnation < 2) return Promise.reject(new Error("boom"));
      return Promise.resolve();
    },
  });
  await sim.world.run({ untilMs: 1000 });
  assert.equal(starts, 3);
  assert.deepEqual(sim.exits.map((e) => e.reason), [
    "died: Error: boom",
    "died: Error: boom",
    "exited",
  ]);
});
