#!/usr/bin/env python3
"""Queue mover throughput: `pgqd mover` copying N events between two databases of one
cluster (settings of shared/BENCH.md, sql_bench's Cluster).

Setup, not timed: databases `src` (pgq) and `dst` (pgq + pgq_ext), queue `q` in both,
consumer `mover` registered in `src`; then N events (ev_data 18 bytes + ev_extra1) are
inserted in transactions of --per-tick events, each followed by a tick, so the mover finds
N/per-tick ready batches. Timed: from starting target/release/pgqd mover until the target
queue holds N events (polled every 20 ms); the tool's startup (connect, register no-op)
is inside the window. Each round uses fresh databases.

Usage: bench/mover_bench.py [--events 100000] [--per-tick 1000] [--rounds 3]
                            [--fetch-size 0] [--out bench/results/FILE.md]
Needs `cargo build --release --bin pgqd` and PostgreSQL 15 server binaries.
"""

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sql_bench import ROOT, Cluster, our_schema  # noqa: E402

PGQD = os.environ.get("PGQD", os.path.join(ROOT, "target", "release", "pgqd"))


def ext_schema():
    d = os.path.join(ROOT, "sql", "pgq_ext")
    return "".join(open(os.path.join(d, f)).read() + "\n"
                   for f in sorted(os.listdir(d)) if f.endswith(".sql"))


def one_round(c, n, per_tick, fetch_size, k):
    src, dst = f"src{k}", f"dst{k}"
    for db in (src, dst):
        c.psql("postgres", f"create database {db}")
        c.psql(db, our_schema(), single=True)
    c.psql(dst, ext_schema(), single=True)
    c.psql(src, "select pgq.create_queue('q'); select pgq.register_consumer('q', 'mover');")
    c.psql(dst, "select pgq.create_queue('q');")
    for start in range(0, n, per_tick):
        c.psql(src, f"select count(pgq.insert_event('q', 'row', 'payload-0123456789', "
                    f"'public.t' , null, null, null)) from generate_series(1, {min(per_tick, n - start)}) i;"
                    f"select pgq.ticker('q');")
    cfg = os.path.join(c.dir, f"mover{k}.toml")
    with open(cfg, "w") as f:
        f.write(f'source = "host=127.0.0.1 port={c.port} user=postgres dbname={src}"\n'
                f'target = "host=127.0.0.1 port={c.port} user=postgres dbname={dst}"\n'
                f'queue = "q"\nconsumer = "mover"\npoll_interval = "50ms"\n'
                f'fetch_size = {fetch_size}\nstats_period = "5s"\n')
    table = c.psql(dst, "select queue_data_pfx from pgq.queue where queue_name = 'q'")
    t0 = time.monotonic()
    p = subprocess.Popen([PGQD, "mover", cfg], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(c.dir, f"mover{k}.log"), "w"))
    try:
        while int(c.psql(dst, f"select count(*) from {table}")) < n:
            if p.poll() is not None:
                raise RuntimeError(f"mover exited with {p.returncode}")
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
    finally:
        p.terminate()
        p.wait()
    got = int(c.psql(dst, f"select count(*) from {table}"))
    if got != n:
        raise RuntimeError(f"target has {got} events, expected {n}")
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100000)
    ap.add_argument("--per-tick", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fetch-size", type=int, default=0)
    ap.add_argument("--out")
    a = ap.parse_args()
    if not os.path.exists(PGQD):
        sys.exit(f"{PGQD} missing: cargo build --release --bin pgqd")
    c = Cluster()
    try:
        secs = [one_round(c, a.events, a.per_tick, a.fetch_size, k) for k in range(a.rounds)]
    finally:
        c.stop()
    rates = [a.events / s for s in secs]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    lines = [
        f"# Queue mover throughput ({datetime.date.today()}, commit {commit})",
        "",
        f"`bench/mover_bench.py --events {a.events} --per-tick {a.per_tick} "
        f"--rounds {a.rounds} --fetch-size {a.fetch_size}`: {a.events} events in "
        f"{a.events // a.per_tick} batches, two databases of one PostgreSQL 15 cluster "
        "(fsync off), release build, TCP 127.0.0.1, machine shared with other jobs.",
        "",
        "| round | seconds | events/s |",
        "|---|---|---|",
    ] + [f"| {i + 1} | {s:.2f} | {r:,.0f} |" for i, (s, r) in enumerate(zip(secs, rates))] + [
        "",
        f"median: {statistics.median(rates):,.0f} events/s",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
