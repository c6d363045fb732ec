// The simulated disk: a page cache in front of durable storage. Writes are visible at once and
// durable only after sync; directory changes only after syncDir. A power loss keeps, drops, tears
// (at 512-byte sectors) or corrupts each unsynced write; reads can flip bits or fail; a failed sync
// loses the dirty data; the disk can fill up (and a write that runs out of space may leave a
// prefix); operations take (sometimes long) virtual time.

import type { Disk, File, FileLock, OpenOptions } from "../src/io/types.ts";
import {
  AlreadyExists,
  Closed,
  IoFailure,
  Locked,
  NoSpace,
  NotFound,
  TooManyOpenFiles,
} from "../src/io/errors.ts";
import type { SeededRandom } from "../src/io/prng.ts";
import type { World } from "./world.ts";
import { never, type SimNode } from "./node.ts";

/** The sector size: the unit a torn write keeps or loses. */
export const SECTOR_BYTES = 512;
/**
 * Unsynced data operations an inode keeps; past it the oldest is written back (made durable), as
 * a kernel's background writeback would, so code that never syncs cannot grow it without bound.
 */
export const INODE_PENDING_OPS_MAX = 1024;
/**
 * Unsynced changes a directory's journal keeps; past it the oldest is committed, as a journaling
 * filesystem's periodic commit would, so code that never calls syncDir cannot grow it unbounded.
 */
export const DIR_JOURNAL_OPS_MAX = 1024;

/** What happens to one unsynced write at a power loss, as relative weights. */
export interface CrashWeights {
  keep: number;
  drop: number;
  torn: number;
  corrupt: number;
}

/** Disk fault knobs; mutable so the runner can calm the disk for the liveness phase. */
export interface DiskFaults {
  /** Latency of a read, write, truncate or metadata operation, ms. */
  opLatencyMs: number;
  /** Latency of a sync, ms. */
  syncLatencyMs: number;
  /** Probability an operation is slow, and by how much (uniform in [0, slowMs)). */
  slowProb: number;
  slowMs: number;
  /** Probability a read returns data with one bit flipped (the stored data is fine). */
  readFlipProb: number;
  /** Probability a read fails with an I/O error. */
  readErrorProb: number;
  /** Probability a sync fails; its dirty data is then lost. */
  syncFailProb: number;
  /** While true, every write that grows a file fails with NoSpace. */
  full: boolean;
  /** Total bytes the disk holds; growing past it fails with NoSpace. */
  capacityBytes: number;
  /** Fate of unsynced writes at a power loss. */
  crash: CrashWeights;
  /**
   * Handles the process may hold open at once (RLIMIT_NOFILE); one more open fails with
   * TooManyOpenFiles. Unset: no limit.
   */
  handlesMax?: number;
}

/** A well-behaved disk: fast, no faults; a crash drops all unsynced writes. */
export function calmDisk(): DiskFaults {
  return {
    opLatencyMs: 0.02,
    syncLatencyMs: 0.5,
    slowProb: 0,
    slowMs: 0,
    readFlipProb: 0,
    readErrorProb: 0,
    syncFailProb: 0,
    full: false,
    capacityBytes: 1 << 30,
    crash: { keep: 0, drop: 1, torn: 0, corrupt: 0 },
  };
}

/** Counters for reports and "sometimes" checks. */
export interface DiskStats {
  crashes: number;
  /** Power losses that found unsynced writes (a crash landing mid-write). */
  crashesWithPending: number;
  writesKept: number;
  writesDropped: number;
  writesTorn: number;
  writesCorrupted: number;
  /** Directory changes lost because syncDir had not run. */
  dirOpsLost: number;
  syncFailures: number;
  readFlips: number;
  readErrors: number;
  noSpace: number;
  /** Opens refused for want of a handle (faults.handlesMax). */
  tooManyOpenFiles: number;
}

type Entry = { kind: "dir" } | { kind: "file"; inode: Inode };
/**
 * One journaled directory change. `seq` orders all changes of the disk; `dirs` are the journals
 * holding it: one, or two for a rename between directories, which commits as one transaction.
 */
type DirOp =
  & (
    | { op: "link"; path: string; entry: Entry }
    | { op: "unlink"; path: string }
    | { op: "rename"; from: string; path: string; entry: Entry }
  )
  & { seq: number; dirs: string[] };
type DataOp = { op: "write"; pos: number; bytes: Uint8Array } | { op: "truncate"; len: number };
type DirOpBody =
  | { op: "link"; path: string; entry: Entry }
  | { op: "unlink"; path: string }
  | { op: "rename"; from: string; path: string; entry: Entry };

/** File contents that grow as needed; bytes past `size` are always zero. */
class Bytes {
  buf = new Uint8Array(0);
  size = 0;

  clone(): Bytes {
    const b = new Bytes();
    b.buf = this.buf.slice(0, this.size);
    b.size = this.size;
    return b;
  }

  write(pos: number, bytes: Uint8Array): void {
    const end = pos + bytes.length;
    if (end > this.buf.length) {
      const grown = new Uint8Array(Math.max(end, this.buf.length * 2, 64));
      grown.set(this.buf.subarray(0, this.size));
      this.buf = grown;
    }
    this.buf.set(bytes, pos);
    if (end > this.size) this.size = end;
  }

  truncate(len: number): void {
    if (len < this.size) this.buf.fill(0, len, this.size);
    else if (len > this.buf.length) this.write(len, new Uint8Array(0));
    this.size = len;
  }

  apply(op: DataOp): void {
    if (op.op === "write") this.write(op.pos, op.bytes);
    else this.truncate(op.len);
  }
}

class Inode {
  live = new Bytes();
  durable = new Bytes();
  /** Data operations since the last successful sync, in order; at most INODE_PENDING_OPS_MAX. */
  pending: DataOp[] = [];
  /** Names in the live namespace. */
  links = 0;
  /** Open handles. The inode's bytes count as used while it has a name or a handle. */
  handles = 0;
}

const TAG_DISK = 20;

/** Normalises a path: no leading "./" or "/", no trailing "/", no empty parts; root is "". */
export function normalizePath(path: string): string {
  return path.split("/").filter((p) => p !== "" && p !== ".").join("/");
}

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "" : path.slice(0, i);
}

/** One node's disk. It outlives the node's incarnations; `crash()` applies a power loss. */
export class SimDisk {
  readonly faults: DiskFaults;
  readonly stats: DiskStats = {
    crashes: 0,
    crashesWithPending: 0,
    writesKept: 0,
    writesDropped: 0,
    writesTorn: 0,
    writesCorrupted: 0,
    dirOpsLost: 0,
    syncFailures: 0,
    readFlips: 0,
    readErrors: 0,
    noSpace: 0,
    tooManyOpenFiles: 0,
  };
  readonly #world: World;
  readonly #random: SeededRandom;
  #live = new Map<string, Entry>([["", { kind: "dir" }]]);
  #durable = new Map<string, Entry>([["", { kind: "dir" }]]);
  /** Unsynced changes per directory, in `seq` order; at most DIR_JOURNAL_OPS_MAX each. */
  #journal = new Map<string, DirOp[]>();
  #opSeq = 0;
  #usedBytes = 0;
  /** Handles the running process holds open; the kernel closes them when it ends. */
  readonly #open = new Set<SimFile>();
  /** Locked paths and the handle holding each: closing it (or the process ending) releases it. */
  readonly #locks = new Map<string, SimFile>();

  constructor(world: World, random: SeededRandom, faults: DiskFaults) {
    this.#world = world;
    this.#random = random;
    this.faults = faults;
  }

  /**
   * The Disk one incarnation of `node` sees (default: the running one). Every operation completes
   * in an event of that incarnation; once it is gone, its operations never settle.
   */
  viewFor(node: SimNode, incarnation: number = node.incarnation): Disk {
    const op = <T>(fn: () => T, base?: number) => this.#op(node, incarnation, fn, base);
    return {
      open: (path, opts) => op(() => this.#openFile(node, incarnation, path, opts)),
      rename: (from, to) => op(() => this.#rename(from, to)),
      remove: (path) => op(() => this.#remove(path)),
      list: (dir) => op(() => this.#list(dir)),
      mkdir: (dir) => op(() => this.#mkdir(dir)),
      syncDir: (dir) => op(() => this.#syncDir(dir), this.faults.syncLatencyMs),
      lock: (path) => op(() => this.#lock(node, incarnation, path)),
    };
  }

  /** Handles the running process holds open now. */
  get openHandles(): number {
    return this.#open.size;
  }

  /** Bytes charged against capacity: every inode that still has a name or an open handle. */
  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** The process ended: the kernel closes its handles (files unlinked while open are freed). */
  processDown(): void {
    for (const f of this.#open) this.#closeHandle(f);
  }

  /**
   * A power loss: each directory keeps a random prefix of its unsynced changes (a rename between
   * directories survives in both or neither); each unsynced data write is kept, dropped, torn or
   * corrupted by the crash weights; the page cache is gone.
   */
  crash(): void {
    this.stats.crashes++;
    this.processDown();
    for (const dir of [...this.#journal.keys()]) {
      const ops = this.#journal.get(dir);
      if (ops === undefined) continue;
      const kept = this.#random.int(0, ops.length + 1);
      if (kept > 0) this.#commitThrough(dir, (ops[kept - 1] as DirOp).seq);
    }
    const lost = new Set<DirOp>();
    for (const ops of this.#journal.values()) for (const op of ops) lost.add(op);
    this.stats.dirOpsLost += lost.size;
    this.#journal.clear();
    pruneOrphans(this.#durable);
    let pending = 0;
    const seen = new Set<Inode>();
    for (const entry of this.#durable.values()) {
      if (entry.kind !== "file") continue;
      if (seen.has(entry.inode)) {
        entry.inode.links++;
        continue;
      }
      seen.add(entry.inode);
      pending += entry.inode.pending.length;
      this.#settleAtCrash(entry.inode);
      entry.inode.links = 1;
      entry.inode.handles = 0;
    }
    if (pending > 0) this.stats.crashesWithPending++;
    this.#live = new Map(this.#durable);
    this.#usedBytes = 0;
    for (const inode of seen) this.#usedBytes += inode.live.size;
  }

  /** A copy of a file's durable bytes: what a power loss now would leave, unsynced writes aside. */
  durableBytes(path: string): Uint8Array | null {
    return this.durableView(path)?.slice() ?? null;
  }

  /**
   * `durableBytes` without the copy, for checkers that look often: read-only, and valid only until
   * the simulation runs again.
   */
  durableView(path: string): Uint8Array | null {
    const e = this.#durable.get(normalizePath(path));
    return e?.kind === "file" ? e.inode.durable.buf.subarray(0, e.inode.durable.size) : null;
  }

  /** Flips one stored bit, both cached and durable: corruption at rest. */
  corruptAtRest(path: string, pos: number): void {
    const e = this.#live.get(normalizePath(path));
    if (e?.kind !== "file") throw new NotFound(`Cannot corrupt ${path}: not found`);
    for (const b of [e.inode.live, e.inode.durable]) {
      if (pos < b.size) b.buf[pos] = (b.buf[pos] as number) ^ 0x10;
    }
  }

  #settleAtCrash(inode: Inode): void {
    const w = this.faults.crash;
    const total = w.keep + w.drop + w.torn + w.corrupt;
    for (const op of inode.pending) {
      let roll = this.#random.float() * total;
      if (op.op === "truncate") {
        if (roll < w.keep + w.torn + w.corrupt) inode.durable.apply(op);
        continue;
      }
      if ((roll -= w.keep) < 0) {
        inode.durable.apply(op);
        this.stats.writesKept++;
      } else if ((roll -= w.drop) < 0) {
        this.stats.writesDropped++;
      } else if ((roll -= w.torn) < 0) {
        this.#tear(inode.durable, op.pos, op.bytes);
        this.stats.writesTorn++;
      } else {
        const mangled = op.bytes.slice();
        const at = this.#random.int(0, mangled.length || 1);
        if (mangled.length > 0) {
          mangled[at] = (mangled[at] as number) ^ (1 + this.#random.int(0, 255));
        }
        inode.durable.apply({ op: "write", pos: op.pos, bytes: mangled });
        this.stats.writesCorrupted++;
      }
    }
    inode.pending = [];
    inode.live = inode.durable.clone();
  }

  /** Persists a random subset of the sectors a write touched (a prefix, or any of them). */
  #tear(target: Bytes, pos: number, bytes: Uint8Array): void {
    const prefixOnly = this.#random.chance(0.5);
    let cutAt = prefixOnly ? this.#random.int(0, bytes.length + 1) : bytes.length;
    let off = 0;
    while (off < bytes.length) {
      const sectorEnd = (Math.floor((pos + off) / SECTOR_BYTES) + 1) * SECTOR_BYTES - pos;
      const end = Math.min(sectorEnd, bytes.length);
      const keep = prefixOnly ? end <= cutAt : this.#random.chance(0.5);
      if (keep) target.write(pos + off, bytes.subarray(off, end));
      else if (prefixOnly) cutAt = -1;
      off = end;
    }
  }

  #latency(base: number): number {
    const f = this.faults;
    return base + (this.#random.chance(f.slowProb) ? this.#random.float() * f.slowMs : 0);
  }

  /** Runs `fn` after the operation's latency, in an event of `node`'s `incarnation`. */
  #op<T>(
    node: SimNode,
    incarnation: number,
    fn: () => T,
    base = this.faults.opLatencyMs,
  ): Promise<T> {
    if (!node.isCurrent(incarnation)) return never();
    return new Promise((resolve, reject) => {
      this.#world.schedule(this.#latency(base), () => {
        try {
          resolve(fn());
        } catch (err) {
          reject(err);
        }
      }, { owner: node, incarnation, tag: TAG_DISK });
    });
  }

  /** Journals a change in its directory, or in both directories of a rename between two. */
  #journalOp(change: DirOpBody): void {
    const dirs = [parentOf(change.path)];
    if (change.op === "rename" && parentOf(change.from) !== dirs[0]) {
      dirs.push(parentOf(change.from));
    }
    const op = { ...change, seq: this.#opSeq++, dirs } as DirOp;
    for (const dir of dirs) {
      let ops = this.#journal.get(dir);
      if (ops === undefined) this.#journal.set(dir, ops = []);
      ops.push(op);
      if (ops.length > DIR_JOURNAL_OPS_MAX) this.#commitThrough(dir, (ops[0] as DirOp).seq);
    }
  }

  /**
   * Makes durable, in order, the changes journaled for `dir` up to sequence number `seqMax`. A
   * rename between directories is one transaction: before it, the other directory's earlier
   * changes are committed too; then it is applied once and leaves both journals.
   */
  #commitThrough(dir: string, seqMax: number): void {
    const ops = this.#journal.get(dir);
    if (ops === undefined) return;
    while (ops.length > 0 && (ops[0] as DirOp).seq <= seqMax) {
      const op = ops[0] as DirOp;
      for (const other of op.dirs) if (other !== dir) this.#commitThrough(other, op.seq - 1);
      applyDirOp(this.#durable, op);
      for (const d of op.dirs) {
        const list = this.#journal.get(d) as DirOp[];
        if (list[0] !== op) throw new Error(`Journal of ${d || "/"} out of order at #${op.seq}`);
        list.shift();
        if (list.length === 0) this.#journal.delete(d);
      }
    }
  }

  #dirMustExist(dir: string, what: string): void {
    if (this.#live.get(dir)?.kind !== "dir") {
      throw new NotFound(`Cannot ${what}: directory ${dir || "/"} not found`);
    }
  }

  #openFile(node: SimNode, incarnation: number, rawPath: string, opts: OpenOptions = {}): SimFile {
    const path = normalizePath(rawPath);
    const e = this.#live.get(path);
    if (e?.kind === "dir") throw new IoFailure(`Cannot open ${rawPath}: is a directory`);
    if (this.#open.size >= (this.faults.handlesMax ?? Infinity)) {
      this.stats.tooManyOpenFiles++;
      throw new TooManyOpenFiles(`Cannot open ${rawPath}: too many open files`);
    }
    let inode: Inode;
    if (e !== undefined) {
      if (opts.createNew) throw new AlreadyExists(`Cannot create ${rawPath}: already exists`);
      inode = e.inode;
    } else {
      if (!opts.create && !opts.createNew) throw new NotFound(`Cannot open ${rawPath}: not found`);
      this.#dirMustExist(parentOf(path), `create ${rawPath}`);
      const entry: Entry = { kind: "file", inode: new Inode() };
      entry.inode.links = 1;
      this.#live.set(path, entry);
      this.#journalOp({ op: "link", path, entry });
      inode = entry.inode;
    }
    const file = new SimFile(this, { node, incarnation, inode, path: rawPath });
    inode.handles++;
    this.#open.add(file);
    return file;
  }

  /**
   * flock on a simulated machine: the lock belongs to one handle, so a second `lock` of the path
   * fails even from the same incarnation, and the kernel's closing of a dead process's handles
   * releases it. The holder line names the node and incarnation.
   */
  #lock(node: SimNode, incarnation: number, rawPath: string): FileLock {
    const path = normalizePath(rawPath);
    const file = this.#openFile(node, incarnation, rawPath, { create: true });
    if (this.#locks.has(path)) {
      const inode = file.inode;
      const text = new TextDecoder().decode(inode.live.buf.subarray(0, inode.live.size));
      const holder = text.split("\n")[0]!.trim() || "another process";
      this.#closeHandle(file);
      throw new Locked(`Cannot lock ${rawPath}: held by ${holder}`, holder);
    }
    const line = new TextEncoder().encode(`node ${node.name} incarnation ${incarnation}\n`);
    try {
      this.mutate(file.inode, rawPath, { op: "write", pos: 0, bytes: line });
      this.mutate(file.inode, rawPath, { op: "truncate", len: line.length });
    } catch (err) {
      // As on a real disk: a full one leaves the holder unwritten, the lock is still taken.
      if (!(err instanceof NoSpace)) {
        this.#closeHandle(file);
        throw err;
      }
    }
    this.#locks.set(path, file);
    return { release: () => file.close() };
  }

  /** Releases a handle; the inode's space is freed once it has no name and no handle left. */
  #closeHandle(file: SimFile): void {
    if (!this.#open.delete(file)) return;
    for (const [path, holder] of this.#locks) if (holder === file) this.#locks.delete(path);
    file.closed = true;
    file.inode.handles--;
    this.#freeIfUnused(file.inode);
  }

  #unlinkLive(inode: Inode): void {
    inode.links--;
    this.#freeIfUnused(inode);
  }

  #freeIfUnused(inode: Inode): void {
    if (inode.links === 0 && inode.handles === 0) this.#usedBytes -= inode.live.size;
  }

  #rename(rawFrom: string, rawTo: string): void {
    const from = normalizePath(rawFrom);
    const to = normalizePath(rawTo);
    const e = this.#live.get(from);
    if (e === undefined) throw new NotFound(`Cannot rename ${rawFrom}: not found`);
    if (e.kind === "dir") throw new IoFailure(`Cannot rename ${rawFrom}: directories stay put`);
    this.#dirMustExist(parentOf(to), `rename to ${rawTo}`);
    if (this.#live.get(to)?.kind === "dir") {
      throw new IoFailure(`Cannot rename to ${rawTo}: is a directory`);
    }
    if (from === to) return;
    const replaced = this.#live.get(to);
    this.#live.delete(from);
    this.#live.set(to, e);
    if (replaced?.kind === "file") this.#unlinkLive(replaced.inode);
    // One journal record (shared by both directories' journals): atomic across a crash.
    this.#journalOp({ op: "rename", from, path: to, entry: e });
  }

  #remove(rawPath: string): void {
    const path = normalizePath(rawPath);
    const e = this.#live.get(path);
    if (e === undefined || path === "") throw new NotFound(`Cannot remove ${rawPath}: not found`);
    if (e.kind === "dir") {
      const prefix = path + "/";
      for (const p of this.#live.keys()) {
        if (p.startsWith(prefix)) throw new IoFailure(`Cannot remove ${rawPath}: not empty`);
      }
    }
    this.#live.delete(path);
    if (e.kind === "file") this.#unlinkLive(e.inode);
    this.#journalOp({ op: "unlink", path });
  }

  #list(rawDir: string): string[] {
    const dir = normalizePath(rawDir);
    this.#dirMustExist(dir, `list ${rawDir}`);
    const names: string[] = [];
    for (const p of this.#live.keys()) {
      if (p !== "" && parentOf(p) === dir) names.push(p.slice(dir === "" ? 0 : dir.length + 1));
    }
    return names.sort();
  }

  #mkdir(rawDir: string): void {
    const dir = normalizePath(rawDir);
    if (dir === "") return;
    const parts = dir.split("/");
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      const e = this.#live.get(p);
      if (e?.kind === "file") throw new AlreadyExists(`Cannot mkdir ${rawDir}: ${p} is a file`);
      if (e !== undefined) continue;
      const entry: Entry = { kind: "dir" };
      this.#live.set(p, entry);
      this.#journalOp({ op: "link", path: p, entry });
    }
  }

  #syncDir(rawDir: string): void {
    const dir = normalizePath(rawDir);
    this.#dirMustExist(dir, `sync ${rawDir}`);
    this.#commitThrough(dir, Infinity);
  }

  /** Called by SimFile: runs `fn` in its operation's event, if the handle is still open then. */
  fileOp<T>(file: SimFile, fn: (inode: Inode) => T, base = this.faults.opLatencyMs): Promise<T> {
    if (!file.node.isCurrent(file.incarnation)) return never();
    if (file.closed) return Promise.reject(new Closed(`Cannot use ${file.path}: file is closed`));
    return this.#op(file.node, file.incarnation, () => {
      if (file.closed) throw new Closed(`Cannot use ${file.path}: file is closed`);
      return fn(file.inode);
    }, base);
  }

  /** Called by SimFile.close. */
  closeFile(file: SimFile): void {
    this.#closeHandle(file);
  }

  /** Reads with the read fault model applied. */
  read(inode: Inode, path: string, pos: number, buf: Uint8Array): number {
    if (this.#random.chance(this.faults.readErrorProb)) {
      this.stats.readErrors++;
      throw new IoFailure(`Cannot read ${path} at ${pos}: input/output error`);
    }
    const n = Math.max(0, Math.min(buf.length, inode.live.size - pos));
    if (n > 0) buf.set(inode.live.buf.subarray(pos, pos + n));
    if (n > 0 && this.#random.chance(this.faults.readFlipProb)) {
      const at = this.#random.int(0, n);
      buf[at] = (buf[at] as number) ^ (1 << this.#random.int(0, 8));
      this.stats.readFlips++;
    }
    return n;
  }

  /**
   * Applies a write or truncate to the page cache and remembers it until the next sync. A write
   * that needs more space than is left writes the prefix that fits, then fails with NoSpace.
   */
  mutate(inode: Inode, path: string, op: DataOp): void {
    const size = inode.live.size;
    const newSize = op.op === "write" ? Math.max(size, op.pos + op.bytes.length) : op.len;
    const growth = newSize - size;
    if (growth > 0 && (this.faults.full || this.#usedBytes + growth > this.faults.capacityBytes)) {
      this.stats.noSpace++;
      if (op.op === "write") {
        // The space runs out part way: some free bytes remained (a random few, when "full").
        const free = this.faults.full
          ? this.#random.int(0, growth)
          : Math.max(0, this.faults.capacityBytes - this.#usedBytes);
        const fits = Math.min(op.bytes.length, Math.max(0, size + free - op.pos));
        if (fits > 0) {
          this.#apply(inode, { op: "write", pos: op.pos, bytes: op.bytes.slice(0, fits) });
        }
      }
      throw new NoSpace(`Cannot write ${path}: no space left on device`);
    }
    this.#apply(inode, op);
  }

  #apply(inode: Inode, op: DataOp): void {
    const before = inode.live.size;
    inode.live.apply(op);
    this.#usedBytes += inode.live.size - before;
    inode.pending.push(op);
    if (inode.pending.length > INODE_PENDING_OPS_MAX) {
      inode.durable.apply(inode.pending.shift() as DataOp);
    }
  }

  /** fdatasync: pending operations become durable, or on failure are lost for good. */
  sync(inode: Inode, path: string): void {
    if (this.#random.chance(this.faults.syncFailProb)) {
      this.stats.syncFailures++;
      inode.pending = [];
      throw new IoFailure(`Cannot sync ${path}: input/output error; unsynced data is lost`);
    }
    for (const op of inode.pending) inode.durable.apply(op);
    inode.pending = [];
  }
}

/** Replays one change on a namespace. A rename removes `from` only if it still names the entry. */
function applyDirOp(ns: Map<string, Entry>, op: DirOp): void {
  if (op.op === "unlink") {
    ns.delete(op.path);
    return;
  }
  if (op.op === "rename" && ns.get(op.from) === op.entry) ns.delete(op.from);
  ns.set(op.path, op.entry);
}

/** Drops entries whose parent directory did not survive (what fsck would find orphaned). */
function pruneOrphans(ns: Map<string, Entry>): void {
  const paths = [...ns.keys()].sort((a, b) => a.split("/").length - b.split("/").length);
  for (const p of paths) {
    if (p !== "" && ns.get(parentOf(p))?.kind !== "dir") ns.delete(p);
  }
}

/** A handle on a simulated file, owned by the incarnation that opened it. */
export class SimFile implements File {
  readonly node: SimNode;
  readonly incarnation: number;
  readonly inode: Inode;
  readonly path: string;
  closed = false;
  readonly #disk: SimDisk;

  constructor(
    disk: SimDisk,
    opts: { node: SimNode; incarnation: number; inode: Inode; path: string },
  ) {
    this.#disk = disk;
    this.node = opts.node;
    this.incarnation = opts.incarnation;
    this.inode = opts.inode;
    this.path = opts.path;
  }

  readAt(pos: number, buf: Uint8Array): Promise<number> {
    return this.#disk.fileOp(this, (i) => this.#disk.read(i, this.path, pos, buf));
  }

  writeAt(pos: number, bytes: Uint8Array): Promise<number> {
    const copy = bytes.slice();
    return this.#disk.fileOp(this, (i) => {
      this.#disk.mutate(i, this.path, { op: "write", pos, bytes: copy });
      return copy.length;
    });
  }

  sync(): Promise<void> {
    return this.#disk.fileOp(
      this,
      (i) => this.#disk.sync(i, this.path),
      this.#disk.faults.syncLatencyMs,
    );
  }

  size(): Promise<number> {
    return this.#disk.fileOp(this, (i) => i.live.size);
  }

  truncate(len: number): Promise<void> {
    return this.#disk.fileOp(this, (i) => this.#disk.mutate(i, this.path, { op: "truncate", len }));
  }

  close(): void {
    // A dead incarnation's handles were closed by its kernel.
    if (!this.node.isCurrent(this.incarnation)) return;
    this.closed = true;
    this.#disk.closeFile(this);
  }
}
