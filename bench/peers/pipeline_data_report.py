#!/usr/bin/python3
"""Peer of the data_pipeline sample: the same access-log report in Python.

Standalone: `pipeline_data_report.py LOG` prints the report (the same text as
`data_pipeline --input LOG`). As a bench peer (no argument): generates the
benchmark's log with our sample (ACTORBUS_BUILD/bin/data_pipeline, same size
and seed as bench_pipeline), times this script's processing of it, checks the
report equals ours, and prints {"records": [...]} for bench/run.py.

The rules are those of samples/data_pipeline/access_log.hpp: a line is
accepted when it matches LINE as a whole; health probes are filtered; the
route drops the query and turns all-digit segments into ":id".
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter

LINE = re.compile(
    rb'(\S+) (\S+) (\S+) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d{3}) (\d+|-)')
BENCH_SIZE = "64M"
BENCH_SEED = "3"


def route_of(path):
    path = path.split(b"?", 1)[0]
    return b"/".join(b":id" if seg.isdigit() else seg
                     for seg in path.split(b"/"))


def top(counter, k):
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def report(path):
    malformed = filtered = 0
    by_status, by_route, by_host = Counter(), Counter(), Counter()
    sizes = []
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                line = line[:-1]
            if line.endswith(b"\r"):
                line = line[:-1]
            m = LINE.fullmatch(line)
            if not m or len(m.group(9)) > 18:
                malformed += 1
                continue
            path_ = m.group(6)
            if path_.split(b"?", 1)[0] == b"/healthz":
                filtered += 1
                continue
            by_status[int(m.group(8))] += 1
            by_route[route_of(path_)] += 1
            by_host[m.group(1)] += 1
            b = m.group(9)
            sizes.append(0 if b == b"-" else int(b))
    sizes.sort()
    n = len(sizes)

    def rank(p):
        if n == 0:
            return 0
        k = (p * n + 99) // 100
        return sizes[max(k, 1) - 1]

    out = [f"requests: {n} (malformed {malformed}, filtered {filtered})",
           "status:"]
    out += [f"  {code} {c}" for code, c in sorted(by_status.items())]
    out.append("top paths:")
    out += [f"  {r.decode('latin-1')} {c}" for r, c in top(by_route, 10)]
    out.append(f"bytes: total {sum(sizes)} p50 {rank(50)} p90 {rank(90)} "
               f"p99 {rank(99)} max {sizes[-1] if sizes else 0}")
    out.append("top clients:")
    out += [f"  {h.decode('latin-1')} {c}" for h, c in top(by_host, 5)]
    return "\n".join(out) + "\n"


def bench():
    build = os.environ.get("ACTORBUS_BUILD", "build")
    exe = os.path.join(build, "bin", "data_pipeline")
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "access.log")
        ours = os.path.join(tmp, "ours.txt")
        subprocess.run([exe, "--generate", BENCH_SIZE, "--seed", BENCH_SEED,
                        "--keep-log", log, "--report", ours, "--no-check"],
                       check=True, stdout=subprocess.DEVNULL)
        size = os.path.getsize(log)
        best = None
        for _ in range(2):
            t0 = time.perf_counter()
            text = report(log)
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        with open(ours, encoding="latin-1") as f:
            same = f.read() == text
        if not same:
            print("pipeline_data_report: report differs from data_pipeline's",
                  file=sys.stderr)
    return {"records": [{"group": "data_pipeline", "impl": "python",
                         "metrics": {"bytes_per_second": size / best,
                                     "same_report": 1 if same else 0}}]}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.stdout.write(report(sys.argv[1]))
    else:
        print(json.dumps(bench()))
