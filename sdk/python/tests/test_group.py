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
