import assert from "node:assert/strict";
import type { ClusterNode } from "./cluster.ts";
import { ReplicatedOffsets } from "./group_offsets.ts";

/** A stand-in for the metadata group: records proposals; each is settled by the test. */
class FakeMeta {
  readonly proposals: { offsets: [string, number][]; reset: boolean }[] = [];
  readonly stored = new Map<string, number>();
  readonly #settle: ((ok: boolean) => void)[] = [];
  readonly meta = { offsets: new Map([["g", this.stored]]) };

  commitOffsets(_group: string, offsets: [string, number][], reset: boolean): Promise<void> {
    this.proposals.push({ offsets, reset });
    return new Promise((resolve, reject) =>
      this.#settle.push((ok) => {
        if (!ok) return reject(new Error("refused"));
        for (const [k, v] of offsets) {
          this.stored.set(k, reset ? v : Math.max(this.stored.get(k) ?? v, v));
        }
        resolve();
      })
    );
  }

  /** Settles the oldest open proposal and lets the offsets store move on. */
  async settle(ok: boolean): Promise<void> {
    this.#settle.shift()!(ok);
    for (let i = 0; i < 20; i++) await Promise.resolve(); // a few turns of the microtask queue
  }

  asNode(): ClusterNode {
    return this as unknown as ClusterNode;
  }
}

Deno.test("ReplicatedOffsets: a commit is answered by the proposal that carried it, and only by it", async () => {
  const meta = new FakeMeta();
  const offsets = new ReplicatedOffsets(meta.asNode());
  const first = offsets.commit("g", [["t/0", 12]], false);
  // The same commit again (a client's retry) and another one, while the first is under way.
  const retry = offsets.commit("g", [["t/0", 12]], false);
  const other = offsets.commit("g", [["t/1", 3]], false);
  assert.equal(offsets.latest("g", "t/0"), 12, "pending commits count for the ordering checks");
  const refused = assert.rejects(first);
  await meta.settle(false); // the first proposal is refused
  await refused;
  assert.deepEqual(
    meta.proposals[1]!.offsets,
    [["t/0", 12], ["t/1", 3]],
    "the retry's own offsets",
  );
  await meta.settle(true);
  await retry;
  await other;
  assert.equal(meta.stored.get("t/0"), 12);
  assert.equal(meta.stored.get("t/1"), 3);
});

Deno.test("ReplicatedOffsets: a reset goes alone, after the commits taken before it", async () => {
  const meta = new FakeMeta();
  const offsets = new ReplicatedOffsets(meta.asNode());
  const a = offsets.commit("g", [["t/0", 50]], false);
  const b = offsets.commit("g", [["t/0", 60]], false);
  const reset = offsets.commit("g", [["t/0", 0]], true);
  const c = offsets.commit("g", [["t/0", 5]], false);
  assert.equal(offsets.latest("g", "t/0"), 5, "the reset and what follows it are the last word");
  for (let i = 0; i < 4; i++) await meta.settle(true);
  await Promise.all([a, b, reset, c]);
  assert.deepEqual(meta.proposals.map((p) => [p.reset, p.offsets]), [
    [false, [["t/0", 50]]],
    [false, [["t/0", 60]]],
    [true, [["t/0", 0]]],
    [false, [["t/0", 5]]],
  ]);
  assert.equal(meta.stored.get("t/0"), 5, "the reset was not undone by an earlier commit");
});
