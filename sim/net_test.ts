import assert from "node:assert/strict";
import { ConnectionReset, TimedOut } from "../src/io/errors.ts";
import type { Conn, Env } from "../src/io/types.ts";
import { readExactly, writeAll } from "../src/io/util.ts";
import { runOnNode } from "./harness.ts";
import type { NetFaults } from "./net.ts";
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

Deno.test("SimNetwork: a power loss resets the peer's connection; a process crash ends its stream", async () => {
  for (const kind of ["power", "process"] as const) {
    const sim = new Simulation(6);
    server(sim, async (c) => void (await drain(c)));
    const outcome = await runOnNode(sim, "client", async (env) => {
      const c = await env.net.connect({ host: "server", port: PORT });
      await env.clock.sleep(5);
      sim.crash(sim.node("server"), kind);
      return await c.read(new Uint8Array(1)).then((n) => `read ${n}`, (e) => e.name);
    });
    assert.equal(outcome, kind === "power" ? "ConnectionReset" : "read null", kind);
  }
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
