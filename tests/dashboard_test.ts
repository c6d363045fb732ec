// The Grafana dashboard and the Prometheus alert rules query only metrics a running broker really
// exports (names taken from a live scrape, so renaming a metric fails here), and promtool accepts
// the rules.

import assert from "node:assert/strict";
import { denoEnv } from "../src/io/deno/mod.ts";
import { startNode } from "../src/node.ts";
import { promtool } from "./_promtool.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DASHBOARD = `${ROOT}deploy/grafana/gregormq.json`;
const ALERTS = `${ROOT}deploy/prometheus/alerts.yml`;

/** PromQL words that are not metric names. */
const KEYWORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "bool",
  "and",
  "or",
  "unless",
  "offset",
  "inf",
  "nan",
]);

/** The metric names a PromQL expression selects. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  const names: string[] = [];
  for (const m of bare.matchAll(/(?<![\w$.])([a-zA-Z_:][\w:]*)(\s*\()?/g)) {
    const word = m[1] as string;
    if (m[2] !== undefined || KEYWORDS.has(word.toLowerCase())) continue;
    names.push(word);
  }
  return names;
}

/** Every series name a live broker's /metrics exposes (histograms with their suffixes). */
async function exportedNames(): Promise<Set<string>> {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-dashboard-" });
  const node = await startNode(denoEnv(), { port: 0, metrics: { port: 0 }, broker: { dataDir } });
  try {
    const res = await fetch(`http://127.0.0.1:${node.metricsAddr?.port}/metrics`);
    const names = new Set<string>();
    for (const m of (await res.text()).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      const [, name, type] = m as unknown as [string, string, string];
      names.add(name);
      if (type === "histogram") {
        for (const s of ["_bucket", "_sum", "_count"]) names.add(name + s);
      }
    }
    return names;
  } finally {
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
}

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}

function dashboardExprs(panels: Panel[]): { where: string; expr: string }[] {
  return panels.flatMap((p) => [
    ...(p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr ?? "" })),
    ...dashboardExprs(p.panels ?? []),
  ]);
}

Deno.test("the Grafana dashboard and alert rules query only metrics the broker exports", async () => {
  const exported = await exportedNames();
  assert.ok(exported.has("gregormq_requests_total"), [...exported].join(", "));

  const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD)) as {
    panels: Panel[];
    templating?: { list: { name: string; query?: string }[] };
  };
  const queries = dashboardExprs(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    const inner = /^label_values\((\w+),/.exec(v.query ?? "");
    if (inner !== null) queries.push({ where: `variable ${v.name}`, expr: inner[1] as string });
  }
  assert.ok(queries.length >= 10, "the dashboard has its panels");

  const alerts = await Deno.readTextFile(ALERTS);
  for (const m of alerts.matchAll(/^\s+expr: (.+)$/gm)) {
    queries.push({ where: "alerts.yml", expr: m[1] as string });
  }
  assert.ok(queries.some((q) => q.where === "alerts.yml"), "alerts.yml has rules");

  const used = new Set<string>();
  for (const q of queries) {
    const names = metricNames(q.expr);
    assert.ok(names.length > 0, `${q.where}: no metric in ${q.expr}`);
    for (const name of names) {
      // `up` is Prometheus's own per-target series, what a "broker down" alert must use.
      const known = exported.has(name) || (q.where === "alerts.yml" && name === "up");
      assert.ok(known, `${q.where} queries ${name}, which the broker does not export: ${q.expr}`);
      used.add(name);
    }
  }
  for (
    const family of [
      "gregormq_messages_in_total",
      "gregormq_bytes_out_total",
      "gregormq_produce_duration_seconds_bucket",
      "gregormq_fsync_duration_seconds_bucket",
      "gregormq_consumer_lag_messages",
      "gregormq_connections_open",
      "gregormq_log_size_bytes",
      "gregormq_cluster_members",
    ]
  ) {
    assert.ok(used.has(family), `nothing charts or alerts on ${family}`);
  }
});

Deno.test("metricNames() finds selectors, not functions, labels, ranges or grouping", () => {
  assert.deepEqual(
    metricNames(
      'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{x="y(z)"}[5m]))) > 0.5 and b',
    ),
    ["a_seconds_bucket", "b"],
  );
});

Deno.test("promtool accepts deploy/prometheus/alerts.yml", async () => {
  const { code, out } = await promtool(["check", "rules", ALERTS]);
  assert.equal(code, 0, out);
  assert.match(out, /SUCCESS: 12 rules found/);
});
