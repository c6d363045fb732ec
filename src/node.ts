// The composition root: builds a broker node from an Env (real or simulated) and its settings, and
// starts serving. cli/broker.ts calls it with the real Env; simulated scenarios with theirs.

import type { Addr, Env, Listener, TlsServerOptions } from "./io/types.ts";
import { TlsNetwork, type TlsNetworkOptions } from "./io/tls_network.ts";
import { Broker, type BrokerHooks } from "./broker/broker.ts";
import { LocalControlPlane } from "./broker/local_control_plane.ts";
import { serveForwarded } from "./broker/connection.ts";
// The cluster modules are loaded only by a node that joins a cluster (start-up time).
import type { Gossip } from "./cluster/gossip/mod.ts";
import type { ClusterNode } from "./cluster/cluster.ts";
import type { Forwarder } from "./cluster/forward.ts";
import type { RaftGroup } from "./cluster/raft/shell.ts";
import { AddressInUse, NotFound } from "./io/errors.ts";
import { readChecked, writeChecked } from "./storage/checked_file.ts";
import { Op } from "./protocol/messages.ts";
import { type BrokerOptions, DEFAULT_BROKER_OPTIONS } from "./broker/options.ts";
import { claimDataDir } from "./storage/data_dir.ts";
import { founderFile, metaGroupDir } from "./storage/layout.ts";
import { FileLog, type Log } from "./storage/mod.ts";
import { BrokerMetrics, HttpServer } from "./metrics/mod.ts";
import { fromBase64, type ScramCredential } from "./auth/scram.ts";

/** The broker's default client port. */
export const DEFAULT_CLIENT_PORT = 7070;

/** How to run a node. */
export interface NodeConfig {
  /** Address clients connect to. Default 127.0.0.1. */
  host?: string;
  /** Client port; 0 picks a free one. Default 7070. */
  port?: number;
  /** Serve the client port over TLS; omitted: plaintext. */
  tls?: TlsServerOptions;
  /** Broker tunables; defaults in DEFAULT_BROKER_OPTIONS. */
  broker?: Partial<BrokerOptions>;
  /** What to do on a fatal storage error and with loud reports (default: nothing). */
  hooks?: Partial<BrokerHooks>;
  /** Join a cluster by gossip; omitted: a single node, no cluster port. */
  cluster?: ClusterConfig;
  /** Serve `/metrics`, `/healthz` and `/readyz` over HTTP; omitted: no metrics port. */
  metrics?: MetricsConfig;
}

/** Where a node serves its metrics and health endpoints. */
export interface MetricsConfig {
  /** Address to listen on. Default: the node's host. */
  host?: string;
  /** Metrics port (DEFAULT_METRICS_PORT, 7071, by convention); 0 picks a free one. */
  port: number;
  /** Serve HTTPS; omitted: plain HTTP. */
  tls?: TlsServerOptions;
}

/** How a node takes part in a cluster. */
export interface ClusterConfig {
  /** Gossip port; 0 picks a free one. */
  port: number;
  /** Address other nodes reach this one at. Default: the node's host. */
  advertiseHost?: string;
  /** Other nodes' cluster addresses ("host:port"), or a DNS name that resolves to them. */
  seeds: string[];
  /** Gossip round period, ms. Default 200. */
  intervalMs?: number;
  /**
   * TLS on the cluster port, both ways: `server` for the port, `client` for dialing other nodes.
   * Omitted: plaintext.
   */
  tls?: TlsNetworkOptions;
  /**
   * The cluster secret (16 to 1024 bytes of UTF-8): nodes prove to each other that they hold it
   * before any gossip or Raft message is accepted, and a node refuses every peer that does not.
   * Omitted: the cluster port admits anyone who reaches it (unless cluster TLS checks them).
   */
  secret?: string;
  /**
   * The secret the cluster is moving away from, during a rolling change of secret: this node also
   * proves it and accepts peers that prove only it. Needs `secret`.
   */
  previousSecret?: string;
  /** Replicate topics with Raft (metadata and one group per partition). Default false for now. */
  replicate?: boolean;
  /**
   * Nodes that must be alive before a fresh cluster founds its metadata group. Default: 1 for a
   * node without seeds (the first node), otherwise wait for an existing cluster to add it.
   */
  bootstrapExpect?: number;
  /** Replicas per partition, capped at the live nodes. Default 3. */
  replicationFactor?: number;
  /** Raft timings (tests and the simulator shorten them). */
  raft?: {
    tickMs?: number;
    electionTimeoutMs?: number;
    heartbeatIntervalMs?: number;
    /** Deliberate protocol bugs, for the simulator's planted-bug tests only. */
    plantedBugs?: { commitPriorTermByCount?: boolean; voteWithoutLogCheck?: boolean };
    /** A deliberate bug: acknowledge produces before they commit (planted-bug tests only). */
    plantedAckBeforeCommit?: boolean;
    /**
     * Bytes a partition replica keeps when its topic sets no retention.bytes (default: the
     * broker's diskRetentionBytes, as for a topic on one node).
     */
    replicaRetentionBytes?: number;
    /** Bytes of batches a replica applies between checkpoints (its Raft log's length, about). */
    replicaCheckpointBytes?: number;
    /** How often leaders go back to preferred replicas, ms (0: never; default 30 s). */
    leaderBalanceIntervalMs?: number;
    /** How long a node may be dead before its replicas move, ms (0: never; default 10 min). */
    replicaMoveAfterMs?: number;
    /** Metadata entries between snapshots of the metadata log. */
    metaCompactEvery?: number;
    /** Raft flow limits: entries and bytes per append, appends in flight (simulator only). */
    raftFlow?: { appendEntriesMax?: number; appendBytesMax?: number; inflightMax?: number };
    /** Told of each Raft group as it is created (the simulator's checkers). */
    onRaftGroup?: (group: RaftGroup) => void;
    /** Told of a replica's group this node deleted after the replica moved away. */
    onRaftGroupDropped?: (group: RaftGroup) => void;
  };
}

/** A running node. */
export interface RunningNode {
  readonly broker: Broker;
  /** Cluster membership, if the node joined a cluster. */
  readonly gossip: Gossip | null;
  /** This node's Raft groups, if it replicates. */
  readonly cluster: ClusterNode | null;
  /** The address it listens on (the real port if 0 was asked for). */
  readonly addr: Addr;
  /** Where `/metrics` and the health endpoints are served, if they are. */
  readonly metricsAddr: Addr | null;
  /** Resolves when the node stops serving (after `close`). */
  readonly done: Promise<void>;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
  /**
   * Uses new certificates for connections made from now on, on each port given that already
   * serves TLS. Rejects if a certificate is unusable; that port keeps its old one.
   */
  reloadTls(tls: TlsReload): Promise<void>;
}

/** New certificates for `RunningNode.reloadTls`; a port left out keeps its own. */
export interface TlsReload {
  client?: TlsServerOptions;
  cluster?: TlsNetworkOptions;
  metrics?: TlsServerOptions;
}

/** The settings that choose a port a node listens on. */
export type PortKey = "port" | "metrics.port" | "cluster.port";

/** A port the node must listen on is taken: which setting chose it, and the address. */
export class PortInUseError extends Error {
  /** The configuration key that sets this port. */
  readonly key: PortKey;
  readonly addr: Addr;
  constructor(key: PortKey, addr: Addr, options?: ErrorOptions) {
    super(`Cannot listen on ${addr.host}:${addr.port} (${key}): address in use`, options);
    this.name = "PortInUseError";
    this.key = key;
    this.addr = addr;
  }
}

/** Runs `listen`, turning "address in use" into a PortInUseError that names `key`. */
async function listenOn<T>(key: PortKey, addr: Addr, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (err) {
    if (err instanceof AddressInUse) throw new PortInUseError(key, addr, { cause: err });
    throw err;
  }
}

/**
 * Starts a node: claims its data directory (a lock, released by `close` or the process's end, and
 * a write probe), recovers its storage, binds the client port and serves until closed.
 *
 * @throws {DataDirError} if another process holds the data directory or it refuses writes.
 */
export async function startNode(env: Env, config: NodeConfig = {}): Promise<RunningNode> {
  // Before anything else: a second node on the same directory must not even read it.
  const lock = await claimDataDir(
    env.disk,
    config.broker?.dataDir ?? DEFAULT_BROKER_OPTIONS.dataDir,
  );
  let http: HttpServer | null = null;
  const metricsNet = config.metrics?.tls === undefined
    ? null
    : new TlsNetwork(env.net, { server: config.metrics.tls });
  try {
    // The metrics port opens first, so /healthz answers (and /readyz says 503) during recovery.
    let ready: () => boolean | string = () => false;
    let warnings: () => string[] = () => [];
    const metrics = new BrokerMetrics();
    const metricsAt = config.metrics === undefined ? null : {
      host: config.metrics.host ?? config.host ?? "127.0.0.1",
      port: config.metrics.port,
    };
    http = metricsAt === null
      ? null
      : await listenOn("metrics.port", metricsAt, () =>
        HttpServer.start(metricsNet === null ? env : { ...env, net: metricsNet }, metricsAt, {
          ready: () =>
            ready(),
          warnings: () =>
            warnings(),
          metrics: async () => ({
            status: 200,
            contentType: metrics.contentType,
            body: await metrics.scrape(),
          }),
        }));
    const node = await startServing(env, config, metrics, http, (r, w) => {
      ready = r;
      warnings = w;
    });
    return {
      ...node,
      async close() {
        await node.close();
        lock.release();
      },
      async reloadTls(tls) {
        await node.reloadTls(tls);
        if (tls.metrics !== undefined) await metricsNet?.reload({ server: tls.metrics });
      },
    };
  } catch (err) {
    await http?.close();
    lock.release();
    throw err;
  }
}

async function startServing(
  env: Env,
  config: NodeConfig,
  metrics: BrokerMetrics,
  http: HttpServer | null,
  setReady: (ready: () => boolean | string, warnings: () => string[]) => void,
): Promise<RunningNode> {
  // The nodes of a cluster need names apart in handshakes: unless one is configured, a clustered
  // node goes by its node id.
  const nodeId = config.cluster === undefined ? null : await (await loadClusterModules()).gossip
    .loadOrCreateNodeId(env, config.broker?.dataDir ?? DEFAULT_BROKER_OPTIONS.dataDir);
  // A replicating node's broker is served by the cluster's control plane, which starts serving
  // once the node has joined (startReplication); any other by its own.
  const bridge = config.cluster?.replicate === true
    ? new (await loadClusterModules()).bridge.ClusterBridge(env)
    : null;
  const broker = await Broker.open(
    env,
    {
      ...config.broker,
      ...(nodeId === null || config.broker?.brokerId !== undefined ? {} : { brokerId: nodeId }),
    },
    config.hooks,
    bridge ?? new LocalControlPlane(),
  );
  metrics.attach(broker);
  const clientAt = { host: config.host ?? "127.0.0.1", port: config.port ?? DEFAULT_CLIENT_PORT };
  const listener: Listener = await listenOn(
    "port",
    clientAt,
    () => env.net.listen(clientAt, config.tls === undefined ? {} : { tls: config.tls }),
  );
  // The cluster's parts listen and dial through these, so they speak TLS and prove the cluster
  // secret without knowing it.
  const clusterNet = config.cluster?.tls === undefined
    ? null
    : new TlsNetwork(env.net, config.cluster.tls);
  const tlsEnv = clusterNet === null ? env : { ...env, net: clusterNet };
  const secret = config.cluster?.secret;
  const clusterEnv = secret === undefined ? tlsEnv : {
    ...tlsEnv,
    net: new (await loadClusterModules()).clusterAuth.ClusterAuthNetwork(tlsEnv, {
      nodeId: nodeId as string,
      secret,
      ...(config.cluster?.previousSecret === undefined
        ? {}
        : { previousSecret: config.cluster.previousSecret }),
      onLog: (level, msg) => config.hooks?.onReport?.(msg, level),
    }),
  };
  let gossip: Gossip | null = null;
  if (config.cluster !== undefined) {
    const { Gossip, isNodeId, loadClusterId, nextIncarnation, saveClusterId } =
      (await loadClusterModules()).gossip;
    const host = config.host ?? "127.0.0.1";
    broker.nodeId = nodeId as string;
    const clusterAt = { host, port: config.cluster.port };
    const dataDir = broker.opts.dataDir;
    const incarnation = await nextIncarnation(env, dataDir);
    const clusterConfig = config.cluster;
    // A cluster is named by the node that founds its metadata group, the first of the founding
    // voters: at once by a node without seeds that founds it alone; otherwise once the group is
    // founded (cluster.ts). A node with seeds joins its seeds' cluster. Each keeps it from then on.
    let clusterId = await loadClusterId(env, dataDir);
    if (clusterId === "") {
      // The cluster-id may not have been saved (a full disk), or an older version ran here: the
      // founder the metadata group recorded is the name every node of the cluster has.
      const founder = (await readFounder(env, metaGroupDir(dataDir)))?.split(",")[0] ?? "";
      if (isNodeId(founder)) clusterId = founder;
      else if (clusterConfig.seeds.length === 0 && (clusterConfig.bootstrapExpect ?? 1) <= 1) {
        clusterId = broker.nodeId;
      }
      if (clusterId !== "") await saveClusterId(env, dataDir, clusterId);
    }
    gossip = await listenOn("cluster.port", clusterAt, () =>
      Gossip.start(clusterEnv, {
        nodeId: broker.nodeId,
        incarnation,
        host: clusterConfig.advertiseHost ?? host,
        bindHost: host,
        clusterPort: clusterConfig.port,
        clientPort: listener.addr.port,
        seeds: clusterConfig.seeds,
        intervalMs: clusterConfig.intervalMs,
        clusterId,
        onClusterId: (id) =>
          void saveClusterId(env, dataDir, id).catch((err) =>
            config.hooks?.onReport?.(
              `Cannot keep cluster id ${id} in ${dataDir}: ${(err as Error).message}; ` +
                "the next start joins the cluster of its seeds again",
              "error",
            )
          ),
        onDuplicate: (message) => (config.hooks?.onSetupError ?? config.hooks?.onFatal)?.(message),
        onLog: (level, msg) => config.hooks?.onReport?.(msg, level),
      }));
    broker.membership = () => (gossip as Gossip).members();
  }
  let cluster: ClusterNode | null = null;
  if (bridge !== null && gossip !== null) {
    cluster = await startReplication(env, clusterEnv, config, broker, gossip);
    bridge.attach(cluster, await startForwarding(clusterEnv, broker, gossip));
    metrics.attachCluster(cluster);
  }
  const done = broker.serve(listener);
  // Serving, but not ready while storage fails: a load balancer should send writes elsewhere.
  setReady(() => {
    const failing = broker.storage.failing;
    return failing === null ||
      `storage failing since ${
        Math.round((env.clock.now() - failing.sinceMs) / 1000)
      } s ago (${failing.cause}): ${failing.message}`;
  }, () => {
    // Ready all the same (it serves), but one failure away from a cluster without metadata.
    const f = cluster?.metaFaultTolerance();
    if (f === undefined || f.canLose >= 1) return [];
    return [
      `metadata group not fault tolerant: ${f.votersAlive} of ${f.voters} voters alive, ` +
      `${f.quorum} needed; it cannot lose a node`,
    ];
  });
  return {
    broker,
    gossip,
    cluster,
    addr: listener.addr,
    metricsAddr: http?.addr ?? null,
    done,
    async close() {
      setReady(() => false, () => []);
      // Acks taken since the last flush, while the metadata group can still be reached.
      await bridge?.flushDurables().catch(() => {});
      // Tell the cluster first, so peers see "left" rather than wait to suspect a failure.
      if (gossip !== null) await gossip.leave();
      await cluster?.stop();
      await broker.close();
      await done;
      await http?.close();
    },
    async reloadTls(tls) {
      if (tls.client !== undefined && config.tls !== undefined) {
        await listener.reloadTls?.(tls.client);
      }
      if (tls.cluster !== undefined) await clusterNet?.reload(tls.cluster);
    },
  };
}

/** Starts Raft replication on a gossiping node: transport, metadata group, partition groups. */
async function startReplication(
  env: Env,
  clusterEnv: Env,
  config: NodeConfig,
  broker: Broker,
  gossip: Gossip,
): Promise<ClusterNode> {
  const modules = await loadClusterModules();
  const { ClusterNode } = modules.cluster;
  const { attachGroups } = modules.groupOffsets;
  const { RAFT_FRAME_PAYLOAD_BYTES_MAX, Transport } = modules.transport;
  const { RaftWal } = modules.wal;
  const c = config.cluster!;
  /** A replica's retention: its topic's, else the node's replica default, else a disk topic's. */
  const replicaRetention = (configs: Record<string, string>) => {
    const bytes = Number(configs["retention.bytes"] ?? -1);
    const ms = Number(configs["retention.ms"] ?? broker.opts.retentionMs);
    return {
      retentionBytes: Number.isSafeInteger(bytes) && bytes >= 0
        ? bytes
        : c.raft?.replicaRetentionBytes ?? broker.opts.diskRetentionBytes,
      retentionMs: Number.isSafeInteger(ms) ? ms : broker.opts.retentionMs,
    };
  };
  // A forwarded request carries its client's principal, which the node serving it trusts: with
  // authentication on, only a peer that proved the cluster secret may send one.
  if (broker.auth.enabled && c.secret === undefined) {
    throw new RangeError(
      "Authentication in a cluster needs the cluster secret: nodes forward requests on behalf of " +
        "authenticated users, and trust only peers that prove the secret",
    );
  }
  const transport = new Transport(clusterEnv, {
    nodeId: broker.nodeId,
    resolve: (id) => {
      const m = gossip.member(id);
      return m === null ? null : { host: m.host, port: m.clusterPort };
    },
  });
  gossip.handle(Op.RAFT, (conn, first, parser) => transport.serve(conn, first, parser), {
    payloadBytesMax: RAFT_FRAME_PAYLOAD_BYTES_MAX,
  });
  const hooks = {
    onFatal: () => {},
    onReport: () => {},
    onInternalError: () => {},
    ...config.hooks,
  };
  const cluster = ClusterNode.start(
    env,
    {
      nodeId: broker.nodeId,
      dataDir: broker.opts.dataDir,
      bootstrapExpect: c.bootstrapExpect ?? (c.seeds.length === 0 ? 1 : Infinity),
      seedless: c.seeds.length === 0,
      replicationFactor: c.replicationFactor ?? 3,
      ...c.raft,
      openStore: (dir, voters) =>
        RaftWal.open(env.disk, dir, voters, { onReport: (m: string) => hooks.onReport(m) }),
      openLog: (dir, partition, configs) =>
        FileLog.open(env, {
          dir,
          partition,
          repairedByPeers: true,
          // The WAL holds every batch until a checkpoint synced the log: no fsync per append.
          fsync: { kind: "never" },
          segmentBytes: Number(configs["segment.bytes"] ?? broker.opts.segmentBytes),
          segmentMs: Number(configs["segment.ms"] ?? broker.opts.segmentMs),
          indexIntervalBytes: broker.opts.indexIntervalBytes,
          ...replicaRetention(configs),
          onFatal: (reason) => hooks.onFatal(reason),
          onReport: (msg, level) => hooks.onReport(msg, level),
        }),
      reconfigureLog: async (log: Log, configs) => {
        if (!(log instanceof FileLog)) return;
        const { retentionBytes, retentionMs } = replicaRetention(configs);
        log.setRetention({ bytes: retentionBytes, ms: retentionMs });
        await log.enforceRetention();
      },
      removeLog: (dir) => removeDir(env, dir),
      removeStore: (dir) => removeDir(env, dir),
      onReport: (msg) => hooks.onReport(msg, "warn"),
      readFounder: (dir) => readFounder(env, dir),
      writeFounder: (dir, founder) => writeChecked(env.disk, founderFile(dir), founder),
      hasStore: async (dir) => {
        try {
          return (await env.disk.list(dir)).length > 0;
        } catch (err) {
          if (err instanceof NotFound) return false;
          throw err;
        }
      },
      resetStore: async (dir) => {
        if (await emptyDir(env, dir)) await env.disk.syncDir(dir);
      },
      onFatal: (reason) => hooks.onFatal(reason),
    },
    gossip,
    transport,
    broker,
  );
  cluster.onSecurityChange = () => {
    const users = new Map<string, ScramCredential>();
    for (const [name, u] of cluster.meta.users) {
      users.set(name, {
        salt: fromBase64(u.salt),
        iterations: u.iterations,
        storedKey: fromBase64(u.storedKey),
        serverKey: fromBase64(u.serverKey),
      });
    }
    broker.auth.store.setReplicated(users, cluster.meta.acls);
  };
  attachGroups(broker.groups, cluster);
  return cluster;
}

/**
 * Forwards requests this node does not serve to the nodes that do, and serves the ones they
 * forward, on the cluster port.
 */
async function startForwarding(
  clusterEnv: Env,
  broker: Broker,
  gossip: Gossip,
): Promise<Forwarder> {
  const { Forwarder, FORWARD_OPCODE, forwardPayloadBytesMax } =
    (await loadClusterModules()).forward;
  const forwarder = new Forwarder(clusterEnv, {
    nodeId: broker.nodeId,
    resolve: (id) => {
      const m = gossip.member(id);
      return m === null ? null : { host: m.host, port: m.clusterPort };
    },
    serve: (req) => serveForwarded(broker, req),
  });
  gossip.handle(FORWARD_OPCODE, (conn, first, parser) => forwarder.serve(conn, first, parser), {
    payloadBytesMax: forwardPayloadBytesMax(broker.opts.payloadBytesMax),
  });
  return forwarder;
}

/** Removes every file in `dir`; false if there is no such directory. */
/**
 * Removes `dir` and the files in it (nothing if it does not exist), durably: a power loss must not
 * bring back a store that a later replica of the same partition would open as its own.
 */
async function removeDir(env: Env, dir: string): Promise<void> {
  if (!(await emptyDir(env, dir))) return;
  await env.disk.remove(dir);
  await env.disk.syncDir(dir.slice(0, Math.max(0, dir.lastIndexOf("/"))) || ".");
}

async function emptyDir(env: Env, dir: string): Promise<boolean> {
  let names: string[];
  try {
    names = await env.disk.list(dir);
  } catch (err) {
    if (err instanceof NotFound) return false;
    throw err;
  }
  for (const n of names) await env.disk.remove(`${dir}/${n}`);
  return true;
}

/** The cluster's modules, loaded once, on first use: a node outside a cluster never loads them. */
let clusterModules: ReturnType<typeof importClusterModules> | null = null;

/**
 * Loads the cluster's modules (once). The simulator awaits this before a run, so a node starting
 * in it never waits on the host's module loader, whose timing the simulation cannot replay.
 */
export function loadClusterModules(): ReturnType<typeof importClusterModules> {
  return clusterModules ??= importClusterModules();
}

async function importClusterModules() {
  const [gossip, cluster, bridge, groupOffsets, transport, wal, clusterAuth, forward] =
    await Promise.all([
      import("./cluster/gossip/mod.ts"),
      import("./cluster/cluster.ts"),
      import("./cluster/bridge.ts"),
      import("./cluster/group_offsets.ts"),
      import("./cluster/transport.ts"),
      import("./cluster/raft/wal.ts"),
      import("./cluster/cluster_auth.ts"),
      import("./cluster/forward.ts"),
    ]);
  return { gossip, cluster, bridge, groupOffsets, transport, wal, clusterAuth, forward };
}

/** The founding voters a metadata group in `groupDir` recorded ("a,b,c"), or null if none. */
async function readFounder(env: Env, groupDir: string): Promise<string | null> {
  try {
    return (await readChecked(env.disk, founderFile(groupDir))).trim();
  } catch (err) {
    if (err instanceof NotFound) return null;
    throw err;
  }
}
