// Hostile SCRAM frames over real loopback TCP against a broker started with authentication on:
// random and mutated client-first and client-final messages, exchanges out of order, requests
// before authentication, oversized frames. Each costs only its own connection, never succeeds
// unless it is a genuine exchange, and is counted; a good client publishes throughout. Every input
// comes from fast-check with a fixed seed; a failure names the seed and the index.

import assert from "node:assert/strict";
import fc from "fast-check";
import { deriveCredential, ScramClient, toBase64 } from "../src/auth/scram.ts";
import { SecurityStore } from "../src/auth/store.ts";
import { DEFAULT_BROKER_OPTIONS } from "../src/broker/options.ts";
import { type Client, connect } from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { type RunningNode, startNode } from "../src/node.ts";
import { ErrorCode } from "../src/protocol/errors.ts";
import { encodeFrame } from "../src/protocol/frame.ts";
import { decode, encode, Op, type OpName, SCHEMAS } from "../src/protocol/messages.ts";
import { type Answer, HELLO_BODY, RawSession } from "./_raw_session.ts";
import { DenoCrypto } from "../src/io/deno/crypto.ts";

/** The hashes SCRAM runs on in these tests: the real node's. */
const CRYPTO = new DenoCrypto();

/** Hostile authentication cases, one connection each. */
const CASES = 20_000;
const SEED = 7_707;
/** Connections in flight at once. */
const CONCURRENT = 16;
/** Time the whole run may take. */
const RUN_MS_MAX = 120_000;
/** Time a fatal answer's close may take. */
const CLOSE_MS_MAX = 5_000;
const HANDSHAKE_BYTES_MAX = DEFAULT_BROKER_OPTIONS.handshakeBytesMax;
const SCRAM = "SCRAM-SHA-256";
const USER = "alice";
const PASSWORD = "correct horse";
const enc = new TextEncoder();

/** The client-first shape the broker accepts (docs/protocol.md §4.1), independent of its parser. */
const CLIENT_FIRST_SHAPE = /^[ny],,n=[A-Za-z0-9._@-]{1,128},r=[\x21-\x2b\x2d-\x7e]{16,256}$/;

function clientFirstAccepted(bytes: Uint8Array): boolean {
  if (bytes.length > 1024) return false;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return false;
  }
  return CLIENT_FIRST_SHAPE.test(text);
}

type Mutation =
  | { kind: "none" }
  | { kind: "flip"; at: number; bit: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; byte: number }
  | { kind: "replace"; at: number; byte: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.constant({ kind: "none" as const }),
  fc.record({
    kind: fc.constant("flip" as const),
    at: fc.nat(),
    bit: fc.integer({ min: 0, max: 7 }),
  }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    byte: fc.constantFrom(0x2c, 0x3d, 0x00, 0xff, 0x41),
  }),
  fc.record({
    kind: fc.constant("replace" as const),
    at: fc.nat(),
    byte: fc.constantFrom(0x2c, 0x3d, 0x00, 0xc3, 0x7a),
  }),
);

function mutate(b: Uint8Array, m: Mutation): Uint8Array {
  if (m.kind === "none" || b.length === 0) return b;
  const at = m.at % b.length;
  const out = b.slice();
  switch (m.kind) {
    case "flip":
      out[at]! ^= 1 << m.bit;
      return out;
    case "truncate":
      return b.slice(0, at);
    case "insert":
      return Uint8Array.from([...b.subarray(0, at), m.byte, ...b.subarray(at)]);
    case "replace":
      out[at] = m.byte;
      return out;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

type Case =
  /** AUTH_START whose payload is random bytes (it may not even decode). */
  | { kind: "startRandom"; payload: Uint8Array }
  /** AUTH_START of a mutated client-first, maybe under another mechanism name. */
  | { kind: "startMutated"; mechanism: string; user: string; nonce: string; m: Mutation }
  /** A good AUTH_START, then an AUTH_FINISH with random or forged bytes. */
  | {
    kind: "finishForged";
    user: string;
    forged: "random" | "proof";
    bytes: Uint8Array;
    m: Mutation;
  }
  /** A genuine exchange whose client-final is mutated (unchanged: it must succeed). */
  | { kind: "finishMutated"; m: Mutation }
  /** AUTH_FINISH with no AUTH_START before it. */
  | { kind: "finishFirst"; bytes: Uint8Array }
  /** A second AUTH_START on a connection. */
  | { kind: "startTwice" }
  /** Another request after HELLO, before authenticating. */
  | { kind: "early"; op: OpName }
  /** An AUTH_START over handshakeBytesMax. */
  | { kind: "oversized"; extra: number };

const nonceArb = fc.string({
  minLength: 16,
  maxLength: 40,
  unit: fc.constantFrom(..."abcXYZ0189+/!~"),
});
const userArb = fc.oneof(fc.constant(USER), fc.constantFrom("bob", "nobody", "ALICE", "alice2"));
const EARLY_OPS = (Object.keys(Op) as OpName[]).filter((n) =>
  n !== "DELIVER" && Op[n] >> 8 !== 0x06 && !["HELLO", "AUTH_START", "AUTH_FINISH"].includes(n)
);

const caseArb: fc.Arbitrary<Case> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("startRandom" as const),
      payload: fc.uint8Array({ maxLength: 96 }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("startMutated" as const),
      mechanism: fc.oneof({ weight: 6, arbitrary: fc.constant(SCRAM) }, {
        weight: 1,
        arbitrary: fc.constantFrom("PLAIN", "SCRAM-SHA-1", "", "scram-sha-256"),
      }),
      user: userArb,
      nonce: nonceArb,
      m: mutationArb,
    }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("finishForged" as const),
      user: userArb,
      forged: fc.constantFrom("random" as const, "proof" as const),
      bytes: fc.uint8Array({ minLength: 0, maxLength: 80 }),
      m: mutationArb,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("finishMutated" as const), m: mutationArb }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("finishFirst" as const),
      bytes: fc.uint8Array({ maxLength: 80 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "startTwice" as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("early" as const),
      op: fc.constantFrom(...EARLY_OPS),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("oversized" as const),
      extra: fc.integer({ min: 1, max: 4096 }),
    }),
  },
);

/** What one case must get: the answers in order, and whether it counts as a failed login. */
interface Outcome {
  answers: string[];
  failures: number;
}

const FAILED = `error ${ErrorCode.AUTHENTICATION_FAILED} Authentication failed`;

function describe(a: Answer, keepMessage: boolean): string {
  if (a.kind === "ok") return "ok";
  if (a.kind === "closed") return "closed";
  return keepMessage ? `error ${a.code} ${a.message}` : `error ${a.code}`;
}

async function start(
  s: RawSession,
  user: string,
  nonce: string,
): Promise<{ answer: Answer; scram: ScramClient }> {
  const scram = new ScramClient(CRYPTO, user, PASSWORD, nonce);
  return {
    answer: await s.call("AUTH_START", { mechanism: SCRAM, message: scram.first() }),
    scram,
  };
}

function serverFirstOf(a: Answer): Uint8Array {
  assert.equal(a.kind, "ok", JSON.stringify(a));
  return (a as { body: Record<string, unknown> }).body.message as Uint8Array;
}

/** Runs one case on a fresh connection; returns what came back and what the spec says. */
async function runCase(port: number, c: Case, i: number): Promise<{ got: Outcome; want: Outcome }> {
  const s = await RawSession.open(port);
  const got: Outcome = { answers: [], failures: 0 };
  const want: Outcome = { answers: [], failures: 0 };
  const nonce = `fuzz-nonce-${i.toString().padStart(8, "0")}`;
  /** A fatal answer must be followed by the broker's close. */
  const fatal = async (a: Answer, keepMessage = true): Promise<void> => {
    got.answers.push(describe(a, keepMessage));
    if (a.kind === "error") {
      got.answers.push((await s.closedWithin(CLOSE_MS_MAX)) ? "closed" : "open");
    }
  };
  try {
    assert.equal((await s.call("HELLO", HELLO_BODY)).kind, "ok");
    switch (c.kind) {
      case "startRandom": {
        const frame = encodeFrame(Op.AUTH_START, s.nextCorrelationId, c.payload);
        const a = await s.send("AUTH_START", frame);
        let decoded: { mechanism: string; message: Uint8Array | null } | null = null;
        try {
          decoded = decode(SCHEMAS.AUTH_START.request, c.payload, "AUTH_START");
        } catch {
          decoded = null;
        }
        if (decoded === null) {
          got.answers.push(describe(a, false));
          want.answers.push(`error ${ErrorCode.MALFORMED_REQUEST}`);
        } else if (decoded.mechanism !== SCRAM) {
          await fatal(a, false);
          want.answers.push(`error ${ErrorCode.AUTHENTICATION_FAILED}`, "closed");
        } else if (clientFirstAccepted(decoded.message ?? new Uint8Array(0))) {
          got.answers.push(describe(a, true));
          want.answers.push("ok");
        } else {
          await fatal(a);
          want.answers.push(FAILED, "closed");
          want.failures = 1;
        }
        break;
      }
      case "startMutated": {
        const first = mutate(enc.encode(`n,,n=${c.user},r=${c.nonce}`), c.m);
        const a = await s.call("AUTH_START", { mechanism: c.mechanism, message: first });
        if (c.mechanism !== SCRAM) {
          await fatal(a, false);
          want.answers.push(`error ${ErrorCode.AUTHENTICATION_FAILED}`, "closed");
        } else if (clientFirstAccepted(first)) {
          got.answers.push(describe(a, true));
          want.answers.push("ok");
        } else {
          await fatal(a);
          want.answers.push(FAILED, "closed");
          want.failures = 1;
        }
        break;
      }
      case "finishForged": {
        const { answer } = await start(s, c.user, nonce);
        const serverFirst = new TextDecoder().decode(serverFirstOf(answer));
        const combined = serverFirst.slice(2, serverFirst.indexOf(","));
        const proof = toBase64(
          Uint8Array.from({ length: 32 }, (_, k) => c.bytes[k % Math.max(1, c.bytes.length)] ?? k),
        );
        const forged = c.forged === "random"
          ? c.bytes
          : mutate(enc.encode(`c=biws,r=${combined},p=${proof}`), c.m);
        await fatal(await s.call("AUTH_FINISH", { message: forged }));
        want.answers.push(FAILED, "closed");
        want.failures = 1;
        break;
      }
      case "finishMutated": {
        const { answer, scram } = await start(s, USER, nonce);
        const real = await scram.final(serverFirstOf(answer));
        const sent = mutate(real, c.m);
        const a = await s.call("AUTH_FINISH", { message: sent });
        if (sameBytes(sent, real)) {
          got.answers.push(describe(a, true));
          want.answers.push("ok");
        } else {
          await fatal(a);
          want.answers.push(FAILED, "closed");
          want.failures = 1;
        }
        break;
      }
      case "finishFirst":
        await fatal(await s.call("AUTH_FINISH", { message: c.bytes }));
        want.answers.push(FAILED, "closed");
        want.failures = 1;
        break;
      case "startTwice": {
        serverFirstOf((await start(s, USER, nonce)).answer);
        await fatal((await start(s, USER, nonce)).answer);
        want.answers.push(FAILED, "closed");
        want.failures = 1;
        break;
      }
      case "early": {
        const frame = encodeFrame(Op[c.op], s.nextCorrelationId, new Uint8Array(0));
        await fatal(await s.send(c.op, frame), false);
        want.answers.push(`error ${ErrorCode.HANDSHAKE_REQUIRED}`, "closed");
        break;
      }
      case "oversized": {
        const payload = encode(SCHEMAS.AUTH_START.request, {
          mechanism: SCRAM,
          message: new Uint8Array(HANDSHAKE_BYTES_MAX + c.extra),
        });
        await fatal(
          await s.send("AUTH_START", encodeFrame(Op.AUTH_START, s.nextCorrelationId, payload)),
          false,
        );
        want.answers.push(`error ${ErrorCode.FRAME_TOO_LARGE}`, "closed");
        break;
      }
    }
  } finally {
    s.close();
  }
  return { got, want };
}

/** A client that authenticates properly and publishes until stopped; every publish must succeed. */
async function goodClient(
  port: number,
  stop: () => boolean,
): Promise<{ client: Client; done: Promise<number> }> {
  const client = await connect({ port, username: USER, password: PASSWORD });
  const done = (async () => {
    let n = 0;
    while (!stop()) {
      await client.publish("good", { value: `m${n}` });
      n++;
      await new Promise((r) => setTimeout(r, 3));
    }
    return n;
  })();
  return { client, done };
}

Deno.test(`${CASES} hostile SCRAM exchanges each get their answer and cost only their connection`, async () => {
  const deadline = Date.now() + RUN_MS_MAX;
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-hostile-auth-" });
  const env = denoEnv();
  const store = await SecurityStore.open(env.disk, dataDir);
  await store.putUser(
    USER,
    await deriveCredential(CRYPTO, PASSWORD, enc.encode("sixteen byte salt"), 4096),
  );
  let node: RunningNode | null = null;
  let stopped = false;
  let good: { client: Client; done: Promise<number> } | null = null;
  try {
    node = await startNode(env, {
      port: 0,
      broker: { dataDir, defaultPersistence: "memory", auth: "scram", superUsers: [USER] },
    });
    const port = node.addr.port;
    good = await goodClient(port, () => stopped);
    const cases = fc.sample(caseArb, { seed: SEED, numRuns: CASES });
    let next = 0;
    let expectedFailures = 0;
    const kinds = new Map<string, number>();
    const worker = async (): Promise<void> => {
      while (next < cases.length) {
        assert.ok(Date.now() < deadline, `the run took over ${RUN_MS_MAX} ms`);
        const i = next++;
        const c = cases[i]!;
        const { got, want } = await runCase(port, c, i);
        assert.deepEqual(
          got.answers,
          want.answers,
          `seed=${SEED} index=${i} case=${JSON.stringify(c)}`,
        );
        expectedFailures += want.failures;
        kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENT }, worker));
    assert.equal(kinds.size, 8, `every kind of case ran: ${JSON.stringify([...kinds])}`);
    assert.equal(node.broker.auth.failures, expectedFailures, "every failed login was counted");
    stopped = true;
    const published = await good.done;
    assert.ok(published > 0, "the good client published throughout");
    const read = await good.client.readPartition("good", 0, { messagesMax: published + 1 });
    assert.deepEqual(
      read.map((m) => m.text()),
      Array.from({ length: published }, (_, k) => `m${k}`),
    );
    const broker = node.broker;
    for (let waited = 0; broker.connectionCount > 1 && waited < CLOSE_MS_MAX; waited += 20) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(broker.connectionCount, 1, "only the good client's connection is left");
  } finally {
    stopped = true;
    await good?.done.catch(() => {});
    await good?.client.close();
    await node?.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a connection that starts SCRAM and never finishes is closed at handshakeTimeoutMs", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-auth-deadline-" });
  const handshakeTimeoutMs = 300;
  let node: RunningNode | null = null;
  try {
    node = await startNode(denoEnv(), {
      port: 0,
      broker: { dataDir, auth: "scram", handshakeTimeoutMs },
    });
    const s = await RawSession.open(node.addr.port);
    try {
      assert.equal((await s.call("HELLO", HELLO_BODY)).kind, "ok");
      const started = Date.now();
      serverFirstOf((await start(s, USER, "a-nonce-that-waits-forever")).answer);
      // The broker's answer to the silence: TIMEOUT with correlation id 0, then the close.
      const after = await s.send("PING", new Uint8Array(0));
      assert.deepEqual(
        after.kind === "error" ? after.code : after.kind,
        ErrorCode.TIMEOUT,
        JSON.stringify(after),
      );
      assert.ok(await s.closedWithin(CLOSE_MS_MAX));
      assert.ok(Date.now() - started < handshakeTimeoutMs + 2_000, "closed near the deadline");
    } finally {
      s.close();
    }
  } finally {
    await node?.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
