"""Frames and payload schemas of the GregorMQ wire protocol, version 1 (docs/protocol.md §2-§6)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Union

import crc32c as _crc32c

from .errors import ERROR_CODES, BrokerError, malformed_frame

MAGIC = 0x474D
VERSION = 1
HEADER_BYTES = 20
FLAG_RESPONSE = 0x01
FLAG_ERROR = 0x02
FLAG_PUSH = 0x04
# The broker's default payloadBytesMax; what a client accepts from a broker.
PAYLOAD_BYTES_MAX_DEFAULT = 16 * 1024 * 1024
STRING_BYTES_MAX = 65535
LIST_ITEMS_MAX = 100_000
SAFE_INTEGER_MAX = 2**53 - 1

_HEADER = struct.Struct(">HBBHHIII")


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli), as both the frame header and record batches use it (§3.4)."""
    return int(_crc32c.crc32c(data))


# A field type: a scalar name, ("list", item schema) or "map".
FieldType = Union[str, tuple[str, "Schema"]]
Schema = list[tuple[str, FieldType]]
Msg = dict[str, Any]


def _f(spec: str) -> Schema:
    """Parses "name:type, name:type" for the scalar fields of a schema."""
    out: Schema = []
    for part in spec.split(","):
        part = part.strip()
        if part:
            name, typ = part.split(":")
            out.append((name, typ))
    return out


def _lst(name: str, items: Schema) -> tuple[str, FieldType]:
    return (name, ("list", items))


_PARTITION_LIST = _f("topic:string, partition:u32")
_GROUP_OFFSETS = _f("topic:string, partition:u32, offset:i64, highWatermark:i64")
_IDS = _f("id:string")
_ACL = _f("principal:string, resourceType:string, pattern:string, name:string, operation:string")
_DIGEST = _f("id:string, incarnation:i64, maxVersion:i64")
_DELTAS = [
    *_f("id:string, incarnation:i64"),
    _lst("entries", _f("key:string, value:string, version:i64")),
]

ERROR_SCHEMA: Schema = _f("code:u16, message:string")

# name: (opcode, request schema, response schema). A DELIVER push uses its request schema.
OPS: dict[str, tuple[int, Schema, Schema]] = {
    "HELLO": (
        0x0001,
        _f("versionMin:u8, versionMax:u8, clientId:string, credential:bytes"),
        _f("version:u8, brokerId:string, payloadBytesMax:u32, codecs:u32"),
    ),
    "PING": (0x0002, [], []),
    "AUTH_START": (0x0003, _f("mechanism:string, message:bytes"), _f("message:bytes")),
    "AUTH_FINISH": (0x0004, _f("message:bytes"), _f("message:bytes")),
    "PRODUCE": (
        0x0101,
        _f("topic:string, partition:u32, acks:u8, timeoutMs:u32, batch:bytes"),
        _f("baseOffset:i64, logStartOffset:i64"),
    ),
    "INIT_PRODUCER_ID": (0x0102, [], _f("producerId:i64, producerEpoch:u16")),
    "SUBSCRIBE": (
        0x0201,
        _f(
            "subscriptionId:u32, topic:string, partition:u32, start:u8, startValue:i64,"
            "durableName:string, ackTimeoutMs:u32, creditMessages:u32, creditBytes:u32"
        ),
        _f("startOffset:i64, logStartOffset:i64, highWatermark:i64"),
    ),
    "DELIVER": (
        0x0202,
        _f("subscriptionId:u32, firstOffset:i64, redelivery:u8, records:bytes"),
        [],
    ),
    "CREDIT": (0x0203, _f("subscriptionId:u32, messages:u32, bytes:u32"), []),
    "ACK": (0x0204, _f("subscriptionId:u32, offset:i64"), []),
    "UNSUBSCRIBE": (0x0205, _f("subscriptionId:u32"), []),
    "FETCH": (
        0x0206,
        _f("topic:string, partition:u32, offset:i64, maxBytes:u32"),
        _f("logStartOffset:i64, highWatermark:i64, records:bytes"),
    ),
    "DURABLE_COMMIT": (
        0x0207,
        [
            _lst(
                "offsets",
                _f("topic:string, partition:u32, name:string, offset:i64, incarnation:i64"),
            )
        ],
        [],
    ),
    "DURABLE_FETCH": (
        0x0208,
        _f("topic:string, partition:u32, name:string"),
        _f("offset:i64"),
    ),
    "CREATE_TOPIC": (0x0301, _f("name:string, partitions:u32, configs:map"), []),
    "DELETE_TOPIC": (0x0302, _f("name:string"), []),
    "LIST_TOPICS": (0x0303, [], [_lst("topics", _f("name:string, partitions:u32"))]),
    "DESCRIBE_TOPIC": (
        0x0304,
        _f("name:string"),
        [
            *_f("name:string, configs:map"),
            _lst(
                "partitions",
                [
                    *_f(
                        "partition:u32, logStartOffset:i64, highWatermark:i64, sizeBytes:i64,"
                        "subscribers:u32, damagedFromOffset:i64, leader:string"
                    ),
                    _lst("replicas", _IDS),
                    _lst("isr", _IDS),
                    *_f("moving:u8"),
                ],
            ),
        ],
    ),
    "ALTER_TOPIC": (0x0305, _f("name:string, configs:map"), []),
    "CREATE_PARTITIONS": (0x0306, _f("name:string, count:u32"), []),
    "REPAIR_PARTITIONS": (
        0x0307,
        [*_f("name:string"), _lst("partitions", _f("partition:u32"))],
        [
            _lst(
                "partitions",
                _f(
                    "partition:u32, cutOffset:i64, endOffset:i64, bytesDropped:i64,"
                    "damage:string"
                ),
            )
        ],
    ),
    "REASSIGN_PARTITION": (
        0x0308,
        [*_f("name:string, partition:u32"), _lst("replicas", _IDS)],
        [],
    ),
    "REBALANCE_LEADERS": (
        0x0309,
        _f("thisNodeOnly:u8"),
        [*_f("moved:u32, waiting:u32"), _lst("unreached", _IDS)],
    ),
    "GROUP_HEARTBEAT": (
        0x0401,
        [
            *_f(
                "group:string, memberId:string, instanceId:string, generation:i64,"
                "sessionTimeoutMs:u32, assignor:string"
            ),
            _lst("topics", _f("name:string")),
            _lst("owned", _PARTITION_LIST),
        ],
        [
            *_f("memberId:string, generation:i64, heartbeatIntervalMs:u32"),
            _lst("assigned", _PARTITION_LIST),
            *_f("pending:u32"),
        ],
    ),
    "GROUP_LEAVE": (0x0402, _f("group:string, memberId:string"), []),
    "OFFSET_COMMIT": (
        0x0403,
        [
            *_f("group:string, memberId:string, generation:i64"),
            _lst("offsets", _f("topic:string, partition:u32, offset:i64")),
        ],
        [],
    ),
    "OFFSET_FETCH": (
        0x0404,
        [*_f("group:string"), _lst("partitions", _PARTITION_LIST)],
        [_lst("offsets", _GROUP_OFFSETS)],
    ),
    "LIST_GROUPS": (
        0x0405,
        [],
        [_lst("groups", _f("group:string, state:string, members:u32, generation:i64"))],
    ),
    "DESCRIBE_GROUP": (
        0x0406,
        _f("group:string"),
        [
            *_f("group:string, state:string, generation:i64, assignor:string"),
            _lst(
                "members",
                [
                    *_f("memberId:string, instanceId:string, clientId:string, generation:i64"),
                    _lst("assigned", _PARTITION_LIST),
                ],
            ),
            _lst("offsets", _GROUP_OFFSETS),
        ],
    ),
    "RESET_OFFSETS": (
        0x0407,
        [
            *_f("group:string, topic:string"),
            _lst("partitions", _f("partition:u32")),
            *_f("to:u8, value:i64, dryRun:u8"),
        ],
        [_lst("offsets", _GROUP_OFFSETS)],
    ),
    "CLUSTER_MEMBERS": (
        0x0501,
        [],
        [
            *_f("self:string"),
            _lst(
                "members",
                _f(
                    "id:string, host:string, clusterPort:u32, clientPort:u32, state:string,"
                    "incarnation:i64, heartbeat:i64"
                ),
            ),
        ],
    ),
    "METADATA": (
        0x0502,
        [_lst("topics", _f("name:string")), *_f("autoCreate:u8")],
        [
            _lst("nodes", _f("id:string, host:string, clientPort:u32")),
            _lst(
                "topics",
                [
                    *_f("name:string, error:u16"),
                    _lst(
                        "partitions",
                        [*_f("partition:u32, leader:string"), _lst("replicas", _IDS)],
                    ),
                ],
            ),
            *_f("controller:string"),
        ],
    ),
    "GOSSIP_SYN": (
        0x0601,
        [*_f("fromId:string"), _lst("digest", _DIGEST)],
        [_lst("digest", _DIGEST), _lst("deltas", _DELTAS)],
    ),
    "GOSSIP_ACK2": (0x0602, [*_f("fromId:string"), _lst("deltas", _DELTAS)], []),
    "RAFT": (
        0x0603,
        [*_f("fromId:string"), _lst("messages", _f("group:string, data:bytes"))],
        [],
    ),
    "CLUSTER_HELLO": (
        0x0604,
        _f("nodeId:string, nonce:bytes"),
        _f("nodeId:string, nonce:bytes"),
    ),
    "CLUSTER_PROOF": (0x0605, _f("proof:bytes"), _f("proof:bytes")),
    "USER_PUT": (
        0x0701,
        _f("name:string, salt:bytes, iterations:u32, storedKey:bytes, serverKey:bytes"),
        [],
    ),
    "USER_DELETE": (0x0702, _f("name:string"), []),
    "USER_LIST": (
        0x0703,
        [],
        [_lst("users", _f("name:string, mechanism:string, iterations:u32"))],
    ),
    "ACL_ADD": (0x0704, _ACL, []),
    "ACL_REMOVE": (0x0705, _ACL, []),
    "ACL_LIST": (0x0706, [], [_lst("acls", _ACL)]),
}
OPCODES: dict[str, int] = {name: op[0] for name, op in OPS.items()}
OP_NAMES: dict[int, str] = {op[0]: name for name, op in OPS.items()}


def schema_for(opcode: int, flags: int) -> Schema:
    """The payload schema of a frame: ERROR for error frames, else the opcode's request (requests
    and pushes) or response schema."""
    if flags & FLAG_ERROR:
        return ERROR_SCHEMA
    name = OP_NAMES.get(opcode)
    if name is None:
        raise BrokerError(ERROR_CODES["UNKNOWN_OPCODE"], f"opcode 0x{opcode:04x} is unknown")
    return OPS[name][2] if flags & FLAG_RESPONSE else OPS[name][1]


_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")


def _check_i64(v: int, name: str) -> None:
    if not -SAFE_INTEGER_MAX <= v <= SAFE_INTEGER_MAX:
        raise ValueError(f"{name} = {v} is outside the safe integer range ±(2^53-1)")


def _put(out: bytearray, schema: Schema, m: Msg) -> None:
    for name, typ in schema:
        v = m.get(name)
        if isinstance(typ, tuple):
            items = v or []
            if len(items) > LIST_ITEMS_MAX:
                raise ValueError(f"{name} has {len(items)} items, over {LIST_ITEMS_MAX}")
            out += _U32.pack(len(items))
            for it in items:
                _put(out, typ[1], it)
        elif typ == "u8":
            out += _U8.pack(int(v or 0))
        elif typ == "u16":
            out += _U16.pack(int(v or 0))
        elif typ == "u32":
            out += _U32.pack(int(v or 0))
        elif typ == "i64":
            _check_i64(int(v or 0), name)
            out += _I64.pack(int(v or 0))
        elif typ == "string":
            b = (v or "").encode("utf-8")
            if len(b) > STRING_BYTES_MAX:
                raise ValueError(f"{name} is {len(b)} bytes of UTF-8, over {STRING_BYTES_MAX}")
            out += _U16.pack(len(b))
            out += b
        elif typ == "bytes":
            if v is None:
                out += b"\xff\xff\xff\xff"
            else:
                out += _U32.pack(len(v))
                out += v
        elif typ == "map":
            entries = sorted((v or {}).items(), key=lambda kv: kv[0].encode("utf-8"))
            out += _U32.pack(len(entries))
            for k, val in entries:
                for s in (k, val):
                    b = s.encode("utf-8")
                    out += _U16.pack(len(b))
                    out += b
        else:
            raise ValueError(f"unknown field type {typ}")


def encode_payload(schema: Schema, m: Msg) -> bytes:
    """Encodes a payload; maps are written sorted by key, so encodings repeat."""
    out = bytearray()
    _put(out, schema, m)
    return bytes(out)


class _Reader:
    def __init__(self, b: bytes) -> None:
        self.b = b
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.b):
            raise BrokerError(
                ERROR_CODES["MALFORMED_REQUEST"],
                f"{what} needs {n} bytes but {len(self.b) - self.pos} are left",
            )
        out = self.b[self.pos : self.pos + n]
        self.pos += n
        return out

    def string(self, what: str) -> str:
        n = _U16.unpack(self.take(2, what))[0]
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BrokerError(ERROR_CODES["MALFORMED_REQUEST"], f"{what} is not UTF-8: {e}")


def _get(r: _Reader, schema: Schema) -> Msg:
    m: Msg = {}
    bad = ERROR_CODES["MALFORMED_REQUEST"]
    for name, typ in schema:
        if isinstance(typ, tuple):
            n = _U32.unpack(r.take(4, name))[0]
            if n > LIST_ITEMS_MAX:
                raise BrokerError(bad, f"{name} claims {n} items, over {LIST_ITEMS_MAX}")
            m[name] = [_get(r, typ[1]) for _ in range(n)]
        elif typ == "u8":
            m[name] = r.take(1, name)[0]
        elif typ == "u16":
            m[name] = _U16.unpack(r.take(2, name))[0]
        elif typ == "u32":
            m[name] = _U32.unpack(r.take(4, name))[0]
        elif typ == "i64":
            v = _I64.unpack(r.take(8, name))[0]
            if not -SAFE_INTEGER_MAX <= v <= SAFE_INTEGER_MAX:
                raise BrokerError(bad, f"{name} = {v} is outside the safe integer range")
            m[name] = v
        elif typ == "string":
            m[name] = r.string(name)
        elif typ == "bytes":
            n = _U32.unpack(r.take(4, name))[0]
            m[name] = None if n == 0xFFFFFFFF else r.take(n, name)
        elif typ == "map":
            n = _U32.unpack(r.take(4, name))[0]
            if n > LIST_ITEMS_MAX:
                raise BrokerError(bad, f"{name} claims {n} entries, over {LIST_ITEMS_MAX}")
            d: dict[str, str] = {}
            for _ in range(n):
                k = r.string(name)
                if k in d or k == "__proto__":
                    raise BrokerError(bad, f"{name} repeats or forbids the key {k!r}")
                d[k] = r.string(name)
            m[name] = d
    return m


def decode_payload(schema: Schema, payload: bytes) -> Msg:
    """Decodes a payload, which must be consumed exactly (§2)."""
    r = _Reader(payload)
    m = _get(r, schema)
    if r.pos != len(payload):
        raise BrokerError(
            ERROR_CODES["MALFORMED_REQUEST"],
            f"{len(payload) - r.pos} bytes are left over after the payload's last field",
        )
    return m


@dataclass
class Frame:
    """One frame: header fields and the raw payload."""

    opcode: int
    flags: int
    correlation_id: int
    payload: bytes


def encode_frame(opcode: int, correlation_id: int, flags: int, payload: bytes) -> bytes:
    """A whole frame: the 20-byte header with its CRC-32C, then the payload."""
    head = _HEADER.pack(MAGIC, VERSION, flags, opcode, 0, correlation_id, len(payload), 0)[:16]
    return head + _U32.pack(crc32c(head)) + payload


def decode_header(head: bytes, payload_bytes_max: int) -> tuple[int, int, int, int]:
    """Checks a frame header in the order of §3.3; returns (opcode, flags, correlation id,
    payload length)."""
    magic, version, flags, opcode, reserved, cid, length, crc = _HEADER.unpack(head)
    if magic != MAGIC:
        raise malformed_frame(f"frame magic 0x{magic:04x} is not 0x474d")
    if crc32c(head[:16]) != crc:
        raise malformed_frame("frame header checksum does not match")
    if version != VERSION:
        raise BrokerError(ERROR_CODES["UNSUPPORTED_VERSION"], f"frame version {version} is not 1")
    if reserved != 0:
        raise malformed_frame("frame reserved bytes are not zero")
    if length > payload_bytes_max:
        raise BrokerError(
            ERROR_CODES["FRAME_TOO_LARGE"],
            f"a payload of {length} bytes is over the limit of {payload_bytes_max}",
        )
    return opcode, flags, cid, length


def decode_frame(data: bytes, payload_bytes_max: int = PAYLOAD_BYTES_MAX_DEFAULT) -> Frame:
    """Decodes exactly one whole frame."""
    if len(data) < HEADER_BYTES:
        raise malformed_frame(f"a frame of {len(data)} bytes is shorter than its header")
    op, flags, cid, length = decode_header(data[:HEADER_BYTES], payload_bytes_max)
    if len(data) != HEADER_BYTES + length:
        raise malformed_frame(f"frame says {length} payload bytes, has {len(data) - HEADER_BYTES}")
    return Frame(op, flags, cid, data[HEADER_BYTES:])
