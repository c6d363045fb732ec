// Throughput of GregorMQ against core NATS (nats-server) measured in the same run, so the numbers
// that matter are the ratios (STYLE.md rule 7). `deno task bench:throughput [--quick] [--json F]`.
//
// Both brokers run as separate processes on 127.0.0.1; both clients run in this process, one
// scenario at a time, GregorMQ and NATS alternating. "Confirmed" means acknowledged with an offset
// for a GregorMQ produce, processed by the server (a flush round trip) for a NATS publish, and
// received by the subscriber in the produce→consume scenarios. Senders keep at most
// `windowMessages` unconfirmed messages. MB/s counts payload bytes only, 1 MB = 10^6 bytes.
// bench/suite.ts imports the machinery below (targets, flow control, child processes).

import { parseArgs } from "node:util";
import type { NatsConnection } from "nats";
import {
  type Client,
  type ClientTls,
  connect as connectGregor,
  type Consumer,
  type Producer,
  type ProducerOptions,
} from "../src/client/mod.ts";
import {
  Child,
  fmtInt,
  listenPort,
  payload,
  REPO_DIR,
  runHarness,
  sleep,
  STARTUP_MS_MAX,
  stopChild,
  withTimeout,
} from "./_harness.ts";

const USAGE = `usage: deno run -A bench/throughput.ts [options]
  --quick                 a fast smoke run (small counts, short time limits, one run)
  --json FILE             also write the results and machine info as JSON to FILE
  --runs N                measured runs per scenario and system; the median is reported (default 3)
  --consumer-window N     GregorMQ consumer windowMessages (default 10000; the client's is 1000)
  --only TEXT             run only scenarios whose name contains TEXT
  --persistence P         GregorMQ topic storage: memory (default; core NATS stores nothing) or disk
  --fsync POLICY          GregorMQ --fsync for disk topics (default: the broker's)
  --no-nats               skip the NATS baseline
  --broker-cpu-prof DIR   run the GregorMQ broker with --cpu-prof, writing the profile into DIR
  -h, --help              this text`;

/** Every broker and server listens here. */
export const HOST = "127.0.0.1";
/** Where nats-server may be when it is not on PATH (Debian puts it in /usr/sbin). */
export const NATS_SERVER_PATHS = [
  "nats-server",
  "/usr/sbin/nats-server",
  "/usr/local/sbin/nats-server",
];
/**
 * The clock is read once per this many messages (and when a receiver has caught up, which the last
 * message always does); reading it per message costs measurably.
 */
export const CLOCK_EVERY_MESSAGES = 256;
/**
 * A run stalled if no confirmation arrived for longer than this while messages were outstanding,
 * ms. A stalled run fails the benchmark: a median of runs would hide it.
 */
export const STALL_MS_MAX = 500;
/** How often a run's confirmations are sampled to find its longest gap, ms. */
const PROGRESS_SAMPLE_MS = 20;
/** A NATS publisher flushes (a PING round trip confirming what went before) every so many messages. */
const NATS_FLUSH_EVERY_MESSAGES = 1_000;

/** How the GregorMQ broker stores topics. */
interface Storage {
  /** "memory" (the default here: core NATS stores nothing either) or "disk". */
  persistence: "memory" | "disk";
  /** The broker's --fsync policy for disk topics; null leaves its default. */
  fsync: string | null;
}

/** Counts and time limits of a throughput run. */
export interface Settings {
  /** Messages per measured run at most. */
  messagesMax: number;
  /** The sender stops starting new messages after this long. */
  sendMsMax: number;
  /**
   * A sender waits this long at most for room in its window, and a finished run this long for the
   * last confirmations; a run cut short so reports what was confirmed, marked as incomplete.
   */
  drainMsMax: number;
  /** Unconfirmed messages at most; the sender waits for half of them to be confirmed. */
  windowMessages: number;
  /** GregorMQ producer linger. */
  lingerMs: number;
  /** GregorMQ consumer credit window (`windowMessages`). */
  consumerWindowMessages: number;
  /** Measured runs per scenario and system. */
  runs: number;
  /** Messages of the unmeasured warm-up per system (JIT, connection set-up). */
  warmupMessages: number;
}

/** The settings of a full run. */
export const FULL: Settings = {
  messagesMax: 1_000_000,
  sendMsMax: 3_000,
  drainMsMax: 15_000,
  windowMessages: 10_000,
  lingerMs: 2,
  // Above the client's default of 1000: a 256 KiB batch of 100 B records holds 2260, so a window
  // smaller than two batches stops delivery after every batch to wait for credit.
  consumerWindowMessages: 10_000,
  runs: 3,
  warmupMessages: 100_000,
};

/** The settings of a `--quick` run. */
export const QUICK: Settings = {
  ...FULL,
  messagesMax: 20_000,
  sendMsMax: 500,
  drainMsMax: 10_000,
  runs: 1,
  warmupMessages: 5_000,
};

/** "produce": confirmed by the broker; "e2e": confirmed by receipt at every consumer. */
export type Mode = "produce" | "e2e";

/** What one throughput measurement does; the optional fields default to 1, 1, on, "none". */
export interface Scenario {
  name: string;
  mode: Mode;
  payloadBytes: number;
  /** Sending connections; messages go to them in turn. */
  producers?: number;
  /** Receiving connections, each of which gets every message (fan-out). */
  consumers?: number;
  /** False: GregorMQ sends every message as its own batch (lingerMs 0, batchRecordsMax 1). */
  batching?: boolean;
  /** GregorMQ batch compression; NATS core has none. */
  compression?: ProducerOptions["compression"];
  /** GregorMQ topic configs, e.g. `{ persistence: "disk", fsync: "always" }`; default the broker's. */
  topicConfigs?: Record<string, string>;
  /** GregorMQ producer acks; default the client's. */
  acks?: ProducerOptions["acks"];
}

const SCENARIOS: readonly Scenario[] = [
  { name: "produce 100 B", mode: "produce", payloadBytes: 100 },
  { name: "produce 1 KiB", mode: "produce", payloadBytes: 1024 },
  { name: "produce→consume 100 B", mode: "e2e", payloadBytes: 100 },
  { name: "produce→consume 1 KiB", mode: "e2e", payloadBytes: 1024 },
];

/** One measured run. */
export interface Run {
  /** Messages sent. */
  messages: number;
  /** Messages confirmed (acknowledged, flushed or received); equals `messages` in a clean run. */
  confirmed: number;
  seconds: number;
  msgPerSec: number;
  mbPerSec: number;
  /**
   * The longest time no confirmation arrived while messages were outstanding, ms (sampled every
   * PROGRESS_SAMPLE_MS; waits for a flush or a drain count too).
   */
  longestGapMs: number;
  /** Why the run counts as stalled (a gap over STALL_MS_MAX, or messages never confirmed), or null. */
  stalled: string | null;
  /** The machine's 1-minute load average as the run ended (other work competing for the CPUs). */
  loadAverage: number;
}

/** The median run of one system in one scenario, with every run for reference. */
export interface SystemResult {
  msgPerSec: number;
  mbPerSec: number;
  runs: Run[];
}

interface ScenarioResult {
  scenario: string;
  mode: Mode;
  payloadBytes: number;
  gregormq: SystemResult;
  nats: SystemResult | null;
  /** GregorMQ msg/s divided by NATS msg/s; null without NATS. */
  ratio: number | null;
}

/** A system under test. */
export interface Target {
  /** Runs one measurement; `id` makes its topic or subject unique. */
  measure(scenario: Scenario, id: string): Promise<Run>;
}

// --- Child processes ---------------------------------------------------------------------------

/** Every child started here, stopped by `cleanUp`. */
export const children: Set<Child> = new Set<Child>();
/** Broker data directories, removed once the children are stopped. */
export const tempDirs: Set<string> = new Set<string>();

/** Starts a child, registers it for `cleanUp`, and waits for `find` to see its port. */
export async function startChild(
  name: string,
  command: string,
  opts: { args: string[]; find: (line: string) => number | null },
): Promise<{ child: Child; port: number }> {
  const child = new Child(name, command, opts.args);
  children.add(child);
  const port = await child.ready(opts.find);
  return { child, port };
}

/** Stops every child, then removes the temporary directories. Never throws. */
export async function cleanUp(): Promise<void> {
  await Promise.all([...children].map((c) => c.stop()));
  children.clear();
  for (const dir of tempDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  tempDirs.clear();
}

/**
 * The broker's storage flags for `storage`, limited to those its `--help` lists (so the harness
 * also runs against a broker from before persistence, which keeps everything in memory).
 */
export async function brokerStorageFlags(storage: Storage, dataDir: string): Promise<string[]> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/broker.ts", "--help"],
    cwd: REPO_DIR,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let usage: string;
  try {
    usage = new TextDecoder().decode((await withTimeout(child.output(), STARTUP_MS_MAX)).stdout);
  } catch (err) {
    stopChild(child, "SIGKILL");
    await child.status.catch(() => {});
    throw new Error(`cli/broker.ts --help failed: ${(err as Error).message}`);
  }
  const flags: string[] = [];
  if (usage.includes("--data-dir")) flags.push("--data-dir", dataDir);
  if (usage.includes("--persistence")) flags.push("--persistence", storage.persistence);
  else if (storage.persistence !== "memory") {
    throw new Error("This broker has no --persistence flag: it keeps topics in memory only");
  }
  if (storage.fsync !== null) {
    if (!usage.includes("--fsync")) throw new Error("This broker has no --fsync flag");
    flags.push("--fsync", storage.fsync);
  }
  return flags;
}

export function startGregor(
  flags: string[],
  cpuProfDir: string | null,
): Promise<{ child: Child; port: number }> {
  const prof = cpuProfDir === null ? [] : ["--cpu-prof", `--cpu-prof-dir=${cpuProfDir}`];
  return startChild("GregorMQ broker", Deno.execPath(), {
    args: ["run", "-A", ...prof, "cli/broker.ts", "--host", HOST, "--port", "0", ...flags],
    find: listenPort,
  });
}

/** The nats-server binary and its version, or null (with why) when it cannot be run. */
export async function findNatsServer(): Promise<
  { path: string; version: string } | { missing: string }
> {
  for (const path of NATS_SERVER_PATHS) {
    try {
      const out = await new Deno.Command(path, { args: ["--version"], stdin: "null" }).output();
      if (out.success) return { path, version: new TextDecoder().decode(out.stdout).trim() };
    } catch {
      // Not there; try the next place.
    }
  }
  return {
    missing: `nats-server not found (looked for ${NATS_SERVER_PATHS.join(", ")}); install it ` +
      "with `apt-get install -y nats-server` to get the NATS baseline",
  };
}

export function startNats(path: string): Promise<{ child: Child; port: number }> {
  // -p -1 lets the server pick a free port, which it logs.
  return startChild("nats-server", path, {
    args: ["-a", HOST, "-p", "-1"],
    find: (line) => {
      const m = /Listening for client connections on [^\s]*:(\d+)/.exec(line);
      return m === null ? null : Number(m[1]);
    },
  });
}

// --- Flow control ------------------------------------------------------------------------------

/**
 * Messages sent and not yet confirmed, at most `messagesMax`. A full window makes the sender wait
 * until half of it is confirmed, so it wakes once per half window rather than per message.
 */
export class Window {
  readonly messagesMax: number;
  outstanding = 0;
  confirmed = 0;
  failure: unknown = null;
  #waiter: (() => void) | null = null;
  /** The waiter wakes once `outstanding` is down to this. */
  #wakeAtMessages = 0;

  constructor(messagesMax: number) {
    this.messagesMax = messagesMax;
  }

  get full(): boolean {
    return this.outstanding >= this.messagesMax;
  }

  sent(messages = 1): void {
    this.outstanding += messages;
  }

  confirm(messages: number): void {
    this.outstanding -= messages;
    this.confirmed += messages;
    if (this.#waiter !== null && this.outstanding <= this.#wakeAtMessages) this.#wake();
  }

  fail(err: unknown): void {
    this.failure ??= err;
    this.#wake();
  }

  /**
   * Waits until the window is half empty. False if nothing was confirmed for `stallMsMax` (the
   * sender then stops and the run reports what was confirmed); throws if a send failed.
   */
  async room(stallMsMax: number): Promise<boolean> {
    while (this.full && this.failure === null) {
      const before = this.confirmed;
      this.#wakeAtMessages = Math.floor(this.messagesMax / 2);
      const timer = new AbortController();
      await Promise.race([
        new Promise<void>((r) => (this.#waiter = r)),
        sleep(stallMsMax, timer.signal).catch(() => {}),
      ]);
      timer.abort();
      this.#waiter = null;
      if (this.confirmed === before && this.failure === null) return false;
    }
    if (this.failure !== null) throw this.failure;
    return true;
  }

  /** Waits until every message sent is confirmed, for at most `msMax`; false if time ran out. */
  async drained(msMax: number): Promise<boolean> {
    const deadline = performance.now() + msMax;
    while (this.outstanding > 0 && this.failure === null) {
      const leftMs = deadline - performance.now();
      if (leftMs <= 0) return false;
      this.#wakeAtMessages = 0;
      const timer = new AbortController();
      await Promise.race([
        new Promise<void>((r) => (this.#waiter = r)),
        sleep(Math.min(leftMs, 50), timer.signal).catch(() => {}),
      ]);
      timer.abort();
      this.#waiter = null;
    }
    if (this.failure !== null) throw this.failure;
    return true;
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }
}

/**
 * Watches windows' confirmations while a run lasts and keeps the longest gap between two of them
 * during which messages were outstanding. It samples on a timer, so the send and confirm paths pay
 * nothing for it.
 */
export class ProgressWatch {
  readonly #windows: Window[];
  readonly #timer: ReturnType<typeof setInterval>;
  #stopped = false;
  #confirmed = 0;
  #progressAt: number;
  #longestGapMs = 0;

  constructor(windows: Window[]) {
    this.#windows = windows;
    this.#progressAt = performance.now();
    this.#timer = setInterval(() => this.#sample(), PROGRESS_SAMPLE_MS);
  }

  #sample(): void {
    const now = performance.now();
    let confirmed = 0;
    let waiting = false;
    for (const w of this.#windows) {
      confirmed += w.confirmed;
      if (w.outstanding > 0) waiting = true;
    }
    if (confirmed !== this.#confirmed || !waiting) {
      this.#confirmed = confirmed;
      this.#progressAt = now;
      return;
    }
    this.#longestGapMs = Math.max(this.#longestGapMs, now - this.#progressAt);
  }

  /** Stops watching (once; later calls change nothing); returns the longest gap, ms. */
  stop(): number {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#sample();
      clearInterval(this.#timer);
    }
    return this.#longestGapMs;
  }
}

/**
 * Sends until `messagesMax` or `sendMsMax`, whichever comes first, without awaiting single sends:
 * `send` starts one message, and the loop only yields when a window is full.
 */
export async function sendLoop(
  settings: Settings,
  io: { windows: Window[]; send: () => void },
): Promise<number> {
  const start = performance.now();
  let sent = 0;
  while (sent < settings.messagesMax) {
    if (sent % CLOCK_EVERY_MESSAGES === 0 && performance.now() - start >= settings.sendMsMax) break;
    for (const w of io.windows) {
      if (w.full && !await w.room(settings.drainMsMax)) return sent;
    }
    io.send();
    sent++;
  }
  return sent;
}

export function runOf(
  scenario: Scenario,
  { messages, confirmed, seconds, longestGapMs }: {
    messages: number;
    confirmed: number;
    seconds: number;
    longestGapMs: number;
  },
): Run {
  if (confirmed === 0 || !(seconds > 0)) {
    throw new Error(`${scenario.name}: none of ${messages} messages was confirmed`);
  }
  const msgPerSec = confirmed / seconds;
  const stalls: string[] = [];
  if (longestGapMs > STALL_MS_MAX) {
    stalls.push(
      `no confirmation for ${Math.round(longestGapMs)} ms while messages were outstanding ` +
        `(at most ${STALL_MS_MAX} ms allowed)`,
    );
  }
  if (confirmed < messages) stalls.push(`${messages - confirmed} of ${messages} never confirmed`);
  return {
    messages,
    confirmed,
    seconds,
    msgPerSec,
    mbPerSec: msgPerSec * scenario.payloadBytes / 1e6,
    longestGapMs,
    stalled: stalls.length === 0 ? null : stalls.join("; "),
    loadAverage: Deno.loadavg()[0]!,
  };
}

// --- GregorMQ ----------------------------------------------------------------------------------

/** GregorMQ on `port`: a topic per measurement, deleted afterwards. */
export function gregorTarget(
  port: number,
  settings: Settings,
  opts: { tls?: ClientTls } = {},
): Target {
  // Every request is bounded, so a hung broker fails the run instead of hanging it.
  const options = {
    host: HOST,
    port,
    requestTimeoutMs: settings.drainMsMax,
    connectTimeoutMs: STARTUP_MS_MAX,
    ...(opts.tls === undefined ? {} : { tls: opts.tls }),
  };
  return {
    async measure(scenario, id) {
      const topic = `bench-${id}`;
      const producing: Client[] = [];
      const consuming: Client[] = [];
      try {
        for (let i = 0; i < (scenario.producers ?? 1); i++) {
          producing.push(await connectGregor({ ...options, clientId: `bench-producer-${i}` }));
        }
        const admin = producing[0]!.admin;
        await admin.createTopic(topic, { configs: scenario.topicConfigs ?? {} });
        const producers = producing.map((c) => c.producer(producerOptions(scenario, settings)));
        if (scenario.mode === "produce") {
          return await gregorProduce(producers, scenario, { settings, topic });
        }
        for (let i = 0; i < (scenario.consumers ?? 1); i++) {
          consuming.push(await connectGregor({ ...options, clientId: `bench-consumer-${i}` }));
        }
        return await gregorEndToEnd(producers, consuming, { scenario, settings, topic });
      } finally {
        // The broker keeps a topic in memory up to its retention: delete it so runs don't add up.
        await producing[0]?.admin.deleteTopic(topic).catch(() => {});
        await withTimeout(
          Promise.all([...producing, ...consuming].map((c) => c.close())),
          settings.drainMsMax,
        ).catch(() => {});
      }
    },
  };
}

/** The producer options a scenario asks for. */
export function producerOptions(scenario: Scenario, settings: Settings): ProducerOptions {
  const opts: ProducerOptions = scenario.batching === false
    ? { lingerMs: 0, batchRecordsMax: 1 }
    : { lingerMs: settings.lingerMs };
  if (scenario.compression !== undefined) opts.compression = scenario.compression;
  if (scenario.acks !== undefined) opts.acks = scenario.acks;
  return opts;
}

async function gregorProduce(
  producers: Producer[],
  scenario: Scenario,
  opts: { settings: Settings; topic: string },
): Promise<Run> {
  const { settings, topic } = opts;
  const acks = new Window(settings.windowMessages);
  const message = { value: payload(scenario.payloadBytes) };
  const acked = (): void => acks.confirm(1);
  const failed = (err: unknown): void => acks.fail(err);
  let next = 0;
  const start = performance.now();
  const watch = new ProgressWatch([acks]);
  let sent = 0;
  try {
    sent = await sendLoop(settings, {
      windows: [acks],
      send: () => {
        acks.sent();
        const producer = producers[next]!;
        next = (next + 1) % producers.length;
        producer.send(topic, message).then(acked, failed);
      },
    });
    await acks.drained(settings.drainMsMax);
  } finally {
    watch.stop();
  }
  return runOf(scenario, {
    messages: sent,
    confirmed: acks.confirmed,
    seconds: (performance.now() - start) / 1000,
    longestGapMs: watch.stop(),
  });
}

async function gregorEndToEnd(
  producers: Producer[],
  consuming: Client[],
  opts: { scenario: Scenario; settings: Settings; topic: string },
): Promise<Run> {
  const { scenario, settings, topic } = opts;
  const consumers: Consumer[] = [];
  for (const c of consuming) {
    consumers.push(
      await c.subscribe(topic, {
        from: "latest",
        autoAck: true,
        windowMessages: settings.consumerWindowMessages,
      }),
    );
  }
  const acks = new Window(settings.windowMessages);
  // Every consumer may be a producer window behind.
  const received = new Window(settings.windowMessages * consumers.length);
  let lastAt = 0;
  const receiving = consumers.map((consumer) =>
    (async () => {
      for (let n = 0; n < settings.messagesMax; n++) {
        const m = await consumer.next();
        if (m === null) return;
        received.confirm(1);
        if (received.outstanding === 0 || n % CLOCK_EVERY_MESSAGES === 0) {
          lastAt = performance.now();
        }
      }
    })().catch((err) => received.fail(err))
  );
  const message = { value: payload(scenario.payloadBytes) };
  const acked = (): void => acks.confirm(1);
  const failed = (err: unknown): void => acks.fail(err);
  let next = 0;
  const start = performance.now();
  const watch = new ProgressWatch([acks, received]);
  let sent = 0;
  try {
    sent = await sendLoop(settings, {
      windows: [acks, received],
      send: () => {
        acks.sent();
        received.sent(consumers.length);
        const producer = producers[next]!;
        next = (next + 1) % producers.length;
        producer.send(topic, message).then(acked, failed);
      },
    });
    await received.drained(settings.drainMsMax);
    await acks.drained(settings.drainMsMax);
  } finally {
    watch.stop();
    // Ends the receive loops (next() resolves null) if messages went missing.
    await Promise.all(consumers.map((c) => c.close()));
    await Promise.all(receiving);
  }
  return runOf(scenario, {
    messages: sent * consumers.length,
    confirmed: received.confirmed,
    seconds: (lastAt - start) / 1000,
    longestGapMs: watch.stop(),
  });
}

// --- NATS --------------------------------------------------------------------------------------

/** `connect` of npm:nats, loaded only when nats-server is there. */
export type NatsConnect = (opts: { servers: string; name: string }) => Promise<NatsConnection>;

/** Core NATS on `port`: a subject per measurement. */
export function natsTarget(connect: NatsConnect, port: number, settings: Settings): Target {
  const servers = `${HOST}:${port}`;
  return {
    async measure(scenario, id) {
      const subject = `bench.${id}`;
      const pubs: NatsConnection[] = [];
      const subs: NatsConnection[] = [];
      try {
        for (let i = 0; i < (scenario.producers ?? 1); i++) {
          pubs.push(await connect({ servers, name: `bench-publisher-${i}` }));
        }
        if (scenario.mode === "produce") {
          return await natsProduce(pubs, scenario, { settings, subject });
        }
        for (let i = 0; i < (scenario.consumers ?? 1); i++) {
          subs.push(await connect({ servers, name: `bench-subscriber-${i}` }));
        }
        return await natsEndToEnd(pubs, subs, { scenario, settings, subject });
      } finally {
        await withTimeout(
          Promise.all([...pubs, ...subs].map((nc) => nc.close())),
          settings.drainMsMax,
        ).catch(() => {});
      }
    },
  };
}

async function natsProduce(
  pubs: NatsConnection[],
  scenario: Scenario,
  opts: { settings: Settings; subject: string },
): Promise<Run> {
  const { settings, subject } = opts;
  const flushed = new Window(settings.windowMessages);
  const value = payload(scenario.payloadBytes);
  const confirmChunk = (): void => flushed.confirm(NATS_FLUSH_EVERY_MESSAGES);
  const failed = (err: unknown): void => flushed.fail(err);
  const unflushed = pubs.map(() => 0);
  let next = 0;
  const start = performance.now();
  const watch = new ProgressWatch([flushed]);
  let sent = 0;
  try {
    sent = await sendLoop(settings, {
      windows: [flushed],
      send: () => {
        const i = next;
        next = (next + 1) % pubs.length;
        pubs[i]!.publish(subject, value);
        flushed.sent();
        if (++unflushed[i]! === NATS_FLUSH_EVERY_MESSAGES) {
          unflushed[i] = 0;
          pubs[i]!.flush().then(confirmChunk, failed);
        }
      },
    });
    // The last flush answers after everything published before it, whatever chunk it is in.
    await withTimeout(Promise.all(pubs.map((nc) => nc.flush())), settings.drainMsMax);
  } finally {
    watch.stop();
  }
  return runOf(scenario, {
    messages: sent,
    confirmed: sent,
    seconds: (performance.now() - start) / 1000,
    longestGapMs: watch.stop(),
  });
}

async function natsEndToEnd(
  pubs: NatsConnection[],
  subNcs: NatsConnection[],
  opts: { scenario: Scenario; settings: Settings; subject: string },
): Promise<Run> {
  const { scenario, settings, subject } = opts;
  const subs = subNcs.map((nc) => nc.subscribe(subject));
  // The servers must know of the subscriptions before the first publish, like "latest" above.
  await Promise.all(subNcs.map((nc) => nc.flush()));
  const received = new Window(settings.windowMessages * subs.length);
  let lastAt = 0;
  const receiving = subs.map((sub) =>
    (async () => {
      let n = 0;
      for await (const _ of sub) {
        received.confirm(1);
        if (received.outstanding === 0 || n % CLOCK_EVERY_MESSAGES === 0) {
          lastAt = performance.now();
        }
        if (++n >= settings.messagesMax) break;
      }
    })().catch((err) => received.fail(err))
  );
  const value = payload(scenario.payloadBytes);
  let next = 0;
  const start = performance.now();
  const watch = new ProgressWatch([received]);
  let sent = 0;
  try {
    sent = await sendLoop(settings, {
      windows: [received],
      send: () => {
        pubs[next]!.publish(subject, value);
        next = (next + 1) % pubs.length;
        received.sent(subs.length);
      },
    });
    await withTimeout(Promise.all(pubs.map((nc) => nc.flush())), settings.drainMsMax);
    await received.drained(settings.drainMsMax);
  } finally {
    watch.stop();
    for (const sub of subs) sub.unsubscribe();
    await Promise.all(receiving);
  }
  return runOf(scenario, {
    messages: sent * subs.length,
    confirmed: received.confirmed,
    seconds: (lastAt - start) / 1000,
    longestGapMs: watch.stop(),
  });
}

// --- Running and reporting ---------------------------------------------------------------------

/** The run with the median rate, with all of them. */
export function median(runs: Run[]): SystemResult {
  const sorted = [...runs].sort((a, b) => a.msgPerSec - b.msgPerSec);
  const mid = sorted[Math.floor(sorted.length / 2)] as Run;
  return { msgPerSec: mid.msgPerSec, mbPerSec: mid.mbPerSec, runs };
}

/** Measurements so far in this process, which makes topic and subject names unique. */
let measurements = 0;

/** One measured run; a run that left messages unconfirmed gets a note. */
export async function measureOnce(
  target: Target,
  scenario: Scenario,
  opts: { run: number; label: string; notes: string[] },
): Promise<Run> {
  // Unique per measurement: a topic is deleted after its run, but a name is never reused.
  const run = await target.measure(scenario, `${scenario.mode}-${++measurements}-${opts.run}`);
  if (run.confirmed < run.messages) {
    opts.notes.push(
      `${opts.label} ${scenario.name} run ${opts.run + 1}: only ${run.confirmed} of ` +
        `${run.messages} messages confirmed (nothing moved for the drain time); marked * in the ` +
        "table, the rate counts confirmed ones",
    );
  }
  return run;
}

/** The machine, for reading the numbers; load averages tell whether something else competed. */
export async function machineInfo(
  nats: string | null,
  loadAverageAtStart: number[],
): Promise<Record<string, unknown>> {
  let cpuModel = "unknown";
  try {
    const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpuModel;
  } catch {
    // Not Linux; the model stays unknown.
  }
  return {
    cpuModel,
    cores: navigator.hardwareConcurrency,
    os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
    loadAverageAtStart,
    loadAverageAtEnd: Deno.loadavg(),
    memoryBytes: Deno.systemMemoryInfo().total,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    natsServer: nats,
  };
}

function table(results: ScenarioResult[]): string {
  const header = [
    "scenario",
    "GregorMQ msg/s",
    "GregorMQ MB/s",
    "NATS msg/s",
    "NATS MB/s",
    "GregorMQ/NATS",
  ];
  const rows = results.map((r) => [
    r.scenario,
    fmtInt(r.gregormq.msgPerSec) + (incomplete(r.gregormq) ? "*" : ""),
    r.gregormq.mbPerSec.toFixed(1),
    r.nats === null ? "-" : fmtInt(r.nats.msgPerSec) + (incomplete(r.nats) ? "*" : ""),
    r.nats === null ? "-" : r.nats.mbPerSec.toFixed(1),
    r.ratio === null ? "-" : r.ratio.toFixed(3),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function incomplete(r: SystemResult): boolean {
  return r.runs.some((run) => run.confirmed < run.messages);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      json: { type: "string" },
      runs: { type: "string" },
      "consumer-window": { type: "string" },
      persistence: { type: "string", default: "memory" },
      fsync: { type: "string" },
      only: { type: "string" },
      "no-nats": { type: "boolean", default: false },
      "broker-cpu-prof": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const startedAt = new Date().toISOString();
  const loadAverageAtStart = Deno.loadavg();
  const settings: Settings = { ...(values.quick ? QUICK : FULL) };
  if (values.runs !== undefined) {
    const runs = Number(values.runs);
    if (!Number.isInteger(runs) || runs < 1 || runs > 100) {
      throw new RangeError(`--runs must be a whole number from 1 to 100, got ${values.runs}`);
    }
    settings.runs = runs;
  }
  if (values["consumer-window"] !== undefined) {
    const w = Number(values["consumer-window"]);
    if (!Number.isInteger(w) || w < 1 || w > 1_000_000) {
      throw new RangeError(
        `--consumer-window must be 1 to 1000000, got ${values["consumer-window"]}`,
      );
    }
    settings.consumerWindowMessages = w;
  }
  const persistence = values.persistence;
  if (persistence !== "memory" && persistence !== "disk") {
    throw new RangeError(`--persistence must be memory or disk, got ${persistence}`);
  }
  const storage: Storage = { persistence, fsync: values.fsync ?? null };
  const scenarios = SCENARIOS.filter((s) =>
    values.only === undefined || s.name.includes(values.only)
  );
  if (scenarios.length === 0) throw new RangeError(`No scenario matches --only ${values.only}`);
  const notes: string[] = [];

  let natsServer: { path: string; version: string } | null = null;
  let natsConnect: NatsConnect | null = null;
  if (values["no-nats"]) {
    notes.push("NATS baseline skipped (--no-nats): no ratios");
  } else {
    const found = await findNatsServer();
    if ("missing" in found) {
      notes.push(`NATS baseline skipped: ${found.missing}`);
    } else {
      try {
        natsConnect = (await import("nats")).connect as NatsConnect;
        natsServer = found;
      } catch (err) {
        notes.push(`NATS baseline skipped: cannot load the nats client: ${(err as Error).message}`);
      }
    }
  }

  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-bench-" });
  tempDirs.add(dataDir);
  const flags = await brokerStorageFlags(storage, dataDir);
  const gregor = await startGregor(flags, values["broker-cpu-prof"] ?? null);
  const nats = natsServer === null ? null : await startNats(natsServer.path);
  console.error(
    `GregorMQ broker pid ${gregor.child.pid} on ${HOST}:${gregor.port}` +
      (nats === null ? "" : `; nats-server pid ${nats.child.pid} on ${HOST}:${nats.port}`),
  );
  const gregorT = gregorTarget(gregor.port, settings);
  const natsT = nats === null || natsConnect === null
    ? null
    : natsTarget(natsConnect, nats.port, settings);

  const warmup: Scenario = { name: "warm-up", mode: "e2e", payloadBytes: 100 };
  const warm = { ...settings, messagesMax: settings.warmupMessages };
  await gregorTarget(gregor.port, warm).measure(warmup, "warmup");
  if (natsConnect !== null && nats !== null) {
    await natsTarget(natsConnect, nats.port, warm).measure(warmup, "warmup");
  }

  const results: ScenarioResult[] = [];
  for (const scenario of scenarios) {
    // Alternate the systems run by run, so a drift in machine load hits both alike.
    const gRuns: Run[] = [];
    const nRuns: Run[] = [];
    for (let run = 0; run < settings.runs; run++) {
      gRuns.push(await measureOnce(gregorT, scenario, { run, label: "GregorMQ", notes }));
      if (natsT !== null) {
        nRuns.push(await measureOnce(natsT, scenario, { run, label: "NATS", notes }));
      }
    }
    const g = median(gRuns);
    const n = natsT === null ? null : median(nRuns);
    results.push({
      scenario: scenario.name,
      mode: scenario.mode,
      payloadBytes: scenario.payloadBytes,
      gregormq: g,
      nats: n,
      ratio: n === null ? null : g.msgPerSec / n.msgPerSec,
    });
    console.error(
      `${scenario.name}: GregorMQ ${fmtInt(g.msgPerSec)} msg/s` +
        (n === null ? "" : `, NATS ${fmtInt(n.msgPerSec)} msg/s`),
    );
  }

  console.log(table(results));
  const stalls: string[] = [];
  for (const r of results) {
    for (const [label, sys] of [["GregorMQ", r.gregormq], ["NATS", r.nats]] as const) {
      for (const [i, run] of (sys?.runs ?? []).entries()) {
        console.log(
          `${r.scenario}, ${label} run ${i + 1}: ${fmtInt(run.msgPerSec)} msg/s, ` +
            `${run.confirmed} of ${run.messages} confirmed, longest gap ` +
            `${Math.round(run.longestGapMs)} ms, load ${run.loadAverage.toFixed(2)}` +
            (run.stalled === null ? "" : `  STALLED (${run.stalled})`),
        );
        if (run.stalled !== null && label === "GregorMQ") {
          stalls.push(`${r.scenario} run ${i + 1}: ${run.stalled}`);
        }
      }
    }
  }
  for (const n of notes) console.log(`note: ${n}`);
  if (values.json !== undefined) {
    const report = {
      benchmark: "throughput",
      startedAt,
      quick: values.quick,
      settings,
      storage,
      brokerFlags: flags.map((f) => (f === dataDir ? "<temporary directory>" : f)),
      machine: await machineInfo(natsServer?.version ?? null, loadAverageAtStart),
      results,
      notes,
    };
    await Deno.writeTextFile(values.json, JSON.stringify(report, null, 2) + "\n");
    console.error(`wrote ${values.json}`);
  }
  if (stalls.length > 0) {
    throw new Error(`${stalls.length} GregorMQ run(s) stalled:\n${stalls.join("\n")}`);
  }
}

if (import.meta.main) await runHarness("throughput", main, cleanUp);
