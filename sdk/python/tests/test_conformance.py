"""The Python driver of the conformance suite: every scenario of conformance/scenarios.json, run
with this SDK against live brokers, as sdk/go/conformance_test.go runs them with the Go SDK."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Optional

import pytest
from _proxy import CuttingProxy
from conftest import REPO, Broker, Brokers

import gregormq
from gregormq import BrokerError, Client, FromOffset, FromTimestamp, Message, Subscription
from gregormq.group import GroupConsumer

SCENARIOS: list[dict[str, Any]] = json.loads((REPO / "conformance" / "scenarios.json").read_text())[
    "scenarios"
]
# How long a receive step waits for each message.
RECEIVE_TIMEOUT_S = 10
# The bound of one whole scenario.
SCENARIO_TIMEOUT_S = 90
# How long an awaitAssignment step waits for the group to settle, and how often it looks.
ASSIGNMENT_TIMEOUT_S = 10
ASSIGNMENT_POLL_S = 0.02
# How long an awaitCluster step waits for the nodes and a controller, an awaitLeaders step for the
# partitions' leaders, and how often they (and a createTopic with retryMs) ask again.
CLUSTER_TIMEOUT_S = 30
LEADERS_TIMEOUT_S = 10
SETTLE_POLL_S = 0.1


def test_there_are_scenarios() -> None:
    assert len(SCENARIOS) >= 10


def refused_address() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


def enc(v: Optional[str]) -> Optional[bytes]:
    return None if v is None else v.encode("utf-8")


class Driver:
    def __init__(self, brokers: list[Broker]) -> None:
        self.brokers = brokers
        self.clients: list[Client] = []
        self.client: Client
        self.subs: dict[str, Subscription] = {}
        # What each subscription reads: (topic, partition).
        self.sub_partitions: dict[str, tuple[str, int]] = {}
        self.proxies: list[CuttingProxy] = []
        # A next() left waiting by expectNone, which the following receive takes over.
        self.pending: dict[str, asyncio.Task[Message]] = {}
        # Group members by step name (each on its own client), and their waiting next()s.
        self.members: dict[str, GroupConsumer] = {}
        self.member_pending: dict[str, asyncio.Task[Message]] = {}

    async def open(self, servers: list[str]) -> Client:
        c = gregormq.connect(servers=servers, request_timeout_s=10)
        await c.connection()
        self.clients.append(c)
        return c

    async def close(self) -> None:
        for t in [*self.pending.values(), *self.member_pending.values()]:
            t.cancel()
        for c in self.clients:
            await c.close()
        for p in self.proxies:
            await p.close()

    async def next(self, name: str) -> Message:
        task = self.pending.pop(name, None)
        if task is None:
            task = asyncio.get_running_loop().create_task(self.subs[name].next())
        try:
            return await asyncio.wait_for(task, RECEIVE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise AssertionError(f"{name}: nothing received in {RECEIVE_TIMEOUT_S} s")

    async def run(self, st: dict[str, Any]) -> None:
        op = st["op"]
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            raise AssertionError(f"unknown step op {op}")
        await handler(st)

    async def op_connect(self, st: dict[str, Any]) -> None:
        servers = [
            refused_address() if x == "refused" else self.brokers[x].addr for x in st["servers"]
        ]
        if "cuttingProxy" in st:
            pc = st["cuttingProxy"]
            p = await CuttingProxy(servers[0], pc["cuts"], pc["afterBytes"]).start()
            self.proxies.append(p)
            servers = [p.addr]
        self.client = await self.open(servers)

    async def op_stopBroker(self, st: dict[str, Any]) -> None:
        if "leaderOf" not in st:
            self.brokers[st["broker"]].stop()
            return
        topic, partition = self.sub_partitions[st["leaderOf"]]
        leader = (await self.client.describe_topic(topic)).partitions[partition].leader
        b = next((b for b in self.brokers if b.node_id == leader), None)
        assert b is not None, f"the leader {leader!r} of {topic}/{partition} is no broker"
        b.stop()

    async def op_createTopic(self, st: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + st.get("retryMs", 0) / 1000
        failed = False
        while True:
            try:
                await self.client.create_topic(st["topic"], st["partitions"], st.get("configs"))
                return
            except BrokerError as e:
                # An attempt that failed (a TIMEOUT, say) may have created the topic.
                if failed and e.code_name == "TOPIC_EXISTS":
                    return
                if not e.retriable or loop.time() >= deadline:
                    raise
            failed = True
            await asyncio.sleep(SETTLE_POLL_S)

    async def op_awaitCluster(self, st: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLUSTER_TIMEOUT_S
        while True:
            got: Any
            try:
                m = await self.client.call("METADATA", {"topics": [], "autoCreate": 0})
                if len(m["nodes"]) == st["nodes"] and m["controller"]:
                    return
                got = m
            except gregormq.GregorError as e:
                got = e
            if loop.time() >= deadline:
                raise AssertionError(f"the cluster did not form in {CLUSTER_TIMEOUT_S} s: {got}")
            await asyncio.sleep(SETTLE_POLL_S)

    async def op_awaitLeaders(self, st: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEADERS_TIMEOUT_S
        while True:
            d = await self.client.describe_topic(st["topic"])
            leaders = [p.leader for p in d.partitions]
            if (
                all(leaders)
                and len(set(leaders)) == len(leaders)
                and all(
                    len(p.replicas) == st["replicas"] and p.leader in p.replicas and not p.moving
                    for p in d.partitions
                )
            ):
                return
            if loop.time() >= deadline:
                raise AssertionError(
                    f"{st['topic']}'s partitions did not each get a leader of their own in "
                    f"{LEADERS_TIMEOUT_S} s: {d.partitions}"
                )
            await asyncio.sleep(SETTLE_POLL_S)

    async def op_deleteTopic(self, st: dict[str, Any]) -> None:
        await self.client.delete_topic(st["topic"])

    async def op_listTopics(self, st: dict[str, Any]) -> None:
        by_name = {t.name: t.partitions for t in await self.client.list_topics()}
        for want in st.get("expectIncludes", []):
            assert by_name.get(want["name"]) == want["partitions"], (want, by_name)
        for name in st.get("expectExcludes", []):
            assert name not in by_name, f"{name} is still listed"

    async def op_describeTopic(self, st: dict[str, Any]) -> None:
        d = await self.client.describe_topic(st["topic"])
        if "expectPartitions" in st:
            assert len(d.partitions) == st["expectPartitions"]
        if "expectHighWatermarks" in st:
            assert [p.high_watermark for p in d.partitions] == st["expectHighWatermarks"]
        for k, v in st.get("expectConfigsInclude", {}).items():
            assert d.configs.get(k) == v, (k, d.configs)

    async def op_publish(self, st: dict[str, Any]) -> None:
        p = self.client.producer(codec=st.get("codec", "none"), linger_ms=5)
        try:
            futures = []
            for m in st["messages"]:
                futures.append(
                    await p.send(
                        st["topic"],
                        enc(m.get("value")),
                        key=enc(m.get("key")),
                        partition=st.get("partition"),
                        timestamp=m.get("timestamp"),
                    )
                )
            results = [await f for f in futures]
        finally:
            await p.close()
        if "expectOffsets" in st:
            assert [r.offset for r in results] == st["expectOffsets"]
        if "expectPartitions" in st:
            assert [r.partition for r in results] == st["expectPartitions"]

    async def op_publishMany(self, st: dict[str, Any]) -> None:
        p = self.client.producer(batch_records_max=st.get("batchRecordsMax", 10_000))
        futures = [
            await p.send(st["topic"], f"{st['valuePrefix']}{n}".encode())
            for n in range(st["count"])
        ]
        await p.close()
        for f in futures:
            await f

    async def op_expectProxyCuts(self, st: dict[str, Any]) -> None:
        cut = sum(p.cut for p in self.proxies)
        assert cut >= st["atLeast"], f"the proxy cut {cut} connections, fewer than {st['atLeast']}"

    async def op_publishEach(self, st: dict[str, Any]) -> None:
        for n in range(st["count"]):
            await self.client.publish(st["topic"], f"{st['valuePrefix']}{n}".encode())

    async def op_subscribe(self, st: dict[str, Any]) -> None:
        c = self.client
        if st.get("newClient"):
            c = await self.open([self.brokers[0].addr])
        f = st["from"]
        start: gregormq.Start = f
        if isinstance(f, dict):
            start = FromOffset(f["offset"]) if "offset" in f else FromTimestamp(f["timestamp"])
        partition = st.get("partition", 0)
        if "awayFrom" in st:
            away = self.brokers[st["awayFrom"]].node_id
            d = await self.client.describe_topic(st["topic"])
            p = next((p for p in d.partitions if away not in p.replicas), None)
            assert p is not None, f"every partition of {st['topic']} has a replica on {away}"
            partition = p.partition
        sub = await c.subscribe(
            st["topic"],
            partition=partition,
            start=start,
            durable=st.get("durable", ""),
            ack_timeout_ms=st.get("ackTimeoutMs", 30_000),
            no_acks=bool(st.get("noAcks")),
            window_messages=st.get("windowMessages", 1000),
        )
        self.subs[st["sub"]] = sub
        self.sub_partitions[st["sub"]] = (st["topic"], partition)
        if "expectStartOffset" in st:
            assert sub.start_offset == st["expectStartOffset"]

    async def op_receive(self, st: dict[str, Any]) -> None:
        for want in st["expect"]:
            m = await self.next(st["sub"])
            assert m.offset == want["offset"], (m.offset, want)
            if "key" in want:
                assert m.key == enc(want["key"]), (m, want)
            if "value" in want:
                assert m.value == enc(want["value"]), (m, want)
            if "timestamp" in want:
                assert m.timestamp == want["timestamp"], (m, want)
            if "redelivered" in want:
                assert m.redelivered == want["redelivered"], (m, want)

    async def op_receiveCount(self, st: dict[str, Any]) -> None:
        for n in range(st["count"]):
            m = await self.next(st["sub"])
            assert m.offset == st["firstOffset"] + n, (m.offset, st["firstOffset"] + n)
            if "valuePrefix" in st:
                assert m.value == f"{st['valuePrefix']}{n}".encode(), (m, n)

    async def op_expectNone(self, st: dict[str, Any]) -> None:
        name = st["sub"]
        task = asyncio.get_running_loop().create_task(self.subs[name].next())
        done, _ = await asyncio.wait({task}, timeout=st["ms"] / 1000)
        if done:
            raise AssertionError(f"{name} received {task.result()} but expected nothing")
        self.pending[name] = task

    async def op_ack(self, st: dict[str, Any]) -> None:
        self.subs[st["sub"]].ack(st["offset"])

    async def op_unsubscribe(self, st: dict[str, Any]) -> None:
        await self.subs.pop(st["sub"]).close()

    def owned(self, name: str, topic: str) -> list[int]:
        return sorted(p for t, p in self.members[name].assignment() if t == topic)

    def member_next(self, name: str) -> asyncio.Task[Message]:
        task = self.member_pending.pop(name, None)
        if task is None:
            task = asyncio.get_running_loop().create_task(self.members[name].next())
        return task

    async def op_joinGroup(self, st: dict[str, Any]) -> None:
        c = await self.open([self.brokers[0].addr])
        self.members[st["member"]] = await c.group_consumer(
            st["group"],
            st["topics"],
            reset=st.get("reset", "latest"),
            auto_commit=bool(st.get("autoCommit")),
        )

    async def op_awaitAssignment(self, st: dict[str, Any]) -> None:
        want: dict[str, int] = st["members"]
        deadline = asyncio.get_running_loop().time() + ASSIGNMENT_TIMEOUT_S
        while True:
            got = {n: self.owned(n, st["topic"]) for n in want}
            every = sorted(p for ps in got.values() for p in ps)
            if all(len(got[n]) == k for n, k in want.items()) and every == list(
                range(st["partitions"])
            ):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the group did not settle on {want}: {got}")
            await asyncio.sleep(ASSIGNMENT_POLL_S)

    async def op_groupReceive(self, st: dict[str, Any]) -> None:
        expected: list[dict[str, Any]] = st["expect"]
        matched: set[int] = set()
        for name in st["members"]:
            mine = self.owned(name, st["topic"])
            for _ in range(sum(1 for e in expected if e["partition"] in mine)):
                try:
                    m = await asyncio.wait_for(self.member_next(name), RECEIVE_TIMEOUT_S)
                except asyncio.TimeoutError:
                    raise AssertionError(f"{name}: nothing received in {RECEIVE_TIMEOUT_S} s")
                at = f"{name} received {m.topic}/{m.partition}@{m.offset}"
                assert m.partition in mine, f"{at}, a partition it does not own"
                i = next(
                    (
                        k
                        for k, e in enumerate(expected)
                        if k not in matched
                        and e["partition"] == m.partition
                        and e["offset"] == m.offset
                    ),
                    None,
                )
                assert i is not None, f"{at}, which is not expected here or came twice"
                matched.add(i)
                if "value" in expected[i]:
                    assert m.value == enc(expected[i]["value"]), at
        missed = [e for k, e in enumerate(expected) if k not in matched]
        assert not missed, f"no member owning their partition received {missed}"

    async def op_groupExpectNone(self, st: dict[str, Any]) -> None:
        for name in st["members"]:
            task = self.member_next(name)
            done, _ = await asyncio.wait({task}, timeout=st["ms"] / 1000)
            if done:
                raise AssertionError(f"{name} received {task.result()} but expected nothing")
            self.member_pending[name] = task

    async def op_groupCommit(self, st: dict[str, Any]) -> None:
        g = self.members[st["member"]]
        if "partitionOf" not in st:
            await g.commit()
            return
        theirs = self.owned(st["partitionOf"], st["topic"])
        assert theirs, f"{st['partitionOf']} owns no partition of {st['topic']}"
        await g.commit([(st["topic"], theirs[0], st["offset"])])

    async def op_leaveGroup(self, st: dict[str, Any]) -> None:
        task = self.member_pending.pop(st["member"], None)
        if task is not None:
            task.cancel()
        await self.members.pop(st["member"]).close()


async def run_scenario(scenario: dict[str, Any], brokers: list[Broker]) -> None:
    d = Driver(brokers)
    d.client = await d.open([brokers[0].addr])
    try:
        for i, st in enumerate(scenario["steps"]):
            where = f"step {i} ({st['op']})"
            want = st.get("expectError")
            try:
                await d.run(st)
            except BrokerError as e:
                if want is None:
                    raise AssertionError(f"{where} failed: {e}") from e
                assert e.code_name == want, f"{where}: expected {want}, got {e}"
                assert e.code == gregormq.errors.ERROR_CODES[want]
                continue
            assert want is None, f"{where}: expected {want}, but it succeeded"
    finally:
        await d.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_scenario(scenario: dict[str, Any], brokers: Brokers, shared_broker: Broker) -> None:
    if scenario.get("cluster"):
        bs = brokers.start_cluster(scenario["brokers"])
    elif scenario.get("brokers", 1) > 1:
        bs = [brokers.start() for _ in range(scenario["brokers"])]
    else:
        bs = [shared_broker]
    asyncio.run(asyncio.wait_for(run_scenario(scenario, bs), SCENARIO_TIMEOUT_S))
