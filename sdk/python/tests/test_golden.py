"""The language-neutral corpus (conformance/golden, conformance/murmur2.json): every golden frame
decodes to what index.json says and re-encodes byte for byte; the schema tables match
schemas.json; murmur2 matches Kafka's vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gregormq.batch import (
    decode_batches,
    decompress,
    encode_batch,
    encode_records,
    murmur2,
    partition_for_key,
)
from gregormq.errors import CODE_NAMES, ERROR_CODES, BrokerError
from gregormq.protocol import (
    ERROR_SCHEMA,
    OPS,
    Schema,
    crc32c,
    decode_frame,
    decode_payload,
    encode_frame,
    encode_payload,
    schema_for,
)

CONFORMANCE = Path(__file__).resolve().parents[3] / "conformance"
GOLDEN = CONFORMANCE / "golden"
CASES: list[dict[str, Any]] = json.loads((GOLDEN / "index.json").read_text())["cases"]


def golden_bytes(case: dict[str, Any]) -> bytes:
    return bytes.fromhex((GOLDEN / case["file"]).read_text().strip())


def hex_or_none(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


def to_json(schema: Schema, m: dict[str, Any]) -> dict[str, Any]:
    """A decoded payload the way index.json writes it."""
    out: dict[str, Any] = {}
    for name, typ in schema:
        v = m[name]
        if isinstance(typ, tuple):
            out[name] = [to_json(typ[1], it) for it in v]
        elif typ == "bytes" and v is not None and name in ("batch", "records"):
            batches = []
            for b in decode_batches(v):
                batches.append(
                    {
                        "baseOffset": b.base_offset,
                        "sizeBytes": b.size_bytes,
                        "partitionLeaderEpoch": b.partition_leader_epoch,
                        "crc": b.crc,
                        "attributes": b.attributes,
                        "codec": b.codec,
                        "lastOffsetDelta": b.last_offset_delta,
                        "firstTimestamp": b.first_timestamp,
                        "maxTimestamp": b.max_timestamp,
                        "producerId": b.producer_id,
                        "producerEpoch": b.producer_epoch,
                        "baseSequence": b.base_sequence,
                        "recordCount": b.record_count,
                        "records": [
                            {
                                "offset": r.offset,
                                "timestamp": r.timestamp,
                                "key": hex_or_none(r.key),
                                "value": hex_or_none(r.value),
                                "headers": [
                                    {"key": h.key, "value": hex_or_none(h.value)} for h in r.headers
                                ],
                            }
                            for r in b.records
                        ],
                    }
                )
            out[name] = {"hex": v.hex(), "batches": batches}
        elif typ == "bytes":
            out[name] = hex_or_none(v)
        else:
            out[name] = v
    return out


def from_json(schema: Schema, v: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = {}
    for name, typ in schema:
        x = v[name]
        if isinstance(typ, tuple):
            m[name] = [from_json(typ[1], it) for it in x]
        elif typ == "bytes" and x is not None:
            m[name] = bytes.fromhex(x if isinstance(x, str) else x["hex"])
        else:
            m[name] = x
    return m


def test_corpus_is_there() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_frame_decodes_to_index(case: dict[str, Any]) -> None:
    f = decode_frame(golden_bytes(case))
    assert (f.opcode, f.flags, f.correlation_id, len(f.payload)) == (
        case["opcode"],
        case["flags"],
        case["correlationId"],
        case["payloadLength"],
    )
    schema = schema_for(f.opcode, f.flags)
    assert to_json(schema, decode_payload(schema, f.payload)) == case["payload"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden_frame_reencodes_byte_for_byte(case: dict[str, Any]) -> None:
    schema = schema_for(case["opcode"], case["flags"])
    payload = encode_payload(schema, from_json(schema, case["payload"]))
    frame = encode_frame(case["opcode"], case["correlationId"], case["flags"], payload)
    assert frame.hex() == golden_bytes(case).hex()


def test_golden_batches_reencode() -> None:
    """Every uncompressed batch re-encodes from its records byte for byte; a compressed one holds
    the records section the uncompressed encoding has, and round-trips through this SDK's codec."""
    checked = 0
    for case in CASES:
        f = decode_frame(golden_bytes(case))
        m = decode_payload(schema_for(f.opcode, f.flags), f.payload)
        for name in ("batch", "records"):
            data = m.get(name)
            while data:
                b = decode_batches(data)[0]
                golden = data[: b.size_bytes]
                kw = dict(
                    base_offset=b.base_offset,
                    producer_id=b.producer_id,
                    producer_epoch=b.producer_epoch,
                    base_sequence=b.base_sequence,
                )
                plain = encode_batch(b.records, "none", **kw)
                if b.codec == "none":
                    assert plain == golden, case["name"]
                else:
                    inner = decompress(b.codec, golden[61:], 1 << 20)
                    assert inner == encode_records(b.records), case["name"]
                    mine = encode_batch(b.records, b.codec, **kw)
                    assert decode_batches(mine)[0].records == b.records
                checked += 1
                data = data[b.size_bytes :]
    assert checked >= 8


def schema_json(schema: Schema) -> list[Any]:
    out: list[Any] = []
    for name, typ in schema:
        if isinstance(typ, tuple):
            out.append([name, {"list": schema_json(typ[1])}])
        elif typ == "map":
            out.append([name, {"map": True}])
        else:
            out.append([name, typ])
    return out


def test_schemas_match_conformance() -> None:
    doc = json.loads((GOLDEN / "schemas.json").read_text())
    assert ERROR_CODES == doc["errorCodes"]
    assert len(CODE_NAMES) == len(doc["errorCodes"])
    assert {name: op[0] for name, op in OPS.items()} == doc["opcodes"]
    for name, (_, req, resp) in OPS.items():
        assert schema_json(req) == doc["schemas"][name]["request"], name
        assert schema_json(resp) == doc["schemas"][name]["response"], name
    assert schema_json(ERROR_SCHEMA) == doc["schemas"]["ERROR"]


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_murmur2_vectors() -> None:
    vectors = json.loads((CONFORMANCE / "murmur2.json").read_text())["vectors"]
    assert len(vectors) >= 10
    for v in vectors:
        key = v["key"].encode("utf-8")
        assert murmur2(key) == v["murmur2"], v["key"]
        for n, want in v["partitions"].items():
            assert partition_for_key(key, int(n)) == want, (v["key"], n)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_decompression_is_bounded(codec: str) -> None:
    """A records section that would inflate past the limit is refused as CORRUPT_BATCH."""
    from gregormq.batch import compress

    packed = compress(codec, b"\x00" * 100_000)
    assert decompress(codec, packed, 100_000) == b"\x00" * 100_000
    with pytest.raises(BrokerError) as e:
        decompress(codec, packed, 99_999)
    assert e.value.code_name == "CORRUPT_BATCH"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_cut_off_compressed_data_is_refused(codec: str) -> None:
    from gregormq.batch import compress

    packed = compress(codec, bytes(range(256)) * 40)
    with pytest.raises(BrokerError) as e:
        decompress(codec, packed[: len(packed) - 5], 1 << 20)
    assert e.value.code_name == "CORRUPT_BATCH"


def test_a_flipped_bit_fails_the_batch_crc() -> None:
    case = next(c for c in CASES if c["name"] == "produce_request")
    f = decode_frame(golden_bytes(case))
    batch = bytearray(decode_payload(schema_for(f.opcode, f.flags), f.payload)["batch"])
    batch[70] ^= 1
    with pytest.raises(BrokerError) as e:
        decode_batches(bytes(batch))
    assert e.value.code_name == "CORRUPT_BATCH"


def test_a_corrupt_frame_header_is_refused() -> None:
    frame = bytearray(golden_bytes(CASES[0]))
    frame[9] ^= 1
    with pytest.raises(BrokerError) as e:
        decode_frame(bytes(frame))
    assert e.value.code_name == "MALFORMED_FRAME"
