#!/usr/bin/python3
"""Peer of bench/actors/worker_queue_bench.cpp (group worker_queue): the
seed's "Basic Threading" code as it stands, 3 threads taking 100,000 items
from one queue.Queue, a None sentinel per thread, then the joins. The seed
leaves process_item undefined; here it squares the item (no-op work, no
sleep) and each worker keeps the sum of its squares, checked at the end.
Every round starts its threads afresh, as the seed does. Best of 3 rounds,
items_per_second."""
import os
import sys
import threading
from queue import Queue
from typing import List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_support.rate import best_rate, emit  # noqa: E402

N = 100_000
WORKERS = 3


def process_item(item: int) -> int:
    return item * item


def worker(queue: Queue, sums: List[int], slot: int) -> None:
    total = 0
    while True:
        item = queue.get()
        if item is None:
            break
        total += process_item(item)
        queue.task_done()
    sums[slot] = total


def run() -> None:
    items = range(1, N + 1)
    queue = Queue()
    sums = [0] * WORKERS
    threads: List[threading.Thread] = []
    for slot in range(WORKERS):
        t = threading.Thread(target=worker, args=(queue, sums, slot))
        t.start()
        threads.append(t)
    for item in items:
        queue.put(item)
    for _ in threads:
        queue.put(None)
    for t in threads:
        t.join()
    assert sum(sums) == N * (N + 1) * (2 * N + 1) // 6


if __name__ == "__main__":
    emit("worker_queue", {"python_worker_queue": best_rate(run, N)})
