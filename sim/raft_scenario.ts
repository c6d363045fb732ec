// Raft alone, where its hard cases are common: 3 or 5 RaftGroups (the real shell and node) on one
// simulated machine, joined by a message network that delays, reorders, drops and duplicates, and
// a nemesis aimed at leaders — it cuts a leader off right after it appended (so a minority holds
// entries no one else has: divergent suffixes, Raft's Figure 8), heals a partition just after the
// rest elected a newer leader (so a deposed leader hears of the newer term from followers), and
// crashes nodes mid-save. The Raft checker (sim/raft_checker.ts) watches every step; at the end
// every acknowledged proposal must sit, at its index, in every node's committed log.

import { SeededRandom } from "../src/io/prng.ts";
import type { Clock } from "../src/io/types.ts";
import { MemoryStorage } from "../src/cluster/raft/memory_storage.ts";
import { RaftGroup, type RaftGroupOptions } from "../src/cluster/raft/shell.ts";
import { calmPlan } from "./faults.ts";
import { Buggify } from "./buggify.ts";
import { runOnNode } from "./harness.ts";
import { RaftChecker } from "./raft_checker.ts";
import { type RunResult, runResult } from "./result.ts";
import { Simulation } from "./simulation.ts";

/** A Raft run, all rolled from its seed. */
export interface RaftOptions {
  seed: number;
  nodes: number;
  tickMs: number;
  electionTimeoutMs: number;
  heartbeatIntervalMs: number;
  appendEntriesMax: number;
  inflightMax: number;
  /** Message latency, ms: each message takes 1..latencyMs (so they overtake one another). */
  latencyMs: number;
  dropProb: number;
  duplicateProb: number;
  /** Time with faults on, ms. */
  safetyMs: number;
  /** Time the healed group has to converge, ms. */
  livenessMs: number;
  /** Compact the log every this many applied entries (0: never), so laggards install snapshots. */
  compactEvery: number;
  /** Deliberate protocol bugs, to prove the checkers catch them (tests only). */
  plantedBugs?: RaftGroupOptions["plantedBugs"];
}

/** Violations kept per run. */
const VIOLATIONS_MAX = 20;
/** Crashes the save fault point causes per run, at most (saves are many; crashes cost time). */
const SAVE_CRASHES_MAX = 5;
/** Proposals waiting for an answer at once, at most. */
const PROPOSALS_INFLIGHT_MAX = 4;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Derives the options for `seed`, then applies `overrides`. */
export function raftOptions(seed: number, overrides: Partial<RaftOptions> = {}): RaftOptions {
  const r = new SeededRandom(seed, "raft-options");
  const tickMs = r.int(5, 16);
  const electionTimeoutMs = r.int(8 * tickMs, 25 * tickMs);
  return {
    seed,
    nodes: r.chance(0.75) ? 5 : 3,
    tickMs,
    electionTimeoutMs,
    heartbeatIntervalMs: r.int(2 * tickMs, Math.floor(electionTimeoutMs / 3)),
    appendEntriesMax: r.chance(0.6) ? r.int(1, 4) : 64,
    inflightMax: r.chance(0.5) ? r.int(1, 3) : 16,
    latencyMs: r.int(1, 12),
    dropProb: r.chance(0.5) ? r.float() * 0.05 : 0,
    duplicateProb: r.chance(0.5) ? r.float() * 0.05 : 0,
    safetyMs: r.int(1_000, 3_000),
    livenessMs: 20_000,
    compactEvery: r.chance(0.5) ? r.int(4, 40) : 0,
    ...overrides,
  };
}

interface Member {
  id: string;
  storage: MemoryStorage;
  group: RaftGroup | null;
  /** Bumped at each crash: what an earlier incarnation still had in flight is void. */
  incarnation: number;
  /** Committed values as this incarnation applied them, by index. */
  applied: Map<number, string>;
}

/** Runs the Raft scenario and checks it. */
export async function runRaft(opts: RaftOptions): Promise<RunResult> {
  const sim = new Simulation(opts.seed);
  const r = new SeededRandom(opts.seed, "raft-workload");
  const net = new SeededRandom(opts.seed, "raft-network");
  const violations: string[] = [];
  const violate = (msg: string) => {
    if (violations.length < VIOLATIONS_MAX) violations.push(msg);
  };
  const checker = new RaftChecker();
  const buggify = new Buggify(new SeededRandom(opts.seed, "buggify"));
  const ids = Array.from({ length: opts.nodes }, (_, i) => `r${i}`);
  const members = new Map<string, Member>(
    ids.map((id) => [id, {
      id,
      storage: new MemoryStorage(ids),
      group: null,
      incarnation: 0,
      applied: new Map(),
    }]),
  );
  /** Directed links that carry nothing: "a>b". */
  const cut = new Set<string>();
  const stats = {
    proposed: 0,
    acked: 0,
    crashes: 0,
    saveCrashes: 0,
    compactions: 0,
    snapshotRestores: 0,
    leaderIsolations: 0,
    quickHeals: 0,
    messagesDropped: 0,
    messagesDuplicated: 0,
  };
  /** Acknowledged proposals: value → the index it was applied at. */
  const acked = new Map<string, number>();
  let faultsOn = true;
  let done = false;

  const downMax = Math.floor((opts.nodes - 1) / 2);
  const et = opts.electionTimeoutMs;
  await runOnNode(sim, "raft", async (env) => {
    const clock: Clock = env.clock;
    const start = (m: Member) => {
      const incarnation = m.incarnation;
      const alive = () => m.incarnation === incarnation;
      m.applied = new Map();
      let g: RaftGroup;
      try {
        g = newGroup(m, incarnation, alive);
      } catch (err) {
        violate(`${m.id} cannot restart from what it stored: ${(err as Error).message}`);
        return;
      }
      checker.attach(g);
      g.faults = buggify;
      m.group = g;
    };
    const newGroup = (m: Member, incarnation: number, alive: () => boolean): RaftGroup =>
      new RaftGroup({
        group: "raft",
        nodeId: m.id,
        store: {
          state: () => m.storage.state(),
          save: async (ready) => {
            await clock.sleep(net.int(0, 3));
            // A fault point: the power fails with this save under way (a leader's appends for it
            // may have left already).
            if (
              alive() && stats.saveCrashes < SAVE_CRASHES_MAX &&
              live().length > opts.nodes - downMax && buggify.fires("raft.save.crash")
            ) {
              stats.saveCrashes++;
              crashAndRestart(m);
            }
            // A crash while the write was under way: it never reached the disk.
            if (!alive()) throw new Error(`${m.id} crashed before the save completed`);
            m.storage.save(ready);
          },
          compact: async (snapshot) => {
            await clock.sleep(net.int(0, 3));
            if (!alive()) throw new Error(`${m.id} crashed before the compaction completed`);
            m.storage.compact(snapshot);
          },
        },
        machine: {
          apply: (e) => {
            m.applied.set(e.index, dec.decode(e.data));
            return e.index;
          },
          // The image is every applied value by index, so a snapshot carries what it replaces.
          image: () => enc.encode(JSON.stringify([...m.applied])),
          restore: (snapshot) => {
            stats.snapshotRestores++;
            const image = dec.decode(snapshot.data);
            m.applied = new Map(image === "" ? [] : JSON.parse(image));
          },
        },
        ...(opts.compactEvery > 0 ? { compactEvery: opts.compactEvery } : {}),
        onCompacted: () => stats.compactions++,
        send: (to, bytes) => deliver(m.id, to, bytes),
        clock,
        random: new SeededRandom(opts.seed, `raft-node-${m.id}-${incarnation}`),
        tickMs: opts.tickMs,
        electionTimeoutMs: opts.electionTimeoutMs,
        heartbeatIntervalMs: opts.heartbeatIntervalMs,
        flow: { appendEntriesMax: opts.appendEntriesMax, inflightMax: opts.inflightMax },
        ...(opts.plantedBugs === undefined ? {} : { plantedBugs: opts.plantedBugs }),
        onFatal: (reason) => {
          if (alive()) violate(`${m.id} stopped: ${reason}`);
        },
      });
    const deliver = (from: string, to: string, bytes: Uint8Array) => {
      if (faultsOn && net.chance(opts.dropProb)) {
        stats.messagesDropped++;
        return;
      }
      const copies = faultsOn && net.chance(opts.duplicateProb) ? 2 : 1;
      if (copies === 2) stats.messagesDuplicated++;
      for (let c = 0; c < copies; c++) {
        void clock.sleep(net.int(1, opts.latencyMs + 1)).then(() => {
          if (cut.has(`${from}>${to}`)) return;
          members.get(to)?.group?.receive(bytes);
        });
      }
    };
    const crash = (m: Member) => {
      if (m.group === null) return;
      stats.crashes++;
      m.incarnation++;
      void m.group.stop();
      m.group = null;
    };
    const crashAndRestart = (victim: Member) => {
      crash(victim);
      void clock.sleep(r.int(1, 2 * et)).then(() => {
        if (victim.group === null) start(victim);
      });
    };
    const live = () => [...members.values()].filter((m) => m.group !== null);
    const leader = () => live().find((m) => m.group!.isLeader) ?? null;
    const isolate = (id: string, keep: string | null) => {
      for (const other of ids) {
        if (other === id || other === keep) continue;
        cut.add(`${id}>${other}`);
        cut.add(`${other}>${id}`);
      }
    };
    for (const m of members.values()) start(m);

    // The workload: proposals to whichever node leads, a few in flight.
    let inflight = 0;
    const propose = (m: Member, value: string) => {
      stats.proposed++;
      inflight++;
      m.group!.propose(enc.encode(value)).then(
        (index) => {
          stats.acked++;
          acked.set(value, index as number);
        },
        () => {},
      ).finally(() => inflight--);
    };
    const workload = async () => {
      for (let i = 0; faultsOn; i++) {
        await clock.sleep(r.int(3, 30));
        const m = leader();
        if (m !== null && inflight < PROPOSALS_INFLIGHT_MAX) propose(m, `v${i}`);
      }
    };
    void workload();

    // The nemesis, aimed at leaders.
    const nemesis = async () => {
      while (faultsOn) {
        await clock.sleep(r.int(et / 2, 3 * et));
        if (!faultsOn) return;
        const roll = r.float();
        const m = leader();
        if (roll < 0.4 && m !== null) {
          // Cut off right after appending: at most one follower may get the new entries.
          stats.leaderIsolations++;
          for (let k = r.int(1, 4); k > 0; k--) propose(m, `iso${stats.leaderIsolations}.${k}`);
          const keep = r.chance(0.5) ? r.pick(ids.filter((id) => id !== m.id)) : null;
          await clock.sleep(r.int(0, opts.latencyMs + 2));
          isolate(m.id, keep);
          await clock.sleep(r.int(et, 4 * et));
          cut.clear();
        } else if (roll < 0.65 && m !== null) {
          // Heal just after the others could have elected a newer leader, before this one's
          // check-quorum deposed it: it hears of the newer term from the followers' answers.
          stats.quickHeals++;
          isolate(m.id, null);
          await clock.sleep(r.int(Math.floor(1.2 * et), 2 * et));
          cut.clear();
        } else if (roll < 0.85) {
          const up = live();
          const down = opts.nodes - up.length;
          if (down < downMax && up.length > 0) {
            crashAndRestart(r.pick(up));
          }
        } else {
          cut.clear();
        }
      }
    };
    void nemesis();

    // Polling the checker, and the two phases.
    const poll = async () => {
      while (!done) {
        checker.poll(live().map((m) => m.group!));
        await clock.sleep(r.int(3, 12));
      }
    };
    void poll();
    await clock.sleep(opts.safetyMs);
    faultsOn = false;
    buggify.calm();
    cut.clear();
    for (const m of members.values()) if (m.group === null) start(m);
    const converged = () => {
      const gs = live().map((m) => m.group!);
      const lead = gs.find((g) => g.isLeader);
      if (lead === undefined || inflight > 0) return false;
      const last = lead.node.lastIndex;
      return gs.every((g) => g.node.commitIndex === last && g.node.appliedIndex === last);
    };
    const until = clock.now() + opts.livenessMs;
    while (!converged() && clock.now() < until) await clock.sleep(10);
    done = true;
    checker.poll(live().map((m) => m.group!));
    if (!converged()) {
      violate(`liveness: within ${opts.livenessMs} ms of healing the group did not converge`);
      return;
    }
    for (const m of live()) {
      for (const [value, index] of acked) {
        const got = m.applied.get(index);
        if (got !== value) {
          violate(
            `${value} was acknowledged at index ${index}, but ${m.id} applied ` +
              `${got === undefined ? "nothing" : `"${got}"`} there`,
          );
        }
      }
    }
    for (const m of live()) await m.group!.stop();
  }, { untilMs: opts.safetyMs + opts.livenessMs + 60_000 });
  violations.unshift(...checker.violations);
  return runResult(sim, {
    scenario: "raft",
    seed: opts.seed,
    options: opts,
    plan: calmPlan(),
    violations: [...new Set(violations)].slice(0, VIOLATIONS_MAX),
    stats: { ...stats, ...checker.stats, ...buggify.stats() },
  });
}
