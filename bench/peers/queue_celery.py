"""Celery (python3-celery from Debian) doing the queue benchmark's job:
N no-op tasks through one redis-server, with 1 and 2 worker processes
(solo pool: one task at a time per process, like one actorbus worker
process's read loop). Workers are running and idle when the clock starts;
the clock stops when every task ran. Each task increments a Redis counter,
which is how the driver knows they all ran (one extra round trip per task).
Celery runs fewer tasks than actorbus's 100,000 to keep the run short; the
metric is a rate (items_per_second)."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queue_support.common import RedisServer, emit, log, stop_all, wait_until  # noqa: E402

JOBS = int(os.environ.get("QUEUE_PEER_JOBS", "10000"))

APP = '''
import redis
from celery import Celery
SOCK = {sock!r}
app = Celery("peer", broker="redis+socket://" + SOCK)
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=256,
                worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
counter = redis.Redis(unix_socket_path=SOCK)

@app.task(name="noop")
def noop():
    counter.incr("done")
'''


def run(server, workers):
    r = server.client()
    r.flushall()
    work = tempfile.mkdtemp(prefix="actorbus-celery-")
    with open(os.path.join(work, "peer_app.py"), "w") as f:
        f.write(APP.format(sock=server.sock))
    env = dict(os.environ, PYTHONPATH=work)
    procs = [subprocess.Popen(
        ["/usr/bin/python3", "-m", "celery", "-A", "peer_app", "worker",
         "-P", "solo", "-n", f"w{i}@%h", "--without-heartbeat",
         "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(workers)]
    try:
        sys.path.insert(0, work)
        import peer_app
        # Warm-up: every worker connected and consuming.
        for _ in range(20 * workers):
            peer_app.noop.apply_async()
        wait_until(lambda: int(r.get("done") or 0) >= 20 * workers, 60,
                   "celery warm-up")
        r.set("done", 0)
        start = time.perf_counter()
        with peer_app.app.producer_or_acquire() as producer:
            for _ in range(JOBS):
                peer_app.noop.apply_async(producer=producer)
        wait_until(lambda: int(r.get("done") or 0) >= JOBS, 600, "celery jobs")
        elapsed = time.perf_counter() - start
    finally:
        stop_all(procs)
    rate = JOBS / elapsed
    log(f"celery {workers}w: {JOBS} jobs in {elapsed:.2f} s = {rate:.0f}/s")
    return rate


def main():
    server = RedisServer()
    records = []
    try:
        for workers in (1, 2):
            rate = run(server, workers)
            records.append({"group": f"queue_jobs_{workers}w", "impl": "celery",
                            "metrics": {"items_per_second": rate, "jobs": JOBS}})
    finally:
        server.stop()
    emit(records)


if __name__ == "__main__":
    main()
