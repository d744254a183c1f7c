"""Peer for the bus benchmarks: the seed's asyncio EventEmitter.

Same measure as bench/bus/fanout_bench.cpp: events emitted on one topic to
1, 10 and 100 handlers; items_per_second counts handler invocations
(deliveries) per second. Prints {"records": [...]} for bench/run.py.
"""
import asyncio
import json
import time
from collections import defaultdict


class EventEmitter:
    """The seed's EventEmitter, unchanged in behaviour."""

    def __init__(self):
        self._events = defaultdict(set)

    def on(self, event, handler):
        self._events[event].add(handler)

    def off(self, event, handler):
        if event in self._events:
            self._events[event].discard(handler)

    async def emit(self, event, *args):
        if event in self._events:
            for handler in self._events[event]:
                await handler(*args)


async def fanout(subscribers, events):
    emitter = EventEmitter()
    count = 0

    def make_handler():
        async def handler(_x):
            nonlocal count
            count += 1
        return handler

    for _ in range(subscribers):
        emitter.on("bench.fanout", make_handler())
    start = time.perf_counter()
    for i in range(events):
        await emitter.emit("bench.fanout", i)
    elapsed = time.perf_counter() - start
    assert count == subscribers * events
    return count / elapsed


def main():
    records = []
    for subs, events in ((1, 200000), (10, 50000), (100, 5000)):
        rate = asyncio.run(fanout(subs, events))
        records.append({"group": f"bus_fanout_{subs}",
                        "impl": "python_event_emitter",
                        "metrics": {"items_per_second": rate}})
    print(json.dumps({"records": records}))


if __name__ == "__main__":
    main()
