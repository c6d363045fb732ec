import assert from "node:assert/strict";
import { ConnectionRefused, ConnectionReset, TimedOut } from "../src/io/errors.ts";
import type { Conn, Env, Listener } from "../src/io/types.ts";
import { readExactly, writeAll } from "../src/io/util.ts";
import { runOnNode } from "./harness.ts";
import { ACCEPT_BACKLOG_MAX, type NetFaults, PIPE_BYTES_MAX, SYN_RTO_MS_FIRST } from "./net.ts";
import { Simulation } from "./simulation.ts";

const PORT = 9000;
const rough: NetFaults = {
  latencyMs: 1,
  jitterMs: 3,
  splitProb: 0.5,
  shortWriteProb: 0.5,
  shortReadProb: 0.5,
};

/** Starts a node "server" that accepts one connection and hands it to `serve`. */
function server(sim: Simulation, serve: (c: Conn, env: Env) => Promise<void>): void {
  sim.addNode({
    name: "server",
    main: async (env) => {
      const l = await env.net.listen({ host: "server", port: PORT });
      const c = await l.accept();
      if (c !== null) await serve(c, env);
    },
  });
}

/** Reads until end of stream or `limit` bytes, whichever first. */
async function drain(c: Conn, limit = Infinity): Promise<number[]> {
  const got: number[] = [];
  const buf = new Uint8Array(333);
  while (got.length < limit) {
    const n = await c.read(buf);
    if (n === null) break;
    got.push(...buf.subarray(0, n));
  }
  return got;
}

Deno.test("SimNetwork keeps bytes in order on a connection despite splits, short writes and jitter", async () => {
  for (let seed = 1; seed <= 10; seed++) {
    const sim = new Simulation(seed, { net: { ...rough } });
    const data = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7) & 0xff);
    let got: number[] = [];
    server(sim, async (c) => void (got = await drain(c)));
    await runOnNode(sim, "client", async (env) => {
      const c = await env.net.connect({ host: "server", port: PORT });
      for (let off = 0; off < data.length; off += 7777) {
        await writeAll(c, data.subarray(off, off + 7777));
      }
      c.close();
    });
    await sim.world.run();
    assert.equal(got.length, data.length, `seed ${seed}`);
    assert.ok(got.every((b, i) => b === data[i]), `seed ${seed}: bytes out of order`);
  }
});

Deno.test("SimNetwork: a partition stops delivery both ways and healing resumes it in order", async () => {
  const sim = new Simulation(2, { net: { ...rough } });
  const atServer: number[] = [];
  server(sim, async (c) => {
    const buf = new Uint8Array(10);
    for (;;) {
      const n = await c.read(buf);
      if (n === null) return;
      atServer.push(...buf.subarray(0, n));
      await writeAll(c, buf.subarray(0, n)); // echo
    }
  });
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    await writeAll(c, new Uint8Array([1, 2, 3]));
    assert.ok(await readExactly(c, new Uint8Array(3)));
    sim.net.partition([["client"], ["server"]]);
    await writeAll(c, new Uint8Array([4, 5]));
    await env.clock.sleep(1000);
    assert.deepEqual(atServer, [1, 2, 3], "nothing crosses a partition");
    sim.net.heal();
    const echo = new Uint8Array(2);
    assert.ok(await readExactly(c, echo));
    assert.deepEqual([...echo], [4, 5]);
    c.close();
  });
  assert.deepEqual(atServer, [1, 2, 3, 4, 5]);
  assert.ok(sim.net.stats.heldSegments > 0);
});

Deno.test("SimNetwork: a one-way partition stops one direction only", async () => {
  const sim = new Simulation(3);
  let serverGot: number[] = [];
  server(sim, async (c) => {
    await writeAll(c, new Uint8Array([9, 9]));
    serverGot = await drain(c, 1);
  });
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    sim.net.block("client", "server");
    await writeAll(c, new Uint8Array([1]));
    const two = new Uint8Array(2);
    assert.ok(await readExactly(c, two), "server to client still flows");
    await env.clock.sleep(500);
    assert.deepEqual(serverGot, [], "client to server is blocked");
    sim.net.heal();
    await env.clock.sleep(500);
    assert.deepEqual(serverGot, [1]);
  });
});

Deno.test("SimNetwork: connecting across a partition times out; without a listener it is refused", async () => {
  const sim = new Simulation(4);
  server(sim, async () => {});
  await runOnNode(sim, "client", async (env) => {
    await env.clock.sleep(1);
    sim.net.partition([["client"], ["server"]]);
    const t0 = env.clock.now();
    await assert.rejects(
      env.net.connect({ host: "server", port: PORT }, { timeoutMs: 250 }),
      TimedOut,
    );
    assert.ok(env.clock.now() - t0 >= 250);
    sim.net.heal();
    await assert.rejects(env.net.connect({ host: "server", port: PORT + 1 }), {
      code: "CONNECTION_REFUSED",
    });
  });
});

Deno.test("SimNetwork: a SYN lost to a partition is sent again, so a connect outliving the partition succeeds", async () => {
  const sim = new Simulation(4);
  server(sim, async (c) => void (await drain(c)));
  await runOnNode(sim, "client", async (env) => {
    await env.clock.sleep(1);
    sim.net.block("client", "server");
    const t0 = env.clock.now();
    const connecting = env.net.connect({ host: "server", port: PORT }, { timeoutMs: 3_000 });
    await env.clock.sleep(200);
    sim.net.heal();
    const c = await connecting;
    const tookMs = env.clock.now() - t0;
    assert.ok(tookMs >= SYN_RTO_MS_FIRST, `no answer before the retransmission: ${tookMs} ms`);
    assert.ok(tookMs < SYN_RTO_MS_FIRST + 100, `the retransmitted SYN got through: ${tookMs} ms`);
    assert.equal(sim.net.stats.synRetries, 1);
    c.close();
  });
});

Deno.test("SimNetwork: a reset fails pending reads on both ends", async () => {
  const sim = new Simulation(5);
  let serverErr: unknown = null;
  server(sim, async (c) => {
    await c.read(new Uint8Array(1)).catch((e) => (serverErr = e));
  });
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    await env.clock.sleep(5);
    const pending = c.read(new Uint8Array(1));
    const conn = sim.net.openConns().find((x) => x.node.name === "client");
    assert.ok(conn);
    sim.net.resetConn(conn);
    await assert.rejects(pending, ConnectionReset);
    await env.clock.sleep(10);
  });
  assert.ok(serverErr instanceof ConnectionReset);
});

Deno.test("SimNetwork: a process crash ends the peer's stream with a FIN, or a RST if it threw unread bytes away", async () => {
  for (const unread of [false, true]) {
    const sim = new Simulation(6);
    server(sim, async (c) => {
      await writeAll(c, new Uint8Array([7, 7]));
      await new Promise(() => {}); // never reads
    });
    const outcome = await runOnNode(sim, "client", async (env) => {
      const c = await env.net.connect({ host: "server", port: PORT });
      if (unread) await writeAll(c, new Uint8Array([1]));
      await env.clock.sleep(5);
      sim.crash(sim.node("server"), "process");
      assert.ok(await readExactly(c, new Uint8Array(2)) || unread);
      return await c.read(new Uint8Array(1)).then((n) => `read ${n}`, (e) => e.name);
    });
    assert.equal(outcome, unread ? "ConnectionReset" : "read null", `unread ${unread}`);
  }
});

Deno.test("SimNetwork: a power loss sends nothing: the peer's reads hang and its writes fill the window", async () => {
  const sim = new Simulation(6);
  server(sim, async (c) => void (await drain(c)));
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    await env.clock.sleep(5);
    sim.crash(sim.node("server"), "power");
    let read = "pending";
    void c.read(new Uint8Array(1)).then((n) => (read = `read ${n}`), (e) => (read = e.name));
    let written = 0;
    void (async () => {
      for (;;) written += await c.write(new Uint8Array(64 * 1024));
    })().catch(() => {});
    await env.clock.sleep(60_000);
    assert.equal(read, "pending");
    assert.equal(written, PIPE_BYTES_MAX, "the window filled, then writes blocked");
    c.close();
  });
});

Deno.test("SimNetwork: once a powered-off host is back, the peer's next bytes bring a RST", async () => {
  const sim = new Simulation(6);
  server(sim, async (c) => void (await drain(c)));
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    await env.clock.sleep(5);
    const reading = c.read(new Uint8Array(1)).then((n) => `read ${n}`, (e) => e.name);
    sim.crash(sim.node("server"), "power", 100);
    await env.clock.sleep(200);
    assert.equal(await c.write(new Uint8Array([1])), 1, "the write is buffered as usual");
    assert.equal(await reading, "ConnectionReset");
    await assert.rejects(c.write(new Uint8Array([2])), ConnectionReset);
  });
  assert.equal(sim.net.stats.rstSent, 1);
});

Deno.test("SimNetwork: a partition keeps a power loss and its RST from the peer until it heals", async () => {
  const sim = new Simulation(6);
  server(sim, async (c) => void (await drain(c)));
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    await env.clock.sleep(5);
    sim.net.partition([["client"], ["server"]]);
    sim.crash(sim.node("server"), "power", 10);
    const reading = c.read(new Uint8Array(1)).then((n) => `read ${n}`, (e) => e.name);
    await env.clock.sleep(50);
    await writeAll(c, new Uint8Array([1]));
    await env.clock.sleep(1000);
    let state = "pending";
    void reading.then((r) => (state = r));
    await env.clock.sleep(0);
    assert.equal(state, "pending", "nothing crosses the partition");
    sim.net.heal();
    assert.equal(await reading, "ConnectionReset");
  });
});

Deno.test("SimNetwork: a close crosses a partition only as segments: the peer writes on until the RST arrives", async () => {
  const sim = new Simulation(1);
  let closed: () => void = () => {};
  const closedNow = new Promise<void>((r) => (closed = r));
  server(sim, async (c) => {
    await closedNow;
    c.close();
  });
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    await env.clock.sleep(5);
    sim.net.partition([["client"], ["server"]]);
    closed();
    await env.clock.sleep(10);
    assert.equal(await c.write(new Uint8Array([1])), 1, "the peer cannot know of the close yet");
    await env.clock.sleep(1000);
    assert.equal(await c.write(new Uint8Array([2])), 1, "still nothing crossed the partition");
    sim.net.heal();
    assert.equal(await c.read(new Uint8Array(1)), null, "the FIN arrives first");
    await env.clock.sleep(100);
    await assert.rejects(c.write(new Uint8Array([3])), ConnectionReset, "then the RST");
  });
});

Deno.test("SimNetwork: connecting to a powered-off or unknown host times out; to a host without the process it is refused", async () => {
  const sim = new Simulation(1);
  server(sim, () => new Promise(() => {}));
  await runOnNode(sim, "client", async (env) => {
    await env.clock.sleep(1);
    const server = sim.node("server");
    for (const host of ["server", "nowhere"]) {
      if (host === "server") server.crash("power");
      const t0 = env.clock.now();
      await assert.rejects(
        env.net.connect({ host, port: PORT }, { timeoutMs: 700 }),
        TimedOut,
        host,
      );
      assert.ok(env.clock.now() - t0 >= 700, host);
    }
    server.start();
    server.crash("process");
    const t0 = env.clock.now();
    await assert.rejects(env.net.connect({ host: "server", port: PORT }), ConnectionRefused);
    assert.ok(env.clock.now() - t0 < 100, "refused after a round trip");
  });
});

Deno.test("SimNetwork: a listener bound to 127.0.0.1 accepts only connections from its own host", async () => {
  const sim = new Simulation(1);
  let accepted = 0;
  sim.addNode({
    name: "server",
    main: async (env) => {
      const l = await env.net.listen({ host: "127.0.0.1", port: PORT });
      assert.deepEqual(l.addr, { host: "127.0.0.1", port: PORT });
      void (async () => {
        while (await l.accept() !== null) accepted++;
      })();
      await env.clock.sleep(10);
      const own = await env.net.connect({ host: "127.0.0.1", port: PORT });
      assert.deepEqual(own.remote, { host: "127.0.0.1", port: PORT });
      await new Promise(() => {});
    },
  });
  await runOnNode(sim, "client", async (env) => {
    await env.clock.sleep(1);
    await assert.rejects(env.net.connect({ host: "server", port: PORT }), ConnectionRefused);
    await env.clock.sleep(100);
  });
  assert.equal(accepted, 1);
});

Deno.test("SimNetwork: the accept backlog limit holds while the listening node is paused", async () => {
  const sim = new Simulation(1);
  const s = sim.addNode({
    name: "server",
    main: async (env) => {
      await env.net.listen({ host: "server", port: PORT });
      await new Promise(() => {});
    },
  });
  sim.world.schedule(1, () => s.pause());
  const counts = await runOnNode(sim, "client", async (env) => {
    await env.clock.sleep(5);
    let ok = 0;
    let refused = 0;
    await Promise.all(
      Array.from(
        { length: 300 },
        () => env.net.connect({ host: "server", port: PORT }).then(() => ok++, () => refused++),
      ),
    );
    return { ok, refused };
  });
  assert.deepEqual(counts, { ok: ACCEPT_BACKLOG_MAX, refused: 300 - ACCEPT_BACKLOG_MAX });
});

Deno.test("SimNetwork: Conn.read with an empty buffer rejects with RangeError, like the real one", async () => {
  const sim = new Simulation(1);
  server(sim, () => new Promise(() => {}));
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    await assert.rejects(c.read(new Uint8Array(0)), RangeError);
    c.close();
  });
});

Deno.test("SimNetwork: heldSegments counts a segment held by several partitions once", async () => {
  const sim = new Simulation(1);
  server(sim, async (c) => void (await drain(c)));
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    sim.net.partition([["client"], ["server"]]);
    await writeAll(c, new Uint8Array([1, 2, 3]));
    await env.clock.sleep(100);
    sim.net.heal();
    sim.net.partition([["client"], ["server"]]);
    await env.clock.sleep(100);
    sim.net.heal();
    await env.clock.sleep(100);
    c.close();
  });
  assert.equal(sim.net.stats.heldSegments, 1);
});

Deno.test("SimNetwork: a dead incarnation's connection and listener never settle, even when a RST arrives", async () => {
  const sim = new Simulation(1);
  server(sim, () => new Promise(() => {}));
  const log: string[] = [];
  let old: { conn: Conn; listener: Listener } | null = null;
  const client = sim.addNode({
    name: "client",
    main: async (env, ctl) => {
      if (ctl.incarnation > 0) {
        await env.clock.sleep(10); // the RST reaches the old end meanwhile
        const { conn, listener } = old!;
        void conn.read(new Uint8Array(1)).then(
          () => log.push("old read"),
          () => log.push("old read"),
        );
        void conn.write(new Uint8Array(1)).then(
          () => log.push("old write"),
          () => log.push("old write"),
        );
        void listener.accept().then(() => log.push("old accept"));
        conn.close();
        listener.close();
        log.push(`incarnation ${ctl.incarnation} ran`);
        return new Promise(() => {});
      }
      const listener = await env.net.listen({ host: "client", port: PORT });
      const conn = await env.net.connect({ host: "server", port: PORT });
      old = { conn, listener };
      void conn.read(new Uint8Array(4)).then(() => log.push("read"), () => log.push("read"));
      return new Promise(() => {});
    },
  });
  await sim.world.run({ untilMs: 10 });
  client.crash("process");
  client.start();
  const serverEnd = sim.net.openConns().find((c) => c.node.name === "server");
  assert.ok(serverEnd);
  sim.net.resetConn(serverEnd);
  await sim.world.run({ untilMs: 1000 });
  assert.deepEqual(log, ["incarnation 1 ran"]);
});

Deno.test("SimNetwork: a RST reaching a paused process fails its read only once it resumes", async () => {
  const sim = new Simulation(1);
  let outcome = "pending";
  const s = sim.addNode({
    name: "server",
    main: async (env) => {
      const l = await env.net.listen({ host: "server", port: PORT });
      const c = await l.accept();
      await c!.read(new Uint8Array(1)).then(() => (outcome = "read"), (e) => (outcome = e.name));
    },
  });
  await runOnNode(sim, "client", async (env) => {
    await env.net.connect({ host: "server", port: PORT });
    await env.clock.sleep(5);
    s.pause();
    const mine = sim.net.openConns().find((c) => c.node.name === "client");
    assert.ok(mine);
    sim.net.resetConn(mine);
    await env.clock.sleep(100);
    assert.equal(outcome, "pending", "a paused process does not run");
    s.resume();
    await env.clock.sleep(1);
    assert.equal(outcome, "ConnectionReset");
  });
});

Deno.test("SimNetwork: writes block when the peer does not read (bounded buffers)", async () => {
  const sim = new Simulation(7);
  let release: () => void = () => {};
  server(sim, async (c) => {
    await new Promise<void>((r) => (release = r));
    await drain(c);
  });
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    let written = 0;
    const big = new Uint8Array(64 * 1024);
    const writer = (async () => {
      for (let i = 0; i < 16; i++) {
        await writeAll(c, big);
        written += big.length;
      }
    })();
    await env.clock.sleep(1000);
    assert.ok(written <= 256 * 1024, `wrote ${written} bytes to a peer that reads nothing`);
    release();
    await writer;
    c.close();
  });
});

Deno.test("SimNetwork: a partition also stops the answering direction until healed", async () => {
  const sim = new Simulation(8);
  server(sim, async (c, env) => {
    await env.clock.sleep(10); // the client partitions the network at t=5
    await writeAll(c, new Uint8Array([8]));
  });
  await runOnNode(sim, "client", async (env) => {
    const c = await env.net.connect({ host: "server", port: PORT });
    await env.clock.sleep(5);
    sim.net.partition([["server"], ["client"]]);
    let got: number | null | "nothing" = "nothing";
    const read = c.read(new Uint8Array(1)).then((n) => (got = n));
    await env.clock.sleep(1000);
    assert.equal(got, "nothing");
    sim.net.heal();
    await read;
    assert.equal(got, 1);
  });
});
