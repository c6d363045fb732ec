import assert from "node:assert/strict";
import fc from "fast-check";
import { MalformedError } from "../../protocol/errors.ts";
import { AssertionFailed } from "../../util/assert.ts";
import { decodeConfig, decodeMessage, encodeConfig, encodeMessage } from "./codec.ts";
import { RaftLog } from "./log.ts";
import { MemoryStorage } from "./memory_storage.ts";
import type { Entry, Message } from "./types.ts";

const id = fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/);
const term = fc.integer({ min: 1, max: 2 ** 40 });
/** A valid configuration: 1..5 voters and 0..4 learners, disjoint, each sorted. */
const config = fc.uniqueArray(id, { minLength: 1, maxLength: 9 }).chain((ids) =>
  fc.integer({ min: 1, max: Math.min(5, ids.length) }).map((nv) => ({
    voters: ids.slice(0, nv).sort(),
    learners: ids.slice(nv, nv + 4).sort(),
  }))
);

const head = fc.record({ from: id, to: id, term });

function entriesAfter(prevIndex: number, prevTerm: number, t: number): fc.Arbitrary<Entry[]> {
  return fc.array(
    fc.oneof(
      fc.record({ kind: fc.constant("normal" as const), data: fc.uint8Array({ maxLength: 16 }) }),
      fc.record({ kind: fc.constant("noop" as const), data: fc.constant(new Uint8Array(0)) }),
      config.map((c) => ({ kind: "config" as const, data: encodeConfig(c) })),
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
    fc.record({ config, data: fc.uint8Array({ maxLength: 32 }), index: fc.integer({ min: 1 }) })
      .map(({ config, data, index }) => ({
        ...h,
        type: "InstallSnapshot" as const,
        snapshot: { index, term: h.term, ...config, data },
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

Deno.test("codec round-trips every configuration", () => {
  fc.assert(fc.property(config, (c) => {
    assert.deepEqual(decodeConfig(encodeConfig(c)), c);
  }));
});

Deno.test("codec config decoder throws MalformedError on any truncation or trailing byte", () => {
  fc.assert(fc.property(config, fc.nat(), (c, cut) => {
    const b = encodeConfig(c);
    assert.throws(() => decodeConfig(b.subarray(0, cut % b.length)), MalformedError);
    const longer = new Uint8Array(b.length + 1);
    longer.set(b);
    assert.throws(() => decodeConfig(longer), MalformedError);
  }));
});

/** A config entry's bytes written by hand, bypassing encodeConfig's checks. */
function rawConfig(
  voters: string[],
  learners: string[],
  learnerCount = learners.length,
): Uint8Array {
  const enc = new TextEncoder();
  const out: number[] = [voters.length >> 8, voters.length & 0xff];
  const id = (s: string) => {
    const b = enc.encode(s);
    out.push(b.length >> 8, b.length & 0xff, ...b);
  };
  voters.forEach(id);
  out.push(learnerCount >> 8, learnerCount & 0xff);
  learners.forEach(id);
  return new Uint8Array(out);
}

Deno.test("codec configurations must have sorted, distinct voters and learners, disjoint", () => {
  const ok = { voters: ["a", "b"], learners: ["c", "d"] };
  assert.deepEqual(decodeConfig(rawConfig(ok.voters, ok.learners)), ok);
  assert.deepEqual(decodeConfig(rawConfig(["a"], [])), { voters: ["a"], learners: [] });
  for (
    const bad of [
      { voters: [], learners: ["a"] },
      { voters: ["b", "a"], learners: [] },
      { voters: ["a", "a"], learners: [] },
      { voters: ["a"], learners: ["c", "b"] },
      { voters: ["a"], learners: ["b", "b"] },
      { voters: ["a", "b"], learners: ["b"] },
      { voters: ["a"], learners: ["no spaces"] },
    ]
  ) {
    assert.throws(() => encodeConfig(bad), RangeError, JSON.stringify(bad));
    assert.throws(() => decodeConfig(rawConfig(bad.voters, bad.learners)), MalformedError);
  }
  assert.throws(() => decodeConfig(new Uint8Array([0, 0])), MalformedError);
  assert.throws(() => decodeConfig(rawConfig(["a"], [], 0xffff)), /learners is over/);
  assert.throws(() => decodeConfig(rawConfig(["a"], ["b"], 2)), MalformedError);
  // A voter set alone, with no learner count, is not a configuration.
  assert.throws(() => decodeConfig(rawConfig(["a"], []).subarray(0, 5)), MalformedError);
});

Deno.test("RaftLog finds conflicts, hints and up-to-dateness", () => {
  const snap = { index: 2, term: 1, voters: ["a"], learners: [], data: new Uint8Array(0) };
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
  assert.throws(() => log.append([mk(7, 3)]), AssertionFailed);
  assert.throws(() => log.truncateAndAppend([mk(2, 3)]), AssertionFailed);
  assert.equal(log.slice(3, 5, 2).length, 2);
});

Deno.test("RaftLog.configAt() finds the config in force: the last entry's, else the snapshot's", () => {
  const snap = { index: 2, term: 1, voters: ["a"], learners: ["b"], data: new Uint8Array(0) };
  const promoted = { voters: ["a", "b"], learners: [] };
  const log = new RaftLog(snap, [
    { index: 3, term: 1, kind: "normal", data: new Uint8Array(0) },
    { index: 4, term: 1, kind: "config", data: encodeConfig(promoted) },
  ]);
  assert.deepEqual(log.configAt(3), { voters: ["a"], learners: ["b"], index: 2 });
  assert.deepEqual(log.configAt(4), { ...promoted, index: 4 });
  assert.deepEqual(log.configAt(9), { ...promoted, index: 4 });
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
  assert.throws(() => s.append([mk(5, 2)]), AssertionFailed);
  s.compact({
    index: 1,
    term: 1,
    voters: ["a", "b", "c"],
    learners: ["d"],
    data: new Uint8Array([9]),
  });
  const st = s.state();
  assert.equal(st.snapshot.index, 1);
  assert.deepEqual(st.entries.map((e) => e.index), [2]);
  assert.deepEqual(st.snapshot.learners, ["d"]);
  assert.throws(() => new MemoryStorage(["a", "a"]), RangeError);
  assert.throws(() => new MemoryStorage(["a"], ["a"]), /both a voter and a learner/);
  assert.throws(() => new MemoryStorage([], ["a"]), RangeError);
  assert.deepEqual(new MemoryStorage(["b", "a"], ["d", "c"]).state().snapshot.learners, ["c", "d"]);
});
