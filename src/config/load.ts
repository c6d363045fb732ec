// Loads a node's settings from defaults, a YAML or JSON file, GREGOR_* environment variables and
// flags (later sources win), checking every value against CONFIG_SCHEMA. Pure: the caller reads.

import type { BrokerOptions } from "../broker/options.ts";
import { type ClusterConfig, DEFAULT_CLIENT_PORT, type NodeConfig } from "../node.ts";
import { DEFAULT_METRICS_PORT } from "../metrics/mod.ts";
import { parseFsyncPolicy } from "../storage/file_log.ts";
import { CONFIG_SCHEMA, envName, flagName, type KeySpec } from "./schema.ts";
import { CLUSTER_SECRET_BYTES_MAX, CLUSTER_SECRET_BYTES_MIN } from "../cluster/cluster_auth.ts";

/** Where a value came from. */
export type ConfigSource = "file" | "env" | "flag";

/** What `ConfigError` is built from. */
export interface ConfigErrorOptions {
  /** The key (or, for an unknown one, the name as given). */
  key: string;
  /** The offending value as shown to the user (JSON-quoted strings). */
  value: string;
  /** What would have been accepted. */
  allowed: string;
  source: ConfigSource;
  /** The exact place: `GREGOR_PORT`, `--port`, `file gregor.yaml`. */
  origin: string;
  /** A one-line message other than the standard "key = value: expected allowed". */
  message?: string;
}

/** A bad configuration value; its message is one line naming the key, the value and what is allowed. */
export class ConfigError extends Error {
  readonly key: string;
  readonly value: string;
  readonly allowed: string;
  readonly source: ConfigSource;
  readonly origin: string;

  constructor(o: ConfigErrorOptions) {
    super(
      o.message ??
        `Invalid config: ${o.key} = ${o.value} (from ${o.origin}): expected ${o.allowed}`,
    );
    this.name = "ConfigError";
    this.key = o.key;
    this.value = o.value;
    this.allowed = o.allowed;
    this.source = o.source;
    this.origin = o.origin;
  }
}

/** Everything a node is configured with, after defaults, file, environment and flags. */
export interface NodeSettings {
  host: string;
  port: number;
  dataDir: string;
  /** `null`: not configured; a clustered node then uses its node id, a single node the default. */
  brokerId: string | null;
  metrics: { enabled: boolean; host: string; port: number };
  /** `null`: a single node (no cluster port and no seeds). */
  cluster: {
    port: number;
    seeds: string[];
    advertiseHost: string;
    replicate: boolean;
    /** 0: automatic (see ClusterConfig.bootstrapExpect). */
    bootstrapExpect: number;
    replicationFactor: number;
    /** How often leaders go back to their preferred replicas, ms (0: never). */
    leaderBalanceIntervalMs: number;
    /** How long a node may be dead before its replicas move to live nodes, ms (0: never). */
    replicaMoveAfterMs: number;
    /** The cluster secret as given (environment, file or flag), or null. */
    secret: string | null;
    /** A file holding it (read by the caller), or null: then `<dataDir>/cluster.secret`, if any. */
    secretFile: string | null;
    /** The secret the cluster is moving away from (a rolling change), as given, or null. */
    secretPrevious: string | null;
    /** A file holding that one (read by the caller), or null. */
    secretPreviousFile: string | null;
  } | null;
  log: { format: "json" | "text" };
  /** Certificate files (paths, read by the caller) and the insecure-public override. */
  tls: TlsSettings;
  /** The broker tunables other than dataDir and brokerId (credentials are not configured here). */
  broker: Omit<BrokerOptions, "credentials" | "dataDir" | "brokerId">;
}

/** Paths of the PEM files for each port's TLS; `null` where that port is plaintext. */
export interface TlsSettings {
  client: { cert: string; key: string; ca: string | null; clientCertRequired: boolean } | null;
  /** The cluster port is mutual: `ca` checks the other nodes, as servers and as clients. */
  cluster: { cert: string; key: string; ca: string; serverName: string | null } | null;
  metrics: { cert: string; key: string } | null;
  /** Start on a non-loopback host without TLS on the client port. */
  allowInsecurePublic: boolean;
}

/** What `loadConfig` reads; the caller has read the file and the environment. */
export interface ConfigInput {
  /** The `--config` file: its name (its extension picks YAML or JSON) and text. */
  file?: { name: string; text: string };
  /** Environment variables; only `GREGOR_*` ones are looked at. */
  env: Record<string, string>;
  /** Command-line arguments. */
  args: string[];
}

/** Settings and the warnings worth logging about them. */
export interface LoadedConfig {
  config: NodeSettings;
  warnings: string[];
}

/** The gossip port used when seeds are given without `cluster.port`. */
export const DEFAULT_CLUSTER_PORT = 7072;

/** GREGOR_* variables that other tools read (gregorctl's broker address): not the node's, not unknown. */
const OTHER_TOOLS_ENV: ReadonlySet<string> = new Set([
  "GREGOR_BROKER",
  "GREGOR_USER",
  "GREGOR_PASSWORD",
]);

type Value = number | boolean | string | string[] | null;

const SPECS: ReadonlyMap<string, KeySpec> = new Map(CONFIG_SCHEMA.map((s) => [s.key, s]));
const ENV_NAMES: ReadonlyMap<string, KeySpec> = new Map(
  CONFIG_SCHEMA.flatMap((s) => [envName(s.key), ...(s.envAliases ?? [])].map((n) => [n, s])),
);
const FLAG_NAMES: ReadonlyMap<string, KeySpec> = new Map(
  CONFIG_SCHEMA.flatMap((s) => [flagName(s.key), ...(s.flagAliases ?? [])].map((n) => [n, s])),
);
const GROUPS: ReadonlySet<string> = new Set(
  CONFIG_SCHEMA.filter((s) => s.key.includes(".")).map((s) => s.key.split(".")[0]!),
);

/**
 * The YAML parser, loaded by `loadYaml()`: only a node given a YAML file pays for loading it (a
 * few tens of ms of start-up). A cache of a pure function: the same for every caller.
 */
let parseYaml: ((text: string) => unknown) | null = null;

/** Loads the YAML parser; call it before `loadConfig` with a YAML file. */
export async function loadYaml(): Promise<void> {
  parseYaml ??= (await import("yaml")).parse;
}

/** The `--config FILE` argument, if given. */
export function configFileArg(args: readonly string[]): string | undefined {
  let file: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--config") file = args[++i];
    else if (a.startsWith("--config=")) file = a.slice("--config=".length);
  }
  return file;
}

/**
 * Loads settings: defaults < file < `GREGOR_*` environment < flags.
 * @throws {ConfigError} on a bad value, an unknown key, variable or flag, or an unreadable file.
 */
export function loadConfig(input: ConfigInput): LoadedConfig {
  const values = new Map<string, Value>(
    CONFIG_SCHEMA.map((s): [string, Value] => [
      s.key,
      typeof s.default === "object" && s.default !== null ? [...s.default] : s.default,
    ]),
  );
  const origins = new Map<string, { source: ConfigSource; origin: string }>();
  const warnings: string[] = [];
  const set = (spec: KeySpec, v: Value, source: ConfigSource, origin: string): void => {
    values.set(spec.key, v);
    origins.set(spec.key, { source, origin });
  };

  if (input.file !== undefined) {
    const origin = `file ${input.file.name}`;
    for (const [path, raw] of flattenFile(input.file, origin)) {
      const spec = SPECS.get(path);
      if (spec === undefined) {
        throw unknown(path, JSON.stringify(raw) ?? "null", "file", origin, [...SPECS.keys()]);
      }
      set(spec, fromFileValue(spec, raw, origin), "file", origin);
    }
  }

  // Aliases first, so the canonical variable wins when both are set.
  const envEntries = Object.entries(input.env)
    .filter(([n]) => n.startsWith("GREGOR_") && !OTHER_TOOLS_ENV.has(n))
    .sort(([a], [b]) => Number(isEnvAlias(b)) - Number(isEnvAlias(a)) || a.localeCompare(b));
  const envSeen = new Map<string, string>();
  for (const [name, raw] of envEntries) {
    const spec = ENV_NAMES.get(name);
    if (spec === undefined) {
      throw unknown(name, JSON.stringify(raw), "env", name, [...ENV_NAMES.keys()]);
    }
    const earlier = envSeen.get(spec.key);
    if (earlier !== undefined) warnings.push(`${name} overrides ${earlier} (both set)`);
    envSeen.set(spec.key, name);
    set(spec, fromString(spec, raw, "env", name), "env", name);
  }

  for (const [spec, raw, origin] of parseFlags(input.args)) {
    set(
      spec,
      typeof raw === "boolean" ? raw : fromString(spec, raw, "flag", origin),
      "flag",
      origin,
    );
  }

  const config = assemble(values);
  const partitions = origins.get("defaultPartitions");
  if (config.broker.defaultPartitions > config.broker.partitionsMax && partitions !== undefined) {
    throw new ConfigError({
      key: "defaultPartitions",
      value: String(config.broker.defaultPartitions),
      allowed: `at most partitionsMax (${config.broker.partitionsMax})`,
      ...partitions,
    });
  }
  const secrets = [
    ["cluster.secret", "cluster.secretFile", "GREGOR_CLUSTER_SECRET"],
    ["cluster.secretPrevious", "cluster.secretPreviousFile", "GREGOR_CLUSTER_SECRET_PREVIOUS"],
  ] as const;
  for (const [secretKey, fileKey, variable] of secrets) {
    const secret = origins.get(secretKey);
    if (secret === undefined) continue;
    const value = values.get(secretKey) as string;
    const bytes = new TextEncoder().encode(value).length;
    if (bytes < CLUSTER_SECRET_BYTES_MIN || bytes > CLUSTER_SECRET_BYTES_MAX) {
      throw new ConfigError({
        key: secretKey,
        value: `(${bytes} bytes, not shown)`,
        allowed:
          `${CLUSTER_SECRET_BYTES_MIN} to ${CLUSTER_SECRET_BYTES_MAX} bytes (make one with: openssl rand -base64 32)`,
        ...secret,
      });
    }
    if (origins.has(fileKey)) {
      throw new ConfigError({
        key: fileKey,
        value: JSON.stringify(values.get(fileKey)),
        allowed: `unset when ${secretKey} is set (give the secret one way)`,
        ...(origins.get(fileKey) as { source: ConfigSource; origin: string }),
      });
    }
    if (secret.source === "flag") {
      warnings.push(
        `${secretKey} is given as ${secret.origin}: any user of this machine can read it in the ` +
          `process list; use ${variable} or ${fileKey} instead`,
      );
    }
  }
  const secretKeys = secrets.flatMap(([secretKey, fileKey]) => [secretKey, fileKey]);
  const secretsGiven = secretKeys.filter((k) => origins.has(k));
  if (config.cluster === null && secretsGiven.length > 0) {
    warnings.push(
      `${secretsGiven.join(" and ")} ${
        secretsGiven.length === 1 ? "is" : "are"
      } set but clustering is off (set cluster.port or cluster.seeds)`,
    );
  }
  if (config.cluster === null && origins.has("cluster.advertiseHost")) {
    warnings.push(
      "cluster.advertiseHost is set but clustering is off (set cluster.port or cluster.seeds)",
    );
  }
  if (config.cluster !== null && values.get("cluster.advertiseHost") === null) {
    if (config.host === "0.0.0.0" || config.host === "::") {
      warnings.push(
        `host is ${config.host} and cluster.advertiseHost is unset: other nodes will be told ` +
          `to reach this one at ${config.host}`,
      );
    }
  }
  if (!config.metrics.enabled && (origins.has("metrics.port") || origins.has("metrics.host"))) {
    warnings.push("metrics.port or metrics.host is set but metrics.enabled is false");
  }
  return { config, warnings };
}

/** The `NodeConfig` that `startNode` takes for these settings (hooks are the caller's). */
export function toNodeConfig(
  settings: NodeSettings,
  extra: Pick<NodeConfig, "hooks"> = {},
): NodeConfig {
  let cluster: ClusterConfig | undefined;
  if (settings.cluster !== null) {
    cluster = {
      port: settings.cluster.port,
      seeds: [...settings.cluster.seeds],
      advertiseHost: settings.cluster.advertiseHost,
      replicate: settings.cluster.replicate,
      replicationFactor: settings.cluster.replicationFactor,
      ...(settings.cluster.secret === null ? {} : { secret: settings.cluster.secret }),
      ...(settings.cluster.secretPrevious === null
        ? {}
        : { previousSecret: settings.cluster.secretPrevious }),
      ...(settings.cluster.bootstrapExpect > 0
        ? { bootstrapExpect: settings.cluster.bootstrapExpect }
        : {}),
      raft: {
        leaderBalanceIntervalMs: settings.cluster.leaderBalanceIntervalMs,
        replicaMoveAfterMs: settings.cluster.replicaMoveAfterMs,
      },
    };
  }
  return {
    host: settings.host,
    port: settings.port,
    broker: {
      ...settings.broker,
      dataDir: settings.dataDir,
      ...(settings.brokerId === null ? {} : { brokerId: settings.brokerId }),
    },
    cluster,
    metrics: metricsConfig(settings),
    ...extra,
  };
}

/** Where the metrics and health endpoint should listen, or `undefined` when disabled. */
export function metricsConfig(settings: NodeSettings): { host: string; port: number } | undefined {
  return settings.metrics.enabled
    ? { host: settings.metrics.host, port: settings.metrics.port }
    : undefined;
}

function isEnvAlias(name: string): boolean {
  const spec = ENV_NAMES.get(name);
  return spec !== undefined && envName(spec.key) !== name;
}

function assemble(v: ReadonlyMap<string, Value>): NodeSettings {
  const num = (k: string): number => v.get(k) as number;
  const str = (k: string): string => v.get(k) as string;
  const host = str("host");
  const seeds = v.get("cluster.seeds") as string[];
  const clusterPort = v.get("cluster.port") as number | null;
  const clustered = clusterPort !== null || seeds.length > 0;
  return {
    host,
    port: num("port"),
    dataDir: str("dataDir"),
    brokerId: v.get("brokerId") as string | null,
    metrics: {
      enabled: v.get("metrics.enabled") as boolean,
      host: (v.get("metrics.host") as string | null) ?? host,
      // 7071 beside the default client port; nodes started side by side on other client ports get
      // any free port (told in the listen line) rather than all contend for 7071.
      port: (v.get("metrics.port") as number | null) ??
        (num("port") === DEFAULT_CLIENT_PORT ? DEFAULT_METRICS_PORT : 0),
    },
    cluster: clustered
      ? {
        port: clusterPort ?? DEFAULT_CLUSTER_PORT,
        seeds,
        advertiseHost: (v.get("cluster.advertiseHost") as string | null) ?? host,
        replicate: v.get("cluster.replicate") as boolean,
        bootstrapExpect: num("cluster.bootstrapExpect"),
        replicationFactor: num("cluster.replicationFactor"),
        leaderBalanceIntervalMs: num("cluster.leaderBalanceIntervalMs"),
        replicaMoveAfterMs: num("cluster.replicaMoveAfterMs"),
        secret: v.get("cluster.secret") as string | null,
        secretFile: v.get("cluster.secretFile") as string | null,
        secretPrevious: v.get("cluster.secretPrevious") as string | null,
        secretPreviousFile: v.get("cluster.secretPreviousFile") as string | null,
      }
      : null,
    log: { format: str("log.format") as "json" | "text" },
    tls: tlsSettings(v),
    broker: {
      autoCreateTopics: v.get("autoCreateTopics") as boolean,
      defaultPartitions: num("defaultPartitions"),
      auth: str("auth") as "none" | "scram",
      superUsers: [...(v.get("superUsers") as string[])],
      defaultPersistence: str("defaultPersistence") as "disk" | "memory",
      defaultFsync: str("defaultFsync"),
      retentionMs: num("retentionMs"),
      diskRetentionBytes: num("diskRetentionBytes"),
      retentionBytes: num("retentionBytes"),
      segmentBytes: num("segmentBytes"),
      segmentMs: num("segmentMs"),
      indexIntervalBytes: num("indexIntervalBytes"),
      retentionCheckMs: num("retentionCheckMs"),
      offsetsFlushMs: num("offsetsFlushMs"),
      idleTimeoutMs: num("idleTimeoutMs"),
      groupsTickMs: num("groupsTickMs"),
      payloadBytesMax: num("payloadBytesMax"),
      batchBytesMax: num("batchBytesMax"),
      recordsBytesMax: num("recordsBytesMax"),
      topicsMax: num("topicsMax"),
      partitionsMax: num("partitionsMax"),
      partitionsTotalMax: num("partitionsTotalMax"),
      fileHandlesMax: num("fileHandlesMax"),
      connectionsMax: num("connectionsMax"),
      handshakingConnectionsMax: num("handshakingConnectionsMax"),
      handshakeTimeoutMs: num("handshakeTimeoutMs"),
      handshakeBytesMax: num("handshakeBytesMax"),
      subscriptionsPerConnectionMax: num("subscriptionsPerConnectionMax"),
      requestsInFlightMax: num("requestsInFlightMax"),
      outboundBytesMax: num("outboundBytesMax"),
      deliverBytesMax: num("deliverBytesMax"),
      creditMessagesMax: num("creditMessagesMax"),
      creditBytesMax: num("creditBytesMax"),
      ackTimeoutMsMax: num("ackTimeoutMsMax"),
      redeliveryTickMs: num("redeliveryTickMs"),
    },
  };
}

function tlsSettings(v: ReadonlyMap<string, Value>): TlsSettings {
  const path = (k: string): string | null => v.get(k) as string | null;
  const pair = (certKey: string, keyKey: string): { cert: string; key: string } | null => {
    const cert = path(certKey);
    const key = path(keyKey);
    if (cert === null && key === null) return null;
    if (cert === null || key === null) {
      const missing = cert === null ? certKey : keyKey;
      throw new ConfigError({
        key: missing,
        value: "(unset)",
        allowed: `a PEM file, since ${cert === null ? keyKey : certKey} is set`,
        source: "flag",
        origin: "the TLS settings",
        message: `Invalid config: ${certKey} and ${keyKey} go together; ${missing} is unset`,
      });
    }
    return { cert, key };
  };
  const client = pair("tls.cert", "tls.key");
  const required = v.get("tls.clientCertRequired") as boolean;
  if (required && (client === null || path("tls.ca") === null)) {
    throw new ConfigError({
      key: "tls.clientCertRequired",
      value: "true",
      allowed: "tls.cert, tls.key and tls.ca set",
      source: "flag",
      origin: "the TLS settings",
      message:
        "Invalid config: tls.clientCertRequired needs tls.cert, tls.key and tls.ca (the CA that signs client certificates)",
    });
  }
  const cluster = pair("cluster.tlsCert", "cluster.tlsKey");
  const clusterCa = path("cluster.tlsCa");
  if ((cluster === null) !== (clusterCa === null)) {
    throw new ConfigError({
      key: "cluster.tlsCa",
      value: clusterCa ?? "(unset)",
      allowed: "set together with cluster.tlsCert and cluster.tlsKey",
      source: "flag",
      origin: "the TLS settings",
      message:
        "Invalid config: cluster TLS needs cluster.tlsCert, cluster.tlsKey and cluster.tlsCa together (nodes check each other both ways)",
    });
  }
  return {
    client: client === null
      ? null
      : { ...client, ca: path("tls.ca"), clientCertRequired: required },
    cluster: cluster === null
      ? null
      : { ...cluster, ca: clusterCa as string, serverName: path("cluster.tlsServerName") },
    metrics: pair("metrics.tlsCert", "metrics.tlsKey"),
    allowInsecurePublic: v.get("allowInsecurePublic") as boolean,
  };
}

/** What a key accepts, as the end of "expected …". */
function allowedText(spec: KeySpec): string {
  switch (spec.kind) {
    case "int":
      return spec.max === Number.MAX_SAFE_INTEGER
        ? `a whole number >= ${spec.min}`
        : `a whole number from ${spec.min} to ${spec.max}`;
    case "bool":
      return "true or false";
    case "string":
      return "a non-empty string";
    case "enum":
      return `one of ${spec.values!.join(", ")}`;
    case "fsync":
      return "always, never or interval:<ms> (1..3600000)";
    case "list":
      return `a comma-separated list of ${spec.entry?.text ?? "entries"}`;
  }
}

function bad(spec: KeySpec, value: string, source: ConfigSource, origin: string): ConfigError {
  return new ConfigError({ key: spec.key, value, allowed: allowedText(spec), source, origin });
}

/** Checks a value given as text (environment, flag, or a comma list in a file). */
function fromString(spec: KeySpec, raw: string, source: ConfigSource, origin: string): Value {
  const s = raw.trim();
  const fail = (): never => {
    throw bad(spec, JSON.stringify(raw), source, origin);
  };
  switch (spec.kind) {
    case "int": {
      const n = Number(s);
      if (!/^-?\d+$/.test(s) || !Number.isSafeInteger(n) || n < spec.min! || n > spec.max!) fail();
      return n;
    }
    case "bool":
      if (s !== "true" && s !== "false") fail();
      return s === "true";
    case "string":
      if (s === "") fail();
      return s;
    case "enum":
      if (!spec.values!.includes(s)) fail();
      return s;
    case "fsync":
      if (parseFsyncPolicy(s) === null) fail();
      return s;
    case "list": {
      const entries = s.split(",").map((x) => x.trim()).filter((x) => x !== "");
      checkEntries(spec, entries, source, origin);
      return entries;
    }
  }
}

function checkEntries(
  spec: KeySpec,
  entries: readonly string[],
  source: ConfigSource,
  origin: string,
): void {
  for (const e of entries) {
    if (spec.entry !== undefined && !spec.entry.pattern.test(e)) {
      throw new ConfigError({
        key: spec.key,
        value: JSON.stringify(e),
        allowed: allowedText(spec),
        source,
        origin,
        message: `Invalid config: ${spec.key} entry ${JSON.stringify(e)} (from ${origin}): ` +
          `expected ${allowedText(spec)}`,
      });
    }
  }
}

/** Checks a value from a parsed file: it must already have the right type (no "7070" for 7070). */
function fromFileValue(spec: KeySpec, raw: unknown, origin: string): Value {
  const shown = JSON.stringify(raw) ?? String(raw);
  const wrongType = (): never => {
    const got = raw === null ? "null" : Array.isArray(raw) ? "a list" : `a ${typeof raw}`;
    throw new ConfigError({
      key: spec.key,
      value: shown,
      allowed: `${allowedText(spec)}, not ${got}`,
      source: "file",
      origin,
    });
  };
  switch (spec.kind) {
    case "int":
      if (typeof raw !== "number") wrongType();
      return fromString(spec, String(raw), "file", origin);
    case "bool":
      if (typeof raw !== "boolean") wrongType();
      return raw as boolean;
    case "string":
    case "enum":
    case "fsync":
      if (typeof raw !== "string") wrongType();
      return fromString(spec, raw as string, "file", origin);
    case "list": {
      if (typeof raw === "string") return fromString(spec, raw, "file", origin);
      if (!Array.isArray(raw) || raw.some((e) => typeof e !== "string")) wrongType();
      const entries = (raw as string[]).map((e) => e.trim());
      checkEntries(spec, entries, "file", origin);
      return entries;
    }
  }
}

/** Parses the file (YAML or JSON) into [dotted key, value] pairs; groups may nest or be dotted. */
function flattenFile(file: { name: string; text: string }, origin: string): [string, unknown][] {
  const json = /\.json$/i.test(file.name) ||
    (!/\.ya?ml$/i.test(file.name) && file.text.trimStart().startsWith("{"));
  let doc: unknown;
  try {
    if (!json && parseYaml === null) {
      throw new Error("the YAML parser is not loaded (await loadYaml() before loadConfig())");
    }
    doc = json ? JSON.parse(file.text) : parseYaml!(file.text);
  } catch (err) {
    const reason = (err as Error).message.split("\n")[0];
    throw new ConfigError({
      key: "",
      value: "",
      allowed: json ? "JSON" : "YAML",
      source: "file",
      origin,
      message: `Invalid config: cannot parse ${origin} as ${json ? "JSON" : "YAML"}: ${reason}`,
    });
  }
  if (doc === null || doc === undefined) return [];
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError({
      key: "",
      value: JSON.stringify(doc) ?? String(doc),
      allowed: "a mapping of keys to values",
      source: "file",
      origin,
      message: `Invalid config: ${origin} must hold a mapping of keys to values, not ${
        Array.isArray(doc) ? "a list" : `a ${typeof doc}`
      }`,
    });
  }
  const out: [string, unknown][] = [];
  const walk = (obj: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(obj)) {
      const path = prefix === "" ? k : `${prefix}.${k}`;
      const nested = typeof v === "object" && v !== null && !Array.isArray(v);
      if (nested && !SPECS.has(path) && (GROUPS.has(path) || prefix === "")) {
        walk(v as Record<string, unknown>, path);
      } else {
        out.push([path, v]);
      }
    }
  };
  walk(doc as Record<string, unknown>, "");
  return out;
}

/** Splits flags into [key, raw value, "--flag"]; `true`/`false` for a bare boolean flag. */
function parseFlags(args: readonly string[]): [KeySpec, string | boolean, string][] {
  const out: [KeySpec, string | boolean, string][] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--config") {
      i++;
      continue;
    }
    if (arg.startsWith("--config=")) continue;
    if (!arg.startsWith("--") || arg === "--") {
      throw new ConfigError({
        key: arg,
        value: JSON.stringify(arg),
        allowed: "--flag value pairs",
        source: "flag",
        origin: arg,
        message: `Invalid config: unexpected argument ${JSON.stringify(arg)}: ` +
          `flags look like --port 7070 or --port=7070`,
      });
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    const origin = `--${name}`;
    const spec = FLAG_NAMES.get(name);
    if (spec === undefined && name.startsWith("no-")) {
      const positive = FLAG_NAMES.get(name.slice(3));
      if (positive?.kind === "bool" && inline === undefined) {
        out.push([positive, false, origin]);
        continue;
      }
    }
    if (spec === undefined) {
      throw unknown(origin, JSON.stringify(inline ?? true), "flag", origin, [
        ...[...FLAG_NAMES.keys()].map((n) => `--${n}`),
        // Not settings, but flags the broker takes: a typo of them is suggested too.
        "--config",
        "--help",
        "--version",
      ]);
    }
    if (inline !== undefined) {
      out.push([spec, inline, origin]);
    } else if (spec.kind === "bool") {
      const next = args[i + 1];
      if (next === "true" || next === "false") out.push([spec, args[++i]!, origin]);
      else out.push([spec, true, origin]);
    } else {
      const next = args[i + 1];
      if (next === undefined || next.startsWith("--")) {
        throw new ConfigError({
          key: spec.key,
          value: "(missing)",
          allowed: allowedText(spec),
          source: "flag",
          origin,
          message: `Invalid config: ${origin} needs a value: ${allowedText(spec)}`,
        });
      }
      out.push([spec, next, origin]);
      i++;
    }
  }
  return out;
}

function unknown(
  name: string,
  value: string,
  source: ConfigSource,
  origin: string,
  known: readonly string[],
): ConfigError {
  const nearest = nearestOf(name, known);
  const what = source === "file" ? "key" : source === "env" ? "variable" : "flag";
  return new ConfigError({
    key: name,
    value,
    allowed: `a known ${what}; nearest: ${nearest}`,
    source,
    origin,
    message: `Invalid config: unknown ${what} ${name}${
      source === "file" ? ` (from ${origin})` : ""
    }; did you mean ${nearest}? (unknown keys are refused so typos do not pass silently)`,
  });
}

/** The name in `known` closest to `name` by edit distance, ignoring case: for "did you mean". */
export function nearestOf(name: string, known: readonly string[]): string {
  let best = known[0]!;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(
        row[j]! + 1,
        next[j - 1]! + 1,
        row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    row = next;
  }
  return row[b.length]!;
}

/** Whether `host` reaches only this machine. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * The one line a node prints (and exits 2 on) when it would serve other machines in plaintext
 * with nothing to stop a stranger, the way Redis's protected mode refuses; `null` when it may start.
 */
export function insecurePublicRefusal(settings: NodeSettings): string | null {
  if (isLoopbackHost(settings.host) || settings.tls.allowInsecurePublic) return null;
  // Clients must prove who they are: SCRAM, or a client certificate under mutual TLS.
  if (settings.broker.auth !== undefined && settings.broker.auth !== "none") return null;
  if (settings.tls.client?.clientCertRequired === true) return null;
  return `Refusing to start: host ${settings.host} is reachable from other machines and ` +
    `clients are not authenticated; set --auth scram (GREGOR_AUTH=scram), or mutual TLS with ` +
    `--tls-cert, --tls-key, --tls-ca and --tls-client-cert-required, or pass ` +
    `--allow-insecure-public (GREGOR_ALLOW_INSECURE_PUBLIC=true) to let anyone in`;
}
