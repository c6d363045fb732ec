import assert from "node:assert/strict";
import { runOnNode } from "../../../sim/harness.ts";
import { Simulation } from "../../../sim/simulation.ts";
import { SeededRandom } from "../../io/prng.ts";
import { ErrorCode, GregorError } from "../../protocol/errors.ts";
import { encodeMessage } from "./codec.ts";
import { MemoryStorage } from "./memory_storage.ts";
import { RaftGroup } from "./shell.ts";

/** How long the lone node gets to elect itself, simulated ms. */
const ELECTION_WAIT_MS = 2_000;

Deno.test("RaftGroup stops on a broken Raft invariant and reports it as one, with its stack", async () => {
  await runOnNode(new Simulation(7), "a", async (env) => {
    const storage = new MemoryStorage(["a"]);
    const fatal: string[] = [];
    const group = new RaftGroup({
      group: "g",
      nodeId: "a",
      store: {
        state: () => storage.state(),
        save: (ready) => Promise.resolve(storage.save(ready)),
      },
      machine: { apply: (e) => e.index, restore: () => {} },
      send: () => {},
      clock: env.clock,
      random: new SeededRandom(1),
      onFatal: (reason) => fatal.push(reason),
    });
    try {
      for (let t = 0; t < ELECTION_WAIT_MS && !group.isLeader; t += 20) await env.clock.sleep(20);
      assert.ok(group.isLeader, "a lone voter elects itself");
      const pending = group.propose(new Uint8Array([1]));
      // A second leader of this very term: the one-leader-per-term invariant is broken.
      group.receive(encodeMessage({
        type: "AppendEntries",
        from: "b",
        to: "a",
        term: group.term,
        prevIndex: 0,
        prevTerm: 0,
        entries: [],
        commit: 0,
      }));
      assert.equal(fatal.length, 1);
      assert.match(fatal[0]!, /^Raft invariant broken in g: AssertionFailed: Internal invariant/);
      assert.match(fatal[0]!, /leads term \d+ but b claims it too/);
      assert.match(fatal[0]!, /node\.ts/, "the report carries the stack");
      assert.equal(group.stopped, true, "the group does not go on with state it cannot trust");
      await assert.rejects(
        pending.then(() => 0),
        (err) => err instanceof GregorError && err.code === ErrorCode.STORAGE_ERROR,
      );
    } finally {
      await group.stop();
    }
  });
});

Deno.test("RaftGroup stopped while restoring its snapshot ends quietly when the restore is then cut short", async () => {
  await runOnNode(new Simulation(8), "a", async (env) => {
    const fatal: string[] = [];
    const fetching = new AbortController();
    const snapshot = { index: 5, term: 1, voters: ["a"], learners: [], data: new Uint8Array() };
    const group = new RaftGroup({
      group: "g",
      nodeId: "a",
      store: {
        state: () => ({ hardState: { term: 1, vote: null, commit: 5 }, snapshot, entries: [] }),
        save: () => Promise.resolve(),
      },
      machine: {
        apply: (e) => e.index,
        // A replica restoring fetches from its peers until they answer or it is stopped.
        restore: () =>
          new Promise<void>((_, reject) =>
            fetching.signal.addEventListener(
              "abort",
              () => reject(new GregorError(ErrorCode.SHUTTING_DOWN, "Replica g stopped")),
            )
          ),
      },
      send: () => {},
      clock: env.clock,
      random: new SeededRandom(2),
      onFatal: (reason) => fatal.push(reason),
    });
    await env.clock.sleep(100); // the restore is under way, waiting
    const stopped = group.stop();
    fetching.abort();
    await stopped;
    assert.deepEqual(fatal, [], "a stop is no failure");
    assert.equal(group.stopped, true);
  });
});
