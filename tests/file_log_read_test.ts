// Reads that leave headroom before the batches (for a delivery frame written in place) and reads
// that go on from where the last one ended return exactly what a plain read from the sparse index
// returns, on the real disk.

import assert from "node:assert/strict";
import { denoEnv } from "../src/io/deno/mod.ts";
import { encodeBatch, readBatchHeader } from "../src/protocol/batch.ts";
import { MemoryLog, type ReadResult } from "../src/storage/mod.ts";
import { FileLog, type FileLogOptions } from "../src/storage/file_log.ts";

const HEADROOM = 37;

function options(dir: string, over: Partial<FileLogOptions> = {}): FileLogOptions {
  return {
    dir,
    fsync: { kind: "never" },
    segmentBytes: 20_000,
    // Reads go to the file, whose read paths these tests are about.
    tailCacheBytes: 0,
    segmentMs: 3_600_000,
    indexIntervalBytes: 1_000,
    retentionBytes: -1,
    retentionMs: -1,
    onFatal: (reason) => {
      throw new Error(reason);
    },
    ...over,
  };
}

function batch(i: number): Uint8Array {
  const records = Array.from({ length: 1 + (i % 5) }, (_, k) => ({
    value: new Uint8Array(20 + ((i * 7 + k) % 90)).fill(i & 0xff),
    timestamp: 1_000 + i,
  }));
  return encodeBatch(records);
}

function same(a: ReadResult, b: ReadResult, what: string): void {
  assert.deepEqual(a.bytes, b.bytes, what);
  assert.equal(a.nextOffset, b.nextOffset, what);
  assert.equal(a.records, b.records, what);
}

/** The headroom a result claims is really there, in front of its bytes. */
function headroomOk(r: ReadResult): void {
  const h = r.headroomBytes ?? 0;
  assert.ok(h === 0 || h === HEADROOM, `headroom ${h}`);
  assert.ok(r.bytes.byteOffset >= h);
}

Deno.test("FileLog reads with headroom and sequential reads match plain reads from any offset", async () => {
  const dir = await Deno.makeTempDir();
  const env = denoEnv();
  try {
    const log = await FileLog.open(env, options(dir));
    for (let i = 0; i < 300; i++) {
      const b = batch(i);
      await log.append(b, readBatchHeader(b));
    }
    // A second log on the same files has no remembered read positions: its reads walk the index.
    const fresh = await FileLog.open(env, options(`${dir}`));
    for (
      const limits of [{ bytesMax: 1, recordsMax: 1 }, { bytesMax: 700, recordsMax: 9 }, {
        bytesMax: 1 << 20,
        recordsMax: 1 << 20,
      }]
    ) {
      // A subscriber's way: each read from where the last ended, with headroom.
      let offset = 0;
      while (offset < log.nextOffset) {
        const got = await log.read(offset, { ...limits, headroomBytes: HEADROOM });
        headroomOk(got);
        same(got, await fresh.read(offset, limits), `read(${offset})`);
        assert.ok(got.nextOffset > offset);
        offset = got.nextOffset;
      }
    }
    for (let offset = 0; offset < log.nextOffset; offset += 7) {
      const limits = { bytesMax: 500, recordsMax: 12 };
      same(
        await log.read(offset, { ...limits, headroomBytes: HEADROOM }),
        await fresh.read(offset, limits),
        `at ${offset}`,
      );
    }
    await fresh.close();
    await log.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileLog refuses a batch corrupted at rest on the sequential read path too", async () => {
  const dir = await Deno.makeTempDir();
  const env = denoEnv();
  try {
    const log = await FileLog.open(env, options(dir, { segmentBytes: 1 << 20 }));
    const positions: number[] = [];
    let pos = 0;
    for (let i = 0; i < 20; i++) {
      const b = batch(i);
      positions.push(pos);
      pos += b.length;
      await log.append(b, readBatchHeader(b));
    }
    // Read up to batch 10, so the next read goes on from there; then flip a byte inside it.
    let offset = 0;
    for (let i = 0; i < 10; i++) {
      offset = (await log.read(offset, { bytesMax: 1, recordsMax: 1 })).nextOffset;
    }
    const file = await Deno.open(`${dir}/00000000000000000000.log`, { read: true, write: true });
    const at = (positions[10] as number) + 70;
    const one = new Uint8Array(1);
    await file.seek(at, Deno.SeekMode.Start);
    await file.read(one);
    one[0] = one[0]! ^ 0x10;
    await file.seek(at, Deno.SeekMode.Start);
    await file.write(one);
    file.close();
    const err = await log.read(offset, { bytesMax: 1 << 20, recordsMax: 1 << 20 }).catch((e) => e);
    assert.equal(err?.name, "GregorError", `got ${err}`);
    // Damage at rest: the log is marked damaged from the bad batch's first offset.
    assert.match(String(err.message), new RegExp(`is damaged from offset ${offset} `));
    await log.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("MemoryLog gives headroom when it joins batches, and none for a single stored batch", async () => {
  const log = new MemoryLog({ retentionBytes: Infinity });
  for (let i = 0; i < 10; i++) {
    const b = batch(i);
    await log.append(b, readBatchHeader(b));
  }
  const one = await log.read(0, { bytesMax: 1, recordsMax: 1, headroomBytes: HEADROOM });
  assert.equal(one.headroomBytes ?? 0, 0);
  const all = await log.read(0, {
    bytesMax: 1 << 20,
    recordsMax: 1 << 20,
    headroomBytes: HEADROOM,
  });
  headroomOk(all);
  assert.equal(all.headroomBytes, HEADROOM);
  same(all, await log.read(0, { bytesMax: 1 << 20, recordsMax: 1 << 20 }), "all");
});
