// The real I/O environment: the seam's interfaces on Deno's clock, TCP stack and filesystem.
// The composition root (cli/) calls denoEnv(); everything else receives the Env it builds.

import type { Env } from "../types.ts";
import { DenoClock } from "./clock.ts";
import { DenoCrypto } from "./crypto.ts";
import { DenoDisk } from "./disk.ts";
import { DenoNetwork } from "./net.ts";
import { denoRandom } from "./random.ts";

export { DenoClock } from "./clock.ts";
export { DenoCrypto } from "./crypto.ts";
export { DenoDisk, DenoFile } from "./disk.ts";
export { CONNECT_TIMEOUT_MS_DEFAULT, DenoConn, DenoListener, DenoNetwork } from "./net.ts";
export { denoRandom } from "./random.ts";

/** An `Env` on the real clock, OS-seeded randomness, TCP, the filesystem and WebCrypto. */
export function denoEnv(): Env {
  return {
    clock: new DenoClock(),
    random: denoRandom(),
    net: new DenoNetwork(),
    disk: new DenoDisk(),
    crypto: new DenoCrypto(),
  };
}
