import assert from "node:assert/strict";
import fc from "fast-check";
import {
  entryProblem,
  isHost,
  isKey,
  isNodeId,
  parseCount,
  parsePort,
  utf8Bytes,
  VALUE_BYTES_MAX,
  VERSION_MAX,
} from "./limits.ts";

Deno.test("utf8Bytes() is the length TextEncoder produces, lone surrogates included (property)", () => {
  const encoder = new TextEncoder();
  fc.assert(
    fc.property(
      fc.oneof(fc.string({ unit: "binary" }), fc.string({ unit: "grapheme" }), fc.string()),
      (s) => assert.equal(utf8Bytes(s), encoder.encode(s).length),
    ),
    { numRuns: 500 },
  );
});

Deno.test("isNodeId() takes 1 to 64 of [A-Za-z0-9_-]", () => {
  for (const ok of ["a", "node-1", "A_b", "0123456789abcdef", "x".repeat(64)]) {
    assert.ok(isNodeId(ok), ok);
  }
  for (const bad of ["", "x".repeat(65), "a b", "a.b", "é", "a\n"]) assert.ok(!isNodeId(bad), bad);
});

Deno.test("isKey() takes a letter and up to 63 of [A-Za-z0-9_.:-]; never __proto__", () => {
  for (const ok of ["role", "load.1m", "zone:a", "x".repeat(64)]) assert.ok(isKey(ok), ok);
  for (const bad of ["", "1a", "_a", "__proto__", "a b", "x".repeat(65)]) {
    assert.ok(!isKey(bad), bad);
  }
});

Deno.test("isHost() takes names and IP literals, not URLs or spaces", () => {
  for (const ok of ["n1", "10.0.0.1", "::1", "fe80::1", "broker-0.gregor.svc"]) {
    assert.ok(isHost(ok), ok);
  }
  for (const bad of ["", "a b", "http://x", "[::1]", "x".repeat(254)]) assert.ok(!isHost(bad), bad);
});

Deno.test("parseCount() and parsePort() take canonical decimals in range only", () => {
  assert.equal(parseCount("0"), 0);
  assert.equal(parseCount(String(VERSION_MAX)), VERSION_MAX);
  for (const bad of ["", "01", "-1", "1e3", " 1", "1.0", String(VERSION_MAX + 2)]) {
    assert.equal(parseCount(bad), null, bad);
  }
  assert.equal(parsePort("65535"), 65535);
  for (const bad of ["0", "65536", "80a"]) assert.equal(parsePort(bad), null, bad);
});

Deno.test("entryProblem() checks the reserved keys' values and every value's size", () => {
  assert.equal(entryProblem("host", "n1"), null);
  assert.match(entryProblem("host", "a b") ?? "", /not a host/);
  assert.match(entryProblem("clusterPort", "0") ?? "", /not a port/);
  assert.match(entryProblem("clientPort", "x") ?? "", /not a port/);
  assert.match(entryProblem("heartbeat", "-1") ?? "", /not a count/);
  assert.match(entryProblem("left", "yes") ?? "", /left must be "1"/);
  assert.equal(entryProblem("left", "1"), null);
  assert.equal(entryProblem("role", "é".repeat(VALUE_BYTES_MAX / 2)), null);
  assert.match(entryProblem("role", "é".repeat(VALUE_BYTES_MAX / 2 + 1)) ?? "", /over 1024/);
  assert.match(entryProblem("role", "\uDC00") ?? "", /well-formed/);
  assert.match(entryProblem("9", "") ?? "", /key "9"/);
});
