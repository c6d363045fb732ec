import assert from "node:assert/strict";
import { encodeBatch, readBatchHeader } from "../protocol/batch.ts";
import { MalformedError } from "../protocol/errors.ts";
import { MemoryLog } from "../storage/mod.ts";
import {
  answerFetch,
  decodeFetchReply,
  decodeFetchRequest,
  encodeFetchReply,
  encodeFetchRequest,
} from "./replica_fetch.ts";

async function logOf(batches: number, retentionBytes = Infinity): Promise<MemoryLog> {
  const log = new MemoryLog({ retentionBytes });
  for (let i = 0; i < batches; i++) {
    const b = encodeBatch([{ value: new TextEncoder().encode(`v${i}`), timestamp: i }]);
    await log.append(b, readBatchHeader(b));
  }
  return log;
}

Deno.test("fetch request and reply round-trip, and malformed ones are refused", () => {
  const req = { id: 7, fromOffset: 123_456_789_012, bytesMax: 1 << 20 };
  assert.deepEqual(decodeFetchRequest(encodeFetchRequest(req)), req);
  const reply = {
    id: 7,
    status: "failed" as const,
    logStartOffset: 42,
    bytes: Uint8Array.of(1, 2, 3),
  };
  assert.deepEqual(decodeFetchReply(encodeFetchReply(reply)), reply);
  const good = encodeFetchRequest(req);
  assert.throws(() => decodeFetchRequest(good.subarray(0, good.length - 1)), MalformedError);
  assert.throws(() => decodeFetchRequest(Uint8Array.of(...good, 0)), MalformedError);
  assert.throws(() => decodeFetchReply(good), MalformedError, "a request is not a reply");
  const bad = encodeFetchReply(reply);
  bad[5] = 9; // an unknown status
  assert.throws(() => decodeFetchReply(bad), MalformedError);
});

Deno.test("answerFetch serves batches from the offset asked, at most the bytes asked, and says where the log starts", async () => {
  const log = await logOf(50);
  const all = await answerFetch(log, { id: 1, fromOffset: 10, bytesMax: 1 << 20 });
  assert.equal(all.status, "ok");
  assert.equal(readBatchHeader(all.bytes).baseOffset, 10);
  const small = await answerFetch(log, { id: 2, fromOffset: 10, bytesMax: 100 });
  assert.ok(small.bytes.length > 0 && small.bytes.length < all.bytes.length, "one batch at least");
  const end = await answerFetch(log, { id: 3, fromOffset: 50, bytesMax: 1 << 20 });
  assert.deepEqual([end.status, end.bytes.length], ["ok", 0]);
  assert.equal(
    (await answerFetch(undefined, { id: 4, fromOffset: 0, bytesMax: 1 })).status,
    "absent",
  );
  const trimmed = await logOf(50, 400);
  const before = await answerFetch(trimmed, { id: 5, fromOffset: 0, bytesMax: 1 << 20 });
  assert.deepEqual([before.status, before.bytes.length], ["ok", 0]);
  assert.equal(before.logStartOffset, trimmed.logStartOffset);
  assert.ok(before.logStartOffset > 0);
});
