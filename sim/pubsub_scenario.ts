// The broker under network faults: one broker, one publisher, several subscribers, all using the
// real broker and client code on the simulated network. The checker demands that every
// acknowledged publish reaches every subscriber, that each subscriber sees offsets in order with
// no gap, and that nothing is delivered that was not published. Some subscribers resume by a
// durable name: the broker must resume them between what they saved and what they acknowledged.

import { SeededRandom } from "../src/io/prng.ts";
import type { Env } from "../src/io/types.ts";
import { connectWith } from "../src/client/client.ts";
import type { Client } from "../src/client/client.ts";
import type { ConnectionState } from "../src/client/connection.ts";
import { ErrorCode, GregorError } from "../src/protocol/errors.ts";
import { startNode } from "../src/node.ts";
import type { Broker } from "../src/broker/broker.ts";
import { BATCH_HEADER_BYTES, readBatchHeader } from "../src/protocol/batch.ts";
import type { SimNode } from "./node.ts";
import { brokerHooks, brokerSimulation, calm, firstLine, Nemesis } from "./faults.ts";
import { type RunResult, runResult } from "./result.ts";
import { partitionDir, segmentFile, subscriptionsFile } from "../src/storage/layout.ts";
import { DurableResumeChecker, savedOffset } from "./durable_checker.ts";
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
  /**
   * After the final check: a second topic is written, and a byte of one of its sealed segments
   * flipped at rest while the broker is down. It must start, serve the first topic whole and the
   * damaged partition up to the damage, refuse appends there, and take them after a repair.
   */
  damageAtRest: boolean;
  /**
   * Messages a subscriber's window holds (0: the client's default, 1,000). Small windows run the
   * credit dry within a few deliveries, so credit lost anywhere (a redelivery, a copy skipped)
   * stalls the subscription within the run instead of after thousands of messages.
   */
  windowMessages: number;
}

const PORT = 7070;
const TOPIC = "events";
const BYSTANDER_TOPIC = "bystander";

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
    damageAtRest: r.chance(0.5),
    windowMessages: r.chance(0.4) ? r.int(4, 65) : 0,
    ...overrides,
  };
}

interface Delivery {
  offset: number;
  value: string;
}

/** Runs the pub/sub scenario and checks it. */
export async function runPubSub(opts: PubSubOptions): Promise<RunResult> {
  const { sim, plan, buggify } = brokerSimulation(opts.seed, "pubsub-faults", opts.faults, 1);

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
      running = node.broker;
      await node.done;
    },
  });
  /** The broker's latest incarnation. */
  let running: Broker | null = null;
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
      // calm() starts every node that is down, a publisher that finished early included: it must
      // not publish its messages a second time.
      if (publisherDone) return;
      await publish(env, sim, opts, published, acked, ackedDuplicates);
      publisherDone = true;
    },
  });

  const deliveries: Delivery[][] = [];
  const corrupt: string[] = [];
  const resumes = new DurableResumeChecker(() => broker.crashes, (key) => {
    const bytes = broker.disk.durableBytes(subscriptionsFile("data"));
    return bytes === null ? -1 : savedOffset(bytes, key);
  });
  const subscribers: SimNode[] = [];
  const sessions: Session[] = [];
  // The last subscriber, if it is not durable, fails to process a message now and then (see
  // Stalls): it must get that message again once its ack timeout passes.
  const stalls: Stalls = { at: null, skipped: 0, redelivered: 0 };
  const flaky = opts.subscribers - 1 >= opts.durableSubscribers ? opts.subscribers - 1 : -1;
  for (let i = 0; i < opts.subscribers; i++) {
    const got: Delivery[] = [];
    deliveries.push(got);
    const session = { acked: -1 };
    sessions.push(session);
    const name = `subscriber-${i}`;
    subscribers.push(sim.addNode({
      name,
      main: (env) =>
        subscribe(env, sim, name, got, corrupt, {
          durable: i < opts.durableSubscribers ? resumes : null,
          session,
          ...(i === flaky ? { stalls } : {}),
          ...(opts.windowMessages > 0 ? { windowMessages: opts.windowMessages } : {}),
        }),
    }));
  }

  // Crashes and pauses hit the broker; partitions, resets and latency hit every link.
  const nemesis = new Nemesis(sim, plan, [broker]);
  nemesis.start();
  await sim.world.run({ untilMs: opts.safetyMs });
  calm(sim, nemesis);
  const everyoneHasAll = () =>
    publisherDone && stalls.at === null &&
    deliveries.every((got) => {
      const seen = new Set(got.map((d) => d.offset));
      return acked.every((o) => seen.has(o));
    });
  const stop = await sim.world.run({
    untilMs: sim.world.now + opts.livenessMs,
    stop: everyoneHasAll,
  });

  const violations: string[] = [];
  if (stalls.at !== null) {
    violations.push(
      `subscriber-${flaky} did not acknowledge offset ${stalls.at} and waited for it to be ` +
        `delivered again once its ack timeout passed; it never was (at-least-once delivery)`,
    );
  } else if (!everyoneHasAll()) {
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
  // acknowledged offset; and so must every message a subscriber got, at the offset it got it at:
  // under fsync "always" a reader sees only what is on the disk (a message read from the page
  // cache and then lost to the power cut would be a read of something that never was).
  const verified: Delivery[] = [];
  if (violations.length === 0 && opts.durableSubscribers > 0) {
    violations.push(...(await durableSaved(sim, opts, resumes, deliveries, sessions, running)));
    // The durable subscribers stop; after the power loss below each name resumes once more.
    for (const node of subscribers.slice(0, opts.durableSubscribers)) sim.crash(node, "process");
  }
  if (violations.length === 0) {
    sim.crash(broker, "power", 10);
    const deliveredMax = Math.max(-1, ...deliveries.flat().map((d) => d.offset));
    const through = Math.max(deliveredMax, acked.length === 0 ? -1 : Math.max(...acked)) + 1;
    const enough = () => new Set(verified.map((d) => d.offset)).size >= through;
    sim.addNode({
      name: "verifier",
      main: (env) => subscribe(env, sim, "verifier", verified, corrupt, { until: enough }),
    });
    await sim.world.run({ untilMs: sim.world.now + opts.livenessMs, stop: enough });
    if (!enough()) {
      violations.push(
        "after a final power loss and restart, the verifier could not read every acknowledged " +
          `or delivered publish (through offset ${through - 1})`,
      );
    }
    violations.push(...checkOnce(published, verified));
    if (opts.durableSubscribers > 0) await durableResumeAll(sim, opts, resumes, deliveries);
    const stored = new Set([...deliveries, verified].flat().map((d) => d.value));
    for (const v of ackedDuplicates) {
      if (!stored.has(v)) violations.push(`${v} was acknowledged (offset -1) but is not stored`);
    }
  }
  violations.push(...resumes.violations.slice(0, 10));
  // Checked before the damage phase, whose repair gives offsets out again on purpose.
  violations.push(...checkDeliveries(published, [...deliveries, verified]));
  let damageRepairs = 0;
  if (violations.length === 0 && opts.damageAtRest) {
    const damage = await damagePhase(sim, opts, broker, published);
    violations.push(...damage.violations);
    damageRepairs = damage.repaired ? 1 : 0;
  }
  violations.push(...corrupt.slice(0, 10));
  violations.push(...internalErrors.slice(0, 10));
  return runResult(sim, {
    scenario: "pubsub",
    seed: opts.seed,
    options: opts,
    plan,
    violations,
    stats: {
      ...buggify.stats(),
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
      messagesNotProcessed: stalls.skipped,
      messagesRedelivered: stalls.redelivered,
      damageRepairs,
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
export async function connectRetrying(
  env: Env,
  clientId = "gregormq-ts",
  connectTimeoutMs = 5_000,
  onStateChange?: (state: ConnectionState) => void,
): Promise<Client> {
  for (;;) {
    try {
      return await connectWith(env, {
        host: "broker",
        port: PORT,
        clientId,
        requestTimeoutMs: 2_000,
        connectTimeoutMs,
        ...(onStateChange === undefined ? {} : { onStateChange }),
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

/**
 * How long after its last acknowledgement, with the broker up and the network calm, a durable
 * subscriber's progress must be on disk, ms: many times the broker's offset flush interval.
 */
const DURABLE_SAVE_MS_MAX = 3_000;
/**
 * How long after healing a durable subscriber may take to hold a live subscription again, ms: the
 * broker keeps a durable name for a connection it has not yet seen go (SUBSCRIPTION_IN_USE).
 */
const DURABLE_LIVE_MS_MAX = 20_000;

/** The durable key of subscriber `i` (topic, partition 0, its name), as the broker saves it. */
function durableKey(i: number): string {
  return `${TOPIC}\u0000${0}\u0000subscriber-${i}`;
}

/** The offset after the last one subscriber `i` received (and acknowledged). */
function nextOf(deliveries: Delivery[][], i: number): number {
  return deliveries[i]!.reduce((n, d) => Math.max(n, d.offset + 1), 0);
}

/**
 * After every subscriber has everything, the network calm and the broker up: once each durable
 * subscriber's live subscription has acknowledged all it received, that must reach the broker's
 * disk within DURABLE_SAVE_MS_MAX (a broker that never saves, or saves only when something else
 * changes, is caught here).
 */
async function durableSaved(
  sim: Simulation,
  opts: PubSubOptions,
  resumes: DurableResumeChecker,
  deliveries: Delivery[][],
  sessions: readonly Session[],
  broker: Broker | null,
): Promise<string[]> {
  const durables = Math.min(opts.durableSubscribers, deliveries.length);
  const live = () => {
    for (let i = 0; i < durables; i++) {
      if (sessions[i]!.acked < nextOf(deliveries, i) - 1) return false;
    }
    return true;
  };
  await sim.world.run({ untilMs: sim.world.now + DURABLE_LIVE_MS_MAX, stop: live });
  if (!live()) {
    return [
      `within ${DURABLE_LIVE_MS_MAX} ms of healing, a durable subscriber held no live subscription ` +
      `that acknowledged everything it received`,
    ];
  }
  // What the broker took in by now must be on its disk DURABLE_SAVE_MS_MAX later.
  const held = Array.from(
    { length: durables },
    (_, i) => broker?.durableAckedOffset(durableKey(i)) ?? -1,
  );
  await sim.world.run({ untilMs: sim.world.now + DURABLE_SAVE_MS_MAX });
  const violations: string[] = [];
  for (let i = 0; i < durables; i++) {
    const next = nextOf(deliveries, i);
    const saved = resumes.saved(durableKey(i));
    if (saved < held[i]!) {
      violations.push(
        `durable subscriber-${i} acknowledged every offset below ${next}; the broker held ` +
          `${held[i]} in memory, but ${DURABLE_SAVE_MS_MAX} ms later had saved only ${saved}`,
      );
    }
  }
  return violations;
}

/**
 * After the final power loss, each durable name subscribes once more: the broker must resume it
 * right after what it acknowledged and saved (the checker holds it to both).
 */
async function durableResumeAll(
  sim: Simulation,
  opts: PubSubOptions,
  resumes: DurableResumeChecker,
  deliveries: Delivery[][],
): Promise<void> {
  let done = false;
  sim.addNode({
    name: "durable-verifier",
    main: async (env) => {
      const client = await connectRetrying(env, "durable-verifier");
      for (let i = 0; i < Math.min(opts.durableSubscribers, deliveries.length); i++) {
        const saved = resumes.saved(durableKey(i));
        const sub = await client.subscribe(TOPIC, {
          from: { offset: nextOf(deliveries, i) },
          durable: `subscriber-${i}`,
        });
        resumes.resumed(`subscriber-${i}`, sub.startOffset, nextOf(deliveries, i), saved);
        await sub.close();
      }
      await client.close();
      done = true;
    },
  });
  await sim.world.run({ untilMs: sim.world.now + opts.livenessMs, stop: () => done });
  if (!done) resumes.violations.push("after the final restart the durable names could not resume");
}

/** How often the flaky subscriber fails to process a message. */
const NOT_PROCESSED_PROB = 0.03;
/** How long a durable subscriber waits at most before it acknowledges a message, ms. */
const ACK_DELAY_MS_MAX = 150;
/** How long a durable subscriber's client tries to reconnect before its subscription ends, ms. */
const DURABLE_CONNECT_TIMEOUT_MS = 200;

/** What a subscriber's current subscription acknowledged (-1 while it has none). */
interface Session {
  acked: number;
}

/**
 * A subscriber that now and then fails to process a message it has not acknowledged before, as one
 * whose handler threw: it acknowledges nothing from then on until the broker delivers that message
 * again, which it must once the ack timeout passes (at-least-once). The run cannot end while it
 * waits.
 */
interface Stalls {
  /** The offset it failed to process and waits to get again; null when none. */
  at: number | null;
  skipped: number;
  redelivered: number;
}

/** How a subscriber runs: until when, and whether it resumes by a durable name. */
interface SubscribeOptions {
  until?: () => boolean;
  durable?: DurableResumeChecker | null;
  session?: Session;
  stalls?: Stalls;
  /** The subscription's window in messages (absent: the client's default). */
  windowMessages?: number;
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
  /** The first offset this subscriber has not acknowledged. */
  let ackedNext = 0;
  // A durable subscriber acknowledges a while after it got a message, as one that processes it
  // first would: the broker must resume it from what it acknowledged, not from what it sent.
  const ackDelayMs = durable === null ? 0 : env.random.int(0, ACK_DELAY_MS_MAX + 1);
  while (!until()) {
    // A durable subscriber closes its client when the connection is lost (a client would go on
    // reconnecting), so a broker crash ends its subscription and it resumes by its durable name,
    // which the checker judges.
    let lost = false;
    const client: Client = await connectRetrying(
      env,
      "gregormq-ts",
      durable === null ? 5_000 : DURABLE_CONNECT_TIMEOUT_MS,
      durable === null ? undefined : (state) => {
        if (state === "disconnected") lost = true;
      },
    );
    let over = false;
    const watching = durable === null ? null : (async () => {
      while (!lost && !over) await env.clock.sleep(50);
      if (lost) await client.close();
    })();
    try {
      const key = `${TOPIC}\u0000${0}\u0000${name}`;
      const saved = durable?.saved(key) ?? -1;
      const sub = await client.subscribe(TOPIC, {
        // After a reconnect, from the message it still has to process, if it failed one.
        from: { offset: durable === null ? (opts.stalls?.at ?? next) : ackedNext },
        ackTimeoutMs: 1_000,
        ...(opts.windowMessages === undefined ? {} : { windowMessages: opts.windowMessages }),
        ...(durable === null ? {} : { durable: name }),
      });
      if (durable !== null) {
        durable.resumed(name, sub.startOffset, ackedNext, saved);
        if (opts.session !== undefined) opts.session.acked = sub.startOffset - 1;
        sim.history.add(name, "ok", "resume", { offset: sub.startOffset, next, saved });
      }
      for await (const m of sub) {
        got.push({ offset: m.offset, value: m.text() });
        sim.history.add(name, "ok", "deliver", { offset: m.offset });
        const stalls = opts.stalls;
        if (stalls !== undefined) {
          // Only a message never acknowledged is owed again: a copy of one acknowledged before
          // (delivered again after a broker crash rewound the subscription) is not.
          if (
            stalls.at === null && m.offset >= ackedNext && env.random.float() < NOT_PROCESSED_PROB
          ) {
            stalls.at = m.offset;
            stalls.skipped++;
          } else if (stalls.at === m.offset) {
            stalls.at = null;
            stalls.redelivered++;
          }
          if (stalls.at !== null) {
            next = Math.max(next, m.offset + 1);
            continue; // nothing is acknowledged while a message waits to be processed
          }
        }
        const ack = () => {
          if (lost || over) return; // the subscription is gone: this ack never leaves
          m.ack();
          ackedNext = Math.max(ackedNext, m.offset + 1);
          if (opts.session !== undefined) {
            opts.session.acked = Math.max(opts.session.acked, m.offset);
          }
        };
        if (ackDelayMs === 0) ack();
        else void env.clock.sleep(env.random.int(0, ackDelayMs)).then(ack);
        next = Math.max(next, m.offset + 1);
        if (until()) break;
      }
    } catch (err) {
      if (opts.session !== undefined) opts.session.acked = -1;
      // The client checks every batch's checksum: a corrupt batch means the broker served one.
      if (err instanceof GregorError && err.code === ErrorCode.CORRUPT_BATCH) {
        corrupt.push(`${name} was served a corrupt batch: ${err.message}`);
      }
      // Otherwise the connection gave up (a long partition), or the broker still holds the
      // durable name for a connection it has not yet seen go: start again where we got to.
    }
    over = true;
    await client.close();
    await watching;
    await env.clock.sleep(100);
  }
}

/** Records the damage phase writes to a second topic, each its own batch, over many segments. */
const BYSTANDER_RECORDS = 40;
const BYSTANDER_SEGMENT_BYTES = 1024;
/** How long the damage phase's reader waits for more before it takes the partition as ended. */
const QUIET_MS = 2_000;

/** The batches of a segment file's bytes, as far as their headers chain. */
function fileBatches(
  bytes: Uint8Array,
): { pos: number; size: number; base: number; next: number }[] {
  const out = [];
  for (let pos = 0; pos + BATCH_HEADER_BYTES <= bytes.length;) {
    const h = readBatchHeader(bytes, pos, { headerOnly: true });
    if (h.sizeBytes < BATCH_HEADER_BYTES || pos + h.sizeBytes > bytes.length) break;
    out.push({ pos, size: h.sizeBytes, base: h.baseOffset, next: h.baseOffset + h.recordCount });
    pos += h.sizeBytes;
  }
  return out;
}

/**
 * Writes a second topic over many small segments, power-cycles the broker with a byte of one of
 * its sealed segments flipped at rest, and checks that the broker starts, serves the first topic
 * whole and the second up to the damaged batch (never beyond, never a corrupt batch), refuses to
 * append behind the damage, and after a repair takes records again from the cut.
 */
async function damagePhase(
  sim: Simulation,
  opts: PubSubOptions,
  broker: SimNode,
  published: ReadonlyMap<string, number | null>,
): Promise<{ violations: string[]; repaired: boolean }> {
  const violations: string[] = [];
  let done = false;
  sim.addNode({
    name: "bystander",
    main: async (env) => {
      const client = await connectRetrying(env, "bystander");
      await client.admin.createTopic(BYSTANDER_TOPIC, {
        configs: { "segment.bytes": String(BYSTANDER_SEGMENT_BYTES) },
      });
      for (let i = 0; i < BYSTANDER_RECORDS; i++) {
        await client.publish(BYSTANDER_TOPIC, { value: `b${i}` });
      }
      await client.close();
      done = true;
    },
  });
  await sim.world.run({ untilMs: sim.world.now + opts.livenessMs, stop: () => done });
  if (!done) {
    return { violations: ["the bystander could not publish to a calm broker"], repaired: false };
  }

  // The sealed segments of the bystander's partition: each names the next by where it ends.
  sim.crash(broker, "power");
  const dir = partitionDir("data", BYSTANDER_TOPIC, 0);
  const sealed: { path: string; bytes: Uint8Array }[] = [];
  for (let base = 0;;) {
    const path = segmentFile(dir, base, "log");
    const bytes = broker.disk.durableBytes(path);
    const last = bytes === null ? undefined : fileBatches(bytes).at(-1);
    if (bytes === null || last === undefined) break;
    if (broker.disk.durableBytes(segmentFile(dir, last.next, "log")) === null) break;
    sealed.push({ path, bytes });
    base = last.next;
  }
  sim.restartLater(broker, 10);
  if (sealed.length === 0) {
    return { violations: ["the bystander's log has no sealed segment"], repaired: false };
  }
  const random = new SeededRandom(opts.seed, "pubsub-damage");
  const seg = sealed[random.int(0, sealed.length)] as { path: string; bytes: Uint8Array };
  const batches = fileBatches(seg.bytes);
  const bad = batches[random.int(0, batches.length)] as { pos: number; size: number; base: number };
  // A byte of the records, which the batch's checksum covers.
  broker.disk.corruptAtRest(seg.path, bad.pos + random.int(BATCH_HEADER_BYTES, bad.size));

  const events: Delivery[] = [];
  let repaired = false;
  let finished = false;
  sim.addNode({
    name: "damage-checker",
    main: async (env) => {
      const client = await connectRetrying(env, "damage-checker");
      await readUntilQuiet(env, client, TOPIC, events);
      const got = await readUntilQuiet(env, client, BYSTANDER_TOPIC, []);
      const wanted = Array.from({ length: bad.base }, (_, i) => `b${i}`);
      if (got.join(",") !== wanted.join(",")) {
        violations.push(
          `the damaged topic read back as ${
            got.join(",")
          }, not every record before offset ${bad.base}`,
        );
      }
      const described = (await client.admin.describeTopic(BYSTANDER_TOPIC)).partitions[0];
      if (described?.damagedFromOffset !== bad.base) {
        violations.push(
          `describe says damaged from ${described?.damagedFromOffset}, the flip is in the batch at ${bad.base}`,
        );
      }
      const refused = await client.publish(BYSTANDER_TOPIC, { value: "behind-the-damage" }).then(
        (offset) => `was acknowledged at ${offset}`,
        (err) =>
          err instanceof GregorError && err.code === ErrorCode.PARTITION_DAMAGED
            ? null
            : String(err),
      );
      if (refused !== null) violations.push(`a publish behind the damage ${refused}`);
      const [r] = await client.admin.repairPartitions(BYSTANDER_TOPIC);
      if (r?.cutOffset !== bad.base) {
        violations.push(`the repair cut at ${r?.cutOffset}, not ${bad.base}`);
      }
      const after = await client.publish(BYSTANDER_TOPIC, { value: "after-the-repair" });
      if (after !== bad.base) {
        violations.push(`the first publish after the repair got offset ${after}, not ${bad.base}`);
      }
      repaired = true;
      await client.close();
      finished = true;
    },
  });
  await sim.world.run({ untilMs: sim.world.now + opts.livenessMs, stop: () => finished });
  if (!finished) violations.push("the damage checker did not finish: the broker did not serve it");
  // The undamaged topic: every acknowledged publish, at its offset.
  violations.push(...checkOnce(published, events));
  violations.push(...checkDeliveries(published, [events]));
  return { violations, repaired };
}

/** Subscribes from the earliest offset and collects until nothing new comes for QUIET_MS. */
async function readUntilQuiet(
  env: Env,
  client: Client,
  topic: string,
  got: Delivery[],
): Promise<string[]> {
  const values: string[] = [];
  const sub = await client.subscribe(topic, { from: "earliest" });
  const it = sub[Symbol.asyncIterator]();
  for (;;) {
    const quiet = env.clock.sleep(QUIET_MS).then(() => null);
    const next = await Promise.race([it.next(), quiet]);
    if (next === null || next.done) break;
    got.push({ offset: next.value.offset, value: next.value.text() });
    values[next.value.offset] = next.value.text();
    next.value.ack();
  }
  await sub.close();
  return values;
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
