// Consumer groups under faults: one broker (a disk topic with several partitions, fsync always),
// an idempotent producer, and group members that join, leave, crash, restart (some as static
// members), pause and get cut off, while an auditor keeps reading the group's committed offsets.
// All of it is the real broker and client code on the simulated network and disks.
//
// The checkers (DESIGN.md §9, invariants 4 and 7, plus delivery):
// - the coordinator never grants a partition while another member owns it, so each partition has
//   at most one owner per generation;
// - every commit the broker accepts comes from the partition's owner in the current generation
//   (stale generations and zombies are refused);
// - committed offsets, as readers see them, never decrease, across broker crashes too;
// - every acknowledged message is processed by some member (at least once), and everything
//   below a final committed offset was processed;
// - each produced message is stored once, at its acknowledged offset, despite retries.

import { SeededRandom } from "../src/io/prng.ts";
import type { Env } from "../src/io/types.ts";
import type { GroupConsumer } from "../src/client/group_consumer.ts";
import type { ReceivedMessage } from "../src/client/consumer.ts";
import type { OffsetCommitRequest } from "../src/protocol/messages.ts";
import { ErrorCode, GregorError } from "../src/protocol/errors.ts";
import { startNode } from "../src/node.ts";
import { brokerHooks, brokerSimulation, calm, Nemesis } from "./faults.ts";
import { type RunResult, runResult } from "./result.ts";
import type { Simulation } from "./simulation.ts";
import { connectRetrying } from "./pubsub_scenario.ts";
import type { SimNode } from "./node.ts";

/** Everything that decides a group run. */
export interface GroupOptions {
  seed: number;
  members: number;
  /** How many of the members use a static instance id. */
  staticMembers: number;
  partitions: number;
  messages: number;
  sessionTimeoutMs: number;
  safetyMs: number;
  livenessMs: number;
  faults: "swarm" | "calm";
  /** 1: the broker's commit fence is removed (a planted bug the checkers must catch). */
  bugNoFence: number;
}

const PORT = 7070;
const TOPIC = "work";
const GROUP = "workers";

/** Derives the options for `seed`, then applies `overrides`. */
export function groupOptions(seed: number, overrides: Partial<GroupOptions> = {}): GroupOptions {
  const r = new SeededRandom(seed, "group-options");
  const members = r.int(2, 5);
  return {
    seed,
    members,
    staticMembers: r.int(0, members + 1),
    partitions: r.int(1, 7),
    messages: r.int(60, 300),
    sessionTimeoutMs: r.int(1_000, 4_000),
    safetyMs: r.int(2_000, 8_000),
    livenessMs: 60_000,
    faults: "swarm",
    bugNoFence: 0,
    ...overrides,
  };
}

interface Processed {
  member: string;
  partition: number;
  offset: number;
  value: string;
}

/** The coordinator as the checker mirrors it, for one broker incarnation. */
interface Mirror {
  generation: number;
  owner: Map<number, string>;
  /** Partition → generation → members granted it then. */
  grants: Map<string, Set<string>>;
}

/** Runs the group scenario and checks it. */
export async function runGroups(opts: GroupOptions): Promise<RunResult> {
  const { sim, plan } = brokerSimulation(opts.seed, "group-faults", opts.faults, 2);
  const violations: string[] = [];
  const stats = {
    generations: 0,
    grants: 0,
    revocations: 0,
    expiries: 0,
    fencedStatic: 0,
    leaves: 0,
    commitsAccepted: 0,
    commitsRejectedStale: 0,
    commitsRejectedUnknown: 0,
    memberRejoins: 0,
    auditorReads: 0,
  };
  let brokerIncarnation = 0;
  const reports: string[] = [];

  const broker = sim.addNode({
    name: "broker",
    main: async (env, ctl) => {
      const node = await startNode(env, {
        host: "0.0.0.0",
        port: PORT,
        broker: { dataDir: "data", segmentBytes: 16_000, groupsTickMs: 100 },
        hooks: brokerHooks(ctl, (msg) => void reports.push(msg)),
      });
      brokerIncarnation++;
      const m: Mirror = { generation: 0, owner: new Map(), grants: new Map() };
      const inc = brokerIncarnation;
      const groups = node.broker.groups;
      groups.coordinator.events = {
        newGeneration(_g, generation) {
          stats.generations++;
          m.generation = generation;
        },
        granted(_g, generation, memberId, tp) {
          stats.grants++;
          const holder = m.owner.get(tp.partition);
          if (holder !== undefined && holder !== memberId) {
            violations.push(
              `broker#${inc} granted partition ${tp.partition} to ${memberId} in generation ` +
                `${generation} while ${holder} owned it`,
            );
          }
          m.owner.set(tp.partition, memberId);
          const key = `${tp.partition}@${generation}`;
          const set = m.grants.get(key) ?? new Set<string>();
          set.add(memberId);
          m.grants.set(key, set);
          if (set.size > 1) {
            violations.push(
              `broker#${inc}: partition ${tp.partition} had owners ${[...set].join(", ")} in ` +
                `generation ${generation}`,
            );
          }
        },
        released(_g, _generation, memberId, tp, reason) {
          if (reason === "revoked") stats.revocations++;
          if (reason === "expired") stats.expiries++;
          if (reason === "fenced") stats.fencedStatic++;
          if (reason === "left") stats.leaves++;
          if (m.owner.get(tp.partition) === memberId) m.owner.delete(tp.partition);
        },
      };
      groups.onCommit = (req: OffsetCommitRequest) => {
        stats.commitsAccepted++;
        for (const o of req.offsets) {
          const owner = m.owner.get(o.partition);
          // A member may not have heard of the newest generation yet; it must own the partition.
          if (req.generation > m.generation || owner !== req.memberId) {
            violations.push(
              `broker#${inc} accepted a commit of partition ${o.partition} from ${req.memberId} ` +
                `at generation ${req.generation}; the group is at ${m.generation} and ` +
                `${owner ?? "nobody"} owns the partition`,
            );
          }
        }
      };
      groups.onCommitRefused = (_req, err) => {
        if (err instanceof GregorError && err.code === ErrorCode.STALE_GENERATION) {
          stats.commitsRejectedStale++;
        } else stats.commitsRejectedUnknown++;
      };
      if (opts.bugNoFence === 1) groups.coordinator.checkOwner = () => {};
      await node.done;
    },
  });

  // The producer: messages spread over the partitions, acknowledged offsets recorded.
  const acked = new Map<string, { partition: number; offset: number }>();
  const sent = new Set<string>();
  let producerDone = false;
  sim.addNode({
    name: "producer",
    main: async (env) => {
      // Healing restarts every node that is down, a finished one too: it has nothing to redo.
      if (producerDone) return;
      await produce(env, sim, opts, sent, acked);
      producerDone = true;
    },
  });

  // Members: each records what it processed, across its incarnations.
  const processed: Processed[] = [];
  const members: SimNode[] = [];
  for (let i = 0; i < opts.members; i++) {
    const name = `member-${i}`;
    members.push(sim.addNode({
      name,
      main: (env) =>
        member(env, sim, name, i < opts.staticMembers, opts, processed, () => {
          stats.memberRejoins++;
        }),
    }));
  }

  // The auditor: committed offsets, as any reader sees them, must never go back.
  const seenCommitted = new Map<number, number>();
  sim.addNode({
    name: "auditor",
    main: (env) => audit(env, sim, seenCommitted, violations, () => void stats.auditorReads++),
  });

  const nemesis = new Nemesis(sim, plan, [broker, ...members]);
  nemesis.start();
  await sim.world.run({ untilMs: opts.safetyMs });
  calm(sim, nemesis);
  const allProcessed = () => {
    if (!producerDone) return false;
    const seen = new Set(processed.map((p) => `${p.partition}:${p.offset}`));
    for (const a of acked.values()) if (!seen.has(`${a.partition}:${a.offset}`)) return false;
    return true;
  };
  const stop = await sim.world.run({
    untilMs: sim.world.now + opts.livenessMs,
    stop: allProcessed,
  });
  if (!allProcessed()) {
    violations.push(
      stop === "idle"
        ? "deadlock: no event left while acknowledged messages wait to be processed"
        : `liveness: within ${opts.livenessMs} ms of healing, ${
          producerDone
            ? "not every acknowledged message was processed by a member"
            : "the producer did not finish"
        }`,
    );
  }
  // Let auto-commits land, then read everything back from a fresh broker incarnation.
  await sim.world.run({ untilMs: sim.world.now + 3_000 });
  const final = violations.length === 0
    ? await verify(sim, broker, opts, acked, sent, processed, violations)
    : null;

  return runResult(sim, {
    scenario: "groups",
    seed: opts.seed,
    options: opts,
    plan,
    violations: violations.slice(0, 30),
    stats: {
      ...stats,
      sent: sent.size,
      acked: acked.size,
      processed: processed.length,
      reprocessed: processed.length -
        new Set(processed.map((p) => `${p.partition}:${p.offset}`)).size,
      brokerCrashes: broker.crashes,
      memberCrashes: members.reduce((n, m) => n + m.crashes, 0),
      verifiedMessages: final ?? 0,
      ...nemesis.stats,
      netResets: sim.net.stats.resets,
    },
    notes: [
      ...sim.exits.map((e) => `${e.timeMs.toFixed(1)} ms: ${e.node} ${e.reason}`),
      ...nemesis.log,
      ...reports.slice(0, 50).map((r) => `report: ${r}`),
    ],
  });
}

async function produce(
  env: Env,
  sim: Simulation,
  opts: GroupOptions,
  sent: Set<string>,
  acked: Map<string, { partition: number; offset: number }>,
): Promise<void> {
  const client = await connectRetrying(env, "producer");
  for (;;) {
    try {
      await client.admin.createTopic(TOPIC, {
        partitions: opts.partitions,
        configs: { persistence: "disk", fsync: "always" },
      });
      break;
    } catch (err) {
      if (err instanceof GregorError && err.code === ErrorCode.TOPIC_EXISTS) break;
      await env.clock.sleep(200);
    }
  }
  const producer = client.producer({ lingerMs: env.random.float() * 5 });
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < opts.messages; i++) {
    const value = `m${i}`;
    const partition = env.random.int(0, opts.partitions);
    sent.add(value);
    sim.history.add("producer", "invoke", "send", { value, partition });
    const p: Promise<void> = producer.send(TOPIC, { value, partition }).then(
      (offset) => {
        // -1: stored (an idempotent retry of a batch stored long before), offset unknown.
        if (offset < 0) return;
        acked.set(value, { partition, offset });
        sim.history.add("producer", "ok", "send", { value, partition, offset });
      },
      (err) => void sim.history.add("producer", "info", "send", { value, error: String(err) }),
    ).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= 20) await Promise.race(inFlight);
    await env.clock.sleep(env.random.float() * 2 * opts.safetyMs / opts.messages);
  }
  await Promise.allSettled([...inFlight]);
  await client.close();
}

/** Resolves the next message, or null if none comes within `ms`. */
async function nextWithin(env: Env, g: GroupConsumer, ms: number) {
  const timer = new AbortController();
  const timeout = env.clock.sleep(ms, timer.signal).then(() => null, () => null);
  const m: ReceivedMessage | null = await Promise.race([g.next(), timeout]);
  timer.abort();
  return m;
}

/** A member's life: join, process for a while, sometimes leave and come back; repeat. */
async function member(
  env: Env,
  sim: Simulation,
  name: string,
  isStatic: boolean,
  opts: GroupOptions,
  processed: Processed[],
  onRejoin: () => void,
): Promise<void> {
  for (let round = 0;; round++) {
    if (round > 0) onRejoin();
    const client = await connectRetrying(env, name);
    let g: GroupConsumer | null = null;
    try {
      g = await client.groupConsumer(GROUP, [TOPIC], {
        instanceId: isStatic ? name : "",
        sessionTimeoutMs: opts.sessionTimeoutMs,
        reset: "earliest",
        autoCommitIntervalMs: 100 + env.random.int(0, 900),
        assignor: (["sticky", "range", "roundrobin"] as const)[env.random.int(0, 3)],
      });
      // Stay for a while (long enough to finish once faults stop), then maybe leave.
      const stayMs = (env.random.float() < 0.5) ? 1e12 : env.random.int(300, 3_000);
      const leaveAt = env.clock.now() + stayMs;
      while (env.clock.now() < leaveAt) {
        const m = await nextWithin(env, g, 200);
        if (m === null) continue;
        processed.push({ member: name, partition: m.partition, offset: m.offset, value: m.text() });
        sim.history.add(name, "ok", "process", { partition: m.partition, offset: m.offset });
        if ((env.random.float() < 0.01)) await g.commit().catch(() => {});
      }
      await g.close();
    } catch {
      await g?.close().catch(() => {});
    }
    await client.close();
    await env.clock.sleep(env.random.int(50, 1_000));
  }
}

/** Reads the committed offsets again and again; none may ever be lower than seen before. */
async function audit(
  env: Env,
  sim: Simulation,
  seen: Map<number, number>,
  violations: string[],
  onRead: () => void,
): Promise<void> {
  const client = await connectRetrying(env, "auditor");
  for (;;) {
    try {
      const offsets = await client.admin.groupOffsets(GROUP);
      onRead();
      for (const o of offsets) {
        const before = seen.get(o.partition) ?? -1;
        if (o.offset < before) {
          violations.push(
            `committed offset of partition ${o.partition} went back from ${before} to ${o.offset}`,
          );
        }
        seen.set(o.partition, Math.max(before, o.offset));
        sim.history.add("auditor", "ok", "committed", { partition: o.partition, offset: o.offset });
      }
    } catch {
      // The broker is down or cut off: try again.
    }
    await env.clock.sleep(50 + env.random.int(0, 200));
  }
}

/**
 * After a final power loss of the broker: every acknowledged message is stored once at its offset
 * and nothing twice; every message below a committed offset was processed. Returns the number of
 * messages read back.
 */
async function verify(
  sim: Simulation,
  broker: SimNode,
  opts: GroupOptions,
  acked: Map<string, { partition: number; offset: number }>,
  sent: Set<string>,
  processed: Processed[],
  violations: string[],
): Promise<number> {
  sim.crash(broker, "power", 10);
  const stored: { partition: number; offset: number; value: string }[] = [];
  const offsets = new Map<number, number>();
  let done = false;
  sim.addNode({
    name: "verifier",
    main: async (env) => {
      const client = await connectRetrying(env, "verifier");
      for (const o of await client.admin.groupOffsets(GROUP)) offsets.set(o.partition, o.offset);
      for (let p = 0; p < opts.partitions; p++) {
        const end = (await client.admin.describeTopic(TOPIC)).partitions[p]!.highWatermark;
        if (end === 0) continue;
        const sub = await client.subscribe(TOPIC, { partition: p, from: "earliest" });
        for await (const m of sub) {
          stored.push({ partition: p, offset: m.offset, value: m.text() });
          m.ack();
          if (m.offset + 1 >= end) break;
        }
        await sub.close();
      }
      await client.close();
      done = true;
    },
  });
  await sim.world.run({ untilMs: sim.world.now + 30_000, stop: () => done });
  if (!done) {
    violations.push("the verifier could not read the topic back after a final restart");
    return 0;
  }
  const where = new Map<string, string[]>();
  for (const s of stored) {
    if (!sent.has(s.value)) violations.push(`${s.value} is stored but was never sent`);
    const list = where.get(s.value) ?? [];
    list.push(`${s.partition}:${s.offset}`);
    where.set(s.value, list);
  }
  for (const [value, list] of where) {
    if (list.length > 1) {
      violations.push(`${value} is stored ${list.length} times: ${list.join(" ")}`);
    }
  }
  for (const [value, a] of acked) {
    if (!(where.get(value) ?? []).includes(`${a.partition}:${a.offset}`)) {
      const there = stored.find((x) => x.partition === a.partition && x.offset === a.offset);
      violations.push(
        `${value} was acknowledged at ${a.partition}:${a.offset} but is not there (found ` +
          `${there?.value ?? "nothing"} there; ${value} is at ${
            where.get(value)?.join(" ") ?? "no offset"
          })`,
      );
    }
  }
  // Committing an offset says everything before it was processed.
  const done2 = new Set(processed.map((p) => `${p.partition}:${p.offset}`));
  for (const [partition, offset] of offsets) {
    for (const s of stored) {
      if (
        s.partition === partition && s.offset < offset && !done2.has(`${partition}:${s.offset}`)
      ) {
        violations.push(
          `partition ${partition} has offset ${offset} committed, but ${s.offset} was never processed`,
        );
        break;
      }
    }
  }
  return stored.length;
}
