import assert from "node:assert/strict";
import { DEFAULT_BROKER_OPTIONS } from "../broker/options.ts";
import {
  CONFIG_SCHEMA,
  ConfigError,
  configFileArg,
  type ConfigInput,
  envName,
  flagName,
  loadConfig,
  loadYaml,
  toNodeConfig,
} from "./mod.ts";

await loadYaml();

const YAML = `
port: 7100
dataDir: /var/lib/gregor
defaultPartitions: 3
cluster:
  seeds: [a:7072, b:7072]
metrics:
  port: 9000
`;

function load(input: Partial<ConfigInput>): ReturnType<typeof loadConfig> {
  return loadConfig({ env: {}, args: [], ...input });
}

/** The ConfigError that loading `input` throws. */
function fails(input: Partial<ConfigInput>): ConfigError {
  try {
    load(input);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.ok(!err.message.includes("\n"), `one line: ${err.message}`);
    return err;
  }
  assert.fail("loading succeeded");
}

Deno.test("loadConfig() with nothing gives the zero-config defaults", () => {
  const { config, warnings } = load({});
  assert.equal(config.host, "127.0.0.1");
  assert.equal(config.port, 7070);
  assert.equal(config.dataDir, "./data");
  assert.equal(config.brokerId, null, "unset: the node id in a cluster, else gregormq-0");
  assert.deepEqual(config.metrics, { enabled: true, host: "127.0.0.1", port: 7071 });
  assert.equal(config.cluster, null);
  assert.equal(config.log.format, "json");
  const { credentials: _, dataDir: _d, brokerId: _b, ...tunables } = DEFAULT_BROKER_OPTIONS;
  assert.deepEqual(config.broker, tunables);
  assert.deepEqual(warnings, []);
});

Deno.test("loadConfig() precedence: defaults < file < GREGOR_* env < flags, key by key", () => {
  const file = { name: "gregor.yaml", text: YAML };
  const fromFile = load({ file }).config;
  assert.equal(fromFile.port, 7100);
  assert.equal(fromFile.dataDir, "/var/lib/gregor");
  assert.equal(fromFile.broker.defaultPartitions, 3);
  assert.deepEqual(fromFile.cluster?.seeds, ["a:7072", "b:7072"]);
  assert.equal(fromFile.metrics.port, 9000);

  const env = { GREGOR_PORT: "7200", GREGOR_DATA_DIR: "/env", GREGOR_CLUSTER_SEEDS: "c:1,d:2" };
  const fromEnv = load({ file, env }).config;
  assert.equal(fromEnv.port, 7200);
  assert.equal(fromEnv.dataDir, "/env");
  assert.deepEqual(fromEnv.cluster?.seeds, ["c:1", "d:2"]);
  assert.equal(fromEnv.broker.defaultPartitions, 3, "the file still counts where env is silent");

  const args = ["--port", "7300", "--data-dir=/flag", "--partitions", "5", "--metrics-port", "0"];
  const fromFlags = load({ file, env, args }).config;
  assert.equal(fromFlags.port, 7300);
  assert.equal(fromFlags.dataDir, "/flag");
  assert.equal(fromFlags.broker.defaultPartitions, 5);
  assert.equal(fromFlags.metrics.port, 0);
  assert.deepEqual(fromFlags.cluster?.seeds, ["c:1", "d:2"]);
});

Deno.test("loadConfig() reads JSON files, by extension or by content, with dotted or nested keys", () => {
  const text = JSON.stringify({
    brokerId: "b-7",
    "cluster.port": 7172,
    metrics: { enabled: false },
    autoCreateTopics: false,
  });
  for (const name of ["gregor.json", "gregor.conf"]) {
    const { config } = load({ file: { name, text } });
    assert.equal(config.brokerId, "b-7");
    assert.deepEqual(config.cluster, {
      port: 7172,
      seeds: [],
      advertiseHost: "127.0.0.1",
      replicate: true,
      bootstrapExpect: 0,
      replicationFactor: 3,
      leaderBalanceIntervalMs: 30_000,
      replicaMoveAfterMs: 600_000,
      secret: null,
      secretFile: null,
      secretPrevious: null,
      secretPreviousFile: null,
    });
    assert.equal(config.metrics.enabled, false);
    assert.equal(config.broker.autoCreateTopics, false);
  }
  assert.deepEqual(load({ file: { name: "empty.yaml", text: "" } }).config, load({}).config);
});

Deno.test("loadConfig() keeps every flag cli/broker.ts accepted before, with the same meaning", () => {
  const { config } = load({
    args: [
      "--host=0.0.0.0",
      "--broker-id",
      "n1",
      "--no-auto-create",
      "--persistence",
      "memory",
      "--fsync",
      "interval:50",
      "--cluster-port",
      "7172",
      "--seeds",
      "10.0.0.1:7072",
      "--advertise-host",
      "10.0.0.9",
    ],
  });
  assert.equal(config.host, "0.0.0.0");
  assert.equal(config.brokerId, "n1");
  assert.equal(config.broker.autoCreateTopics, false);
  assert.equal(config.broker.defaultPersistence, "memory");
  assert.equal(config.broker.defaultFsync, "interval:50");
  assert.deepEqual(config.cluster, {
    port: 7172,
    seeds: ["10.0.0.1:7072"],
    advertiseHost: "10.0.0.9",
    replicate: true,
    bootstrapExpect: 0,
    replicationFactor: 3,
    leaderBalanceIntervalMs: 30_000,
    replicaMoveAfterMs: 600_000,
    secret: null,
    secretFile: null,
    secretPrevious: null,
    secretPreviousFile: null,
  });
  assert.equal(load({ args: ["--seeds", "x:7072"] }).config.cluster?.port, 7072);
  assert.equal(
    load({ args: ["--auto-create-topics=false"] }).config.broker.autoCreateTopics,
    false,
  );
});

Deno.test("loadConfig() takes GREGOR_SEEDS as an alias of GREGOR_CLUSTER_SEEDS, which wins", () => {
  const alias = load({ env: { GREGOR_SEEDS: "s1:7072,s2:7072" } });
  assert.deepEqual(alias.config.cluster?.seeds, ["s1:7072", "s2:7072"]);
  const both = load({ env: { GREGOR_CLUSTER_SEEDS: "c:7072", GREGOR_SEEDS: "s:7072" } });
  assert.deepEqual(both.config.cluster?.seeds, ["c:7072"]);
  assert.match(both.warnings.join("\n"), /GREGOR_CLUSTER_SEEDS overrides GREGOR_SEEDS/);
  assert.equal(load({ env: { GREGOR_SEEDS: "" } }).config.cluster, null);
});

Deno.test("loadConfig() bad values fail with one line naming key, value, what is allowed, source", () => {
  const cases: [Partial<ConfigInput>, string, RegExp][] = [
    [
      { env: { GREGOR_PORT: "70a0" } },
      "env",
      /^Invalid config: port = "70a0" \(from GREGOR_PORT\): expected a whole number from 0 to 65535$/,
    ],
    [{ args: ["--port", "70000"] }, "flag", /port = "70000" \(from --port\): .*0 to 65535/],
    [
      { args: ["--persistence", "tape"] },
      "flag",
      /defaultPersistence = "tape" \(from --persistence\): expected one of disk, memory/,
    ],
    [
      { env: { GREGOR_LOG_FORMAT: "xml" } },
      "env",
      /log\.format = "xml" \(from GREGOR_LOG_FORMAT\): expected one of json, text/,
    ],
    [
      { args: ["--fsync=sometimes"] },
      "flag",
      /defaultFsync = "sometimes" .*always, never or interval:<ms>/,
    ],
    [{ args: ["--fsync", "interval:0"] }, "flag", /defaultFsync = "interval:0"/],
    [
      { env: { GREGOR_SEEDS: "a:1,b" } },
      "env",
      /cluster\.seeds entry "b" \(from GREGOR_SEEDS\): expected .*host:port/,
    ],
    [
      { file: { name: "g.yaml", text: 'port: "7070"\n' } },
      "file",
      /port = "7070" \(from file g\.yaml\): expected a whole number from 0 to 65535, not a string/,
    ],
    [
      { file: { name: "g.yaml", text: "cluster:\n  seeds: [a:1, 7]\n" } },
      "file",
      /cluster\.seeds = \["a:1",7\] .*not a list/,
    ],
    [
      { file: { name: "g.json", text: '{"autoCreateTopics": "no"}' } },
      "file",
      /autoCreateTopics = "no" .*expected true or false, not a string/,
    ],
    [{ env: { GREGOR_HOST: "" } }, "env", /host = "" \(from GREGOR_HOST\): expected a non-empty/],
    [{ file: { name: "g.yaml", text: "brokerId:\n" } }, "file", /brokerId = null .*not null/],
    [{ args: ["--data-dir"] }, "flag", /--data-dir needs a value/],
    [{ args: ["--retention-ms", "-2"] }, "flag", /retentionMs = "-2" .*whole number >= -1/],
    [
      { args: ["--partitions", "9", "--partitions-max", "4"] },
      "flag",
      /defaultPartitions = 9 \(from --partitions\): expected at most partitionsMax \(4\)/,
    ],
    [{ file: { name: "g.yaml", text: "port: [1\n" } }, "file", /cannot parse file g\.yaml as YAML/],
    [{ file: { name: "g.yaml", text: "- 1\n" } }, "file", /must hold a mapping/],
  ];
  for (const [input, source, message] of cases) {
    const err = fails(input);
    assert.equal(err.source, source, err.message);
    assert.match(err.message, message);
  }
  const port = fails({ env: { GREGOR_PORT: "70a0" } });
  assert.equal(port.key, "port");
  assert.equal(port.value, '"70a0"');
  assert.equal(port.allowed, "a whole number from 0 to 65535");
});

Deno.test("loadConfig() refuses unknown keys, variables and flags, naming the nearest known one", () => {
  const file = fails({ file: { name: "g.yaml", text: "clustr:\n  port: 7072\n" } });
  assert.equal(file.source, "file");
  assert.match(file.message, /unknown key clustr\.port .*did you mean cluster\.port\?/);
  const env = fails({ env: { GREGOR_DATADIR: "/x" } });
  assert.equal(env.source, "env");
  assert.match(env.message, /unknown variable GREGOR_DATADIR; did you mean GREGOR_DATA_DIR\?/);
  const flag = fails({ args: ["--prot", "1"] });
  assert.equal(flag.source, "flag");
  assert.match(flag.message, /unknown flag --prot; did you mean --port\?/);
  const version = fails({ args: ["--versio"] });
  assert.match(version.message, /unknown flag --versio; did you mean --version\?/);
  assert.match(fails({ args: ["7070"] }).message, /unexpected argument "7070"/);
  // Variables of other tools (gregorctl) and of other programs are left alone.
  assert.equal(load({ env: { GREGOR_BROKER: "x:1", HOME: "/root" } }).config.port, 7070);
});

Deno.test("loadConfig() warns about settings that have no effect", () => {
  const { warnings } = load({ args: ["--advertise-host", "h", "--no-metrics-enabled"] });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /advertiseHost is set but clustering is off/);
  const metrics = load({ env: { GREGOR_METRICS_ENABLED: "false", GREGOR_METRICS_PORT: "1" } });
  assert.match(metrics.warnings.join(), /metrics\.enabled is false/);
});

Deno.test("metrics.port defaults to 7071 beside port 7070, else to any free port", () => {
  assert.equal(load({}).config.metrics.port, 7071);
  assert.equal(load({ args: ["--port", "7170"] }).config.metrics.port, 0);
  assert.equal(load({ args: ["--port", "0"] }).config.metrics.port, 0);
  assert.equal(
    load({ args: ["--port", "7170", "--metrics-port", "7171"] }).config.metrics.port,
    7171,
  );
});

Deno.test("toNodeConfig() carries every setting startNode uses", () => {
  const { config } = load({
    args: ["--port", "0", "--cluster-port", "0", "--metrics-host", "0.0.0.0", "--topics-max", "7"],
  });
  const node = toNodeConfig(config);
  assert.equal(node.port, 0);
  assert.equal(node.broker?.topicsMax, 7);
  assert.equal(node.broker?.dataDir, "./data");
  assert.deepEqual(node.cluster, {
    port: 0,
    seeds: [],
    advertiseHost: "127.0.0.1",
    replicate: true,
    replicationFactor: 3,
    raft: { leaderBalanceIntervalMs: 30_000, replicaMoveAfterMs: 600_000 },
  });
  assert.deepEqual(node.metrics, { host: "0.0.0.0", port: 0 });
  assert.equal(toNodeConfig(load({ args: ["--no-metrics-enabled"] }).config).metrics, undefined);
});

Deno.test("configFileArg() finds --config in either form", () => {
  assert.equal(configFileArg(["--port", "1", "--config", "a.yaml"]), "a.yaml");
  assert.equal(configFileArg(["--config=b.json"]), "b.json");
  assert.equal(configFileArg([]), undefined);
  assert.equal(load({ args: ["--config", "a.yaml", "--port", "1"] }).config.port, 1);
});

/** TLS keys (by prefix) and the files they need beside them. */
const TLS_COMPANIONS: [string, string[]][] = [
  ["tls.", ["tls.cert", "tls.key", "tls.ca"]],
  ["cluster.tls", ["cluster.tlsCert", "cluster.tlsKey", "cluster.tlsCa"]],
  ["metrics.tls", ["metrics.tlsCert", "metrics.tlsKey"]],
];

Deno.test("every schema key can be set from a file, a variable and a flag", () => {
  for (const spec of CONFIG_SCHEMA) {
    const raw = spec.kind === "int"
      ? String(Math.max(spec.min!, 1) + 1)
      : spec.kind === "bool"
      ? String(!(spec.default as boolean))
      : spec.kind === "enum"
      ? spec.values!.at(-1)!
      : spec.kind === "fsync"
      ? "never"
      : spec.kind === "list"
      ? ["h:1", "alice"].find((v) => spec.entry?.pattern.test(v))!
      : spec.key === "cluster.secret" || spec.key === "cluster.secretPrevious"
      ? "x".repeat(16)
      : "x";
    const typed = spec.kind === "int" ? Number(raw) : spec.kind === "bool" ? raw === "true" : raw;
    // The cluster's settings (other than how to join one) only matter in a cluster.
    const base: Record<string, unknown> = spec.key.startsWith("cluster.") &&
        spec.key !== "cluster.port" && spec.key !== "cluster.seeds"
      ? { "cluster.port": 5 }
      : {};
    // A TLS key takes effect only beside its companions (a certificate needs its key).
    const companions = TLS_COMPANIONS.find(([prefix]) => spec.key.startsWith(prefix))?.[1];
    for (const k of companions ?? []) base[k] ??= "companion.pem";
    const baseFile = { name: "base.json", text: JSON.stringify(base) };
    const file = load({
      file: { name: "g.json", text: JSON.stringify({ ...base, [spec.key]: typed }) },
    });
    const env = load({ file: baseFile, env: { [envName(spec.key)]: raw } });
    const flag = load({ file: baseFile, args: [`--${flagName(spec.key)}=${raw}`] });
    assert.deepEqual(env.config, file.config, spec.key);
    assert.deepEqual(flag.config, file.config, spec.key);
    assert.notDeepEqual(file.config, load({ file: baseFile }).config, `${spec.key} has an effect`);
  }
});

Deno.test("auth scram is taken in a cluster too; it sets auth and super-users", () => {
  const clustered = load({ args: ["--auth=scram", "--cluster-port=7072"] }).config;
  assert.equal(clustered.broker.auth, "scram");
  assert.equal(clustered.cluster?.port, 7072);
  const ok = load({ args: ["--auth=scram", "--super-users=alice,bob"] }).config.broker;
  assert.equal(ok.auth, "scram");
  assert.deepEqual(ok.superUsers, ["alice", "bob"]);
  assert.equal(fails({ args: ["--super-users=al ice"] }).key, "superUsers");
});

Deno.test("cluster.secret: too short is refused without showing it, given twice is refused, as a flag warns", () => {
  const short = fails({ env: { GREGOR_CLUSTER_SECRET: "hunter2" }, args: ["--cluster-port=7072"] });
  assert.equal(short.key, "cluster.secret");
  assert.equal(short.origin, "GREGOR_CLUSTER_SECRET");
  assert.match(short.message, /\(7 bytes, not shown\).*expected 16 to 1024 bytes/);
  assert.doesNotMatch(short.message, /hunter2/);
  const twice = fails({
    env: { GREGOR_CLUSTER_SECRET: "a".repeat(20) },
    args: ["--cluster-port=7072", "--cluster-secret-file=/etc/gregor/secret"],
  });
  assert.equal(twice.key, "cluster.secretFile");
  const fromEnv = load({ env: { GREGOR_CLUSTER_SECRET: "a".repeat(20) }, args: ["--seeds=h:1"] });
  assert.equal(fromEnv.config.cluster?.secret, "a".repeat(20));
  assert.deepEqual(fromEnv.warnings, []);
  const fromFlag = load({ args: ["--seeds=h:1", `--cluster-secret=${"a".repeat(20)}`] });
  assert.match(
    fromFlag.warnings.join("\n"),
    /--cluster-secret: any user of this machine can read it/,
  );
  assert.equal(toNodeConfig(fromFlag.config).cluster?.secret, "a".repeat(20));
});

Deno.test("cluster.secretPrevious: from the variable it reaches the node beside the secret; too short, given twice, or as a flag, it is told", () => {
  const env = {
    GREGOR_CLUSTER_SECRET: "a".repeat(20),
    GREGOR_CLUSTER_SECRET_PREVIOUS: "b".repeat(20),
  };
  const both = load({ env, args: ["--seeds=h:1"] });
  assert.deepEqual(both.warnings, []);
  const node = toNodeConfig(both.config).cluster;
  assert.equal(node?.secret, "a".repeat(20));
  assert.equal(node?.previousSecret, "b".repeat(20));
  const short = fails({
    env: { GREGOR_CLUSTER_SECRET_PREVIOUS: "hunter2" },
    args: ["--cluster-port=7072"],
  });
  assert.equal(short.key, "cluster.secretPrevious");
  assert.equal(short.origin, "GREGOR_CLUSTER_SECRET_PREVIOUS");
  assert.doesNotMatch(short.message, /hunter2/);
  const twice = fails({
    env,
    args: ["--cluster-port=7072", "--cluster-secret-previous-file=/etc/gregor/old"],
  });
  assert.equal(twice.key, "cluster.secretPreviousFile");
  const fromFlag = load({
    env: { GREGOR_CLUSTER_SECRET: "a".repeat(20) },
    args: ["--seeds=h:1", `--cluster-secret-previous=${"b".repeat(20)}`],
  });
  assert.match(
    fromFlag.warnings.join("\n"),
    /--cluster-secret-previous: any user of this machine can read it in the process list; use GREGOR_CLUSTER_SECRET_PREVIOUS or cluster.secretPreviousFile/,
  );
  const unclustered = load({ env });
  assert.match(
    unclustered.warnings.join("\n"),
    /cluster.secret and cluster.secretPrevious are set but clustering is off/,
  );
});
