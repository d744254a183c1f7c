#!/usr/bin/python3
"""Peer of bench/runtime/resource_bench.cpp (group resource): the seed's
"Resource Management" code, managed_resource() as an async context manager
around Resource, used by 10,000 concurrent users (one task each, gathered),
the last of which fails inside the `async with`, as samples/resource's last
user does; every resource must be cleaned up (checked). The seed's
initialize, cleanup and use are `pass`; here they count and use returns
x * 10 like the sample's, all without awaiting anything (no sleeps). Best
of 3 rounds (a new event loop each), items_per_second (users)."""
import asyncio
import os
import sys
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_support.rate import best_rate, emit  # noqa: E402

USERS = 10_000
opened = 0
closed = 0


class Resource:
    async def initialize(self) -> None:
        global opened
        opened += 1

    async def cleanup(self) -> None:
        global closed
        closed += 1

    async def use(self, x: int) -> Any:
        return x * 10


@asynccontextmanager
async def managed_resource() -> AsyncIterator[Resource]:
    """Context manager for async resource"""
    resource = Resource()
    try:
        await resource.initialize()
        yield resource
    finally:
        await resource.cleanup()


async def user(x: int) -> int:
    async with managed_resource() as resource:
        if x < 0:
            raise RuntimeError("user failed")
        return await resource.use(x)


async def main() -> None:
    xs = [i if i < USERS - 1 else -1 for i in range(USERS)]
    results = await asyncio.gather(*(user(x) for x in xs),
                                   return_exceptions=True)
    assert isinstance(results[-1], RuntimeError)
    assert sum(results[:-1]) == 10 * (USERS - 1) * (USERS - 2) // 2


def run() -> None:
    global opened, closed
    opened = closed = 0
    asyncio.run(main())
    assert opened == closed == USERS, (opened, closed)


if __name__ == "__main__":
    emit("resource", {"python_resource": best_rate(run, USERS)})
