#!/usr/bin/python3
"""Peer of bench/actors/counter_bench.cpp (group counter): the seed's
ThreadSafeCounter as it stands, 8 threads each calling increment() 100,000
times, then get_count() once every thread is joined, as samples/counter
does. A new counter and new threads every round. Best of 3 rounds,
items_per_second (increments)."""
import os
import sys
import threading
from contextlib import contextmanager
from threading import Lock
from typing import Iterator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_support.rate import best_rate, emit  # noqa: E402

THREADS = 8
INCREMENTS = 100_000


class ThreadSafeCounter:
    def __init__(self):
        self._count = 0
        self._lock = Lock()

    @contextmanager
    def get_lock(self) -> Iterator[None]:
        """Context manager for lock"""
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def increment(self) -> None:
        with self._lock:
            self._count += 1

    def get_count(self) -> int:
        with self._lock:
            return self._count


def run() -> None:
    count = ThreadSafeCounter()

    def work():
        for _ in range(INCREMENTS):
            count.increment()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count.get_count() == THREADS * INCREMENTS


if __name__ == "__main__":
    emit("counter",
         {"python_counter": best_rate(run, THREADS * INCREMENTS)})
