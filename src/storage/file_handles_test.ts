import assert from "node:assert/strict";
import { Closed, IoFailure, TooManyOpenFiles } from "../io/errors.ts";
import { writeFileAtomic } from "../io/util.ts";
import type { Env, File } from "../io/types.ts";
import { calmDisk, type DiskFaults } from "../../sim/disk.ts";
import { runOnNode } from "../../sim/harness.ts";
import type { SimNode } from "../../sim/node.ts";
import { Simulation } from "../../sim/simulation.ts";
import { FileHandles } from "./file_handles.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

async function readAll(f: File): Promise<string> {
  const buf = new Uint8Array(await f.size());
  await f.readAt(0, buf);
  return dec(buf);
}

/** Runs `body` on a simulated disk that refuses an open past `handlesMax` handles. */
async function onSimDisk<T>(
  handlesMax: number,
  body: (env: Env, node: SimNode) => Promise<T>,
  more: Partial<DiskFaults> = {},
): Promise<T> {
  const sim = new Simulation(7, { disk: { ...calmDisk(), handlesMax, ...more } });
  return await runOnNode(sim, "n", async (env, node) => {
    await env.disk.mkdir("d");
    return await body(env, node);
  });
}

Deno.test("the simulated disk refuses an open past its handle limit with TooManyOpenFiles", async () => {
  await onSimDisk(4, async (env, node) => {
    const files = [];
    for (let i = 0; i < 4; i++) files.push(await env.disk.open(`d/${i}`, { create: true }));
    await assert.rejects(env.disk.open("d/4", { create: true }), TooManyOpenFiles);
    assert.equal(node.disk.stats.tooManyOpenFiles, 1);
    files[0]!.close();
    (await env.disk.open("d/4", { create: true })).close();
  });
});

Deno.test("FileHandles serves 40 files through 4 handles: idle ones close and reopen on use", async () => {
  await onSimDisk(4, async (env, node) => {
    const handles = new FileHandles(env.disk, { handlesMax: 4 });
    const files: File[] = [];
    for (let i = 0; i < 40; i++) {
      const f = await handles.open(`d/${i}`, { create: true });
      await f.writeAt(0, enc(`file ${i}`));
      await f.sync();
      files.push(f);
      assert.ok(node.disk.openHandles <= 4, `${node.disk.openHandles} handles open`);
    }
    // Everything at once: operations queue for handles rather than fail.
    const texts = await Promise.all(files.map((f) => readAll(f)));
    assert.deepEqual(texts, files.map((_, i) => `file ${i}`));
    assert.ok(handles.stats.evictions >= 36 && handles.stats.reopens >= 36, `${handles.stats}`);
    assert.ok(handles.handlesOpen <= 4);
    assert.equal(node.disk.stats.tooManyOpenFiles, 0);
    for (const f of files) f.close();
    assert.equal(handles.handlesOpen, 0);
    assert.equal(node.disk.openHandles, 0);
  });
});

Deno.test("FileHandles closes the least recently used idle file first", async () => {
  await onSimDisk(8, async (env) => {
    const handles = new FileHandles(env.disk, { handlesMax: 3 });
    const a = await handles.open("d/a", { create: true });
    const b = await handles.open("d/b", { create: true });
    const c = await handles.open("d/c", { create: true });
    await a.size(); // a is now more recently used than b
    await handles.open("d/x", { create: true });
    assert.equal(handles.stats.evictions, 1);
    await a.size();
    await c.size();
    assert.equal(handles.stats.reopens, 0, "b, not a or c, was closed");
    await b.size();
    assert.equal(handles.stats.reopens, 1);
  });
});

Deno.test("FileHandles never closes a file during an operation on it", async () => {
  // Slow reads: the first file's read is still in progress while other opens need a handle.
  await onSimDisk(2, async (env) => {
    const handles = new FileHandles(env.disk, { handlesMax: 2 });
    const a = await handles.open("d/a", { create: true });
    await a.writeAt(0, enc("alpha"));
    await a.sync();
    const b = await handles.open("d/b", { create: true });
    await b.writeAt(0, enc("beta"));
    await b.sync();
    // Both files are busy: the open waits for one to finish rather than close it under its read.
    const reads = [readAll(a), readAll(b)];
    const c = await handles.open("d/c", { create: true });
    assert.deepEqual(await Promise.all(reads), ["alpha", "beta"]);
    assert.ok(handles.stats.waits >= 1);
    for (const f of [a, b, c]) f.close();
  }, { opLatencyMs: 5 });
});

Deno.test("FileHandles syncs a file's unsynced writes before closing its handle", async () => {
  let node: SimNode | null = null;
  await onSimDisk(8, async (env, n) => {
    node = n;
    const handles = new FileHandles(env.disk, { handlesMax: 2 });
    const dirty = await handles.open("d/dirty", { create: true });
    const also = await handles.open("d/also", { create: true });
    await env.disk.syncDir("d");
    await dirty.writeAt(0, enc("unsynced"));
    await also.writeAt(0, enc("unsynced too"));
    // No clean idle file: the least recently used dirty one is synced, then closed.
    await handles.open("d/x", { create: true });
    assert.equal(handles.stats.evictionSyncs, 1);
    assert.equal(handles.stats.evictions, 1);
    assert.equal(await readAll(dirty), "unsynced");
    assert.equal(handles.stats.reopens, 1);
  });
  const n = node as unknown as SimNode;
  n.crash("power");
  assert.equal(dec(n.disk.durableBytes("d/dirty") ?? new Uint8Array()), "unsynced");
});

Deno.test("FileHandles reports a failed sync-to-close at the file's next sync()", async () => {
  await onSimDisk(8, async (env, node) => {
    const handles = new FileHandles(env.disk, { handlesMax: 2 });
    const f = await handles.open("d/f", { create: true });
    const g = await handles.open("d/g", { create: true });
    await f.writeAt(0, enc("lost?"));
    await g.writeAt(0, enc("lost too?"));
    node.disk.faults.syncFailProb = 1;
    await handles.open("d/x", { create: true });
    node.disk.faults.syncFailProb = 0;
    await assert.rejects(
      f.sync(),
      (err) => err instanceof IoFailure && /idle handle/.test(err.message),
    );
    // Reported once, as the File contract says; new writes sync again.
    await f.writeAt(0, enc("again"));
    await f.sync();
  });
});

Deno.test("FileHandles reopens a renamed file at its new name, and keeps a removed one open", async () => {
  await onSimDisk(8, async (env) => {
    const handles = new FileHandles(env.disk, { handlesMax: 2 });
    const tmp = await handles.open("d/seg.tmp", { create: true });
    await tmp.writeAt(0, enc("renamed"));
    await tmp.sync();
    await handles.rename("d/seg.tmp", "d/seg");
    const gone = await handles.open("d/gone", { create: true });
    await gone.writeAt(0, enc("still readable"));
    await gone.sync();
    await handles.remove("d/gone");
    // Needs a handle: the renamed file's is closed; the removed one's cannot be.
    const other = await handles.open("d/other", { create: true });
    assert.equal(handles.stats.evictions, 1);
    assert.equal(await readAll(tmp), "renamed");
    other.close();
    assert.equal(await readAll(gone), "still readable");
    // Replaced by a rename: the old file is read while its handle lasts, never the new one.
    await writeFileAtomic(handles, "d/seg", enc("new"));
    await assert.rejects(readAll(tmp), /removed or replaced while closed/);
  });
});

Deno.test("FileHandles: a closed file rejects operations; one closed while reopening finishes them", async () => {
  await onSimDisk(8, async (env) => {
    const handles = new FileHandles(env.disk, { handlesMax: 2 });
    const a = await handles.open("d/a", { create: true });
    await a.writeAt(0, enc("a"));
    await a.sync();
    await handles.open("d/b", { create: true });
    await handles.open("d/c", { create: true }); // closes a's handle
    const buf = new Uint8Array(1);
    const reading = a.readAt(0, buf);
    a.close();
    assert.equal(await reading, 1);
    assert.equal(dec(buf), "a");
    await assert.rejects(a.size(), Closed);
    assert.equal(handles.stats.reopens, 1);
    // a's reopen took b's handle; a's own went back on close: only c holds one.
    assert.equal(handles.handlesOpen, 1);
  }, { opLatencyMs: 1 });
});
