// Topic configuration and where topics live: every config key with its check and default, the
// log each partition gets (memory or segmented files), the topic's metadata file (replaced
// atomically), loading topics back at start and removing a deleted topic's files.

import type { Env } from "../io/types.ts";
import { IoError, NotFound } from "../io/errors.ts";
import { dirname } from "../io/util.ts";
import { readChecked, writeChecked } from "../storage/checked_file.ts";
import {
  isPartitionDirName,
  partitionDir,
  topicDir,
  topicMetaFile,
  topicsDir,
} from "../storage/layout.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import { FileLog, parseFsyncPolicy } from "../storage/file_log.ts";
import { type Log, MemoryLog } from "../storage/mod.ts";
import type { BrokerOptions } from "./options.ts";
import { Partition, Topic } from "./topic.ts";

type Check = (v: string) => string | null;

const wholeNumber = (min: number): Check => (v) =>
  /^-?\d+$/.test(v) && Number.isSafeInteger(Number(v)) && Number(v) >= min
    ? null
    : `a whole number >= ${min}`;

/** Topic configuration keys, each with a check returning what is allowed if the value is not. */
export const TOPIC_CONFIGS: Readonly<Record<string, Check>> = {
  "persistence": (v) => (v === "disk" || v === "memory" ? null : `"disk" or "memory"`),
  "fsync": (
    v,
  ) => (parseFsyncPolicy(v) !== null ? null : `"always", "never" or "interval:<ms>" (1..3600000)`),
  "retention.bytes": wholeNumber(-1),
  "retention.ms": wholeNumber(-1),
  "segment.bytes": wholeNumber(1024),
  "segment.ms": wholeNumber(1),
  "replication.factor": (v) => (/^[1-7]$/.test(v) ? null : "a whole number from 1 to 7"),
};

/** Checks `configs` and fills in every default: the topic's effective configuration. */
export function effectiveConfigs(
  configs: Record<string, string>,
  opts: Readonly<BrokerOptions>,
): Record<string, string> {
  for (const [k, v] of Object.entries(configs)) {
    // Own keys only: "valueOf" or "constructor" would find Object's methods and fail as INTERNAL.
    const check = Object.hasOwn(TOPIC_CONFIGS, k) ? TOPIC_CONFIGS[k] : undefined;
    if (check === undefined) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `Unknown topic config ${k}; known: ${Object.keys(TOPIC_CONFIGS).join(", ")}`,
      );
    }
    const allowed = check(v);
    if (allowed !== null) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `Topic config ${k}=${JSON.stringify(v)} is invalid: use ${allowed}`,
      );
    }
  }
  const persistence = configs["persistence"] ?? opts.defaultPersistence;
  const out: Record<string, string> = { persistence };
  // Replicas per partition: only a replicating cluster uses it.
  if (configs["replication.factor"] !== undefined) {
    out["replication.factor"] = configs["replication.factor"];
  }
  if (persistence === "memory") {
    out["retention.bytes"] = configs["retention.bytes"] ?? String(opts.retentionBytes);
    return out;
  }
  out["fsync"] = configs["fsync"] ?? opts.defaultFsync;
  out["retention.bytes"] = configs["retention.bytes"] ?? String(opts.diskRetentionBytes);
  out["retention.ms"] = configs["retention.ms"] ?? String(opts.retentionMs);
  out["segment.bytes"] = configs["segment.bytes"] ?? String(opts.segmentBytes);
  out["segment.ms"] = configs["segment.ms"] ?? String(opts.segmentMs);
  return out;
}

/** Hooks the logs need from the node. */
export interface StoreHooks {
  onFatal(reason: string): void;
  onReport(msg: string, level?: "warn" | "error"): void;
  /** After each fsync of a disk partition (for metrics). */
  onSync?(seconds: number, batches: number): void;
}

/** Creates, loads and removes topics' storage. */
export class TopicStore {
  readonly #env: Env;
  readonly #opts: Readonly<BrokerOptions>;
  readonly #hooks: StoreHooks;

  constructor(env: Env, opts: Readonly<BrokerOptions>, hooks: StoreHooks) {
    this.#env = env;
    this.#opts = opts;
    this.#hooks = hooks;
  }

  get #topicsDir(): string {
    return topicsDir(this.#opts.dataDir);
  }

  /** Builds a topic's partitions and, for a disk topic, records its metadata durably. */
  async create(name: string, partitions: number, configs: Record<string, string>): Promise<Topic> {
    const effective = effectiveConfigs(configs, this.#opts);
    if (effective["persistence"] === "disk") {
      const dir = topicDir(this.#opts.dataDir, name);
      await this.#env.disk.mkdir(dir);
      // Each new directory is durable only once the directory holding it is synced.
      await this.#env.disk.syncDir(dirname(this.#opts.dataDir));
      await this.#env.disk.syncDir(this.#opts.dataDir);
      await this.#env.disk.syncDir(this.#topicsDir);
      await this.writeMeta(name, partitions, effective);
    }
    return await this.#open(name, partitions, effective);
  }

  /** Replaces a disk topic's metadata file atomically (after a create or a config change). */
  async writeMeta(
    name: string,
    partitions: number,
    configs: Record<string, string>,
  ): Promise<void> {
    const meta = JSON.stringify({ name, partitions, configs });
    await writeChecked(this.#env.disk, topicMetaFile(this.#opts.dataDir, name), meta);
  }

  /**
   * Grows `topic` to `count` partitions: the new logs open first, then the metadata naming them is
   * replaced, so a crash between the two leaves the old count (and empty directories reused later).
   */
  async addPartitions(topic: Topic, count: number): Promise<void> {
    const added: Partition[] = [];
    for (let i = topic.partitions.length; i < count; i++) {
      added.push(new Partition(topic.name, i, await this.#log(topic.name, i, topic.configs)));
    }
    try {
      if (topic.configs["persistence"] === "disk") {
        await this.writeMeta(topic.name, count, topic.configs);
      }
    } catch (err) {
      for (const p of added) await p.log.close();
      throw err;
    }
    topic.partitions.push(...added);
  }

  async #open(name: string, partitions: number, configs: Record<string, string>): Promise<Topic> {
    const parts: Partition[] = [];
    try {
      for (let i = 0; i < partitions; i++) {
        parts.push(new Partition(name, i, await this.#log(name, i, configs)));
      }
    } catch (err) {
      for (const p of parts) await p.log.close();
      throw err;
    }
    return new Topic(name, configs, parts);
  }

  #log(name: string, partition: number, c: Record<string, string>): Promise<Log> {
    if (c["persistence"] === "memory") {
      const limit = Number(c["retention.bytes"]);
      return Promise.resolve(new MemoryLog({ retentionBytes: limit < 0 ? Infinity : limit }));
    }
    return FileLog.open(this.#env, {
      dir: partitionDir(this.#opts.dataDir, name, partition),
      partition: { topic: name, id: partition },
      fsync: parseFsyncPolicy(c["fsync"] as string) ?? { kind: "always" },
      segmentBytes: Number(c["segment.bytes"]),
      segmentMs: Number(c["segment.ms"]),
      indexIntervalBytes: this.#opts.indexIntervalBytes,
      retentionBytes: Number(c["retention.bytes"]),
      retentionMs: Number(c["retention.ms"]),
      onFatal: (reason) => this.#hooks.onFatal(reason),
      onReport: (msg, level) => this.#hooks.onReport(msg, level),
      onSync: (seconds, batches) => this.#hooks.onSync?.(seconds, batches),
    });
  }

  /**
   * Opens every disk topic found under the data directory. A topic whose metadata file is damaged
   * or invalid is reported and left out, its files untouched, so one damaged topic does not keep
   * the broker from serving the others (damage inside a partition's log leaves that partition
   * damaged, see FileLog). An I/O error (the disk failing a read or a sync) still fails the start:
   * it may not happen again, and a restart retries, where leaving the topic out would last until
   * the next restart.
   */
  async loadAll(): Promise<{ topics: Topic[]; unloadable: Map<string, string> }> {
    const topics: Topic[] = [];
    const unloadable = new Map<string, string>();
    let names: string[];
    try {
      names = await this.#env.disk.list(this.#topicsDir);
    } catch (err) {
      if (err instanceof NotFound) return { topics, unloadable };
      throw err;
    }
    for (const name of names) {
      const metaPath = topicMetaFile(this.#opts.dataDir, name);
      let meta: TopicMeta;
      try {
        meta = parseMeta(name, await readChecked(this.#env.disk, metaPath), this.#opts);
      } catch (err) {
        // A topic whose creation never completed (no metadata) is removed; anything else is loud.
        if (err instanceof NotFound) {
          const dir = topicDir(this.#opts.dataDir, name);
          this.#hooks.onReport(`Removing ${dir}: its creation never completed`);
          await this.removeFiles(name);
          continue;
        }
        if (err instanceof IoError) {
          throw new Error(`Cannot load topic ${name}: ${err.message}`, { cause: err });
        }
        const why = `${metaPath} cannot be used: ${(err as Error).message}`;
        unloadable.set(name, why);
        this.#hooks.onReport(
          `Cannot load topic ${name}: ${why}; the topic is not served and its files are left as ` +
            `they are (fix or move away ${topicDir(this.#opts.dataDir, name)}, then restart the ` +
            "broker)",
          "error",
        );
        continue;
      }
      topics.push(await this.#open(meta.name, meta.partitions, meta.configs));
    }
    return { topics, unloadable };
  }

  /** Removes a disk topic's files (metadata first, so a crash midway leaves no half topic). */
  async removeFiles(name: string): Promise<void> {
    const dir = topicDir(this.#opts.dataDir, name);
    await this.#env.disk.remove(topicMetaFile(this.#opts.dataDir, name)).catch(ignoreNotFound);
    await this.#env.disk.syncDir(dir).catch(ignoreNotFound);
    await this.#removeTree(dir);
    await this.#env.disk.syncDir(this.#topicsDir).catch(ignoreNotFound);
  }

  /** Removes a topic directory: partition directories (of segment files), then the rest. */
  async #removeTree(dir: string): Promise<void> {
    let names: string[];
    try {
      names = await this.#env.disk.list(dir);
    } catch (err) {
      if (err instanceof NotFound) return;
      throw err;
    }
    for (const n of names) {
      const path = `${dir}/${n}`;
      if (isPartitionDirName(n)) {
        for (const f of await this.#env.disk.list(path)) {
          await this.#env.disk.remove(`${path}/${f}`);
        }
      }
      await this.#env.disk.remove(path).catch(ignoreNotFound);
    }
    await this.#env.disk.remove(dir).catch(ignoreNotFound);
  }
}

/** What a disk topic's metadata file holds. */
interface TopicMeta {
  name: string;
  partitions: number;
  configs: Record<string, string>;
}

/**
 * The metadata of the topic in directory `dir`, checked: a file that parses but names another
 * topic, an impossible partition count or configs the broker does not accept is as unusable as
 * one that does not parse.
 */
function parseMeta(dir: string, text: string, opts: Readonly<BrokerOptions>): TopicMeta {
  const meta = JSON.parse(text) as Partial<TopicMeta> | null;
  if (typeof meta !== "object" || meta === null) throw new Error("it is not a JSON object");
  if (meta.name !== dir) {
    throw new Error(`it names topic ${JSON.stringify(meta.name)}, not ${JSON.stringify(dir)}`);
  }
  const n = meta.partitions;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > opts.partitionsMax) {
    throw new Error(`partitions is ${JSON.stringify(n)}, not 1 to ${opts.partitionsMax}`);
  }
  const configs = meta.configs;
  if (
    typeof configs !== "object" || configs === null ||
    Object.values(configs).some((v) => typeof v !== "string")
  ) {
    throw new Error("configs is not an object of strings");
  }
  effectiveConfigs(configs, opts);
  return { name: dir, partitions: n, configs };
}

function ignoreNotFound(err: unknown): void {
  if (!(err instanceof NotFound)) throw err;
}
