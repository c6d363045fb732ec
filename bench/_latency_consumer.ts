// The latency section's consumer (bench/suite.ts, section 3), a process of its own so that its
// garbage collection and the producer's are told apart from the server's work, as between two
// services. It subscribes, prints "ready", takes the latency of every message (the message carries
// its send time, wall-clock milliseconds comparable between processes on one machine), and once it
// reads "sent N" on stdin and has N messages, or the drain time has passed, prints one JSON line
// (LatencyReport) and exits. Meanwhile it records its own event-loop stalls: a 1 ms timer that
// fires late by more than STALL_MS means this process could not have taken a message then either.
//
//   deno run -A bench/_latency_consumer.ts gregormq|nats PORT TOPIC DRAIN_MS

import { connect as natsConnect } from "nats";
import { connect } from "../src/client/mod.ts";
import { percentile, wallMs } from "./_harness.ts";

/** A timer this late means the process stalled (a garbage collection, a long task), ms. */
export const STALL_MS = 3;
/** Tail samples reported at most (the slowest first). */
const TAIL_MAX = 20_000;
/** Stalls recorded at most. */
const STALLS_MAX = 100_000;

/** What the consumer reports. Times are wall-clock ms (performance.timeOrigin + now). */
export interface LatencyReport {
  received: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** [sent, received] of every message at or above the p99, the slowest first. */
  tail: [number, number][];
  /** [from, to] of each of this process's stalls. */
  stalls: [number, number][];
}

/** The send time a latency message carries in its first 8 bytes. */
export function stampOf(v: Uint8Array): number {
  return new DataView(v.buffer, v.byteOffset, v.byteLength).getFloat64(0, true);
}

/** Records the process's event-loop stalls until `stop()`. */
export class StallWatch {
  readonly stalls: [number, number][] = [];
  #last = wallMs();
  #timer: ReturnType<typeof setTimeout> | null = null;

  start(): void {
    this.#last = wallMs();
    this.#tick();
  }

  #tick(): void {
    this.#timer = setTimeout(() => {
      this.note();
      this.#tick();
    }, 1);
  }

  /** Call from a loop that wakes every millisecond or so: records a gap over STALL_MS. */
  note(): void {
    const now = wallMs();
    if (now - this.#last > 1 + STALL_MS && this.stalls.length < STALLS_MAX) {
      this.stalls.push([this.#last, now]);
    }
    this.#last = now;
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
  }
}

async function main(): Promise<void> {
  const [target, portText, topic, drainText] = Deno.args;
  const port = Number(portText);
  const drainMs = Number(drainText);
  let sentAt: number[] = [];
  let receivedAt: number[] = [];
  const take = (value: Uint8Array) => {
    sentAt.push(stampOf(value));
    receivedAt.push(wallMs());
  };
  let close: () => Promise<void>;
  if (target === "gregormq") {
    const client = await connect({ host: "127.0.0.1", port, clientId: "bench-latency-consumer" });
    const consumer = await client.subscribe(topic!, {
      from: "latest",
      autoAck: true,
      windowMessages: 10_000,
    });
    const reading = (async () => {
      for await (const m of consumer) take(m.value!);
    })();
    close = async () => {
      await consumer.close();
      await reading;
      await client.close();
    };
  } else {
    const nc = await natsConnect({
      servers: `127.0.0.1:${port}`,
      name: "bench-latency-subscriber",
    });
    nc.subscribe(topic!, { callback: (_err, m) => take(m.data) });
    await nc.flush();
    close = () => nc.close();
  }
  const watch = new StallWatch();
  watch.start();
  console.log("ready");

  // "sent N" on stdin: how many to wait for.
  let sent = Infinity;
  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) break;
    text += value;
  }
  const m = /^sent (\d+)/.exec(text);
  if (m !== null) sent = Number(m[1]);
  const deadline = performance.now() + drainMs;
  while (sentAt.length < sent && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  watch.stop();
  await close();

  const n = sentAt.length;
  const lat = new Float64Array(n);
  for (let i = 0; i < n; i++) lat[i] = receivedAt[i]! - sentAt[i]!;
  const sorted = lat.slice().sort();
  const p99 = percentile(sorted, 0.99);
  const tail: [number, number][] = [];
  for (let i = 0; i < n; i++) if (lat[i]! >= p99) tail.push([sentAt[i]!, receivedAt[i]!]);
  tail.sort((a, b) => (b[1] - b[0]) - (a[1] - a[0]));
  sentAt = [];
  receivedAt = [];
  const report: LatencyReport = {
    received: n,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: p99,
    p999Ms: percentile(sorted, 0.999),
    maxMs: sorted[n - 1] ?? NaN,
    tail: tail.slice(0, TAIL_MAX),
    stalls: watch.stalls,
  };
  console.log(JSON.stringify(report));
}

if (import.meta.main) await main();
