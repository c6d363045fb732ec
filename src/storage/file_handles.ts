// A budget of open file handles shared by everything one broker stores. It is a Disk whose files
// open their OS handle on demand: when the budget is spent, the least recently used idle file is
// closed (and opened again on its next use), so thousands of partitions fit in a few hundred
// descriptors and the process never runs out of them (Deno panics when it does).

import { Closed, IoFailure, NotFound, TooManyOpenFiles } from "../io/errors.ts";
import type { Disk, File, FileLock, OpenOptions } from "../io/types.ts";

/** Operations waiting for a handle at most; one more fails with TooManyOpenFiles. */
export const HANDLE_WAITERS_MAX = 10_000;
/** Opens the OS refuses with EMFILE in a row (each after closing an idle file) before giving up. */
const OPEN_RETRIES_MAX = 16;

/** Options of a `FileHandles`. */
export interface FileHandlesOptions {
  /**
   * OS handles open at once at most: files, and directories while they are listed or synced.
   * At least 2 (one file and one directory operation).
   */
  handlesMax: number;
}

/** Counters of a `FileHandles`, for metrics and tests. */
export interface FileHandlesStats {
  /** Files opened again after their handle was closed to make room. */
  reopens: number;
  /** Idle handles closed to make room. */
  evictions: number;
  /** Idle handles with unsynced writes, synced so they could be closed. */
  evictionSyncs: number;
  /** Times an operation waited because every handle was in use. */
  waits: number;
  /** Opens refused: no handle could be had (the budget, or the OS, said no). */
  refused: number;
}

/**
 * A Disk that keeps at most `handlesMax` OS handles open. A file it opens is a stand-in that
 * holds its handle only while that is cheap: an idle file whose writes are all synced may lose its
 * handle to another open and gets it back on its next operation. A file is never closed during an
 * operation on it, nor with unsynced writes (those are synced first, and a failure of that sync
 * is reported by the file's next `sync()`), nor after it was removed or replaced (it could not be
 * opened again). When every handle is busy, an open waits for one.
 */
export class FileHandles implements Disk {
  readonly stats: FileHandlesStats = {
    reopens: 0,
    evictions: 0,
    evictionSyncs: 0,
    waits: 0,
    refused: 0,
  };
  readonly #disk: Disk;
  readonly #handlesMax: number;
  /** OS handles held now. */
  #held = 0;
  /** Files holding a handle with no operation in progress, least recently used first. */
  readonly #idle = new Set<HandleFile>();
  /** Open files by path, so a rename or a remove follows what an OS handle would see. */
  readonly #byPath = new Map<string, Set<HandleFile>>();
  readonly #waiters: (() => void)[] = [];

  /** Keeps at most `opts.handlesMax` handles of `disk` open. */
  constructor(disk: Disk, opts: FileHandlesOptions) {
    if (!Number.isInteger(opts.handlesMax) || opts.handlesMax < 2) {
      throw new RangeError(`FileHandles needs handlesMax >= 2, got ${opts.handlesMax}`);
    }
    this.#disk = disk;
    this.#handlesMax = opts.handlesMax;
  }

  /** OS handles open now (at most `handlesMax`). */
  get handlesOpen(): number {
    return this.#held;
  }

  /** The most handles this keeps open. */
  get handlesMax(): number {
    return this.#handlesMax;
  }

  async open(path: string, opts?: OpenOptions): Promise<File> {
    const key = normalize(path);
    const file = await this.openHandle(`Cannot open ${path}`, () => this.#disk.open(path, opts));
    const f = new HandleFile(this, { path, key }, file);
    let same = this.#byPath.get(key);
    if (same === undefined) this.#byPath.set(key, same = new Set());
    same.add(f);
    this.idle(f);
    return f;
  }

  async rename(from: string, to: string): Promise<void> {
    await this.#disk.rename(from, to);
    const src = normalize(from);
    const dst = normalize(to);
    if (src === dst) return;
    // Handles on the replaced file now refer to an unnamed one; handles on `from` follow it.
    this.#unlinked(dst);
    const moved = this.#byPath.get(src);
    if (moved === undefined) return;
    this.#byPath.delete(src);
    this.#byPath.set(dst, moved);
    for (const f of moved) {
      f.path = to;
      f.key = dst;
    }
  }

  async remove(path: string): Promise<void> {
    await this.#disk.remove(path);
    this.#unlinked(normalize(path));
  }

  list(dir: string): Promise<string[]> {
    return this.#withHandle(`Cannot list ${dir}`, () => this.#disk.list(dir));
  }

  mkdir(dir: string): Promise<void> {
    return this.#disk.mkdir(dir);
  }

  /**
   * A lock holds its handle for as long as it is held, so it stays outside the budget: the node
   * takes one, on its data directory, before the budget exists.
   */
  lock(path: string): Promise<FileLock> {
    return this.#disk.lock(path);
  }

  syncDir(dir: string): Promise<void> {
    return this.#withHandle(`Cannot sync directory ${dir}`, () => this.#disk.syncDir(dir));
  }

  /** Runs `body` holding one handle (a directory being listed or synced). */
  async #withHandle<T>(what: string, body: () => Promise<T>): Promise<T> {
    await this.#acquire(what);
    try {
      return await body();
    } finally {
      this.release();
    }
  }

  /**
   * An OS handle from `opener`, once one is free under the budget; when the OS itself refuses
   * (EMFILE: other descriptors of the process), idle files are closed until it agrees.
   * Internal: used by the files this hands out.
   */
  async openHandle(what: string, opener: () => Promise<File>): Promise<File> {
    await this.#acquire(what);
    for (let attempt = 0;; attempt++) {
      try {
        return await opener();
      } catch (err) {
        if (!(err instanceof TooManyOpenFiles) || attempt >= OPEN_RETRIES_MAX) {
          this.release();
          if (err instanceof TooManyOpenFiles) this.stats.refused++;
          throw err;
        }
        if (!this.#evictIdle()) {
          this.release();
          this.stats.refused++;
          throw err;
        }
      }
    }
  }

  /** Takes one handle of the budget, closing idle files or waiting to make room. */
  async #acquire(what: string): Promise<void> {
    for (;;) {
      if (this.#held < this.#handlesMax) {
        this.#held++;
        return;
      }
      if (this.#evictIdle()) continue;
      const dirty = this.#dirtyIdle();
      if (dirty !== null) {
        this.stats.evictionSyncs++;
        await dirty.syncToClose();
        continue;
      }
      if (this.#waiters.length >= HANDLE_WAITERS_MAX) {
        this.stats.refused++;
        throw new TooManyOpenFiles(
          `${what}: too many open files: all ${this.#handlesMax} file handles (fileHandlesMax) ` +
            `are in use and ${HANDLE_WAITERS_MAX} operations already wait for one`,
        );
      }
      this.stats.waits++;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }

  /** Gives a handle back to the budget. Internal: used by the files this hands out. */
  release(): void {
    this.#held--;
    this.#wake();
  }

  #wake(): void {
    this.#waiters.shift()?.();
  }

  /** `f` holds a handle and has no operation in progress. Internal. */
  idle(f: HandleFile): void {
    this.#idle.delete(f);
    this.#idle.add(f);
    // Someone waiting may be able to close it now.
    this.#wake();
  }

  /** `f` has an operation in progress, or no handle. Internal. */
  busy(f: HandleFile): void {
    this.#idle.delete(f);
  }

  /** `f` was closed by its owner. Internal. */
  forget(f: HandleFile): void {
    this.#idle.delete(f);
    const same = this.#byPath.get(f.key);
    same?.delete(f);
    if (same?.size === 0) this.#byPath.delete(f.key);
  }

  /** Closes the least recently used idle file that can be opened again as it is; false if none. */
  #evictIdle(): boolean {
    for (const f of this.#idle) {
      if (f.unlinked || f.dirty) continue;
      this.#idle.delete(f);
      f.dropHandle();
      this.stats.evictions++;
      return true;
    }
    return false;
  }

  #dirtyIdle(): HandleFile | null {
    for (const f of this.#idle) if (!f.unlinked && f.dirty) return f;
    return null;
  }

  #unlinked(path: string): void {
    const gone = this.#byPath.get(path);
    if (gone === undefined) return;
    this.#byPath.delete(path);
    for (const f of gone) f.unlinked = true;
  }

  /** Opens an existing file on the disk underneath, for a reopen. Internal. */
  openUnder(path: string): Promise<File> {
    this.stats.reopens++;
    return this.#disk.open(path);
  }
}

/**
 * A file of a `FileHandles`: a handle that may be closed while idle and is opened again on the
 * next operation. Operations reach the underlying handle in call order, as the File contract's
 * one-handle semantics need (a sync after a write covers it).
 */
class HandleFile implements File {
  /** Where the file is now (it follows renames), and that path normalised. */
  path: string;
  key: string;
  /** Removed or replaced under its handle: it cannot be opened again, so it keeps the handle. */
  unlinked = false;
  readonly #handles: FileHandles;
  #file: File | null;
  /** The reopen in progress; operations that arrive meanwhile queue behind it in order. */
  #opening: Promise<File> | null = null;
  /** Operations in progress: while any is, the handle stays open. */
  #pins = 0;
  /** Writes and truncations started, and how many of them a successful sync covered. */
  #writes = 0;
  #syncedWrites = 0;
  /** A sync done to close the handle failed: the next `sync()` must say so (data may be lost). */
  #lostSync: Error | null = null;
  #closed = false;

  constructor(handles: FileHandles, at: { path: string; key: string }, file: File) {
    this.#handles = handles;
    this.path = at.path;
    this.key = at.key;
    this.#file = file;
  }

  /** Holds writes no successful sync has covered yet. */
  get dirty(): boolean {
    return this.#writes !== this.#syncedWrites;
  }

  readAt(pos: number, buf: Uint8Array): Promise<number> {
    return this.#run((f) => f.readAt(pos, buf));
  }

  writeAt(pos: number, bytes: Uint8Array): Promise<number> {
    return this.#run((f) => f.writeAt(pos, bytes), true);
  }

  size(): Promise<number> {
    return this.#run((f) => f.size());
  }

  truncate(len: number): Promise<void> {
    return this.#run((f) => f.truncate(len), true);
  }

  async sync(): Promise<void> {
    const upTo = this.#writes;
    // A file without a handle has no unsynced writes (they are synced before it is closed).
    if (this.#closed || this.#file !== null || this.#opening !== null || this.dirty) {
      await this.#run((f) => f.sync());
    }
    const lost = this.#lostSync;
    if (lost !== null) {
      this.#lostSync = null;
      throw lost;
    }
    if (upTo > this.#syncedWrites) this.#syncedWrites = upTo;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#handles.forget(this);
    // Operations in progress finish first; the last one out closes the handle.
    if (this.#pins === 0 && this.#file !== null) this.dropHandle();
  }

  /** Syncs unsynced writes so the handle may be closed; a failure waits for the next `sync()`. */
  async syncToClose(): Promise<void> {
    const upTo = this.#writes;
    try {
      await this.#run((f) => f.sync());
    } catch (err) {
      this.#lostSync = new IoFailure(
        `Cannot sync ${this.path} (to close its idle handle): ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (upTo > this.#syncedWrites) this.#syncedWrites = upTo;
  }

  /** Closes the handle and gives it back to the budget. */
  dropHandle(): void {
    const file = this.#file;
    if (file === null) return;
    this.#file = null;
    file.close();
    this.#handles.release();
  }

  #run<T>(body: (f: File) => Promise<T>, writes = false): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new Closed(`Cannot use ${this.path}: file is closed`));
    }
    if (writes) this.#writes++;
    if (this.#pins++ === 0) this.#handles.busy(this);
    let result: Promise<T>;
    if (this.#file !== null && this.#opening === null) {
      try {
        result = body(this.#file);
      } catch (err) {
        result = Promise.reject(err);
      }
    } else {
      this.#opening ??= this.#reopen();
      result = this.#opening.then(body);
    }
    return result.finally(() => this.#unpin());
  }

  #unpin(): void {
    if (--this.#pins > 0 || this.#file === null) return;
    if (this.#closed) this.dropHandle();
    else this.#handles.idle(this);
  }

  #reopen(): Promise<File> {
    if (this.unlinked) {
      // Its name now leads to another file, or nowhere: the one it was is gone with its handle.
      return Promise.reject(
        new NotFound(`Cannot reopen ${this.path}: it was removed or replaced while closed`),
      );
    }
    const opening = this.#handles.openHandle(`Cannot reopen ${this.path}`, async () => {
      const path = this.path;
      try {
        return await this.#handles.openUnder(path);
      } catch (err) {
        // Renamed while it was being opened: open it where it is now.
        if (err instanceof NotFound && this.path !== path) {
          return await this.#handles.openUnder(this.path);
        }
        throw err;
      }
    }).then((file) => {
      this.#file = file;
      return file;
    });
    // Registered first, so it runs before the operations queued on `opening`: those then reach
    // the handle before any operation that arrives later.
    const clear = () => {
      if (this.#opening === opening) this.#opening = null;
    };
    opening.then(clear, clear);
    return opening;
  }
}

function normalize(path: string): string {
  return path.split("/").filter((p) => p !== "" && p !== ".").join("/");
}
