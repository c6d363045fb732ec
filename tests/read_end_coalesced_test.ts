// A subscription whose first deliveries arrive in the same read as the SUBSCRIBE response (the
// broker pushes right after answering; TCP may coalesce both). The client must not forget those
// deliveries when the response is handled: a bounded read (`until: "end"`, `readPartition`) then
// never saw its end and hung. A proxy that batches the broker's bytes makes the coalescing certain.

import assert from "node:assert/strict";
import { connect } from "../src/client/mod.ts";
import { denoEnv } from "../src/io/deno/mod.ts";
import { startNode } from "../src/node.ts";

/** How long the proxy gathers the broker's bytes before passing them on in one write. */
const COALESCE_MS = 20;
/** Reads attempted; each must end. */
const READS = 10;
/** Longest one read may take before the test fails instead of hanging. */
const READ_MS_MAX = 5_000;

/** A proxy to `port` that passes the broker's bytes on every COALESCE_MS, gathered in one write. */
function coalescingProxy(port: number): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const forward = async (from: Deno.Conn, to: Deno.Conn): Promise<void> => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        for (let w = 0; w < n;) w += await to.write(buf.subarray(w, n));
      }
    } catch {
      // The other side closed.
    }
    for (const c of [from, to]) if (conns.delete(c)) c.close();
  };
  /** Reads the broker's bytes as they come; a timer writes what gathered in one go. */
  const gather = async (from: Deno.Conn, to: Deno.Conn): Promise<void> => {
    let held: Uint8Array[] = [];
    let writing = Promise.resolve();
    const flush = (): void => {
      const all = new Uint8Array(held.reduce((s, c) => s + c.length, 0));
      let off = 0;
      for (const c of held) {
        all.set(c, off);
        off += c.length;
      }
      held = [];
      writing = writing.then(async () => {
        for (let w = 0; w < all.length;) w += await to.write(all.subarray(w));
      }).catch(() => {});
    };
    const timer = setInterval(() => held.length > 0 && flush(), COALESCE_MS);
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        held.push(buf.slice(0, n));
      }
    } catch {
      // The other side closed.
    }
    clearInterval(timer);
    for (const c of [from, to]) if (conns.delete(c)) c.close();
  };
  void (async () => {
    for await (const client of listener) {
      const broker = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.add(client).add(broker);
      void forward(client, broker);
      void gather(broker, client);
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      listener.close();
      for (const c of conns) c.close();
      conns.clear();
    },
  };
}

Deno.test("readPartition ends when the first deliveries arrive with the SUBSCRIBE response", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "gregormq-coalesced-" });
  const node = await startNode(denoEnv(), { port: 0, broker: { dataDir } });
  const proxy = coalescingProxy(node.addr.port);
  const client = await connect({ port: proxy.port });
  try {
    await client.admin.createTopic("coalesced", { partitions: 1 });
    await client.publish("coalesced", { value: "one" });
    await client.publish("coalesced", { value: "two" });
    for (let i = 0; i < READS; i++) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const read = await Promise.race([
        client.readPartition("coalesced", 0, { from: "earliest" }),
        new Promise<"hung">((r) => (timer = setTimeout(() => r("hung"), READ_MS_MAX))),
      ]);
      clearTimeout(timer);
      assert.notEqual(read, "hung", `read ${i} did not end within ${READ_MS_MAX} ms`);
      assert.deepEqual((read as { offset: number }[]).map((m) => m.offset), [0, 1]);
    }
  } finally {
    await client.close();
    proxy.close();
    await node.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
