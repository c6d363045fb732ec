// The catalog of planted bugs `deno task mutate` runs the seeded sweeps against: each one a single
// source patch modelling a slip an engineer could plausibly make, in Raft, the WAL, storage, the
// idempotent producer, consumer groups, durable subscriptions or the broker. They exist to measure
// the sweeps, never to fix a checker to: checkers must catch the class, not the instance.

/** Where a planted bug lives; it decides which sweeps run first (a miss runs them all). */
export type MutantArea = "raft" | "storage" | "idempotent" | "groups" | "durable" | "broker";

/** One planted bug: replace the one occurrence of `find` in `file` with `replace`. */
export interface Mutant {
  id: string;
  area: MutantArea;
  /** Path from the repository root. */
  file: string;
  find: string;
  replace: string;
  /** The slip it models, one line. */
  slip: string;
}

const NODE = "src/cluster/raft/node.ts";

/** The planted bugs, one applied at a time. */
export const MUTANTS: readonly Mutant[] = [
  {
    id: "raft-commit-prior-term",
    area: "raft",
    file: NODE,
    find: "const countable = this.#log.term(n) === this.#term ||",
    replace: "const countable = this.#log.term(n) !== null ||",
    slip: "a leader commits entries of earlier terms by counting replicas (Raft Figure 8)",
  },
  {
    id: "raft-vote-before-persist",
    area: "raft",
    file: NODE,
    find: 'const early = this.#role === "leader" && m.term === this.#term &&',
    replace:
      'const early = m.type === "RequestVoteResp" || this.#role === "leader" && m.term === this.#term &&',
    slip: "vote grants go out before the vote is durable, so a crash can vote twice in a term",
  },
  {
    id: "raft-ack-before-persist",
    area: "raft",
    file: NODE,
    find: 'const early = this.#role === "leader" && m.term === this.#term &&',
    replace:
      'const early = m.type === "AppendEntriesResp" || this.#role === "leader" && m.term === this.#term &&',
    slip:
      "a follower acknowledges appended entries before they are durable, so a crash loses entries a leader counted as replicated",
  },
  {
    id: "raft-leader-counts-unsaved",
    area: "raft",
    file: NODE,
    find: "matches.push(v === this.id ? this.#stable : (this.#progress.get(v)?.match ?? 0));",
    replace:
      "matches.push(v === this.id ? this.#log.lastIndex : (this.#progress.get(v)?.match ?? 0));",
    slip:
      "a leader counts its own entries towards a commit while its write is still under way, so a crash can lose a committed entry",
  },
  {
    id: "raft-ack-own-last",
    area: "raft",
    file: NODE,
    find: "    this.#commitTo(Math.min(m.commit, lastNew));\n    reply(true, lastNew);",
    replace:
      "    this.#commitTo(Math.min(m.commit, lastNew));\n    reply(true, this.#log.lastIndex);",
    slip:
      "a follower acknowledges an append through its own last index, past what the append matched, so an old suffix counts as a copy",
  },
  {
    id: "raft-no-prev-term-check",
    area: "raft",
    file: NODE,
    find: "if (this.#log.term(m.prevIndex) !== m.prevTerm) {",
    replace: "if (this.#log.term(m.prevIndex) === null) {",
    slip: "a follower checks that prevIndex exists but not that its term matches prevTerm",
  },
  {
    id: "raft-stale-append-resp",
    area: "raft",
    file: NODE,
    find: "} else if (m.term < this.#term) {",
    replace: '} else if (m.term < this.#term && m.type !== "AppendEntriesResp") {',
    slip: "a leader takes append answers from an earlier term (no term check on responses)",
  },
  {
    id: "raft-leader-ignores-higher-term",
    area: "raft",
    file: NODE,
    find: "this.#becomeFollower(m.term, fromLeader ? m.from : null);",
    replace: 'if (this.#role === "leader" && !fromLeader) {\n' +
      "      this.#term = m.term;\n      this.#vote = null;\n      return true;\n    }\n" +
      "    this.#becomeFollower(m.term, fromLeader ? m.from : null);",
    slip: "a leader adopts a higher term it hears of but does not step down",
  },
  {
    id: "raft-commit-backwards",
    area: "raft",
    file: NODE,
    find: "if (index > this.#commit) this.#commit = index;",
    replace: "this.#commit = index;",
    slip: "a follower sets its commit index from the leader's message even when it is lower",
  },
  {
    id: "raft-apply-uncommitted",
    area: "raft",
    file: NODE,
    find: "return Math.min(this.#commit, this.#stable);",
    replace: "return this.#stable;",
    slip: "entries are applied once durable locally, before they are committed",
  },
  {
    id: "raft-prevote-ignores-log",
    area: "raft",
    file: NODE,
    find: "const granted = m.term > this.#term && this.#upToDate(m);",
    replace: "const granted = m.term > this.#term;",
    slip: "pre-votes are granted without comparing logs (real votes still compare)",
  },
  {
    id: "raft-snapshot-ack-off-by-one",
    area: "raft",
    file: NODE,
    find:
      'this.#send({ type: "InstallSnapshotResp", from: this.id, to: m.from, term: this.#term, index });',
    replace:
      'this.#send({ type: "InstallSnapshotResp", from: this.id, to: m.from, term: this.#term, index: index + 1 });',
    slip: "a follower acknowledges an installed snapshot one index past its end",
  },
  {
    id: "raft-follower-commit-past-match",
    area: "raft",
    file: NODE,
    find: "this.#commitTo(Math.min(m.commit, lastNew));",
    replace: "this.#commitTo(Math.min(m.commit, this.#log.lastIndex));",
    slip: "a follower commits up to its own last index, past what the leader's append matched",
  },
  {
    id: "raft-quorum-off-by-one",
    area: "raft",
    file: NODE,
    find: "return Math.floor(n / 2) + 1;",
    replace: "return Math.ceil(n / 2);",
    slip: "the majority is computed as half rounded up, one short for an even number of voters",
  },
  {
    id: "raft-vote-twice",
    area: "raft",
    file: NODE,
    find:
      "const canVote = this.#vote === m.from || (this.#vote === null && this.#leaderId === null);",
    replace: "const canVote = this.#vote === m.from || this.#leaderId === null;",
    slip: "a node votes again in a term it already voted in, for another candidate",
  },
  {
    id: "raft-no-check-quorum",
    area: "raft",
    file: NODE,
    find: "if (!this.#checkQuorum()) {",
    replace: "if (!this.#checkQuorum() && false) {",
    slip: "a leader cut off from a majority never steps down (check-quorum lost)",
  },
  {
    id: "raft-compact-drops-extra",
    area: "raft",
    file: "src/cluster/raft/log.ts",
    find: "this.#entries = this.#entries.slice(snapshot.index - this.#snapshot.index);",
    replace: "this.#entries = this.#entries.slice(snapshot.index - this.#snapshot.index + 1);",
    slip: "log compaction drops one entry past the snapshot",
  },
  {
    id: "raft-conflict-not-overwritten",
    area: "raft",
    file: "src/cluster/raft/log.ts",
    find: "if (this.term(e.index) !== e.term) return e.index;",
    replace: "if (this.term(e.index) === null) return e.index;",
    slip: "a follower appends only entries it lacks and keeps conflicting ones of another term",
  },
  {
    id: "wal-no-fsync-wait",
    area: "raft",
    file: "src/cluster/raft/wal.ts",
    find: "await this.#durably(seg.file.sync(), `fsync of ${seg.path}`);",
    replace: "seg.file.sync().catch(() => {});",
    slip: "the Raft WAL reports a frame saved without waiting for its fsync",
  },
  {
    id: "storage-ack-before-sync",
    area: "storage",
    file: "src/storage/file_log.ts",
    find: "if (!(await this.#sync(seg))) {",
    replace: "if (!(void this.#sync(seg), this.#failed === null)) {",
    slip: 'under fsync "always" an append is acknowledged before its fsync completes',
  },
  {
    id: "storage-visible-before-sync",
    area: "storage",
    file: "src/storage/file_log.ts",
    find: "    seg.nextOffset = next;\n    this.#writtenBatches += group.length;",
    replace:
      "    seg.nextOffset = next;\n    this.#visible = next;\n    this.#visibleBytes = seg.sizeBytes;\n    this.#writtenBatches += group.length;",
    slip:
      'under fsync "always" readers see batches before their fsync, so a subscriber can get a message a power cut then loses',
  },
  {
    id: "storage-torn-tail-kept",
    area: "storage",
    file: "src/storage/segment.ts",
    find: "validBytes: pos,",
    replace: "validBytes: size,",
    slip: "recovery keeps the whole file instead of cutting it at the last whole batch",
  },
  {
    id: "storage-no-crc-on-read",
    area: "storage",
    file: "src/storage/file_log.ts",
    find: "const bad = headers.findIndex((h) => !batchOk(bytes, h.pos - startPos, h));",
    replace:
      "const bad = headers.findIndex((h) => total < 0 && !batchOk(bytes, h.pos - startPos, h));",
    slip: "the read path serves batches without verifying their checksums",
  },
  {
    id: "storage-time-lookup-strict",
    area: "storage",
    file: "src/storage/segment.ts",
    find: "if ((this.times[mid] as number) >= ts) {",
    replace: "if ((this.times[mid] as number) > ts) {",
    slip:
      "replay by time skips the batch whose largest timestamp equals the time asked for, so a subscriber from that time misses it",
  },
  {
    id: "storage-retention-over-eager",
    area: "storage",
    file: "src/storage/file_log.ts",
    find: "this.sizeBytes > this.#opts.retentionBytes;",
    replace: "this.sizeBytes > this.#opts.retentionBytes / 4;",
    slip:
      "size retention compares against a quarter of the limit, deleting segments the limit keeps",
  },
  {
    id: "storage-retention-newest-time",
    area: "storage",
    file: "src/storage/file_log.ts",
    find: "oldest.maxTimestamp < now - this.#opts.retentionMs;",
    replace: "(this.#segments[1] ?? oldest).maxTimestamp < now - this.#opts.retentionMs;",
    slip:
      "time retention judges the oldest segment by the next one's timestamps, deleting one that is still within the limit",
  },
  {
    id: "storage-index-past-batch",
    area: "storage",
    file: "src/storage/segment.ts",
    find: "index.add(h.baseOffset - baseOffset, pos, h.sizeBytes, h.maxTimestamp);",
    replace:
      "index.add(h.baseOffset - baseOffset, pos + h.sizeBytes, h.sizeBytes, h.maxTimestamp);",
    slip: "the index rebuilt on recovery records each batch's end position instead of its start",
  },
  {
    id: "storage-recovery-copy-unsynced",
    area: "storage",
    file: "src/storage/file_log.ts",
    find: "await copy.sync();",
    replace: "",
    slip: "crash recovery renames its copy of the segment into place without syncing it",
  },
  {
    id: "storage-atomic-write-unsynced",
    area: "storage",
    file: "src/io/util.ts",
    find: "await file.sync();",
    replace: "",
    slip: "an atomic file replace renames the new file into place without syncing it first",
  },
  {
    id: "idem-gap-as-duplicate",
    area: "idempotent",
    file: "src/broker/producer_state.ts",
    find: "if (ahead < SEQUENCES / 2) {",
    replace: "if (ahead > SEQUENCES / 2) {",
    slip: "a batch after a sequence gap is answered as an old duplicate (offset -1), not stored",
  },
  {
    id: "idem-failed-append-remembered",
    area: "idempotent",
    file: "src/broker/producer_state.ts",
    find: "cached.baseOffset.catch(() => this.#forget(h.producerId, e, cached));",
    replace: "cached.baseOffset.catch(() => {});",
    slip: "a batch whose append failed stays remembered, so its retry is judged a duplicate",
  },
  {
    id: "idem-fence-off-by-one",
    area: "idempotent",
    file: "src/broker/producer_state.ts",
    find: "if (h.producerEpoch < e.epoch) {",
    replace: "if (h.producerEpoch < e.epoch - 1) {",
    slip:
      "the epoch fence lets the previous epoch through, so a zombie producer's batches are judged by the new epoch's sequences",
  },
  {
    id: "idem-id-block-installed-twice",
    area: "idempotent",
    file: "src/cluster/bridge.ts",
    find: "      if (first !== this.#lastBlock) {",
    replace: "      if (true) {",
    slip:
      "each caller awaiting a producer-id block installs it again, so the controller hands the same ids out twice",
  },
  {
    id: "client-gap-taken-as-duplicate",
    area: "idempotent",
    file: "src/client/producer.ts",
    find: "if (err instanceof GregorError && err.code === ErrorCode.DUPLICATE_SEQUENCE) {",
    replace: "if (\n      err instanceof GregorError &&\n" +
      "      (err.code === ErrorCode.DUPLICATE_SEQUENCE || err.code === ErrorCode.OUT_OF_ORDER_SEQUENCE)\n" +
      "    ) {",
    slip: "the producer takes an out-of-order answer as 'already stored' and resolves it with -1",
  },
  {
    id: "group-grant-owned",
    area: "groups",
    file: "src/broker/groups/coordinator.ts",
    find: "if (group.owner.has(key)) continue;",
    replace: "if (group.owner.get(key) === member.id) continue;",
    slip: "a rebalance grants a partition its previous owner has not released yet",
  },
  {
    id: "group-commit-unowned",
    area: "groups",
    file: "src/broker/groups/coordinator.ts",
    find: "if (g.owner.get(tpKey(tp.topic, tp.partition)) !== memberId) {",
    replace: "const holder = g.owner.get(tpKey(tp.topic, tp.partition));\n" +
      "      if (holder !== undefined && holder !== memberId) {",
    slip: "a commit of a partition nobody owns (mid-rebalance) is accepted",
  },
  {
    id: "group-commit-backwards",
    area: "groups",
    file: "src/broker/groups/groups.ts",
    find: "const before = this.#store.latest(req.group, key) ?? -1;",
    replace: "const before = this.#store.latest(req.group, o.topic) ?? -1;",
    slip: "the backwards-commit check looks the old offset up under the wrong key",
  },
  {
    id: "group-stale-generation",
    area: "groups",
    file: "src/broker/groups/coordinator.ts",
    find: "if (generation !== member.generation) {",
    replace: "if (generation > member.generation) {",
    slip: "commits from a member's earlier generation are accepted",
  },
  {
    id: "group-release-on-stale-owned",
    area: "groups",
    file: "src/broker/groups/coordinator.ts",
    find:
      "if (req.generation === member.generation) this.#releaseUnowned(group, member, req.owned);",
    replace: "this.#releaseUnowned(group, member, req.owned);",
    slip: "a heartbeat built before the last answer releases partitions just granted",
  },
  {
    id: "durable-ack-not-saved",
    area: "durable",
    file: "src/broker/subscription.ts",
    find: "this.durable.onChange();",
    replace: "",
    slip: "a durable subscription's ack moves its offset in memory but never marks it for saving",
  },
  {
    id: "durable-acks-what-was-sent",
    area: "durable",
    file: "src/broker/subscription.ts",
    find: "      this.durable.ackedOffset = offset;\n",
    replace: "      this.durable.ackedOffset = this.nextOffset - 1;\n",
    slip:
      "a durable subscription's ack records everything sent so far, so a resume skips messages delivered but not yet acknowledged",
  },
  {
    id: "durable-resume-at-acked",
    area: "durable",
    file: "src/broker/broker.ts",
    find: "start = Math.max(durable.ackedOffset + 1, log.logStartOffset);",
    replace: "start = Math.max(durable.ackedOffset, log.logStartOffset);",
    slip: "a durable subscription resumes at its last acknowledged offset instead of after it",
  },
  {
    id: "client-dropped-credit-kept",
    area: "broker",
    file: "src/client/consumer.ts",
    find: "      if (dropped.length > 0) {\n        this.#consumed(",
    replace: "      if (dropped.length < 0) {\n        this.#consumed(",
    slip:
      "queued copies a redelivery replaces are dropped without giving their window credit back (the subscription stalls)",
  },
  {
    id: "broker-no-redelivery",
    area: "broker",
    file: "src/broker/subscription.ts",
    find: "    if (this.#ackTimeoutMs === 0 || this.#closed) return;\n    const oldest",
    replace: "    if (this.#ackTimeoutMs >= 0 || this.#closed) return;\n    const oldest",
    slip: "deliveries whose ack timeout passed are never sent again (at-least-once lost)",
  },
  {
    id: "broker-redelivery-skips-first",
    area: "broker",
    file: "src/broker/subscription.ts",
    find:
      "    this.nextOffset = Math.max(this.ackedOffset + 1, this.partition.log.logStartOffset);\n    this.#redeliver = true;",
    replace:
      "    this.nextOffset = Math.max(this.ackedOffset + 2, this.partition.log.logStartOffset);\n    this.#redeliver = true;",
    slip:
      "a redelivery starts one past the first unacknowledged offset, so that message is never sent again",
  },
  {
    id: "broker-ack-before-append",
    area: "broker",
    file: "src/broker/broker.ts",
    find: "const store = () => partition.log.append(batch, header).then((r) => r.baseOffset);",
    replace: "const store = () => {\n        const predicted = partition.log.nextOffset;\n" +
      "        partition.log.append(batch, header).catch(() => {});\n" +
      "        return Promise.resolve(predicted);\n      };",
    slip: "a produce is answered with the offset the log predicts, before the append resolves",
  },
];
