import assert from "node:assert/strict";
import { SeededRandom } from "../io/prng.ts";
import { murmur2, partitionForKey, StickyPartitions } from "./partitioner.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

Deno.test("murmur2() matches Kafka's Utils.murmur2 test vectors", () => {
  // Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
  const kafka: [string, number][] = [
    ["21", -973932308],
    ["foobar", -790332482],
    ["a-little-bit-long-string", -985981536],
    ["a-little-bit-longer-string", -1486304829],
    ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
    ["abc", 479470107],
  ];
  // Akka's Murmur2Spec (cluster-sharding-typed), which checks its port against Kafka's values;
  // these cover every length modulo 4.
  const akka: [string, number][] = [
    ["1", -1993445489],
    ["12", 126087238],
    ["123", -267702483],
    ["1234", -1614185708],
    ["12345", -1188365604],
  ];
  for (const [key, want] of [...kafka, ...akka]) assert.equal(murmur2(utf8(key)), want, key);
});

Deno.test("partitionForKey() is toPositive(murmur2) modulo the partition count", () => {
  // toPositive(-973932308) = -973932308 & 0x7fffffff = 1173551340.
  assert.equal(partitionForKey(utf8("21"), 1), 0);
  assert.equal(partitionForKey(utf8("21"), 7), 1173551340 % 7);
  assert.equal(partitionForKey(utf8("abc"), 10), 479470107 % 10);
  assert.equal(
    partitionForKey(new Uint8Array(0), 3),
    (murmur2(new Uint8Array(0)) & 0x7fffffff) % 3,
  );
  assert.throws(() => partitionForKey(utf8("k"), 0), RangeError);
});

Deno.test("StickyPartitions keeps one partition until a batch for it is sent, then moves to another", () => {
  const sticky = new StickyPartitions(new SeededRandom(7));
  const first = sticky.partition("t", 4);
  for (let i = 0; i < 10; i++) assert.equal(sticky.partition("t", 4), first);
  sticky.batchSent("t", (first + 1) % 4);
  assert.equal(sticky.partition("t", 4), first, "a batch for another partition changes nothing");
  const seen = new Set<number>([first]);
  let prev = first;
  for (let i = 0; i < 200; i++) {
    sticky.batchSent("t", prev);
    const next = sticky.partition("t", 4);
    assert.notEqual(next, prev);
    assert.ok(next >= 0 && next < 4);
    seen.add(next);
    prev = next;
  }
  assert.equal(seen.size, 4, "every partition gets its turn");
  assert.equal(new StickyPartitions(new SeededRandom(1)).partition("one", 1), 0);
});
