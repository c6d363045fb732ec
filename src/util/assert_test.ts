import assert from "node:assert/strict";
import { assert as check, AssertionFailed, unreachable } from "./assert.ts";

Deno.test("assert() passes a true condition and throws AssertionFailed naming a false one", () => {
  check(1 + 1 === 2, "arithmetic");
  assert.throws(
    () => check(false, "Entry 7 conflicts with the leader but is committed"),
    (err) =>
      err instanceof AssertionFailed && err.name === "AssertionFailed" &&
      err.message ===
        "Internal invariant broken: Entry 7 conflicts with the leader but is committed",
  );
  // Falsy values other than false fail too: the condition is JavaScript's truthiness.
  for (const falsy of [0, "", null, undefined, NaN]) {
    assert.throws(() => check(falsy, "falsy"), AssertionFailed);
  }
});

Deno.test("assert() builds a lazy message only when the condition fails", () => {
  let built = 0;
  const message = () => `built ${++built}`;
  check(true, message);
  assert.equal(built, 0);
  assert.throws(() => check(false, message), /Internal invariant broken: built 1/);
  assert.equal(built, 1);
});

Deno.test("AssertionFailed is no client's or file's error: not a RangeError, carries a stack", () => {
  let caught: unknown;
  try {
    check(false, "segment 42 is gone");
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof AssertionFailed);
  assert.ok(!(caught instanceof RangeError) && !(caught instanceof TypeError));
  assert.match(caught.stack ?? "", /assert_test\.ts/, "the stack points at the failed assertion");
});

Deno.test("unreachable() throws AssertionFailed with what and the unexpected value", () => {
  type Kind = "a" | "b";
  const kind = (k: Kind): number => {
    switch (k) {
      case "a":
        return 1;
      case "b":
        return 2;
      default:
        return unreachable(k, "kind()");
    }
  };
  assert.equal(kind("b"), 2);
  // A value that slipped past the types (an unchecked cast upstream) fails loudly.
  assert.throws(() => kind("c" as Kind), /Internal invariant broken: kind\(\): unexpected "c"/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.throws(
    () => unreachable(cyclic as never, "cyclic"),
    /cyclic: unexpected \[object Object\]/,
  );
});
