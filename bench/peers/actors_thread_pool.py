"""Peer of bench/actors/thread_pool_bench.cpp: Python's ThreadPoolExecutor
doing the same work (100,000 no-op tasks by submit, then by map), 2 workers.
Prints {"records": [...]} with items_per_second per group."""
import json
import time
from concurrent.futures import ThreadPoolExecutor

N = 100_000
ROUNDS = 3


def noop(x):
    return x


def best_rate(run):
    best = 0.0
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        best = max(best, N / (time.perf_counter() - start))
    return best


def main():
    with ThreadPoolExecutor(max_workers=2) as pool:
        def submit_all():
            fs = [pool.submit(noop, i) for i in range(N)]
            for f in fs:
                f.result(timeout=60)

        def map_all():
            total = sum(pool.map(noop, range(N), timeout=60))
            assert total == N * (N - 1) // 2

        submit = best_rate(submit_all)
        mapped = best_rate(map_all)
    print(json.dumps({"records": [
        {"group": "pool_submit_100k", "impl": "python_threadpoolexecutor",
         "metrics": {"items_per_second": submit}},
        {"group": "pool_map_100k", "impl": "python_threadpoolexecutor",
         "metrics": {"items_per_second": mapped}},
    ]}))


if __name__ == "__main__":
    main()
