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


def emit_records(records):
    """Prints (group, impl, items per second) triples as the one JSON object
    bench/run.py reads."""
    print(json.dumps({"records": [
        {"group": group, "impl": impl,
         "metrics": {"items_per_second": rate}}
        for group, impl, rate in records
    ]}))


def emit(group, rates):
    """Prints the records of one group; `rates` maps each impl to its items
    per second."""
    emit_records([(group, impl, rate) for impl, rate in rates.items()])
