#!/usr/bin/python3
"""Peer of bench/actors/producer_consumer_bench.cpp (group
producer_consumer): the seed's "Async Queues" code, one producer putting
100,000 items "item_<i>" on an asyncio.Queue, 3 consumers taking them until
their None sentinel. No sleeps: the producer's `await asyncio.sleep(0.1)`
after each put is `await no_delay()`, a coroutine that returns at once,
and process_item, undefined in the seed, takes the number out of the item
and adds it to a sum, as samples/producer_consumer does (checked).

python_producer_consumer is the seed as it stands, an unbounded Queue();
python_producer_consumer_bounded holds 4 items, as our sample's queue does,
so that a full queue holds the producer back on both sides. Best of 3
rounds (a new event loop each), items_per_second."""
import asyncio
import os
import sys
from asyncio import Queue
from typing import List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_support.rate import best_rate, emit  # noqa: E402

N = 100_000
CONSUMERS = 3
total = 0


async def no_delay() -> None:
    pass


async def process_item(item: str) -> None:
    global total
    total += int(item[5:])


async def producer(
    queue: Queue,
    items: List[str]
) -> None:
    """Produce items to the queue"""
    for item in items:
        await queue.put(item)
        await no_delay()  # the seed: asyncio.sleep(0.1)


async def consumer(
    queue: Queue,
    name: str
) -> None:
    """Consume items from the queue"""
    while True:
        item = await queue.get()
        if item is None:
            queue.task_done()
            break

        # Process the item
        await process_item(item)
        queue.task_done()


async def main(maxsize: int) -> None:
    queue: Queue = Queue(maxsize)
    items = [f"item_{i}" for i in range(N)]

    # Create producer and consumers
    producer_task = asyncio.create_task(
        producer(queue, items)
    )
    consumers = [
        asyncio.create_task(consumer(queue, f"consumer_{i}"))
        for i in range(CONSUMERS)
    ]

    # Wait for producer to finish
    await producer_task

    # Send stop signal to consumers
    for _ in consumers:
        await queue.put(None)

    # Wait for consumers to finish
    await asyncio.gather(*consumers)


def run(maxsize: int) -> None:
    global total
    total = 0
    asyncio.run(main(maxsize))
    assert total == N * (N - 1) // 2, total


if __name__ == "__main__":
    emit("producer_consumer", {
        "python_producer_consumer": best_rate(lambda: run(0), N),
        "python_producer_consumer_bounded": best_rate(lambda: run(4), N),
    })
