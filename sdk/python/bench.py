"""Measures this SDK against a running broker: produce of fixed-size messages with at most
--window unconfirmed, and produce→consume, printing one JSON line per scenario.
bench/python_sdk.ts runs it beside the TypeScript client against the same broker.

    python bench.py --server 127.0.0.1:7070 --count 50000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import gregormq


async def run(
    client: gregormq.Client,
    topic: str,
    consume: bool,
    value: bytes,
    count: int,
    window: int,
    linger_ms: float,
) -> float:
    """Publishes count messages keeping at most window unconfirmed; with consume it also reads
    them back and counts a message confirmed when it is received. Returns the seconds taken."""
    slots = asyncio.Semaphore(window)
    failures: list[BaseException] = []
    sub = None
    if consume:
        sub = await client.subscribe(topic, start="earliest", no_acks=True, window_messages=window)
    producer = client.producer(linger_ms=linger_ms)

    async def read() -> None:
        assert sub is not None
        for _ in range(count):
            await sub.next()
            slots.release()

    def confirmed(f: asyncio.Future[gregormq.Result]) -> None:
        if f.exception() is not None:
            failures.append(f.exception())  # type: ignore[arg-type]
        if not consume:
            slots.release()

    start = time.perf_counter()
    reader = asyncio.get_running_loop().create_task(read()) if consume else None
    for _ in range(count):
        await slots.acquire()
        if failures:
            raise failures[0]
        (await producer.send(topic, value, partition=0)).add_done_callback(confirmed)
    await producer.flush()
    if reader is not None:
        await reader
    elapsed = time.perf_counter() - start
    if failures:
        raise failures[0]
    await producer.close()
    if sub is not None:
        await sub.close()
    return elapsed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--server", default="127.0.0.1:7070")
    ap.add_argument("--topic", default="bench-py", help="topic prefix; each scenario appends its name")
    ap.add_argument("--count", type=int, default=50_000, help="messages per scenario")
    ap.add_argument("--size", type=int, default=100, help="payload bytes per message")
    ap.add_argument("--window", type=int, default=10_000, help="unconfirmed messages at most")
    ap.add_argument("--linger-ms", type=float, default=2, help="how long a batch waits to fill")
    args = ap.parse_args()
    value = bytes(97 + i % 26 for i in range(args.size))
    async with gregormq.connect(servers=[args.server], client_id="gregormq-bench") as client:
        for scenario in ("produce", "produce-consume"):
            name = f"{args.topic}-{scenario}"
            await client.create_topic(name, 1, {"persistence": "memory"})
            seconds = await run(
                client, name, scenario == "produce-consume", value, args.count, args.window,
                args.linger_ms,
            )
            print(
                json.dumps(
                    {
                        "client": "python",
                        "scenario": scenario,
                        "messages": args.count,
                        "bytes": args.size,
                        "seconds": seconds,
                        "msgsPerSec": args.count / seconds,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
