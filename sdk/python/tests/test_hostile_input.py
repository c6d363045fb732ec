"""Bytes from a broker (or a disk, or a proxy) that are not what they should be end in a
GregorError, never in another exception: every golden frame, mutated at random (a seeded,
bounded run), decodes or is refused cleanly."""

from __future__ import annotations

import random

from test_golden import CASES, golden_bytes

from gregormq.batch import decode_batches
from gregormq.errors import GregorError
from gregormq.protocol import HEADER_BYTES, decode_frame, decode_payload, schema_for

MUTATIONS_PER_CASE = 300


def mutate(rng: random.Random, b: bytes) -> bytes:
    out = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(3)
        if kind == 0 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif kind == 1 and out:
            del out[rng.randrange(len(out)) :]
        else:
            pos = rng.randrange(len(out) + 1)
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


def test_mutated_payloads_and_batches_are_refused_cleanly() -> None:
    rng = random.Random(20)
    for case in CASES:
        frame = golden_bytes(case)
        schema = schema_for(case["opcode"], case["flags"])
        for _ in range(MUTATIONS_PER_CASE):
            bad = mutate(rng, frame[HEADER_BYTES:])
            try:
                m = decode_payload(schema, bad)
                for name in ("batch", "records"):
                    if m.get(name):
                        decode_batches(m[name], 1 << 20)
            except GregorError:
                pass
            try:
                decode_frame(mutate(rng, frame))
            except GregorError:
                pass


def test_mutated_batches_are_refused_cleanly() -> None:
    """Batch bytes with a valid CRC but broken contents reach the record parser and codecs."""
    import struct

    from gregormq.protocol import crc32c

    rng = random.Random(21)
    batches = []
    for case in CASES:
        f = decode_frame(golden_bytes(case))
        m = decode_payload(schema_for(f.opcode, f.flags), f.payload)
        for name in ("batch", "records"):
            if m.get(name):
                batches.append(m[name])
    assert batches
    for b in batches:
        for _ in range(MUTATIONS_PER_CASE):
            body = mutate(rng, b[61:])
            head = bytearray(b[:61])
            struct.pack_into(">i", head, 8, 61 + len(body) - 12)
            bad = bytearray(head + body)
            struct.pack_into(">I", bad, 17, crc32c(bytes(bad[21:])))
            try:
                decode_batches(bytes(bad), 1 << 20)
            except GregorError:
                pass
