"""Errors: the broker's error codes (docs/protocol.md §9.2) and the SDK's own failures."""

from __future__ import annotations

ERROR_CODES: dict[str, int] = {
    "INTERNAL": 1,
    "MALFORMED_FRAME": 2,
    "UNSUPPORTED_VERSION": 3,
    "UNKNOWN_OPCODE": 4,
    "FRAME_TOO_LARGE": 5,
    "MALFORMED_REQUEST": 6,
    "HANDSHAKE_REQUIRED": 7,
    "AUTHENTICATION_FAILED": 8,
    "INVALID_REQUEST": 9,
    "UNKNOWN_TOPIC": 10,
    "TOPIC_EXISTS": 11,
    "INVALID_TOPIC": 12,
    "UNKNOWN_PARTITION": 13,
    "CORRUPT_BATCH": 14,
    "BATCH_TOO_LARGE": 15,
    "OFFSET_OUT_OF_RANGE": 16,
    "UNKNOWN_SUBSCRIPTION": 17,
    "SUBSCRIPTION_EXISTS": 18,
    "LIMIT_EXCEEDED": 19,
    "UNSUPPORTED_CODEC": 20,
    "STORAGE_ERROR": 21,
    "TIMEOUT": 22,
    "NOT_LEADER": 23,
    "SUBSCRIPTION_IN_USE": 24,
    "SHUTTING_DOWN": 25,
    "UNKNOWN_MEMBER": 26,
    "STALE_GENERATION": 27,
    "FENCED_INSTANCE": 28,
    "GROUP_NOT_EMPTY": 29,
    "OUT_OF_ORDER_SEQUENCE": 30,
    "PRODUCER_FENCED": 31,
    "INVALID_OFFSET": 32,
    "DUPLICATE_SEQUENCE": 33,
    "PARTITION_DAMAGED": 34,
    "AUTHORIZATION_FAILED": 35,
}
CODE_NAMES: dict[int, str] = {code: name for name, code in ERROR_CODES.items()}

# The broker closes the connection after sending one of these.
FATAL_CODES = frozenset(
    ERROR_CODES[n]
    for n in (
        "MALFORMED_FRAME",
        "UNSUPPORTED_VERSION",
        "UNKNOWN_OPCODE",
        "FRAME_TOO_LARGE",
        "HANDSHAKE_REQUIRED",
        "AUTHENTICATION_FAILED",
    )
)
# The same request may succeed if sent again (perhaps to another broker).
RETRIABLE_CODES = frozenset(
    ERROR_CODES[n]
    for n in (
        "LIMIT_EXCEEDED",
        "STORAGE_ERROR",
        "TIMEOUT",
        "NOT_LEADER",
        "SHUTTING_DOWN",
        "OUT_OF_ORDER_SEQUENCE",
    )
)


class GregorError(Exception):
    """Base class of every error this SDK raises."""


class BrokerError(GregorError):
    """An error the broker answered with, or one the SDK raises with a protocol code (e.g.
    CORRUPT_BATCH for a batch that fails its checks). Compare `.code_name` or `.code`."""

    def __init__(self, code: int, message: str = "") -> None:
        self.code = code
        self.message = message
        super().__init__(f"{self.code_name}: {message}" if message else self.code_name)

    @property
    def code_name(self) -> str:
        """The protocol name, e.g. "UNKNOWN_TOPIC"; CODE_<n> for a code this SDK does not know."""
        return CODE_NAMES.get(self.code, f"CODE_{self.code}")

    @property
    def retriable(self) -> bool:
        """Whether the same request may succeed if sent again."""
        return self.code in RETRIABLE_CODES

    @property
    def fatal(self) -> bool:
        """Whether the broker closed the connection after it."""
        return self.code in FATAL_CODES


class ConnectionLost(GregorError):
    """The connection broke before the answer came; the outcome of the request is unknown."""


class ClientClosed(GregorError):
    """A call on a client, producer or subscription after it was closed."""


def corrupt(message: str) -> BrokerError:
    return BrokerError(ERROR_CODES["CORRUPT_BATCH"], message)


def malformed_frame(message: str) -> BrokerError:
    return BrokerError(ERROR_CODES["MALFORMED_FRAME"], message)
