// One replica of a partition in a cluster: the state machine its Raft group applies. Committed
// entries are record batches; applying one runs the idempotent-producer check and appends the
// batch to the partition's log, so every replica assigns the same offsets and makes the same
// duplicate decisions, and consumers, who read that log, only ever see committed data.
//
// The log is a FileLog in segment files, appended without an fsync of its own: the Raft WAL
// (synced before a batch is acknowledged) is what makes a batch durable until the log is. Every
// `checkpointBytes` of applied batches the replica checkpoints (the log's end and the producers'
// state as of an entry), syncs the log, and only then lets Raft compact its log through that entry.
// So the Raft log holds about one checkpoint interval of entries, whatever the retention, and
// batches before the last compaction live only in the segment files.
//
// A snapshot restore (a restart, or a follower too far behind for the leader's Raft log) puts the
// log at the checkpoint's end: a log that is ahead (batches applied after the checkpoint, which the
// Raft entries after it apply again) is cut back; a log that is behind fetches the batches between
// from a peer replica in bounded chunks, each verified by its checksum. A replica's log only ever
// holds committed batches, so it is always a prefix of every other replica's: a cut or a fetch
// never has a conflict to resolve.
//
// The same fetch repairs a damaged log (a flipped bit or a truncated segment at rest, found when
// the replica opens — it checks every batch then — or later by a read): the replica stops serving,
// cuts the log at the damage and fetches the batches from there up to where its log ended from its
// peers, each verified, before it serves or applies again. The batches are committed ones, so
// fetching them again is always safe; the producers' state lives in the checkpoint image and in
// memory, not in the log, so the cut does not touch it. The Raft log (WAL) has its own checksums
// and is not involved: votes and acknowledgements never read the segment log.

import {
  type BatchHeader,
  CorruptBatchError,
  readBatchHeader,
  validateBatch,
} from "../protocol/batch.ts";
import { IoFailure, NoSpace, TooManyOpenFiles } from "../io/errors.ts";
import { ErrorCode, GregorError, MalformedError } from "../protocol/errors.ts";
import { type Log, type LogRepair, OffsetOutOfRange } from "../storage/mod.ts";
import { PartitionProducers, type ProducersImage } from "../broker/producer_state.ts";
import { ENTRY_DATA_BYTES_MAX } from "./raft/limits.ts";
import type { Entry, Snapshot } from "./raft/types.ts";
import type { StateMachine } from "./raft/shell.ts";

/** What applying one batch produced. */
export interface AppliedBatch {
  baseOffset: number;
  /** True if it repeated a batch stored before (an idempotent retry): nothing was appended. */
  duplicate: boolean;
}

/** How a replica keeps its Raft log short. */
export interface ReplicaLimits {
  /** Checkpoint (and let Raft compact) after this many bytes of batches applied since the last. */
  checkpointBytes: number;
}

/** Batches a peer replica sent from its log. */
export interface FetchedRange {
  /** Whole batches from the offset asked for (the first may start before it), back to back. */
  bytes: Uint8Array;
  /** The peer's first stored offset: below it, retention dropped the batches everywhere. */
  logStartOffset: number;
  /** The peer that answered. */
  peer: string;
}

/** A damaged log repaired: what was cut, and the peers the batches came from again. */
export interface ReplicaRepair {
  cut: LogRepair;
  /** Batches from the cut up to this offset came from `peers`; the Raft log applies the rest. */
  fetchedTo: number;
  peers: string[];
}

/** Where a replica that fell behind gets the batches it lacks. */
export interface RangeSource {
  /**
   * Batches from `fromOffset` on, at most about `bytesMax`, from one of `peers` that holds them.
   * Retries (other peers, with backoff) until one answers with batches or its log start.
   * @throws {GregorError} SHUTTING_DOWN once the replica stops
   */
  fetch(fromOffset: number, bytesMax: number, peers: readonly string[]): Promise<FetchedRange>;
  /**
   * Waits before trying again: a fetch after a peer sent batches that failed their checks (the
   * next fetch starts at another peer), or a change the log refused.
   * @throws {GregorError} SHUTTING_DOWN once the replica stops
   */
  backoff(): Promise<void>;
}

/** Bytes asked of a peer per fetch while catching up. */
export const CATCH_UP_FETCH_BYTES = 1024 * 1024;
/** Checkpoints waiting for their log sync at most; more wait for the next one. */
const CHECKPOINTS_MAX = 8;

/** A checkpoint: the state as of one applied entry. */
interface Checkpoint {
  index: number;
  /** The log's next offset right after that entry: the entries through it hold offsets below. */
  nextOffset: number;
  image: Uint8Array;
  /** The log was synced after the entry was applied: its batches no longer need the Raft log. */
  durable: boolean;
}

/** The image of a replica's state: where its log continues and its producers. */
interface ReplicaImage {
  nextOffset: number;
  producers: ProducersImage;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A partition replica's state machine over its log. */
export class PartitionMachine implements StateMachine {
  readonly log: Log;
  readonly #producers = new PartitionProducers();
  /** Called after each applied batch (to wake subscriptions). */
  readonly #onAppend: () => void;
  readonly #source: RangeSource;
  #limits: ReplicaLimits;
  readonly #checkpoints: Checkpoint[] = [];
  #bytesSinceCheckpoint = 0;
  /** Told after each snapshot restored (a replica far behind, or starting from one). */
  onRestore: () => void = () => {};
  /** Told of each batch range fetched from a peer while catching up. */
  onFetched: (batches: number) => void = () => {};
  /** Told when a peer sent batches that failed their checks (they were not stored). */
  onBadFetch: (reason: string) => void = () => {};
  /** Told when the log refused a change (a full disk, say), which is then tried again. */
  onStorageRetry: (reason: string, attempt: number) => void = () => {};
  /** Told once a damaged log was cut and filled again from peers. */
  onRepaired: (repair: ReplicaRepair) => void = () => {};
  /** The replica's peers (its group's voters and learners), asked for the batches a repair lacks. */
  peers: () => readonly string[] = () => [];
  /** The repair under way, if any: applies and restores wait for it. */
  #repairing: Promise<void> | null = null;
  /** The first restore checks every batch of the log (a restart may find damage at rest). */
  #checked = false;
  /** Peers that answered fetches since the last repair began. */
  #fetchedFrom = new Set<string>();

  constructor(log: Log, onAppend: () => void, limits: ReplicaLimits, source: RangeSource) {
    this.log = log;
    this.#onAppend = onAppend;
    this.#limits = limits;
    this.#source = source;
  }

  async apply(entry: Entry): Promise<AppliedBatch> {
    while (this.#repairing !== null) await this.#repairing;
    const applied = await this.#append(entry);
    this.#bytesSinceCheckpoint += entry.data.length;
    if (this.#bytesSinceCheckpoint >= this.#limits.checkpointBytes) this.#checkpoint(entry.index);
    return applied;
  }

  async #append(entry: Entry): Promise<AppliedBatch> {
    // The leader validated the batch before proposing it; the entry's CRC-checked bytes are the
    // same on every replica, so a failure here is the same everywhere and stores nothing.
    const header = readBatchHeader(entry.data);
    const append = () =>
      this.#untilStored(async () => (await this.log.append(entry.data, header)).baseOffset);
    if (header.producerId < 0) {
      const baseOffset = await append();
      this.#onAppend();
      return { baseOffset, duplicate: false };
    }
    const admitted = this.#producers.admit(header, append);
    const baseOffset = await admitted.baseOffset;
    if (!admitted.duplicate) this.#onAppend();
    return { baseOffset, duplicate: admitted.duplicate };
  }

  /**
   * Runs a step that changes the log until the storage takes it. A committed entry must reach the
   * log before the next one (Raft counts it applied once `apply` returns), so a full disk or a
   * shortage of file handles holds this replica's applies back — it falls behind and catches up
   * later — rather than skip a batch every other replica stored.
   */
  async #untilStored<T>(step: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await step();
      } catch (err) {
        if (this.damaged()) {
          // Inside a repair the repair's own loop cuts again; elsewhere, repair and try again.
          if (this.#repairing !== null) throw err;
          await this.repair();
          continue;
        }
        const refused = (err instanceof GregorError && err.code === ErrorCode.STORAGE_ERROR) ||
          err instanceof NoSpace || err instanceof TooManyOpenFiles || err instanceof IoFailure;
        if (!refused) throw err;
        this.onStorageRetry((err as Error).message, attempt);
        await this.#source.backoff();
      }
    }
  }

  #checkpoint(index: number): void {
    // Still waiting for earlier syncs: the next applied batch tries again.
    if (this.#checkpoints.length >= CHECKPOINTS_MAX) return;
    this.#bytesSinceCheckpoint = 0;
    const image: ReplicaImage = {
      nextOffset: this.log.nextOffset,
      producers: this.#producers.image(),
    };
    const c: Checkpoint = {
      index,
      nextOffset: image.nextOffset,
      image: encoder.encode(JSON.stringify(image)),
      durable: false,
    };
    this.#checkpoints.push(c);
    // Off the apply path: the Raft log keeps the entries until the sync is done. A failed sync
    // fails the log itself (and stops the node); the checkpoint then never becomes durable.
    this.log.sync().then(() => (c.durable = true), () => {});
  }

  /** New limits (the topic's retention changed): checkpoints are spaced by them from now on. */
  setLimits(limits: ReplicaLimits): void {
    this.#limits = limits;
  }

  /**
   * The newest checkpoint at or before `upTo` whose batches are durable in the log: Raft may
   * compact through it.
   */
  compactionPoint(upTo = Infinity): { index: number; image: Uint8Array } | null {
    let found: Checkpoint | null = null;
    for (;;) {
      const c = this.#checkpoints[0];
      if (c === undefined || !c.durable || c.index > upTo) break;
      found = this.#checkpoints.shift()!;
    }
    return found === null ? null : { index: found.index, image: found.image };
  }

  /**
   * True while a snapshot is being restored: the log is being cut back or filled from peers, so
   * what it shows is neither the state before nor after (the replica must not serve it).
   */
  get restoring(): boolean {
    return this.#restoring || this.#repairing !== null;
  }
  #restoring = false;

  async restore(snapshot: Snapshot): Promise<void> {
    while (this.#repairing !== null) await this.#repairing;
    this.#restoring = true;
    try {
      await this.#restore(snapshot);
    } finally {
      this.#restoring = false;
    }
  }

  async #restore(snapshot: Snapshot): Promise<void> {
    this.#checkpoints.length = 0;
    this.#bytesSinceCheckpoint = 0;
    const image: { nextOffset: number; producers: ProducersImage | null } =
      snapshot.data.length === 0
        ? { nextOffset: 0, producers: null } // the empty first snapshot of a new group
        : parseImage(snapshot.data);
    const peers = [...snapshot.voters, ...snapshot.learners];
    // Damage must be cut before the log is moved (a cut or an append behind it is refused); the
    // batches it drops below the checkpoint come from the peers, those above from the Raft log.
    let cut: LogRepair | null = null;
    if (!this.#checked || this.damaged()) {
      this.#fetchedFrom.clear();
      cut = await this.#cutDamage();
      this.#checked = true;
    }
    await this.#moveTo(image.nextOffset, peers);
    if (cut !== null) {
      const fetchedTo = Math.max(cut.cutOffset, Math.min(cut.endOffset, image.nextOffset));
      this.onRepaired({ cut, fetchedTo, peers: [...this.#fetchedFrom] });
    }
    this.#producers.loadImage(image.producers ?? emptyProducers());
    this.onRestore();
  }

  /** True if the log is damaged: it refuses reads from the damage on and every append. */
  damaged(): boolean {
    return (this.log.damage ?? null) !== null;
  }

  /**
   * Repairs a damaged log: cuts it at the damage and fetches the batches it held from there from
   * its peers, verifying each. One at a time: a call while one runs waits for it. `restoring` is
   * true meanwhile, so the replica does not serve.
   *
   * @throws {GregorError} SHUTTING_DOWN if the replica stops first
   */
  repair(): Promise<void> {
    if (this.#repairing === null) {
      this.#repairing = this.#repairNow().finally(() => (this.#repairing = null));
    }
    return this.#repairing;
  }

  async #repairNow(): Promise<void> {
    this.#fetchedFrom.clear();
    let first: LogRepair | null = null;
    let target = this.log.nextOffset;
    for (;;) {
      const cut = await this.#cutDamage();
      if (cut !== null) {
        first ??= cut;
        target = Math.max(target, cut.endOffset);
      }
      try {
        await this.#fill(target, this.peers());
      } catch (err) {
        // Damage found while filling (a read of an older segment, say): cut again and go on.
        if (this.damaged()) continue;
        throw err;
      }
      if (!this.damaged()) break;
    }
    if (first !== null) {
      // The batches fetched again are as durable as the rest before the repair counts as done.
      await this.#untilStored(() => this.log.sync());
      this.onRepaired({
        cut: { ...first, endOffset: target },
        fetchedTo: target,
        peers: [...this.#fetchedFrom],
      });
    }
  }

  /** Cuts the log at its first batch that fails its checks (all are checked); what was cut. */
  async #cutDamage(): Promise<LogRepair | null> {
    const log = this.log;
    if (log.repair === undefined) return null;
    for (let attempt = 1;; attempt++) {
      try {
        return await log.repair();
      } catch (err) {
        this.onStorageRetry((err as Error).message, attempt);
        await this.#source.backoff();
      }
    }
  }

  /** Puts the log's end at `target`: cut back, or filled from `peers`. */
  async #moveTo(target: number, peers: readonly string[]): Promise<void> {
    const log = this.log;
    if (log.nextOffset >= target) {
      // Batches after the checkpoint: the entries after the snapshot append them again.
      for (;;) {
        try {
          if (target >= log.logStartOffset) {
            await this.#untilStored(() => log.truncateFrom(target));
          } else await this.#untilStored(() => log.resetTo(target));
          return;
        } catch (err) {
          // Retention moved the start past the target while the cut waited (cluster seed 5942):
          // start over at the target; the entries after the snapshot refill the log.
          if (!(err instanceof OffsetOutOfRange) || target >= log.logStartOffset) throw err;
        }
      }
    }
    // A log opened after a crash on a full disk may hide its unsynced last segment (its next
    // offset is that segment's start): cut it off, its batches come from the peers like the rest.
    await this.#untilStored(() => log.truncateFrom(log.nextOffset));
    await this.#fill(target, peers);
  }

  /** Appends the batches from the log's end up to `target`, fetched from `peers`. */
  async #fill(target: number, peers: readonly string[]): Promise<void> {
    const log = this.log;
    while (log.nextOffset < target) {
      const got = await this.#source.fetch(log.nextOffset, CATCH_UP_FETCH_BYTES, peers);
      this.#fetchedFrom.add(got.peer);
      if (got.logStartOffset > log.nextOffset) {
        // Retention dropped these batches on the peer too: the replica starts where it starts.
        await this.#untilStored(() => log.resetTo(Math.min(got.logStartOffset, target)));
        continue;
      }
      let appended = 0;
      try {
        appended = await this.#appendFetched(got.bytes, target);
      } catch (err) {
        if (!(err instanceof CorruptBatchError || err instanceof MalformedError)) throw err;
        this.onBadFetch(`${err.message} (catching up from offset ${log.nextOffset})`);
        await this.#source.backoff();
      }
      if (appended > 0) this.onFetched(appended);
    }
  }

  /** Appends the batches of `bytes` that continue the log, below `target`; how many. */
  async #appendFetched(bytes: Uint8Array, target: number): Promise<number> {
    const log = this.log;
    let appended = 0;
    for (const batch of wholeBatches(bytes)) {
      const h = batch.header;
      if (h.baseOffset + h.recordCount <= log.nextOffset) continue; // before the offset asked
      if (h.baseOffset >= target) break;
      if (h.baseOffset !== log.nextOffset || h.baseOffset + h.recordCount > target) {
        throw new CorruptBatchError(
          `A peer sent offsets ${h.baseOffset}..${
            h.baseOffset + h.recordCount - 1
          } to a replica at ${log.nextOffset} catching up to ${target}`,
        );
      }
      await this.#untilStored(() => log.append(batch.bytes, h));
      appended++;
    }
    return appended;
  }
}

/** The batches in `bytes`, each checked against its checksum; stops at a partial one. */
function* wholeBatches(
  bytes: Uint8Array,
): Generator<{ bytes: Uint8Array; header: BatchHeader }> {
  for (let off = 0; off < bytes.length;) {
    const size = readBatchHeader(bytes, off).sizeBytes;
    if (off + size > bytes.length) return;
    // A copy: the log writes the base offset into what it appends, and may keep it.
    const batch = bytes.slice(off, off + size);
    yield { bytes: batch, header: validateBatch(batch, { recordsBytesMax: ENTRY_DATA_BYTES_MAX }) };
    off += size;
  }
}

function parseImage(data: Uint8Array): ReplicaImage {
  const image = JSON.parse(decoder.decode(data)) as ReplicaImage;
  if (!Number.isSafeInteger(image.nextOffset) || image.nextOffset < 0) {
    throw new GregorError(
      ErrorCode.INTERNAL,
      `A replica snapshot names offset ${image.nextOffset}`,
    );
  }
  return image;
}

function emptyProducers(): ProducersImage {
  return new PartitionProducers().image();
}
