// A node's stable identity: created once, kept in its data directory, the same across restarts.

import { NotFound } from "../../io/errors.ts";
import type { Env } from "../../io/types.ts";
import { mkdirDurable, readFile, writeFileAtomic } from "../../io/util.ts";
import { clusterIdFile, incarnationFile, nodeIdFile } from "../../storage/layout.ts";
import { INCARNATION_MAX, isNodeId } from "./limits.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads the node id from `${dataDir}/node-id`, creating it (16 random hex characters from
 * `env.random`, written atomically and synced) if absent. An operator may write an id of their own
 * there (1 to 64 characters of [A-Za-z0-9_-]; surrounding whitespace is ignored).
 *
 * @throws Error if the file exists but does not hold a valid id: a node must not silently take a
 * new identity.
 */
export async function loadOrCreateNodeId(env: Env, dataDir: string): Promise<string> {
  const path = nodeIdFile(dataDir);
  const kept = await readId(env, path, "node id");
  if (kept !== null) return kept;
  const random = env.random.fork("node-id");
  const id = hex8(random.u32()) + hex8(random.u32());
  await mkdirDurable(env.disk, dataDir);
  await writeFileAtomic(env.disk, path, encoder.encode(`${id}\n`));
  return id;
}

/**
 * The cluster this node belongs to, from `${dataDir}/cluster-id`, or "" if it has joined none yet
 * (a node that founds or joins one keeps it there with `saveClusterId`).
 *
 * @throws Error if the file exists but does not hold a valid cluster id: a node must not silently
 * join another cluster.
 */
export async function loadClusterId(env: Env, dataDir: string): Promise<string> {
  return await readId(env, clusterIdFile(dataDir), "cluster id") ?? "";
}

/**
 * The id (1 to 64 of [A-Za-z0-9_-], surrounding whitespace ignored) in the file at `path`, or null
 * if there is none; throws an Error naming `what` if the file holds anything else.
 */
async function readId(env: Env, path: string, what: string): Promise<string | null> {
  let bytes: Uint8Array;
  try {
    bytes = await readStable(env.disk, path);
  } catch (err) {
    if (err instanceof NotFound) return null;
    throw err;
  }
  let text: string;
  try {
    text = decoder.decode(bytes).trim();
  } catch {
    throw new Error(`Cannot use the ${what} in ${path}: it is not UTF-8 text`);
  }
  if (!isNodeId(text)) {
    throw new Error(
      `Cannot use the ${what} in ${path}: ${
        JSON.stringify(text.slice(0, 80))
      } is not 1 to 64 characters of [A-Za-z0-9_-]`,
    );
  }
  return text;
}

/** Keeps the cluster this node belongs to in `${dataDir}/cluster-id` (written atomically, synced). */
export async function saveClusterId(env: Env, dataDir: string, clusterId: string): Promise<void> {
  if (!isNodeId(clusterId)) throw new RangeError(`Invalid cluster id ${JSON.stringify(clusterId)}`);
  await mkdirDurable(env.disk, dataDir);
  await writeFileAtomic(env.disk, clusterIdFile(dataDir), encoder.encode(`${clusterId}\n`));
}

/** Reads of a small identity file at most, looking for two that agree. */
const STABLE_READS_MAX = 8;

/**
 * Reads a small file until two reads in a row agree: these files are plain text an operator may
 * write (no checksum), and a bit flipped on one read must not give the node another identity.
 */
async function readStable(disk: Env["disk"], path: string): Promise<Uint8Array> {
  let last = await readFile(disk, path);
  for (let i = 1; i < STABLE_READS_MAX; i++) {
    const again = await readFile(disk, path);
    if (again.length === last.length && again.every((b, k) => b === last[k])) return again;
    last = again;
  }
  throw new Error(`${path} reads back differently every time; the disk cannot be trusted`);
}

/**
 * The incarnation for this start: above every earlier start of this node (kept in
 * `${dataDir}/node-incarnation`, replaced atomically before it is used) and at least the wall clock
 * in ms — so a restart outranks its predecessor even if the wall clock went back.
 */
export async function nextIncarnation(env: Env, dataDir: string): Promise<number> {
  const path = incarnationFile(dataDir);
  let previous = 0;
  try {
    const n = Number(decoder.decode(await readStable(env.disk, path)).trim());
    if (Number.isSafeInteger(n) && n >= 0) previous = n;
  } catch (err) {
    if (!(err instanceof NotFound)) throw err;
    await mkdirDurable(env.disk, dataDir);
  }
  const next = Math.min(
    INCARNATION_MAX - 1,
    Math.max(previous + 1, Math.floor(env.clock.wallMs())),
  );
  await writeFileAtomic(env.disk, path, encoder.encode(`${next}\n`));
  return next;
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, "0");
}
