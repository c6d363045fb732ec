// The Log contract as executable tests, run against every twin (MemoryLog in
// log_contract_memory_test.ts, FileLog on the simulated disk and on real files in
// log_contract_file_test.ts) so the storage engine's twins cannot drift apart.

import assert from "node:assert/strict";
import {
  batchesIn,
  type BatchLimits,
  decodeBatch,
  encodeBatch,
  readBatchHeader,
  validateBatch,
} from "../src/protocol/batch.ts";
import {
  type AppendResult,
  type Log,
  OffsetInsideBatch,
  OffsetOutOfRange,
  type ReadLimits,
  type ReadResult,
} from "../src/storage/mod.ts";

/** How a contract test wants its log; a twin ignores what it has no use for. */
export interface LogShape {
  /** Bytes a FileLog segment holds before it rolls (1: one batch per segment). */
  segmentBytes?: number;
}

/** What a contract test gets: fresh logs, retention on demand, and the world's wall clock. */
export interface LogWorld {
  open(shape?: LogShape): Promise<Log>;
  /** Applies retention now: at most `bytes` (Infinity: no limit), and batches at most `ms` old. */
  retain(log: Log, limits: { bytes: number; ms?: number }): Promise<void>;
  wallMs(): number;
}

/** A twin the contract runs on: it owns setup and teardown (a simulated world, a temp dir). */
export interface LogTwin {
  name: string;
  /** Retention by time is part of this twin's promise (a MemoryLog keeps by size only). */
  retainsByTime: boolean;
  run(body: (w: LogWorld) => Promise<void>): Promise<void>;
}

const LIMITS: BatchLimits = { recordsBytesMax: 1024 * 1024 };
/** Limits that never stop a read. */
export const ALL: ReadLimits = { bytesMax: 1 << 30, recordsMax: 1 << 30 };
const enc = new TextEncoder();
const dec = new TextDecoder();

/** One batch as the test built it. */
export interface ModelBatch {
  base: number;
  last: number;
  maxTs: number;
  bytes: number;
}

/**
 * What a log should hold: the value of every offset still stored and each batch's span. Batches
 * get offsets in the order they are appended, so the model names them before the log answers.
 */
export class LogModel {
  readonly values = new Map<number, string>();
  batches: ModelBatch[] = [];
  start = 0;
  next = 0;
  #id = 0;

  /** A new batch of `records` records (remembered at the offsets it will get). */
  batch(opts: { records?: number; timestamp?: number; padBytes?: number } = {}): Uint8Array {
    const id = this.#id++;
    const n = opts.records ?? 1;
    const ts = opts.timestamp ?? 1_700_000_000_000;
    const base = this.next;
    const pad = ".".repeat(opts.padBytes ?? 0);
    const records = Array.from({ length: n }, (_, r) => {
      const value = `${String(id).padStart(6, "0")}:${r}`;
      this.values.set(base + r, value);
      return { value: enc.encode(value + pad), timestamp: ts + r };
    });
    const bytes = encodeBatch(records);
    this.batches.push({ base, last: base + n - 1, maxTs: ts + n - 1, bytes: bytes.length });
    this.next = base + n;
    return bytes;
  }

  get sizeBytes(): number {
    return this.batches.reduce((n, b) => n + b.bytes, 0);
  }

  /** Forgets every batch from `offset` (a batch's base, or `next`) on. */
  truncate(offset: number): void {
    while ((this.batches.at(-1)?.base ?? -Infinity) >= offset) {
      const b = this.batches.pop() as ModelBatch;
      for (let o = b.base; o <= b.last; o++) this.values.delete(o);
    }
    this.next = offset;
    if (this.batches.length === 0) this.start = offset;
  }

  /** Forgets the batches before `start` (retention dropped them). */
  dropBefore(start: number): void {
    while ((this.batches[0]?.last ?? Infinity) < start) {
      const b = this.batches.shift() as ModelBatch;
      for (let o = b.base; o <= b.last; o++) this.values.delete(o);
    }
    this.start = start;
  }

  reset(offset: number): void {
    this.truncate(-1);
    this.start = offset;
    this.next = offset;
  }
}

export function append(log: Log, batch: Uint8Array): Promise<AppendResult> {
  return log.append(batch, readBatchHeader(batch));
}

/** Appends a model batch and checks where it landed. */
export async function appendChecked(
  log: Log,
  model: LogModel,
  opts: Parameters<LogModel["batch"]>[0] = {},
): Promise<AppendResult> {
  const base = model.next;
  const batch = model.batch(opts);
  const r = await append(log, batch);
  assert.deepEqual(r, { baseOffset: base, lastOffset: model.next - 1 });
  assert.equal(
    readBatchHeader(batch).baseOffset,
    base,
    "the base offset is written into the batch",
  );
  return r;
}

/** The records of a read, by offset, after checking its batches' shape against the limits. */
export function checkRead(
  r: ReadResult,
  offset: number,
  limits: ReadLimits,
): { offset: number; value: string }[] {
  const out: { offset: number; value: string }[] = [];
  let count = 0;
  let next = -1;
  let records = 0;
  for (const { off, header } of batchesIn(r.bytes)) {
    const bytes = r.bytes.subarray(off, off + header.sizeBytes);
    validateBatch(bytes, LIMITS);
    const last = header.baseOffset + header.recordCount - 1;
    if (count === 0) {
      assert.ok(
        header.baseOffset <= offset && offset <= last,
        `batch ${header.baseOffset}..${last} for ${offset}`,
      );
    } else {
      assert.equal(header.baseOffset, next, "batches continue one another");
    }
    for (const rec of decodeBatch(bytes, 0, LIMITS)) {
      if (rec.offset < offset) continue;
      records++;
      out.push({
        offset: rec.offset,
        value: dec.decode(rec.value ?? new Uint8Array(0)).replace(/\.+$/, ""),
      });
    }
    next = last + 1;
    count++;
  }
  assert.ok(count > 0, `a read from ${offset} returned no batch`);
  assert.equal(r.nextOffset, next);
  assert.equal(r.records, records);
  if (count > 1) {
    assert.ok(r.bytes.length <= limits.bytesMax, `${r.bytes.length} bytes over ${limits.bytesMax}`);
    assert.ok(records <= limits.recordsMax, `${records} records over ${limits.recordsMax}`);
  }
  return out;
}

/** Reads from the log's start to its end, read after read, and checks every value. */
export async function readAll(log: Log, model: LogModel, limits = ALL): Promise<number> {
  assert.equal(log.logStartOffset, model.start, "logStartOffset");
  assert.equal(log.nextOffset, model.next, "nextOffset");
  let offset = log.logStartOffset;
  let reads = 0;
  while (offset < log.nextOffset) {
    const r = await log.read(offset, limits);
    for (const rec of checkRead(r, offset, limits)) {
      assert.equal(rec.value, model.values.get(rec.offset), `value at offset ${rec.offset}`);
    }
    assert.ok(r.nextOffset > offset);
    offset = r.nextOffset;
    reads++;
  }
  assert.equal(offset, model.next);
  return reads;
}

async function rejects(p: Promise<unknown>, cls: new (...a: never[]) => Error): Promise<void> {
  await assert.rejects(p, (err) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    return true;
  });
}

/** Registers every contract test as `Deno.test("<twin.name>: <behaviour>", ...)`. */
export function defineLogContractTests(twin: LogTwin): void {
  const test = (behaviour: string, body: (w: LogWorld) => Promise<void>): void => {
    Deno.test(`${twin.name}: ${behaviour}`, () => twin.run(body));
  };

  test("append() gives consecutive offsets and moves nextOffset and sizeBytes", async (w) => {
    const log = await w.open();
    const m = new LogModel();
    assert.deepEqual([log.logStartOffset, log.nextOffset, log.sizeBytes], [0, 0, 0]);
    for (let i = 0; i < 12; i++) {
      await appendChecked(log, m, { records: 1 + (i % 4), padBytes: i * 7 });
      assert.equal(log.nextOffset, m.next);
      assert.equal(log.sizeBytes, m.sizeBytes);
    }
    assert.equal(log.logStartOffset, 0);
    await readAll(log, m);
    await log.close();
  });

  test("sync() resolves and the log serves the same batches after it", async (w) => {
    const log = await w.open();
    const m = new LogModel();
    for (let i = 0; i < 5; i++) await appendChecked(log, m, { records: 2 });
    await log.sync();
    await readAll(log, m);
    await appendChecked(log, m, { records: 1 });
    await log.sync();
    await readAll(log, m);
    await log.close();
  });

  test("read() from every offset returns whole batches in order, the first holding it", async (w) => {
    const log = await w.open();
    const m = new LogModel();
    for (let i = 0; i < 10; i++) await appendChecked(log, m, { records: 3 });
    for (let offset = 0; offset < m.next; offset++) {
      const got = checkRead(await log.read(offset, ALL), offset, ALL);
      assert.equal(got[0]?.offset, offset, "records before the offset are not counted");
      for (const rec of got) assert.equal(rec.value, m.values.get(rec.offset));
    }
    await log.close();
  });

  test("read() stops before a batch that would pass bytesMax or recordsMax, but returns at least one", async (w) => {
    const log = await w.open();
    const m = new LogModel();
    for (let i = 0; i < 8; i++) await appendChecked(log, m, { records: 3, padBytes: 100 });
    const size = (m.batches[0] as ModelBatch).bytes;
    for (
      const limits of [
        { bytesMax: 1, recordsMax: 1 << 30 },
        { bytesMax: 1 << 30, recordsMax: 1 },
        { bytesMax: size * 2 + size / 2, recordsMax: 1 << 30 },
        { bytesMax: 1 << 30, recordsMax: 7 },
      ]
    ) {
      for (const offset of [0, 1, 4, 12, m.next - 1]) {
        const r = await log.read(offset, limits);
        const got = checkRead(r, offset, limits);
        assert.ok(got.length > 0);
      }
      // Read after read, the limits never skip or repeat a record.
      await readAll(log, m, limits);
    }
    const one = await log.read(0, { bytesMax: 1, recordsMax: 1 });
    assert.equal(one.nextOffset, 3, "one whole batch, however small the limits");
    await log.close();
  });

  test("read() leaves headroomBytes before the batches that belong to that result alone", async (w) => {
    const log = await w.open();
    const m = new LogModel();
    for (let i = 0; i < 4; i++) await appendChecked(log, m, { records: 2 });
    const r = await log.read(0, { ...ALL, headroomBytes: 16 });
    const h = r.headroomBytes ?? 0;
    assert.ok(h === 0 || h === 16, `headroom ${h}`);
    if (h > 0) {
      assert.ok(r.bytes.byteOffset >= h);
      new Uint8Array(r.bytes.buffer, r.bytes.byteOffset - h, h).fill(0xee);
    }
    checkRead(r, 0, ALL);
    await readAll(log, m);
    await log.close();
  });

  test("readCached() answers null or what read() does, never throws, and follows appends and cuts", async (w) => {
    const log = await w.open({ segmentBytes: 4096 });
    const m = new LogModel();
    const limitsAll = [ALL, { bytesMax: 1, recordsMax: 1 }, { bytesMax: 1 << 30, recordsMax: 4 }];
    let answered = 0;
    const same = async (offset: number) => {
      for (const limits of limitsAll) {
        const c = log.readCached?.(offset, limits) ?? null;
        if (c === null) continue;
        answered++;
        const r = await log.read(offset, limits);
        assert.deepEqual(
          [c.bytes, c.nextOffset, c.records],
          [r.bytes, r.nextOffset, r.records],
          `offset ${offset}`,
        );
      }
    };
    for (let i = 0; i < 12; i++) {
      await appendChecked(log, m, { records: 1 + (i % 3), padBytes: 100 });
      // What subscribers woken by the append ask for: from the batch before, and the new one.
      for (const b of m.batches.slice(-2)) await same(b.base);
    }
    for (let offset = 0; offset <= m.next; offset++) await same(offset);
    for (const outside of [-1, m.next + 1]) {
      assert.equal(log.readCached?.(outside, ALL) ?? null, null);
    }
    const cut = (m.batches.at(-3) as ModelBatch).base;
    await log.truncateFrom(cut);
    m.truncate(cut);
    for (let offset = 0; offset <= cut; offset++) await same(offset);
    await appendChecked(log, m, { records: 2 });
    await same(cut);
    if (log.readCached !== undefined) assert.ok(answered > 0, "the newest batches were in memory");
    await log.close();
  });

  test("read() at nextOffset is empty; outside [logStartOffset, nextOffset] throws OffsetOutOfRange", async (w) => {
    const log = await w.open({ segmentBytes: 1 });
    const m = new LogModel();
    await rejects(log.read(1, ALL), OffsetOutOfRange);
    const empty = await log.read(0, ALL);
    assert.deepEqual([empty.bytes.length, empty.nextOffset, empty.records], [0, 0, 0]);
    for (let i = 0; i < 6; i++) await appendChecked(log, m, { records: 2, padBytes: 200 });
    const atEnd = await log.read(m.next, ALL);
    assert.deepEqual([atEnd.bytes.length, atEnd.nextOffset, atEnd.records], [0, m.next, 0]);
    await rejects(log.read(m.next + 1, ALL), OffsetOutOfRange);
    await rejects(log.read(-1, ALL), OffsetOutOfRange);
    await w.retain(log, { bytes: 3 * (m.batches[0] as ModelBatch).bytes });
    assert.ok(log.logStartOffset > 0, "retention dropped something");
    await rejects(log.read(log.logStartOffset - 1, ALL), OffsetOutOfRange);
    checkRead(await log.read(log.logStartOffset, ALL), log.logStartOffset, ALL);
    await log.close();
  });

  test("offsetForTimestamp() gives the first batch reaching the time, or nextOffset", async (w) => {
    const log = await w.open({ segmentBytes: 400 });
    const m = new LogModel();
    const t0 = 1_800_000_000_000;
    // Timestamps go up by 1000 a batch, with one batch out of order.
    const times = [0, 1000, 2000, 500, 3000, 4000, 5000, 6000].map((d) => t0 + d);
    for (const ts of times) {
      await appendChecked(log, m, { records: 2, timestamp: ts, padBytes: 60 });
    }
    const expect = (ts: number) => m.batches.find((b) => b.maxTs >= ts)?.base ?? m.next;
    for (const ts of [t0 - 5, t0, t0 + 1, t0 + 999, t0 + 1001, t0 + 2500, t0 + 6001, t0 + 9999]) {
      assert.equal(await log.offsetForTimestamp(ts), expect(ts), `timestamp ${ts - t0}`);
    }
    await log.close();
  });

  test("Retention by bytes drops the oldest batches first and keeps the newest", async (w) => {
    const log = await w.open({ segmentBytes: 1 });
    const m = new LogModel();
    for (let i = 0; i < 10; i++) {
      await appendChecked(log, m, { records: 1 + (i % 3), padBytes: 100 });
    }
    const end = m.next;
    for (const keep of [6, 3, 1, 0]) {
      const bytes = m.batches.slice(-keep).reduce((n, b) => n + b.bytes, 0);
      await w.retain(log, { bytes: keep === 0 ? 0 : bytes });
      m.dropBefore(m.batches[m.batches.length - Math.max(keep, 1)]?.base as number);
      assert.equal(log.sizeBytes, m.sizeBytes, `keeping ${keep}`);
      assert.equal(log.nextOffset, end);
      await readAll(log, m);
    }
    await w.retain(log, { bytes: Infinity });
    await appendChecked(log, m);
    await readAll(log, m);
    await log.close();
  });

  if (twin.retainsByTime) {
    test("Retention by time drops batches older than the limit, never the newest", async (w) => {
      const log = await w.open({ segmentBytes: 1 });
      const m = new LogModel();
      const now = w.wallMs();
      const hour = 3_600_000;
      for (const age of [5, 4, 3, 0.5, 0.2]) {
        await appendChecked(log, m, { timestamp: Math.round(now - age * hour), padBytes: 50 });
      }
      await w.retain(log, { bytes: Infinity, ms: 2 * hour });
      m.dropBefore(3);
      await readAll(log, m);
      await w.retain(log, { bytes: Infinity, ms: 1 });
      m.dropBefore(4);
      await readAll(log, m);
      await log.close();
    });
  }

  test("truncateFrom() drops every batch from the offset on, and appends go on from there", async (w) => {
    const log = await w.open();
    const m = new LogModel();
    for (let i = 0; i < 8; i++) await appendChecked(log, m, { records: 2 });
    await log.truncateFrom(10);
    m.truncate(10);
    assert.equal(log.nextOffset, 10);
    assert.equal(log.sizeBytes, m.sizeBytes);
    await rejects(log.read(11, ALL), OffsetOutOfRange);
    assert.equal(await log.offsetForTimestamp(Number.MAX_SAFE_INTEGER), 10);
    await readAll(log, m);
    // New records take the dropped offsets; no dropped record is served again.
    for (let i = 0; i < 3; i++) await appendChecked(log, m, { records: 3, padBytes: 9 });
    await readAll(log, m);
    await log.truncateFrom(0);
    m.truncate(0);
    assert.deepEqual([log.logStartOffset, log.nextOffset, log.sizeBytes], [0, 0, 0]);
    await appendChecked(log, m);
    await readAll(log, m);
    await log.close();
  });

  test("truncateFrom() across segment boundaries keeps reads, sizes and timestamps consistent", async (w) => {
    const log = await w.open({ segmentBytes: 500 });
    const m = new LogModel();
    const t0 = 1_800_000_000_000;
    for (let i = 0; i < 30; i++) {
      await appendChecked(log, m, { records: 1 + (i % 3), timestamp: t0 + i * 100, padBytes: 40 });
    }
    // From the middle of the log backwards, each cut at a batch start: some at a segment's start.
    for (const k of [25, 24, 17, 16, 9, 3]) {
      const cut = (m.batches[k] as ModelBatch).base;
      await log.truncateFrom(cut);
      m.truncate(cut);
      assert.equal(log.sizeBytes, m.sizeBytes, `cut at ${cut}`);
      await readAll(log, m);
      await readAll(log, m, { bytesMax: 150, recordsMax: 1 << 30 });
      assert.equal(await log.offsetForTimestamp(t0 + k * 100), m.next, "a dropped time is gone");
      const kept = Math.floor(k / 2);
      assert.equal(
        await log.offsetForTimestamp(t0 + kept * 100),
        (m.batches[kept] as ModelBatch).base,
      );
      for (let i = 0; i < 2; i++) {
        await appendChecked(log, m, { records: 2, timestamp: t0 + 10_000 + i, padBytes: 40 });
      }
      await readAll(log, m);
      m.truncate(cut);
      await log.truncateFrom(cut);
    }
    await log.close();
  });

  test("truncateFrom() at nextOffset changes nothing; inside a batch or outside the range it throws", async (w) => {
    const log = await w.open({ segmentBytes: 1 });
    const m = new LogModel();
    for (let i = 0; i < 5; i++) await appendChecked(log, m, { records: 3, padBytes: 100 });
    await log.truncateFrom(m.next);
    await rejects(log.truncateFrom(4), OffsetInsideBatch);
    await rejects(log.truncateFrom(m.next + 1), OffsetOutOfRange);
    await readAll(log, m);
    await w.retain(log, { bytes: 1 });
    m.dropBefore(12);
    await rejects(log.truncateFrom(3), OffsetOutOfRange);
    await readAll(log, m);
    await log.close();
  });

  test("truncateFrom() keeps its place among appends issued before and after it", async (w) => {
    const log = await w.open();
    const m = new LogModel();
    for (let i = 0; i < 3; i++) await appendChecked(log, m, { records: 2 });
    const cut = m.next;
    const first = append(log, m.batch({ records: 2 }));
    const truncated = log.truncateFrom(cut);
    m.truncate(cut);
    const second = append(log, m.batch({ records: 5 }));
    assert.deepEqual(await first, { baseOffset: cut, lastOffset: cut + 1 });
    await truncated;
    assert.deepEqual(await second, { baseOffset: cut, lastOffset: cut + 4 });
    await readAll(log, m);
    await log.close();
  });

  test("resetTo() empties the log and goes on at the offset, ahead of it or behind", async (w) => {
    const log = await w.open({ segmentBytes: 300 });
    const m = new LogModel();
    for (let i = 0; i < 6; i++) await appendChecked(log, m, { records: 2, padBytes: 80 });
    for (const to of [1000, 40, 0, 7]) {
      await log.resetTo(to);
      m.reset(to);
      assert.deepEqual([log.logStartOffset, log.nextOffset, log.sizeBytes], [to, to, 0]);
      assert.equal((await log.read(to, ALL)).bytes.length, 0);
      if (to > 0) await rejects(log.read(to - 1, ALL), OffsetOutOfRange);
      assert.equal(await log.offsetForTimestamp(0), to);
      for (let i = 0; i < 3; i++) await appendChecked(log, m, { records: 2, padBytes: 80 });
      await readAll(log, m);
    }
    await log.close();
  });
}
