// A real broker under load, scraped over real TCP: the exposition passes `promtool check metrics`,
// the key metrics move as the load says, the health endpoints answer, and bad requests get 400.

import assert from "node:assert/strict";
import { connect } from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { startNode } from "../src/node.ts";
import { promtool } from "./_promtool.ts";

/** One sample of the exposition text: name, labels as written, value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the sample lines of a Prometheus text exposition. */
function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m !== null, `Unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] as string] = l[2] as string;
    }
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of every sample of `name` whose labels include `match`. */
function total(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

Deno.test("a broker under load exports sane metrics that promtool accepts, and answers health checks", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-metrics-" });
  const node = await startNode(denoEnv(), {
    port: 0,
    metrics: { port: 0 },
    broker: { dataDir },
  });
  const client = await connect({ port: node.addr.port });
  try {
    assert.ok(node.metricsAddr !== null);
    const base = `http://127.0.0.1:${node.metricsAddr.port}`;
    const published = 50;
    const value = "x".repeat(100);
    await Promise.all(
      Array.from({ length: published }, () => client.publish("orders", { value })),
    );
    const sub = await client.subscribe("orders", { from: "earliest", ackTimeoutMs: 60_000 });
    const acked = 20;
    for (let i = 0; i < published; i++) {
      const m = await sub.next();
      assert.ok(m !== null);
      if (i < acked) m.ack();
    }

    // Acks are one-way: scrape until the broker has taken them all in.
    let samples: Sample[] = [];
    let text = "";
    for (let attempt = 0; attempt < 50; attempt++) {
      const res = await fetch(`${base}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      text = await res.text();
      samples = parseSamples(text);
      const lag = total(samples, "gregormq_consumer_lag_messages", { topic: "orders" });
      if (lag === published - acked) break;
      await denoEnv().clock.sleep(20);
    }

    const checked = await promtool(["check", "metrics"], text);
    assert.equal(checked.code, 0, `promtool check metrics failed:\n${checked.out}`);
    assert.equal(checked.out.trim(), "", `promtool check metrics complained:\n${checked.out}`);

    // The client batches concurrent publishes: one PRODUCE request (and batch) carries several.
    const produces = total(samples, "gregormq_requests_total", { op: "PRODUCE", code: "OK" });
    assert.ok(produces >= 1 && produces <= published, `PRODUCE requests: ${produces}`);
    assert.equal(total(samples, "gregormq_requests_total", { op: "HELLO", code: "OK" }), 1);
    assert.equal(total(samples, "gregormq_messages_in_total", { topic: "orders" }), published);
    assert.ok(total(samples, "gregormq_bytes_in_total", { topic: "orders" }) > published * 100);
    assert.equal(total(samples, "gregormq_messages_out_total", { topic: "orders" }), published);
    assert.ok(total(samples, "gregormq_bytes_out_total", { topic: "orders" }) > published * 100);
    assert.equal(total(samples, "gregormq_produce_duration_seconds_count"), produces);
    assert.ok(total(samples, "gregormq_fsync_duration_seconds_count") >= 1);
    // Every produced batch was made durable by some fsync (fsync "always").
    assert.equal(total(samples, "gregormq_fsync_batches_sum"), produces);
    assert.equal(total(samples, "gregormq_connections_open"), 1);
    assert.ok(total(samples, "gregormq_log_size_bytes", { topic: "orders", partition: "0" }) > 0);
    assert.equal(total(samples, "gregormq_log_segments", { topic: "orders" }), 1);
    assert.equal(total(samples, "gregormq_log_end_offset", { topic: "orders" }), published);
    assert.equal(total(samples, "gregormq_subscriptions", { topic: "orders" }), 1);
    assert.equal(
      total(samples, "gregormq_consumer_lag_messages", { topic: "orders", partition: "0" }),
      published - acked,
    );
    // A consumer group that processed and committed 30 of the 50.
    const group = await client.groupConsumer("billing", ["orders"], {
      reset: "earliest",
      autoCommit: false,
    });
    for (let i = 0; i < 30; i++) assert.ok((await group.next()) !== null);
    await group.commit();
    text = await (await fetch(`${base}/metrics`)).text();
    samples = parseSamples(text);
    const groupChecked = await promtool(["check", "metrics"], text);
    assert.equal(groupChecked.code, 0, `promtool check metrics failed:\n${groupChecked.out}`);
    assert.equal(
      total(samples, "gregormq_group_lag_messages", {
        group: "billing",
        topic: "orders",
        partition: "0",
      }),
      published - 30,
    );
    assert.equal(total(samples, "gregormq_group_members", { group: "billing" }), 1);
    assert.ok(total(samples, "gregormq_group_generation", { group: "billing" }) >= 1);
    await group.close();
    assert.equal(
      samples.filter((s) => s.name === "gregormq_cluster_members").length,
      0,
      "a single node outside a cluster reports no members",
    );

    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), "ok\n");
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200);
    await ready.body?.cancel();
    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();

    const raw = await Deno.connect({ hostname: "127.0.0.1", port: node.metricsAddr.port });
    await raw.write(new TextEncoder().encode("BLAH\r\n\r\n"));
    const buf = new Uint8Array(1024);
    const n = await raw.read(buf);
    raw.close();
    assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 400 /);
    const after = await fetch(`${base}/healthz`);
    assert.equal(after.status, 200, "the server keeps serving after a bad request");
    await after.body?.cancel();
  } finally {
    await client.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("a replicating node exports Raft gauges that promtool accepts", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-metrics-raft-" });
  const node = await startNode(denoEnv(), {
    port: 0,
    metrics: { port: 0 },
    broker: { dataDir },
    cluster: { port: 0, seeds: [], replicate: true },
  });
  const client = await connect({ port: node.addr.port });
  try {
    // A one-node cluster founds its metadata group at once; the topic waits for its leader.
    for (let tries = 0;; tries++) {
      try {
        await client.admin.createTopic("replicated", { partitions: 2 });
        break;
      } catch (err) {
        if (tries > 100) throw err;
        await denoEnv().clock.sleep(50);
      }
    }
    for (let i = 0; i < 10; i++) {
      await client.publish("replicated", { value: `v${i}`, partition: i % 2 });
    }
    const text = await (await fetch(`http://127.0.0.1:${node.metricsAddr!.port}/metrics`)).text();
    const checked = await promtool(["check", "metrics"], text);
    assert.equal(checked.code, 0, `promtool check metrics failed:\n${checked.out}`);
    const samples = parseSamples(text);
    // Partition groups are named "topic/partition@incarnation".
    const groupOf = (prefix: string) =>
      samples.find((x) => x.name === "gregormq_raft_leader" && x.labels.group?.startsWith(prefix))
        ?.labels.group ?? prefix;
    for (const group of ["__meta", groupOf("replicated/0@"), groupOf("replicated/1@")]) {
      assert.equal(total(samples, "gregormq_raft_leader", { group }), 1, group);
      assert.ok(total(samples, "gregormq_raft_term", { group }) >= 1, group);
    }
    // Five records per partition, each in its own entry after the new leader's no-op.
    const p0 = groupOf("replicated/0@");
    assert.ok(total(samples, "gregormq_raft_applied_index", { group: p0 }) >= 6);
    assert.ok(total(samples, "gregormq_raft_leader_changes_total") >= 3);
    assert.equal(total(samples, "gregormq_under_replicated_partitions"), 0);
  } finally {
    await client.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
