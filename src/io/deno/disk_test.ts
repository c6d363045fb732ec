// Pins how DenoDisk maps the host filesystem onto the seam, beyond the shared contract in
// tests/io_contract.ts: error messages and causes, ENOSPC, directory fsync, close ordering.

import assert from "node:assert/strict";
import { Closed, IoFailure, NoSpace, NotFound } from "../errors.ts";
import { DenoDisk } from "./disk.ts";

Deno.test("DenoDisk.open failure names the operation and the path, and keeps Deno's error", async () => {
  const err = await new DenoDisk().open("/x/y.log").catch((e) => e);
  assert.ok(err instanceof NotFound);
  assert.equal(err.message, "Cannot open /x/y.log: not found");
  assert.ok(err.cause instanceof Deno.errors.NotFound);
});

Deno.test({
  name: "DenoFile.writeAt on a full device rejects with NoSpace",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // /dev/full fails every write with ENOSPC, which Deno reports as a plain Error.
    const file = await new DenoDisk().open("/dev/full");
    try {
      const err = await file.writeAt(0, new Uint8Array(16)).catch((e) => e);
      assert.ok(err instanceof NoSpace, `got ${err}`);
      assert.equal(err.message, "Cannot write /dev/full at 0: no space left on device");
    } finally {
      file.close();
    }
  },
});

Deno.test("DenoDisk.syncDir fsyncs a real directory and rejects a missing one", async () => {
  await withTempDir(async (dir) => {
    const disk = new DenoDisk();
    await Deno.writeFile(`${dir}/a`, new Uint8Array(1));
    await disk.syncDir(dir);
    await assert.rejects(disk.syncDir(`${dir}/missing`), NotFound);
  });
});

Deno.test("DenoDisk refuses to open a directory or remove a non-empty one, with IoFailure", async () => {
  await withTempDir(async (dir) => {
    const disk = new DenoDisk();
    await disk.mkdir(`${dir}/full/child`);
    await assert.rejects(disk.open(`${dir}/full`), IoFailure);
    await assert.rejects(disk.remove(`${dir}/full`), IoFailure);
  });
});

Deno.test("DenoFile.close lets queued operations finish, then releases the handle", async () => {
  await withTempDir(async (dir) => {
    const file = await new DenoDisk().open(`${dir}/f`, { create: true });
    const writes = [file.writeAt(0, new Uint8Array([1, 2])), file.writeAt(2, new Uint8Array([3]))];
    file.close();
    assert.deepEqual(await Promise.all(writes), [2, 1]);
    await assert.rejects(file.writeAt(3, new Uint8Array([4])), Closed);
    assert.deepEqual(await Deno.readFile(`${dir}/f`), new Uint8Array([1, 2, 3]));
  });
});

Deno.test("DenoFile rejects a negative or fractional position as a programmer error", async () => {
  await withTempDir(async (dir) => {
    const file = await new DenoDisk().open(`${dir}/f`, { create: true });
    try {
      await assert.rejects(file.readAt(-1, new Uint8Array(1)), RangeError);
      await assert.rejects(file.writeAt(1.5, new Uint8Array(1)), RangeError);
      await assert.rejects(file.truncate(-1), RangeError);
    } finally {
      file.close();
    }
  });
});

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gregormq_disk_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("DenoFile reads and writes at the positions asked, whether or not they follow on", async () => {
  const dir = await Deno.makeTempDir();
  const file = await new DenoDisk().open(`${dir}/f`, { create: true });
  try {
    const model = new Uint8Array(4096);
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 0x8000_0000);
    for (let i = 0; i < 300; i++) {
      // Half the operations follow on from the previous one (no seek needed), half jump.
      const pos = i % 2 === 0 ? next() % 4000 : (i * 13) % 4000;
      const len = 1 + (next() % 90);
      if (next() % 3 === 0) {
        const got = new Uint8Array(len);
        const n = await file.readAt(pos, got);
        const size = await file.size();
        assert.equal(n, Math.max(0, Math.min(len, size - pos)));
        assert.deepEqual(got.subarray(0, n), model.subarray(pos, pos + n));
      } else {
        const bytes = new Uint8Array(len).map(() => next() & 0xff);
        await file.writeAt(pos, bytes);
        model.set(bytes, pos);
        const after = new Uint8Array(len);
        await file.writeAt(pos + len, after.subarray(0, 0));
        assert.equal(await file.readAt(pos, after), len);
        assert.deepEqual(after, bytes);
      }
    }
    await file.truncate(100);
    await file.writeAt(100, new Uint8Array([9]));
    const tail = new Uint8Array(2);
    assert.equal(await file.readAt(99, tail), 2);
    assert.deepEqual([...tail], [model[99], 9]);
  } finally {
    file.close();
    await Deno.remove(dir, { recursive: true });
  }
});
