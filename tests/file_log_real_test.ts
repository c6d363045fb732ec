// The file log on real files: what the simulated-disk tests in src/storage/file_log_test.ts prove,
// checked once on the host filesystem through denoEnv().

import assert from "node:assert/strict";
import { denoEnv } from "../src/io/deno/mod.ts";
import {
  batchesIn,
  decodeBatch,
  encodeBatch,
  readBatchHeader,
  validateBatch,
} from "../src/protocol/batch.ts";
import { FileLog, type FileLogOptions } from "../src/storage/file_log.ts";
import { segmentFile, segmentName } from "../src/storage/layout.ts";

const LIMITS = { recordsBytesMax: 1 << 20 };
const ALL = { bytesMax: 1 << 30, recordsMax: 1 << 30 };
const enc = new TextEncoder();
const dec = new TextDecoder();

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gregormq_file_log_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function options(dir: string, reports: string[], fatal: string[]): FileLogOptions {
  return {
    dir: `${dir}/p-0`,
    fsync: { kind: "always" },
    segmentBytes: 2_000,
    segmentMs: 3_600_000,
    indexIntervalBytes: 300,
    retentionBytes: -1,
    retentionMs: -1,
    onFatal: (reason) => fatal.push(reason),
    onReport: (msg) => reports.push(msg),
  };
}

/** Batch `i`: two records whose values name it. */
function batch(i: number): Uint8Array {
  return encodeBatch([
    { value: enc.encode(`batch ${i} record 0`), timestamp: 1_700_000_000_000 + i },
    { value: enc.encode(`batch ${i} record 1`), timestamp: 1_700_000_000_000 + i },
  ]);
}

/** Reads the whole log and returns every record's value, checking offsets run without a gap. */
async function values(log: FileLog): Promise<string[]> {
  const out: string[] = [];
  let offset = log.logStartOffset;
  while (offset < log.nextOffset) {
    const r = await log.read(offset, ALL);
    for (const { off, header } of batchesIn(r.bytes)) {
      const bytes = r.bytes.subarray(off, off + header.sizeBytes);
      validateBatch(bytes, LIMITS);
      for (const rec of decodeBatch(bytes, 0, LIMITS)) {
        assert.equal(rec.offset, out.length);
        out.push(dec.decode(rec.value ?? new Uint8Array(0)));
      }
    }
    offset = r.nextOffset;
  }
  return out;
}

function expected(batches: number): string[] {
  return Array.from({ length: batches * 2 }, (_, k) => `batch ${k >> 1} record ${k & 1}`);
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("FileLog on real files appends, rolls, seals with indexes, and reopens after a clean close", async () => {
  await withTempDir(async (dir) => {
    const reports: string[] = [];
    const fatal: string[] = [];
    const opts = options(dir, reports, fatal);
    let log = await FileLog.open(denoEnv(), opts);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const b = batch(i);
        return log.append(b, readBatchHeader(b));
      }),
    );
    assert.deepEqual(results.map((r) => r.baseOffset), Array.from({ length: 40 }, (_, i) => 2 * i));
    assert.equal(log.stats.batchesSynced, 40);
    assert.ok(log.stats.syncs < 40, `${log.stats.syncs} syncs for 40 batches`);
    assert.ok(log.segmentCount > 2);
    assert.deepEqual(await values(log), expected(40));
    const segments = log.segmentCount;
    await log.close();

    const files = await names(opts.dir);
    assert.ok(files.includes("clean-shutdown"));
    assert.equal(files.filter((n) => n.endsWith(".log")).length, segments);
    assert.equal(files.filter((n) => n.endsWith(".index")).length, segments - 1);
    assert.equal(files.filter((n) => n.endsWith(".timeindex")).length, segments - 1);

    log = await FileLog.open(denoEnv(), opts);
    assert.equal(log.nextOffset, 80);
    assert.equal(await log.offsetForTimestamp(1_700_000_000_000 + 25), 50);
    const b = batch(40);
    assert.equal((await log.append(b, readBatchHeader(b))).baseOffset, 80);
    assert.deepEqual(await values(log), expected(41));
    await log.close();
    assert.deepEqual({ reports, fatal }, { reports: [], fatal: [] });
  });
});

Deno.test("FileLog on real files cuts a torn tail and rebuilds a lost index after an unclean stop", async () => {
  await withTempDir(async (dir) => {
    const reports: string[] = [];
    const fatal: string[] = [];
    const opts = options(dir, reports, fatal);
    let log = await FileLog.open(denoEnv(), opts);
    for (let i = 0; i < 30; i++) {
      const b = batch(i);
      await log.append(b, readBatchHeader(b));
    }
    await log.close();

    // What a crash mid-write leaves: no marker, half a batch at the end of the active segment,
    // and (say) a sealed segment's index file never written.
    const logs = (await names(opts.dir)).filter((n) => n.endsWith(".log"));
    const active = `${opts.dir}/${logs.at(-1)}`;
    await Deno.remove(`${opts.dir}/clean-shutdown`);
    await Deno.writeFile(active, batch(30).subarray(0, 40), { append: true });
    await Deno.remove(segmentFile(opts.dir, 0, "index"));

    log = await FileLog.open(denoEnv(), opts);
    assert.ok(reports.some((r) => r.startsWith("Truncated 40 bytes")), reports.join("\n"));
    assert.ok(reports.some((r) => r.startsWith(`Rebuilt the indexes of ${segmentName(0, "log")}`)));
    assert.equal(log.nextOffset, 60);
    assert.deepEqual(await values(log), expected(30));
    const b = batch(30);
    assert.equal((await log.append(b, readBatchHeader(b))).baseOffset, 60);
    assert.deepEqual(await values(log), expected(31));
    await log.close();
    const files = await names(opts.dir);
    assert.ok(files.includes(segmentName(0, "index")));
    assert.deepEqual(files.filter((n) => n.endsWith(".tmp")), []);
    assert.deepEqual(fatal, []);
  });
});
