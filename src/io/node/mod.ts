// The I/O environment of a client running on Node: the seam's network on node:net and node:tls.
// The clock and random source of src/io/deno/ use only web APIs Node 20 has (performance.now,
// Date.now, timers, crypto.getRandomValues), so Node shares them rather than keeping twins.

import { DenoClock } from "../deno/clock.ts";
import { denoRandom } from "../deno/random.ts";
import { DenoCrypto } from "../deno/crypto.ts";
import { IoFailure } from "../errors.ts";
import type { Disk, Env } from "../types.ts";
import { NodeNetwork } from "./net.ts";

export { CONNECT_TIMEOUT_MS_DEFAULT, NodeNetwork } from "./net.ts";

/**
 * An `Env` for a client on Node: real clock, OS-seeded randomness and TCP. It has no disk: the
 * client needs none, and the broker runs on Deno.
 */
export function nodeEnv(): Env {
  return {
    clock: new DenoClock(),
    random: denoRandom(),
    net: new NodeNetwork(),
    disk: NO_DISK,
    crypto: new DenoCrypto(),
  };
}

const noDisk = (): Promise<never> =>
  Promise.reject(new IoFailure("The Node environment has no disk: it runs the client only"));

const NO_DISK: Disk = {
  open: noDisk,
  rename: noDisk,
  remove: noDisk,
  list: noDisk,
  mkdir: noDisk,
  syncDir: noDisk,
  lock: noDisk,
};
