// A broker as a real child process, for the multi-process tests: spawn `cli/broker.ts` with the
// given flags, wait for its JSON listen line, keep draining (and remembering the end of) its log.

import { type Client, connect } from "../src/client/mod.ts";
import { ErrorCode, GregorError } from "../src/protocol/errors.ts";

const BROKER = new URL("../cli/broker.ts", import.meta.url).pathname;
/** Log lines kept per broker, to explain one that died. */
const LINES_KEPT = 50;

/** A running broker process. */
export interface BrokerProcess {
  child: Deno.ChildProcess;
  /** The first line it logged: where it listens (`listen`, `cluster`, `metrics`) and its `nodeId`. */
  listen: { listen: string; cluster?: string; metrics?: string; nodeId?: string };
  /** Its last log lines. */
  lines: string[];
}

/** How to start a broker process. */
export interface SpawnOptions {
  /** Its open-file limit (`ulimit -n`, soft and hard), set by a shell that then execs it. */
  openFilesMax?: number;
  /** A command the broker runs under, e.g. `ip netns exec NS` (it must exec the broker). */
  prefix?: string[];
  /** Flags for `deno run` itself (before the script), e.g. `--cpu-prof`. */
  denoFlags?: string[];
  /** Environment variables it gets besides this process's own. */
  env?: Record<string, string>;
  /** Told of every log line (after the listen line), as `lines` keeps only the last ones. */
  onLine?: (line: string) => void;
}

/** Starts a broker with `args` (after `cli/broker.ts`); resolves once it listens. */
export async function spawnBroker(
  args: string[],
  opts: SpawnOptions = {},
): Promise<BrokerProcess> {
  const deno = [
    ...(opts.prefix ?? []),
    Deno.execPath(),
    "run",
    "-A",
    ...(opts.denoFlags ?? []),
    BROKER,
    ...args,
  ];
  const [command, ...rest] = opts.openFilesMax === undefined
    ? deno
    : ["bash", "-c", `ulimit -n ${opts.openFilesMax} && exec "$@"`, "bash", ...deno];
  const child = new Deno.Command(command!, {
    args: rest,
    stdout: "piped",
    stderr: "inherit",
    ...(opts.env === undefined ? {} : { env: opts.env }),
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("A broker exited before listening");
    text += value;
  }
  const lines = text.split("\n");
  // Keep draining its log so the pipe never fills up.
  void (async () => {
    for (;;) {
      const r = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (r.done) return;
      const fresh = String(r.value).split("\n");
      if (opts.onLine !== undefined) { for (const l of fresh) opts.onLine(l); }
      lines.push(...fresh);
      if (lines.length > LINES_KEPT) lines.splice(0, lines.length - LINES_KEPT);
    }
  })();
  return { child, listen: JSON.parse(lines[0]!), lines };
}

/**
 * Stops a broker a benchmark started: SIGKILL, or with `profiled` SIGTERM, so that V8 writes the
 * CPU profile it was started with (`--cpu-prof`) before it exits. One already gone is skipped.
 */
export async function stopBroker(broker: BrokerProcess, profiled: boolean): Promise<void> {
  if (!profiled) return await killAll([broker]);
  try {
    broker.child.kill("SIGTERM");
  } catch { /* already gone */ }
  await broker.child.status;
}

/** SIGKILLs every process (those already gone are skipped) and waits for them. */
export async function killAll(procs: readonly { child: Deno.ChildProcess }[]): Promise<void> {
  for (const p of procs) {
    try {
      p.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await p.child.status.catch(() => {});
  }
}

/** A replicating broker process of a test cluster. */
export interface ClusterProc {
  child: Deno.ChildProcess;
  /** The broker's last log lines, for a failure's message. */
  lines: string[];
  clientPort: number;
  clusterPort: number;
  nodeId: string;
}

/** A port free on 127.0.0.1 at the moment of asking. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Starts a replicating broker on `ports`, joining the cluster through `seeds` (none: founds it),
 * with `extra` flags.
 */
export async function startClusterNode(
  dataDir: string,
  ports: { client: number; cluster: number },
  seeds: string[],
  extra: string[] = [],
  spawn: SpawnOptions = {},
): Promise<ClusterProc> {
  const args = [
    "--port",
    String(ports.client),
    "--data-dir",
    dataDir,
    "--cluster-port",
    String(ports.cluster),
    "--cluster-replicate",
    "--no-metrics-enabled",
  ];
  if (seeds.length > 0) args.push("--seeds", seeds.join(","));
  const { child, listen, lines } = await spawnBroker([...args, ...extra], spawn);
  return {
    child,
    lines,
    clientPort: ports.client,
    clusterPort: ports.cluster,
    nodeId: listen.nodeId!,
  };
}

/** Attempts at starting a test cluster on fresh ports (another test may take a port first). */
const CLUSTER_START_ATTEMPTS = 5;

/**
 * `nodes` (3) replicating brokers on fresh ports: the first founds the cluster, the others join it.
 * A port chosen free may be taken by a parallel test before the broker binds it ("in use", exit
 * 2): then all of them start again on other ports.
 */
export async function startCluster(
  root: string,
  extra: string[] = [],
  spawn: (node: number) => SpawnOptions = () => ({}),
  nodes = 3,
): Promise<{
  procs: ClusterProc[];
  ports: { client: number; cluster: number }[];
  seeds: string[];
}> {
  for (let attempt = 1;; attempt++) {
    const ports = Array.from(
      { length: nodes },
      () => ({ client: freePort(), cluster: freePort() }),
    );
    const seeds = [`127.0.0.1:${ports[0]!.cluster}`];
    const procs: ClusterProc[] = [];
    try {
      for (const [i, p] of ports.entries()) {
        procs.push(
          await startClusterNode(`${root}/n${i}`, p, i === 0 ? [] : seeds, extra, spawn(i)),
        );
      }
      return { procs, ports, seeds };
    } catch (err) {
      await killAll(procs);
      if (attempt >= CLUSTER_START_ATTEMPTS) throw err;
      await Deno.remove(root, { recursive: true }).catch(() => {});
      await Deno.mkdir(root, { recursive: true });
    }
  }
}

/** Closes the clients, kills the brokers, removes their data. */
export async function cleanUp(
  root: string,
  procs: ClusterProc[],
  clients: Client[],
): Promise<void> {
  for (const c of clients) c.close();
  await killAll(procs);
  await Deno.remove(root, { recursive: true }).catch(() => {});
}

/** Retries `fn` for up to 30 s; then fails naming `what`. */
export async function retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${(err as Error).message}`);
      await sleep(100);
    }
  }
}

/**
 * Creates a topic, retrying for up to 30 s while the cluster cannot (no controller yet, a leader
 * moving). An attempt that failed may have created it (a TIMEOUT after the metadata committed),
 * so TOPIC_EXISTS after a failed attempt counts as created; on the first attempt it is an error.
 */
export async function createTopicRetrying(
  client: Client,
  name: string,
  opts: Parameters<Client["admin"]["createTopic"]>[1] = {},
): Promise<void> {
  let failed = false;
  await retry(`topic ${name} is created`, async () => {
    try {
      await client.admin.createTopic(name, opts);
    } catch (err) {
      if (failed && err instanceof GregorError && err.code === ErrorCode.TOPIC_EXISTS) return;
      failed = true;
      throw err;
    }
  });
}

/** Every value of `topic`'s partition 0, by offset, up to its current end. */
export async function readAll(client: Client, topic: string): Promise<string[]> {
  const end = (await client.admin.describeTopic(topic)).partitions[0]!.highWatermark;
  if (end === 0) return [];
  const sub = await client.subscribe(topic, { from: "earliest" });
  const values: string[] = [];
  for await (const m of sub) {
    values[m.offset] = m.text();
    m.ack();
    if (m.offset + 1 >= end) break;
  }
  await sub.close();
  return values;
}

/** Connects to a broker; if it cannot, fails with the broker's last log lines. */
export async function connectTo(p: ClusterProc): Promise<Client> {
  try {
    return await connect({ port: p.clientPort, connectTimeoutMs: 20_000 });
  } catch (err) {
    throw new Error(
      `Cannot connect to the broker on ${p.clientPort}: ${(err as Error).message}; its last ` +
        `log lines:\n${p.lines.join("\n")}`,
    );
  }
}

export async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Time the metadata group gets to make all three nodes voters after they formed a cluster, ms. */
export const META_VOTERS_SETTLE_MS = 4_000;

/**
 * Waits until the three nodes are members and the metadata group has a leader (the controller),
 * as the first node's client sees it; resolves the controller's index in `procs`.
 */
export async function clusterFormed(
  procs: readonly ClusterProc[],
  clients: readonly Client[],
): Promise<number> {
  const controller = await retry("the cluster forms", async () => {
    const m = await clients[0]!.admin.metadata([]);
    if (m.nodes.length < 3 || m.controller === "") {
      throw new Error(`${m.nodes.length} nodes, controller "${m.controller}"`);
    }
    return m.controller;
  });
  const index = procs.findIndex((p) => p.nodeId === controller);
  if (index < 0) throw new Error(`The controller ${controller} is none of the three nodes`);
  return index;
}

/** A running three-node test cluster, each node with a connected client. */
export interface TestCluster {
  /** The nodes' data directories are `${root}/n0` to `${root}/n2`. */
  root: string;
  procs: ClusterProc[];
  ports: { client: number; cluster: number }[];
  /** The first node's cluster address, to restart the others with. */
  seeds: string[];
  clients: Client[];
}

/**
 * Registers a test on three replicating broker processes (started with `extra` flags): starts
 * them, connects a client to each, runs `body`, and then kills them and removes their data, whether
 * it passed or not.
 */
export function clusterTest(
  name: string,
  body: (c: TestCluster) => Promise<void>,
  extra: string[] = [],
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const root = await Deno.makeTempDir({ prefix: "gregormq-cluster-" });
      const { procs, ports, seeds } = await startCluster(root, extra);
      const clients: Client[] = [];
      try {
        for (const p of procs) clients.push(await connectTo(p));
        await body({ root, procs, ports, seeds, clients });
      } finally {
        await cleanUp(root, procs, clients);
      }
    },
  });
}
