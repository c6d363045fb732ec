// The file-backed Log: a directory of segments, appended by one writer with group commit (every
// batch waiting when a write starts shares one write and, under fsync "always", one sync), read
// through sparse indexes with every batch's checksum verified before it is served, recovered on
// open (torn tail truncated, indexes rebuilt), and trimmed by time and size retention.

import type { Env, File } from "../io/types.ts";
import { NoSpace, NotFound, TooManyOpenFiles } from "../io/errors.ts";
import { mkdirDurable, readFile, writeFileAtomic } from "../io/util.ts";
import { crc32c } from "../protocol/crc32c.ts";
import {
  BATCH_HEADER_BYTES,
  BATCH_MAGIC,
  type BatchHeader,
  readBatchHeader,
  setBaseOffset,
} from "../protocol/batch.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { assert } from "../util/assert.ts";
import { readChecked, writeChecked } from "./checked_file.ts";
import {
  type AppendResult,
  type Log,
  type LogDamage,
  type LogRepair,
  OffsetInsideBatch,
  OffsetOutOfRange,
  type ReadLimits,
  type ReadResult,
} from "./log.ts";
import {
  cleanShutdownFile,
  INDEX_FILE_KINDS,
  isTmpName,
  parseSegmentName,
  rewindFile,
  SEGMENT_FILE_KINDS,
  segmentCopyFile,
  segmentFile,
  type SegmentFileKind,
  segmentName,
} from "./layout.ts";
import {
  readVerifiedBatch,
  type ScanResult,
  scanSegment,
  type Segment,
  SegmentIndex,
} from "./segment.ts";

/** When an append counts as done. */
export type FsyncPolicy =
  | { kind: "always" }
  | { kind: "interval"; ms: number }
  | { kind: "never" };

/** Parses "always", "never" or "interval:<ms>"; null if it is none of them. */
export function parseFsyncPolicy(s: string): FsyncPolicy | null {
  if (s === "always" || s === "never") return { kind: s };
  const m = /^interval:(\d+)$/.exec(s);
  if (m === null) return null;
  const ms = Number(m[1]);
  return ms >= 1 && ms <= 3_600_000 ? { kind: "interval", ms } : null;
}

/** Options of a file log. */
export interface FileLogOptions {
  /** The partition's directory. */
  dir: string;
  /** The topic and partition the log holds, for messages that tell an operator what to do. */
  partition?: { topic: string; id: number };
  /** A replica's log, which its replica repairs from its peers: damage reports say so. */
  repairedByPeers?: boolean;
  fsync: FsyncPolicy;
  /** Roll to a new segment past this size. */
  segmentBytes: number;
  /** Bytes of the newest batches kept in memory for readers at the end (default 64 KiB; 0: none). */
  tailCacheBytes?: number;
  /** Roll to a new segment once the active one is this old (ms). */
  segmentMs: number;
  /** Bytes between two offset index entries. */
  indexIntervalBytes: number;
  /** Keep at most this many bytes (whole segments are deleted); -1: no limit. */
  retentionBytes: number;
  /** Keep batches at most this old (ms, by their max timestamp); -1: no limit. */
  retentionMs: number;
  /** Storage can no longer be trusted (a failed fsync): the process must stop. */
  onFatal(reason: string): void;
  /** Loud reports: corruption found, tails truncated; "error" for damage that stops serving. */
  onReport?(msg: string, level?: "warn" | "error"): void;
  /** After each successful fsync: how long it took and how many batches it made durable. */
  onSync?(seconds: number, batches: number): void;
}

/** Counters of a file log, for metrics and benchmarks. */
export interface FileLogStats {
  syncs: number;
  /** Batches made durable by those syncs (batches per sync = group commit at work). */
  batchesSynced: number;
  writes: number;
  segmentsRolled: number;
  segmentsDeleted: number;
  /** Bytes cut off torn tails during recovery. */
  bytesTruncated: number;
  /** Batches that failed their checksum on read and were refused. */
  corruptReads: number;
  /** Reads served from the newest batches kept in memory, without a file read. */
  tailReads: number;
}

/** Bytes written by one write at most; more waiting batches go in the next. */
const WRITE_GROUP_BYTES_MAX = 8 * 1024 * 1024;
/**
 * Bytes of the newest batches a log keeps in memory by default, as written, for readers at its
 * end: live subscribers read what was just appended without a file read each (10,000 subscribers
 * on one partition made 10,000 file reads of every message). Per log; a write group bigger than
 * this is not kept.
 */
export const TAIL_CACHE_BYTES_DEFAULT = 64 * 1024;
/** Read end points remembered for readers that go on from them (about one per subscriber). */
const RESUME_POINTS_MAX = 256;
/** How long a fault point slows a step down at most, ms (simulation only). */
const SLOW_STEP_MS_MAX = 20;
/** Reads of a batch that fails its checksum before it counts as corrupt. */
const REREADS = 2;
/**
 * Reads of a batch that fails its checks before a scan stops there. A scan's verdict truncates a
 * tail or marks the log damaged for good, so it must not be a few unlucky reads (a read can flip a
 * bit or fail while the disk holds the batch intact); the re-reads cost nothing on a good batch.
 */
const SCAN_REREADS = 31;
/** Bytes copied per step when recovery rewrites the active segment into a fresh file. */
const RECOVERY_COPY_BYTES = 1024 * 1024;
/** How long a deleted segment's file stays open for readers already using it. */
const DELETED_SEGMENT_GRACE_MS = 10_000;

interface Pending {
  batch: Uint8Array;
  header: BatchHeader;
  resolve: (r: AppendResult) => void;
  reject: (err: unknown) => void;
}

/** A truncation or reset waiting its turn among the appends, so both keep the order of calls. */
interface Barrier {
  rewind: Rewind;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** What a truncation (drop from `offset` on) or a reset (empty, go on at `offset`) does. */
interface Rewind {
  kind: "truncate" | "reset";
  offset: number;
}

/** Where a cut leaves a segment: the offset and byte it now ends at, and its remaining index. */
interface CutPoint {
  offset: number;
  byte: number;
  index: SegmentIndex;
  maxTimestamp: number;
  createdAtMs: number;
}

/** A partition log on disk. Create with `FileLog.open`. */
export class FileLog implements Log {
  readonly stats: FileLogStats = {
    syncs: 0,
    batchesSynced: 0,
    writes: 0,
    segmentsRolled: 0,
    segmentsDeleted: 0,
    bytesTruncated: 0,
    corruptReads: 0,
    tailReads: 0,
  };
  readonly #env: Env;
  readonly #opts: FileLogOptions;
  readonly #segments: Segment[];
  #queue: (Pending | Barrier)[] = [];
  #writing = false;
  /** One past the last offset readers may see (synced under "always", written otherwise). */
  #visible: number;
  /** Bytes of the active segment readers may see. */
  #visibleBytes: number;
  /** Batches written and batches known durable, counted since open. */
  #writtenBatches = 0;
  #syncedBatches = 0;
  /** The last sync started; the next one waits for it. */
  #syncing: Promise<boolean> = Promise.resolve(true);
  #syncDue = false;
  #failed: string | null = null;
  readonly #stop = new AbortController();
  /**
   * Where the last reads ended, by the offset that comes next: a subscriber's next read starts
   * there, and finds its batch without walking headers from a sparse index entry (each header a
   * file operation queued behind the log's writes and fsyncs). The walk still checks the batch's
   * base offset, so a stale entry costs a refused attempt at worst, never wrong data.
   */
  readonly #resumeAt = new Map<number, { seg: Segment; pos: number }>();
  /** The newest write groups, oldest first: offsets `base` to `next` - 1, whole batches. */
  #tail: { seg: Segment; base: number; next: number; bytes: Uint8Array }[] = [];
  #tailBytes = 0;
  /**
   * The last shared read from the tail that ran to its end, while the tail is unchanged: every
   * subscriber of a partition woken by an append asks for the same new batches.
   */
  #tailShared: { offset: number; result: ReadResult; oneBatch: boolean } | null = null;
  /**
   * Where the log first fails its checks, found at open or by a read: offsets before it are
   * served, reads from it and appends are refused (an append after a hole would be acknowledged
   * at an offset no reader can reach, or renumber the records behind it) until `repair()`.
   */
  #damage: (LogDamage & { segmentBase: number }) | null = null;
  /**
   * The active segment as recovery found it after a crash, when the disk had no room to copy it
   * into a durable file: its records may include bytes of an fsync that failed, which the disk
   * never got. Until the copy succeeds they are neither served nor built upon (an append after
   * them would be acknowledged, then lost with them at the next power loss).
   */
  #unsaved: ScanResult | null = null;
  /** The last `makeDurable()` started; the next one waits for it. */
  #saving: Promise<boolean> = Promise.resolve(true);
  /** A truncation or reset is under way: retention leaves the segments alone meanwhile. */
  #rewinding = false;

  private constructor(env: Env, opts: FileLogOptions, segments: Segment[]) {
    this.#env = env;
    this.#opts = opts;
    this.#segments = segments;
    const active = this.#active;
    this.#visible = active.nextOffset;
    this.#visibleBytes = active.sizeBytes;
    if (opts.fsync.kind === "interval") void this.#syncEvery(opts.fsync.ms);
  }

  /**
   * Opens (or creates) the log in `opts.dir` and recovers it: sealed segments keep their indexes
   * if those check out (else they are rebuilt); the active segment is scanned, every batch's
   * checksum verified, and a torn tail truncated.
   */
  static async open(env: Env, opts: FileLogOptions): Promise<FileLog> {
    await mkdirDurable(env.disk, opts.dir);
    const bases: number[] = [];
    for (const name of await env.disk.list(opts.dir)) {
      const base = parseSegmentName(name, "log");
      if (base !== null) bases.push(base);
      else if (isTmpName(name)) await env.disk.remove(`${opts.dir}/${name}`);
    }
    bases.sort((a, b) => a - b);
    const segments: Segment[] = [];
    const truncated = { bytes: 0 };
    let damage: SegmentDamage | null = null;
    let unsaved: ScanResult | null = null;
    for (let i = 0; i < bases.length; i++) {
      const base = bases[i] as number;
      const next = bases[i + 1];
      if (next === undefined) {
        const active = await recoverActive(env, opts, base, truncated);
        segments.push(active.segment);
        unsaved = active.unsaved;
        continue;
      }
      const sealed = await openSealed(env, opts, base, next);
      segments.push(sealed.segment);
      damage ??= sealed.damage;
    }
    if (segments.length === 0) segments.push(await createSegment(env, opts, 0));
    const log = new FileLog(env, opts, segments);
    log.stats.bytesTruncated = truncated.bytes;
    if (unsaved !== null) log.#holdBack(unsaved);
    const rewind = await readRewind(env, opts.dir);
    // A crash part way through a cut can leave a segment cut short before the next: no damage,
    // since finishing the cut removes the rest.
    const cutAway = damage !== null && rewind !== null &&
      (rewind.kind === "reset" || damage.offset >= rewind.offset);
    if (damage !== null && !cutAway) log.#markDamaged(damage);
    if (rewind !== null) {
      opts.onReport?.(
        `${log.#name}: finishing a ${rewind.kind} to offset ${rewind.offset} that a crash ` +
          `interrupted`,
      );
      await log.#rewind(rewind, true);
    }
    return log;
  }

  #holdBack(scan: ScanResult): void {
    this.#unsaved = scan;
    this.#visible = this.#active.baseOffset;
    this.#visibleBytes = 0;
  }

  /** True while the active segment is held back after a crash on a full disk (see #unsaved). */
  get heldBack(): boolean {
    return this.#unsaved !== null;
  }

  /**
   * One past the last offset held back after a crash on a full disk, or null if nothing is: those
   * offsets exist (subscribers may have had them before the crash) and are served once the log is
   * durable again, unless another crash loses what no fsync had reached.
   */
  get heldBackNextOffset(): number | null {
    return this.#unsaved === null ? null : this.#unsaved.nextOffset;
  }

  /**
   * Makes a held-back segment durable if the disk now has room: true once it is (its records are
   * then served, and appends go on after them), false while there is still no room. The owner of
   * the log's producer state must rebuild it after this turns true: the held-back batches were not
   * in the log it was built from.
   */
  makeDurable(): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      const scan = this.#unsaved;
      if (scan === null) return true;
      while (this.#writing) await this.#env.clock.sleep(1);
      const seg = this.#active;
      try {
        seg.file = await rewriteAfterCrash(this.#env, this.#opts.dir, seg, scan);
      } catch (err) {
        if (err instanceof NoSpace) return false;
        throw err;
      }
      this.#unsaved = null;
      this.#visible = seg.nextOffset;
      this.#visibleBytes = seg.sizeBytes;
      this.#opts.onReport?.(
        `${this.#name} is durable again after a crash on a full disk: offsets ${seg.baseOffset}..${
          seg.nextOffset - 1
        } are served`,
      );
      return true;
    };
    const next = this.#saving.then(run, run);
    this.#saving = next.catch(() => false);
    return next;
  }

  /** Where the log is damaged (the first offset it cannot serve, and why), or null. */
  get damage(): LogDamage | null {
    if (this.#damage === null) return null;
    const { offset, file, byte, reason } = this.#damage;
    return { offset, file, byte, reason };
  }

  /** "Partition orders/0" (or the directory, for a log outside a broker). */
  get #name(): string {
    const p = this.#opts.partition;
    return p === undefined ? `Partition log ${this.#opts.dir}` : `Partition ${p.topic}/${p.id}`;
  }

  /** What an operator runs to repair this log. */
  get #repairHint(): string {
    const p = this.#opts.partition;
    if (this.#opts.repairedByPeers === true) return "the replica repairs it from its peers";
    return p === undefined
      ? "repair it"
      : `repair it with \`gregorctl topic repair ${p.topic} --partition ${p.id}\``;
  }

  /** Records damage (the earliest found wins) and reports it once. */
  #markDamaged(d: SegmentDamage): void {
    if (this.#damage !== null && this.#damage.offset <= d.offset) return;
    const file = segmentFile(this.#opts.dir, d.segmentBase, "log");
    this.#damage = {
      offset: d.offset,
      file,
      byte: d.byte,
      reason: d.reason,
      segmentBase: d.segmentBase,
    };
    this.#opts.onReport?.(
      `${this.#name} is damaged from offset ${d.offset}: ${file} fails its checks at byte ${d.byte} ` +
        `(${d.reason}); offsets before ${d.offset} are served, later ones and appends are refused ` +
        `until it is repaired: ${this.#repairHint}`,
      "error",
    );
  }

  /** The error for a read or append the damage refuses. */
  #damagedError(what: string): GregorError {
    const d = this.#damage as LogDamage;
    return new GregorError(
      ErrorCode.PARTITION_DAMAGED,
      `${what}: ${this.#name} is damaged from offset ${d.offset} (${d.file} fails its checks at ` +
        `byte ${d.byte}: ${d.reason}); ${this.#repairHint}`,
    );
  }

  get #active(): Segment {
    return this.#segments[this.#segments.length - 1] as Segment;
  }

  get logStartOffset(): number {
    return (this.#segments[0] as Segment).baseOffset;
  }

  get nextOffset(): number {
    return this.#visible;
  }

  get sizeBytes(): number {
    let n = 0;
    for (const s of this.#segments) n += s.sizeBytes;
    return n;
  }

  /** Segments on disk. */
  get segmentCount(): number {
    return this.#segments.length;
  }

  append(batch: Uint8Array, header: BatchHeader): Promise<AppendResult> {
    if (this.#failed !== null) {
      return Promise.reject(
        new GregorError(ErrorCode.STORAGE_ERROR, `Log ${this.#opts.dir} failed: ${this.#failed}`),
      );
    }
    if (this.#damage !== null) return Promise.reject(this.#damagedError("Cannot append"));
    return new Promise((resolve, reject) => {
      this.#queue.push({ batch, header, resolve, reject });
      if (!this.#writing) void this.#writeLoop();
    });
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && this.#failed === null) await this.#writeGroup();
    } finally {
      this.#writing = false;
    }
  }

  /**
   * Writes the batches waiting now as one write (and, under "always", one sync), or runs the
   * truncation or reset whose turn it is.
   */
  async #writeGroup(): Promise<void> {
    const head = this.#queue[0] as Pending | Barrier;
    if ("rewind" in head) {
      this.#queue.shift();
      await this.#rewind(head.rewind).then(head.resolve, head.reject);
      return;
    }
    if (this.#damage !== null) {
      // Damage found by a read while these waited: they would land behind the hole.
      const e = this.#damagedError("Cannot append");
      for (const p of this.#queue.splice(0)) p.reject(e);
      return;
    }
    if (this.#unsaved !== null) {
      const e = new GregorError(
        ErrorCode.STORAGE_ERROR,
        `Cannot append to ${this.#opts.dir}: no space left on device to make its records durable ` +
          `after a crash (offsets ${this.#active.baseOffset}..${
            this.#active.nextOffset - 1
          } are held back until there is room)`,
      );
      for (const p of this.#queue.splice(0)) p.reject(e);
      return;
    }
    if (this.#shouldRoll(head.batch.length)) {
      const why = await this.#roll();
      if (this.#failed !== null) return;
      if (why !== null) {
        // Everything queued behind it fails too: a later batch stored after an earlier one failed
        // would break a producer's order (and its idempotent sequence).
        const e = new GregorError(
          ErrorCode.STORAGE_ERROR,
          `Cannot append to ${this.#opts.dir}: ${why}`,
        );
        for (const p of this.#queue.splice(0)) p.reject(e);
        return;
      }
    }
    const seg = this.#active;
    const group: Pending[] = [];
    let bytes = 0;
    while (this.#queue.length > 0 && bytes < WRITE_GROUP_BYTES_MAX) {
      const p = this.#queue[0] as Pending | Barrier;
      if ("rewind" in p) break;
      if (group.length > 0 && seg.sizeBytes + bytes + p.batch.length > this.#opts.segmentBytes) {
        break;
      }
      group.push(this.#queue.shift() as Pending);
      bytes += p.batch.length;
    }
    // Offsets are assigned here, in queue order, so a failed write leaves no gap.
    const buf = new Uint8Array(bytes);
    let off = 0;
    let next = seg.nextOffset;
    const results: AppendResult[] = [];
    for (const p of group) {
      setBaseOffset(p.batch, 0, next);
      buf.set(p.batch, off);
      off += p.batch.length;
      results.push({ baseOffset: next, lastOffset: next + p.header.recordCount - 1 });
      next += p.header.recordCount;
    }
    const pos = seg.sizeBytes;
    try {
      await seg.file.writeAt(pos, buf);
      this.stats.writes++;
    } catch (err) {
      // A failed write may have left a prefix; cut it off so it can never be read as data. One
      // that found no file handle (the segment's was closed to make room) wrote nothing.
      if (!(err instanceof TooManyOpenFiles)) {
        await seg.file.truncate(pos).catch((e) =>
          this.#fail(`cannot truncate after a failed write: ${e}`)
        );
      }
      const e = new GregorError(
        ErrorCode.STORAGE_ERROR,
        `Cannot append to ${this.#opts.dir}: ${(err as Error).message}`,
      );
      // So do the batches queued behind them, for the same reason as a failed roll.
      for (const p of [...group, ...this.#queue.splice(0)]) p.reject(e);
      return;
    }
    let at = pos;
    for (const [i, p] of group.entries()) {
      const rel = (results[i] as AppendResult).baseOffset - seg.baseOffset;
      seg.index.add(rel, at, p.batch.length, p.header.maxTimestamp);
      seg.maxTimestamp = Math.max(seg.maxTimestamp, p.header.maxTimestamp);
      at += p.batch.length;
    }
    seg.sizeBytes += bytes;
    seg.nextOffset = next;
    this.#writtenBatches += group.length;
    // Written, not yet synced: a crash here finds the batches in the page cache only.
    if (this.#env.faults !== undefined) await this.#slowStep("storage.append.before-sync");
    if (this.#opts.fsync.kind === "always") {
      if (!(await this.#sync(seg))) {
        const e = new GregorError(
          ErrorCode.STORAGE_ERROR,
          `Cannot sync ${this.#opts.dir}: ${this.#failed}`,
        );
        for (const p of group) p.reject(e);
        return;
      }
    }
    this.#visible = next;
    this.#visibleBytes = seg.sizeBytes;
    this.#keepTail(seg, (results[0] as AppendResult).baseOffset, next, buf);
    group.forEach((p, i) => p.resolve(results[i] as AppendResult));
    if (this.#syncDue) {
      this.#syncDue = false;
      await this.#sync(seg);
    }
  }

  /** A fault point that slows a step down (a seeded simulation's; a real node has none). */
  async #slowStep(point: string): Promise<void> {
    const faults = this.#env.faults;
    if (faults === undefined || !faults.fires(point)) return;
    await this.#env.clock.sleep(1 + faults.pick(SLOW_STEP_MS_MAX));
  }

  /**
   * fsync of `seg`, making every batch written so far durable; a failure is fatal, since the dirty
   * data may be gone for good. Syncs run one at a time, so two never count the same batches.
   */
  #sync(seg: Segment): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      const target = this.#writtenBatches;
      if (this.#failed !== null) return false;
      const startMs = this.#env.clock.now();
      try {
        await seg.file.sync();
      } catch (err) {
        this.#fail(`fsync failed: ${(err as Error).message}`);
        return false;
      }
      this.stats.syncs++;
      const batches = Math.max(0, target - this.#syncedBatches);
      if (target > this.#syncedBatches) {
        this.stats.batchesSynced += batches;
        this.#syncedBatches = target;
      }
      this.#opts.onSync?.((this.#env.clock.now() - startMs) / 1000, batches);
      return true;
    };
    const next = this.#syncing.then(run);
    this.#syncing = next;
    return next;
  }

  get #unsyncedBatches(): number {
    return this.#writtenBatches - this.#syncedBatches;
  }

  #fail(reason: string): void {
    if (this.#failed !== null) return;
    this.#failed = reason;
    const e = new GregorError(ErrorCode.STORAGE_ERROR, `Log ${this.#opts.dir} failed: ${reason}`);
    for (const p of this.#queue.splice(0)) p.reject(e);
    this.#opts.onFatal(`${this.#opts.dir}: ${reason}`);
  }

  async #syncEvery(ms: number): Promise<void> {
    while (this.#failed === null) {
      try {
        await this.#env.clock.sleep(ms, this.#stop.signal);
      } catch {
        return;
      }
      if (this.#unsyncedBatches === 0) continue;
      // A writer in progress does the sync when its group is written.
      if (this.#writing) this.#syncDue = true;
      else await this.#sync(this.#active);
    }
  }

  #shouldRoll(incomingBytes: number): boolean {
    const seg = this.#active;
    if (seg.sizeBytes === 0) return false;
    return seg.sizeBytes + incomingBytes > this.#opts.segmentBytes ||
      this.#env.clock.wallMs() - seg.createdAtMs >= this.#opts.segmentMs;
  }

  /**
   * Seals the active segment (synced, indexes written) and starts a new one. Returns why it could
   * not (a full disk, say: the append waiting for the roll fails, the log goes on), or null.
   */
  async #roll(): Promise<string | null> {
    const old = this.#active;
    if (!(await this.#sync(old))) return this.#failed;
    try {
      await writeFileAtomic(
        this.#env.disk,
        this.#path(old.baseOffset, "index"),
        old.index.encodeOffsets(),
      );
      await writeFileAtomic(
        this.#env.disk,
        this.#path(old.baseOffset, "timeindex"),
        old.index.encodeTimes(),
      );
      // The old segment's indexes are written, the new segment not yet created.
      if (this.#env.faults !== undefined) await this.#slowStep("storage.roll.before-create");
      this.#segments.push(await createSegment(this.#env, this.#opts, old.nextOffset));
    } catch (err) {
      return `cannot roll to a new segment: ${(err as Error).message}`;
    }
    old.sealed = true;
    this.stats.segmentsRolled++;
    this.#visibleBytes = 0;
    return null;
  }

  #path(base: number, kind: SegmentFileKind): string {
    return segmentFile(this.#opts.dir, base, kind);
  }

  async read(offset: number, limits: ReadLimits): Promise<ReadResult> {
    if (offset < this.logStartOffset || offset > this.#visible) {
      throw new OffsetOutOfRange(offset, this.logStartOffset, this.#visible);
    }
    if (this.#damage !== null && offset >= this.#damage.offset) {
      throw this.#damagedError(`Cannot read offset ${offset}`);
    }
    if (offset === this.#visible) {
      return { bytes: new Uint8Array(0), nextOffset: offset, records: 0 };
    }
    const cached = this.#fromTail(offset, limits);
    if (cached !== null) return cached;
    const seg = this.#segmentFor(offset);
    // A bit flipped on one read of an unchecksummed header field can misplace everything after it,
    // so a read that does not check out is done again from the start before it counts as corrupt.
    let why = "";
    for (let attempt = 0; attempt <= REREADS; attempt++) {
      const got = await this.#readOnce(seg, offset, limits);
      if (typeof got !== "string") return got;
      why = got;
      // Again from the index: a remembered starting point is only a shortcut.
      this.#resumeAt.delete(offset);
    }
    // A truncation or reset may have dropped the offset while the read was under way.
    if (offset < this.logStartOffset || offset > this.#visible) {
      throw new OffsetOutOfRange(offset, this.logStartOffset, this.#visible);
    }
    this.stats.corruptReads++;
    // A scan of the segment tells damage at rest (it fails every read, so the log is damaged from
    // there on) from a read that went wrong three times but may not again.
    await this.#findDamage(seg);
    if (this.#damage !== null && offset >= this.#damage.offset) {
      throw this.#damagedError(`Cannot read offset ${offset}`);
    }
    const msg = `Corrupt batch at offset ${offset} in ${
      this.#path(seg.baseOffset, "log")
    }: ${why}; refusing to serve it`;
    this.#opts.onReport?.(msg);
    throw new GregorError(ErrorCode.STORAGE_ERROR, msg);
  }

  /** Scans `seg` (each batch re-read before it counts as bad) and marks the log damaged where it fails. */
  async #findDamage(seg: Segment): Promise<void> {
    const end = seg === this.#active ? this.#visibleBytes : seg.sizeBytes;
    const scan = await scanSegment(
      seg.file,
      seg.baseOffset,
      this.#opts.indexIntervalBytes,
      SCAN_REREADS,
    );
    // Bytes past the visible end may be a write in progress, not damage.
    if (scan.validBytes >= end) return;
    this.#markDamaged({
      segmentBase: seg.baseOffset,
      offset: scan.nextOffset,
      byte: scan.validBytes,
      reason: scan.stoppedBecause ?? `the segment ends at byte ${scan.validBytes}`,
    });
  }

  /** One attempt at a read: the batches, or why they did not check out. */
  async #readOnce(seg: Segment, offset: number, limits: ReadLimits): Promise<ReadResult | string> {
    let end = seg === this.#active ? this.#visibleBytes : seg.sizeBytes;
    if (this.#damage !== null && this.#damage.segmentBase === seg.baseOffset) {
      end = Math.min(end, this.#damage.byte);
    }
    // A remembered starting point is a shortcut; a fault point forgets it, so reads walk the index.
    const resume = this.#env.faults?.fires("storage.read.forget-resume")
      ? undefined
      : this.#resumeAt.get(offset);
    if (resume !== undefined && resume.seg === seg && resume.pos < end) {
      return await this.#readResumed(seg, offset, resume.pos, end, limits);
    }
    // Others walk from the sparse index entry at or before the offset, a header read per batch
    // passed on the way, then read the batches to serve.
    const start = seg.index.lookup(offset - seg.baseOffset);
    let pos = start.position;
    // Base offsets are outside the checksum, so the chain of bases is checked instead: each batch
    // must start where the one before it ended.
    let expected = seg.baseOffset + start.rel;
    let startPos = -1;
    let records = 0;
    const headers: Walked[] = [];
    let total = 0;
    while (pos < end) {
      const h = await this.#header(seg, pos, expected);
      if (typeof h === "string") {
        // Damage after batches already found does not keep those from being served.
        if (headers.length > 0) break;
        return h;
      }
      const last = h.baseOffset + h.recordCount - 1;
      expected = last + 1;
      if (last < offset) {
        pos += h.sizeBytes;
        continue;
      }
      const n = last + 1 - Math.max(h.baseOffset, offset);
      if (
        headers.length > 0 &&
        (total + h.sizeBytes > limits.bytesMax || records + n > limits.recordsMax)
      ) break;
      if (startPos < 0) startPos = pos;
      headers.push({ pos, size: h.sizeBytes, base: h.baseOffset, head: h.raw });
      total += h.sizeBytes;
      records += n;
      pos += h.sizeBytes;
    }
    if (headers.length === 0) return `no batch holds offset ${offset} below byte ${end}`;
    const headroomBytes = limits.headroomBytes ?? 0;
    let bytes = new Uint8Array(headroomBytes + total).subarray(headroomBytes);
    await seg.file.readAt(startPos, bytes);
    const bad = headers.findIndex((h) => !batchOk(bytes, h.pos - startPos, h));
    if (bad === 0) return `the batch at byte ${startPos} fails its checks`;
    if (bad > 0) {
      // The good batches before a bad one are served; the next read starts at the bad one.
      headers.length = bad;
      bytes = bytes.subarray(
        0,
        (headers[bad - 1] as Walked).pos + (headers[bad - 1] as Walked).size - startPos,
      );
      total = bytes.length;
    }
    // Count from the verified bytes, not from the header reads the walk decided on (their counts
    // were not checksummed when read): the batches must hold `offset` and follow one another.
    records = 0;
    let nextOffset = -1;
    for (const h of headers) {
      const count = new DataView(bytes.buffer, bytes.byteOffset + h.pos - startPos + 57, 4)
        .getInt32(0);
      if (nextOffset >= 0 ? h.base !== nextOffset : h.base + count <= offset) {
        return `the batches read do not follow on from offset ${offset}`;
      }
      records += h.base + count - Math.max(h.base, offset);
      nextOffset = h.base + count;
    }
    this.#remember(nextOffset, seg, startPos + total);
    return { bytes, nextOffset, records, headroomBytes };
  }

  /** The header at `pos`, which must carry base offset `expected`, or why it does not. */
  async #header(
    seg: Segment,
    pos: number,
    expected: number,
  ): Promise<(BatchHeader & { raw: Uint8Array }) | string> {
    const head = new Uint8Array(BATCH_HEADER_BYTES);
    await seg.file.readAt(pos, head);
    try {
      // The length is checked against what follows when the whole batch is verified.
      const h = readBatchHeader(head, 0, { headerOnly: true });
      if (h.baseOffset === expected && head[16] === BATCH_MAGIC) return { ...h, raw: head };
      return `the batch header at byte ${pos} has base offset ${h.baseOffset}, expected ${expected}`;
    } catch (err) {
      return `the batch header at byte ${pos} is damaged (${(err as Error).message})`;
    }
  }

  /**
   * A read going on from where an earlier one ended: the batch holding `offset` starts at `pos`,
   * so one file read fetches the batches to serve (a subscriber's reads, each otherwise a header
   * read per batch, queued behind the log's writes and fsyncs, fell behind an fsync-always
   * topic). Each batch must carry the base offset the one before it leads to (the first: `offset`)
   * and pass its checksum, which covers everything after the first 21 bytes; a flipped length
   * misplaces the next batch or the checksum's range, and fails.
   */
  async #readResumed(
    seg: Segment,
    offset: number,
    pos: number,
    end: number,
    limits: ReadLimits,
  ): Promise<ReadResult | string> {
    const headroomBytes = limits.headroomBytes ?? 0;
    const room = (n: number) => new Uint8Array(headroomBytes + n).subarray(headroomBytes);
    let bytes = room(Math.min(end - pos, Math.max(limits.bytesMax, BATCH_HEADER_BYTES)));
    await seg.file.readAt(pos, bytes);
    let off = 0;
    let expected = offset;
    let records = 0;
    while (off + BATCH_HEADER_BYTES <= bytes.length) {
      let h: BatchHeader;
      try {
        h = readBatchHeader(bytes, off, { headerOnly: true });
      } catch (err) {
        if (off > 0) break;
        return `the batch header at byte ${pos} is damaged (${(err as Error).message})`;
      }
      if (h.baseOffset !== expected) {
        if (off > 0) break;
        return `the batch header at byte ${pos} has base offset ${h.baseOffset}, expected ${expected}`;
      }
      if (off + h.sizeBytes > bytes.length) {
        if (off > 0) break;
        // The first batch is bigger than the limit: it is served whole all the same.
        if (pos + h.sizeBytes > end) return `the batch at byte ${pos} runs past byte ${end}`;
        const whole = room(h.sizeBytes);
        whole.set(bytes);
        await seg.file.readAt(pos + bytes.length, whole.subarray(bytes.length));
        bytes = whole;
      }
      if (off > 0 && records + h.recordCount > limits.recordsMax) break;
      const crc = crc32c(bytes.subarray(off + 21, off + h.sizeBytes));
      if (bytes[off + 16] !== BATCH_MAGIC || crc !== h.crc || h.recordCount < 1) {
        // The good batches before it are served; the next read starts at the bad one.
        if (off > 0) break;
        return `the batch at byte ${pos + off} fails its checks`;
      }
      records += h.recordCount;
      expected = h.baseOffset + h.recordCount;
      off += h.sizeBytes;
    }
    if (off === 0) return `no whole batch at byte ${pos} below byte ${end}`;
    this.#remember(expected, seg, pos + off);
    return { bytes: bytes.subarray(0, off), nextOffset: expected, records, headroomBytes };
  }

  readCached(offset: number, limits: ReadLimits): ReadResult | null {
    if (offset < this.logStartOffset || offset > this.#visible) return null;
    if (this.#damage !== null && offset >= this.#damage.offset) return null;
    if (offset === this.#visible) {
      return { bytes: new Uint8Array(0), nextOffset: offset, records: 0 };
    }
    return this.#fromTail(offset, limits);
  }

  /** Keeps a write group just made visible for readers at the end; the oldest go past the cap. */
  #keepTail(seg: Segment, base: number, next: number, bytes: Uint8Array): void {
    const cap = this.#opts.tailCacheBytes ?? TAIL_CACHE_BYTES_DEFAULT;
    if (bytes.length > cap) {
      this.#dropTail();
      return;
    }
    // Only a run that follows on from the last group: reads walk the groups in order.
    if ((this.#tail.at(-1)?.next ?? base) !== base) this.#dropTail();
    this.#tail.push({ seg, base, next, bytes });
    this.#tailShared = null;
    this.#tailBytes += bytes.length;
    while (this.#tailBytes > cap) this.#tailBytes -= this.#tail.shift()!.bytes.length;
  }

  #dropTail(): void {
    this.#tail = [];
    this.#tailBytes = 0;
    this.#tailShared = null;
  }

  /**
   * A read served from the newest batches kept in memory, or null if `offset` is not among them.
   * They were checked when appended and are what the file holds, so they are not checked again.
   * Batches of one write group are handed out as a view of it, shared by every reader (a group is
   * never written to once kept); only a read across groups is copied.
   */
  #fromTail(offset: number, limits: ReadLimits): ReadResult | null {
    const tail = this.#tail;
    if (tail.length === 0 || offset < tail[0]!.base || offset < this.logStartOffset) return null;
    const shared = this.#tailShared;
    if (shared !== null && shared.offset === offset) {
      // What this read would find: all of it if the limits allow, and one batch always.
      const r = shared.result;
      if (
        shared.oneBatch || (r.bytes.length <= limits.bytesMax && r.records <= limits.recordsMax)
      ) {
        this.stats.tailReads++;
        return r;
      }
    }
    let i = tail.length - 1;
    while (tail[i]!.base > offset) i--;
    const parts: Uint8Array[] = [];
    let total = 0;
    let records = 0;
    let nextOffset = offset;
    let first = true;
    // Where the batches start in the first group they come from, and whether they all do.
    let firstGroup: Uint8Array | null = null;
    let firstAt = 0;
    let oneGroup = true;
    // False if the limits cut the read short: a read with other limits may find more.
    let ranToEnd = true;
    // A read ends at its segment's end, as one from the file does.
    const seg = tail[i]!.seg;
    for (; i < tail.length && tail[i]!.seg === seg; i++) {
      const group = tail[i]!.bytes;
      for (let off = 0; off < group.length;) {
        const h = readBatchHeader(group, off, { headerOnly: true });
        const end = h.baseOffset + h.recordCount;
        if (end > offset) {
          const n = end - Math.max(h.baseOffset, offset);
          if (
            !first && (total + h.sizeBytes > limits.bytesMax || records + n > limits.recordsMax)
          ) {
            ranToEnd = false;
            i = tail.length;
            break;
          }
          if (firstGroup === null) {
            firstGroup = group;
            firstAt = off;
          } else if (group !== firstGroup) oneGroup = false;
          parts.push(group.subarray(off, off + h.sizeBytes));
          total += h.sizeBytes;
          records += n;
          nextOffset = end;
          first = false;
        }
        off += h.sizeBytes;
      }
    }
    if (firstGroup === null) return null;
    this.stats.tailReads++;
    if (oneGroup) {
      const result = { bytes: firstGroup.subarray(firstAt, firstAt + total), nextOffset, records };
      if (ranToEnd) this.#tailShared = { offset, result, oneBatch: parts.length === 1 };
      return result;
    }
    const headroomBytes = limits.headroomBytes ?? 0;
    const bytes = new Uint8Array(headroomBytes + total).subarray(headroomBytes);
    let at = 0;
    for (const part of parts) {
      bytes.set(part, at);
      at += part.length;
    }
    return { bytes, nextOffset, records, headroomBytes };
  }

  /** Notes that the batch holding `offset` (its first offset) starts at `pos` of `seg`. */
  #remember(offset: number, seg: Segment, pos: number): void {
    this.#resumeAt.delete(offset);
    this.#resumeAt.set(offset, { seg, pos });
    if (this.#resumeAt.size > RESUME_POINTS_MAX) {
      this.#resumeAt.delete(this.#resumeAt.keys().next().value as number);
    }
  }

  #segmentFor(offset: number): Segment {
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if ((this.#segments[mid] as Segment).baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return this.#segments[lo] as Segment;
  }

  offsetForTimestamp(timestampMs: number): Promise<number> {
    for (const seg of this.#segments) {
      if (seg.maxTimestamp < timestampMs) continue;
      const rel = seg.index.offsetForTime(timestampMs);
      if (rel !== null) return Promise.resolve(Math.min(seg.baseOffset + rel, this.#visible));
    }
    return Promise.resolve(this.#visible);
  }

  /** Changes the retention limits (-1: no limit); the next `enforceRetention()` applies them. */
  setRetention(limits: { bytes: number; ms: number }): void {
    this.#opts.retentionBytes = limits.bytes;
    this.#opts.retentionMs = limits.ms;
  }

  /** Deletes whole old segments past the retention limits (never the active one). */
  async enforceRetention(): Promise<number> {
    if (this.#rewinding) return 0;
    let deleted = 0;
    const now = this.#env.clock.wallMs();
    while (this.#segments.length > 1) {
      const oldest = this.#segments[0] as Segment;
      const tooBig = this.#opts.retentionBytes >= 0 && this.sizeBytes > this.#opts.retentionBytes;
      const tooOld = this.#opts.retentionMs >= 0 &&
        oldest.maxTimestamp < now - this.#opts.retentionMs;
      if (!tooBig && !tooOld) break;
      this.#segments.shift();
      for (const [offset, at] of this.#resumeAt) {
        if (at.seg === oldest) this.#resumeAt.delete(offset);
      }
      for (const kind of SEGMENT_FILE_KINDS) {
        await this.#env.disk.remove(this.#path(oldest.baseOffset, kind)).catch(ignoreNotFound);
      }
      deleted++;
      this.stats.segmentsDeleted++;
      // Readers already inside the old file keep their handle a while.
      void this.#env.clock.sleep(DELETED_SEGMENT_GRACE_MS, this.#stop.signal).then(
        () => oldest.file.close(),
        () => oldest.file.close(),
      );
    }
    if (deleted > 0) await this.#env.disk.syncDir(this.#opts.dir);
    return deleted;
  }

  /**
   * Checks every batch of the log and cuts it at the first that fails (known damage or any found
   * now): later segments are removed, the damaged one is truncated at the last good batch and
   * becomes the active segment, and appends go on from the cut. Offsets from the cut on are
   * given out again (as Kafka's truncation does): an explicit operator decision that the records
   * behind the damage are lost. Returns what was cut, or null if every batch checked out.
   */
  async repair(): Promise<LogRepair | null> {
    for (const [i, seg] of this.#segments.entries()) {
      const next = this.#segments[i + 1];
      const scan = await scanSegment(
        seg.file,
        seg.baseOffset,
        this.#opts.indexIntervalBytes,
        SCAN_REREADS,
      );
      // A sealed segment must be whole and reach the next one's base; the active one only needs
      // its visible bytes (past them may be a write in progress).
      const bad = next === undefined
        ? scan.validBytes < this.#visibleBytes
        : scan.stoppedBecause !== null || scan.nextOffset !== next.baseOffset;
      if (!bad) continue;
      const found = {
        segmentBase: seg.baseOffset,
        offset: scan.nextOffset,
        byte: scan.validBytes,
        reason: scan.stoppedBecause ?? `the segment ends at offset ${scan.nextOffset}`,
      };
      // The cut goes where this check found the damage, which is what the repair reports, even
      // if an earlier find elsewhere does not show again.
      if (this.#damage?.offset !== found.offset) this.#damage = null;
      this.#markDamaged(found);
      return await this.#cut(i, scan);
    }
    if (this.#damage !== null) {
      // Every batch read back whole this time: what looked like damage was a read going wrong.
      this.#opts.onReport?.(`${this.#name} checked out whole; it is no longer marked damaged`);
      this.#damage = null;
    }
    return null;
  }

  /** Cuts the log at the end of `scan`, the valid prefix of segment `i`. */
  async #cut(i: number, scan: ScanResult): Promise<LogRepair> {
    const damage = this.damage as LogDamage;
    // Appends are refused while damaged: wait for a write that was under way to end.
    while (this.#writing) await this.#env.clock.sleep(1);
    const endOffset = this.#visible;
    const seg = this.#segments[i] as Segment;
    const bytesDropped = await this.#cutAt(seg, {
      offset: scan.nextOffset,
      byte: scan.validBytes,
      index: scan.index,
      maxTimestamp: scan.maxTimestamp,
      createdAtMs: scan.firstTimestamp ?? this.#env.clock.wallMs(),
    });
    this.#damage = null;
    const repair = { cutOffset: scan.nextOffset, endOffset, bytesDropped, damage };
    this.#opts.onReport?.(
      `${this.#name} repaired: dropped offsets ${repair.cutOffset}..${endOffset - 1} ` +
        `(${endOffset - repair.cutOffset} records, ${repair.bytesDropped} bytes) from the damage ` +
        `at byte ${damage.byte} of ${damage.file}; ${
          this.#opts.repairedByPeers === true
            ? "the replica fetches them again from its peers"
            : `new records get offsets from ${repair.cutOffset}`
        }`,
    );
    return repair;
  }

  /**
   * Cuts the log at `at` inside `seg`, which becomes the active segment: the segments after it are
   * removed, newest first (a crash part way leaves a log that is a prefix of the old one), `seg` is
   * truncated and synced, and the directory synced. Readers see the cut at once, before the files
   * change. Returns the bytes dropped. The caller makes sure no write is under way.
   */
  async #cutAt(seg: Segment, at: CutPoint): Promise<number> {
    await this.#syncing;
    const i = this.#segments.indexOf(seg);
    assert(i >= 0, () => `Cannot cut ${this.#opts.dir}: segment ${seg.baseOffset} is gone`);
    const gone = this.#segments.splice(i + 1).reverse();
    const sizeBefore = await seg.file.size();
    seg.sealed = false;
    seg.nextOffset = at.offset;
    seg.sizeBytes = at.byte;
    seg.index = at.index;
    seg.maxTimestamp = at.maxTimestamp;
    seg.createdAtMs = at.createdAtMs;
    this.#visible = at.offset;
    this.#visibleBytes = at.byte;
    this.#resumeAt.clear();
    this.#dropTail();
    let bytesDropped = sizeBefore - at.byte;
    for (const g of gone) bytesDropped += await this.#removeSegment(g);
    await seg.file.truncate(at.byte);
    await seg.file.sync();
    // It is the active segment now, whose indexes live in memory until it is sealed.
    for (const kind of INDEX_FILE_KINDS) {
      await this.#env.disk.remove(this.#path(seg.baseOffset, kind)).catch(ignoreNotFound);
    }
    await this.#env.disk.syncDir(this.#opts.dir);
    return bytesDropped;
  }

  /**
   * Removes a segment's files (the directory is synced by the caller) and returns its size; its
   * file stays open a while for readers already inside it.
   */
  async #removeSegment(seg: Segment): Promise<number> {
    const size = await seg.file.size();
    for (const kind of SEGMENT_FILE_KINDS) {
      await this.#env.disk.remove(this.#path(seg.baseOffset, kind)).catch(ignoreNotFound);
    }
    void this.#env.clock.sleep(DELETED_SEGMENT_GRACE_MS, this.#stop.signal).then(
      () => seg.file.close(),
      () => seg.file.close(),
    );
    return size;
  }

  async sync(): Promise<void> {
    // Batches appended before the call are written or queued; wait until the writer took them.
    while (this.#writing || this.#queue.length > 0) await this.#env.clock.sleep(1);
    // A log closing syncs what it holds itself; its files may already be closed.
    if (this.#stop.signal.aborted) {
      throw new GregorError(ErrorCode.SHUTTING_DOWN, `Log ${this.#opts.dir} is closing`);
    }
    if (this.#unsaved !== null && !(await this.makeDurable())) {
      throw new GregorError(
        ErrorCode.STORAGE_ERROR,
        `Cannot sync ${this.#opts.dir}: its active segment is held back after a crash on a full disk`,
      );
    }
    if (!(await this.#sync(this.#active))) {
      throw new GregorError(
        ErrorCode.STORAGE_ERROR,
        `Cannot sync ${this.#opts.dir}: ${this.#failed}`,
      );
    }
  }

  truncateFrom(offset: number): Promise<void> {
    return this.#enqueueRewind({ kind: "truncate", offset });
  }

  resetTo(offset: number): Promise<void> {
    return this.#enqueueRewind({ kind: "reset", offset });
  }

  #enqueueRewind(rewind: Rewind): Promise<void> {
    if (this.#failed !== null) {
      return Promise.reject(
        new GregorError(ErrorCode.STORAGE_ERROR, `Log ${this.#opts.dir} failed: ${this.#failed}`),
      );
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ rewind, resolve, reject });
      if (!this.#writing) void this.#writeLoop();
    });
  }

  /**
   * Runs a truncation or reset, between two write groups (or at open, to finish one a crash
   * interrupted): its marker is made durable first and removed last, so a crash part way is
   * finished by the next open.
   */
  async #rewind(rewind: Rewind, finishing = false): Promise<void> {
    if (this.#failed !== null) {
      throw new GregorError(
        ErrorCode.STORAGE_ERROR,
        `Log ${this.#opts.dir} failed: ${this.#failed}`,
      );
    }
    this.#rewinding = true;
    try {
      await this.#rewindNow(rewind, finishing);
    } finally {
      this.#rewinding = false;
    }
  }

  async #rewindNow(rewind: Rewind, finishing: boolean): Promise<void> {
    if (rewind.kind === "truncate" && finishing && rewind.offset < this.logStartOffset) {
      // The segments that held the cut are gone (cluster seed 5942: retention deleted them while
      // the cut waited, then a crash): everything from the offset on goes, and the log goes on at
      // it — a reset, which is what the cut would have left.
      return await this.#rewindNow({ kind: "reset", offset: rewind.offset }, finishing);
    }
    if (rewind.kind === "truncate") {
      // Finishing after a crash, the log may already end at or before the cut (a torn tail).
      const cut = finishing && rewind.offset >= this.#visible
        ? null
        : await this.#truncationPoint(rewind.offset);
      if (cut === null) {
        if (finishing) await this.#partWay(rewind, () => this.#dropMarker());
        return;
      }
      await writeChecked(this.#env.disk, this.#markerPath, `${rewind.kind} ${rewind.offset}`);
      await this.#partWay(rewind, async () => {
        await this.#cutAt(cut.seg, cut.at);
        // The cut took the damage and any held-back records with it.
        if (this.#damage !== null && this.#damage.offset >= rewind.offset) this.#damage = null;
        this.#unsaved = null;
        await this.#dropMarker();
      });
      return;
    }
    if (!Number.isSafeInteger(rewind.offset) || rewind.offset < 0) {
      throw new RangeError(`Cannot reset the log to offset ${rewind.offset}: not an offset`);
    }
    await writeChecked(this.#env.disk, this.#markerPath, `${rewind.kind} ${rewind.offset}`);
    await this.#partWay(rewind, async () => {
      await this.#syncing;
      // Readers keep the old segments (their files stay open a while) until the new one exists.
      for (const g of [...this.#segments].reverse()) await this.#removeSegment(g);
      await this.#env.disk.syncDir(this.#opts.dir);
      const fresh = await createSegment(this.#env, this.#opts, rewind.offset);
      this.#segments.splice(0, this.#segments.length, fresh);
      this.#visible = rewind.offset;
      this.#visibleBytes = 0;
      this.#resumeAt.clear();
      this.#dropTail();
      this.#damage = null;
      this.#unsaved = null;
      await this.#dropMarker();
    });
  }

  /**
   * Runs the steps of a truncation or reset that come after its marker is durable. A failure
   * there leaves the files part way (and what the log holds in memory may already say done), so
   * the log fails: trying again would find nothing to cut and leave the marker behind, and a
   * power loss later would finish the cut over batches synced since (cluster seed 1152). The next
   * open finishes it from the marker.
   */
  async #partWay(rewind: Rewind, steps: () => Promise<void>): Promise<void> {
    try {
      await steps();
    } catch (err) {
      this.#fail(
        `a ${rewind.kind} to offset ${rewind.offset} failed part way (${
          (err as Error).message
        }); the next open finishes it`,
      );
      throw err;
    }
  }

  /**
   * Removes the marker, durably, before the log appends again: one that came back after a power
   * loss would cut the batches synced after it.
   */
  async #dropMarker(): Promise<void> {
    await this.#env.disk.remove(this.#markerPath);
    await this.#env.disk.syncDir(this.#opts.dir);
  }

  /**
   * Names a truncation or reset under way: written durably before it changes any file, removed
   * once it is done. An open that finds it finishes the operation first, so a crash leaves the log
   * as it was before the operation or after it, never part way.
   */
  get #markerPath(): string {
    return rewindFile(this.#opts.dir);
  }

  /**
   * Where a truncation at `offset` cuts: the segment holding it and the byte its batch starts at,
   * or null if there is nothing after it to drop.
   */
  async #truncationPoint(offset: number): Promise<{ seg: Segment; at: CutPoint } | null> {
    if (!Number.isSafeInteger(offset) || offset < this.logStartOffset || offset > this.#visible) {
      throw new OffsetOutOfRange(offset, this.logStartOffset, this.#visible);
    }
    if (this.#damage !== null && offset > this.#damage.offset) {
      throw this.#damagedError(`Cannot truncate at offset ${offset}`);
    }
    if (this.#unsaved !== null && offset > this.#active.baseOffset) {
      throw new GregorError(
        ErrorCode.STORAGE_ERROR,
        `Cannot truncate ${this.#opts.dir} at offset ${offset}: its offsets from ${this.#active.baseOffset} are held back after a crash on a full disk`,
      );
    }
    if (offset === this.#active.nextOffset && this.#unsaved === null) return null;
    let seg = this.#segmentFor(offset);
    const i = this.#segments.indexOf(seg);
    // A cut where a segment starts goes at the end of the one before: no empty segment is left
    // behind, so the active segment holds the newest batch (which retention never drops).
    if (offset === seg.baseOffset && i > 0) seg = this.#segments[i - 1] as Segment;
    const byte = await this.#positionOf(seg, offset);
    const index = seg.index.truncatedBefore(offset - seg.baseOffset);
    const now = this.#env.clock.wallMs();
    return {
      seg,
      at: {
        offset,
        byte,
        index,
        maxTimestamp: index.times[index.times.length - 1] ?? -1,
        createdAtMs: seg.createdAtMs > 0 ? seg.createdAtMs : now,
      },
    };
  }

  /**
   * The byte of `seg` where the batch starting at `offset` starts, found by walking headers from
   * the index entry before it; the walk is done again when a header does not check out.
   *
   * @throws {OffsetInsideBatch} if `offset` falls inside a batch
   */
  async #positionOf(seg: Segment, offset: number): Promise<number> {
    if (offset === seg.baseOffset) return 0;
    const end = seg === this.#active ? this.#visibleBytes : seg.sizeBytes;
    let why = "";
    for (let attempt = 0; attempt <= REREADS; attempt++) {
      const start = seg.index.lookup(offset - seg.baseOffset);
      let pos = start.position;
      let expected = seg.baseOffset + start.rel;
      while (pos < end) {
        const h = await this.#header(seg, pos, expected);
        if (typeof h === "string") {
          why = h;
          break;
        }
        if (h.baseOffset === offset) return pos;
        const last = h.baseOffset + h.recordCount - 1;
        if (last >= offset) throw new OffsetInsideBatch(offset, h.baseOffset, last);
        expected = last + 1;
        pos += h.sizeBytes;
      }
      // The segment's batches end right at the offset (one cut short by a crash mid-truncation).
      if (pos >= end && expected === offset) return pos;
      why ||= `no batch starts at offset ${offset} below byte ${end}`;
    }
    throw new GregorError(
      ErrorCode.STORAGE_ERROR,
      `Cannot truncate ${this.#path(seg.baseOffset, "log")} at offset ${offset}: ${why}`,
    );
  }

  /** Syncs and closes the files. A second call waits for the first (two owners may both close). */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  #closing: Promise<void> | null = null;

  async #close(): Promise<void> {
    this.#stop.abort();
    while (this.#writing) await this.#env.clock.sleep(1);
    await this.#syncing;
    if (this.#failed === null && this.#unsaved === null && (await this.#sync(this.#active))) {
      // Everything is on disk: tell the next open it need not rewrite the active segment.
      // Written after the last sync: the next open may trust the page cache.
      const marker = await this.#env.disk.open(cleanShutdownFile(this.#opts.dir), {
        create: true,
      });
      marker.close();
      await this.#env.disk.syncDir(this.#opts.dir);
    }
    for (const s of this.#segments) s.file.close();
  }
}

/** The batch at `off` has the base offset and size its header walk found, and a good checksum. */
/** A batch found by the header walk: where it is, its size and base, and its header as read. */
interface Walked {
  pos: number;
  size: number;
  base: number;
  head: Uint8Array;
}

/** The bytes of the header that its checksum does not cover: offset, length, epoch, magic. */
const UNCHECKED_HEADER_BYTES = 21;

/**
 * The batch at `off` is whole and intact: its checksum holds, and the bytes the checksum does not
 * cover match the header walk's own, separate read of them (a flipped bit shows as a difference).
 */
function batchOk(bytes: Uint8Array, off: number, h: Walked): boolean {
  for (let i = 0; i < UNCHECKED_HEADER_BYTES; i++) {
    if (bytes[off + i] !== h.head[i]) return false;
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset + off, BATCH_HEADER_BYTES);
  const base = dv.getInt32(0) * 0x1_0000_0000 + dv.getUint32(4);
  if (base !== h.base || dv.getInt32(8) + 12 !== h.size) return false;
  return crc32c(bytes.subarray(off + 21, off + h.size)) === dv.getUint32(17);
}

async function createSegment(env: Env, opts: FileLogOptions, base: number): Promise<Segment> {
  // An earlier roll that failed half way may have left this (empty) file behind: reuse it.
  const file = await env.disk.open(segmentFile(opts.dir, base, "log"), { create: true });
  await file.truncate(0);
  await env.disk.syncDir(opts.dir);
  return {
    baseOffset: base,
    nextOffset: base,
    sizeBytes: 0,
    maxTimestamp: -1,
    createdAtMs: env.clock.wallMs(),
    file,
    index: new SegmentIndex(opts.indexIntervalBytes),
    sealed: false,
  };
}

/** Damage found in one segment: where its first bad batch starts, and why. */
interface SegmentDamage {
  segmentBase: number;
  offset: number;
  byte: number;
  reason: string;
}

/**
 * A sealed segment: its indexes if they check out, else rebuilt by a scan; and its damage, if its
 * batches do not run whole up to the next segment's base offset. With good indexes only the tail
 * from the last index entry is checked (a few KiB), which finds a truncated segment; damage
 * further back is found by the first read that meets it.
 */
async function openSealed(
  env: Env,
  opts: FileLogOptions,
  base: number,
  next: number,
): Promise<{ segment: Segment; damage: SegmentDamage | null }> {
  const name = segmentName(base, "log");
  const file = await env.disk.open(segmentFile(opts.dir, base, "log"));
  const size = await file.size();
  let index: SegmentIndex | null = null;
  try {
    index = SegmentIndex.decode(
      await readFile(env.disk, segmentFile(opts.dir, base, "index")),
      await readFile(env.disk, segmentFile(opts.dir, base, "timeindex")),
      opts.indexIntervalBytes,
      size,
    );
  } catch {
    index = null;
  }
  let maxTimestamp = index?.times[index.times.length - 1] ?? -1;
  let scan: ScanResult;
  if (index !== null) {
    const last = index.lookup(Number.MAX_SAFE_INTEGER);
    scan = await scanSegment(file, base, opts.indexIntervalBytes, SCAN_REREADS, {
      pos: last.position,
      offset: base + last.rel,
    });
  } else {
    scan = await scanSegment(file, base, opts.indexIntervalBytes, SCAN_REREADS);
    const rebuilt = scan.index;
    index = rebuilt;
    maxTimestamp = scan.maxTimestamp;
    opts.onReport?.(`Rebuilt the indexes of ${name} in ${opts.dir}`);
    try {
      await writeFileAtomic(
        env.disk,
        segmentFile(opts.dir, base, "index"),
        rebuilt.encodeOffsets(),
      );
      await writeFileAtomic(
        env.disk,
        segmentFile(opts.dir, base, "timeindex"),
        rebuilt.encodeTimes(),
      );
    } catch (err) {
      // A full disk, say: the index in memory serves, and the next open rebuilds it again.
      opts.onReport?.(
        `Cannot write the rebuilt indexes of ${name} in ${opts.dir}: ${(err as Error).message}`,
      );
    }
  }
  let damage: SegmentDamage | null = null;
  if (scan.stoppedBecause !== null || scan.nextOffset !== next) {
    damage = {
      segmentBase: base,
      offset: Math.min(scan.nextOffset, next),
      byte: scan.validBytes,
      reason: scan.stoppedBecause ??
        `the segment ends at offset ${scan.nextOffset}, but the next one starts at ${next}`,
    };
  }
  const segment: Segment = {
    baseOffset: base,
    nextOffset: next,
    sizeBytes: damage === null ? size : scan.validBytes,
    maxTimestamp,
    createdAtMs: 0,
    file,
    index,
    sealed: true,
  };
  return { segment, damage };
}

/** The active segment: scanned, torn tail truncated and synced. */
async function recoverActive(
  env: Env,
  opts: FileLogOptions,
  base: number,
  truncated: { bytes: number },
): Promise<{ segment: Segment; unsaved: ScanResult | null }> {
  const path = segmentFile(opts.dir, base, "log");
  const file = await env.disk.open(path);
  const size = await file.size();
  const scan = await scanSegment(file, base, opts.indexIntervalBytes, SCAN_REREADS);
  if (scan.validBytes < size) {
    truncated.bytes += size - scan.validBytes;
    opts.onReport?.(
      `Truncated ${size - scan.validBytes} bytes from ${
        segmentName(base, "log")
      } in ${opts.dir}: ${scan.stoppedBecause}`,
    );
  }
  // Cutting the torn tail needs no free space, so it is done in place in either case.
  if (scan.validBytes < size) await file.truncate(scan.validBytes);
  const segment: Segment = {
    baseOffset: base,
    nextOffset: scan.nextOffset,
    sizeBytes: scan.validBytes,
    maxTimestamp: scan.maxTimestamp,
    createdAtMs: scan.firstTimestamp ?? env.clock.wallMs(),
    file,
    index: scan.index,
    sealed: false,
  };
  const clean = cleanShutdownFile(opts.dir);
  if (await exists(env, clean)) {
    // The last run closed cleanly after a successful sync: what the file shows is on disk.
    await env.disk.remove(clean);
    await env.disk.syncDir(opts.dir);
    await file.sync();
    return { segment, unsaved: null };
  }
  try {
    segment.file = await rewriteAfterCrash(env, opts.dir, segment, scan);
    return { segment, unsaved: null };
  } catch (err) {
    if (!(err instanceof NoSpace)) throw err;
    // A full disk: the log opens with this segment's records held back (see FileLog.#unsaved).
    await file.sync();
    opts.onReport?.(
      `No free space to make ${path} durable after a crash (${err.message}); its offsets ` +
        `${base}..${scan.nextOffset - 1} are held back, and appends refused, until there is room`,
    );
    return { segment, unsaved: scan };
  }
}

/**
 * After a crash the page cache may show bytes whose fsync failed and which the disk never got: the
 * kernel marks such pages clean, so a later sync would not write them, and a power loss later would
 * take them (and every record acknowledged after them). So what recovery accepted is copied into a
 * fresh file, synced, and renamed over the segment; the copy is returned. The bytes are never
 * rewritten in place: a power loss during an overwrite may leave sectors that held acknowledged,
 * durable records garbled. Each batch is verified again as it is copied: a bit flipped on this
 * read must not be written down as the truth.
 *
 * @throws {NoSpace} if the disk has no room for the copy (nothing is left behind).
 */
async function rewriteAfterCrash(
  env: Env,
  dir: string,
  seg: Segment,
  scan: ScanResult,
): Promise<File> {
  const path = segmentFile(dir, seg.baseOffset, "log");
  const tmp = segmentCopyFile(path);
  let copy: File | null = null;
  try {
    copy = await env.disk.open(tmp, { create: true });
    await copy.truncate(0);
    let chunk: Uint8Array[] = [];
    let chunkBytes = 0;
    let written = 0;
    const flush = async () => {
      const buf = new Uint8Array(chunkBytes);
      let off = 0;
      for (const b of chunk) {
        buf.set(b, off);
        off += b.length;
      }
      await (copy as File).writeAt(written, buf);
      written += chunkBytes;
      chunk = [];
      chunkBytes = 0;
    };
    for (const b of scan.batches) {
      chunk.push(await readVerifiedBatch(seg.file, b, REREADS));
      chunkBytes += b.size;
      if (chunkBytes >= RECOVERY_COPY_BYTES) await flush();
    }
    if (chunkBytes > 0) await flush();
    await copy.sync();
  } catch (err) {
    copy?.close();
    if (err instanceof NoSpace) await env.disk.remove(tmp).catch(ignoreNotFound);
    throw err;
  }
  await env.disk.rename(tmp, path);
  await env.disk.syncDir(dir);
  seg.file.close();
  return copy;
}

function ignoreNotFound(err: unknown): void {
  if (!(err instanceof NotFound)) throw err;
}

async function exists(env: Env, path: string): Promise<boolean> {
  try {
    (await env.disk.open(path)).close();
    return true;
  } catch (err) {
    if (err instanceof NotFound) return false;
    throw err;
  }
}

/** The truncation or reset a crash interrupted in `dir`, or null. */
async function readRewind(env: Env, dir: string): Promise<Rewind | null> {
  let text: string;
  try {
    text = await readChecked(env.disk, rewindFile(dir));
  } catch (err) {
    if (err instanceof NotFound) return null;
    throw err;
  }
  const m = /^(truncate|reset) (\d+)$/.exec(text);
  const offset = Number(m?.[2]);
  if (m === null || !Number.isSafeInteger(offset)) {
    throw new Error(
      `Cannot open the log in ${dir}: ${rewindFile(dir)} names no truncation or reset ` +
        `(${JSON.stringify(text.slice(0, 40))})`,
    );
  }
  return { kind: m[1] as Rewind["kind"], offset };
}
