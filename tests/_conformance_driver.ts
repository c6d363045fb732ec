// The TypeScript driver of the language-neutral conformance suite (conformance/scenarios.json):
// runs one scenario's steps with the TypeScript client against live brokers. It touches the
// runtime only through the client and the I/O seam, so the same code runs on Deno
// (tests/conformance_test.ts) and, compiled, on Node (tests/node/conformance_driver.ts).

import assert from "node:assert/strict";
import {
  type Client,
  type CodecName,
  connect,
  type Consumer,
  GregorError,
  type GroupConsumer,
  type ReceivedMessage,
} from "../src/client/mod.ts";
import { hostEnv } from "../src/io/node/host.ts";
import type { Conn, Listener, Network } from "../src/io/types.ts";
import { writeAll } from "../src/io/util.ts";
import { ErrorCode, errorName } from "../src/protocol/errors.ts";
import { CompressionError } from "../src/protocol/codecs.ts";

/** One step of a scenario; conformance/README.md describes each op. */
// deno-lint-ignore no-explicit-any
export type Step = Record<string, any> & { op: string };

/** A scenario as conformance/scenarios.json holds it. */
export interface Scenario {
  name: string;
  description: string;
  brokers?: number;
  /** The brokers form one replicating cluster. */
  cluster?: boolean;
  steps: Step[];
}

/** The live brokers a scenario runs against. */
export interface ScenarioBrokers {
  /** Their listen addresses ("host:port"), the first the default. */
  addrs: string[];
  /** Their node ids, as each printed in its first line ("" outside a cluster). */
  nodeIds: string[];
  /** Kills broker `i` (a `stopBroker` step). */
  stop(i: number): Promise<void>;
  /**
   * Codecs this runtime cannot compress with (zstd on Node before 22.15): a publish with one must
   * fail with a CompressionError naming it, and is then sent uncompressed so the scenario goes on.
   */
  codecsMissing?: readonly CodecName[];
}

/** How long a receive waits for its messages before the scenario fails, ms. */
const RECEIVE_TIMEOUT_MS = 10_000;
/** How long an awaitAssignment step waits for the group to settle, ms. */
const ASSIGNMENT_TIMEOUT_MS = 10_000;
/** How often an awaitAssignment step looks at the members' assignments, ms. */
const ASSIGNMENT_POLL_MS = 20;
/** How long an awaitCluster step waits for the nodes and a controller, ms. */
const CLUSTER_TIMEOUT_MS = 30_000;
/** How long an awaitLeaders step waits for the partitions' leaders, ms. */
const LEADERS_TIMEOUT_MS = 10_000;
/** How often awaitCluster, awaitLeaders and a createTopic with retryMs ask again, ms. */
const SETTLE_POLL_MS = 100;

const text = (b: Uint8Array | null): string | null =>
  b === null ? null : new TextDecoder().decode(b);

/**
 * A proxy to `target` that cuts each of its first `cuts` connections once `afterBytes` bytes of
 * the broker's answers went through, so answers to requests the broker carried out are lost.
 */
class CuttingProxy {
  cutsLeft: number;
  cut = 0;
  readonly #conns = new Set<Conn>();

  private constructor(
    readonly net: Network,
    readonly listener: Listener,
    readonly target: string,
    cuts: number,
    readonly afterBytes: number,
  ) {
    this.cutsLeft = cuts;
    void this.#accept();
  }

  static async start(
    net: Network,
    target: string,
    cuts: number,
    afterBytes: number,
  ): Promise<CuttingProxy> {
    const listener = await net.listen({ host: "127.0.0.1", port: 0 });
    return new CuttingProxy(net, listener, target, cuts, afterBytes);
  }

  get address(): string {
    return `127.0.0.1:${this.listener.addr.port}`;
  }

  async #accept(): Promise<void> {
    for (;;) {
      const client = await this.listener.accept();
      if (client === null) return;
      const [host, port] = this.target.split(":");
      const broker = await this.net.connect({ host: host!, port: Number(port) });
      this.#conns.add(client).add(broker);
      const cutting = this.cutsLeft-- > 0;
      void this.#pipe(client, broker, Infinity);
      void this.#pipe(broker, client, cutting ? this.afterBytes : Infinity);
    }
  }

  async #pipe(from: Conn, to: Conn, bytesMax: number): Promise<void> {
    const buf = new Uint8Array(16 * 1024);
    let passed = 0;
    try {
      while (passed < bytesMax) {
        const n = await from.read(buf.subarray(0, Math.min(buf.length, bytesMax - passed)));
        if (n === null) break;
        await writeAll(to, buf.subarray(0, n));
        passed += n;
      }
      if (passed >= bytesMax) this.cut++;
    } catch {
      // The other direction closed the pair.
    }
    for (const c of [from, to]) {
      if (this.#conns.delete(c)) c.close();
    }
  }

  close(): void {
    this.listener.close();
    for (const c of this.#conns) c.close();
    this.#conns.clear();
  }
}

/** A port nothing listens on: bound, then released. */
async function refusedAddress(net: Network): Promise<string> {
  const l = await net.listen({ host: "127.0.0.1", port: 0 });
  l.close();
  return `127.0.0.1:${l.addr.port}`;
}

function codeOf(err: unknown): string {
  if (err instanceof GregorError) return errorName(err.code) ?? `CODE_${err.code}`;
  throw err;
}

/** Runs one scenario against `brokers`; throws what failed, naming the step. */
export async function runScenario(s: Scenario, brokers: ScenarioBrokers): Promise<void> {
  const addrs = brokers.addrs;
  const net = (await hostEnv()).net;
  const clients: Client[] = [];
  const open = async (servers: string[]): Promise<Client> => {
    const c = await connect({ servers, reconnectBackoffMsMax: 200, requestTimeoutMs: 10_000 });
    clients.push(c);
    return c;
  };
  let client = await open([addrs[0]!]);
  const proxies: CuttingProxy[] = [];
  const subs = new Map<string, Consumer>();
  /** The partition each subscription reads. */
  const subPartitions = new Map<string, number>();
  /** A next() an expectNone step left waiting, which the following receive takes over. */
  const pending = new Map<string, Promise<ReceivedMessage | null>>();
  const nextOf = (name: string): Promise<ReceivedMessage | null> => {
    const p = pending.get(name);
    pending.delete(name);
    return p ?? subs.get(name)!.next();
  };
  /** Group members by step name, each on its own client. */
  const members = new Map<string, GroupConsumer>();
  const memberPending = new Map<string, Promise<ReceivedMessage | null>>();
  const memberNext = (name: string): Promise<ReceivedMessage | null> => {
    const p = memberPending.get(name);
    memberPending.delete(name);
    return p ?? members.get(name)!.next();
  };
  const owned = (name: string, topic: string): number[] =>
    members.get(name)!.assignment().filter((tp) => tp.topic === topic).map((tp) => tp.partition)
      .sort((x, y) => x - y);
  try {
    for (const [i, step] of s.steps.entries()) {
      const where = `${s.name} step ${i} (${step.op})`;
      let err: unknown = null;
      try {
        await runStep(step);
      } catch (e) {
        err = e;
      }
      if (step.expectError !== undefined) {
        assert.ok(err !== null, `${where}: expected ${step.expectError}, got success`);
        assert.equal(codeOf(err), step.expectError, where);
      } else if (err !== null) {
        throw new Error(`${where} failed: ${(err as Error).message}`, { cause: err });
      }
    }
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    for (const p of proxies) p.close();
  }

  async function runStep(step: Step): Promise<void> {
    switch (step.op) {
      case "connect": {
        let servers = await Promise.all(
          (step.servers as (string | number)[]).map((x) =>
            x === "refused" ? refusedAddress(net) : addrs[x as number]!
          ),
        );
        if (step.cuttingProxy !== undefined) {
          const p = await CuttingProxy.start(
            net,
            servers[0]!,
            step.cuttingProxy.cuts,
            step.cuttingProxy.afterBytes,
          );
          proxies.push(p);
          servers = [p.address];
        }
        client = await open(servers);
        return;
      }
      case "stopBroker": {
        if (step.leaderOf === undefined) return await brokers.stop(step.broker);
        const sub = subs.get(step.leaderOf)!;
        const p = (await client.admin.describeTopic(sub.topic)).partitions[
          subPartitions.get(step.leaderOf)!
        ]!;
        const i = brokers.nodeIds.indexOf(p.leader);
        assert.ok(i >= 0, `the leader "${p.leader}" of ${sub.topic}/${p.partition} is no broker`);
        return await brokers.stop(i);
      }
      case "createTopic": {
        const deadline = Date.now() + (step.retryMs ?? 0);
        for (let failed = false;; failed = true) {
          try {
            await client.admin.createTopic(step.topic, {
              partitions: step.partitions,
              configs: step.configs ?? {},
            });
            return;
          } catch (err) {
            // An attempt that failed (a TIMEOUT, say) may have created the topic.
            if (failed && err instanceof GregorError && err.code === ErrorCode.TOPIC_EXISTS) return;
            if (!(err instanceof GregorError && err.retriable) || Date.now() >= deadline) throw err;
          }
          await sleep(SETTLE_POLL_MS);
        }
      }
      case "awaitCluster": {
        const deadline = Date.now() + CLUSTER_TIMEOUT_MS;
        for (;;) {
          const m = await client.admin.metadata([]).catch((err) => ({ err }));
          if ("nodes" in m && m.nodes.length === step.nodes && m.controller !== "") return;
          assert.ok(
            Date.now() < deadline,
            `the cluster did not form in ${CLUSTER_TIMEOUT_MS} ms: ${JSON.stringify(m)}`,
          );
          await sleep(SETTLE_POLL_MS);
        }
      }
      case "awaitLeaders": {
        const deadline = Date.now() + LEADERS_TIMEOUT_MS;
        for (;;) {
          const d = await client.admin.describeTopic(step.topic);
          const leaders = d.partitions.map((p) => p.leader);
          const settled = leaders.every((l) => l !== "") &&
            new Set(leaders).size === leaders.length &&
            d.partitions.every((p) =>
              p.replicas.length === step.replicas && p.replicas.some((r) => r.id === p.leader) &&
              !p.moving
            );
          if (settled) return;
          assert.ok(
            Date.now() < deadline,
            `${step.topic}'s partitions did not each get a leader of their own in ` +
              `${LEADERS_TIMEOUT_MS} ms: ${JSON.stringify(d.partitions)}`,
          );
          await sleep(SETTLE_POLL_MS);
        }
      }
      case "deleteTopic":
        await client.admin.deleteTopic(step.topic);
        return;
      case "listTopics": {
        const topics = await client.admin.listTopics();
        for (const want of step.expectIncludes ?? []) {
          assert.deepEqual(topics.find((t) => t.name === want.name), want);
        }
        for (const name of step.expectExcludes ?? []) {
          assert.ok(!topics.some((t) => t.name === name), `${name} is still listed`);
        }
        return;
      }
      case "describeTopic": {
        const d = await client.admin.describeTopic(step.topic);
        if (step.expectPartitions !== undefined) {
          assert.equal(d.partitions.length, step.expectPartitions);
        }
        if (step.expectHighWatermarks !== undefined) {
          assert.deepEqual(d.partitions.map((p) => p.highWatermark), step.expectHighWatermarks);
        }
        for (const [k, v] of Object.entries(step.expectConfigsInclude ?? {})) {
          assert.equal(d.configs[k], v, `config ${k}`);
        }
        return;
      }
      case "publish": {
        if (brokers.codecsMissing?.includes(step.codec)) {
          const producer = client.producer({ compression: step.codec });
          try {
            await assert.rejects(
              producer.send(step.topic, { value: "never stored" }),
              (err) => err instanceof CompressionError && err.codec === step.codec,
              `publishing with ${step.codec}, which this runtime lacks`,
            );
          } finally {
            await producer.close().catch(() => {});
          }
          return await runStep({ ...step, codec: "none" });
        }
        const producer = client.producer({ compression: step.codec ?? "none", lingerMs: 5 });
        try {
          const results = await Promise.all(
            (step.messages as Step[]).map((m) =>
              producer.send(step.topic, {
                key: m.key ?? null,
                value: m.value,
                ...(m.timestamp === undefined ? {} : { timestamp: m.timestamp }),
                ...(step.partition === undefined ? {} : { partition: step.partition }),
              })
            ),
          );
          if (step.expectOffsets !== undefined) assert.deepEqual(results, step.expectOffsets);
        } finally {
          await producer.close().catch(() => {});
        }
        if (step.expectPartitions !== undefined) {
          const holding = await partitionsHolding(step.topic);
          const got = (step.messages as Step[]).map((m) => holding.get(m.key));
          assert.deepEqual(got, step.expectPartitions);
        }
        return;
      }
      case "publishMany": {
        const producer = client.producer(
          step.batchRecordsMax === undefined ? {} : { batchRecordsMax: step.batchRecordsMax },
        );
        try {
          const offsets = await Promise.all(
            Array.from(
              { length: step.count },
              (_, n) => producer.send(step.topic, { value: `${step.valuePrefix}${n}` }),
            ),
          );
          assert.equal(offsets.length, step.count);
        } finally {
          await producer.close().catch(() => {});
        }
        return;
      }
      case "expectProxyCuts": {
        const cut = proxies.reduce((n, p) => n + p.cut, 0);
        assert.ok(
          cut >= step.atLeast,
          `the proxy cut ${cut} connections, fewer than ${step.atLeast}`,
        );
        return;
      }
      case "publishEach":
        for (let n = 0; n < step.count; n++) {
          await client.publish(step.topic, { value: `${step.valuePrefix}${n}` });
        }
        return;
      case "subscribe": {
        const c = step.newClient ? await open([addrs[0]!]) : client;
        let partition = step.partition ?? 0;
        if (step.awayFrom !== undefined) {
          const away = brokers.nodeIds[step.awayFrom];
          const d = await client.admin.describeTopic(step.topic);
          const p = d.partitions.find((p) => !p.replicas.some((r) => r.id === away));
          assert.ok(p !== undefined, `every partition of ${step.topic} has a replica on ${away}`);
          partition = p.partition;
        }
        const sub = await c.subscribe(step.topic, {
          partition,
          from: step.from ?? "latest",
          ...(step.durable === undefined ? {} : { durable: step.durable }),
          ...(step.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: step.ackTimeoutMs }),
          ...(step.windowMessages === undefined ? {} : { windowMessages: step.windowMessages }),
          autoAck: step.noAcks === true,
        });
        subs.set(step.sub, sub);
        subPartitions.set(step.sub, partition);
        if (step.expectStartOffset !== undefined) {
          assert.equal(sub.startOffset, step.expectStartOffset);
        }
        return;
      }
      case "receive": {
        for (const want of step.expect as Step[]) {
          const m = await withTimeout(nextOf(step.sub), RECEIVE_TIMEOUT_MS, step.sub);
          assert.ok(m !== null, `${step.sub} ended`);
          assert.equal(m.offset, want.offset);
          if ("key" in want) assert.equal(text(m.key), want.key);
          if ("value" in want) assert.equal(text(m.value), want.value);
          if ("timestamp" in want) assert.equal(m.timestamp, want.timestamp);
          if ("redelivered" in want) assert.equal(m.redelivered, want.redelivered, `${m.offset}`);
        }
        return;
      }
      case "receiveCount": {
        for (let n = 0; n < step.count; n++) {
          const m = await withTimeout(nextOf(step.sub), RECEIVE_TIMEOUT_MS, step.sub);
          assert.equal(m?.offset, step.firstOffset + n);
          if (step.valuePrefix !== undefined) {
            assert.equal(text(m!.value), `${step.valuePrefix}${n}`);
          }
        }
        return;
      }
      case "expectNone": {
        const next = nextOf(step.sub);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const got = await Promise.race([
          next,
          new Promise<"none">((r) => timer = setTimeout(() => r("none"), step.ms)),
        ]);
        clearTimeout(timer);
        assert.equal(
          got,
          "none",
          `${step.sub} received offset ${(got as { offset?: number })?.offset}`,
        );
        // The next receive takes this next() over.
        pending.set(step.sub, next);
        return;
      }
      case "ack":
        subs.get(step.sub)!.ack(step.offset);
        return;
      case "unsubscribe":
        await subs.get(step.sub)!.close();
        subs.delete(step.sub);
        return;
      case "joinGroup": {
        const c = await open([addrs[0]!]);
        members.set(
          step.member,
          await c.groupConsumer(step.group, step.topics, {
            reset: step.reset ?? "latest",
            autoCommit: step.autoCommit === true,
          }),
        );
        return;
      }
      case "awaitAssignment": {
        const names = Object.keys(step.members);
        const deadline = Date.now() + ASSIGNMENT_TIMEOUT_MS;
        for (;;) {
          const counts = names.map((n) => owned(n, step.topic));
          const all = counts.flat().sort((x, y) => x - y);
          const settled = names.every((n, i) => counts[i]!.length === step.members[n]) &&
            all.length === step.partitions && all.every((p, i) => p === i);
          if (settled) return;
          assert.ok(
            Date.now() < deadline,
            `the group did not settle on ${JSON.stringify(step.members)} in ` +
              `${ASSIGNMENT_TIMEOUT_MS} ms: ${names.map((n, i) => `${n} owns [${counts[i]}]`)}`,
          );
          await new Promise((r) => setTimeout(r, ASSIGNMENT_POLL_MS));
        }
      }
      case "groupReceive": {
        const expected = step.expect as Step[];
        const matched = new Set<number>();
        for (const name of step.members as string[]) {
          const mine = owned(name, step.topic);
          const want = expected.filter((e) => mine.includes(e.partition)).length;
          for (let n = 0; n < want; n++) {
            const m = await withTimeout(memberNext(name), RECEIVE_TIMEOUT_MS, name);
            assert.ok(m !== null, `member ${name} ended`);
            const at = `${name} received ${m.topic}/${m.partition}@${m.offset}`;
            assert.ok(mine.includes(m.partition), `${at}, a partition it does not own`);
            const i = expected.findIndex((e, k) =>
              !matched.has(k) && e.partition === m.partition && e.offset === m.offset
            );
            assert.ok(i >= 0, `${at}, which is not expected here or came twice`);
            matched.add(i);
            if ("value" in expected[i]!) assert.equal(text(m.value), expected[i]!.value, at);
          }
        }
        const missed = expected.filter((_, k) => !matched.has(k));
        assert.deepEqual(missed, [], "messages no member owning their partition received");
        return;
      }
      case "groupExpectNone":
        for (const name of step.members as string[]) {
          const next = memberNext(name);
          let timer: ReturnType<typeof setTimeout> | undefined;
          const got = await Promise.race([
            next,
            new Promise<"none">((r) => timer = setTimeout(() => r("none"), step.ms)),
          ]);
          clearTimeout(timer);
          assert.equal(got, "none", `${name} received offset ${(got as ReceivedMessage)?.offset}`);
          memberPending.set(name, next);
        }
        return;
      case "groupCommit": {
        const g = members.get(step.member)!;
        if (step.partitionOf === undefined) return await g.commit();
        const theirs = owned(step.partitionOf, step.topic);
        assert.ok(theirs.length > 0, `${step.partitionOf} owns no partition of ${step.topic}`);
        return await g.commit([{ topic: step.topic, partition: theirs[0]!, offset: step.offset }]);
      }
      case "leaveGroup":
        await members.get(step.member)!.close();
        members.delete(step.member);
        memberPending.delete(step.member);
        return;
      default:
        throw new Error(`unknown step op ${step.op}`);
    }
  }

  /** Which partition of `topic` holds each key, from reading every partition to its end. */
  async function partitionsHolding(topic: string): Promise<Map<string, number>> {
    const holding = new Map<string, number>();
    const partitions = (await client.admin.describeTopic(topic)).partitions.length;
    for (let p = 0; p < partitions; p++) {
      for (const m of await client.readPartition(topic, p, { from: "earliest" })) {
        holding.set(text(m.key)!, p);
      }
    }
    return holding;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: nothing received in ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
