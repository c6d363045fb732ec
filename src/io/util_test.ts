import assert from "node:assert/strict";
import type { Conn } from "./types.ts";
import { writeAllOf } from "./util.ts";

/** A Conn that records each write and takes at most `chunk` bytes per call (short writes). */
function recorder(chunk: number): { conn: Conn; writes: Uint8Array[] } {
  const writes: Uint8Array[] = [];
  const conn: Conn = {
    read: () => Promise.resolve(null),
    write: (b) => {
      const n = Math.min(chunk, b.length);
      writes.push(b.slice(0, n));
      return Promise.resolve(n);
    },
    close: () => {},
    local: { host: "a", port: 1 },
    remote: { host: "b", port: 2 },
  };
  return { conn, writes };
}

Deno.test("writeAllOf() writes every byte in order, merging small buffers and not big ones", async () => {
  const small = (v: number) => new Uint8Array(10).fill(v);
  const big = new Uint8Array(20_000).fill(9);
  const buffers = [small(1), small(2), big, small(3)];
  const { conn, writes } = recorder(1 << 20);
  assert.equal(await writeAllOf(conn, buffers), 20_030);
  assert.deepEqual(writes.map((w) => w.length), [20, 20_000, 10], "1+2 merged; the big one alone");
  const all = new Uint8Array(writes.reduce((n, w) => n + w.length, 0));
  let off = 0;
  for (const w of writes) {
    all.set(w, off);
    off += w.length;
  }
  assert.deepEqual(all, new Uint8Array([...small(1), ...small(2), ...big, ...small(3)]));
});

Deno.test("writeAllOf() survives short writes", async () => {
  const { conn, writes } = recorder(7);
  const data = Uint8Array.from({ length: 100 }, (_, i) => i);
  await writeAllOf(conn, [data.subarray(0, 30), data.subarray(30)]);
  const joined = new Uint8Array(writes.reduce((n, w) => n + w.length, 0));
  let off = 0;
  for (const w of writes) {
    joined.set(w, off);
    off += w.length;
  }
  assert.deepEqual(joined, data);
});
