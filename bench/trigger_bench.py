#!/usr/bin/env python3
"""Trigger benchmark: our PL/pgSQL logutriga/jsontriga against the pgq 3.5 C triggers.

One throwaway cluster (the setup of bench/sql_bench.py), two databases: `bench_ours` with
our schema plus the triggers component (sql/pgq, sql/triggers) and `bench_real` with
`create extension pgq`. The measure is rows/s inserted into a table
(id bigserial primary key, data text, n int, created timestamptz) carrying an AFTER INSERT
row trigger into a queue, for rows whose `data` is about 100 bytes, 1 KB and 100 KB of
text (words, spaces and punctuation, so urlencoding and JSON escaping have work to do).
pgbench runs one statement inserting K rows per transaction (K = 100, 100, 10), 2 clients.
Each round measures both databases, alternating which goes first; the report gives medians,
min..max and the ratio ours/real (1.0 = as fast as C), plus the same table without a
trigger as the ceiling.

Usage: bench/trigger_bench.py [--rounds 5] [--seconds 10] [--out bench/results/FILE.md]
"""

import argparse
import datetime
import os
import signal
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sql_bench import ROOT, Cluster, our_schema, pgbench_tps, run  # noqa: E402

SIZES = [("100B", 100, 100), ("1KB", 1000, 100), ("100KB", 100_000, 10)]
TRIGGERS = ["logutriga", "jsontriga"]
WORDS = "lorem ipsum dolor sit amet, consectetur adipiscing elit; sed do eiusmod & tempor = 50% "


def triggers_schema():
    d = os.path.join(ROOT, "sql", "triggers")
    return "".join(open(os.path.join(d, f)).read() + "\n"
                   for f in sorted(os.listdir(d)) if f.endswith(".sql"))


def setup(c, db):
    c.psql(db, "create table payload (size int primary key, v text);" + "".join(
        f"insert into payload values ({n}, left(repeat('{WORDS}', {n // len(WORDS) + 1}), {n}));"
        for _, n, _ in SIZES) +
        "create table t (id bigserial primary key, data text, n int default 1,"
        " created timestamptz default now());")


def measure(c, db, trig, size, k, seconds):
    c.psql(db, "drop trigger if exists tg on t; truncate t;"
               "select pgq.drop_queue('q', true) from pgq.queue where queue_name = 'q';"
               "select pgq.create_queue('q');" +
               (f"create trigger tg after insert on t for each row execute procedure pgq.{trig}('q');"
                if trig else "") + "checkpoint;")
    script = f"insert into t (data) select p.v from payload p, generate_series(1, {k}) where p.size = {size};\n"
    return k * pgbench_tps(c, db, script, seconds, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=10, help="pgbench duration per measure")
    ap.add_argument("--out", help="write the report (markdown) to this file too")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    c = Cluster()
    try:
        for db in ("bench_ours", "bench_real"):
            c.psql("postgres", f"create database {db};")
        c.psql("bench_ours", our_schema() + triggers_schema(), single=True)
        c.psql("bench_real", "create extension pgq;")
        for db in ("bench_ours", "bench_real"):
            setup(c, db)
        samples = {}
        for r in range(args.rounds):
            order = ["bench_ours", "bench_real"] if r % 2 == 0 else ["bench_real", "bench_ours"]
            for label, size, k in SIZES:
                for trig in TRIGGERS:
                    for db in order:
                        v = measure(c, db, trig, size, k, args.seconds)
                        samples.setdefault((trig, label, db), []).append(v)
                        print(f"round {r + 1} {db} {trig} {label}: {v:.0f} rows/s", flush=True)
                v = measure(c, "bench_real", None, size, k, args.seconds)
                samples.setdefault((None, label, "bench_real"), []).append(v)
                print(f"round {r + 1} no trigger {label}: {v:.0f} rows/s", flush=True)
        report = render(args, c, samples)
        print(report)
        if args.out:
            with open(args.out, "w") as f:
                f.write(report)
    finally:
        c.stop()


def render(args, c, samples):
    commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "sql"]).stdout.strip()
    version = c.psql("postgres", "show server_version;")
    fmt = lambda xs: f"{statistics.median(xs):.0f} ({min(xs):.0f}..{max(xs):.0f})"  # noqa: E731
    lines = [
        "# Trigger benchmark: our PL/pgSQL triggers vs the pgq 3.5 C triggers",
        "",
        f"- date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC",
        f"- command: `bench/trigger_bench.py --rounds {args.rounds} --seconds {args.seconds}`",
        f"- commit: {commit}{' (sql/ modified)' if dirty else ''}",
        f"- PostgreSQL {version}; fsync/synchronous_commit/full_page_writes off,"
        " shared_buffers 256MB, TCP 127.0.0.1, pgbench 2 clients",
        f"- {args.rounds} rounds, sides alternating; rows/s, medians with min..max",
        "",
        "| trigger | row size | ours | real pgq (C) | ratio ours/real | no trigger |",
        "|---|---|---|---|---|---|",
    ]
    for trig in TRIGGERS:
        for label, _, _ in SIZES:
            o, r = samples[(trig, label, "bench_ours")], samples[(trig, label, "bench_real")]
            base = samples[(None, label, "bench_real")]
            lines.append(f"| {trig} | {label} | {fmt(o)} | {fmt(r)} | "
                         f"{statistics.median(o) / statistics.median(r):.2f} | {fmt(base)} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
