// The codec libraries load on first need (they are the slowest modules to load at start-up). In a
// fresh process that has not loaded them, a broker and a client still produce and consume every
// codec: the first compressed batch waits for the load, and nothing is reordered or lost.

import assert from "node:assert/strict";

const SCRIPT = `
import { codecsLoaded } from "./src/protocol/codecs.ts";
import { encodeBatch } from "./src/protocol/batch.ts";
import { startNode } from "./src/node.ts";
import { denoEnv } from "./src/io/deno/mod.ts";
import { connect } from "./src/client/connect.ts";

const report = {};
report.loadedAtStart = codecsLoaded();
try {
  encodeBatch([{ value: new Uint8Array(8), timestamp: 0 }], { codec: 3 });
  report.encodeBeforeLoad = "ok";
} catch (err) {
  report.encodeBeforeLoad = err.name;
}
const dataDir = await Deno.makeTempDir();
const node = await startNode(denoEnv(), { port: 0, broker: { dataDir } });
report.loadedAfterBrokerStart = codecsLoaded();
const client = await connect({ port: node.addr.port });
const topic = "lazy";
await client.admin.createTopic(topic, { configs: { persistence: "memory" } });
const sub = await client.subscribe(topic, { from: "earliest", autoAck: true });
const count = 300;
const sends = [];
for (const compression of ["lz4", "snappy", "gzip", "zstd"]) {
  const producer = client.producer({ compression, lingerMs: 0, batchRecordsMax: 7 });
  for (let i = 0; i < count; i++) {
    sends.push(producer.send(topic, { value: compression + ":" + i }));
  }
}
const offsets = await Promise.all(sends);
// Each producer's messages keep their order (producers do not order among themselves).
report.offsetsInOrder = [0, 1, 2, 3].every((p) =>
  offsets.slice(p * count, (p + 1) * count).every((o, i, all) => i === 0 || o > all[i - 1])
) && new Set(offsets).size === offsets.length;
const seen = [];
while (seen.length < offsets.length) seen.push((await sub.next()).text());
report.receivedInOrder = ["lz4", "snappy", "gzip", "zstd"].every((codec) =>
  seen.filter((t) => t.startsWith(codec + ":")).join() ===
    Array.from({ length: count }, (_, i) => codec + ":" + i).join()
);
report.loadedAtEnd = codecsLoaded();
await client.close();
await node.close();
await Deno.remove(dataDir, { recursive: true });
console.log(JSON.stringify(report));
`;

Deno.test("a fresh process loads the codecs on the first compressed batch and keeps each order", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", SCRIPT],
    cwd: root,
    env: { NO_COLOR: "1" },
  }).output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, err);
  const report = JSON.parse(new TextDecoder().decode(stdout).trim().split("\n").pop()!);
  assert.deepEqual(report, {
    loadedAtStart: false,
    encodeBeforeLoad: "CodecsNotLoaded",
    loadedAfterBrokerStart: false,
    offsetsInOrder: true,
    receivedInOrder: true,
    loadedAtEnd: true,
  });
});
