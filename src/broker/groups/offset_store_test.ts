import assert from "node:assert/strict";
import type { Disk, Env } from "../../io/types.ts";
import { IoFailure } from "../../io/errors.ts";
import { readChecked } from "../../storage/checked_file.ts";
import { calmDisk, type DiskFaults } from "../../../sim/disk.ts";
import type { SimNode } from "../../../sim/node.ts";
import { Simulation } from "../../../sim/simulation.ts";
import { tpKey } from "./assignors.ts";
import { OFFSETS_PER_GROUP_MAX, OffsetStore } from "./offset_store.ts";

const DATA = "data";

/**
 * One simulated machine whose disk outlives its processes: each `run` starts a fresh process that
 * runs one step, so a crash between steps loses whatever was not durable.
 */
class Machine {
  readonly sim: Simulation;
  readonly node: SimNode;
  #step: ((env: Env) => Promise<unknown>) | null = null;
  #done: { value: unknown } | { error: unknown } | null = null;

  constructor(seed: number, faults: Partial<DiskFaults> = {}) {
    this.sim = new Simulation(seed, { disk: { ...calmDisk(), ...faults } });
    this.node = this.sim.addNode({
      name: "broker",
      start: false,
      main: (env) =>
        this.#step!(env).then(
          (value) => void (this.#done = { value }),
          (error) => void (this.#done = { error }),
        ),
    });
  }

  async run<T>(step: (env: Env) => Promise<T>): Promise<T> {
    this.#step = step;
    this.#done = null;
    if (this.node.up) this.node.crash("process");
    this.node.start();
    await this.sim.world.run({
      untilMs: this.sim.world.now + 60_000,
      stop: () => this.#done !== null,
    });
    const done = this.#done as { value: unknown } | { error: unknown } | null;
    if (done === null) throw new Error(`The step did not finish (seed ${this.sim.seed})`);
    if ("error" in done) throw done.error;
    return done.value as T;
  }
}

/** A disk that counts replacements of group files and can be told to fail the next ones. */
function countingDisk(
  inner: Disk,
): { disk: Disk; writes: () => number; failNext: (n: number) => void } {
  let writes = 0;
  let failing = 0;
  const disk: Disk = {
    open: (p, o) => inner.open(p, o),
    rename: (from, to) => {
      if (to.endsWith(".json")) {
        writes++;
        if (failing > 0) {
          failing--;
          return Promise.reject(new IoFailure(`rename ${from}: injected failure`));
        }
      }
      return inner.rename(from, to);
    },
    remove: (p) => inner.remove(p),
    list: (d) => inner.list(d),
    mkdir: (d) => inner.mkdir(d),
    syncDir: (d) => inner.syncDir(d),
    lock: (p) => inner.lock(p),
  };
  return { disk, writes: () => writes, failNext: (n) => (failing = n) };
}

function withDisk(env: Env, disk: Disk): Env {
  return { ...env, disk };
}

Deno.test("OffsetStore: acknowledged commits survive a power loss and load back", async () => {
  for (let seed = 1; seed <= 5; seed++) {
    const m = new Machine(seed, { crash: { keep: 1, drop: 1, torn: 1, corrupt: 0 } });
    await m.run(async (env) => {
      const s = new OffsetStore(env, DATA);
      await s.load();
      await s.commit("g1", [[tpKey("t", 0), 10], [tpKey("t", 1), 20]]);
      await s.commit("g1", [[tpKey("t", 0), 11]]);
      await s.commit("g-2", [[tpKey("a.b", 7), 3]]);
    });
    m.node.crash("power");
    const got = await m.run(async (env) => {
      const s = new OffsetStore(env, DATA);
      await s.load();
      return {
        groups: s.groups().sort(),
        g1: s.entries("g1").sort(),
        g2: s.get("g-2", tpKey("a.b", 7)),
        none: s.get("g1", tpKey("t", 9)),
      };
    });
    assert.deepEqual(got, {
      groups: ["g-2", "g1"],
      g1: [[tpKey("t", 0), 11], [tpKey("t", 1), 20]],
      g2: 3,
      none: undefined,
    }, `seed ${seed}`);
  }
});

Deno.test("OffsetStore.load() on a fresh data directory finds nothing, and skips an interrupted replace", async () => {
  const m = new Machine(3);
  await m.run(async (env) => {
    const s = new OffsetStore(env, DATA);
    await s.load();
    assert.deepEqual(s.groups(), []);
    await s.commit("g", [[tpKey("t", 0), 5]]);
    const tmp = await env.disk.open(`${DATA}/groups/g.json.tmp`, { create: true });
    await tmp.writeAt(0, new TextEncoder().encode("{half"));
    tmp.close();
  });
  const got = await m.run(async (env) => {
    const s = new OffsetStore(env, DATA);
    await s.load();
    return s.entries("g");
  });
  assert.deepEqual(got, [[tpKey("t", 0), 5]]);
});

Deno.test("OffsetStore.load() refuses a damaged group file, naming it", async () => {
  const m = new Machine(4);
  await m.run(async (env) => {
    await new OffsetStore(env, DATA).commit("g", [[tpKey("t", 0), 5]]);
    const f = await env.disk.open(`${DATA}/groups/g.json`);
    await f.writeAt(0, new TextEncoder().encode("#"));
    f.close();
  });
  await assert.rejects(
    m.run((env) => new OffsetStore(env, DATA).load()),
    /Cannot load data\/groups\/g\.json/,
  );
});

Deno.test("OffsetStore coalesces commits that arrive during a write into the next one", async () => {
  const m = new Machine(5);
  const got = await m.run(async (env) => {
    const c = countingDisk(env.disk);
    const s = new OffsetStore(withDisk(env, c.disk), DATA);
    const commits: Promise<void>[] = [];
    for (let i = 1; i <= 100; i++) commits.push(s.commit("g", [[tpKey("t", i % 4), i]]));
    commits.push(s.commit("other", [[tpKey("t", 0), 1]]));
    await Promise.all(commits);
    const saved = JSON.parse(await readChecked(env.disk, `${DATA}/groups/g.json`));
    return { writes: c.writes(), saved };
  });
  // The first commit starts a write; the other 99 share the next. One more for the other group.
  assert.equal(got.writes, 3);
  assert.deepEqual(got.saved, {
    offsets: {
      [tpKey("t", 1)]: 97,
      [tpKey("t", 2)]: 98,
      [tpKey("t", 3)]: 99,
      [tpKey("t", 0)]: 100,
    },
  });
});

Deno.test("OffsetStore: a failed write rejects exactly the commits it carried; the next write goes on", async () => {
  const m = new Machine(6);
  await m.run(async (env) => {
    const c = countingDisk(env.disk);
    const s = new OffsetStore(withDisk(env, c.disk), DATA);
    await s.commit("g", [[tpKey("t", 0), 1]]);
    c.failNext(1);
    const first = s.commit("g", [[tpKey("t", 0), 2]]);
    const second = s.commit("g", [[tpKey("t", 1), 7]]);
    const third = s.commit("g", [[tpKey("t", 2), 8]]);
    const [r1, r2, r3] = await Promise.allSettled([first, second, third]);
    assert.equal(r1.status, "rejected");
    assert.match(String((r1 as PromiseRejectedResult).reason), /injected failure/);
    assert.equal(r2.status, "fulfilled");
    assert.equal(r3.status, "fulfilled");
    assert.equal(c.writes(), 3);
  });
});

Deno.test("OffsetStore: a failed fsync rejects the commit; later commits are durable again", async () => {
  const m = new Machine(7);
  await m.run(async (env) => {
    const s = new OffsetStore(env, DATA);
    await s.commit("g", [[tpKey("t", 0), 1]]);
    m.node.disk.faults.syncFailProb = 1;
    await assert.rejects(s.commit("g", [[tpKey("t", 0), 2]]));
    m.node.disk.faults.syncFailProb = 0;
    await s.commit("g", [[tpKey("t", 0), 3]]);
  });
  m.node.crash("power");
  const got = await m.run(async (env) => {
    const s = new OffsetStore(env, DATA);
    await s.load();
    return s.get("g", tpKey("t", 0));
  });
  assert.equal(got, 3);
});

Deno.test("OffsetStore refuses a commit that would hold more than OFFSETS_PER_GROUP_MAX offsets", async () => {
  const m = new Machine(8);
  await m.run(async (env) => {
    const s = new OffsetStore(env, DATA);
    const many = Array.from(
      { length: OFFSETS_PER_GROUP_MAX + 1 },
      (_, i) => [tpKey("t", i), 0] as [string, number],
    );
    await assert.rejects(s.commit("g", many), RangeError);
    assert.deepEqual(s.entries("g"), [], "nothing of a refused commit is kept");
    await s.commit("g", many.slice(0, 2));
    await s.commit("g", many.slice(0, 2)); // updating existing keys adds none
  });
});

Deno.test("OffsetStore.forgetTopic() drops the topic's offsets from every group, durably", async () => {
  const m = new Machine(9);
  await m.run(async (env) => {
    const s = new OffsetStore(env, DATA);
    await s.commit("a", [[tpKey("t", 0), 1], [tpKey("tt", 0), 2]]);
    await s.commit("b", [[tpKey("t", 3), 4]]);
    await s.forgetTopic("t");
    assert.deepEqual(s.entries("a"), [[tpKey("tt", 0), 2]]);
    assert.deepEqual(s.groups(), ["a"]);
  });
  m.node.crash("power");
  const got = await m.run(async (env) => {
    const s = new OffsetStore(env, DATA);
    await s.load();
    return { a: s.entries("a"), b: s.entries("b"), groups: s.groups() };
  });
  assert.deepEqual(got, { a: [[tpKey("tt", 0), 2]], b: [], groups: ["a"] });
});
