#!/usr/bin/env python3
"""SQL benchmark: our plain-SQL pgq against the real pgq 3.5 extension (C), side by side.

One throwaway cluster (settings of shared/BENCH.md), two databases: `bench_ours` with our
schema (sql/pgq/*.sql) and `bench_real` with `create extension pgq`. Each round measures
both, alternating which goes first, and the report gives medians, spread (min..max) and
the ratio ours/real for:

  insert_1      select pgq.insert_event(...)                    1 per transaction, 2 clients
  insert_100s   ... from generate_series(1,100)                 100 per transaction, one statement
  insert_100x   100 separate insert_event statements            100 per transaction, 2 clients
  batch_events  select count(*) from pgq.get_batch_events(b)    on a 100 000-event batch
  batch_cursor  get_batch_cursor(b, 'c', 1000) + fetch 1000 … on the same batch

Usage: bench/sql_bench.py [--rounds 7] [--seconds 10] [--out bench/results/FILE.md]
Needs PostgreSQL 15 server binaries, pgbench and the postgresql-15-pgq3 package; run as root
(the server runs as user postgres) or as a normal user.
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PAYLOAD = "payload-0123456789"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Cluster:
    """A throwaway cluster with the BENCH.md settings, listening on 127.0.0.1 (a free
    port). Shared by the benchmarks under bench/."""

    def __init__(self, prefix="pgqd-bench-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user, self.user)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "log")
        self.server(["initdb", "-N", "-A", "trust", "-U", "postgres", "-E", "UTF8",
                     "--no-locale", "-D", self.data])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n".join([
                "listen_addresses = '127.0.0.1'",
                f"port = {self.port}",
                f"unix_socket_directories = '{self.dir}'",
                "fsync = off", "synchronous_commit = off", "full_page_writes = off",
                "max_connections = 1200", "shared_buffers = 256MB",
            ]) + "\n")
        self.server(["pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "start"])
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.postmaster = int(f.readline())

    def server(self, args):
        cmd = [os.path.join(BINDIR, args[0])] + args[1:]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        return run(cmd)

    def env(self):
        # inherited PG* variables must not redirect the benchmark's clients
        e = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        e.update(PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER="postgres")
        return e

    def psql(self, db, sql, single=False):
        args = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db]
        if single:
            args.append("-1")
        return run(args, input=sql, env=self.env()).stdout.strip()

    def stop(self):
        try:
            self.server(["pg_ctl", "-D", self.data, "-m", "immediate", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def our_schema():
    d = os.path.join(ROOT, "sql", "pgq")
    return "".join(open(os.path.join(d, f)).read() + "\n"
                   for f in sorted(os.listdir(d)) if f.endswith(".sql"))


def pgbench_tps(c, db, script, seconds, clients):
    path = os.path.join(c.dir, "script.sql")
    with open(path, "w") as f:
        f.write(script)
    out = run(["pgbench", "-n", "-M", "simple", "-c", str(clients), "-j", str(clients),
               "-T", str(seconds), "-f", path, db], env=c.env()).stdout
    m = re.search(r"tps = ([0-9.]+)", out)
    if not m:
        raise RuntimeError("pgbench printed no tps:\n" + out)
    return float(m.group(1))


def fresh_queue(c, db, name):
    c.psql(db, f"select pgq.drop_queue('{name}', true) from pgq.queue where queue_name = '{name}';"
               f"select pgq.create_queue('{name}');")


def measure_inserts(c, db, seconds):
    one = f"select pgq.insert_event('q', 't', '{PAYLOAD}');\n"
    res = {}
    fresh_queue(c, db, "q")
    res["insert_1"] = pgbench_tps(c, db, one, seconds, 2)
    fresh_queue(c, db, "q")
    stmt = f"select pgq.insert_event('q', 't', '{PAYLOAD}') from generate_series(1, 100);\n"
    res["insert_100s"] = 100 * pgbench_tps(c, db, stmt, seconds, 2)
    fresh_queue(c, db, "q")
    res["insert_100x"] = 100 * pgbench_tps(c, db, "begin;\n" + one * 100 + "commit;\n", seconds, 2)
    fresh_queue(c, db, "q")
    return res


def prepare_batch(c, db):
    """A queue with one open 100 000-event batch; returns the batch id."""
    fresh_queue(c, db, "bq")
    c.psql(db, "select pgq.register_consumer('bq', 'c');"
               "update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0'"
               " where queue_name = 'bq';")
    c.psql(db, f"select count(pgq.insert_event('bq', 't', '{PAYLOAD}' || i)) "
               "from generate_series(1, 100000) i;")
    c.psql(db, "select pgq.ticker('bq'); vacuum analyze;")
    return int(c.psql(db, "select pgq.next_batch('bq', 'c');"))


def measure_batch(c, db, batch, reps=3):
    """Median seconds per full read of the batch, by both read paths."""
    def timed(script):
        path = os.path.join(c.dir, "read.sql")
        with open(path, "w") as f:
            f.write(script)
        t0 = time.perf_counter()
        run(["psql", "-X", "-q", "-o", "/dev/null", "-d", db, "-f", path], env=c.env())
        return time.perf_counter() - t0
    ev = statistics.median(timed(f"select count(*) from pgq.get_batch_events({batch});")
                           for _ in range(reps))
    fetches = "fetch 1000 from c;\n" * 100
    cur = statistics.median(
        timed(f"begin;\nselect count(*) from pgq.get_batch_cursor({batch}, 'c', 1000);\n"
              f"{fetches}close c;\ncommit;\n") for _ in range(reps))
    return {"batch_events": ev, "batch_cursor": cur}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=int, default=10, help="pgbench duration per insert form")
    ap.add_argument("--out", help="write the report (markdown) to this file too")
    args = ap.parse_args()
    # SIGTERM (a killed run) still stops and removes the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    c = Cluster()
    try:
        for db in ("bench_ours", "bench_real"):
            c.psql("postgres", f"create database {db};")
        c.psql("bench_ours", our_schema(), single=True)
        c.psql("bench_real", "create extension pgq;")
        batches = {db: prepare_batch(c, db) for db in ("bench_ours", "bench_real")}
        samples = {db: {} for db in batches}
        for r in range(args.rounds):
            order = ["bench_ours", "bench_real"] if r % 2 == 0 else ["bench_real", "bench_ours"]
            for db in order:
                res = measure_inserts(c, db, args.seconds)
                res.update(measure_batch(c, db, batches[db]))
                for k, v in res.items():
                    samples[db].setdefault(k, []).append(v)
                print(f"round {r + 1} {db}: " + ", ".join(f"{k}={v:.4g}" for k, v in res.items()),
                      flush=True)
        report = render(args, c, samples)
        print(report)
        if args.out:
            with open(args.out, "w") as f:
                f.write(report)
    finally:
        c.stop()


UNITS = {"insert_1": ("tx/s", True), "insert_100s": ("events/s", True),
         "insert_100x": ("events/s", True), "batch_events": ("s per read", False),
         "batch_cursor": ("s per read", False)}


def render(args, c, samples):
    commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "sql"]).stdout.strip()
    version = c.psql("postgres", "show server_version;")
    lines = [
        f"# SQL benchmark: our pgq schema vs the pgq 3.5 extension",
        "",
        f"- date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC",
        f"- command: `bench/sql_bench.py --rounds {args.rounds} --seconds {args.seconds}`",
        f"- commit: {commit}{' (sql/ modified)' if dirty else ''}",
        f"- PostgreSQL {version}, 2 cores; fsync/synchronous_commit/full_page_writes off,"
        " shared_buffers 256MB, TCP 127.0.0.1",
        f"- {args.rounds} rounds, sides alternating; medians with min..max",
        "",
        "| measure | unit | ours | real pgq (C) | ratio (ours/real, >1 = ours faster) |",
        "|---|---|---|---|---|",
    ]
    for k, (unit, higher_better) in UNITS.items():
        o, r = samples["bench_ours"][k], samples["bench_real"][k]
        mo, mr = statistics.median(o), statistics.median(r)
        ratio = mo / mr if higher_better else mr / mo
        lines.append(f"| {k} | {unit} | {mo:.4g} ({min(o):.4g}..{max(o):.4g}) | "
                     f"{mr:.4g} ({min(r):.4g}..{max(r):.4g}) | {ratio:.2f} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
