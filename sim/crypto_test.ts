import assert from "node:assert/strict";
import { SeededRandom } from "../src/io/prng.ts";
import { DenoCrypto } from "../src/io/deno/crypto.ts";
import { hmacSha256, sha256, SimCrypto } from "./crypto.ts";

Deno.test("the simulator's SHA-256 and HMAC-SHA-256 agree with WebCrypto on every length around the block edges", async () => {
  const r = new SeededRandom(5, "crypto");
  const real = new DenoCrypto();
  for (let n = 0; n < 200; n++) {
    const data = r.secureBytes(n);
    const key = r.secureBytes(r.int(0, 160));
    assert.deepEqual(sha256(data), await real.sha256(data), `sha256 of ${n} bytes`);
    assert.deepEqual(
      hmacSha256(key, data),
      await real.hmacSha256(key, data),
      `hmac of ${n} bytes, key ${key.length}`,
    );
  }
});

Deno.test("the simulator's PBKDF2-HMAC-SHA-256 agrees with WebCrypto and a published vector", async () => {
  const sim = new SimCrypto();
  const real = new DenoCrypto();
  const enc = new TextEncoder();
  const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  // The published PBKDF2-HMAC-SHA-256 vector: P "password", S "salt", c 1, 32 bytes.
  assert.equal(
    hex(await sim.pbkdf2Sha256(enc.encode("password"), enc.encode("salt"), 1, 32)),
    "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b",
  );
  const r = new SeededRandom(6, "pbkdf2");
  for (let n = 0; n < 12; n++) {
    const password = r.secureBytes(r.int(0, 100));
    const salt = r.secureBytes(r.int(0, 40));
    const iterations = r.int(1, 300);
    // Lengths over one block (32 bytes) and not a whole number of blocks.
    const bytes = r.int(1, 100);
    assert.deepEqual(
      await sim.pbkdf2Sha256(password, salt, iterations, bytes),
      await real.pbkdf2Sha256(password, salt, iterations, bytes),
      `${bytes} bytes, ${iterations} iterations`,
    );
  }
});
