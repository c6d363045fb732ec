import assert from "node:assert/strict";
import {
  aclsFile,
  cleanShutdownFile,
  founderFile,
  groupOffsetsFile,
  groupOfOffsetsFile,
  groupsDir,
  incarnationFile,
  isPartitionDirName,
  isTmpName,
  layoutEntries,
  lockFile,
  metaGroupDir,
  nodeIdFile,
  parseSegmentName,
  parseWalSegmentName,
  partitionDir,
  probeFile,
  producerIdsFile,
  replicaDir,
  replicaLogDir,
  rewindFile,
  segmentCopyFile,
  segmentFile,
  segmentName,
  subscriptionsFile,
  topicDir,
  topicMetaFile,
  topicsDir,
  usersFile,
  walSegmentFile,
} from "./layout.ts";

Deno.test("layout names every path as brokers before this module did (an existing data dir opens)", () => {
  // Spelled out literally: these are on disk in data directories already written.
  const d = "/var/lib/gregor";
  const replica = replicaDir(d, { topic: "orders", incarnation: 42, partition: 3 });
  assert.deepEqual(
    [
      lockFile(d),
      probeFile(d),
      nodeIdFile(d),
      incarnationFile(d),
      usersFile(d),
      aclsFile(d),
      producerIdsFile(d),
      subscriptionsFile(d),
      groupsDir(d),
      groupOffsetsFile(d, "billing"),
      topicsDir(d),
      topicDir(d, "orders"),
      topicMetaFile(d, "orders"),
      partitionDir(d, "orders", 3),
      metaGroupDir(d),
      founderFile(metaGroupDir(d)),
      replica,
      replicaLogDir(replica),
      walSegmentFile(replica, 17),
      segmentFile(partitionDir(d, "orders", 3), 1234, "log"),
      segmentFile(partitionDir(d, "orders", 3), 1234, "index"),
      segmentFile(partitionDir(d, "orders", 3), 1234, "timeindex"),
      segmentCopyFile(segmentFile(partitionDir(d, "orders", 3), 1234, "log")),
      cleanShutdownFile(partitionDir(d, "orders", 3)),
      rewindFile(partitionDir(d, "orders", 3)),
    ],
    [
      "/var/lib/gregor/.lock",
      "/var/lib/gregor/.probe",
      "/var/lib/gregor/node-id",
      "/var/lib/gregor/node-incarnation",
      "/var/lib/gregor/users.json",
      "/var/lib/gregor/acls.json",
      "/var/lib/gregor/producer_ids.json",
      "/var/lib/gregor/subscriptions.json",
      "/var/lib/gregor/groups",
      "/var/lib/gregor/groups/billing.json",
      "/var/lib/gregor/topics",
      "/var/lib/gregor/topics/orders",
      "/var/lib/gregor/topics/orders/topic.json",
      "/var/lib/gregor/topics/orders/3",
      "/var/lib/gregor/raft/__meta",
      "/var/lib/gregor/raft/__meta.founder",
      "/var/lib/gregor/raft/p/orders@42/3",
      "/var/lib/gregor/raft/p/orders@42/3.log",
      "/var/lib/gregor/raft/p/orders@42/3/00000000000000000017.wal",
      "/var/lib/gregor/topics/orders/3/00000000000000001234.log",
      "/var/lib/gregor/topics/orders/3/00000000000000001234.index",
      "/var/lib/gregor/topics/orders/3/00000000000000001234.timeindex",
      "/var/lib/gregor/topics/orders/3/00000000000000001234.log.tmp",
      "/var/lib/gregor/topics/orders/3/clean-shutdown",
      "/var/lib/gregor/topics/orders/3/rewind",
    ],
  );
  // The default data dir is relative.
  assert.equal(topicMetaFile("./data", "t"), "./data/topics/t/topic.json");
});

Deno.test("layout reads back the names it makes, and only those", () => {
  assert.equal(groupOfOffsetsFile("billing.json"), "billing");
  assert.equal(groupOfOffsetsFile("billing.json.tmp"), null, "an interrupted replace's leftover");
  assert.equal(parseWalSegmentName("00000000000000000017.wal"), 17);
  assert.equal(parseWalSegmentName("00000000000000000017.log"), null);
  assert.ok(isPartitionDirName("0") && isPartitionDirName("12"));
  assert.ok(!isPartitionDirName("topic.json") && !isPartitionDirName("1a"));
  assert.ok(
    isTmpName("00000000000000000000.log.tmp") && isTmpName("00000000000000000000.index.tmp"),
  );
  assert.ok(!isTmpName("00000000000000000000.log") && !isTmpName("clean-shutdown"));
});

Deno.test("segmentName() pads the base offset to 20 digits and parseSegmentName() reads it back", () => {
  assert.equal(segmentName(0, "log"), "00000000000000000000.log");
  assert.equal(segmentName(42, "timeindex"), "00000000000000000042.timeindex");
  for (const base of [0, 1, 9_999, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
    for (const ext of ["log", "index", "timeindex"]) {
      assert.equal(parseSegmentName(segmentName(base, ext), ext), base);
    }
  }
});

Deno.test("parseSegmentName() refuses names that are not a segment file of that kind", () => {
  assert.equal(parseSegmentName("00000000000000000042.index", "log"), null);
  assert.equal(parseSegmentName("00000000000000000042.log.tmp", "log"), null);
  assert.equal(parseSegmentName("42.log", "log"), null);
  assert.equal(parseSegmentName("0000000000000000000042.log", "log"), null);
  assert.equal(parseSegmentName("clean-shutdown", "log"), null);
  // Twenty digits can name an offset past 2^53, which no log can reach.
  assert.equal(parseSegmentName("99999999999999999999.log", "log"), null);
});

Deno.test("layoutEntries() is a whole tree: every entry's directory is an entry before it", () => {
  const seen = new Set<string>();
  for (const { path, what } of layoutEntries()) {
    assert.ok(what.length > 0, `${path} says what it holds`);
    const parent = path.replace(/[^/]+\/?$/, "");
    assert.ok(parent === "" || seen.has(parent), `${path}: its directory ${parent} comes first`);
    assert.ok(!seen.has(path), `${path} is listed once`);
    seen.add(path);
  }
});
