"""The asyncio client: bootstrap servers, reconnects, admin requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from .connection import Connection
from .errors import ERROR_CODES, BrokerError, ClientClosed, ConnectionLost, GregorError
from .protocol import Msg

if TYPE_CHECKING:
    from .consumer import Start, Subscription
    from .group import GroupConsumer
    from .producer import Producer, Result


@dataclass
class TopicSummary:
    """A topic as LIST_TOPICS gives it."""

    name: str
    partitions: int


@dataclass
class PartitionInfo:
    """One partition of DESCRIBE_TOPIC."""

    partition: int
    log_start_offset: int
    high_watermark: int
    size_bytes: int
    subscribers: int
    damaged_from_offset: int
    leader: str
    replicas: list[str]
    isr: list[str]
    # True while the partition's replicas move to `replicas` (a reassignment, a dead node's).
    moving: bool = False


@dataclass
class TopicDescription:
    """DESCRIBE_TOPIC's answer; configs are the effective ones (defaults included)."""

    name: str
    configs: dict[str, str]
    partitions: list[PartitionInfo] = field(default_factory=list)


class Client:
    """A connection to GregorMQ that reconnects to any of its bootstrap servers when lost. Make
    one with `connect(...)`; use it from one event loop."""

    def __init__(
        self,
        servers: Sequence[str],
        client_id: str = "gregormq-python",
        credential: Optional[bytes] = None,
        request_timeout_s: float = 30.0,
        reconnect_backoff_s: float = 0.05,
        ping_interval_s: float = 5.0,
        username: Optional[str] = None,
        password: Optional[str] = None,
    ) -> None:
        if not servers:
            raise ValueError("servers is empty: give at least one host:port")
        self.servers = list(servers)
        self.client_id = client_id
        self.credential = credential
        self.request_timeout_s = request_timeout_s
        self.reconnect_backoff_s = reconnect_backoff_s
        self.ping_interval_s = ping_interval_s
        self._login = None if username is None else (username, password or "")
        self._conn: Optional[Connection] = None
        # Connections to other nodes of a cluster, by address, for subscriptions to the
        # partitions they lead.
        self._leaders: dict[str, Connection] = {}
        self._next_server = 0
        self._closed = False
        self._dial_lock = asyncio.Lock()
        self._next_sub = 0
        self._counts: dict[str, int] = {}
        self._producers: set[Producer] = set()
        self._subs: set[Subscription] = set()
        self._default_producer: Optional[Producer] = None
        self._ping_task: Optional[asyncio.Task[None]] = None

    async def __aenter__(self) -> Client:
        await self.connection()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    @property
    def address(self) -> str:
        """The broker the client is connected to now; "" when disconnected."""
        c = self._conn
        return c.addr if c is not None and not c.closed else ""

    async def connection(self) -> Connection:
        """The live connection, connecting to the servers in turn if there is none; gives up
        after the request timeout."""
        if self._closed:
            raise ClientClosed("the client is closed")
        c = self._conn
        if c is not None and not c.closed:
            return c
        async with self._dial_lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.request_timeout_s
            errors: list[str] = []
            while True:
                c = self._conn
                if c is not None and not c.closed:
                    return c
                for i in range(len(self.servers)):
                    k = (self._next_server + i) % len(self.servers)
                    addr = self.servers[k]
                    try:
                        c = await Connection.open(
                            addr,
                            self.client_id,
                            self.credential,
                            max(0.1, deadline - loop.time()),
                            self._login,
                        )
                    except BrokerError as e:
                        if e.code == ERROR_CODES["AUTHENTICATION_FAILED"]:
                            raise
                        errors.append(f"{addr}: {e}")
                        continue
                    except (OSError, ConnectionLost, asyncio.TimeoutError) as e:
                        errors.append(f"{addr}: {e or type(e).__name__}")
                        continue
                    if self._closed:
                        c.close(ClientClosed("the client is closed"))
                        raise ClientClosed("the client is closed")
                    self._conn = c
                    # After a loss the next connect starts with the server after this one.
                    self._next_server = (k + 1) % len(self.servers)
                    if self._ping_task is None or self._ping_task.done():
                        self._ping_task = loop.create_task(self._ping_loop())
                    return c
                if loop.time() >= deadline:
                    raise ConnectionLost(
                        f"no server of {self.servers} answered in {self.request_timeout_s} s: "
                        + "; ".join(errors[-len(self.servers) :])
                    )
                await asyncio.sleep(self.reconnect_backoff_s)

    async def _ping_loop(self) -> None:
        """Checks an idle connection, so a broker that stopped answering is noticed."""
        while not self._closed:
            await asyncio.sleep(self.ping_interval_s)
            for c in [self._conn, *self._leaders.values()]:
                if c is None or c.closed:
                    continue
                try:
                    await asyncio.wait_for(c.request("PING", {}), 2 * self.ping_interval_s)
                except asyncio.TimeoutError:
                    c.close(ConnectionLost(f"{c.addr} did not answer PING"))
                except Exception:
                    pass

    async def _leader_connection(self, topic: str, partition: int) -> Optional[Connection]:
        """A connection to the node that leads the partition as the cluster's metadata names it
        now: the client's own if that is the node, else one opened for subscriptions and kept.
        None when no leader is known (none elected yet, a single node, or one that cannot be
        reached now)."""
        try:
            resp = await self.call("METADATA", {"topics": [{"name": topic}], "autoCreate": 0})
        except (GregorError, OSError, asyncio.TimeoutError):
            return None
        leader = next(
            (
                p["leader"]
                for t in resp["topics"]
                for p in t["partitions"]
                if t["name"] == topic and p["partition"] == partition
            ),
            "",
        )
        addr = next(
            (
                f"{n['host']}:{n['clientPort']}"
                for n in resp["nodes"]
                if leader and n["id"] == leader
            ),
            "",
        )
        if not addr or self._closed:
            return None
        for c in (self._conn, self._leaders.get(addr)):
            if c is not None and c.addr == addr and not c.closed:
                return c
        try:
            c = await Connection.open(
                addr, self.client_id, self.credential, self.request_timeout_s, self._login
            )
        except (GregorError, OSError, asyncio.TimeoutError):
            return None
        old = self._leaders.get(addr)
        if self._closed or (old is not None and not old.closed):
            # Closed meanwhile, or another subscription opened one first: use that one.
            c.close(ClientClosed("the client is closed"))
            return None if self._closed else old
        self._leaders[addr] = c
        return c

    async def call(self, op: str, m: Msg) -> Msg:
        """Sends a request that is safe to repeat, reconnecting and sending it again (3 times at
        most) if the connection is lost before the answer."""
        for attempt in range(4):
            c = await self.connection()
            try:
                return await asyncio.wait_for(c.request(op, m), self.request_timeout_s)
            except ConnectionLost:
                if attempt == 3:
                    raise
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        """Checks that the broker answers."""
        await self.call("PING", {})

    async def create_topic(
        self, name: str, partitions: int = 1, configs: Optional[dict[str, str]] = None
    ) -> None:
        """Creates a topic; TOPIC_EXISTS if it exists, INVALID_TOPIC for a bad name."""
        await self.call(
            "CREATE_TOPIC", {"name": name, "partitions": partitions, "configs": configs or {}}
        )

    async def delete_topic(self, name: str) -> None:
        """Deletes a topic and forgets its durable subscriptions; UNKNOWN_TOPIC if missing."""
        await self.call("DELETE_TOPIC", {"name": name})
        self._counts.pop(name, None)

    async def list_topics(self) -> list[TopicSummary]:
        """Every topic, sorted by name."""
        resp = await self.call("LIST_TOPICS", {})
        return [TopicSummary(t["name"], t["partitions"]) for t in resp["topics"]]

    async def describe_topic(self, name: str) -> TopicDescription:
        """A topic's effective configs and partitions."""
        r = await self.call("DESCRIBE_TOPIC", {"name": name})
        return TopicDescription(
            r["name"],
            r["configs"],
            [
                PartitionInfo(
                    p["partition"],
                    p["logStartOffset"],
                    p["highWatermark"],
                    p["sizeBytes"],
                    p["subscribers"],
                    p["damagedFromOffset"],
                    p["leader"],
                    [x["id"] for x in p["replicas"]],
                    [x["id"] for x in p["isr"]],
                    p["moving"] == 1,
                )
                for p in r["partitions"]
            ],
        )

    async def alter_topic(self, name: str, configs: dict[str, str]) -> None:
        """Changes a topic's retention configs."""
        await self.call("ALTER_TOPIC", {"name": name, "configs": configs})

    async def create_partitions(self, name: str, count: int) -> None:
        """Grows a topic to `count` partitions."""
        await self.call("CREATE_PARTITIONS", {"name": name, "count": count})
        self._counts.pop(name, None)

    async def partitions(self, topic: str) -> int:
        """The topic's partition count, asked once (auto-creating the topic if the broker does)."""
        n = self._counts.get(topic)
        if n is not None:
            return n
        resp = await self.call("METADATA", {"topics": [{"name": topic}], "autoCreate": 1})
        topics = resp["topics"]
        if len(topics) != 1:
            raise BrokerError(ERROR_CODES["INTERNAL"], f"METADATA for {topic} gave {len(topics)}")
        if topics[0]["error"]:
            raise BrokerError(topics[0]["error"], f"topic {topic}")
        n = len(topics[0]["partitions"])
        if n == 0:
            raise BrokerError(ERROR_CODES["UNKNOWN_TOPIC"], f"topic {topic} has no partitions")
        self._counts[topic] = n
        return n

    def producer(self, **options: object) -> Producer:
        """A producer with its own batching settings (see `Producer`)."""
        from .producer import Producer

        p = Producer(self, **options)  # type: ignore[arg-type]
        self._producers.add(p)
        return p

    async def publish(
        self,
        topic: str,
        value: Optional[bytes],
        key: Optional[bytes] = None,
        partition: Optional[int] = None,
        timestamp: Optional[int] = None,
    ) -> Result:
        """Publishes one message with the client's default producer and waits until it is
        stored."""
        if self._default_producer is None:
            self._default_producer = self.producer()
        return await self._default_producer.send_and_wait(
            topic, value, key=key, partition=partition, timestamp=timestamp
        )

    async def subscribe(
        self,
        topic: str,
        partition: int = 0,
        start: Start = "latest",
        durable: str = "",
        ack_timeout_ms: int = 30_000,
        no_acks: bool = False,
        window_messages: int = 1000,
        window_bytes: int = 1 << 20,
    ) -> Subscription:
        """Subscribes to one partition; see `Subscription`. `start` is "earliest", "latest",
        `FromOffset(n)` or `FromTimestamp(ms)`."""
        from .consumer import Subscription

        sub = Subscription(
            self,
            topic,
            partition,
            durable,
            0 if no_acks else ack_timeout_ms,
            window_messages,
            window_bytes,
        )
        loop = asyncio.get_running_loop()
        await sub._open(start, loop.time() + self.request_timeout_s)
        sub.start_offset = sub._next
        self._subs.add(sub)
        return sub

    async def group_consumer(self, group: str, topics: list[str], **options: Any) -> GroupConsumer:
        """Joins a consumer group as a new member; see `GroupConsumer` for the options."""
        from .group import GroupConsumer

        g = GroupConsumer(self, group, topics, **options)
        await g._start()
        return g

    def _new_subscription_id(self) -> int:
        self._next_sub = self._next_sub % 0xFFFFFFFF + 1
        return self._next_sub

    async def close(self) -> None:
        """Flushes and closes producers, ends subscriptions, closes the connection."""
        if self._closed:
            return
        for p in list(self._producers):
            try:
                await p.close()
            except Exception:
                pass
        for s in list(self._subs):
            try:
                await s.close()
            except Exception:
                pass
        self._closed = True
        if self._ping_task is not None:
            self._ping_task.cancel()
        for c in [self._conn, *self._leaders.values()]:
            if c is not None:
                c.close(ClientClosed("the client is closed"))
                await c.wait_closed()
        self._leaders.clear()


def connect(
    servers: Union[str, Sequence[str]],
    client_id: str = "gregormq-python",
    credential: Optional[bytes] = None,
    request_timeout_s: float = 30.0,
    reconnect_backoff_s: float = 0.05,
    ping_interval_s: float = 5.0,
    username: Optional[str] = None,
    password: Optional[str] = None,
) -> Client:
    """A client for `async with connect(servers=[...]) as client:`; the connection is made on
    entering (or by `await client.connection()`). With `username` the client logs in with
    SCRAM-SHA-256 (a broker started with `--auth scram`); a refused login raises BrokerError
    AUTHENTICATION_FAILED at once, without trying other servers."""
    return Client(
        [servers] if isinstance(servers, str) else servers,
        client_id,
        credential,
        request_timeout_s,
        reconnect_backoff_s,
        ping_interval_s,
        username,
        password,
    )
