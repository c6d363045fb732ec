// `deno task start`: a zero-config GregorMQ node on 127.0.0.1:7070. Flags override the defaults;
// SIGINT or SIGTERM shuts it down gracefully (connections closed, then exit 0).

import { parseArgs } from "node:util";
import { denoEnv } from "../src/io/deno/mod.ts";
import { DEFAULT_CLIENT_PORT, startNode } from "../src/node.ts";
import { parseFsyncPolicy } from "../src/storage/file_log.ts";

const USAGE = `usage: deno task start [options]
  --host HOST            address to listen on (default 127.0.0.1)
  --port PORT            client port, 0 for any free port (default ${DEFAULT_CLIENT_PORT})
  --broker-id ID         name told to clients (default gregormq-0)
  --no-auto-create       refuse publishes to topics that do not exist
  --partitions N         partitions of auto-created topics (default 1)
  --data-dir DIR         where disk topics and subscription offsets live (default ./data)
  --persistence P        of topics created without a config: disk or memory (default disk)
  --fsync POLICY         of disk topics without a config: always, never, interval:<ms> (default always)
  --cluster-port PORT    join a cluster: gossip on this port (0: any free port); off by default
  --seeds LIST           comma-separated cluster addresses host:port of other nodes, or a DNS
                         name:port (default: $GREGOR_SEEDS); giving seeds turns clustering on
  --advertise-host HOST  the address other nodes reach this one at (default: --host)
  -h, --help             this text`;

function log(level: string, msg: string, fields: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));
}

function fail(message: string): never {
  console.error(`${message}\n${USAGE}`);
  Deno.exit(2);
}

function whole(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    fail(`--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}

let values;
try {
  ({ values } = parseArgs({
    args: Deno.args,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: String(DEFAULT_CLIENT_PORT) },
      "broker-id": { type: "string", default: "gregormq-0" },
      "no-auto-create": { type: "boolean", default: false },
      partitions: { type: "string", default: "1" },
      "data-dir": { type: "string", default: "./data" },
      persistence: { type: "string", default: "disk" },
      fsync: { type: "string", default: "always" },
      "cluster-port": { type: "string" },
      seeds: { type: "string" },
      "advertise-host": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  }));
} catch (err) {
  fail((err as Error).message);
}
if (values.help) {
  console.log(USAGE);
  Deno.exit(0);
}

if (values.persistence !== "disk" && values.persistence !== "memory") {
  fail(`--persistence must be disk or memory, got ${JSON.stringify(values.persistence)}`);
}
if (parseFsyncPolicy(values.fsync) === null) {
  fail(
    `--fsync must be always, never or interval:<ms> (1..3600000), got ${
      JSON.stringify(values.fsync)
    }`,
  );
}

const seedList = (values.seeds ?? Deno.env.get("GREGOR_SEEDS") ?? "")
  .split(",").map((x) => x.trim()).filter((x) => x !== "");
for (const seed of seedList) {
  if (!/^[^:\s]+:\d{1,5}$/.test(seed)) {
    fail(`--seeds takes host:port entries, got ${JSON.stringify(seed)}`);
  }
}
const clustered = values["cluster-port"] !== undefined || seedList.length > 0;
const cluster = clustered
  ? {
    port: whole("cluster-port", values["cluster-port"] ?? "7072", 0, 65535),
    seeds: seedList,
    advertiseHost: values["advertise-host"],
  }
  : undefined;

const node = await startNode(denoEnv(), {
  host: values.host,
  port: whole("port", values.port, 0, 65535),
  broker: {
    brokerId: values["broker-id"],
    autoCreateTopics: !values["no-auto-create"],
    defaultPartitions: whole("partitions", values.partitions, 1, 1024),
    dataDir: values["data-dir"],
    defaultPersistence: values.persistence,
    defaultFsync: values.fsync,
  },
  cluster,
  hooks: {
    onFatal(reason) {
      log("fatal", `Storage failed; stopping so a restart can recover: ${reason}`);
      Deno.exit(1);
    },
    onReport(msg) {
      log("warn", msg);
    },
  },
}).catch((err) => {
  log("fatal", `Cannot start: ${(err as Error).message}`);
  Deno.exit(1);
});
log("info", "GregorMQ broker listening", {
  listen: `${node.addr.host}:${node.addr.port}`,
  brokerId: node.broker.opts.brokerId,
  dataDir: node.broker.opts.dataDir,
  ...(node.gossip === null ? {} : {
    nodeId: node.gossip.id,
    cluster: `${node.gossip.addr.host}:${node.gossip.addr.port}`,
    seeds: seedList,
  }),
});
node.gossip?.onEvent((e) =>
  log("info", `Cluster member ${e.kind === "state" ? e.member.state : e.kind}`, {
    member: e.member.id,
    addr: `${e.member.host}:${e.member.clusterPort}`,
    previous: e.previous,
  })
);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  log("info", "Shutting down", { signal, connections: node.broker.connectionCount });
  await node.close();
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", () => void shutdown("SIGINT"));
Deno.addSignalListener("SIGTERM", () => void shutdown("SIGTERM"));
await node.done;
