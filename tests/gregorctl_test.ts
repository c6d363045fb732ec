// The operator CLI against a real broker process: every command run as a subprocess, its output
// and exit code checked the way an operator (or a script reading --json) would see them.

import assert from "node:assert/strict";

const BROKER = new URL("../cli/broker.ts", import.meta.url).pathname;
const GREGORCTL = new URL("../cli/gregorctl.ts", import.meta.url).pathname;
/** A broker that has not said it is listening by then has failed to start. */
const STARTUP_MS_MAX = 10_000;
/** How long a background gregorctl may take to reach a state the test waits for. */
const WAIT_MS_MAX = 10_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Starts a broker on a free port in a fresh data directory; resolves with its address. */
async function startBroker(
  dataDir: string,
): Promise<{ child: Deno.ChildProcess; addr: string; metrics: string; drained: Promise<void> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BROKER, "--port", "0", "--data-dir", dataDir],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let found: (line: { listen: string; metrics: string }) => void = () => {};
  const listening = new Promise<{ listen: string; metrics: string }>((r) => (found = r));
  const drained = (async () => {
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        if (line.includes('"listen"')) found(JSON.parse(line));
      }
    }
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const started = await Promise.race([
    listening,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("The broker did not start")), STARTUP_MS_MAX);
    }),
  ]).finally(() => clearTimeout(timer));
  return { child, addr: started.listen, metrics: started.metrics, drained };
}

async function gregorctl(args: string[], opts: { stdin?: string } = {}): Promise<Run> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-env", GREGORCTL, ...args],
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** gregorctl against one broker: `ctl` returns what happened, `ok` asserts exit 0 (stdout). */
function against(addr: string) {
  const ctl = (args: string[], opts?: { stdin?: string }) =>
    gregorctl(["--broker", addr, ...args], opts);
  const ok = async (args: string[], opts?: { stdin?: string }): Promise<string> => {
    const r = await ctl(args, opts);
    assert.equal(r.code, 0, `gregorctl ${args.join(" ")} failed: ${r.stderr}`);
    return r.stdout;
  };
  return { ctl, ok };
}

/** A long-running gregorctl (e.g. `consume --follow`), its stdout collected as it comes. */
function spawnGregorctl(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-read", "--allow-env", GREGORCTL, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = { stdout: "", stderr: "" };
  const drained = Promise.all([
    (async () => {
      for await (const s of child.stdout.pipeThrough(new TextDecoderStream())) out.stdout += s;
    })(),
    (async () => {
      for await (const s of child.stderr.pipeThrough(new TextDecoderStream())) out.stderr += s;
    })(),
  ]);
  return { child, out, drained };
}

/** Polls `cond` every 50 ms until it holds; fails after WAIT_MS_MAX naming `what`. */
async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + WAIT_MS_MAX;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("gregorctl drives a real broker: topics, produce, consume, cluster, errors", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregorctl_test_" });
  const broker = await startBroker(dataDir);
  const { ctl, ok } = against(broker.addr);
  try {
    await t.step("topic create, list and describe, as tables and as --json", async () => {
      assert.match(await ok(["topic", "create", "orders", "--partitions", "2"]), /created/);
      await ok(["topic", "create", "scratch", "--config", "retention.ms=60000"]);
      const table = (await ok(["topic", "list"])).split("\n");
      assert.match(table[0] ?? "", /^NAME\s+PARTITIONS$/);
      assert.match(table[1] ?? "", /^orders\s+2$/);
      assert.match(table[2] ?? "", /^scratch\s+1$/);
      assert.deepEqual(JSON.parse(await ok(["topic", "list", "--json"])), [
        { name: "orders", partitions: 2 },
        { name: "scratch", partitions: 1 },
      ]);
      const described = await ok(["topic", "describe", "scratch"]);
      assert.match(described, /^retention\.ms\s+60000$/m);
      assert.match(
        described,
        /^PARTITION\s+LOG-START\s+HIGH-WATERMARK\s+SIZE-BYTES\s+SUBSCRIBERS\s+STATE\s+LEADER\s+REPLICAS\s+ISR$/m,
      );
      // A single node leads, holds and is in sync with every partition itself.
      assert.match(described, /^0\s+0\s+0\s+0\s+0\s+ok\s+self\s+self\s+self$/m);
      const d = JSON.parse(await ok(["topic", "describe", "scratch", "--json"]));
      assert.equal(d.name, "scratch");
      assert.equal(d.configs["retention.ms"], "60000");
      assert.equal(d.partitions.length, 1);
      assert.equal(d.partitions[0].leader, "");
      assert.deepEqual(d.partitions[0].replicas, [{ id: "" }]);
      assert.deepEqual(d.partitions[0].isr, [{ id: "" }]);
    });

    await t.step("topic alter changes retention and refuses a fixed config", async () => {
      await ok(["topic", "alter", "scratch", "--config", "retention.bytes=1048576"]);
      const d = JSON.parse(await ok(["topic", "describe", "scratch", "--json"]));
      assert.equal(d.configs["retention.bytes"], "1048576");
      assert.equal(d.configs["retention.ms"], "60000");
      const metaPath = `${dataDir}/topics/scratch/topic.json`;
      // The file is JSON followed by a checksum line.
      const meta = JSON.parse((await Deno.readTextFile(metaPath)).split("\n#crc32c:")[0]!);
      assert.equal(meta.configs["retention.bytes"], "1048576", "topic.json was rewritten");
      const refused = await ctl(["topic", "alter", "scratch", "--config", "segment.bytes=4096"]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /^error: INVALID_REQUEST: .*segment\.bytes/);
    });

    await t.step("topic delete removes the topic", async () => {
      await ok(["topic", "delete", "scratch"]);
      assert.deepEqual(JSON.parse(await ok(["topic", "list", "--json"])), [
        { name: "orders", partitions: 2 },
      ]);
    });

    await t.step(
      "produce from arguments and stdin prints offsets; consume reads them",
      async () => {
        assert.equal(
          await ok(["produce", "orders", "margherita", "diavola", "--key", "k"]),
          "0\n1\n",
        );
        assert.equal(
          await ok(["produce", "orders"], { stdin: "one\ntwo\r\nthree\n" }),
          "2\n3\n4\n",
        );
        assert.equal(
          await ok(["consume", "orders", "--from", "earliest", "--count", "3"]),
          "0\tk\tmargherita\n1\tk\tdiavola\n2\t\tone\n",
        );
        const json = (await ok(["consume", "orders", "--from", "1", "--format", "json"]))
          .trim().split("\n").map((l) => JSON.parse(l));
        assert.deepEqual(json.map((m) => [m.offset, m.key, m.value]), [
          [1, "k", "diavola"],
          [2, null, "one"],
          [3, null, "two"],
          [4, null, "three"],
        ]);
        assert.equal(await ok(["consume", "orders", "--partition", "1"]), "", "empty partition");
      },
    );

    await t.step("cluster members and status on a single node", async () => {
      assert.match(await ok(["cluster", "members"]), /single node/);
      assert.deepEqual(JSON.parse(await ok(["cluster", "members", "--json"])).members, []);
      const status = JSON.parse(await ok(["cluster", "status", "--json"]));
      assert.equal(status.brokerId, "gregormq-0");
      assert.equal(status.topics, 1);
      assert.equal(status.controller, "", "a single node has no controller");
    });

    await t.step("partition reassign and cluster rebalance-leaders need a cluster", async () => {
      for (
        const [args, op] of [
          [["partition", "reassign", "scratch", "0", "--replicas", "a,b"], "REASSIGN_PARTITION"],
          [["cluster", "rebalance-leaders"], "REBALANCE_LEADERS"],
        ] as const
      ) {
        const r = await ctl([...args]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(`^error: INVALID_REQUEST: ${op} needs a replicating cluster`),
        );
      }
      const r = await ctl(["partition", "reassign", "scratch", "0"]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /partition reassign needs --replicas ID,ID,\.\.\./);
      const bad = await ctl(["partition", "reassign", "scratch", "first", "--replicas", "a"]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^error: the partition must be a whole number >= 0, got "first"/);
    });

    await t.step("a refused request exits 1 with the error code's name", async () => {
      const r = await ctl(["topic", "describe", "nope"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^error: UNKNOWN_TOPIC: /);
    });

    await t.step("bad usage exits 2 with one line that points to --help", async () => {
      for (
        const args of [
          ["bogus"],
          ["topic", "create"],
          ["topic", "alter", "orders"],
          ["topic", "alter", "orders", "--partitions", "0"],
          ["consume", "orders", "--count", "x"],
          ["consume", "orders", "--group", "g", "--partition", "1"],
          ["consume", "orders", "--group", "g", "--from", "3"],
          ["group", "bogus"],
          ["group", "describe"],
          ["group", "reset-offsets", "g", "--to-earliest"],
          ["group", "reset-offsets", "g", "--topic", "orders"],
          ["group", "reset-offsets", "g", "--topic", "orders", "--to-earliest", "--to-offset", "1"],
          ["group", "reset-offsets", "g", "--topic", "orders", "--to-offset", "-1"],
          ["group", "reset-offsets", "g", "--topic", "orders", "--to-datetime", "2024-05-01"],
          ["group", "reset-offsets", "g", "--topic", "orders", "--to-latest", "--partitions", "a"],
        ]
      ) {
        const r = await ctl(args);
        assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, /^error: [^\n]+ \(see `gregorctl --help`\)\n$/);
      }
    });

    await t.step("a mistyped command, subcommand or option is named with the nearest", async () => {
      for (
        const [args, said] of [
          [["topic", "list", "--jsn"], 'unknown option "--jsn"; did you mean --json?'],
          [["topc", "list"], 'unknown command "topc"; did you mean topic?'],
          [["topic", "lst"], 'unknown topic subcommand "lst"; did you mean list?'],
          [["cluster", "member"], 'unknown cluster subcommand "member"; did you mean members?'],
          [["topic", "list", "--timeout"], "--timeout needs a value"],
          [
            [],
            "missing command (topic, partition, produce, consume, group, cluster, metrics, user, acl)",
          ],
        ] as const
      ) {
        const r = await ctl([...args]);
        assert.equal(r.code, 2, r.stderr);
        assert.equal(r.stderr, `error: ${said} (see \`gregorctl --help\`)\n`);
      }
    });

    await t.step("--broker takes several addresses and uses the first that answers", async () => {
      const r = await gregorctl(["--broker", `127.0.0.1:1,${broker.addr}`, "topic", "list"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^orders\s+2$/m);
    });

    await t.step("metrics summarises the broker's live endpoint", async () => {
      const url = `http://${broker.metrics}/metrics`;
      const json = await ctl(["metrics", "--metrics-url", url, "--json"]);
      assert.equal(json.code, 0, json.stderr);
      const parsed = JSON.parse(json.stdout);
      assert.ok(parsed.metrics["gregormq_requests_total"] > 0, json.stdout);
      assert.ok(parsed.metrics["gregormq_bytes_in_total"] > 0, "the produce steps stored bytes");
      const human = await ctl(["metrics", "--metrics-url", url]);
      assert.equal(human.code, 0);
      assert.match(human.stdout, /^METRIC\s+VALUE\n/);
      assert.match(human.stdout, /gregormq_connections_open\s+\d/);
    });

    await t.step("a metrics endpoint that is not there is reported, exit 3", async () => {
      const r = await ctl(["metrics", "--metrics-url", "http://127.0.0.1:1/metrics"]);
      assert.equal(r.code, 3);
      assert.match(r.stderr, /metrics are unreachable at http:\/\/127\.0\.0\.1:1\/metrics/);
    });
  } finally {
    broker.child.kill("SIGTERM");
    await broker.child.status;
    await broker.drained;
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("gregorctl reports a refused connection at once, with how to start a broker, exit 3", async () => {
  const startMs = performance.now();
  const r = await gregorctl(["--broker", "127.0.0.1:1", "topic", "list"]);
  const elapsedMs = performance.now() - startMs;
  assert.equal(r.code, 3);
  assert.equal(
    r.stderr.trim(),
    "cannot reach a broker at 127.0.0.1:1 (connection refused) — is it running? start one with " +
      "`deno task start`",
  );
  // The default --timeout is 5 s; a refusal is final, so waiting it out would only hide it.
  assert.ok(elapsedMs < 3_000, `reported after ${Math.round(elapsedMs)} ms`);
});

Deno.test("gregorctl help prints the usage, as --help does, exit 0", async () => {
  const help = await gregorctl(["--help"]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^usage: deno task gregorctl /);
  for (const args of [["help"], ["help", "topic"]]) {
    const r = await gregorctl(args);
    assert.equal(r.code, 0, `gregorctl ${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stdout, help.stdout);
  }
});

Deno.test("gregorctl says a broker's host name does not resolve, apart from a refusal", async () => {
  const r = await gregorctl(["--broker", "no-such-broker.invalid:7070", "topic", "list"]);
  assert.equal(r.code, 3);
  assert.equal(
    r.stderr.trim(),
    "cannot reach a broker at no-such-broker.invalid:7070 (the host name " +
      "no-such-broker.invalid does not resolve) — check the host name in --broker or " +
      "$GREGOR_BROKER",
  );
});

Deno.test("gregorctl manages consumer groups and grows partitions on a real broker", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregorctl_group_test_" });
  const broker = await startBroker(dataDir);
  const { ctl, ok } = against(broker.addr);
  const describe = async (group: string) =>
    JSON.parse(await ok(["group", "describe", group, "--json"]));
  /** [partition, committed, end, lag] per partition of the group's offsets. */
  const offsets = async (group: string) =>
    (await describe(group)).offsets.map((
      o: { partition: number; offset: number; highWatermark: number; lag: number | null },
    ) => [o.partition, o.offset, o.highWatermark, o.lag]);
  /** [partition, offset, value] of `consume --format json` output, in partition order. */
  const read = (stdout: string) =>
    stdout.trim().split("\n").filter((l) => l !== "").map((l) => JSON.parse(l))
      .map((m) => [m.partition, m.offset, m.value])
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let follower: ReturnType<typeof spawnGregorctl> | null = null;
  try {
    await t.step("no groups yet; describing an unknown group is refused, exit 1", async () => {
      assert.equal(await ok(["group", "list"]), "no groups\n");
      assert.deepEqual(JSON.parse(await ok(["group", "list", "--json"])), []);
      const r = await ctl(["group", "describe", "nobody"]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, "error: INVALID_REQUEST: Group nobody does not exist\n");
    });

    await t.step("consume --group reads every partition and commits on exit", async () => {
      await ok(["topic", "create", "clicks", "--partitions", "2"]);
      await ok(["produce", "clicks", "a", "b", "c"]);
      await ok(["produce", "clicks", "x", "y", "--partition", "1"]);
      assert.deepEqual(read(await ok(["consume", "clicks", "--group", "readers", "--json"])), [
        [0, 0, "a"],
        [0, 1, "b"],
        [0, 2, "c"],
        [1, 0, "x"],
        [1, 1, "y"],
      ]);
      assert.equal(
        await ok(["consume", "clicks", "--group", "readers"]),
        "",
        "a second run starts at the committed offsets, where nothing is left",
      );
    });

    await t.step(
      "group describe shows committed offsets and lag, as tables and --json",
      async () => {
        await ok(["produce", "clicks", "d", "e"]);
        const human = await ok(["group", "describe", "readers"]);
        // Without members the coordinator may have forgotten the assignor: "-" then.
        assert.match(
          human,
          /^group readers\n\nSTATE\s+GENERATION\s+ASSIGNOR\nempty\s+\d+\s+(sticky|-)\n/,
        );
        assert.match(human, /^no live members$/m);
        assert.match(human, /^TOPIC\s+PARTITION\s+COMMITTED\s+END\s+LAG$/m);
        assert.match(human, /^clicks\s+0\s+3\s+5\s+2$/m);
        assert.match(human, /^clicks\s+1\s+2\s+2\s+0$/m);
        const d = await describe("readers");
        assert.equal(d.group, "readers");
        assert.equal(d.state, "empty");
        assert.deepEqual(d.members, []);
        assert.deepEqual(await offsets("readers"), [[0, 3, 5, 2], [1, 2, 2, 0]]);
        assert.equal(
          await ok(["consume", "clicks", "--group", "readers", "--count", "1"]),
          "3\t\td\n",
        );
        assert.deepEqual(await offsets("readers"), [[0, 4, 5, 1], [1, 2, 2, 0]], "--count commits");
      },
    );

    await t.step("group list shows the group, as a table and --json", async () => {
      const rows = (await ok(["group", "list"])).trimEnd().split("\n");
      assert.match(rows[0] ?? "", /^GROUP\s+STATE\s+MEMBERS\s+GENERATION$/);
      assert.match(rows[1] ?? "", /^readers\s+empty\s+0\s+\d+$/);
      assert.equal(rows.length, 2);
      const [g] = JSON.parse(await ok(["group", "list", "--json"]));
      assert.deepEqual([g.group, g.state, g.members], ["readers", "empty", 0]);
    });

    await t.step("reset-offsets --dry-run shows the plan and changes nothing", async () => {
      const human = await ok([
        "group",
        "reset-offsets",
        "readers",
        "--topic",
        "clicks",
        "--to-earliest",
        "--dry-run",
      ]);
      assert.match(human, /^would reset group readers on clicks to earliest \(dry run/);
      assert.match(human, /^TOPIC\s+PARTITION\s+NEW-OFFSET\s+END\s+LAG$/m);
      assert.match(human, /^clicks\s+0\s+0\s+5\s+5$/m);
      const plan = JSON.parse(
        await ok([
          "group",
          "reset-offsets",
          "readers",
          "--topic",
          "clicks",
          "--to-offset",
          "1",
          "--partitions",
          "0",
          "--dry-run",
          "--json",
        ]),
      );
      assert.equal(plan.dryRun, true);
      assert.deepEqual(plan.offsets, [
        { topic: "clicks", partition: 0, offset: 1, highWatermark: 5, lag: 4 },
      ]);
      const byTime = JSON.parse(
        await ok([
          "group",
          "reset-offsets",
          "readers",
          "--topic",
          "clicks",
          "--to-datetime",
          "2000-01-01T00:00:00Z",
          "--dry-run",
          "--json",
        ]),
      );
      assert.deepEqual(byTime.offsets.map((o: { offset: number }) => o.offset), [0, 0]);
      assert.deepEqual(await offsets("readers"), [[0, 4, 5, 1], [1, 2, 2, 0]], "unchanged");
    });

    await t.step("reset to earliest, then consume --group reads again from 0", async () => {
      const human = await ok([
        "group",
        "reset-offsets",
        "readers",
        "--topic",
        "clicks",
        "--to-earliest",
      ]);
      assert.match(human, /^reset group readers on clicks to earliest\n/);
      assert.match(human, /^clicks\s+1\s+0\s+2\s+2$/m);
      assert.deepEqual(await offsets("readers"), [[0, 0, 5, 5], [1, 0, 2, 2]]);
      assert.deepEqual(read(await ok(["consume", "clicks", "--group", "readers", "--json"])), [
        [0, 0, "a"],
        [0, 1, "b"],
        [0, 2, "c"],
        [0, 3, "d"],
        [0, 4, "e"],
        [1, 0, "x"],
        [1, 1, "y"],
      ]);
      assert.deepEqual(await offsets("readers"), [[0, 5, 5, 0], [1, 2, 2, 0]]);
    });

    await t.step(
      "reset while a member is live is refused, exit 1; the member commits on SIGINT",
      async () => {
        const f = spawnGregorctl([
          "--broker",
          broker.addr,
          "consume",
          "clicks",
          "--group",
          "readers",
          "--follow",
        ]);
        follower = f;
        await until(async () => {
          const d = await describe("readers");
          return d.members.length === 1 && d.members[0].assigned.length === 2;
        }, "the follower to own both partitions");
        const human = await ok(["group", "describe", "readers"]);
        assert.match(human, /^stable\s+\d+\s+sticky$/m);
        assert.match(human, /^MEMBER-ID\s+INSTANCE\s+CLIENT\s+PARTITIONS$/m);
        assert.match(human, /^\S+\s+-\s+gregorctl\s+clicks:0,1$/m);
        const r = await ctl([
          "group",
          "reset-offsets",
          "readers",
          "--topic",
          "clicks",
          "--to-earliest",
        ]);
        assert.equal(r.code, 1);
        assert.equal(
          r.stderr,
          "error: GROUP_NOT_EMPTY: Group readers has live members; stop them before resetting " +
            "its offsets (`gregorctl group describe readers` lists them)\n",
        );
        await ok(["produce", "clicks", "late", "--partition", "1"]);
        await until(() => f.out.stdout.includes("2\t\tlate\n"), "the follower to print it");
        f.child.kill("SIGINT");
        const status = await f.child.status;
        await f.drained;
        follower = null;
        assert.equal(status.code, 0, f.out.stderr);
        assert.equal(f.out.stdout, "2\t\tlate\n");
        const d = await describe("readers");
        assert.deepEqual([d.state, d.members], ["empty", []], "it left the group");
        assert.deepEqual(await offsets("readers"), [[0, 5, 5, 0], [1, 3, 3, 0]]);
      },
    );

    await t.step(
      "topic alter --partitions grows the topic; shrinking is refused, exit 1",
      async () => {
        assert.equal(
          await ok(["topic", "alter", "clicks", "--partitions", "3"]),
          "altered topic clicks: partitions=3\n",
        );
        assert.match(
          await ok(["topic", "describe", "clicks"]),
          /^2\s+0\s+0\s+0\s+0\s+ok\s+self\s+self\s+self$/m,
        );
        const d = JSON.parse(await ok(["topic", "describe", "clicks", "--json"]));
        assert.deepEqual(d.partitions.map((p: { partition: number }) => p.partition), [0, 1, 2]);
        assert.deepEqual(JSON.parse(await ok(["topic", "list", "--json"])), [
          { name: "clicks", partitions: 3 },
        ]);
        const r = await ctl(["topic", "alter", "clicks", "--partitions", "2"]);
        assert.equal(r.code, 1);
        assert.match(
          r.stderr,
          /^error: INVALID_REQUEST: Topic clicks has 3 partitions; .*\(partitions are never removed\)$/m,
        );
        await ok(["produce", "clicks", "fresh", "--partition", "2"]);
        assert.equal(await ok(["consume", "clicks", "--group", "readers"]), "0\t\tfresh\n");
      },
    );
  } finally {
    const f = follower as ReturnType<typeof spawnGregorctl> | null;
    if (f !== null) {
      f.child.kill("SIGKILL");
      await f.child.status;
      await f.drained;
    }
    broker.child.kill("SIGTERM");
    await broker.child.status;
    await broker.drained;
    await Deno.remove(dataDir, { recursive: true });
  }
});

/** Whether `tool` runs here (util-linux `script`, coreutils `timeout`). */
async function has(tool: string): Promise<boolean> {
  try {
    const r = await new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
    return r.success;
  } catch {
    return false;
  }
}

/**
 * Runs gregorctl with its stderr on a pseudo-terminal (util-linux `script`) and its stdout in
 * `stdoutPath`; returns what the terminal showed, with the escape that clears a line as "<clear>".
 */
async function onTerminal(args: string[], stdoutPath: string, prefix = ""): Promise<string> {
  const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const command = [Deno.execPath(), "run", "--allow-net", "--allow-read", "--allow-env", GREGORCTL]
    .concat(args).map(quote).join(" ");
  const r = await new Deno.Command("script", {
    args: ["-qfec", `${prefix}${command} > ${quote(stdoutPath)}`, "/dev/null"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(r.stdout).replaceAll("\x1b[K", "<clear>");
}

Deno.test("gregorctl produce and consume end with a summary on stderr; stdout keeps the data", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregorctl_summary_test_" });
  const broker = await startBroker(dataDir);
  const { ctl } = against(broker.addr);
  const lines = Array.from({ length: 300 }, (_, i) => `line-${i}`).join("\n") + "\n";
  const file = `${dataDir}/lines.txt`;
  await Deno.writeTextFile(file, lines);
  const produced = (n: number, topic: string) =>
    new RegExp(
      `^produced ${n} messages to ${topic} partition 0 in \\d+\\.\\d\\d s \\(\\d+ msg/s\\), 0 failed\\n$`,
    );
  try {
    await t.step("produce: offsets or nothing on stdout, one summary line on stderr", async () => {
      const few = await ctl(["produce", "bulk", "a", "b"]);
      assert.equal(few.code, 0, few.stderr);
      assert.equal(few.stdout, "0\n1\n");
      assert.match(few.stderr, produced(2, "bulk"));
      // From a file and from stdin, more than the offsets printed one by one: stdout stays empty.
      const fromFile = await ctl(["produce", "bulk", "--file", file]);
      assert.equal(fromFile.code, 0, fromFile.stderr);
      assert.equal(fromFile.stdout, "");
      assert.match(fromFile.stderr, produced(300, "bulk"), "no progress line off a terminal");
      const fromStdin = await ctl(["produce", "bulk"], { stdin: lines });
      assert.equal(fromStdin.stdout, "");
      assert.match(fromStdin.stderr, produced(300, "bulk"));
      const json = await ctl(["produce", "bulk", "--file", file, "--json"]);
      const doc = JSON.parse(json.stdout);
      assert.deepEqual([doc.topic, doc.partition, doc.count, doc.failed], ["bulk", 0, 300, 0]);
      assert.match(json.stderr, produced(300, "bulk"));
    });

    await t.step(
      "produce: failures are counted in the summary, then the error, exit 1",
      async () => {
        const r = await ctl(["produce", "bulk", "--partition", "5", "--file", file]);
        assert.equal(r.code, 1);
        assert.equal(r.stdout, "");
        assert.match(
          r.stderr,
          /^produced 0 messages to bulk partition 5 in [\d.]+ s \(0 msg\/s\), [1-9]\d* failed(; stopped reading at the first failure)?\nerror: UNKNOWN_PARTITION: /,
        );
      },
    );

    await t.step("consume: messages on stdout, offsets read on stderr", async () => {
      const r = await ctl(["consume", "bulk", "--from", "2", "--count", "3"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "2\t\tline-0\n3\t\tline-1\n4\t\tline-2\n");
      assert.equal(r.stderr, "consumed 3 messages from bulk partition 0, offsets 2..4\n");
      const json = await ctl(["consume", "bulk", "--from", "901", "--json"]);
      const docs = json.stdout.trim().split("\n").map((l) => JSON.parse(l));
      assert.deepEqual(docs.map((m) => m.offset), [901]);
      assert.equal(json.stderr, "consumed 1 message from bulk partition 0, offset 901\n");
      const none = await ctl(["consume", "bulk", "--from", "latest"]);
      assert.equal(none.stdout, "");
      assert.equal(none.stderr, "consumed 0 messages from bulk partition 0\n");
      const group = await ctl(["consume", "bulk", "--group", "summary", "--count", "10"]);
      assert.equal(group.code, 0, group.stderr);
      assert.equal(group.stdout.trim().split("\n").length, 10);
      assert.equal(
        group.stderr,
        "consumed 10 messages from bulk as group summary: partition 0 offsets 0..9\n",
      );
    });

    await t.step("metrics needs --metrics-url for a broker off the default port", async () => {
      const r = await ctl(["metrics"]);
      assert.equal(r.code, 2);
      assert.equal(
        r.stderr,
        `error: the metrics address of the broker at ${broker.addr} is not known (only a broker ` +
          "on port 7070 serves them on 7071 by default); pass --metrics-url " +
          'http://HOST:PORT/metrics (the broker\'s start line names it as "metrics") ' +
          "(see `gregorctl --help`)\n",
      );
      // A broker on 7070 has its metrics on 7071: that is the URL tried, and named on failure.
      const guessed = await gregorctl(["--broker", "no-such-broker.invalid:7070", "metrics"]);
      assert.equal(guessed.code, 3);
      assert.match(
        guessed.stderr,
        /^metrics are unreachable at http:\/\/no-such-broker\.invalid:7071\/metrics \(the default for a broker on port 7070\) — .*dns error.*; .*pass --metrics-url /,
      );
    });

    const tools = (await has("script")) && (await has("timeout"));
    if (!tools) {
      console.log("skipping the terminal steps: util-linux `script` or `timeout` is missing");
    }
    await t.step({
      name: "on a terminal, produce and consume show a progress line that the summary replaces",
      ignore: !tools,
      fn: async () => {
        const out = `${dataDir}/stdout.txt`;
        // --rate makes the load last long enough (1.2 s) for the progress line to appear.
        const big = Array.from({ length: 1500 }, (_, i) => `big-${i}`).join("\n");
        await Deno.writeTextFile(file, big);
        const shown = await onTerminal(
          ["--broker", broker.addr, "produce", "slow", "--file", file, "--rate", "1250"],
          out,
        );
        assert.equal(await Deno.readTextFile(out), "", "stdout had no progress");
        // The file's size is known: how much of it is sent, as a bar, a percentage and an ETA.
        assert.match(
          shown,
          /\r<clear>sent \d+, acknowledged \d+ \(\d+ msg\/s\), file \[[#.]{20}\] \d+%, ETA \d+ s/,
        );
        assert.match(shown, /\r<clear>produced 1500 messages to slow partition 0 in .*, 0 failed/);
        // Interrupted after 4 s, a following consume clears its progress line and summarises.
        const followed = await onTerminal(
          ["--broker", broker.addr, "consume", "slow", "--follow"],
          out,
          "timeout -s INT 4 ",
        );
        assert.equal((await Deno.readTextFile(out)).split("\n").length, 1501);
        assert.match(followed, /\r<clear>consumed \d+ \(\d+ msg\/s\)/);
        assert.match(
          followed,
          /\r<clear>consumed 1500 messages from slow partition 0, offsets 0\.\.1499\r?\n/,
        );
      },
    });
  } finally {
    broker.child.kill("SIGTERM");
    await broker.child.status;
    await broker.drained;
    await Deno.remove(dataDir, { recursive: true });
  }
});
