// Availability under network partitions (issue [R]): three broker nodes with the product's default
// Raft timings, and a client with the client's defaults that sends quorum-acknowledged produces to
// every partition of an RF=3 topic. No random faults: the run cuts the network on a script and
// measures, per cut, how long each partition goes without an acknowledgement and how long the
// majority goes without a leader of each Raft group. Two scripts:
//
// - "leader": the leader of partition 0 is cut off from the other brokers (both ways) while
//   clients still reach it; the others must elect and the client must stop waiting on it.
// - "flip": one node after another is alone ({n2} | {n0,n1}, then {n0} | {n1,n2}, then {n1} |
//   {n0,n2}), each for a window, with no healed moment between: each majority holds a node that
//   was cut off the window before.
// - "kill": the client's first server is killed (a process crash: its kernel resets the
//   connections) and stays down for the window. The client's next server is an address where no
//   machine answers any more (a node that moved, as in the multi-host test).
//
// The cluster scenario checks safety under random faults; this one turns availability into
// numbers a test can bound (`tests/sim_availability_test.ts`) and a seed replays.

import { SeededRandom } from "../src/io/prng.ts";
import type { Env } from "../src/io/types.ts";
import { type Client, connectWith } from "../src/client/client.ts";
import { loadClusterModules, type RunningNode, startNode } from "../src/node.ts";
import { META_GROUP } from "../src/cluster/cluster.ts";
import { brokerHooks, brokerSimulation, firstLine } from "./faults.ts";
import { untilJoined } from "./cluster_scenario.ts";
import type { Simulation } from "./simulation.ts";

/** What decides an availability run. */
export interface AvailabilityOptions {
  seed: number;
  /** Which cuts the run makes: see the file's comment. */
  script: "leader" | "flip" | "kill";
  /** How long each cut lasts, ms. */
  windowMs: number;
}

/** One cut and what it cost. */
export interface AvailabilityWindow {
  /** The cut, e.g. "{n1} cut off". */
  what: string;
  /**
   * Per partition, ms from the cut to the acknowledgement of the first produce sent after it
   * (null: none within the window).
   */
  resumedMs: (number | null)[];
  /**
   * Per Raft group of the majority side (the metadata group first, then partitions 0..), ms from
   * the cut until a node of the majority led it (null: none within the window).
   */
  leaderMs: (number | null)[];
}

/** What a run measured. */
export interface AvailabilityResult {
  seed: number;
  script: AvailabilityOptions["script"];
  windows: AvailabilityWindow[];
  /** Things that went wrong besides slowness: two acks of one offset, a node that died. */
  violations: string[];
}

const NODES = 3;
const PARTITIONS = 3;
const TOPIC = "orders";
const CLIENT_PORT = 7070;
const CLUSTER_PORT = 7946;
/** Sends a producer keeps unanswered at most (as the multi-host test's). */
const WINDOW_MESSAGES = 20;
/** Pause between one producer's sends, ms. */
const SEND_GAP_MS = 10;
/** Virtual time the cluster gets to form and every partition to acknowledge, ms. */
const FORM_MS_MAX = 30_000;
/** Steady production before the first cut, ms. */
const WARM_MS = 2_000;
/** A host in the client's servers where no machine answers. */
const GONE_HOST = "gone";
/** How often the majority's leaders are looked at, ms. */
const POLL_MS = 10;

/** Runs one availability script and returns what each cut cost. */
export async function runAvailability(opts: AvailabilityOptions): Promise<AvailabilityResult> {
  await loadClusterModules();
  const { sim } = brokerSimulation(opts.seed, "availability", "calm", 0);
  const violations: string[] = [];
  const names = Array.from({ length: NODES }, (_, i) => `n${i}`);
  const running = new Map<string, RunningNode>();
  const nodes = names.map((name, i) =>
    sim.addNode({
      name,
      main: async (env, ctl) => {
        running.delete(name);
        const node = await startNode(env, {
          host: "0.0.0.0",
          port: CLIENT_PORT,
          broker: { dataDir: "data" },
          cluster: {
            port: CLUSTER_PORT,
            advertiseHost: name,
            seeds: i === 0 ? [] : [`n0:${CLUSTER_PORT}`],
            bootstrapExpect: NODES,
            replicate: true,
          },
          hooks: brokerHooks(ctl, () => {}, (msg) => violations.push(`${name}: ${firstLine(msg)}`)),
        });
        running.set(name, node);
        await node.done;
      },
    })
  );

  const acks: { sentAt: number; ackedAt: number; offset: number }[][] = Array.from(
    { length: PARTITIONS },
    () => [],
  );
  let stopped = false;
  let formed = false;
  let finished = false;
  sim.addNode({
    name: "client",
    main: async (env) => {
      const client = await formCluster(env, names);
      formed = true;
      await Promise.all(
        acks.map((list, p) => produceLoop(env, client, p, sim, list, () => stopped, violations)),
      );
      await client.close().catch(() => {});
      finished = true;
    },
  });

  await sim.world.run({
    untilMs: FORM_MS_MAX,
    stop: () => formed && acks.every((a) => a.length > 0),
  });
  if (!acks.every((a) => a.length > 0)) {
    return { ...opts, windows: [], violations: ["the cluster did not form and produce"] };
  }
  await sim.world.run({ untilMs: sim.world.now + WARM_MS });

  const windows: AvailabilityWindow[] = [];
  const cutOff = (k: number): void => {
    sim.net.heal();
    for (const other of names) {
      if (other === names[k]) continue;
      sim.net.block(names[k]!, other);
      sim.net.block(other, names[k]!);
    }
  };
  const measure = async (what: string, alone: number): Promise<void> => {
    const at = sim.world.now;
    const majority = names.filter((_, i) => i !== alone);
    const groups = [META_GROUP, ...Array.from({ length: PARTITIONS }, (_, p) => `${TOPIC}/${p}`)];
    const leaderMs: (number | null)[] = groups.map(() => null);
    const poll = () => {
      groups.forEach((group, g) => {
        if (leaderMs[g] !== null) return;
        if (majority.some((n) => ledBy(running.get(n), group, g - 1))) {
          leaderMs[g] = sim.world.now - at;
        }
      });
      if (sim.world.now - at < opts.windowMs) sim.world.schedule(POLL_MS, poll, { tag: 42 });
    };
    poll();
    await sim.world.run({ untilMs: at + opts.windowMs });
    const resumedMs = acks.map((list) => {
      const first = list.find((a) => a.sentAt >= at);
      return first === undefined ? null : first.ackedAt - at;
    });
    windows.push({ what, resumedMs, leaderMs });
  };

  if (opts.script === "leader") {
    const leader = names.findIndex((n) => ledBy(running.get(n), `${TOPIC}/0`, 0));
    if (leader < 0) violations.push("partition 0 had no leader before the cut");
    else {
      cutOff(leader);
      await measure(`{${names[leader]}} (leader of ${TOPIC}/0) cut off`, leader);
    }
  } else if (opts.script === "kill") {
    sim.crash(nodes[0]!, "process", opts.windowMs);
    await measure(`${names[0]} killed`, 0);
  } else {
    for (const k of [2, 0, 1]) {
      cutOff(k);
      await measure(`{${names[k]}} cut off`, k);
    }
  }
  sim.net.heal();
  stopped = true;
  await sim.world.run({ untilMs: sim.world.now + 60_000, stop: () => finished });
  if (!finished) violations.push("the producers did not finish after the network healed");
  for (const e of sim.exits) {
    if (names.includes(e.node)) violations.push(`${e.node} exited: ${e.reason}`);
  }
  for (const n of nodes) if (!n.up) violations.push(`${n.name} is down`);
  return { seed: opts.seed, script: opts.script, windows, violations };
}

/** True if `node` leads `group` (the metadata group, or partition `p` of the topic). */
function ledBy(node: RunningNode | undefined, group: string, p: number): boolean {
  const c = node?.cluster;
  if (c == null) return false;
  const g = group === META_GROUP ? c.metaGroup : c.replica(TOPIC, p);
  return g?.isLeader ?? false;
}

/** Connects with the client's defaults, waits for every node, creates the topic. */
async function formCluster(env: Env, names: string[]): Promise<Client> {
  const servers = names.map((n) => `${n}:${CLIENT_PORT}`);
  servers.splice(1, 0, `${GONE_HOST}:${CLIENT_PORT}`);
  let client: Client | null = null;
  while (client === null) {
    client = await connectWith(env, {
      servers,
      clientId: "availability",
    }).catch(() => null);
    if (client === null) await env.clock.sleep(200);
  }
  await untilJoined(env, client, names.length);
  for (;;) {
    const made = await client.admin.createTopic(TOPIC, {
      partitions: PARTITIONS,
      configs: { "replication.factor": String(NODES) },
    }).then(() => true, () => false);
    if (made) return client;
    await env.clock.sleep(200);
  }
}

/** Sends to `partition` until stopped, recording each acknowledgement on the world's clock. */
async function produceLoop(
  env: Env,
  client: Client,
  partition: number,
  sim: Simulation,
  acks: { sentAt: number; ackedAt: number; offset: number }[],
  stopped: () => boolean,
  violations: string[],
): Promise<void> {
  const producer = client.producer({ acks: "quorum" });
  const pending = new Set<Promise<void>>();
  const offsets = new Set<number>();
  const jitter = new SeededRandom(partition, "availability-gaps");
  for (let seq = 0; !stopped(); seq++) {
    const sentAt = sim.world.now;
    const sent: Promise<void> = producer.send(TOPIC, { value: `${partition}-${seq}`, partition })
      .then((offset) => {
        if (offset >= 0 && offsets.has(offset)) {
          violations.push(`${TOPIC}/${partition}: offset ${offset} acknowledged twice`);
        }
        offsets.add(offset);
        acks.push({ sentAt, ackedAt: sim.world.now, offset });
      }, () => {})
      .finally(() => pending.delete(sent));
    pending.add(sent);
    if (pending.size >= WINDOW_MESSAGES) await Promise.race(pending);
    await env.clock.sleep(SEND_GAP_MS + jitter.int(0, 3));
  }
  await Promise.allSettled([...pending]);
  await producer.close().catch(() => {});
}
