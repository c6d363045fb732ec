// What a rebalance costs: a 4-member group consumes a topic with steady traffic on every
// partition; a fifth member joins; the harness measures, per partition, the longest gap between
// two deliveries around the join. A partition "stopped" if its gap is well over the normal one.
// Cooperative rebalancing aims for: only the partitions that move stop, and only briefly.
//
// `deno task bench:rebalance [--quick] [--json FILE]`. The broker runs as a separate process on
// 127.0.0.1 (memory topic); producer and members run in this process, each with its own connection.

import { parseArgs } from "node:util";
import { type Client, connect, type GroupConsumer } from "../src/client/mod.ts";
import { Child, listenPort, runHarness, sleep } from "./_harness.ts";

const USAGE = `usage: deno run -A bench/rebalance.ts [--quick] [--json FILE] [--partitions N]
  --quick          a fast smoke run (few partitions, short phases)
  --json FILE      also write the results as JSON to FILE
  --partitions N   partitions of the topic (default 16)`;

const HOST = "127.0.0.1";
/** Messages per second per partition: a delivery every 10 ms when nothing stops. */
const RATE_PER_PARTITION = 100;
/** A gap at least this long (and twice the partition's usual worst) counts as a stop, ms. */
const STOP_GAP_MS_MIN = 60;

interface Row {
  assignor: string;
  partitions: number;
  moved: number;
  stopped: number;
  stoppedNotMoved: number;
  stoppedFraction: number;
  pauseMsMedian: number;
  pauseMsMax: number;
  stableAfterMs: number;
}

const children: Child[] = [];

async function startBroker(): Promise<number> {
  const child = new Child("GregorMQ broker", Deno.execPath(), [
    "run",
    "-A",
    "cli/broker.ts",
    "--host",
    HOST,
    "--port",
    "0",
    "--persistence",
    "memory",
    "--data-dir",
    await Deno.makeTempDir({ prefix: "gregormq-rebalance-" }),
  ]);
  children.push(child);
  return await child.ready(listenPort);
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function scenario(
  port: number,
  assignor: "sticky" | "range" | "roundrobin",
  partitions: number,
  phaseMs: number,
): Promise<Row> {
  const topic = `rebalance-${assignor}`;
  const group = `g-${assignor}`;
  const admin = await connect({ host: HOST, port, clientId: "admin" });
  await admin.admin.createTopic(topic, { partitions });
  const stop = new AbortController();
  // Steady traffic: every partition gets RATE_PER_PARTITION messages per second.
  const producerClient = await connect({ host: HOST, port, clientId: "producer" });
  const producer = producerClient.producer();
  const producing = (async () => {
    const tickMs = 10;
    const perTick = Math.max(1, Math.round(RATE_PER_PARTITION * tickMs / 1000));
    while (!stop.signal.aborted) {
      for (let p = 0; p < partitions; p++) {
        for (let i = 0; i < perTick; i++) void producer.send(topic, { partition: p, value: "x" });
      }
      await sleep(tickMs, stop.signal).catch(() => {});
    }
  })();
  // Deliveries: for every partition, the times messages arrived (at whichever member).
  const arrivals: number[][] = Array.from({ length: partitions }, () => []);
  const clients: Client[] = [];
  const members: GroupConsumer[] = [];
  const consume = (g: GroupConsumer) =>
    (async () => {
      for await (const m of g) {
        arrivals[m.partition]!.push(performance.now());
        if (stop.signal.aborted) break;
      }
    })().catch(() => {});
  const loops: Promise<void>[] = [];
  const join = async (i: number) => {
    const c = await connect({ host: HOST, port, clientId: `member-${i}` });
    clients.push(c);
    const g = await c.groupConsumer(group, [topic], { assignor, reset: "latest" });
    members.push(g);
    loops.push(consume(g));
    return g;
  };
  for (let i = 0; i < 4; i++) await join(i);
  const stable = async () => {
    for (let i = 0; i < 500; i++) {
      const d = await admin.admin.describeGroup(group);
      if (d.state === "stable" && d.members.length === members.length) return;
      await sleep(10, stop.signal);
    }
    throw new Error(`group ${group} did not become stable`);
  };
  await stable();
  await sleep(phaseMs, stop.signal);
  const before = new Map<number, string>();
  for (const m of members) for (const tp of m.assignment()) before.set(tp.partition, m.memberId);
  const baselineStart = performance.now() - phaseMs;
  const joinAt = performance.now();
  await join(4);
  await stable();
  const stableAfterMs = performance.now() - joinAt;
  await sleep(phaseMs, stop.signal);
  const after = new Map<number, string>();
  for (const m of members) for (const tp of m.assignment()) after.set(tp.partition, m.memberId);
  stop.abort();

  let moved = 0;
  let stopped = 0;
  let stoppedNotMoved = 0;
  const pauses: number[] = [];
  for (let p = 0; p < partitions; p++) {
    const times = arrivals[p]!;
    const gapOver = (from: number, to: number) => {
      let worst = 0;
      let last = from;
      for (const t of times) {
        if (t < from) continue;
        if (t > to) break;
        worst = Math.max(worst, t - last);
        last = t;
      }
      return Math.max(worst, to - last);
    };
    const usual = gapOver(baselineStart, joinAt);
    const during = gapOver(joinAt, joinAt + stableAfterMs + phaseMs);
    const isMoved = before.get(p) !== after.get(p);
    const isStopped = during >= Math.max(STOP_GAP_MS_MIN, 2 * usual);
    if (isMoved) {
      moved++;
      pauses.push(during);
    }
    if (isStopped) stopped++;
    if (isStopped && !isMoved) stoppedNotMoved++;
  }
  for (const g of members) await g.close().catch(() => {});
  for (const c of clients) await c.close().catch(() => {});
  await producing;
  await producerClient.close().catch(() => {});
  await Promise.allSettled(loops);
  await admin.close();
  return {
    assignor,
    partitions,
    moved,
    stopped,
    stoppedNotMoved,
    stoppedFraction: stopped / partitions,
    pauseMsMedian: Math.round(median(pauses)),
    pauseMsMax: Math.round(Math.max(0, ...pauses)),
    stableAfterMs: Math.round(stableAfterMs),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean" },
      json: { type: "string" },
      partitions: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const partitions = Number(values.partitions ?? (values.quick ? 8 : 16));
  const phaseMs = values.quick ? 1_000 : 3_000;
  const port = await startBroker();
  const rows: Row[] = [];
  for (const assignor of ["sticky", "roundrobin", "range"] as const) {
    rows.push(await scenario(port, assignor, partitions, phaseMs));
  }
  console.log(
    `One member joins a 4-member group; ${partitions} partitions at ${RATE_PER_PARTITION} msg/s each.`,
  );
  console.log(
    "assignor    moved  stopped  stopped-not-moved  stopped-fraction  pause-median  pause-max  stable-after",
  );
  for (const r of rows) {
    console.log(
      `${r.assignor.padEnd(10)} ${String(r.moved).padStart(6)} ${String(r.stopped).padStart(8)} ${
        String(r.stoppedNotMoved).padStart(18)
      } ${(100 * r.stoppedFraction).toFixed(0).padStart(16)}% ${
        String(r.pauseMsMedian).padStart(10)
      } ms ${String(r.pauseMsMax).padStart(7)} ms ${String(r.stableAfterMs).padStart(9)} ms`,
    );
  }
  if (values.json !== undefined) {
    await Deno.writeTextFile(values.json, JSON.stringify({ rows }, null, 2) + "\n");
  }
}

await runHarness("rebalance", main, async () => {
  await Promise.all(children.map((c) => c.stop()));
});
