import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import type { Env } from "../../io/types.ts";
import { SeededRandom } from "../../io/prng.ts";
import { AssertionFailed } from "../../util/assert.ts";
import { calmDisk, type DiskFaults } from "../../../sim/disk.ts";
import type { CrashKind, SimNode } from "../../../sim/node.ts";
import { Simulation } from "../../../sim/simulation.ts";
import { MemoryStorage } from "./memory_storage.ts";
import { RaftNode } from "./node.ts";
import type { Entry, HardState, PersistentState, Ready, Snapshot } from "./types.ts";
import { RaftWal, type RaftWalOptions, WAL_FRAME_HEADER_BYTES } from "./wal.ts";

const DIR = "data/raft/g1";
const VOTERS = ["a", "b", "c"];
const LEARNERS = ["d", "e"];

/** Learners of a test snapshot at `index`: some snapshots have them, some do not. */
function learnersAt(index: number): string[] {
  return index % 2 === 0 ? LEARNERS : [];
}
/** Small segments, so a few saves roll several. */
const SEGMENT_BYTES = 1024;
/** Virtual time one step may take before the test calls it stuck, ms. */
const STEP_MS_MAX = 600_000;

type Outcome = { value: unknown } | { error: unknown };

/**
 * One simulated machine whose disk outlives its processes: each run starts a fresh process for one
 * step; `runUntilCrash` cuts it short after a number of simulator events.
 */
class Machine {
  readonly sim: Simulation;
  readonly node: SimNode;
  #step: ((env: Env) => Promise<unknown>) | null = null;
  #done: Outcome | null = null;

  constructor(seed: number, faults: Partial<DiskFaults> = {}) {
    this.sim = new Simulation(seed, { disk: { ...calmDisk(), ...faults } });
    this.node = this.sim.addNode({
      name: "n1",
      start: false,
      main: (env) =>
        this.#step!(env).then(
          (value) => void (this.#done = { value }),
          (error) => void (this.#done = { error }),
        ),
    });
  }

  get faults(): DiskFaults {
    return this.node.disk.faults;
  }

  /** Runs `step` to its end in a fresh process (after a kill -9 of the last one, if up). */
  async run<T>(step: (env: Env) => Promise<T>): Promise<T> {
    const done = await this.runUntilCrash(step, Infinity, "process");
    if (done === null) throw new Error(`The step did not finish (seed ${this.sim.seed})`);
    if ("error" in done) throw done.error;
    return done.value as T;
  }

  /**
   * Runs `step` in a fresh process for at most `eventsMax` simulator events, then crashes the
   * machine (`kind`) if the step has not ended. Returns how it ended, or null if it was cut short.
   */
  async runUntilCrash(
    step: (env: Env) => Promise<unknown>,
    eventsMax: number,
    kind: CrashKind,
  ): Promise<Outcome | null> {
    this.#step = step;
    this.#done = null;
    if (this.node.up) this.node.crash("process");
    this.node.start();
    await this.sim.world.run({
      untilMs: this.sim.world.now + STEP_MS_MAX,
      eventsMax,
      stop: () => this.#done !== null,
    });
    const done = this.#done as Outcome | null;
    if (done === null) this.node.crash(kind);
    return done;
  }
}

/** One thing done to the WAL, and to the model beside it. */
type Op = { kind: "save"; ready: Ready } | { kind: "compact"; snapshot: Snapshot };

function applyOp(wal: RaftWal, op: Op): Promise<void> {
  return op.kind === "save" ? wal.save(op.ready) : wal.compact(op.snapshot);
}

function applyModel(model: MemoryStorage, op: Op): void {
  if (op.kind === "save") model.save(op.ready);
  else model.compact(op.snapshot);
}

/** A MemoryStorage holding `s`. */
function modelOf(s: PersistentState): MemoryStorage {
  const m = new MemoryStorage([]);
  m.applySnapshot(s.snapshot);
  m.append(s.entries);
  m.setHardState(s.hardState);
  return m;
}

function bytes(rng: SeededRandom, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = rng.int(0, 256);
  return b;
}

function ready(
  entries: readonly Entry[],
  hardState: HardState | null = null,
  snapshot: Snapshot | null = null,
): Ready {
  return { hardState, snapshot, entries, committedEntries: [] };
}

/**
 * Random operations that are valid one after another, starting from `model` (which they advance),
 * and the states they lead through: `states[i]` is the state after the first `i` operations.
 */
function randomOps(
  rng: SeededRandom,
  model: MemoryStorage,
  count: number,
  opts: { appendsOnly?: boolean } = {},
): { ops: Op[]; states: PersistentState[] } {
  const ops: Op[] = [];
  const states = [model.state()];
  for (let i = 0; i < count; i++) {
    const s = model.state();
    const last = model.lastIndex;
    let term = Math.max(1, s.hardState.term, s.entries.at(-1)?.term ?? s.snapshot.term);
    if (rng.chance(0.2)) term++;
    // Appends only: no snapshot or compaction, so segments pile up.
    const roll = rng.float() * (opts.appendsOnly ? 0.7 : 1);
    const hs = (lastIndex: number, floor: number): HardState => ({
      term,
      vote: rng.chance(0.5) ? rng.pick(VOTERS) : null,
      commit: rng.int(floor, lastIndex + 1),
    });
    const entriesFrom = (from: number): Entry[] => {
      const n = rng.int(1, 5);
      return Array.from({ length: n }, (_, k) => ({
        index: from + k,
        term,
        kind: rng.pick(["normal", "normal", "noop"] as const),
        data: bytes(rng, rng.chance(0.1) ? rng.int(500, 1500) : rng.int(0, 120)),
      })).map((e) => (e.kind === "noop" ? { ...e, data: new Uint8Array(0) } : e));
    };
    let op: Op;
    if (roll < 0.55) {
      // Sometimes overwrite a suffix (a new leader's log winning): a truncation.
      const from = rng.chance(0.25)
        ? rng.int(Math.max(s.snapshot.index + 1, last - 3), last + 2)
        : last + 1;
      const entries = entriesFrom(from);
      op = {
        kind: "save",
        ready: ready(entries, rng.chance(0.5) ? hs(from + entries.length - 1, 0) : null),
      };
    } else if (roll < 0.7) {
      op = { kind: "save", ready: ready([], hs(last, s.snapshot.index)) };
    } else if (roll < 0.8) {
      const index = last + rng.int(1, 6);
      const snapshot: Snapshot = {
        index,
        term,
        voters: VOTERS,
        learners: learnersAt(index),
        data: bytes(rng, rng.int(0, 400)),
      };
      const entries = rng.chance(0.5) ? entriesFrom(snapshot.index + 1) : [];
      op = {
        kind: "save",
        ready: ready(entries, hs(snapshot.index + entries.length, snapshot.index), snapshot),
      };
    } else if (last > s.snapshot.index) {
      const index = rng.int(s.snapshot.index + 1, last + 1);
      op = {
        kind: "compact",
        snapshot: {
          index,
          term: model.term(index) as number,
          voters: VOTERS,
          learners: learnersAt(index),
          data: bytes(rng, rng.int(0, 300)),
        },
      };
    } else {
      op = { kind: "save", ready: ready(entriesFrom(last + 1)) };
    }
    applyModel(model, op);
    ops.push(op);
    states.push(model.state());
  }
  return { ops, states };
}

function open(env: Env, opts: RaftWalOptions = {}): Promise<RaftWal> {
  return RaftWal.open(env.disk, DIR, VOTERS, { segmentBytes: SEGMENT_BYTES, ...opts });
}

/** Which of `candidates` equals `s`, or -1. */
function whichState(s: PersistentState, candidates: readonly PersistentState[]): number {
  return candidates.findIndex((c) => isDeepStrictEqual(s, c));
}

function describe(s: PersistentState): string {
  return JSON.stringify({
    hs: s.hardState,
    snap: [s.snapshot.index, s.snapshot.term],
    entries: s.entries.map((e) => `${e.index}/${e.term}/${e.data.length}`),
  });
}

Deno.test("RaftWal round trip: reopened, it holds what a MemoryStorage fed the same Readys holds", async () => {
  const m = new Machine(1);
  const rng = new SeededRandom(11);
  const model = new MemoryStorage(VOTERS);
  let segmentsMax = 0;
  for (let round = 0; round < 6; round++) {
    const { ops } = randomOps(rng, model, 25);
    const got = await m.run(async (env) => {
      const wal = await open(env);
      for (const op of ops) {
        await applyOp(wal, op);
        segmentsMax = Math.max(segmentsMax, wal.segmentCount);
      }
      const s = wal.state();
      wal.close();
      return s;
    });
    assert.deepEqual(got, model.state(), `round ${round}: the live state`);
    if (round % 2 === 1) m.node.crash("power");
    const reopened = await m.run(async (env) => {
      const wal = await open(env);
      wal.close();
      return wal.state();
    });
    assert.deepEqual(reopened, model.state(), `round ${round}: after reopening`);
  }
  assert.ok(segmentsMax >= 3, `segments rolled (at most ${segmentsMax} at once)`);
});

Deno.test("RaftWal.open() on an empty directory starts from the bootstrap voters", async () => {
  const m = new Machine(2);
  const got = await m.run(async (env) => {
    const wal = await RaftWal.open(env.disk, DIR, ["c", "a", "b"]);
    const joiner = await RaftWal.open(env.disk, `${DIR}-joiner`, []);
    return { boot: wal.state(), joiner: joiner.state(), files: await env.disk.list(DIR) };
  });
  assert.deepEqual(got.boot, new MemoryStorage(VOTERS).state());
  assert.deepEqual(got.joiner, new MemoryStorage([]).state());
  assert.deepEqual(got.files, ["00000000000000000000.wal"]);
});

Deno.test("RaftWal: after power losses at random points, every resolved save and compaction is there, and nothing else", async () => {
  const SEEDS = 1000;
  const ROUNDS = 4;
  const OPS_PER_ROUND = 12;
  const seen = { crashedMidOp: 0, inFlightKept: 0, inFlightLost: 0, tornReports: 0, failed: 0 };
  for (let seed = 1; seed <= SEEDS; seed++) {
    const rng = new SeededRandom(seed).fork("workload");
    // Swarm testing: each seed rolls its own fault mix.
    const m = new Machine(seed, {
      crash: {
        keep: rng.int(0, 3),
        drop: rng.int(0, 3),
        torn: rng.int(0, 3),
        corrupt: rng.int(0, 2),
      },
      readFlipProb: rng.chance(0.3) ? 0.03 : 0,
      syncFailProb: rng.chance(0.2) ? 0.02 : 0,
    });
    if (Object.values(m.faults.crash).every((w) => w === 0)) m.faults.crash.torn = 1;
    const reports: string[] = [];
    let candidates: PersistentState[] = [new MemoryStorage(VOTERS).state()];
    for (let round = 0; round <= ROUNDS; round++) {
      let opened: PersistentState | null = null;
      let resolved = 0;
      let ops: Op[] = [];
      let states: PersistentState[] = [];
      const step = async (env: Env) => {
        const wal = await open(env, { onReport: (msg) => reports.push(msg) });
        opened = wal.state();
        ({ ops, states } = randomOps(rng, modelOf(opened), round === ROUNDS ? 0 : OPS_PER_ROUND));
        for (const op of ops) {
          await applyOp(wal, op);
          resolved++;
        }
      };
      // The last round is the liveness phase: fsyncs stop failing, and the open must succeed.
      if (round === ROUNDS) m.faults.syncFailProb = 0;
      const kind: CrashKind = rng.chance(0.8) ? "power" : "process";
      const eventsMax = round === ROUNDS ? Infinity : rng.int(1, 30 + 6 * OPS_PER_ROUND);
      const done = await m.runUntilCrash(step, eventsMax, kind);
      const where = `seed ${seed} round ${round}`;
      if (opened !== null) {
        const at = whichState(opened, candidates);
        assert.ok(
          at >= 0,
          `${where}: reopened state ${describe(opened)} is none of ${
            candidates.map(describe).join(" | ")
          }`,
        );
        if (candidates.length === 2) {
          if (at === 1) seen.inFlightKept++;
          else seen.inFlightLost++;
        }
        // The next open must find every resolved operation, and at most the one in flight.
        candidates = states.slice(resolved, resolved + 2);
      }
      if (done === null && opened !== null && resolved < ops.length) seen.crashedMidOp++;
      if (done !== null && "error" in done) {
        seen.failed++;
        assert.match(String(done.error), /fsync|failed/, `${where}: ${done.error}`);
      }
      if (round < ROUNDS && done !== null) m.node.crash(kind);
    }
    assert.equal(candidates.length, 1, `seed ${seed}: the last round ran to its end`);
    seen.tornReports += reports.filter((r) => r.includes("torn tail")).length;
  }
  // The paths the test exists for must have been taken, not just allowed.
  assert.ok(seen.crashedMidOp > 500, `crashes in the middle of an operation: ${seen.crashedMidOp}`);
  assert.ok(
    seen.inFlightKept > 100,
    `in-flight operations found after the crash: ${seen.inFlightKept}`,
  );
  assert.ok(
    seen.inFlightLost > 100,
    `in-flight operations lost in the crash: ${seen.inFlightLost}`,
  );
  assert.ok(seen.tornReports > 20, `torn tails reported: ${seen.tornReports}`);
  assert.ok(seen.failed > 20, `operations failed by a failed fsync: ${seen.failed}`);
});

/** Runs `count` random operations on a fresh WAL in `m`; returns the model state they lead to. */
async function populate(m: Machine, seed: number, count: number): Promise<PersistentState> {
  const model = new MemoryStorage(VOTERS);
  const { ops } = randomOps(new SeededRandom(seed), model, count, { appendsOnly: true });
  await m.run(async (env) => {
    const wal = await open(env);
    for (const op of ops) await applyOp(wal, op);
    wal.close();
  });
  return model.state();
}

/** Segment files in DIR with their sizes. */
function segmentFiles(m: Machine): Promise<{ name: string; size: number }[]> {
  return m.run(async (env) => {
    const out: { name: string; size: number }[] = [];
    for (const name of await env.disk.list(DIR)) {
      const f = await env.disk.open(`${DIR}/${name}`);
      out.push({ name, size: await f.size() });
      f.close();
    }
    return out;
  });
}

function reopen(m: Machine, opts: RaftWalOptions = {}): Promise<PersistentState> {
  return m.run(async (env) => {
    const wal = await open(env, opts);
    wal.close();
    return wal.state();
  });
}

Deno.test("RaftWal.open() survives bits flipped on read by reading again", async () => {
  const m = new Machine(3, { readFlipProb: 0.2 });
  const want = await populate(m, 3, 80);
  const files = await segmentFiles(m);
  assert.ok(files.length >= 4, `${files.length} segments`);
  for (let i = 0; i < 10; i++) {
    m.node.crash(i % 2 === 0 ? "power" : "process");
    assert.deepEqual(await reopen(m), want, `reopen ${i}`);
  }
  assert.ok(m.node.disk.stats.readFlips > 20, `bits flipped: ${m.node.disk.stats.readFlips}`);
});

Deno.test("RaftWal.open() refuses a log damaged at rest in the middle, naming the file and byte", async () => {
  // Damage in: the checkpoint that starts the log, a full older segment, the newest segment's
  // first frame. Intact frames follow each, so none may pass for a torn tail.
  for (const which of ["first", "middle", "last"] as const) {
    const m = new Machine(4);
    await populate(m, 4, 60);
    const files = await segmentFiles(m);
    assert.ok(files.length >= 4, `${files.length} segments`);
    const target = which === "first"
      ? files[0]!
      : which === "middle"
      ? files[Math.floor(files.length / 2)]!
      : files.at(-1)!;
    m.node.disk.corruptAtRest(`${DIR}/${target.name}`, WAL_FRAME_HEADER_BYTES + 3);
    await assert.rejects(
      reopen(m),
      (err: Error) => {
        assert.match(err.message, new RegExp(`${DIR}/${target.name} is damaged at byte 0`));
        assert.match(err.message, /intact frame \d+ follows/);
        return true;
      },
      which,
    );
  }
});

Deno.test("RaftWal.open() refuses a log with a segment missing from the middle", async () => {
  const m = new Machine(14);
  await populate(m, 14, 60);
  const files = await segmentFiles(m);
  const gone = files[Math.floor(files.length / 2)]!;
  const next = files[Math.floor(files.length / 2) + 1]!;
  await m.run((env) => env.disk.remove(`${DIR}/${gone.name}`));
  await assert.rejects(
    reopen(m),
    new RegExp(`${DIR}/${next.name} is damaged at byte 0 \\(it begins at frame \\d+, not \\d+\\)`),
  );
});

Deno.test("RaftWal.open() drops a torn tail and reports it", async () => {
  const m = new Machine(5);
  const want = await populate(m, 5, 30);
  const last = (await segmentFiles(m)).at(-1)!;
  // A save cut short: half a frame whose header claims more than the file holds, then garbage.
  const head = await m.run(async (env) => {
    const f = await env.disk.open(`${DIR}/${last.name}`);
    const h = new Uint8Array(WAL_FRAME_HEADER_BYTES);
    await f.readAt(0, h);
    await f.writeAt(last.size, h);
    await f.writeAt(last.size + h.length, new Uint8Array(40).fill(0xab));
    f.close();
    return h;
  });
  assert.equal(head.length, WAL_FRAME_HEADER_BYTES);
  const reports: string[] = [];
  assert.deepEqual(await reopen(m, { onReport: (r) => reports.push(r) }), want);
  assert.equal(reports.length, 1, reports.join("\n"));
  assert.match(
    reports[0]!,
    new RegExp(`torn tail of Raft WAL ${DIR}/${last.name} at byte ${last.size}`),
  );
  assert.match(reports[0]!, /68 bytes dropped/);
  // The tail is gone for good: the next open finds nothing to report.
  m.node.crash("power");
  const again: string[] = [];
  assert.deepEqual(await reopen(m, { onReport: (r) => again.push(r) }), want);
  assert.deepEqual(again, []);
});

Deno.test("RaftWal.save() rejects after a failed fsync, and the WAL refuses every later write", async () => {
  const m = new Machine(6);
  const e1: Entry = { index: 1, term: 1, kind: "normal", data: new Uint8Array([1]) };
  const e2: Entry = { index: 2, term: 1, kind: "normal", data: new Uint8Array([2]) };
  const e3: Entry = { index: 3, term: 1, kind: "normal", data: new Uint8Array([3]) };
  const got = await m.run(async (env) => {
    const wal = await open(env);
    await wal.save(ready([e1], { term: 1, vote: "a", commit: 0 }));
    m.faults.syncFailProb = 1;
    const failed = await wal.save(ready([e2])).then(() => "resolved", (e: Error) => e.message);
    m.faults.syncFailProb = 0;
    const later = await wal.save(ready([e3])).then(() => "resolved", (e: Error) => e.message);
    const compacted = await wal.compact({
      index: 1,
      term: 1,
      voters: VOTERS,
      learners: LEARNERS,
      data: new Uint8Array(),
    })
      .then(() => "resolved", (e: Error) => e.message);
    return { failed, later, compacted, failure: wal.failure, state: wal.state() };
  });
  assert.match(got.failed, /fsync of .*\.wal failed/);
  assert.match(got.later, /refusing to write/);
  assert.match(got.compacted, /refusing to write/);
  assert.match(got.failure ?? "", /fsync/);
  assert.deepEqual(got.state.entries, [e1], "a failed save changes nothing in memory");
  // The dirty data of the failed fsync is gone from the disk, or it is not: either is a state the
  // saves could leave. A restarted WAL takes writes again.
  m.node.crash("power");
  const after = await m.run(async (env) => {
    const wal = await open(env);
    const s = wal.state();
    await wal.save(ready([{ ...e3, index: s.entries.length + 1 }]));
    return wal.state();
  });
  assert.ok(after.entries.length === 2 || after.entries.length === 3, describe(after));
  assert.deepEqual(after.entries[0], e1);
  assert.deepEqual(after.hardState, { term: 1, vote: "a", commit: 0 });
});

Deno.test("RaftWal.open() makes durable what it recovers, even writes whose fsync failed", async () => {
  const m = new Machine(15);
  const e = (index: number): Entry => ({
    index,
    term: 1,
    kind: "normal",
    data: new Uint8Array([index]),
  });
  await m.run(async (env) => {
    const wal = await open(env);
    await wal.save(ready([e(1)]));
    m.faults.syncFailProb = 1;
    await assert.rejects(wal.save(ready([e(2)])), /fsync/);
    m.faults.syncFailProb = 0;
  });
  // A kill -9 keeps the page cache, which still shows the frame the disk may never have got.
  const seen = await reopen(m);
  assert.deepEqual(seen.entries, [e(1), e(2)]);
  m.node.crash("power");
  assert.deepEqual(await reopen(m), seen, "what an open returned survives a power loss");
});

Deno.test("RaftWal.save() that runs out of space rejects, leaves no trace and the WAL goes on", async () => {
  const m = new Machine(7);
  const e = (index: number, n: number): Entry => ({
    index,
    term: 2,
    kind: "normal",
    data: new Uint8Array(n).fill(index),
  });
  const got = await m.run(async (env) => {
    const wal = await open(env);
    await wal.save(ready([e(1, 100)]));
    m.faults.full = true;
    const full = await wal.save(ready([e(2, 3000)])).then(
      () => "resolved",
      (x: Error) => x.message,
    );
    m.faults.full = false;
    await wal.save(ready([e(2, 10), e(3, 10)], { term: 2, vote: null, commit: 3 }));
    return { full, failure: wal.failure };
  });
  assert.match(got.full, /no space/);
  assert.equal(got.failure, null);
  m.node.crash("power");
  const s = await reopen(m);
  assert.deepEqual(s.entries, [e(1, 100), e(2, 10), e(3, 10)]);
  assert.equal(s.hardState.commit, 3);
});

Deno.test("RaftWal.save() rejects entries that do not follow on and bad configs, and changes nothing", async () => {
  const m = new Machine(8);
  const e = (index: number): Entry => ({ index, term: 1, kind: "noop", data: new Uint8Array() });
  const got = await m.run(async (env) => {
    const wal = await open(env);
    await wal.save(ready([e(1), e(2)]));
    await assert.rejects(wal.save(ready([e(4)])), RangeError);
    await assert.rejects(wal.save(ready([e(3), e(5)])), RangeError);
    await assert.rejects(
      wal.compact({ index: 2, term: 7, voters: VOTERS, learners: [], data: new Uint8Array() }),
      AssertionFailed,
    );
    const snap = (learners: string[]): Snapshot => ({
      index: 9,
      term: 1,
      voters: VOTERS,
      learners,
      data: new Uint8Array(),
    });
    await assert.rejects(wal.save(ready([], null, snap(["a"]))), /both a voter and a learner/);
    await assert.rejects(wal.save(ready([], null, snap(["e", "d"]))), /not sorted/);
    await wal.save(ready([e(3)]));
    return { failure: wal.failure, state: wal.state() };
  });
  assert.equal(got.failure, null);
  assert.deepEqual(got.state.entries, [e(1), e(2), e(3)]);
});

Deno.test("RaftWal.compact() deletes the segments it no longer needs", async () => {
  const m = new Machine(9);
  const want = await populate(m, 9, 60);
  const before = await segmentFiles(m);
  assert.ok(before.length >= 4, `${before.length} segments`);
  const model = modelOf(want);
  const index = model.lastIndex - 2;
  const snapshot: Snapshot = {
    index,
    term: model.term(index) as number,
    voters: VOTERS,
    learners: LEARNERS,
    data: new Uint8Array([9, 9]),
  };
  model.compact(snapshot);
  const got = await m.run(async (env) => {
    const wal = await open(env);
    const sizeBefore = wal.sizeBytes;
    await wal.compact(snapshot);
    return { sizeBefore, sizeAfter: wal.sizeBytes, count: wal.segmentCount, state: wal.state() };
  });
  assert.deepEqual(got.state, model.state());
  assert.equal(got.count, 1);
  assert.ok(got.sizeAfter < got.sizeBefore, `${got.sizeAfter} < ${got.sizeBefore}`);
  const after = await segmentFiles(m);
  assert.deepEqual(after.map((f) => f.size), [got.sizeAfter]);
  m.node.crash("power");
  assert.deepEqual(await reopen(m), model.state());
});

Deno.test("RaftWal.compact() interrupted by a power loss at every step leaves the old state or the new", async () => {
  let leftovers = 0;
  let newKept = 0;
  let oldKept = 0;
  for (const seed of [10, 11, 12]) {
    /** A machine holding a populated WAL, and the step that compacts it. */
    const setup = async () => {
      const m = new Machine(seed, { crash: { keep: 1, drop: 1, torn: 1, corrupt: 1 } });
      const old = await populate(m, seed, 60);
      const model = modelOf(old);
      const index = model.lastIndex - 3;
      const snapshot: Snapshot = {
        index,
        term: model.term(index) as number,
        voters: VOTERS,
        learners: LEARNERS,
        data: new Uint8Array(200).fill(7),
      };
      model.compact(snapshot);
      const events = { opened: 0 };
      const step = async (env: Env) => {
        const wal = await open(env);
        events.opened = m.sim.world.eventsFired;
        await wal.compact(snapshot);
      };
      return { m, old, compacted: model.state(), step, events };
    };
    // The same seed replays the same events: find where the compaction starts, then cut there.
    const probe = await setup();
    const firedBefore = probe.m.sim.world.eventsFired;
    await probe.m.run(probe.step);
    const openEvents = probe.events.opened - firedBefore;
    for (let cut = openEvents + 1;; cut++) {
      const { m, old, compacted, step } = await setup();
      const done = await m.runUntilCrash(step, cut, "power");
      const files = await segmentFiles(m);
      const got = await reopen(m);
      const at = whichState(got, [old, compacted]);
      assert.ok(at >= 0, `seed ${seed} cut ${cut}: ${describe(got)}`);
      if (done !== null) {
        assert.equal(at, 1, `seed ${seed}: a resolved compaction is durable`);
        break;
      }
      if (at === 1) newKept++;
      else oldKept++;
      if (at === 1 && files.length > 1) leftovers++;
      assert.ok(cut < openEvents + 100, "the compaction ends");
    }
  }
  assert.ok(newKept > 0 && oldKept > 0, `new ${newKept}, old ${oldKept}`);
  assert.ok(leftovers > 0, "a crash left obsolete segments beside a durable checkpoint");
});

Deno.test("RaftWal: a RaftNode restarted from state() after a power loss has its committed entries", async () => {
  const m = new Machine(13);
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  /** Drives a single-voter node: elects it, proposes `values`, persists and applies every Ready. */
  const drive = async (env: Env, values: string[], compactAt: number) => {
    const wal = await RaftWal.open(env.disk, DIR, ["n1"], { segmentBytes: SEGMENT_BYTES });
    let now = 0;
    const node = new RaftNode({ id: "n1", state: wal.state(), random: env.random, nowMs: now });
    const applied: string[] = [];
    const drain = async () => {
      for (let rd = node.ready(); rd !== null; rd = node.ready()) {
        await wal.save(rd);
        for (const e of rd.committedEntries) {
          if (e.kind === "normal") applied.push(dec.decode(e.data));
        }
        node.advance(rd);
      }
    };
    for (let i = 0; i < 100 && node.role !== "leader"; i++) {
      node.tick(now += 100);
      await drain();
    }
    assert.equal(node.role, "leader");
    await drain();
    for (const v of values) {
      const r = node.propose(enc.encode(v));
      assert.ok(r.ok);
      await drain();
      if (applied.length === compactAt) {
        await wal.compact(node.compact(node.appliedIndex, enc.encode(applied.join(","))));
      }
    }
    return { applied, commit: node.commitIndex, term: node.term, snapshot: wal.state().snapshot };
  };
  const first = await m.run((env) => drive(env, ["a", "b", "c", "d", "e", "f"], 3));
  assert.deepEqual(first.applied, ["a", "b", "c", "d", "e", "f"]);
  m.node.crash("power");
  const second = await m.run((env) => drive(env, ["g", "h"], -1));
  // Restarted, it applies again what the snapshot does not hold, then its new proposals.
  assert.equal(first.snapshot.index > 0, true);
  assert.equal(dec.decode(second.snapshot.data), "a,b,c");
  assert.deepEqual(second.applied, ["d", "e", "f", "g", "h"]);
  assert.ok(second.term > first.term, `term ${second.term} after ${first.term}`);
  assert.ok(second.commit > first.commit);
});
