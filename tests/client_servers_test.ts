// A client given several brokers (`servers`) over real loopback TCP: it skips one that does not
// answer, and when the broker it talks to goes away it carries on with the next one.

import assert from "node:assert/strict";
import { connect, ErrorCode, GregorError } from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { type RunningNode, startNode } from "../src/node.ts";
import { freePort, spawnBroker } from "./_broker_process.ts";

const env = denoEnv();

async function broker(): Promise<{ node: RunningNode; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-servers-" });
  return { node: await startNode(env, { port: 0, broker: { dataDir: dir } }), dir };
}

async function stop(b: { node: RunningNode; dir: string }): Promise<void> {
  await b.node.close().catch(() => {});
  await Deno.remove(b.dir, { recursive: true }).catch(() => {});
}

Deno.test("a client with several servers skips a dead one and fails over to the next", async () => {
  const a = await broker();
  const b = await broker();
  const dead = freePort(); // nothing listens there
  const servers = [dead, a.node.addr.port, b.node.addr.port].map((p) => `127.0.0.1:${p}`);
  const client = await connect({ servers, connectTimeoutMs: 10_000 });
  try {
    // B alone has this topic: listing it tells which broker the client talks to.
    const onB = await connect({ port: b.node.addr.port });
    await onB.admin.createTopic("on-b", { partitions: 1 });
    await onB.close();
    await client.admin.createTopic("on-a", { partitions: 1 });
    assert.deepEqual((await client.admin.listTopics()).map((t) => t.name), ["on-a"]);

    await a.node.close();
    const deadline = Date.now() + 10_000;
    let names: string[] = [];
    while (Date.now() < deadline) {
      try {
        names = (await client.admin.listTopics()).map((t) => t.name);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50)); // the request in flight when A went
      }
    }
    assert.deepEqual(names, ["on-b"], "after A went away the client talks to B");
    assert.ok((await client.publish("on-b", { value: "x" })) >= 0);
  } finally {
    await client.close();
    await stop(a);
    await stop(b);
  }
});

Deno.test("a server address that is not host:port is refused with INVALID_REQUEST", async () => {
  for (const bad of ["localhost", ":7070", "127.0.0.1:0", "127.0.0.1:x", "127.0.0.1:70000"]) {
    await assert.rejects(
      connect({ servers: [bad], connectTimeoutMs: 1_000 }),
      (err: unknown) => err instanceof GregorError && err.code === ErrorCode.INVALID_REQUEST,
      bad,
    );
  }
});

Deno.test("a connection to a leader's node that refuses fails at once when refusalEndsDial is set, and waits out its connect timeout otherwise", async () => {
  const { ClientConnection } = await import("../src/client/connection.ts");
  const dead = freePort(); // nothing listens there: a node whose process died
  const opts = {
    host: "127.0.0.1",
    port: dead,
    servers: [],
    clientId: "refusal-test",
    credential: null,
    scram: null,
    tls: null,
    requestTimeoutMs: 10_000,
    reconnectBackoffMsMin: 50,
    reconnectBackoffMsMax: 200,
    connectTimeoutMs: 3_000,
    requestsInFlightMax: 16,
    heartbeatMs: 0,
    onStateChange: () => {},
    env,
  };
  for (const refusalEndsDial of [true, false]) {
    const c = new ClientConnection({ ...opts, refusalEndsDial });
    const started = Date.now();
    await assert.rejects(c.connect());
    const ms = Date.now() - started;
    c.close();
    if (refusalEndsDial) assert.ok(ms < 1_000, `a refused connect took ${ms} ms to fail`);
    else assert.ok(ms >= 2_500, `without the option the dial gave up after ${ms} ms`);
  }
});

Deno.test("a subscribing client keeps reconnecting past its connect timeout until the broker is back, and reports each state", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-reconnect-" });
  let node = await startNode(env, { port: 0, broker: { dataDir: dir } });
  const port = node.addr.port;
  const states: string[] = [];
  const client = await connect({
    port,
    connectTimeoutMs: 500, // a round of reconnecting gives up quickly; the client goes on
    reconnectBackoffMsMax: 200,
    onStateChange: (state) => states.push(state),
  });
  try {
    await client.admin.createTopic("back", { partitions: 1 });
    const sub = await client.subscribe("back", { from: "earliest" });
    const first = sub[Symbol.asyncIterator]();
    await node.close();
    // Gone for several connect timeouts: an older client gave up for good after the first.
    await new Promise((r) => setTimeout(r, 2_000));
    node = await startNode(env, { port, broker: { dataDir: dir } });
    const publisher = await connect({ port });
    await publisher.publish("back", { value: "after the outage" });
    await publisher.close();
    const got = await Promise.race([
      first.next(),
      new Promise<"late">((r) => setTimeout(() => r("late"), 10_000)),
    ]);
    assert.notEqual(got, "late", `no delivery after the broker came back; states ${states}`);
    assert.equal((got as IteratorResult<{ text(): string }>).value.text(), "after the outage");
    await sub.close();
  } finally {
    await client.close();
    await node.close().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  assert.deepEqual(states, ["connected", "disconnected", "reconnecting", "connected", "closed"]);
});

Deno.test("a broker that falls silent (SIGSTOP) with requests waiting is dropped after the heartbeat interval, and the client goes on at the next", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-silent-" });
  const silent = await spawnBroker(["--port", String(freePort()), "--data-dir", dir]);
  const b = await broker();
  const servers = [silent.listen.listen, `127.0.0.1:${b.node.addr.port}`];
  const client = await connect({ servers }); // the default heartbeatMs, 2000
  try {
    await client.admin.ping();
    silent.child.kill("SIGSTOP");
    const started = Date.now();
    await assert.rejects(client.admin.listTopics(), /No answer from the broker for 2000 ms/);
    const tookMs = Date.now() - started;
    // Idle, a connection is pinged after 2000 ms of silence and dropped 2000 ms later; with a
    // request waiting, after half that each.
    assert.ok(tookMs < 3_000, `the silent broker was dropped after ${tookMs} ms`);
    await client.admin.ping(); // at the next server
  } finally {
    await client.close();
    silent.child.kill("SIGKILL");
    await silent.child.status;
    await stop(b);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
