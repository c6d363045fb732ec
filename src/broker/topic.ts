// Topics and their partitions: a name, per-topic configuration, and for each partition a log and
// the subscriptions waiting on it.

import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { Log } from "../storage/mod.ts";
import type { Subscription } from "./subscription.ts";

/** Longest topic name, in characters. */
export const TOPIC_NAME_CHARS_MAX = 249;
const TOPIC_NAME = /^[A-Za-z0-9._-]+$/;

/** Throws INVALID_TOPIC unless `name` is a legal topic name (Kafka's rules). */
export function checkTopicName(name: string): void {
  if (
    name.length === 0 || name.length > TOPIC_NAME_CHARS_MAX || !TOPIC_NAME.test(name) ||
    name === "." || name === ".."
  ) {
    throw new GregorError(
      ErrorCode.INVALID_TOPIC,
      `Invalid topic name ${
        JSON.stringify(name)
      }: use 1 to ${TOPIC_NAME_CHARS_MAX} of A-Z a-z 0-9 . _ - (not "." or "..")`,
    );
  }
}

/** One partition: its log and its live subscriptions. */
export class Partition {
  readonly topic: string;
  readonly id: number;
  readonly log: Log;
  readonly subscriptions: Set<Subscription> = new Set();

  constructor(topic: string, id: number, log: Log) {
    this.topic = topic;
    this.id = id;
    this.log = log;
  }

  /**
   * Wakes every subscription after an append. `nowMs`, if given, is the time their deliveries are
   * counted from (one clock read for thousands of subscriptions delivering in one go).
   */
  notify(nowMs?: number): void {
    for (const s of this.subscriptions) s.pump(nowMs);
  }
}

/** A topic. */
export class Topic {
  readonly name: string;
  readonly configs: Record<string, string>;
  readonly partitions: Partition[];

  constructor(name: string, configs: Record<string, string>, partitions: Partition[]) {
    this.name = name;
    this.configs = configs;
    this.partitions = partitions;
  }

  /** The partition `id`, or UNKNOWN_PARTITION. */
  partition(id: number): Partition {
    const p = this.partitions[id];
    if (p === undefined) {
      throw new GregorError(
        ErrorCode.UNKNOWN_PARTITION,
        `Topic ${this.name} has no partition ${id} (it has ${this.partitions.length})`,
      );
    }
    return p;
  }
}
