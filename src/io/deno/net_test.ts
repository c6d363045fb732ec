// Pins how DenoNetwork maps the host TCP stack's behaviour onto the seam, beyond the shared
// contract in tests/io_contract.ts: timeouts, error messages and causes, Deno's close quirks.

import assert from "node:assert/strict";
import { BrokenPipe, ConnectionRefused, ConnectionReset, TimedOut } from "../errors.ts";
import type { Conn, Listener } from "../types.ts";
import { DenoNetwork } from "./net.ts";

const HOST = "127.0.0.1";
/** Connections to try while filling a listen backlog; Deno asks for 511, Linux caps at somaxconn. */
const BACKLOG_FILL_CONNECTIONS_MAX = 4096;
/** 64 KiB writes to try before expecting a write to a closed peer to have failed. */
const WRITES_TO_CLOSED_PEER_MAX = 1000;

Deno.test("DenoNetwork.connect rejects with TimedOut when nobody answers in time", async () => {
  // A listener that never accepts: once its backlog is full, Linux drops further SYNs, so the
  // next connect hangs exactly as it would towards a dead host.
  const net = new DenoNetwork();
  const listener = await net.listen({ host: HOST, port: 0 });
  const conns: Conn[] = [];
  try {
    for (let i = 0; i < BACKLOG_FILL_CONNECTIONS_MAX; i++) {
      try {
        conns.push(await net.connect(listener.addr, { timeoutMs: 150 }));
      } catch (err) {
        assert.ok(err instanceof TimedOut, `expected TimedOut, got ${err}`);
        assert.match(err.message, /^Cannot connect to 127\.0\.0\.1:\d+: no answer within 150 ms$/);
        return;
      }
    }
    assert.fail(`${BACKLOG_FILL_CONNECTIONS_MAX} connections never filled the backlog`);
  } finally {
    for (const conn of conns) conn.close();
    listener.close();
  }
});

Deno.test("DenoNetwork.connect refusal names the address and keeps Deno's error", async () => {
  const net = new DenoNetwork();
  const listener = await net.listen({ host: HOST, port: 0 });
  const { port } = listener.addr;
  listener.close();
  const err = await net.connect({ host: HOST, port }).catch((e) => e);
  assert.ok(err instanceof ConnectionRefused);
  assert.equal(err.message, `Cannot connect to 127.0.0.1:${port}: connection refused`);
  assert.ok(err.cause instanceof Deno.errors.ConnectionRefused);
});

Deno.test("DenoConn.write to a peer that closed rejects with BrokenPipe or ConnectionReset", async () => {
  await withPair(async (client, server) => {
    server.close();
    const chunk = new Uint8Array(64 << 10);
    // The first writes only fill kernel buffers; the failure shows once the peer's close lands.
    for (let i = 0; i < WRITES_TO_CLOSED_PEER_MAX; i++) {
      try {
        await client.write(chunk);
      } catch (err) {
        assert.ok(err instanceof BrokenPipe || err instanceof ConnectionReset, `got ${err}`);
        return;
      }
    }
    assert.fail("writes to a closed peer never failed");
  });
});

Deno.test("DenoConn.read sees end of stream, not a reset, when the peer closes with unread data", async () => {
  // Deno shuts down the write side (FIN) before closing, so the reset that unread data provokes
  // arrives after the end of stream; callers must treat both as "peer gone".
  await withPair(async (client, server) => {
    await client.write(new Uint8Array(100));
    const pending = client.read(new Uint8Array(10));
    server.close();
    assert.equal(await pending, null);
    assert.equal(await client.read(new Uint8Array(10)), null);
  });
});

Deno.test("DenoConn.close and DenoListener.close are idempotent", async () => {
  await withPair((client, server) => {
    client.close();
    client.close();
    server.close();
    server.close();
  });
});

Deno.test("DenoConn.read rejects an empty buffer as a programmer error", async () => {
  await withPair(async (client) => {
    await assert.rejects(client.read(new Uint8Array(0)), RangeError);
  });
});

Deno.test("DenoNetwork.resolve returns an IP literal unchanged", async () => {
  const net = new DenoNetwork();
  assert.deepEqual(await net.resolve("10.1.2.3"), ["10.1.2.3"]);
  assert.deepEqual(await net.resolve("::1"), ["::1"]);
});

async function withPair(
  body: (client: Conn, server: Conn) => Promise<void> | void,
): Promise<void> {
  const net = new DenoNetwork();
  const listener: Listener = await net.listen({ host: HOST, port: 0 });
  const [client, server] = await Promise.all([net.connect(listener.addr), listener.accept()]);
  assert.ok(server);
  try {
    await body(client, server);
  } finally {
    client.close();
    server.close();
    listener.close();
    listener.close();
  }
}
