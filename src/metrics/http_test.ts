import assert from "node:assert/strict";
import { denoEnv } from "../io/deno/mod.ts";
import type { Addr } from "../io/types.ts";
import { writeAll } from "../io/util.ts";
import { CONNECTIONS_MAX, HttpServer, REQUEST_BYTES_MAX } from "./http.ts";

/** Sends `request` raw and returns the whole response the server wrote before closing. */
async function exchange(addr: Addr, request: Uint8Array | string): Promise<string> {
  const env = denoEnv();
  const conn = await env.net.connect(addr);
  try {
    await writeAll(conn, typeof request === "string" ? new TextEncoder().encode(request) : request);
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  } finally {
    conn.close();
  }
}

async function withServer(
  ready: boolean,
  body: (addr: Addr) => Promise<void>,
): Promise<void> {
  const server = await HttpServer.start(denoEnv(), { host: "127.0.0.1", port: 0 }, {
    ready: () => ready,
    metrics: () => Promise.resolve({ status: 200, contentType: "text/plain", body: "m 1\n" }),
  });
  try {
    await body(server.addr);
  } finally {
    await server.close();
  }
}

Deno.test("HttpServer answers /healthz, /readyz and /metrics, 404 elsewhere, with Connection: close", async () => {
  await withServer(false, async (addr) => {
    const health = await exchange(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(health, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(health, /\r\nConnection: close\r\n/);
    assert.match(health, /\r\n\r\nok\n$/);
    assert.match(await exchange(addr, "GET /readyz HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 503 /);
    assert.match(await exchange(addr, "GET /metrics HTTP/1.0\r\n\r\n"), /\r\n\r\nm 1\n$/);
    assert.match(await exchange(addr, "GET /nope HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 404 /);
    assert.match(await exchange(addr, "POST /metrics HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 405 /);
  });
  await withServer(true, async (addr) => {
    assert.match(await exchange(addr, "GET /readyz HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 200 /);
  });
});

Deno.test("HttpServer answers garbage and oversized request heads with 400 and keeps serving", async () => {
  await withServer(true, async (addr) => {
    assert.match(await exchange(addr, "\x00\xff garbage\r\n\r\n"), /^HTTP\/1\.1 400 /);
    // Exactly one byte over the limit and no blank line: the server has read all of it when it
    // answers, so closing does not reset the connection under the response.
    const head = "GET /metrics HTTP/1.1\r\nX: ";
    const huge = head + "a".repeat(REQUEST_BYTES_MAX + 1 - head.length);
    assert.match(await exchange(addr, huge), /^HTTP\/1\.1 400 /);
    assert.match(await exchange(addr, "GET /healthz HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 200 /);
  });
});

Deno.test("HttpServer at CONNECTIONS_MAX closes the oldest connection still sending its head, so /healthz answers", async () => {
  const env = denoEnv();
  const server = await HttpServer.start(env, { host: "127.0.0.1", port: 0 }, {
    ready: () => true,
    metrics: () => Promise.resolve({ status: 200, contentType: "text/plain", body: "m 1\n" }),
  });
  const slow = [];
  try {
    for (let i = 0; i < CONNECTIONS_MAX; i++) {
      const conn = await env.net.connect(server.addr);
      await writeAll(conn, new TextEncoder().encode("GET /me"));
      slow.push(conn);
    }
    const health = await exchange(server.addr, "GET /healthz HTTP/1.1\r\n\r\n");
    assert.match(health, /^HTTP\/1\.1 200 OK\r\n/);
    assert.equal(server.evicted, 1);
    // The first slow client was the one cut off: its read ends (or is reset) without an answer.
    assert.equal(await slow[0]!.read(new Uint8Array(16)).catch(() => null), null);
  } finally {
    for (const c of slow) c.close();
    await server.close();
  }
});
