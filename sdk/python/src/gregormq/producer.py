"""The producer: batching, pipelining up to 5 batches per partition, idempotent retries."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from .batch import CODEC_IDS, Header, Record, encode_batch, partition_for_key, restamp_sequence
from .errors import ERROR_CODES, BrokerError, ClientClosed, ConnectionLost, GregorError
from .protocol import OPS, decode_payload

if TYPE_CHECKING:
    from .client import Client

# The broker remembers the last 5 batches of each producer per partition, so a retry finds its
# original: never more in flight than that.
BATCHES_IN_FLIGHT_PER_PARTITION_MAX = 5
_SEQUENCE_MODULO = 1 << 31
# The pause before asking for a producer id again after a retriable error, s.
_PRODUCER_ID_RETRY_PAUSE_S = 0.1
# Codes the broker answers before it looks at a batch's sequence: the batch leaves a gap.
_REFUSED_BEFORE_SEQUENCE = frozenset(
    ERROR_CODES[n]
    for n in (
        "MALFORMED_REQUEST",
        "INVALID_REQUEST",
        "UNKNOWN_TOPIC",
        "INVALID_TOPIC",
        "UNKNOWN_PARTITION",
        "CORRUPT_BATCH",
        "BATCH_TOO_LARGE",
        "UNSUPPORTED_CODEC",
    )
)
_PRODUCE_RESPONSE = OPS["PRODUCE"][2]


@dataclass
class Result:
    """Where a message was stored; offset is -1 with acks=0."""

    topic: str
    partition: int
    offset: int


def _add_sequence(seq: int, n: int) -> int:
    """Batch sequence numbers wrap from 2^31-1 to 0 (§8.1)."""
    return (seq + n) % _SEQUENCE_MODULO


def _retriable(err: BaseException) -> bool:
    if isinstance(err, BrokerError):
        return err.retriable
    return isinstance(err, ConnectionLost)


def _silence(fut: Optional[asyncio.Future[bytes]]) -> None:
    """Marks a superseded answer as read, so its failure is not reported as never retrieved."""
    if fut is not None:
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())


@dataclass
class _Pending:
    record: Record
    size: int
    future: asyncio.Future[Result]


class _InFlight:
    def __init__(self, msgs: list[_Pending], batch: bytes, base_sequence: int, one_way: bool):
        self.msgs = msgs
        self.batch = batch
        self.base_sequence = base_sequence
        self.one_way = one_way
        self.first = time.monotonic()
        self.answer: Optional[asyncio.Future[bytes]] = None
        self.send_error: Optional[BaseException] = None

    async def outcome(self) -> tuple[Optional[BaseException], bytes]:
        if self.send_error is not None:
            return self.send_error, b""
        if self.answer is None:
            return None, b""
        try:
            return None, await self.answer
        except GregorError as e:
            return e, b""


class _PartitionQueue:
    """Batches and sends the messages of one partition, in order."""

    def __init__(self, producer: Producer, topic: str, partition: int) -> None:
        self.p = producer
        self.topic = topic
        self.partition = partition
        self.queue: deque[_Pending] = deque()
        self.inflight: deque[_InFlight] = deque()
        self.sequence = 0
        self.closing = False
        self.cond = asyncio.Condition()
        # Held while a batch is written, so batches leave in sequence order.
        self.tx_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self._send_loop()),
            loop.create_task(self._complete_loop()),
        ]

    async def notify(self) -> None:
        async with self.cond:
            self.cond.notify_all()

    def idle(self) -> bool:
        return not self.queue and not self.inflight and not self.tx_lock.locked()

    async def _send_loop(self) -> None:
        p = self.p
        while True:
            async with self.cond:
                await self.cond.wait_for(
                    lambda: bool(self.queue or self.closing)
                    and len(self.inflight) < BATCHES_IN_FLIGHT_PER_PARTITION_MAX
                )
                if not self.queue:
                    return
            if p.linger_s > 0 and len(self.queue) < p.batch_records_max and not self.closing:
                await asyncio.sleep(p.linger_s)
            msgs: list[_Pending] = []
            size = 0
            while self.queue and len(msgs) < p.batch_records_max:
                nxt = self.queue[0]
                if msgs and size + nxt.size > p.batch_bytes_max:
                    break
                msgs.append(self.queue.popleft())
                size += nxt.size
            await self._send_batch(msgs)

    async def _send_batch(self, msgs: list[_Pending]) -> None:
        p = self.p
        pid, epoch = -1, -1
        if p.idempotent:
            try:
                pid, epoch = await p._ids()
            except GregorError as e:
                _fail(msgs, e)
                return
        async with self.tx_lock:
            seq = self.sequence if p.idempotent else -1
            try:
                batch = encode_batch(
                    [m.record for m in msgs], p.codec, 0, pid, epoch, seq
                )
            except (ValueError, GregorError) as e:
                _fail(msgs, e)
                return
            if p.idempotent:
                self.sequence = _add_sequence(self.sequence, len(msgs))
            f = _InFlight(msgs, batch, seq, p.acks == 0)
            await self._transmit(f)
            self.inflight.append(f)
        p._batch_sent(self.topic)
        await self.notify()

    async def _transmit(self, f: _InFlight) -> None:
        """Sends one batch; called with tx_lock held."""
        _silence(f.answer)
        f.answer, f.send_error = None, None
        try:
            c = await self.p.client.connection()
            f.answer = c.send(
                "PRODUCE",
                {
                    "topic": self.topic,
                    "partition": self.partition,
                    "acks": self.p.acks,
                    "timeoutMs": 30_000,
                    "batch": f.batch,
                },
                f.one_way,
            )
            await c.drain()
        except GregorError as e:
            f.send_error = e

    def _in_time(self, f: _InFlight) -> bool:
        return time.monotonic() - f.first < self.p.delivery_timeout_s

    async def _complete_loop(self) -> None:
        backoff = 0.05
        while True:
            async with self.cond:
                await self.cond.wait_for(
                    lambda: bool(self.inflight) or (self.closing and not self.queue)
                )
                if not self.inflight:
                    return
            f = self.inflight[0]
            err, payload = await f.outcome()
            if err is not None and _retriable(err) and self.p.idempotent and self._in_time(f):
                # Send this batch and every later one again, in order: the broker stores each once.
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, 1.0)
                async with self.tx_lock:
                    for g in list(self.inflight):
                        await self._transmit(g)
                continue
            backoff = 0.05
            self.inflight.popleft()
            if err is None:
                self._complete(f, payload)
            else:
                _fail(f.msgs, err)
                if (
                    self.p.idempotent
                    and isinstance(err, BrokerError)
                    and err.code in _REFUSED_BEFORE_SEQUENCE
                ):
                    await self._close_gap(len(f.msgs))
            await self.notify()

    async def _close_gap(self, n: int) -> None:
        """A batch of n records was refused before its sequence was taken, so every later batch in
        flight fails OUT_OF_ORDER_SEQUENCE: wait for every answer in flight, and renumber and send
        again, in order, the batches that were not stored."""
        async with self.tx_lock:
            rest = list(self.inflight)
            self.inflight.clear()
            shift = n
            kept: list[_InFlight] = []
            for g in rest:
                err, payload = await g.outcome()
                if err is None:
                    self._complete(g, payload)
                elif isinstance(err, BrokerError) and err.code in _REFUSED_BEFORE_SEQUENCE:
                    _fail(g.msgs, err)
                    shift += len(g.msgs)
                elif _retriable(err) and self._in_time(g):
                    g.base_sequence = _add_sequence(g.base_sequence, -shift)
                    g.batch = restamp_sequence(g.batch, g.base_sequence)
                    kept.append(g)
                else:
                    _fail(g.msgs, err)
            self.sequence = _add_sequence(self.sequence, -shift)
            for g in kept:
                await self._transmit(g)
            self.inflight.extend(kept)
        await self.notify()

    def _complete(self, f: _InFlight, payload: bytes) -> None:
        base = -1
        if not f.one_way:
            try:
                base = decode_payload(_PRODUCE_RESPONSE, payload)["baseOffset"]
            except GregorError as e:
                _fail(f.msgs, e)
                return
        for i, m in enumerate(f.msgs):
            if not m.future.done():
                m.future.set_result(
                    Result(self.topic, self.partition, base + i if base >= 0 else -1)
                )


def _fail(msgs: list[_Pending], err: BaseException) -> None:
    for m in msgs:
        if not m.future.done():
            m.future.set_exception(err)


class Producer:
    """Publishes messages in batches. Messages to one partition are stored in the order sent.
    Idempotent by default (a producer id and sequence numbers), so a batch whose outcome was lost
    with its connection is sent again without being stored twice.

    Options: codec ("none", "gzip", "snappy", "lz4", "zstd"), linger_ms (how long a batch may
    wait for more messages; default 0), batch_records_max (10 000), batch_bytes_max (256 KiB),
    acks (0 none, 1 leader, 2 quorum; default 1), idempotent (default True; off with acks=0),
    delivery_timeout_s (how long a batch is retried; default 120), buffer_bytes_max (the bytes of
    messages queued and not yet answered, counted as batch_bytes_max counts them; default 64 MiB:
    past it `send` waits for room, which `asyncio.wait_for` can bound)."""

    def __init__(
        self,
        client: Client,
        codec: str = "none",
        linger_ms: float = 0,
        batch_records_max: int = 10_000,
        batch_bytes_max: int = 256 * 1024,
        acks: int = 1,
        idempotent: bool = True,
        delivery_timeout_s: float = 120.0,
        buffer_bytes_max: int = 64 * 1024 * 1024,
    ) -> None:
        if codec not in CODEC_IDS:
            raise ValueError(f"codec {codec!r} is not one of {', '.join(CODEC_IDS)}")
        if acks not in (0, 1, 2):
            raise ValueError(f"acks {acks} is not 0, 1 or 2")
        self.client = client
        self.codec = codec
        self.linger_s = linger_ms / 1000
        self.batch_records_max = max(1, batch_records_max)
        self.batch_bytes_max = max(1, batch_bytes_max)
        self.acks = acks
        self.idempotent = idempotent and acks != 0
        self.delivery_timeout_s = delivery_timeout_s
        self.buffer_bytes_max = max(1, buffer_bytes_max)
        # Bytes of messages queued and not yet answered; `_room` is set whenever some are answered.
        self._buffered = 0
        self._room = asyncio.Event()
        self._parts: dict[tuple[str, int], _PartitionQueue] = {}
        self._sticky: dict[str, int] = {}
        self._closed = False
        self._producer_id = -1
        self._epoch = -1
        self._ids_lock = asyncio.Lock()

    async def _ids(self) -> tuple[int, int]:
        async with self._ids_lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.delivery_timeout_s
            while self._producer_id < 0:
                try:
                    r = await self.client.call("INIT_PRODUCER_ID", {})
                except BrokerError as e:
                    # The controller hands out producer ids: while a cluster elects a new one the
                    # node asked answers NOT_LEADER (or TIMEOUT); ask again within the delivery
                    # timeout.
                    if not e.retriable or loop.time() >= deadline:
                        raise
                    await asyncio.sleep(_PRODUCER_ID_RETRY_PAUSE_S)
                    continue
                self._producer_id, self._epoch = r["producerId"], r["producerEpoch"]
        return self._producer_id, self._epoch

    def _batch_sent(self, topic: str) -> None:
        # Kafka's sticky partitioning: keyless messages fill a batch before moving on.
        self._sticky[topic] = self._sticky.get(topic, 0) + 1

    async def send(
        self,
        topic: str,
        value: Optional[bytes],
        key: Optional[bytes] = None,
        partition: Optional[int] = None,
        timestamp: Optional[int] = None,
        headers: Optional[list[Header]] = None,
    ) -> asyncio.Future[Result]:
        """Queues one message and returns the future of where it was stored. `partition` None
        hashes the key (murmur2, as Kafka does) or, without a key, fills one partition's batch
        before moving to the next. `timestamp` is ms since the epoch (default now)."""
        if self._closed:
            raise ClientClosed("the producer is closed")
        if partition is None:
            n = await self.client.partitions(topic)
            if key is not None:
                partition = partition_for_key(key, n)
            else:
                partition = self._sticky.get(topic, 0) % n
        ts = timestamp if timestamp is not None else int(time.time() * 1000)
        hs = headers or []
        rec = Record(ts, key, value, hs)
        size = len(key or b"") + len(value or b"") + 16 + sum(
            len(h.key) + len(h.value or b"") + 4 for h in hs
        )
        # A message larger than the whole buffer is taken when nothing else waits for an answer.
        while self._buffered > 0 and self._buffered + size > self.buffer_bytes_max:
            self._room.clear()
            await self._room.wait()
        if self._closed:
            raise ClientClosed("the producer is closed")
        q = self._parts.get((topic, partition))
        if q is None:
            q = _PartitionQueue(self, topic, partition)
            self._parts[(topic, partition)] = q
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._buffered += size
        fut.add_done_callback(lambda _: self._answered(size))
        q.queue.append(_Pending(rec, size, fut))
        await q.notify()
        return fut

    def _answered(self, size: int) -> None:
        self._buffered -= size
        self._room.set()

    async def send_and_wait(
        self,
        topic: str,
        value: Optional[bytes],
        key: Optional[bytes] = None,
        partition: Optional[int] = None,
        timestamp: Optional[int] = None,
        headers: Optional[list[Header]] = None,
    ) -> Result:
        """Publishes one message and waits until the broker has stored it."""
        return await (await self.send(topic, value, key, partition, timestamp, headers))

    async def flush(self) -> None:
        """Waits until every message queued so far has its answer."""
        for q in list(self._parts.values()):
            async with q.cond:
                await q.cond.wait_for(q.idle)

    async def close(self) -> None:
        """Sends what is queued, waits for the answers and stops the producer."""
        try:
            await self.flush()
        finally:
            self._closed = True
            for q in self._parts.values():
                q.closing = True
                await q.notify()
            for q in self._parts.values():
                await asyncio.gather(*q.tasks, return_exceptions=True)
            self.client._producers.discard(self)
