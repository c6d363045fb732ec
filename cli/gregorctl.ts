// `deno task gregorctl`: the operator CLI. Topics, produce, consume, consumer groups, cluster view
// and metrics against a running broker; human tables by default, `--json` for scripts. See
// docs/gregorctl.md.

import { parseArgs } from "node:util";
import {
  type Client,
  type ClientTls,
  type CodecName,
  connect,
  ConnectionError,
  type ConnectOptions,
  ErrorCode,
  type From,
  GregorError,
  type GroupConsumer,
  type GroupOffset,
  type Message,
  type MetadataNode,
  type PartitionInfo,
  type ReceivedMessage,
  TlsHandshakeFailed,
  type TopicDescription,
  type TopicPartition,
} from "../src/client/mod.ts";
import { nearestOf } from "../src/config/mod.ts";
import { type AclEntry, type Operation, OPERATIONS, type ResourceType } from "../src/auth/acl.ts";
import { deriveCredential, ITERATIONS_DEFAULT, SALT_BYTES } from "../src/auth/scram.ts";
import { SecurityStore } from "../src/auth/store.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { claimDataDir, DataDirError } from "../src/storage/data_dir.ts";
import denoJson from "../deno.json" with { type: "json" };
import { knownEndProgress } from "./progress_text.ts";

/** Exit codes: stable, documented in USAGE and docs/gregorctl.md. */
const Exit = { ok: 0, refused: 1, usage: 2, unreachable: 3 } as const;

const BROKER_DEFAULT = "127.0.0.1:7070";
const TIMEOUT_MS_DEFAULT = 5_000;
/** Addresses `--broker` takes at most. */
const BROKERS_MAX = 64;
/** The client port whose broker serves metrics on METRICS_PORT unless told otherwise. */
const CLIENT_PORT_DEFAULT = 7070;
const METRICS_PORT = 7071;
/** Offsets printed one by one at most; a bigger load prints a count and a rate instead. */
const OFFSETS_PRINTED_MAX = 100;
/** A produce or consume that ends sooner shows no progress line: it would only flicker. */
const PROGRESS_DELAY_MS = 500;
const PROGRESS_INTERVAL_MS = 200;
/** Partitions a `consume --group` summary names one by one at most. */
const SUMMARY_PARTITIONS_MAX = 8;
/** Produces in flight at most before the CLI waits for their acknowledgements. */
const PRODUCES_IN_FLIGHT_MAX = 10_000;
/** Metric lines the `metrics` summary shows at most. */
const METRIC_LINES_MAX = 20;
/** How often `consume --group` commits what it has printed, and checks whether it is done. */
const GROUP_COMMIT_INTERVAL_MS = 1000;
const GROUP_POLL_MS = 100;
/** How long `partition reassign --wait` waits for the move to finish at most, ms. */
const REASSIGN_WAIT_MS_MAX = 30 * 60_000;
/** How often it looks, ms. */
const REASSIGN_POLL_MS = 250;
/** Partitions `group reset-offsets --partitions` names at most. */
const RESET_PARTITIONS_MAX = 10_000;

const USAGE = `usage: deno task gregorctl [global options] <command> [options]

commands:
  topic create NAME [--partitions N] [--config key=value]...
  topic list
  topic describe NAME
  topic alter NAME [--config key=value]... [--partitions N]
                                             only retention.ms and retention.bytes can change;
                                             partitions only grow
  topic delete NAME
  topic repair NAME [--partition N]          cuts each damaged partition (all, or N) at its
                                             first bad batch; the records from there are dropped
                                             and new ones get their offsets again
  partition reassign TOPIC PARTITION --replicas ID,ID,... [--wait]
                                             moves the partition to these nodes (a replicating
                                             cluster; the first is its preferred leader); --wait
                                             returns once the move is done
  produce TOPIC [VALUE...] [--key K] [--header k=v]... [--partition N]
          [--acks none|leader|quorum] [--compression none|gzip|snappy|lz4|zstd]
          [--file PATH] [--rate N]           no VALUE: one message per line of --file or stdin
  consume TOPIC [--from earliest|latest|OFFSET|@TIMESTAMP_MS] [--partition N] [--count N]
          [--follow] [--durable NAME] [--format text|json]
                                             default --from earliest; without --follow it stops
                                             at the end of what the partition held at start
  consume TOPIC --group NAME [--from earliest|latest] [--count N] [--follow]
          [--format text|json]               as a member of consumer group NAME; --from is where
                                             a partition without a committed offset starts;
                                             commits what it printed on exit (and each second)
  group list
  group describe NAME
  group reset-offsets NAME --topic T (--to-earliest | --to-latest | --to-offset N |
          --to-datetime ISO | --to-timestamp MS) [--partitions 0,1,...] [--dry-run]
                                             only while the group has no live members
  cluster members
  cluster status
  cluster rebalance-leaders                  hands every partition to its preferred replica now
                                             (where it is alive and caught up)
  user add NAME [--iterations N]             password from $GREGOR_NEW_PASSWORD or a prompt
  user passwd NAME [--iterations N]          the same, for an existing user
  user list
  user remove NAME
  acl add --principal USER|* (--topic NAME | --group NAME | --cluster) [--prefix]
          --operation OP[,OP...]             OP: ${OPERATIONS.join(", ")}
  acl remove (same options as add)
  acl list
                                             user and acl commands go to the broker (super-users
                                             only); with --data-dir DIR they edit DIR's files
                                             instead, while its broker is stopped (bootstrap)
  metrics [--metrics-url URL]                default http://HOST:${METRICS_PORT}/metrics for a
                                             broker on port ${CLIENT_PORT_DEFAULT}; any other port needs --metrics-url

global options:
  --broker HOST:PORT[,HOST:PORT...]
                       the broker, or several of a cluster: the first that answers is used
                       (default $GREGOR_BROKER, else ${BROKER_DEFAULT})
  --user NAME          authenticate as NAME with SCRAM-SHA-256 (default $GREGOR_USER);
                       the password comes from $GREGOR_PASSWORD, else a prompt on a terminal
  --tls-ca FILE         speak TLS, trusting the CAs in this PEM file (default $GREGOR_TLS_CA)
  --tls-cert FILE       client certificate for mutual TLS (default $GREGOR_TLS_CERT)
  --tls-key FILE        its private key (default $GREGOR_TLS_KEY)
  --tls-server-name N   the name the broker's certificate must carry (default: the host)
  --json               machine-readable output
  --timeout MS         connect and request timeout (default ${TIMEOUT_MS_DEFAULT})
  -h, --help, help     this text
  --version            the version of gregorctl

exit codes:
  0  ok
  1  the broker refused the request (prints "error: CODE_NAME: message")
  2  usage error
  3  the broker (or its metrics endpoint) is unreachable`;

/** A mistake in the command line: exit 2 with the message on one line and a pointer to --help. */
class UsageError extends Error {}

const COMMANDS = [
  "topic",
  "partition",
  "produce",
  "consume",
  "group",
  "cluster",
  "metrics",
  "user",
  "acl",
] as const;

/** A word that is not one of `known`, named with the nearest one. */
function unknownWord(what: string, word: string, known: readonly string[]): UsageError {
  return new UsageError(
    `unknown ${what} ${JSON.stringify(word)}; did you mean ${nearestOf(word, known)}?`,
  );
}

/** A broker or metrics endpoint that cannot be reached: exit 3. */
class UnreachableError extends Error {}

const OPTIONS = {
  broker: { type: "string" },
  json: { type: "boolean", default: false },
  timeout: { type: "string" },
  partitions: { type: "string" },
  config: { type: "string", multiple: true },
  key: { type: "string" },
  header: { type: "string", multiple: true },
  partition: { type: "string" },
  acks: { type: "string" },
  compression: { type: "string" },
  file: { type: "string" },
  rate: { type: "string" },
  from: { type: "string" },
  count: { type: "string" },
  follow: { type: "boolean", default: false },
  durable: { type: "string" },
  format: { type: "string" },
  group: { type: "string" },
  topic: { type: "string" },
  "to-earliest": { type: "boolean", default: false },
  "to-latest": { type: "boolean", default: false },
  "to-offset": { type: "string" },
  "to-datetime": { type: "string" },
  "to-timestamp": { type: "string" },
  "dry-run": { type: "boolean", default: false },
  "metrics-url": { type: "string" },
  user: { type: "string" },
  "data-dir": { type: "string" },
  iterations: { type: "string" },
  principal: { type: "string" },
  cluster: { type: "boolean", default: false },
  prefix: { type: "boolean", default: false },
  operation: { type: "string" },
  replicas: { type: "string" },
  wait: { type: "boolean", default: false },
  "tls-ca": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "tls-server-name": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
  version: { type: "boolean", default: false },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>[
  "values"
];

interface Ctx {
  values: Values;
  args: string[];
  /** The brokers to try, in order, as host:port; the first is the one metrics are read from. */
  servers: string[];
  host: string;
  port: number;
  timeoutMs: number;
  json: boolean;
  /** The SCRAM user and password to connect as, or null. */
  login: { username: string; password: string } | null;
  /** TLS towards the brokers, from --tls-* or GREGOR_TLS_*; null: plaintext. */
  tls: ClientTls | null;
}

/** The TLS settings from --tls-* flags or GREGOR_TLS_* variables, with the PEM files read. */
async function readTls(values: Values): Promise<ClientTls | null> {
  const ca = values["tls-ca"] ?? Deno.env.get("GREGOR_TLS_CA");
  const cert = values["tls-cert"] ?? Deno.env.get("GREGOR_TLS_CERT");
  const key = values["tls-key"] ?? Deno.env.get("GREGOR_TLS_KEY");
  const serverName = values["tls-server-name"] ?? Deno.env.get("GREGOR_TLS_SERVER_NAME");
  if (ca === undefined) {
    if (cert !== undefined || key !== undefined || serverName !== undefined) {
      throw new UsageError("--tls-cert, --tls-key and --tls-server-name need --tls-ca");
    }
    return null;
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  const read = async (flag: string, path: string): Promise<string> => {
    try {
      return await Deno.readTextFile(path);
    } catch (err) {
      throw new UsageError(`cannot read --${flag} ${path}: ${(err as Error).message}`);
    }
  };
  return {
    ca: await read("tls-ca", ca),
    ...(cert === undefined ? {} : { cert: await read("tls-cert", cert) }),
    ...(key === undefined ? {} : { key: await read("tls-key", key) }),
    ...(serverName === undefined ? {} : { serverName }),
  };
}

function whole(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(
      `--${name} must be a whole number >= ${min}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

function pairs(name: string, items: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items ?? []) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new UsageError(`--${name} takes key=value, got ${JSON.stringify(item)}`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

function oneOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]) {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`--${name} must be one of ${allowed.join(", ")}, got ${value}`);
  }
  return value as T;
}

function positional(ctx: Ctx, i: number, what: string): string {
  const v = ctx.args[i];
  if (v === undefined) throw new UsageError(`missing ${what}`);
  return v;
}

/** Aligned columns, a header row first. */
/**
 * A partition's LEADER, REPLICAS and ISR columns. A single node's id is "" (it names itself
 * "self"); in a cluster a leader of "" is not known, and an empty ISR means neither the node asked
 * nor the leader could tell (only a leader knows its followers' progress).
 */
function replicationColumns(p: PartitionInfo): string[] {
  const name = (id: string) => (id === "" ? "self" : id);
  const single = p.replicas.length === 1 && p.replicas[0]?.id === "";
  const ids = (l: { id: string }[]) => l.map((r) => name(r.id)).join(",");
  return [
    p.leader === "" && !single ? "none" : name(p.leader),
    ids(p.replicas),
    p.isr.length === 0 ? "unknown (the leader did not answer)" : ids(p.isr),
  ];
}

/**
 * The persistence a replicated topic really has: its `persistence` config is not applied, as every
 * replica keeps the partition in segment files under `<data-dir>/raft/p/`.
 */
function replicatedPersistence(configured: string): string {
  const ignored = configured === "disk" ? "" : ` (persistence=${configured} does not apply)`;
  return `replicated: on disk on every replica, under <data-dir>/raft/p/${ignored}`;
}

/**
 * Fills in the ISR of the partitions the node asked does not lead, from their leaders: only a
 * leader knows its followers' progress. A leader that cannot be reached leaves its ISR empty.
 */
async function isrFromLeaders(
  ctx: Ctx,
  asked: Client,
  d: TopicDescription,
  nodes: MetadataNode[],
): Promise<void> {
  const self = asked.connection.hello?.brokerId;
  const leaders = new Set(
    d.partitions.filter((p) => p.isr.length === 0 && p.leader !== "" && p.leader !== self)
      .map((p) => p.leader),
  );
  for (const id of leaders) {
    const node = nodes.find((n) => n.id === id);
    if (node === undefined || node.host === "" || node.clientPort === 0) continue;
    let there: TopicDescription;
    try {
      const client = await connect(clientOptions(ctx, [`${node.host}:${node.clientPort}`]));
      try {
        there = await client.admin.describeTopic(d.name);
      } finally {
        await client.close();
      }
    } catch (err) {
      if (err instanceof GregorError || err instanceof ConnectionError) continue;
      throw err;
    }
    for (const p of d.partitions) {
      const theirs = there.partitions.find((q) => q.partition === p.partition);
      if (p.leader === id && p.isr.length === 0 && theirs?.leader === id) p.isr = theirs.isr;
    }
  }
}

/** A partition's STATE column: ok, damaged, moving (to the REPLICAS shown), or both. */
function partitionState(p: PartitionInfo): string {
  const states = [
    ...(p.damagedFromOffset < 0 ? [] : [`damaged from offset ${p.damagedFromOffset}`]),
    ...(p.moving === 1 ? ["moving to its replicas"] : []),
  ];
  return states.length === 0 ? "ok" : states.join("; ");
}

function table(header: string[], rows: (string | number)[][]): string {
  const all = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd())
    .join("\n");
}

function print(ctx: Ctx, json: unknown, human: string): void {
  console.log(ctx.json ? JSON.stringify(json) : human);
}

/** Why `addr` cannot be reached, in words; null when something listens there. */
async function probe(addr: { host: string; port: number }, timeoutMs: number) {
  try {
    const conn = await Deno.connect({
      hostname: addr.host,
      port: addr.port,
      signal: AbortSignal.timeout(timeoutMs),
    });
    conn.close();
    return null;
  } catch (err) {
    if (err instanceof Deno.errors.ConnectionRefused) {
      return { dns: false, why: "connection refused" };
    }
    if ((err as Error).name === "TimeoutError" || err instanceof Deno.errors.TimedOut) {
      return { dns: false, why: `no answer within ${timeoutMs} ms` };
    }
    // Deno reports a name that does not resolve as a plain Error, so its message is the tell.
    if (/lookup address|resolve|Name or service not known/i.test((err as Error).message)) {
      return { dns: true, why: `the host name ${addr.host} does not resolve` };
    }
    return { dns: false, why: (err as Error).message };
  }
}

/** How gregorctl connects to `servers`: as itself, with the --timeout, login and TLS given. */
function clientOptions(ctx: Ctx, servers: string[]): ConnectOptions {
  return {
    servers,
    clientId: "gregorctl",
    ...(ctx.login ?? {}),
    connectTimeoutMs: ctx.timeoutMs,
    requestTimeoutMs: ctx.timeoutMs,
    ...(ctx.tls === null ? {} : { tls: ctx.tls }),
  };
}

/**
 * Connects to the first of `ctx.servers` that answers. Each is tried once first, so a refused
 * connection or a name that does not resolve is reported at once, not after the client has
 * retried for the whole --timeout.
 */
async function withClient<T>(ctx: Ctx, fn: (client: Client) => Promise<T>): Promise<T> {
  const failures: { addr: string; dns: boolean; why: string }[] = [];
  for (const addr of ctx.servers) {
    const failure = await probe(parseBroker(addr), ctx.timeoutMs);
    if (failure === null) break;
    failures.push({ addr, ...failure });
  }
  if (failures.length === ctx.servers.length) {
    const where = failures.map((f) => `${f.addr} (${f.why})`).join(" or ");
    throw new UnreachableError(
      failures.every((f) => f.dns)
        ? `cannot reach a broker at ${where} — check the host name in --broker or $GREGOR_BROKER`
        : `cannot reach a broker at ${where} — is it running? start one with \`deno task start\``,
    );
  }
  let client: Client;
  try {
    client = await connect(clientOptions(ctx, ctx.servers));
  } catch (err) {
    if (err instanceof TlsHandshakeFailed) {
      throw new UnreachableError(`error: TLS ${err.reason}: ${err.message}`);
    }
    if (err instanceof ConnectionError) {
      throw new UnreachableError(
        `cannot reach a broker at ${ctx.servers.join(" or ")} — ${err.message}`,
      );
    }
    throw err;
  }
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

// --- topic -------------------------------------------------------------------------------

async function topic(ctx: Ctx): Promise<void> {
  const sub = positional(
    ctx,
    1,
    "topic subcommand (create, list, describe, alter, delete, repair)",
  );
  const v = ctx.values;
  switch (sub) {
    case "create": {
      const name = positional(ctx, 2, "topic name");
      const partitions = whole("partitions", v.partitions, 1) ?? 1;
      const configs = pairs("config", v.config);
      await withClient(ctx, (c) => c.admin.createTopic(name, { partitions, configs }));
      print(
        ctx,
        { name, partitions },
        `created topic ${name} (${partitions} partition${partitions === 1 ? "" : "s"})`,
      );
      return;
    }
    case "list": {
      const topics = await withClient(ctx, (c) => c.admin.listTopics());
      print(
        ctx,
        topics,
        topics.length === 0
          ? "no topics"
          : table(["NAME", "PARTITIONS"], topics.map((t) => [t.name, t.partitions])),
      );
      return;
    }
    case "describe": {
      const name = positional(ctx, 2, "topic name");
      const { d, replicated } = await withClient(ctx, async (c) => {
        const d = await c.admin.describeTopic(name);
        const meta = await c.admin.metadata([name]);
        await isrFromLeaders(ctx, c, d, meta.nodes);
        // Only a replicating node lists its peers or knows a metadata leader (the controller).
        return { d, replicated: meta.controller !== "" || meta.nodes.length > 1 };
      });
      const configs = Object.entries(d.configs).sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([k, v]) => [k, k === "persistence" && replicated ? replicatedPersistence(v) : v]);
      print(
        ctx,
        d,
        `topic ${d.name}\n\n` + table(["CONFIG", "VALUE"], configs) + "\n\n" +
          table(
            [
              "PARTITION",
              "LOG-START",
              "HIGH-WATERMARK",
              "SIZE-BYTES",
              "SUBSCRIBERS",
              "STATE",
              "LEADER",
              "REPLICAS",
              "ISR",
            ],
            d.partitions.map((p) => [
              p.partition,
              p.logStartOffset,
              p.highWatermark,
              p.sizeBytes,
              p.subscribers,
              partitionState(p),
              ...replicationColumns(p),
            ]),
          ),
      );
      return;
    }
    case "alter": {
      const name = positional(ctx, 2, "topic name");
      const configs = pairs("config", v.config);
      const partitions = whole("partitions", v.partitions, 1);
      if (Object.keys(configs).length === 0 && partitions === undefined) {
        throw new UsageError("topic alter needs --partitions N or at least one --config key=value");
      }
      // Two requests: partitions first, as growing is the change more likely to be refused.
      await withClient(ctx, async (c) => {
        if (partitions !== undefined) await c.admin.createPartitions(name, partitions);
        if (Object.keys(configs).length > 0) await c.admin.alterTopic(name, configs);
      });
      const changed = [
        ...(partitions === undefined ? [] : [`partitions=${partitions}`]),
        ...Object.entries(configs).map(([k, x]) => `${k}=${x}`),
      ].join(" ");
      print(
        ctx,
        { name, configs, ...(partitions === undefined ? {} : { partitions }) },
        `altered topic ${name}: ${changed}`,
      );
      return;
    }
    case "repair": {
      const name = positional(ctx, 2, "topic name");
      const partition = whole("partition", v.partition, 0);
      const partitions = partition === undefined ? [] : [partition];
      const repaired = await withClient(ctx, (c) => c.admin.repairPartitions(name, { partitions }));
      print(
        ctx,
        repaired,
        repaired.map((r) =>
          r.cutOffset === r.endOffset
            ? `${name}/${r.partition}: every batch checks out; nothing dropped`
            : `${name}/${r.partition}: dropped offsets ${r.cutOffset}..${r.endOffset - 1} ` +
              `(${r.endOffset - r.cutOffset} records, ${r.bytesDropped} bytes): ${r.damage}; ` +
              `new records get offsets from ${r.cutOffset}`
        ).join("\n"),
      );
      return;
    }
    case "delete": {
      const name = positional(ctx, 2, "topic name");
      await withClient(ctx, (c) => c.admin.deleteTopic(name));
      print(ctx, { name, deleted: true }, `deleted topic ${name}`);
      return;
    }
    default:
      throw unknownWord(`topic subcommand`, sub, [
        "create",
        "list",
        "describe",
        "alter",
        "delete",
        "repair",
      ]);
  }
}

// --- partition ---------------------------------------------------------------------------

async function partition(ctx: Ctx): Promise<void> {
  const sub = positional(ctx, 1, "partition subcommand (reassign)");
  switch (sub) {
    case "reassign": {
      const name = positional(ctx, 2, "topic name");
      const word = positional(ctx, 3, "partition number");
      const id = Number(word);
      if (!/^\d+$/.test(word) || !Number.isSafeInteger(id)) {
        throw new UsageError(
          `the partition must be a whole number >= 0, got ${JSON.stringify(word)}`,
        );
      }
      if (ctx.values.replicas === undefined) {
        throw new UsageError(
          "partition reassign needs --replicas ID,ID,... (the nodes to hold it)",
        );
      }
      // An empty or repeated id goes to the broker as given: it names what is wrong with the list.
      const replicas = ctx.values.replicas.split(",").map((r) => r.trim()).filter((r) => r !== "");
      const waitedMs = await withClient(ctx, async (c) => {
        await c.admin.reassignPartition(name, id, replicas);
        if (!ctx.values.wait) return null;
        return await moveDone(c, name, id, replicas);
      });
      const list = replicas.join(",");
      print(
        ctx,
        { name, partition: id, replicas, done: waitedMs !== null },
        waitedMs === null
          ? `moving ${name}/${id} to ${list}; \`topic describe ${name}\` shows it moving until done`
          : `moved ${name}/${id} to ${list} (${(waitedMs / 1000).toFixed(1)} s)`,
      );
      return;
    }
    default:
      throw unknownWord("partition subcommand", sub, ["reassign"]);
  }
}

/**
 * Waits until partition `id` of `name` is held by `replicas` with no move under way, as the broker
 * describes it; resolves with the time it took, ms.
 */
async function moveDone(c: Client, name: string, id: number, replicas: string[]): Promise<number> {
  const start = performance.now();
  const stop = new AbortController();
  const release = onInterrupt(stop);
  try {
    while (!stop.signal.aborted) {
      const p = (await c.admin.describeTopic(name)).partitions[id];
      if (
        p !== undefined && p.moving === 0 &&
        p.replicas.map((r) => r.id).join(",") === replicas.join(",")
      ) {
        return performance.now() - start;
      }
      if (performance.now() - start >= REASSIGN_WAIT_MS_MAX) break;
      await pause(REASSIGN_POLL_MS, stop.signal);
    }
  } finally {
    release();
  }
  throw new GregorError(
    ErrorCode.TIMEOUT,
    `${name}/${id} is still moving to ${replicas.join(",")} after ${
      Math.round((performance.now() - start) / 1000)
    } s (stopped waiting; the move goes on): follow it with \`topic describe ${name}\``,
  );
}

// --- produce -----------------------------------------------------------------------------

/** Lines of a byte stream, without their line ends; empty lines are skipped. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      const line = rest.slice(0, nl).replace(/\r$/, "");
      rest = rest.slice(nl + 1);
      if (line !== "") yield line;
    }
  }
  const last = rest.replace(/\r$/, "");
  if (last !== "") yield last;
}

const utf8 = new TextEncoder();

async function* fromArray(values: string[]): AsyncGenerator<string> {
  for (const v of values) yield v;
}

async function produce(ctx: Ctx): Promise<void> {
  const v = ctx.values;
  const topicName = positional(ctx, 1, "topic name");
  const given = ctx.args.slice(2);
  const partition = whole("partition", v.partition, 0) ?? 0;
  const rate = whole("rate", v.rate, 1);
  const acks = oneOf("acks", v.acks, ["none", "leader", "quorum"] as const);
  const compression = oneOf(
    "compression",
    v.compression,
    ["none", "gzip", "snappy", "lz4", "zstd"] as const satisfies readonly CodecName[],
  );
  const headers = pairs("header", v.header);
  if (given.length > 0 && v.file !== undefined) {
    throw new UsageError("give values as arguments or --file, not both");
  }
  let source: AsyncGenerator<string>;
  let bulk = false;
  /** The --file's size in bytes when it is a regular file: then the end is known. */
  let fileBytes = 0;
  if (given.length > 0) {
    source = fromArray(given);
  } else {
    bulk = true;
    let stream: ReadableStream<Uint8Array>;
    if (v.file !== undefined) {
      try {
        const file = await Deno.open(v.file);
        const stat = await file.stat();
        if (stat.isFile) fileBytes = stat.size;
        stream = file.readable;
      } catch (err) {
        throw new UsageError(`cannot open --file ${v.file}: ${(err as Error).message}`);
      }
    } else {
      stream = Deno.stdin.readable;
    }
    source = lines(stream);
  }

  await withClient(ctx, async (client) => {
    const producer = client.producer({ acks, compression, lingerMs: bulk ? 5 : 0 });
    const offsets: number[] = [];
    let inFlight: Promise<unknown>[] = [];
    let sent = 0;
    let acked = 0;
    let failed = 0;
    let firstError: unknown = null;
    let stoppedEarly = false;
    const startMs = performance.now();
    const perS = () => Math.round(acked / Math.max((performance.now() - startMs) / 1000, 0.001));
    /** Bytes of the --file sent so far (each line and its line end), for the bar. */
    let bytesSent = 0;
    const progress = bulk
      ? Progress.start(() =>
        `sent ${sent}, acknowledged ${acked} (${perS()} msg/s)` +
        (fileBytes > 0
          ? `, file ${knownEndProgress(bytesSent / fileBytes, performance.now() - startMs)}`
          : "")
      )
      : null;
    try {
      for await (const value of source) {
        // Stop reading at the first failure: what follows would most likely fail the same way.
        if (firstError !== null) {
          stoppedEarly = true;
          break;
        }
        if (rate !== undefined) {
          const dueMs = startMs + (sent * 1000) / rate;
          const waitMs = dueMs - performance.now();
          if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
        }
        const msg: Message = { value, partition, headers };
        if (v.key !== undefined) msg.key = v.key;
        if (fileBytes > 0) bytesSent += utf8.encode(value).byteLength + 1;
        const i = sent++;
        inFlight.push(
          producer.send(topicName, msg).then((offset) => {
            acked++;
            if (i < OFFSETS_PRINTED_MAX) offsets[i] = offset;
          }, (err) => {
            failed++;
            firstError ??= err;
          }),
        );
        if (inFlight.length >= PRODUCES_IN_FLIGHT_MAX) {
          await Promise.all(inFlight);
          inFlight = [];
        }
      }
      await Promise.all(inFlight);
      await producer.close();
    } finally {
      progress?.stop();
    }
    const seconds = (performance.now() - startMs) / 1000;
    console.error(
      `produced ${acked} message${acked === 1 ? "" : "s"} to ${topicName} partition ${partition} ` +
        `in ${seconds.toFixed(2)} s (${perS()} msg/s), ${failed} failed` +
        (stoppedEarly ? "; stopped reading at the first failure" : ""),
    );
    if (firstError !== null) throw firstError;
    if (sent <= OFFSETS_PRINTED_MAX) {
      print(ctx, { topic: topicName, partition, offsets }, offsets.join("\n"));
    } else if (ctx.json) {
      print(ctx, {
        topic: topicName,
        partition,
        count: acked,
        failed,
        seconds,
        messagesPerS: perS(),
      }, "");
    }
  });
}

/**
 * A status line on stderr, rewritten in place, shown only when stderr is a terminal (so pipes
 * and files never see it) and only once the work has run PROGRESS_DELAY_MS.
 */
class Progress {
  #timer: ReturnType<typeof setTimeout>;
  #shown = false;

  private constructor(render: () => string) {
    const encoder = new TextEncoder();
    const draw = () => {
      this.#shown = true;
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[K${render()}`));
    };
    this.#timer = setTimeout(() => {
      draw();
      this.#timer = setInterval(draw, PROGRESS_INTERVAL_MS);
    }, PROGRESS_DELAY_MS);
  }

  /** A progress line drawn by `render`, or null when stderr is not a terminal. */
  static start(render: () => string): Progress | null {
    return Deno.stderr.isTerminal() ? new Progress(render) : null;
  }

  /** Stops drawing and clears the line, so what is printed next starts at its beginning. */
  stop(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#timer);
    if (this.#shown) Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
  }
}

/** "offsets 3..7", or "offset 3" for one, or "" for none. */
function offsetRange(first: number, last: number): string {
  if (first < 0) return "";
  return first === last ? `offset ${first}` : `offsets ${first}..${last}`;
}

// --- consume -----------------------------------------------------------------------------

function parseFrom(value: string | undefined): From {
  if (value === undefined || value === "earliest" || value === "latest") {
    return value ?? "earliest";
  }
  if (/^\d+$/.test(value)) return { offset: Number(value) };
  if (/^@\d+$/.test(value)) return { timestamp: Number(value.slice(1)) };
  throw new UsageError(
    `--from must be earliest, latest, an offset or @timestamp_ms, got ${JSON.stringify(value)}`,
  );
}

const decoder = new TextDecoder();
const text = (b: Uint8Array | null): string => (b === null ? "" : decoder.decode(b));

function formatMessage(m: ReceivedMessage, format: "text" | "json"): string {
  if (format === "text") return `${m.offset}\t${text(m.key)}\t${m.text()}`;
  return JSON.stringify({
    topic: m.topic,
    partition: m.partition,
    offset: m.offset,
    timestamp: m.timestamp,
    key: m.key === null ? null : text(m.key),
    value: m.value === null ? null : text(m.value),
    headers: Object.fromEntries(Object.entries(m.headers).map(([k, x]) => [k, text(x)])),
  });
}

async function consume(ctx: Ctx): Promise<void> {
  const v = ctx.values;
  const topicName = positional(ctx, 1, "topic name");
  const count = whole("count", v.count, 1);
  const format = oneOf("format", v.format, ["text", "json"] as const) ??
    (ctx.json ? "json" : "text");
  if (v.group !== undefined) {
    return await consumeGroup(ctx, { topic: topicName, group: v.group, count, format });
  }
  const partition = whole("partition", v.partition, 0) ?? 0;
  const from = parseFrom(v.from);
  const stop = new AbortController();
  const stopListening = v.follow ? onInterrupt(stop) : () => {};
  let printed = 0;
  let first = -1;
  let last = -1;
  try {
    await withClient(ctx, async (client) => {
      // Without --follow, stop at the end of what the partition held when we started.
      let endOffset = Infinity;
      if (!v.follow) {
        const d = await client.admin.describeTopic(topicName);
        // A missing partition is refused by the subscribe below (UNKNOWN_PARTITION).
        endOffset = d.partitions[partition]?.highWatermark ?? 0;
      }
      const consumer = await client.subscribe(topicName, {
        partition,
        from,
        ...(v.durable === undefined ? {} : { durable: v.durable }),
      });
      if (consumer.startOffset >= endOffset) return;
      const total = Math.min(endOffset - consumer.startOffset, count ?? Infinity);
      const progress = consumeProgress(() => printed, total);
      const interrupted = new Promise<null>((resolve) =>
        stop.signal.addEventListener("abort", () => resolve(null))
      );
      try {
        for (;;) {
          const pending = consumer.next();
          const m = await Promise.race([pending, interrupted]);
          // A fetch still waiting when interrupted ends with the client; its outcome is moot.
          if (m === null) {
            pending.catch(() => {});
            break;
          }
          console.log(formatMessage(m, format));
          m.ack();
          printed++;
          if (first < 0) first = m.offset;
          last = m.offset;
          if (count !== undefined && printed >= count) break;
          if (m.offset >= endOffset - 1) break;
        }
      } finally {
        progress?.stop();
      }
    });
  } finally {
    stopListening();
  }
  const range = offsetRange(first, last);
  console.error(
    `consumed ${printed} message${printed === 1 ? "" : "s"} from ${topicName} partition ` +
      `${partition}${range === "" ? "" : `, ${range}`}`,
  );
}

/**
 * The progress of a consume, on a terminal's stderr while its stdout goes elsewhere (messages
 * printed to the same terminal would tear the line); with a known end, a percentage and an ETA.
 */
function consumeProgress(done: () => number, total: number): Progress | null {
  if (Deno.stdout.isTerminal()) return null;
  const startMs = performance.now();
  return Progress.start(() => {
    const n = done();
    const perS = n / Math.max((performance.now() - startMs) / 1000, 0.001);
    if (!Number.isFinite(total)) return `consumed ${n} (${Math.round(perS)} msg/s)`;
    const elapsedMs = performance.now() - startMs;
    return `consumed ${n} of ${total} (${Math.round(perS)} msg/s) ` +
      knownEndProgress(n / Math.max(total, 1), elapsedMs);
  });
}

const tpKey = (tp: TopicPartition): string => `${tp.topic}\u0000${tp.partition}`;

/** Resolves after `ms`, or at once when `signal` aborts; clears its timer either way. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

const TICK = Symbol("tick");

/** Aborts on SIGINT (and SIGTERM where there is one) until the returned function is called. */
function onInterrupt(stop: AbortController): () => void {
  const abort = () => stop.abort();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, abort);
  return () => signals.forEach((s) => Deno.removeSignalListener(s, abort));
}

/**
 * `consume TOPIC --group NAME`: one member of the group. It commits by hand what it printed, not
 * what it fetched: with auto-commit, closing while a fetched message waits unprinted would
 * commit past it, and the group would never see it.
 */
async function consumeGroup(
  ctx: Ctx,
  opts: { topic: string; group: string; count: number | undefined; format: "text" | "json" },
): Promise<void> {
  const v = ctx.values;
  if (v.partition !== undefined || v.durable !== undefined) {
    throw new UsageError("--group assigns the partitions; it takes no --partition or --durable");
  }
  const reset = v.from ?? "earliest";
  if (reset !== "earliest" && reset !== "latest") {
    throw new UsageError(
      "--from with --group takes earliest or latest (where a partition without a committed " +
        "offset starts); to move the group's offsets use `group reset-offsets`",
    );
  }
  const { topic, group, count, format } = opts;
  const stop = new AbortController();
  const stopListening = onInterrupt(stop);
  let printed = 0;
  /** Per partition: the first and last offset printed, for the summary. */
  const ranges = new Map<number, { first: number; last: number }>();
  try {
    await withClient(ctx, async (client) => {
      // Without --follow, a partition is done at the end of what it held when we started.
      const d = await client.admin.describeTopic(topic);
      const ends = new Map(d.partitions.map((p) => [tpKey({ topic, partition: p.partition }), p]));
      /** Per partition: the next offset to print (what a commit stores). */
      const positions = new Map<string, TopicPartition & { offset: number }>();
      const dirty = new Set<string>();
      const onAssigned = async (tps: TopicPartition[]) => {
        for (const o of await client.admin.groupOffsets(group, tps)) {
          const p = ends.get(tpKey(o));
          const logStart = p?.logStartOffset ?? 0;
          const start = o.offset >= logStart
            ? o.offset
            : reset === "earliest"
            ? logStart
            : p?.highWatermark ?? 0;
          positions.set(tpKey(o), { topic: o.topic, partition: o.partition, offset: start });
        }
      };
      let member: GroupConsumer | null = null;
      const commitPrinted = async (keys: string[]) => {
        const offsets = keys.flatMap((k) => positions.get(k) ?? []);
        for (const k of keys) dirty.delete(k);
        if (offsets.length > 0) await member?.commit(offsets);
      };
      member = await client.groupConsumer(group, [topic], {
        reset,
        autoCommit: false,
        onAssigned,
        // Not awaited: this runs inside a heartbeat, and a commit refused as stale would wait
        // for that very heartbeat. Sent now, it still reaches the broker before the release.
        onRevoked: (tps) =>
          void commitPrinted(tps.map(tpKey).filter((k) => dirty.has(k))).catch(() => {}),
      });
      const g = member;
      const caughtUp = () =>
        g.assignment().every((tp) =>
          (positions.get(tpKey(tp))?.offset ?? 0) >= (ends.get(tpKey(tp))?.highWatermark ?? 0)
        );
      let pending: Promise<ReceivedMessage | null> | null = null;
      let tick: Promise<typeof TICK> | null = null;
      const progress = consumeProgress(() => printed, Infinity);
      try {
        let committedMs = performance.now();
        for (;;) {
          if (stop.signal.aborted || (!v.follow && caughtUp())) break;
          if (performance.now() - committedMs >= GROUP_COMMIT_INTERVAL_MS) {
            committedMs = performance.now();
            await commitPrinted([...dirty]);
          }
          pending ??= g.next();
          // One poll timer at a time, however fast messages come.
          tick ??= pause(GROUP_POLL_MS, stop.signal).then(() => {
            tick = null;
            return TICK;
          });
          const m = await Promise.race([pending, tick]);
          if (m === TICK) continue;
          pending = null;
          if (m === null) break;
          // A message fetched but left unprinted at exit stays uncommitted: it comes again.
          console.log(formatMessage(m, format));
          positions.set(tpKey(m), { topic: m.topic, partition: m.partition, offset: m.offset + 1 });
          dirty.add(tpKey(m));
          printed++;
          const range = ranges.get(m.partition);
          if (range === undefined) ranges.set(m.partition, { first: m.offset, last: m.offset });
          else range.last = m.offset;
          if (count !== undefined && printed >= count) break;
        }
        await commitPrinted([...dirty]);
      } finally {
        progress?.stop();
        // A fetch still waiting when we stopped ends with the member; its outcome is moot.
        pending?.catch(() => {});
        await g.close();
      }
    });
  } finally {
    stopListening();
  }
  const named = [...ranges].sort(([a], [b]) => a - b).map(([p, r]) =>
    `partition ${p} ${offsetRange(r.first, r.last)}`
  );
  const more = named.length - SUMMARY_PARTITIONS_MAX;
  console.error(
    `consumed ${printed} message${printed === 1 ? "" : "s"} from ${topic} as group ${group}` +
      (named.length === 0 ? "" : `: ${named.slice(0, SUMMARY_PARTITIONS_MAX).join(", ")}`) +
      (more > 0 ? ` and ${more} more partition${more === 1 ? "" : "s"}` : ""),
  );
}

// --- group -------------------------------------------------------------------------------

const dash = (n: number): string | number => (n < 0 ? "-" : n);

/** Lag of a committed offset; null without a commit or a known end. */
function lagOf(o: GroupOffset): number | null {
  return o.offset < 0 || o.highWatermark < 0 ? null : Math.max(0, o.highWatermark - o.offset);
}

function offsetsTable(offsets: GroupOffset[], offsetHeader: string): string {
  return table(
    ["TOPIC", "PARTITION", offsetHeader, "END", "LAG"],
    offsets.map((o) => {
      const lag = lagOf(o) ?? "-";
      return [o.topic, o.partition, dash(o.offset), dash(o.highWatermark), lag];
    }),
  );
}

/** `topic:0,1;other:2` — a member's partitions, grouped by topic. */
function partitionList(tps: TopicPartition[]): string {
  if (tps.length === 0) return "-";
  const byTopic = new Map<string, number[]>();
  for (const tp of tps) byTopic.set(tp.topic, [...(byTopic.get(tp.topic) ?? []), tp.partition]);
  return [...byTopic].map(([t, ps]) => `${t}:${ps.sort((a, b) => a - b).join(",")}`).join(";");
}

function partitionIds(value: string | undefined): number[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(",");
  if (items.length > RESET_PARTITIONS_MAX || !items.every((x) => /^\d{1,9}$/.test(x.trim()))) {
    throw new UsageError(
      `--partitions takes partition numbers separated by commas, e.g. 0,1, got ${
        JSON.stringify(value)
      }`,
    );
  }
  return [...new Set(items.map((x) => Number(x.trim())))].sort((a, b) => a - b);
}

/** An ISO 8601 date and time with a zone, so it means the same instant on every machine. */
const ISO_DATETIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;

type ResetTo = "earliest" | "latest" | { offset: number } | { timestamp: number };

function resetTarget(v: Values): ResetTo {
  const given = [
    v["to-earliest"] ? "--to-earliest" : null,
    v["to-latest"] ? "--to-latest" : null,
    v["to-offset"] === undefined ? null : "--to-offset",
    v["to-datetime"] === undefined ? null : "--to-datetime",
    v["to-timestamp"] === undefined ? null : "--to-timestamp",
  ].filter((x) => x !== null);
  if (given.length !== 1) {
    throw new UsageError(
      "group reset-offsets needs exactly one of --to-earliest, --to-latest, --to-offset N, " +
        `--to-datetime ISO, --to-timestamp MS${
          given.length > 1 ? `; got ${given.join(", ")}` : ""
        }`,
    );
  }
  if (v["to-earliest"]) return "earliest";
  if (v["to-latest"]) return "latest";
  const offset = whole("to-offset", v["to-offset"], 0);
  if (offset !== undefined) return { offset };
  const timestamp = whole("to-timestamp", v["to-timestamp"], 0);
  if (timestamp !== undefined) return { timestamp };
  const iso = v["to-datetime"] as string;
  const ms = Date.parse(iso);
  if (!ISO_DATETIME.test(iso) || Number.isNaN(ms) || ms < 0) {
    throw new UsageError(
      "--to-datetime takes an ISO 8601 date and time with a zone, e.g. 2024-05-01T12:00:00Z, " +
        `got ${JSON.stringify(iso)}`,
    );
  }
  return { timestamp: ms };
}

function describeTarget(to: ResetTo): string {
  if (typeof to === "string") return to;
  if ("offset" in to) return `offset ${to.offset}`;
  return `${new Date(to.timestamp).toISOString()} (${to.timestamp})`;
}

async function group(ctx: Ctx): Promise<void> {
  const sub = positional(ctx, 1, "group subcommand (list, describe, reset-offsets)");
  const v = ctx.values;
  switch (sub) {
    case "list": {
      const groups = await withClient(ctx, (c) => c.admin.listGroups());
      print(
        ctx,
        groups,
        groups.length === 0 ? "no groups" : table(
          ["GROUP", "STATE", "MEMBERS", "GENERATION"],
          groups.map((g) => [g.group, g.state, g.members, g.generation]),
        ),
      );
      return;
    }
    case "describe": {
      const name = positional(ctx, 2, "group name");
      const d = await withClient(ctx, (c) => c.admin.describeGroup(name));
      const offsets = d.offsets.map((o) => ({ ...o, lag: lagOf(o) }));
      const members = d.members.length === 0 ? "no live members" : table(
        ["MEMBER-ID", "INSTANCE", "CLIENT", "PARTITIONS"],
        d.members.map((m) => [
          m.memberId,
          m.instanceId === "" ? "-" : m.instanceId,
          m.clientId === "" ? "-" : m.clientId,
          partitionList(m.assigned),
        ]),
      );
      print(
        ctx,
        { ...d, offsets },
        `group ${d.group}\n\n` +
          table(["STATE", "GENERATION", "ASSIGNOR"], [[
            d.state,
            d.generation,
            d.assignor === "" ? "-" : d.assignor,
          ]]) + "\n\n" + members + "\n\n" +
          (offsets.length === 0 ? "no committed offsets" : offsetsTable(d.offsets, "COMMITTED")),
      );
      return;
    }
    case "reset-offsets": {
      const name = positional(ctx, 2, "group name");
      const topicName = v.topic;
      if (topicName === undefined) throw new UsageError("group reset-offsets needs --topic T");
      const to = resetTarget(v);
      const partitions = partitionIds(v.partitions);
      const dryRun = v["dry-run"];
      const offsets = await withClient(ctx, async (c) => {
        try {
          return await c.admin.resetOffsets(name, topicName, to, {
            dryRun,
            ...(partitions === undefined ? {} : { partitions }),
          });
        } catch (err) {
          if (err instanceof GregorError && err.code === ErrorCode.GROUP_NOT_EMPTY) {
            throw new GregorError(
              err.code,
              `${err.message} (\`gregorctl group describe ${name}\` lists them)`,
            );
          }
          throw err;
        }
      });
      const what = `${dryRun ? "would reset" : "reset"} group ${name} on ${topicName} to ` +
        describeTarget(to) + (dryRun ? " (dry run: nothing changed)" : "");
      print(
        ctx,
        {
          group: name,
          topic: topicName,
          dryRun,
          offsets: offsets.map((o) => ({ ...o, lag: lagOf(o) })),
        },
        `${what}\n\n${offsetsTable(offsets, "NEW-OFFSET")}`,
      );
      return;
    }
    default:
      throw unknownWord(`group subcommand`, sub, ["list", "describe", "reset-offsets"]);
  }
}

// --- cluster -----------------------------------------------------------------------------

async function cluster(ctx: Ctx): Promise<void> {
  const sub = positional(ctx, 1, "cluster subcommand (members, status, rebalance-leaders)");
  switch (sub) {
    case "members": {
      const r = await withClient(ctx, (c) => c.admin.clusterMembers());
      const human = r.members.length === 0
        ? "this broker is a single node, not in a cluster"
        : `self ${r.self}\n\n` + table(
          ["ID", "HOST", "CLUSTER-PORT", "CLIENT-PORT", "STATE", "INCARNATION", "HEARTBEAT"],
          r.members.map((m) => [
            m.id,
            m.host,
            m.clusterPort,
            m.clientPort,
            m.state,
            m.incarnation,
            m.heartbeat,
          ]),
        );
      print(ctx, r, human);
      return;
    }
    case "status": {
      const status = await withClient(ctx, async (c) => {
        const t0 = performance.now();
        await c.admin.ping();
        const pingMs = Math.round((performance.now() - t0) * 100) / 100;
        const members = await c.admin.clusterMembers();
        const topics = await c.admin.listTopics();
        const alive = members.members.filter((m) => m.state === "alive").length;
        // The metadata leader, which also coordinates consumer groups ("" outside a cluster).
        const controller = (await c.admin.metadata([])).controller;
        return {
          broker: `${ctx.host}:${ctx.port}`,
          brokerId: c.connection.hello?.brokerId ?? "",
          protocolVersion: c.connection.hello?.version ?? 0,
          pingMs,
          nodeId: members.self,
          members: members.members.length,
          membersAlive: alive,
          controller,
          topics: topics.length,
          metadataFaultTolerance: members.members.length === 0
            ? "not in a cluster"
            : await metaFaultTolerance(ctx),
        };
      });
      print(ctx, status, table(["FIELD", "VALUE"], Object.entries(status)));
      return;
    }
    case "rebalance-leaders": {
      const r = await withClient(ctx, (c) => c.admin.rebalanceLeaders());
      const lines = [
        `${r.moved} leadership${r.moved === 1 ? "" : "s"} handed to the preferred replica`,
      ];
      if (r.waiting > 0) {
        lines.push(
          `${r.waiting} partition${r.waiting === 1 ? " stays" : "s stay"} with ${
            r.waiting === 1 ? "its" : "their"
          } leader for now: the preferred replica is down or still catching up; run this again ` +
            `once it has caught up`,
        );
      }
      if (r.unreached.length > 0) {
        lines.push(
          `not reached: ${
            r.unreached.map((n) => n.id).join(", ")
          } (they balance at their next interval)`,
        );
      }
      print(ctx, r, lines.join("\n"));
      return;
    }
    default:
      throw unknownWord(`cluster subcommand`, sub, ["members", "status", "rebalance-leaders"]);
  }
}

/**
 * Whether the metadata group can lose a node, from the broker's metrics (the client protocol does
 * not carry the group's voters): "yes: ..." or "NO: ...", or why it is unknown.
 */
async function metaFaultTolerance(ctx: Ctx): Promise<string> {
  // Off the default port the metrics address cannot be guessed: 7071 there may be another node's.
  let url: string;
  try {
    url = metricsUrl(ctx).url;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    return `unknown: ${err.message}`;
  }
  let body: string;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(ctx.timeoutMs) });
    body = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
  } catch (err) {
    return `unknown: metrics unreachable at ${url} (${(err as Error).message}); use --metrics-url`;
  }
  const gauge = (name: string): number | null => {
    const m = new RegExp(`^${name}\\s+(\\S+)$`, "m").exec(body);
    return m === null ? null : Number(m[1]);
  };
  const voters = gauge("gregormq_meta_voters");
  const alive = gauge("gregormq_meta_voters_alive");
  const losable = gauge("gregormq_meta_nodes_losable");
  if (voters === null || alive === null || losable === null) {
    return `unknown: ${url} has no metadata group metrics (not a replicating node?)`;
  }
  const quorum = Math.floor(voters / 2) + 1;
  const counts = `${alive} of ${voters} voters alive, ${quorum} needed`;
  return losable >= 1
    ? `yes: ${counts}; it can lose ${losable} node${losable === 1 ? "" : "s"}`
    : `NO: ${counts}; losing one more node stops the metadata group`;
}

// --- metrics -----------------------------------------------------------------------------

const INTERESTING_METRIC = /request|bytes|connection/i;

/** How to find a broker's metrics address, for the messages that need the user to pass it. */
const METRICS_URL_HINT = "pass --metrics-url http://HOST:PORT/metrics (the broker's start line " +
  'names it as "metrics")';

/**
 * The metrics URL: --metrics-url, else the default a broker on the default client port serves.
 * A broker on any other port picks a free metrics port, so guessing 7071 there would silently
 * read another broker's metrics.
 */
function metricsUrl(ctx: Ctx): { url: string; guessed: boolean } {
  const given = ctx.values["metrics-url"];
  if (given !== undefined) return { url: given, guessed: false };
  if (ctx.port !== CLIENT_PORT_DEFAULT) {
    throw new UsageError(
      `the metrics address of the broker at ${ctx.host}:${ctx.port} is not known (only a broker ` +
        `on port ${CLIENT_PORT_DEFAULT} serves them on ${METRICS_PORT} by default); ` +
        METRICS_URL_HINT,
    );
  }
  return { url: `http://${ctx.host}:${METRICS_PORT}/metrics`, guessed: true };
}

async function metrics(ctx: Ctx): Promise<void> {
  const { url, guessed } = metricsUrl(ctx);
  let body: string;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(ctx.timeoutMs) });
    body = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
  } catch (err) {
    // fetch says only "fetch failed"; why (refused, a name that does not resolve) is its cause.
    const cause = (err as Error).cause;
    const why = cause instanceof Error
      ? cause.message.replace(/^error sending request for url \([^)]*\): /, "")
      : (err as Error).message;
    throw new UnreachableError(
      `metrics are unreachable at ${url}` +
        (guessed ? ` (the default for a broker on port ${CLIENT_PORT_DEFAULT})` : "") +
        ` — ${why}; is the broker running with metrics on? ` +
        (guessed ? METRICS_URL_HINT : "check --metrics-url"),
    );
  }
  // Sum each metric over its labels: the operator's first look, not a dashboard.
  const totals = new Map<string, number>();
  for (const line of body.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line.trim());
    if (m === null || !INTERESTING_METRIC.test(m[1] as string)) continue;
    const value = Number(m[3]);
    if (Number.isFinite(value)) {
      totals.set(m[1] as string, (totals.get(m[1] as string) ?? 0) + value);
    }
  }
  const rows = [...totals].slice(0, METRIC_LINES_MAX);
  print(
    ctx,
    { url, metrics: Object.fromEntries(totals) },
    rows.length === 0
      ? `no request, byte or connection metrics at ${url}`
      : table(["METRIC", "VALUE"], rows),
  );
}

// --- main --------------------------------------------------------------------------------

// --- user and acl --------------------------------------------------------------------------

/** Characters of a typed password at most. */
const PASSWORD_CHARS_MAX = 1024;

/**
 * A secret from the environment variable `name`, else typed on the terminal without echo. Never
 * a flag: flags show in `ps` and shell history.
 */
async function secret(name: string, promptText: string): Promise<string> {
  const fromEnv = Deno.env.get(name);
  if (fromEnv !== undefined) return fromEnv;
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError(`set $${name}: no terminal to ask for the password on`);
  }
  await Deno.stderr.write(new TextEncoder().encode(promptText));
  Deno.stdin.setRaw(true);
  const typed: number[] = [];
  try {
    const buf = new Uint8Array(1);
    while (typed.length < PASSWORD_CHARS_MAX) {
      const n = await Deno.stdin.read(buf);
      const b = buf[0]!;
      if (n === null || b === 0x0d || b === 0x0a) break;
      if (b === 0x03) throw new UsageError("interrupted");
      if (b === 0x7f) typed.pop();
      else typed.push(b);
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(new TextEncoder().encode("\n"));
  }
  return new TextDecoder().decode(new Uint8Array(typed));
}

/** A new password, from $GREGOR_NEW_PASSWORD or typed twice; never empty. */
async function newPassword(name: string): Promise<string> {
  const pw = await secret("GREGOR_NEW_PASSWORD", `New password for ${name}: `);
  if (Deno.env.get("GREGOR_NEW_PASSWORD") === undefined) {
    const again = await secret("GREGOR_NEW_PASSWORD", `Again: `);
    if (again !== pw) throw new UsageError("the two passwords differ");
  }
  if (pw.length === 0) throw new UsageError(`the password of ${name} must not be empty`);
  return pw;
}

/**
 * Runs `fn` on the users and ACLs of `--data-dir`, holding the directory's lock so a running
 * broker (which would not see the change, and would overwrite it) is never edited under.
 */
async function offline<T>(dir: string, fn: (store: SecurityStore) => Promise<T>): Promise<T> {
  const env = denoEnv();
  let lock;
  try {
    lock = await claimDataDir(env.disk, dir);
  } catch (err) {
    if (err instanceof DataDirError && err.kind === "in-use") {
      throw new UsageError(
        `${err.message}: stop that broker, or manage users through it (without --data-dir)`,
      );
    }
    throw err;
  }
  try {
    return await fn(await SecurityStore.open(env.disk, dir));
  } finally {
    lock.release();
  }
}

async function users(ctx: Ctx): Promise<void> {
  const sub = positional(ctx, 1, "user subcommand (add, passwd, list, remove)");
  const dir = ctx.values["data-dir"];
  const iterations = whole("iterations", ctx.values.iterations, 4096) ?? ITERATIONS_DEFAULT;
  switch (sub) {
    case "add":
    case "passwd": {
      const name = positional(ctx, 2, "user name");
      const exists = async (): Promise<boolean> =>
        (dir === undefined
          ? await withClient(ctx, (c) => c.admin.listUsers())
          : await offline(dir, (s) => Promise.resolve(s.users()))).some((u) => u.name === name);
      const known = await exists();
      if (sub === "passwd" && !known) {
        throw new UsageError(`there is no user ${name}; add it with \`user add ${name}\``);
      }
      if (sub === "add" && known) {
        throw new UsageError(
          `user ${name} exists; change its password with \`user passwd ${name}\``,
        );
      }
      const pw = await newPassword(name);
      const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
      if (dir === undefined) {
        await withClient(ctx, (c) => c.admin.putUser(name, pw, { salt, iterations }));
      } else {
        const cred = await deriveCredential(denoEnv().crypto, pw, salt, iterations);
        await offline(dir, (s) => s.putUser(name, cred).catch(rangeToUsage));
      }
      print(
        ctx,
        { user: name },
        sub === "add" ? `user ${name} saved` : `password of ${name} changed`,
      );
      return;
    }
    case "list": {
      const list = dir === undefined
        ? await withClient(ctx, (c) => c.admin.listUsers())
        : await offline(dir, (s) => Promise.resolve(s.users()));
      print(
        ctx,
        list,
        table(
          ["USER", "MECHANISM", "ITERATIONS"],
          list.map((u) => [u.name, u.mechanism, u.iterations]),
        ),
      );
      return;
    }
    case "remove":
    case "delete": {
      const name = positional(ctx, 2, "user name");
      if (dir === undefined) await withClient(ctx, (c) => c.admin.deleteUser(name));
      else if (!(await offline(dir, (s) => s.removeUser(name)))) {
        throw new UsageError(`there is no user ${name} in ${dir}`);
      }
      print(ctx, { user: name }, `user ${name} removed`);
      return;
    }
    default:
      throw unknownWord("user subcommand", sub, ["add", "passwd", "list", "remove"]);
  }
}

function rangeToUsage(err: unknown): never {
  if (err instanceof RangeError) throw new UsageError(err.message);
  throw err;
}

/** The ACL entries an `acl add` or `acl remove` command line names (one per operation). */
function aclEntries(ctx: Ctx): AclEntry[] {
  const v = ctx.values;
  const principal = v.principal;
  if (principal === undefined) throw new UsageError("--principal USER (or *) is required");
  const targets = [v.topic !== undefined, v.group !== undefined, v.cluster].filter(Boolean).length;
  if (targets !== 1) {
    throw new UsageError("give exactly one of --topic NAME, --group NAME, --cluster");
  }
  const resourceType: ResourceType = v.cluster
    ? "cluster"
    : v.topic !== undefined
    ? "topic"
    : "group";
  if (v.cluster && v.prefix) throw new UsageError("--prefix goes with --topic or --group");
  if (v.operation === undefined) throw new UsageError("--operation OP[,OP...] is required");
  return v.operation.split(",").map((op) => {
    if (!(OPERATIONS as readonly string[]).includes(op)) {
      throw unknownWord("operation", op, OPERATIONS);
    }
    return {
      principal,
      resourceType,
      pattern: v.prefix ? "prefix" : "literal",
      name: v.topic ?? v.group ?? "",
      operation: op as Operation,
    };
  });
}

function aclText(e: AclEntry): string[] {
  const what = e.resourceType === "cluster"
    ? "cluster"
    : `${e.resourceType}:${e.name}${e.pattern === "prefix" ? "*" : ""}`;
  return [e.principal, e.operation, what, e.pattern];
}

async function acls(ctx: Ctx): Promise<void> {
  const sub = positional(ctx, 1, "acl subcommand (add, remove, list)");
  const dir = ctx.values["data-dir"];
  switch (sub) {
    case "add":
    case "remove": {
      const entries = aclEntries(ctx);
      if (dir === undefined) {
        await withClient(ctx, async (c) => {
          for (const e of entries) await (sub === "add" ? c.admin.addAcl(e) : c.admin.removeAcl(e));
        });
      } else {
        await offline(dir, async (s) => {
          for (const e of entries) {
            const done = await (sub === "add" ? s.addAcl(e) : s.removeAcl(e)).catch(rangeToUsage);
            if (!done && sub === "remove") throw new UsageError("no such ACL entry");
          }
        });
      }
      print(
        ctx,
        entries,
        entries.map((e) => `${sub === "add" ? "allowed" : "removed"}: ${aclText(e).join(" ")}`)
          .join("\n"),
      );
      return;
    }
    case "list": {
      const list = dir === undefined
        ? await withClient(ctx, (c) => c.admin.listAcls())
        : await offline(dir, (s) => Promise.resolve([...s.acls]));
      print(ctx, list, table(["PRINCIPAL", "OPERATION", "RESOURCE", "PATTERN"], list.map(aclText)));
      return;
    }
    default:
      throw unknownWord("acl subcommand", sub, ["add", "remove", "list"]);
  }
}

function parseBroker(value: string): { host: string; port: number } {
  const m = /^([^:\s]+):(\d{1,5})$/.exec(value);
  const port = Number(m?.[2]);
  if (m === null || port < 1 || port > 65535) {
    throw new UsageError(
      `--broker takes host:port, or several separated by commas, got ${JSON.stringify(value)}`,
    );
  }
  return { host: m[1] as string, port };
}

/** `--broker a:1,b:2`: the brokers to try in order; each checked now, so a typo is a usage error. */
function parseBrokers(value: string): string[] {
  const servers = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (servers.length === 0) throw new UsageError("--broker takes host:port, got nothing");
  if (servers.length > BROKERS_MAX) {
    throw new UsageError(`--broker takes at most ${BROKERS_MAX} addresses, got ${servers.length}`);
  }
  for (const s of servers) parseBroker(s);
  return servers;
}

/** node:util's parse errors, in this tool's words: the option, and the nearest known one. */
function parseArgsError(err: Error & { code?: string }): UsageError {
  const option = /'(-{1,2}[^' ]+)/.exec(err.message)?.[1];
  if (option === undefined) return new UsageError(err.message);
  if (err.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const known = Object.keys(OPTIONS).map((name) => `--${name}`);
    return unknownWord("option", option, known);
  }
  if (err.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    return new UsageError(
      OPTIONS[option.replace(/^-+/, "") as keyof typeof OPTIONS]?.type === "boolean"
        ? `${option} takes no value`
        : `${option} needs a value`,
    );
  }
  return new UsageError(err.message);
}

async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw parseArgsError(err as Error & { code?: string });
  }
  const { values, positionals } = parsed;
  if (values.version) {
    console.log(`gregorctl ${denoJson.version} (deno ${Deno.version.deno})`);
    return Exit.ok;
  }
  // `help` is what a newcomer types first: it is --help, not an unknown command.
  if (values.help || positionals[0] === "help") {
    console.log(USAGE);
    return Exit.ok;
  }
  if (positionals.length === 0) throw new UsageError(`missing command (${COMMANDS.join(", ")})`);
  const servers = parseBrokers(values.broker ?? Deno.env.get("GREGOR_BROKER") ?? BROKER_DEFAULT);
  const { host, port } = parseBroker(servers[0]!);
  const ctx: Ctx = {
    values,
    args: positionals,
    servers,
    host,
    port,
    timeoutMs: whole("timeout", values.timeout, 1) ?? TIMEOUT_MS_DEFAULT,
    json: values.json,
    login: null,
    tls: await readTls(values),
  };
  const user = values.user ?? Deno.env.get("GREGOR_USER");
  if (user !== undefined && values["data-dir"] === undefined) {
    ctx.login = {
      username: user,
      password: await secret("GREGOR_PASSWORD", `Password for ${user}: `),
    };
  }
  switch (positionals[0]) {
    case "topic":
      await topic(ctx);
      break;
    case "partition":
    case "partitions":
      await partition(ctx);
      break;
    case "produce":
      await produce(ctx);
      break;
    case "consume":
      await consume(ctx);
      break;
    case "cluster":
      await cluster(ctx);
      break;
    case "metrics":
      await metrics(ctx);
      break;
    case "group":
    case "groups":
      await group(ctx);
      break;
    case "user":
    case "users":
      await users(ctx);
      break;
    case "acl":
    case "acls":
      await acls(ctx);
      break;
    default:
      throw unknownWord("command", positionals[0]!, COMMANDS);
  }
  return Exit.ok;
}

async function main(): Promise<number> {
  try {
    return await run(Deno.args);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`error: ${err.message} (see \`gregorctl --help\`)`);
      return Exit.usage;
    }
    if (err instanceof GregorError) {
      console.error(`error: ${err.codeName}: ${err.message}`);
      return Exit.refused;
    }
    if (err instanceof UnreachableError) {
      console.error(err.message);
      return Exit.unreachable;
    }
    if (err instanceof ConnectionError) {
      console.error(`error: lost the broker: ${err.message}`);
      return Exit.unreachable;
    }
    throw err;
  }
}

Deno.exit(await main());
