// NATS peers for bench/suite.ts: nats-server with JetStream file storage, a three-server JetStream
// cluster joined by routes, and publishing to a stream with acknowledgements.

import type { NatsConnection } from "nats";
import { Child, sleep, STARTUP_MS_MAX, withTimeout } from "./_harness.ts";
import {
  children,
  HOST,
  type NatsConnect,
  ProgressWatch,
  type Run,
  runOf,
  sendLoop,
  type Settings,
  Window,
} from "./throughput.ts";

/** JetStream publishes awaiting their acknowledgement at most, as in the reference. */
export const JS_IN_FLIGHT_MAX = 1_000;
/** A fresh JetStream cluster gets this long to elect its meta leader and accept a stream, ms. */
export const JS_CLUSTER_READY_MS_MAX = 30_000;

/** The client port from nats-server's log, or null for any other line. */
export function natsListenPort(line: string): number | null {
  const m = /Listening for client connections on [^\s]*:(\d+)/.exec(line);
  return m === null ? null : Number(m[1]);
}

/** A port free at the time of asking (the server binding it later may, rarely, lose a race). */
export function freePort(): number {
  const l = Deno.listen({ hostname: HOST, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts nats-server with JetStream storing into `storeDir`; resolves with its client port. */
export async function startJetStream(
  path: string,
  storeDir: string,
): Promise<{ child: Child; port: number }> {
  const child = new Child("nats-server -js", path, [
    "-a",
    HOST,
    "-p",
    "-1",
    "-js",
    "-sd",
    storeDir,
  ]);
  children.add(child);
  return { child, port: await child.ready(natsListenPort) };
}

/**
 * Starts three nats-servers with JetStream, routed to each other as one cluster; resolves with
 * their client ports once all three listen (the caller waits for the meta leader).
 */
export async function startJetStreamCluster(
  path: string,
  storeDir: string,
): Promise<{ nodes: Child[]; ports: number[] }> {
  const clusterPorts = [freePort(), freePort(), freePort()];
  const routes = clusterPorts.map((p) => `nats://${HOST}:${p}`).join(",");
  const nodes: Child[] = [];
  const ports: number[] = [];
  for (let i = 0; i < 3; i++) {
    const child = new Child(`nats-server cluster node ${i}`, path, [
      ...["-a", HOST, "-p", "-1", "-js", "-sd", `${storeDir}/n${i}`, "-n", `bench-n${i}`],
      ...["--cluster_name", "bench", "--cluster", `nats://${HOST}:${clusterPorts[i]}`],
      ...["--routes", routes],
    ]);
    children.add(child);
    nodes.push(child);
    ports.push(await child.ready(natsListenPort));
  }
  return { nodes, ports };
}

/**
 * Adds a file-storage stream on `subject` with `replicas`, retrying while a fresh cluster has no
 * meta leader yet, for at most JS_CLUSTER_READY_MS_MAX.
 */
export async function addFileStream(
  nc: NatsConnection,
  opts: { name: string; subject: string; replicas: number },
): Promise<void> {
  const { StorageType } = await import("nats");
  const deadline = performance.now() + JS_CLUSTER_READY_MS_MAX;
  for (;;) {
    try {
      const jsm = await nc.jetstreamManager({ timeout: 5_000 });
      await jsm.streams.add({
        name: opts.name,
        subjects: [opts.subject],
        storage: StorageType.File,
        num_replicas: opts.replicas,
      });
      return;
    } catch (err) {
      if (performance.now() > deadline) {
        throw new Error(
          `Cannot add JetStream stream ${opts.name} (${opts.replicas} replicas) within ` +
            `${JS_CLUSTER_READY_MS_MAX} ms: ${(err as Error).message}`,
        );
      }
      await sleep(250, new AbortController().signal);
    }
  }
}

/**
 * Publishes `value` to a stream's `subject` with at most JS_IN_FLIGHT_MAX unacknowledged, until
 * `settings.messagesMax` or `settings.sendMsMax`; resolves with acknowledged messages per second.
 */
export async function jetStreamPublish(
  nc: NatsConnection,
  opts: { subject: string; value: Uint8Array; settings: Settings },
): Promise<Run> {
  const { subject, value, settings } = opts;
  const js = nc.jetstream();
  const acks = new Window(JS_IN_FLIGHT_MAX);
  const acked = (): void => acks.confirm(1);
  const failed = (err: unknown): void => acks.fail(err);
  const start = performance.now();
  const watch = new ProgressWatch([acks]);
  let sent = 0;
  try {
    sent = await sendLoop(settings, {
      windows: [acks],
      send: () => {
        acks.sent();
        js.publish(subject, value).then(acked, failed);
      },
    });
    await acks.drained(settings.drainMsMax);
  } finally {
    watch.stop();
  }
  const scenario = { name: `JetStream publish to ${subject}`, mode: "produce" as const };
  return runOf({ ...scenario, payloadBytes: value.length }, {
    messages: sent,
    confirmed: acks.confirmed,
    seconds: (performance.now() - start) / 1000,
    longestGapMs: watch.stop(),
  });
}

/** Per-message times of synchronous publishes (each awaited before the next), ms. */
export async function jetStreamSyncPublish(
  nc: NatsConnection,
  opts: { subject: string; value: Uint8Array; messagesMax: number; msMax: number },
): Promise<number[]> {
  const js = nc.jetstream();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < opts.messagesMax && performance.now() - start < opts.msMax) {
    const t0 = performance.now();
    await withTimeout(js.publish(opts.subject, opts.value), STARTUP_MS_MAX);
    times.push(performance.now() - t0);
  }
  return times;
}

/** Connects with npm:nats to `port` on HOST. */
export function natsAt(connect: NatsConnect, port: number, name: string): Promise<NatsConnection> {
  return connect({ servers: `${HOST}:${port}`, name });
}
