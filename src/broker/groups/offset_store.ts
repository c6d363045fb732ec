// Committed offsets of consumer groups, durable before a commit is acknowledged. Each group has
// one file, replaced atomically (write, sync, rename, sync the directory); commits arriving while
// a write is under way are coalesced into the next one, so a busy group costs one write per sync.

import type { Env } from "../../io/types.ts";
import { NotFound } from "../../io/errors.ts";
import { mkdirDurable } from "../../io/util.ts";
import { readChecked, writeChecked } from "../../storage/checked_file.ts";
import { groupOffsetsFile, groupOfOffsetsFile, groupsDir } from "../../storage/layout.ts";

/** Offsets one group may hold at most (partitions it has committed for). */
export const OFFSETS_PER_GROUP_MAX = 100_000;

interface GroupOffsets {
  /** The latest offsets, including commits not yet durable. */
  offsets: Map<string, number>;
  /** What readers see: only offsets already durable. */
  durable: Map<string, number>;
  /** Commits waiting for the next write. */
  waiting: { resolve: () => void; reject: (err: unknown) => void }[];
  writing: boolean;
}

/** Where a broker's groups keep committed offsets: on its own disk, or replicated in a cluster. */
export interface OffsetBackend {
  /** Reads the offsets back (at start). */
  load(): Promise<void>;
  /** The committed offset of a partition ("topic\0partition") that readers may see, if any. */
  get(group: string, key: string): number | undefined;
  /** The latest offset, committed or still being committed (for ordering checks). */
  latest(group: string, key: string): number | undefined;
  /** Every committed offset of a group that readers may see. */
  entries(group: string): [string, number][];
  /** Groups that have committed offsets. */
  groups(): string[];
  /**
   * Sets offsets and resolves once they are durable (throws if that fails). A reset may move
   * offsets backwards; a commit has been checked by the caller not to.
   */
  commit(group: string, offsets: readonly [string, number][], reset: boolean): Promise<void>;
  /** Drops a deleted topic's offsets from every group. */
  forgetTopic(topic: string): Promise<void>;
}

/** Where groups' committed offsets live: `<dataDir>/groups/<group>.json`. */
export class OffsetStore implements OffsetBackend {
  readonly #env: Env;
  readonly #dataDir: string;
  readonly #groups = new Map<string, GroupOffsets>();
  #dirReady = false;

  constructor(env: Env, dataDir: string) {
    this.#env = env;
    this.#dataDir = dataDir;
  }

  /** Reads every group's offsets back (at start). */
  async load(): Promise<void> {
    let names: string[];
    try {
      names = await this.#env.disk.list(groupsDir(this.#dataDir));
    } catch (err) {
      if (err instanceof NotFound) return;
      throw err;
    }
    for (const file of names) {
      const name = groupOfOffsetsFile(file);
      if (name === null) continue; // leftovers of an interrupted atomic replace
      const path = groupOffsetsFile(this.#dataDir, name);
      let saved: Record<string, number>;
      try {
        saved = JSON.parse(await readChecked(this.#env.disk, path)).offsets;
      } catch (err) {
        throw new Error(`Cannot load ${path}: ${(err as Error).message}`, { cause: err });
      }
      const g = this.#group(name);
      g.offsets = new Map(Object.entries(saved));
      g.durable = new Map(g.offsets);
    }
  }

  /** The durable committed offset of a partition ("topic\0partition"), if any. */
  get(group: string, key: string): number | undefined {
    return this.#groups.get(group)?.durable.get(key);
  }

  /** The latest offset of a partition, durable or still being written (for ordering checks). */
  latest(group: string, key: string): number | undefined {
    return this.#groups.get(group)?.offsets.get(key);
  }

  /** Every durable committed offset of a group. */
  entries(group: string): [string, number][] {
    return [...(this.#groups.get(group)?.durable ?? [])];
  }

  /** Groups that have durable committed offsets. */
  groups(): string[] {
    return [...this.#groups.keys()].filter((g) => this.#groups.get(g)!.durable.size > 0);
  }

  /** Sets offsets and resolves once they are durable (throws if the write fails). */
  commit(group: string, offsets: readonly [string, number][], _reset = false): Promise<void> {
    const g = this.#group(group);
    const added = offsets.filter(([key]) => !g.offsets.has(key)).length;
    if (g.offsets.size + added > OFFSETS_PER_GROUP_MAX) {
      return Promise.reject(
        new RangeError(`Group ${group} would hold over ${OFFSETS_PER_GROUP_MAX} offsets`),
      );
    }
    for (const [key, offset] of offsets) g.offsets.set(key, offset);
    return new Promise<void>((resolve, reject) => {
      g.waiting.push({ resolve, reject });
      if (!g.writing) void this.#write(group, g);
    });
  }

  /** Drops a topic's offsets from every group (the topic was deleted). */
  async forgetTopic(topic: string): Promise<void> {
    for (const [name, g] of this.#groups) {
      const drop = [...g.offsets.keys()].filter((k) => k.startsWith(`${topic}\u0000`));
      if (drop.length === 0) continue;
      for (const k of drop) g.offsets.delete(k);
      await this.commit(name, []);
    }
  }

  #group(name: string): GroupOffsets {
    let g = this.#groups.get(name);
    if (g === undefined) {
      g = { offsets: new Map(), durable: new Map(), waiting: [], writing: false };
      this.#groups.set(name, g);
    }
    return g;
  }

  async #write(name: string, g: GroupOffsets): Promise<void> {
    g.writing = true;
    try {
      while (g.waiting.length > 0) {
        const batch = g.waiting.splice(0);
        const snapshot = new Map(g.offsets);
        const text = JSON.stringify({ offsets: Object.fromEntries(snapshot) });
        try {
          if (!this.#dirReady) {
            await mkdirDurable(this.#env.disk, groupsDir(this.#dataDir));
            this.#dirReady = true;
          }
          await writeChecked(this.#env.disk, groupOffsetsFile(this.#dataDir, name), text);
          g.durable = snapshot;
          for (const w of batch) w.resolve();
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
      }
    } finally {
      g.writing = false;
    }
  }
}
