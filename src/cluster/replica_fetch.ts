// Catch-up fetches between the replicas of a partition, over the cluster transport: a replica
// restored from a snapshot whose log ends before the snapshot's offset asks its peers for the
// batches between, in chunks of at most REPLY_BYTES_MAX. A request goes to the group's wire name
// with FETCH_SUFFIX, the answer comes back on the asker's own connection with REPLY_SUFFIX. The
// transport may lose either: the asker times out and asks the next peer.
//
//   request  kind u8 (1) | id u32 | fromOffset i64 | bytesMax u32
//   reply    kind u8 (2) | id u32 | status u8 | logStartOffset i64 | batches (u32 length + bytes)

import type { Env } from "../io/types.ts";
import { ErrorCode, GregorError, MalformedError } from "../protocol/errors.ts";
import { GUARD_DONE } from "../io/errors.ts";
import { Reader, Writer } from "../protocol/wire.ts";
import { type Log, OffsetOutOfRange } from "../storage/mod.ts";
import type { FetchedRange, RangeSource } from "./replica.ts";

/** Suffix of the wire name a fetch request is sent to. */
export const FETCH_SUFFIX = "#fetch";
/** Suffix of the wire name a fetch reply is sent to. */
export const REPLY_SUFFIX = "#fetched";
/** Batch bytes one reply carries at most (past one batch: a reply always holds a whole one). */
export const REPLY_BYTES_MAX = 1024 * 1024;
/** How long an asker waits for a peer's reply before it asks the next, ms. */
export const FETCH_TIMEOUT_MS = 2_000;
/** Backoff between rounds of peers that had nothing to give, ms. */
const BACKOFF_MS_MIN = 50;
const BACKOFF_MS_MAX = 2_000;

const KIND_REQUEST = 1;
const KIND_REPLY = 2;

/** What a peer answered. */
export type FetchStatus = "ok" | "absent" | "failed";
const STATUS_CODES: Readonly<Record<FetchStatus, number>> = { ok: 0, absent: 1, failed: 2 };
const STATUSES: readonly FetchStatus[] = ["ok", "absent", "failed"];

/** A request for batches from `fromOffset` on. */
export interface FetchRequest {
  id: number;
  fromOffset: number;
  bytesMax: number;
}

/** A peer's answer: its batches from the offset asked for, and where its log starts. */
export interface FetchReply {
  id: number;
  status: FetchStatus;
  logStartOffset: number;
  bytes: Uint8Array;
}

export function encodeFetchRequest(r: FetchRequest): Uint8Array {
  return new Writer(24).u8(KIND_REQUEST).u32(r.id).i64(r.fromOffset).u32(r.bytesMax).finish();
}

export function encodeFetchReply(r: FetchReply): Uint8Array {
  return new Writer(r.bytes.length + 24).u8(KIND_REPLY).u32(r.id).u8(STATUS_CODES[r.status])
    .i64(r.logStartOffset).bytes(r.bytes).finish();
}

/** @throws {MalformedError} if `data` is not a request */
export function decodeFetchRequest(data: Uint8Array): FetchRequest {
  const r = new Reader(data);
  if (r.u8("kind") !== KIND_REQUEST) throw new MalformedError("Not a fetch request");
  const req = { id: r.u32("id"), fromOffset: r.i64("fromOffset"), bytesMax: r.u32("bytesMax") };
  r.end("fetch request");
  return req;
}

/** @throws {MalformedError} if `data` is not a reply */
export function decodeFetchReply(data: Uint8Array): FetchReply {
  const r = new Reader(data);
  if (r.u8("kind") !== KIND_REPLY) throw new MalformedError("Not a fetch reply");
  const id = r.u32("id");
  const status = STATUSES[r.u8("status")];
  if (status === undefined) throw new MalformedError("Unknown fetch status");
  const logStartOffset = r.i64("logStartOffset");
  const bytes = r.bytes("batches") ?? new Uint8Array(0);
  r.end("fetch reply");
  return { id, status, logStartOffset, bytes };
}

/**
 * Answers a peer's request from this replica's `log` (undefined: this node holds no such replica).
 * The log holds only committed batches, so whatever it returns is what every replica holds there.
 */
export async function answerFetch(log: Log | undefined, req: FetchRequest): Promise<FetchReply> {
  const reply = (status: FetchStatus, bytes: Uint8Array = new Uint8Array(0)): FetchReply => ({
    id: req.id,
    status,
    logStartOffset: log?.logStartOffset ?? 0,
    bytes,
  });
  if (log === undefined) return reply("absent");
  if (req.fromOffset < log.logStartOffset) return reply("ok");
  if (req.fromOffset >= log.nextOffset) return reply("ok");
  try {
    const read = await log.read(req.fromOffset, {
      bytesMax: Math.min(req.bytesMax, REPLY_BYTES_MAX),
      recordsMax: Number.MAX_SAFE_INTEGER,
    });
    return reply("ok", read.bytes);
  } catch (err) {
    // Retention moved the start while reading: the asker learns the new start.
    if (err instanceof OffsetOutOfRange) return reply("ok");
    // A damaged log (or a failing disk) cannot vouch for its batches: the asker tries another.
    return reply("failed");
  }
}

/** Options of a ReplicaFetcher. */
export interface ReplicaFetcherOptions {
  /** This node's id: never asked. */
  self: string;
  /** The replica group's wire name. */
  wire: string;
  send(to: string, group: string, data: Uint8Array): void;
  /** Aborted when the replica stops: a fetch then fails with SHUTTING_DOWN. */
  signal: AbortSignal;
}

/** The asking side: a RangeSource that asks the replica's peers in turn. */
export class ReplicaFetcher implements RangeSource {
  readonly #env: Env;
  readonly #o: ReplicaFetcherOptions;
  readonly #waiting = new Map<number, (r: FetchReply) => void>();
  #nextId = 1;
  /** Which peer a round starts at: each fetch starts one further, so no peer is always first. */
  #rotation = 0;
  #backoffMs = BACKOFF_MS_MIN;

  constructor(env: Env, opts: ReplicaFetcherOptions) {
    this.#env = env;
    this.#o = opts;
  }

  /** Feeds a reply that arrived on the transport; unknown or malformed ones are dropped. */
  receive(data: Uint8Array): void {
    let reply: FetchReply;
    try {
      reply = decodeFetchReply(data);
    } catch {
      return;
    }
    this.#waiting.get(reply.id)?.(reply);
  }

  async fetch(
    fromOffset: number,
    bytesMax: number,
    peers: readonly string[],
  ): Promise<FetchedRange> {
    const others = peers.filter((p) => p !== this.#o.self);
    for (;;) {
      this.#rotation++;
      for (let i = 0; i < others.length; i++) {
        const peer = others[(this.#rotation + i) % others.length]!;
        const reply = await this.#ask(peer, { id: this.#nextId++, fromOffset, bytesMax });
        if (reply === null || reply.status !== "ok") continue;
        // Only an answer that moves the asker on counts; a peer as far behind is no help.
        if (reply.bytes.length > 0 || reply.logStartOffset > fromOffset) {
          this.#backoffMs = BACKOFF_MS_MIN;
          return { bytes: reply.bytes, logStartOffset: reply.logStartOffset, peer };
        }
      }
      await this.backoff();
    }
  }

  async backoff(): Promise<void> {
    this.#stopped();
    const ms = this.#backoffMs * (0.5 + this.#env.random.float() / 2);
    this.#backoffMs = Math.min(this.#backoffMs * 2, BACKOFF_MS_MAX);
    await this.#env.clock.sleep(ms, this.#o.signal).catch(() => {});
    this.#stopped();
  }

  /** One request to `peer`: its reply, or null if none came within FETCH_TIMEOUT_MS. */
  async #ask(peer: string, req: FetchRequest): Promise<FetchReply | null> {
    this.#stopped();
    const timeout = new AbortController();
    const onStop = () => timeout.abort();
    this.#o.signal.addEventListener("abort", onStop);
    try {
      const answered = new Promise<FetchReply>((resolve) => this.#waiting.set(req.id, resolve));
      this.#o.send(peer, this.#o.wire + FETCH_SUFFIX, encodeFetchRequest(req));
      const late = this.#env.clock.sleep(FETCH_TIMEOUT_MS, timeout.signal).then(
        () => null,
        () => null,
      );
      return await Promise.race([answered, late]);
    } finally {
      timeout.abort(GUARD_DONE);
      this.#o.signal.removeEventListener("abort", onStop);
      this.#waiting.delete(req.id);
    }
  }

  #stopped(): void {
    if (this.#o.signal.aborted) {
      throw new GregorError(ErrorCode.SHUTTING_DOWN, `Replica ${this.#o.wire} stopped`);
    }
  }
}
