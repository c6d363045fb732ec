// The client's cache of topics' partition counts, learnt from METADATA (creating topics on the way
// when the broker auto-creates), so the producer can pick a partition by key.

import type { Clock } from "../io/types.ts";
import { ErrorCode, errorName, GregorError } from "../protocol/errors.ts";
import type { MetadataResponse } from "../protocol/messages.ts";
import type { ClientConnection } from "./connection.ts";
import type { NodeAddr } from "./pool.ts";

/** How long a topic's partition count is used before it is asked again (in the background), ms. */
export const METADATA_MAX_AGE_MS = 60_000;
/**
 * A topic whose last answer named no leader for some partition is asked again (in the background)
 * once the answer is this old, ms. Meanwhile that partition's requests go through the bootstrap
 * node, which forwards them: a hop more, and one that fails with the leader when a network cut
 * isolates it, while the client would learn the new leader from the next answer.
 */
export const LEADER_UNKNOWN_MAX_AGE_MS = 500;
/**
 * Answers in a row in which the bootstrap node named no leader for some partition of a topic before
 * the client moves to its next server: a node cut off from the rest of its cluster can name none,
 * while the others elected new leaders long ago.
 */
export const LEADERLESS_ANSWERS_MAX = 3;
/** Topics cached at most; the least recently asked for is forgotten first. */
export const METADATA_TOPICS_MAX = 10_000;

interface Entry {
  partitions: number;
  /** Per partition, where its leader takes requests (null: unknown, ask the bootstrap node). */
  leaders: (NodeAddr | null)[];
  /** Some partition's leader is unknown. */
  leaderless: boolean;
  fetchedMs: number;
}

/** Partition counts by topic. */
export class PartitionCounts {
  readonly #conn: ClientConnection;
  readonly #clock: Clock;
  readonly #entries = new Map<string, Entry>();
  readonly #fetching = new Map<string, Promise<number>>();
  /** Answers in a row that named no leader for some partition, by topic. */
  readonly #leaderless = new Map<string, number>();

  constructor(conn: ClientConnection, clock: Clock) {
    this.#conn = conn;
    this.#clock = clock;
  }

  /**
   * `topic`'s partition count: at once if cached (a stale count is still used while it is asked
   * again), else once the broker answered.
   * @throws {GregorError} the topic's error (e.g. UNKNOWN_TOPIC, INVALID_TOPIC).
   */
  partitions(topic: string): number | Promise<number> {
    const e = this.#entries.get(topic);
    if (e === undefined) return this.#fetch(topic);
    this.#entries.delete(topic);
    this.#entries.set(topic, e);
    const ageMs = this.#clock.now() - e.fetchedMs;
    if (ageMs >= (e.leaderless ? LEADER_UNKNOWN_MAX_AGE_MS : METADATA_MAX_AGE_MS)) {
      this.#fetch(topic).catch(() => {});
    }
    return e.partitions;
  }

  /** The count being fetched for `topic` when it is not cached yet, else null. */
  pending(topic: string): Promise<number> | null {
    return this.#entries.has(topic) ? null : this.#fetching.get(topic) ?? null;
  }

  /** Where `topic`/`partition`'s leader takes requests, if the cache knows; else null. */
  leader(topic: string, partition: number): NodeAddr | null {
    return this.#entries.get(topic)?.leaders[partition] ?? null;
  }

  /** Forgets `topic`'s count (e.g. after UNKNOWN_PARTITION), so the next use asks again. */
  invalidate(topic: string): void {
    this.#entries.delete(topic);
  }

  #fetch(topic: string): Promise<number> {
    const running = this.#fetching.get(topic);
    if (running !== undefined) return running;
    const fetched = this.#conn.request<MetadataResponse>("METADATA", {
      topics: [{ name: topic }],
      autoCreate: 1,
    }).then((r) => {
      const t = r.topics.find((x) => x.name === topic);
      if (t === undefined || (t.error === 0 && t.partitions.length === 0)) {
        throw new GregorError(
          ErrorCode.UNKNOWN_TOPIC,
          `The broker names no partitions of ${topic}`,
        );
      }
      if (t.error !== 0) {
        throw new GregorError(t.error, `Topic ${topic} is unavailable: ${errorName(t.error)}`);
      }
      this.#entries.delete(topic);
      const nodes = new Map(r.nodes.map((n) => [n.id, n]));
      const leaders = t.partitions.map((p) => {
        const n = p.leader === "" ? undefined : nodes.get(p.leader);
        return n === undefined ? null : { host: n.host, clientPort: n.clientPort };
      });
      this.#entries.set(topic, {
        partitions: t.partitions.length,
        leaders,
        leaderless: leaders.includes(null),
        fetchedMs: this.#clock.now(),
      });
      this.#noteLeaders(topic, leaders);
      if (this.#entries.size > METADATA_TOPICS_MAX) {
        this.#entries.delete(this.#entries.keys().next().value as string);
      }
      return t.partitions.length;
    }).finally(() => this.#fetching.delete(topic));
    this.#fetching.set(topic, fetched);
    return fetched;
  }

  /** After LEADERLESS_ANSWERS_MAX answers in a row without a leader, asks another server. */
  #noteLeaders(topic: string, leaders: readonly (NodeAddr | null)[]): void {
    if (!leaders.includes(null)) {
      this.#leaderless.delete(topic);
      return;
    }
    const n = (this.#leaderless.get(topic) ?? 0) + 1;
    if (n < LEADERLESS_ANSWERS_MAX) {
      this.#leaderless.set(topic, n);
      return;
    }
    this.#leaderless.delete(topic);
    this.#conn.moveOn(
      `it named no leader for a partition of ${topic} ${LEADERLESS_ANSWERS_MAX} times in a row`,
    );
  }
}
