// Operator commands on a replicating cluster of three real broker processes, driven through the
// gregorctl CLI as an operator would: `partition reassign` moves an RF=2 partition to another pair
// of nodes (every acknowledged message then reads back, in order, from the new replicas, and the
// node left out deletes its copy), bad replica lists are refused with the error that says why, and
// `cluster rebalance-leaders` hands leaderships a restarted node lost back to it at once, with the
// brokers' own balancing turned off.

import assert from "node:assert/strict";
import type { Client } from "../src/client/mod.ts";
import { replicasDir } from "../src/storage/layout.ts";
import {
  clusterFormed,
  type ClusterProc,
  connectTo,
  createTopicRetrying,
  freePort,
  killAll,
  retry,
  sleep,
  startClusterNode,
} from "./_broker_process.ts";

const GREGORCTL = new URL("../cli/gregorctl.ts", import.meta.url).pathname;
const MOVED = "moved";
const SPREAD = "spread";
const MESSAGES = 300;
/** Time `partition reassign --wait` gets to finish the move, ms. */
const MOVE_MS_MAX = 30_000;
/** How often the test looks at the partition while it moves, ms. */
const MOVE_POLL_MS = 25;
/** Time the leaders get to go back after a `cluster rebalance-leaders`, ms. */
const REBALANCED_MS_MAX = 10_000;
/** A gregorctl run that takes longer has hung. */
const GREGORCTL_MS_MAX = 40_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs gregorctl against the broker on `port`. */
async function gregorctl(port: number, args: string[]): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-env",
      GREGORCTL,
      "--broker",
      `127.0.0.1:${port}`,
      ...args,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(GREGORCTL_MS_MAX),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Every value of partition 0 of `topic` as the broker `c` serves it, by offset. */
async function readBack(c: Client, topic: string): Promise<string[]> {
  const end = (await c.admin.describeTopic(topic)).partitions[0]!.highWatermark;
  const sub = await c.subscribe(topic, { from: "earliest", partition: 0 });
  const values: string[] = [];
  try {
    for await (const m of sub) {
      assert.equal(m.offset, values.length, "offsets come in order, none missing");
      values.push(m.text());
      m.ack();
      if (m.offset + 1 >= end) break;
    }
  } finally {
    await sub.close();
  }
  return values;
}

/**
 * True if the node with data directory `dir` still holds anything of partition 0 of `topic`: its
 * segment log or its Raft store's directory (a replica moved away leaves neither).
 */
async function holdsOnDisk(dir: string, topic: string): Promise<boolean> {
  const names = async (path: string): Promise<string[]> => {
    const out: string[] = [];
    try {
      for await (const e of Deno.readDir(path)) out.push(e.name);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return out;
  };
  for (const incarnation of await names(replicasDir(dir))) {
    if (!incarnation.startsWith(`${topic}@`)) continue;
    const path = `${replicasDir(dir)}/${incarnation}`;
    const held = await names(path);
    if (held.includes("0.log") || held.includes("0")) return true;
  }
  return false;
}

Deno.test({
  name:
    "3 replicating brokers: gregorctl partition reassign moves a partition to another pair, cluster rebalance-leaders hands leaders back at once",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gregormq-admin-" });
    const ports = [0, 1, 2].map(() => ({ client: freePort(), cluster: freePort() }));
    const seeds = [`127.0.0.1:${ports[0]!.cluster}`];
    // Balancing off: only the command moves leaders back.
    const extra = ["--cluster-bootstrap-expect", "3", "--cluster-leader-balance-interval-ms", "0"];
    const start = (i: number) =>
      startClusterNode(`${root}/n${i}`, ports[i]!, i === 0 ? [] : seeds, extra);
    const procs: ClusterProc[] = await Promise.all([0, 1, 2].map(start));
    const clients: Client[] = [];
    try {
      for (const p of procs) clients.push(await connectTo(p));
      const controller = await clusterFormed(procs, clients);
      const at = (id: string) => procs.findIndex((p) => p.nodeId === id);

      // --- partition reassign ---------------------------------------------------------------
      await createTopicRetrying(clients[0]!, MOVED, { configs: { "replication.factor": "2" } });
      const producer = clients[0]!.producer({ acks: "quorum", lingerMs: 2 });
      // Each message at the offset its acknowledgement gave it.
      const sent: string[] = [];
      await Promise.all(
        Array.from(
          { length: MESSAGES },
          (_, i) =>
            producer.send(MOVED, { value: `m${i}`, partition: 0 }).then((o) => sent[o] = `m${i}`),
        ),
      );
      assert.equal(Object.keys(sent).length, MESSAGES);
      const before = (await clients[controller]!.admin.describeTopic(MOVED)).partitions[0]!
        .replicas.map((r) => r.id);
      assert.equal(before.length, 2);
      const outsider = procs.find((p) => !before.includes(p.nodeId))!.nodeId;
      // The node left out is the preferred leader (most likely the leader): the move hands on
      // leadership too. The outsider becomes the new preferred leader.
      const target = [outsider, before[1]!];
      const left = before[0]!;

      // gregorctl asks a node that is not the controller: it forwards the requests there.
      const port = procs[(controller + 1) % procs.length]!.clientPort;
      const refused = async (args: string[], said: RegExp) => {
        const r = await gregorctl(port, ["partition", "reassign", ...args]);
        assert.equal(r.code, 1, `gregorctl ${args.join(" ")}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, said);
      };
      await refused(
        [MOVED, "0", "--replicas", `${outsider},no-such-node`],
        /^error: INVALID_REQUEST: Cannot reassign moved\/0: no-such-node is not a live node of the cluster \(alive: /,
      );
      await refused(
        [MOVED, "0", "--replicas", `${outsider},${outsider}`],
        /^error: INVALID_REQUEST: Cannot reassign moved\/0: a node is named twice/,
      );
      await refused(
        [MOVED, "0", "--replicas", ""],
        /^error: INVALID_REQUEST: Cannot reassign moved\/0: no replicas given/,
      );
      await refused(
        ["nope", "0", "--replicas", outsider],
        /^error: UNKNOWN_TOPIC: Topic nope does not exist/,
      );
      await refused(
        [MOVED, "7", "--replicas", outsider],
        /^error: UNKNOWN_PARTITION: Topic moved has no partition 7 \(it has 1\)/,
      );

      // While gregorctl waits for the move, the partition shows as moving to its new replicas.
      const movedAt = Date.now();
      const waiting = gregorctl(port, [
        "partition",
        "reassign",
        MOVED,
        "0",
        "--replicas",
        target.join(","),
        "--wait",
        "--timeout",
        String(MOVE_MS_MAX),
      ]);
      let exited = false;
      void waiting.finally(() => exited = true);
      let seenMoving = false;
      while (!exited && Date.now() - movedAt < MOVE_MS_MAX) {
        const p = (await clients[controller]!.admin.describeTopic(MOVED)).partitions[0]!;
        if (p.moving === 1) {
          seenMoving = true;
          assert.deepEqual(p.replicas.map((r) => r.id), target);
        }
        await sleep(MOVE_POLL_MS);
      }
      const r = await waiting;
      const moveMs = Date.now() - movedAt;
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(`^moved moved/0 to ${target.join(",")} \\(\\d+\\.\\d s\\)$`, "m"),
      );
      assert.ok(seenMoving, "describe showed the partition moving");
      const described = JSON.parse(
        (await gregorctl(port, ["topic", "describe", MOVED, "--json"])).stdout,
      );
      assert.deepEqual(described.partitions[0].replicas.map((x: { id: string }) => x.id), target);
      assert.equal(described.partitions[0].moving, 0);

      // Every acknowledged message, in order, from each new replica.
      for (const id of target) {
        const values = await retry(
          `${id} serves ${MOVED}/0`,
          () => readBack(clients[at(id)]!, MOVED),
        );
        assert.deepEqual(values, sent, `node ${id} serves every message in order`);
      }
      // The node left out deletes its copy once the move is done.
      await retry(`${left} deletes its copy`, async () => {
        if (await holdsOnDisk(`${root}/n${at(left)}`, MOVED)) throw new Error("still on disk");
      });
      assert.ok(await holdsOnDisk(`${root}/n${at(outsider)}`, MOVED));

      // --- cluster rebalance-leaders --------------------------------------------------------
      await createTopicRetrying(clients[0]!, SPREAD, {
        partitions: 3,
        configs: { "replication.factor": "3" },
      });
      const leaders = async () =>
        (await clients[controller]!.admin.metadata([SPREAD])).topics[0]!.partitions.map((p) => ({
          leader: p.leader,
          preferred: p.replicas[0]?.id ?? "",
        }));
      await retry("every partition is led by its preferred replica", async () => {
        const ls = await leaders();
        if (ls.some((l) => l.leader !== l.preferred)) throw new Error(JSON.stringify(ls));
      });
      // A node other than the controller that is some partition's preferred leader dies.
      const placed = await leaders();
      const victim = procs.findIndex((p, i) =>
        i !== controller && placed.some((l) => l.preferred === p.nodeId)
      );
      assert.ok(victim >= 0, `no node to kill: ${JSON.stringify(placed)}`);
      clients[victim]!.close();
      await killAll([procs[victim]!]);
      await retry("the survivors lead every partition", async () => {
        const ls = await leaders();
        if (ls.some((l) => l.leader === "" || l.leader === procs[victim]!.nodeId)) {
          throw new Error(JSON.stringify(ls));
        }
      });
      procs[victim] = await start(victim);
      clients[victim] = await connectTo(procs[victim]!);
      // Without the command nothing moves back (balancing is off); the command may find the node
      // still catching up ("waiting"), so it is run again until it hands every leadership back.
      const askedAt = Date.now();
      const said: string[] = [];
      let balanced = false;
      while (!balanced && Date.now() - askedAt < REBALANCED_MS_MAX) {
        const last = await gregorctl(procs[controller]!.clientPort, [
          "cluster",
          "rebalance-leaders",
        ]);
        said.push(last.stdout.trim().replaceAll("\n", " / "));
        assert.equal(last.code, 0, last.stderr);
        assert.match(last.stdout, /^\d+ leaderships? handed to the preferred replica$/m);
        for (let i = 0; i < 10 && !balanced; i++) {
          balanced = (await leaders()).every((l) => l.leader === l.preferred);
          if (!balanced) await sleep(100);
        }
      }
      const rebalanceMs = Date.now() - askedAt;
      console.log(
        `reassign to ${target.join(",")}: done ${moveMs} ms after gregorctl started; ` +
          `leaders back on their preferred replicas ${rebalanceMs} ms after the first ` +
          `rebalance-leaders, which said: ${said.join(" | ")}`,
      );
      assert.ok(balanced, `leaders not back: ${JSON.stringify(await leaders())}`);
    } finally {
      for (const c of clients) c.close();
      await killAll(procs);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
