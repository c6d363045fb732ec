// MemoryLog and FileLog side by side on random sequences of operations (fast-check): the twins
// must agree on every answer. FileLog runs on the simulated disk with one batch per segment, so
// its retention drops batch by batch as MemoryLog's does.

import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeBatch, readBatchHeader } from "../src/protocol/batch.ts";
import { FileLog, type Log, MemoryLog } from "../src/storage/mod.ts";
import { calmDisk } from "../sim/disk.ts";
import { runOnNode } from "../sim/harness.ts";
import { Simulation } from "../sim/simulation.ts";

/** Random sequences tried, and operations in each at most. */
const RUNS = 60;
const OPS_MAX = 40;
const T0 = 1_800_000_000_000;

type Op =
  | { op: "append"; records: number; padBytes: number; tsDelta: number }
  | { op: "read"; at: number; bytesMax: number; recordsMax: number }
  | { op: "truncate"; at: number }
  | { op: "reset"; delta: number }
  | { op: "retain"; bytes: number }
  | { op: "time"; tsDelta: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      op: fc.constant("append" as const),
      records: fc.integer({ min: 1, max: 4 }),
      padBytes: fc.integer({ min: 0, max: 300 }),
      tsDelta: fc.integer({ min: -2000, max: 2000 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("read" as const),
      at: fc.double({ min: -0.1, max: 1.1, noNaN: true }),
      bytesMax: fc.integer({ min: 1, max: 2000 }),
      recordsMax: fc.integer({ min: 1, max: 10 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("truncate" as const),
      at: fc.double({ min: -0.1, max: 1.1, noNaN: true }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("reset" as const),
      delta: fc.integer({ min: -20, max: 20 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("retain" as const),
      bytes: fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.constant(Infinity)),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("time" as const),
      tsDelta: fc.integer({ min: -3000, max: 90_000 }),
    }),
  },
);

/** What an operation answered: a value, or the name of the error it threw. */
async function outcome(f: () => Promise<unknown>): Promise<unknown> {
  try {
    return await f();
  } catch (err) {
    return { error: (err as Error).name };
  }
}

/** Reads, with the FileLog's one-batch-per-segment reads compared as a prefix of MemoryLog's. */
async function compareRead(
  mem: Log,
  file: Log,
  offset: number,
  bytesMax: number,
  recordsMax: number,
) {
  const limits = { bytesMax, recordsMax };
  const a = await outcome(() => mem.read(offset, limits));
  const b = await outcome(() => file.read(offset, limits));
  if ("error" in (a as object) || "error" in (b as object)) {
    assert.deepEqual(b, a, `read(${offset})`);
    return;
  }
  const ra = a as Awaited<ReturnType<Log["read"]>>;
  const rb = b as Awaited<ReturnType<Log["read"]>>;
  assert.equal(rb.bytes.length === 0, ra.bytes.length === 0, `read(${offset}) emptiness`);
  assert.deepEqual(rb.bytes, ra.bytes.subarray(0, rb.bytes.length), `read(${offset}) bytes`);
  if (rb.nextOffset === ra.nextOffset) assert.equal(rb.records, ra.records);
}

Deno.test("MemoryLog and FileLog agree on every answer to random appends, reads, truncations, resets and retention", async () => {
  const counts = { truncated: 0, reset: 0, retained: 0 };
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { maxLength: OPS_MAX }),
      fc.integer({ min: 1 }),
      async (ops, seed) => {
        const sim = new Simulation(seed, { disk: calmDisk() });
        await runOnNode(sim, "n", async (env) => {
          const mem = new MemoryLog({ retentionBytes: Infinity });
          const file = await FileLog.open(env, {
            dir: "log",
            fsync: { kind: "always" },
            segmentBytes: 1,
            segmentMs: 7 * 24 * 3_600_000,
            indexIntervalBytes: 128,
            retentionBytes: -1,
            retentionMs: -1,
            onFatal: (reason) => {
              throw new Error(reason);
            },
          });
          let retention = Infinity;
          let id = 0;
          for (const o of ops) {
            const span = file.nextOffset - file.logStartOffset;
            const pick = (at: number) => file.logStartOffset + Math.floor(at * (span + 1));
            switch (o.op) {
              case "append": {
                const records = Array.from({ length: o.records }, (_, r) => ({
                  value: new TextEncoder().encode(`${id}:${r}${".".repeat(o.padBytes)}`),
                  timestamp: T0 + o.tsDelta + r,
                }));
                id++;
                const batch = encodeBatch(records);
                const copy = batch.slice();
                const a = await mem.append(batch, readBatchHeader(batch));
                const b = await file.append(copy, readBatchHeader(copy));
                assert.deepEqual(b, a, "append");
                break;
              }
              case "read":
                await compareRead(mem, file, pick(o.at), o.bytesMax, o.recordsMax);
                break;
              case "truncate": {
                const at = pick(o.at);
                const a = await outcome(() => mem.truncateFrom(at));
                const b = await outcome(() => file.truncateFrom(at));
                assert.deepEqual(b, a, `truncateFrom(${at})`);
                if (a === undefined) counts.truncated++;
                break;
              }
              case "reset": {
                const to = Math.max(0, file.nextOffset + o.delta);
                await mem.resetTo(to);
                await file.resetTo(to);
                counts.reset++;
                break;
              }
              case "retain":
                retention = o.bytes;
                counts.retained++;
                break;
              case "time":
                assert.equal(
                  await file.offsetForTimestamp(T0 + o.tsDelta),
                  await mem.offsetForTimestamp(T0 + o.tsDelta),
                  `offsetForTimestamp(${o.tsDelta})`,
                );
                break;
            }
            // Retention applies after every step on both (MemoryLog's own runs at each append).
            mem.setRetention({ bytes: retention });
            file.setRetention({ bytes: Number.isFinite(retention) ? retention : -1, ms: -1 });
            await file.enforceRetention();
            assert.deepEqual(
              [file.logStartOffset, file.nextOffset, file.sizeBytes],
              [mem.logStartOffset, mem.nextOffset, mem.sizeBytes],
              `after ${JSON.stringify(o)}`,
            );
          }
          for (let at = file.logStartOffset; at <= file.nextOffset; at++) {
            await compareRead(mem, file, at, 1 << 20, 1 << 20);
          }
          await file.close();
        });
      },
    ),
    { numRuns: RUNS, seed: 20261214 },
  );
  // Sometimes events: the sequences must have exercised the operations that change a log's span.
  assert.ok(
    counts.truncated > 0 && counts.reset > 0 && counts.retained > 0,
    JSON.stringify(counts),
  );
});
