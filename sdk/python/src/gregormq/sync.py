"""A small synchronous wrapper for scripts: the asyncio client on an event loop of its own thread.

    with gregormq.sync.connect(["127.0.0.1:7070"]) as client:
        client.publish("greetings", b"hello")
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any, Coroutine, Optional, Sequence, TypeVar, Union

from .client import Client, TopicDescription, TopicSummary
from .consumer import Message, Start, Subscription
from .producer import Result

T = TypeVar("T")


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class SyncSubscription:
    """A subscription with blocking calls; iterate it or call `next`."""

    def __init__(self, loop: _Loop, sub: Subscription) -> None:
        self._loop = loop
        self.sub = sub
        self.start_offset = sub.start_offset

    def next(self, timeout_s: Optional[float] = None) -> Message:
        return self._loop.run(self.sub.next(timeout_s))

    def __iter__(self) -> SyncSubscription:
        return self

    def __next__(self) -> Message:
        return self.next()

    def ack(self, offset: int) -> None:
        async def ack() -> None:
            self.sub.ack(offset)

        self._loop.run(ack())

    def close(self) -> None:
        self._loop.run(self.sub.close())


class SyncClient:
    """The asyncio `Client` with blocking calls; close it (or use `with`)."""

    def __init__(self, servers: Union[str, Sequence[str]], **options: Any) -> None:
        self._loop = _Loop()
        servers = [servers] if isinstance(servers, str) else list(servers)

        async def make() -> Client:
            c = Client(servers, **options)
            await c.connection()
            return c

        try:
            self.client = self._loop.run(make())
        except BaseException:
            self._loop.stop()
            raise

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def create_topic(
        self, name: str, partitions: int = 1, configs: Optional[dict[str, str]] = None
    ) -> None:
        self._loop.run(self.client.create_topic(name, partitions, configs))

    def delete_topic(self, name: str) -> None:
        self._loop.run(self.client.delete_topic(name))

    def list_topics(self) -> list[TopicSummary]:
        return self._loop.run(self.client.list_topics())

    def describe_topic(self, name: str) -> TopicDescription:
        return self._loop.run(self.client.describe_topic(name))

    def publish(
        self,
        topic: str,
        value: Optional[bytes],
        key: Optional[bytes] = None,
        partition: Optional[int] = None,
        timestamp: Optional[int] = None,
    ) -> Result:
        return self._loop.run(self.client.publish(topic, value, key, partition, timestamp))

    def subscribe(self, topic: str, start: Start = "latest", **options: Any) -> SyncSubscription:
        sub = self._loop.run(self.client.subscribe(topic, start=start, **options))
        return SyncSubscription(self._loop, sub)

    def close(self) -> None:
        try:
            self._loop.run(self.client.close())
        finally:
            self._loop.stop()


def connect(servers: Union[str, Sequence[str]], **options: Any) -> SyncClient:
    """A connected `SyncClient`; options as for `gregormq.connect`."""
    return SyncClient(servers, **options)
