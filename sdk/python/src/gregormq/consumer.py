"""Subscriptions: credit-based flow control, cumulative acknowledgements, durable names, and
resuming after a lost connection."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Union

from .batch import Header, decode_batches
from .connection import Connection
from .errors import ERROR_CODES, BrokerError, ClientClosed, ConnectionLost, GregorError
from .protocol import Msg

if TYPE_CHECKING:
    from .client import Client

_START_EARLIEST, _START_LATEST, _START_OFFSET, _START_TIMESTAMP = 0, 1, 2, 3
# Decompressed records a delivered batch may hold (the broker's recordsBytesMax).
_RECORDS_BYTES_MAX = 64 * 1024 * 1024
# How long a subscription resuming after a lost connection keeps asking while the nodes answer
# NOT_LEADER (a leader being elected, a replica catching up after a restart), s.
_RESUBSCRIBE_NOT_LEADER_S = 60.0


def not_leader_pause_s(attempt: int) -> float:
    """The pause before asking again after the attempt-th NOT_LEADER: 0.1 s more each time, at
    most 1 s (a leader is elected, or a replica catches up, within seconds)."""
    return min(0.1 * attempt, 1.0)


@dataclass(frozen=True)
class FromOffset:
    """Start at this offset (between the log start and the high watermark)."""

    offset: int


@dataclass(frozen=True)
class FromTimestamp:
    """Start at the first batch whose newest record is at or after this time (ms since the
    epoch)."""

    timestamp_ms: int


Start = Union[str, FromOffset, FromTimestamp]


def _start_fields(start: Start) -> tuple[int, int]:
    if start == "earliest":
        return _START_EARLIEST, 0
    if start == "latest":
        return _START_LATEST, 0
    if isinstance(start, FromOffset):
        return _START_OFFSET, start.offset
    if isinstance(start, FromTimestamp):
        return _START_TIMESTAMP, start.timestamp_ms
    raise ValueError(f"start {start!r} is not 'earliest', 'latest', FromOffset or FromTimestamp")


@dataclass
class Message:
    """One delivered record. `redelivered`: it may have been handed out before (an ack timeout
    or a reconnect)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: list[Header] = field(default_factory=list)
    redelivered: bool = False


class Subscription:
    """The messages of one partition: `async for msg in sub`, or `await sub.next()`. Acknowledge
    with `sub.ack(offset)` (cumulative) unless subscribed with no_acks. The window (credit) is
    how much the broker sends ahead of what was read; it is given back as messages are read."""

    def __init__(
        self,
        client: Client,
        topic: str,
        partition: int,
        durable: str,
        ack_timeout_ms: int,
        window_messages: int,
        window_bytes: int,
    ) -> None:
        self.client = client
        self.topic = topic
        self.partition = partition
        self.durable = durable
        self.ack_timeout_ms = ack_timeout_ms
        self.window_messages = max(1, window_messages)
        self.window_bytes = max(1, window_bytes)
        # The first offset the broker said it would deliver.
        self.start_offset = -1
        self._conn: Optional[Connection] = None
        self._id = 0
        self._queue: deque[Message] = deque()
        # Per delivery: [messages of it still queued, its bytes].
        self._credits: deque[list[int]] = deque()
        self._owed_messages = 0
        self._owed_bytes = 0
        self._next = 0
        self._handed_out = -1
        self._recv_next = 0
        self._acked = -1
        self._lost: Optional[BaseException] = None
        # When a resubscription meeting NOT_LEADER gives up (the event loop's time); None while
        # none is under way. It outlives a next() whose timeout comes first.
        self._resume_gives_up_at: Optional[float] = None
        self._closed = False
        self._wake = asyncio.Event()

    async def _open(self, start: Start, deadline: float) -> None:
        """Subscribes where the partition is served. In a cluster only the partition's leader, or
        a replica keeping up with it, serves reads; another node answers NOT_LEADER
        (docs/protocol.md §8.2). Then the subscription goes to the leader the cluster's metadata
        names, asking again with a growing pause while none is known or it refuses too, until
        `deadline` (the event loop's time)."""
        loop = asyncio.get_running_loop()
        c = await self.client.connection()
        attempt = 1
        while True:
            try:
                await self._start(c, start)
                return
            except BrokerError as e:
                if e.code != ERROR_CODES["NOT_LEADER"] or loop.time() >= deadline:
                    raise
            nxt = await self.client._leader_connection(self.topic, self.partition)
            if nxt is None:
                nxt = await self.client.connection()
            # Straight to a newly named leader; the same node again waits a little first.
            if nxt is c or attempt > 1:
                await asyncio.sleep(not_leader_pause_s(attempt))
            c = nxt
            attempt += 1

    async def _start(self, c: Connection, start: Start) -> None:
        kind, value = _start_fields(start)
        sid = self.client._new_subscription_id()
        self._conn, self._id = c, sid
        self._queue.clear()
        self._credits.clear()
        self._owed_messages = self._owed_bytes = 0
        self._lost = None
        self._recv_next = 0
        c.subs[sid] = self
        try:
            resp = await asyncio.wait_for(
                c.request(
                    "SUBSCRIBE",
                    {
                        "subscriptionId": sid,
                        "topic": self.topic,
                        "partition": self.partition,
                        "start": kind,
                        "startValue": value,
                        "durableName": self.durable,
                        "ackTimeoutMs": self.ack_timeout_ms,
                        "creditMessages": self.window_messages,
                        "creditBytes": self.window_bytes,
                    },
                ),
                self.client.request_timeout_s,
            )
        except BaseException:
            c.subs.pop(sid, None)
            raise
        self._next = resp["startOffset"]
        self._recv_next = max(self._recv_next, self._next)

    def _on_deliver(self, conn: Connection, m: Msg) -> None:
        """Queues a DELIVER's records at or after its first offset (called by the reader)."""
        if conn is not self._conn:
            return
        first: int = m["firstOffset"]
        raw: bytes = m["records"] or b""
        self._wake.set()
        try:
            batches = decode_batches(raw, _RECORDS_BYTES_MAX)
        except GregorError as e:
            self._lost = e
            return
        if m["redelivery"] == 1:
            # The broker rewound to the first unacknowledged offset: what is queued from there
            # comes again, and the credit it took is given back.
            keep = deque(q for q in self._queue if q.offset < first)
            self._owed_messages += len(self._queue) - len(keep)
            self._queue = keep
            for c in self._credits:
                c[0] = 0
            self._recv_next = min(self._recv_next, first)
        n = 0
        skipped = 0
        for b in batches:
            for r in b.records:
                if r.offset < first:
                    continue  # before the offset asked for: in the batch, not charged
                if r.offset < self._recv_next:
                    # Seen already: never handed out, but the broker charged the window for it,
                    # so its credit goes back (or redeliveries drain the window for good).
                    skipped += 1
                    continue
                self._recv_next = r.offset + 1
                self._queue.append(
                    Message(
                        self.topic,
                        self.partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value,
                        r.headers,
                        r.offset <= self._handed_out,
                    )
                )
                n += 1
        self._credits.append([n, len(raw)])
        self._owed_messages += skipped
        if n == 0 or skipped > 0:
            self._pay_back()

    def _on_lost(self, conn: Connection, err: BaseException) -> None:
        if conn is self._conn:
            self._lost = err
            self._wake.set()

    def _pay_back(self) -> None:
        """Gives back the credit of deliveries fully read, once it reaches half the window."""
        while self._credits and self._credits[0][0] == 0:
            self._owed_bytes += self._credits.popleft()[1]
        if (
            self._owed_messages * 2 >= self.window_messages
            or self._owed_bytes * 2 >= self.window_bytes
        ):
            c = self._conn
            if c is not None and not c.closed:
                c.send(
                    "CREDIT",
                    {
                        "subscriptionId": self._id,
                        "messages": min(self._owed_messages, 0xFFFFFFFF),
                        "bytes": min(self._owed_bytes, 0xFFFFFFFF),
                    },
                    one_way=True,
                )
            self._owed_messages = self._owed_bytes = 0

    async def next(self, timeout_s: Optional[float] = None) -> Message:
        """The next message, in offset order; raises asyncio.TimeoutError after timeout_s."""
        if timeout_s is None:
            return await self._next_message()
        return await asyncio.wait_for(self._next_message(), timeout_s)

    async def _next_message(self) -> Message:
        while True:
            if self._closed:
                raise ClientClosed("the subscription is closed")
            if self._queue:
                m = self._queue.popleft()
                self._next = m.offset + 1
                self._handed_out = max(self._handed_out, m.offset)
                self._owed_messages += 1
                for c in self._credits:
                    if c[0] > 0:
                        c[0] -= 1
                        break
                self._pay_back()
                return m
            lost = self._lost
            if lost is not None:
                if not isinstance(lost, ConnectionLost):
                    raise lost
                await self._resume()
                continue
            self._wake.clear()
            await self._wake.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._next_message()
        except ClientClosed:
            raise StopAsyncIteration

    async def _resume(self) -> None:
        """Subscribes again after a lost connection: with acknowledgements, after the last
        acknowledged offset (what was handed out unacknowledged comes again, as the broker would
        redeliver it); without, after the last message handed out. In a cluster it resumes
        wherever the partition is served now, following NOT_LEADER for up to a minute."""
        start = FromOffset(self._next)
        if self.ack_timeout_ms > 0:
            start = FromOffset(self._acked + 1 if self._acked >= 0 else self.start_offset)
        old = self._conn
        if old is not None:
            old.subs.pop(self._id, None)
        if self._resume_gives_up_at is None:
            self._resume_gives_up_at = asyncio.get_running_loop().time() + _RESUBSCRIBE_NOT_LEADER_S
        gives_up_at = self._resume_gives_up_at
        try:
            while True:
                try:
                    await self._open(start, gives_up_at)
                    self._resume_gives_up_at = None
                    return
                except ConnectionLost:
                    pass
                except BrokerError as e:
                    if e.code != ERROR_CODES["SUBSCRIPTION_IN_USE"]:
                        raise
                await asyncio.sleep(self.client.reconnect_backoff_s)
        except asyncio.CancelledError:
            # The caller's timeout (next(timeout_s)) came first: the next call resumes again.
            self._lost = ConnectionLost(
                f"resubscribing to {self.topic}/{self.partition} was cut short by a timeout"
            )
            raise
        except BaseException as e:
            # Kept, so the next call raises it too rather than waiting for nothing.
            self._lost = e
            raise

    def ack(self, offset: int) -> None:
        """Acknowledges every offset up to and including `offset`."""
        if self._closed:
            raise ClientClosed("the subscription is closed")
        if offset <= self._acked:
            return
        self._acked = offset
        c = self._conn
        if c is None or c.closed:
            return  # the resubscription starts after the acknowledged offset
        c.send("ACK", {"subscriptionId": self._id, "offset": offset}, one_way=True)

    async def close(self) -> None:
        """Ends the subscription; a durable one keeps its acknowledged progress on the broker."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self.client._subs.discard(self)
        c = self._conn
        if c is None or c.closed:
            return
        try:
            await asyncio.wait_for(
                c.request("UNSUBSCRIBE", {"subscriptionId": self._id}),
                self.client.request_timeout_s,
            )
        except ConnectionLost:
            pass
        finally:
            c.subs.pop(self._id, None)
