"""Record batches (Kafka's RecordBatch v2, docs/protocol.md §7), their codecs, and murmur2."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Optional

import cramjam
import lz4.block
import zstandard

from .errors import corrupt
from .protocol import SAFE_INTEGER_MAX, crc32c

BATCH_HEADER_BYTES = 61
_LENGTH_PREFIX_BYTES = 12
_OFF_CRC = 17
_OFF_ATTRIBUTES = 21
_CODEC_MASK = 0x07
# The broker's default recordsBytesMax: the largest records section a batch may inflate to.
RECORDS_BYTES_MAX_DEFAULT = 32 * 1024 * 1024

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
CODEC_IDS = {name: i for i, name in enumerate(CODECS)}

_HEAD = struct.Struct(">qiibIhiqqqhii")


@dataclass
class Header:
    """One record header; a None value is null."""

    key: str
    value: Optional[bytes]


@dataclass
class Record:
    """One record. `offset` is set when decoding."""

    timestamp: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: list[Header] = field(default_factory=list)
    offset: int = -1


@dataclass
class Batch:
    """A decoded batch: every header field and the records."""

    base_offset: int
    size_bytes: int
    partition_leader_epoch: int
    crc: int
    attributes: int
    codec: str
    last_offset_delta: int
    first_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    records: list[Record]


def _put_varint(out: bytearray, v: int) -> None:
    z = (v << 1) ^ (v >> 63) if v >= 0 else ((-v) << 1) - 1
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)


def _put_var_bytes(out: bytearray, b: Optional[bytes]) -> None:
    if b is None:
        _put_varint(out, -1)
    else:
        _put_varint(out, len(b))
        out += b


def encode_records(records: list[Record]) -> bytes:
    """The uncompressed records section of a batch (§7.3)."""
    first = records[0].timestamp
    out = bytearray()
    rec = bytearray()
    for i, r in enumerate(records):
        rec.clear()
        rec.append(0)
        _put_varint(rec, r.timestamp - first)
        _put_varint(rec, i)
        _put_var_bytes(rec, r.key)
        _put_var_bytes(rec, r.value)
        _put_varint(rec, len(r.headers))
        for h in r.headers:
            _put_var_bytes(rec, h.key.encode("utf-8"))
            _put_var_bytes(rec, h.value)
        _put_varint(out, len(rec))
        out += rec
    return bytes(out)


def encode_batch(
    records: list[Record],
    codec: str = "none",
    base_offset: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    """Encodes records as one batch; timestamps are taken as given."""
    if not records:
        raise ValueError("a batch needs at least one record")
    body = compress(codec, encode_records(records))
    first = records[0].timestamp
    max_ts = max(r.timestamp for r in records)
    head = _HEAD.pack(
        base_offset,
        BATCH_HEADER_BYTES + len(body) - _LENGTH_PREFIX_BYTES,
        -1,
        2,
        0,
        CODEC_IDS[codec],
        len(records) - 1,
        first,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    out = bytearray(head + body)
    struct.pack_into(">I", out, _OFF_CRC, crc32c(memoryview(out)[_OFF_ATTRIBUTES:]))
    return bytes(out)


def restamp_sequence(batch: bytes, base_sequence: int) -> bytes:
    """The batch with another base sequence and its CRC recomputed."""
    out = bytearray(batch)
    struct.pack_into(">i", out, 53, base_sequence)
    struct.pack_into(">I", out, _OFF_CRC, crc32c(memoryview(out)[_OFF_ATTRIBUTES:]))
    return bytes(out)


class _VarReader:
    def __init__(self, b: bytes, pos: int, end: int) -> None:
        self.b, self.pos, self.end = b, pos, end

    def varint(self, what: str) -> int:
        z = 0
        for i in range(10):
            if self.pos >= self.end:
                raise corrupt(f"{what} is cut off")
            byte = self.b[self.pos]
            self.pos += 1
            z |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                v = (z >> 1) ^ -(z & 1)
                if abs(v) > SAFE_INTEGER_MAX:
                    raise corrupt(f"{what} is outside the safe integer range")
                return v
        raise corrupt(f"{what} is a varint longer than 10 bytes")

    def var_bytes(self, what: str) -> Optional[bytes]:
        n = self.varint(what)
        if n == -1:
            return None
        if n < -1 or n > self.end - self.pos:
            raise corrupt(f"{what} length {n} does not fit the record")
        out = self.b[self.pos : self.pos + n]
        self.pos += n
        return out


def decode_batches(data: bytes, records_bytes_max: int = RECORDS_BYTES_MAX_DEFAULT) -> list[Batch]:
    """Decodes batches back to back, as PRODUCE, DELIVER and FETCH carry them, checking each
    batch's CRC-32C and structure. Errors are CORRUPT_BATCH."""
    out: list[Batch] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < BATCH_HEADER_BYTES:
            raise corrupt(f"a batch of {len(data) - pos} bytes is shorter than its header")
        (base, length, epoch, magic, crc, attrs, lod, first, max_ts, pid, pepoch, seq, count) = (
            _HEAD.unpack_from(data, pos)
        )
        size = length + _LENGTH_PREFIX_BYTES
        if size < BATCH_HEADER_BYTES or pos + size > len(data):
            raise corrupt(f"batch length {length} does not fit the {len(data) - pos} bytes given")
        if magic != 2:
            raise corrupt(f"batch magic {magic} is not 2")
        codec_id = attrs & _CODEC_MASK
        if codec_id >= len(CODECS):
            raise corrupt(f"unknown compression codec {codec_id}")
        for v in (base, first, max_ts, pid):
            if abs(v) > SAFE_INTEGER_MAX:
                raise corrupt("a batch header field is outside the safe integer range")
        batch = data[pos : pos + size]
        if crc32c(memoryview(batch)[_OFF_ATTRIBUTES:]) != crc:
            raise corrupt(f"batch at offset {base} failed its CRC-32C check")
        if count < 1 or lod != count - 1:
            raise corrupt(f"batch claims {count} records with last offset delta {lod}")
        body = decompress(CODECS[codec_id], batch[BATCH_HEADER_BYTES:], records_bytes_max)
        if count > len(body):
            raise corrupt(f"batch claims {count} records in {len(body)} bytes")
        records: list[Record] = []
        r = _VarReader(body, 0, len(body))
        for i in range(count):
            n = r.varint("record length")
            if n < 1 or n > len(body) - r.pos:
                raise corrupt(f"record {i} length {n} is wrong")
            rr = _VarReader(body, r.pos + 1, r.pos + n)  # +1: the attributes byte
            ts_delta = rr.varint("timestamp delta")
            if rr.varint("offset delta") != i:
                raise corrupt(f"record {i} has the wrong offset delta")
            key = rr.var_bytes("key")
            value = rr.var_bytes("value")
            nh = rr.varint("header count")
            if nh < 0 or nh > rr.end - rr.pos:
                raise corrupt(f"record {i} claims {nh} headers")
            headers: list[Header] = []
            for _ in range(nh):
                hk = rr.var_bytes("header key")
                if hk is None:
                    raise corrupt(f"record {i} has a null header key")
                try:
                    hks = hk.decode("utf-8")
                except UnicodeDecodeError:
                    raise corrupt(f"record {i} has a header key that is not UTF-8")
                headers.append(Header(hks, rr.var_bytes("header value")))
            if rr.pos != rr.end:
                raise corrupt(f"record {i} has {rr.end - rr.pos} bytes after its fields")
            r.pos = rr.end
            records.append(Record(first + ts_delta, key, value, headers, base + i))
        if r.pos != len(body):
            raise corrupt(f"{len(body) - r.pos} unexpected bytes after the batch's records")
        out.append(
            Batch(
                base, size, epoch, crc, attrs, CODECS[codec_id], lod, first, max_ts, pid,
                pepoch, seq, count, records,
            )
        )
        pos += size
    return out


def compress(codec: str, src: bytes) -> bytes:
    """Packs a records section in the form §7.5 gives for the codec."""
    if codec == "none":
        return src
    if codec == "gzip":
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(src) + c.flush()
    if codec == "snappy":
        return bytes(cramjam.snappy.compress_raw(src))
    if codec == "lz4":
        # lz4-wasm's form: a 4-byte little-endian length, then one raw LZ4 block.
        return struct.pack("<I", len(src)) + bytes(lz4.block.compress(src, store_size=False))
    if codec == "zstd":
        return bytes(zstandard.ZstdCompressor().compress(src))
    raise ValueError(f"cannot compress with codec {codec!r}: not one of {', '.join(CODECS)}")


_ZSTD_MAGIC = 0xFD2FB528


def decompress(codec: str, src: bytes, out_max: int) -> bytes:
    """Unpacks a records section, refusing output over out_max bytes: before producing it where
    the format declares its length, else as soon as it grows past it."""
    if codec == "none":
        if len(src) > out_max:
            raise corrupt(f"records of {len(src)} bytes are over {out_max}")
        return src
    if codec == "gzip":
        return _gunzip(src, out_max)
    if codec == "snappy":
        try:
            n = int(cramjam.snappy.decompress_raw_len(src))
        except Exception as e:
            raise corrupt(f"cannot decompress snappy: {e}")
        if n > out_max:
            raise corrupt(f"cannot decompress snappy: {n} bytes are over the limit of {out_max}")
        try:
            return bytes(cramjam.snappy.decompress_raw(src))
        except Exception as e:
            raise corrupt(f"cannot decompress snappy: {e}")
    if codec == "lz4":
        if len(src) < 4:
            raise corrupt("cannot decompress lz4: the 4-byte length is cut off")
        n = struct.unpack_from("<I", src)[0]
        if n > out_max:
            raise corrupt(f"cannot decompress lz4: {n} bytes are over the limit of {out_max}")
        try:
            out = lz4.block.decompress(src[4:], uncompressed_size=n)
        except Exception as e:
            raise corrupt(f"cannot decompress lz4: {e}")
        if len(out) != n:
            raise corrupt(f"cannot decompress lz4: the block inflates to {len(out)}, not {n}")
        return bytes(out)
    if codec == "zstd":
        return _unzstd(src, out_max)
    raise corrupt(f"unknown compression codec {codec!r}")


def _gunzip(src: bytes, out_max: int) -> bytes:
    out = bytearray()
    rest = src
    while rest and rest.strip(b"\x00"):
        d = zlib.decompressobj(31)
        try:
            out += d.decompress(rest, out_max + 1 - len(out))
            if len(out) > out_max:
                raise corrupt(f"cannot decompress gzip: output is over the limit of {out_max}")
            if not d.eof:
                raise corrupt("cannot decompress gzip: the stream is cut off")
        except zlib.error as e:
            raise corrupt(f"cannot decompress gzip: {e}")
        rest = d.unused_data
    return bytes(out)


def _unzstd(src: bytes, out_max: int) -> bytes:
    out = bytearray()
    rest = src
    dctx = zstandard.ZstdDecompressor()
    while rest:
        if len(rest) < 8:
            raise corrupt("cannot decompress zstd: a frame is cut off")
        magic, size = struct.unpack_from("<II", rest)
        if magic & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame
            if 8 + size > len(rest):
                raise corrupt("cannot decompress zstd: a skippable frame is cut off")
            rest = rest[8 + size :]
            continue
        if magic != _ZSTD_MAGIC:
            raise corrupt("cannot decompress zstd: not a zstd frame")
        try:
            declared = zstandard.get_frame_parameters(rest).content_size
            if declared != zstandard.CONTENTSIZE_UNKNOWN and len(out) + declared > out_max:
                raise corrupt(f"cannot decompress zstd: {declared} bytes are over {out_max}")
            d = dctx.decompressobj()
            out += d.decompress(rest)
            if not d.eof:
                raise corrupt("cannot decompress zstd: a frame is cut off")
        except zstandard.ZstdError as e:
            raise corrupt(f"cannot decompress zstd: {e}")
        if len(out) > out_max:
            raise corrupt(f"cannot decompress zstd: output is over the limit of {out_max}")
        rest = d.unused_data
    return bytes(out)


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c) as a signed 32-bit integer."""
    m = 0x5BD1E995
    mask = 0xFFFFFFFF
    n = len(data)
    h = (0x9747B28C ^ n) & mask
    whole = n & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = n & 3
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition a keyed record goes to: (murmur2(key) & 0x7fffffff) % partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
