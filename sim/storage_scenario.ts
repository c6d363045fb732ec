// The file log under damage at rest: a seed writes batches of every shape over small segments and
// a sparse index, flips bytes of some of them on the simulated disk (as a failing drive would),
// then reads from random offsets with random limits, and in order from the start as a subscriber
// does, while the disk may also flip bits on single reads. The checker looks at every byte served:
// whatever path a read takes (an index walk, a resumed read, a re-read), it returns whole batches
// that pass their checksum and hold exactly what was written at those offsets, or it refuses. And
// offsets before the first damaged batch stay readable when reads are clean.

import { SeededRandom } from "../src/io/prng.ts";
import {
  BATCH_HEADER_BYTES,
  batchesIn,
  type BatchLimits,
  decodeBatch,
  encodeBatch,
  readBatchHeader,
  validateBatch,
} from "../src/protocol/batch.ts";
import { GregorError } from "../src/protocol/errors.ts";
import { FileLog } from "../src/storage/file_log.ts";
import { OffsetOutOfRange, type ReadResult } from "../src/storage/log.ts";
import type { Env } from "../src/io/types.ts";
import type { SimNode } from "./node.ts";
import { calmDisk } from "./disk.ts";
import { calmPlan } from "./faults.ts";
import { Buggify } from "./buggify.ts";
import { runOnNode } from "./harness.ts";
import { type RunResult, runResult } from "./result.ts";
import { Simulation } from "./simulation.ts";

/** A storage run, all rolled from its seed. */
export interface StorageOptions {
  seed: number;
  batches: number;
  segmentBytes: number;
  indexIntervalBytes: number;
  /** Bytes flipped at rest, each in a different batch (0: a clean log). */
  flips: number;
  /** Chance a single read returns one flipped bit (the stored bytes stay good). */
  readFlipProb: number;
  /** Random reads after the damage. */
  reads: number;
}

const DIR = "log";
const LIMITS: BatchLimits = { recordsBytesMax: 1 << 20 };
/** Random reads a seed makes, at most. */
const RANDOM_READS_MAX = 200;
/** Violations kept per run. */
const VIOLATIONS_MAX = 10;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Derives the options for `seed`, then applies `overrides`. */
export function storageOptions(
  seed: number,
  overrides: Partial<StorageOptions> = {},
): StorageOptions {
  const r = new SeededRandom(seed, "storage-options");
  return {
    seed,
    batches: r.int(20, 150),
    segmentBytes: r.int(400, 6_000),
    indexIntervalBytes: r.int(40, 1_500),
    flips: r.int(0, 4),
    readFlipProb: r.chance(0.5) ? r.float() * 0.05 : 0,
    reads: r.int(20, RANDOM_READS_MAX),
    ...overrides,
  };
}

interface Written {
  base: number;
  last: number;
  /** Where it lies: its segment's file and its byte position there. */
  path: string;
  pos: number;
  size: number;
}

/** Every batch in the log's segment files on disk, in offset order. */
async function batchesOnDisk(env: Env, node: SimNode): Promise<Written[]> {
  const out: Written[] = [];
  const names = (await env.disk.list(DIR)).filter((n) => n.endsWith(".log")).sort();
  for (const name of names) {
    const path = `${DIR}/${name}`;
    const bytes = node.disk.durableBytes(path) ?? new Uint8Array(0);
    for (let pos = 0; pos + BATCH_HEADER_BYTES <= bytes.length;) {
      const h = readBatchHeader(bytes, pos, { headerOnly: true });
      if (h.sizeBytes < BATCH_HEADER_BYTES || pos + h.sizeBytes > bytes.length) break;
      out.push({
        base: h.baseOffset,
        last: h.baseOffset + h.recordCount - 1,
        path,
        pos,
        size: h.sizeBytes,
      });
      pos += h.sizeBytes;
    }
  }
  return out;
}

/** Virtual ms between two reads of a batch whose append is under way. */
const EARLY_READ_GAP_MS = 0.5;
/** Timestamps looked up each time the scenario asks the log for offsets by time. */
const TIME_LOOKUPS = 12;

/** The segments on disk, oldest first: base offset, bytes, and largest record timestamp. */
function segmentsOf(
  written: readonly Written[],
  batches: readonly { base: number; maxTs: number }[],
): { base: number; bytes: number; maxTs: number }[] {
  const maxTsAt = new Map(batches.map((b) => [b.base, b.maxTs]));
  const byPath = new Map<string, { base: number; bytes: number; maxTs: number }>();
  for (const w of written) {
    const seg = byPath.get(w.path);
    const ts = maxTsAt.get(w.base) ?? -1;
    if (seg === undefined) byPath.set(w.path, { base: w.base, bytes: w.size, maxTs: ts });
    else {
      seg.bytes += w.size;
      seg.maxTs = Math.max(seg.maxTs, ts);
    }
  }
  return [...byPath.values()].sort((a, b) => a.base - b.base);
}

/** Runs the storage scenario and checks it. */
export async function runStorage(opts: StorageOptions): Promise<RunResult> {
  const sim = new Simulation(opts.seed, {
    disk: { ...calmDisk(), readFlipProb: opts.readFlipProb },
  });
  // Fault points: reads that forget where the last one ended walk the index, slowed syncs and rolls.
  const buggify = new Buggify(new SeededRandom(opts.seed, "storage-buggify"));
  sim.faults = buggify;
  const r = new SeededRandom(opts.seed, "storage-workload");
  const violations: string[] = [];
  const violate = (msg: string) => {
    if (violations.length < VIOLATIONS_MAX) violations.push(msg);
  };
  const stats = {
    served: 0,
    refused: 0,
    damagedBatches: 0,
    servedBeforeDamage: 0,
    timeLookups: 0,
    earlyReads: 0,
    retentionChecks: 0,
    reopens: 0,
  };
  const values: string[] = [];

  await runOnNode(sim, "disk", async (env, node) => {
    const open = () =>
      FileLog.open(env, {
        dir: DIR,
        fsync: { kind: "always" },
        segmentBytes: opts.segmentBytes,
        // Reads go to the file, whose faults this scenario is about (the broker scenarios keep the
        // newest batches in memory, the default).
        tailCacheBytes: 0,
        segmentMs: 365 * 24 * 3_600_000,
        indexIntervalBytes: opts.indexIntervalBytes,
        retentionBytes: -1,
        retentionMs: -1,
        onFatal: (reason) => violate(`the log failed: ${reason}`),
      });
    let log = await open();
    /** Each batch written: its base offset and its largest record timestamp. */
    const batchTimes: { base: number; maxTs: number }[] = [];
    for (let i = 0; i < opts.batches; i++) {
      const n = r.int(1, 6);
      const pad = ".".repeat(r.int(0, 80));
      const records = Array.from({ length: n }, (_, k) => {
        const value = `${values.length}:${i}:${k}`;
        values.push(value);
        return { value: enc.encode(value + pad), timestamp: 1_000 + values.length };
      });
      const batch = encodeBatch(records);
      const base = values.length - n;
      batchTimes.push({ base, maxTs: 1_000 + values.length });
      const appending = log.append(batch, readBatchHeader(batch));
      // Under fsync "always" a reader sees a batch only once it is durable, which is when its
      // append resolves: a reader polling meanwhile must find nothing at its offset.
      if (r.float() < 0.3) {
        let settled = false;
        appending.then(() => (settled = true), () => (settled = true));
        while (!settled) {
          const res = await log.read(base, { bytesMax: 1 << 16, recordsMax: 10 }).catch(() => null);
          stats.earlyReads++;
          if (res !== null && res.bytes.length > 0 && !settled) {
            violate(`a read served offset ${base} before its append was durable (fsync "always")`);
            break;
          }
          await env.clock.sleep(EARLY_READ_GAP_MS);
        }
      }
      await appending;
    }
    // Replay by time: the first batch whose largest timestamp is at or after the one asked for,
    // else the end. Asked of the log as written, and again after it is closed and opened, which
    // rebuilds the last segment's indexes from the file.
    const lookUpTimes = async (when: string) => {
      for (let k = 0; k < TIME_LOOKUPS && violations.length === 0; k++) {
        const ts = 1_000 + r.int(0, values.length + 3);
        const want = batchTimes.find((b) => b.maxTs >= ts)?.base ?? values.length;
        const got = await log.offsetForTimestamp(ts);
        stats.timeLookups++;
        if (got !== want) {
          violate(
            `${when}, the offset for timestamp ${ts} is ${got}; the first batch at or after it starts at ${want}`,
          );
        }
      }
    };
    await lookUpTimes("as written");
    await log.close();
    log = await open();
    stats.reopens++;
    await lookUpTimes("after reopening");
    const written = await batchesOnDisk(env, node);
    // Flip a byte of distinct batches, anywhere in them, in what is on the disk.
    const damaged = new Set<number>();
    for (let f = 0; f < opts.flips; f++) {
      const i = r.int(0, written.length);
      if (damaged.has(i)) continue;
      const w = written[i]!;
      damaged.add(i);
      stats.damagedBatches++;
      node.disk.corruptAtRest(w.path, w.pos + r.int(0, w.size));
    }
    const firstDamaged = Math.min(...[...damaged].map((i) => written[i]!.base));

    const check = (offset: number, res: ReadResult): number => {
      let next = -1;
      for (const { off, header } of batchesIn(res.bytes)) {
        const bytes = res.bytes.subarray(off, off + header.sizeBytes);
        try {
          validateBatch(bytes, LIMITS);
        } catch (err) {
          violate(
            `a read from offset ${offset} served the batch at ${header.baseOffset}, which fails ` +
              `its checks (${(err as Error).message}): corruption must be refused, never served`,
          );
          return -1;
        }
        const last = header.baseOffset + header.recordCount - 1;
        if (
          next < 0 ? !(header.baseOffset <= offset && offset <= last) : header.baseOffset !== next
        ) {
          violate(
            `a read from offset ${offset} served batch ${header.baseOffset}..${last} out of place`,
          );
          return -1;
        }
        for (const rec of decodeBatch(bytes, 0, LIMITS)) {
          const got = dec.decode(rec.value ?? new Uint8Array(0)).replace(/\.+$/, "");
          if (got !== values[rec.offset]) {
            violate(
              `a read from offset ${offset} served "${got}" at offset ${rec.offset}, where ` +
                `"${values[rec.offset]}" was written`,
            );
            return -1;
          }
        }
        next = last + 1;
      }
      if (next < 0 || next !== res.nextOffset) {
        violate(
          `a read from offset ${offset} said it ends before ${res.nextOffset}, served ${next}`,
        );
        return -1;
      }
      stats.served++;
      if (next <= firstDamaged) stats.servedBeforeDamage++;
      return next;
    };
    /** Reads from `offset`: where the next read starts, or -1 once refused. */
    const readAt = async (offset: number, bytesMax: number, recordsMax: number) => {
      try {
        return check(offset, await log.read(offset, { bytesMax, recordsMax }));
      } catch (err) {
        if (err instanceof OffsetOutOfRange || !(err instanceof GregorError)) {
          violate(`a read from offset ${offset} failed: ${(err as Error).message}`);
        } else if (offset < firstDamaged && opts.readFlipProb === 0) {
          violate(
            `a read from offset ${offset} was refused (${err.message}), though the first ` +
              `damaged batch starts at ${firstDamaged}`,
          );
        }
        stats.refused++;
        return -1;
      }
    };
    for (let i = 0; i < opts.reads && violations.length === 0; i++) {
      await readAt(r.int(0, values.length), r.int(1, 3 * opts.segmentBytes), r.int(1, 40));
    }
    // A subscriber from the start: every read resumes where the one before ended.
    for (let offset = 0; offset >= 0 && offset < values.length && violations.length === 0;) {
      offset = await readAt(offset, r.int(1, 3 * opts.segmentBytes), r.int(1, 40));
    }
    // Retention, by size or by time, deletes the oldest segments while the log is over its limit,
    // never the active one, and not one more than that.
    if (violations.length === 0) {
      const segments = segmentsOf(written, batchTimes);
      const bySize = r.float() < 0.5;
      const limitBytes = r.int(0, Math.max(1, log.sizeBytes) + 1);
      const cutTs = 1_000 + r.int(0, values.length + 2);
      let keepFrom = 0;
      let size = segments.reduce((n, seg) => n + seg.bytes, 0);
      while (keepFrom < segments.length - 1) {
        const oldest = segments[keepFrom]!;
        if (bySize ? size <= limitBytes : oldest.maxTs >= cutTs) break;
        size -= oldest.bytes;
        keepFrom++;
      }
      const want = segments[keepFrom]?.base ?? 0;
      log.setRetention(
        bySize ? { bytes: limitBytes, ms: -1 } : { bytes: -1, ms: env.clock.wallMs() - cutTs },
      );
      await log.enforceRetention();
      stats.retentionChecks++;
      if (log.logStartOffset !== want) {
        violate(
          `retention ${bySize ? `of ${limitBytes} bytes` : `before timestamp ${cutTs}`} left the ` +
            `log starting at ${log.logStartOffset}; the oldest segment it must keep starts at ${want}`,
        );
      }
    }
    await log.close();
  });
  return runResult(sim, {
    scenario: "storage",
    seed: opts.seed,
    options: opts,
    plan: calmPlan(),
    violations,
    stats: { ...stats, ...buggify.stats() },
  });
}
