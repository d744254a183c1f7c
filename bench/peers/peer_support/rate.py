"""Timing and output shared by the peers of the seed's patterns: the best
of 3 rounds, printed as the one JSON object bench/run.py reads."""
import json
import time

ROUNDS = 3


def best_rate(run, items, rounds=ROUNDS):
    """Calls `run()` `rounds` times; returns the best `items` per second.
    `run` checks its own result (assert), so a wrong answer fails the peer."""
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = max(best, items / (time.perf_counter() - start))
    return best


def emit(group, rates):
    """Prints the records of one group for bench/run.py; `rates` maps each
    impl to its items per second."""
    print(json.dumps({"records": [
        {"group": group, "impl": impl,
         "metrics": {"items_per_second": rate}}
        for impl, rate in rates.items()
    ]}))
