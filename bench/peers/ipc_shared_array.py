#!/usr/bin/python3
"""Peer of bench/ipc/shared_array_bench.cpp (group shared_array): the
seed's SharedArray over multiprocessing.shared_memory and numpy, as
samples/shared_array uses it: the parent creates a 1000 x 1000 float64
array, 2 worker processes attach by name and fill rows w, w + 2, ... with
each element's index, the parent sums the array (checked), closes and
unlinks it. A worker fills a row with one numpy assignment, as a numpy user
would, not element by element. New array and processes every round
(fork, the default on Linux); the shared memory is unlinked even when a
round fails. Nothing sleeps. Best of 3 rounds, items_per_second (elements
written)."""
import os
import sys
from multiprocessing import Process, shared_memory
from typing import Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_support.rate import best_rate, emit  # noqa: E402

ROWS = 1000
COLS = 1000
WORKERS = 2


class SharedArray:
    def __init__(
        self,
        name: str,
        shape: Tuple[int, ...],
        dtype: np.dtype
    ):
        self.shape = shape
        self.dtype = dtype

        try:
            # Try to attach to existing shared memory
            self.shm = shared_memory.SharedMemory(name=name)
            self.array = np.ndarray(
                shape,
                dtype=dtype,
                buffer=self.shm.buf
            )
        except FileNotFoundError:
            # Create new shared memory
            temp_array = np.zeros(shape, dtype=dtype)
            self.shm = shared_memory.SharedMemory(
                name=name,
                create=True,
                size=temp_array.nbytes
            )
            self.array = np.ndarray(
                shape,
                dtype=dtype,
                buffer=self.shm.buf
            )

    def close(self) -> None:
        """Close the shared memory block"""
        self.shm.close()

    def unlink(self) -> None:
        """Remove the shared memory block"""
        self.shm.unlink()


def fill(name: str, w: int) -> None:
    mine = SharedArray(name, (ROWS, COLS), np.float64)
    for r in range(w, ROWS, WORKERS):
        mine.array[r] = np.arange(r * COLS, (r + 1) * COLS, dtype=np.float64)
    del mine.array  # a view into the buffer keeps close() from unmapping
    mine.close()


def run() -> None:
    name = f"actorbus-peer-shared-array-{os.getpid()}"
    array = SharedArray(name, (ROWS, COLS), np.float64)
    try:
        workers = [Process(target=fill, args=(name, w))
                   for w in range(WORKERS)]
        for p in workers:
            p.start()
        for p in workers:
            p.join()
        assert all(p.exitcode == 0 for p in workers)
        n = ROWS * COLS
        assert array.array.sum() == n * (n - 1) / 2
    finally:
        del array.array
        array.close()
        array.unlink()


if __name__ == "__main__":
    emit("shared_array", {"python_shared_array": best_rate(run, ROWS * COLS)})
