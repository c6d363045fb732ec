// A cluster that admits only its own nodes, over real processes and sockets: three brokers hold
// the cluster secret (one from a file named by --cluster-secret-file, one from
// GREGOR_CLUSTER_SECRET, one from cluster.secret in its data directory); rogue processes given the
// same seeds, one with another secret, one with none, one with a copy of a real node's node-id
// file, are refused with a log line on both sides and never appear in `gregorctl cluster members`,
// while the real cluster keeps replicating.

import assert from "node:assert/strict";
import { type Client, connect } from "../src/client/mod.ts";
import { GregorError } from "../src/protocol/errors.ts";
import {
  type BrokerProcess,
  connectTo,
  freePort,
  killAll,
  retry,
  sleep,
  spawnBroker,
} from "./_broker_process.ts";

const GREGORCTL = new URL("../cli/gregorctl.ts", import.meta.url).pathname;
const SECRET = "e6Yq1p0hS3m9vJ2x0dQ7cA8rB5nT4kLw";
/** Gossip rounds (200 ms) the rogues get to try to join: plenty, as a join takes about 4. */
const ROGUE_MS = 4_000;

interface Proc extends BrokerProcess {
  name: string;
  clientPort: number;
  clusterPort: number;
  /** Every log line seen, in order (BrokerProcess.lines keeps only the last few). */
  all: string[];
}

async function start(
  name: string,
  dataDir: string,
  seeds: string[],
  opts: { args?: string[]; env?: Record<string, string> } = {},
): Promise<Proc> {
  const clientPort = freePort();
  const clusterPort = freePort();
  const args = [
    "--port",
    String(clientPort),
    "--data-dir",
    dataDir,
    "--cluster-port",
    String(clusterPort),
    "--no-metrics-enabled",
    ...(seeds.length > 0 ? ["--seeds", seeds.join(",")] : []),
    ...(opts.args ?? []),
  ];
  const all: string[] = [];
  const p = await spawnBroker(args, {
    ...(opts.env === undefined ? {} : { env: opts.env }),
    onLine: (line) => all.push(line),
  });
  const proc: Proc = { ...p, name, clientPort, clusterPort, all };
  all.unshift(...p.lines);
  return proc;
}

/** The ids, hosts and states `gregorctl cluster members` shows on `p`. */
async function members(p: Proc): Promise<{ id: string; clusterPort: number; state: string }[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      GREGORCTL,
      "--broker",
      `127.0.0.1:${p.clientPort}`,
      "--json",
      "cluster",
      "members",
    ],
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(
    out.code,
    0,
    `gregorctl cluster members: ${text}${new TextDecoder().decode(out.stderr)}`,
  );
  return (JSON.parse(text).members as { id: string; clusterPort: number; state: string }[]).map(
    (m) => ({ id: m.id, clusterPort: m.clusterPort, state: m.state }),
  );
}

/** Waits until `p` logged a line matching `re`; fails with its log if it does not within 15 s. */
async function logged(p: Proc, re: RegExp): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const line = p.all.find((l) => re.test(l));
    if (line !== undefined) return line;
    if (Date.now() > deadline) {
      throw new Error(`${p.name} never logged ${re}; its log:\n${p.all.join("\n")}`);
    }
    await sleep(50);
  }
}

Deno.test({
  name:
    "cluster secret: 3 brokers admit each other, and rogues with another secret, none, or a copied node id are refused and never members",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gregormq-clusterauth-" });
    const procs: Proc[] = [];
    const clients: Client[] = [];
    try {
      const secretFile = `${root}/secret`;
      await Deno.writeTextFile(secretFile, `${SECRET}\n`, { mode: 0o600 });
      await Deno.mkdir(`${root}/n2`, { recursive: true });
      await Deno.writeTextFile(`${root}/n2/cluster.secret`, `${SECRET}\n`, { mode: 0o600 });
      const n0 = await start("n0", `${root}/n0`, [], {
        args: ["--cluster-secret-file", secretFile],
      });
      const seeds = [`127.0.0.1:${n0.clusterPort}`];
      procs.push(n0);
      procs.push(
        await start("n1", `${root}/n1`, seeds, { env: { GREGOR_CLUSTER_SECRET: SECRET } }),
      );
      procs.push(await start("n2", `${root}/n2`, seeds));
      const real = procs.slice();
      const ids = real.map((p) => p.listen.nodeId!).sort();
      for (const p of real) {
        await retry(`${p.name} sees the three nodes alive`, async () => {
          const m = await members(p);
          const alive = m.filter((x) => x.state === "alive").map((x) => x.id).sort();
          assert.deepEqual(alive, ids);
        });
      }

      // The rogues: the seeds, and another secret, none, or n1's node-id without the secret.
      await Deno.mkdir(`${root}/copy`, { recursive: true });
      await Deno.copyFile(`${root}/n1/node-id`, `${root}/copy/node-id`);
      const other = await start("rogue-other", `${root}/other`, seeds, {
        env: { GREGOR_CLUSTER_SECRET: "not the cluster's secret, but long" },
      });
      const none = await start("rogue-none", `${root}/none`, seeds);
      const copy = await start("rogue-copy", `${root}/copy`, seeds);
      procs.push(other, none, copy);
      assert.equal(copy.listen.nodeId, real[1]!.listen.nodeId, "the copy runs under n1's id");

      // Each side says why, in one line.
      await logged(
        other,
        /"level":"error".*Cluster peer at 127\.0\.0\.1:\d+ refused: node \w+ refused this node's proof: the cluster secrets differ/,
      );
      for (const p of [none, copy]) {
        await logged(
          p,
          /"level":"error".*refused GOSSIP_SYN: Cluster authentication failed.*this node does not run with the cluster's secret/,
        );
      }
      await logged(
        n0,
        /"level":"warn".*Cluster connection from 127\.0\.0\.1:\d+ \(claiming node \w+\) refused: its proof as node \w+ does not verify/,
      );
      await logged(
        n0,
        /"level":"warn".*Cluster connection from 127\.0\.0\.1:\d+ refused: it sent GOSSIP_SYN without authenticating first/,
      );

      // For many gossip rounds, every real node lists exactly the three, n1 at its own port.
      const until = Date.now() + ROGUE_MS;
      while (Date.now() < until) {
        for (const p of real) {
          const m = await members(p);
          assert.deepEqual(m.map((x) => x.id).sort(), ids, `${p.name}: ${JSON.stringify(m)}`);
          const n1 = m.find((x) => x.id === real[1]!.listen.nodeId)!;
          assert.equal(n1.clusterPort, real[1]!.clusterPort, `${p.name} sees n1 moved`);
          assert.ok(m.every((x) => x.state === "alive"), `${p.name}: ${JSON.stringify(m)}`);
        }
        await sleep(250);
      }
      // The rogues learned nothing of the cluster.
      for (const p of [other, none, copy]) {
        assert.deepEqual((await members(p)).map((x) => x.clusterPort), [p.clusterPort], p.name);
      }

      // The copied id changed nothing: the cluster replicates through n1 as before.
      for (const p of real) clients.push(await connectTo({ ...p, nodeId: p.listen.nodeId! }));
      await retry("a replicated topic is created", () =>
        clients[0]!.admin.createTopic("orders", {
          partitions: 1,
          configs: { "replication.factor": "3" },
        }));
      await retry("n1 takes a produce", () => clients[1]!.publish("orders", { value: "one" }));
      const got = await retry("n2 serves it", async () => {
        const m = await clients[2]!.admin.describeTopic("orders");
        if (m.partitions[0]!.highWatermark < 1) throw new Error("not yet");
        return m.partitions[0]!.highWatermark;
      });
      assert.equal(got, 1);
    } finally {
      for (const c of clients) c.close();
      await killAll(procs);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});

/** Runs gregorctl with `env` (beside this process's); fails with its output unless it exits 0. */
async function gregorctl(args: string[], env: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", GREGORCTL, ...args],
    env,
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `gregorctl ${args.join(" ")}: ${text}`);
  return text;
}

/** The error code `fn` failed with, or "ok". */
async function outcome(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
    return "ok";
  } catch (err) {
    if (err instanceof GregorError) return err.codeName;
    throw err;
  }
}

Deno.test({
  name:
    "auth scram in a cluster: a user added on node 1 logs in on node 3, and an ACL added on node 2 allows and denies on every node",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const root = await Deno.makeTempDir({ prefix: "gregormq-clusterauth-" });
    const procs: Proc[] = [];
    const clients: Client[] = [];
    const admin = { GREGOR_USER: "admin", GREGOR_PASSWORD: "admin-pw-1" };
    try {
      // The first super-user is made offline on each node, as on a single node.
      for (const n of ["n0", "n1", "n2"]) {
        await gregorctl(["user", "add", "admin", "--data-dir", `${root}/${n}`], {
          GREGOR_NEW_PASSWORD: admin.GREGOR_PASSWORD,
        });
      }
      const flags = ["--auth", "scram", "--super-users", "admin"];
      const env = { GREGOR_CLUSTER_SECRET: SECRET };
      const n0 = await start("n0", `${root}/n0`, [], { args: flags, env });
      const seeds = [`127.0.0.1:${n0.clusterPort}`];
      procs.push(n0);
      procs.push(await start("n1", `${root}/n1`, seeds, { args: flags, env }));
      procs.push(await start("n2", `${root}/n2`, seeds, { args: flags, env }));
      const login = (p: Proc, user: string, password: string) =>
        connect({
          port: p.clientPort,
          username: user,
          password,
          connectTimeoutMs: 10_000,
          requestTimeoutMs: 10_000,
        });
      const root0 = await login(n0, "admin", admin.GREGOR_PASSWORD);
      clients.push(root0);
      await retry("the cluster forms", async () => {
        const m = await root0.admin.metadata([]);
        if (m.nodes.length < 3 || m.controller === "") throw new Error(`${m.nodes.length} nodes`);
      });
      for (const t of ["orders", "payroll"]) {
        await retry(
          `topic ${t} is created`,
          () =>
            root0.admin.createTopic(t, { partitions: 1, configs: { "replication.factor": "3" } }),
        );
      }

      // A user added through node 1 (n0) logs in on node 3 (n2).
      await gregorctl(["--broker", `127.0.0.1:${n0.clientPort}`, "user", "add", "alice"], {
        ...admin,
        GREGOR_NEW_PASSWORD: "alice-pw-1",
      });
      const alice = await retry(
        "alice logs in on n2",
        () => login(procs[2]!, "alice", "alice-pw-1"),
      );
      clients.push(alice);

      // An ACL added through node 2 (n1) lets alice produce to orders on every node, and nothing
      // lets her produce to payroll.
      await gregorctl([
        "--broker",
        `127.0.0.1:${procs[1]!.clientPort}`,
        "acl",
        "add",
        "--principal",
        "alice",
        "--topic",
        "orders",
        "--operation",
        "produce,describe",
      ], admin);
      for (const p of procs) {
        const c = await login(p, "alice", "alice-pw-1");
        clients.push(c);
        await retry(`alice may produce to orders on ${p.name}`, async () => {
          assert.equal(await outcome(() => c.publish("orders", { value: p.name })), "ok");
        });
        assert.equal(
          await outcome(() => c.publish("payroll", { value: p.name })),
          "AUTHORIZATION_FAILED",
          p.name,
        );
        // Not a super-user: refused where she is connected, whichever node leads the metadata.
        assert.equal(
          await outcome(() =>
            c.admin.addAcl({
              principal: "alice",
              resourceType: "topic",
              pattern: "literal",
              name: "payroll",
              operation: "produce",
            })
          ),
          "AUTHORIZATION_FAILED",
          p.name,
        );
      }
      await retry("the three produces are in orders", async () => {
        const hw = (await root0.admin.describeTopic("orders")).partitions[0]!.highWatermark;
        assert.equal(hw, 3);
      });

      // Removed through node 3, alice can no longer log in on node 1.
      await gregorctl(
        ["--broker", `127.0.0.1:${procs[2]!.clientPort}`, "user", "remove", "alice"],
        admin,
      );
      await retry("alice is refused on n0", async () => {
        assert.equal(
          await outcome(() => login(n0, "alice", "alice-pw-1").then((c) => c.close())),
          "AUTHENTICATION_FAILED",
        );
      });
    } finally {
      for (const c of clients) c.close();
      await killAll(procs);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    }
  },
});
