// The data directory's layout, declared in one place: every file and directory a node keeps under
// its data directory is named by a function here, and nowhere else. The names are an on-disk
// promise (an existing data directory must open after an upgrade), so they change only with a
// migration. `layoutEntries()` lists the tree that docs/architecture.md shows (a test keeps both
// the same).

import { joinPath } from "../io/util.ts";

/** Digits in a segment file name (Kafka's width): the base offset, zero-padded. */
const SEGMENT_NAME_DIGITS = 20;
/** What a segment file holds, by its extension: batches, the offset index, the time index. */
export type SegmentFileKind = "log" | "index" | "timeindex";
/** Every file of a segment. */
export const SEGMENT_FILE_KINDS: readonly SegmentFileKind[] = ["log", "index", "timeindex"];
/** The files of a segment's indexes (written when it seals). */
export const INDEX_FILE_KINDS: readonly SegmentFileKind[] = ["index", "timeindex"];
/** The extension of a Raft WAL segment file. */
const WAL_EXT = "wal";
/** The extension of a group's committed-offsets file under `groups/`. */
const GROUP_OFFSETS_EXT = ".json";
/** Directory holding the Raft groups' stores, and under it the partition groups'. */
const RAFT_DIR = "raft";
const RAFT_PARTITIONS_DIR = "p";
/** The metadata group's store (its directory name, which is also the group's name today). */
const RAFT_META_DIR = "__meta";

// ---- the data directory itself ---------------------------------------------------------------

/** The lock held while a node runs on `dataDir`; it names the node's process. */
export function lockFile(dataDir: string): string {
  return joinPath(dataDir, ".lock");
}

/** Created, synced and removed at start, to prove `dataDir` takes new entries. */
export function probeFile(dataDir: string): string {
  return joinPath(dataDir, ".probe");
}

/** The node's id in a cluster, made once. */
export function nodeIdFile(dataDir: string): string {
  return joinPath(dataDir, "node-id");
}

/** The cluster the node belongs to, kept once it founded or joined one. */
export function clusterIdFile(dataDir: string): string {
  return joinPath(dataDir, "cluster-id");
}

/** The node's incarnation, raised at every start of a cluster node. */
export function incarnationFile(dataDir: string): string {
  return joinPath(dataDir, "node-incarnation");
}

/** The cluster secret, read (never written) when no other source gives one. */
export function clusterSecretFile(dataDir: string): string {
  return joinPath(dataDir, "cluster.secret");
}

/** Users and their SCRAM credentials. */
export function usersFile(dataDir: string): string {
  return joinPath(dataDir, "users.json");
}

/** Access control entries. */
export function aclsFile(dataDir: string): string {
  return joinPath(dataDir, "acls.json");
}

/** The next block of idempotent producer ids this node hands out. */
export function producerIdsFile(dataDir: string): string {
  return joinPath(dataDir, "producer_ids.json");
}

/** Durable subscriptions' acknowledged offsets (on a single node). */
export function subscriptionsFile(dataDir: string): string {
  return joinPath(dataDir, "subscriptions.json");
}

// ---- consumer groups ---------------------------------------------------------------------------

/** Consumer groups' committed offsets (on a single node; a cluster replicates them). */
export function groupsDir(dataDir: string): string {
  return joinPath(dataDir, "groups");
}

/** One group's committed offsets. */
export function groupOffsetsFile(dataDir: string, group: string): string {
  return joinPath(groupsDir(dataDir), `${group}${GROUP_OFFSETS_EXT}`);
}

/** The group whose offsets file is called `name` (a name in `groupsDir`), or null if none. */
export function groupOfOffsetsFile(name: string): string | null {
  return name.endsWith(GROUP_OFFSETS_EXT) ? name.slice(0, -GROUP_OFFSETS_EXT.length) : null;
}

// ---- topics on a single node --------------------------------------------------------------------

/** Topics kept on disk, one directory each. */
export function topicsDir(dataDir: string): string {
  return joinPath(dataDir, "topics");
}

/** One topic's directory. */
export function topicDir(dataDir: string, topic: string): string {
  return joinPath(topicsDir(dataDir), topic);
}

/** A topic's metadata (partition count and configs), written last at creation. */
export function topicMetaFile(dataDir: string, topic: string): string {
  return joinPath(topicDir(dataDir, topic), "topic.json");
}

/** A partition's segment log. */
export function partitionDir(dataDir: string, topic: string, partition: number): string {
  return joinPath(topicDir(dataDir, topic), String(partition));
}

/** True if `name`, in a topic's directory, is a partition's directory. */
export function isPartitionDirName(name: string): boolean {
  return /^\d+$/.test(name);
}

// ---- Raft groups in a cluster ---------------------------------------------------------------

/** Stores of the Raft groups this node takes part in. */
export function raftDir(dataDir: string): string {
  return joinPath(dataDir, RAFT_DIR);
}

/** The metadata group's Raft WAL. */
export function metaGroupDir(dataDir: string): string {
  return joinPath(raftDir(dataDir), RAFT_META_DIR);
}

/** Partition groups' replicas, one directory per topic incarnation. */
export function replicasDir(dataDir: string): string {
  return joinPath(raftDir(dataDir), RAFT_PARTITIONS_DIR);
}

/** A replica's Raft WAL: partition `partition` of `topic` as created at `incarnation`. */
export function replicaDir(
  dataDir: string,
  replica: { topic: string; incarnation: number; partition: number },
): string {
  const { topic, incarnation, partition } = replica;
  return joinPath(replicasDir(dataDir), `${topic}@${incarnation}`, String(partition));
}

/** The segment log of the replica whose Raft WAL is `replicaDir`: beside it. */
export function replicaLogDir(replicaDir: string): string {
  return `${replicaDir}.log`;
}

/** Which node founded the Raft group whose store is `groupDir`, written once it first opened. */
export function founderFile(groupDir: string): string {
  return `${groupDir}.founder`;
}

/** A segment of the Raft WAL in `walDir`, named by its first frame's sequence number. */
export function walSegmentFile(walDir: string, seq: number): string {
  return joinPath(walDir, segmentName(seq, WAL_EXT));
}

/** The sequence number of the WAL segment file called `name`, or null if it is not one. */
export function parseWalSegmentName(name: string): number | null {
  return parseSegmentName(name, WAL_EXT);
}

// ---- inside a segment log (a partition's, or a replica's) ---------------------------------------

/** A segment file of the log in `logDir`, named by the segment's base offset. */
export function segmentFile(logDir: string, baseOffset: number, kind: SegmentFileKind): string {
  return joinPath(logDir, segmentName(baseOffset, kind));
}

/** The copy recovery writes of a damaged segment, renamed over it once synced. */
export function segmentCopyFile(segmentFile: string): string {
  return `${segmentFile}.tmp`;
}

/**
 * True if `name` (in a log directory) is a leftover of a replace a crash interrupted: recovery's
 * copy of a segment, or an index's atomic rewrite (io/util's writeFileAtomic names them the same).
 */
export function isTmpName(name: string): boolean {
  return name.endsWith(".tmp");
}

/** Present while the log is closed cleanly: its next open may skip checking the last segment. */
export function cleanShutdownFile(logDir: string): string {
  return joinPath(logDir, "clean-shutdown");
}

/** A truncation or reset under way, which the next open finishes if a crash interrupted it. */
export function rewindFile(logDir: string): string {
  return joinPath(logDir, "rewind");
}

/** The file name of the segment starting at `baseOffset`, with extension `ext`. */
export function segmentName(baseOffset: number, ext: string): string {
  return `${String(baseOffset).padStart(SEGMENT_NAME_DIGITS, "0")}.${ext}`;
}

/** The base offset in a segment file name, or null if the name is not one with `ext`. */
export function parseSegmentName(name: string, ext: string): number | null {
  const m = new RegExp(`^(\\d{${SEGMENT_NAME_DIGITS}})\\.${ext}$`).exec(name);
  if (m === null) return null;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : null;
}

// ---- the layout as a tree, for the docs -------------------------------------------------------

/** One entry of the layout: its path under the data directory (a directory ends in "/"). */
export interface LayoutEntry {
  path: string;
  what: string;
}

/**
 * Every entry a node may keep under its data directory, parents before children, built by the
 * functions above for an example: topic "orders" (partition 0), group "billing", a replica of
 * "orders"/0 created at incarnation 7. Files written by an atomic replace also appear, for a
 * moment, as `<name>.tmp` beside their final name.
 */
export function layoutEntries(): LayoutEntry[] {
  const d = ".";
  const replica = replicaDir(d, { topic: "orders", incarnation: 7, partition: 0 });
  const part = partitionDir(d, "orders", 0);
  const logFiles = (dir: string): [string, string][] => [
    [segmentFile(dir, 0, "log"), "a segment's record batches, named by its base offset"],
    [segmentFile(dir, 0, "index"), "its sparse offset index (written when the segment seals)"],
    [segmentFile(dir, 0, "timeindex"), "its time index (written when the segment seals)"],
    [segmentCopyFile(segmentFile(dir, 0, "log")), "recovery's copy of a damaged segment"],
    [cleanShutdownFile(dir), "present after a clean shutdown"],
    [rewindFile(dir), "a truncation or reset a crash interrupted"],
  ];
  const entries: [string, string][] = [
    [lockFile(d), "held while the node runs; names its process"],
    [probeFile(d), "made and removed at start: the directory takes writes"],
    [nodeIdFile(d), "this node's id in a cluster"],
    [clusterIdFile(d), "the cluster it founded or joined (its founder's id)"],
    [incarnationFile(d), "raised at every start of a cluster node"],
    [clusterSecretFile(d), "the cluster secret, if put there (the node only reads it)"],
    [usersFile(d), "users and their SCRAM credentials"],
    [aclsFile(d), "access control entries"],
    [producerIdsFile(d), "the next block of idempotent producer ids"],
    [subscriptionsFile(d), "durable subscriptions' acked offsets (single node)"],
    [`${groupsDir(d)}/`, "consumer groups' committed offsets (single node)"],
    [groupOffsetsFile(d, "billing"), "group billing's offsets"],
    [`${topicsDir(d)}/`, "topics on a single node"],
    [`${topicDir(d, "orders")}/`, "topic orders"],
    [topicMetaFile(d, "orders"), "its partition count and configs"],
    [`${part}/`, "partition 0's segment log"],
    ...logFiles(part),
    [`${raftDir(d)}/`, "Raft groups of a cluster node"],
    [`${metaGroupDir(d)}/`, "the metadata group's Raft WAL"],
    [walSegmentFile(metaGroupDir(d), 0), "a WAL segment, named by its first sequence number"],
    [founderFile(metaGroupDir(d)), "the metadata group's founding voters, the founder first"],
    [`${replicasDir(d)}/`, "partition replicas"],
    [`${replica.slice(0, replica.lastIndexOf("/"))}/`, "topic orders, incarnation 7"],
    [`${replica}/`, "partition 0's Raft WAL"],
    [walSegmentFile(replica, 0), "a WAL segment"],
    [`${replicaLogDir(replica)}/`, "partition 0's segment log (as a single node's)"],
    ...logFiles(replicaLogDir(replica)),
  ];
  return entries.map(([path, what]) => ({ path: path.slice(d.length + 1), what }));
}

/** The layout as a tree, one line per entry: indented name, then what it holds. */
export function layoutTree(): string {
  const lines = layoutEntries().map(({ path, what }) => {
    const parts = path.split("/");
    const isDir = path.endsWith("/");
    const depth = parts.length - (isDir ? 2 : 1);
    const name = parts[depth] + (isDir ? "/" : "");
    return { label: "  ".repeat(depth + 1) + name, what };
  });
  const width = Math.max(...lines.map((l) => l.label.length)) + 2;
  return ["<data dir>/", ...lines.map((l) => `${l.label.padEnd(width)}${l.what}`)].join("\n");
}
