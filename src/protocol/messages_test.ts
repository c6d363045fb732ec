import assert from "node:assert/strict";
import fc from "fast-check";
import { MalformedError } from "./errors.ts";
import { encodeFrame, Flag } from "./frame.ts";
import {
  decode,
  decodeAck,
  decodeDeliver,
  encode,
  encodeFramed,
  encodeFramedInto,
  ERROR_SCHEMA,
  type FieldType,
  LIST_ITEMS_MAX,
  Op,
  type OpName,
  opName,
  type Schema,
  SCHEMAS,
} from "./messages.ts";
import { Writer } from "./wire.ts";

type Value = Record<string, unknown>;

const stringArb = fc.oneof(
  fc.string({ unit: "binary", maxLength: 16 }),
  fc.string({ unit: "binary", maxLength: 4 }).map((s) => `\uFEFF${s}`),
  fc.constantFrom("", "orders", "retention.bytes", "constructor", "10", "__proto__x"),
);

function fieldArb(type: FieldType): fc.Arbitrary<unknown> {
  switch (type) {
    case "u8":
      return fc.integer({ min: 0, max: 0xff });
    case "u16":
      return fc.integer({ min: 0, max: 0xffff });
    case "u32":
      return fc.integer({ min: 0, max: 0xffffffff });
    case "i64":
      return fc.oneof(
        fc.maxSafeInteger(),
        fc.constantFrom(-1, 0, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER),
      );
    case "string":
      return stringArb;
    case "bytes":
      return fc.option(fc.uint8Array({ maxLength: 32 }), { nil: null });
    default:
      if ("list" in type) return fc.array(valueArb(type.list), { maxLength: 4 });
      return fc
        .uniqueArray(fc.tuple(stringArb.filter((k) => k !== "__proto__"), stringArb), {
          selector: ([k]) => k,
          maxLength: 5,
        })
        .map((entries) => Object.fromEntries(entries));
  }
}

/** Values of any shape `schema` describes. */
function valueArb(schema: Schema): fc.Arbitrary<Value> {
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [name, type] of schema) fields[name] = fieldArb(type);
  return fc.record(fields, { noNullPrototype: true });
}

const OPS = Object.keys(SCHEMAS) as OpName[];
const ALL_SCHEMAS: [string, Schema][] = [
  ...OPS.flatMap((
    op,
  ): [string, Schema][] => [[`${op} request`, SCHEMAS[op].request], [
    `${op} response`,
    SCHEMAS[op].response,
  ]]),
  ["error", ERROR_SCHEMA],
];

function hasMap(schema: Schema): boolean {
  return schema.some(([, t]) => typeof t === "object" && ("map" in t || hasMap(t.list)));
}

function assertMalformed(fn: () => unknown, what: string): void {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof MalformedError, `${what}: expected MalformedError, got ${err}`);
    return true;
  });
}

for (const [what, schema] of ALL_SCHEMAS) {
  Deno.test(`decode() inverts encode() for the ${what}`, () => {
    fc.assert(
      fc.property(valueArb(schema), (v) => {
        const bytes = encode(schema, v);
        const back = decode<Value>(schema, bytes, what);
        assert.deepEqual(back, v);
        assert.deepEqual(encode(schema, back), bytes);
      }),
      { numRuns: 150 },
    );
  });

  Deno.test(`decode() throws MalformedError for every truncation of, or a byte after, the ${what}`, () => {
    fc.assert(
      fc.property(valueArb(schema), fc.integer({ min: 0, max: 255 }), (v, extra) => {
        const bytes = encode(schema, v);
        for (let k = 0; k < bytes.length; k++) {
          assertMalformed(() => decode(schema, bytes.slice(0, k), what), `prefix ${k}`);
        }
        const longer = new Writer().raw(bytes).u8(extra).finish();
        assertMalformed(() => decode(schema, longer, what), "trailing byte");
      }),
      { numRuns: 50 },
    );
  });

  Deno.test(`decode() of random bytes as the ${what} throws only MalformedError`, () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        let v: Value;
        try {
          v = decode<Value>(schema, bytes, what);
        } catch (err) {
          if (err instanceof MalformedError) return;
          throw err;
        }
        // Decoding is strict, so whatever it accepts re-encodes to the same bytes; a map's
        // entries may come back in another order (JS orders integer-like keys first).
        if (hasMap(schema)) assert.deepEqual(decode(schema, encode(schema, v), what), v);
        else assert.deepEqual(encode(schema, v), bytes);
      }),
      { numRuns: 300 },
    );
  });
}

Deno.test("encode() writes fields in schema order, big-endian, with no padding", () => {
  const bytes = encode(SCHEMAS.PRODUCE.request, {
    topic: "t",
    partition: 2,
    acks: 1,
    timeoutMs: 0x0102,
    batch: new Uint8Array([9]),
  });
  assert.deepEqual([...bytes], [0, 1, 0x74, 0, 0, 0, 2, 1, 0, 0, 1, 2, 0, 0, 0, 1, 9]);
});

Deno.test("encode() writes a missing or null bytes field as length 0xffffffff", () => {
  const bytes = encode(SCHEMAS.HELLO.request, {
    versionMin: 1,
    versionMax: 1,
    clientId: "",
    credential: null,
  });
  assert.deepEqual([...bytes], [1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff]);
  assert.deepEqual(
    encode(SCHEMAS.HELLO.request, { versionMin: 1, versionMax: 1, clientId: "" }),
    bytes,
  );
});

/** A CREATE_TOPIC request whose configs map holds `entries` as written, whatever they are. */
function createTopicWith(entries: [string, string][], count = entries.length): Uint8Array {
  const w = new Writer().string("orders").u32(1).u32(count);
  for (const [k, v] of entries) w.string(k).string(v);
  return w.finish();
}

Deno.test("decode() rejects a map that repeats a key", () => {
  const bytes = createTopicWith([["retention.bytes", "1"], ["retention.bytes", "2"]]);
  assert.throws(
    () => decode(SCHEMAS.CREATE_TOPIC.request, bytes, "CREATE_TOPIC"),
    (err) => err instanceof MalformedError && /repeats key retention\.bytes/.test(err.message),
  );
});

Deno.test("decode() rejects a map key __proto__ and returns maps as plain objects", () => {
  for (
    const entries of [[["__proto__", "x"]], [["a", "1"], ["__proto__", "{}"]]] as [
      string,
      string,
    ][][]
  ) {
    assertMalformed(
      () => decode(SCHEMAS.CREATE_TOPIC.request, createTopicWith(entries), "CREATE_TOPIC"),
      "__proto__",
    );
  }
  const v = decode<{ configs: Record<string, string> }>(
    SCHEMAS.CREATE_TOPIC.request,
    createTopicWith([["constructor", "c"], ["toString", "t"]]),
    "CREATE_TOPIC",
  );
  assert.deepEqual(v.configs, { constructor: "c", toString: "t" });
  assert.equal(Object.getPrototypeOf(v.configs), Object.prototype);
});

Deno.test("decode() rejects a list or map count over LIST_ITEMS_MAX before reading any item", () => {
  const list = new Writer().u32(LIST_ITEMS_MAX + 1).finish();
  assert.throws(
    () => decode(SCHEMAS.LIST_TOPICS.response, list, "LIST_TOPICS"),
    (err) => err instanceof MalformedError && /over 100000/.test(err.message),
  );
  const huge = new Writer().u32(0xffffffff).finish();
  assertMalformed(
    () => decode(SCHEMAS.LIST_TOPICS.response, huge, "LIST_TOPICS"),
    "0xffffffff items",
  );
  assert.throws(
    () =>
      decode(SCHEMAS.CREATE_TOPIC.request, createTopicWith([], LIST_ITEMS_MAX + 1), "CREATE_TOPIC"),
    (err) => err instanceof MalformedError && /over 100000/.test(err.message),
  );
});

Deno.test("decode() accepts a list of exactly LIST_ITEMS_MAX items", () => {
  const topics = Array.from({ length: LIST_ITEMS_MAX }, () => ({ name: "", partitions: 1 }));
  const bytes = encode(SCHEMAS.LIST_TOPICS.response, { topics });
  assert.equal(
    decode<{ topics: unknown[] }>(SCHEMAS.LIST_TOPICS.response, bytes, "LIST_TOPICS").topics.length,
    LIST_ITEMS_MAX,
  );
});

Deno.test("decode() names the field that failed", () => {
  const bytes = new Writer().u8(1).u8(1).string("c").u32(5).finish();
  assert.throws(
    () => decode(SCHEMAS.HELLO.request, bytes, "HELLO"),
    (err) => err instanceof MalformedError && /HELLO\.credential/.test(err.message),
  );
});

Deno.test("Op codes sit in their bands, are unique, and each has a schema", () => {
  const bands: Record<number, OpName[]> = {
    0x00: ["HELLO", "PING", "AUTH_START", "AUTH_FINISH"],
    0x01: ["PRODUCE", "INIT_PRODUCER_ID"],
    0x02: [
      "SUBSCRIBE",
      "DELIVER",
      "CREDIT",
      "ACK",
      "UNSUBSCRIBE",
      "FETCH",
      "DURABLE_COMMIT",
      "DURABLE_FETCH",
    ],
    0x03: [
      "CREATE_TOPIC",
      "DELETE_TOPIC",
      "LIST_TOPICS",
      "DESCRIBE_TOPIC",
      "ALTER_TOPIC",
      "CREATE_PARTITIONS",
      "REPAIR_PARTITIONS",
      "REASSIGN_PARTITION",
      "REBALANCE_LEADERS",
    ],
    0x04: [
      "GROUP_HEARTBEAT",
      "GROUP_LEAVE",
      "OFFSET_COMMIT",
      "OFFSET_FETCH",
      "LIST_GROUPS",
      "DESCRIBE_GROUP",
      "RESET_OFFSETS",
    ],
    0x05: ["CLUSTER_MEMBERS", "METADATA"],
    0x06: ["GOSSIP_SYN", "GOSSIP_ACK2", "RAFT", "CLUSTER_HELLO", "CLUSTER_PROOF"],
    0x07: ["USER_PUT", "USER_DELETE", "USER_LIST", "ACL_ADD", "ACL_REMOVE", "ACL_LIST"],
  };
  for (const [band, names] of Object.entries(bands)) {
    for (const name of names) assert.equal(Op[name] >> 8, Number(band), name);
  }
  assert.deepEqual(Object.values(bands).flat().sort(), [...OPS].sort());
  assert.deepEqual(Object.keys(Op).sort(), [...OPS].sort());
  assert.equal(new Set(Object.values(Op)).size, OPS.length);
});

Deno.test("opName() names every opcode and returns null for unknown ones", () => {
  for (const name of OPS) assert.equal(opName(Op[name]), name);
  for (const code of [0, 0x0005, 0x0100, 0x0408, 0x0503, 0x0606, 0x0707, 0xffff]) {
    assert.equal(opName(code), null);
  }
});

Deno.test("encodeFramed() writes the same bytes as encodeFrame() of encode()", () => {
  const batch = new Uint8Array(70_000).map((_, i) => i * 31);
  const cases: [OpName, object][] = [
    ["PRODUCE", { topic: "t", partition: 3, acks: 1, timeoutMs: 500, batch }],
    ["PING", {}],
  ];
  for (const [op, body] of cases) {
    const schema = SCHEMAS[op].request;
    assert.deepEqual(
      encodeFramed(schema, body, { opcode: Op[op], correlationId: 77, flags: Flag.RESPONSE }),
      encodeFrame(Op[op], 77, encode(schema, body), Flag.RESPONSE),
    );
  }
});

for (
  const [op, fast] of [["DELIVER", decodeDeliver], ["ACK", decodeAck]] as [
    OpName,
    (p: Uint8Array) => unknown,
  ][]
) {
  Deno.test(`${fast.name}() decodes what decode() does, and refuses with its error what it refuses`, () => {
    const schema = SCHEMAS[op].request;
    fc.assert(
      fc.property(valueArb(schema), (v) => {
        const payload = encode(schema, v);
        assert.deepEqual(fast(payload), decode(schema, payload, op));
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (payload) => {
        let want: unknown;
        try {
          want = decode(schema, payload, op);
        } catch (err) {
          assert.throws(() => fast(payload), { message: (err as Error).message });
          return;
        }
        assert.deepEqual(fast(payload), want);
      }),
    );
  });
}

Deno.test("encodeFramedInto() appends the frame encodeFramed() makes, and leaves the writer as it was when the value does not fit", () => {
  const w = new Writer(8);
  encodeFramedInto(w, SCHEMAS.ACK.request, { subscriptionId: 7, offset: 42 }, {
    opcode: Op.ACK,
    correlationId: 1,
  });
  const first = w.length;
  assert.throws(() =>
    encodeFramedInto(w, SCHEMAS.ACK.request, { subscriptionId: 8, offset: 2 ** 64 }, {
      opcode: Op.ACK,
      correlationId: 2,
    })
  );
  assert.equal(w.length, first, "nothing of the failed frame is left");
  encodeFramedInto(w, SCHEMAS.CREDIT.request, { subscriptionId: 7, messages: 3, bytes: 9 }, {
    opcode: Op.CREDIT,
    correlationId: 3,
  });
  const want = [
    encodeFramed(SCHEMAS.ACK.request, { subscriptionId: 7, offset: 42 }, {
      opcode: Op.ACK,
      correlationId: 1,
    }),
    encodeFramed(SCHEMAS.CREDIT.request, { subscriptionId: 7, messages: 3, bytes: 9 }, {
      opcode: Op.CREDIT,
      correlationId: 3,
    }),
  ];
  assert.deepEqual(w.finish(), new Uint8Array([...want[0]!, ...want[1]!]));
});
