// Consumer groups in a cluster. The leader of the metadata group coordinates every group, and the
// groups' committed offsets are part of the replicated metadata: a commit is acknowledged once the
// metadata group committed it on a quorum, every node holds the offsets, and a new leader, which
// takes over as coordinator, reads them as they were. Membership is not replicated: when the
// coordinator changes, members learn their member id is unknown and join again (their generations
// under the new coordinator are numbered above any the old one could have handed out).

import type { Groups } from "../broker/groups/groups.ts";
import type { OffsetBackend } from "../broker/groups/offset_store.ts";
import type { ClusterNode } from "./cluster.ts";

/**
 * Generations one coordinator's term may number: a coordinator elected in term T starts groups at
 * T × this, above everything a coordinator of an earlier term counted (2^20 rebalances per term).
 */
export const GENERATIONS_PER_TERM = 2 ** 20;

/** A commit (or reset) waiting for the metadata log. */
interface Waiter {
  offsets: readonly [string, number][];
  reset: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** One group's commits on their way into the metadata log, in the order they were taken. */
interface Pending {
  /** Not yet proposed. */
  waiting: Waiter[];
  /** In the proposal under way. */
  inFlight: Waiter[];
  proposing: boolean;
}

/**
 * Offsets kept in the replicated metadata. A group's commits go into the metadata log in the
 * order they were taken; those arriving while a proposal is under way ride together in the next
 * one, so a busy group costs one metadata entry per round trip. A waiter is answered by the
 * proposal that carried its offsets, and only by it. A reset is proposed on its own, after the
 * commits taken before it and before those taken after.
 */
export class ReplicatedOffsets implements OffsetBackend {
  readonly #node: ClusterNode;
  readonly #pending = new Map<string, Pending>();

  constructor(node: ClusterNode) {
    this.#node = node;
  }

  load(): Promise<void> {
    return Promise.resolve();
  }

  get(group: string, key: string): number | undefined {
    return this.#node.meta.offsets.get(group)?.get(key);
  }

  latest(group: string, key: string): number | undefined {
    let latest = this.get(group, key);
    const p = this.#pending.get(group);
    for (const w of [...(p?.inFlight ?? []), ...(p?.waiting ?? [])]) {
      for (const [k, offset] of w.offsets) {
        // A reset may move an offset back: the last word is the latest one taken.
        if (k === key) latest = w.reset || latest === undefined ? offset : Math.max(latest, offset);
      }
    }
    return latest;
  }

  entries(group: string): [string, number][] {
    return [...(this.#node.meta.offsets.get(group) ?? [])];
  }

  groups(): string[] {
    return [...this.#node.meta.offsets.keys()];
  }

  commit(group: string, offsets: readonly [string, number][], reset: boolean): Promise<void> {
    let p = this.#pending.get(group);
    if (p === undefined) {
      p = { waiting: [], inFlight: [], proposing: false };
      this.#pending.set(group, p);
    }
    const pending = p;
    const done = new Promise<void>((resolve, reject) =>
      pending.waiting.push({ offsets: [...offsets], reset, resolve, reject })
    );
    if (!p.proposing) void this.#propose(group, p);
    return done;
  }

  /** Offsets of a deleted topic leave the metadata with the topic's deleteTopic entry. */
  forgetTopic(_topic: string): Promise<void> {
    return Promise.resolve();
  }

  async #propose(group: string, p: Pending): Promise<void> {
    p.proposing = true;
    try {
      while (p.waiting.length > 0) {
        // A reset goes alone; otherwise every commit up to the next reset rides together.
        const next = p.waiting.findIndex((w, i) =>
          w.reset !== p.waiting[0]!.reset || (w.reset && i > 0)
        );
        p.inFlight = p.waiting.splice(0, next < 0 ? p.waiting.length : next);
        const reset = p.inFlight[0]!.reset;
        const merged = new Map<string, number>();
        for (const w of p.inFlight) {
          for (const [key, offset] of w.offsets) {
            merged.set(key, Math.max(merged.get(key) ?? offset, offset));
          }
        }
        try {
          await this.#node.commitOffsets(group, [...merged], reset);
          for (const w of p.inFlight) w.resolve();
        } catch (err) {
          for (const w of p.inFlight) w.reject(err);
        }
        p.inFlight = [];
      }
    } finally {
      p.proposing = false;
      if (p.waiting.length === 0) this.#pending.delete(group);
    }
  }
}

/**
 * Makes a clustered broker's groups use the replicated offsets, and restarts its coordinator each
 * time this node starts or stops leading the metadata group.
 */
export function attachGroups(groups: Groups, node: ClusterNode): void {
  groups.useBackend(new ReplicatedOffsets(node));
  node.onCoordinating = (term) => {
    groups.restartCoordinator(term === null ? 0 : term * GENERATIONS_PER_TERM);
  };
}
