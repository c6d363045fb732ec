"""One handshaken connection to a broker: pipelined requests matched by correlation id, and
DELIVER pushes handed to the subscription they name."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Optional

from .errors import BrokerError, ConnectionLost
from .scram import MECHANISM, ScramClient
from .protocol import (
    ERROR_SCHEMA,
    FLAG_ERROR,
    FLAG_PUSH,
    HEADER_BYTES,
    OPS,
    PAYLOAD_BYTES_MAX_DEFAULT,
    Msg,
    decode_header,
    decode_payload,
    encode_frame,
    encode_payload,
)

if TYPE_CHECKING:
    from .consumer import Subscription

_DELIVER_SCHEMA = OPS["DELIVER"][1]
# How many bytes may wait in the socket's buffer before a writer awaits it draining.
_WRITE_BUFFER_BYTES_MAX = 4 * 1024 * 1024


class Connection:
    """A connection after a successful HELLO. Created by `Connection.open`."""

    def __init__(self, addr: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.addr = addr
        self._reader = reader
        self._writer = writer
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self.subs: dict[int, Subscription] = {}
        self.error: Optional[BaseException] = None
        self.payload_bytes_max = PAYLOAD_BYTES_MAX_DEFAULT
        self.broker_id = ""
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        addr: str,
        client_id: str,
        credential: Optional[bytes],
        timeout_s: float,
        login: Optional[tuple[str, str]] = None,
    ) -> Connection:
        """Connects, sends HELLO and, given (user, password), logs in with SCRAM-SHA-256."""
        host, _, port = addr.rpartition(":")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port)), timeout_s
        )
        c = cls(addr, reader, writer)
        try:
            resp = await asyncio.wait_for(
                c.request(
                    "HELLO",
                    {
                        "versionMin": 1,
                        "versionMax": 1,
                        "clientId": client_id,
                        "credential": credential,
                    },
                ),
                timeout_s,
            )
            if login is not None:
                scram = ScramClient(*login)
                first = await asyncio.wait_for(
                    c.request("AUTH_START", {"mechanism": MECHANISM, "message": scram.first()}),
                    timeout_s,
                )
                final = await asyncio.wait_for(
                    c.request("AUTH_FINISH", {"message": scram.final(first["message"] or b"")}),
                    timeout_s,
                )
                scram.verify(final["message"] or b"")
        except BaseException as e:
            c.close(ConnectionLost(f"handshake with {addr} failed: {e}"))
            raise
        c.payload_bytes_max = resp["payloadBytesMax"]
        c.broker_id = resp["brokerId"]
        return c

    @property
    def closed(self) -> bool:
        return self.error is not None

    async def _read_loop(self) -> None:
        try:
            while True:
                head = await self._reader.readexactly(HEADER_BYTES)
                op, flags, cid, length = decode_header(head, PAYLOAD_BYTES_MAX_DEFAULT)
                payload = await self._reader.readexactly(length) if length else b""
                if flags & FLAG_PUSH:
                    self._deliver(payload)
                    continue
                if flags & FLAG_ERROR:
                    m = decode_payload(ERROR_SCHEMA, payload)
                    err = BrokerError(m["code"], m["message"])
                    if cid == 0:
                        # An error the broker cannot tie to a request ends the connection (§3.3).
                        self.close(ConnectionLost(f"{self.addr} closed the connection: {err}"))
                        return
                    fut = self._pending.pop(cid, None)
                    if fut is not None and not fut.done():
                        fut.set_exception(err)
                    elif fut is None and err.fatal:
                        self.close(ConnectionLost(f"{self.addr}: {err}"))
                        return
                    continue
                fut = self._pending.pop(cid, None)
                if fut is not None and not fut.done():
                    fut.set_result(payload)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            self.close(ConnectionLost(f"connection to {self.addr} lost: {e or 'closed'}"))
        except BrokerError as e:
            self.close(ConnectionLost(f"{self.addr} sent a frame that does not decode: {e}"))
        except asyncio.CancelledError:
            self.close(ConnectionLost(f"connection to {self.addr} closed"))

    def _deliver(self, payload: bytes) -> None:
        m = decode_payload(_DELIVER_SCHEMA, payload)
        sub = self.subs.get(m["subscriptionId"])
        if sub is not None:  # a DELIVER for a subscription no longer known is ignored (§8.3)
            sub._on_deliver(self, m)

    def close(self, err: BaseException) -> None:
        """Ends the connection once; every waiting request fails with err."""
        if self.error is not None:
            return
        self.error = err
        self._writer.close()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)
        for sub in list(self.subs.values()):
            sub._on_lost(self, err)
        if self._read_task is not asyncio.current_task():
            self._read_task.cancel()

    def send(self, op: str, m: Msg, one_way: bool = False) -> Optional[asyncio.Future[bytes]]:
        """Writes one request at once (so requests leave in the order sent) and returns the future
        of its response payload; None for a one-way request."""
        if self.error is not None:
            raise self.error
        opcode, req, _ = OPS[op]
        payload = encode_payload(req, m)
        if len(payload) > self.payload_bytes_max:
            raise BrokerError(
                5, f"a payload of {len(payload)} bytes is over the broker's {self.payload_bytes_max}"
            )
        self._next_id = self._next_id % 0xFFFFFFFF + 1
        cid = self._next_id
        fut: Optional[asyncio.Future[bytes]] = None
        if not one_way:
            fut = asyncio.get_running_loop().create_future()
            self._pending[cid] = fut
        self._writer.write(encode_frame(opcode, cid, 0, payload))
        return fut

    async def drain(self) -> None:
        """Waits while the socket's buffer is full."""
        transport = self._writer.transport
        if transport.get_write_buffer_size() > _WRITE_BUFFER_BYTES_MAX:
            try:
                await self._writer.drain()
            except (ConnectionError, OSError) as e:
                self.close(ConnectionLost(f"connection to {self.addr} lost: {e}"))

    async def request(self, op: str, m: Msg) -> Msg:
        fut = self.send(op, m)
        assert fut is not None
        await self.drain()
        payload = await fut
        return decode_payload(OPS[op][2], payload)

    async def wait_closed(self) -> Any:
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
