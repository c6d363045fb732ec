"""The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as docs/protocol.md §4.1 carries it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from .errors import ERROR_CODES, BrokerError

MECHANISM = "SCRAM-SHA-256"
ITERATIONS_MIN = 4096
ITERATIONS_MAX = 1_000_000
_USER = re.compile(r"[A-Za-z0-9._@-]{1,128}")


def _failed(why: str) -> BrokerError:
    return BrokerError(ERROR_CODES["AUTHENTICATION_FAILED"], why)


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


class ScramClient:
    """One exchange: `first()`, then `final(server_first)`, then `verify(server_final)`."""

    def __init__(self, user: str, password: str, nonce: str = "") -> None:
        if not _USER.fullmatch(user):
            raise ValueError(f"user name {user!r} is not 1 to 128 of A-Z a-z 0-9 . _ @ -")
        self.user = user
        self.password = password
        self.nonce = nonce or secrets.token_urlsafe(24)
        self._first_bare = f"n={user},r={self.nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return ("n,," + self._first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8", "replace")
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        nonce, salt_b64, iterations = fields.get("r", ""), fields.get("s", ""), fields.get("i", "")
        if not nonce.startswith(self.nonce) or len(nonce) == len(self.nonce):
            raise _failed("the broker's nonce does not extend this client's")
        if not iterations.isdigit() or not ITERATIONS_MIN <= int(iterations) <= ITERATIONS_MAX:
            raise _failed(f"the broker asks for {iterations!r} iterations, outside 4096..1000000")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except ValueError:
            raise _failed("the broker's salt is not base64")
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, int(iterations))
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        signature = _hmac(stored_key, auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        """Checks the broker's signature: only a broker that holds the user's keys can make it."""
        want = b"v=" + base64.b64encode(self._server_signature)
        if not self._server_signature or not hmac.compare_digest(server_final, want):
            raise _failed("the broker's SCRAM signature does not verify: do not trust it")
