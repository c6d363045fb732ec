// SCRAM-SHA-256 inside the simulator (issue [J]: "the simulator speaks it"): a broker started with
// `auth: "scram"` on a simulated node and clients logging in through the simulated network. The
// hashes come from the Env, so the exchange settles in virtual time and a seed replays; while SCRAM
// called WebCrypto directly its promises settled on a thread pool, outside the simulation.

import assert from "node:assert/strict";
import { Simulation } from "../sim/simulation.ts";
import { runOnNode } from "../sim/harness.ts";
import { startNode } from "../src/node.ts";
import { SecurityStore } from "../src/auth/store.ts";
import { deriveCredential, SALT_BYTES } from "../src/auth/scram.ts";
import { connectWith } from "../src/client/client.ts";
import { GregorError } from "../src/protocol/errors.ts";

const PASSWORD = "correct horse battery staple";

/** Logs in right and wrong on a fresh simulated broker; returns what happened and the trace. */
async function run(seed: number): Promise<{ outcome: string[]; trace: string }> {
  const sim = new Simulation(seed, {});
  sim.addNode({
    name: "broker",
    main: async (env) => {
      await env.disk.mkdir("data");
      const store = await SecurityStore.open(env.disk, "data");
      const salt = env.random.secureBytes(SALT_BYTES);
      await store.putUser("alice", await deriveCredential(env.crypto, PASSWORD, salt));
      const node = await startNode(env, {
        host: "0.0.0.0",
        port: 7070,
        broker: { dataDir: "data", auth: "scram", superUsers: ["alice"] },
      });
      await node.done;
    },
  });
  const outcome = await runOnNode(sim, "client", async (env) => {
    const login = (password: string) =>
      connectWith(env, {
        host: "broker",
        port: 7070,
        username: "alice",
        password,
        connectTimeoutMs: 10_000,
      });
    const seen: string[] = [];
    const alice = await login(PASSWORD);
    const offset = await alice.producer().send("orders", { value: "signed in" });
    seen.push(`alice produced at ${offset}`);
    await alice.close();
    try {
      await login("wrong");
      seen.push("a wrong password got in");
    } catch (err) {
      seen.push(err instanceof GregorError ? err.codeName : String(err));
    }
    return seen;
  });
  return { outcome, trace: sim.world.trace.hex() };
}

Deno.test("sim: SCRAM logins run in virtual time; the right password gets in, a wrong one is refused, a seed replays", async () => {
  const a = await run(11);
  assert.deepEqual(a.outcome, [
    "alice produced at 0",
    "AUTHENTICATION_FAILED",
  ]);
  const b = await run(11);
  assert.equal(b.trace, a.trace, "the same seed gives the same trace");
  assert.notEqual((await run(12)).trace, a.trace, "another seed gives another trace");
});
