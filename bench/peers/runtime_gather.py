#!/usr/bin/python3
"""Peer of bench/runtime/gather_bench.cpp (group gather): the seed's "Basic
Coroutines" code, process_urls gathering fetch_data over 100 URLs with
asyncio.gather, 200 times in one event loop (20,000 fetches). No sleeps:
the seed's `await asyncio.sleep(1)` is gone, so fetch_data answers at
once; each URL still gets its own task and its result its place in input
order (checked). Best of 3 rounds, items_per_second (URLs fetched)."""
import asyncio
import os
import sys
from typing import List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_support.rate import best_rate, emit  # noqa: E402

URLS = 100
GATHERS = 200


async def fetch_data(url: str) -> str:
    """Simulate async HTTP request"""
    return f"Data from {url}"  # the seed first sleeps 1 s


async def process_urls(urls: List[str]) -> List[str]:
    """Process multiple URLs concurrently"""
    tasks = [fetch_data(url) for url in urls]
    results = await asyncio.gather(*tasks)
    return results


async def main() -> None:
    urls = [f"http://example.com/{i}" for i in range(URLS)]
    for _ in range(GATHERS):
        results = await process_urls(urls)
        assert results[-1] == f"Data from {urls[-1]}", results[-1]


def run() -> None:
    asyncio.run(main())


if __name__ == "__main__":
    emit("gather", {"python_gather": best_rate(run, URLS * GATHERS)})
