// The durable write-ahead log of one Raft group: hard state, snapshot and entries in segmented,
// checksummed files, so a node restarts from exactly what its Readys made durable.
//
// On disk: a directory of segment files `<20-digit sequence>.wal`, each a run of frames. A frame is
// one save (or one checkpoint), so a save is replayed whole or not at all:
//
//   header (28 bytes, big-endian)                       payload (payloadBytes)
//   magic u32 "GWL1" | payloadBytes u32 | seq i64 |      records, in this order:
//   flags u32 | payloadCrc u32 | headerCrc u32           SNAPSHOT? ENTRY* HARD_STATE?
//
// `headerCrc` is CRC-32C of the 24 header bytes before it, `payloadCrc` of the payload. Frames are
// numbered by `seq` without gaps across segments; a segment is named by its first frame's seq.
// Records: SNAPSHOT (3) index i64, term i64, voter count u16, voters (u16 length + UTF-8), learner
// count u16, learners (u16 length + UTF-8), data (u32 length + bytes); ENTRY (1) index i64, term i64, kind u8 (0 normal, 1 config, 2 no-op), data
// (u32 length + bytes); HARD_STATE (2) term i64, commit i64, has-vote u8, vote (u16 length + UTF-8).
// A frame replays like `MemoryStorage.save`: a snapshot replaces the log, the first entry replaces
// the stored one at its index and everything after it (a truncation), a hard state replaces the last.
//
// A checkpoint (flag bit 0) holds a snapshot, all entries after it and the hard state: the whole
// state. It always starts a new segment, written by `compact`, by a save that installs a snapshot
// and by every `open`. Replay starts at the newest segment that begins with an intact checkpoint;
// older segments are obsolete and deleted once a newer checkpoint is durable, so a crash part way
// through deleting them leaves a set that still replays. A frame that fails its checks ends the log
// only if no intact, newer frame follows it anywhere (a torn tail: dropped and reported); else it is
// damage in the middle and `open` refuses, naming the file and byte.

import type { Disk, File } from "../../io/types.ts";
import { mkdirDurable } from "../../io/util.ts";
import { crc32c } from "../../protocol/crc32c.ts";
import { MalformedError } from "../../protocol/errors.ts";
import { Reader, Writer } from "../../protocol/wire.ts";
import { parseWalSegmentName, walSegmentFile } from "../../storage/layout.ts";
import { assert } from "../../util/assert.ts";
import { configProblem, votersProblem } from "./codec.ts";
import { INDEX_MAX, LEARNERS_MAX, TERM_MAX, VOTERS_MAX } from "./limits.ts";
import type { Entry, EntryKind, HardState, PersistentState, Ready, Snapshot } from "./types.ts";

/** Roll to a new segment once the active one would grow past this, by default. */
export const WAL_SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Smallest `segmentBytes` accepted. */
export const WAL_SEGMENT_BYTES_MIN = 1024;
/** Bytes of a frame header. */
export const WAL_FRAME_HEADER_BYTES = 28;
/** Largest frame payload: one save or checkpoint. A bigger state must be compacted first. */
export const WAL_FRAME_PAYLOAD_BYTES_MAX = 1024 * 1024 * 1024;
/** Reads of a frame that fails its checksum before it counts as damaged (reads may flip bits). */
export const WAL_READ_ATTEMPTS_MAX = 9;

/** "GWL1": the magic of a frame, version 1 of the format. */
const FRAME_MAGIC = 0x47574c31;
/** Frame flag: the frame holds the whole state (snapshot, entries after it, hard state). */
const FLAG_CHECKPOINT = 1;
const FLAGS_KNOWN = FLAG_CHECKPOINT;
/** Bytes read per step when searching past a damaged frame for intact ones. */
const SCAN_CHUNK_BYTES = 1024 * 1024;

const RECORD_ENTRY = 1;
const RECORD_HARD_STATE = 2;
const RECORD_SNAPSHOT = 3;
const KIND_CODES: Readonly<Record<EntryKind, number>> = { normal: 0, config: 1, noop: 2 };
const KINDS_BY_CODE: readonly EntryKind[] = ["normal", "config", "noop"];
/** Bytes of a record besides its variable parts (strings, data). */
const ENTRY_RECORD_BYTES = 1 + 8 + 8 + 1 + 4;
const HARD_STATE_RECORD_BYTES = 1 + 8 + 8 + 1 + 2;
const SNAPSHOT_RECORD_BYTES = 1 + 8 + 8 + 2 + 2 + 4;
/** UTF-8 bytes per UTF-16 code unit at most: sizes strings without encoding them twice. */
const UTF8_BYTES_PER_UNIT_MAX = 3;
const EMPTY = new Uint8Array(0);

/** Options of `RaftWal.open`. */
export interface RaftWalOptions {
  /** Roll to a new segment once the active one would grow past this. Default 64 MiB. */
  segmentBytes?: number;
  /** Loud reports: torn tails dropped, obsolete segments that could not be deleted. */
  onReport?: (msg: string) => void;
}

/** One segment file, open. */
interface Segment {
  /** The seq of its first frame (its name). */
  readonly seq: number;
  readonly path: string;
  readonly file: File;
  sizeBytes: number;
}

/** What one frame changes, applied like `MemoryStorage.save`. */
interface Change {
  readonly snapshot: Snapshot | null;
  readonly entries: readonly Entry[];
  readonly hardState: HardState | null;
}

/** The state kept in memory: what `state()` returns, and nothing more. */
interface State {
  hardState: HardState;
  snapshot: Snapshot;
  /** Entries after `snapshot.index`, contiguous. */
  entries: Entry[];
}

interface FrameHeader {
  readonly payloadBytes: number;
  readonly seq: number;
  readonly flags: number;
  readonly payloadCrc: number;
}

/** An intact frame read back. */
interface Frame extends FrameHeader {
  readonly payload: Uint8Array;
  /** Header and payload. */
  readonly bytes: number;
}

/** A frame, or why there is none at that place and where to look for the next one. */
type FrameRead = { ok: true; frame: Frame } | { ok: false; why: string; skipTo: number };

/**
 * The durable state of one Raft group's node, the file-backed twin of `MemoryStorage`. Open with
 * `RaftWal.open`, restart the RaftNode from `state()`, then `save` every Ready before advancing it.
 */
export class RaftWal {
  readonly #disk: Disk;
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #report: (msg: string) => void;
  /** Ascending by seq; the last one is appended to. */
  #segments: Segment[] = [];
  #nextSeq: number;
  #state: State;
  /** The last save or compaction queued; the next one starts after it settles. */
  #chain: Promise<void> = Promise.resolve();
  /** Why the WAL stopped accepting writes (a failed fsync may have lost data), or null. */
  #failed: string | null = null;
  #closed = false;

  private constructor(disk: Disk, dir: string, opts: Required<RaftWalOptions>, state: State) {
    this.#disk = disk;
    this.#dir = dir;
    this.#segmentBytes = opts.segmentBytes;
    this.#report = opts.onReport;
    this.#state = state;
    this.#nextSeq = 0;
  }

  /**
   * Opens the WAL in `dir`, creating it if absent, and recovers it: every frame's checksums are
   * verified (a read that fails them is tried again), a torn tail is dropped (and reported), and the
   * recovered state is written as a fresh checkpoint, so that everything it holds is durable even
   * if the page cache showed writes whose fsync had failed.
   * @param initialVoters the voters of a group this node bootstraps (empty for a node that joins);
   *   used only when the WAL is new.
   * @throws Error naming the file and byte when a damaged frame is followed by intact ones: that
   *   is corruption of acknowledged data, never dropped silently.
   */
  static async open(
    disk: Disk,
    dir: string,
    initialVoters: readonly string[],
    opts: RaftWalOptions = {},
  ): Promise<RaftWal> {
    const segmentBytes = opts.segmentBytes ?? WAL_SEGMENT_BYTES_DEFAULT;
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes < WAL_SEGMENT_BYTES_MIN) {
      throw new RangeError(
        `segmentBytes ${segmentBytes} is not an integer >= ${WAL_SEGMENT_BYTES_MIN}`,
      );
    }
    const voters = [...initialVoters].sort();
    if (voters.length > 0 && votersProblem(voters) !== null) {
      throw new RangeError(`Invalid bootstrap voters: ${votersProblem(voters)}`);
    }
    const report = opts.onReport ?? (() => {});
    await mkdirDurable(disk, dir);
    const segments = await openSegments(disk, dir);
    let recovered: { state: State; nextSeq: number };
    try {
      recovered = await recover(dir, segments, initialState(voters), report);
    } catch (err) {
      for (const s of segments) s.file.close();
      throw err;
    }
    const wal = new RaftWal(disk, dir, { segmentBytes, onReport: report }, recovered.state);
    wal.#segments = segments;
    wal.#nextSeq = recovered.nextSeq;
    try {
      await wal.#checkpoint(recovered.state);
    } catch (err) {
      wal.close();
      throw err;
    }
    return wal;
  }

  /** What a RaftNode restarts from: the hard state, the snapshot and the entries after it. */
  state(): PersistentState {
    const s = this.#state;
    return { hardState: s.hardState, snapshot: s.snapshot, entries: [...s.entries] };
  }

  /**
   * Makes one Ready durable: its snapshot (which replaces the whole log), then its entries (the
   * first replaces the stored entry at its index and everything after), then its hard state.
   * Resolves once all of it is fsynced, files and directory. Calls run one at a time, in order.
   * @throws RangeError if the entries do not follow on from the stored log (nothing is written);
   *   Error if the disk refused: after a failed fsync the WAL refuses every later write.
   */
  save(ready: Ready): Promise<void> {
    return this.#enqueue(() => this.#save(ready));
  }

  /**
   * Log compaction: `snapshot` stands for every entry through `snapshot.index`, which must be
   * stored with `snapshot.term`; those entries are dropped. Durable before it resolves; old segments
   * are deleted only after the checkpoint that replaces them is. A snapshot at or below the current
   * one changes nothing.
   */
  compact(snapshot: Snapshot): Promise<void> {
    return this.#enqueue(() => this.#compact(snapshot));
  }

  /** Bytes of the segment files. */
  get sizeBytes(): number {
    let n = 0;
    for (const s of this.#segments) n += s.sizeBytes;
    return n;
  }

  /** Segment files. */
  get segmentCount(): number {
    return this.#segments.length;
  }

  /** Why the WAL refuses writes, or null while it accepts them. */
  get failure(): string | null {
    return this.#failed;
  }

  /** Releases the files. Later saves reject; one under way may fail. Does not sync: saves did. */
  close(): void {
    this.#closed = true;
    for (const s of this.#segments) s.file.close();
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    const run = (): Promise<void> => {
      if (this.#closed) return Promise.reject(new Error(`Raft WAL ${this.#dir} is closed`));
      if (this.#failed !== null) {
        return Promise.reject(
          new Error(`Raft WAL ${this.#dir} failed (${this.#failed}); refusing to write`),
        );
      }
      return op();
    };
    const done = this.#chain.then(run);
    this.#chain = done.catch(() => {});
    return done;
  }

  async #save(ready: Ready): Promise<void> {
    const change: Change = {
      snapshot: ready.snapshot,
      entries: ready.entries,
      hardState: ready.hardState,
    };
    checkChange(this.#state, change);
    if (change.snapshot !== null) {
      // A snapshot replaces the whole log: write the new state as a checkpoint, so every older
      // segment becomes obsolete at once.
      await this.#checkpoint({
        snapshot: change.snapshot,
        entries: [...change.entries],
        hardState: change.hardState ?? this.#state.hardState,
      });
      return;
    }
    if (change.entries.length === 0 && change.hardState === null) return;
    await this.#append(encodeFrame(this.#nextSeq, 0, change));
    applyChange(this.#state, change);
  }

  async #compact(snapshot: Snapshot): Promise<void> {
    const s = this.#state;
    if (snapshot.index <= s.snapshot.index) return;
    const stored = s.entries[snapshot.index - s.snapshot.index - 1];
    assert(
      stored !== undefined && stored.term === snapshot.term,
      () => `Cannot compact through ${snapshot.index}: not stored with term ${snapshot.term}`,
    );
    await this.#checkpoint({
      snapshot,
      entries: s.entries.slice(snapshot.index - s.snapshot.index),
      hardState: s.hardState,
    });
  }

  get #active(): Segment {
    return this.#segments[this.#segments.length - 1] as Segment;
  }

  #path(seq: number): string {
    return walSegmentFile(this.#dir, seq);
  }

  /** Appends one frame to the active segment (rolling first if it is full) and fsyncs it. */
  async #append(frame: Uint8Array): Promise<void> {
    const active = this.#active;
    if (active.sizeBytes > 0 && active.sizeBytes + frame.length > this.#segmentBytes) {
      await this.#roll();
    }
    const seg = this.#active;
    const pos = seg.sizeBytes;
    try {
      await seg.file.writeAt(pos, frame);
    } catch (err) {
      // A failed write may have left a prefix: cut it off so nothing is ever appended after it.
      await seg.file.truncate(pos).catch((e) =>
        this.#fail(`cannot cut a failed write off ${seg.path}: ${messageOf(e)}`)
      );
      throw new Error(`Cannot append to Raft WAL ${seg.path}: ${messageOf(err)}`);
    }
    await this.#durably(seg.file.sync(), `fsync of ${seg.path}`);
    seg.sizeBytes += frame.length;
    this.#nextSeq++;
  }

  /** Starts a new, empty active segment named by the next frame's seq. */
  async #roll(): Promise<void> {
    const seq = this.#nextSeq;
    const path = this.#path(seq);
    const file = await this.#disk.open(path, { create: true });
    try {
      // An earlier attempt may have left a file by this name.
      await file.truncate(0);
    } catch (err) {
      file.close();
      throw new Error(`Cannot start Raft WAL segment ${path}: ${messageOf(err)}`);
    }
    this.#segments.push({ seq, path, file, sizeBytes: 0 });
    await this.#durably(this.#disk.syncDir(this.#dir), `fsync of directory ${this.#dir}`);
  }

  /**
   * Writes `state` whole as the first frame of a new segment, makes it durable, takes it as the
   * state, then deletes every older segment.
   */
  async #checkpoint(state: State): Promise<void> {
    const seq = this.#nextSeq;
    const frame = encodeFrame(seq, FLAG_CHECKPOINT, state);
    const path = this.#path(seq);
    // Only an empty segment (a roll whose first write failed) or, at open, a damaged one can hold
    // the next seq's name: it is replaced.
    const same = this.#segments.findIndex((s) => s.path === path);
    if (same >= 0) {
      (this.#segments[same] as Segment).file.close();
      this.#segments.splice(same, 1);
    }
    const file = await this.#disk.open(path, { create: true });
    try {
      await file.truncate(0);
      await file.writeAt(0, frame);
    } catch (err) {
      file.close();
      // Left behind, a half-written newest segment would end the log on the next open.
      await this.#disk.remove(path).catch((e) =>
        this.#fail(`cannot remove the failed checkpoint ${path}: ${messageOf(e)}`)
      );
      await this.#durably(this.#disk.syncDir(this.#dir), `fsync of directory ${this.#dir}`);
      throw new Error(`Cannot write Raft WAL checkpoint ${path}: ${messageOf(err)}`);
    }
    try {
      await this.#durably(file.sync(), `fsync of ${path}`);
      await this.#durably(this.#disk.syncDir(this.#dir), `fsync of directory ${this.#dir}`);
    } catch (err) {
      file.close();
      throw err;
    }
    const old = this.#segments;
    this.#segments = [{ seq, path, file, sizeBytes: frame.length }];
    this.#nextSeq = seq + 1;
    this.#state = state;
    // Oldest first, though any subset left by a crash replays the same: from the checkpoint.
    let removed = 0;
    for (const s of old) {
      s.file.close();
      try {
        await this.#disk.remove(s.path);
        removed++;
      } catch (err) {
        this.#report(`Cannot delete obsolete Raft WAL segment ${s.path}: ${messageOf(err)}`);
      }
    }
    if (removed > 0) {
      await this.#durably(this.#disk.syncDir(this.#dir), `fsync of directory ${this.#dir}`);
    }
  }

  /** Awaits an fsync; a failure stops the WAL for good, since it may have lost dirty data. */
  async #durably(op: Promise<void>, what: string): Promise<void> {
    try {
      await op;
    } catch (err) {
      this.#fail(`${what} failed: ${messageOf(err)}`);
      throw new Error(`Raft WAL ${this.#dir} failed: ${what} failed: ${messageOf(err)}`);
    }
  }

  #fail(reason: string): void {
    if (this.#failed !== null) return;
    this.#failed = reason;
    this.#report(`Raft WAL ${this.#dir} stops accepting writes: ${reason}`);
  }
}

function initialState(voters: readonly string[]): State {
  return {
    hardState: { term: 0, vote: null, commit: 0 },
    snapshot: { index: 0, term: 0, voters, learners: [], data: EMPTY },
    entries: [],
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Throws RangeError unless `c` applies to `s` the way `MemoryStorage.save` would accept it. */
function checkChange(s: State, c: Change): void {
  if (c.snapshot !== null) checkSnapshot(c.snapshot);
  const base = c.snapshot ?? s.snapshot;
  const last = c.snapshot !== null ? base.index : s.snapshot.index + s.entries.length;
  const first = c.entries[0];
  if (first !== undefined && (first.index <= base.index || first.index > last + 1)) {
    throw new RangeError(
      `Cannot append at ${first.index}: storage holds ${base.index + 1}..${last}`,
    );
  }
  for (const [i, e] of c.entries.entries()) {
    if (e.index !== (first as Entry).index + i) {
      throw new RangeError(`Entries are not contiguous at ${e.index}`);
    }
    if (!(e.index <= INDEX_MAX) || !(e.term >= 1 && e.term <= TERM_MAX)) {
      throw new RangeError(`Entry ${e.index} has term ${e.term}, outside 1..${TERM_MAX}`);
    }
  }
  const hs = c.hardState;
  if (hs !== null && (!isCount(hs.term, TERM_MAX) || !isCount(hs.commit, INDEX_MAX))) {
    throw new RangeError(`Hard state term ${hs.term}, commit ${hs.commit} is out of range`);
  }
}

function checkSnapshot(s: Snapshot): void {
  if (!isCount(s.index, INDEX_MAX) || !isCount(s.term, TERM_MAX)) {
    throw new RangeError(`Snapshot index ${s.index}, term ${s.term} is out of range`);
  }
  // Only a node that was never a member has no voters, and then no learners either.
  const empty = s.voters.length === 0 && s.learners.length === 0;
  const problem = empty ? null : configProblem(s);
  if (problem !== null) throw new RangeError(`Snapshot config: ${problem}`);
}

function isCount(n: number, max: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n <= max;
}

/** Applies a change `checkChange` accepted. */
function applyChange(s: State, c: Change): void {
  if (c.snapshot !== null) {
    s.snapshot = c.snapshot;
    s.entries = [];
  }
  const first = c.entries[0];
  if (first !== undefined) {
    s.entries.length = first.index - s.snapshot.index - 1;
    for (const e of c.entries) s.entries.push(e);
  }
  if (c.hardState !== null) s.hardState = c.hardState;
}

// ---- frames ----------------------------------------------------------------------------------

/** A frame holding `c`; throws RangeError if it would be over WAL_FRAME_PAYLOAD_BYTES_MAX. */
function encodeFrame(seq: number, flags: number, c: Change): Uint8Array {
  let estimate = 0;
  if (c.snapshot !== null) {
    estimate += SNAPSHOT_RECORD_BYTES + c.snapshot.data.length;
    for (const v of [...c.snapshot.voters, ...c.snapshot.learners]) {
      estimate += 2 + v.length * UTF8_BYTES_PER_UNIT_MAX;
    }
  }
  for (const e of c.entries) estimate += ENTRY_RECORD_BYTES + e.data.length;
  if (c.hardState !== null) {
    estimate += HARD_STATE_RECORD_BYTES + (c.hardState.vote?.length ?? 0) * UTF8_BYTES_PER_UNIT_MAX;
  }
  const w = new Writer(WAL_FRAME_HEADER_BYTES + estimate);
  w.u32(FRAME_MAGIC).u32(0).i64(seq).u32(flags).u32(0).u32(0);
  if (c.snapshot !== null) {
    const s = c.snapshot;
    w.u8(RECORD_SNAPSHOT).i64(s.index).i64(s.term).u16(s.voters.length);
    for (const v of s.voters) w.string(v);
    w.u16(s.learners.length);
    for (const v of s.learners) w.string(v);
    w.bytes(s.data);
  }
  for (const e of c.entries) {
    w.u8(RECORD_ENTRY).i64(e.index).i64(e.term).u8(KIND_CODES[e.kind]).bytes(e.data);
  }
  if (c.hardState !== null) {
    const hs = c.hardState;
    w.u8(RECORD_HARD_STATE).i64(hs.term).i64(hs.commit).u8(hs.vote === null ? 0 : 1);
    if (hs.vote !== null) w.string(hs.vote);
  }
  const frame = w.finish();
  const payloadBytes = frame.length - WAL_FRAME_HEADER_BYTES;
  if (payloadBytes > WAL_FRAME_PAYLOAD_BYTES_MAX) {
    throw new RangeError(
      `A Raft WAL frame of ${payloadBytes} bytes is over ${WAL_FRAME_PAYLOAD_BYTES_MAX}`,
    );
  }
  const dv = new DataView(frame.buffer, frame.byteOffset, WAL_FRAME_HEADER_BYTES);
  dv.setUint32(4, payloadBytes);
  dv.setUint32(20, crc32c(frame.subarray(WAL_FRAME_HEADER_BYTES)));
  dv.setUint32(24, crc32c(frame.subarray(0, 24)));
  return frame;
}

/** The header in `buf` (at least WAL_FRAME_HEADER_BYTES), or why it is not one. */
function parseHeader(buf: Uint8Array): FrameHeader | string {
  const dv = new DataView(buf.buffer, buf.byteOffset, WAL_FRAME_HEADER_BYTES);
  if (dv.getUint32(0) !== FRAME_MAGIC) return "no frame magic";
  if (crc32c(buf.subarray(0, 24)) !== dv.getUint32(24)) return "header checksum mismatch";
  const payloadBytes = dv.getUint32(4);
  const seq = dv.getInt32(8) * 0x1_0000_0000 + dv.getUint32(12);
  const flags = dv.getUint32(16);
  if (payloadBytes > WAL_FRAME_PAYLOAD_BYTES_MAX || !isCount(seq, Number.MAX_SAFE_INTEGER)) {
    return `header fields out of range (payload ${payloadBytes} bytes, seq ${seq})`;
  }
  if ((flags & ~FLAGS_KNOWN) !== 0) return `unknown flags ${flags}`;
  return { payloadBytes, seq, flags, payloadCrc: dv.getUint32(20) };
}

/** Reads `n` bytes at `pos` (fewer only at end of file); I/O errors are retried, then thrown. */
async function readBytes(seg: Segment, pos: number, n: number): Promise<Uint8Array> {
  for (let attempt = 1;; attempt++) {
    const buf = new Uint8Array(n);
    try {
      const got = await seg.file.readAt(pos, buf);
      return got === n ? buf : buf.subarray(0, got);
    } catch (err) {
      if (attempt >= WAL_READ_ATTEMPTS_MAX) {
        throw new Error(`Cannot read ${seg.path} at byte ${pos}: ${messageOf(err)}`);
      }
    }
  }
}

/**
 * The intact frame at `pos` of `seg`, verified: a checksum that fails is read again, up to
 * WAL_READ_ATTEMPTS_MAX times, before the frame counts as damaged.
 */
async function readFrame(seg: Segment, pos: number): Promise<FrameRead> {
  const size = seg.sizeBytes;
  if (pos + WAL_FRAME_HEADER_BYTES > size) {
    return { ok: false, why: `a partial frame header at byte ${pos}`, skipTo: size };
  }
  let header: FrameHeader | string = "unread";
  for (let i = 0; i < WAL_READ_ATTEMPTS_MAX && typeof header === "string"; i++) {
    const buf = await readBytes(seg, pos, WAL_FRAME_HEADER_BYTES);
    if (buf.length === WAL_FRAME_HEADER_BYTES) header = parseHeader(buf);
  }
  if (typeof header === "string") {
    return { ok: false, why: `a damaged frame header at byte ${pos} (${header})`, skipTo: pos + 1 };
  }
  const end = pos + WAL_FRAME_HEADER_BYTES + header.payloadBytes;
  if (end > size) {
    return {
      ok: false,
      why: `frame ${header.seq} at byte ${pos} runs past the end of the file (${end} > ${size})`,
      skipTo: end,
    };
  }
  for (let i = 0; i < WAL_READ_ATTEMPTS_MAX; i++) {
    const payload = await readBytes(seg, pos + WAL_FRAME_HEADER_BYTES, header.payloadBytes);
    if (payload.length === header.payloadBytes && crc32c(payload) === header.payloadCrc) {
      return { ok: true, frame: { ...header, payload, bytes: end - pos } };
    }
  }
  return {
    ok: false,
    why: `frame ${header.seq} at byte ${pos} fails its payload checksum`,
    skipTo: end,
  };
}

/** Decodes a frame's records; throws MalformedError. */
function decodePayload(payload: Uint8Array, flags: number): Change {
  const r = new Reader(payload);
  let snapshot: Snapshot | null = null;
  const entries: Entry[] = [];
  let hardState: HardState | null = null;
  let rank = 0;
  while (r.remaining > 0) {
    const type = r.u8("record type");
    // Records come in the order they are applied: snapshot, entries, hard state.
    const order = type === RECORD_SNAPSHOT ? 1 : type === RECORD_ENTRY ? 2 : 3;
    if (order < rank || (order === rank && order !== 2)) {
      throw new MalformedError(`record type ${type} is out of order`);
    }
    rank = order;
    if (type === RECORD_SNAPSHOT) snapshot = readSnapshot(r);
    else if (type === RECORD_ENTRY) entries.push(readEntry(r));
    else if (type === RECORD_HARD_STATE) hardState = readHardState(r);
    else throw new MalformedError(`record type ${type} is unknown`);
  }
  if ((flags & FLAG_CHECKPOINT) !== 0 && (snapshot === null || hardState === null)) {
    throw new MalformedError("a checkpoint lacks its snapshot or hard state");
  }
  return { snapshot, entries, hardState };
}

function readCount(r: Reader, max: number, what: string): number {
  const n = r.i64(what);
  if (n < 0 || n > max) throw new MalformedError(`${what} ${n} is not in 0..${max}`);
  return n;
}

function readData(r: Reader, what: string): Uint8Array {
  const data = r.bytes(what);
  if (data === null) throw new MalformedError(`${what} is null`);
  // A copy, so one kept entry does not pin its whole frame in memory.
  return data.slice();
}

function readSnapshot(r: Reader): Snapshot {
  const index = readCount(r, INDEX_MAX, "snapshot index");
  const term = readCount(r, TERM_MAX, "snapshot term");
  const n = r.u16("snapshot voter count");
  if (n > VOTERS_MAX) throw new MalformedError(`snapshot has ${n} voters, over ${VOTERS_MAX}`);
  const voters: string[] = [];
  for (let i = 0; i < n; i++) voters.push(r.string("snapshot voter"));
  const nl = r.u16("snapshot learner count");
  if (nl > LEARNERS_MAX) {
    throw new MalformedError(`snapshot has ${nl} learners, over ${LEARNERS_MAX}`);
  }
  const learners: string[] = [];
  for (let i = 0; i < nl; i++) learners.push(r.string("snapshot learner"));
  return { index, term, voters, learners, data: readData(r, "snapshot data") };
}

function readEntry(r: Reader): Entry {
  const index = readCount(r, INDEX_MAX, "entry index");
  const term = readCount(r, TERM_MAX, "entry term");
  const code = r.u8("entry kind");
  const kind = KINDS_BY_CODE[code];
  if (kind === undefined) throw new MalformedError(`entry kind ${code} is unknown`);
  return { index, term, kind, data: readData(r, "entry data") };
}

function readHardState(r: Reader): HardState {
  const term = readCount(r, TERM_MAX, "hard state term");
  const commit = readCount(r, INDEX_MAX, "hard state commit");
  const hasVote = r.u8("hard state vote flag");
  if (hasVote > 1) throw new MalformedError(`hard state vote flag ${hasVote} is not 0 or 1`);
  return { term, vote: hasVote === 1 ? r.string("hard state vote") : null, commit };
}

// ---- recovery --------------------------------------------------------------------------------

/** Opens every segment file in `dir`, ascending by seq (their names sort that way). */
async function openSegments(disk: Disk, dir: string): Promise<Segment[]> {
  const segments: Segment[] = [];
  try {
    for (const name of await disk.list(dir)) {
      const seq = parseWalSegmentName(name);
      if (seq === null) continue;
      const path = walSegmentFile(dir, seq);
      const seg: Segment = { seq, path, file: await disk.open(path), sizeBytes: 0 };
      segments.push(seg);
      seg.sizeBytes = await seg.file.size();
    }
  } catch (err) {
    for (const s of segments) s.file.close();
    throw err;
  }
  return segments;
}

/** Where replay stopped short: the damaged place, and where intact frames would be looked for. */
interface Damage {
  readonly seg: number;
  readonly pos: number;
  readonly why: string;
  readonly skipTo: number;
}

/**
 * Replays the segments from the newest intact checkpoint. A frame that does not check out ends the
 * log if nothing intact and newer follows it anywhere (a torn tail: dropped and reported);
 * otherwise it is corruption in the middle, and this throws.
 */
async function recover(
  dir: string,
  segments: readonly Segment[],
  initial: State,
  report: (msg: string) => void,
): Promise<{ state: State; nextSeq: number }> {
  let start = -1;
  for (let i = segments.length - 1; i >= 0 && start < 0; i--) {
    const seg = segments[i] as Segment;
    if (seg.sizeBytes === 0) continue;
    const r = await readFrame(seg, 0);
    if (r.ok && (r.frame.flags & FLAG_CHECKPOINT) !== 0 && r.frame.seq === seg.seq) start = i;
  }
  const state = initial;
  let expected = start < 0 ? 0 : (segments[start] as Segment).seq;
  let lastGood = -1;
  let damage: Damage | null = null;
  if (start < 0) {
    const i = segments.findIndex((s) => s.sizeBytes > 0);
    if (i >= 0) {
      damage = { seg: i, pos: 0, why: "no segment begins with an intact checkpoint", skipTo: 0 };
    }
  }
  for (let i = Math.max(start, 0); start >= 0 && i < segments.length && damage === null; i++) {
    const seg = segments[i] as Segment;
    if (seg.sizeBytes > 0 && seg.seq !== expected) {
      damage = { seg: i, pos: 0, why: `it begins at frame ${seg.seq}, not ${expected}`, skipTo: 0 };
      break;
    }
    let pos = 0;
    while (pos < seg.sizeBytes) {
      const r = await readFrame(seg, pos);
      if (!r.ok || r.frame.seq !== expected) {
        damage = r.ok
          ? {
            seg: i,
            pos,
            why: `frame ${r.frame.seq} stands where ${expected} belongs`,
            skipTo: pos,
          }
          : { seg: i, pos, why: r.why, skipTo: r.skipTo };
        break;
      }
      try {
        const change = decodePayload(r.frame.payload, r.frame.flags);
        checkChange(state, change);
        applyChange(state, change);
      } catch (err) {
        throw new Error(
          `Cannot open Raft WAL: frame ${expected} at byte ${pos} of ${seg.path} checks out but ` +
            `cannot be replayed: ${messageOf(err)}`,
        );
      }
      lastGood = expected;
      expected++;
      pos += r.frame.bytes;
    }
  }
  if (damage !== null) {
    const at = segments[damage.seg] as Segment;
    const found = await findFrameAfter(segments, damage, lastGood);
    if (found !== null) {
      throw new Error(
        `Cannot open Raft WAL in ${dir}: ${at.path} is damaged at byte ${damage.pos} ` +
          `(${damage.why}), yet intact frame ${found.seq} follows at byte ${found.pos} of ` +
          `${found.path}; refusing to drop data from the middle of the log`,
      );
    }
    let dropped = at.sizeBytes - damage.pos;
    for (const s of segments.slice(damage.seg + 1)) dropped += s.sizeBytes;
    report(
      `Truncated a torn tail of Raft WAL ${at.path} at byte ${damage.pos}: ${damage.why}; ` +
        `${dropped} bytes dropped`,
    );
  }
  return { state, nextSeq: expected };
}

/**
 * The first intact frame newer than `lastGood` at or after the damage (in its segment, from
 * `skipTo`, then in every later segment), or null. Each chunk is read twice so a bit flipped on one
 * read cannot hide a frame.
 */
async function findFrameAfter(
  segments: readonly Segment[],
  damage: Damage,
  lastGood: number,
): Promise<{ path: string; pos: number; seq: number } | null> {
  for (let i = damage.seg; i < segments.length; i++) {
    const seg = segments[i] as Segment;
    for (
      let chunk = i === damage.seg ? damage.skipTo : 0;
      chunk + WAL_FRAME_HEADER_BYTES <= seg.sizeBytes;
      chunk += SCAN_CHUNK_BYTES
    ) {
      const n = Math.min(SCAN_CHUNK_BYTES + WAL_FRAME_HEADER_BYTES - 1, seg.sizeBytes - chunk);
      const candidates = new Set<number>();
      for (let read = 0; read < 2; read++) {
        const buf = await readBytes(seg, chunk, n);
        for (let q = 0; q + WAL_FRAME_HEADER_BYTES <= buf.length; q++) {
          if (buf[q] !== 0x47 || buf[q + 1] !== 0x57) continue;
          const h = parseHeader(buf.subarray(q, q + WAL_FRAME_HEADER_BYTES));
          if (typeof h !== "string" && h.seq > lastGood) candidates.add(chunk + q);
        }
      }
      for (const pos of [...candidates].sort((a, b) => a - b)) {
        const r = await readFrame(seg, pos);
        if (r.ok && r.frame.seq > lastGood) return { path: seg.path, pos, seq: r.frame.seq };
      }
    }
  }
  return null;
}
