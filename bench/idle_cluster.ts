// What an idle cluster costs: three real broker processes holding a replicated topic of many
// partitions (every partition a Raft group on every node), no client traffic. Each node's CPU
// time (user + system, from /proc) is read over a quiet window; every run is printed.
//
//   deno task bench:idle [--partitions N] [--window-s S] [--runs R]

import {
  cleanUp,
  clusterFormed,
  connectTo,
  createTopicRetrying,
  sleep,
  startCluster,
} from "../tests/_broker_process.ts";
import type { Client } from "../src/client/mod.ts";

/** Clock ticks per second of /proc's utime and stime (USER_HZ, 100 on Linux). */
const USER_HZ = 100;
/** Time the cluster gets after the topic exists, before the window opens, ms. */
const SETTLE_MS = 5_000;

function arg(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  const n = i < 0 ? fallback : Number(Deno.args[i + 1]);
  if (!Number.isFinite(n) || n <= 0) {
    console.error("usage: deno task bench:idle [--partitions N] [--window-s S] [--runs R]");
    Deno.exit(2);
  }
  return n;
}

/** CPU seconds a process has used so far (user + system). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
}

const partitions = arg("partitions", 64);
const windowS = arg("window-s", 20);
const runs = arg("runs", 3);
const root = await Deno.makeTempDir({ prefix: "gregormq-idle-" });
const { procs } = await startCluster(root);
const clients: Client[] = [];
try {
  for (const p of procs) clients.push(await connectTo(p));
  await clusterFormed(procs, clients);
  await createTopicRetrying(clients[0]!, "idle", {
    partitions,
    configs: { "replication.factor": "3" },
  });
  await sleep(SETTLE_MS);
  console.log(
    `idle 3-node cluster, ${partitions} partitions at RF 3 (${partitions + 1} Raft groups a ` +
      `node); load average ${Deno.loadavg()[0]!.toFixed(1)}`,
  );
  const percents: number[] = [];
  for (let run = 1; run <= runs; run++) {
    const before = await Promise.all(procs.map((p) => cpuSeconds(p.child.pid)));
    await sleep(windowS * 1000);
    const after = await Promise.all(procs.map((p) => cpuSeconds(p.child.pid)));
    const per = after.map((a, i) => (100 * (a - before[i]!)) / windowS);
    const total = per.reduce((a, b) => a + b, 0);
    percents.push(total);
    console.log(
      `run ${run}: ${windowS} s idle, CPU per node ${
        per.map((p) => `${p.toFixed(1)} %`).join(", ")
      }` +
        `; all three ${total.toFixed(1)} % of one core`,
    );
  }
  percents.sort((a, b) => a - b);
  console.log(`median ${percents[Math.floor(percents.length / 2)]!.toFixed(1)} % of one core`);
} finally {
  await cleanUp(root, procs, clients);
}
