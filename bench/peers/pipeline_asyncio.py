#!/usr/bin/python3
"""Peer of bench_pipeline's pipeline3 group: the seed's asyncio concurrent
pipeline (stages joined by asyncio.Queue, None as end marker, results yielded
after every stage finished) with three cheap stages: x+1, 2x, x-1."""
import asyncio
import json
import time
from asyncio import Queue

N = 200_000


async def pipeline_stage(input_queue, output_queue, processor):
    while True:
        item = await input_queue.get()
        if item is None:
            await output_queue.put(None)
            break
        result = await processor(item)
        await output_queue.put(result)


async def pipeline(source, *stages):
    queues = [Queue() for _ in range(len(stages) + 1)]
    tasks = []
    for i, stage in enumerate(stages):
        tasks.append(asyncio.create_task(
            pipeline_stage(queues[i], queues[i + 1], stage)))
    async for item in source:
        await queues[0].put(item)
    await queues[0].put(None)
    await asyncio.gather(*tasks)
    while True:
        result = await queues[-1].get()
        if result is None:
            break
        yield result


async def inc(x):
    return x + 1


async def twice(x):
    return 2 * x


async def dec(x):
    return x - 1


async def numbers(n):
    for i in range(n):
        yield i


async def run(n):
    count = total = 0
    async for r in pipeline(numbers(n), inc, twice, dec):
        count += 1
        total += r
    assert count == n and total == n * n, (count, total)


def main():
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        asyncio.run(run(N))
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    print(json.dumps({"records": [{"group": "pipeline3",
                                   "impl": "python_asyncio",
                                   "metrics": {"items_per_second": N / best}}]}))


if __name__ == "__main__":
    main()
