// FileHandles over the real disk: many files through a handful of real descriptors.

import assert from "node:assert/strict";
import type { File } from "../src/io/types.ts";
import { DenoDisk } from "../src/io/deno/disk.ts";
import { FileHandles } from "../src/storage/file_handles.ts";

const enc = (s: string) => new TextEncoder().encode(s);

async function readAll(f: File): Promise<string> {
  const buf = new Uint8Array(await f.size());
  await f.readAt(0, buf);
  return new TextDecoder().decode(buf);
}

Deno.test("FileHandles on the real disk keeps its budget across 64 files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-handles-" });
  try {
    const handles = new FileHandles(new DenoDisk(), { handlesMax: 3 });
    const files: File[] = [];
    for (let i = 0; i < 64; i++) {
      const f = await handles.open(`${dir}/${i}.log`, { create: true });
      await f.writeAt(0, enc(`real ${i}`));
      files.push(f);
    }
    await Promise.all(files.map((f) => f.sync()));
    assert.deepEqual(await Promise.all(files.map(readAll)), files.map((_, i) => `real ${i}`));
    assert.ok(handles.handlesOpen <= 3);
    assert.ok(handles.stats.evictionSyncs > 0, "unsynced files were synced before closing");
    for (const f of files) f.close();
    assert.equal(handles.handlesOpen, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
