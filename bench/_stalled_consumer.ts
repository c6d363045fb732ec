// A subscriber in its own process for bench/suite.ts's memory scenario: it subscribes, prints
// "ready", and reads; the suite then stops it with SIGSTOP, so its socket fills up and the broker
// has to hold (or drop) what it cannot deliver — a stalled consumer, for GregorMQ or NATS alike.
// `deno run -A bench/_stalled_consumer.ts gregormq|nats PORT TOPIC`

import { connect as connectGregor } from "../src/client/mod.ts";

/** Messages the GregorMQ subscription may have in flight: the broker's credit ceiling. */
const WINDOW_MESSAGES = 1_000_000;
/** The process ends by itself after this long, should the suite fail to stop it, ms. */
const LIFETIME_MS_MAX = 10 * 60_000;

async function main(): Promise<void> {
  const [system, portText, topic] = Deno.args;
  const port = Number(portText);
  if (topic === undefined || !Number.isInteger(port)) {
    throw new Error("usage: bench/_stalled_consumer.ts gregormq|nats PORT TOPIC");
  }
  setTimeout(() => Deno.exit(0), LIFETIME_MS_MAX);
  if (system === "gregormq") {
    const client = await connectGregor({ host: "127.0.0.1", port, clientId: "stalled-consumer" });
    const consumer = await client.subscribe(topic, {
      from: "latest",
      autoAck: true,
      windowMessages: WINDOW_MESSAGES,
      windowBytes: 64 * 1024 * 1024,
    });
    console.log("ready");
    for await (const _ of consumer) { /* read until stopped */ }
  } else if (system === "nats") {
    const { connect } = await import("nats");
    const nc = await connect({ servers: `127.0.0.1:${port}`, name: "stalled-consumer" });
    const sub = nc.subscribe(topic);
    await nc.flush();
    console.log("ready");
    for await (const _ of sub) { /* read until stopped */ }
  } else {
    throw new Error(`Unknown system ${system}: gregormq or nats`);
  }
}

await main();
