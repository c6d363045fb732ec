import assert from "node:assert/strict";
import fc from "fast-check";
import { SeededRandom } from "../io/prng.ts";
import {
  Codec,
  CODEC_NAMES,
  type CodecId,
  codecName,
  compress,
  CompressionError,
  decompress,
} from "./compression.ts";

const MiB = 1 << 20;
const ALL: readonly CodecId[] = CODEC_NAMES.map((name) => Codec[name]);
const REAL: readonly CodecId[] = ALL.filter((id) => id !== Codec.none);

function text(bytesCount: number): Uint8Array {
  const line = new TextEncoder().encode("offset=42 topic=orders key=customer-17 value=shipped\n");
  const out = new Uint8Array(bytesCount);
  for (let i = 0; i < bytesCount; i++) out[i] = line[i % line.length]!;
  return out;
}

function random(bytesCount: number, seed: number): Uint8Array {
  const rng = new SeededRandom(seed);
  const out = new Uint8Array(bytesCount);
  for (let i = 0; i < bytesCount; i++) out[i] = rng.u32() & 0xff;
  return out;
}

/** Runs `fn`, which must throw a CompressionError for codec `id`. */
function assertRejects(id: CodecId, fn: () => unknown, what: string): void {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof CompressionError, `${what}: expected CompressionError, got ${err}`);
    assert.equal(err.codec, codecName(id));
    return true;
  });
}

/**
 * Decompresses hostile input, which must give a CompressionError or output within the limit.
 * Returns whether it decoded.
 */
function decompressHostile(id: CodecId, bytes: Uint8Array, outputBytesMax: number): boolean {
  try {
    const out = decompress(id, bytes, outputBytesMax);
    assert.ok(out.length <= outputBytesMax);
    return true;
  } catch (err) {
    if (!(err instanceof CompressionError)) throw err;
    assert.equal(err.codec, codecName(id));
    return false;
  }
}

Deno.test("codecName() names every codec id in order and returns null for an unknown id", () => {
  assert.deepEqual(CODEC_NAMES, ["none", "gzip", "snappy", "lz4", "zstd"]);
  for (const name of CODEC_NAMES) assert.equal(codecName(Codec[name]), name);
  for (const id of [5, 6, 7, -1, 1.5, NaN, 2 ** 32]) assert.equal(codecName(id), null);
});

Deno.test("decompress() inverts compress() for every codec on empty, tiny, repetitive and random input", () => {
  const inputs = [new Uint8Array(0), new Uint8Array([0x2a]), text(MiB), random(64 * 1024, 7)];
  for (const id of ALL) {
    for (const input of inputs) {
      const packed = compress(id, input);
      const out = decompress(id, packed, input.length);
      assert.equal(
        Object.getPrototypeOf(packed),
        Uint8Array.prototype,
        `${codecName(id)} compress`,
      );
      assert.equal(Object.getPrototypeOf(out), Uint8Array.prototype, `${codecName(id)} decompress`);
      assert.deepEqual(out, input, `${codecName(id)} on ${input.length} bytes`);
    }
  }
});

Deno.test("decompress() inverts compress() for arbitrary bytes with every codec", () => {
  for (const id of ALL) {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (input) => {
        assert.deepEqual(decompress(id, compress(id, input), input.length), input);
      }),
      { numRuns: 200 },
    );
  }
});

Deno.test("compress() shrinks compressible data with every real codec", () => {
  const input = text(MiB);
  for (const id of REAL) {
    const packed = compress(id, input);
    assert.ok(packed.length < input.length / 10, `${codecName(id)}: ${packed.length} bytes`);
  }
});

Deno.test("decompress() of random garbage throws CompressionError for every codec", () => {
  for (const id of REAL) {
    let rejected = 0;
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 512 }), (garbage) => {
        rejected += decompressHostile(id, garbage, MiB) ? 0 : 1;
      }),
      { numRuns: 300 },
    );
    // A few random byte strings are valid snappy (about 1 in 70,000), so allow for luck.
    assert.ok(rejected >= 295, `${codecName(id)} rejected only ${rejected} of 300`);
  }
});

Deno.test("decompress() of corrupted compressed data throws CompressionError or stays in the limit", () => {
  const arbitrary = fc.record({
    input: fc.uint8Array({ maxLength: 1024 }),
    edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
      minLength: 1,
      maxLength: 4,
    }),
  });
  for (const id of REAL) {
    fc.assert(
      fc.property(arbitrary, ({ input, edits }) => {
        const packed = compress(id, input).slice();
        for (const [at, value] of edits) packed[at % packed.length] = value;
        decompressHostile(id, packed, 4096);
      }),
      { numRuns: 300 },
    );
  }
});

Deno.test("decompress() rejects every truncation of compressed data", () => {
  const input = new Uint8Array([...text(3000), ...random(500, 11)]);
  for (const id of REAL) {
    const packed = compress(id, input);
    for (let cut = 0; cut < packed.length; cut++) {
      assertRejects(
        id,
        () => decompress(id, packed.subarray(0, cut), input.length),
        `${codecName(id)} cut to ${cut} of ${packed.length} bytes`,
      );
    }
  }
});

Deno.test("decompress() rejects compressed data followed by trailing garbage", () => {
  const input = text(1000);
  for (const id of REAL) {
    const packed = compress(id, input);
    const padded = new Uint8Array([...packed, 0x01, 0x02]);
    assertRejects(id, () => decompress(id, padded, MiB), `${codecName(id)} with trailing bytes`);
  }
});

Deno.test("decompress() enforces outputBytesMax for every codec", () => {
  const zeros = new Uint8Array(MiB);
  for (const id of ALL) {
    const packed = compress(id, zeros);
    assertRejects(id, () => decompress(id, packed, 1000), `${codecName(id)} over 1000`);
    assertRejects(id, () => decompress(id, packed, MiB - 1), `${codecName(id)} one byte over`);
    assertRejects(id, () => decompress(id, packed, 0), `${codecName(id)} over 0`);
    assert.equal(decompress(id, packed, MiB).length, MiB);
  }
  for (const id of ALL) {
    const one = compress(id, new Uint8Array([1]));
    assertRejects(id, () => decompress(id, one, 0), `${codecName(id)} of 1 byte over 0`);
    assert.deepEqual(decompress(id, compress(id, new Uint8Array(0)), 0), new Uint8Array(0));
  }
});

Deno.test("decompress() rejects a declared size over the limit before allocating it", () => {
  // Each declares 4 GiB - 1 of output in a handful of bytes.
  const snappyBomb = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x61]);
  const lz4Bomb = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x10, 0x61]);
  const zstdBomb = new Uint8Array([
    0x28,
    0xb5,
    0x2f,
    0xfd,
    0xa0,
    0xff,
    0xff,
    0xff,
    0xff,
    0x01,
    0,
    0,
  ]);
  for (
    const [id, bomb] of [[Codec.snappy, snappyBomb], [Codec.lz4, lz4Bomb], [
      Codec.zstd,
      zstdBomb,
    ]] as const
  ) {
    assert.throws(() => decompress(id, bomb, Number.MAX_SAFE_INTEGER), (err) => {
      assert.ok(err instanceof CompressionError);
      assert.match(err.message, /over the limit of 2147483647/);
      return true;
    });
  }
});

Deno.test("decompress() rejects a snappy literal whose length reads as negative instead of looping", () => {
  // A 4-byte literal length of 0xfffffffa; snappyjs alone steps back to this tag forever.
  const looping = new Uint8Array([0x05, 0xfc, 0xfa, 0xff, 0xff, 0xff]);
  assertRejects(Codec.snappy, () => decompress(Codec.snappy, looping, MiB), "looping literal");
});

Deno.test("decompress() rejects a snappy stream shorter than its declared length", () => {
  // Declares 10 bytes but holds one literal byte; snappyjs alone pads the rest with zeros.
  const short = new Uint8Array([0x0a, 0x00, 0x61]);
  assertRejects(Codec.snappy, () => decompress(Codec.snappy, short, MiB), "short stream");
});

Deno.test("decompress() rejects a zstd frame cut inside a block", () => {
  // node:zlib alone returns whatever it decoded so far, here nothing, without an error.
  const packed = compress(Codec.zstd, text(10_000));
  const cut = packed.subarray(0, packed.length - 4);
  assertRejects(Codec.zstd, () => decompress(Codec.zstd, cut, MiB), "cut zstd frame");
});

Deno.test("decompress() decodes every zstd frame, skipping skippable ones", () => {
  // node:zlib alone decodes only the first frame: here [1, 2, 3], or nothing after a skippable one.
  const first = compress(Codec.zstd, new Uint8Array([1, 2, 3]));
  const second = compress(Codec.zstd, new Uint8Array([4, 5]));
  const skippable = new Uint8Array([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9]);
  const frames = new Uint8Array([...skippable, ...first, ...skippable, ...second]);
  assert.deepEqual(decompress(Codec.zstd, frames, 5), new Uint8Array([1, 2, 3, 4, 5]));
  assertRejects(Codec.zstd, () => decompress(Codec.zstd, frames, 4), "frames over the limit");
  assertRejects(Codec.zstd, () => decompress(Codec.zstd, skippable, 5), "no real frame");
});

Deno.test("decompress() still decodes lz4 after corrupt lz4 input", () => {
  const input = text(5000);
  const packed = compress(Codec.lz4, input);
  const rng = new SeededRandom(3);
  for (let i = 0; i < 2000; i++) {
    const bad = packed.slice();
    for (let k = 0; k < 3; k++) bad[rng.int(0, bad.length)] = rng.u32() & 0xff;
    decompressHostile(Codec.lz4, bad, input.length);
    decompressHostile(Codec.lz4, bad.subarray(0, rng.int(0, bad.length)), input.length);
  }
  assert.deepEqual(decompress(Codec.lz4, packed, input.length), input);
});

Deno.test("decompress(none) returns the bytes unchanged within the limit", () => {
  const input = text(100);
  assert.equal(compress(Codec.none, input), input);
  assert.equal(decompress(Codec.none, input, 100), input);
  assertRejects(Codec.none, () => decompress(Codec.none, input, 99), "none over limit");
});

Deno.test("compress() and decompress() refuse an unknown codec id or a bad limit", () => {
  assert.throws(() => compress(5 as CodecId, new Uint8Array(1)), RangeError);
  assert.throws(() => decompress(7 as CodecId, new Uint8Array(1), 10), RangeError);
  for (const max of [-1, 1.5, NaN, Infinity]) {
    assert.throws(() => decompress(Codec.gzip, new Uint8Array(1), max), RangeError);
  }
});
