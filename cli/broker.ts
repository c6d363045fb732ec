// `deno task start`: a zero-config GregorMQ node on 127.0.0.1:7070. Settings come from defaults, a
// `--config` YAML/JSON file, GREGOR_* variables and flags (src/config); SIGINT or SIGTERM shuts it
// down gracefully (connections closed, then exit 0).

import { denoEnv } from "../src/io/deno/mod.ts";
import { memoryTrimmer, trimPeriodically } from "../src/io/deno/memory.ts";
import { TlsConfigError } from "../src/io/errors.ts";
import { PortInUseError, startNode, type TlsReload } from "../src/node.ts";
import { fitToOpenFiles, parseOpenFilesLimit } from "../src/broker/open_files.ts";
import { DataDirError } from "../src/storage/data_dir.ts";
import { checkClusterSecret } from "../src/cluster/cluster_auth.ts";
import { clusterSecretFile } from "../src/storage/layout.ts";
import {
  ConfigError,
  configFileArg,
  configHelp,
  envName,
  flagName,
  insecurePublicRefusal,
  isLoopbackHost,
  loadConfig,
  type LoadedConfig,
  loadYaml,
  type NodeSettings,
  type TlsSettings,
  toNodeConfig,
} from "../src/config/mod.ts";
import denoJson from "../deno.json" with { type: "json" };

const USAGE = `usage: deno task start [options]
Every setting can be given as a flag, a GREGOR_* variable or a key in the --config file
(flags win over variables, variables over the file); docs/operations.md lists them.
${configHelp()}
  -h, --help  this text
  --version   the version of GregorMQ`;

if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
  console.log(USAGE);
  Deno.exit(0);
}
if (Deno.args.includes("--version")) {
  console.log(`gregormq ${denoJson.version} (deno ${Deno.version.deno})`);
  Deno.exit(0);
}

let loaded: LoadedConfig;
try {
  const fileName = configFileArg(Deno.args);
  let file: { name: string; text: string } | undefined;
  if (fileName !== undefined) {
    try {
      file = { name: fileName, text: await Deno.readTextFile(fileName) };
    } catch (err) {
      throw new Error(
        `Invalid config: cannot read --config ${fileName}: ${(err as Error).message}`,
      );
    }
  }
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([name]) => name.startsWith("GREGOR_")),
  );
  if (file !== undefined) await loadYaml();
  loaded = loadConfig({ file, env, args: Deno.args });
} catch (err) {
  if (!(err instanceof ConfigError) && !(err as Error).message.startsWith("Invalid config:")) {
    throw err;
  }
  console.error((err as Error).message);
  Deno.exit(2);
}
const refusal = insecurePublicRefusal(loaded.config);
if (refusal !== null) {
  console.error(refusal);
  Deno.exit(2);
}

/** Reads the PEM files the TLS settings name; at start, and again on SIGHUP. */
async function readTls(files: TlsSettings): Promise<TlsReload> {
  const read = async (path: string, key: string): Promise<string> => {
    try {
      return await Deno.readTextFile(path);
    } catch (err) {
      throw new Error(`Cannot read ${key} ${path}: ${(err as Error).message}`);
    }
  };
  const tls: TlsReload = {};
  if (files.client !== null) {
    tls.client = {
      certPem: await read(files.client.cert, "tls.cert"),
      keyPem: await read(files.client.key, "tls.key"),
      ...(files.client.ca === null ? {} : { caPem: await read(files.client.ca, "tls.ca") }),
      requireClientCert: files.client.clientCertRequired,
      handshakeTimeoutMs: loaded.config.broker.handshakeTimeoutMs,
      onHandshakeError: (e) => log("warn", e.message, { reason: e.reason }),
    };
  }
  if (files.cluster !== null) {
    const certPem = await read(files.cluster.cert, "cluster.tlsCert");
    const keyPem = await read(files.cluster.key, "cluster.tlsKey");
    const caPem = await read(files.cluster.ca, "cluster.tlsCa");
    tls.cluster = {
      server: {
        certPem,
        keyPem,
        caPem,
        requireClientCert: true,
        onHandshakeError: (e) => log("warn", `Cluster port: ${e.message}`, { reason: e.reason }),
      },
      // The node certificate must name the advertised address dialed, or cluster.tlsServerName.
      client: {
        caPem,
        certPem,
        keyPem,
        ...(files.cluster.serverName === null ? {} : { serverName: files.cluster.serverName }),
      },
    };
  }
  if (files.metrics !== null) {
    tls.metrics = {
      certPem: await read(files.metrics.cert, "metrics.tlsCert"),
      keyPem: await read(files.metrics.key, "metrics.tlsKey"),
    };
  }
  return tls;
}

let startTls: TlsReload;
try {
  startTls = await readTls(loaded.config.tls);
} catch (err) {
  console.error(`Invalid config: ${(err as Error).message}`);
  Deno.exit(2);
}

/**
 * The cluster secret: as configured, else from cluster.secretFile, else from
 * `<dataDir>/cluster.secret` if that exists; undefined for none. Throws saying what is wrong.
 */
async function readClusterSecret(config: NodeSettings): Promise<string | undefined> {
  const cluster = config.cluster;
  if (cluster === null) return undefined;
  if (cluster.secret !== null) return cluster.secret;
  const path = cluster.secretFile ?? clusterSecretFile(config.dataDir);
  return await readSecretFile(path, "cluster secret", cluster.secretFile === null);
}

/**
 * The secret the cluster is moving away from (a rolling change): as configured, else from
 * cluster.secretPreviousFile; undefined for none. Throws saying what is wrong.
 */
async function readPreviousClusterSecret(config: NodeSettings): Promise<string | undefined> {
  const cluster = config.cluster;
  if (cluster === null) return undefined;
  if (cluster.secretPrevious !== null) return cluster.secretPrevious;
  if (cluster.secretPreviousFile === null) return undefined;
  return await readSecretFile(cluster.secretPreviousFile, "previous cluster secret", false);
}

/** A secret from `path`, checked; undefined if it may be `missingOk` and is missing. */
async function readSecretFile(
  path: string,
  what: string,
  missingOk: boolean,
): Promise<string | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (missingOk && err instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read the ${what} file ${path}: ${(err as Error).message}`);
  }
  // The file usually ends in a newline (echo, openssl rand); the secret is what is between.
  const secret = text.trim();
  try {
    checkClusterSecret(secret);
  } catch (err) {
    throw new Error(`${(err as Error).message}; in ${path}`);
  }
  const mode = (await Deno.stat(path)).mode;
  if (mode !== null && (mode & 0o077) !== 0) {
    loaded.warnings.push(
      `The ${what} file ${path} is readable by other users (mode ${
        (mode & 0o777).toString(8)
      }); chmod 600 it`,
    );
  }
  return secret;
}

let clusterSecret: string | undefined;
let previousClusterSecret: string | undefined;
try {
  clusterSecret = await readClusterSecret(loaded.config);
  previousClusterSecret = await readPreviousClusterSecret(loaded.config);
} catch (err) {
  console.error(`Invalid config: ${(err as Error).message}`);
  Deno.exit(2);
}
if (previousClusterSecret !== undefined && clusterSecret === undefined) {
  console.error(
    `Invalid config: a previous cluster secret (cluster.secretPrevious or ` +
      `cluster.secretPreviousFile) is set but no cluster secret (GREGOR_CLUSTER_SECRET, ` +
      `cluster.secretFile, or ${loaded.config.dataDir}/cluster.secret): the previous one is only ` +
      `accepted beside the new one during a rolling change`,
  );
  Deno.exit(2);
}
if (
  loaded.config.cluster !== null && loaded.config.cluster.replicate &&
  loaded.config.broker.auth !== "none" && clusterSecret === undefined
) {
  // The nodes forward clients' requests to each other with the client's user, which a node trusts
  // only from a peer that proved the cluster secret.
  console.error(
    `Invalid config: auth = ${loaded.config.broker.auth} in a cluster needs the cluster secret ` +
      `(GREGOR_CLUSTER_SECRET, cluster.secretFile, or ${loaded.config.dataDir}/cluster.secret): ` +
      `nodes forward requests on behalf of authenticated users, and trust only peers that prove ` +
      `the secret`,
  );
  Deno.exit(2);
}
if (
  loaded.config.cluster !== null && clusterSecret === undefined &&
  loaded.config.tls.cluster === null && !isLoopbackHost(loaded.config.host)
) {
  loaded.warnings.push(
    `The cluster port admits any process that reaches it: set a cluster secret ` +
      `(GREGOR_CLUSTER_SECRET, cluster.secretFile, or ${loaded.config.dataDir}/cluster.secret) ` +
      `or cluster TLS`,
  );
}

// Deno has no getrlimit: Linux shows the limit in /proc; elsewhere the settings are used as given.
const openFilesMax = parseOpenFilesLimit(
  await Deno.readTextFile("/proc/self/limits").catch(() => ""),
);
const fitted = openFilesMax === null ? null : fitToOpenFiles(loaded.config.broker, openFilesMax);
if (fitted?.warning) loaded.warnings.push(fitted.warning);
const settings = fitted === null ? loaded.config : {
  ...loaded.config,
  broker: {
    ...loaded.config.broker,
    connectionsMax: fitted.connectionsMax,
    fileHandlesMax: fitted.fileHandlesMax,
  },
};

function log(level: string, msg: string, fields: Record<string, unknown> = {}): void {
  const time = new Date().toISOString();
  if (settings.log.format === "json") {
    console.log(JSON.stringify({ time, level, msg, ...fields }));
    return;
  }
  const rest = Object.entries(fields).map(([k, v]) => ` ${k}=${JSON.stringify(v)}`).join("");
  console.log(`${time} ${level.toUpperCase()} ${msg}${rest}`);
}

/** Reports made while starting, logged after the listen line (which tools read as the first). */
let early: [string, string][] | null = [];
const nodeConfig = toNodeConfig(settings, {
  hooks: {
    onFatal(reason) {
      log("fatal", `Storage failed; stopping so a restart can recover: ${reason}`);
      Deno.exit(1);
    },
    onSetupError(reason) {
      // Exit status 2, as for a bad config: a supervisor must not restart it as it is.
      log("fatal", `Stopping; fix the setup before starting it again: ${reason}`);
      Deno.exit(2);
    },
    onReport(msg, level) {
      if (early === null) log(level ?? "warn", msg);
      else early.push([level ?? "warn", msg]);
    },
    onInternalError(msg) {
      log("error", msg);
    },
  },
});
if (clusterSecret !== undefined && nodeConfig.cluster !== undefined) {
  nodeConfig.cluster.secret = clusterSecret;
  if (previousClusterSecret !== undefined) {
    nodeConfig.cluster.previousSecret = previousClusterSecret;
  }
}
if (startTls.client !== undefined) nodeConfig.tls = startTls.client;
if (startTls.cluster !== undefined && nodeConfig.cluster !== undefined) {
  nodeConfig.cluster.tls = startTls.cluster;
}
if (startTls.metrics !== undefined && nodeConfig.metrics !== undefined) {
  nodeConfig.metrics.tls = startTls.metrics;
}
const node = await startNode(denoEnv(), nodeConfig).catch((err) => {
  // A data directory in use or read-only is a setup mistake, like a bad config: one line, exit 2.
  // So is a certificate or key the TLS library cannot use.
  if (err instanceof TlsConfigError) {
    console.error(`Invalid config: ${err.message}`);
    Deno.exit(2);
  }
  if (err instanceof DataDirError) {
    console.error(err.message);
    Deno.exit(2);
  }
  // So is a port already taken; the message names the setting, which may be one the user never
  // chose (the metrics port beside 7070, the cluster port 7072 that seeds imply).
  if (err instanceof PortInUseError) {
    const what = { port: "client", "metrics.port": "metrics", "cluster.port": "cluster" }[err.key];
    console.error(
      `Cannot start: the ${what} port ${err.addr.host}:${err.addr.port} is in use (another ` +
        `broker running?); choose another with --${flagName(err.key)} N (or ` +
        `${envName(err.key)}, or ${err.key} in the --config file)` +
        (err.key === "metrics.port" ? "; --no-metrics-enabled turns the metrics port off" : ""),
    );
    Deno.exit(2);
  }
  log("fatal", `Cannot start: ${(err as Error).message}`);
  Deno.exit(1);
});
// Signal handlers go in before the listen line, so a SIGTERM sent on reading it shuts down cleanly.
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
// SIGHUP re-reads the certificate files: connections made from then on use the new ones.
Deno.addSignalListener("SIGHUP", () => {
  readTls(settings.tls).then((tls) => node.reloadTls(tls)).then(
    () => log("info", "TLS certificates reloaded"),
    (err) =>
      log("error", `TLS certificates not reloaded, the old ones stay: ${(err as Error).message}`),
  );
});
log("info", "GregorMQ broker listening", {
  listen: `${node.addr.host}:${node.addr.port}`,
  // The broker's own pid, which a wrapper (npx, deno task) that started it does not show.
  pid: Deno.pid,
  brokerId: node.broker.opts.brokerId,
  dataDir: node.broker.opts.dataDir,
  ...(node.gossip === null ? {} : {
    nodeId: node.gossip.id,
    cluster: `${node.gossip.addr.host}:${node.gossip.addr.port}`,
    seeds: settings.cluster?.seeds ?? [],
  }),
  ...(node.metricsAddr === null ? {} : {
    metrics: `${node.metricsAddr.host}:${node.metricsAddr.port}`,
  }),
});
// After the listen line, which tools and tests read as the first line.
for (const warning of loaded.warnings) log("warn", warning);
for (const [level, msg] of early) log(level, msg);
early = null;
node.gossip?.onEvent((e) =>
  log("info", `Cluster member ${e.kind === "state" ? e.member.state : e.kind}`, {
    member: e.member.id,
    addr: `${e.member.host}:${e.member.clusterPort}`,
    previous: e.previous,
  })
);
// Memory a load freed goes back to the OS, where FFI for the C library was granted (issue [N]).
const trimmer = memoryTrimmer();
if (trimmer !== null) {
  trimPeriodically(trimmer);
  log("info", `Freed memory is returned to the OS (malloc_trim, ${trimmer.library})`);
}

await node.done;
