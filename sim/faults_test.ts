import assert from "node:assert/strict";
import { calmPlan, Nemesis } from "./faults.ts";
import { Simulation } from "./simulation.ts";
import type { ScheduleOptions, Timer } from "./world.ts";

/** One pause or disk-full spell the nemesis started, and when the timer it set will end it. */
interface Spell {
  endAt: number;
}

Deno.test("Nemesis: a pause's resume timer and a disk-full spell's timer end only what they started", async () => {
  const violations: string[] = [];
  let staleTimers = 0;
  for (let seed = 1; seed <= 30; seed++) {
    const sim = new Simulation(seed);
    const node = sim.addNode({ name: "r", main: () => new Promise(() => {}) });
    const plan = calmPlan();
    Object.assign(plan.nemesis, { pause: 2, processCrash: 1, diskFull: 2 });
    Object.assign(plan, { nemesisIntervalMs: 20, downMsMax: 100, pauseMsMax: 100 });
    plan.downNodesMax = 2; // a paused node may still be crashed, restarted and paused again

    // Watch the nemesis: each pause or spell it starts, and the timer it sets right after.
    const latest: { pause: Spell | null; full: Spell | null } = { pause: null, full: null };
    let expecting: "pause" | "full" | null = null;
    const schedule = sim.world.schedule.bind(sim.world);
    sim.world.schedule = (delayMs: number, fn: () => void, opts?: ScheduleOptions): Timer => {
      const kind = expecting;
      expecting = null;
      if (kind === null) return schedule(delayMs, fn, opts);
      const spell: Spell = { endAt: sim.world.now + delayMs };
      latest[kind] = spell;
      return schedule(delayMs, () => {
        if (latest[kind] !== spell && latest[kind]!.endAt > sim.world.now) staleTimers++;
        fn();
      }, opts);
    };
    const pause = node.pause.bind(node);
    node.pause = () => {
      const token = pause();
      expecting = "pause";
      return token;
    };
    const resume = node.resume.bind(node);
    node.resume = (token?: number) => {
      const wasPaused = node.paused;
      resume(token);
      const spell = latest.pause;
      if (wasPaused && !node.paused && spell !== null && spell.endAt > sim.world.now) {
        violations.push(`seed ${seed}: a pause ended at ${sim.world.now}, due at ${spell.endAt}`);
      }
    };
    const faults = node.disk.faults;
    let full = false;
    Object.defineProperty(faults, "full", {
      get: () => full,
      set: (v: boolean) => {
        const spell = latest.full;
        if (full && !v && spell !== null && spell.endAt > sim.world.now) {
          violations.push(
            `seed ${seed}: a disk-full spell ended at ${sim.world.now}, due at ${spell.endAt}`,
          );
        }
        full = v;
        if (v) expecting = "full";
      },
    });

    const nemesis = new Nemesis(sim, plan, [node]);
    nemesis.start();
    await sim.world.run({ untilMs: 3000 });
    nemesis.stop();
  }
  assert.deepEqual(violations, []);
  assert.ok(
    staleTimers > 0,
    "no old timer fired during a newer pause or spell: the test proved nothing",
  );
});
