#!/usr/bin/python3
"""Peer of bench/actors/retry_bench.cpp (group retry): the seed's
retry_async decorator (retries=3) around a fetch that fails twice and then
succeeds, as samples/retry's flaky server does, awaited 20,000 times in one
event loop. No sleeps: the seed's `await asyncio.sleep(delay)` between
attempts is `await no_delay(delay)`, a coroutine that returns at once (our
side waits 0 s, which does not sleep either), and the fetch is a coroutine
answering at once instead of an aiohttp request. Best of 3 rounds,
items_per_second (fetches that succeeded, 3 attempts each)."""
import asyncio
import functools
import os
import sys
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_support.rate import best_rate, emit  # noqa: E402

N = 20_000
FAILURES = 2


async def no_delay(delay: float) -> None:
    pass


def retry_async(
    retries: int = 3,
    delay: float = 1.0
) -> Callable:
    """Decorator for retrying async operations"""
    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            last_error: Optional[Exception] = None

            for attempt in range(retries):
                try:
                    return await func(*args, **kwargs)
                except Exception as e:
                    last_error = e
                    if attempt < retries - 1:
                        await no_delay(delay)

            raise last_error

        return wrapper
    return decorator


tries = 0


@retry_async(retries=3, delay=0.0)
async def fetch_with_retry(url: str) -> str:
    """A page server that fails the first FAILURES tries of every fetch."""
    global tries
    tries += 1
    if tries % (FAILURES + 1) != 0:
        raise RuntimeError(f"503 from {url}")
    return f"<html>{url}</html>"


async def fetch_all() -> None:
    for _ in range(N):
        page = await fetch_with_retry("example.com")
        assert page == "<html>example.com</html>"


def run() -> None:
    asyncio.run(fetch_all())


if __name__ == "__main__":
    emit("retry", {"python_retry": best_rate(run, N)})
