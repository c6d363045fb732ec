// A SUBSCRIBE response and the first deliveries arriving in one read, over real loopback TCP: a
// proxy between client and broker holds the broker's bytes and passes them on in one write every
// COALESCE_MS, as a busy network or a cluster node that answers and delivers at once does. The
// client used to take the deliveries first and then, in the response's continuation, move its
// next expected offset back to the start: a bounded read never saw its end (found by
// tests/multihost_test.ts, where it stalled `client.readPartition()` after a partition).

import assert from "node:assert/strict";
import { connect } from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { startNode } from "../src/node.ts";

/** How long the proxy gathers the broker's bytes before it writes them on, ms. */
const COALESCE_MS = 100;
/** A read that has not ended after this long failed, ms. */
const READ_MS_MAX = 10_000;
const MESSAGES = 25;

/** Closes `c` unless it is closed already. */
function shut(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // Closed by the other direction's pipe already.
  }
}

/** Copies `from` to `to` as it arrives, until either ends. */
async function pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await from.read(buf).catch(() => null);
    if (n === null) return;
    let off = 0;
    while (off < n) off += await to.write(buf.subarray(off, n));
  }
}

/** Reads `from` continuously and writes what gathered to `to` in one write every COALESCE_MS. */
async function coalesce(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const held: Uint8Array[] = [];
  let open = true;
  const reading = (async () => {
    for (;;) {
      const buf = new Uint8Array(64 * 1024);
      const n = await from.read(buf).catch(() => null);
      if (n === null) break;
      held.push(buf.slice(0, n));
    }
    open = false;
  })();
  while (open || held.length > 0) {
    await new Promise((r) => setTimeout(r, COALESCE_MS));
    if (held.length === 0) continue;
    const out = new Uint8Array(held.reduce((s, b) => s + b.length, 0));
    let at = 0;
    for (const b of held.splice(0)) {
      out.set(b, at);
      at += b.length;
    }
    let off = 0;
    while (off < out.length) {
      const n = await to.write(out.subarray(off)).catch(() => null);
      if (n === null) return;
      off += n;
    }
  }
  await reading;
}

Deno.test("readPartition() ends when the SUBSCRIBE response and deliveries share one read", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-coalesced-" });
  const node = await startNode(denoEnv(), { port: 0, broker: { dataDir } });
  const proxy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const client of proxy) {
      const broker = await Deno.connect({ hostname: "127.0.0.1", port: node.addr.port });
      conns.push(client, broker);
      void pipe(client, broker).finally(() => shut(broker));
      void coalesce(broker, client).finally(() => shut(client));
    }
  })().catch(() => {});
  const direct = await connect({ port: node.addr.port });
  const viaProxy = await connect({ port: (proxy.addr as Deno.NetAddr).port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const producer = direct.producer();
    await Promise.all(
      Array.from({ length: MESSAGES }, (_, i) => producer.send("t", { value: `m${i}` })),
    );
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`readPartition did not end within ${READ_MS_MAX} ms`)),
        READ_MS_MAX,
      );
    });
    for (let round = 0; round < 3; round++) {
      const read = await Promise.race([viaProxy.readPartition("t", 0), stalled]);
      assert.deepEqual(
        read.map((m) => `${m.offset}:${m.text()}`),
        Array.from({ length: MESSAGES }, (_, i) => `${i}:m${i}`),
      );
    }
  } finally {
    clearTimeout(timer);
    await viaProxy.close();
    await direct.close();
    proxy.close();
    conns.forEach(shut);
    await serving;
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
