// An in-memory stand-in for a node's durable Raft state: hard state, latest snapshot and the log
// after it. Tests and the simulator persist Readys into it and restart nodes from `state()`.

import { assert } from "../../util/assert.ts";
import { configProblem } from "./codec.ts";
import type { Entry, HardState, PersistentState, Ready, Snapshot } from "./types.ts";

const EMPTY = new Uint8Array(0);

/** Durable Raft state held in memory; the twin of a file-backed store. */
export class MemoryStorage {
  #hardState: HardState = { term: 0, vote: null, commit: 0 };
  #snapshot: Snapshot;
  #entries: Entry[] = [];

  /**
   * Storage for a node bootstrapping a group with `voters` and `learners` (both empty for a node
   * that will be added later).
   */
  constructor(voters: readonly string[], learners: readonly string[] = []) {
    const config = { voters: [...voters].sort(), learners: [...learners].sort() };
    const empty = config.voters.length === 0 && config.learners.length === 0;
    const problem = empty ? null : configProblem(config);
    if (problem !== null) throw new RangeError(`Invalid bootstrap config: ${problem}`);
    this.#snapshot = { index: 0, term: 0, ...config, data: EMPTY };
  }

  /** Persists one Ready, in the order its contract gives: snapshot, entries, hard state. */
  save(ready: Ready): void {
    if (ready.snapshot !== null) this.applySnapshot(ready.snapshot);
    this.append(ready.entries);
    if (ready.hardState !== null) this.setHardState(ready.hardState);
  }

  setHardState(hs: HardState): void {
    this.#hardState = hs;
  }

  /** Appends entries, replacing the stored ones from `entries[0].index` on. */
  append(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    const offset = first.index - (this.#snapshot.index + 1);
    assert(
      offset >= 0 && offset <= this.#entries.length,
      () =>
        `Cannot append at ${first.index}: storage holds ${
          this.#snapshot.index + 1
        }..${this.lastIndex}`,
    );
    this.#entries.length = offset;
    for (const [i, e] of entries.entries()) {
      assert(e.index === first.index + i, () => `Entries are not contiguous at ${e.index}`);
      this.#entries.push(e);
    }
  }

  /** Replaces the whole log with a snapshot received from a leader. */
  applySnapshot(s: Snapshot): void {
    this.#snapshot = s;
    this.#entries = [];
  }

  /** Drops entries through `s.index`, which must be stored with `s.term`. */
  compact(s: Snapshot): void {
    if (s.index <= this.#snapshot.index) return;
    assert(
      this.term(s.index) === s.term,
      () => `Cannot compact through ${s.index}: not stored with term ${s.term}`,
    );
    this.#entries = this.#entries.slice(s.index - this.#snapshot.index);
    this.#snapshot = s;
  }

  get lastIndex(): number {
    return this.#snapshot.index + this.#entries.length;
  }

  /** The term stored at `index`, or null. */
  term(index: number): number | null {
    if (index === this.#snapshot.index) return this.#snapshot.term;
    return this.#entries[index - this.#snapshot.index - 1]?.term ?? null;
  }

  /** A copy of everything stored, to restart a node from. */
  state(): PersistentState {
    return { hardState: this.#hardState, snapshot: this.#snapshot, entries: [...this.#entries] };
  }
}
