// EXAMPLE, not the broker: one replica of a majority-replicated register store, written only
// against the I/O seam. It exists to drive the simulator's network, disk and crash faults end to
// end until the real broker replaces it. Its wire and WAL formats are private to this example.

import type { Addr, Conn, Env, File } from "../../src/io/types.ts";
import { dirname, readFile, writeAll } from "../../src/io/util.ts";
import type { ProcessControl } from "../node.ts";
import {
  decodeRecord,
  encodeRecord,
  FrameReader,
  OP_GET,
  OP_PUT,
  reply,
  type Versioned,
} from "./register_wire.ts";

/** A planted bug, for proving the checker catches real mistakes. */
export type ReplicaBug = "ack-before-sync" | null;

/** Options for one replica. */
export interface ReplicaOptions {
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  port: number;
  dataDir: string;
  bug?: ReplicaBug;
  /** Told the bound address once the replica serves. */
  onListening?: (addr: Addr) => void;
}

/** Records written by one group commit, at most. */
const COMMIT_RECORDS_MAX = 256;
/** Requests a connection may have in progress before the replica stops reading from it. */
const CONN_INFLIGHT_MAX = 64;
/** Attempts at reading the WAL before giving up on a failing disk. */
const RECOVERY_READS_MAX = 5;

interface Pending {
  record: Uint8Array;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Runs a replica until its process is crashed. */
export async function runReplica(
  env: Env,
  ctl: ProcessControl,
  opts: ReplicaOptions,
): Promise<void> {
  const wal = `${opts.dataDir}/wal.log`;
  await env.disk.mkdir(opts.dataDir);
  await env.disk.syncDir(dirname(opts.dataDir));
  const state = new Map<string, Versioned>();
  const { file, end } = await recover(env, ctl, wal, state);
  let walEnd = end;
  const queue: Pending[] = [];
  let committing = false;

  // Group commit: every record waiting when a commit starts shares one write and one sync.
  async function commitLoop(): Promise<void> {
    committing = true;
    while (queue.length > 0) {
      const batch = queue.splice(0, COMMIT_RECORDS_MAX);
      const bytes = concat(batch.map((p) => p.record));
      try {
        await file.writeAt(walEnd, bytes);
      } catch (err) {
        // A failed write may have left a prefix of the batch; cut it off, or the next batch
        // would land after garbage, or leave a tail of records nobody acknowledged.
        try {
          await file.truncate(walEnd);
        } catch {
          ctl.fatal("cannot truncate the WAL after a failed write");
        }
        for (const p of batch) p.reject(err);
        continue;
      }
      try {
        await file.sync();
      } catch {
        // The dirty pages may be gone for good; the only honest answer is to die and recover.
        ctl.fatal("fsync of the WAL failed");
      }
      walEnd += bytes.length;
      for (const p of batch) p.resolve();
    }
    committing = false;
  }

  function append(record: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      queue.push({ record, resolve, reject });
      // The loop only ever ends in error through ctl.fatal, which has ended the process already.
      if (!committing) commitLoop().catch(() => {});
    });
  }

  function apply(v: Versioned): void {
    const cur = state.get(v.key);
    if (cur === undefined || cur.version < v.version) state.set(v.key, v);
  }

  async function handle(op: number, body: Versioned): Promise<Uint8Array> {
    if (op === OP_GET) {
      return reply.value(state.get(body.key) ?? { key: body.key, version: 0, value: "" });
    }
    if (op !== OP_PUT) return reply.error(`unknown op ${op}`);
    const committed = append(encodeRecord(body));
    if (opts.bug === "ack-before-sync") {
      apply(body);
      committed.catch(() => {});
      return reply.ok();
    }
    try {
      await committed;
    } catch (err) {
      return reply.error(err instanceof Error ? err.message : String(err));
    }
    apply(body);
    return reply.ok();
  }

  async function serve(conn: Conn): Promise<void> {
    const frames = new FrameReader();
    const buf = new Uint8Array(4096);
    let inflight = 0;
    let drained: (() => void) | null = null;
    let sending: Promise<void> = Promise.resolve();
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return;
        frames.push(buf.subarray(0, n));
        for (let f = frames.next(); f !== null; f = frames.next()) {
          const { op, id, body } = f;
          inflight++;
          void handle(op, body).then((answer) => {
            sending = sending.then(() => writeAll(conn, reply.frame(id, answer))).catch(() => {});
            inflight--;
            drained?.();
          });
          while (inflight >= CONN_INFLIGHT_MAX) await new Promise<void>((r) => (drained = r));
        }
      }
    } catch {
      // A reset or a malformed frame ends this connection only.
    } finally {
      conn.close();
    }
  }

  const listener = await env.net.listen({ host: opts.host ?? "127.0.0.1", port: opts.port });
  opts.onListening?.(listener.addr);
  for (;;) {
    const conn = await listener.accept();
    if (conn === null) return;
    void serve(conn);
  }
}

/**
 * Reads the WAL, keeps its longest valid prefix, and makes exactly that prefix durable in a fresh
 * file that atomically replaces the old one. The copy matters: after a failed fsync the page cache
 * may show records the disk never got, and a later sync would not write them again.
 */
async function recover(
  env: Env,
  ctl: ProcessControl,
  wal: string,
  state: Map<string, Versioned>,
): Promise<{ file: File; end: number }> {
  let best: { end: number; records: Versioned[] } = { end: 0, records: [] };
  let readOk = false;
  for (let attempt = 0; attempt < RECOVERY_READS_MAX; attempt++) {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(env.disk, wal);
    } catch (err) {
      if ((err as { code?: string }).code === "NOT_FOUND") {
        readOk = true;
        break;
      }
      continue;
    }
    readOk = true;
    const parsed = parseWal(bytes);
    if (parsed.end > best.end) best = parsed;
    // A checksum failure may be a bit flipped on the way from disk; read again to tell.
    if (parsed.end === bytes.length) break;
  }
  if (!readOk) ctl.fatal(`cannot read ${wal}: the disk keeps failing`);
  const tmp = `${wal}.new`;
  const file = await env.disk.open(tmp, { create: true });
  await file.truncate(0);
  const prefix = concat(best.records.map(encodeRecord));
  await file.writeAt(0, prefix);
  await file.sync();
  await env.disk.rename(tmp, wal);
  await env.disk.syncDir(dirname(wal));
  for (const r of best.records) {
    const cur = state.get(r.key);
    if (cur === undefined || cur.version < r.version) state.set(r.key, r);
  }
  return { file, end: prefix.length };
}

/** The longest prefix of whole, checksummed records. */
export function parseWal(bytes: Uint8Array): { end: number; records: Versioned[] } {
  const records: Versioned[] = [];
  let off = 0;
  for (;;) {
    const r = decodeRecord(bytes, off);
    if (r === null) break;
    records.push(r.value);
    off = r.next;
  }
  return { end: off, records };
}

function concat(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
