"""Consumer groups against a live broker: two members share a topic's partitions, every message
is consumed, and a member that leaves hands its partitions to the other with their offsets."""

from __future__ import annotations

import asyncio

from conftest import Broker

import gregormq
from gregormq import GroupConsumer, Message


async def drain(g: GroupConsumer, seen: set[tuple[int, int]], until: int, timeout_s: float) -> None:
    """Reads from g into seen until it holds `until` messages or nothing came for timeout_s."""
    while len(seen) < until:
        try:
            m: Message = await g.next(timeout_s)
        except asyncio.TimeoutError:
            return
        seen.add((m.partition, m.offset))


async def until(cond: object, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():  # type: ignore[operator]
        assert loop.time() < deadline, "the group did not settle in time"
        await asyncio.sleep(0.05)


def test_two_members_share_the_partitions_and_hand_them_over(shared_broker: Broker) -> None:
    async def main() -> None:
        async with gregormq.connect(servers=[shared_broker.addr]) as c:
            await c.create_topic("py-group", 4)
            p = c.producer()
            futures = [await p.send("py-group", b"m", partition=n % 4) for n in range(40)]
            await p.close()
            for f in futures:
                await f
            a = await c.group_consumer("py-group-g", ["py-group"], reset="earliest")
            b = await c.group_consumer("py-group-g", ["py-group"], reset="earliest")
            seen: set[tuple[int, int]] = set()
            # Both read while the group settles: each partition is owned by one member.
            readers = [asyncio.ensure_future(drain(g, seen, 40, 3)) for g in (a, b)]
            await until(lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2, 20)
            assert sorted(a.assignment() + b.assignment()) == [("py-group", i) for i in range(4)]
            await asyncio.gather(*readers)
            assert seen == {(n % 4, n // 4) for n in range(40)}
            await a.commit()
            await b.commit()
            await a.close()
            await until(lambda: len(b.assignment()) == 4, 20)
            await b.close()
            fetched = await c.call("OFFSET_FETCH", {"group": "py-group-g", "partitions": []})
            assert sorted((o["partition"], o["offset"]) for o in fetched["offsets"]) == [
                (i, 10) for i in range(4)
            ]

    asyncio.run(asyncio.wait_for(main(), 60))


def test_rebalance_callbacks_see_partitions_added_and_taken_away(shared_broker: Broker) -> None:
    async def main() -> None:
        async with gregormq.connect(servers=[shared_broker.addr]) as c:
            await c.create_topic("py-group-cb", 2)
            events: list[tuple[str, str, list[tuple[str, int]]]] = []

            def assigned_a(tps: list[tuple[str, int]]) -> None:
                events.append(("a", "assigned", sorted(tps)))

            async def revoked_a(tps: list[tuple[str, int]]) -> None:
                await asyncio.sleep(0)  # a coroutine function is awaited
                events.append(("a", "revoked", sorted(tps)))

            a = await c.group_consumer(
                "py-group-cb-g", ["py-group-cb"], on_assigned=assigned_a, on_revoked=revoked_a
            )
            await until(lambda: len(a.assignment()) == 2, 20)
            assert events == [("a", "assigned", [("py-group-cb", 0), ("py-group-cb", 1)])]
            b = await c.group_consumer(
                "py-group-cb-g",
                ["py-group-cb"],
                on_assigned=lambda tps: events.append(("b", "assigned", sorted(tps))),
            )
            await until(lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1, 20)
            await until(lambda: any(e[0] == "b" for e in events), 20)
            revoked = [e for e in events if e[1] == "revoked"]
            assert len(revoked) == 1 and revoked[0][0] == "a" and len(revoked[0][2]) == 1
            given = revoked[0][2][0]
            assert ("b", "assigned", [given]) in events, events
            assert given not in a.assignment()
            await b.close()
            await a.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_failing_rebalance_callback_fails_the_consumer(shared_broker: Broker) -> None:
    async def main() -> None:
        async with gregormq.connect(servers=[shared_broker.addr]) as c:
            await c.create_topic("py-group-cb-fail", 2)
            a = await c.group_consumer("py-group-cb-fail-g", ["py-group-cb-fail"])
            await until(lambda: len(a.assignment()) == 2, 20)

            def boom(tps: list[tuple[str, int]]) -> None:
                raise RuntimeError(f"cannot give up {tps}")

            a.on_revoked = boom
            b = await c.group_consumer("py-group-cb-fail-g", ["py-group-cb-fail"])
            try:
                await a.next(10)
                raise AssertionError("next() returned despite the failed callback")
            except RuntimeError as e:
                assert "cannot give up" in str(e)
            await b.close()
            await a.close()

    asyncio.run(asyncio.wait_for(main(), 60))
