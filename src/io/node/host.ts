// Picks the I/O environment of the runtime the client finds itself on, so `connect()` works the
// same on Deno and on Node. It sits beside the Node environment because it is the one place
// outside src/io/deno/ that may look at which runtime is running.

import { denoEnv } from "../deno/mod.ts";
import type { Env } from "../types.ts";

/** Whether this is Node (or a runtime that presents itself as Node) rather than Deno. */
export function isNode(): boolean {
  const g = globalThis as { Deno?: unknown; process?: { versions?: { node?: unknown } } };
  return g.Deno === undefined && typeof g.process?.versions?.node === "string";
}

/**
 * The real `Env` of this runtime: Node's when running on Node, Deno's otherwise. Node's is loaded
 * only there, so a Deno process never loads node:net for it.
 */
export async function hostEnv(): Promise<Env> {
  if (!isNode()) return denoEnv();
  return (await import("./mod.ts")).nodeEnv();
}
