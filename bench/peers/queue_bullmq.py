"""BullMQ (npm, version pinned in bench/peers/bullmq/package.json) doing the
queue benchmark's job: no-op jobs through one redis-server with 1 and 2
worker processes (Node), added with addBulk. npm installs BullMQ into
<build>/bench/bullmq the first time; when npm fails, this peer prints a note
and no records."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queue_support.common import RedisServer, log  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
JOBS = int(os.environ.get("QUEUE_PEER_BULLMQ_JOBS", "50000"))


def main():
    build = os.environ.get("ACTORBUS_BUILD", os.path.join(HERE, "..", "..", "build"))
    dest = os.path.join(build, "bench", "bullmq")
    os.makedirs(dest, exist_ok=True)
    for f in ("package.json", "worker.cjs", "driver.cjs"):
        shutil.copy(os.path.join(HERE, "bullmq", f), dest)
    if not (os.path.isdir(os.path.join(dest, "node_modules", "bullmq")) and
            os.path.isdir(os.path.join(dest, "node_modules", "ioredis"))):
        log("installing BullMQ with npm (first run only)")
        res = subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                              "--silent"], cwd=dest, capture_output=True,
                             text=True, timeout=600)
        if res.returncode != 0:
            log("NOTE: npm install failed; BullMQ skipped:\n" + res.stderr[-2000:])
            print('{"records": []}')
            return
    server = RedisServer()
    try:
        res = subprocess.run(["node", "--max-old-space-size=512",
                              os.path.join(dest, "driver.cjs"),
                              server.sock, str(JOBS)], capture_output=True,
                             text=True, timeout=600)
    except subprocess.TimeoutExpired:
        log("NOTE: BullMQ run timed out; skipped")
        print('{"records": []}')
        return
    finally:
        server.stop()
    sys.stderr.write(res.stderr[-4000:])
    if res.returncode != 0 or not res.stdout.strip():
        log("NOTE: BullMQ run failed; skipped")
        print('{"records": []}')
        return
    print(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
