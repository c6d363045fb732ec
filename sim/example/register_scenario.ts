// EXAMPLE scenario: three replicas of the register store and one client node, under a swarm
// fault plan, then healed, then every replica loses power at once and a fresh client reads every
// key back. Its checker holds the example to its promises: an acknowledged write is never lost and
// never read past, reads return only values somebody wrote, and the system makes progress once
// healed.

import { Buffer } from "node:buffer";
import { SeededRandom } from "../../src/io/prng.ts";
import type { Env } from "../../src/io/types.ts";
import { calm, calmPlan, type FaultPlan, Nemesis, rollPlan } from "../faults.ts";
import type { HistoryEntry } from "../history.ts";
import { Simulation } from "../simulation.ts";
import { EXIT_CLEAN } from "../node.ts";
import { type RunResult, runResult } from "../result.ts";
import { RegisterClient } from "./register_client.ts";
import { parseWal, type ReplicaBug, runReplica } from "./register_replica.ts";
import { encodeRecord, type Versioned } from "./register_wire.ts";

/** Everything that decides a run. All of it derives from the seed unless overridden. */
export interface RegisterOptions {
  seed: number;
  replicas: number;
  writers: number;
  readers: number;
  /** Virtual time of the safety phase (faults on), ms. */
  safetyMs: number;
  /** Virtual time the healed system gets to finish its final operations, ms. */
  livenessMs: number;
  /** "swarm": faults rolled from the seed; "calm": none. */
  faults: "swarm" | "calm";
  bug: ReplicaBug;
}

const PORT = 7000;
/** The client starts after the replicas had time to recover and listen. */
const CLIENT_START_DELAY_MS = 50;
const DATA_DIR = "data";
/** Client operations give up after this long, ms. */
const OP_TIMEOUT_MS = 500;
/** Virtual time the verifier gets to read every key back after the final power loss, ms. */
const VERIFY_MS = 30_000;
/** The verifier's pause between two failed reads of a key, ms. */
const VERIFY_RETRY_MS = 50;

/** Derives the options for `seed`, then applies `overrides`. */
export function registerOptions(
  seed: number,
  overrides: Partial<RegisterOptions> = {},
): RegisterOptions {
  const r = new SeededRandom(seed, "options");
  return {
    seed,
    replicas: 3,
    writers: r.int(1, 5),
    readers: r.int(1, 4),
    safetyMs: r.int(1_000, 8_000),
    livenessMs: 30_000,
    faults: "swarm",
    bug: null,
    ...overrides,
  };
}

/** Runs the register scenario; the result says what happened and whether the checker passed. */
export async function runRegister(opts: RegisterOptions): Promise<RunResult> {
  const planRandom = new SeededRandom(opts.seed, "faults");
  const downMax = Math.floor((opts.replicas - 1) / 2);
  const plan: FaultPlan = opts.faults === "swarm" ? rollPlan(planRandom, downMax) : calmPlan();
  const sim = new Simulation(opts.seed, {
    net: { ...plan.net },
    disk: plan.disk,
    restartAfterExitMs: 50,
  });
  const names = Array.from({ length: opts.replicas }, (_, i) => `replica-${i}`);
  for (const name of names) {
    const drift = (planRandom.float() * 2 - 1) * plan.clockDriftMax;
    sim.addNode({
      name,
      skew: { drift, wallOffsetMs: 0 },
      main: (env, ctl) =>
        runReplica(env, ctl, { host: "0.0.0.0", port: PORT, dataDir: DATA_DIR, bug: opts.bug }),
    });
  }
  const phase = { liveness: false };
  let clientDone = false;
  const violations: string[] = [];
  // The moment a put is acknowledged, a majority must hold it durably: nothing later can help.
  const onAck = (v: Versioned, index: number) => {
    const n = durableCopies(sim, names, v);
    if (n < majority(names.length)) {
      violations.push(
        `lost write: ${v.key}@${v.version} was acknowledged while durable on ${n} of ${names.length} replicas (history #${index})`,
      );
    }
  };
  sim.addNode({
    name: "client",
    main: async (env) => {
      await runClient(env, sim, { opts, names, phase, onAck });
      clientDone = true;
    },
  });

  const nemesis = new Nemesis(sim, plan, sim.nodes.filter((n) => n.name !== "client"));
  nemesis.start();
  await sim.world.run({ untilMs: opts.safetyMs });
  calm(sim, nemesis);
  phase.liveness = true;
  const livenessEnd = sim.world.now + opts.livenessMs;
  const stop = await sim.world.run({ untilMs: livenessEnd, stop: () => clientDone });
  if (!clientDone) {
    violations.push(
      stop === "idle"
        ? "deadlock: no event left to fire while the client still waits"
        : `liveness: the client did not finish within ${opts.livenessMs} ms after healing`,
    );
  }
  // Judge the disks before the final power loss, whose luck could make an unsynced write durable.
  violations.push(...checkDurable(sim, names, sim.history.entries));
  const keys = Array.from({ length: opts.writers }, (_, i) => `k${i}`);
  const verified = { keys: 0 };
  if (clientDone) {
    // Every replica loses power at once and comes back: what they recover must still hold every
    // acknowledged write, as a fresh client on a new node sees it.
    for (const name of names) {
      const node = sim.node(name);
      node.crash("power");
      node.start();
    }
    let verifierDone = false;
    sim.addNode({
      name: "verifier",
      main: async (env) => {
        await runVerifier(env, sim, { names, keys, verified });
        verifierDone = true;
      },
    });
    await sim.world.run({ untilMs: sim.world.now + VERIFY_MS, stop: () => verifierDone });
    if (!verifierDone) {
      violations.push(
        `liveness: after every replica lost power, the verifier read ${verified.keys} of ${keys.length} keys within ${VERIFY_MS} ms`,
      );
    }
  }
  violations.push(...checkHistory(sim.history.entries));
  const disk = sumStats(sim.nodes.map((n) => n.disk.stats));
  const net = sim.net.stats;
  return runResult(sim, {
    scenario: "register",
    seed: opts.seed,
    options: opts,
    plan,
    violations,
    stats: {
      puts: sim.history.count("invoke", "put"),
      putsOk: sim.history.count("ok", "put"),
      putsUnknown: sim.history.count("info", "put"),
      gets: sim.history.count("invoke", "get"),
      getsOk: sim.history.count("ok", "get"),
      fatalExits: sim.exits.filter((e) => e.reason !== EXIT_CLEAN).length,
      verifiedKeys: verified.keys,
      ...nemesis.stats,
      pausesHeldEvents: sim.nodes.reduce((n, node) => n + node.pausesWithHeldEvents, 0),
      ...disk,
      netResets: net.resets,
      netRstSent: net.rstSent,
      netResetsLosingBytes: net.resetsLosingBytes,
      netConnectTimeouts: net.connectTimeouts,
      netHeldSegments: net.heldSegments,
    },
  });
}

/** What the client process needs from the scenario. */
interface ClientSetup {
  opts: RegisterOptions;
  names: string[];
  phase: { liveness: boolean };
  /** Called the moment a put is acknowledged, with its history index. */
  onAck: (v: Versioned, index: number) => void;
}

async function runClient(
  env: Env,
  sim: Simulation,
  { opts, names, phase, onAck }: ClientSetup,
): Promise<void> {
  const client = new RegisterClient(env, {
    replicas: names.map((host) => ({ host, port: PORT })),
    opTimeoutMs: OP_TIMEOUT_MS,
  });
  const h = sim.history;
  await env.clock.sleep(CLIENT_START_DELAY_MS);
  const keys = Array.from({ length: opts.writers }, (_, i) => `k${i}`);

  async function writer(key: string, proc: string): Promise<void> {
    let version = 0;
    // Keep writing through the faults; once healed, one final write must be acknowledged.
    for (;;) {
      const finalRound = phase.liveness;
      version++;
      const v: Versioned = { key, version, value: `${key}@${version}#${env.random.u32()}` };
      h.add(proc, "invoke", "put", v);
      const outcome = await client.put(v);
      const e = h.add(proc, outcome === "ok" ? "ok" : "info", "put", v);
      if (outcome === "ok") onAck(v, e.index);
      if (finalRound && outcome === "ok") return;
      await env.clock.sleep(env.random.float() * 20);
    }
  }

  async function reader(proc: string): Promise<void> {
    let finalLeft = [...keys];
    for (;;) {
      const finalRound = phase.liveness;
      const key = finalRound ? finalLeft[0]! : keys[env.random.int(0, keys.length)]!;
      h.add(proc, "invoke", "get", { key });
      const got = await client.get(key);
      if (got === null) h.add(proc, "fail", "get", { key });
      else {
        h.add(proc, "ok", "get", got);
        if (finalRound) finalLeft = finalLeft.filter((k) => k !== key);
      }
      if (finalRound && finalLeft.length === 0) return;
      await env.clock.sleep(env.random.float() * 20);
    }
  }

  const procs: Promise<void>[] = keys.map((k, i) => writer(k, `writer-${i}`));
  for (let i = 0; i < opts.readers; i++) procs.push(reader(`reader-${i}`));
  await Promise.all(procs);
}

/**
 * Reads every key through a fresh client until a majority answers, recording the reads in the
 * history so `checkHistory` holds them to every acknowledged write. Counts keys read in
 * `verified`.
 */
async function runVerifier(
  env: Env,
  sim: Simulation,
  { names, keys, verified }: { names: string[]; keys: string[]; verified: { keys: number } },
): Promise<void> {
  const client = new RegisterClient(env, {
    replicas: names.map((host) => ({ host, port: PORT })),
    opTimeoutMs: OP_TIMEOUT_MS,
  });
  const h = sim.history;
  for (const key of keys) {
    for (;;) {
      h.add("verifier", "invoke", "get", { key });
      const got = await client.get(key);
      if (got !== null) {
        h.add("verifier", "ok", "get", got);
        break;
      }
      h.add("verifier", "fail", "get", { key });
      await env.clock.sleep(VERIFY_RETRY_MS);
    }
    verified.keys++;
  }
}

/**
 * Checks reads against writes: a read returns exactly a value some put wrote for that version, and
 * never a version older than one acknowledged before the read began.
 */
export function checkHistory(entries: readonly HistoryEntry[]): string[] {
  const violations: string[] = [];
  const written = new Map<string, string>();
  const ackedMax = new Map<string, number>();
  const readStart = new Map<string, number>();
  for (const e of entries) {
    if (e.op === "put") {
      const v = e.value as Versioned;
      if (e.kind === "invoke") written.set(`${v.key}@${v.version}`, v.value);
      if (e.kind === "ok") ackedMax.set(v.key, Math.max(ackedMax.get(v.key) ?? 0, v.version));
      continue;
    }
    const key = (e.value as { key: string }).key;
    if (e.kind === "invoke") {
      readStart.set(e.process, ackedMax.get(key) ?? 0);
      continue;
    }
    if (e.kind !== "ok") continue;
    const got = e.value as Versioned;
    const floor = readStart.get(e.process) ?? 0;
    if (got.version < floor) {
      violations.push(
        `stale read: ${e.process} read ${key} at version ${got.version} after version ${floor} was acknowledged (history #${e.index})`,
      );
    }
    if (got.version > 0 && written.get(`${key}@${got.version}`) !== got.value) {
      violations.push(
        `bad read: ${e.process} read ${key}@${got.version} = ${
          JSON.stringify(got.value)
        }, which no put wrote (history #${e.index})`,
      );
    }
  }
  return violations;
}

/** Checks the disks: every acknowledged write is durable on a majority of replicas. */
function checkDurable(
  sim: Simulation,
  names: string[],
  entries: readonly HistoryEntry[],
): string[] {
  const copies = new Map<string, number>();
  for (const name of names) {
    const bytes = sim.node(name).disk.durableBytes(`${DATA_DIR}/wal.log`);
    if (bytes === null) continue;
    const seen = new Set<string>();
    for (const r of parseWal(bytes).records) seen.add(`${r.key}@${r.version}#${r.value}`);
    for (const id of seen) copies.set(id, (copies.get(id) ?? 0) + 1);
  }
  const need = majority(names.length);
  const violations: string[] = [];
  for (const e of entries) {
    if (e.op !== "put" || e.kind !== "ok") continue;
    const v = e.value as Versioned;
    const n = copies.get(`${v.key}@${v.version}#${v.value}`) ?? 0;
    if (n < need) {
      violations.push(
        `lost write: ${v.key}@${v.version} was acknowledged but is durable on ${n} of ${names.length} replicas`,
      );
    }
  }
  return violations;
}

function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** On how many replicas' durable WAL the record of `v` is, byte for byte; stops at a majority. */
function durableCopies(sim: Simulation, names: string[], v: Versioned): number {
  const record = encodeRecord(v);
  let n = 0;
  for (const name of names) {
    const wal = sim.node(name).disk.durableView(`${DATA_DIR}/wal.log`);
    // Buffer's native search, from the end where an appended record usually is.
    if (
      wal !== null && Buffer.from(wal.buffer, wal.byteOffset, wal.length).lastIndexOf(record) >= 0
    ) {
      n++;
    }
    if (n >= majority(names.length)) break;
  }
  return n;
}

function sumStats<T extends object>(all: T[]): T {
  const out = {} as Record<string, number>;
  for (const s of all) {
    for (const [k, v] of Object.entries(s)) out[k] = (out[k] ?? 0) + (v as number);
  }
  return out as T;
}
