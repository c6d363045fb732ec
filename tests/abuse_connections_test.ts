// Abuse of the connection layer against a real broker process: oversized frames before the
// handshake, senders of one byte at a time, floods of connections that never say HELLO, a client at
// the connection cap, and slow HTTP clients against /healthz. For each, the broker stays up, a
// well-behaved client keeps publishing and consuming, nothing acknowledged is lost, and the
// broker's resident memory stays bounded and comes back after the abuse.

import assert from "node:assert/strict";
import { connect } from "../src/client/mod.ts";
import { ErrorCode, errorName, GregorError } from "../src/protocol/errors.ts";
import {
  encodeFrame,
  Flag,
  type Frame,
  FrameParser,
  HEADER_BYTES,
  PROTOCOL_VERSION,
  writeHeader,
} from "../src/protocol/frame.ts";
import {
  decode,
  encode,
  ERROR_SCHEMA,
  type ErrorPayload,
  Op,
  SCHEMAS,
} from "../src/protocol/messages.ts";
import { type BrokerProcess, killAll, sleep, spawnBroker } from "./_broker_process.ts";

/** Connections that each announce a 16 MiB HELLO. */
const BIG_HELLO_CONNECTIONS = 100;
/** The payload a big HELLO announces: the broker's default payloadBytesMax. */
const BIG_HELLO_PAYLOAD_BYTES = 16 * 1024 * 1024;
/** Payload bytes each big HELLO tries to send, in chunks. */
const BIG_HELLO_SENT_BYTES = 2 * 1024 * 1024;
const BIG_HELLO_CHUNK_BYTES = 64 * 1024;
/** Growth of the broker's RSS allowed while the big HELLOs arrive. */
const BIG_HELLO_RSS_GROWTH_BYTES_MAX = 64 * 1024 * 1024;

/** Connections sending a HELLO one byte at a time, and the gap between their bytes. */
const SLOW_CONNECTIONS = 50;
const SLOW_BYTE_GAP_MS = 500;
/** The handshake deadline the slow-sender broker runs with, ms. */
const SLOW_HANDSHAKE_TIMEOUT_MS = 2_000;
/** Slack past the deadline for the broker's sweep and the close to arrive, ms. */
const SLOW_CLOSE_SLACK_MS = 2_500;

/**
 * Connections opened that never send a byte, at most this many connecting at once. The test's own
 * process holds them all, so a lower open-file limit here sizes the flood down (see floodSize).
 */
const FLOOD_CONNECTIONS = 2_000;
/** Descriptors this process keeps for itself beside the flood. */
const FLOOD_OWN_DESCRIPTORS = 200;
const FLOOD_CONNECTING_MAX = 100;
/** The flood broker's caps: all connections, and those still waiting for HELLO. */
const FLOOD_CONNECTIONS_MAX = 1_000;
const FLOOD_HANDSHAKING_MAX = 200;
/** Real clients that connect, publish and consume during and after the flood. */
const FLOOD_REAL_CLIENTS = 5;
/**
 * RSS after the abuse may exceed the idle figure by this much at most, bytes. On a loaded machine
 * V8 gives back its grown heap late or not at all within the wait (seen: 48 MiB over idle with the
 * suite running beside it, 8 MiB on a quiet one), so the bound is what a leak would pass: 64 MiB
 * over 2,000 connections is 32 KiB left behind by each, half of one read buffer.
 */
const RSS_RECOVERY_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Time the broker gets to give memory back after the abuse ends, ms. V8 keeps the heap it grew
 * until its memory reducer runs, which it does some 10 to 30 s after a full GC once allocation
 * has calmed down; on a machine loaded by the rest of the suite that took up to about 35 s, so the
 * bound leaves room (a broker that recovers sooner ends the wait sooner).
 */
const RSS_RECOVERY_MS_MAX = 90_000;

/** The connection cap of the broker a real client is refused by. */
const CAPPED_CONNECTIONS_MAX = 16;
/** A refused connect must fail well before its own timeout. */
const CAPPED_CONNECT_TIMEOUT_MS = 10_000;
const CAPPED_REFUSAL_MS_MAX = 3_000;

/** Slow HTTP clients: each sends its request head one byte per gap, and reconnects when cut. */
const SLOW_HTTP_CLIENTS = 200;
const SLOW_HTTP_BYTE_GAP_MS = 1_000;
/** Health checks made under that load, each of which must answer 200 within the deadline. */
const HEALTH_CHECKS = 10;
const HEALTH_CHECK_MS_MAX = 1_000;

/** A real client must finish connecting this fast while abuse goes on, ms. */
const REAL_CONNECT_TIMEOUT_MS = 5_000;
/** A raw connection the broker must close gets this long for it, ms. */
const CLOSE_WAIT_MS_MAX = 5_000;
/** Time acknowledged messages get to reach the well-behaved consumer once publishing stops, ms. */
const CONSUME_WAIT_MS_MAX = 10_000;
/** Gap between the well-behaved client's publishes, ms: steady traffic, not a load test. */
const TRAFFIC_GAP_MS = 20;

const TOPIC = "abuse.orders";

// --- Raw connections -------------------------------------------------------------------------

function helloFrame(correlationId: number): Uint8Array {
  return encodeFrame(
    Op.HELLO,
    correlationId,
    encode(SCHEMAS.HELLO.request, {
      versionMin: 1,
      versionMax: 1,
      clientId: "abuser",
      credential: null,
    }),
  );
}

/** A header announcing a HELLO of `payloadLength` bytes, with no payload. */
function helloHeader(correlationId: number, payloadLength: number): Uint8Array {
  const header = new Uint8Array(HEADER_BYTES);
  writeHeader(header, {
    version: PROTOCOL_VERSION,
    flags: 0,
    opcode: Op.HELLO,
    correlationId,
    payloadLength,
  });
  return header;
}

/** A connection that speaks bytes, not the client: it records the frames the broker sends. */
class Raw {
  readonly frames: Frame[] = [];
  /** How the broker's side ended: a clean close or a reset. */
  readonly ended: Promise<"eof" | "reset">;
  #over = false;
  readonly #conn: Deno.TcpConn;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.ended = this.#readLoop().finally(() => (this.#over = true));
  }

  static async open(port: number): Promise<Raw> {
    return new Raw(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /**
   * Like open, but a connect the kernel turns away (a full listen queue may be answered with a
   * reset, depending on the kernel's settings) or one past this process's own descriptor limit
   * gives the error's name instead of throwing: a flood counts those rather than dying of them.
   */
  static async tryOpen(port: number): Promise<Raw | string> {
    try {
      return await Raw.open(port);
    } catch (err) {
      return err instanceof Error ? err.name : String(err);
    }
  }

  /** True once the broker's side ended. */
  get over(): boolean {
    return this.#over;
  }

  async #readLoop(): Promise<"eof" | "reset"> {
    const parser = new FrameParser({ payloadBytesMax: 1024 * 1024 });
    const buf = new Uint8Array(4096);
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) return "eof";
        parser.push(buf.slice(0, n));
        for (let r = parser.next(); r.kind === "frame"; r = parser.next()) {
          this.frames.push(r.frame);
        }
      }
    } catch {
      return "reset";
    }
  }

  /** Writes all of `bytes`; false if the connection is gone. */
  async write(bytes: Uint8Array): Promise<boolean> {
    try {
      for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
      return true;
    } catch {
      return false;
    }
  }

  /** The error frames received, as "CODE#correlationId: message". */
  errors(): string[] {
    return this.frames.filter((f) => (f.flags & Flag.ERROR) !== 0).map((f) => {
      const e = decode<ErrorPayload>(ERROR_SCHEMA, f.payload, "error");
      return `${errorName(e.code) ?? e.code}#${f.correlationId}: ${e.message}`;
    });
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** Resolves `p`, or "late" if it takes longer than `ms`. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | "late"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<"late">((r) => (timer = setTimeout(() => r("late"), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** FLOOD_CONNECTIONS, or fewer if this process's soft open-file limit cannot hold that many. */
async function floodSize(): Promise<number> {
  const limits = await Deno.readTextFile("/proc/self/limits").catch(() => "");
  const m = /^Max open files\s+(\d+)/m.exec(limits);
  if (m === null) return FLOOD_CONNECTIONS;
  return Math.min(FLOOD_CONNECTIONS, Number(m[1]) - FLOOD_OWN_DESCRIPTORS);
}

// --- The broker process and its memory -------------------------------------------------------

/** The broker's resident set size, bytes (VmRSS in /proc/<pid>/status). */
async function rssBytes(proc: BrokerProcess): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${proc.child.pid}/status`);
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (m === null) throw new Error(`No VmRSS in /proc/${proc.child.pid}/status`);
  return Number(m[1]) * 1024;
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

/** Samples RSS every 100 ms until stopped; keeps the peak. */
class RssPeak {
  peak = 0;
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(proc: BrokerProcess) {
    this.#done = (async () => {
      while (!this.#stopped) {
        this.peak = Math.max(this.peak, await rssBytes(proc).catch(() => 0));
        await sleep(100);
      }
    })();
  }

  async stop(): Promise<number> {
    this.#stopped = true;
    await this.#done;
    return this.peak;
  }
}

/** A well-behaved client publishing acknowledged messages and consuming them throughout. */
class Traffic {
  readonly acked = new Map<number, string>();
  readonly seen = new Map<number, string>();
  errors: string[] = [];
  #stopping = false;
  readonly #done: Promise<void>;

  private constructor(done: (t: Traffic) => Promise<void>) {
    this.#done = done(this);
  }

  static async start(port: number): Promise<Traffic> {
    const client = await connect({ port, connectTimeoutMs: REAL_CONNECT_TIMEOUT_MS });
    await client.admin.createTopic(TOPIC, { partitions: 1 });
    const consumer = await client.subscribe(TOPIC, { from: "earliest" });
    return new Traffic(async (t) => {
      const consuming = (async () => {
        for await (const m of consumer) {
          t.seen.set(m.offset, m.text());
          m.ack();
        }
      })().catch((err) => t.errors.push(`consume: ${(err as Error).message}`));
      for (let i = 0; !t.#stopping; i++) {
        const value = `order ${i}`;
        try {
          t.acked.set(await client.publish(TOPIC, { value }), value);
        } catch (err) {
          t.errors.push(`publish ${i}: ${(err as Error).message}`);
        }
        await sleep(TRAFFIC_GAP_MS);
      }
      // Everything acknowledged should arrive; what has not within the wait is reported lost.
      for (
        let waited = 0;
        t.seen.size < t.acked.size && waited < CONSUME_WAIT_MS_MAX;
        waited += 20
      ) {
        await sleep(20);
      }
      await consumer.close().catch(() => {});
      await within(consuming, CONSUME_WAIT_MS_MAX);
      await client.close();
    });
  }

  /** Stops publishing and consuming (idempotent). */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#done;
  }

  /** Stops; checks every acknowledged message was consumed at its offset. */
  async finish(): Promise<number> {
    await this.stop();
    assert.deepEqual(this.errors, [], "the well-behaved client's publishes all succeed");
    assert.ok(this.acked.size > 0, "the well-behaved client published throughout");
    for (const [offset, value] of this.acked) {
      assert.equal(this.seen.get(offset), value, `acknowledged offset ${offset} was consumed`);
    }
    return this.acked.size;
  }
}

/** A real client connects, publishes and reads back one message; the time it took, ms. */
async function realClientRoundTrip(port: number, label: string): Promise<number> {
  const start = Date.now();
  const client = await connect({ port, connectTimeoutMs: REAL_CONNECT_TIMEOUT_MS });
  try {
    const value = `real ${label}`;
    const offset = await client.publish(TOPIC, { value });
    const sub = await client.subscribe(TOPIC, { from: { offset } });
    for await (const m of sub) {
      assert.equal(m.text(), value);
      m.ack();
      break;
    }
    await sub.close();
  } finally {
    await client.close();
  }
  return Date.now() - start;
}

/** The broker's RSS once settled: the median of five samples a second apart. */
async function settledRss(proc: BrokerProcess): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(await rssBytes(proc));
    await sleep(200);
  }
  return samples.sort((a, b) => a - b)[2]!;
}

/**
 * Starts a broker process with `flags`, a well-behaved client on it and, after a warm-up, measures
 * its idle RSS; runs `body`; then checks the traffic lost nothing and the broker is still alive.
 */
function abuseTest(
  name: string,
  flags: string[],
  body: (
    ctx: { proc: BrokerProcess; port: number; metricsPort: number; idleRss: number },
  ) => Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const dataDir = await Deno.makeTempDir({ prefix: "gregormq-abuse-" });
      const proc = await spawnBroker([
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--data-dir",
        dataDir,
        ...flags,
      ]);
      let traffic: Traffic | null = null;
      try {
        const port = Number(proc.listen.listen.split(":").pop());
        const metricsPort = Number(proc.listen.metrics?.split(":").pop());
        traffic = await Traffic.start(port);
        // A real client's first round trip loads what a real client needs, before measuring idle.
        await realClientRoundTrip(port, "warm-up");
        await sleep(1_000);
        const idleRss = await settledRss(proc);
        await body({ proc, port, metricsPort, idleRss }).catch((err) => {
          // What the broker said is the first thing to read when it failed a client.
          console.error(`broker output:\n${proc.lines.slice(-40).join("\n")}`);
          throw err;
        });
        const published = await traffic.finish();
        assert.ok(published > 0);
        await realClientRoundTrip(port, "after");
        const status = await within(proc.child.status, 0);
        assert.equal(status, "late", `the broker exited: ${proc.lines.join("\n")}`);
      } finally {
        await traffic?.stop();
        await killAll([proc]);
        await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      }
    },
  });
}

/** Waits until the broker's RSS is within the allowed fraction of `idle`; the last figure. */
async function rssRecovered(proc: BrokerProcess, idle: number): Promise<number> {
  const deadline = Date.now() + RSS_RECOVERY_MS_MAX;
  let now = await settledRss(proc);
  while (now > idle + RSS_RECOVERY_BYTES_MAX && Date.now() < deadline) {
    await sleep(1_000);
    now = await settledRss(proc);
  }
  return now;
}

// --- The tests -------------------------------------------------------------------------------

abuseTest(
  "HELLOs announcing 16 MiB get FRAME_TOO_LARGE and a close; the broker's memory stays low",
  [],
  async ({ proc, port, idleRss }) => {
    const raws = await Promise.all(
      Array.from({ length: BIG_HELLO_CONNECTIONS }, () => Raw.open(port)),
    );
    const rss = new RssPeak(proc);
    const chunk = new Uint8Array(BIG_HELLO_CHUNK_BYTES).fill(0x61);
    await Promise.all(raws.map(async (raw, i) => {
      await raw.write(helloHeader(i + 1, BIG_HELLO_PAYLOAD_BYTES));
      // The broker answers from the header alone; a sender that goes on anyway costs it nothing.
      await within(raw.ended, 1_000);
      for (let sent = 0; sent < BIG_HELLO_SENT_BYTES && !raw.over; sent += chunk.length) {
        if (!await raw.write(chunk)) break;
      }
    }));
    const ends = await Promise.all(raws.map((r) => within(r.ended, CLOSE_WAIT_MS_MAX)));
    const peak = await rss.stop();
    for (const r of raws) r.close();
    console.log(`big HELLOs: idle RSS ${mib(idleRss)}, peak ${mib(peak)}`);
    raws.forEach((raw, i) => {
      const errors = raw.errors();
      assert.equal(errors.length, 1, `connection ${i}: ${JSON.stringify(errors)}`);
      assert.match(
        errors[0]!,
        new RegExp(`^FRAME_TOO_LARGE#${i + 1}: Frame payload of 16777216 bytes .* before HELLO`),
      );
      assert.notEqual(ends[i], "late", `connection ${i} was not closed`);
    });
    assert.ok(
      peak < idleRss + BIG_HELLO_RSS_GROWTH_BYTES_MAX,
      `RSS peaked at ${mib(peak)}, idle ${mib(idleRss)}`,
    );
  },
);

abuseTest(
  "connections sending their HELLO one byte at a time are closed by the handshake deadline",
  ["--handshake-timeout-ms", String(SLOW_HANDSHAKE_TIMEOUT_MS)],
  async ({ port }) => {
    const hello = helloFrame(7);
    const raws = await Promise.all(Array.from({ length: SLOW_CONNECTIONS }, () => Raw.open(port)));
    const opened = Date.now();
    const closedAfterMs: number[] = [];
    await Promise.all(raws.map(async (raw, i) => {
      // The HELLO would take SLOW_BYTE_GAP_MS × its length to arrive; the deadline comes first.
      for (const byte of hello.subarray(0, hello.length - 1)) {
        if (raw.over || !await raw.write(Uint8Array.of(byte))) break;
        if (Date.now() - opened > SLOW_HANDSHAKE_TIMEOUT_MS + SLOW_CLOSE_SLACK_MS) break;
        await Promise.race([sleep(SLOW_BYTE_GAP_MS), raw.ended]);
      }
      await within(raw.ended, 1);
      closedAfterMs[i] = raw.over ? Date.now() - opened : Infinity;
    }));
    // Meanwhile real clients were not held up.
    await realClientRoundTrip(port, "beside slow senders");
    for (const r of raws) r.close();
    raws.forEach((raw, i) => {
      assert.ok(
        closedAfterMs[i]! <= SLOW_HANDSHAKE_TIMEOUT_MS + SLOW_CLOSE_SLACK_MS,
        `slow connection ${i} was still open after ${
          SLOW_HANDSHAKE_TIMEOUT_MS + SLOW_CLOSE_SLACK_MS
        } ms`,
      );
      assert.deepEqual(raw.errors(), [
        `TIMEOUT#0: No HELLO within ${SLOW_HANDSHAKE_TIMEOUT_MS} ms of connecting`,
      ]);
    });
  },
);

abuseTest(
  "a flood of connections that never say HELLO does not lock real clients out; RSS comes back",
  [
    "--connections-max",
    String(FLOOD_CONNECTIONS_MAX),
    "--handshaking-connections-max",
    String(FLOOD_HANDSHAKING_MAX),
  ],
  async ({ proc, port, idleRss }) => {
    const flood = await floodSize();
    const raws: Raw[] = [];
    const notOpened = new Map<string, number>();
    let next = 0;
    const opening = Promise.all(
      Array.from({ length: FLOOD_CONNECTING_MAX }, async () => {
        while (next < flood) {
          next++;
          const raw = await Raw.tryOpen(port);
          if (typeof raw === "string") notOpened.set(raw, (notOpened.get(raw) ?? 0) + 1);
          else raws.push(raw);
        }
      }),
    );
    // A real client connects while the flood is under way, and again once it is all open.
    const during = await realClientRoundTrip(port, "during the flood");
    await opening;
    const peak = await rssBytes(proc);
    const after: number[] = [];
    for (let i = 0; i < FLOOD_REAL_CLIENTS; i++) {
      after.push(await realClientRoundTrip(port, `after the flood ${i}`));
    }
    await Promise.all(raws.map((r) => within(r.ended, 1)));
    const closed = raws.filter((r) => r.over).length;
    const evicted =
      raws.filter((r) => r.errors().some((e) => /^TIMEOUT#0: Closed to make room/.test(e)))
        .length;
    for (const r of raws) r.close();
    await Promise.all(raws.map((r) => r.ended));
    const recovered = await rssRecovered(proc, idleRss);
    console.log(
      `flood: ${flood} connections, ${raws.length} opened (not opened: ${
        JSON.stringify(Object.fromEntries(notOpened))
      }), ${closed} closed by the broker (${evicted} to make room); real clients took ${during} ` +
        `ms during, ${after.join("/")} ms after; RSS idle ${mib(idleRss)}, flood ${
          mib(peak)
        }, after ${mib(recovered)}`,
    );
    // Most of the flood must get in, or the test says nothing about what the broker does with it.
    assert.ok(
      raws.length >= flood / 2,
      `only ${raws.length} of ${flood} connections opened: ${JSON.stringify([...notOpened])}`,
    );
    assert.ok(
      closed >= raws.length - FLOOD_HANDSHAKING_MAX,
      `only ${closed} of ${raws.length} silent connections were closed`,
    );
    assert.ok(
      recovered <= idleRss + RSS_RECOVERY_BYTES_MAX,
      `RSS ${mib(recovered)} after the flood, idle ${mib(idleRss)}`,
    );
  },
);

abuseTest(
  "a client refused at the connection cap gets the broker's LIMIT_EXCEEDED at once, not a timeout",
  ["--connections-max", String(CAPPED_CONNECTIONS_MAX)],
  async ({ port }) => {
    // The traffic client holds one slot; handshaken raw connections take the rest.
    const raws: Raw[] = [];
    for (let i = 1; i < CAPPED_CONNECTIONS_MAX; i++) {
      const raw = await Raw.open(port);
      await raw.write(helloFrame(i));
      raws.push(raw);
    }
    for (const [i, raw] of raws.entries()) {
      for (let waited = 0; raw.frames.length === 0 && waited < CLOSE_WAIT_MS_MAX; waited += 10) {
        await sleep(10);
      }
      assert.deepEqual(raw.errors(), [], `raw connection ${i} handshakes`);
      assert.equal(raw.frames.length, 1, `raw connection ${i} got its HELLO response`);
    }
    const start = Date.now();
    const err = await connect({ port, connectTimeoutMs: CAPPED_CONNECT_TIMEOUT_MS }).then(
      (c) => (c.close(), null),
      (e) => e as Error,
    );
    const tookMs = Date.now() - start;
    assert.ok(err instanceof GregorError, `connect failed with ${err}`);
    assert.equal(err.code, ErrorCode.LIMIT_EXCEEDED);
    assert.match(err.message, new RegExp(`Connection limit of ${CAPPED_CONNECTIONS_MAX} reached`));
    assert.ok(tookMs < CAPPED_REFUSAL_MS_MAX, `the refusal took ${tookMs} ms`);
    // A slot freed is a slot a real client gets.
    raws.pop()!.close();
    await sleep(200);
    await realClientRoundTrip(port, "after a slot was freed");
    for (const r of raws) r.close();
  },
);

/** One GET on the metrics port: status and body, or the failure, within `ms`. */
async function httpGet(port: number, path: string, ms: number): Promise<string> {
  const attempt = (async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const req = new TextEncoder().encode(`GET ${path} HTTP/1.1\r\nHost: probe\r\n\r\n`);
      for (let at = 0; at < req.length;) at += await conn.write(req.subarray(at));
      const chunks: Uint8Array[] = [];
      const buf = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        chunks.push(buf.slice(0, n));
      }
      return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
    } finally {
      conn.close();
    }
  })().catch((err) => `failed: ${(err as Error).message}`);
  const r = await within(attempt, ms);
  return r === "late" ? `no answer within ${ms} ms` : r;
}

abuseTest(
  "/healthz and /metrics answer while 200 slow HTTP clients hold connections open",
  [],
  async ({ metricsPort }) => {
    let stop = false;
    let slowCut = 0;
    const head = new TextEncoder().encode("GET /metrics HTTP/1.1\r\nHost: slow\r\n\r\n");
    const slow = Array.from({ length: SLOW_HTTP_CLIENTS }, async () => {
      while (!stop) {
        let conn: Deno.TcpConn;
        try {
          conn = await Deno.connect({ hostname: "127.0.0.1", port: metricsPort });
        } catch {
          await sleep(SLOW_HTTP_BYTE_GAP_MS);
          continue;
        }
        try {
          for (const byte of head.subarray(0, head.length - 1)) {
            if (stop) break;
            await conn.write(Uint8Array.of(byte));
            await sleep(SLOW_HTTP_BYTE_GAP_MS);
          }
        } catch {
          slowCut++;
          await sleep(SLOW_HTTP_BYTE_GAP_MS);
        } finally {
          conn.close();
        }
      }
    });
    try {
      // Every slow client has connected and sent a few bytes.
      await sleep(3 * SLOW_HTTP_BYTE_GAP_MS);
      const answers: string[] = [];
      for (let i = 0; i < HEALTH_CHECKS; i++) {
        answers.push(await httpGet(metricsPort, "/healthz", HEALTH_CHECK_MS_MAX));
        await sleep(200);
      }
      const metrics = await httpGet(metricsPort, "/metrics", 2 * HEALTH_CHECK_MS_MAX);
      console.log(`slow HTTP: ${slowCut} slow connections cut by the server`);
      const failed = answers.filter((a) => !/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nok\n$/.test(a));
      assert.deepEqual(failed, [], `${failed.length} of ${HEALTH_CHECKS} health checks failed`);
      assert.match(metrics, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(metrics, /\ngregormq_connections_open \d+\n/);
    } finally {
      stop = true;
      await Promise.all(slow);
    }
  },
);
