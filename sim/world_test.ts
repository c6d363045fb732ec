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
      const slept = env.clock.now() - t0;
      assert.ok(slept >= 100 && slept < 100 + 1e-3, `its own clock saw 100 ms, not ${slept}`);
      assert.ok(Math.abs(sim.world.now - 80) < 1e-3, "true time moved 80 ms");
    },
  });
  await sim.world.run();
  const wall = node.clock.wallMs();
  node.clock.wallOffsetMs -= 60_000;
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

Deno.test("ctl.fatal() ends the incarnation: code after it does not run and its Env never settles again", async () => {
  const sim = new Simulation(1, { restartAfterExitMs: 10 });
  const log: string[] = [];
  const node = sim.addNode({
    name: "n",
    main: async (env, ctl) => {
      if (ctl.incarnation > 0) {
        await env.clock.sleep(100);
        await env.net.listen({ host: "n", port: 80 });
        log.push(`incarnation ${ctl.incarnation} bound port 80`);
        return new Promise(() => {});
      }
      const file = await env.disk.open("f", { create: true });
      try {
        ctl.fatal("fsync failed");
      } catch (err) {
        log.push(`fatal threw ${(err as Error).name}`);
      }
      // A program that swallows the error: none of its I/O may settle any more.
      const attempts: Promise<string>[] = [
        env.clock.sleep(10).then(() => "sleep"),
        env.disk.open("zombie", { create: true }).then(() => "open"),
        file.writeAt(0, new Uint8Array([1])).then(() => "writeAt"),
        env.net.listen({ host: "n", port: 80 }).then(() => "listen"),
        env.net.connect({ host: "n", port: 80 }).then(() => "connect", () => "connect failed"),
      ];
      for (const a of attempts) void a.then((what) => log.push(`zombie ${what}`));
    },
  });
  await sim.world.run({ untilMs: 1000 });
  assert.deepEqual(log, ["fatal threw ProcessFatal", "incarnation 1 bound port 80"]);
  assert.deepEqual(sim.exits.map((e) => e.reason), ["fatal: fsync failed"]);
  assert.equal(node.incarnation, 1);
  assert.equal(node.disk.durableBytes("zombie"), null);
});

Deno.test("An event stamped for a node while it is down never fires in its next incarnation", async () => {
  const sim = new Simulation(1);
  const node = sim.addNode({ name: "n", main: () => new Promise(() => {}) });
  await sim.world.run({ untilMs: 1 });
  node.crash("process");
  let fired = false;
  sim.world.schedule(10, () => (fired = true), { owner: node });
  node.start();
  await sim.world.run({ untilMs: 100 });
  assert.equal(fired, false);
});

Deno.test("A resumed node's held-back timers fire in their original order", async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const sim = new Simulation(seed);
    const order: number[] = [];
    const node = sim.addNode({
      name: "n",
      main: async (env) => {
        await Promise.all([1, 2, 3, 4, 5].map(async (k) => {
          await env.clock.sleep(k * 10);
          order.push(k);
        }));
      },
    });
    sim.world.schedule(1, () => node.pause());
    sim.world.schedule(100, () => node.resume());
    await sim.world.run();
    assert.deepEqual(order, [1, 2, 3, 4, 5], `seed ${seed}`);
    assert.equal(node.pausesWithHeldEvents, 1);
  }
});

Deno.test("resume(token) ends only the pause that returned the token", async () => {
  const sim = new Simulation(1);
  const node = sim.addNode({ name: "n", main: () => new Promise(() => {}) });
  await sim.world.run({ untilMs: 1 });
  const first = node.pause();
  node.crash("process");
  node.start();
  const second = node.pause();
  assert.notEqual(first, second);
  node.resume(first);
  assert.equal(node.paused, true, "a stale token must not end a newer pause");
  node.resume(second);
  assert.equal(node.paused, false);
});

Deno.test("Aborting a paused node's sleep rejects it only once the node runs again", async () => {
  const sim = new Simulation(1);
  const abort = new AbortController();
  let outcome = "pending";
  const node = sim.addNode({
    name: "n",
    main: async (env) => {
      await env.clock.sleep(1000, abort.signal).then(
        () => (outcome = "woke"),
        (err) => (outcome = `${(err as Error).name} at ${sim.world.now}`),
      );
    },
  });
  await sim.world.run({ untilMs: 5 });
  node.pause();
  sim.world.schedule(5, () => abort.abort());
  await sim.world.run({ untilMs: 50 });
  assert.equal(outcome, "pending", "a paused process must not run");
  node.resume();
  await sim.world.run({ untilMs: 60 });
  assert.equal(outcome, "AbortError at 50");
});

Deno.test("sleep(ms) on a drifting clock never wakes before the clock advanced by ms", async () => {
  let early = 0;
  for (let seed = 1; seed <= 10; seed++) {
    const sim = new Simulation(seed);
    sim.addNode({
      name: "n",
      skew: { drift: (0.0137 * seed) % 0.05, wallOffsetMs: 0 },
      main: async (env) => {
        for (let i = 0; i < 200; i++) {
          const ms = env.random.float() * 50;
          const t0 = env.clock.now();
          await env.clock.sleep(ms);
          if (env.clock.now() < t0 + ms) early++;
        }
      },
    });
    await sim.world.run();
  }
  assert.equal(early, 0);
});

Deno.test("sleep(NaN) and a non-finite World.schedule delay count as 0 and keep time finite", async () => {
  const sim = new Simulation(1);
  const seen: number[] = [];
  sim.world.schedule(Infinity, () => seen.push(sim.world.now));
  sim.addNode({
    name: "n",
    main: async (env) => {
      await env.clock.sleep(Number.NaN);
      seen.push(sim.world.now);
      await env.clock.sleep(Infinity);
      await env.clock.sleep(10);
      seen.push(sim.world.now);
    },
  });
  await sim.world.run();
  assert.deepEqual(seen, [0, 0, 10]);
});

Deno.test("Each machine's monotonic clock has its own random origin, re-rolled by a power loss only", async () => {
  const sim = new Simulation(1);
  const a = sim.addNode({ name: "a", main: () => new Promise(() => {}) });
  const b = sim.addNode({ name: "b", main: () => new Promise(() => {}) });
  await sim.world.run({ untilMs: 10 });
  assert.notEqual(a.clock.now(), b.clock.now());
  assert.equal(a.clock.wallMs(), b.clock.wallMs(), "wall clocks agree without skew");
  const before = a.clock.now();
  a.crash("process");
  assert.equal(a.clock.now(), before, "a process crash is no reboot");
  const wall = a.clock.wallMs();
  a.crash("power");
  assert.notEqual(a.clock.now(), before, "a reboot restarts the monotonic clock");
  assert.equal(a.clock.wallMs(), wall, "wall time goes on across a reboot");
});

Deno.test("SimClock drift is read-only; setDrift changes the rate without a jump", async () => {
  const sim = new Simulation(1);
  const node = sim.addNode({ name: "n", main: () => new Promise(() => {}) });
  await sim.world.run({ untilMs: 10 });
  assert.throws(() => ((node.clock as unknown as { drift: number }).drift = 1), TypeError);
  const t0 = node.clock.now();
  node.clock.setDrift(0.5);
  assert.equal(node.clock.drift, 0.5);
  assert.ok(Math.abs(node.clock.now() - t0) < 1e-6, "no jump");
  await sim.world.run({ untilMs: 20 });
  assert.ok(Math.abs(node.clock.now() - t0 - 15) < 1e-6, "10 true ms read as 15");
});
