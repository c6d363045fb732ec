// The real Disk: files on Deno.open with positional I/O emulated by seek + read/write (Deno has
// no pread/pwrite), so each handle runs its operations one at a time, in call order.

import { Closed, IoError, IoFailure, Locked, NoSpace } from "../errors.ts";
import type { Disk, File, FileLock, OpenOptions } from "../types.ts";
import { mapDenoError } from "./_errors.ts";

/** Bytes of a lock file read to name its holder; a holder line is far shorter. */
const LOCK_HOLDER_BYTES_MAX = 128;
/**
 * Reads of an empty lock file before its holder counts as unknown: the holder writes its pid just
 * after taking the lock, so a reader in between sees nothing yet.
 */
const LOCK_HOLDER_READS_MAX = 10;
/** Wait between those reads, ms. */
const LOCK_HOLDER_READ_INTERVAL_MS = 20;

/** A `Disk` on the host filesystem. */
export class DenoDisk implements Disk {
  async open(path: string, opts: OpenOptions = {}): Promise<File> {
    const createNew = opts.createNew ?? false;
    try {
      const file = await Deno.open(path, {
        read: true,
        write: true,
        create: createNew || (opts.create ?? false),
        createNew,
      });
      return new DenoFile(file, path);
    } catch (err) {
      throw mapDenoError(err, `Cannot open ${path}`);
    }
  }

  async rename(from: string, to: string): Promise<void> {
    try {
      await Deno.rename(from, to);
    } catch (err) {
      throw mapDenoError(err, `Cannot rename ${from} to ${to}`);
    }
  }

  async remove(path: string): Promise<void> {
    try {
      await Deno.remove(path);
    } catch (err) {
      throw mapDenoError(err, `Cannot remove ${path}`);
    }
  }

  async list(dir: string): Promise<string[]> {
    const names: string[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    } catch (err) {
      throw mapDenoError(err, `Cannot list ${dir}`);
    }
    return names.sort();
  }

  async mkdir(dir: string): Promise<void> {
    try {
      await Deno.mkdir(dir, { recursive: true });
    } catch (err) {
      throw mapDenoError(err, `Cannot create directory ${dir}`);
    }
  }

  /** fsync on the directory itself, which Deno opens read-only on Linux and macOS. */
  async syncDir(dir: string): Promise<void> {
    let handle: Deno.FsFile;
    try {
      handle = await Deno.open(dir, { read: true });
    } catch (err) {
      throw mapDenoError(err, `Cannot sync directory ${dir}`);
    }
    try {
      await handle.sync();
    } catch (err) {
      throw mapDenoError(err, `Cannot sync directory ${dir}`);
    } finally {
      handle.close();
    }
  }

  /** flock(LOCK_EX | LOCK_NB) through `FsFile.tryLock`, which never waits. */
  async lock(path: string): Promise<FileLock> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true, write: true, create: true });
    } catch (err) {
      throw mapDenoError(err, `Cannot lock ${path}`);
    }
    try {
      if (!(await file.tryLock(true))) {
        const holder = await lockHolder(file);
        throw new Locked(`Cannot lock ${path}: held by ${holder}`, holder);
      }
      await writeHolder(file, path, `pid ${Deno.pid}\n`);
    } catch (err) {
      file.close();
      throw err instanceof IoError ? err : mapDenoError(err, `Cannot lock ${path}`);
    }
    return new DenoFileLock(file);
  }
}

/**
 * Writes the holder line over the lock file's start, then cuts what a longer old line left: an old
 * lock file keeps its block, so this needs no free space; a new one on a full disk stays empty.
 */
async function writeHolder(file: Deno.FsFile, path: string, line: string): Promise<void> {
  const bytes = new TextEncoder().encode(line);
  try {
    await file.seek(0, Deno.SeekMode.Start);
    let off = 0;
    while (off < bytes.length) off += await file.write(bytes.subarray(off));
    await file.truncate(bytes.length);
    await file.syncData();
  } catch (err) {
    const mapped = mapDenoError(err, `Cannot write the holder into ${path}`);
    if (!(mapped instanceof NoSpace)) throw mapped;
  }
}

/** Releases the lock by closing its handle (the kernel drops a flock with its last descriptor). */
class DenoFileLock implements FileLock {
  #file: Deno.FsFile | null;

  constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  release(): void {
    this.#file?.close();
    this.#file = null;
  }
}

/**
 * Who holds the lock on `file`, from the line the holder wrote into it: its first line, printable
 * characters only, or "another process" while it stays empty.
 */
async function lockHolder(file: Deno.FsFile): Promise<string> {
  const buf = new Uint8Array(LOCK_HOLDER_BYTES_MAX);
  for (let read = 0; read < LOCK_HOLDER_READS_MAX; read++) {
    await file.seek(0, Deno.SeekMode.Start);
    const n = (await file.read(buf)) ?? 0;
    const line = new TextDecoder().decode(buf.subarray(0, n)).split("\n")[0]!
      .replace(/[^\x20-\x7e]/g, "").trim();
    if (line !== "") return line;
    await new Promise((r) => setTimeout(r, LOCK_HOLDER_READ_INTERVAL_MS));
  }
  return "another process";
}

/**
 * An open file. Operations queue on the handle and run one at a time in call order, because a
 * seek and the read or write after it must not interleave with another operation's seek.
 * `close()` waits for operations already queued, then releases the handle; later ones reject
 * with `Closed`.
 */
export class DenoFile implements File {
  readonly #file: Deno.FsFile;
  readonly #path: string;
  #tail: Promise<unknown> = Promise.resolve();
  /** Where the handle's cursor is, if known (null after a failure or before the first seek). */
  #position: number | null = null;
  #pending = 0;
  #closed = false;
  #released = false;

  /** Wraps an open handle for `path` (used in error messages); the wrapper owns it from now on. */
  constructor(file: Deno.FsFile, path: string) {
    this.#file = file;
    this.#path = path;
  }

  async readAt(pos: number, buf: Uint8Array): Promise<number> {
    assertPosition(pos, "readAt");
    return await this.#run(`read ${this.#path} at ${pos}`, async (file) => {
      await this.#seek(file, pos);
      let off = 0;
      while (off < buf.length) {
        const n = await file.read(off === 0 ? buf : buf.subarray(off));
        if (n === null) break;
        off += n;
      }
      this.#position = pos + off;
      return off;
    });
  }

  async writeAt(pos: number, bytes: Uint8Array): Promise<number> {
    assertPosition(pos, "writeAt");
    return await this.#run(`write ${this.#path} at ${pos}`, async (file) => {
      await this.#seek(file, pos);
      let off = 0;
      while (off < bytes.length) {
        off += await file.write(off === 0 ? bytes : bytes.subarray(off));
      }
      this.#position = pos + off;
      return bytes.length;
    });
  }

  sync(): Promise<void> {
    // The contract promises IoFailure for any failed sync (ENOSPC included, as on delayed
    // allocation or NFS): whatever the cause, the dirty data may be gone.
    return this.#run(`sync ${this.#path}`, (file) => file.syncData()).catch((err) => {
      throw err instanceof NoSpace ? new IoFailure(err.message, { cause: err.cause }) : err;
    });
  }

  size(): Promise<number> {
    return this.#run(`stat ${this.#path}`, async (file) => (await file.stat()).size);
  }

  async truncate(len: number): Promise<void> {
    assertPosition(len, "truncate");
    return await this.#run(`truncate ${this.#path} to ${len}`, (file) => file.truncate(len));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pending === 0) this.#release();
  }

  /**
   * Moves the handle's cursor to `pos` unless it is there already: appends and reads that follow
   * on from the last operation (the common case for a log) save a syscall each.
   */
  async #seek(file: Deno.FsFile, pos: number): Promise<void> {
    if (this.#position === pos) return;
    this.#position = null;
    await file.seek(pos, Deno.SeekMode.Start);
    this.#position = pos;
  }

  #run<T>(op: string, body: (file: Deno.FsFile) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Closed(`Cannot ${op}: file is closed`));
    this.#pending++;
    // After a failed operation the cursor could be anywhere: the next one seeks.
    const result = this.#tail.then(() => body(this.#file)).catch((err) => {
      this.#position = null;
      throw err;
    });
    this.#tail = result.then(() => this.#settled(), () => this.#settled());
    return result.catch((err) => {
      throw mapDenoError(err, `Cannot ${op}`);
    });
  }

  #settled(): void {
    this.#pending--;
    if (this.#closed && this.#pending === 0) this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#file.close();
  }
}

function assertPosition(pos: number, op: string): void {
  if (!Number.isSafeInteger(pos) || pos < 0) {
    throw new RangeError(`File.${op} needs a non-negative safe integer, got ${pos}`);
  }
}
