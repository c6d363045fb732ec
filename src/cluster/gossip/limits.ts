// Named limits of gossip membership, the reserved keys of a node's state, and the checks every
// value from the wire or from a caller passes before it reaches the state table.

/** Members (other nodes) one node tracks at most; gossip about more is dropped. */
export const MEMBERS_MAX = 1024;
/** Keys in one node's state at most, reserved keys included. */
export const ENTRIES_PER_NODE_MAX = 64;
/** Longest value of a state entry, in UTF-8 bytes. */
export const VALUE_BYTES_MAX = 1024;
/** Largest incarnation and version accepted; leaves room to count up in safe integers. */
export const INCARNATION_MAX = 2 ** 52;
export const VERSION_MAX = 2 ** 52;
/** Smallest and largest `messageBytesMax`: the smallest still carries the largest single entry. */
export const MESSAGE_BYTES_MIN = 4 * 1024;
export const MESSAGE_BYTES_MAX = 512 * 1024;
/**
 * Largest gossip frame payload: a full digest (MEMBERS_MAX + 1 entries of at most 84 bytes) plus
 * the largest delta section, with room to spare.
 */
export const GOSSIP_PAYLOAD_BYTES_MAX = 1024 * 1024;

/** Reserved keys of a node's state, set by gossip itself and refused by `setLocal`. */
export const KEY_HOST = "host";
export const KEY_CLUSTER_PORT = "clusterPort";
export const KEY_CLIENT_PORT = "clientPort";
export const KEY_HEARTBEAT = "heartbeat";
/** Present (value "1") once the node announced that it leaves. */
export const KEY_LEFT = "left";
/**
 * The cluster the node belongs to (a token shaped like a node id: its founder's, as a rule),
 * absent while it joins one. Gossip about a node of another cluster is dropped.
 */
export const KEY_CLUSTER = "cluster";
/**
 * When the node's process started, wall-clock ms: of two live processes claiming one node id (a
 * copied data directory), the one that started later stops.
 */
export const KEY_STARTED = "started";
export const RESERVED_KEYS: ReadonlySet<string> = new Set([
  KEY_CLUSTER,
  KEY_STARTED,
  KEY_HOST,
  KEY_CLUSTER_PORT,
  KEY_CLIENT_PORT,
  KEY_HEARTBEAT,
  KEY_LEFT,
]);

const NODE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const KEY_RE = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;
const HOST_RE = /^[A-Za-z0-9_.:-]{1,253}$/;
const DECIMAL_RE = /^(0|[1-9][0-9]{0,15})$/;

/** True for a node id: 1 to 64 characters of [A-Za-z0-9_-]. */
export function isNodeId(s: string): boolean {
  return NODE_ID_RE.test(s);
}

/** True for a state key: a letter, then up to 63 characters of [A-Za-z0-9_.:-]. */
export function isKey(s: string): boolean {
  return KEY_RE.test(s);
}

/** True for an advertised host: a name or an IP literal (IPv6 without brackets). */
export function isHost(s: string): boolean {
  return HOST_RE.test(s);
}

/** True for a TCP port a node can be reached at. */
export function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** A non-negative decimal integer up to VERSION_MAX, or null. */
export function parseCount(s: string): number | null {
  if (!DECIMAL_RE.test(s)) return null;
  const n = Number(s);
  return n <= VERSION_MAX ? n : null;
}

/** A port written in decimal, or null. */
export function parsePort(s: string): number | null {
  const n = parseCount(s);
  return n !== null && isPort(n) ? n : null;
}

/** UTF-8 length of `s` without encoding it (a lone surrogate counts as U+FFFD, 3 bytes). */
export function utf8Bytes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/**
 * Why the value of `key` is not acceptable in a node's state, or null if it is. Reserved keys carry
 * typed values; every value is at most VALUE_BYTES_MAX UTF-8 bytes.
 */
export function entryProblem(key: string, value: string): string | null {
  if (!isKey(key)) {
    return `key ${JSON.stringify(key)} is not a letter and up to 63 characters of [A-Za-z0-9_.:-]`;
  }
  if (utf8Bytes(value) > VALUE_BYTES_MAX) {
    return `value of ${key} is over ${VALUE_BYTES_MAX} bytes`;
  }
  // A lone surrogate would arrive as U+FFFD: the value would not be the one that was set.
  if (!value.isWellFormed()) return `value of ${key} is not well-formed Unicode`;
  switch (key) {
    case KEY_HOST:
      return isHost(value) ? null : `host ${JSON.stringify(value)} is not a host name or address`;
    case KEY_CLUSTER_PORT:
    case KEY_CLIENT_PORT:
      return parsePort(value) !== null ? null : `${key} ${JSON.stringify(value)} is not a port`;
    case KEY_HEARTBEAT:
    case KEY_STARTED:
      return parseCount(value) !== null ? null : `${key} ${JSON.stringify(value)} is not a count`;
    case KEY_LEFT:
      return value === "1" ? null : `left must be "1", got ${JSON.stringify(value)}`;
    case KEY_CLUSTER:
      return isNodeId(value)
        ? null
        : `cluster ${JSON.stringify(value)} is not 1 to 64 of [A-Za-z0-9_-]`;
    default:
      return null;
  }
}
