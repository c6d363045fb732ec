import assert from "node:assert/strict";
import { SeededRandom } from "../../io/prng.ts";
import { AssertionFailed } from "../../util/assert.ts";
import { bytes, ELECTION_MS, Group, HEARTBEAT_MS } from "./_testing.ts";
import { ISR_HEARD_MS_MAX, ISR_LAG_ENTRIES_MAX } from "./isr.ts";
import { VOTE_ASKS_PER_CAMPAIGN_MAX } from "./limits.ts";
import { MemoryStorage } from "./memory_storage.ts";
import { RaftNode } from "./node.ts";
import type { AppendEntries, Message, RequestVote } from "./types.ts";

const IDS3 = ["a", "b", "c"];
const IDS5 = ["s1", "s2", "s3", "s4", "s5"];

function lone(id: string, voters: string[], learners: string[] = []): RaftNode {
  return new RaftNode({
    id,
    state: new MemoryStorage(voters, learners).state(),
    random: new SeededRandom(7),
    nowMs: 0,
    electionTimeoutMs: ELECTION_MS,
    heartbeatIntervalMs: HEARTBEAT_MS,
  });
}

/** Persists nothing: takes the Ready and returns what it sends at once and what advancing it
 * releases. */
function advance(node: RaftNode): Message[] {
  const r = node.ready();
  return r === null ? [] : [...(r.sendNow ?? []), ...node.advance(r)];
}

function vote(from: string, to: string, term: number, lastIndex = 0, lastTerm = 0): RequestVote {
  return { type: "RequestVote", from, to, term, lastIndex, lastTerm, transfer: false };
}

Deno.test("RaftNode elects a leader through pre-vote and appends a no-op", () => {
  const g = new Group(IDS3);
  const a = g.elect("a");
  assert.equal(a.role, "leader");
  assert.equal(a.term, 1);
  g.run(HEARTBEAT_MS * 2);
  for (const id of IDS3) {
    const n = g.node(id);
    assert.equal(n.leaderId, "a");
    assert.equal(n.commitIndex, 1);
    assert.equal(n.entryAt(1)?.kind, "noop");
  }
});

Deno.test("RaftNode alone in its group elects itself and commits after persisting", () => {
  const n = lone("a", ["a"]);
  n.tick(3 * ELECTION_MS);
  assert.equal(n.role, "candidate", "it leads only once its term and vote are durable");
  advance(n);
  assert.equal(n.role, "leader");
  assert.equal(n.commitIndex, 0, "nothing commits before the no-op is durable");
  advance(n);
  assert.equal(n.commitIndex, 1);
  const p = n.propose(bytes("x"));
  assert.deepEqual(p, { ok: true, index: 2, term: 1 });
  advance(n);
  const r = n.ready();
  assert.deepEqual(r?.committedEntries.map((e) => e.index), [2]);
});

Deno.test("RaftNode pre-vote does not bump any term", () => {
  const g = new Group(IDS3);
  g.cut.add("a>b").add("a>c");
  g.nowMs += 3 * ELECTION_MS;
  g.node("a").tick(g.nowMs);
  g.flush();
  // Pre-votes lost: a keeps trying without ever raising its term.
  for (let i = 0; i < 5; i++) g.tick(2 * ELECTION_MS);
  assert.equal(g.node("a").role, "precandidate");
  assert.equal(g.node("a").term, 0);
  assert.equal(g.node("b").term <= 1, true);
});

Deno.test("RaftNode.campaign() elects a fresh group's node without waiting for a timeout", () => {
  const g = new Group(IDS3);
  assert.equal(g.node("a").campaign(), true);
  g.settle();
  assert.equal(g.nowMs, 0);
  assert.equal(g.node("a").role, "leader");
  assert.equal(g.node("b").leaderId, "a");
  assert.equal(g.node("a").campaign(), false, "a leader does not campaign");
  assert.equal(lone("l", ["a"], ["l"]).campaign(), false, "a learner does not campaign");
});

Deno.test("RaftNode asks again for pre-votes lost on the way after a heartbeat, not a timeout", () => {
  // Election timeouts of 1000 ms: a's fires first (at 1000), b's next (at 1100).
  const g = new Group(IDS3, { electionTimeoutMs: 1000 });
  g.drop = (m) => m.type === "PreVote";
  g.tick(1000);
  assert.equal(g.node("a").role, "precandidate");
  assert.equal(g.inbox.length, 0, "the pre-votes were lost");
  g.drop = () => false;
  g.tick(HEARTBEAT_MS);
  g.settle();
  assert.equal(g.nowMs, 1000 + HEARTBEAT_MS);
  assert.equal(g.node("a").role, "leader", "a asked again and won before anyone's next timeout");
  assert.equal(g.node("a").term, 1);
});

Deno.test("RaftNode cut off from its peers asks each for a vote a bounded number of times per campaign", () => {
  const g = new Group(IDS3, { electionTimeoutMs: 1000 });
  let asked = 0;
  g.drop = (m) => {
    if (m.type === "PreVote" && m.from === "a") asked++;
    return m.from === "a";
  };
  g.node("a").campaign();
  g.flush();
  g.run(900); // a's next election timeout is at 1000, b's first at 1100
  assert.equal(g.node("a").role, "precandidate");
  assert.equal(asked, 2 * VOTE_ASKS_PER_CAMPAIGN_MAX);
});

Deno.test("RaftNode grants a pre-vote without changing its term or vote", () => {
  const b = lone("b", IDS3);
  b.receive({ type: "PreVote", from: "a", to: "b", term: 1, lastIndex: 0, lastTerm: 0 });
  assert.equal(b.term, 0);
  assert.equal(b.vote, null);
  const [resp] = advance(b);
  assert.deepEqual(resp, { type: "PreVoteResp", from: "b", to: "a", term: 1, granted: true });
});

Deno.test("RaftNode rejects pre-votes while it hears from a live leader (stickiness)", () => {
  const g = new Group(IDS3);
  g.elect("a");
  g.run(HEARTBEAT_MS * 2);
  const b = g.node("b");
  const pre: Message = { type: "PreVote", from: "c", to: "b", term: 2, lastIndex: 9, lastTerm: 1 };
  b.receive(pre);
  assert.deepEqual(advance(b), [], "ignored while the leader is live");
  // Once the leader has been silent for an election timeout, the pre-vote is granted.
  g.crash("a");
  g.nowMs += ELECTION_MS;
  b.tick(g.nowMs);
  b.receive(pre);
  const granted = advance(b).find((m) => m.type === "PreVoteResp");
  assert.equal(granted?.type === "PreVoteResp" && granted.granted, true);
});

Deno.test("RaftNode votes at most once per term", () => {
  const n = lone("c", IDS3);
  n.receive(vote("a", "c", 1));
  n.receive(vote("b", "c", 1));
  n.receive(vote("a", "c", 1));
  assert.equal(n.vote, "a");
  const grants = advance(n).map((m) => m.type === "RequestVoteResp" && m.granted);
  assert.deepEqual(grants, [true, false, true]);
});

Deno.test("RaftNode votes only for a log at least as up to date as its own", () => {
  const g = new Group(IDS3);
  g.elect("a");
  g.node("a").propose(bytes("x"));
  g.settle();
  const c = g.node("c");
  const last = c.lastIndex;
  c.receive({ ...vote("b", "c", 5, last - 1, 1), transfer: true });
  c.receive({ ...vote("b", "c", 6, last + 5, 0 + 0), transfer: true });
  c.receive({ ...vote("b", "c", 7, last, 1), transfer: true });
  const grants = advance(c).map((m) => m.type === "RequestVoteResp" && m.granted);
  assert.deepEqual(grants, [false, false, true]);
});

Deno.test("RaftNode withholds a vote grant until the vote is persisted", () => {
  const storage = new MemoryStorage(IDS3);
  const n = new RaftNode({
    id: "c",
    state: storage.state(),
    random: new SeededRandom(1),
    nowMs: 0,
  });
  n.receive(vote("a", "c", 1));
  const r = n.ready();
  assert.ok(r !== null);
  assert.deepEqual(r.hardState, { term: 1, vote: "a", commit: 0 });
  assert.equal(n.ready(), null, "one Ready at a time");
  // Crash before the shell persisted r: the restarted node has promised nothing.
  const again = new RaftNode({
    id: "c",
    state: storage.state(),
    random: new SeededRandom(1),
    nowMs: 0,
  });
  assert.equal(again.vote, null);
  storage.save(r);
  const msgs = n.advance(r);
  assert.equal(msgs.length, 1);
  assert.equal(msgs[0]?.type, "RequestVoteResp");
  assert.throws(
    () => n.advance(r),
    (e) => e instanceof AssertionFailed && /not the outstanding/.test(e.message),
  );
});

Deno.test("RaftNode steps down on a message from a higher term", () => {
  const g = new Group(IDS3);
  const a = g.elect("a");
  a.receive({
    type: "AppendEntriesResp",
    from: "b",
    to: "a",
    term: 9,
    success: false,
    index: 0,
    hintTerm: 0,
    hintIndex: 0,
  });
  assert.equal(a.role, "follower");
  assert.equal(a.term, 9);
  assert.equal(a.leaderId, null);
  assert.deepEqual(a.propose(bytes("x")), { ok: false, reason: "not-leader", leaderHint: null });
});

Deno.test("RaftNode follower refuses proposals with a leader hint", () => {
  const g = new Group(IDS3);
  g.elect("a");
  assert.deepEqual(g.node("b").propose(bytes("x")), {
    ok: false,
    reason: "not-leader",
    leaderHint: "a",
  });
});

Deno.test("RaftNode leader steps down when it loses touch with a majority (check-quorum)", () => {
  const g = new Group(IDS3);
  const a = g.elect("a");
  g.run(ELECTION_MS);
  assert.equal(a.role, "leader");
  g.isolate("a");
  for (let i = 0; i < 4 && a.role === "leader"; i++) {
    g.nowMs += ELECTION_MS / 2;
    a.tick(g.nowMs);
  }
  assert.equal(a.role, "follower");
  assert.equal(a.term, 1, "stepping down does not bump the term");
});

Deno.test("RaftNode truncates a conflicting suffix and backs off by whole terms", () => {
  const g = new Group(IDS3);
  const a = g.elect("a");
  g.settle();
  // a writes three entries only it holds, then is deposed.
  g.isolate("a");
  for (const s of ["x1", "x2", "x3"]) a.propose(bytes(s));
  g.flush();
  assert.equal(a.lastIndex, 4);
  g.crash("a");
  g.cut.clear();
  const b = g.campaign("b");
  assert.equal(b.role, "leader");
  b.propose(bytes("y"));
  g.settle();
  // a returns; b's AppendEntries conflicts at index 2 and a's term-1 suffix is replaced.
  g.restart("a");
  const sent: AppendEntries[] = [];
  g.drop = (m) => {
    if (m.type === "AppendEntries" && m.to === "a" && m.entries.length > 0) sent.push(m);
    return false;
  };
  g.run(HEARTBEAT_MS * 4);
  const a2 = g.node("a");
  assert.equal(a2.lastIndex, b.lastIndex);
  for (let i = 1; i <= b.lastIndex; i++) assert.equal(a2.termAt(i), b.termAt(i));
  assert.deepEqual(g.appliedText("a"), ["y"]);
  assert.ok(sent.length <= 2, `back-off took ${sent.length} rounds`);
});

Deno.test("RaftNode never commits an earlier term's entry by counting (Figure 8)", () => {
  const run = (bug: boolean) => {
    const g = new Group(IDS5, {
      appendEntriesMax: 1,
      plantedBugs: { commitPriorTermByCount: bug },
    });
    g.elect("s1");
    g.run(HEARTBEAT_MS * 2);
    // (a) s1 leads term 1 and gets X (index 2) only to s2.
    for (const id of ["s3", "s4", "s5"]) g.cut.add(`s1>${id}`).add(`${id}>s1`);
    g.node("s1").propose(bytes("X"));
    g.settle();
    g.crash("s1");
    g.cut.clear();
    // (b) s5 wins term 2 with s3 and s4, appends its no-op at index 2, and reaches no one.
    g.drop = (m) => m.from === "s5" && m.type === "AppendEntries";
    assert.equal(g.campaign("s5").role, "leader");
    g.crash("s5");
    // (c) s1 returns and wins term 3; X reaches s3, but s1's own no-op reaches only s2.
    g.restart("s1");
    g.drop = (m) =>
      m.from === "s1" && m.type === "AppendEntries" && (m.to === "s3" || m.to === "s4") &&
      m.entries.some((e) => e.kind === "noop");
    g.campaign("s1");
    g.campaign("s1");
    g.run(HEARTBEAT_MS * 3);
    const s1 = g.node("s1");
    assert.equal(s1.role, "leader");
    assert.equal(g.node("s3").entryAt(2)?.term, 1, "X is on a majority: s1, s2, s3");
    const committedX = s1.commitIndex >= 2;
    // (d) s1 crashes; s5 wins term 4 with s3 and s4 and overwrites index 2 everywhere.
    g.crash("s1");
    g.drop = () => false;
    g.restart("s5");
    g.campaign("s5");
    g.campaign("s5");
    assert.equal(g.node("s5").role, "leader");
    g.run(HEARTBEAT_MS * 4);
    const s5 = g.node("s5");
    return { committedX, s5Commit: s5.commitIndex, s5AtTwo: s5.entryAt(2)?.term };
  };
  const safe = run(false);
  assert.equal(safe.committedX, false, "a term-1 entry was committed by counting in term 3");
  assert.ok(safe.s5Commit >= 2);
  assert.equal(safe.s5AtTwo, 2, "the uncommitted X was rightly replaced");
  // With the unsafe rule, s1 commits X, then s5 commits its own entry at the same index.
  const unsafe = run(true);
  assert.equal(unsafe.committedX, true);
  assert.ok(unsafe.s5Commit >= 2);
  assert.equal(unsafe.s5AtTwo, 2, "committed X was lost");
});

Deno.test("RaftNode installs a snapshot when the leader has compacted what a follower needs", () => {
  const g = new Group(IDS3);
  const a = g.elect("a");
  g.isolate("c");
  for (let i = 0; i < 10; i++) a.propose(bytes(`e${i}`));
  g.settle();
  g.run(HEARTBEAT_MS);
  assert.equal(a.appliedIndex, 11);
  const snap = a.compact(8, bytes("image@8"));
  assert.equal(a.firstIndex, 9);
  g.storage.get("a")?.compact(snap);
  g.cut.clear();
  g.run(ELECTION_MS * 3);
  const c = g.node("c");
  assert.equal(c.snapshot.index, 8);
  assert.deepEqual(c.snapshot.data, bytes("image@8"));
  assert.equal(c.lastIndex, 11);
  assert.equal(c.appliedIndex, 11);
  assert.deepEqual(g.appliedText("c"), ["e7", "e8", "e9"]);
  const restarted = g.restart("c");
  assert.equal(restarted.snapshot.index, 8, "the snapshot was persisted");
});

Deno.test("RaftNode.keepsUp() is false on a follower that knows it trails its leader's commit", () => {
  const g = new Group(IDS3);
  const a = g.elect("a");
  g.run(HEARTBEAT_MS * 2);
  for (const id of IDS3) assert.equal(g.node(id).keepsUp(), true, `${id} keeps up`);
  // c hears heartbeats but no entries: it learns how far the commit is and that it lags it.
  g.drop = (m) => m.to === "c" && m.type === "AppendEntries" && m.entries.length > 0;
  for (let i = 0; i < ISR_LAG_ENTRIES_MAX + 10; i++) a.propose(bytes(`e${i}`));
  g.settle();
  g.run(HEARTBEAT_MS * 2);
  const c = g.node("c");
  assert.equal(c.leaderId, "a");
  assert.ok(c.appliedIndex < a.commitIndex - ISR_LAG_ENTRIES_MAX);
  assert.equal(c.keepsUp(), false, "c trails the commit a sent in its heartbeats");
  assert.equal(g.node("b").keepsUp(), true);
  g.drop = () => false;
  g.run(HEARTBEAT_MS * 4);
  assert.equal(c.appliedIndex, a.commitIndex);
  assert.equal(c.keepsUp(), true, "caught up again");
  // Cut off from its leader: after ISR_HEARD_MS_MAX it no longer knows how far the group is.
  g.isolate("c");
  g.run(ISR_HEARD_MS_MAX + HEARTBEAT_MS);
  assert.equal(c.keepsUp(), false, "c has not heard from a leader for too long");
  assert.equal(a.keepsUp(), true, "the leader keeps up by definition");
});

Deno.test("RaftNode adds and removes voters one at a time", () => {
  const g = new Group(IDS3, {}, { joiners: ["d"] });
  const a = g.elect("a");
  g.run(HEARTBEAT_MS);
  const add = a.addServer("d");
  assert.equal(add.ok, true);
  assert.deepEqual(a.voters, ["a", "b", "c", "d"], "in force once appended");
  assert.deepEqual(a.removeServer("b"), { ok: false, reason: "config-pending", leaderHint: null });
  assert.deepEqual(a.addServer("c"), { ok: false, reason: "invalid", leaderHint: null });
  g.run(HEARTBEAT_MS * 3);
  assert.deepEqual(g.node("d").voters, ["a", "b", "c", "d"]);
  assert.equal(g.node("d").commitIndex, a.commitIndex);
  assert.equal(a.removeServer("b").ok, true);
  g.run(HEARTBEAT_MS * 3);
  for (const id of ["a", "c", "d"]) assert.deepEqual(g.node(id).voters, ["a", "c", "d"]);
  // With b gone, a and one other make a majority of three.
  g.crash("b");
  g.isolate("d");
  const p = a.propose(bytes("after"));
  g.run(HEARTBEAT_MS * 2);
  assert.ok(p.ok && a.commitIndex >= p.index);
});

Deno.test("RaftNode leader removed from the config steps down once the removal commits", () => {
  const g = new Group(IDS3);
  const a = g.elect("a");
  g.run(HEARTBEAT_MS);
  assert.equal(a.removeServer("a").ok, true);
  assert.equal(a.role, "leader", "it keeps leading until the change commits");
  g.settle();
  g.run(HEARTBEAT_MS * 2);
  assert.equal(a.role, "follower");
  const leader = ["b", "c"].map((id) => g.node(id)).find((n) => n.role === "leader");
  assert.ok(leader !== undefined, "a handed over to a caught-up voter");
  assert.deepEqual(leader.voters, ["b", "c"]);
  g.run(ELECTION_MS * 5);
  assert.equal(a.role, "follower", "a removed node never campaigns");
});

Deno.test("RaftNode removed by an entry only it holds campaigns, so the voters left are not stuck", () => {
  // Two voters: a leads and appends its own removal, which never reaches b; then a restarts. Its
  // log (with the removal) is ahead of b's, so it refuses b's votes; b's log does not name the
  // removal, so b needs a's vote. Only a can break the tie: it may campaign, as the committed
  // configuration still counts it a voter, and it wins with b's vote alone (its latest one).
  const g = new Group(["a", "b"]);
  const a = g.elect("a");
  g.run(HEARTBEAT_MS);
  g.cut.add("a>b");
  assert.equal(a.removeServer("a").ok, true);
  g.run(HEARTBEAT_MS * 2);
  assert.deepEqual(g.node("b").voters, ["a", "b"], "b never got the removal");
  g.restart("a");
  g.cut.delete("a>b");
  g.run(ELECTION_MS * 10);
  const b = g.node("b");
  assert.equal(b.role, "leader", "b leads once a committed the removal and stepped down");
  assert.deepEqual(b.voters, ["b"]);
  assert.deepEqual(g.node("a").voters, ["b"]);
  assert.equal(g.node("a").role, "follower");
});

Deno.test("RaftNode alone in its group never holds other entries at an index and term after a crash", () => {
  // A lone voter's election needs no message. Had it led at once, in memory, it would append the
  // no-op and proposals in a term it may lose in a crash before its first Ready is durable (a full
  // disk: cluster seed 6064); restarted, it leads that term again with other entries at the same
  // indexes. It must lead only once the term and its vote are durable.
  const storage = new MemoryStorage(["a"], ["l"]);
  const start = (): RaftNode =>
    new RaftNode({
      id: "a",
      state: storage.state(),
      random: new SeededRandom(7),
      nowMs: 0,
      electionTimeoutMs: ELECTION_MS,
      heartbeatIntervalMs: HEARTBEAT_MS,
    });
  const crashed = start();
  crashed.tick(3 * ELECTION_MS);
  crashed.propose(bytes("P1"));
  const lost = crashed.ready()!;
  assert.equal(lost.hardState?.term, 1, "the term is in its first Ready, not yet durable");
  // The crash: that Ready is never saved. The restarted node leads term 1 and takes P2.
  const a = start();
  for (let t = 3 * ELECTION_MS; a.role !== "leader" && t < 30 * ELECTION_MS; t += HEARTBEAT_MS) {
    a.tick(t);
    const r = a.ready();
    if (r === null) continue;
    storage.save(r);
    a.advance(r);
  }
  assert.equal(a.role, "leader");
  assert.equal(a.term, 1);
  assert.equal(a.propose(bytes("P2")).ok, true);
  for (let i = 1; i <= crashed.lastIndex; i++) {
    const before = crashed.entryAt(i)!;
    const after = a.entryAt(i);
    if (after === null || after.term !== before.term) continue;
    assert.deepEqual(
      after.data,
      before.data,
      `two different entries at ${i} in term ${after.term}`,
    );
  }
  assert.equal(crashed.role, "candidate", "it did not lead before its term was durable");
});

Deno.test("RaftNode sends a leader's appends before its Ready is durable, once it leads", () => {
  const a = lone("a", ["a"], ["l"]);
  a.tick(3 * ELECTION_MS);
  const first = a.ready()!;
  assert.equal(first.hardState?.term, 1);
  assert.deepEqual(first.sendNow, [], "nothing leaves before the term is durable");
  assert.deepEqual(a.advance(first), []);
  assert.equal(a.role, "leader");
  assert.equal(a.propose(bytes("P1")).ok, true);
  const second = a.ready()!;
  const early = second.sendNow ?? [];
  assert.ok(early.some((m) => m.type === "AppendEntries" && m.to === "l"), "sent at once");
  assert.equal(a.commitIndex, 0, "the leader's own entries are not durable yet");
  a.advance(second);
  assert.equal(a.commitIndex, a.lastIndex);
});

Deno.test("RaftNode transfers leadership to a caught-up voter", () => {
  const g = new Group(IDS3);
  const a = g.elect("a");
  g.run(HEARTBEAT_MS);
  assert.equal(a.transferLeadership("c"), true);
  assert.equal(a.propose(bytes("x")).ok, false);
  g.settle();
  assert.equal(g.node("c").role, "leader");
  assert.equal(g.node("c").term, 2);
  assert.equal(a.role, "follower");
});

Deno.test("RaftNode limits entries per AppendEntries and appends in flight", () => {
  const g = new Group(IDS3, { appendEntriesMax: 2, inflightMax: 3 });
  const a = g.elect("a");
  g.run(HEARTBEAT_MS);
  g.take();
  for (let i = 0; i < 20; i++) a.propose(bytes(`p${i}`));
  g.flush();
  const toB = g.take((m) => m.to === "b" && m.type === "AppendEntries") as AppendEntries[];
  assert.equal(toB.length, 3);
  for (const m of toB) assert.ok(m.entries.length <= 2);
  g.deliver(toB);
  g.settle();
  assert.equal(g.node("b").lastIndex, a.lastIndex);
});

Deno.test("RaftNode refuses proposals past uncommittedBytesMax", () => {
  const g = new Group(IDS3, { uncommittedBytesMax: 1000 });
  const a = g.elect("a");
  g.isolate("a");
  let busy = 0;
  for (let i = 0; i < 20; i++) {
    const r = a.propose(new Uint8Array(100));
    if (!r.ok && r.reason === "busy") busy++;
  }
  assert.ok(busy > 0 && busy < 20);
});

Deno.test("RaftNode ignores messages from a stale term but tells a stale leader the new one", () => {
  const n = lone("b", IDS3);
  n.receive(vote("a", "b", 3));
  advance(n);
  n.receive({
    type: "AppendEntries",
    from: "c",
    to: "b",
    term: 2,
    prevIndex: 0,
    prevTerm: 0,
    entries: [],
    commit: 0,
  });
  assert.equal(n.leaderId, null);
  const [resp] = advance(n);
  assert.equal(resp?.type, "AppendEntriesResp");
  assert.equal(resp?.term, 3);
});

Deno.test("RaftNode rejects a clock that runs backwards and bad options", () => {
  const n = lone("a", IDS3);
  n.tick(10);
  assert.throws(() => n.tick(5), AssertionFailed);
  assert.throws(
    () =>
      new RaftNode({
        id: "a",
        state: new MemoryStorage(IDS3).state(),
        random: new SeededRandom(1),
        nowMs: 0,
        electionTimeoutMs: 100,
        heartbeatIntervalMs: 100,
      }),
    /heartbeatIntervalMs/,
  );
});

// ---- learners --------------------------------------------------------------------------------

const LEARNERS = ["d", "e"];

Deno.test("RaftNode learner receives, commits and applies entries and knows the leader", () => {
  const g = new Group(IDS3, {}, { learners: LEARNERS });
  const a = g.elect("a");
  assert.deepEqual(a.voters, IDS3);
  assert.deepEqual(a.learners, LEARNERS);
  const p = a.propose(bytes("x"));
  g.run(HEARTBEAT_MS * 2);
  for (const id of LEARNERS) {
    const n = g.node(id);
    assert.equal(n.role, "follower");
    assert.equal(n.leaderId, "a");
    assert.ok(p.ok && n.commitIndex >= p.index);
    assert.deepEqual(g.appliedText(id), ["x"]);
    assert.deepEqual(n.learners, LEARNERS);
    assert.deepEqual(n.propose(bytes("y")), { ok: false, reason: "not-leader", leaderHint: "a" });
  }
});

Deno.test("RaftNode learner never campaigns, however long the leader is silent", () => {
  const g = new Group(IDS3, {}, { learners: ["d"] });
  g.elect("a");
  g.run(HEARTBEAT_MS * 2);
  const fromD: Message[] = [];
  g.drop = (m) => {
    if (m.from === "d") fromD.push(m);
    return false;
  };
  for (const id of IDS3) g.crash(id);
  g.run(ELECTION_MS * 20);
  const d = g.node("d");
  assert.equal(d.role, "follower");
  assert.equal(d.term, 1);
  assert.deepEqual(fromD, [], "not even a pre-vote");
  // Not even when told to campaign at once.
  g.campaign("d");
  assert.equal(d.role, "follower");
  assert.equal(d.term, 1);
});

Deno.test("RaftNode leader commits only with a majority of voters, however many learners hold it", () => {
  for (const voters of [["a", "b"], IDS3]) {
    const g = new Group(voters, {}, { learners: LEARNERS });
    const a = g.elect("a");
    g.run(HEARTBEAT_MS * 2);
    const before = a.commitIndex;
    for (const v of voters.slice(1)) g.crash(v);
    const p = a.propose(bytes("x"));
    assert.ok(p.ok);
    g.run(HEARTBEAT_MS * 3);
    for (const id of LEARNERS) assert.equal(g.node(id).lastIndex, p.index, `${id} holds it`);
    assert.equal(a.commitIndex, before, `${voters}: most nodes hold it, but not most voters`);
    assert.deepEqual(g.appliedText("d"), []);
    // Check-quorum counts voters only too: the learners' acks do not keep it in office.
    g.run(ELECTION_MS * 2);
    assert.notEqual(a.role, "leader");
    // One voter back makes a majority with a, and the entry commits under a new term.
    g.restart("b");
    g.elect("a");
    g.run(HEARTBEAT_MS * 3);
    assert.ok(a.commitIndex >= p.index);
    assert.deepEqual(g.appliedText("d"), ["x"]);
  }
});

Deno.test("RaftNode candidate counts no pre-votes or votes from learners", () => {
  const n = lone("a", IDS3, LEARNERS);
  n.tick(3 * ELECTION_MS);
  assert.equal(n.role, "precandidate");
  assert.deepEqual(advance(n).map((m) => m.to).sort(), ["b", "c"], "asks only voters");
  for (const from of LEARNERS) {
    n.receive({ type: "PreVoteResp", from, to: "a", term: 1, granted: true });
  }
  assert.equal(n.role, "precandidate");
  n.receive({ type: "PreVoteResp", from: "b", to: "a", term: 1, granted: true });
  assert.equal(n.role, "candidate");
  advance(n);
  for (const from of LEARNERS) {
    n.receive({ type: "RequestVoteResp", from, to: "a", term: 1, granted: true });
  }
  assert.equal(n.role, "candidate");
  n.receive({ type: "RequestVoteResp", from: "c", to: "a", term: 1, granted: true });
  assert.equal(n.role, "leader");
});

Deno.test("RaftNode promotes a learner to a voter that counts and can lead", () => {
  const g = new Group(IDS3, {}, { learners: ["d"] });
  const a = g.elect("a");
  g.run(HEARTBEAT_MS);
  assert.equal(a.addServer("d").ok, true);
  assert.deepEqual(a.voters, ["a", "b", "c", "d"], "in force once appended");
  assert.deepEqual(a.learners, []);
  assert.deepEqual(a.addLearner("e"), { ok: false, reason: "config-pending", leaderHint: null });
  g.run(HEARTBEAT_MS * 3);
  const d = g.node("d");
  assert.deepEqual(d.voters, ["a", "b", "c", "d"]);
  assert.deepEqual(d.learners, []);
  // Four voters need three: with c down, d's ack is what commits.
  g.crash("c");
  g.campaign("d");
  assert.equal(d.role, "leader");
  const p = d.propose(bytes("x"));
  g.run(HEARTBEAT_MS * 3);
  assert.ok(p.ok && d.commitIndex >= p.index);
  assert.deepEqual(g.appliedText("b"), ["x"]);
});

Deno.test("RaftNode learner that has not heard of its promotion still votes", () => {
  const g = new Group(IDS3, {}, { learners: ["d"] });
  const a = g.elect("a");
  g.run(HEARTBEAT_MS);
  g.cut.add("a>d");
  const p = a.addServer("d");
  g.run(HEARTBEAT_MS * 3);
  assert.ok(p.ok && a.commitIndex >= p.index, "a, b and c made the promotion commit");
  assert.deepEqual(g.node("d").voters, IDS3, "d has not heard of it");
  // a is gone for good: b and c need d's vote to make three of the four voters.
  g.crash("a");
  g.cut.clear();
  const b = g.elect("b");
  g.run(HEARTBEAT_MS * 2);
  assert.deepEqual(g.node("d").voters, ["a", "b", "c", "d"]);
  assert.equal(g.node("d").leaderId, "b");
  assert.equal(b.removeServer("a").ok, true);
});

Deno.test("RaftNode removes a learner, and the leader stops replicating to it", () => {
  const g = new Group(IDS3, {}, { learners: LEARNERS });
  const a = g.elect("a");
  g.run(HEARTBEAT_MS);
  assert.equal(a.removeServer("d").ok, true);
  assert.deepEqual(a.learners, ["e"]);
  g.run(HEARTBEAT_MS * 3);
  assert.deepEqual(g.node("e").learners, ["e"]);
  assert.deepEqual(a.removeServer("d"), { ok: false, reason: "invalid", leaderHint: null });
  const toD: Message[] = [];
  g.drop = (m) => {
    if (m.to === "d") toD.push(m);
    return false;
  };
  a.propose(bytes("after"));
  g.run(HEARTBEAT_MS * 3);
  assert.deepEqual(toD, []);
  assert.deepEqual(g.appliedText("e"), ["after"]);
  assert.deepEqual(g.appliedText("d"), []);
});

Deno.test("RaftNode demotes a voter to learner; a demoted leader steps down and follows", () => {
  const g = new Group(IDS3);
  const a = g.elect("a");
  g.run(HEARTBEAT_MS);
  assert.equal(a.addLearner("a").ok, true);
  assert.deepEqual(a.voters, ["b", "c"]);
  assert.deepEqual(a.learners, ["a"]);
  assert.equal(a.role, "leader", "it keeps leading until the change commits");
  g.settle();
  g.run(HEARTBEAT_MS * 2);
  assert.equal(a.role, "follower");
  const leader = ["b", "c"].map((id) => g.node(id)).find((n) => n.role === "leader");
  assert.ok(leader !== undefined, "a handed over to a caught-up voter");
  assert.deepEqual(leader.addLearner("a"), { ok: false, reason: "invalid", leaderHint: null });
  leader.propose(bytes("x"));
  g.run(ELECTION_MS * 5);
  assert.equal(a.role, "follower");
  assert.equal(a.leaderId, leader.id);
  assert.deepEqual(g.appliedText("a"), ["x"]);
  // The last voter cannot be demoted or removed.
  assert.equal(leader.removeServer(leader.id === "b" ? "c" : "b").ok, true);
  g.run(HEARTBEAT_MS * 3);
  assert.deepEqual(leader.voters, [leader.id]);
  assert.deepEqual(leader.addLearner(leader.id), {
    ok: false,
    reason: "invalid",
    leaderHint: null,
  });
});

Deno.test("RaftNode that was never added waits, then follows once added as a learner", () => {
  const g = new Group(IDS3, {}, { joiners: ["d"] });
  const a = g.elect("a");
  a.propose(bytes("x"));
  g.run(ELECTION_MS * 5);
  const d = g.node("d");
  assert.equal(d.role, "follower");
  assert.equal(d.term, 0);
  assert.equal(d.leaderId, null);
  // It needs what a compacted: it gets a snapshot, then the config entry that names it.
  g.storage.get("a")?.compact(a.compact(a.appliedIndex, bytes("image")));
  assert.equal(a.addLearner("d").ok, true);
  g.run(HEARTBEAT_MS * 4);
  assert.equal(d.leaderId, "a");
  assert.equal(d.snapshot.index, 2);
  assert.deepEqual(d.voters, IDS3);
  assert.deepEqual(d.learners, ["d"]);
  assert.equal(d.commitIndex, a.commitIndex);
  a.propose(bytes("y"));
  g.run(HEARTBEAT_MS * 2);
  assert.deepEqual(g.appliedText("d"), ["y"]);
  assert.equal(d.role, "follower");
});

Deno.test("RaftNode added with no snapshot to start from never compacts the entries before its first config", () => {
  const g = new Group(IDS3, {}, { joiners: ["d"] });
  const a = g.elect("a");
  a.propose(bytes("x"));
  g.run(HEARTBEAT_MS * 2);
  // The leader's log starts at 1 (its bootstrap members are in its snapshot at 0): d gets the
  // entries from 1, and the first config entry it sees is the one that adds it.
  assert.equal(a.addLearner("d").ok, true);
  const added = a.lastIndex;
  g.run(HEARTBEAT_MS * 4);
  const d = g.node("d");
  assert.equal(d.appliedIndex, added);
  assert.equal(d.knowsConfigAt(added - 1), false);
  assert.throws(() => d.compact(added - 1, bytes("image")), /does not know the group's members/);
  assert.equal(d.knowsConfigAt(added), true);
  const snapshot = d.compact(added, bytes("image"));
  assert.deepEqual(snapshot.voters, IDS3);
  assert.deepEqual(snapshot.learners, ["d"]);
});
