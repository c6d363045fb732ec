// Runs a piece of async code as a simulated process and hands back its result: the bridge that
// lets ordinary tests (and the I/O contract suite) drive code inside a simulated world.

import type { Env } from "../src/io/types.ts";
import type { SimNode } from "./node.ts";
import type { Simulation } from "./simulation.ts";

/** Options for `runOnNode`. */
export interface RunOnNodeOptions {
  /** Give up after this much virtual time (ms). Default 10 minutes. */
  untilMs?: number;
}

/**
 * Adds a node named `name` that runs `body`, runs the world until `body` settles, and returns its
 * result. Throws if the body threw, or if the world ran out of events (a deadlock) or time first.
 */
export async function runOnNode<T>(
  sim: Simulation,
  name: string,
  body: (env: Env, node: SimNode) => Promise<T>,
  opts: RunOnNodeOptions = {},
): Promise<T> {
  const box: { settled: { ok: true; value: T } | { ok: false; error: unknown } | null } = {
    settled: null,
  };
  const node: SimNode = sim.addNode({
    name,
    main: (env) =>
      body(env, node).then(
        (value) => void (box.settled = { ok: true, value }),
        (error) => void (box.settled = { ok: false, error }),
      ),
  });
  const untilMs = sim.world.now + (opts.untilMs ?? 600_000);
  const stop = await sim.world.run({ untilMs, stop: () => box.settled !== null });
  const result = box.settled;
  if (result === null) {
    throw new Error(
      stop === "idle"
        ? `Deadlock: ${name} still waits but no event is left (seed ${sim.seed})`
        : `Timeout: ${name} did not finish within ${opts.untilMs ?? 600_000} virtual ms`,
    );
  }
  if (!result.ok) throw result.error;
  return result.value;
}
