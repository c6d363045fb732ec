// Writes the golden-frame corpus: one `<name>.hex` per representative frame and `index.json`
// describing each. Deterministic: fixed timestamps, no randomness. Compressed batches are whatever
// this Deno's node:zlib, snappyjs and lz4-wasm produce; tests/golden_test.ts checks them by content.
// Run: deno run -A conformance/golden/generate.ts

import {
  batchesIn,
  decodeBatch,
  encodeBatch,
  type RecordInput,
  setBaseOffset,
} from "../../src/protocol/batch.ts";
import { Codec, type CodecId, codecName } from "../../src/protocol/compression.ts";
import { ErrorCode } from "../../src/protocol/errors.ts";
import {
  encodeFrame,
  Flag,
  FRAME_PAYLOAD_BYTES_MAX_DEFAULT,
  PROTOCOL_VERSION,
} from "../../src/protocol/frame.ts";
import {
  encode,
  ERROR_SCHEMA,
  Op,
  type OpName,
  type Schema,
  SCHEMAS,
  Start,
} from "../../src/protocol/messages.ts";

/** 2023-11-14T22:13:20Z: every record timestamp is this plus a few milliseconds. */
const T0 = 1_700_000_000_000;
/** Large enough for every batch in the corpus. */
const RECORDS_BYTES_MAX = 1024 * 1024;
const DIR = new URL(".", import.meta.url);
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

type Kind = "request" | "response" | "push" | "error";

interface Case {
  name: string;
  description: string;
  opcode: OpName | 0;
  kind: Kind;
  correlationId: number;
  payload: Record<string, unknown>;
}

/** The two records every PRODUCE case carries, whatever the codec. */
const ORDERS: RecordInput[] = [
  {
    key: utf8("customer-17"),
    value: utf8('{"order":1001,"item":"book","qty":1}'),
    headers: [{ key: "trace-id", value: utf8("4bf92f3577b34da6") }, { key: "retry", value: null }],
    timestamp: T0,
  },
  { key: null, value: utf8('{"order":1002,"item":"pen","qty":12}'), timestamp: T0 + 5 },
];

/** One batch as the broker stores it: encoded by the producer, base offset assigned. */
function stored(records: RecordInput[], codec: CodecId, baseOffset: number): Uint8Array {
  const batch = encodeBatch(records, { codec }).slice();
  setBaseOffset(batch, 0, baseOffset);
  return batch;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const SHIPPED: RecordInput[] = [{
  key: utf8("customer-17"),
  value: utf8('{"order":1001,"status":"shipped"}'),
  timestamp: T0 + 9,
}];
/** What the log holds: offsets 40-41 (the two orders, uncompressed) and 42 (gzip). */
const LOG = concat([stored(ORDERS, Codec.none, 40), stored(SHIPPED, Codec.gzip, 42)]);

function produce(codec: CodecId, correlationId: number, acks = 1): Case {
  const name = codecName(codec)!;
  return {
    name: codec === Codec.none
      ? (acks === 0 ? "produce_request_acks_none" : "produce_request")
      : `produce_request_${name}`,
    description: codec === Codec.none
      ? acks === 0
        ? "PRODUCE with acks=none (0): the broker sends no response unless the request fails. Same batch as produce_request."
        : "PRODUCE to orders/0 with acks=leader (1): one uncompressed batch of two records, the first with a key and two headers (one with a null value), the second with a null key and no headers. The producer leaves the base offset 0 and the producer id/epoch/sequence -1."
      : `PRODUCE of the same two records as produce_request, compressed with ${name} (attributes = ${codec}). Decompressed, the records section equals produce_request's byte for byte.`,
    opcode: "PRODUCE",
    kind: "request",
    correlationId,
    payload: {
      topic: "orders",
      partition: 0,
      acks,
      timeoutMs: 5000,
      batch: encodeBatch(ORDERS, { codec }),
    },
  };
}

const CASES: Case[] = [
  {
    name: "hello_request",
    description:
      "HELLO, the first frame on every connection: speaks versions 1..1, client id golden-sdk, no credential (null bytes).",
    opcode: "HELLO",
    kind: "request",
    correlationId: 1,
    payload: { versionMin: 1, versionMax: 1, clientId: "golden-sdk", credential: null },
  },
  {
    name: "hello_request_with_credential",
    description:
      "HELLO from a client that speaks versions 1..3 and presents the credential s3cret-token (UTF-8 bytes).",
    opcode: "HELLO",
    kind: "request",
    correlationId: 1,
    payload: {
      versionMin: 1,
      versionMax: 3,
      clientId: "golden-sdk",
      credential: utf8("s3cret-token"),
    },
  },
  {
    name: "auth_start_request",
    description:
      "AUTH_START after HELLO: mechanism SCRAM-SHA-256 and the client-first message of RFC 7677 section 3 (user 'user', client nonce rOprNGfwEbeRWgbNEkqO), as UTF-8 bytes.",
    opcode: "AUTH_START",
    kind: "request",
    correlationId: 2,
    payload: { mechanism: "SCRAM-SHA-256", message: utf8("n,,n=user,r=rOprNGfwEbeRWgbNEkqO") },
  },
  {
    name: "auth_start_response",
    description:
      "The server-first message of RFC 7677 section 3: the combined nonce, the user's salt (base64) and 4096 iterations.",
    opcode: "AUTH_START",
    kind: "response",
    correlationId: 2,
    payload: {
      message: utf8(
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
      ),
    },
  },
  {
    name: "auth_finish_request",
    description:
      "AUTH_FINISH: the client-final message of RFC 7677 section 3 (password 'pencil'): channel binding biws (n,,), the combined nonce and the client proof.",
    opcode: "AUTH_FINISH",
    kind: "request",
    correlationId: 3,
    payload: {
      message: utf8(
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
      ),
    },
  },
  {
    name: "auth_finish_response",
    description:
      "The server-final message of RFC 7677 section 3: the server signature the client checks before it trusts the broker.",
    opcode: "AUTH_FINISH",
    kind: "response",
    correlationId: 3,
    payload: { message: utf8("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") },
  },
  {
    name: "acl_add_request",
    description:
      "ACL_ADD from a super-user: allow user bob to produce to every topic whose name starts with orders.",
    opcode: "ACL_ADD",
    kind: "request",
    correlationId: 5,
    payload: {
      principal: "bob",
      resourceType: "topic",
      pattern: "prefix",
      name: "orders.",
      operation: "produce",
    },
  },
  {
    name: "hello_response",
    description:
      "The broker's answer to HELLO: version 1 chosen, broker id, the largest frame payload it accepts (16 MiB), and codecs bitmask 0x1f (bit i = codec id i: none, gzip, snappy, lz4, zstd).",
    opcode: "HELLO",
    kind: "response",
    correlationId: 1,
    payload: {
      version: PROTOCOL_VERSION,
      brokerId: "gregormq-0",
      payloadBytesMax: FRAME_PAYLOAD_BYTES_MAX_DEFAULT,
      codecs: 0x1f,
    },
  },
  {
    name: "ping_request",
    description: "PING: an empty payload.",
    opcode: "PING",
    kind: "request",
    correlationId: 2,
    payload: {},
  },
  {
    name: "ping_response",
    description: "The answer to PING: an empty payload.",
    opcode: "PING",
    kind: "response",
    correlationId: 2,
    payload: {},
  },
  produce(Codec.none, 3),
  produce(Codec.gzip, 4),
  produce(Codec.snappy, 5),
  produce(Codec.lz4, 6),
  produce(Codec.zstd, 7),
  produce(Codec.none, 8, 0),
  {
    name: "produce_response",
    description:
      "The answer to produce_request: the broker assigned base offset 40 to the batch (so its records are 40 and 41); the log starts at 0.",
    opcode: "PRODUCE",
    kind: "response",
    correlationId: 3,
    payload: { baseOffset: 40, logStartOffset: 0 },
  },
  {
    name: "subscribe_request",
    description:
      "SUBSCRIBE as subscription 7 to orders/0 from offset 41 (start=2 offset), durable name billing, ack timeout 30 s, initial credit 1000 messages and 1 MiB.",
    opcode: "SUBSCRIBE",
    kind: "request",
    correlationId: 9,
    payload: {
      subscriptionId: 7,
      topic: "orders",
      partition: 0,
      start: Start.offset,
      startValue: 41,
      durableName: "billing",
      ackTimeoutMs: 30_000,
      creditMessages: 1000,
      creditBytes: 1024 * 1024,
    },
  },
  {
    name: "subscribe_response",
    description:
      "The answer to subscribe_request: delivery starts at 41; the log holds offsets 0 to 42 (high watermark 43).",
    opcode: "SUBSCRIBE",
    kind: "response",
    correlationId: 9,
    payload: { startOffset: 41, logStartOffset: 0, highWatermark: 43 },
  },
  {
    name: "deliver_push",
    description:
      "DELIVER pushed to subscription 7 (flag PUSH, correlation id 0): two stored batches back to back, offsets 40-41 uncompressed and 42 gzip, exactly as produced but with broker-assigned base offsets. firstOffset 41: the client skips record 40.",
    opcode: "DELIVER",
    kind: "push",
    correlationId: 0,
    payload: { subscriptionId: 7, firstOffset: 41, redelivery: 0, records: LOG },
  },
  {
    name: "deliver_push_redelivery",
    description:
      "DELIVER of offset 42 again after its ack timeout passed unacknowledged: redelivery = 1.",
    opcode: "DELIVER",
    kind: "push",
    correlationId: 0,
    payload: {
      subscriptionId: 7,
      firstOffset: 42,
      redelivery: 1,
      records: stored(SHIPPED, Codec.gzip, 42),
    },
  },
  {
    name: "credit_request",
    description:
      "CREDIT for subscription 7: 500 more messages and 512 KiB more bytes (additive). One-way: no response unless it fails.",
    opcode: "CREDIT",
    kind: "request",
    correlationId: 10,
    payload: { subscriptionId: 7, messages: 500, bytes: 512 * 1024 },
  },
  {
    name: "ack_request",
    description:
      "ACK for subscription 7 of every offset up to and including 42 (cumulative). One-way: no response unless it fails.",
    opcode: "ACK",
    kind: "request",
    correlationId: 11,
    payload: { subscriptionId: 7, offset: 42 },
  },
  {
    name: "unsubscribe_request",
    description: "UNSUBSCRIBE subscription 7; answered with an empty response.",
    opcode: "UNSUBSCRIBE",
    kind: "request",
    correlationId: 14,
    payload: { subscriptionId: 7 },
  },
  {
    name: "fetch_request",
    description: "FETCH from orders/0 at offset 41, at most 1 MiB.",
    opcode: "FETCH",
    kind: "request",
    correlationId: 12,
    payload: { topic: "orders", partition: 0, offset: 41, maxBytes: 1024 * 1024 },
  },
  {
    name: "fetch_response",
    description:
      "The answer to fetch_request: whole batches, the first starting at 40, before the offset asked for (the client skips what it did not ask for).",
    opcode: "FETCH",
    kind: "response",
    correlationId: 12,
    payload: { logStartOffset: 0, highWatermark: 43, records: LOG },
  },
  {
    name: "fetch_response_empty",
    description:
      "The answer to a FETCH at the high watermark (43): no batches, an empty (not null) records field.",
    opcode: "FETCH",
    kind: "response",
    correlationId: 13,
    payload: { logStartOffset: 0, highWatermark: 43, records: new Uint8Array(0) },
  },
  {
    name: "create_topic_request",
    description:
      "CREATE_TOPIC orders with 3 partitions and config retention.bytes = 1073741824 (a map of one string pair).",
    opcode: "CREATE_TOPIC",
    kind: "request",
    correlationId: 15,
    payload: { name: "orders", partitions: 3, configs: { "retention.bytes": "1073741824" } },
  },
  {
    name: "create_topic_response",
    description: "The answer to create_topic_request: an empty payload.",
    opcode: "CREATE_TOPIC",
    kind: "response",
    correlationId: 15,
    payload: {},
  },
  {
    name: "delete_topic_request",
    description: "DELETE_TOPIC scratch; answered with an empty response.",
    opcode: "DELETE_TOPIC",
    kind: "request",
    correlationId: 16,
    payload: { name: "scratch" },
  },
  {
    name: "list_topics_request",
    description: "LIST_TOPICS: an empty payload.",
    opcode: "LIST_TOPICS",
    kind: "request",
    correlationId: 17,
    payload: {},
  },
  {
    name: "list_topics_response",
    description:
      "The answer to LIST_TOPICS: a list of two (name, partitions) items, sorted by name.",
    opcode: "LIST_TOPICS",
    kind: "response",
    correlationId: 17,
    payload: { topics: [{ name: "events", partitions: 1 }, { name: "orders", partitions: 3 }] },
  },
  {
    name: "describe_topic_request",
    description: "DESCRIBE_TOPIC orders.",
    opcode: "DESCRIBE_TOPIC",
    kind: "request",
    correlationId: 18,
    payload: { name: "orders" },
  },
  {
    name: "describe_topic_response_effective_configs",
    description:
      "DESCRIBE_TOPIC's answer for a single-node topic created with only retention.bytes: configs are the effective ones, the created key plus the broker's defaults (§8.8), written sorted by key as every map in this corpus is (§2); leader \"\" means the node asked.",
    opcode: "DESCRIBE_TOPIC",
    kind: "response",
    correlationId: 19,
    payload: {
      name: "audit",
      configs: {
        fsync: "always",
        persistence: "disk",
        "retention.bytes": "1048576",
        "retention.ms": "604800000",
        "segment.bytes": "67108864",
        "segment.ms": "604800000",
      },
      partitions: [{
        partition: 0,
        logStartOffset: 0,
        highWatermark: 3,
        sizeBytes: 240,
        subscribers: 0,
        damagedFromOffset: -1,
        leader: "",
        replicas: [],
        isr: [],
        moving: 0,
      }],
    },
  },
  {
    name: "describe_topic_response",
    description:
      "The answer to describe_topic_request: the topic's configs and, per partition, log start offset, high watermark, stored bytes, live subscriptions, the first offset a damaged log cannot serve (-1: not damaged; here partition 1 is damaged from offset 59), the leader, the replicas, the replicas in sync with the leader (here node n1 of partition 1 fell out of sync), and whether the partition is moving to its replicas (here partition 2: an operator reassigned it and n2 catches up).",
    opcode: "DESCRIBE_TOPIC",
    kind: "response",
    correlationId: 18,
    payload: {
      name: "orders",
      configs: { "retention.bytes": "1073741824" },
      partitions: [
        {
          partition: 0,
          logStartOffset: 0,
          highWatermark: 43,
          sizeBytes: 5120,
          subscribers: 1,
          damagedFromOffset: -1,
          leader: "n1",
          replicas: [{ id: "n1" }, { id: "n2" }, { id: "n3" }],
          isr: [{ id: "n1" }, { id: "n2" }, { id: "n3" }],
          moving: 0,
        },
        {
          partition: 1,
          logStartOffset: 0,
          highWatermark: 121,
          sizeBytes: 14336,
          subscribers: 0,
          damagedFromOffset: 59,
          leader: "n2",
          replicas: [{ id: "n2" }, { id: "n3" }, { id: "n1" }],
          isr: [{ id: "n2" }, { id: "n3" }],
          moving: 0,
        },
        {
          partition: 2,
          logStartOffset: 0,
          highWatermark: 0,
          sizeBytes: 0,
          subscribers: 0,
          damagedFromOffset: -1,
          leader: "n3",
          replicas: [{ id: "n3" }, { id: "n1" }, { id: "n2" }],
          isr: [{ id: "n3" }, { id: "n1" }],
          moving: 1,
        },
      ],
    },
  },
  {
    name: "reassign_partition_request",
    description:
      "REASSIGN_PARTITION orders, partition 2, to nodes n3, n1 and n2 (n3 first: its preferred leader). Its answer has an empty payload.",
    opcode: "REASSIGN_PARTITION",
    kind: "request",
    correlationId: 21,
    payload: { name: "orders", partition: 2, replicas: [{ id: "n3" }, { id: "n1" }, { id: "n2" }] },
  },
  {
    name: "rebalance_leaders_request",
    description:
      "REBALANCE_LEADERS from a client (thisNodeOnly 0): the node asked hands its partitions to their preferred replicas and asks every other live node to.",
    opcode: "REBALANCE_LEADERS",
    kind: "request",
    correlationId: 22,
    payload: { thisNodeOnly: 0 },
  },
  {
    name: "rebalance_leaders_response",
    description:
      "The answer to rebalance_leaders_request: 2 leaderships handed over, 1 partition waiting for its preferred replica to catch up, node n3 not reached.",
    opcode: "REBALANCE_LEADERS",
    kind: "response",
    correlationId: 22,
    payload: { moved: 2, waiting: 1, unreached: [{ id: "n3" }] },
  },
  {
    name: "repair_partitions_request",
    description: "REPAIR_PARTITIONS orders, partition 1 (an empty list: every partition).",
    opcode: "REPAIR_PARTITIONS",
    kind: "request",
    correlationId: 20,
    payload: { name: "orders", partitions: [{ partition: 1 }] },
  },
  {
    name: "repair_partitions_response",
    description:
      "The answer to repair_partitions_request: partition 1 was cut at offset 59, dropping offsets 59..120 (62 records, 7168 bytes), with where and why its log failed its checks.",
    opcode: "REPAIR_PARTITIONS",
    kind: "response",
    correlationId: 20,
    payload: {
      partitions: [{
        partition: 1,
        cutOffset: 59,
        endOffset: 121,
        bytesDropped: 7168,
        damage:
          "data/topics/orders/1/00000000000000000041.log fails its checks at byte 2048: batch at byte 2048 is corrupt (checksum mismatch)",
      }],
    },
  },
  {
    name: "error_unknown_topic",
    description:
      "The error answer to a DESCRIBE_TOPIC payments sent with correlation id 19: opcode 0, flags RESPONSE|ERROR, code 10 UNKNOWN_TOPIC. Not fatal: the connection stays open.",
    opcode: 0,
    kind: "error",
    correlationId: 19,
    payload: { code: ErrorCode.UNKNOWN_TOPIC, message: "Topic payments does not exist" },
  },
  {
    name: "error_handshake_required",
    description:
      "The error answer to a PRODUCE sent before HELLO with correlation id 1: code 7 HANDSHAKE_REQUIRED. Fatal: the broker closes the connection after sending it.",
    opcode: 0,
    kind: "error",
    correlationId: 1,
    payload: { code: ErrorCode.HANDSHAKE_REQUIRED, message: "PRODUCE before HELLO" },
  },
  {
    name: "error_authentication_failed",
    description:
      "The one answer to every failed SCRAM exchange (wrong password, unknown user, replayed or malformed message), here to AUTH_FINISH with correlation id 3: code 8 AUTHENTICATION_FAILED. Fatal.",
    opcode: 0,
    kind: "error",
    correlationId: 3,
    payload: { code: ErrorCode.AUTHENTICATION_FAILED, message: "Authentication failed" },
  },
  {
    name: "error_authorization_failed",
    description:
      "The answer to a PRODUCE the ACLs deny, correlation id 4: code 35 AUTHORIZATION_FAILED. Not fatal: the connection stays open.",
    opcode: 0,
    kind: "error",
    correlationId: 4,
    payload: {
      code: ErrorCode.AUTHORIZATION_FAILED,
      message: 'User "bob" may not produce on topic "payments"',
    },
  },
  {
    name: "error_malformed_frame",
    description:
      "The error answer to a stream that does not start with the magic (here an HTTP request, 'HT'): code 2 MALFORMED_FRAME with correlation id 0, as the header could not be trusted. Fatal.",
    opcode: 0,
    kind: "error",
    correlationId: 0,
    payload: { code: ErrorCode.MALFORMED_FRAME, message: "Bad magic 0x4854" },
  },
];

const FLAGS: Record<Kind, number> = {
  request: 0,
  response: Flag.RESPONSE,
  push: Flag.PUSH,
  error: Flag.RESPONSE | Flag.ERROR,
};

function schemaOf(c: Case): Schema {
  if (c.kind === "error") return ERROR_SCHEMA;
  const s = SCHEMAS[c.opcode as OpName];
  return c.kind === "response" ? s.response : s.request;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A bytes field named batch or records carries record batches back to back. */
function carriesBatches(field: string): boolean {
  return field === "batch" || field === "records";
}

function batchesJson(bytes: Uint8Array): unknown {
  return {
    hex: hex(bytes),
    batches: [...batchesIn(bytes)].map(({ off, header: h }) => ({
      baseOffset: h.baseOffset,
      sizeBytes: h.sizeBytes,
      partitionLeaderEpoch: h.partitionLeaderEpoch,
      crc: h.crc,
      attributes: h.attributes,
      codec: codecName(h.codec),
      lastOffsetDelta: h.lastOffsetDelta,
      firstTimestamp: h.firstTimestamp,
      maxTimestamp: h.maxTimestamp,
      producerId: h.producerId,
      producerEpoch: h.producerEpoch,
      baseSequence: h.baseSequence,
      recordCount: h.recordCount,
      records: decodeBatch(bytes, off, { recordsBytesMax: RECORDS_BYTES_MAX }).map((r) => ({
        offset: r.offset,
        timestamp: r.timestamp,
        key: r.key === null ? null : hex(r.key),
        value: r.value === null ? null : hex(r.value),
        headers: r.headers.map((x) => ({
          key: x.key,
          value: x.value === null ? null : hex(x.value),
        })),
      })),
    })),
  };
}

function toJson(schema: Schema, v: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, type] of schema) {
    const x = v[name];
    if (type === "bytes") {
      const b = x as Uint8Array | null;
      out[name] = b === null ? null : carriesBatches(name) ? batchesJson(b) : hex(b);
    } else if (typeof type === "object" && "list" in type) {
      out[name] = (x as Record<string, unknown>[]).map((item) => toJson(type.list, item));
    } else {
      out[name] = x;
    }
  }
  return out;
}

async function main(): Promise<void> {
  const names = new Set<string>();
  const index = [];
  for (const c of CASES) {
    if (names.has(c.name)) throw new Error(`Duplicate golden case ${c.name}`);
    names.add(c.name);
    const opcode = c.opcode === 0 ? 0 : Op[c.opcode];
    const schema = schemaOf(c);
    const frame = encodeFrame(opcode, c.correlationId, encode(schema, c.payload), FLAGS[c.kind]);
    await Deno.writeTextFile(new URL(`${c.name}.hex`, DIR), `${hex(frame)}\n`);
    index.push({
      name: c.name,
      file: `${c.name}.hex`,
      description: c.description,
      opcode,
      opcodeName: c.opcode === 0 ? null : c.opcode,
      schema: c.kind === "error"
        ? "ERROR"
        : `${c.opcode}.${c.kind === "response" ? "response" : "request"}`,
      kind: c.kind,
      flags: FLAGS[c.kind],
      correlationId: c.correlationId,
      payloadLength: frame.length - 20,
      payload: toJson(schema, c.payload),
    });
  }
  for await (const e of Deno.readDir(DIR)) {
    if (e.isFile && e.name.endsWith(".hex") && !names.has(e.name.slice(0, -4))) {
      await Deno.remove(new URL(e.name, DIR));
    }
  }
  const doc = {
    description:
      "GregorMQ golden frames (protocol version 1). Each case's .hex file holds one whole frame " +
      "(20-byte header + payload) as lowercase hex on one line. docs/protocol.md is the spec.",
    conventions: {
      integers: "JSON numbers (all are safe integers)",
      bytes: "lowercase hex string; null for a null bytes field (length 0xffffffff)",
      batches:
        "a bytes field named batch or records holds record batches back to back: {hex, batches: " +
        "[header fields + records decoded, record key/value as hex]}; codec is the name of attributes bits 0-2",
      kind:
        "request (flags 0), response (RESPONSE), push (PUSH, correlation id 0), error (opcode 0, RESPONSE|ERROR, " +
        "payload = u16 code + string message)",
      compressed:
        "compressed batches hold what this implementation's compressors produced; an SDK must decode " +
        "them but need not reproduce their bytes",
    },
    cases: index,
  };
  await Deno.writeTextFile(new URL("index.json", DIR), `${JSON.stringify(doc, null, 2)}\n`);
  // Every payload's field list, language-neutral, so an SDK can check its own tables against them.
  const schemas = {
    description:
      "GregorMQ payload schemas (protocol version 1): each opcode's request and response (a DELIVER " +
      "push uses its request schema) as [field, type] pairs in wire order. Types: u8, u16, u32, i64, " +
      "string, bytes, {list: schema} (u32 count then items), {map: true} (u32 count then string " +
      "key/value pairs). ERROR is the payload of every error frame. docs/protocol.md is the spec.",
    opcodes: Op,
    errorCodes: ErrorCode,
    schemas: { ...SCHEMAS, ERROR: ERROR_SCHEMA },
  };
  await Deno.writeTextFile(new URL("schemas.json", DIR), `${JSON.stringify(schemas, null, 2)}\n`);
  console.log(`Wrote ${index.length} golden frames to ${DIR.pathname}`);
}

if (import.meta.main) await main();
