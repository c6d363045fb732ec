import assert from "node:assert/strict";
import fc from "fast-check";
import { MalformedError } from "../../protocol/errors.ts";
import type { GossipDelta, GossipDigestEntry } from "../../protocol/messages.ts";
import {
  decodeAck2,
  decodeSyn,
  decodeSynResponse,
  encodeAck2,
  encodeSyn,
  encodeSynResponse,
  NODES_PER_MESSAGE_MAX,
} from "./codec.ts";
import { ENTRIES_PER_NODE_MAX, INCARNATION_MAX, VALUE_BYTES_MAX, VERSION_MAX } from "./limits.ts";

const idArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const digestArb: fc.Arbitrary<GossipDigestEntry[]> = fc.uniqueArray(
  fc.record({
    id: idArb,
    incarnation: fc.integer({ min: 0, max: INCARNATION_MAX }),
    maxVersion: fc.integer({ min: 0, max: VERSION_MAX }),
  }, { noNullPrototype: true }),
  { selector: (d) => d.id, maxLength: 8 },
);
const entryArb = fc.record({
  key: fc.stringMatching(/^[a-z][a-z0-9.]{0,10}$/).filter((k) =>
    !["host", "clusterPort", "clientPort", "heartbeat", "left"].includes(k)
  ),
  value: fc.string({ unit: "grapheme", maxLength: 40 }),
  version: fc.integer({ min: 1, max: VERSION_MAX }),
}, { noNullPrototype: true });
const deltasArb: fc.Arbitrary<GossipDelta[]> = fc.uniqueArray(
  fc.record({
    id: idArb,
    incarnation: fc.integer({ min: 0, max: INCARNATION_MAX }),
    entries: fc.uniqueArray(entryArb, { selector: (e) => e.key, minLength: 1, maxLength: 6 }),
  }, { noNullPrototype: true }),
  { selector: (d) => d.id, maxLength: 6 },
);

function malformed(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof MalformedError, `expected MalformedError, got ${err}`);
    assert.match(err.message, pattern);
    return true;
  });
}

Deno.test("gossip codec: valid messages survive encode then decode (property)", () => {
  fc.assert(
    fc.property(idArb, digestArb, deltasArb, (fromId, digest, deltas) => {
      assert.deepEqual(decodeSyn(encodeSyn({ fromId, digest })), { fromId, digest });
      assert.deepEqual(decodeSynResponse(encodeSynResponse({ digest, deltas })), {
        digest,
        deltas,
      });
      assert.deepEqual(decodeAck2(encodeAck2({ fromId, deltas })), { fromId, deltas });
    }),
  );
});

Deno.test("gossip codec: random bytes decode only to validated messages or MalformedError (property)", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      for (const decodeIt of [decodeSyn, decodeSynResponse, decodeAck2]) {
        try {
          decodeIt(bytes);
        } catch (err) {
          if (!(err instanceof MalformedError)) throw err;
        }
      }
    }),
    { numRuns: 1000 },
  );
});

const OK_ENTRY = { key: "role", value: "broker", version: 1 };
const delta = (over: Partial<GossipDelta>): GossipDelta => ({
  id: "n1",
  incarnation: 1,
  entries: [OK_ENTRY],
  ...over,
});
const ack2 = (deltas: GossipDelta[], fromId = "n0") => encodeAck2({ fromId, deltas });

Deno.test("gossip codec rejects bad ids, repeated nodes and out-of-range numbers", () => {
  malformed(() => decodeSyn(encodeSyn({ fromId: "", digest: [] })), /fromId "" is not/);
  malformed(() => decodeAck2(ack2([], "bad id")), /fromId "bad id"/);
  const d = { id: "n1", incarnation: 1, maxVersion: 1 };
  malformed(() => decodeSyn(encodeSyn({ fromId: "n0", digest: [d, d] })), /names node n1 twice/);
  malformed(
    () => decodeSyn(encodeSyn({ fromId: "n0", digest: [{ ...d, incarnation: -1 }] })),
    /incarnation -1/,
  );
  malformed(
    () => decodeSyn(encodeSyn({ fromId: "n0", digest: [{ ...d, maxVersion: VERSION_MAX + 1 }] })),
    /maxVersion/,
  );
  malformed(
    () => decodeAck2(ack2([delta({ incarnation: INCARNATION_MAX + 1 })])),
    /incarnation/,
  );
  malformed(() => decodeAck2(ack2([delta({}), delta({})])), /names node n1 twice/);
  malformed(() => decodeAck2(ack2([delta({ id: "é" })])), /\.id "é"/);
});

Deno.test("gossip codec rejects bad entries: empty, too many, repeated keys, version 0, bad values", () => {
  malformed(() => decodeAck2(ack2([delta({ entries: [] })])), /entry count 0/);
  const many = Array.from({ length: ENTRIES_PER_NODE_MAX + 1 }, (_, i) => ({
    key: `k${i}`,
    value: "",
    version: i + 1,
  }));
  malformed(() => decodeAck2(ack2([delta({ entries: many })])), /entry count 65/);
  malformed(() => decodeAck2(ack2([delta({ entries: [OK_ENTRY, OK_ENTRY] })])), /repeats key/);
  malformed(
    () => decodeAck2(ack2([delta({ entries: [{ ...OK_ENTRY, version: 0 }] })])),
    /version 0/,
  );
  const bad = (key: string, value: string) =>
    decodeAck2(ack2([delta({ entries: [{ key, value, version: 1 }] })]));
  malformed(() => bad("host", "has space"), /not a host/);
  malformed(() => bad("clusterPort", "70000"), /not a port/);
  malformed(() => bad("heartbeat", "x"), /not a count/);
  malformed(() => bad("left", "0"), /left must be/);
  malformed(() => bad("role", "x".repeat(VALUE_BYTES_MAX + 1)), /over 1024 bytes/);
  malformed(() => bad("__proto__", "x"), /key "__proto__"/);
});

Deno.test("gossip codec rejects a digest or delta list naming more than NODES_PER_MESSAGE_MAX nodes", () => {
  const digest = Array.from({ length: NODES_PER_MESSAGE_MAX + 1 }, (_, i) => ({
    id: `n${i}`,
    incarnation: 1,
    maxVersion: 1,
  }));
  malformed(() => decodeSyn(encodeSyn({ fromId: "n0", digest })), /over 1025/);
  assert.equal(decodeSyn(encodeSyn({ fromId: "n0", digest: digest.slice(1) })).digest.length, 1025);
  const deltas = digest.map((d) => delta({ id: d.id }));
  malformed(() => decodeAck2(ack2(deltas)), /over 1025/);
});
