import assert from "node:assert/strict";
import fc from "fast-check";
import { crc32c } from "./crc32c.ts";

function bitwise(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

Deno.test("crc32c() matches the standard check value for '123456789'", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
});

Deno.test("crc32c() of nothing is 0", () => {
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

Deno.test("crc32c() agrees with a bit-by-bit reference and can be continued", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(300), (bytes, cut) => {
      const at = Math.min(cut, bytes.length);
      assert.equal(crc32c(bytes), bitwise(bytes));
      assert.equal(crc32c(bytes.subarray(at), crc32c(bytes.subarray(0, at))), crc32c(bytes));
    }),
  );
});

Deno.test("crc32c() gives the same answer for a view at any alignment of its buffer", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 64, maxLength: 2000 }), fc.nat(7), (bytes, shift) => {
      const backing = new Uint8Array(bytes.length + shift);
      backing.set(bytes, shift);
      assert.equal(crc32c(backing.subarray(shift)), bitwise(bytes));
    }),
  );
});
