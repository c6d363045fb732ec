// The TypeScript client's side of the SDK benchmarks (bench/go_sdk.ts, python_sdk.ts, java_sdk.ts):
// one run of produce, or produce→consume, of `count` messages of `size` bytes to a fresh memory
// topic, with at most `window` unconfirmed, as each SDK's own side does it.

import { connect } from "../src/client/mod.ts";

/** What one TypeScript run does. */
export interface TsRunOptions {
  /** The broker, "host:port". */
  server: string;
  topic: string;
  /** Also consume every message (produce→consume), or only produce. */
  consume: boolean;
  count: number;
  window: number;
  size: number;
  lingerMs: number;
}

/** Messages per second of one run. */
export async function tsClientRun(o: TsRunOptions): Promise<number> {
  const { server, topic, consume, count, window, size } = o;
  const client = await connect({ servers: [server] });
  try {
    await client.admin.createTopic(topic, { partitions: 1, configs: { persistence: "memory" } });
    const value = new Uint8Array(size).map((_, i) => 97 + i % 26);
    const producer = client.producer({ lingerMs: o.lingerMs });
    const sub = consume
      ? await client.subscribe(topic, { from: "earliest", autoAck: true, windowMessages: window })
      : null;
    let outstanding = 0;
    let wake: (() => void) | null = null;
    const release = () => {
      outstanding--;
      wake?.();
      wake = null;
    };
    const start = performance.now();
    const reader = sub === null ? null : (async () => {
      for (let n = 0; n < count; n++) {
        await sub.next();
        release();
      }
    })();
    const sends: Promise<number>[] = [];
    for (let n = 0; n < count; n++) {
      while (outstanding >= window) await new Promise<void>((r) => wake = r);
      outstanding++;
      const p = producer.send(topic, { value });
      sends.push(consume ? p : p.then((o) => (release(), o)));
    }
    await Promise.all(sends);
    await reader;
    const seconds = (performance.now() - start) / 1000;
    await producer.close();
    await sub?.close();
    return count / seconds;
  } finally {
    await client.close();
  }
}
