#!/usr/bin/python3
"""Peer of bench/ipc/process_pipe_bench.cpp (group process_pipe): the
seed's "Process Communication" code, a worker Process on a
multiprocessing Pipe that answers each message until "STOP", the parent
sending 20,000 items one at a time and reading each result. The seed
leaves process_message undefined; here it squares the number, as
samples/process_pipe does (the sum of the results is checked). Nothing
sleeps. Every round starts and joins its own worker process (fork, the
default on Linux). Best of 3 rounds, items_per_second (round trips)."""
import os
import sys
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_support.rate import best_rate, emit  # noqa: E402

N = 20_000


def process_message(msg: int) -> int:
    return msg * msg


def worker(conn: Connection) -> None:
    """Worker process function"""
    while True:
        msg = conn.recv()
        if msg == "STOP":
            break
        # Process the message
        result = process_message(msg)
        conn.send(result)


def run() -> None:
    # Create pipe
    parent_conn, child_conn = Pipe()

    # Create and start process
    p = Process(target=worker, args=(child_conn,))
    p.start()

    # Send work
    total = 0
    for item in range(1, N + 1):
        parent_conn.send(item)
        total += parent_conn.recv()

    # Signal process to stop
    parent_conn.send("STOP")
    p.join()
    parent_conn.close()
    child_conn.close()
    assert p.exitcode == 0, p.exitcode
    assert total == N * (N + 1) * (2 * N + 1) // 6, total


if __name__ == "__main__":
    emit("process_pipe", {"python_process_pipe": best_rate(run, N)})
