"""RQ (python3-rq from Debian) doing the queue benchmark's job: N no-op
jobs through one redis-server with 1 and 2 worker processes. Workers use
rq's SimpleWorker (no fork per job; the default forking worker is far
slower). Jobs are enqueued in pipelined batches (Queue.enqueue_many).
Workers are running and idle when the clock starts; the clock stops when
every job ran (each job increments a Redis counter). RQ runs fewer jobs than
actorbus's 100,000 to keep the run short; the metric is a rate."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queue_support.common import RedisServer, emit, log, stop_all, wait_until  # noqa: E402

JOBS = int(os.environ.get("QUEUE_PEER_JOBS", "5000"))

TASKS = '''
import redis
counter = redis.Redis(unix_socket_path={sock!r})

def noop():
    counter.incr("done")
'''


def run(server, workers):
    from rq import Queue
    r = server.client()
    r.flushall()
    work = tempfile.mkdtemp(prefix="actorbus-rq-")
    with open(os.path.join(work, "peer_tasks.py"), "w") as f:
        f.write(TASKS.format(sock=server.sock))
    env = dict(os.environ, PYTHONPATH=work)
    procs = [subprocess.Popen(
        ["/usr/bin/python3", "-m", "rq.cli", "worker", "-w",
         "rq.worker.SimpleWorker", "--url", server.url(), "-q",
         "--disable-job-desc-logging", "default"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)]
    try:
        q = Queue("default", connection=r)
        for _ in range(10 * workers):
            q.enqueue("peer_tasks.noop")
        wait_until(lambda: int(r.get("done") or 0) >= 10 * workers, 60,
                   "rq warm-up")
        r.set("done", 0)
        start = time.perf_counter()
        chunk = 500
        for first in range(0, JOBS, chunk):
            n = min(chunk, JOBS - first)
            with r.pipeline() as pipe:
                q.enqueue_many([Queue.prepare_data("peer_tasks.noop",
                                                   result_ttl=0)
                                for _ in range(n)], pipeline=pipe)
                pipe.execute()
        wait_until(lambda: int(r.get("done") or 0) >= JOBS, 900, "rq jobs")
        elapsed = time.perf_counter() - start
    finally:
        stop_all(procs)
    rate = JOBS / elapsed
    log(f"rq {workers}w: {JOBS} jobs in {elapsed:.2f} s = {rate:.0f}/s")
    return rate


def main():
    server = RedisServer()
    records = []
    try:
        for workers in (1, 2):
            rate = run(server, workers)
            records.append({"group": f"queue_jobs_{workers}w", "impl": "rq",
                            "metrics": {"items_per_second": rate, "jobs": JOBS}})
    finally:
        server.stop()
    emit(records)


if __name__ == "__main__":
    main()
