// The Helm chart (deploy/helm/gregormq) passes `helm lint`, and what `helm template` renders is a
// configuration the broker accepts: every GREGOR_* variable goes through the broker's own config
// loader (so an unknown name or a bad value fails here as it would fail a pod), the ports the pod
// declares, the Services route and the probes ask are the ones that configuration listens on, and
// the seed is the headless Service's DNS name. Scaling from 3 to 5 brokers changes nothing but the
// replica count. Needs `helm` (.ci/run installs it with `go install`); skipped without it.

import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import {
  CONFIG_SCHEMA,
  envName,
  insecurePublicRefusal,
  loadConfig,
  type NodeSettings,
} from "../src/config/mod.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CHART = `${ROOT}deploy/helm/gregormq`;
const DASHBOARD = `${ROOT}deploy/grafana/gregormq.json`;
const RELEASE = "mq";
const NAMESPACE = "brokers";
/** One helm command at most, ms. */
const HELM_TIMEOUT_MS = 60_000;
/** What the downward API gives a pod, for the variables that refer to it. */
const POD = { "metadata.name": `${RELEASE}-gregormq-0`, "status.podIP": "10.1.2.3" };

// deno-lint-ignore no-explicit-any
type Doc = any;

/** helm on PATH, else where `go install` puts it; null if neither has it. */
function findHelm(): string | null {
  const home = Deno.env.get("HOME") ?? "/root";
  const dirs = [
    ...(Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== ""),
    Deno.env.get("GOBIN") ?? `${home}/go/bin`,
  ];
  for (const dir of dirs) {
    try {
      if (Deno.statSync(`${dir}/helm`).isFile) return `${dir}/helm`;
    } catch {
      // Not in this one.
    }
  }
  return null;
}

const HELM = findHelm();
if (HELM === null) {
  console.log(
    "helm_chart_test skipped: helm is not installed " +
      "(go install helm.sh/helm/v3/cmd/helm@v3.21.4; .ci/run does it)",
  );
}

async function helm(args: string[]): Promise<string> {
  const out = await new Deno.Command(HELM!, {
    args,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(HELM_TIMEOUT_MS),
  }).output();
  const dec = new TextDecoder();
  const text = dec.decode(out.stdout);
  if (out.code !== 0) {
    throw new Error(`helm ${args.join(" ")} exited with ${out.code}:\n${dec.decode(out.stderr)}`);
  }
  return text;
}

/** Secrets the tests' releases read, by "name/key": what the kubelet would put in the variable. */
const SECRETS: Record<string, string> = {
  "gregormq-cluster/cluster-secret": "a-cluster-secret-of-32-bytes-long",
};

/** The chart's objects, rendered with `--set` values. */
async function render(sets: string[] = []): Promise<Doc[]> {
  const text = await helm([
    "template",
    RELEASE,
    CHART,
    "--namespace",
    NAMESPACE,
    ...sets.flatMap((s) => ["--set", s]),
  ]);
  return parseAllDocuments(text).map((d) => d.toJS()).filter((d) => d !== null);
}

function only(docs: Doc[], kind: string, pick: (d: Doc) => boolean = () => true): Doc {
  const found = docs.filter((d) => d.kind === kind && pick(d));
  assert.equal(found.length, 1, `one ${kind} expected, rendered ${found.length}`);
  return found[0];
}

/** The container's environment as the kubelet gives it: downward API values, $(VAR) expanded. */
function containerEnv(container: Doc): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of container.env) {
    const secret = e.valueFrom?.secretKeyRef;
    if (secret !== undefined) {
      const value = SECRETS[`${secret.name}/${secret.key}`];
      assert.ok(value !== undefined, `${e.name} comes from an unknown Secret key`);
      env[e.name] = value;
      continue;
    }
    if (e.valueFrom !== undefined) {
      const path = e.valueFrom.fieldRef?.fieldPath as keyof typeof POD | undefined;
      assert.ok(path !== undefined && path in POD, `${e.name} comes from an unexpected source`);
      env[e.name] = POD[path];
      continue;
    }
    assert.equal(typeof e.value, "string", `${e.name}'s value must be a string`);
    env[e.name] = (e.value as string).replace(/\$\(([A-Z_]+)\)/g, (_, name) => {
      assert.ok(name in env, `${e.name} refers to $(${name}), not defined before it`);
      return env[name]!;
    });
  }
  return env;
}

/** Loads the rendered StatefulSet's GREGOR_* environment with the broker's own loader. */
function brokerSettings(docs: Doc[]): { settings: NodeSettings; container: Doc } {
  const sts = only(docs, "StatefulSet");
  const container = sts.spec.template.spec.containers[0];
  const env = Object.fromEntries(
    Object.entries(containerEnv(container)).filter(([k]) => k.startsWith("GREGOR_")),
  );
  const known = new Set(CONFIG_SCHEMA.flatMap((s) => [envName(s.key), ...(s.envAliases ?? [])]));
  for (const name of Object.keys(env)) {
    assert.ok(known.has(name), `${name} is not a broker setting`);
  }
  const loaded = loadConfig({ env, args: [] });
  assert.deepEqual(loaded.warnings, []);
  return { settings: loaded.config, container };
}

function containerPort(container: Doc, name: string): number {
  const port = container.ports.find((p: Doc) => p.name === name);
  assert.ok(port !== undefined, `the container declares no port named ${name}`);
  return port.containerPort;
}

Deno.test({
  name: "helm chart: lint passes with default and every optional part",
  ignore: HELM === null,
  fn: async () => {
    await helm(["lint", "--strict", CHART]);
    await helm([
      "lint",
      "--strict",
      CHART,
      "--set",
      "serviceMonitor.enabled=true,grafanaDashboard.enabled=true,cluster.replicate=false",
    ]);
    await helm([
      "lint",
      "--strict",
      CHART,
      "--set",
      "tls.client.enabled=true,tls.client.secretName=a,tls.cluster.enabled=true,tls.cluster.secretName=b",
    ]);
    await helm(["lint", "--strict", CHART, "--set", "cluster.secretName=gregormq-cluster"]);
  },
});

Deno.test({
  name: "helm chart: every GREGOR_* variable and port it sets is one the broker accepts and uses",
  ignore: HELM === null,
  fn: async () => {
    for (const sets of [[], ["cluster.replicate=false"], ["ports.client=9000"]]) {
      const docs = await render(sets);
      const { settings, container } = brokerSettings(docs);
      const cluster = settings.cluster;
      assert.ok(cluster !== null, "the chart's brokers must form a cluster");

      // Every port the pod declares is one the broker listens on, and nothing else.
      assert.equal(settings.host, "0.0.0.0");
      // On 0.0.0.0 without TLS the broker starts only because the chart allows it.
      assert.equal(insecurePublicRefusal(settings), null);
      assert.equal(settings.metrics.enabled, true);
      assert.equal(settings.metrics.host, "0.0.0.0");
      const ports = {
        client: settings.port,
        metrics: settings.metrics.port,
        cluster: cluster.port,
      };
      assert.deepEqual(
        container.ports.map((p: Doc) => [p.name, p.containerPort]).sort(),
        Object.entries(ports).sort(),
      );

      // Peers find each other through the headless Service's name, and reach a pod at its IP.
      const headless = only(docs, "Service", (s) => s.spec.clusterIP === "None");
      assert.equal(headless.spec.publishNotReadyAddresses, true);
      const sts = only(docs, "StatefulSet");
      assert.equal(sts.spec.serviceName, headless.metadata.name);
      assert.deepEqual(cluster.seeds, [
        `${headless.metadata.name}.${NAMESPACE}.svc.cluster.local:${cluster.port}`,
      ]);
      assert.equal(cluster.advertiseHost, POD["status.podIP"]);
      assert.equal(settings.brokerId, POD["metadata.name"]);
      assert.equal(cluster.replicate, !sets.includes("cluster.replicate=false"));

      // Every Service port leads to a port the container declares, with the same number.
      for (const svc of docs.filter((d) => d.kind === "Service")) {
        for (const p of svc.spec.ports) {
          assert.equal(p.port, containerPort(container, p.targetPort), `${svc.metadata.name}`);
        }
      }
      const client = only(docs, "Service", (s) => s.spec.clusterIP !== "None");
      assert.deepEqual(client.spec.ports.map((p: Doc) => p.targetPort).sort(), [
        "client",
        "metrics",
      ]);

      // Probes ask the health endpoints on the metrics port.
      assert.deepEqual(container.readinessProbe.httpGet, { path: "/readyz", port: "metrics" });
      assert.deepEqual(container.livenessProbe.httpGet, { path: "/healthz", port: "metrics" });

      // Data lives on a claim per pod, mounted where the broker keeps it.
      const claim = sts.spec.volumeClaimTemplates[0];
      const mount = container.volumeMounts.find((m: Doc) => m.name === claim.metadata.name);
      assert.equal(mount?.mountPath, settings.dataDir);
      assert.ok(claim.spec.resources.requests.storage);

      // Requests, spread over nodes, one broker down at a time, the image's non-root user.
      assert.ok(container.resources.requests.cpu && container.resources.requests.memory);
      const anti = sts.spec.template.spec.affinity.podAntiAffinity;
      const term = anti.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm;
      assert.deepEqual(term.labelSelector.matchLabels, sts.spec.selector.matchLabels);
      const pdb = only(docs, "PodDisruptionBudget");
      assert.equal(pdb.spec.maxUnavailable, 1);
      assert.deepEqual(pdb.spec.selector.matchLabels, sts.spec.selector.matchLabels);
      assert.equal(sts.spec.template.spec.securityContext.runAsUser, 65532);
    }
  },
});

Deno.test({
  name: "helm chart: TLS from Secrets mounts each one where the GREGOR_*TLS* paths point",
  ignore: HELM === null,
  fn: async () => {
    const docs = await render([
      "tls.client.enabled=true,tls.client.secretName=broker-tls,tls.client.clientCertRequired=true",
      "tls.cluster.enabled=true,tls.cluster.secretName=node-tls,allowInsecurePublic=false",
    ]);
    const { settings, container } = brokerSettings(docs);
    assert.equal(insecurePublicRefusal(settings), null, "TLS on the client port lets it start");
    assert.equal(settings.tls.allowInsecurePublic, false);
    const volumes = only(docs, "StatefulSet").spec.template.spec.volumes;
    /** The Secret mounted at the directory of `path`. */
    const secretOf = (path: string): string => {
      const dir = path.slice(0, path.lastIndexOf("/"));
      const mount = container.volumeMounts.find((m: Doc) => m.mountPath === dir);
      assert.ok(mount?.readOnly, `${path} is on a read-only mount`);
      return volumes.find((v: Doc) => v.name === mount.name).secret.secretName;
    };
    const client = settings.tls.client!;
    assert.equal(client.clientCertRequired, true);
    for (const path of [client.cert, client.key, client.ca!]) {
      assert.equal(secretOf(path), "broker-tls");
    }
    const cluster = settings.tls.cluster!;
    for (const path of [cluster.cert, cluster.key, cluster.ca]) {
      assert.equal(secretOf(path), "node-tls");
    }
    assert.equal(cluster.serverName, `${RELEASE}-gregormq-headless.${NAMESPACE}.svc.cluster.local`);
    // Without TLS and without the allowance, the broker would refuse to start.
    const refused = brokerSettings(await render(["allowInsecurePublic=false"])).settings;
    assert.match(insecurePublicRefusal(refused) ?? "", /--allow-insecure-public/);
  },
});

Deno.test({
  name:
    "helm chart: the cluster secret comes from a Secret into GREGOR_CLUSTER_SECRET, never a flag",
  ignore: HELM === null,
  fn: async () => {
    assert.equal(brokerSettings(await render()).settings.cluster?.secret, null);
    const docs = await render(["cluster.secretName=gregormq-cluster"]);
    const { settings, container } = brokerSettings(docs);
    assert.equal(settings.cluster?.secret, SECRETS["gregormq-cluster/cluster-secret"]);
    assert.ok(
      !JSON.stringify(container.args ?? []).includes("secret"),
      "the secret is not on the command line",
    );
  },
});

Deno.test({
  name: "helm chart: a ServiceMonitor and the Grafana dashboard ConfigMap when asked for",
  ignore: HELM === null,
  fn: async () => {
    const plain = await render();
    assert.equal(
      plain.filter((d) => d.kind === "ServiceMonitor" || d.kind === "ConfigMap").length,
      0,
    );
    const docs = await render(["serviceMonitor.enabled=true", "grafanaDashboard.enabled=true"]);
    const monitor = only(docs, "ServiceMonitor");
    const client = only(docs, "Service", (s) => s.spec.clusterIP !== "None");
    assert.deepEqual(monitor.spec.endpoints[0].port, "metrics");
    assert.equal(monitor.spec.endpoints[0].path, "/metrics");
    for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) {
      assert.equal(client.metadata.labels[k], v, `the ServiceMonitor selects ${k}=${v}`);
    }
    // The chart's copy of the dashboard is the one tests/dashboard_test.ts checks.
    const map = only(docs, "ConfigMap");
    assert.equal(map.metadata.labels.grafana_dashboard, "1");
    assert.deepEqual(
      JSON.parse(map.data["gregormq.json"]),
      JSON.parse(await Deno.readTextFile(DASHBOARD)),
    );
  },
});

Deno.test({
  name: "helm chart: scaling from 3 to 5 brokers changes only the replica count",
  ignore: HELM === null,
  fn: async () => {
    for (const extra of [[], ["cluster.replicate=false"]]) {
      const three = await render(extra);
      const five = await render([...extra, "replicaCount=5"]);
      assert.equal(only(three, "StatefulSet").spec.replicas, 3);
      assert.equal(only(five, "StatefulSet").spec.replicas, 5);
      only(five, "StatefulSet").spec.replicas = 3;
      assert.deepEqual(five, three);
    }
  },
});
