// How fast gossip membership converges, in rounds, on a calm simulated network: from a cold start
// of N nodes that each know only node-0's address, for a fresh node (given only that address) to
// be known alive by all N, and for a crashed node to be marked dead by all. Spreading news is
// reported against log2 N, the epidemic's yardstick (STYLE.md rule 7); dead detection against
// phiDead · ln 10, the rounds phi-accrual needs at one heartbeat per round. Then the traffic a
// 15-node cluster costs per node per second.
// `deno run -A bench/gossip_convergence.ts [--seeds K] [--json FILE]`

import { parseArgs } from "node:util";
import { calmDisk } from "../sim/disk.ts";
import {
  convergeRoundsMax,
  GossipCluster,
  type GossipClusterOptions,
} from "../sim/gossip_scenario.ts";
import { calmNet } from "../sim/net.ts";
import { Simulation } from "../sim/simulation.ts";

const USAGE = `usage: deno run -A bench/gossip_convergence.ts [options]
  --seeds K      seeds per cluster size (default 10)
  --json FILE    also write the results as JSON to FILE
  -h, --help     this text`;

const SIZES = [3, 5, 7, 10, 15] as const;
const INTERVAL_MS = 200;
/** A step that has not converged by then has failed, ms of virtual time. */
const BUDGET_MS = 120_000;
/** Virtual time over which traffic is measured once a cluster agreed, ms. */
const TRAFFIC_MS = 60_000;
/** Cluster size whose traffic is reported. */
const TRAFFIC_NODES = 15;
/** Virtual time a cluster runs before a node is crashed, so failure detectors have history, ms. */
const WARM_MS = 10_000;
/** Rounds of silence after which phi reaches the default phiDead (12) at one arrival per round. */
const PHI_DEAD_ROUNDS = 12 * Math.LN10;

interface Sample {
  coldRounds: number;
  joinRounds: number;
  deadRounds: number;
}

interface Traffic {
  bytesSentPerNodePerSec: number;
  bytesReceivedPerNodePerSec: number;
  exchangesPerNodePerSec: number;
  failedExchanges: number;
}

function newCluster(seed: number): GossipCluster {
  const sim = new Simulation(seed, { net: calmNet(), disk: calmDisk() });
  const opts: GossipClusterOptions = { intervalMs: INTERVAL_MS };
  return new GossipCluster(sim, opts);
}

/** Cold start of `n` nodes, then one fresh node joins, then one crashes; in rounds. */
async function measure(
  n: number,
  seed: number,
  opts: { traffic: boolean },
): Promise<Sample & { cluster: GossipCluster; traffic: Traffic | null }> {
  const cluster = newCluster(seed);
  for (let i = 0; i < n; i++) cluster.add(`node-${i}`);
  const coldRounds = await cluster.runUntil(() => cluster.gaps(true).length === 0, BUDGET_MS);
  if (coldRounds === null) {
    throw new Error(`n=${n} seed=${seed}: no agreement after a cold start: ${cluster.gaps(true)}`);
  }
  const fresh = `node-${n}`;
  cluster.add(fresh);
  const joinRounds = await cluster.runUntil(() => cluster.knownToAll(fresh), BUDGET_MS);
  if (joinRounds === null) throw new Error(`n=${n} seed=${seed}: ${fresh} never known to all`);
  // A healthy cluster's traffic, measured while the failure detectors gather history.
  const traffic = opts.traffic ? await measureTraffic(cluster) : null;
  await cluster.runUntil(() => false, WARM_MS);
  const victim = cluster.node("node-1");
  cluster.keepDown(victim.name);
  const deadRounds = await cluster.runUntil(() => cluster.markedDeadByAll(victim.id!), BUDGET_MS);
  if (deadRounds === null) throw new Error(`n=${n} seed=${seed}: node-1 never marked dead`);
  if (cluster.violations.length > 0) {
    throw new Error(`n=${n} seed=${seed}: ${cluster.violations.join("; ")}`);
  }
  return { coldRounds, joinRounds, deadRounds, cluster, traffic };
}

async function measureTraffic(cluster: GossipCluster): Promise<Traffic> {
  const live = cluster.live();
  const sum = (k: "bytesSent" | "bytesReceived" | "exchanges" | "failedExchanges") =>
    live.reduce((s, n) => s + n.gossip!.stats[k], 0);
  const before = {
    sent: sum("bytesSent"),
    received: sum("bytesReceived"),
    exchanges: sum("exchanges"),
    failed: sum("failedExchanges"),
  };
  await cluster.runUntil(() => false, TRAFFIC_MS);
  const perNodeSec = (x: number) => x / live.length / (TRAFFIC_MS / 1000);
  return {
    bytesSentPerNodePerSec: perNodeSec(sum("bytesSent") - before.sent),
    bytesReceivedPerNodePerSec: perNodeSec(sum("bytesReceived") - before.received),
    exchangesPerNodePerSec: perNodeSec(sum("exchanges") - before.exchanges),
    failedExchanges: sum("failedExchanges") - before.failed,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        seeds: { type: "string", default: "10" },
        json: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const seeds = Number(values.seeds);
  if (!Number.isInteger(seeds) || seeds < 1) {
    console.error(`--seeds must be a whole number >= 1, got ${values.seeds}\n${USAGE}`);
    return 2;
  }
  const rows = [];
  let trafficRow: Traffic | null = null;
  const t0 = performance.now();
  let virtualMs = 0;
  for (const n of SIZES) {
    const samples: Sample[] = [];
    for (let seed = 1; seed <= seeds; seed++) {
      const { cluster, traffic, ...s } = await measure(n, seed, {
        traffic: n === TRAFFIC_NODES && seed === 1,
      });
      samples.push(s);
      trafficRow ??= traffic;
      virtualMs += cluster.sim.world.now;
    }
    const cold = samples.map((s) => s.coldRounds);
    const join = samples.map((s) => s.joinRounds);
    const dead = samples.map((s) => s.deadRounds);
    rows.push({
      n,
      log2n: Math.log2(n),
      coldMedian: median(cold),
      coldMax: Math.max(...cold),
      joinMedian: median(join),
      joinMax: Math.max(...join),
      deadMedian: median(dead),
      deadMax: Math.max(...dead),
      bound: convergeRoundsMax(n),
    });
  }
  const realMs = performance.now() - t0;
  const f = (x: number, w = 7) => x.toFixed(1).padStart(w);
  console.log(
    `gossip on a calm simulated network, interval ${INTERVAL_MS} ms, ${seeds} seeds per size; ` +
      "in rounds (virtual time / interval)",
  );
  console.log(
    "     N log2 N |  cold start: med    max max/log2N |  fresh join: med    max max/log2N" +
      " | bound | crashed node dead: med    max max/(12 ln 10)",
  );
  for (const r of rows) {
    console.log(
      `${String(r.n).padStart(6)}${f(r.log2n)} |${f(r.coldMedian, 17)}${f(r.coldMax)}${
        f(r.coldMax / r.log2n, 10)
      } |${f(r.joinMedian, 17)}${f(r.joinMax)}${f(r.joinMax / r.log2n, 10)} |${f(r.bound, 6)} |${
        f(r.deadMedian, 24)
      }${f(r.deadMax)}${f(r.deadMax / PHI_DEAD_ROUNDS, 16)}`,
    );
  }
  console.log(
    "cold start: all N start at once, until every view lists all N alive; fresh join: until a",
  );
  console.log(
    "node given only node-0's address is alive in all N views; bound: convergeRoundsMax(N);",
  );
  console.log(
    `dead: node-1 loses power after ${WARM_MS / 1000} s of calm, until every view has it dead`,
  );
  if (trafficRow !== null) {
    const t = trafficRow;
    console.log(
      `traffic at ${TRAFFIC_NODES} nodes, per node per second over ${TRAFFIC_MS / 1000} s: ` +
        `${t.bytesSentPerNodePerSec.toFixed(0)} bytes sent, ${
          t.bytesReceivedPerNodePerSec.toFixed(0)
        } received, ` +
        `${t.exchangesPerNodePerSec.toFixed(2)} exchanges started (${
          (t.bytesSentPerNodePerSec / Math.max(t.exchangesPerNodePerSec, 1e-9)).toFixed(0)
        } bytes sent per exchange), ${t.failedExchanges} failed`,
    );
  }
  console.log(
    `simulated ${(virtualMs / 1000).toFixed(0)} s in ${(realMs / 1000).toFixed(1)} s real (${
      (virtualMs / realMs).toFixed(0)
    }x real time)`,
  );
  if (values.json !== undefined) {
    await Deno.writeTextFile(
      values.json,
      JSON.stringify({ intervalMs: INTERVAL_MS, seeds, rows, traffic: trafficRow }, null, 2),
    );
  }
  return 0;
}

Deno.exit(await main());
