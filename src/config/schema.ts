// Every configuration key a node reads, with its type, default, allowed values and meaning. The
// loader, the flag and environment names, `--help` and the table in docs/operations.md derive from it.

import { DEFAULT_BROKER_OPTIONS } from "../broker/options.ts";

/** What kind of value a key takes, and so how a string or a file value is checked. */
export type KeyKind = "int" | "bool" | "string" | "enum" | "list" | "fsync";

/** One configuration key. */
export interface KeySpec {
  /** The key as written in a file: dotted for nested groups (`cluster.port`), camelCase otherwise. */
  readonly key: string;
  readonly kind: KeyKind;
  /** The default; `null` when unset means something (cluster off, metrics host = host). */
  readonly default: number | boolean | string | readonly string[] | null;
  /** How the docs show the default when the value alone would not say it. */
  readonly defaultText?: string;
  /** Smallest and largest value of an `int`. */
  readonly min?: number;
  readonly max?: number;
  /** The values an `enum` takes. */
  readonly values?: readonly string[];
  /** A `list` entry's required shape and its description in errors. */
  readonly entry?: { readonly pattern: RegExp; readonly text: string };
  /** Extra flag names kept from earlier releases (`--seeds` for `--cluster-seeds`). */
  readonly flagAliases?: readonly string[];
  /** Extra environment variables kept because docs and deployments use them. */
  readonly envAliases?: readonly string[];
  /** One line on what the key does. */
  readonly description: string;
}

/** The groups whose keys nest in a file (`cluster: { port: 7072 }`). */
export const KEY_GROUPS: readonly string[] = ["metrics", "cluster", "log", "tls"];

const PORT = { kind: "int", min: 0, max: 65535 } as const;
const D = DEFAULT_BROKER_OPTIONS;
const SAFE = Number.MAX_SAFE_INTEGER;

/** Every key, in the order `--help` and the docs list them. */
export const CONFIG_SCHEMA: readonly KeySpec[] = [
  {
    key: "host",
    kind: "string",
    default: "127.0.0.1",
    description: "address to listen on for clients (`0.0.0.0` for every interface)",
  },
  { key: "port", ...PORT, default: 7070, description: "client port; 0 picks a free one" },
  {
    key: "dataDir",
    kind: "string",
    default: D.dataDir,
    description: "where disk topics, durable subscription offsets and the node id live",
  },
  {
    key: "brokerId",
    kind: "string",
    default: null,
    defaultText: `the node id in a cluster, else \`${D.brokerId}\``,
    description: "the name the broker gives clients in the handshake",
  },
  {
    key: "metrics.enabled",
    kind: "bool",
    default: true,
    description: "serve `/metrics`, `/healthz` and `/readyz` over HTTP",
  },
  {
    key: "metrics.host",
    kind: "string",
    default: null,
    defaultText: "same as `host`",
    description: "address of the metrics and health HTTP endpoint",
  },
  {
    key: "metrics.port",
    ...PORT,
    default: null,
    defaultText: "7071 if port is 7070, else any free port",
    description: "port of the metrics and health HTTP endpoint; 0 picks a free one",
  },
  {
    key: "cluster.port",
    ...PORT,
    default: null,
    defaultText: "off; 7072 when seeds are given",
    description: "gossip port; setting it (or seeds) joins a cluster; 0 picks a free one",
  },
  {
    key: "cluster.seeds",
    kind: "list",
    default: [],
    entry: { pattern: /^[^:\s,]+:\d{1,5}$/, text: "host:port entries" },
    flagAliases: ["seeds"],
    envAliases: ["GREGOR_SEEDS"],
    description: "other nodes' cluster addresses `host:port`, or a DNS name:port; joins a cluster",
  },
  {
    key: "cluster.advertiseHost",
    kind: "string",
    default: null,
    defaultText: "same as `host`",
    flagAliases: ["advertise-host"],
    description: "the address other nodes reach this one at",
  },
  {
    key: "cluster.replicate",
    kind: "bool",
    default: true,
    description:
      "replicate topics with Raft across the cluster (--no-cluster-replicate: each node keeps its own topics)",
  },
  {
    key: "cluster.bootstrapExpect",
    kind: "int",
    min: 0,
    max: 64,
    default: 0,
    defaultText: "0: 1 for a node without seeds, else join an existing cluster",
    description: "live nodes needed before a fresh cluster founds its metadata group",
  },
  {
    key: "cluster.leaderBalanceIntervalMs",
    kind: "int",
    min: 0,
    max: 24 * 3600 * 1000,
    default: 30_000,
    description:
      "how often a node hands partitions it leads back to their preferred replicas (0: never)",
  },
  {
    key: "cluster.replicaMoveAfterMs",
    kind: "int",
    min: 0,
    max: 7 * 24 * 3600 * 1000,
    default: 600_000,
    description: "how long a node may be dead before the controller moves its replicas (0: never)",
  },
  {
    key: "cluster.replicationFactor",
    kind: "int",
    min: 1,
    max: 7,
    default: 3,
    description: "replicas per partition (capped at the live nodes)",
  },
  {
    key: "tls.cert",
    kind: "string",
    default: null,
    defaultText: "off: plaintext",
    description: "PEM certificate chain file; with tls.key, the client port speaks TLS only",
  },
  {
    key: "tls.key",
    kind: "string",
    default: null,
    defaultText: "none",
    description: "PEM private key file of tls.cert",
  },
  {
    key: "tls.ca",
    kind: "string",
    default: null,
    defaultText: "none",
    description: "PEM file of the CAs that sign client certificates (mutual TLS)",
  },
  {
    key: "tls.clientCertRequired",
    kind: "bool",
    default: false,
    description: "refuse clients without a certificate signed by tls.ca (mutual TLS)",
  },
  {
    key: "cluster.tlsCert",
    kind: "string",
    default: null,
    defaultText: "off: plaintext",
    description:
      "PEM certificate file this node presents on the cluster port, as server and client",
  },
  {
    key: "cluster.tlsKey",
    kind: "string",
    default: null,
    defaultText: "none",
    description: "PEM private key file of cluster.tlsCert",
  },
  {
    key: "cluster.tlsCa",
    kind: "string",
    default: null,
    defaultText: "none",
    description:
      "PEM file of the CAs that sign node certificates; nodes must present one (mutual TLS)",
  },
  {
    key: "cluster.tlsServerName",
    kind: "string",
    default: null,
    defaultText: "the address dialed",
    description: "the name every node certificate carries, checked when dialing another node",
  },
  {
    key: "cluster.secretFile",
    kind: "string",
    default: null,
    defaultText: "<dataDir>/cluster.secret if it exists",
    description:
      "file holding the cluster secret, which nodes prove before any gossip or Raft message",
  },
  {
    key: "cluster.secret",
    kind: "string",
    default: null,
    defaultText: "none",
    description:
      "the cluster secret itself, 16+ bytes (a flag shows in the process list: prefer the variable)",
  },
  {
    key: "cluster.secretPreviousFile",
    kind: "string",
    default: null,
    defaultText: "none",
    description:
      "file holding the previous cluster secret, also proved and accepted during a rolling change",
  },
  {
    key: "cluster.secretPrevious",
    kind: "string",
    default: null,
    defaultText: "none",
    description:
      "the previous cluster secret itself, during a rolling change (prefer the variable or the file)",
  },
  {
    key: "metrics.tlsCert",
    kind: "string",
    default: null,
    defaultText: "off: plain HTTP",
    description: "PEM certificate file for the metrics and health endpoint (HTTPS)",
  },
  {
    key: "metrics.tlsKey",
    kind: "string",
    default: null,
    defaultText: "none",
    description: "PEM private key file of metrics.tlsCert",
  },
  {
    key: "allowInsecurePublic",
    kind: "bool",
    default: false,
    description:
      "start on a non-loopback host without client authentication (SCRAM or mutual TLS; refused otherwise)",
  },
  {
    key: "log.format",
    kind: "enum",
    default: "json",
    values: ["json", "text"],
    description: "log lines on stdout: one JSON object each, or plain text",
  },
  {
    key: "autoCreateTopics",
    kind: "bool",
    default: D.autoCreateTopics,
    flagAliases: ["auto-create"],
    description: "create a topic on its first publish or subscribe",
  },
  {
    key: "defaultPartitions",
    kind: "int",
    min: 1,
    max: 1024,
    default: D.defaultPartitions,
    flagAliases: ["partitions"],
    description: "partitions of an auto-created topic",
  },
  {
    key: "auth",
    kind: "enum",
    default: D.auth,
    values: ["none", "scram"],
    description: "`scram`: clients authenticate with SCRAM-SHA-256 and the ACLs apply",
  },
  {
    key: "superUsers",
    kind: "list",
    default: [],
    entry: { pattern: /^[A-Za-z0-9._@-]{1,128}$/, text: "user names" },
    description: "users the ACLs never deny, who alone manage users and ACLs",
  },
  {
    key: "defaultPersistence",
    kind: "enum",
    default: D.defaultPersistence,
    values: ["disk", "memory"],
    flagAliases: ["persistence"],
    description: "persistence of topics created without a `persistence` config",
  },
  {
    key: "defaultFsync",
    kind: "fsync",
    default: D.defaultFsync,
    flagAliases: ["fsync"],
    description: "fsync policy of disk topics without an `fsync` config",
  },
  {
    key: "retentionMs",
    kind: "int",
    min: -1,
    max: SAFE,
    default: D.retentionMs,
    description: "retention by age of disk topics without `retention.ms`, ms; -1 keeps forever",
  },
  {
    key: "diskRetentionBytes",
    kind: "int",
    min: -1,
    max: SAFE,
    default: D.diskRetentionBytes,
    description: "retention by size of disk topics without `retention.bytes`; -1: no limit",
  },
  {
    key: "retentionBytes",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.retentionBytes,
    description: "bytes a memory partition keeps before dropping its oldest batches",
  },
  {
    key: "segmentBytes",
    kind: "int",
    min: 1024,
    max: SAFE,
    default: D.segmentBytes,
    description: "segment size of disk topics without `segment.bytes`",
  },
  {
    key: "segmentMs",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.segmentMs,
    description: "segment age of disk topics without `segment.ms`, ms",
  },
  {
    key: "indexIntervalBytes",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.indexIntervalBytes,
    description: "bytes between two offset index entries",
  },
  {
    key: "retentionCheckMs",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.retentionCheckMs,
    description: "how often retention is enforced, ms",
  },
  {
    key: "offsetsFlushMs",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.offsetsFlushMs,
    description: "how often changed durable subscription offsets are written, ms",
  },
  {
    key: "idleTimeoutMs",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.idleTimeoutMs,
    description: "a connection silent this long is closed, ms",
  },
  {
    key: "groupsTickMs",
    kind: "int",
    min: 10,
    max: 60_000,
    default: D.groupsTickMs,
    description: "how often consumer-group sessions are checked for expiry, ms",
  },
  {
    key: "payloadBytesMax",
    kind: "int",
    min: 1024,
    max: 0x7fffffff,
    default: D.payloadBytesMax,
    description: "largest frame payload accepted, bytes",
  },
  {
    key: "batchBytesMax",
    kind: "int",
    min: 1,
    max: 0x7fffffff,
    default: D.batchBytesMax,
    description: "largest record batch a producer may send, bytes as sent",
  },
  {
    key: "recordsBytesMax",
    kind: "int",
    min: 1,
    max: 0x7fffffff,
    default: D.recordsBytesMax,
    description: "largest records section of a batch once decompressed, bytes",
  },
  {
    key: "topicsMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.topicsMax,
    description: "topics at most",
  },
  {
    key: "partitionsMax",
    kind: "int",
    min: 1,
    max: 65535,
    default: D.partitionsMax,
    description: "partitions per topic at most",
  },
  {
    key: "partitionsTotalMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.partitionsTotalMax,
    description: "partitions of all topics together at most; more are refused",
  },
  {
    key: "fileHandlesMax",
    kind: "int",
    min: 16,
    max: SAFE,
    default: D.fileHandlesMax,
    description:
      "open file handles storage keeps at most; idle segment files past it are closed and reopened",
  },
  {
    key: "connectionsMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.connectionsMax,
    description: "client connections at most; more are refused",
  },
  {
    key: "handshakingConnectionsMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.handshakingConnectionsMax,
    description: "connections still waiting for their HELLO at most; past it the oldest is closed",
  },
  {
    key: "handshakeTimeoutMs",
    kind: "int",
    min: 100,
    max: 3_600_000,
    default: D.handshakeTimeoutMs,
    description: "a connection without a completed HELLO this long after connecting is closed, ms",
  },
  {
    key: "handshakeBytesMax",
    kind: "int",
    min: 256,
    max: 1024 * 1024,
    default: D.handshakeBytesMax,
    description: "largest frame payload accepted before the handshake completes, bytes",
  },
  {
    key: "subscriptionsPerConnectionMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.subscriptionsPerConnectionMax,
    description: "subscriptions per connection at most",
  },
  {
    key: "requestsInFlightMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.requestsInFlightMax,
    description: "requests one connection may have in progress before reading from it pauses",
  },
  {
    key: "outboundBytesMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.outboundBytesMax,
    description: "bytes queued for one connection before reading its requests pauses",
  },
  {
    key: "deliverBytesMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.deliverBytesMax,
    description: "largest DELIVER frame's records, bytes",
  },
  {
    key: "creditMessagesMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.creditMessagesMax,
    description: "credit a subscription may hold, messages; larger grants are clipped",
  },
  {
    key: "creditBytesMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.creditBytesMax,
    description: "credit a subscription may hold, bytes; larger grants are clipped",
  },
  {
    key: "ackTimeoutMsMax",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.ackTimeoutMsMax,
    description: "largest ack timeout a subscriber may ask for, ms",
  },
  {
    key: "redeliveryTickMs",
    kind: "int",
    min: 1,
    max: SAFE,
    default: D.redeliveryTickMs,
    description: "how often unacknowledged deliveries are checked for redelivery, ms",
  },
];

/** `cluster.advertiseHost` → `cluster-advertise-host`: the flag name, without the dashes. */
export function flagName(key: string): string {
  return key.replace(/\./g, "-").replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** `cluster.advertiseHost` → `GREGOR_CLUSTER_ADVERTISE_HOST`. */
export function envName(key: string): string {
  return `GREGOR_${flagName(key).replace(/-/g, "_").toUpperCase()}`;
}

/** The default as the docs and `--help` show it. */
export function defaultText(spec: KeySpec): string {
  if (spec.defaultText !== undefined) return spec.defaultText;
  if (Array.isArray(spec.default)) {
    return spec.default.length === 0 ? "none" : spec.default.join(",");
  }
  return String(spec.default);
}

/** `--help` text: every flag with its environment variable and default. */
export function configHelp(): string {
  const lines = [
    "  --config FILE  a YAML or JSON file of the keys below (flags > GREGOR_* env > file)",
  ];
  for (const spec of CONFIG_SCHEMA) {
    const flag = spec.kind === "bool" ? `--[no-]${flagName(spec.key)}` : `--${flagName(spec.key)}`;
    const aliases = (spec.flagAliases ?? []).map((a) => `--${a}`).join(", ");
    lines.push(
      `  ${flag}${aliases === "" ? "" : ` (${aliases})`}  ${envName(spec.key)}  ` +
        `[${defaultText(spec)}]  ${spec.description}`,
    );
  }
  return lines.join("\n");
}

/** The docs/operations.md table of every key (regenerate it from here when a key changes). */
export function configTable(): string {
  const esc = (s: string): string => s.replace(/\|/g, "\\|");
  const rows = CONFIG_SCHEMA.map((s) => {
    const flags = [flagName(s.key), ...(s.flagAliases ?? [])].map((f) =>
      s.kind === "bool" ? `\`--[no-]${f}\`` : `\`--${f}\``
    );
    const envs = [envName(s.key), ...(s.envAliases ?? [])].map((e) => `\`${e}\``);
    const allowed = s.kind === "enum"
      ? ` (${s.values!.join(" \\| ")})`
      : s.kind === "fsync"
      ? " (always \\| never \\| interval:&lt;ms&gt;)"
      : "";
    return `| \`${s.key}\` | ${flags.join(", ")} | ${envs.join(", ")} | \`${
      esc(defaultText(s))
    }\` | ${esc(s.description)}${allowed} |`;
  });
  return [
    "| key | flag | environment | default | meaning |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
  ]
    .join("\n");
}
