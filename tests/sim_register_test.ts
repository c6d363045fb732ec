// Seeded chaos in CI: the register example under swarm faults, its determinism, and proof that its
// checker catches a planted bug. The seed ranges are fixed so a failure names its seed.

import assert from "node:assert/strict";
import { RegisterClient } from "../sim/example/register_client.ts";
import { runReplica } from "../sim/example/register_replica.ts";
import { registerOptions, runRegister } from "../sim/example/register_scenario.ts";
import { runOnNode } from "../sim/harness.ts";
import { reproLine } from "../sim/runner.ts";
import { Simulation } from "../sim/simulation.ts";

const CI_SEEDS = 200;

Deno.test(`register example: ${CI_SEEDS} swarm seeds, no violation, every fault path taken`, async () => {
  const totals: Record<string, number> = {};
  const failures: string[] = [];
  for (let seed = 1; seed <= CI_SEEDS; seed++) {
    const r = await runRegister(registerOptions(seed));
    if (r.outcome === "fail") {
      failures.push(
        `${reproLine("register", seed, {})}\n  ${r.violations.slice(0, 3).join("\n  ")}`,
      );
    }
    for (const [k, v] of Object.entries(r.stats)) totals[k] = (totals[k] ?? 0) + v;
  }
  assert.deepEqual(failures, []);
  // "Sometimes" checks: a fault path that never fired means the run proved nothing about it.
  for (
    const k of [
      "putsOk",
      "putsUnknown",
      "getsOk",
      "verifiedKeys",
      "partitions",
      "oneWays",
      "heals",
      "powerCrashes",
      "processCrashes",
      "pauses",
      "pausesHeldEvents",
      "resets",
      "wallJumps",
      "diskFulls",
      "crashesWithPending",
      "writesKept",
      "writesDropped",
      "writesTorn",
      "writesCorrupted",
      "syncFailures",
      "readFlips",
      "readErrors",
      "noSpace",
      "netHeldSegments",
      "netRstSent",
      "netResetsLosingBytes",
      "netConnectTimeouts",
      "fatalExits",
    ]
  ) {
    assert.ok((totals[k] ?? 0) > 0, `fault path "${k}" never fired in ${CI_SEEDS} seeds`);
  }
});

Deno.test("register example: a seed gives the same trace twice, different seeds different traces", async () => {
  const hashes = new Set<string>();
  for (let seed = 1000; seed < 1020; seed++) {
    const a = await runRegister(registerOptions(seed));
    const b = await runRegister(registerOptions(seed));
    assert.equal(a.traceHash, b.traceHash, `seed ${seed} is not deterministic`);
    assert.equal(a.events, b.events);
    assert.deepEqual(a.stats, b.stats);
    hashes.add(a.traceHash);
  }
  assert.equal(hashes.size, 20, "20 seeds should give 20 different traces");
});

Deno.test("register example: the checker catches the planted ack-before-sync bug", async () => {
  const caught: number[] = [];
  for (let seed = 1; seed <= 40 && caught.length < 3; seed++) {
    const r = await runRegister(registerOptions(seed, { bug: "ack-before-sync" }));
    if (r.outcome === "fail") {
      assert.ok(r.violations.some((v) => /^(lost write|stale read)/.test(v)), r.violations[0]);
      caught.push(seed);
    }
  }
  assert.ok(caught.length >= 3, `the planted bug was caught on seeds [${caught}] only`);
});

Deno.test("register example: with faults off every write is acknowledged and the run is fast", async () => {
  const r = await runRegister(registerOptions(7, { faults: "calm" }));
  assert.equal(r.outcome, "pass", r.violations.join("\n"));
  assert.ok(r.stats.putsOk! > 100);
  assert.equal(r.stats.putsUnknown, 0);
  assert.equal(r.stats.fatalExits, 0);
});

Deno.test("register client: a replica that lost power for long is used again once it is back", async () => {
  const sim = new Simulation(5, { restartAfterExitMs: 50 });
  const names = ["replica-0", "replica-1", "replica-2"];
  for (const name of names) {
    sim.addNode({
      name,
      main: (env, ctl) => runReplica(env, ctl, { host: "0.0.0.0", port: 7000, dataDir: "data" }),
    });
  }
  const acked = await runOnNode(sim, "client", async (env) => {
    const client = new RegisterClient(env, {
      replicas: names.map((host) => ({ host, port: 7000 })),
      opTimeoutMs: 500,
    });
    await env.clock.sleep(50);
    // A power loss sends nothing: the client hears nothing from replica-0 for 10 s.
    sim.crash(sim.node("replica-0"), "power", 10_000);
    let version = 0;
    const until = env.clock.now() + 12_000;
    while (env.clock.now() < until) {
      await client.put({ key: "k", version: ++version, value: `v${version}` });
      await env.clock.sleep(5);
    }
    // With replica-1 gone for good, a majority needs replica-0 again.
    sim.crash(sim.node("replica-1"), "power");
    let ok = 0;
    for (let i = 0; i < 10; i++) {
      if (await client.put({ key: "k", version: ++version, value: `v${version}` }) === "ok") ok++;
    }
    return ok;
  });
  assert.ok(acked > 0, "no put was acknowledged by replica-0 and replica-2");
});
