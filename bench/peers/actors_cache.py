"""Peer of bench/actors/cache_bench.cpp: the seed's exercise 1 (a
thread-safe cache) as Python writes it, an OrderedDict LRU behind a Lock,
read by one thread over 1,000 keys. Prints {"records": [...]}."""
import json
import threading
import time
from collections import OrderedDict

N_KEYS = 1000
GETS = 200_000


class ThreadSafeCache:
    def __init__(self, capacity):
        self._data = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key, value):
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            if len(self._data) > self._capacity:
                self._data.popitem(last=False)


def main():
    cache = ThreadSafeCache(2 * N_KEYS)
    for i in range(N_KEYS):
        cache.put(i, i)
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for i in range(GETS):
            if cache.get(i % N_KEYS) is None:
                raise SystemExit("miss")
        best = max(best, GETS / (time.perf_counter() - start))
    print(json.dumps({"records": [
        {"group": "cache_get", "impl": "python_seed_cache",
         "metrics": {"items_per_second": best}}]}))


if __name__ == "__main__":
    main()
