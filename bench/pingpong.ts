// Ping-pong, one message at a time, side by side with core NATS in the same run (issue [N]: the
// single-message path). The pinger, in this process, publishes "ping" and waits until the echo, a
// process of its own, has received it and published "pong", and the pong has reached the pinger;
// then the next ping leaves. A round trip is two publish → deliver hops through the server, each
// from one user process to another, as between two services. Topics are in memory (core NATS
// stores nothing).
//
// Every run prints its round-trip p50 / p99 / p99.9 / worst; the verdict compares medians of the
// runs' p50s. A round trip that does not come back within ROUND_MS_MAX is a stall and fails the run.
//
//   deno task bench:pingpong [--runs N] [--rounds N] [--broker-cpu-prof DIR]

import { connect as natsConnect, type NatsConnection } from "nats";
import { connect } from "../src/client/mod.ts";
import { spawnBroker, stopBroker } from "../tests/_broker_process.ts";
import { Child, countArg, median, percentile } from "./_harness.ts";
import { natsListenPort } from "./_nats.ts";

const RUNS_DEFAULT = 3;
const ROUNDS_DEFAULT = 5_000;
/** Round trips before each run's timing starts. */
const WARMUP_ROUNDS = 500;
/** A round trip not back by then is a stall, ms. */
const ROUND_MS_MAX = 5_000;
const PING = "ping";
const PONG = "pong";
const USAGE = "usage: deno task bench:pingpong [--runs N] [--rounds N] [--broker-cpu-prof DIR]";

type Target = "gregormq" | "nats";

/** The whole number after `name` on the command line, 1..max; `fallback` without the flag. */
function intArg(name: string, fallback: number, max: number): number {
  return countArg(Deno.args, name, fallback, max, USAGE);
}

/** The echo process: every ping it receives goes back as a pong with the same payload. */
async function echo(target: Target, port: number): Promise<void> {
  if (target === "gregormq") {
    const client = await connect({ port });
    const pings = await client.subscribe(PING, { from: "latest" });
    console.log("ready");
    for await (const m of pings) {
      m.ack();
      // Not awaited: the pong is delivered once stored, whether or not this side has its answer.
      client.publish(PONG, { value: m.value }).catch((err) => {
        console.error(`echo: ${err}`);
        Deno.exit(1);
      });
    }
    return;
  }
  const nc = await natsConnect({ servers: `127.0.0.1:${port}` });
  nc.subscribe(PING, { callback: (_err, m) => nc.publish(PONG, m.data) });
  await nc.flush();
  console.log("ready");
  await new Promise(() => {});
}

/** The pinger's side of one target: send a ping, resolve when its pong arrives. */
interface Pinger {
  ping(round: number): Promise<void>;
  close(): Promise<void>;
}

/** Resolves the waiting round when its pong arrives; anything else is a bug in the bench. */
class PongWaiter {
  #round = -1;
  #resolve: (() => void) | null = null;

  expect(round: number): Promise<void> {
    this.#round = round;
    return new Promise((resolve) => (this.#resolve = resolve));
  }

  got(bytes: Uint8Array): void {
    const round = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0);
    if (round !== this.#round || this.#resolve === null) {
      throw new Error(`pong ${round} while waiting for ${this.#round}`);
    }
    const r = this.#resolve;
    this.#resolve = null;
    r();
  }
}

function encodeRound(round: number): Uint8Array {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint32(0, round);
  return b;
}

async function pinger(target: Target, port: number): Promise<Pinger> {
  const waiter = new PongWaiter();
  if (target === "gregormq") {
    const client = await connect({ port });
    const pongs = await client.subscribe(PONG, { from: "latest" });
    const reading = (async () => {
      for await (const m of pongs) {
        m.ack();
        waiter.got(m.value ?? new Uint8Array(0));
      }
    })();
    return {
      ping: (round) => {
        const back = waiter.expect(round);
        client.publish(PING, { value: encodeRound(round) }).catch((err) => {
          throw new Error(`ping ${round}: ${err}`);
        });
        return back;
      },
      close: async () => {
        await client.close();
        await reading.catch(() => {});
      },
    };
  }
  const nc: NatsConnection = await natsConnect({ servers: `127.0.0.1:${port}` });
  nc.subscribe(PONG, { callback: (_err, m) => waiter.got(m.data) });
  await nc.flush();
  return {
    ping: (round) => {
      const back = waiter.expect(round);
      nc.publish(PING, encodeRound(round));
      return back;
    },
    close: () => nc.close(),
  };
}

/** Starts the echo process for `target` and waits for its "ready". */
async function startEcho(target: Target, port: number): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--role", "echo", target, String(port)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${target} echo ended before it was ready`);
    text += value;
  }
  reader.releaseLock();
  return child;
}

/** Round trips of one run in µs, or null on a stall. */
async function run(target: Target, port: number, rounds: number): Promise<number[] | null> {
  const echoChild = await startEcho(target, port);
  const p = await pinger(target, port);
  try {
    const rtts: number[] = [];
    for (let round = 0; round < WARMUP_ROUNDS + rounds; round++) {
      const t0 = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<"stall">((
        r,
      ) => (timer = setTimeout(() => r("stall"), ROUND_MS_MAX)));
      const outcome = await Promise.race([p.ping(round), stalled]);
      clearTimeout(timer);
      if (outcome === "stall") {
        console.log(`${target} round ${round}: no pong within ${ROUND_MS_MAX} ms`);
        return null;
      }
      if (round >= WARMUP_ROUNDS) rtts.push((performance.now() - t0) * 1000);
    }
    return rtts;
  } finally {
    await p.close();
    try {
      echoChild.kill("SIGKILL");
    } catch { /* already gone */ }
    await echoChild.status;
  }
}

async function main(): Promise<number> {
  const runs = intArg("--runs", RUNS_DEFAULT, 100);
  const rounds = intArg("--rounds", ROUNDS_DEFAULT, 1_000_000);
  const profAt = Deno.args.indexOf("--broker-cpu-prof");
  const profDir = profAt < 0 ? null : Deno.args[profAt + 1] ?? null;
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-pingpong-" });
  const broker = await spawnBroker(
    ["--port", "0", "--no-metrics-enabled", "--data-dir", dataDir],
    { denoFlags: profDir === null ? [] : ["--cpu-prof", `--cpu-prof-dir=${profDir}`] },
  );
  let nats: Child | null = null;
  try {
    nats = new Child("nats-server", "nats-server", ["-a", "127.0.0.1", "-p", "-1"]);
    const port = Number(broker.listen.listen.split(":").pop());
    const admin = await connect({ port });
    for (const topic of [PING, PONG]) {
      await admin.admin.createTopic(topic, { partitions: 1, configs: { persistence: "memory" } });
    }
    await admin.close();
    const ports: Record<Target, number> = {
      gregormq: port,
      nats: await nats.ready(natsListenPort),
    };
    const p50s: Record<Target, number[]> = { gregormq: [], nats: [] };
    // Runs alternate between the two, so a change in the machine's load hits both.
    for (let r = 1; r <= runs; r++) {
      for (const target of ["gregormq", "nats"] as const) {
        const rtts = await run(target, ports[target], rounds);
        if (rtts === null) return 1;
        const s = rtts.sort((a, b) => a - b);
        p50s[target].push(percentile(s, 0.5));
        console.log(
          `${target.padEnd(8)} run ${r}: ${rounds} round trips, µs p50 ${
            percentile(s, 0.5).toFixed(0)
          }` +
            ` / p99 ${percentile(s, 0.99).toFixed(0)} / p99.9 ${percentile(s, 0.999).toFixed(0)}` +
            ` / worst ${s[s.length - 1]!.toFixed(0)}`,
        );
      }
    }
    const g = median(p50s.gregormq);
    const n = median(p50s.nats);
    console.log(
      `ping-pong round trip, median of the runs' p50: GregorMQ ${g.toFixed(0)} µs, NATS core ` +
        `${n.toFixed(0)} µs, ${(g / n).toFixed(2)}x; goal <= NATS core ${
          g <= n ? "met" : "NOT met"
        }`,
    );
    console.log(`load average: ${Deno.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
    return 0;
  } finally {
    await stopBroker(broker, profDir !== null);
    await nats?.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

if (Deno.args[0] === "--role") {
  await echo(Deno.args[2] as Target, Number(Deno.args[3]));
} else {
  Deno.exit(await main());
}
