"""The client's behaviour beyond the scenarios, against a live broker."""

from __future__ import annotations

import asyncio
import signal
import socket

import pytest
from _proxy import CuttingProxy
from conftest import Broker, Brokers

import gregormq
from gregormq import BrokerError, ClientClosed, ConnectionLost, FromOffset, Header, sync


def run(coro: object) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


def test_headers_and_null_values_round_trip(shared_broker: Broker) -> None:
    async def main() -> None:
        async with gregormq.connect(servers=[shared_broker.addr]) as c:
            await c.create_topic("py-headers", 1)
            p = c.producer(codec="zstd")
            r = await p.send_and_wait(
                "py-headers",
                None,
                key=b"k",
                headers=[Header("trace", b"abc"), Header("empty", None), Header("trace", b"2")],
            )
            sub = await c.subscribe("py-headers", start=FromOffset(r.offset))
            m = await sub.next(10)
            assert (m.key, m.value) == (b"k", None)
            assert m.headers == [Header("trace", b"abc"), Header("empty", None), Header("trace", b"2")]

    run(main())


def test_acks_none_stores_without_offsets(shared_broker: Broker) -> None:
    async def main() -> None:
        async with gregormq.connect(servers=[shared_broker.addr]) as c:
            await c.create_topic("py-acks0", 1)
            p = c.producer(acks=0)
            results = [await p.send_and_wait("py-acks0", b"x%d" % i) for i in range(3)]
            assert [r.offset for r in results] == [-1, -1, -1]
            sub = await c.subscribe("py-acks0", start="earliest", no_acks=True)
            assert [(await sub.next(10)).value for _ in range(3)] == [b"x0", b"x1", b"x2"]

    run(main())


def test_keyless_messages_fill_a_batch_then_move_on(shared_broker: Broker) -> None:
    async def main() -> None:
        async with gregormq.connect(servers=[shared_broker.addr]) as c:
            await c.create_topic("py-sticky", 3)
            p = c.producer()
            parts = {(await p.send_and_wait("py-sticky", b"v")).partition for _ in range(6)}
            assert parts == {0, 1, 2}

    run(main())


def test_a_closed_client_refuses_calls(shared_broker: Broker) -> None:
    async def main() -> None:
        c = gregormq.connect(servers=[shared_broker.addr])
        await c.connection()
        await c.close()
        with pytest.raises(ClientClosed):
            await c.list_topics()

    run(main())


def test_no_server_answering_fails_within_the_request_timeout() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()

    async def main() -> None:
        c = gregormq.connect(servers=[addr], request_timeout_s=0.5)
        with pytest.raises(ConnectionLost, match="no server"):
            await c.connection()

    run(main())


def test_sync_wrapper_errors_carry_the_code(shared_broker: Broker) -> None:
    with sync.connect(shared_broker.addr) as c:
        c.create_topic("py-sync", 2)
        with pytest.raises(BrokerError) as e:
            c.create_topic("py-sync", 2)
        assert (e.value.code, e.value.code_name, e.value.retriable) == (11, "TOPIC_EXISTS", False)
        assert [t.partitions for t in c.list_topics() if t.name == "py-sync"] == [2]
        r = c.publish("py-sync", b"s", partition=1)
        assert (r.partition, r.offset) == (1, 0)
        sub = c.subscribe("py-sync", partition=1, start="earliest")
        m = sub.next(10)
        assert (m.offset, m.value) == (0, b"s")
        sub.ack(0)
        sub.close()


def test_an_acknowledging_subscription_resumes_after_a_cut(shared_broker: Broker) -> None:
    """Cut in the middle of its deliveries, a subscription that acknowledges each message
    resubscribes after its last acknowledgement: every offset once, in order."""
    from _proxy import CuttingProxy

    async def main() -> None:
        async with gregormq.connect(servers=[shared_broker.addr]) as c:
            await c.create_topic("py-resume-acks", 1)
            p = c.producer(batch_records_max=1)
            futures = [await p.send("py-resume-acks", b"v%d" % n) for n in range(100)]
            await p.close()
            assert [(await f).offset for f in futures] == list(range(100))
        proxy = await CuttingProxy(shared_broker.addr, 1, 2000).start()
        try:
            async with gregormq.connect(servers=[proxy.addr]) as c:
                sub = await c.subscribe("py-resume-acks", start="earliest", window_messages=10)
                for n in range(100):
                    m = await sub.next(10)
                    assert (m.offset, m.value) == (n, b"v%d" % n)
                    sub.ack(m.offset)
            assert proxy.cut == 1
        finally:
            await proxy.close()

    run(main())


def test_a_resumption_cut_short_by_a_timeout_goes_on_in_the_next_call(
    shared_broker: Broker,
) -> None:
    """A resumption that cannot finish within next()'s timeout (the durable name is held by
    another subscriber meanwhile) is taken up again by the next call, instead of leaving the
    subscription waiting for deliveries that never come."""

    async def main() -> None:
        proxy = await CuttingProxy(shared_broker.addr, 0, 0).start()
        try:
            async with gregormq.connect(servers=[shared_broker.addr]) as other, gregormq.connect(
                servers=[proxy.addr]
            ) as c:
                p = other.producer()
                for i in range(20):
                    await p.send("py-resume-short", b"%d" % i)
                await p.close()
                sub = await c.subscribe("py-resume-short", start="earliest", durable="d")
                await sub.next(10)
                # Nothing resumes before the next next(): the other subscriber takes the durable
                # name first, once the broker has seen the connection closed.
                proxy.cut_all()
                while True:
                    try:
                        held = await other.subscribe("py-resume-short", durable="d")
                        break
                    except BrokerError as e:
                        assert e.code_name == "SUBSCRIPTION_IN_USE", e
                        await asyncio.sleep(0.01)
                # What is queued comes first; then the resumption meets SUBSCRIPTION_IN_USE
                # until the timeout.
                while True:
                    try:
                        await sub.next(0.5)
                    except asyncio.TimeoutError:
                        break
                await held.close()
                await sub.next(10)
        finally:
            await proxy.close()

    run(main())


def test_send_waits_for_room_while_the_buffer_is_full(brokers: Brokers) -> None:
    """With the broker stopped (SIGSTOP), a producer takes messages until buffer_bytes_max bytes
    wait for an answer; the next send waits. Once the broker runs again every queued message is
    stored and sends go on."""
    b = brokers.start()

    async def main() -> None:
        async with gregormq.connect(servers=[b.addr]) as c:
            await c.create_topic("py-buffer", 1)
            p = c.producer(buffer_bytes_max=64 * 1024)
            await p.send_and_wait("py-buffer", b"first")
            b.proc.send_signal(signal.SIGSTOP)
            futs = []
            try:
                value = bytes(1000)  # counted as 1016 bytes
                while True:
                    try:
                        futs.append(await asyncio.wait_for(p.send("py-buffer", value), 0.3))
                    except asyncio.TimeoutError:
                        break
                    assert len(futs) <= 640, "send took ten times what the buffer holds"
                assert len(futs) == 64 * 1024 // 1016
            finally:
                b.proc.send_signal(signal.SIGCONT)
            results = await asyncio.gather(*futs)
            assert len({r.offset for r in results}) == len(futs)
            await p.send_and_wait("py-buffer", b"after")

    run(main())
