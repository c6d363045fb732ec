"""The group consumer: one member of a consumer group (docs/protocol.md §8.9). It heartbeats to
the coordinator, consumes the partitions it is assigned (one subscription each, merged into one
stream), and gives back the ones it is told to give up after committing them. The committed
offset is the next one to process (Kafka's convention)."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, Optional, Union

from .consumer import FromOffset, Message, Start, Subscription
from .errors import ERROR_CODES, BrokerError, ClientClosed, GregorError

if TYPE_CHECKING:
    from .client import Client

# Backoff between failed heartbeats.
_RETRY_S_MIN = 0.05
_RETRY_S_MAX = 1.0

TopicPartition = tuple[str, int]
# A rebalance callback: told the partitions added or taken away; may be a coroutine function.
RebalanceCallback = Callable[[list[TopicPartition]], Union[None, Awaitable[None]]]


@dataclass
class _Owned:
    tp: TopicPartition
    sub: Optional[Subscription]
    # The next offset to process: what a commit of this partition stores.
    position: int
    committed: int
    stopped: bool = False
    pump: Optional[asyncio.Task[None]] = None


class GroupConsumer:
    """A consumer-group member: `async for msg in consumer`. Asking for the next message marks the
    previous one processed; with auto_commit (the default) processed offsets are committed every
    auto_commit_interval_s, when a partition is taken away, and on close. Make one with
    `client.group_consumer(group, topics)`.

    `on_assigned(partitions)` is called when partitions are added to this member, before their
    messages arrive; `on_revoked(partitions)` when partitions are taken away, after their last
    message was handed out and before they are committed (with auto_commit) and released: commit
    there when committing by hand. Either may be a plain or a coroutine function; an exception
    from one fails the consumer (`next()` raises it)."""

    def __init__(
        self,
        client: Client,
        group: str,
        topics: list[str],
        instance_id: str = "",
        assignor: str = "",
        session_timeout_ms: int = 10_000,
        auto_commit: bool = True,
        auto_commit_interval_s: float = 1.0,
        reset: str = "latest",
        window_messages: int = 500,
        window_bytes: int = 1 << 20,
        on_assigned: Optional[RebalanceCallback] = None,
        on_revoked: Optional[RebalanceCallback] = None,
    ) -> None:
        if reset not in ("earliest", "latest"):
            raise ValueError(f"reset {reset!r} is not 'earliest' or 'latest'")
        self.client = client
        self.group = group
        self.topics = list(topics)
        self.instance_id = instance_id
        self.assignor = assignor
        self.session_timeout_ms = session_timeout_ms
        self.auto_commit = auto_commit
        self.auto_commit_interval_s = auto_commit_interval_s
        self.reset = reset
        self.window_messages = window_messages
        self.window_bytes = window_bytes
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.member_id = ""
        self.generation = -1
        self._owned: dict[TopicPartition, _Owned] = {}
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._last: Optional[Message] = None
        self._failure: Optional[BaseException] = None
        self._closed = False
        self._beat_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        self._last_beat_ok = loop.time()

    def assignment(self) -> list[TopicPartition]:
        """The partitions this member consumes now."""
        return [o.tp for o in self._owned.values()]

    async def _start(self) -> None:
        await self._beat()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._heartbeat_loop()))
        if self.auto_commit:
            self._tasks.append(loop.create_task(self._auto_commit_loop()))

    # Consuming

    async def next(self, timeout_s: Optional[float] = None) -> Message:
        """The next message of any assigned partition."""
        if timeout_s is None:
            return await self._next()
        return await asyncio.wait_for(self._next(), timeout_s)

    async def _next(self) -> Message:
        if self._last is not None:
            self._processed(self._last)
            self._last = None
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closed:
                raise ClientClosed("the group consumer is closed")
            get = asyncio.ensure_future(self._queue.get())
            fail = asyncio.ensure_future(self._wake.wait())
            done, _ = await asyncio.wait({get, fail}, return_when=asyncio.FIRST_COMPLETED)
            fail.cancel()
            if get not in done:
                get.cancel()
                continue
            m = get.result()
            o = self._owned.get((m.topic, m.partition))
            if o is None or o.stopped:
                continue  # revoked while queued
            self._last = m
            return m

    def __aiter__(self) -> GroupConsumer:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._next()
        except ClientClosed:
            raise StopAsyncIteration

    def _processed(self, m: Message) -> None:
        o = self._owned.get((m.topic, m.partition))
        if o is not None and not o.stopped and m.offset + 1 > o.position:
            o.position = m.offset + 1
            if o.sub is not None and o.sub.ack_timeout_ms > 0:
                o.sub.ack(m.offset)

    async def _pump(self, o: _Owned) -> None:
        assert o.sub is not None
        try:
            while not o.stopped:
                m = await o.sub.next()
                if o.stopped:
                    return
                await self._queue.put(m)
        except ClientClosed:
            pass
        except GregorError as e:
            if not o.stopped:
                self._fail(e)

    def _fail(self, err: BaseException) -> None:
        if self._failure is None:
            self._failure = err
        self._wake.set()

    # Membership

    async def _heartbeat_loop(self) -> None:
        retry = _RETRY_S_MIN
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                wait = await self._beat()
                retry = _RETRY_S_MIN
            except GregorError as e:
                if self._closed:
                    return
                if isinstance(e, BrokerError) and e.code == ERROR_CODES["FENCED_INSTANCE"]:
                    await self._drop_all()
                    self._fail(e)
                    return
                # Out of touch for a whole session: the coordinator gave our partitions away.
                if loop.time() - self._last_beat_ok > self.session_timeout_ms / 1000:
                    await self._drop_all()
                    self.member_id = ""
                wait = retry
                retry = min(_RETRY_S_MAX, retry * 2)
            except Exception as e:  # a rebalance callback's: the application's to see
                self._fail(e)
                return
            await asyncio.sleep(wait)

    async def _beat(self) -> float:
        """One heartbeat; returns the seconds to the next."""
        async with self._beat_lock:
            try:
                r = await self.client.call(
                    "GROUP_HEARTBEAT",
                    {
                        "group": self.group,
                        "memberId": self.member_id,
                        "instanceId": self.instance_id,
                        "generation": self.generation,
                        "sessionTimeoutMs": self.session_timeout_ms,
                        "assignor": self.assignor,
                        "topics": [{"name": t} for t in self.topics],
                        "owned": [{"topic": t, "partition": p} for t, p in self.assignment()],
                    },
                )
            except BrokerError as e:
                if e.code != ERROR_CODES["UNKNOWN_MEMBER"]:
                    raise
                # The session ended: the partitions may be someone else's now. Drop them
                # uncommitted and join again at once.
                await self._drop_all()
                self.member_id, self.generation = "", -1
                return 0
            self._last_beat_ok = asyncio.get_running_loop().time()
            self.member_id, self.generation = r["memberId"], r["generation"]
            assigned = [(a["topic"], a["partition"]) for a in r["assigned"]]
            revoked = [o for tp, o in self._owned.items() if tp not in assigned]
            if revoked:
                await self._revoke(revoked)
                return 0  # tell the coordinator at once that they are free
            added = [tp for tp in assigned if tp not in self._owned]
            if added:
                await self._assign(added)
            return float(r["heartbeatIntervalMs"]) / 1000

    async def _assign(self, tps: list[TopicPartition]) -> None:
        fetched = await self.client.call(
            "OFFSET_FETCH",
            {"group": self.group, "partitions": [{"topic": t, "partition": p} for t, p in tps]},
        )
        committed = {(o["topic"], o["partition"]): o["offset"] for o in fetched["offsets"]}
        await _call(self.on_assigned, list(tps))
        for tp in tps:
            c = committed.get(tp, -1)
            o = _Owned(tp, None, -1, c)
            self._owned[tp] = o
            start: Start = FromOffset(c) if c >= 0 else self.reset
            try:
                o.sub = await self._subscribe(tp, start)
            except BrokerError as e:
                if e.code != ERROR_CODES["OFFSET_OUT_OF_RANGE"]:
                    del self._owned[tp]
                    raise
                # The committed offset fell to retention: start where the reset policy says.
                o.sub = await self._subscribe(tp, self.reset)
            o.position = o.sub.start_offset
            o.pump = asyncio.get_running_loop().create_task(self._pump(o))

    async def _subscribe(self, tp: TopicPartition, start: Start) -> Subscription:
        return await self.client.subscribe(
            tp[0],
            partition=tp[1],
            start=start,
            window_messages=self.window_messages,
            window_bytes=self.window_bytes,
        )

    async def _revoke(self, owned: list[_Owned]) -> None:
        for o in owned:
            o.stopped = True
        if self._last is not None and (self._last.topic, self._last.partition) in {
            o.tp for o in owned
        }:
            self._last = None
        await _call(self.on_revoked, [o.tp for o in owned])
        if self.auto_commit:
            try:
                await self._commit_owned(owned)
            except GregorError:
                pass
        for o in owned:
            self._owned.pop(o.tp, None)
            await self._end(o)

    async def _end(self, o: _Owned) -> None:
        if o.sub is not None:
            try:
                await o.sub.close()
            except GregorError:
                pass
        if o.pump is not None:
            o.pump.cancel()

    async def _drop_all(self) -> None:
        owned = list(self._owned.values())
        self._owned.clear()
        self._last = None
        for o in owned:
            o.stopped = True
            await self._end(o)

    # Commits

    async def commit(self, offsets: Optional[list[tuple[str, int, int]]] = None) -> None:
        """Commits every owned partition up to and including the last message handed out, and
        returns once the offsets are durable. With `offsets` ((topic, partition, offset), the
        offset being the next one to process) commits exactly those instead; it fails with
        STALE_GENERATION if this member does not own one of them (it moved in a rebalance)."""
        if offsets is None:
            if self._last is not None:
                self._processed(self._last)
            await self._commit_owned(list(self._owned.values()))
            return
        await self.client.call(
            "OFFSET_COMMIT",
            {
                "group": self.group,
                "memberId": self.member_id,
                "generation": self.generation,
                "offsets": [{"topic": t, "partition": p, "offset": n} for t, p, n in offsets],
            },
        )
        for t, p, n in offsets:
            o = self._owned.get((t, p))
            if o is not None:
                o.committed = max(o.committed, n)

    async def _commit_owned(self, owned: list[_Owned]) -> None:
        due = [o for o in owned if o.position >= 0 and o.position > o.committed]
        if not due:
            return
        await self.client.call(
            "OFFSET_COMMIT",
            {
                "group": self.group,
                "memberId": self.member_id,
                "generation": self.generation,
                "offsets": [
                    {"topic": o.tp[0], "partition": o.tp[1], "offset": o.position} for o in due
                ],
            },
        )
        for o in due:
            o.committed = max(o.committed, o.position)

    async def _auto_commit_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.auto_commit_interval_s)
            try:
                await self._commit_owned(list(self._owned.values()))
            except GregorError:
                pass  # a stale generation: the next heartbeat learns the new one

    async def close(self) -> None:
        """Commits (with auto_commit), leaves the group so its partitions move at once, and ends
        every subscription. A static member (instance_id) does not leave: its partitions wait for
        it until the session times out."""
        if self._closed:
            return
        if self.auto_commit:
            try:
                await self.commit()
            except GregorError:
                pass
        self._closed = True
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        async with self._beat_lock:
            await self._drop_all()
        if self.member_id and not self.instance_id:
            try:
                await self.client.call(
                    "GROUP_LEAVE", {"group": self.group, "memberId": self.member_id}
                )
            except GregorError:
                pass


async def _call(callback: Optional[RebalanceCallback], partitions: list[TopicPartition]) -> None:
    """Runs a rebalance callback, awaiting it if it returned an awaitable."""
    if callback is None:
        return
    result = callback(partitions)
    if inspect.isawaitable(result):
        await result
