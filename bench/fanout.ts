// Fan-out, side by side with core NATS in the same run: 10,000 subscribers of one topic (100
// connections of 100 subscriptions each, in a process of their own), and a publisher in another
// process that sends one message at a time. Each round reports how long the publish took to be
// acknowledged (GregorMQ: its PUBLISH answer; NATS: a flush, a round trip, as core NATS
// acknowledges nothing) and how long until all 10,000 subscriptions had it. Every round is
// printed, then the median and the worst of each; a round that does not reach everyone in time is
// a stall and fails the run.
//
// Each round also publishes to an unrelated topic once the fan-out has arrived and settled, so the
// cost of a publish beside 10,000 idle subscribers is measured too, against the same publish before any
// subscriber existed (issue [N]: that cost should not depend on how many subscribers are idle).
//
//   deno task bench:fanout [--rounds N] [--subscribers N] [--broker-cpu-prof DIR]
//                          [--subscribers-cpu-prof DIR]

import { connect as natsConnect } from "nats";
import { connect } from "../src/client/mod.ts";
import { spawnBroker, stopBroker } from "../tests/_broker_process.ts";
import { Child, countArg, median, wallMs } from "./_harness.ts";
import { natsListenPort } from "./_nats.ts";

const ROUNDS_DEFAULT = 20;
const SUBSCRIBERS_DEFAULT = 10_000;
/** Subscriptions per subscriber connection. */
const PER_CONNECTION = 100;
/** Issue [N]'s targets: a publish acknowledged within, and delivered to all within, ms. */
const ACK_MS_GOAL = 5;
const ALL_MS_GOAL = 100;
/** A round not delivered to everyone by then is a stall, ms. */
const ROUND_MS_MAX = 10_000;
const TOPIC = "fanout";
/** Wait after a round before the publish beside idle subscribers, ms. */
const SETTLE_MS = 200;
/** A topic nobody subscribes to: its publishes time the cost of a publish beside idle subscribers. */
const UNRELATED = "unrelated";

const USAGE = "usage: deno task bench:fanout [--rounds N] [--subscribers N] " +
  "[--broker-cpu-prof DIR] [--subscribers-cpu-prof DIR]";

/** The whole number after `name` on the command line, 1..max; `fallback` without the flag. */
function intArg(name: string, fallback: number, max: number): number {
  return countArg(Deno.args, name, fallback, max, USAGE);
}

/** The directory given after `name`, or null without the flag. */
function dirArg(name: string): string | null {
  const i = Deno.args.indexOf(name);
  if (i < 0) return null;
  const dir = Deno.args[i + 1];
  if (dir === undefined || dir.startsWith("--")) {
    console.error(`${USAGE} (${name} needs a directory)`);
    Deno.exit(2);
  }
  return dir;
}

/** V8's profiler flags for a child process that writes its profile into `dir`. */
function profFlags(dir: string | null): string[] {
  return dir === null ? [] : ["--cpu-prof", `--cpu-prof-dir=${dir}`];
}

/**
 * The subscriber process: opens the subscriptions, says "ready", and for each message prints
 * "all <round> <time>" once every subscription has it.
 */
async function subscribers(target: string, port: number, count: number): Promise<void> {
  const seen = new Map<number, number>();
  const got = (round: number) => {
    const n = (seen.get(round) ?? 0) + 1;
    seen.set(round, n);
    if (n === count) console.log(`all ${round} ${wallMs()}`);
  };
  const connections = Math.ceil(count / PER_CONNECTION);
  for (let c = 0; c < connections; c++) {
    const subs = Math.min(PER_CONNECTION, count - c * PER_CONNECTION);
    if (target === "gregormq") {
      const client = await connect({ port });
      for (let s = 0; s < subs; s++) {
        const sub = await client.subscribe(TOPIC, { from: "latest" });
        void (async () => {
          for await (const m of sub) {
            m.ack();
            got(Number(m.text()));
          }
        })();
      }
    } else {
      const nc = await natsConnect({ servers: `127.0.0.1:${port}` });
      for (let s = 0; s < subs; s++) {
        nc.subscribe(TOPIC, {
          callback: (_err, m) => got(Number(new TextDecoder().decode(m.data))),
        });
      }
      await nc.flush();
    }
  }
  console.log("ready");
  await new Promise(() => {});
}

/** Reads the subscriber process's lines: resolves "ready", then each round's delivery time. */
class SubscriberProcess {
  readonly #child: Deno.ChildProcess;
  readonly #waiting = new Map<string, (line: string) => void>();
  readonly #early = new Map<string, string>();

  readonly #profiled: boolean;

  constructor(target: string, port: number, count: number, profDir: string | null) {
    this.#profiled = profDir !== null;
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        ...profFlags(profDir),
        new URL(import.meta.url).pathname,
        "--role",
        "subscribers",
        target,
        String(port),
        String(count),
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    void this.#read(this.#child.stdout);
  }

  async #read(stdout: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    for await (const chunk of stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        const key = line.startsWith("all ") ? line.split(" ")[1]! : line;
        const w = this.#waiting.get(key);
        if (w !== undefined) w(line);
        else this.#early.set(key, line);
      }
    }
  }

  /** The line keyed `key` ("ready", or a round number), within `ms`. */
  wait(key: string, ms: number): Promise<string | null> {
    const early = this.#early.get(key);
    if (early !== undefined) return Promise.resolve(early);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(null), ms);
      this.#waiting.set(key, (line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  }

  /** Ends the process; a profiled one gets SIGTERM so V8 writes its profile first. */
  async stop(): Promise<void> {
    try {
      this.#child.kill(this.#profiled ? "SIGTERM" : "SIGKILL");
    } catch { /* already gone */ }
    await this.#child.status.catch(() => {});
  }
}

interface Round {
  ackMs: number;
  allMs: number;
  /** A publish to the unrelated topic once the round's fan-out had arrived, acknowledged in ms. */
  unrelatedMs: number;
}

/** One side's publisher: GregorMQ's client or a NATS connection. */
interface Publisher {
  /** Publishes `value` to `topic`; resolves once acknowledged (NATS: flushed). */
  publish(topic: string, value: string): Promise<void>;
  close(): Promise<void>;
}

async function publisher(target: "gregormq" | "nats", port: number): Promise<Publisher> {
  if (target === "gregormq") {
    const c = await connect({ port });
    return {
      publish: async (topic, value) => void await c.publish(topic, { value }),
      close: () => c.close(),
    };
  }
  const nc = await natsConnect({ servers: `127.0.0.1:${port}` });
  return {
    publish: (topic, value) => {
      nc.publish(topic, new TextEncoder().encode(value));
      return nc.flush();
    },
    close: () => nc.close(),
  };
}

/** Ms until `pub` has `value` acknowledged on `topic`. */
async function timed(pub: Publisher, topic: string, value: string): Promise<number> {
  const t0 = wallMs();
  await pub.publish(topic, value);
  return wallMs() - t0;
}

/** One side's results: the unrelated publishes before any subscriber, then every round. */
interface Side {
  unrelatedBeforeMs: number[];
  rounds: Round[];
}

/** Runs the rounds against one target; every round, or null on a stall. */
async function measure(
  target: "gregormq" | "nats",
  port: number,
  rounds: number,
  count: number,
  profDir: string | null,
): Promise<Side | null> {
  const pub = await publisher(target, port);
  const unrelatedBeforeMs: number[] = [];
  // The warm-up publish is not counted, as below.
  for (let round = -1; round < rounds; round++) {
    const ms = await timed(pub, UNRELATED, String(round));
    if (round < 0) continue;
    unrelatedBeforeMs.push(ms);
    console.log(`${target} unrelated ${round}, no subscribers: acknowledged ${ms.toFixed(2)} ms`);
  }
  const subs = new SubscriberProcess(target, port, count, profDir);
  try {
    if (await subs.wait("ready", 120_000) === null) {
      throw new Error(`${target}: subscribers not ready`);
    }
    const results: Round[] = [];
    // A warm-up message each side sees before timing starts.
    for (let round = -1; round < rounds; round++) {
      const t0 = wallMs();
      await pub.publish(TOPIC, String(round));
      const ackMs = wallMs() - t0;
      const line = await subs.wait(String(round), ROUND_MS_MAX);
      if (line === null) {
        console.log(`${target} round ${round}: not delivered to all within ${ROUND_MS_MAX} ms`);
        return null;
      }
      const allMs = Number(line.split(" ")[2]) - t0;
      // The subscribers' acknowledgements are still coming in when the last delivery arrives:
      // once they are done, the subscribers are idle.
      await new Promise((r) => setTimeout(r, SETTLE_MS));
      const unrelatedMs = await timed(pub, UNRELATED, String(round));
      if (round >= 0) {
        results.push({ ackMs, allMs, unrelatedMs });
        console.log(
          `${target} round ${round}: acknowledged ${ackMs.toFixed(2)} ms, all ${
            allMs.toFixed(1)
          } ms; unrelated topic acknowledged ${unrelatedMs.toFixed(2)} ms`,
        );
      }
    }
    return { unrelatedBeforeMs, rounds: results };
  } finally {
    await pub.close();
    await subs.stop();
  }
}

/** "median M ms (worst W)" of `xs`. */
function summary(xs: number[], digits: number): string {
  return `median ${median(xs).toFixed(digits)} ms (worst ${Math.max(...xs).toFixed(digits)})`;
}

async function main(): Promise<number> {
  const rounds = intArg("--rounds", ROUNDS_DEFAULT, 1_000);
  const count = intArg("--subscribers", SUBSCRIBERS_DEFAULT, 100_000);
  const brokerProf = dirArg("--broker-cpu-prof");
  const subscribersProf = dirArg("--subscribers-cpu-prof");
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-fanout-" });
  const broker = await spawnBroker(
    ["--port", "0", "--no-metrics-enabled", "--data-dir", dataDir],
    { denoFlags: profFlags(brokerProf) },
  );
  const nats = new Child("nats-server", "nats-server", ["-a", "127.0.0.1", "-p", "-1"]);
  try {
    const port = Number(broker.listen.listen.split(":").pop());
    const admin = await connect({ port });
    await admin.admin.createTopic(TOPIC, { partitions: 1 });
    await admin.admin.createTopic(UNRELATED, { partitions: 1 });
    await admin.close();
    const natsPort = await nats.ready(natsListenPort);
    const g = await measure("gregormq", port, rounds, count, subscribersProf);
    const n = await measure("nats", natsPort, rounds, count, null);
    if (g === null || n === null) {
      console.log("fan-out: a round stalled");
      return 1;
    }
    const row = (name: string, side: Side) =>
      `${name}: acknowledged ${summary(side.rounds.map((r) => r.ackMs), 2)}, all ${count} ${
        summary(side.rounds.map((r) => r.allMs), 1)
      }; unrelated topic with no subscribers ${
        summary(side.unrelatedBeforeMs, 2)
      }, beside ${count} idle ${summary(side.rounds.map((r) => r.unrelatedMs), 2)}`;
    console.log(row("GregorMQ", g));
    console.log(row("NATS core (flush)", n));
    const ackMed = median(g.rounds.map((r) => r.ackMs));
    const allMed = median(g.rounds.map((r) => r.allMs));
    console.log(
      `goals: acknowledged <= ${ACK_MS_GOAL} ms ${ackMed <= ACK_MS_GOAL ? "met" : "NOT met"}; ` +
        `all within ${ALL_MS_GOAL} ms ${allMed <= ALL_MS_GOAL ? "met" : "NOT met"}; ` +
        `delivery ${(allMed / median(n.rounds.map((r) => r.allMs))).toFixed(2)}x NATS`,
    );
    console.log(`load average: ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    return 0;
  } finally {
    await stopBroker(broker, brokerProf !== null);
    await nats.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

if (Deno.args[0] === "--role") {
  // A profiled subscriber process is stopped by SIGTERM and must exit normally to write its profile.
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
  await subscribers(Deno.args[2]!, Number(Deno.args[3]), Number(Deno.args[4]));
} else {
  Deno.exit(await main());
}
