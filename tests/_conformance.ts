// The TypeScript driver of the language-neutral conformance suite (conformance/scenarios.json):
// runs one scenario's steps with the TypeScript client against live broker processes.

import assert from "node:assert/strict";
import {
  type Client,
  connect,
  type Consumer,
  GregorError,
  type ReceivedMessage,
} from "../src/client/mod.ts";
import { errorName } from "../src/protocol/errors.ts";
import { type BrokerProcess, killAll, spawnBroker } from "./_broker_process.ts";

/** One step of a scenario; conformance/README.md describes each op. */
// deno-lint-ignore no-explicit-any
export type Step = Record<string, any> & { op: string };

/** A scenario as conformance/scenarios.json holds it. */
export interface Scenario {
  name: string;
  description: string;
  brokers?: number;
  steps: Step[];
}

/** The suite's data files, read once. */
export const SCENARIOS = JSON.parse(
  await Deno.readTextFile(new URL("../conformance/scenarios.json", import.meta.url)),
).scenarios as Scenario[];

/** How long a receive waits for its messages before the scenario fails, ms. */
const RECEIVE_TIMEOUT_MS = 10_000;

const text = (b: Uint8Array | null): string | null =>
  b === null ? null : new TextDecoder().decode(b);

/** Starts `n` brokers on free ports, each with its own data directory. */
export async function startBrokers(n: number): Promise<{ procs: BrokerProcess[]; dirs: string[] }> {
  const procs: BrokerProcess[] = [];
  const dirs: string[] = [];
  for (let i = 0; i < n; i++) {
    const dir = await Deno.makeTempDir({ prefix: "gregor-conformance-" });
    dirs.push(dir);
    procs.push(
      await spawnBroker([
        "--port",
        "0",
        "--data-dir",
        dir,
        "--no-metrics-enabled",
        "--fsync",
        "never",
      ]),
    );
  }
  return { procs, dirs };
}

/** Stops brokers started by `startBrokers` and removes their data. */
export async function stopBrokers(b: { procs: BrokerProcess[]; dirs: string[] }): Promise<void> {
  await killAll(b.procs);
  for (const d of b.dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
}

/** A port nothing listens on: bound, then released. */
function refusedAddress(): string {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return `127.0.0.1:${port}`;
}

function codeOf(err: unknown): string {
  if (err instanceof GregorError) return errorName(err.code) ?? `CODE_${err.code}`;
  throw err;
}

/** Runs one scenario; `brokers` are listen addresses ("host:port"), the first the default. */
export async function runScenario(
  s: Scenario,
  procs: BrokerProcess[],
): Promise<void> {
  const addrs = procs.map((p) => p.listen.listen);
  const clients: Client[] = [];
  const open = async (servers: string[]): Promise<Client> => {
    const c = await connect({ servers, reconnectBackoffMsMax: 200, requestTimeoutMs: 10_000 });
    clients.push(c);
    return c;
  };
  let client = await open([addrs[0]!]);
  const subs = new Map<string, Consumer>();
  /** A next() an expectNone step left waiting, which the following receive takes over. */
  const pending = new Map<string, Promise<ReceivedMessage | null>>();
  const nextOf = (name: string): Promise<ReceivedMessage | null> => {
    const p = pending.get(name);
    pending.delete(name);
    return p ?? subs.get(name)!.next();
  };
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
  }

  async function runStep(step: Step): Promise<void> {
    switch (step.op) {
      case "connect": {
        const servers = (step.servers as (string | number)[]).map((x) =>
          x === "refused" ? refusedAddress() : addrs[x as number]!
        );
        client = await open(servers);
        return;
      }
      case "stopBroker":
        await killAll([procs[step.broker]!]);
        return;
      case "createTopic":
        await client.admin.createTopic(step.topic, {
          partitions: step.partitions,
          configs: step.configs ?? {},
        });
        return;
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
          const got: number[] = [];
          for (const m of step.messages as Step[]) {
            got.push(await partitionHolding(step.topic, m.key, step.expectPartitions.length));
          }
          assert.deepEqual(got, step.expectPartitions);
        }
        return;
      }
      case "publishEach":
        for (let n = 0; n < step.count; n++) {
          await client.publish(step.topic, { value: `${step.valuePrefix}${n}` });
        }
        return;
      case "subscribe": {
        const c = step.newClient ? await open([addrs[0]!]) : client;
        const sub = await c.subscribe(step.topic, {
          partition: step.partition ?? 0,
          from: step.from ?? "latest",
          ...(step.durable === undefined ? {} : { durable: step.durable }),
          ...(step.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: step.ackTimeoutMs }),
          ...(step.windowMessages === undefined ? {} : { windowMessages: step.windowMessages }),
          autoAck: step.noAcks === true,
        });
        subs.set(step.sub, sub);
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
      default:
        throw new Error(`unknown step op ${step.op}`);
    }
  }

  /** The partition of `topic` whose records include `key` (each key is published once). */
  async function partitionHolding(topic: string, key: string, partitions: number): Promise<number> {
    for (let p = 0; p < partitions; p++) {
      const msgs = await client.readPartition(topic, p, { from: "earliest" });
      if (msgs.some((m) => text(m.key) === key)) return p;
    }
    throw new Error(`no partition of ${topic} holds key ${key}`);
  }
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
