import assert from "node:assert/strict";
import fc from "fast-check";
import { MalformedError } from "../../protocol/errors.ts";
import { decodeMessage, decodeVoters, encodeMessage, encodeVoters } from "./codec.ts";
import { RaftLog } from "./log.ts";
import { MemoryStorage } from "./memory_storage.ts";
import type { Entry, Message } from "./types.ts";

const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/);
const term = fc.integer({ min: 1, max: 2 ** 40 });
const voters = fc.uniqueArray(id, { minLength: 1, maxLength: 5 }).map((v) => v.sort());

const head = fc.record({ from: id, to: id, term });

function entriesAfter(prevIndex: number, prevTerm: number, t: number): fc.Arbitrary<Entry[]> {
  return fc.array(
    fc.oneof(
      fc.record({ kind: fc.constant("normal" as const), data: fc.uint8Array({ maxLength: 16 }) }),
      fc.record({ kind: fc.constant("noop" as const), data: fc.constant(new Uint8Array(0)) }),
      voters.map((v) => ({ kind: "config" as const, data: encodeVoters(v) })),
    ),
    { maxLength: 4 },
  ).map((xs) =>
    xs.map((x, i) => ({ index: prevIndex + 1 + i, term: Math.max(prevTerm, t), ...x }))
  );
}

const message: fc.Arbitrary<Message> = fc.oneof(
  head.chain((h) =>
    fc.integer({ min: 0, max: 1000 }).map((i) => ({
      ...h,
      type: "PreVote" as const,
      lastIndex: i,
      lastTerm: i === 0 ? 0 : h.term,
    }))
  ),
  head.chain((h) =>
    fc.boolean().map((transfer) => ({
      ...h,
      type: "RequestVote" as const,
      lastIndex: 3,
      lastTerm: 1,
      transfer,
    }))
  ),
  head.chain((h) =>
    fc.boolean().map((granted) => ({ ...h, type: "PreVoteResp" as const, granted }))
  ),
  head.chain((h) =>
    fc.boolean().map((granted) => ({ ...h, type: "RequestVoteResp" as const, granted }))
  ),
  head.chain((h) =>
    fc.integer({ min: 1, max: 1000 }).chain((prevIndex) =>
      entriesAfter(prevIndex, 1, h.term).map((entries) => ({
        ...h,
        type: "AppendEntries" as const,
        prevIndex,
        prevTerm: 1,
        entries,
        commit: prevIndex,
      }))
    )
  ),
  head.chain((h) =>
    fc.record({ success: fc.boolean(), index: fc.nat(), hintTerm: fc.nat(), hintIndex: fc.nat() })
      .map((r) => ({ ...h, type: "AppendEntriesResp" as const, ...r }))
  ),
  head.chain((h) =>
    fc.record({ voters, data: fc.uint8Array({ maxLength: 32 }), index: fc.integer({ min: 1 }) })
      .map((s) => ({
        ...h,
        type: "InstallSnapshot" as const,
        snapshot: { ...s, term: h.term },
      }))
  ),
  head.chain((h) =>
    fc.nat().map((index) => ({ ...h, type: "InstallSnapshotResp" as const, index }))
  ),
  head.map((h) => ({ ...h, type: "TimeoutNow" as const })),
);

Deno.test("codec round-trips every Raft message", () => {
  fc.assert(fc.property(message, (m) => {
    assert.deepEqual(decodeMessage(encodeMessage(m)), m);
  }));
});

Deno.test("codec decoder throws MalformedError on any truncation or trailing byte", () => {
  fc.assert(fc.property(message, fc.nat(), (m, cut) => {
    const b = encodeMessage(m);
    assert.throws(() => decodeMessage(b.subarray(0, cut % b.length)), MalformedError);
    const longer = new Uint8Array(b.length + 1);
    longer.set(b);
    assert.throws(() => decodeMessage(longer), MalformedError);
  }));
});

Deno.test("codec decoder never throws anything but MalformedError on random bytes", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
    try {
      decodeMessage(b);
    } catch (err) {
      assert.ok(err instanceof MalformedError, String(err));
    }
  }));
});

Deno.test("codec decoder rejects entries that break log order", () => {
  const base = {
    type: "AppendEntries" as const,
    from: "a",
    to: "b",
    term: 3,
    prevIndex: 4,
    prevTerm: 2,
    commit: 0,
  };
  const e = (index: number, t: number): Entry => ({
    index,
    term: t,
    kind: "normal",
    data: new Uint8Array(0),
  });
  for (
    const [entries, why] of [
      [[e(6, 2)], /index 6, not 5/],
      [[e(5, 1)], /out of order/],
      [[e(5, 4)], /out of order/],
      [[e(5, 3), e(6, 2)], /out of order/],
    ] as const
  ) {
    assert.throws(() => decodeMessage(encodeMessage({ ...base, entries })), why);
  }
  const badId = encodeMessage({ type: "TimeoutNow", from: "a", to: "b", term: 1 });
  badId[4] = 0x20; // from "a" becomes " "
  assert.throws(() => decodeMessage(badId), /not 1 to 64/);
});

Deno.test("codec voter sets must be sorted, distinct and non-empty", () => {
  assert.deepEqual(decodeVoters(encodeVoters(["a", "b"])), ["a", "b"]);
  assert.throws(() => encodeVoters([]), RangeError);
  assert.throws(() => encodeVoters(["b", "a"]), RangeError);
  assert.throws(() => encodeVoters(["a", "a"]), RangeError);
  assert.throws(() => decodeVoters(new Uint8Array([0, 0])), MalformedError);
});

Deno.test("RaftLog finds conflicts, hints and up-to-dateness", () => {
  const snap = { index: 2, term: 1, voters: ["a"], data: new Uint8Array(0) };
  const mk = (index: number, t: number): Entry => ({
    index,
    term: t,
    kind: "normal",
    data: new Uint8Array(0),
  });
  const log = new RaftLog(snap, [mk(3, 1), mk(4, 2), mk(5, 2), mk(6, 2)]);
  assert.equal(log.term(2), 1);
  assert.equal(log.term(1), null);
  assert.equal(log.findConflict([mk(3, 1), mk(4, 2)]), 0);
  assert.equal(log.findConflict([mk(4, 2), mk(5, 3)]), 5);
  assert.deepEqual(log.conflictHint(6, 0), { hintTerm: 2, hintIndex: 4 });
  assert.deepEqual(log.conflictHint(9, 0), { hintTerm: 0, hintIndex: 7 });
  assert.equal(log.lastIndexAtOrBelowTerm(6, 1), 3);
  assert.equal(log.isUpToDate(6, 2), true);
  assert.equal(log.isUpToDate(5, 2), false);
  assert.equal(log.isUpToDate(1, 3), true);
  log.truncateAndAppend([mk(5, 3)]);
  assert.equal(log.lastIndex, 5);
  assert.throws(() => log.append([mk(7, 3)]), RangeError);
  assert.throws(() => log.truncateAndAppend([mk(2, 3)]), RangeError);
  assert.equal(log.slice(3, 5, 2).length, 2);
});

Deno.test("MemoryStorage replaces a conflicting suffix and compacts", () => {
  const s = new MemoryStorage(["a", "b", "c"]);
  const mk = (index: number, t: number): Entry => ({
    index,
    term: t,
    kind: "normal",
    data: new Uint8Array([index]),
  });
  s.append([mk(1, 1), mk(2, 1), mk(3, 1)]);
  s.append([mk(2, 2)]);
  assert.equal(s.lastIndex, 2);
  assert.equal(s.term(2), 2);
  assert.throws(() => s.append([mk(5, 2)]), RangeError);
  s.compact({ index: 1, term: 1, voters: ["a", "b", "c"], data: new Uint8Array([9]) });
  const st = s.state();
  assert.equal(st.snapshot.index, 1);
  assert.deepEqual(st.entries.map((e) => e.index), [2]);
  assert.throws(() => new MemoryStorage(["a", "a"]), RangeError);
});
