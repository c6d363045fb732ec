// Fan-out, side by side with core NATS in the same run: 10,000 subscribers of one topic (100
// connections of 100 subscriptions each, in a process of their own), and a publisher in another
// process that sends one message at a time. Each round reports how long the publish took to be
// acknowledged (GregorMQ: its PUBLISH answer; NATS: a flush, a round trip, as core NATS
// acknowledges nothing) and how long until all 10,000 subscriptions had it. Every round is
// printed, then the median and the worst of each; a round that does not reach everyone in time is
// a stall and fails the run.
//
//   deno task bench:fanout [--rounds N] [--subscribers N]

import { connect as natsConnect } from "nats";
import { connect } from "../src/client/mod.ts";
import { killAll, spawnBroker } from "../tests/_broker_process.ts";
import { Child } from "./_harness.ts";
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

/** Wall-clock milliseconds comparable between processes on this machine. */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

function intArg(name: string, fallback: number, max: number): number {
  const i = Deno.args.indexOf(name);
  const n = i < 0 ? fallback : Number(Deno.args[i + 1]);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    console.error(
      `usage: deno task bench:fanout [--rounds N] [--subscribers N] (${name} 1..${max})`,
    );
    Deno.exit(2);
  }
  return n;
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
    if (n === count) console.log(`all ${round} ${nowMs()}`);
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

  constructor(target: string, port: number, count: number) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
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

  stop(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
}

interface Round {
  ackMs: number;
  allMs: number;
}

/** Runs the rounds against one target; every round, or null on a stall. */
async function measure(
  target: "gregormq" | "nats",
  port: number,
  rounds: number,
  count: number,
): Promise<Round[] | null> {
  const subs = new SubscriberProcess(target, port, count);
  try {
    if (await subs.wait("ready", 120_000) === null) {
      throw new Error(`${target}: subscribers not ready`);
    }
    const results: Round[] = [];
    const gregor = target === "gregormq" ? await connect({ port }) : null;
    const nats = target === "nats" ? await natsConnect({ servers: `127.0.0.1:${port}` }) : null;
    // A warm-up message each side sees before timing starts.
    for (let round = -1; round < rounds; round++) {
      const t0 = nowMs();
      if (gregor !== null) await gregor.publish(TOPIC, { value: String(round) });
      else {
        nats!.publish(TOPIC, new TextEncoder().encode(String(round)));
        await nats!.flush();
      }
      const ackMs = nowMs() - t0;
      const line = await subs.wait(String(round), ROUND_MS_MAX);
      if (line === null) {
        console.log(`${target} round ${round}: not delivered to all within ${ROUND_MS_MAX} ms`);
        return null;
      }
      const allMs = Number(line.split(" ")[2]) - t0;
      if (round >= 0) {
        results.push({ ackMs, allMs });
        console.log(
          `${target} round ${round}: acknowledged ${ackMs.toFixed(2)} ms, all ${
            allMs.toFixed(1)
          } ms`,
        );
      }
    }
    await gregor?.close();
    await nats?.close();
    return results;
  } finally {
    subs.stop();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<number> {
  const rounds = intArg("--rounds", ROUNDS_DEFAULT, 1_000);
  const count = intArg("--subscribers", SUBSCRIBERS_DEFAULT, 100_000);
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-fanout-" });
  const broker = await spawnBroker(["--port", "0", "--no-metrics-enabled", "--data-dir", dataDir]);
  const nats = new Child("nats-server", "nats-server", ["-a", "127.0.0.1", "-p", "-1"]);
  try {
    const port = Number(broker.listen.listen.split(":").pop());
    const admin = await connect({ port });
    await admin.admin.createTopic(TOPIC, { partitions: 1 });
    await admin.close();
    const natsPort = await nats.ready(natsListenPort);
    const g = await measure("gregormq", port, rounds, count);
    const n = await measure("nats", natsPort, rounds, count);
    if (g === null || n === null) {
      console.log("fan-out: a round stalled");
      return 1;
    }
    const row = (name: string, rs: Round[]) =>
      `${name}: acknowledged median ${median(rs.map((r) => r.ackMs)).toFixed(2)} ms (worst ${
        Math.max(...rs.map((r) => r.ackMs)).toFixed(2)
      }), all ${count} median ${median(rs.map((r) => r.allMs)).toFixed(1)} ms (worst ${
        Math.max(...rs.map((r) => r.allMs)).toFixed(1)
      })`;
    console.log(row("GregorMQ", g));
    console.log(row("NATS core (flush)", n));
    const ackMed = median(g.map((r) => r.ackMs));
    const allMed = median(g.map((r) => r.allMs));
    console.log(
      `goals: acknowledged <= ${ACK_MS_GOAL} ms ${ackMed <= ACK_MS_GOAL ? "met" : "NOT met"}; ` +
        `all within ${ALL_MS_GOAL} ms ${allMed <= ALL_MS_GOAL ? "met" : "NOT met"}; ` +
        `delivery ${(allMed / median(n.map((r) => r.allMs))).toFixed(2)}x NATS`,
    );
    return 0;
  } finally {
    await killAll([broker]);
    await nats.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

if (Deno.args[0] === "--role") {
  await subscribers(Deno.args[2]!, Number(Deno.args[3]), Number(Deno.args[4]));
} else {
  Deno.exit(await main());
}
