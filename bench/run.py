#!/usr/bin/python3
"""Runs every actorbus benchmark beside its peers and writes the results.

Sources of measurements, all in one run:
  * build/bench/bench_* : Google Benchmark binaries. A benchmark named
    "<group>/<impl>[/...]" yields one record; its counters (items_per_second,
    median_us, ...) are the metrics.
  * bench/peers/*.py (run with /usr/bin/python3) and *.js (node): peer
    implementations. Each prints one JSON object {"records": [{"group": ...,
    "impl": ..., "metrics": {...}}]} on stdout. ACTORBUS_BUILD names the build
    folder for peers that need our binaries.
Within a group, impls whose name starts with "actorbus" are ours; every other
impl is a peer, and each shared metric gets a ratio "how many times better
ours is" (higher-is-better metrics: ours/peer; lower-is-better: peer/ours).
bench/<module>/targets.json list the targets; the table marks each met or missed.
Outputs bench/results.md, bench/results.json and bench/results.png.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HIGHER = ("per_second", "_per_s", "speedup", "mb_s", "throughput", "rate")


def higher_is_better(metric):
    return any(k in metric for k in HIGHER)


def progress(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run_gbench(exe, only):
    out = exe + ".raw.json"
    cmd = [exe, "--benchmark_format=console", f"--benchmark_out={out}",
           "--benchmark_out_format=json"]
    if only:
        cmd.append(f"--benchmark_filter={only}")
    progress(f"running {os.path.basename(exe)}")
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    with open(out) as f:
        data = json.load(f)
    os.unlink(out)
    records = []
    for b in data.get("benchmarks", []):
        if b.get("run_type") == "aggregate" or b.get("error_occurred"):
            continue
        parts = b["name"].split("/")
        if len(parts) < 2:
            continue
        skip = {"name", "family_index", "per_family_instance_index", "run_name",
                "run_type", "repetitions", "repetition_index", "threads",
                "iterations", "real_time", "cpu_time", "time_unit", "label"}
        metrics = {k: v for k, v in b.items()
                   if k not in skip and isinstance(v, (int, float))}
        records.append({"group": parts[0], "impl": parts[1],
                        "metrics": metrics, "source": os.path.basename(exe)})
    return records


def run_peer(path, build):
    interp = {"py": ["/usr/bin/python3"], "js": ["node"],
              "sh": ["bash"]}[path.rsplit(".", 1)[1]]
    progress(f"running peer {os.path.basename(path)}")
    env = dict(os.environ, ACTORBUS_BUILD=build)
    res = subprocess.run(interp + [path], env=env, capture_output=True,
                         text=True, timeout=1800)
    sys.stderr.write(res.stderr)
    if res.returncode != 0:
        progress(f"peer {path} failed with {res.returncode}")
        return []
    recs = json.loads(res.stdout)["records"]
    for r in recs:
        r["source"] = os.path.basename(path)
    return recs


def compare(records):
    groups = {}
    for r in records:
        groups.setdefault(r["group"], []).append(r)
    rows = []
    for group, recs in groups.items():
        ours = [r for r in recs if r["impl"].startswith("actorbus")]
        peers = [r for r in recs if not r["impl"].startswith("actorbus")]
        for o in ours:
            for p in peers:
                for m, ov in o["metrics"].items():
                    pv = p["metrics"].get(m)
                    if pv is None or ov in (0, None) or pv == 0:
                        continue
                    ratio = ov / pv if higher_is_better(m) else pv / ov
                    rows.append({"group": group, "ours": o["impl"],
                                 "peer": p["impl"], "metric": m,
                                 "ours_value": ov, "peer_value": pv,
                                 "ratio": ratio})
    return rows


def check_targets(records, rows):
    targets = []
    for path in sorted(glob.glob(os.path.join(HERE, "*", "targets.json"))):
        with open(path) as f:
            targets += json.load(f)
    results = []
    for t in targets:
        got = None
        if "peer" in t:
            for r in rows:
                if (r["group"], r["ours"], r["peer"], r["metric"]) == (
                        t["group"], t["impl"], t["peer"], t["metric"]):
                    got = r["ratio"]
        else:
            for r in records:
                if (r["group"], r["impl"]) == (t["group"], t["impl"]):
                    got = r["metrics"].get(t["metric"])
        ok = None
        if got is not None:
            ok = (got >= t["min"]) if "min" in t else (got <= t["max"])
        results.append(dict(t, value=got, met=ok))
    return results


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 1e5:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.1f}"


def write_md(records, rows, targets, path, run_at):
    lines = ["# Benchmark results", "",
             f"Run on {run_at}, "
             f"{os.cpu_count()} cores, by `./dev bench`. Every ratio compares "
             "measurements taken in this same run; a ratio above 1 means "
             "actorbus is better (faster or lower latency).", "",
             "![ratios](results.png)", "",
             "## Ratios against peers", "",
             "| group | ours | peer | metric | ours | peer | ratio |",
             "|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['group']} | {r['ours']} | {r['peer']} | "
                     f"{r['metric']} | {fmt(r['ours_value'])} | "
                     f"{fmt(r['peer_value'])} | **{r['ratio']:.2f}x** |")
    if targets:
        lines += ["", "## Targets", "",
                  "| group | impl | metric | vs | target | measured | met |",
                  "|---|---|---|---|---:|---:|---|"]
        for t in targets:
            bound = f">= {t['min']}" if "min" in t else f"<= {t['max']}"
            met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
            lines.append(f"| {t['group']} | {t['impl']} | {t['metric']} | "
                         f"{t.get('peer', '')} | {bound} | {fmt(t['value'])} "
                         f"| {met} |")
    lines += ["", "## All measurements", "",
              "| group | impl | metric | value | source |",
              "|---|---|---|---:|---|"]
    for r in records:
        for m, v in sorted(r["metrics"].items()):
            lines.append(f"| {r['group']} | {r['impl']} | {m} | {fmt(v)} | "
                         f"{r['source']} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib missing: no plot")
        return
    if not rows:
        return
    labels = [f"{r['group']} {r['metric']}\n{r['ours']} vs {r['peer']}"
              for r in rows]
    ratios = [r["ratio"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    colors = ["#2a9d8f" if x >= 1 else "#e76f51" for x in ratios]
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("actorbus advantage (x, log scale; >1 is better)")
    ax.set_title("actorbus against its peers, one run")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--only", help="substring of bench binaries/peers to run")
    ap.add_argument("--filter", help="Google Benchmark filter")
    ap.add_argument("--from-json", action="store_true",
                    help="rewrite results.md/png from results.json, no runs")
    args = ap.parse_args()
    records = []
    run_at = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    if args.from_json:
        path = os.path.join(HERE, "results.json")
        with open(path) as f:
            saved = json.load(f)
        records = saved["records"]
        run_at = saved.get("run_at") or time.strftime(
            '%Y-%m-%d %H:%M UTC', time.gmtime(os.path.getmtime(path)))
        args.only = "\0"  # run nothing
    for exe in sorted(glob.glob(os.path.join(args.build, "bench", "bench_*"))):
        if exe.endswith(".json") or (args.only and args.only not in exe):
            continue
        records += run_gbench(exe, args.filter)
    for peer in sorted(glob.glob(os.path.join(HERE, "peers", "*"))):
        if peer.rsplit(".", 1)[-1] not in ("py", "js", "sh"):
            continue
        if args.only and args.only not in peer:
            continue
        records += run_peer(peer, os.path.abspath(args.build))
    rows = compare(records)
    targets = check_targets(records, rows)
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump({"run_at": run_at, "records": records, "ratios": rows,
                   "targets": targets}, f, indent=1)
    write_md(records, rows, targets, os.path.join(HERE, "results.md"), run_at)
    plot(rows, os.path.join(HERE, "results.png"))
    for r in rows:
        progress(f"{r['group']}: {r['ours']} vs {r['peer']} {r['metric']}: "
                 f"{r['ratio']:.2f}x")
    missed = [t for t in targets if t["met"] is False]
    progress(f"{len(targets) - len(missed)}/{len(targets)} targets met")


if __name__ == "__main__":
    main()
