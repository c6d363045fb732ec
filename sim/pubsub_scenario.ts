// The broker under network faults: one broker, one publisher, several subscribers, all using the
// real broker and client code on the simulated network. The checker demands that every
// acknowledged publish reaches every subscriber, that each subscriber sees offsets in order with
// no gap, and that nothing is delivered that was not published. Some subscribers resume by a
// durable name: the broker must resume them between what they saved and what they acknowledged.

import { SeededRandom } from "../src/io/prng.ts";
import type { Env } from "../src/io/types.ts";
import { connectWith } from "../src/client/client.ts";
import type { Client } from "../src/client/client.ts";
import { ErrorCode, GregorError } from "../src/protocol/errors.ts";
import { startNode } from "../src/node.ts";
import { brokerHooks, brokerSimulation, calm, firstLine, Nemesis } from "./faults.ts";
import { type RunResult, runResult } from "./result.ts";
import { DurableResumeChecker, OFFSETS_FILE, savedOffset } from "./durable_checker.ts";
import type { Simulation } from "./simulation.ts";

/** Everything that decides a pub/sub run. */
export interface PubSubOptions {
  seed: number;
  subscribers: number;
  messages: number;
  /** Publishes the publisher keeps in flight at most. */
  inFlight: number;
  /** Virtual time of the safety phase (faults on), ms. */
  safetyMs: number;
  /** Virtual time the healed system gets to deliver everything, ms. */
  livenessMs: number;
  faults: "swarm" | "calm";
  /** The broker's segment size: small, so segments roll and recovery crosses them. */
  segmentBytes: number;
  /** Subscribers (the first ones) that resume by a durable name rather than from their own count. */
  durableSubscribers: number;
}

const PORT = 7070;
const TOPIC = "events";

/** Derives the options for `seed`, then applies `overrides`. */
export function pubsubOptions(seed: number, overrides: Partial<PubSubOptions> = {}): PubSubOptions {
  const r = new SeededRandom(seed, "pubsub-options");
  return {
    seed,
    subscribers: r.int(1, 5),
    messages: r.int(50, 400),
    inFlight: r.int(1, 50),
    safetyMs: r.int(1_000, 6_000),
    livenessMs: 60_000,
    faults: "swarm",
    segmentBytes: r.int(2_000, 64_000),
    durableSubscribers: r.int(0, 3),
    ...overrides,
  };
}

interface Delivery {
  offset: number;
  value: string;
}

/** Runs the pub/sub scenario and checks it. */
export async function runPubSub(opts: PubSubOptions): Promise<RunResult> {
  const { sim, plan } = brokerSimulation(opts.seed, "pubsub-faults", opts.faults, 1);

  // The broker keeps its topic on disk with fsync "always": it may crash (power or process), lose
  // unsynced writes, fail fsyncs and read flipped bits, and must still keep every acknowledgement.
  const broker = sim.addNode({
    name: "broker",
    main: async (env, ctl) => {
      const node = await startNode(env, {
        host: "0.0.0.0",
        port: PORT,
        broker: { dataDir: "data", segmentBytes: opts.segmentBytes },
        hooks: brokerHooks(
          ctl,
          (msg) => reports.push({ t: sim.world.now, msg }),
          (msg) => internalErrors.push(firstLine(msg)),
        ),
      });
      await node.done;
    },
  });
  const reports: { t: number; msg: string }[] = [];
  /** Requests the broker answered INTERNAL: each one a bug (or an unmapped failure). */
  const internalErrors: string[] = [];

  const published = new Map<string, number | null>(); // value -> acked offset, or null if unknown
  const acked: number[] = [];
  /** Acknowledged with offset -1 (stored long before, offset unknown): stored all the same. */
  const ackedDuplicates = new Set<string>();
  let publisherDone = false;
  sim.addNode({
    name: "publisher",
    main: async (env) => {
      await publish(env, sim, opts, published, acked, ackedDuplicates);
      publisherDone = true;
    },
  });

  const deliveries: Delivery[][] = [];
  const corrupt: string[] = [];
  const resumes = new DurableResumeChecker(() => broker.crashes, (key) => {
    const bytes = broker.disk.durableBytes(`data/${OFFSETS_FILE}`);
    return bytes === null ? -1 : savedOffset(bytes, key);
  });
  for (let i = 0; i < opts.subscribers; i++) {
    const got: Delivery[] = [];
    deliveries.push(got);
    const name = `subscriber-${i}`;
    sim.addNode({
      name,
      main: (env) =>
        subscribe(env, sim, name, got, corrupt, {
          durable: i < opts.durableSubscribers ? resumes : null,
        }),
    });
  }

  // Crashes and pauses hit the broker; partitions, resets and latency hit every link.
  const nemesis = new Nemesis(sim, plan, [broker]);
  nemesis.start();
  await sim.world.run({ untilMs: opts.safetyMs });
  calm(sim, nemesis);
  const everyoneHasAll = () =>
    publisherDone &&
    deliveries.every((got) => {
      const seen = new Set(got.map((d) => d.offset));
      return acked.every((o) => seen.has(o));
    });
  const stop = await sim.world.run({
    untilMs: sim.world.now + opts.livenessMs,
    stop: everyoneHasAll,
  });

  const violations: string[] = [];
  if (!everyoneHasAll()) {
    violations.push(
      stop === "idle"
        ? "deadlock: no event left while subscribers still wait"
        : `liveness: within ${opts.livenessMs} ms of healing, ${
          publisherDone
            ? "not every subscriber received every acknowledged publish"
            : "the publisher did not finish"
        }`,
    );
  }
  // After everything was delivered: the broker loses power, restarts, and a fresh subscriber
  // reads the whole topic from the start. Every acknowledged publish must be there, once, at its
  // acknowledged offset.
  const verified: Delivery[] = [];
  if (violations.length === 0) {
    sim.crash(broker, "power", 10);
    const ackedCount = acked.length;
    const enough = () =>
      new Set(verified.map((d) => d.offset)).size >=
        (ackedCount === 0 ? 0 : Math.max(...acked) + 1);
    sim.addNode({
      name: "verifier",
      main: (env) => subscribe(env, sim, "verifier", verified, corrupt, { until: enough }),
    });
    await sim.world.run({ untilMs: sim.world.now + opts.livenessMs, stop: enough });
    if (!enough()) {
      violations.push(
        "after a final power loss and restart, the verifier could not read every acknowledged publish",
      );
    }
    violations.push(...checkOnce(published, verified));
    const stored = new Set([...deliveries, verified].flat().map((d) => d.value));
    for (const v of ackedDuplicates) {
      if (!stored.has(v)) violations.push(`${v} was acknowledged (offset -1) but is not stored`);
    }
  }
  violations.push(...corrupt.slice(0, 10));
  violations.push(...resumes.violations.slice(0, 10));
  violations.push(...internalErrors.slice(0, 10));
  violations.push(...checkDeliveries(published, [...deliveries, verified]));
  return runResult(sim, {
    scenario: "pubsub",
    seed: opts.seed,
    options: opts,
    plan,
    violations,
    stats: {
      publishes: published.size,
      publishesAcked: acked.length,
      publishesUnknown: [...published.values()].filter((o) => o === null).length,
      deliveries: deliveries.reduce((n, d) => n + d.length, 0),
      redeliveries: deliveries.reduce(
        (n, d) => n + (d.length - new Set(d.map((x) => x.offset)).size),
        0,
      ),
      ...nemesis.stats,
      netResets: sim.net.stats.resets,
      netHeldSegments: sim.net.stats.heldSegments,
      brokerCrashes: broker.crashes,
      brokerFatalExits: sim.exits.filter((e) =>
        e.node === "broker" && e.reason !== "exited"
      ).length,
      crashesMidWrite: broker.disk.stats.crashesWithPending,
      writesTorn: broker.disk.stats.writesTorn,
      writesCorrupted: broker.disk.stats.writesCorrupted,
      syncFailures: broker.disk.stats.syncFailures,
      readFlips: broker.disk.stats.readFlips,
      storageReports: reports.length,
      verifiedOffsets: new Set(verified.map((d) => d.offset)).size,
      durableResumesAfterCrash: resumes.resumedAfterCrash,
    },
    notes: [
      ...sim.exits.map((e) => ({
        t: e.timeMs,
        s: `${e.timeMs.toFixed(1)} ms: ${e.node} ${e.reason}`,
      })),
      ...nemesis.log.map((s) => ({ t: Number(s.split(" ")[0]), s })),
      ...reports.map((r) => ({ t: r.t, s: `${r.t.toFixed(1)} ms: report: ${r.msg}` })),
    ].sort((a, b) => a.t - b.t).map((n) => n.s),
  });
}

/**
 * A client of the broker node (host "broker"), connecting again and again until the broker
 * answers: short timeouts, so a crashed or cut-off broker is noticed within the scenario's time.
 */
export async function connectRetrying(env: Env, clientId = "gregormq-ts"): Promise<Client> {
  for (;;) {
    try {
      return await connectWith(env, {
        host: "broker",
        port: PORT,
        clientId,
        requestTimeoutMs: 2_000,
        connectTimeoutMs: 5_000,
      });
    } catch {
      await env.clock.sleep(100 + env.random.float() * 400);
    }
  }
}

async function publish(
  env: Env,
  sim: Simulation,
  opts: PubSubOptions,
  published: Map<string, number | null>,
  acked: number[],
  ackedDuplicates: Set<string>,
): Promise<void> {
  const client = await connectRetrying(env);
  const producer = client.producer({ lingerMs: env.random.float() * 5 });
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < opts.messages; i++) {
    const value = `m${i}#${env.random.u32()}`;
    published.set(value, null);
    sim.history.add("publisher", "invoke", "publish", { value });
    const p: Promise<void> = producer.send(TOPIC, { value }).then(
      (offset) => {
        // -1: stored (an idempotent retry of a batch stored long before), offset unknown.
        if (offset < 0) {
          sim.history.add("publisher", "info", "publish", { value, offset });
          ackedDuplicates.add(value);
          return;
        }
        published.set(value, offset);
        acked.push(offset);
        sim.history.add("publisher", "ok", "publish", { value, offset });
      },
      (err) => void sim.history.add("publisher", "info", "publish", { value, error: String(err) }),
    ).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= opts.inFlight) await Promise.race(inFlight);
    // Spread the publishes over the safety phase, so faults land while messages flow.
    await env.clock.sleep(env.random.float() * 2 * opts.safetyMs / opts.messages);
  }
  await Promise.allSettled([...inFlight]);
  await client.close();
}

/** How a subscriber runs: until when, and whether it resumes by a durable name. */
interface SubscribeOptions {
  until?: () => boolean;
  durable?: DurableResumeChecker | null;
}

/**
 * Subscribes from the start and keeps going through reconnects; records every delivery. A plain
 * subscriber asks for the offset after the last one it got; a durable one lets the broker resume
 * it from its acknowledged offset, which the checker holds to what was acknowledged and saved.
 */
async function subscribe(
  env: Env,
  sim: Simulation,
  name: string,
  got: Delivery[],
  corrupt: string[],
  opts: SubscribeOptions = {},
): Promise<void> {
  const until = opts.until ?? (() => false);
  const durable = opts.durable ?? null;
  let next = 0;
  while (!until()) {
    const client = await connectRetrying(env);
    try {
      const key = `${TOPIC}\u0000${0}\u0000${name}`;
      const saved = durable?.saved(key) ?? -1;
      const sub = await client.subscribe(TOPIC, {
        from: { offset: next },
        ackTimeoutMs: 1_000,
        ...(durable === null ? {} : { durable: name }),
      });
      if (durable !== null) {
        durable.resumed(name, sub.startOffset, next, saved);
        sim.history.add(name, "ok", "resume", { offset: sub.startOffset, next, saved });
      }
      for await (const m of sub) {
        got.push({ offset: m.offset, value: m.text() });
        sim.history.add(name, "ok", "deliver", { offset: m.offset });
        m.ack();
        next = Math.max(next, m.offset + 1);
        if (until()) break;
      }
    } catch (err) {
      // The client checks every batch's checksum: a corrupt batch means the broker served one.
      if (err instanceof GregorError && err.code === ErrorCode.CORRUPT_BATCH) {
        corrupt.push(`${name} was served a corrupt batch: ${err.message}`);
      }
      // Otherwise the connection gave up (a long partition), or the broker still holds the
      // durable name for a connection it has not yet seen go: start again where we got to.
    }
    await client.close();
    await env.clock.sleep(100);
  }
}

/** Each acknowledged publish appears at exactly one offset: its own. */
export function checkOnce(
  published: ReadonlyMap<string, number | null>,
  got: readonly Delivery[],
): string[] {
  const offsetsOf = new Map<string, Set<number>>();
  for (const d of got) {
    let set = offsetsOf.get(d.value);
    if (set === undefined) offsetsOf.set(d.value, set = new Set());
    set.add(d.offset);
  }
  const violations: string[] = [];
  for (const [value, offset] of published) {
    const at = offsetsOf.get(value);
    if (at !== undefined && at.size > 1) {
      violations.push(`${value} is stored ${at.size} times, at offsets ${[...at].join(", ")}`);
    }
    if (offset !== null && (at === undefined || !at.has(offset))) {
      violations.push(
        `${value} was acknowledged at offset ${offset} but is not there after a restart`,
      );
    }
  }
  return violations.slice(0, 20);
}

/** The delivery invariants; see the file comment. */
export function checkDeliveries(
  published: ReadonlyMap<string, number | null>,
  deliveries: readonly Delivery[][],
): string[] {
  const violations: string[] = [];
  const valueAt = new Map<number, string>();
  deliveries.forEach((got, i) => {
    let max = -1;
    for (const d of got) {
      if (!published.has(d.value)) {
        violations.push(
          `subscriber-${i} got ${
            JSON.stringify(d.value)
          } at offset ${d.offset}, which nobody published`,
        );
      }
      const ackedAt = published.get(d.value);
      if (ackedAt !== undefined && ackedAt !== null && ackedAt !== d.offset) {
        violations.push(
          `subscriber-${i} got ${d.value} at offset ${d.offset}, acknowledged at ${ackedAt}`,
        );
      }
      const known = valueAt.get(d.offset);
      if (known === undefined) valueAt.set(d.offset, d.value);
      else if (known !== d.value) {
        violations.push(`offset ${d.offset} carried both ${known} and ${d.value}`);
      }
      if (d.offset > max) {
        if (d.offset !== max + 1) {
          violations.push(`subscriber-${i} jumped from offset ${max} to ${d.offset} (a gap)`);
        }
        max = d.offset;
      }
    }
  });
  return violations.slice(0, 50);
}
