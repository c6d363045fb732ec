// Misbehaving clients for the groups scenario, and what they demand of the broker: a group member
// that commits with an earlier generation, commits offsets backwards (replaying old commits),
// commits partitions it does not own (among them one it just released), and sends heartbeats built
// before its last answer; and an idempotent producer that replays batches and skips sequences.
// The broker's own fences are the code under test: each misbehaviour must be refused with the right
// error code, and a stale heartbeat must not take away what the member still holds. Answers that
// prove nothing (the member was forgotten, the broker was down) count as neither.

import type { Env } from "../src/io/types.ts";
import type { Client } from "../src/client/client.ts";
import { encodeBatch } from "../src/protocol/batch.ts";
import { ErrorCode, GregorError } from "../src/protocol/errors.ts";
import {
  Acks,
  type GroupHeartbeatResponse,
  type InitProducerIdResponse,
  type OffsetFetchResponse,
  type ProduceResponse,
  type TopicPartition,
} from "../src/protocol/messages.ts";
import type { Simulation } from "./simulation.ts";

/** Counters of misbehaviours the broker refused as it must (each a "sometimes" event in CI). */
export interface RogueStats {
  rogueStaleCommitsRefused: number;
  rogueBackwardsCommitsRefused: number;
  rogueUnownedCommitsRefused: number;
  rogueStaleHeartbeatsKeptOwnership: number;
  rogueReplaysAnswered: number;
  rogueGapsRefused: number;
  rogueEpochBumps: number;
  rogueFencedRefused: number;
}

/** Fresh counters. */
export function rogueStats(): RogueStats {
  return {
    rogueStaleCommitsRefused: 0,
    rogueBackwardsCommitsRefused: 0,
    rogueUnownedCommitsRefused: 0,
    rogueStaleHeartbeatsKeptOwnership: 0,
    rogueReplaysAnswered: 0,
    rogueGapsRefused: 0,
    rogueEpochBumps: 0,
    rogueFencedRefused: 0,
  };
}

/** What the rogue clients share with the scenario. */
export interface RogueContext {
  sim: Simulation;
  topic: string;
  group: string;
  partitions: number;
  /** Simulation time (`sim.world.now`) after which the rogues stop misbehaving (the member leaves). */
  untilMs: number;
  connect: (env: Env, clientId: string) => Promise<Client>;
  stats: RogueStats;
  violations: string[];
}

/** The rogue member's pause between two steps, ms at most. */
const ROGUE_STEP_MS_MAX = 250;
/** Epochs the rogue producer moves through at most. */
const ROGUE_EPOCHS_MAX = 3;
/** Batches the rogue producer sends at most. */
const ROGUE_BATCHES_MAX = 40;

/** An answer: ok, refused with a code, or nothing conclusive (transport, timeout). */
type Answer<T> = { ok: T } | { code: number; message: string } | { unknown: string };

async function ask<T>(client: Client, op: string, body: object): Promise<Answer<T>> {
  try {
    // deno-lint-ignore no-explicit-any
    return { ok: await client.connection.request<T>(op as any, body) };
  } catch (err) {
    if (err instanceof GregorError) return { code: err.code, message: err.message };
    return { unknown: String(err) };
  }
}

/** Waits until the scenario's producer has created the topic. */
async function topicCreated(env: Env, client: Client, topic: string): Promise<void> {
  for (;;) {
    const exists = await client.admin.describeTopic(topic).then(() => true, () => false);
    if (exists) return;
    await env.clock.sleep(200);
  }
}

function codeName(code: number): string {
  return Object.entries(ErrorCode).find(([, c]) => c === code)?.[0] ?? `code ${code}`;
}

/** Codes that say the member is gone or the coordinator is elsewhere: the step proves nothing. */
const INCONCLUSIVE = new Set<number>([
  ErrorCode.UNKNOWN_MEMBER,
  ErrorCode.NOT_LEADER,
  ErrorCode.TIMEOUT,
  ErrorCode.SHUTTING_DOWN,
  ErrorCode.STORAGE_ERROR,
]);

/**
 * Demands that `a` is a refusal with `want`; an acceptance or another refusal is a violation.
 * Returns true if it was refused as it must be.
 */
function demandRefused(ctx: RogueContext, what: string, a: Answer<unknown>, want: number): boolean {
  if ("unknown" in a) return false;
  if ("ok" in a) {
    ctx.violations.push(`the broker accepted ${what}; it must refuse it with ${codeName(want)}`);
    return false;
  }
  if (a.code === want) return true;
  if (INCONCLUSIVE.has(a.code)) return false;
  ctx.violations.push(
    `the broker refused ${what} with ${codeName(a.code)}, not ${codeName(want)}: ${a.message}`,
  );
  return false;
}

/**
 * A group member that owns partitions like a correct one (it heartbeats, takes what it is given and
 * releases what is revoked) but processes nothing and, between heartbeats, misbehaves. Leaves the
 * group at `ctx.untilMs` so the partitions it held go to members that process them.
 */
export async function rogueMember(env: Env, ctx: RogueContext): Promise<void> {
  // Members are named after their client id, and the range and round-robin assignors give the
  // first members by id the extra partitions: named after the others ("member-N"), the rogue would
  // often hold nothing to misbehave with.
  const client = await ctx.connect(env, "a-rogue-member");
  await topicCreated(env, client, ctx.topic);
  let memberId = "";
  let generation = -1;
  /** Partitions the member holds (granted and not yet released). */
  let held = new Set<number>();
  /** Held partitions the coordinator wants back. */
  let revoking = new Set<number>();
  /** Generations this member heard before its current one (for stale requests). */
  const earlier: number[] = [];
  const tp = (partition: number): TopicPartition => ({ topic: ctx.topic, partition });
  const heartbeat = (gen: number, owned: Iterable<number>) =>
    ask<GroupHeartbeatResponse>(client, "GROUP_HEARTBEAT", {
      group: ctx.group,
      memberId,
      instanceId: "",
      generation: gen,
      sessionTimeoutMs: 3_000,
      assignor: "range",
      topics: [{ name: ctx.topic }],
      owned: [...owned].map(tp),
    });
  const commit = (gen: number, partition: number, offset: number) =>
    ask<unknown>(client, "OFFSET_COMMIT", {
      group: ctx.group,
      memberId,
      generation: gen,
      offsets: [{ topic: ctx.topic, partition, offset }],
    });
  /** The group's committed offset of `partition`, -1 for none, null if it cannot be read. */
  const committed = async (partition: number): Promise<number | null> => {
    const a = await ask<OffsetFetchResponse>(client, "OFFSET_FETCH", {
      group: ctx.group,
      partitions: [tp(partition)],
    });
    return "ok" in a ? (a.ok.offsets[0]?.offset ?? -1) : null;
  };
  const learn = (r: GroupHeartbeatResponse) => {
    if (r.generation !== generation && generation >= 0) earlier.push(generation);
    memberId = r.memberId;
    generation = r.generation;
    const assigned = new Set(r.assigned.map((t) => t.partition));
    revoking = new Set([...held].filter((p) => !assigned.has(p)));
    held = new Set([...held, ...assigned]);
  };
  /** Set when a heartbeat's outcome is unknown: the member's view may be behind the coordinator's. */
  let resync = false;
  const pick = <T>(xs: readonly T[]): T | undefined =>
    xs.length === 0 ? undefined : xs[env.random.int(0, xs.length)];

  while (ctx.sim.world.now < ctx.untilMs) {
    await env.clock.sleep(env.random.int(20, ROGUE_STEP_MS_MAX));
    if (memberId === "") {
      // A new member: nothing it heard as another one is its own history.
      earlier.length = 0;
      generation = -1;
      held = new Set();
      revoking = new Set();
      const a = await heartbeat(-1, []);
      if ("ok" in a) learn(a.ok);
      continue;
    }
    const roll = resync ? 1 : env.random.float();
    const mine = pick([...held].filter((p) => !revoking.has(p)));
    if (roll < 0.15 && mine !== undefined && earlier.length > 0) {
      // A commit from an earlier generation, as a member that missed a rebalance would send.
      const offset = await committed(mine);
      if (offset === null) continue;
      const gen = earlier[env.random.int(0, earlier.length)]!;
      const a = await commit(gen, mine, Math.max(offset, 0));
      if (
        demandRefused(
          ctx,
          `a commit at generation ${gen} (member at ${generation})`,
          a,
          ErrorCode.STALE_GENERATION,
        )
      ) {
        ctx.stats.rogueStaleCommitsRefused++;
      }
    } else if (roll < 0.3 && mine !== undefined) {
      // An old commit replayed: any offset below the committed one.
      const offset = await committed(mine);
      if (offset === null || offset < 1) continue;
      const back = env.random.int(0, offset);
      const a = await commit(generation, mine, back);
      const what = `a commit moving partition ${mine} back from ${offset} to ${back}`;
      if (demandRefused(ctx, what, a, ErrorCode.INVALID_OFFSET)) {
        ctx.stats.rogueBackwardsCommitsRefused++;
      }
    } else if (roll < 0.45) {
      // A partition someone else holds, or nobody does.
      const other = pick(
        Array.from({ length: ctx.partitions }, (_, p) => p).filter((p) => !held.has(p)),
      );
      if (other === undefined) continue;
      const offset = await committed(other);
      if (offset === null) continue;
      const a = await commit(generation, other, Math.max(offset, 0));
      if (
        demandRefused(
          ctx,
          `a commit of partition ${other}, not its own`,
          a,
          ErrorCode.STALE_GENERATION,
        )
      ) {
        ctx.stats.rogueUnownedCommitsRefused++;
      }
    } else if (roll < 0.7 && revoking.size > 0 && earlier.length > 0) {
      // A heartbeat built before the last answer (a retry after a lost response) names no
      // partition; what the member still holds must stay its own until it says otherwise.
      const p = pick([...revoking])!;
      const offset = await committed(p);
      if (offset === null) continue;
      const stale = earlier[earlier.length - 1]!;
      const hb = await heartbeat(stale, []);
      if (!("ok" in hb)) {
        resync = true;
        continue;
      }
      learn(hb.ok);
      const a = await commit(generation, p, Math.max(offset, 0));
      if ("ok" in a) ctx.stats.rogueStaleHeartbeatsKeptOwnership++;
      else if ("code" in a && a.code === ErrorCode.STALE_GENERATION) {
        ctx.violations.push(
          `a heartbeat at generation ${stale} (member at ${generation}) released partition ${p} ` +
            `the member still held: ${a.message}`,
        );
      }
    } else {
      // A correct heartbeat: release what is revoked, then at once commit one released partition
      // (a zombie commit: its new owner may not have been granted it yet).
      const released = [...revoking];
      const a = await heartbeat(generation, [...held].filter((p) => !revoking.has(p)));
      resync = !("ok" in a);
      if (!("ok" in a)) {
        if ("code" in a && a.code === ErrorCode.UNKNOWN_MEMBER) {
          memberId = "";
          held = new Set();
          revoking = new Set();
        }
        continue;
      }
      for (const p of released) held.delete(p);
      learn(a.ok);
      const gone = pick(released.filter((p) => !held.has(p)));
      if (gone === undefined) continue;
      const offset = await committed(gone);
      if (offset === null) continue;
      const c = await commit(generation, gone, Math.max(offset, 0));
      if (
        demandRefused(
          ctx,
          `a commit of partition ${gone} it had released`,
          c,
          ErrorCode.STALE_GENERATION,
        )
      ) {
        ctx.stats.rogueUnownedCommitsRefused++;
      }
    }
  }
  if (memberId !== "") await ask(client, "GROUP_LEAVE", { group: ctx.group, memberId });
  await client.close().catch(() => {});
}

/** What the rogue producer records, like the scenario's producer. */
export interface RogueProduced {
  sent: Set<string>;
  acked: Map<string, { partition: number; offset: number }>;
  ackedDuplicates: Set<string>;
}

/**
 * An idempotent producer speaking the protocol itself: it sends numbered batches (retrying each
 * until it is answered), and sometimes replays a batch already answered — which must be answered
 * with its first offset (or -1, stored before) and not stored again — or sends one past a gap in
 * its sequence, which must be refused with OUT_OF_ORDER_SEQUENCE and never stored. Values of the
 * out-of-order batches are not in `sent`: the final read-back fails if one was stored.
 *
 * It also moves to a new epoch now and then (every partition's sequence starts again at 0, as a
 * Kafka producer does after a sequence error) and then sends a batch of the old epoch to a
 * partition the new epoch has written to: that batch is fenced, refused with PRODUCER_FENCED, and
 * must never be stored, whenever it arrives.
 */
export async function rogueProducer(env: Env, ctx: RogueContext, out: RogueProduced) {
  const client = await ctx.connect(env, "rogue-producer");
  await topicCreated(env, client, ctx.topic);
  const init = await ask<InitProducerIdResponse>(client, "INIT_PRODUCER_ID", {});
  if (!("ok" in init)) return;
  const { producerId } = init.ok;
  let producerEpoch = init.ok.producerEpoch;
  let nextSeq = new Map<number, number>();
  /** The epoch before the last bump, and where it stood on each partition; null before a bump. */
  let stale: { epoch: number; nextSeq: Map<number, number> } | null = null;
  /** Partitions the current epoch has a batch acknowledged on. */
  const written = new Set<number>();
  const batch = (value: string, baseSequence: number, epoch = producerEpoch) =>
    encodeBatch([{
      value: new TextEncoder().encode(value),
      timestamp: Math.floor(env.clock.wallMs()),
    }], {
      producerId,
      producerEpoch: epoch,
      baseSequence,
    });
  const produce = (partition: number, bytes: Uint8Array) =>
    ask<ProduceResponse>(client, "PRODUCE", {
      topic: ctx.topic,
      partition,
      acks: Acks.leader,
      timeoutMs: 2_000,
      batch: bytes,
    });
  for (let i = 0; i < ROGUE_BATCHES_MAX && ctx.sim.world.now < ctx.untilMs; i++) {
    await env.clock.sleep(env.random.int(20, 200));
    const partition = env.random.int(0, ctx.partitions);
    const seq = nextSeq.get(partition) ?? 0;
    if (written.size > 0 && producerEpoch < ROGUE_EPOCHS_MAX && env.random.float() < 0.06) {
      stale = { epoch: producerEpoch, nextSeq };
      producerEpoch++;
      nextSeq = new Map();
      written.clear();
      ctx.stats.rogueEpochBumps++;
      continue;
    }
    if (stale !== null && written.has(partition) && env.random.float() < 0.2) {
      const value = `fenced-${i}`;
      const staleSeq = stale.nextSeq.get(partition) ?? 0;
      const a = await produce(partition, batch(value, staleSeq, stale.epoch));
      const what = `a batch of producer ${producerId} epoch ${stale.epoch} (sequence ` +
        `${staleSeq}) after epoch ${producerEpoch} wrote to partition ${partition}`;
      if (demandRefused(ctx, what, a, ErrorCode.PRODUCER_FENCED)) ctx.stats.rogueFencedRefused++;
      continue;
    }
    if (env.random.float() < 0.25) {
      const value = `gap-${i}`;
      const skip = env.random.int(1, 4);
      const a = await produce(partition, batch(value, seq + skip));
      const what = `a batch of producer ${producerId} at sequence ${seq + skip} (next is ${seq})`;
      if (demandRefused(ctx, what, a, ErrorCode.OUT_OF_ORDER_SEQUENCE)) {
        ctx.stats.rogueGapsRefused++;
      }
      // Unanswered, the batch may still reach the broker later, after a retry of the batches
      // before it filled the gap: then it is next in sequence and rightly stored, and a later
      // batch reusing its sequence is answered as its duplicate (groups seeds 2893, 3212). Its
      // value is not in `sent`, so stop here: with no batch to fill the gap it must never be stored.
      if ("unknown" in a || ("code" in a && INCONCLUSIVE.has(a.code))) break;
      continue;
    }
    const value = `rogue-${i}`;
    const bytes = batch(value, seq);
    out.sent.add(value);
    ctx.sim.history.add("rogue-producer", "invoke", "send", { value, partition });
    let first: number | null = null;
    // Retried until answered: an idempotent retry is exactly what the broker must recognise.
    for (let attempt = 0; attempt < 20 && first === null; attempt++) {
      const a = await produce(partition, bytes);
      if ("ok" in a) first = a.ok.baseOffset;
      else if ("code" in a && !INCONCLUSIVE.has(a.code)) break;
      else await env.clock.sleep(200);
    }
    if (first === null) return; // its sequence state is unknown now: stop misbehaving
    nextSeq.set(partition, seq + 1);
    written.add(partition);
    if (first < 0) out.ackedDuplicates.add(value);
    else {
      out.acked.set(value, { partition, offset: first });
      ctx.sim.history.add("rogue-producer", "ok", "send", { value, partition, offset: first });
    }
    if (env.random.float() < 0.3) {
      const again = await produce(partition, bytes);
      if ("ok" in again) {
        const offset = again.ok.baseOffset;
        if (offset >= 0 && first >= 0 && offset !== first) {
          ctx.violations.push(
            `a replayed batch of producer ${producerId} (sequence ${seq}) was answered at ` +
              `offset ${offset}, first at ${first}`,
          );
        } else ctx.stats.rogueReplaysAnswered++;
      } else if ("code" in again && !INCONCLUSIVE.has(again.code)) {
        // A replay of a batch still remembered is a duplicate, not an error.
        if (again.code !== ErrorCode.DUPLICATE_SEQUENCE) {
          ctx.violations.push(
            `a replayed batch of producer ${producerId} (sequence ${seq}) was refused with ` +
              `${codeName(again.code)}: ${again.message}`,
          );
        } else ctx.stats.rogueReplaysAnswered++;
      }
    }
  }
  await client.close().catch(() => {});
}
