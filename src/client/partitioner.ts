// Kafka's default partitioner, so a key lands on the same partition from a Kafka client and from
// this one: murmur2 of the key bytes (Kafka's variant: seed 0x9747b28c, Java int arithmetic),
// made positive by masking the sign bit, modulo the partition count. Keyless records stick to one
// partition per topic until a batch for it is sent, so they fill batches (Kafka's KIP-480).

import type { Random } from "../io/types.ts";

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/** Kafka's `Utils.murmur2`: a signed 32-bit hash of `data`. */
export function murmur2(data: Uint8Array): number {
  const n = data.length;
  let h = (SEED ^ n) | 0;
  const whole = n & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const rest = n & 3;
  if (rest > 0) {
    if (rest === 3) h ^= data[whole + 2]! << 16;
    if (rest >= 2) h ^= data[whole + 1]! << 8;
    h ^= data[whole]!;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition of `key` among `partitions` (Kafka's `toPositive(murmur2(key)) % n`). */
export function partitionForKey(key: Uint8Array, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) {
    throw new RangeError(`A topic needs at least one partition, got ${partitions}`);
  }
  return (murmur2(key) & 0x7fff_ffff) % partitions;
}

/** Topics whose sticky partition is remembered at most; the oldest is forgotten first. */
export const STICKY_TOPICS_MAX = 10_000;

/** Keyless records' partition per topic: kept until a batch for it is sent, then moved at random. */
export class StickyPartitions {
  readonly #random: Random;
  /** Per topic: the sticky partition and the topic's partition count when it was chosen. */
  readonly #current = new Map<string, { partition: number; partitions: number }>();

  constructor(random: Random) {
    this.#random = random;
  }

  /** The partition keyless records of `topic` (with `partitions` partitions) go to now. */
  partition(topic: string, partitions: number): number {
    const c = this.#current.get(topic);
    if (c !== undefined && c.partitions === partitions) return c.partition;
    return this.#choose(topic, partitions, -1);
  }

  /** A batch for `partition` of `topic` was sent: if it was the sticky one, move on. */
  batchSent(topic: string, partition: number): void {
    const c = this.#current.get(topic);
    if (c !== undefined && c.partition === partition) this.#choose(topic, c.partitions, partition);
  }

  #choose(topic: string, partitions: number, not: number): number {
    let p = this.#random.int(0, partitions);
    // Another partition than the one just filled, when there is another.
    if (p === not && partitions > 1) p = (p + 1 + this.#random.int(0, partitions - 1)) % partitions;
    this.#current.delete(topic);
    this.#current.set(topic, { partition: p, partitions });
    if (this.#current.size > STICKY_TOPICS_MAX) {
      this.#current.delete(this.#current.keys().next().value as string);
    }
    return p;
  }
}
