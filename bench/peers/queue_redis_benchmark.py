"""The ceiling: what one redis-server does with redis-benchmark (from
redis-tools) over the same kind of Unix socket. One job needs at least one
write to enqueue it and one to take it; this reports XADD (the enqueue
write) pipelined 64 deep and unpipelined, as items_per_second, in the
queue_jobs groups, so the table shows how close the queue gets to Redis
itself."""
import csv
import io
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queue_support.common import RedisServer, emit, log  # noqa: E402


def rps(server, pipeline, n):
    out = subprocess.run(
        ["redis-benchmark", "-s", server.sock, "-n", str(n), "-c", "50",
         "-P", str(pipeline), "--csv", "XADD", "ceiling", "*", "f", "v"],
        capture_output=True, text=True, check=True, timeout=600).stdout
    rows = list(csv.reader(io.StringIO(out)))
    return float(rows[-1][1])


def main():
    server = RedisServer()
    try:
        batched = rps(server, 64, 1_000_000)
        single = rps(server, 1, 100_000)
    finally:
        server.stop()
    log(f"redis-benchmark XADD: {batched:.0f}/s pipelined, {single:.0f}/s single")
    records = []
    for g in ("queue_jobs_1w", "queue_jobs_2w"):
        records.append({"group": g, "impl": "redis_benchmark",
                        "metrics": {"items_per_second": batched,
                                    "unbatched_items_per_second": single}})
    emit(records)


if __name__ == "__main__":
    main()
