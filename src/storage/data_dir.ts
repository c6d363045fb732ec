// Claiming a data directory at start: one process at a time (an OS lock on `.lock`, which names its
// holder), and only a directory this process can write to. Two brokers on one directory would each
// assign the same offsets to different messages, and one's acknowledged writes would vanish later.

import { IoError, Locked, NoSpace } from "../io/errors.ts";
import type { Disk, FileLock } from "../io/types.ts";
import { lockFile, probeFile } from "./layout.ts";

/** Why a node cannot use its data directory; the message is the one line an operator sees. */
export class DataDirError extends Error {
  /** "in-use": another process holds the lock; "not-writable": the directory refuses writes. */
  readonly kind: "in-use" | "not-writable";
  constructor(kind: "in-use" | "not-writable", message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.name = "DataDirError";
  }
}

/**
 * Takes `dir` for this process: creates it if missing, locks `dir/.lock` and checks that a file
 * can be created, synced and removed there. A full disk passes (it is writable; writes that need
 * space fail and are reported as they happen). Release the returned lock when the node stops.
 *
 * @throws {DataDirError} "in-use" (`data dir ./data is in use by pid 4242`) or "not-writable"
 *   (`data dir ./data is not writable: <reason>`).
 */
export async function claimDataDir(disk: Disk, dir: string): Promise<FileLock> {
  const notWritable = (err: unknown): DataDirError =>
    new DataDirError("not-writable", `data dir ${dir} is not writable: ${reason(err)}`, {
      cause: err,
    });
  let lock: FileLock;
  try {
    await disk.mkdir(dir);
    lock = await disk.lock(lockFile(dir));
  } catch (err) {
    if (err instanceof Locked) {
      throw new DataDirError("in-use", `data dir ${dir} is in use by ${err.holder}`, {
        cause: err,
      });
    }
    if (err instanceof IoError) throw notWritable(err);
    throw err;
  }
  try {
    await probe(disk, dir);
  } catch (err) {
    lock.release();
    if (err instanceof IoError) throw notWritable(err);
    throw err;
  }
  return lock;
}

/** Creates an empty file, syncs it and the directory, removes it and syncs again. */
async function probe(disk: Disk, dir: string): Promise<void> {
  const path = probeFile(dir);
  try {
    const file = await disk.open(path, { create: true });
    try {
      await file.sync();
    } finally {
      file.close();
    }
    await disk.syncDir(dir);
    await disk.remove(path);
    await disk.syncDir(dir);
  } catch (err) {
    if (!(err instanceof NoSpace)) throw err;
  }
}

/** The OS's reason without the seam's "Cannot <op> <path>: " prefix, which the line already says. */
function reason(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/^Cannot [^:]*: /, "");
}
