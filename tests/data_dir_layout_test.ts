// The data directory's layout is a compatibility promise: an existing data directory must open
// after an upgrade. These tests run real nodes on real files and compare every path they write
// with the layout spelled out literally, as brokers before src/storage/layout.ts wrote it; then a
// restart on the same directory serves what the first run stored, and a directory laid out by hand
// at those literal paths opens. Last, docs/architecture.md must show the tree layout.ts declares.

import assert from "node:assert/strict";
import { type Client, connect } from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { startNode } from "../src/node.ts";
import { encodeBatch, setBaseOffset } from "../src/protocol/batch.ts";
import { writeChecked } from "../src/storage/checked_file.ts";
import { founderFile, layoutTree, metaGroupDir } from "../src/storage/layout.ts";

const env = denoEnv();

/** docs/architecture.md, which shows the layout as a tree. */
const ARCHITECTURE_MD = new URL("../docs/architecture.md", import.meta.url);

/** Every path under `root`, relative, directories with a trailing "/", sorted. */
async function listTree(root: string, under = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${root}/${under}`)) {
    const rel = `${under}${e.name}`;
    if (e.isDirectory) out.push(`${rel}/`, ...await listTree(root, `${rel}/`));
    else out.push(rel);
  }
  return out.sort();
}

/** Waits until `cond` resolves true, checking every 50 ms, for at most `ms`. */
async function until(what: string, ms: number, cond: () => Promise<boolean>): Promise<void> {
  const end = env.clock.now() + ms;
  while (!(await cond())) {
    if (env.clock.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await env.clock.sleep(50);
  }
}

/** The smallest segment a topic may have: with VALUE, every batch rolls one, sealing the one before. */
const SEGMENT_BYTES = 1024;
const VALUE = "v".repeat(1000);

/** Time a node gets to elect itself and serve a replicated topic, ms. */
const CLUSTER_READY_MS = 20_000;

Deno.test("a single node writes today's data dir layout, and a restart on it serves what it held", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-layout-" });
  const start = () =>
    startNode(env, {
      port: 0,
      broker: { dataDir, offsetsFlushMs: 20, segmentBytes: SEGMENT_BYTES },
    });
  try {
    let node = await start();
    let client: Client = await connect({ port: node.addr.port, clientId: "layout" });
    try {
      await client.admin.createTopic("orders", { partitions: 2 });
      for (let i = 0; i < 3; i++) await client.publish("orders", { partition: 0, value: VALUE });
      await client.admin.resetOffsets("billing", "orders", { offset: 2 }, { partitions: [0] });
      const sub = await client.subscribe("orders", {
        partition: 0,
        from: "earliest",
        durable: "audit",
      });
      (await sub.next())?.ack();
      await until("the durable offset saved", 5_000, async () => {
        try {
          return (await Deno.readTextFile(`${dataDir}/subscriptions.json`)).includes("audit");
        } catch {
          return false;
        }
      });
      await sub.close();
    } finally {
      await client.close();
      await node.close();
    }
    const tree = await listTree(dataDir);
    assert.deepEqual(
      tree,
      [
        ".lock",
        "groups/",
        "groups/billing.json",
        "producer_ids.json",
        "subscriptions.json",
        "topics/",
        "topics/orders/",
        "topics/orders/0/",
        "topics/orders/0/00000000000000000000.index",
        "topics/orders/0/00000000000000000000.log",
        "topics/orders/0/00000000000000000000.timeindex",
        "topics/orders/0/00000000000000000001.index",
        "topics/orders/0/00000000000000000001.log",
        "topics/orders/0/00000000000000000001.timeindex",
        "topics/orders/0/00000000000000000002.log",
        "topics/orders/0/clean-shutdown",
        "topics/orders/1/",
        "topics/orders/1/00000000000000000000.log",
        "topics/orders/1/clean-shutdown",
        "topics/orders/topic.json",
      ].sort(),
    );

    node = await start();
    client = await connect({ port: node.addr.port, clientId: "layout" });
    try {
      const [offset] = await client.admin.groupOffsets("billing", [{
        topic: "orders",
        partition: 0,
      }]);
      assert.equal(offset?.offset, 2, "the group's committed offset is back");
      const sub = await client.subscribe("orders", { partition: 0, durable: "audit" });
      const m = await sub.next();
      assert.equal(m?.offset, 1, "the durable subscription resumes after its acked offset");
      await sub.close();
    } finally {
      await client.close();
      await node.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** A replicating node that founds its own cluster (no seeds), on `dataDir`, with quick Raft. */
function startFounder(dataDir: string): ReturnType<typeof startNode> {
  return startNode(env, {
    port: 0,
    broker: { dataDir },
    cluster: {
      port: 0,
      seeds: [],
      replicate: true,
      replicationFactor: 1,
      raft: { tickMs: 10, electionTimeoutMs: 200, heartbeatIntervalMs: 50 },
    },
  });
}

Deno.test("a replicating cluster node writes today's data dir layout, and a restart on it serves what it held", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-layout-" });
  const start = () => startFounder(dataDir);
  const publishOnce = async (client: Client, value: string): Promise<number> => {
    let offset = -1;
    await until("the replicated topic takes a publish", CLUSTER_READY_MS, async () => {
      try {
        offset = await client.publish("orders", { partition: 0, value });
        return true;
      } catch {
        return false;
      }
    });
    return offset;
  };
  try {
    let node = await start();
    let client = await connect({ port: node.addr.port, clientId: "layout" });
    try {
      await until("the metadata group takes a topic", CLUSTER_READY_MS, async () => {
        try {
          await client.admin.createTopic("orders", { partitions: 1 });
          return true;
        } catch {
          return false;
        }
      });
      assert.equal(await publishOnce(client, "first"), 0);
    } finally {
      await client.close();
      await node.close();
    }
    // The topic's incarnation (its creation's place in the metadata log) is not fixed here.
    const tree = (await listTree(dataDir)).map((p) =>
      p.replace(/^raft\/p\/orders@\d+\//, "raft/p/orders@N/")
    );
    assert.deepEqual(
      tree,
      [
        ".lock",
        "cluster-id",
        "node-id",
        "node-incarnation",
        "raft/",
        "raft/__meta.founder",
        "raft/__meta/",
        "raft/__meta/00000000000000000000.wal",
        "raft/p/",
        "raft/p/orders@N/",
        "raft/p/orders@N/0.log/",
        "raft/p/orders@N/0.log/00000000000000000000.log",
        "raft/p/orders@N/0.log/clean-shutdown",
        "raft/p/orders@N/0/",
        "raft/p/orders@N/0/00000000000000000000.wal",
      ].sort(),
    );

    // A node without seeds founded the cluster: its own id names it.
    const read = async (name: string) => (await Deno.readTextFile(`${dataDir}/${name}`)).trim();
    assert.equal(await read("cluster-id"), await read("node-id"));

    node = await start();
    client = await connect({ port: node.addr.port, clientId: "layout" });
    try {
      assert.equal(
        await publishOnce(client, "second"),
        1,
        "the first run's message is still there",
      );
      const sub = await client.subscribe("orders", { partition: 0, from: "earliest" });
      assert.equal(new TextDecoder().decode((await sub.next())?.value ?? undefined), "first");
      await sub.close();
    } finally {
      await client.close();
      await node.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a single node opens a data dir laid out by hand at today's literal paths", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-layout-" });
  // Written as an earlier broker left them: the paths spelled out, the contents in their formats.
  const put = (path: string, text: string) => writeChecked(env.disk, `${dataDir}/${path}`, text);
  await Deno.mkdir(`${dataDir}/topics/orders/0`, { recursive: true });
  await Deno.mkdir(`${dataDir}/groups`);
  await put(
    "topics/orders/topic.json",
    JSON.stringify({ name: "orders", partitions: 1, configs: {} }),
  );
  const now = Date.now();
  const batch = encodeBatch(
    ["old-0", "old-1", "old-2"].map((v, i) => ({
      value: new TextEncoder().encode(v),
      timestamp: now + i,
    })),
  );
  setBaseOffset(batch, 0, 0);
  await Deno.writeFile(`${dataDir}/topics/orders/0/00000000000000000000.log`, batch);
  await put("groups/billing.json", JSON.stringify({ offsets: { "orders\u00000": 2 } }));
  await put("subscriptions.json", JSON.stringify({ "orders\u00000\u0000audit": 0 }));
  await put("producer_ids.json", JSON.stringify({ nextBlockStart: 5000 }));
  const node = await startNode(env, { port: 0, broker: { dataDir } });
  const client = await connect({ port: node.addr.port, clientId: "layout" });
  try {
    const all = await client.subscribe("orders", { partition: 0, from: "earliest", until: "end" });
    const values: string[] = [];
    for await (const m of all) values.push(new TextDecoder().decode(m.value ?? undefined));
    assert.deepEqual(values, ["old-0", "old-1", "old-2"], "the segment's records are served");
    const [offset] = await client.admin.groupOffsets("billing", [{
      topic: "orders",
      partition: 0,
    }]);
    assert.equal(offset?.offset, 2, "the group's committed offset is read");
    const durable = await client.subscribe("orders", { partition: 0, durable: "audit" });
    assert.equal((await durable.next())?.offset, 1, "the durable subscription resumes after 0");
    await durable.close();
    assert.equal(await client.publish("orders", { partition: 0, value: "new" }), 3);
  } finally {
    await client.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("docs/architecture.md shows the data dir layout the module declares", async () => {
  const doc = await Deno.readTextFile(ARCHITECTURE_MD);
  const m = /<!-- layout:begin[^\n]*-->\n\n```\n([\s\S]*?)\n```\n\n<!-- layout:end -->/.exec(doc);
  assert.ok(m !== null, "docs/architecture.md has the layout block");
  assert.equal(
    m[1],
    layoutTree(),
    "regenerate the block in docs/architecture.md from layoutTree() in src/storage/layout.ts",
  );
});

Deno.test("a node of a cluster founded before nodes kept their cluster is named after the founder its metadata group recorded", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-cluster-id-" });
  const start = () => startFounder(dataDir);
  const read = async (name: string) => (await Deno.readTextFile(`${dataDir}/${name}`)).trim();
  try {
    await (await start()).close();
    // As an older version left it: no cluster-id, and (founded with bootstrapExpect 2 or more) a
    // founder other than this node, which every other node of the cluster also records.
    await Deno.remove(`${dataDir}/cluster-id`);
    await writeChecked(
      env.disk,
      founderFile(metaGroupDir(dataDir)),
      `a0founder,${await read("node-id")}`,
    );
    await (await start()).close();
    assert.equal(await read("cluster-id"), "a0founder", "not its own id, which no other node has");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
