import assert from "node:assert/strict";
import { SeededRandom } from "../src/io/prng.ts";
import { DenoCrypto } from "../src/io/deno/crypto.ts";
import { hmacSha256, sha256 } from "./crypto.ts";

Deno.test("the simulator's SHA-256 and HMAC-SHA-256 agree with WebCrypto on every length around the block edges", async () => {
  const r = new SeededRandom(5, "crypto");
  const real = new DenoCrypto();
  for (let n = 0; n < 200; n++) {
    const data = r.secureBytes(n);
    const key = r.secureBytes(r.int(0, 160));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
    assert.deepEqual(sha256(data), digest, `sha256 of ${n} bytes`);
    assert.deepEqual(
      hmacSha256(key, data),
      await real.hmacSha256(key, data),
      `hmac of ${n} bytes, key ${key.length}`,
    );
  }
});
