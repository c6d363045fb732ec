// The benchmark suite of issue 9: every scenario against GregorMQ and a NATS peer (core, JetStream
// file storage, a JetStream cluster) in one run, with the ratio GregorMQ / NATS and the issue's
// target beside each row (STYLE.md rule 7). `deno task bench [--quick] [--json FILE] [--only T]`.
// docs/performance.md says what each section measures and holds the latest full table.

import { parseArgs } from "node:util";
import type { NatsConnection } from "nats";
import { type Client, connect as connectGregor } from "../src/client/mod.ts";
import { haveOpenssl, makeTestCerts } from "../tests/_tls_certs.ts";
import { type LatencyReport, StallWatch } from "./_latency_consumer.ts";
import {
  Child,
  fmtInt,
  listenPort,
  median as medianOf,
  mustRss,
  payload,
  percentile,
  REPO_DIR,
  rssMiB,
  runHarness,
  sleep,
  STARTUP_MS_MAX,
  wallMs,
  withTimeout,
} from "./_harness.ts";
import {
  addFileStream,
  freePort,
  jetStreamPublish,
  jetStreamSyncPublish,
  natsAt,
  natsListenPort,
  startJetStream,
  startJetStreamCluster,
} from "./_nats.ts";
import {
  children,
  cleanUp,
  findNatsServer,
  FULL as THROUGHPUT_FULL,
  gregorTarget,
  HOST,
  machineInfo,
  measureOnce,
  median,
  type NatsConnect,
  natsTarget,
  QUICK as THROUGHPUT_QUICK,
  type Run,
  type Scenario,
  type Settings,
  startChild,
  startNats,
  type Target,
  tempDirs,
} from "./throughput.ts";

const USAGE = `usage: deno task bench [options]   (deno run -A bench/suite.ts)
  --quick       a smoke run of a few seconds per section (tiny counts); numbers mean little
  --json FILE   also write every row and the machine as JSON to FILE
  --only TEXT   run only the rows whose section or scenario contains TEXT (case-insensitive)
  --runs N      measured runs of the rows that carry a target (default 3; the median is shown,
                every run is listed under the table)
  --no-nats     skip every NATS peer
  -h, --help    this text`;

/** Counts and time limits of one suite run; every loop below is bounded by them. */
interface SuiteSettings {
  /** Sections 1, 2 and 4: the throughput harness's settings. */
  throughput: Settings;
  /** Measured runs of the rows that carry a target (median, every run listed); others get one. */
  targetRuns: number;
  /** Section 2: synchronous produces / publishes, at most this many and this long. */
  syncMessagesMax: number;
  syncMsMax: number;
  /** Section 3: each fixed rate is held this long, ms. */
  latencyMs: number;
  latencyRates: number[];
  /** Section 3: late deliveries are awaited this long after the last send, ms. */
  latencyDrainMs: number;
  /** Section 5: load with a stalled consumer lasts this long, ms; RSS is sampled this often. */
  rssLoadMs: number;
  rssSampleMs: number;
  /** Section 5: an idle process is measured after settling this long, ms. */
  rssSettleMs: number;
  /** Section 6: start-up measured this many times (median). */
  startRuns: number;
  /** Section 6: the log written before the SIGKILL, bytes; writing it may take this long, ms. */
  recoveryBytes: number;
  recoveryWriteMsMax: number;
}

const FULL: SuiteSettings = {
  throughput: { ...THROUGHPUT_FULL, sendMsMax: 2_000, runs: 1, warmupMessages: 100_000 },
  targetRuns: 3,
  syncMessagesMax: 5_000,
  syncMsMax: 3_000,
  latencyMs: 10_000,
  latencyRates: [1_000, 10_000, 100_000],
  latencyDrainMs: 5_000,
  rssLoadMs: 5_000,
  rssSampleMs: 100,
  rssSettleMs: 1_000,
  startRuns: 5,
  recoveryBytes: 1024 * 1024 * 1024,
  recoveryWriteMsMax: 180_000,
};

const QUICK: SuiteSettings = {
  throughput: {
    ...THROUGHPUT_QUICK,
    messagesMax: 5_000,
    sendMsMax: 200,
    drainMsMax: 10_000,
    runs: 1,
    warmupMessages: 2_000,
  },
  targetRuns: 1,
  syncMessagesMax: 100,
  syncMsMax: 500,
  latencyMs: 1_000,
  latencyRates: [1_000, 10_000, 100_000],
  latencyDrainMs: 3_000,
  rssLoadMs: 500,
  rssSampleMs: 50,
  rssSettleMs: 200,
  startRuns: 1,
  recoveryBytes: 64 * 1024 * 1024,
  recoveryWriteMsMax: 60_000,
};

/** Payload of the latency messages: a float64 send time first, then filler, bytes. */
const LATENCY_PAYLOAD_BYTES = 100;
/** The latency section's consumer, a process of its own. */
const LATENCY_CONSUMER = new URL("./_latency_consumer.ts", import.meta.url).pathname;
/** A fixed-rate sender that falls this far behind its schedule stops, ms. */
const LATENCY_LATE_MS_MAX = 5_000;
/** Section 6: the recovery log is written in messages of this size and batches of this size. */
const RECOVERY_MESSAGE_BYTES = 1024;
const RECOVERY_BATCH_BYTES = 1024 * 1024;
/** `--runs` at most. */
const RUNS_MAX = 100;
/** How often a start-up or recovery probe retries, ms. */
const PROBE_EVERY_MS = 2;
const MIB = 1024 * 1024;

/** One line of the table and of the JSON. */
interface Row {
  section: string;
  scenario: string;
  /** Unit of `gregormq` and `nats`: "msg/s", "ms", "µs" or "MiB". */
  unit: string;
  gregormq: number | null;
  nats: number | null;
  /** What `nats` measured, or "no peer". */
  peer: string;
  /** gregormq / nats; for a time or a size, below 1 is better. */
  ratio: number | null;
  target: string | null;
  /** Whether the measured numbers meet `target`; null without a target or a number to judge. */
  met: boolean | null;
  /** Cells shown instead of the bare numbers, e.g. "0.21 / 0.95 / 2.10" for p50 / p99 / p99.9. */
  shown?: { gregormq?: string; nats?: string };
  /** Why a number is missing or how to read it. */
  notes: string[];
  /** Every measured run behind a msg/s row, each system's in order (the table shows medians). */
  runs?: { gregormq: Run[]; nats: Run[] };
  /**
   * The runs that stalled (see STALL_MS_MAX), named. A GregorMQ one makes the row NOT met and
   * fails the benchmark, whatever its median.
   */
  stalls: string[];
  /** The raw measurements behind the row. */
  details: Record<string, unknown>;
}

/** A target: its text and the check of the measured numbers. */
interface Goal {
  text: string;
  met(gregormq: number, nats: number | null): boolean | null;
  /** Judge GregorMQ's slowest run rather than its median (a target "in every run"). */
  everyRun?: boolean;
}

const GOALS = {
  e2e: {
    text: "≥ 1,000,000 msg/s and ≥ 3× NATS core",
    met: (g, n) => (g < 1_000_000 ? false : n === null ? null : g >= 3 * n),
  },
  always: {
    text: "≥ 500,000 msg/s and ≥ 10× JetStream file",
    met: (g, n) => (g < 500_000 ? false : n === null ? null : g >= 10 * n),
  },
  // Issue 9's p99 ≤ 2 ms, and issue [N]'s ≤ 1.5× core NATS's in the same run.
  p99Memory: {
    text: "p99 ≤ 2 ms and ≤ 1.5× NATS core",
    met: (g, n) => (g > 2 ? false : n === null ? null : g <= 1.5 * n),
  },
  p99Always: { text: "p99 ≤ 5 ms", met: (g) => g <= 5 },
  cluster: {
    text: "≥ 200,000 msg/s and ≥ 5× JetStream R3, every run",
    met: (g, n) => (g < 200_000 ? false : n === null ? null : g >= 5 * n),
    everyRun: true,
  },
  rssIdle: { text: "≤ 64 MiB", met: (g) => g <= 64 },
  rssLoad: { text: "≤ 256 MiB", met: (g) => g <= 256 },
  start: { text: "≤ 200 ms", met: (g) => g <= 200 },
  recovery: { text: "≤ 2 s (1 GiB)", met: (g) => g <= 2_000 },
  tls: { text: "TLS ≥ plaintext / 1.5", met: (g, n) => (n === null ? null : g * 1.5 >= n) },
} satisfies Record<string, Goal>;

/** What every section gets. */
interface Context {
  settings: SuiteSettings;
  quick: boolean;
  /** nats-server and the client, or null with the reason in `natsMissing`. */
  nats: { path: string; version: string; connect: NatsConnect } | null;
  natsMissing: string;
  wanted(section: string, scenario: string): boolean;
  rows: Row[];
  /** GregorMQ measurements that failed; the run exits 1 if there are any. */
  failures: string[];
}

function row(
  fields: Pick<Row, "section" | "scenario" | "unit" | "gregormq" | "nats" | "peer"> & {
    goal?: Goal;
    notes?: string[];
    details?: Record<string, unknown>;
    shown?: Row["shown"];
    runs?: Row["runs"];
  },
): Row {
  const { gregormq: g, nats: n, goal } = fields;
  const stalls: string[] = [];
  for (const [label, runs] of [["GregorMQ", fields.runs?.gregormq], ["NATS", fields.runs?.nats]]) {
    for (const [i, run] of (runs as Run[] | undefined ?? []).entries()) {
      if (run.stalled !== null) stalls.push(`${label} run ${i + 1}: ${run.stalled}`);
    }
  }
  const gregorStalled = stalls.some((x) => x.startsWith("GregorMQ"));
  const gRuns = fields.runs?.gregormq ?? [];
  const judged = goal?.everyRun === true && gRuns.length > 0
    ? Math.min(...gRuns.map((r) => r.msgPerSec))
    : g;
  return {
    section: fields.section,
    scenario: fields.scenario,
    unit: fields.unit,
    gregormq: g,
    nats: n,
    peer: fields.peer,
    ratio: g !== null && n !== null && n > 0 ? g / n : null,
    target: goal?.text ?? null,
    met: gregorStalled ? false : goal === undefined || judged === null ? null : goal.met(judged, n),
    ...(fields.shown === undefined ? {} : { shown: fields.shown }),
    notes: fields.notes ?? [],
    ...(fields.runs === undefined ? {} : { runs: fields.runs }),
    stalls,
    details: fields.details ?? {},
  };
}

/** Runs `measure`; a failure is recorded (and fails the run for GregorMQ) instead of thrown. */
async function attempt<T>(
  ctx: Context,
  what: string,
  opts: { gregormq: boolean; notes: string[] },
  measure: () => Promise<T>,
): Promise<T | null> {
  try {
    return await measure();
  } catch (err) {
    const msg = `${what} failed: ${(err as Error)?.message ?? err}`;
    console.error(msg);
    opts.notes.push(msg);
    if (opts.gregormq) ctx.failures.push(msg);
    return null;
  }
}

function fmtMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

function fmtNumber(n: number, unit: string): string {
  if (unit === "msg/s") return fmtInt(n);
  if (unit === "MiB") return n.toFixed(1);
  return fmtMs(n);
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  tempDirs.add(dir);
  return dir;
}

async function removeTempDir(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  tempDirs.delete(dir);
}

/** Stops `child` and forgets it (it was registered for the final clean-up). */
async function stopChild(child: Child): Promise<void> {
  await child.stop();
  children.delete(child);
}

/** A GregorMQ broker on a free port; `args` come after the host, port and data directory. */
async function startBroker(
  name: string,
  opts: { dataDir: string; args?: string[] },
): Promise<{ child: Child; port: number }> {
  return await startChild(name, Deno.execPath(), {
    args: [
      ...["run", "-A", "cli/broker.ts", "--host", HOST, "--port", "0"],
      ...["--data-dir", opts.dataDir, ...(opts.args ?? [])],
    ],
    find: listenPort,
  });
}

function gregorClient(port: number, clientId: string, requestTimeoutMs: number): Promise<Client> {
  return connectGregor({
    host: HOST,
    port,
    clientId,
    requestTimeoutMs,
    connectTimeoutMs: STARTUP_MS_MAX,
  });
}

// --- 1 and 2: throughput -----------------------------------------------------------------------

const MEMORY = { persistence: "memory" };

/** Section 1, all on a memory topic (core NATS stores nothing either). */
const THROUGHPUT: readonly (Scenario & { goal?: Goal })[] = [
  { name: "produce 100 B", mode: "produce", payloadBytes: 100 },
  { name: "produce 1 KiB", mode: "produce", payloadBytes: 1024 },
  { name: "produce 100 B, 4 producers", mode: "produce", payloadBytes: 100, producers: 4 },
  { name: "produce 100 B, no batching", mode: "produce", payloadBytes: 100, batching: false },
  { name: "produce 100 B, lz4", mode: "produce", payloadBytes: 100, compression: "lz4" },
  { name: "produce 1 KiB, lz4", mode: "produce", payloadBytes: 1024, compression: "lz4" },
  { name: "produce→consume 100 B", mode: "e2e", payloadBytes: 100, goal: GOALS.e2e },
  { name: "produce→consume 1 KiB", mode: "e2e", payloadBytes: 1024 },
  { name: "produce→consume 100 B, 4 producers", mode: "e2e", payloadBytes: 100, producers: 4 },
  { name: "produce→consume 100 B, 4 consumers", mode: "e2e", payloadBytes: 100, consumers: 4 },
  {
    name: "produce→consume 100 B, 4 producers, 4 consumers",
    mode: "e2e",
    payloadBytes: 100,
    producers: 4,
    consumers: 4,
  },
  { name: "produce→consume 100 B, no batching", mode: "e2e", payloadBytes: 100, batching: false },
  { name: "produce→consume 1 KiB, lz4", mode: "e2e", payloadBytes: 1024, compression: "lz4" },
].map((s) => ({ ...s, topicConfigs: MEMORY }) as Scenario & { goal?: Goal });

/** Measures `scenario` on each target `runs` times, alternating; the medians, or null. */
async function measureBoth(
  ctx: Context,
  scenario: Scenario,
  opts: { gregor: Target; nats: Target | null; runs: number; notes: string[] },
): Promise<{ g: ReturnType<typeof median> | null; n: ReturnType<typeof median> | null }> {
  const gRuns: Run[] = [];
  const nRuns: Run[] = [];
  for (let run = 0; run < opts.runs; run++) {
    const g = await attempt(
      ctx,
      `GregorMQ ${scenario.name}`,
      { gregormq: true, notes: opts.notes },
      () => measureOnce(opts.gregor, scenario, { run, label: "GregorMQ", notes: opts.notes }),
    );
    if (g !== null) gRuns.push(g);
    const natsT = opts.nats;
    if (natsT !== null) {
      const n = await attempt(
        ctx,
        `NATS ${scenario.name}`,
        { gregormq: false, notes: opts.notes },
        () => measureOnce(natsT, scenario, { run, label: "NATS", notes: opts.notes }),
      );
      if (n !== null) nRuns.push(n);
    }
  }
  return {
    g: gRuns.length === 0 ? null : median(gRuns),
    n: nRuns.length === 0 ? null : median(nRuns),
  };
}

async function throughputSection(
  ctx: Context,
  ports: { gregor: number; nats: number | null },
): Promise<void> {
  const section = "1 throughput";
  const scenarios = THROUGHPUT.filter((s) => ctx.wanted(section, s.name));
  if (scenarios.length === 0) return;
  const settings = ctx.settings.throughput;
  const gregor = gregorTarget(ports.gregor, settings);
  const nats = ctx.nats === null || ports.nats === null
    ? null
    : natsTarget(ctx.nats.connect, ports.nats, settings);
  const warm = { ...settings, messagesMax: settings.warmupMessages };
  const warmup: Scenario = {
    name: "warm-up",
    mode: "e2e",
    payloadBytes: 100,
    topicConfigs: MEMORY,
  };
  await gregorTarget(ports.gregor, warm).measure(warmup, "warmup");
  if (ctx.nats !== null && ports.nats !== null) {
    await natsTarget(ctx.nats.connect, ports.nats, warm).measure(warmup, "warmup");
  }
  for (const scenario of scenarios) {
    const notes: string[] = [];
    const runs = scenario.goal === undefined ? settings.runs : ctx.settings.targetRuns;
    const { g, n } = await measureBoth(ctx, scenario, { gregor, nats, runs, notes });
    if (nats === null) notes.push(ctx.natsMissing);
    if (scenario.batching === false) {
      notes.push("NATS has no batching switch: its figure is a plain run");
    }
    if (scenario.compression !== undefined) notes.push("core NATS does not compress");
    pushRow(
      ctx,
      row({
        section,
        scenario: `${scenario.name} (memory)`,
        unit: "msg/s",
        gregormq: g?.msgPerSec ?? null,
        nats: n?.msgPerSec ?? null,
        peer: "NATS core",
        ...(scenario.goal === undefined ? {} : { goal: scenario.goal }),
        notes,
        runs: { gregormq: g?.runs ?? [], nats: n?.runs ?? [] },
        details: { gregormq: g, nats: n },
      }),
    );
  }
}

// --- 7: TLS ------------------------------------------------------------------------------------

/** Section 7: the same scenarios over TLS and plaintext, each on its own broker process. */
const TLS_SCENARIOS: readonly Scenario[] = [
  { name: "produce 100 B", mode: "produce", payloadBytes: 100, topicConfigs: MEMORY },
  { name: "produce→consume 100 B", mode: "e2e", payloadBytes: 100, topicConfigs: MEMORY },
];

async function tlsSection(ctx: Context): Promise<void> {
  const section = "7 TLS";
  const scenarios = TLS_SCENARIOS.filter((s) => ctx.wanted(section, `${s.name} over TLS`));
  if (scenarios.length === 0) return;
  if (!await haveOpenssl()) {
    ctx.failures.push("7 TLS: openssl is not installed, so there are no certificates");
    return;
  }
  const certs = await makeTestCerts();
  tempDirs.add(certs.dir);
  const settings = ctx.settings.throughput;
  const plainDir = await tempDir("gregormq-bench-plain-");
  const tlsDir = await tempDir("gregormq-bench-tls-");
  const plain = await startBroker("GregorMQ plaintext", { dataDir: plainDir });
  const secure = await startBroker("GregorMQ TLS", {
    dataDir: tlsDir,
    args: ["--tls-cert", certs.server.cert, "--tls-key", certs.server.key],
  });
  try {
    const tls = { ca: await Deno.readTextFile(certs.ca) };
    const targets = {
      tls: gregorTarget(secure.port, settings, { tls }),
      plain: gregorTarget(plain.port, settings),
    };
    const warm = { ...settings, messagesMax: settings.warmupMessages };
    await gregorTarget(secure.port, warm, { tls }).measure(TLS_SCENARIOS[1]!, "warmup");
    await gregorTarget(plain.port, warm).measure(TLS_SCENARIOS[1]!, "warmup");
    for (const scenario of scenarios) {
      const notes: string[] = [];
      const runs: { tls: Run[]; plain: Run[] } = { tls: [], plain: [] };
      // Alternating, so a noisy neighbour slows both sides alike.
      for (let run = 0; run < ctx.settings.targetRuns; run++) {
        for (const side of ["tls", "plain"] as const) {
          const r = await attempt(ctx, `GregorMQ ${side} ${scenario.name}`, {
            gregormq: true,
            notes,
          }, () => measureOnce(targets[side], scenario, { run, label: side, notes }));
          if (r !== null) runs[side].push(r);
        }
      }
      const g = runs.tls.length === 0 ? null : median(runs.tls);
      const n = runs.plain.length === 0 ? null : median(runs.plain);
      if (g !== null && n !== null && g.msgPerSec > 0) {
        // The issue states the target as TLS's cost, plaintext / TLS; the table's ratio is its
        // inverse, like every other row's (this system / its peer).
        notes.push(
          `plaintext / TLS = ${(n.msgPerSec / g.msgPerSec).toFixed(2)} on the medians of this ` +
            "run (target ≤ 1.5)",
        );
      }
      pushRow(
        ctx,
        row({
          section,
          scenario: `${scenario.name} over TLS (memory)`,
          unit: "msg/s",
          gregormq: g?.msgPerSec ?? null,
          nats: n?.msgPerSec ?? null,
          peer: "GregorMQ plaintext",
          goal: GOALS.tls,
          notes,
          runs: { gregormq: runs.tls, nats: runs.plain },
          details: { tls: g, plaintext: n },
        }),
      );
    }
  } finally {
    await stopChild(secure.child);
    await stopChild(plain.child);
    await removeTempDir(plainDir);
    await removeTempDir(tlsDir);
    await removeTempDir(certs.dir);
  }
}

const FSYNC_POLICIES = ["always", "interval:100", "never"] as const;

async function fsyncSection(ctx: Context, gregorPort: number): Promise<void> {
  const section = "2 persistence";
  const settings = ctx.settings.throughput;
  const gregor = gregorTarget(gregorPort, settings);
  const jsName = "JetStream file publish, 1000 in flight";
  const syncName = "sync produce 100 B, fsync always (per message)";
  const wantedPolicies = FSYNC_POLICIES.filter((p) =>
    ctx.wanted(section, `produce 100 B, fsync ${p}`)
  );
  const wantSync = ctx.wanted(section, syncName);
  if (wantedPolicies.length === 0 && !wantSync) return;

  // The peer: one nats-server with JetStream file storage, measured once for every policy row.
  const natsNotes: string[] = [];
  let js: Run | null = null;
  let jsSync: number[] | null = null;
  let nc: NatsConnection | null = null;
  let jsChild: Child | null = null;
  let storeDir: string | null = null;
  if (ctx.nats === null) natsNotes.push(ctx.natsMissing);
  else {
    const nats = ctx.nats;
    storeDir = await tempDir("gregormq-bench-js-");
    const started = await attempt(ctx, "nats-server -js", {
      gregormq: false,
      notes: natsNotes,
    }, () => startJetStream(nats.path, storeDir!));
    if (started !== null) {
      jsChild = started.child;
      nc = await natsAt(nats.connect, started.port, "bench-js");
      await addFileStream(nc, { name: "BENCH", subject: "js.bench", replicas: 1 });
      const conn = nc;
      if (wantedPolicies.length > 0) {
        js = await attempt(
          ctx,
          jsName,
          { gregormq: false, notes: natsNotes },
          () =>
            jetStreamPublish(conn, {
              subject: "js.bench",
              value: payload(100),
              settings,
            }),
        );
      }
      if (wantSync) {
        jsSync = await attempt(ctx, "JetStream sync publish", {
          gregormq: false,
          notes: natsNotes,
        }, () =>
          jetStreamSyncPublish(conn, {
            subject: "js.bench",
            value: payload(100),
            messagesMax: ctx.settings.syncMessagesMax,
            msMax: ctx.settings.syncMsMax,
          }));
      }
    }
  }

  for (const policy of wantedPolicies) {
    const notes = [...natsNotes];
    const scenario: Scenario = {
      name: `produce 100 B, fsync ${policy}`,
      mode: "produce",
      payloadBytes: 100,
      topicConfigs: { persistence: "disk", fsync: policy },
    };
    const runs = policy === "always" ? ctx.settings.targetRuns : settings.runs;
    const { g } = await measureBoth(ctx, scenario, { gregor, nats: null, runs, notes });
    pushRow(
      ctx,
      row({
        section,
        scenario: `${scenario.name} (disk)`,
        unit: "msg/s",
        gregormq: g?.msgPerSec ?? null,
        nats: js?.msgPerSec ?? null,
        peer: jsName,
        ...(policy === "always" ? { goal: GOALS.always } : {}),
        notes,
        runs: { gregormq: g?.runs ?? [], nats: js === null ? [] : [js] },
        details: { gregormq: g, nats: js },
      }),
    );
  }

  if (wantSync) {
    const notes = [...natsNotes];
    const times = await attempt(
      ctx,
      `GregorMQ ${syncName}`,
      { gregormq: true, notes },
      () => gregorSyncProduce(gregorPort, ctx.settings),
    );
    const mean = (xs: number[] | null) =>
      xs === null || xs.length === 0 ? null : xs.reduce((a, b) => a + b, 0) / xs.length;
    const gMean = mean(times);
    const nMean = mean(jsSync);
    const summary = (xs: number[] | null) => {
      if (xs === null || xs.length === 0) return null;
      const sorted = [...xs].sort((a, b) => a - b);
      return {
        messages: xs.length,
        meanMs: mean(xs),
        p50Ms: percentile(sorted, 0.5),
        p99Ms: percentile(sorted, 0.99),
      };
    };
    pushRow(
      ctx,
      row({
        section,
        scenario: syncName,
        unit: "µs",
        gregormq: gMean === null ? null : gMean * 1000,
        nats: nMean === null ? null : nMean * 1000,
        peer: "JetStream sync publish",
        notes,
        details: { gregormq: summary(times), nats: summary(jsSync) },
      }),
    );
  }
  await nc?.close().catch(() => {});
  if (jsChild !== null) await stopChild(jsChild);
  if (storeDir !== null) await removeTempDir(storeDir);
}

/** Per-message times of produces each awaited before the next, to an `always` topic, ms. */
async function gregorSyncProduce(port: number, settings: SuiteSettings): Promise<number[]> {
  const client = await gregorClient(port, "bench-sync", settings.throughput.drainMsMax);
  const topic = "bench-sync-always";
  try {
    await client.admin.createTopic(topic, { configs: { persistence: "disk", fsync: "always" } });
    const producer = client.producer({ lingerMs: 0 });
    const message = { value: payload(100) };
    const times: number[] = [];
    const start = performance.now();
    while (
      times.length < settings.syncMessagesMax && performance.now() - start < settings.syncMsMax
    ) {
      const t0 = performance.now();
      await producer.send(topic, message);
      times.push(performance.now() - t0);
    }
    return times;
  } finally {
    await client.admin.deleteTopic(topic).catch(() => {});
    await client.close().catch(() => {});
  }
}

// --- 3: latency at fixed rates -----------------------------------------------------------------

interface Latency {
  rate: number;
  sent: number;
  received: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** Of the messages at or above the p99: whose process stalled while each was under way. */
  tail: TailBlame;
}

/** The tail's messages by the process that stalled while each was under way (see blameTail). */
interface TailBlame {
  messages: number;
  producer: number;
  consumer: number;
  both: number;
  /** Neither client stalled: the server's work, or the network's. */
  server: number;
}

/**
 * Calls `send()` `rate` times a second for `ms` (catching up on a late timer by sending what is
 * due); stops early if it falls LATENCY_LATE_MS_MAX behind. Resolves with the messages sent. Its
 * 1 ms loop is also the producer process's stall watch.
 */
async function fixedRate(
  rate: number,
  opts: { ms: number; send: () => void; failed: () => boolean; watch: StallWatch },
): Promise<number> {
  const total = Math.round(rate * opts.ms / 1000);
  const start = performance.now();
  let sent = 0;
  while (sent < total && !opts.failed()) {
    const elapsedMs = performance.now() - start;
    if (elapsedMs > opts.ms + LATENCY_LATE_MS_MAX) break;
    const due = Math.min(total, Math.floor(elapsedMs * rate / 1000) + 1);
    while (sent < due) {
      opts.send();
      sent++;
    }
    await new Promise((r) => setTimeout(r, 1));
    opts.watch.note();
  }
  return sent;
}

/** A latency message: its send time (wall-clock ms, see wallMs) first, then filler. */
function stamped(): Uint8Array {
  const v = new Uint8Array(LATENCY_PAYLOAD_BYTES);
  new DataView(v.buffer).setFloat64(0, wallMs(), true);
  return v;
}

/** The consumer process of one latency run (bench/_latency_consumer.ts). */
class LatencyConsumer {
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  #text = "";

  constructor(target: "gregormq" | "nats", port: number, topic: string, drainMs: number) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", LATENCY_CONSUMER, target, String(port), topic, String(drainMs)],
      cwd: REPO_DIR,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  async #line(): Promise<string> {
    while (!this.#text.includes("\n")) {
      const { value, done } = await this.#lines.read();
      if (done) throw new Error("the latency consumer ended early");
      this.#text += value;
    }
    const nl = this.#text.indexOf("\n");
    const line = this.#text.slice(0, nl);
    this.#text = this.#text.slice(nl + 1);
    return line;
  }

  /** Resolves once the consumer is subscribed. */
  async ready(ms: number): Promise<void> {
    const line = await withTimeout(this.#line(), ms);
    if (line !== "ready") throw new Error(`latency consumer: ${line}`);
  }

  /** Tells it how many were sent; its report once it has them or its drain time is over. */
  async report(sent: number, ms: number): Promise<LatencyReport> {
    const w = this.#child.stdin.getWriter();
    await w.write(new TextEncoder().encode(`sent ${sent}\n`));
    await w.close();
    return JSON.parse(await withTimeout(this.#line(), ms)) as LatencyReport;
  }

  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.#child.status;
    await this.#lines.cancel().catch(() => {});
    // Still open if the run failed before its report.
    await this.#child.stdin.close().catch(() => {});
  }
}

/**
 * Sorts the tail's messages by whose process stalled while each was under way, between its send
 * and its receipt: the producer's (this process), the consumer's, both, or neither (the server).
 */
function blameTail(
  tail: [number, number][],
  producerStalls: [number, number][],
  consumerStalls: [number, number][],
): TailBlame {
  const overlaps = (stalls: [number, number][], from: number, to: number) =>
    stalls.some(([a, b]) => a < to && b > from);
  const blame: TailBlame = { messages: tail.length, producer: 0, consumer: 0, both: 0, server: 0 };
  for (const [from, to] of tail) {
    const p = overlaps(producerStalls, from, to);
    const c = overlaps(consumerStalls, from, to);
    if (p && c) blame.both++;
    else if (p) blame.producer++;
    else if (c) blame.consumer++;
    else blame.server++;
  }
  return blame;
}

function latencyOf(
  rate: number,
  sent: number,
  r: LatencyReport,
  producerStalls: [number, number][],
): Latency {
  // Quantiles of what arrived would hide the slowest, the ones that did not: a failure instead.
  if (r.received < sent) {
    throw new Error(`Only ${r.received} of ${sent} messages at ${rate} msg/s arrived in time`);
  }
  return {
    rate,
    sent,
    received: r.received,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    p999Ms: r.p999Ms,
    maxMs: r.maxMs,
    tail: blameTail(r.tail, producerStalls, r.stalls),
  };
}

async function gregorLatency(
  port: number,
  opts: { rate: number; settings: SuiteSettings; configs: Record<string, string>; id: string },
): Promise<Latency> {
  const { rate, settings } = opts;
  const timeoutMs = settings.throughput.drainMsMax;
  const topic = `bench-latency-${opts.id}`;
  const producing = await gregorClient(port, "bench-latency-producer", timeoutMs);
  // The topic first: a consumer subscribing to a missing topic would create it with defaults.
  await producing.admin.createTopic(topic, { configs: opts.configs }).catch(async (err) => {
    await producing.close().catch(() => {});
    throw err;
  });
  const consumer = new LatencyConsumer("gregormq", port, topic, settings.latencyDrainMs);
  try {
    await consumer.ready(STARTUP_MS_MAX);
    // lingerMs 0: a batch leaves at the end of the task that filled it, as a latency-minded
    // application would configure it.
    const producer = producing.producer({ lingerMs: 0 });
    let failure: unknown = null;
    const watch = new StallWatch();
    const sent = await fixedRate(rate, {
      ms: settings.latencyMs,
      send: () => void producer.send(topic, { value: stamped() }).catch((e) => failure ??= e),
      failed: () => failure !== null,
      watch,
    });
    if (failure !== null) throw failure;
    const report = await consumer.report(sent, settings.latencyDrainMs + STARTUP_MS_MAX);
    return latencyOf(rate, sent, report, watch.stalls);
  } finally {
    await consumer.stop();
    await producing.admin.deleteTopic(topic).catch(() => {});
    await producing.close().catch(() => {});
  }
}

async function natsLatency(
  connect: NatsConnect,
  port: number,
  opts: { rate: number; settings: SuiteSettings; id: string },
): Promise<Latency> {
  const { rate, settings } = opts;
  const subject = `bench.latency.${opts.id}`;
  const pub = await natsAt(connect, port, "bench-latency-publisher");
  const consumer = new LatencyConsumer("nats", port, subject, settings.latencyDrainMs);
  try {
    await consumer.ready(STARTUP_MS_MAX);
    const watch = new StallWatch();
    const sent = await fixedRate(rate, {
      ms: settings.latencyMs,
      send: () => pub.publish(subject, stamped()),
      failed: () => false,
      watch,
    });
    await withTimeout(pub.flush(), settings.throughput.drainMsMax);
    const report = await consumer.report(sent, settings.latencyDrainMs + STARTUP_MS_MAX);
    return latencyOf(rate, sent, report, watch.stalls);
  } finally {
    await consumer.stop();
    await pub.close().catch(() => {});
  }
}

/** "tail (≥ p99, N messages): producer stalled x %, consumer y %, both z %, neither (server) w %". */
function showBlame(label: string, t: TailBlame): string {
  const pct = (n: number) => `${t.messages === 0 ? 0 : Math.round(100 * n / t.messages)} %`;
  return `${label} tail (messages at or above its p99: ${t.messages}) under way while the producer ` +
    `process stalled ${pct(t.producer)}, the consumer process ${pct(t.consumer)}, both ` +
    `${pct(t.both)}, neither (the server) ${pct(t.server)}`;
}

function showLatency(l: Latency | null): string {
  return l === null ? "-" : `${fmtMs(l.p50Ms)} / ${fmtMs(l.p99Ms)} / ${fmtMs(l.p999Ms)}`;
}

async function latencySection(
  ctx: Context,
  ports: { gregor: number; nats: number | null },
): Promise<void> {
  const section = "3 latency";
  const storages = [
    { name: "memory", configs: MEMORY, goal: GOALS.p99Memory },
    {
      name: "disk, fsync always",
      configs: { persistence: "disk", fsync: "always" },
      goal: GOALS.p99Always,
    },
  ];
  for (const rate of ctx.settings.latencyRates) {
    const wantedStorages = storages.filter((s) =>
      ctx.wanted(section, `publish→deliver at ${fmtInt(rate)} msg/s (${s.name})`)
    );
    if (wantedStorages.length === 0) continue;
    const natsNotes: string[] = [];
    let n: Latency | null = null;
    if (ctx.nats === null || ports.nats === null) natsNotes.push(ctx.natsMissing);
    else {
      const { connect } = ctx.nats;
      const natsPort = ports.nats;
      n = await attempt(ctx, `NATS latency at ${rate} msg/s`, {
        gregormq: false,
        notes: natsNotes,
      }, () => natsLatency(connect, natsPort, { rate, settings: ctx.settings, id: `${rate}` }));
    }
    for (const storage of wantedStorages) {
      const notes = [...natsNotes];
      const g = await attempt(
        ctx,
        `GregorMQ latency at ${rate} msg/s (${storage.name})`,
        { gregormq: true, notes },
        () =>
          gregorLatency(ports.gregor, {
            rate,
            settings: ctx.settings,
            configs: storage.configs,
            id: `${rate}-${storage.name.replace(/\W+/g, "-")}`,
          }),
      );
      for (const [label, l] of [["GregorMQ", g], ["NATS", n]] as const) {
        if (l !== null) notes.push(showBlame(label, l.tail));
        if (l !== null && l.sent < rate * ctx.settings.latencyMs / 1000) {
          notes.push(`${label}: the sender fell behind and sent only ${l.sent}`);
        }
      }
      pushRow(
        ctx,
        row({
          section,
          scenario: `publish→deliver at ${fmtInt(rate)} msg/s (${storage.name}), p50 / p99 / p99.9`,
          unit: "ms",
          gregormq: g?.p99Ms ?? null,
          nats: n?.p99Ms ?? null,
          peer: "NATS core",
          ...(rate === 10_000 ? { goal: storage.goal } : {}),
          shown: { gregormq: showLatency(g), ...(n === null ? {} : { nats: showLatency(n) }) },
          notes,
          details: { gregormq: g, nats: n },
        }),
      );
    }
  }
}

// --- 4: a three-node cluster -------------------------------------------------------------------

/** A cluster node's listen line: its client port and cluster address. */
function clusterListen(line: string): { port: number; cluster: string } | null {
  const port = listenPort(line);
  if (port === null) return null;
  const cluster = (JSON.parse(line) as { cluster?: string }).cluster;
  return typeof cluster === "string" ? { port, cluster } : null;
}

async function startCluster(root: string): Promise<{ nodes: Child[]; ports: number[] }> {
  const nodes: Child[] = [];
  const ports: number[] = [];
  let seed: string | null = null;
  for (let i = 0; i < 3; i++) {
    const child: Child = new Child(`GregorMQ cluster node ${i}`, Deno.execPath(), [
      ...["run", "-A", "cli/broker.ts", "--host", HOST, "--port", "0"],
      ...["--data-dir", `${root}/n${i}`, "--cluster-port", "0", "--cluster-replicate"],
      ...["--no-metrics-enabled", "--broker-id", `bench-n${i}`],
      ...(seed === null ? [] : ["--seeds", seed]),
    ]);
    children.add(child);
    nodes.push(child);
    const listen: { port: number; cluster: string } = await child.ready(clusterListen);
    seed ??= listen.cluster;
    ports.push(listen.port);
  }
  return { nodes, ports };
}

/**
 * Waits until `port`'s node knows all three nodes, then creates `topic` (retrying until the
 * metadata group has a leader that takes it); resolves with the topic's replica count.
 */
async function createWhenReady(port: number, topic: string, timeoutMs: number): Promise<number> {
  const client = await gregorClient(port, "bench-cluster-admin", timeoutMs);
  try {
    const deadline = performance.now() + STARTUP_MS_MAX;
    for (;;) {
      try {
        if ((await client.admin.metadata([])).nodes.length >= 3) {
          await client.admin.createTopic(topic, { configs: { persistence: "disk" } });
          const m = await client.admin.metadata([topic]);
          return m.topics[0]?.partitions[0]?.replicas.length ?? 0;
        }
      } catch (err) {
        if (performance.now() > deadline) throw err;
      }
      if (performance.now() > deadline) throw new Error("The cluster never listed 3 nodes");
      await sleep(200, new AbortController().signal);
    }
  } finally {
    await client.close().catch(() => {});
  }
}

async function clusterSection(ctx: Context): Promise<void> {
  const section = "4 cluster";
  const name = "3 nodes, RF=3, quorum acks, produce 100 B";
  if (!ctx.wanted(section, name)) return;
  const settings = ctx.settings.throughput;
  const notes: string[] = [];
  const scenario: Scenario = {
    name,
    mode: "produce",
    payloadBytes: 100,
    acks: "quorum",
    // The broker's default persistence and fsync, as a replicated topic is stored by default.
    topicConfigs: {},
  };
  const root = await tempDir("gregormq-bench-cluster-");
  let g: ReturnType<typeof median> | null = null;
  const started = await attempt(
    ctx,
    "GregorMQ 3-node cluster",
    { gregormq: true, notes },
    () => startCluster(root),
  );
  if (started !== null) {
    const port = started.ports[0]!;
    const ready = await attempt(
      ctx,
      "GregorMQ cluster readiness",
      { gregormq: true, notes },
      () => createWhenReady(port, "bench-cluster-ready", settings.drainMsMax),
    );
    if (ready !== null && ready !== 3) {
      notes.push(`the first topic got ${ready} replicas, not 3`);
    }
    if (ready !== null) {
      const gregor = gregorTarget(port, settings);
      await gregorTarget(port, { ...settings, messagesMax: settings.warmupMessages })
        .measure({ ...scenario, name: "cluster warm-up" }, "cluster-warmup").catch(() => {});
      g = (await measureBoth(ctx, scenario, {
        gregor,
        nats: null,
        runs: ctx.settings.targetRuns,
        notes,
      })).g;
    }
    for (const node of started.nodes) await stopChild(node);
  }
  await removeTempDir(root);

  // The peer gets as many runs, each on a stream of its own as each GregorMQ run has a topic.
  const nRuns: Run[] = [];
  const peer = "JetStream R3 file publish, 1000 in flight";
  if (ctx.nats === null) notes.push(ctx.natsMissing);
  else {
    const nats = ctx.nats;
    const jsRoot = await tempDir("gregormq-bench-jscluster-");
    const cluster = await attempt(ctx, "NATS 3-server JetStream cluster", {
      gregormq: false,
      notes,
    }, () => startJetStreamCluster(nats.path, jsRoot));
    if (cluster !== null) {
      for (let run = 0; run < ctx.settings.targetRuns; run++) {
        const r = await attempt(ctx, `JetStream R3 publish run ${run + 1}`, {
          gregormq: false,
          notes,
        }, async () => {
          const nc = await natsAt(nats.connect, cluster.ports[0]!, "bench-js-cluster");
          try {
            const subject = `js.r3.${run}`;
            await addFileStream(nc, { name: `BENCHR3_${run}`, subject, replicas: 3 });
            return await jetStreamPublish(nc, { subject, value: payload(100), settings });
          } finally {
            await nc.close().catch(() => {});
          }
        });
        if (r !== null) nRuns.push(r);
      }
      for (const node of cluster.nodes) await stopChild(node);
    }
    await removeTempDir(jsRoot);
  }
  const n = nRuns.length === 0 ? null : median(nRuns);
  pushRow(
    ctx,
    row({
      section,
      scenario: name,
      unit: "msg/s",
      gregormq: g?.msgPerSec ?? null,
      nats: n?.msgPerSec ?? null,
      peer,
      goal: GOALS.cluster,
      notes,
      runs: { gregormq: g?.runs ?? [], nats: nRuns },
      details: { gregormq: g, nats: n },
    }),
  );
}

// --- 5: resident memory ------------------------------------------------------------------------

/** The highest RSS of `pid` sampled every `everyMs` while `work` runs. */
async function peakRssDuring(
  pid: number,
  everyMs: number,
  work: Promise<unknown>,
): Promise<number> {
  let peak = await mustRss(pid);
  let done = false;
  const finished = work.finally(() => (done = true));
  while (!done) {
    peak = Math.max(peak, (await rssMiB(pid)) ?? 0);
    await Promise.race([finished.catch(() => {}), new Promise((r) => setTimeout(r, everyMs))]);
  }
  await finished;
  return Math.max(peak, (await rssMiB(pid)) ?? 0);
}

/** Starts bench/_stalled_consumer.ts for `system`, waits until it subscribed, and SIGSTOPs it. */
async function stalledConsumer(system: "gregormq" | "nats", port: number, topic: string) {
  const child = new Child(`stalled ${system} consumer`, Deno.execPath(), [
    ...["run", "-A", "bench/_stalled_consumer.ts", system, String(port), topic],
  ]);
  children.add(child);
  await child.ready((line) => (line.trim() === "ready" ? true : null));
  Deno.kill(child.pid, "SIGSTOP");
  return {
    async stop() {
      // A stopped process acts on SIGTERM only once it runs again.
      try {
        Deno.kill(child.pid, "SIGCONT");
      } catch {
        // Already gone.
      }
      await stopChild(child);
    },
  };
}

/** Sends 100 B messages as fast as the window allows for `ms` (or the settings' count). */
function loadSettings(ctx: Context): Settings {
  return {
    ...ctx.settings.throughput,
    sendMsMax: ctx.settings.rssLoadMs,
    messagesMax: 50_000_000,
  };
}

async function gregorRss(ctx: Context): Promise<{ idle: number; load: number }> {
  const dir = await tempDir("gregormq-bench-rss-");
  const broker = await startBroker("GregorMQ broker (RSS)", { dataDir: dir });
  try {
    await sleep(ctx.settings.rssSettleMs, new AbortController().signal);
    const idle = await mustRss(broker.child.pid);
    const topic = "bench-rss";
    const admin = await gregorClient(broker.port, "bench-rss-admin", 30_000);
    // A disk topic (fsync never): what is stored goes to the page cache, so the RSS shows what the
    // broker holds for the stalled consumer rather than the topic's contents.
    await admin.admin.createTopic(topic, { configs: { persistence: "disk", fsync: "never" } });
    await admin.close();
    const stalled = await stalledConsumer("gregormq", broker.port, topic);
    try {
      const settings = loadSettings(ctx);
      const producing = (async () => {
        const producer = await gregorClient(broker.port, "bench-rss-producer", 30_000);
        try {
          const p = producer.producer({ lingerMs: settings.lingerMs });
          const message = { value: payload(100) };
          const start = performance.now();
          let inFlight: Promise<number>[] = [];
          for (let i = 0; i < settings.messagesMax; i++) {
            if (performance.now() - start > settings.sendMsMax) break;
            inFlight.push(p.send(topic, message));
            if (inFlight.length >= settings.windowMessages) {
              await Promise.all(inFlight);
              inFlight = [];
            }
          }
          await Promise.all(inFlight);
        } finally {
          await producer.close().catch(() => {});
        }
      })();
      const load = await peakRssDuring(broker.child.pid, ctx.settings.rssSampleMs, producing);
      return { idle, load };
    } finally {
      await stalled.stop();
    }
  } finally {
    await stopChild(broker.child);
    await removeTempDir(dir);
  }
}

async function natsRss(
  ctx: Context,
  nats: NonNullable<Context["nats"]>,
): Promise<{ idle: number; load: number }> {
  const server = await startNats(nats.path);
  try {
    await sleep(ctx.settings.rssSettleMs, new AbortController().signal);
    const idle = await mustRss(server.child.pid);
    const subject = "bench.rss";
    const stalled = await stalledConsumer("nats", server.port, subject);
    try {
      const settings = loadSettings(ctx);
      const nc = await natsAt(nats.connect, server.port, "bench-rss-publisher");
      const producing = (async () => {
        try {
          const value = payload(100);
          const start = performance.now();
          for (let i = 0; i < settings.messagesMax; i++) {
            if (performance.now() - start > settings.sendMsMax) break;
            nc.publish(subject, value);
            if (i % 1_000 === 999) await withTimeout(nc.flush(), settings.drainMsMax);
          }
          await withTimeout(nc.flush(), settings.drainMsMax);
        } finally {
          await nc.close().catch(() => {});
        }
      })();
      const load = await peakRssDuring(server.child.pid, ctx.settings.rssSampleMs, producing);
      return { idle, load };
    } finally {
      await stalled.stop();
    }
  } finally {
    await stopChild(server.child);
  }
}

async function rssSection(ctx: Context): Promise<void> {
  const section = "5 memory";
  const idleName = "broker RSS, idle";
  const loadName = "broker RSS peak, 100 B load with a stalled consumer";
  const wantIdle = ctx.wanted(section, idleName);
  const wantLoad = ctx.wanted(section, loadName);
  if (!wantIdle && !wantLoad) return;
  const notes: string[] = [];
  const g = await attempt(ctx, "GregorMQ RSS", { gregormq: true, notes }, () => gregorRss(ctx));
  let n: { idle: number; load: number } | null = null;
  if (ctx.nats === null) notes.push(ctx.natsMissing);
  else {
    const nats = ctx.nats;
    n = await attempt(ctx, "nats-server RSS", { gregormq: false, notes }, () => natsRss(ctx, nats));
  }
  if (wantIdle) {
    pushRow(
      ctx,
      row({
        section,
        scenario: idleName,
        unit: "MiB",
        gregormq: g?.idle ?? null,
        nats: n?.idle ?? null,
        peer: "nats-server (core)",
        goal: GOALS.rssIdle,
        notes: [...notes],
      }),
    );
  }
  if (wantLoad) {
    pushRow(
      ctx,
      row({
        section,
        scenario: loadName,
        unit: "MiB",
        gregormq: g?.load ?? null,
        nats: n?.load ?? null,
        peer: "nats-server (core)",
        goal: GOALS.rssLoad,
        notes: [
          ...notes,
          "GregorMQ topic on disk with fsync never; NATS core cuts a slow consumer at its pending limit",
        ],
      }),
    );
  }
}

// --- 6: start-up and recovery ------------------------------------------------------------------

/** Retries `probe` every PROBE_EVERY_MS until it resolves true, for at most `msMax`. */
async function probeUntil(probe: () => Promise<boolean>, msMax: number): Promise<void> {
  const deadline = performance.now() + msMax;
  for (;;) {
    try {
      if (await probe()) return;
    } catch {
      // Not listening yet, or not recovered yet.
    }
    if (performance.now() > deadline) throw new Error(`No answer within ${msMax} ms`);
    await new Promise((r) => setTimeout(r, PROBE_EVERY_MS));
  }
}

/** Spawn → first connection whose handshake succeeds and `check` holds, ms. */
async function gregorStartMs(
  opts: { dataDir: string; port: number; check?: (client: Client) => Promise<boolean> },
): Promise<{ ms: number; child: Child }> {
  const t0 = performance.now();
  const child = new Child("GregorMQ broker (start)", Deno.execPath(), [
    ...["run", "-A", "cli/broker.ts", "--host", HOST, "--port", String(opts.port)],
    ...["--data-dir", opts.dataDir],
  ]);
  children.add(child);
  void child.ready(() => null).catch(() => {});
  const check = opts.check;
  await probeUntil(async () => {
    const client = await connectGregor({
      host: HOST,
      port: opts.port,
      clientId: "bench-start",
      connectTimeoutMs: 1_000,
      requestTimeoutMs: 5_000,
    });
    try {
      return check === undefined ? true : await check(client);
    } finally {
      await client.close().catch(() => {});
    }
  }, STARTUP_MS_MAX);
  return { ms: performance.now() - t0, child };
}

async function natsStartMs(nats: NonNullable<Context["nats"]>): Promise<number> {
  const port = freePort();
  const t0 = performance.now();
  const child = new Child("nats-server (start)", nats.path, ["-a", HOST, "-p", String(port)]);
  children.add(child);
  void child.ready(natsListenPort).catch(() => {});
  try {
    await probeUntil(async () => {
      // connect() completes the INFO / CONNECT / PING / PONG handshake.
      const nc = await nats.connect({ servers: `${HOST}:${port}`, name: "bench-start" });
      await nc.close();
      return true;
    }, STARTUP_MS_MAX);
    return performance.now() - t0;
  } finally {
    await stopChild(child);
  }
}

async function startSection(ctx: Context): Promise<void> {
  const section = "6 start-up";
  const name = "spawn → accepting connections (TCP + HELLO)";
  if (!ctx.wanted(section, name)) return;
  const notes: string[] = [];
  const g = await attempt(ctx, "GregorMQ start", { gregormq: true, notes }, async () => {
    const times: number[] = [];
    for (let i = 0; i < ctx.settings.startRuns; i++) {
      const dir = await tempDir("gregormq-bench-start-");
      const { ms, child } = await gregorStartMs({ dataDir: dir, port: freePort() });
      times.push(ms);
      await stopChild(child);
      await removeTempDir(dir);
    }
    return times;
  });
  let n: number[] | null = null;
  if (ctx.nats === null) notes.push(ctx.natsMissing);
  else {
    const nats = ctx.nats;
    n = await attempt(ctx, "nats-server start", { gregormq: false, notes }, async () => {
      const times: number[] = [];
      for (let i = 0; i < ctx.settings.startRuns; i++) times.push(await natsStartMs(nats));
      return times;
    });
  }
  notes.push("GregorMQ's time includes starting Deno and loading cli/broker.ts from the cache");
  pushRow(
    ctx,
    row({
      section,
      scenario: name,
      unit: "ms",
      gregormq: g === null ? null : medianOf(g),
      nats: n === null ? null : medianOf(n),
      peer: "nats-server (TCP + INFO/CONNECT/PING)",
      goal: GOALS.start,
      notes,
      details: { gregormqMs: g, natsMs: n },
    }),
  );
}

/**
 * Writes `bytes` of 1 KiB messages into a disk topic (fsync never, large batches) through a broker
 * process, SIGKILLs it, restarts it on the same data directory and port, and measures spawn → a
 * describeTopic that answers with the whole high watermark.
 */
async function recovery(
  ctx: Context,
): Promise<{ ms: number; acceptMs: number; highWatermark: number; logBytes: number }> {
  const settings = ctx.settings;
  const dir = await tempDir("gregormq-bench-recovery-");
  const topic = "bench-recovery";
  const port = freePort();
  try {
    const first = await gregorStartMs({ dataDir: dir, port });
    const client = await gregorClient(port, "bench-recovery-writer", 60_000);
    let highWatermark: number;
    try {
      await client.admin.createTopic(topic, { configs: { persistence: "disk", fsync: "never" } });
      const producer = client.producer({
        lingerMs: 5,
        batchBytesMax: RECOVERY_BATCH_BYTES,
        batchRecordsMax: RECOVERY_BATCH_BYTES / RECOVERY_MESSAGE_BYTES,
      });
      const message = { value: payload(RECOVERY_MESSAGE_BYTES) };
      const messages = Math.ceil(settings.recoveryBytes / RECOVERY_MESSAGE_BYTES);
      const windowMessages = 4 * RECOVERY_BATCH_BYTES / RECOVERY_MESSAGE_BYTES;
      const start = performance.now();
      let inFlight: Promise<number>[] = [];
      for (let i = 0; i < messages; i++) {
        if (performance.now() - start > settings.recoveryWriteMsMax) {
          throw new Error(
            `Writing the recovery log took over ${settings.recoveryWriteMsMax} ms (${i} messages)`,
          );
        }
        inFlight.push(producer.send(topic, message));
        if (inFlight.length >= windowMessages) {
          await Promise.all(inFlight);
          inFlight = [];
        }
      }
      await Promise.all(inFlight);
      const d = await client.admin.describeTopic(topic);
      highWatermark = d.partitions[0]!.highWatermark;
      if (highWatermark !== messages) {
        throw new Error(`The topic holds ${highWatermark} messages, ${messages} were acknowledged`);
      }
    } finally {
      await client.close().catch(() => {});
    }
    const logBytes = await dirBytes(dir);
    Deno.kill(first.child.pid, "SIGKILL");
    await stopChild(first.child);
    let acceptMs = -1;
    const t0 = performance.now();
    const again = await gregorStartMs({
      dataDir: dir,
      port,
      check: async (c) => {
        if (acceptMs < 0) acceptMs = performance.now() - t0;
        const d = await c.admin.describeTopic(topic);
        return d.partitions[0]?.highWatermark === highWatermark;
      },
    });
    await stopChild(again.child);
    return { ms: again.ms, acceptMs, highWatermark, logBytes };
  } finally {
    await removeTempDir(dir);
  }
}

/** Bytes of the files under `dir`. */
async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) total += await dirBytes(path);
    else if (e.isFile) total += (await Deno.stat(path)).size;
  }
  return total;
}

async function recoverySection(ctx: Context): Promise<void> {
  const section = "6 start-up";
  const mib = ctx.settings.recoveryBytes / MIB;
  const name = `recovery of a ${
    mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`
  } log after SIGKILL`;
  if (!ctx.wanted(section, name)) return;
  const notes: string[] = [];
  const r = await attempt(ctx, "GregorMQ recovery", { gregormq: true, notes }, () => recovery(ctx));
  if (r !== null) {
    notes.push(
      `accepting connections after ${fmtMs(r.acceptMs)} ms; the log's pages were in the page ` +
        "cache (no cache drop between kill and restart)",
    );
  }
  notes.push("no peer: nats-server is not asked to recover a log here");
  pushRow(
    ctx,
    row({
      section,
      scenario: name,
      unit: "ms",
      gregormq: r?.ms ?? null,
      nats: null,
      peer: "no peer",
      // The target is for 1 GiB; a smaller (quick) log is not judged against it.
      goal: ctx.settings.recoveryBytes >= 1024 * MIB
        ? GOALS.recovery
        : { text: `${GOALS.recovery.text}, not judged`, met: () => null },
      notes,
      details: { gregormq: r },
    }),
  );
}

// --- Reporting ---------------------------------------------------------------------------------

function pushRow(ctx: Context, r: Row): void {
  ctx.rows.push(r);
  const g = r.shown?.gregormq ?? (r.gregormq === null ? "-" : fmtNumber(r.gregormq, r.unit));
  const n = r.shown?.nats ?? (r.nats === null ? "-" : fmtNumber(r.nats, r.unit));
  console.error(`${r.section} · ${r.scenario}: GregorMQ ${g} ${r.unit}, ${r.peer} ${n}`);
  if (r.runs !== undefined) { for (const line of runLines(r)) console.error(`  ${line}`); }
  for (const stall of r.stalls) {
    console.error(`STALLED: ${r.section} · ${r.scenario}: ${stall}`);
    if (stall.startsWith("GregorMQ")) ctx.failures.push(`${r.scenario}: ${stall}`);
  }
}

/** One line per measured run of a msg/s row. */
function runLines(r: Row): string[] {
  const lines: string[] = [];
  // A row against another GregorMQ (plaintext beside TLS) names its peer, not NATS.
  const peer = r.peer.startsWith("GregorMQ") ? r.peer : "NATS";
  const first = r.peer.startsWith("GregorMQ") ? "GregorMQ (this row)" : "GregorMQ";
  for (const [label, runs] of [[first, r.runs?.gregormq], [peer, r.runs?.nats]] as const) {
    for (const [i, run] of (runs ?? []).entries()) {
      lines.push(
        `${label} run ${i + 1}: ${fmtInt(run.msgPerSec)} msg/s, ${fmtInt(run.confirmed)} of ` +
          `${fmtInt(run.messages)} confirmed in ${run.seconds.toFixed(2)} s, longest gap ` +
          `${Math.round(run.longestGapMs)} ms, load ${run.loadAverage.toFixed(2)}` +
          (run.stalled === null ? "" : `  STALLED (${run.stalled})`),
      );
    }
  }
  return lines;
}

function table(rows: Row[]): string {
  const header = ["scenario", "unit", "GregorMQ", "NATS", "GregorMQ/NATS", "target", "met?"];
  const cells = rows.map((r) => [
    r.scenario,
    r.unit,
    r.shown?.gregormq ?? (r.gregormq === null ? "-" : fmtNumber(r.gregormq, r.unit)),
    r.peer === "no peer"
      ? "no peer"
      : r.shown?.nats ?? (r.nats === null ? "skipped" : fmtNumber(r.nats, r.unit)),
    r.ratio === null ? "-" : r.ratio.toFixed(2),
    r.target ?? "",
    r.stalls.some((x) => x.startsWith("GregorMQ"))
      ? "NOT met: STALLED"
      : r.met === null
      ? (r.target === null ? "" : "?")
      : r.met
      ? "met"
      : "NOT met",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c.map((x, i) => (i === 0 || i >= 5 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!)))
      .join("  ").trimEnd();
  const out: string[] = [line(header), widths.map((w) => "-".repeat(w)).join("  ")];
  let section = "";
  for (let i = 0; i < rows.length; i++) {
    if (rows[i]!.section !== section) {
      section = rows[i]!.section;
      out.push(`[${section}]`);
    }
    out.push(line(cells[i]!));
  }
  return out.join("\n");
}

/** Every run of the rows that had more than one (or any that stalled), under the table. */
function runsList(rows: Row[]): string[] {
  const out: string[] = [];
  for (const r of rows) {
    const counts = [r.runs?.gregormq.length ?? 0, r.runs?.nats.length ?? 0];
    if (Math.max(...counts) < 2 && r.stalls.length === 0) continue;
    out.push(`runs of ${r.scenario}:`);
    for (const line of runLines(r)) out.push(`  ${line}`);
  }
  return out;
}

/** Peers per row, listed once under the table. */
function peerNotes(rows: Row[]): string[] {
  const seen = new Map<string, string[]>();
  for (const r of rows) {
    if (r.peer === "no peer") continue;
    const list = seen.get(r.peer) ?? [];
    list.push(r.section);
    seen.set(r.peer, list);
  }
  return [...seen].map(([peer, sections]) =>
    `NATS column in ${[...new Set(sections)].join(", ")}: ${peer}`
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      json: { type: "string" },
      only: { type: "string" },
      runs: { type: "string" },
      "no-nats": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const settings = { ...(values.quick ? QUICK : FULL) };
  if (values.runs !== undefined) {
    const runs = Number(values.runs);
    if (!Number.isInteger(runs) || runs < 1 || runs > RUNS_MAX) {
      throw new RangeError(
        `--runs must be a whole number from 1 to ${RUNS_MAX}, got ${values.runs}`,
      );
    }
    settings.targetRuns = runs;
  }
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const loadAverageAtStart = Deno.loadavg();
  const only = values.only?.toLowerCase();
  const ctx: Context = {
    settings,
    quick: values.quick,
    nats: null,
    natsMissing: "",
    wanted: (section, scenario) =>
      only === undefined || `${section} ${scenario}`.toLowerCase().includes(only),
    rows: [],
    failures: [],
  };
  if (values["no-nats"]) ctx.natsMissing = "NATS skipped (--no-nats)";
  else {
    const found = await findNatsServer();
    if ("missing" in found) ctx.natsMissing = `NATS skipped: ${found.missing}`;
    else {
      try {
        ctx.nats = { ...found, connect: (await import("nats")).connect as NatsConnect };
      } catch (err) {
        ctx.natsMissing = `NATS skipped: cannot load npm:nats: ${(err as Error).message}`;
      }
    }
  }
  if (ctx.nats === null) console.error(ctx.natsMissing);

  // Sections 1 to 3 share one broker (topics carry their own persistence and fsync) and one
  // nats-server; the others start what they measure.
  const dataDir = await tempDir("gregormq-bench-");
  const gregor = await startBroker("GregorMQ broker", { dataDir });
  const nats = ctx.nats === null ? null : await startNats(ctx.nats.path);
  console.error(
    `GregorMQ broker pid ${gregor.child.pid} on ${HOST}:${gregor.port}` +
      (nats === null ? "" : `; ${ctx.nats?.version} pid ${nats.child.pid}`),
  );
  const ports = { gregor: gregor.port, nats: nats?.port ?? null };
  const timings: Record<string, number> = {};
  const timed = async (name: string, f: () => Promise<void>) => {
    const s = performance.now();
    await f();
    timings[name] = Math.round(performance.now() - s);
  };
  await timed("1 throughput", () => throughputSection(ctx, ports));
  await timed("2 persistence", () => fsyncSection(ctx, gregor.port));
  await timed("3 latency", () => latencySection(ctx, ports));
  await stopChild(gregor.child);
  if (nats !== null) await stopChild(nats.child);
  await removeTempDir(dataDir);
  await timed("4 cluster", () => clusterSection(ctx));
  await timed("5 memory", () => rssSection(ctx));
  await timed("6 start-up", () => startSection(ctx));
  await timed("6 recovery", () => recoverySection(ctx));
  await timed("7 TLS", () => tlsSection(ctx));
  if (ctx.rows.length === 0) throw new RangeError(`No scenario matches --only ${values.only}`);

  const seconds = (performance.now() - t0) / 1000;
  console.log(table(ctx.rows));
  for (const line of runsList(ctx.rows)) console.log(line);
  for (const r of ctx.rows) {
    for (const stall of r.stalls) console.log(`STALLED: ${r.scenario}: ${stall}`);
  }
  for (const p of peerNotes(ctx.rows)) console.log(`note: ${p}`);
  for (const r of ctx.rows) {
    for (const n of r.notes) console.log(`note: ${r.scenario}: ${n}`);
  }
  console.log(
    `${values.quick ? "quick run" : "full run"} in ${seconds.toFixed(1)} s` +
      (values.quick ? " (smoke version: tiny counts, the numbers mean little)" : ""),
  );
  if (values.json !== undefined) {
    const report = {
      benchmark: "suite",
      startedAt,
      seconds,
      quick: values.quick,
      settings: ctx.settings,
      sectionMs: timings,
      machine: await machineInfo(ctx.nats?.version ?? null, loadAverageAtStart),
      rows: ctx.rows,
      failures: ctx.failures,
    };
    await Deno.writeTextFile(values.json, JSON.stringify(report, null, 2) + "\n");
    console.error(`wrote ${values.json}`);
  }
  if (ctx.failures.length > 0) {
    throw new Error(
      `${ctx.failures.length} GregorMQ measurement(s) failed:\n${ctx.failures.join("\n")}`,
    );
  }
}

if (import.meta.main) await runHarness("suite", main, cleanUp);
