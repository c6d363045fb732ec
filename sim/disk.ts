// The simulated disk: a page cache in front of durable storage. Writes are visible at once and
// durable only after sync; directory changes only after syncDir. A power loss keeps, drops, tears
// (at 512-byte sectors) or corrupts each unsynced write; reads can flip bits or fail; a failed sync
// loses the dirty data; the disk can fill up; operations take (sometimes long) virtual time.

import type { Disk, File, OpenOptions } from "../src/io/types.ts";
import { AlreadyExists, Closed, IoFailure, NoSpace, NotFound } from "../src/io/errors.ts";
import type { SeededRandom } from "../src/io/prng.ts";
import type { World } from "./world.ts";
import type { SimNode } from "./node.ts";

/** The sector size: the unit a torn write keeps or loses. */
export const SECTOR_BYTES = 512;

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
}

type Entry = { kind: "dir" } | { kind: "file"; inode: Inode };
type DirOp =
  | { op: "link"; path: string; entry: Entry }
  | { op: "unlink"; path: string }
  | { op: "rename"; from: string; path: string; entry: Entry };
type DataOp = { op: "write"; pos: number; bytes: Uint8Array } | { op: "truncate"; len: number };

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
  /** Data operations since the last successful sync, in order. */
  pending: DataOp[] = [];
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
  };
  readonly #world: World;
  readonly #random: SeededRandom;
  #live = new Map<string, Entry>([["", { kind: "dir" }]]);
  #durable = new Map<string, Entry>([["", { kind: "dir" }]]);
  #journal = new Map<string, DirOp[]>();
  #usedBytes = 0;

  constructor(world: World, random: SeededRandom, faults: DiskFaults) {
    this.#world = world;
    this.#random = random;
    this.faults = faults;
  }

  /** The Disk a node's code sees; every operation completes in an event of that node. */
  viewFor(node: SimNode): Disk {
    return {
      open: (path, opts) => this.#op(node, () => this.#open(node, path, opts)),
      rename: (from, to) => this.#op(node, () => this.#rename(from, to)),
      remove: (path) => this.#op(node, () => this.#remove(path)),
      list: (dir) => this.#op(node, () => this.#list(dir)),
      mkdir: (dir) => this.#op(node, () => this.#mkdir(dir)),
      syncDir: (dir) => this.#op(node, () => this.#syncDir(dir), this.faults.syncLatencyMs),
    };
  }

  /**
   * A power loss: each directory keeps a random prefix of its unsynced changes; each unsynced
   * data write is kept, dropped, torn or corrupted by the crash weights; the page cache is gone.
   */
  crash(): void {
    this.stats.crashes++;
    for (const ops of this.#journal.values()) {
      const kept = this.#random.int(0, ops.length + 1);
      this.stats.dirOpsLost += ops.length - kept;
      for (const op of ops.slice(0, kept)) applyDirOp(this.#durable, op);
    }
    this.#journal.clear();
    pruneOrphans(this.#durable);
    let pending = 0;
    const seen = new Set<Inode>();
    for (const entry of this.#durable.values()) {
      if (entry.kind !== "file" || seen.has(entry.inode)) continue;
      seen.add(entry.inode);
      pending += entry.inode.pending.length;
      this.#settleAtCrash(entry.inode);
    }
    if (pending > 0) this.stats.crashesWithPending++;
    this.#live = new Map(this.#durable);
    this.#usedBytes = 0;
    for (const inode of seen) this.#usedBytes += inode.live.size;
  }

  /** The durable bytes of a file (what a power loss now would leave if syncs are all done). */
  durableBytes(path: string): Uint8Array | null {
    const e = this.#durable.get(normalizePath(path));
    return e?.kind === "file" ? e.inode.durable.buf.slice(0, e.inode.durable.size) : null;
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

  /** Runs `fn` after the operation's latency, in an event of `node`. */
  #op<T>(node: SimNode, fn: () => T, base = this.faults.opLatencyMs): Promise<T> {
    return new Promise((resolve, reject) => {
      this.#world.schedule(this.#latency(base), () => {
        try {
          resolve(fn());
        } catch (err) {
          reject(err);
        }
      }, { owner: node, tag: TAG_DISK });
    });
  }

  #journalOp(op: DirOp): void {
    const dir = parentOf(op.path);
    let ops = this.#journal.get(dir);
    if (ops === undefined) this.#journal.set(dir, ops = []);
    ops.push(op);
  }

  #dirMustExist(dir: string, what: string): void {
    if (this.#live.get(dir)?.kind !== "dir") {
      throw new NotFound(`Cannot ${what}: directory ${dir || "/"} not found`);
    }
  }

  #open(node: SimNode, rawPath: string, opts: OpenOptions = {}): File {
    const path = normalizePath(rawPath);
    const e = this.#live.get(path);
    if (e?.kind === "dir") throw new IoFailure(`Cannot open ${rawPath}: is a directory`);
    if (e !== undefined) {
      if (opts.createNew) throw new AlreadyExists(`Cannot create ${rawPath}: already exists`);
      return new SimFile(this, node, e.inode, rawPath);
    }
    if (!opts.create && !opts.createNew) throw new NotFound(`Cannot open ${rawPath}: not found`);
    this.#dirMustExist(parentOf(path), `create ${rawPath}`);
    const entry: Entry = { kind: "file", inode: new Inode() };
    this.#live.set(path, entry);
    this.#journalOp({ op: "link", path, entry });
    return new SimFile(this, node, entry.inode, rawPath);
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
    if (replaced?.kind === "file") this.#usedBytes -= sharedSize(this.#live, replaced.inode, to);
    this.#live.delete(from);
    this.#live.set(to, e);
    // One journal record, in the target's directory: a rename is atomic across a crash.
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
    } else {
      this.#usedBytes -= sharedSize(this.#live, e.inode, path);
    }
    this.#live.delete(path);
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
    const ops = this.#journal.get(dir);
    if (ops === undefined) return;
    for (const op of ops) applyDirOp(this.#durable, op);
    this.#journal.delete(dir);
  }

  /** Called by SimFile in its operation's event. */
  fileOp<T>(file: SimFile, fn: (inode: Inode) => T, base = this.faults.opLatencyMs): Promise<T> {
    if (file.closed) return Promise.reject(new Closed(`Cannot use ${file.path}: file is closed`));
    return this.#op(file.node, () => {
      if (file.closed) throw new Closed(`Cannot use ${file.path}: file is closed`);
      return fn(file.inode);
    }, base);
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

  /** Applies a write or truncate to the page cache and remembers it until the next sync. */
  mutate(inode: Inode, path: string, op: DataOp): void {
    const newSize = op.op === "write"
      ? Math.max(inode.live.size, op.pos + op.bytes.length)
      : op.len;
    const growth = newSize - inode.live.size;
    if (growth > 0 && (this.faults.full || this.#usedBytes + growth > this.faults.capacityBytes)) {
      this.stats.noSpace++;
      throw new NoSpace(`Cannot write ${path}: no space left on device`);
    }
    this.#usedBytes += growth;
    inode.live.apply(op);
    inode.pending.push(op);
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

/** Bytes to free when a name goes away: only if no other name links the same inode. */
function sharedSize(ns: Map<string, Entry>, inode: Inode, except: string): number {
  for (const [p, e] of ns) if (p !== except && e.kind === "file" && e.inode === inode) return 0;
  return inode.live.size;
}

function applyDirOp(ns: Map<string, Entry>, op: DirOp): void {
  if (op.op === "unlink") {
    ns.delete(op.path);
    return;
  }
  if (op.op === "rename") ns.delete(op.from);
  ns.set(op.path, op.entry);
}

/** Drops entries whose parent directory did not survive (what fsck would find orphaned). */
function pruneOrphans(ns: Map<string, Entry>): void {
  const paths = [...ns.keys()].sort((a, b) => a.split("/").length - b.split("/").length);
  for (const p of paths) {
    if (p !== "" && ns.get(parentOf(p))?.kind !== "dir") ns.delete(p);
  }
}

/** A handle on a simulated file. */
export class SimFile implements File {
  readonly node: SimNode;
  readonly inode: Inode;
  readonly path: string;
  closed = false;
  readonly #disk: SimDisk;

  constructor(disk: SimDisk, node: SimNode, inode: Inode, path: string) {
    this.#disk = disk;
    this.node = node;
    this.inode = inode;
    this.path = path;
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
    this.closed = true;
  }
}
