"""Shared by the queue peers: a private redis-server on a Unix socket (like
actorbus's embedded default: no TCP port, no persistence), timing helpers,
and the JSON the bench runner expects."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import redis


class RedisServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="actorbus-peer-redis-")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if redis.Redis(unix_socket_path=self.sock).ping():
                    return
            except Exception:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def client(self):
        return redis.Redis(unix_socket_path=self.sock)

    def url(self):
        return "unix://" + self.sock

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.002)
    raise RuntimeError(f"timed out waiting for {what}")


def log(msg):
    print(f"[queue peer] {msg}", file=sys.stderr, flush=True)


def emit(records):
    print(json.dumps({"records": records}))


def stop_all(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
