"""Peer of bench/actors/thread_pool_bench.cpp: Python's ThreadPoolExecutor
doing the same work (100,000 no-op tasks by submit, then by map), 2 workers.
Prints {"records": [...]} with items_per_second per group."""
import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_support.rate import best_rate, emit_records  # noqa: E402

N = 100_000


def noop(x):
    return x


def main():
    with ThreadPoolExecutor(max_workers=2) as pool:
        def submit_all():
            fs = [pool.submit(noop, i) for i in range(N)]
            for f in fs:
                f.result(timeout=60)

        def map_all():
            total = sum(pool.map(noop, range(N), timeout=60))
            assert total == N * (N - 1) // 2

        submit = best_rate(submit_all, N)
        mapped = best_rate(map_all, N)
    emit_records([("pool_submit_100k", "python_threadpoolexecutor", submit),
                  ("pool_map_100k", "python_threadpoolexecutor", mapped)])


if __name__ == "__main__":
    main()
