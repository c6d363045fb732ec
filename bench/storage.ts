// What durability costs on this machine's disk: FileLog append throughput under each fsync policy,
// group commit at work (batches per sync), and produce-only throughput through a broker process,
// each reported as a ratio against a baseline measured in the same run (STYLE.md rule 7): a raw
// Deno.FsFile write + fdatasync per batch for the log, fsync "never" for the broker.
// `deno task bench:storage [--quick] [--json F]`. MB/s counts payload bytes, 1 MB = 10^6 bytes.

import { parseArgs } from "node:util";
import { connect } from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { encodeBatch, readBatchHeader } from "../src/protocol/batch.ts";
import { FileLog, type FsyncPolicy, parseFsyncPolicy } from "../src/storage/file_log.ts";
import {
  Child,
  fmtInt,
  listenPort,
  payload,
  runHarness,
  STARTUP_MS_MAX,
  withTimeout,
} from "./_harness.ts";

const USAGE = `usage: deno run -A bench/storage.ts [options]
  --quick        a fast smoke run (short time limits, one run per cell)
  --json FILE    also write the results and machine info as JSON to FILE
  --dir DIR      where to make the temporary directory (default: the system's temp dir)
  -h, --help     this text`;

const HOST = "127.0.0.1";
/** Payload bytes per record. */
const RECORD_BYTES = 100;
/** FileLog settings as the broker's defaults have them. */
const SEGMENT_BYTES = 64 * 1024 * 1024;
const INDEX_INTERVAL_BYTES = 4096;

interface Settings {
  /** Measured runs per cell; the median is reported. Cells are interleaved run by run. */
  runs: number;
  /** A log cell stops starting appends after this long. */
  cellMsMax: number;
  /** Appends per log cell at most. */
  cellAppendsMax: number;
  /** Bytes a log cell may write at most (keeps the temp dir bounded on a fast disk). */
  cellBytesMax: number;
  /** Unmeasured warm-up of the log code (JIT), ms. */
  warmupMs: number;
  /** Broker produce-only: sending stops after this long, or at `e2eMessagesMax`. */
  e2eSendMsMax: number;
  e2eMessagesMax: number;
  /** Broker produce-only: the last acknowledgements are awaited this long at most. */
  e2eDrainMsMax: number;
  /** Broker produce-only: unacknowledged messages at most. */
  e2eWindowMessages: number;
  /** Broker produce-only: producer linger, ms. */
  e2eLingerMs: number;
}

const FULL: Settings = {
  runs: 3,
  cellMsMax: 1_000,
  cellAppendsMax: 2_000_000,
  cellBytesMax: 512 * 1024 * 1024,
  warmupMs: 500,
  e2eSendMsMax: 3_000,
  e2eMessagesMax: 5_000_000,
  e2eDrainMsMax: 15_000,
  e2eWindowMessages: 10_000,
  e2eLingerMs: 2,
};

const QUICK: Settings = {
  ...FULL,
  runs: 1,
  cellMsMax: 200,
  cellAppendsMax: 100_000,
  cellBytesMax: 64 * 1024 * 1024,
  warmupMs: 100,
  e2eSendMsMax: 500,
  e2eMessagesMax: 200_000,
};

/** What a log cell measures. */
type Writer =
  | { kind: "raw-sync" }
  | { kind: "raw-write" }
  | { kind: "log"; fsync: string };

interface Cell {
  section: "log" | "group commit" | "baseline";
  writer: Writer;
  appenders: number;
  recordsPerBatch: number;
}

interface Run {
  appends: number;
  seconds: number;
  syncs: number;
  batchesSynced: number;
  /** The slowest single append (or write, and fdatasync), ms. */
  appendMsMax: number;
}

interface CellResult {
  section: Cell["section"];
  storage: string;
  appenders: number;
  recordsPerBatch: number;
  batchBytes: number;
  appendsPerSec: number;
  msgPerSec: number;
  mbPerSec: number;
  /** Batches made durable per fsync (group commit); null where nothing synced. */
  batchesPerSync: number | null;
  /** The slowest single append of the median run, ms. */
  appendMsMax: number;
  /** appends/s over the raw write+fdatasync appends/s of the same batch size. */
  vsRawSync: number;
  runs: Run[];
}

interface BrokerRun {
  msgPerSec: number;
  sent: number;
  acknowledged: number;
  seconds: number;
}

interface BrokerResult {
  storage: string;
  /** Of the median run. */
  msgPerSec: number;
  mbPerSec: number;
  /** msg/s over the fsync "never" broker's msg/s. */
  vsNever: number;
  runs: BrokerRun[];
}

// --- Log cells ---------------------------------------------------------------------------------

function makeBatch(records: number): Uint8Array {
  const value = payload(RECORD_BYTES);
  const timestamp = Date.now();
  return encodeBatch(Array.from({ length: records }, () => ({ value, timestamp })));
}

function storageName(w: Writer): string {
  return w.kind === "log"
    ? `FileLog ${w.fsync}`
    : w.kind === "raw-sync"
    ? "raw write+fdatasync"
    : "raw write";
}

/** Stops a cell once it reached its append count or its time; shared by its appenders. */
class Budget {
  appends = 0;
  readonly #appendsMax: number;
  readonly #deadline: number;

  constructor(appendsMax: number, msMax: number) {
    this.#appendsMax = appendsMax;
    this.#deadline = performance.now() + msMax;
  }

  /** Claims one append; false once the budget is spent. */
  take(): boolean {
    if (this.appends >= this.#appendsMax || performance.now() >= this.#deadline) return false;
    this.appends++;
    return true;
  }
}

async function measureCell(cell: Cell, opts: { dir: string; settings: Settings }): Promise<Run> {
  const { dir, settings } = opts;
  const batch = makeBatch(cell.recordsPerBatch);
  const appendsMax = Math.min(
    settings.cellAppendsMax,
    Math.floor(settings.cellBytesMax / batch.length),
  );
  await Deno.mkdir(dir, { recursive: true });
  try {
    if (cell.writer.kind === "log") {
      return await measureLog(cell, {
        dir,
        batch,
        appendsMax,
        msMax: settings.cellMsMax,
        fsync: cell.writer.fsync,
      });
    }
    return await measureRaw(cell.writer.kind === "raw-sync", {
      path: `${dir}/raw.log`,
      batch,
      appendsMax,
      msMax: settings.cellMsMax,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function measureLog(
  cell: Cell,
  opts: { dir: string; batch: Uint8Array; appendsMax: number; msMax: number; fsync: string },
): Promise<Run> {
  const fsync = parseFsyncPolicy(opts.fsync) as FsyncPolicy;
  let fatal: string | null = null;
  const log = await FileLog.open(denoEnv(), {
    dir: opts.dir,
    fsync,
    segmentBytes: SEGMENT_BYTES,
    segmentMs: 7 * 24 * 60 * 60 * 1000,
    indexIntervalBytes: INDEX_INTERVAL_BYTES,
    retentionBytes: -1,
    retentionMs: -1,
    onFatal: (reason) => (fatal = reason),
  });
  const header = readBatchHeader(opts.batch, 0);
  const budget = new Budget(opts.appendsMax, opts.msMax);
  const start = performance.now();
  let appendMsMax = 0;
  let run: Run;
  try {
    // Each appender awaits its append before the next, as a producer connection waiting for acks.
    await Promise.all(
      Array.from({ length: cell.appenders }, async () => {
        while (budget.take()) {
          const t = performance.now();
          // The log writes the base offset into the batch it is given: each append gets its own.
          await log.append(opts.batch.slice(), header);
          appendMsMax = Math.max(appendMsMax, performance.now() - t);
        }
      }),
    );
    // Before close, whose final sync is no part of the policy at work.
    run = {
      appends: budget.appends,
      seconds: (performance.now() - start) / 1000,
      syncs: log.stats.syncs,
      batchesSynced: log.stats.batchesSynced,
      appendMsMax,
    };
  } finally {
    await log.close();
  }
  if (fatal !== null) throw new Error(`${opts.dir}: ${fatal}`);
  return run;
}

/** The disk without GregorMQ: one writer, one write (and fdatasync if `sync`) per batch. */
async function measureRaw(
  sync: boolean,
  opts: { path: string; batch: Uint8Array; appendsMax: number; msMax: number },
): Promise<Run> {
  const file = await Deno.open(opts.path, { create: true, write: true, truncate: true });
  const budget = new Budget(opts.appendsMax, opts.msMax);
  const start = performance.now();
  let syncs = 0;
  let appendMsMax = 0;
  let run: Run;
  try {
    while (budget.take()) {
      const t = performance.now();
      let off = 0;
      while (off < opts.batch.length) off += await file.write(opts.batch.subarray(off));
      if (sync) {
        await file.syncData();
        syncs++;
      }
      appendMsMax = Math.max(appendMsMax, performance.now() - t);
    }
    run = {
      appends: budget.appends,
      seconds: (performance.now() - start) / 1000,
      syncs,
      batchesSynced: syncs,
      appendMsMax,
    };
    // Unmeasured, like FileLog.close(): leave no dirty pages for the next cell's syncs to meet.
    await file.syncData();
  } finally {
    file.close();
  }
  return run;
}

function logCells(): Cell[] {
  const cells: Cell[] = [];
  for (const recordsPerBatch of [1, 100]) {
    cells.push({
      section: "baseline",
      writer: { kind: "raw-sync" },
      appenders: 1,
      recordsPerBatch,
    });
    cells.push({
      section: "baseline",
      writer: { kind: "raw-write" },
      appenders: 1,
      recordsPerBatch,
    });
  }
  for (const fsync of ["always", "interval:5", "never"]) {
    for (const appenders of [1, 64]) {
      for (const recordsPerBatch of [1, 100]) {
        cells.push({ section: "log", writer: { kind: "log", fsync }, appenders, recordsPerBatch });
      }
    }
  }
  for (const appenders of [1, 8, 64]) {
    cells.push({
      section: "group commit",
      writer: { kind: "log", fsync: "always" },
      appenders,
      recordsPerBatch: 1,
    });
  }
  return cells;
}

function medianRun(runs: Run[]): Run {
  const sorted = [...runs].sort((a, b) => a.appends / a.seconds - b.appends / b.seconds);
  return sorted[Math.floor(sorted.length / 2)] as Run;
}

async function runLogCells(root: string, settings: Settings): Promise<CellResult[]> {
  const cells = logCells();
  await measureCell(
    { section: "log", writer: { kind: "log", fsync: "never" }, appenders: 8, recordsPerBatch: 10 },
    { dir: `${root}/warmup`, settings: { ...settings, cellMsMax: settings.warmupMs } },
  );
  const runs: Run[][] = cells.map(() => []);
  // Run by run over every cell, so a drift in disk or machine load spreads over all of them.
  for (let r = 0; r < settings.runs; r++) {
    for (const [i, cell] of cells.entries()) {
      const run = await measureCell(cell, { dir: `${root}/cell-${i}`, settings });
      if (run.appends === 0) throw new Error(`${describeCell(cell)}: no append completed`);
      runs[i]!.push(run);
      console.error(
        `run ${r + 1}/${settings.runs} ${describeCell(cell)}: ${
          fmtInt(run.appends / run.seconds)
        } appends/s`,
      );
    }
  }
  const rawSyncPerSec = new Map<number, number>();
  for (const [i, cell] of cells.entries()) {
    if (cell.writer.kind !== "raw-sync") continue;
    const m = medianRun(runs[i]!);
    rawSyncPerSec.set(cell.recordsPerBatch, m.appends / m.seconds);
  }
  return cells.map((cell, i) => {
    const m = medianRun(runs[i]!);
    const appendsPerSec = m.appends / m.seconds;
    const msgPerSec = appendsPerSec * cell.recordsPerBatch;
    return {
      section: cell.section,
      storage: storageName(cell.writer),
      appenders: cell.appenders,
      recordsPerBatch: cell.recordsPerBatch,
      batchBytes: makeBatch(cell.recordsPerBatch).length,
      appendsPerSec,
      msgPerSec,
      mbPerSec: msgPerSec * RECORD_BYTES / 1e6,
      batchesPerSync: m.syncs === 0 ? null : m.batchesSynced / m.syncs,
      appendMsMax: m.appendMsMax,
      vsRawSync: appendsPerSec / (rawSyncPerSec.get(cell.recordsPerBatch) as number),
      runs: runs[i]!,
    };
  });
}

function describeCell(c: Cell): string {
  return `${c.section}: ${storageName(c.writer)}, ${c.appenders} appender(s), ` +
    `${c.recordsPerBatch} record(s)/batch`;
}

// --- Broker process ----------------------------------------------------------------------------

const brokers = new Set<Child>();

/**
 * Produce-only through a broker process on `storage` flags: 100 B messages, acks from the broker,
 * at most `e2eWindowMessages` unacknowledged, for `e2eSendMsMax`.
 */
async function measureBroker(
  flags: string[],
  opts: { dataDir: string; settings: Settings },
): Promise<BrokerRun> {
  const { settings } = opts;
  const broker = new Child("broker", Deno.execPath(), [
    "run",
    "-A",
    "cli/broker.ts",
    "--host",
    HOST,
    "--port",
    "0",
    "--data-dir",
    opts.dataDir,
    ...flags,
  ]);
  brokers.add(broker);
  try {
    const port = await broker.ready(listenPort);
    const client = await connect({
      host: HOST,
      port,
      requestTimeoutMs: settings.e2eDrainMsMax,
      connectTimeoutMs: STARTUP_MS_MAX,
    });
    try {
      await client.admin.createTopic("bench");
      const producer = client.producer({ lingerMs: settings.e2eLingerMs });
      const message = { value: payload(RECORD_BYTES) };
      let outstanding = 0;
      let acknowledged = 0;
      let failure: unknown = null;
      let wakeAt = 0;
      let wake: (() => void) | null = null;
      const settled = (): void => {
        outstanding--;
        if (wake !== null && outstanding <= wakeAt) {
          const w = wake;
          wake = null;
          w();
        }
      };
      /** Waits until at most `n` are outstanding; false if nothing moved for the drain time. */
      const waitFor = async (n: number): Promise<boolean> => {
        while (outstanding > n && failure === null) {
          const before = acknowledged;
          wakeAt = n;
          await withTimeout(new Promise<void>((r) => (wake = r)), settings.e2eDrainMsMax)
            .catch(() => {});
          wake = null;
          if (acknowledged === before) return false;
        }
        if (failure !== null) throw failure;
        return true;
      };
      const start = performance.now();
      let sent = 0;
      while (sent < settings.e2eMessagesMax) {
        if (sent % 256 === 0 && performance.now() - start >= settings.e2eSendMsMax) break;
        if (outstanding >= settings.e2eWindowMessages) {
          if (!await waitFor(settings.e2eWindowMessages / 2)) break;
        }
        outstanding++;
        sent++;
        producer.send("bench", message).then(() => acknowledged++, (err) => (failure ??= err))
          .finally(settled);
      }
      const drained = await waitFor(0);
      const seconds = (performance.now() - start) / 1000;
      if (!drained) {
        throw new Error(`Only ${acknowledged} of ${sent} produces were acknowledged`);
      }
      return { msgPerSec: acknowledged / seconds, sent, acknowledged, seconds };
    } finally {
      await withTimeout(client.close(), settings.e2eDrainMsMax).catch(() => {});
    }
  } finally {
    await broker.stop();
    brokers.delete(broker);
    await Deno.remove(opts.dataDir, { recursive: true }).catch(() => {});
  }
}

async function runBrokers(root: string, settings: Settings): Promise<BrokerResult[]> {
  const storages: { storage: string; flags: string[] }[] = [
    { storage: "disk, fsync never", flags: ["--persistence", "disk", "--fsync", "never"] },
    { storage: "disk, fsync always", flags: ["--persistence", "disk", "--fsync", "always"] },
    { storage: "memory", flags: ["--persistence", "memory"] },
  ];
  // Unmeasured, so the first measured run does not pay for warming up this process's client.
  await measureBroker(["--persistence", "memory"], {
    dataDir: `${root}/broker-warmup`,
    settings: { ...settings, e2eSendMsMax: settings.warmupMs },
  });
  const runs: BrokerRun[][] = storages.map(() => []);
  // A fresh broker and data directory per run; storages alternate run by run.
  for (let r = 0; r < settings.runs; r++) {
    for (const [i, s] of storages.entries()) {
      const run = await measureBroker(s.flags, { dataDir: `${root}/broker-${i}-${r}`, settings });
      runs[i]!.push(run);
      console.error(
        `run ${r + 1}/${settings.runs} broker produce-only, ${s.storage}: ` +
          `${fmtInt(run.msgPerSec)} msg/s`,
      );
    }
  }
  const medians = runs.map((rs) => {
    const sorted = [...rs].sort((a, b) => a.msgPerSec - b.msgPerSec);
    return (sorted[Math.floor(sorted.length / 2)] as BrokerRun).msgPerSec;
  });
  return storages.map((s, i) => ({
    storage: s.storage,
    msgPerSec: medians[i]!,
    mbPerSec: medians[i]! * RECORD_BYTES / 1e6,
    vsNever: medians[i]! / medians[0]!,
    runs: runs[i]!,
  }));
}

// --- Reporting ---------------------------------------------------------------------------------

function logTable(results: CellResult[]): string {
  const header = [
    "section",
    "storage",
    "appenders",
    "rec/batch",
    "appends/s",
    "msg/s",
    "MB/s",
    "batches/sync",
    "append ms max",
    "vs raw sync",
  ];
  const rows = results.map((r) => [
    r.section,
    r.storage,
    String(r.appenders),
    String(r.recordsPerBatch),
    fmtInt(r.appendsPerSec),
    fmtInt(r.msgPerSec),
    r.mbPerSec.toFixed(1),
    r.batchesPerSync === null ? "-" : r.batchesPerSync.toFixed(1),
    r.appendMsMax.toFixed(1),
    r.vsRawSync.toFixed(2),
  ]);
  return render(header, rows, 2);
}

function brokerTable(results: BrokerResult[]): string {
  const header = ["broker produce-only, 100 B", "msg/s", "MB/s", "vs fsync never"];
  const rows = results.map((r) => [
    r.storage,
    fmtInt(r.msgPerSec),
    r.mbPerSec.toFixed(1),
    r.vsNever.toFixed(2),
  ]);
  return render(header, rows, 1);
}

/** Columns before `textColumns` are left-aligned, the rest right-aligned. */
function render(header: string[], rows: string[][], textColumns: number): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < textColumns ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** The machine and the filesystem the logs were written to. */
async function machineInfo(dir: string, loadAverageAtStart: number[]): Promise<object> {
  let cpuModel = "unknown";
  let filesystem = "unknown";
  try {
    const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
    cpuModel = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpuModel;
    // The longest mount point that holds `dir`.
    let best = "";
    for (const l of (await Deno.readTextFile("/proc/mounts")).split("\n")) {
      const [device, mountPoint, type, options] = l.split(" ");
      if (mountPoint === undefined || !dir.startsWith(mountPoint)) continue;
      if (mountPoint.length < best.length) continue;
      best = mountPoint;
      filesystem = `${device} on ${mountPoint} (${type}, ${options})`;
    }
  } catch {
    // Not Linux: unknown.
  }
  return {
    cpuModel,
    cores: navigator.hardwareConcurrency,
    filesystem,
    os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
    loadAverageAtStart,
    loadAverageAtEnd: Deno.loadavg(),
    deno: Deno.version.deno,
  };
}

let root: string | null = null;

async function cleanUp(): Promise<void> {
  await Promise.all([...brokers].map((b) => b.stop()));
  brokers.clear();
  if (root !== null) await Deno.remove(root, { recursive: true }).catch(() => {});
  root = null;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      json: { type: "string" },
      dir: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const settings = values.quick ? QUICK : FULL;
  const startedAt = new Date().toISOString();
  const loadAverageAtStart = Deno.loadavg();
  root = await Deno.makeTempDir({ prefix: "gregormq-bench-storage-", dir: values.dir });
  const dir = root;
  console.error(`writing under ${dir}`);

  const log = await runLogCells(dir, settings);
  const broker = await runBrokers(dir, settings);

  console.log(logTable(log));
  console.log("");
  console.log(brokerTable(broker));
  if (values.json !== undefined) {
    const report = {
      benchmark: "storage",
      startedAt,
      quick: values.quick,
      settings,
      recordBytes: RECORD_BYTES,
      machine: await machineInfo(dir, loadAverageAtStart),
      log,
      broker,
    };
    await Deno.writeTextFile(values.json, JSON.stringify(report, null, 2) + "\n");
    console.error(`wrote ${values.json}`);
  }
}

await runHarness("storage", main, cleanUp);
