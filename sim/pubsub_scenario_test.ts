import assert from "node:assert/strict";
import { checkDeliveries } from "./pubsub_scenario.ts";

const published = new Map<string, number | null>([["a", 0], ["b", 1], ["c", 2], ["d", null]]);

Deno.test("checkDeliveries accepts in-order deliveries with redeliveries of earlier offsets", () => {
  const got = [
    { offset: 0, value: "a" },
    { offset: 1, value: "b" },
    { offset: 0, value: "a" },
    { offset: 1, value: "b" },
    { offset: 2, value: "c" },
    { offset: 3, value: "d" },
  ];
  assert.deepEqual(checkDeliveries(published, [got]), []);
});

Deno.test("checkDeliveries reports a gap, an invented message, a wrong offset and a changed value", () => {
  assert.match(
    checkDeliveries(published, [[{ offset: 0, value: "a" }, { offset: 2, value: "c" }]])[0]!,
    /jumped from offset 0 to 2/,
  );
  assert.match(checkDeliveries(published, [[{ offset: 0, value: "zzz" }]])[0]!, /nobody published/);
  assert.match(
    checkDeliveries(published, [[{ offset: 0, value: "b" }]])[0]!,
    /got b at offset 0, acknowledged at 1/,
  );
  const twoViews = checkDeliveries(published, [
    [{ offset: 0, value: "a" }, { offset: 1, value: "b" }, { offset: 2, value: "c" }, {
      offset: 3,
      value: "d",
    }],
    [{ offset: 0, value: "a" }, { offset: 1, value: "b" }, { offset: 2, value: "c" }, {
      offset: 3,
      value: "c",
    }],
  ]);
  assert.ok(twoViews.some((v) => /offset 3 carried both d and c/.test(v)), twoViews.join("\n"));
});
