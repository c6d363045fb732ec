// ProducerIds on the real filesystem: ids stay unique when the broker reopens its data directory.

import assert from "node:assert/strict";
import { denoEnv } from "../src/io/deno/mod.ts";
import { readChecked, writeChecked } from "../src/storage/checked_file.ts";
import { ErrorCode } from "../src/protocol/errors.ts";
import { PRODUCER_ID_BLOCK, ProducerIds } from "../src/broker/producer_ids.ts";
import { producerIdsFile } from "../src/storage/layout.ts";

Deno.test("ProducerIds hands out ids unique across reopens, reserving a block durably first", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-pids-" });
  const disk = denoEnv().disk;
  try {
    const seen = new Set<number>();
    const first = new ProducerIds(disk, dir);
    // Concurrent callers never share an id or a block.
    const ids = await Promise.all(Array.from({ length: 10 }, () => first.next()));
    for (const id of ids) seen.add(id);
    assert.equal(seen.size, 10);
    assert.deepEqual(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const saved = JSON.parse(await readChecked(disk, producerIdsFile(dir)));
    assert.equal(saved.nextBlockStart, PRODUCER_ID_BLOCK);
    // A restart (a new instance on the same directory) starts past the whole reserved block.
    const second = new ProducerIds(disk, dir);
    const after = await second.next();
    assert.equal(after, PRODUCER_ID_BLOCK);
    for (let i = 0; i < PRODUCER_ID_BLOCK + 5; i++) {
      const id = await second.next();
      assert.ok(!seen.has(id), `id ${id} was handed out twice`);
      seen.add(id);
    }
    const third = new ProducerIds(disk, dir);
    assert.equal(await third.next(), 3 * PRODUCER_ID_BLOCK);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ProducerIds fails with STORAGE_ERROR on a damaged or invalid reservation file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gregormq-pids-" });
  try {
    const disk = denoEnv().disk;
    await writeChecked(disk, producerIdsFile(dir), `{"nextBlockStart":-4}`);
    await assert.rejects(new ProducerIds(disk, dir).next(), (err: Error & { code?: number }) => {
      assert.equal(err.code, ErrorCode.STORAGE_ERROR);
      assert.match(err.message, /producer_ids\.json.*nextBlockStart is -4/);
      return true;
    });
    // A bit flipped at rest: the checksum catches it.
    await Deno.writeTextFile(
      producerIdsFile(dir),
      (await Deno.readTextFile(producerIdsFile(dir))).replace("-4", "-5"),
    );
    await assert.rejects(new ProducerIds(disk, dir).next(), (err: Error & { code?: number }) => {
      assert.equal(err.code, ErrorCode.STORAGE_ERROR);
      assert.match(err.message, /damaged/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
