import assert from "node:assert/strict";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type { DurableOffset } from "../protocol/messages.ts";
import { durableKey } from "../broker/subscription.ts";
import { DURABLE_COMMIT_ENTRIES_MAX, DurableCommits } from "./durable_offsets.ts";

/** A stand-in for the metadata group: records each commit; fails while `failWith` is set. */
class FakeMeta {
  readonly commits: DurableOffset[][] = [];
  failWith: Error | null = null;

  commit(offsets: DurableOffset[]): Promise<void> {
    this.commits.push(offsets);
    return this.failWith === null ? Promise.resolve() : Promise.reject(this.failWith);
  }
}

function offsets(commit: DurableOffset[] | undefined): [string, number, number][] {
  return (commit ?? []).map((
    o,
  ) => [`${o.topic}/${o.partition}/${o.name}`, o.offset, o.incarnation]);
}

const A = durableKey("t", 0, "a");
const B = durableKey("t", 1, "b");

Deno.test("DurableCommits: acks between two flushes go in one commit, the latest per subscription", async () => {
  const meta = new FakeMeta();
  const d = new DurableCommits((o) => meta.commit(o));
  await d.flush();
  assert.equal(meta.commits.length, 0, "nothing acked: no commit");
  for (let i = 0; i < 500; i++) d.acked(A, i, 7);
  d.acked(B, 3, 7);
  d.acked(A, 100, 7); // an ack below an earlier one changes nothing
  await d.flush();
  assert.deepEqual(meta.commits.map(offsets), [[["t/0/a", 499, 7], ["t/1/b", 3, 7]]]);
  await d.flush();
  assert.equal(meta.commits.length, 1, "nothing new: no second commit");
});

Deno.test("DurableCommits: a failed commit is tried again, merged with later acks; an outage reports once", async () => {
  const meta = new FakeMeta();
  const d = new DurableCommits((o) => meta.commit(o));
  d.acked(A, 10, 1);
  meta.failWith = new GregorError(ErrorCode.NOT_LEADER, "no leader");
  await assert.rejects(d.flush(), /Cannot commit 1 durable subscription offsets.*no leader/);
  d.acked(A, 12, 1);
  d.acked(B, 4, 1);
  await d.flush(); // still failing: not reported again
  // The topic was deleted and created again: acks of the new creation replace the old ones.
  d.acked(B, 0, 2);
  meta.failWith = null;
  await d.flush();
  assert.deepEqual(offsets(meta.commits.at(-1)), [["t/0/a", 12, 1], ["t/1/b", 0, 2]]);
  meta.failWith = new Error("timeout");
  d.acked(A, 13, 1);
  await assert.rejects(d.flush(), /timeout/, "a new outage after a success is reported");
});

Deno.test("DurableCommits: a commit carries at most DURABLE_COMMIT_ENTRIES_MAX; the rest follow", async () => {
  const meta = new FakeMeta();
  const d = new DurableCommits((o) => meta.commit(o));
  const count = DURABLE_COMMIT_ENTRIES_MAX + 5;
  for (let i = 0; i < count; i++) d.acked(durableKey("t", 0, `d${i}`), i, 1);
  await d.flush();
  await d.flush();
  assert.deepEqual(meta.commits.map((c) => c.length), [DURABLE_COMMIT_ENTRIES_MAX, 5]);
  const names = new Set(meta.commits.flat().map((o) => o.name));
  assert.equal(names.size, count, "every subscription committed once");
});

Deno.test("DurableCommits: acks the metadata had no room for are dropped, not retried forever", async () => {
  const meta = new FakeMeta();
  const d = new DurableCommits((o) => meta.commit(o));
  d.acked(A, 1, 1);
  meta.failWith = new GregorError(ErrorCode.LIMIT_EXCEEDED, "full");
  await assert.rejects(d.flush(), /new ones are dropped/);
  d.acked(B, 1, 1);
  await d.flush(); // refused again: not reported again
  meta.failWith = null;
  await d.flush();
  assert.deepEqual(meta.commits.map((c) => c.length), [1, 1], "nothing was tried again");
});
