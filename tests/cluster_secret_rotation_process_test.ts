// Changing the cluster secret without stopping the cluster, on three real broker processes: each
// node in turn is stopped (SIGTERM) and started with the new secret and the old one as
// GREGOR_CLUSTER_SECRET_PREVIOUS, then each in turn again with the new secret alone. After every
// restart the node rejoins (it sees both others alive, and its replica catches up), quorum produces
// keep being acknowledged throughout, and at the end every acknowledged message is there once and
// a process holding only the old secret is refused.

import assert from "node:assert/strict";
import { type Client, connect } from "../src/client/mod.ts";
import { Start, type SubscribeResponse } from "../src/protocol/messages.ts";
import {
  clusterFormed,
  type ClusterProc,
  freePort,
  killAll,
  readAll,
  retry,
  sleep,
  startCluster,
  startClusterNode,
} from "./_broker_process.ts";

const OLD = "old-secret-0123456789abcdef";
const NEW = "new-secret-fedcba9876543210";
const TOPIC = "rotation";
/** Pause between two produces of the steady producer, ms. */
const PRODUCE_EVERY_MS = 10;
/** Messages the producer sends at most (it stops earlier, once the rotation is over). */
const MESSAGES_MAX = 20_000;
/**
 * Longest time without an acknowledged produce while the nodes restart, ms: a stopped leader's
 * partition elects another within a few seconds, and the slowest machines get room beside it.
 */
const ACK_GAP_MS_MAX = 15_000;
/** A broker refuses a bad configuration well within this, ms. */
const START_REFUSAL_MS_MAX = 20_000;

interface Node extends ClusterProc {
  /** Every log line since it started. */
  all: string[];
}

async function start(
  dataDir: string,
  ports: { client: number; cluster: number },
  seeds: string[],
  env: Record<string, string>,
): Promise<Node> {
  const all: string[] = [];
  const p = await startClusterNode(dataDir, ports, seeds, [], {
    env,
    onLine: (line) => all.push(line),
  });
  all.unshift(...p.lines);
  return { ...p, all };
}

Deno.test({
  name:
    "cluster secret rotation: a rolling restart to the new secret (with the old one as previous, then alone) keeps quorum produces acknowledged throughout",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gregormq-rotation-" });
    const procs: Node[] = [];
    const clients: Client[] = [];
    let producing = false;
    let producer: Promise<void> = Promise.resolve();
    try {
      // On fresh ports, again if a parallel test took one first.
      const oldOnly = { GREGOR_CLUSTER_SECRET: OLD };
      const logs: string[][] = [];
      const formed = await startCluster(root, [], (i) => {
        const all: string[] = logs[i] = [];
        return { env: oldOnly, onLine: (line) => all.push(line) };
      });
      formed.procs.forEach((p, i) => {
        logs[i]!.unshift(...p.lines);
        procs.push({ ...p, all: logs[i]! });
      });
      const ports = formed.ports;
      const seedsFor = (i: number) =>
        ports.filter((_, j) => j !== i).map((p) => `127.0.0.1:${p.cluster}`);
      const servers = ports.map((p) => `127.0.0.1:${p.client}`);
      const admin = await connect({ servers, connectTimeoutMs: 20_000 });
      clients.push(admin);
      const perNode: Client[] = [];
      for (const p of procs) perNode.push(await connect({ port: p.clientPort }));
      await clusterFormed(procs, perNode);
      for (const c of perNode) c.close();
      await retry("the topic is created", () =>
        admin.admin.createTopic(TOPIC, {
          partitions: 1,
          configs: { "replication.factor": "3" },
        }).catch((err) => {
          if (/exists/i.test((err as Error).message)) return;
          throw err;
        }));

      // The steady producer: one quorum produce at a time, through whichever node answers.
      const client = await connect({ servers, connectTimeoutMs: 20_000, requestTimeoutMs: 30_000 });
      clients.push(client);
      const send = client.producer({ acks: "quorum", idempotent: true, lingerMs: 0 });
      const acked: { value: string; at: number }[] = [];
      const failures: string[] = [];
      let longestGapMs = 0;
      producing = true;
      producer = (async () => {
        let last = Date.now();
        for (let i = 0; producing && i < MESSAGES_MAX; i++) {
          try {
            await send.send(TOPIC, { value: `m${i}` });
            const now = Date.now();
            longestGapMs = Math.max(longestGapMs, now - last);
            last = now;
            acked.push({ value: `m${i}`, at: now });
          } catch (err) {
            if (failures.length < 10) failures.push(`m${i}: ${(err as Error).message}`);
          }
          await sleep(PRODUCE_EVERY_MS);
        }
      })();
      await retry(
        "the first produce is acknowledged",
        () => acked.length > 0 ? Promise.resolve() : Promise.reject(new Error("none yet")),
      );

      const ids = procs.map((p) => p.nodeId).sort();
      const phases: Record<string, string>[] = [
        { GREGOR_CLUSTER_SECRET: NEW, GREGOR_CLUSTER_SECRET_PREVIOUS: OLD },
        { GREGOR_CLUSTER_SECRET: NEW },
      ];
      let subscriptionId = 1_000_000;
      for (const [phase, env] of phases.entries()) {
        for (let i = 0; i < 3; i++) {
          procs[i]!.child.kill("SIGTERM");
          await procs[i]!.child.status;
          procs[i] = await start(`${root}/n${i}`, ports[i]!, seedsFor(i), env);
          const own = await connect({ port: ports[i]!.client, connectTimeoutMs: 20_000 });
          try {
            const what = `phase ${phase + 1}: n${i} rejoins`;
            await retry(`${what}, seeing both others alive`, async () => {
              const m = await own.admin.clusterMembers();
              const alive = m.members.filter((x) => x.state === "alive").map((x) => x.id).sort();
              assert.deepEqual(alive, ids);
            });
            // Its replica catches up with messages acknowledged after it rejoined: a node serves
            // a subscription only with a replica the leader brought up to date (otherwise it
            // says NOT_LEADER), so the nodes reached each other across the handshake.
            const target = acked.length + 1;
            await retry(
              `${what}, a produce acknowledged after it`,
              () =>
                acked.length >= target ? Promise.resolve() : Promise.reject(new Error("none yet")),
            );
            await retry(`${what}, its replica catching up`, async () => {
              const r = await own.connection.request<SubscribeResponse>("SUBSCRIBE", {
                subscriptionId: subscriptionId++,
                topic: TOPIC,
                partition: 0,
                start: Start.earliest,
                startValue: 0,
                durableName: "",
                ackTimeoutMs: 0,
                creditMessages: 0,
                creditBytes: 0,
              });
              if (r.highWatermark < target) {
                throw new Error(`high watermark ${r.highWatermark}, ${target} acknowledged`);
              }
            });
          } finally {
            own.close();
          }
          console.log(
            `  phase ${phase + 1}, n${i} restarted: ${acked.length} acknowledged so far, ` +
              `longest gap ${longestGapMs} ms`,
          );
        }
      }
      producing = false;
      await producer;
      assert.ok(
        longestGapMs <= ACK_GAP_MS_MAX,
        `no produce was acknowledged for ${longestGapMs} ms (${failures.join("; ")})`,
      );

      // Every acknowledged message is stored once, in the order it was sent.
      const reader = await connect({ servers, connectTimeoutMs: 20_000, requestTimeoutMs: 30_000 });
      clients.push(reader);
      const stored = await readAll(reader, TOPIC);
      assert.equal(new Set(stored).size, stored.length, "no message is stored twice");
      const position = new Map(stored.map((v, offset) => [v, offset]));
      let previous = -1;
      for (const { value } of acked) {
        const offset = position.get(value);
        assert.ok(offset !== undefined, `${value} was acknowledged but is not stored`);
        assert.ok(offset > previous, `${value} is stored out of order`);
        previous = offset;
      }
      console.log(
        `  ${acked.length} acknowledged, ${stored.length} stored, ${failures.length} failed ` +
          `sends, longest gap ${longestGapMs} ms`,
      );

      // The old secret is retired: a node holding only it is refused.
      const stale = await start(
        `${root}/stale`,
        {
          client: freePort(),
          cluster: freePort(),
        },
        seedsFor(-1),
        oldOnly,
      );
      procs.push(stale);
      await retry(
        "the node with the old secret is refused",
        () =>
          stale.all.some((l) => /refused this node's proof: the cluster secrets differ/.test(l))
            ? Promise.resolve()
            : Promise.reject(new Error(`not yet:\n${stale.all.slice(-5).join("\n")}`)),
      );
      const view = (await admin.admin.clusterMembers()).members.map((m) => m.id).sort();
      assert.deepEqual(view, ids, "the node with the old secret is not a member");
    } finally {
      producing = false;
      await producer.catch(() => {});
      for (const c of clients) c.close();
      await killAll(procs);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test("a previous cluster secret without a cluster secret refuses to start in one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-rotation-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        ...["run", "-A", new URL("../cli/broker.ts", import.meta.url).pathname],
        ...["--data-dir", dir, "--port", "0", "--cluster-port", "0", "--no-metrics-enabled"],
      ],
      env: { GREGOR_CLUSTER_SECRET_PREVIOUS: OLD },
      // A broker that does start would run until killed.
      signal: AbortSignal.timeout(START_REFUSAL_MS_MAX),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr).trimEnd();
    assert.equal(out.code, 2, stderr);
    assert.equal(stderr.split("\n").length, 1, stderr);
    assert.match(
      stderr,
      /^Invalid config: a previous cluster secret \(cluster\.secretPrevious or cluster\.secretPreviousFile\) is set but no cluster secret/,
    );
    assert.doesNotMatch(stderr, new RegExp(OLD));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
