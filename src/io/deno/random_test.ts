import assert from "node:assert/strict";
import { SeededRandom } from "../prng.ts";
import { denoRandom } from "./random.ts";

Deno.test("denoRandom().secureBytes comes from the OS, not from the seeded stream", () => {
  // Two forks with one label run the same stream (forks depend on the label only): their draws
  // agree, so bytes made from those draws would too, and anyone who saw one fork's nonces would
  // know the other's. The OS's generator gives each its own.
  const r = denoRandom();
  const a = r.fork("auth");
  const b = r.fork("auth");
  assert.equal(a.u32(), b.u32());
  assert.notDeepEqual(a.secureBytes(32), b.secureBytes(32));
  assert.equal(a.u32(), b.u32(), "secureBytes drew from the seeded stream");
});

Deno.test("SeededRandom.secureBytes is deterministic, so a simulation replays", () => {
  const a = new SeededRandom(42, "sim");
  const b = new SeededRandom(42, "sim");
  assert.deepEqual(a.secureBytes(37), b.secureBytes(37));
  assert.notDeepEqual(a.secureBytes(16), a.secureBytes(16));
});
