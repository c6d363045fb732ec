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

/** One group's commits on their way into the metadata log. */
interface Pending {
  /** Offsets waiting for the next proposal, and those in the one under way. */
  offsets: Map<string, number>;
  waiting: { resolve: () => void; reject: (err: unknown) => void }[];
  proposing: boolean;
}

/**
 * Offsets kept in the replicated metadata. Commits to one group arriving while its proposal is
 * under way ride in the next one, so a busy group costs one metadata entry per round trip.
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
    const committed = this.get(group, key);
    const pending = this.#pending.get(group)?.offsets.get(key);
    if (pending === undefined) return committed;
    return committed === undefined ? pending : Math.max(committed, pending);
  }

  entries(group: string): [string, number][] {
    return [...(this.#node.meta.offsets.get(group) ?? [])];
  }

  groups(): string[] {
    return [...this.#node.meta.offsets.keys()];
  }

  commit(group: string, offsets: readonly [string, number][], reset: boolean): Promise<void> {
    // A reset (rare, on an empty group) is its own entry: it may move offsets backwards.
    if (reset) return this.#node.commitOffsets(group, [...offsets], true);
    let p = this.#pending.get(group);
    if (p === undefined) {
      p = { offsets: new Map(), waiting: [], proposing: false };
      this.#pending.set(group, p);
    }
    for (const [key, offset] of offsets) p.offsets.set(key, offset);
    const done = new Promise<void>((resolve, reject) => p.waiting.push({ resolve, reject }));
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
        const batch = p.waiting.splice(0);
        const offsets = [...p.offsets];
        try {
          await this.#node.commitOffsets(group, offsets, false);
          for (const w of batch) w.resolve();
        } catch (err) {
          for (const w of batch) w.reject(err);
        }
        // What this proposal carried is now in the metadata (or failed); later commits stay.
        for (const [key, offset] of offsets) {
          if (p.offsets.get(key) === offset) p.offsets.delete(key);
        }
      }
    } finally {
      p.proposing = false;
      if (p.offsets.size === 0) this.#pending.delete(group);
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
    groups.coordinator.restart(term === null ? 0 : term * GENERATIONS_PER_TERM);
  };
}
