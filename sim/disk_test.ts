import assert from "node:assert/strict";
import { IoFailure, Locked, NoSpace } from "../src/io/errors.ts";
import { readFile, writeFileAtomic } from "../src/io/util.ts";
import {
  calmDisk,
  type CrashWeights,
  DIR_JOURNAL_OPS_MAX,
  type DiskFaults,
  INODE_PENDING_OPS_MAX,
  SECTOR_BYTES,
} from "./disk.ts";
import { runOnNode } from "./harness.ts";
import type { SimNode } from "./node.ts";
import { Simulation } from "./simulation.ts";

const RECORD = 1000;
const RECORDS = 24;

function diskWith(crash: CrashWeights, more: Partial<DiskFaults> = {}): DiskFaults {
  return { ...calmDisk(), crash, ...more };
}

/** Byte i of record r: never zero, so a record that never reached the disk reads as zeros. */
function pattern(r: number): Uint8Array {
  return Uint8Array.from({ length: RECORD }, (_, i) => 1 + ((r * 31 + i) % 251));
}

/** Writes `synced` records and syncs, then `RECORDS - synced` more without syncing; crashes. */
async function writeThenCrash(seed: number, crash: CrashWeights, synced: number) {
  const sim = new Simulation(seed, { disk: diskWith(crash) });
  let node: SimNode | null = null;
  await runOnNode(sim, "n", async (env, n) => {
    node = n;
    await env.disk.mkdir("d");
    await env.disk.syncDir(".");
    const f = await env.disk.open("d/log", { create: true });
    await env.disk.syncDir("d");
    for (let r = 0; r < RECORDS; r++) {
      await f.writeAt(r * RECORD, pattern(r));
      if (r === synced - 1) await f.sync();
    }
  });
  const n = node as unknown as SimNode;
  n.crash("power");
  return { bytes: n.disk.durableBytes("d/log") ?? new Uint8Array(0), stats: n.disk.stats };
}

/** For each record: "new" (all its bytes), "old" (all zeros / absent) or "mixed". */
function classify(bytes: Uint8Array): ("new" | "old" | "mixed")[] {
  const out: ("new" | "old" | "mixed")[] = [];
  for (let r = 0; r < RECORDS; r++) {
    const want = pattern(r);
    let same = 0;
    let zero = 0;
    for (let i = 0; i < RECORD; i++) {
      const b = bytes[r * RECORD + i] ?? 0;
      if (b === want[i]) same++;
      else if (b === 0) zero++;
    }
    out.push(same === RECORD ? "new" : zero === RECORD ? "old" : "mixed");
  }
  return out;
}

Deno.test("SimDisk keeps synced data through a power loss, whatever happens to unsynced data", async () => {
  for (let seed = 1; seed <= 30; seed++) {
    const { bytes } = await writeThenCrash(seed, { keep: 1, drop: 1, torn: 1, corrupt: 1 }, 10);
    const kinds = classify(bytes);
    assert.deepEqual(kinds.slice(0, 10), Array(10).fill("new"), `seed ${seed}`);
  }
});

Deno.test("SimDisk keeps or drops each unsynced write whole unless tearing or corruption is on", async () => {
  const seen = new Set<string>();
  for (let seed = 1; seed <= 30; seed++) {
    const { bytes, stats } = await writeThenCrash(
      seed,
      { keep: 1, drop: 1, torn: 0, corrupt: 0 },
      4,
    );
    const kinds = classify(bytes);
    for (const k of kinds.slice(4)) seen.add(k);
    assert.deepEqual(kinds.slice(0, 4), Array(4).fill("new"), `seed ${seed}`);
    assert.ok(!kinds.includes("mixed"), `seed ${seed}: a write appeared half-written`);
    assert.equal(stats.writesTorn + stats.writesCorrupted, 0);
  }
  assert.ok(seen.has("new") && seen.has("old"), "unsynced writes should be kept and dropped");
});

Deno.test("SimDisk tears unsynced writes only at 512-byte sector boundaries", async () => {
  let torn = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const { bytes, stats } = await writeThenCrash(
      seed,
      { keep: 0, drop: 0, torn: 1, corrupt: 0 },
      0,
    );
    torn += stats.writesTorn;
    // Every maximal run of written bytes starts and ends on a sector boundary or a write boundary.
    for (let pos = 1; pos < RECORDS * RECORD; pos++) {
      const before = (bytes[pos - 1] ?? 0) !== 0;
      const here = (bytes[pos] ?? 0) !== 0;
      if (before !== here) {
        assert.ok(
          pos % SECTOR_BYTES === 0 || pos % RECORD === 0,
          `seed ${seed}: torn edge at byte ${pos}`,
        );
      }
    }
    if (classify(bytes).includes("mixed")) torn += 1000;
  }
  assert.ok(torn > 1000, "some write should have been torn part way");
});

Deno.test("SimDisk corrupts an unsynced write when the corrupt fault is chosen", async () => {
  let mixed = 0;
  for (let seed = 1; seed <= 10; seed++) {
    const { bytes } = await writeThenCrash(seed, { keep: 0, drop: 0, torn: 0, corrupt: 1 }, 0);
    mixed += classify(bytes).filter((k) => k === "mixed").length;
  }
  assert.ok(mixed > 0);
});

Deno.test("SimDisk loses the dirty data of a failed sync, even though reads still show it", async () => {
  const sim = new Simulation(3, { disk: diskWith({ keep: 1, drop: 0, torn: 0, corrupt: 0 }) });
  let node: SimNode | null = null;
  await runOnNode(sim, "n", async (env, n) => {
    node = n;
    const f = await env.disk.open("f", { create: true });
    await env.disk.syncDir(".");
    await f.writeAt(0, new Uint8Array([1, 2, 3]));
    n.disk.faults.syncFailProb = 1;
    await assert.rejects(f.sync(), IoFailure);
    n.disk.faults.syncFailProb = 0;
    const buf = new Uint8Array(3);
    assert.equal(await f.readAt(0, buf), 3);
    assert.deepEqual([...buf], [1, 2, 3], "the page cache still shows the write");
    await f.sync(); // succeeds: nothing is dirty any more
  });
  // Crash weights say "keep every unsynced write", yet the write is gone: the failed sync lost it.
  (node as unknown as SimNode).crash("power");
  assert.equal((node as unknown as SimNode).disk.durableBytes("f")?.length, 0);
});

Deno.test("SimDisk can lose a file created without syncDir, never one whose directory was synced", async () => {
  let lost = 0;
  for (let seed = 1; seed <= 20; seed++) {
    const sim = new Simulation(seed);
    let node: SimNode | null = null;
    await runOnNode(sim, "n", async (env, n) => {
      node = n;
      for (const name of ["a", "b"]) {
        const f = await env.disk.open(name, { create: true });
        await f.writeAt(0, new Uint8Array([7]));
        await f.sync();
        f.close();
        if (name === "a") await env.disk.syncDir(".");
      }
    });
    const n = node as unknown as SimNode;
    n.crash("power");
    assert.deepEqual(n.disk.durableBytes("a"), new Uint8Array([7]), `seed ${seed}`);
    if (n.disk.durableBytes("b") === null) lost++;
  }
  assert.ok(lost > 0 && lost < 20, `lost ${lost} of 20 unsynced creations`);
});

Deno.test("SimDisk: writeFileAtomic leaves the old or the new content after any crash, never neither", async () => {
  const outcomes = new Set<string>();
  for (let seed = 1; seed <= 40; seed++) {
    const sim = new Simulation(seed, { disk: diskWith({ keep: 1, drop: 1, torn: 1, corrupt: 1 }) });
    const enc = new TextEncoder();
    let replacing = false;
    let done = false;
    const n = sim.addNode({
      name: "n",
      main: async (env) => {
        await writeFileAtomic(env.disk, "meta", enc.encode("old"));
        replacing = true;
        await writeFileAtomic(env.disk, "meta", enc.encode("new"));
        done = true;
      },
    });
    await sim.world.run({ stop: () => replacing });
    // Crash the replacement after a seed-chosen number of events.
    await sim.world.run({ eventsMax: seed % 9 });
    n.crash("power");
    const text = new TextDecoder().decode(n.disk.durableBytes("meta") ?? new Uint8Array());
    assert.ok(text === "old" || text === "new", `seed ${seed}: got ${JSON.stringify(text)}`);
    if (done) assert.equal(text, "new", `seed ${seed}: a completed replace must survive`);
    outcomes.add(text);
  }
  assert.deepEqual([...outcomes].sort(), ["new", "old"]);
});

Deno.test("SimDisk flips a bit on read without touching the stored data", async () => {
  const sim = new Simulation(5);
  await runOnNode(sim, "n", async (env, n) => {
    const data = Uint8Array.from({ length: 64 }, (_, i) => i);
    const f = await env.disk.open("f", { create: true });
    await f.writeAt(0, data);
    n.disk.faults.readFlipProb = 1;
    const buf = new Uint8Array(64);
    await f.readAt(0, buf);
    let bits = 0;
    for (let i = 0; i < 64; i++) bits += popcount((buf[i] as number) ^ (data[i] as number));
    assert.equal(bits, 1);
    n.disk.faults.readFlipProb = 0;
    assert.deepEqual(await readFile(env.disk, "f"), data);
  });
});

Deno.test("SimDisk fails reads with IoFailure and growing writes with NoSpace when told to", async () => {
  const sim = new Simulation(6);
  await runOnNode(sim, "n", async (env, n) => {
    const f = await env.disk.open("f", { create: true });
    await f.writeAt(0, new Uint8Array(10));
    n.disk.faults.readErrorProb = 1;
    await assert.rejects(f.readAt(0, new Uint8Array(4)), IoFailure);
    n.disk.faults.readErrorProb = 0;
    n.disk.faults.full = true;
    await assert.rejects(f.writeAt(10, new Uint8Array(1)), NoSpace);
    await f.writeAt(0, new Uint8Array([9])); // overwriting in place needs no space
    n.disk.faults.full = false;
    n.disk.faults.capacityBytes = 100;
    // A write that runs out of space part way leaves the prefix that fit, as the contract warns.
    await assert.rejects(f.writeAt(0, new Uint8Array(101).fill(5)), NoSpace);
    assert.equal(await f.size(), 100);
    const buf = new Uint8Array(100);
    assert.equal(await f.readAt(0, buf), 100);
    assert.ok(buf.every((b) => b === 5));
    assert.equal(n.disk.usedBytes, 100);
  });
});

Deno.test("SimDisk keeps unsynced writes across a process crash but not a power loss", async () => {
  for (const kind of ["process", "power"] as const) {
    const sim = new Simulation(8);
    const seen: number[][] = [];
    const node = sim.addNode({
      name: "n",
      main: async (env, ctl) => {
        const f = await env.disk.open("f", { create: true });
        if (ctl.incarnation === 0) {
          await env.disk.syncDir(".");
          await f.writeAt(0, new Uint8Array([4, 2]));
          return;
        }
        seen.push([...await readFile(env.disk, "f")]);
      },
    });
    await sim.world.run();
    node.crash(kind);
    node.start();
    await sim.world.run();
    assert.deepEqual(seen, kind === "process" ? [[4, 2]] : [[]], kind);
  }
});

Deno.test("SimDisk: a rename between directories does not let syncDir of the target delete a newer source file", async () => {
  const sim = new Simulation(1);
  const te = new TextEncoder();
  let node: SimNode | null = null;
  await runOnNode(sim, "n", async (env, n) => {
    node = n;
    const d = env.disk;
    await d.mkdir("a");
    await d.mkdir("b");
    await d.syncDir(".");
    let f = await d.open("a/x", { create: true });
    await f.writeAt(0, te.encode("OLD"));
    await f.sync();
    f.close();
    await d.syncDir("a");
    await d.rename("a/x", "b/y");
    f = await d.open("a/x", { create: true });
    await f.writeAt(0, te.encode("NEW"));
    await f.sync();
    f.close();
    await d.syncDir("a");
    await d.syncDir("b");
  });
  const n = node as unknown as SimNode;
  n.crash("power");
  assert.deepEqual(n.disk.durableBytes("a/x"), te.encode("NEW"));
  assert.deepEqual(n.disk.durableBytes("b/y"), te.encode("OLD"));
});

Deno.test("SimDisk: a rename between directories survives a power loss in both directories or in neither", async () => {
  const te = new TextEncoder();
  const outcomes = new Set<string>();
  for (let seed = 1; seed <= 40; seed++) {
    const sim = new Simulation(seed);
    let node: SimNode | null = null;
    await runOnNode(sim, "n", async (env, n) => {
      node = n;
      const d = env.disk;
      await d.mkdir("tmp");
      await d.mkdir("data");
      await d.syncDir(".");
      const f = await d.open("tmp/seg", { create: true });
      await f.writeAt(0, te.encode("PRECIOUS"));
      await f.sync();
      f.close();
      await d.rename("tmp/seg", "data/seg");
      // Only the even seeds make the rename durable; tmp/ itself is never synced.
      if (seed % 2 === 0) await d.syncDir("data");
    });
    const n = node as unknown as SimNode;
    n.crash("power");
    const tmp = n.disk.durableBytes("tmp/seg");
    const data = n.disk.durableBytes("data/seg");
    assert.ok(tmp === null || data === null, `seed ${seed}: two names for one file`);
    if (seed % 2 === 0) assert.deepEqual(data, te.encode("PRECIOUS"), `seed ${seed}: lost`);
    outcomes.add(data !== null ? "renamed" : tmp !== null ? "not renamed" : "not created");
  }
  assert.ok(outcomes.has("renamed") && outcomes.size > 1, [...outcomes].join());
});

Deno.test("SimDisk: a synced, dir-synced file moved between directories survives reuse of its old name after a crash", async () => {
  const te = new TextEncoder();
  for (let seed = 1; seed <= 20; seed++) {
    const sim = new Simulation(seed);
    let result = "";
    const n = sim.addNode({
      name: "n",
      main: async (env, ctl) => {
        const d = env.disk;
        if (ctl.incarnation === 0) {
          await d.mkdir("tmp");
          await d.mkdir("data");
          await d.syncDir(".");
          const f = await d.open("tmp/seg", { create: true });
          await f.writeAt(0, te.encode("PRECIOUS"));
          await f.sync();
          f.close();
          await d.rename("tmp/seg", "data/seg");
          await d.syncDir("data");
          return;
        }
        const t = await d.open("tmp/seg", { create: true });
        await t.truncate(0);
        await t.sync();
        t.close();
        result = new TextDecoder().decode(await readFile(d, "data/seg"));
      },
    });
    await sim.world.run();
    n.crash("power");
    n.start();
    await sim.world.run();
    assert.equal(result, "PRECIOUS", `seed ${seed}`);
  }
});

Deno.test("SimDisk charges a removed but open file until its last handle closes, and frees it once", async () => {
  const sim = new Simulation(1, { disk: { ...calmDisk(), capacityBytes: 10_000 } });
  await runOnNode(sim, "n", async (env, n) => {
    const d = env.disk;
    const a = await d.open("a", { create: true });
    await a.writeAt(0, new Uint8Array(10_000));
    const b = await d.open("b", { create: true });
    await assert.rejects(b.writeAt(0, new Uint8Array(1)), NoSpace);
    await d.remove("a");
    assert.equal(n.disk.usedBytes, 10_000, "the open handle still holds the space");
    await assert.rejects(b.writeAt(0, new Uint8Array(1)), NoSpace);
    await a.truncate(0);
    assert.equal(n.disk.usedBytes, 0);
    await assert.rejects(b.writeAt(0, new Uint8Array(19_000)), NoSpace, "10 KB disk");
    await b.truncate(0);
    const c = await d.open("c", { create: true });
    await d.remove("c");
    await c.writeAt(0, new Uint8Array(9_000));
    c.close();
    assert.equal(n.disk.usedBytes, 0, "the last close of an unlinked file frees it");
    await b.writeAt(0, new Uint8Array(5_000));
    assert.equal(n.disk.usedBytes, 5_000);
  });
});

Deno.test("SimDisk recomputes used space at a power loss from what survived", async () => {
  const sim = new Simulation(1);
  let node: SimNode | null = null;
  await runOnNode(sim, "n", async (env, n) => {
    node = n;
    const f = await env.disk.open("kept", { create: true });
    await f.writeAt(0, new Uint8Array(300));
    await f.sync();
    await env.disk.syncDir(".");
    const g = await env.disk.open("open-unlinked", { create: true });
    await g.writeAt(0, new Uint8Array(700));
    await env.disk.remove("open-unlinked");
    assert.equal(n.disk.usedBytes, 1000);
  });
  const n = node as unknown as SimNode;
  n.crash("power");
  assert.equal(n.disk.usedBytes, 300);
});

Deno.test("SimDisk writes back the oldest unsynced writes past INODE_PENDING_OPS_MAX", async () => {
  const sim = new Simulation(1, { disk: diskWith({ keep: 0, drop: 1, torn: 0, corrupt: 0 }) });
  let node: SimNode | null = null;
  const extra = 5;
  await runOnNode(sim, "n", async (env, n) => {
    node = n;
    const f = await env.disk.open("f", { create: true });
    await env.disk.syncDir(".");
    for (let i = 0; i < INODE_PENDING_OPS_MAX + extra; i++) await f.writeAt(i, new Uint8Array([1]));
  });
  const n = node as unknown as SimNode;
  assert.equal(n.disk.durableBytes("f")?.length, extra, "the oldest writes became durable");
  n.crash("power");
  assert.equal(n.disk.durableBytes("f")?.length, extra, "and a crash dropped the rest");
});

Deno.test("SimDisk commits the oldest directory changes past DIR_JOURNAL_OPS_MAX", async () => {
  const sim = new Simulation(1);
  let node: SimNode | null = null;
  const extra = 5;
  await runOnNode(sim, "n", async (env, n) => {
    node = n;
    for (let i = 0; i < DIR_JOURNAL_OPS_MAX + extra; i++) {
      (await env.disk.open(`f${i}`, { create: true })).close();
    }
  });
  const n = node as unknown as SimNode;
  // Durable without any syncDir, whatever a crash would keep of the rest.
  for (let i = 0; i < extra; i++) assert.ok(n.disk.durableBytes(`f${i}`) !== null, `f${i}`);
  assert.equal(n.disk.durableBytes(`f${extra}`), null);
});

function popcount(x: number): number {
  let n = 0;
  for (; x; x &= x - 1) n++;
  return n;
}

Deno.test("SimDisk: a lock is refused to others while held and freed when its process ends", async () => {
  const sim = new Simulation(7, { disk: calmDisk() });
  await runOnNode(sim, "n", async (env, n) => {
    await env.disk.mkdir("d");
    await env.disk.lock("d/.lock");
    const refused = await env.disk.lock("d/.lock").then(() => null, (err) => err);
    assert.ok(refused instanceof Locked, `expected Locked, got ${refused}`);
    assert.equal(refused.holder, `node n incarnation ${n.incarnation}`);
    // What the kernel does when the process dies (SIGKILL included): its handles close.
    n.disk.processDown();
    (await env.disk.lock("d/.lock")).release();
  });
});
