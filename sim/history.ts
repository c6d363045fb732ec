// The history of a run: what each client process asked for and how it ended. Checkers read it;
// every entry also feeds the trace hash, so two runs agree only if their histories agree.

import type { World } from "./world.ts";

/** How an operation ended: it did (ok), it did not (fail), or nobody knows (info). */
export type HistoryKind = "invoke" | "ok" | "fail" | "info";

/** One line of the history. */
export interface HistoryEntry {
  /** Position in the history. */
  index: number;
  /** Virtual time, ms. */
  timeMs: number;
  /** The client process that acted, e.g. "writer-0". */
  process: string;
  kind: HistoryKind;
  /** The operation, e.g. "put" or "get". */
  op: string;
  /** Operation-specific arguments or results. */
  value: unknown;
}

/** Entries kept at most; a run that needs more should record less. */
export const HISTORY_ENTRIES_MAX = 1_000_000;

/** An append-only operation history. */
export class History {
  readonly entries: HistoryEntry[] = [];
  readonly #world: World;

  constructor(world: World) {
    this.#world = world;
  }

  /** Records an entry and returns it. */
  add(process: string, kind: HistoryKind, op: string, value: unknown): HistoryEntry {
    if (this.entries.length >= HISTORY_ENTRIES_MAX) {
      throw new Error(`History over ${HISTORY_ENTRIES_MAX} entries`);
    }
    const e: HistoryEntry = {
      index: this.entries.length,
      timeMs: this.#world.now,
      process,
      kind,
      op,
      value,
    };
    this.entries.push(e);
    this.#world.trace.text(`${e.process}|${kind}|${op}|${JSON.stringify(value)}`);
    return e;
  }

  /** Counts entries of one kind (and optionally one op). */
  count(kind: HistoryKind, op?: string): number {
    let n = 0;
    for (const e of this.entries) if (e.kind === kind && (op === undefined || e.op === op)) n++;
    return n;
  }
}
