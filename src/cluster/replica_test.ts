import assert from "node:assert/strict";
import { SeededRandom } from "../io/prng.ts";
import { FileLog, type Log, MemoryLog } from "../storage/mod.ts";
import { segmentName } from "../storage/layout.ts";
import { batchesIn, encodeBatch } from "../protocol/batch.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { Env } from "../io/types.ts";
import { calmDisk } from "../../sim/disk.ts";
import { runOnNode } from "../../sim/harness.ts";
import type { SimNode } from "../../sim/node.ts";
import { Simulation } from "../../sim/simulation.ts";
import type { Entry } from "./raft/types.ts";
import {
  type AppliedBatch,
  PartitionMachine,
  type RangeSource,
  type ReplicaRepair,
} from "./replica.ts";
import { answerFetch } from "./replica_fetch.ts";

/** A stream of committed entries: batches of a few producers, with retries (duplicates) mixed in. */
function entries(seed: number, count: number): Entry[] {
  const r = new SeededRandom(seed, "replica-entries");
  const next = new Map<number, number>();
  const sent: { producerId: number; baseSequence: number; n: number }[] = [];
  const out: Entry[] = [];
  for (let i = 1; i <= count; i++) {
    let b: { producerId: number; baseSequence: number; n: number };
    if (sent.length > 0 && r.float() < 0.2) {
      // A retry of one of the last few batches: the state machine must call it a duplicate.
      b = sent[Math.max(0, sent.length - 1 - r.int(0, 4))]!;
    } else {
      const producerId = r.int(-1, 3); // -1: not idempotent
      const baseSequence = producerId < 0 ? -1 : next.get(producerId) ?? 0;
      b = { producerId, baseSequence, n: r.int(1, 4) };
      if (producerId >= 0) next.set(producerId, baseSequence + b.n);
      sent.push(b);
    }
    const records = Array.from({ length: b.n }, (_, k) => ({
      value: new TextEncoder().encode(`e${i}-${k}`),
      timestamp: i,
    }));
    const data = encodeBatch(records, {
      producerId: b.producerId,
      producerEpoch: 0,
      baseSequence: b.baseSequence,
    });
    out.push({ index: i, term: 1, kind: "normal", data });
  }
  return out;
}

async function applyAll(m: PartitionMachine, es: readonly Entry[]): Promise<AppliedBatch[]> {
  const results: AppliedBatch[] = [];
  for (const e of es) results.push(await m.apply({ ...e, data: e.data.slice() }));
  return results;
}

/** Every stored batch from `from` on, as the bytes a reader gets. */
async function contents(log: Log, from: number): Promise<Uint8Array> {
  return (await log.read(from, { bytesMax: 1 << 30, recordsMax: 1 << 30 })).bytes;
}

/**
 * A RangeSource answered by `peer`'s log the way a peer node answers (answerFetch), in chunks of
 * `bytesMax`; `tamper` may change a reply's bytes (a peer that sends damaged batches).
 */
function peerSource(
  peer: () => Log,
  counts: { fetches: number; backoffs: number },
  tamper: (bytes: Uint8Array, n: number) => Uint8Array = (b) => b,
): RangeSource {
  return {
    async fetch(fromOffset, bytesMax) {
      const r = await answerFetch(peer(), { id: 1, fromOffset, bytesMax });
      counts.fetches++;
      return {
        bytes: tamper(r.bytes.slice(), counts.fetches),
        logStartOffset: r.logStartOffset,
        peer: "b",
      };
    },
    backoff: () => Promise.resolve(void counts.backoffs++),
  };
}

const NO_PEER: RangeSource = {
  fetch: () => Promise.reject(new Error("no fetch expected")),
  backoff: () => Promise.resolve(),
};

/** Applies `es` until the machine offers a compaction point (its log synced a checkpoint). */
async function untilCompactionPoint(
  m: PartitionMachine,
  es: readonly Entry[],
): Promise<{ point: { index: number; image: Uint8Array }; at: number }> {
  let at = 0;
  for (;;) {
    await m.apply({ ...es[at]!, data: es[at]!.data.slice() });
    at++;
    // The checkpoint's sync settles on a later turn, as it does on a real log.
    await Promise.resolve();
    const point = m.compactionPoint();
    if (point !== null) return { point, at };
    if (at >= es.length) throw new Error("no compaction point in the whole stream");
  }
}

function snapshotAt(point: { index: number; image: Uint8Array }) {
  return { index: point.index, term: 1, voters: ["a", "b"], learners: [], data: point.image };
}

Deno.test("PartitionMachine: a replica behind a snapshot fetches the batches between from a peer and then decides like it", async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const es = entries(seed, 300);
    const original = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
      checkpointBytes: 1500,
    }, NO_PEER);
    const { point, at } = await untilCompactionPoint(original, es);

    // A new replica (empty log) gets the snapshot: it fetches every batch before the snapshot's
    // offset from the peer, in small chunks, then applies the entries after it.
    const counts = { fetches: 0, backoffs: 0 };
    const copy = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
      checkpointBytes: 1500,
    }, peerSource(() => original.log, counts));
    let restored = 0;
    copy.onRestore = () => void restored++;
    await copy.restore(snapshotAt(point));
    assert.equal(restored, 1);
    assert.ok(counts.fetches > 0, "the copy fetched from its peer");
    await applyAll(copy, es.slice(point.index, at));

    // From here on both decide every batch alike: same offsets, same duplicates, same bytes.
    const rest = es.slice(at);
    const a = await applyAll(original, rest);
    const b = await applyAll(copy, rest);
    assert.deepEqual(b, a, `seed ${seed}: the restored replica decided differently`);
    assert.ok(a.some((x) => x.duplicate), `seed ${seed}: no retry was judged a duplicate`);
    assert.equal(copy.log.nextOffset, original.log.nextOffset);
    assert.deepEqual(await contents(copy.log, 0), await contents(original.log, 0));
  }
});

Deno.test("PartitionMachine: a restarting replica whose log is ahead of its snapshot cuts it back and applies again", async () => {
  const es = entries(3, 200);
  const log = new MemoryLog({ retentionBytes: Infinity });
  const before = new PartitionMachine(log, () => {}, { checkpointBytes: 800 }, NO_PEER);
  const { point, at } = await untilCompactionPoint(before, es);
  await applyAll(before, es.slice(at, at + 20)); // applied after the checkpoint, then a crash
  const expected = await contents(log, 0);
  const end = log.nextOffset;

  const after = new PartitionMachine(log, () => {}, { checkpointBytes: 800 }, NO_PEER);
  await after.restore(snapshotAt(point));
  assert.ok(log.nextOffset < end, "the log was cut back to the checkpoint");
  await applyAll(after, es.slice(point.index, at + 20));
  assert.deepEqual(await contents(log, 0), expected, "applying again rebuilt the same log");
});

Deno.test("PartitionMachine: batches from a peer that fail their checksum are refused, counted, and fetched again", async () => {
  const es = entries(5, 150);
  const original = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
    checkpointBytes: 1000,
  }, NO_PEER);
  const { point } = await untilCompactionPoint(original, es);
  const counts = { fetches: 0, backoffs: 0 };
  // The first two replies have a flipped byte in the last batch's records.
  const flip = (b: Uint8Array, n: number) => {
    if (n <= 2 && b.length > 0) b[b.length - 1]! ^= 0x40;
    return b;
  };
  const copy = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
    checkpointBytes: 1000,
  }, peerSource(() => original.log, counts, flip));
  const bad: string[] = [];
  copy.onBadFetch = (reason) => bad.push(reason);
  await copy.restore(snapshotAt(point));
  assert.equal(bad.length, 2, JSON.stringify(bad));
  assert.match(bad[0]!, /CRC-32C/);
  assert.equal(counts.backoffs, 2);
  const end = JSON.parse(new TextDecoder().decode(point.image)).nextOffset as number;
  assert.equal(copy.log.nextOffset, end);
  assert.deepEqual(await contents(copy.log, 0), await contents(original.log, 0));
});

Deno.test("PartitionMachine: a replica behind a peer whose retention dropped its next batches starts at the peer's log start", async () => {
  const es = entries(9, 300);
  const peerLog = new MemoryLog({ retentionBytes: Infinity });
  const original = new PartitionMachine(peerLog, () => {}, { checkpointBytes: 1500 }, NO_PEER);
  const { point } = await untilCompactionPoint(original, es);
  peerLog.setRetention({ bytes: 1200 });
  assert.ok(peerLog.logStartOffset > 0);
  const counts = { fetches: 0, backoffs: 0 };
  const copy = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
    checkpointBytes: 1500,
  }, peerSource(() => peerLog, counts));
  await copy.restore(snapshotAt(point));
  assert.equal(copy.log.logStartOffset, peerLog.logStartOffset);
  assert.deepEqual(
    await contents(copy.log, peerLog.logStartOffset),
    await contents(peerLog, peerLog.logStartOffset),
  );
});

Deno.test("PartitionMachine: no compaction point until the log has synced the checkpoint's batches", async () => {
  const es = entries(7, 200);
  const log = new MemoryLog({ retentionBytes: Infinity });
  let release: () => void = () => {};
  const synced = new Promise<void>((r) => (release = r));
  const slow: Log = {
    get logStartOffset() {
      return log.logStartOffset;
    },
    get nextOffset() {
      return log.nextOffset;
    },
    get sizeBytes() {
      return log.sizeBytes;
    },
    append: (batch, header) => log.append(batch, header),
    read: (offset, limits) => log.read(offset, limits),
    offsetForTimestamp: (ms) => log.offsetForTimestamp(ms),
    truncateFrom: (offset) => log.truncateFrom(offset),
    resetTo: (offset) => log.resetTo(offset),
    sync: () => synced,
    close: () => log.close(),
  };
  const m = new PartitionMachine(slow, () => {}, { checkpointBytes: 500 }, NO_PEER);
  await applyAll(m, es);
  await Promise.resolve();
  assert.equal(m.compactionPoint(), null, "nothing is durable yet: the Raft log keeps it all");
  release();
  await synced;
  await Promise.resolve();
  const point = m.compactionPoint();
  assert.ok(point !== null);
  assert.equal(m.compactionPoint(), null, "a point is handed out once");
});

const LOG_DIR = "replica";

function openFileLog(env: Env): Promise<FileLog> {
  return FileLog.open(env, {
    dir: LOG_DIR,
    fsync: { kind: "always" },
    segmentBytes: 1_000,
    segmentMs: 1 << 30,
    indexIntervalBytes: 200,
    retentionBytes: -1,
    retentionMs: -1,
    // Reads go to the file, where these tests damage it, not to the tail kept in memory.
    tailCacheBytes: 0,
    onFatal: (reason) => {
      throw new Error(`the log failed: ${reason}`);
    },
  });
}

function onSim<T>(seed: number, body: (env: Env, node: SimNode) => Promise<T>): Promise<T> {
  return runOnNode(new Simulation(seed, { disk: calmDisk() }), "n", body);
}

/** Flips a record byte of the middle batch of the log's first segment; the offset it damages. */
async function damageFirstSegment(node: SimNode, log: Log): Promise<number> {
  // A read from 0 returns the first segment's batches, at their positions in its file.
  const bytes = (await log.read(0, { bytesMax: 1 << 20, recordsMax: 1 << 20 })).bytes;
  const batches = [...batchesIn(bytes)];
  const bad = batches[Math.floor(batches.length / 2)]!;
  node.disk.corruptAtRest(
    `${LOG_DIR}/${segmentName(0, "log")}`,
    bad.off + bad.header.sizeBytes - 3,
  );
  return bad.header.baseOffset;
}

Deno.test("PartitionMachine: a log damaged at rest is cut at the damage when the replica restarts and filled again from a peer", async () => {
  await onSim(3, async (env, node) => {
    const es = entries(3, 120);
    const peer = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
      checkpointBytes: 1 << 30,
    }, NO_PEER);
    await applyAll(peer, es);
    const first = new PartitionMachine(await openFileLog(env), () => {}, {
      checkpointBytes: 400,
    }, NO_PEER);
    await applyAll(first, es);
    await env.clock.sleep(1);
    // The newest checkpoint: the damage lies below its offset, so only a peer has those batches.
    const point = first.compactionPoint()!;
    const bad = await damageFirstSegment(node, first.log);
    assert.ok(bad < JSON.parse(new TextDecoder().decode(point.image)).nextOffset);
    await first.log.close();

    const counts = { fetches: 0, backoffs: 0 };
    const again = new PartitionMachine(
      await openFileLog(env),
      () => {},
      { checkpointBytes: 400 },
      peerSource(() => peer.log, counts),
    );
    const repairs: ReplicaRepair[] = [];
    again.onRepaired = (r) => void repairs.push(r);
    await again.restore(snapshotAt(point));
    assert.equal(repairs.length, 1);
    assert.equal(repairs[0]!.cut.cutOffset, bad);
    assert.deepEqual(repairs[0]!.peers, ["b"]);
    assert.ok(counts.fetches > 0, "the batches below the checkpoint came from the peer");
    // The entries after the snapshot apply again, as a restarted replica's Raft log does.
    await applyAll(again, es.slice(point.index));
    assert.equal(again.log.nextOffset, peer.log.nextOffset);
    assert.deepEqual(await readAll(again.log), await readAll(peer.log));
    await again.log.close();
  });
});

Deno.test("PartitionMachine: damage a read finds stops the replica until it is filled again from a peer; the next batch then lands where the peer's did", async () => {
  await onSim(4, async (env, node) => {
    const es = entries(4, 120);
    const peer = new PartitionMachine(new MemoryLog({ retentionBytes: Infinity }), () => {}, {
      checkpointBytes: 1 << 30,
    }, NO_PEER);
    const counts = { fetches: 0, backoffs: 0 };
    const m = new PartitionMachine(await openFileLog(env), () => {}, {
      checkpointBytes: 400,
    }, peerSource(() => peer.log, counts));
    m.peers = () => ["a", "b"];
    const repairs: ReplicaRepair[] = [];
    m.onRepaired = (r) => void repairs.push(r);
    await applyAll(peer, es);
    await applyAll(m, es.slice(0, 100));
    const bad = await damageFirstSegment(node, m.log);
    const err = await readAll(m.log).catch((e) => e);
    assert.ok(err instanceof GregorError && err.code === ErrorCode.PARTITION_DAMAGED, `${err}`);
    assert.ok(m.damaged());
    // The next committed batch waits for the repair, then lands at its own offset.
    const rest = await applyAll(m, es.slice(100));
    assert.equal(repairs.length, 1);
    assert.equal(repairs[0]!.cut.cutOffset, bad);
    assert.ok(!m.damaged() && !m.restoring);
    assert.equal(
      rest[0]!.baseOffset,
      (await applyAll(
        new PartitionMachine(
          new MemoryLog({ retentionBytes: Infinity }),
          () => {},
          { checkpointBytes: 1 << 30 },
          NO_PEER,
        ),
        es,
      )).at(100)!.baseOffset,
    );
    assert.deepEqual(await readAll(m.log), await readAll(peer.log));
    await m.log.close();
  });
});

/** Every batch of `log`, read in bounded steps, back to back. */
async function readAll(log: Log): Promise<Uint8Array> {
  const parts: number[] = [];
  for (let offset = log.logStartOffset; offset < log.nextOffset;) {
    const r = await log.read(offset, { bytesMax: 4096, recordsMax: 1 << 20 });
    parts.push(...r.bytes);
    offset = r.nextOffset;
  }
  return new Uint8Array(parts);
}
