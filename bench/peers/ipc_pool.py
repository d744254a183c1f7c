#!/usr/bin/python3
"""Peer for process_pool_tasks: Python's multiprocessing.Pool with 2 workers
mapping the seed's cpu_bound_task(100) over 2,000 inputs with chunksize=1
(one task per message, like actorbus process_pool)."""
import json
import time
from multiprocessing import Pool


def cpu_bound_task(n):
    return sum(i * i for i in range(n))


def main():
    args = [100] * 2000
    with Pool(processes=2) as pool:
        pool.map(cpu_bound_task, args[:100], chunksize=1)  # warm up
        rounds = 5
        start = time.perf_counter()
        for _ in range(rounds):
            res = pool.map(cpu_bound_task, args, chunksize=1)
            assert res[0] == 328350
        elapsed = time.perf_counter() - start
    rate = rounds * len(args) / elapsed
    print(json.dumps({"records": [{
        "group": "process_pool_tasks", "impl": "python_pool_chunksize1",
        "metrics": {"items_per_second": rate}}]}))


if __name__ == "__main__":
    main()
