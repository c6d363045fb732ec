// A node's in-memory Raft log: a snapshot that stands for the compacted prefix, then contiguous
// entries. It answers the questions the protocol asks (term at an index, conflicts, up-to-dateness,
// the configuration in force) and enforces contiguity on every change.

import { assert } from "../../util/assert.ts";
import { decodeConfig } from "./codec.ts";
import { entryBytes } from "./limits.ts";
import type { Configuration, Entry, Snapshot } from "./types.ts";

/** The configuration in force and the index of the entry (or snapshot) that set it. */
export interface ConfigAt extends Configuration {
  readonly index: number;
}

/** Where a follower's log disagrees with an AppendEntries, for the leader's fast back-off. */
export interface ConflictHint {
  readonly hintTerm: number;
  readonly hintIndex: number;
}

/** The log of one node: `snapshot`, then `entries[i]` at index `snapshot.index + 1 + i`. */
export class RaftLog {
  #snapshot: Snapshot;
  #entries: Entry[];

  /** A log from a snapshot and the entries after it; throws if they are not contiguous. */
  constructor(snapshot: Snapshot, entries: readonly Entry[]) {
    this.#snapshot = snapshot;
    this.#entries = [];
    this.#appendChecked(entries);
  }

  /** The snapshot standing for every index through `snapshot.index`. */
  get snapshot(): Snapshot {
    return this.#snapshot;
  }

  /** The first index held as an entry (not compacted). */
  get firstIndex(): number {
    return this.#snapshot.index + 1;
  }

  get lastIndex(): number {
    return this.#snapshot.index + this.#entries.length;
  }

  get lastTerm(): number {
    return this.#entries.at(-1)?.term ?? this.#snapshot.term;
  }

  /** The term at `index`, or null if it is compacted away or past the end. */
  term(index: number): number | null {
    if (index === this.#snapshot.index) return this.#snapshot.term;
    return this.entry(index)?.term ?? null;
  }

  /** The entry at `index`, or null if it is compacted away or past the end. */
  entry(index: number): Entry | null {
    return this.#entries[index - this.firstIndex] ?? null;
  }

  /**
   * Entries from `lo` through `hi`, at most `countMax` of them and `bytesMax` bytes (but at least
   * one when any is in range). Requires `lo >= firstIndex`.
   */
  slice(lo: number, hi: number, countMax = Infinity, bytesMax = Infinity): Entry[] {
    assert(lo >= this.firstIndex, () => `slice(${lo}) is below ${this.firstIndex}`);
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i <= Math.min(hi, this.lastIndex) && out.length < countMax; i++) {
      const e = this.entry(i) as Entry;
      bytes += entryBytes(e);
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(e);
    }
    return out;
  }

  /** Appends entries that continue the log exactly. */
  append(entries: readonly Entry[]): void {
    this.#appendChecked(entries);
  }

  /**
   * Replaces everything from `entries[0].index` on with `entries`. Requires the first index to be
   * above the snapshot and at most `lastIndex + 1`.
   */
  truncateAndAppend(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    assert(
      first.index > this.#snapshot.index && first.index <= this.lastIndex + 1,
      () => `Cannot splice at ${first.index}: log holds ${this.firstIndex}..${this.lastIndex}`,
    );
    this.#entries.length = first.index - this.firstIndex;
    this.#appendChecked(entries);
  }

  /**
   * The index of the first entry of `entries` that this log lacks or holds with another term, or 0
   * when the log already holds them all.
   */
  findConflict(entries: readonly Entry[]): number {
    for (const e of entries) {
      if (e.index <= this.#snapshot.index) continue;
      if (this.term(e.index) !== e.term) return e.index;
    }
    return 0;
  }

  /**
   * Why `prevIndex` does not match: the term this log has there and the first index of that term
   * (not below `floor`), or term 0 and `lastIndex + 1` when the log is too short.
   */
  conflictHint(prevIndex: number, floor: number): ConflictHint {
    if (prevIndex > this.lastIndex) return { hintTerm: 0, hintIndex: this.lastIndex + 1 };
    const hintTerm = this.term(prevIndex) ?? 0;
    let i = prevIndex;
    while (i - 1 > Math.max(floor, this.#snapshot.index) && this.term(i - 1) === hintTerm) i--;
    return { hintTerm, hintIndex: i };
  }

  /**
   * The last index at or below `index` whose term is at most `term`: where a leader resumes after a
   * follower reported a conflicting `term`. Null if none is held.
   */
  lastIndexAtOrBelowTerm(index: number, term: number): number | null {
    for (let i = Math.min(index, this.lastIndex); i >= this.#snapshot.index; i--) {
      const t = this.term(i) as number;
      if (t <= term) return t === term ? i : null;
    }
    return null;
  }

  /** True if a log ending at (`lastIndex`, `lastTerm`) is at least as up to date as this one. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm || (lastTerm === this.lastTerm && lastIndex >= this.lastIndex);
  }

  /**
   * The configuration in force at `index` (at least the snapshot's index): the last config entry at
   * or below it, else the snapshot's.
   */
  configAt(index: number): ConfigAt {
    for (let i = Math.min(index, this.lastIndex); i > this.#snapshot.index; i--) {
      const e = this.entry(i) as Entry;
      if (e.kind === "config") return { ...decodeConfig(e.data), index: i };
    }
    const s = this.#snapshot;
    return { voters: s.voters, learners: s.learners, index: s.index };
  }

  /** Drops the entries the snapshot covers; requires them to be in the log with the same term. */
  compact(snapshot: Snapshot): void {
    assert(
      this.term(snapshot.index) === snapshot.term && snapshot.index >= this.#snapshot.index,
      () => `Cannot compact through ${snapshot.index} (term ${snapshot.term}): not in the log`,
    );
    this.#entries = this.#entries.slice(snapshot.index - this.#snapshot.index);
    this.#snapshot = snapshot;
  }

  /** Replaces the whole log with a snapshot. */
  restore(snapshot: Snapshot): void {
    this.#snapshot = snapshot;
    this.#entries = [];
  }

  #appendChecked(entries: readonly Entry[]): void {
    for (const e of entries) {
      const expect = this.lastIndex + 1;
      assert(
        e.index === expect && e.term >= this.lastTerm,
        () =>
          `Entry ${e.index} (term ${e.term}) does not continue the log at ${expect} ` +
          `(term ${this.lastTerm})`,
      );
      this.#entries.push(e);
    }
  }
}
