#!/usr/bin/env python3
"""Performance suite of issue #7: our pgqd against the Debian C pgqd and no daemon, per scenario.

Run it through `bench/perf.sh` (builds the release binary, installs the Debian packages if
missing). One cached cluster (settings of shared/BENCH.md) lives in `bench/.cache/pg15` and is
reused; its databases are made once from template databases (`create database ... template
... strategy file_copy`) and kept, so a second run starts measuring within seconds:

  t_o_<Q> / o<Q>_<i>   our schema (sql/pgq), Q queues q1..qQ, consumer `c` on each
  t_x_<Q> / x<Q>_<i>   the real pgq extension (`create extension pgq`), same queues

A template carries a comment with the hash of the schema it was made from; when sql/pgq
changes, its databases are dropped and made again. Both daemons are told the scenario's
databases with `database_list` (every other database stays untouched), run at their
defaults (ticker_period 1 s, check_period 60 s, maint_period 120 s, retry_period 30 s) over
TCP 127.0.0.1; ours gets the same file for every scenario (plus `--ours-set` lines, printed).
Before every daemon run the queue settings of the scenario's databases are read and printed;
the report checks that both daemons saw the same.

Scenarios (the target table of #7; `--scenarios` picks, default all):

  a   100 DBs x 10 queues, ticker_max_lag = 0 on every queue: insert -> tick latency
  b   100 DBs x 10 queues, default queue settings, probe events and bursts: tick lateness
  c   100 DBs x 10 queues, no events: idle cost (server + daemon) minus a no-daemon baseline
  d   1000 DBs x 10 queues, 10 busy at 50 events/s each (the busy set moves every 60 s):
      total cpu, connections held, lateness on busy databases, first-event latency in quiet
      ones, daemon RSS; with a no-daemon baseline
  e   10 DBs x 1000 queues, probe events: tick lateness
  xa, xc   a and c on databases with the real pgq extension instead of our schema

Modes alternate per round (base/c/ours, reversed every other round). Each run: start the
daemon, wait until its connections stop growing (or reach one per database) plus --warmup,
then one measuring window with the scenario's traffic, then stop the daemon and read the
results from the databases.

Definitions (all times are the server's: event ev_time and tick tick_time are both the start
of their transaction; every event is inserted in its own short autocommit transaction, so
ev_time is its insert time):

  latency     for a probe event: tick_time of the first tick of its queue whose snapshot
              shows the event's transaction as committed (`ev_txid` visible in
              `tick_snapshot`, i.e. the first batch that can hold it) minus ev_time. Events not
              covered by any tick when the daemon stops count as "unticked" (reported, and in
              the percentiles with window end - ev_time, a lower bound).
  due time    of the tick that follows tick P of a queue (time Tp, event sequence Sp, the
              tick before P at Tpp), by the queue's own settings (max_count, max_lag,
              idle_period) and the events with ev_id > Sp (ids handed out since P, what pgq's
              ticker counts) sorted by ev_time, E1 the first, En the max_count-th:
                idle due  = Tp + max(max_lag / 2, min(2 * (Tp - Tpp), idle_period))
                busy due  = min(max(Tp + max_lag, E1), En)        (En only if it exists)
                due       = idle due if there is no event or idle due < E1, else busy due
              Kinds: "idle" (no event), "first" (busy due = E1: the queue had been quiet for
              max_lag, so the first event is due at once), "busy" (max_lag or max_count due).
              (pgq: a queue with events ticks once max_count events are waiting or the
              previous tick is max_lag old; an idle queue backs off, doubling the gap, at least
              max_lag/2, at most idle_period; see sql/pgq/50_ticker.sql).
  lateness    tick_time - due time, for every tick made inside the window; a tick that is due
              before the window ends but not made by then counts as window end - due (a lower
              bound, "pending"). Negative values are ticks made before they were due.
  cpu         utime+stime from /proc: the server (postmaster and every child, also children
              that exited, through the postmaster's cutime) and the daemon, scaled to 60 s.
              Backends of the benchmark's producers and probes are read from /proc just before
              they close and reported separately ("producers"), and taken off the server
              figure; the benchmark's own python process likewise. "Above baseline" subtracts
              the median server cpu of the no-daemon runs of the same scenario.
  connections the daemon's sessions in pg_stat_activity (by application_name), sampled each
              second: median and max.

Usage: bench/perf.sh [--smoke] [--rounds 3] [--scenarios a,b,c,d,e,xa,xc] [--window 60]
       bench/perf.py --help for every option. Needs root or a normal user able to run
       PostgreSQL 15 binaries; python3 standard library only.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sql_bench import BINDIR, ROOT, Cluster, our_schema, run  # noqa: E402
from daemon_bench import (C_PGQD, CLK_TCK, Conn, PgError, daemon_cpu, log,  # noqa: E402
                          log_findings, pct, proc_stat, proc_status_kb, server_cpu,
                          server_snapshot)

CONSUMER = "c"
MEASURER = "perf_measurer"
PRODUCER = "perf_producer"
APPS = {"c": "bench_pgqd_c", "ours": "bench_pgqd_ours"}
DEFAULTS = {"queue_ticker_max_count": "500", "queue_ticker_max_lag": "3 seconds",
            "queue_ticker_idle_period": "1 minute", "queue_ticker_paused": "false"}


# ---------------------------------------------------------------- scenarios

def scenarios(smoke):
    """Sizes per scenario; smoke: the same shapes, tiny, one round under two minutes."""
    s = smoke
    return {
        "a": dict(title="insert -> tick latency, ticker_max_lag = 0", kind="o", q=10,
                  n=10 if s else 100, set={"queue_ticker_max_lag": "0"},
                  modes=["c", "ours"], probe_dbs=10, probe_rate=4.0 if s else 2.0),
        "b": dict(title="tick lateness, default queue settings", kind="o", q=10,
                  n=10 if s else 100, set={}, modes=["c", "ours"], probe_dbs=10,
                  probe_rate=4.0 if s else 5.0, burst_every=3.0 if s else 15.0, burst=600),
        "c": dict(title="idle cost, no events", kind="o", q=10, n=10 if s else 100, set={},
                  modes=["base", "c", "ours"]),
        "d": dict(title="1000 databases, 10 busy at 50 events/s, the busy set moving",
                  kind="o", q=10, n=30 if s else 1000, set={},
                  modes=["base", "c", "ours"], busy=3 if s else 10, busy_rate=50.0,
                  move_every=3.0 if s else 60.0, quiet_every=1.0 if s else 5.0,
                  window=6 if s else 150, warmup=1 if s else 20),
        "e": dict(title="10 databases x 1000 queues, tick lateness", kind="o",
                  q=100 if s else 1000, n=2 if s else 10, set={}, modes=["c", "ours"],
                  probe_dbs=10, probe_rate=10.0 if s else 20.0),
        "xa": dict(title="a on the real pgq extension", kind="x", q=10, n=10 if s else 100,
                   set={"queue_ticker_max_lag": "0"}, modes=["c", "ours"], probe_dbs=10,
                   probe_rate=4.0 if s else 2.0),
        "xc": dict(title="c on the real pgq extension", kind="x", q=10, n=10 if s else 100,
                   set={}, modes=["base", "c", "ours"]),
    }


# ---------------------------------------------------------------- the cached cluster

class CachedCluster(Cluster):
    """Cluster whose data directory persists in the cache and is reused when present."""

    def __init__(self, cache, runlog):
        self.dir = cache
        self.user = "postgres" if os.geteuid() == 0 else None
        os.makedirs(cache, exist_ok=True)
        if self.user:
            shutil.chown(cache, self.user, self.user)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data = os.path.join(cache, "pg15")
        self.logfile = runlog
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            tmp = self.data + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            log(f"initdb {self.data}")
            self.server(["initdb", "-N", "-A", "trust", "-U", "postgres", "-E", "UTF8",
                         "--no-locale", "-D", tmp])
            with open(os.path.join(tmp, "postgresql.conf"), "a") as f:
                f.write("\n".join([
                    "listen_addresses = '127.0.0.1'",
                    "fsync = off", "synchronous_commit = off", "full_page_writes = off",
                    "max_connections = 1200", "shared_buffers = 256MB",
                    "max_locks_per_transaction = 256",
                ]) + "\n")
            os.rename(tmp, self.data)
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            # a server left running (or crashed) by an interrupted run
            try:
                self.server(["pg_ctl", "-D", self.data, "-m", "immediate", "stop"])
            except subprocess.CalledProcessError:
                pass
        if self.user:
            open(runlog, "a").close()
            shutil.chown(runlog, self.user, self.user)
        self.server(["pg_ctl", "-D", self.data, "-l", runlog, "-w", "-t", "600",
                     "-o", f"-p {self.port} -k {cache}", "start"])
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.postmaster = int(f.readline())

    def stop(self):
        self.server(["pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])


def db_names(kind, q, n):
    return [f"{kind}{q}_{i}" for i in range(1, n + 1)]


def ext_version(c):
    return c.psql("postgres", "select default_version from pg_available_extensions "
                              "where name = 'pgq';") or "missing"


def ensure_dbs(c, kind, q, n):
    """Databases kind<q>_1..n from template t_<kind>_<q>; made only where missing."""
    tpl = f"t_{kind}_{q}"
    if kind == "o":
        tag = "ours-" + hashlib.sha1(our_schema().encode()).hexdigest()[:12]
    else:
        tag = "ext-" + ext_version(c)
    rows = c.psql("postgres", "select datname, coalesce(shobj_description(oid, 'pg_database'),"
                              " '') from pg_database;")
    existing = dict(r.split("|", 1) for r in rows.splitlines())
    prefix = f"{kind}{q}_"
    if tpl in existing and existing[tpl] != tag:
        stale = [d for d in existing if d.startswith(prefix)]
        log(f"template {tpl} was made from {existing[tpl]}, now {tag}: dropping it and "
            f"{len(stale)} databases")
        c.psql("postgres", "".join(f"drop database {d};\n" for d in stale)
               + f"alter database {tpl} is_template false;\ndrop database {tpl};\n")
        existing = {d: v for d, v in existing.items() if d != tpl and not d.startswith(prefix)}
    if tpl not in existing:
        t0 = time.monotonic()
        tmp = f"tmp_{tpl}"
        if tmp in existing:
            c.psql("postgres", f"drop database {tmp};")
        c.psql("postgres", f"create database {tmp};")
        if kind == "o":
            c.psql(tmp, our_schema(), single=True)
        else:
            c.psql(tmp, "create extension pgq;")
        names = [f"q{i}" for i in range(1, q + 1)]
        for k in range(0, q, 100):
            c.psql(tmp, "".join(f"select pgq.create_queue('{x}');"
                                f"select pgq.register_consumer('{x}', '{CONSUMER}');"
                                for x in names[k:k + 100]), single=True)
        c.psql(tmp, "vacuum analyze;")
        c.psql("postgres", f"alter database {tmp} rename to {tpl};\n"
                           f"comment on database {tpl} is '{tag}';\n"
                           f"alter database {tpl} is_template true;\n")
        log(f"template {tpl} ({q} queues, {tag}) made in {time.monotonic() - t0:.1f} s")
    missing = [d for d in db_names(kind, q, n) if d not in existing]
    if missing:
        t0 = time.monotonic()
        for k in range(0, len(missing), 50):
            c.psql("postgres", "".join(f"create database {d} template {tpl} "
                                       "strategy file_copy;\n" for d in missing[k:k + 50]))
            if len(missing) > 50:
                log(f"  {min(k + 50, len(missing))}/{len(missing)} databases made")
        log(f"{len(missing)} databases {prefix}* made in {time.monotonic() - t0:.1f} s")
    return db_names(kind, q, n)


def apply_settings(c, dbs, overrides):
    """Default queue settings plus the scenario's overrides on every queue of `dbs`."""
    want = dict(DEFAULTS, **overrides)
    cols = ", ".join(want)
    vals = ", ".join(f"'{v}'::{typ}" for v, typ in zip(
        want.values(), ("integer", "interval", "interval", "boolean")))
    sql = (f"update pgq.queue set ({cols}) = ({vals}) where ({cols}) is distinct from "
           f"({vals})")
    for d in dbs:
        conn = Conn(c.port, d, app=MEASURER)
        try:
            conn.query(sql)
        finally:
            conn.close()


def queue_settings(c, dbs):
    """Distinct queue settings over (a sample of) the databases, as a printable string."""
    sample = dbs if len(dbs) <= 20 else [dbs[i * len(dbs) // 20] for i in range(20)]
    counts = {}
    for d in sample:
        conn = Conn(c.port, d, app=MEASURER)
        try:
            for r in conn.query(
                    "select queue_ticker_max_count, queue_ticker_max_lag::text, "
                    "queue_ticker_idle_period::text, queue_ticker_paused, "
                    "queue_external_ticker, count(*) from pgq.queue group by 1, 2, 3, 4, 5"):
                key = (f"max_count={r[0]} max_lag={r[1]} idle_period={r[2]} paused={r[3]} "
                       f"external={r[4]}")
                counts[key] = counts.get(key, 0) + int(r[5])
        finally:
            conn.close()
    return "; ".join(f"{k} x{v}" for k, v in sorted(counts.items())) + \
        f" (over {len(sample)} of {len(dbs)} databases)"


# ---------------------------------------------------------------- daemons

class Daemon:
    def __init__(self, c, kind, rundir, tag, dbs, args):
        self.kind = kind
        base = f"host=127.0.0.1 port={c.port} user=postgres application_name={APPS[kind]}"
        self.logfile = os.path.join(rundir, f"{tag}-{kind}.log")
        pidfile = os.path.join(rundir, f"{tag}-{kind}.pid")
        if kind == "c":
            self.config = os.path.join(rundir, f"{tag}-c.ini")
            with open(self.config, "w") as f:
                f.write("[pgqd]\n"
                        f"base_connstr = {base}\n"
                        "initial_database = postgres\n"
                        f"database_list = {','.join(dbs)}\n"
                        f"logfile = {self.logfile}\n"
                        f"pidfile = {pidfile}\n"
                        "syslog = 0\n")
            cmd = [args.c_pgqd, "-q", self.config]
        else:
            self.config = os.path.join(rundir, f"{tag}-ours.toml")
            with open(self.config, "w") as f:
                f.write(f'base_connstr = "{base}"\n'
                        'initial_database = "postgres"\n'
                        f"database_list = {json.dumps(dbs)}\n"
                        f'logfile = "{self.logfile}"\n'
                        f'pidfile = "{pidfile}"\n'
                        + "".join(line + "\n" for line in args.ours_lines))
            cmd = [args.ours, self.config]
        self.stderr = open(os.path.join(rundir, f"{tag}-{kind}.stderr"), "w")
        env = c.env()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


def ours_extra(args):
    """Lines added to our daemon's config, the same for every scenario."""
    lines = list(args.ours_set)
    if args.metrics and not any(x.split("=")[0].strip() == "metrics_listen" for x in lines):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        lines.append(f'metrics_listen = "127.0.0.1:{port}"')
    return lines


def daemon_conns(m, kind):
    r = m.query("select count(*), count(distinct datname) from pg_stat_activity "
                f"where application_name = '{APPS[kind]}'")[0]
    return int(r[0]), int(r[1])


def warm_up(m, d, ndbs, timeout=300):
    """Wait until the daemon holds one connection per database or its count stays put
    for 5 s (a daemon with a connection budget never holds them all)."""
    t0 = time.monotonic()
    last, since = -1, time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not d.alive():
            raise RuntimeError(f"{d.kind} pgqd exited, see {d.logfile} / {d.stderr.name}")
        n, dbs = daemon_conns(m, d.kind)
        if dbs >= ndbs:
            return dbs, time.monotonic() - t0
        if n != last:
            last, since = n, time.monotonic()
        elif n > 0 and time.monotonic() - since >= 5:
            return dbs, time.monotonic() - t0
        time.sleep(0.25)
    return daemon_conns(m, d.kind)[1], time.monotonic() - t0


def wait_gone(m, kind, timeout=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if daemon_conns(m, kind)[0] == 0:
            return True
        time.sleep(0.2)
    return False


# ---------------------------------------------------------------- traffic

class Traffic(threading.Thread):
    """The scenario's events during the window, each in its own autocommit transaction:
    probes (persistent sessions, random queue, exponential gaps), bursts of `burst` events
    in one statement, a moving busy set (`busy` databases at `busy_rate` each, round robin
    over their queues, the set replaced every `move_every` s), and first events in quiet
    databases (a new session each, never a database that was busy). Backend cpu of every
    session it opens is read from /proc before it closes."""

    def __init__(self, c, sc, dbs, tag, duration, seed):
        super().__init__(daemon=True)
        self.c, self.sc, self.dbs, self.tag, self.duration = c, sc, dbs, tag, duration
        self.rnd = random.Random(seed)
        self.queues = [f"q{i}" for i in range(1, sc["q"] + 1)]
        self.backend_cpu = 0.0
        self.sessions = 0
        self.sent = {"probe": 0, "burst": 0, "busy": 0, "quiet": 0}
        self.behind_max = 0.0
        self.busy_dbs = set()
        self.quiet_dbs = set()
        self.error = None
        self.stop_flag = threading.Event()
        n = len(dbs)
        k = min(sc.get("probe_dbs", 0), n)
        self.probe_dbs = [dbs[i * n // k] for i in range(k)] if k else []
        self.conns = {}

    def conn(self, db):
        if db not in self.conns:
            self.conns[db] = Conn(self.c.port, db, app=PRODUCER)
            self.sessions += 1
        return self.conns[db]

    def close(self, db):
        conn = self.conns.pop(db, None)
        if conn:
            self.backend_cpu += cpu_of(conn.pid)
            conn.close()

    def insert(self, db, q, typ, count=1):
        if count == 1:
            sql = f"select pgq.insert_event('{q}', '{typ}', '{self.tag}')"
        else:
            sql = (f"select count(pgq.insert_event('{q}', '{typ}', '{self.tag}')) "
                   f"from generate_series(1, {count})")
        self.conn(db).query(sql)
        self.sent[typ] += count

    def run(self):
        try:
            self._run()
        except (PgError, OSError) as e:
            self.error = repr(e)
        finally:
            for db in list(self.conns):
                self.close(db)

    def _run(self):
        sc, rnd = self.sc, self.rnd
        t0 = time.monotonic()
        end = t0 + self.duration
        nxt = {}
        if self.probe_dbs and sc.get("probe_rate"):
            nxt["probe"] = t0 + rnd.expovariate(sc["probe_rate"])
        if sc.get("burst_every"):
            nxt["burst"] = t0 + sc["burst_every"] / 2
        groups = []
        if sc.get("busy"):
            # a fixed sequence of disjoint busy sets; the first move comes half a period in,
            # so the window sees a move whatever its length
            pool = [d for d in self.dbs if d not in self.probe_dbs]
            rnd.shuffle(pool)
            nsets = max(1, min(len(pool) // (2 * sc["busy"]),
                               int(self.duration // sc["move_every"]) + 2))
            groups = [pool[i * sc["busy"]:(i + 1) * sc["busy"]] for i in range(nsets)]
            used = {d for g in groups for d in g}
            self.quiet_pool = [d for d in pool if d not in used]
            nxt["busy"] = t0
            nxt["move"] = t0 + sc["move_every"] / 2
            nxt["quiet"] = t0 + sc["quiet_every"] / 2
        group_i, rr = 0, 0
        current = groups[0] if groups else []
        self.busy_dbs.update(current)
        while nxt and not self.stop_flag.is_set():
            what, when = min(nxt.items(), key=lambda kv: kv[1])
            if when >= end:
                break
            pause = when - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                self.behind_max = max(self.behind_max, -pause)
            if what == "probe":
                self.insert(rnd.choice(self.probe_dbs), rnd.choice(self.queues), "probe")
                nxt["probe"] = when + rnd.expovariate(sc["probe_rate"])
            elif what == "burst":
                self.insert(rnd.choice(self.probe_dbs), rnd.choice(self.queues), "burst",
                            sc["burst"])
                nxt["burst"] = when + sc["burst_every"]
            elif what == "busy":
                db = current[rr % len(current)]
                q = self.queues[(rr // len(current)) % len(self.queues)]
                rr += 1
                self.insert(db, q, "busy")
                nxt["busy"] = when + 1.0 / (sc["busy_rate"] * len(current))
            elif what == "move":
                for db in current:
                    self.close(db)
                group_i = (group_i + 1) % len(groups)
                current = groups[group_i]
                self.busy_dbs.update(current)
                nxt["move"] = when + sc["move_every"]
            elif what == "quiet":
                if self.quiet_pool:
                    db = rnd.choice(self.quiet_pool)
                    self.quiet_dbs.add(db)
                    self.insert(db, rnd.choice(self.queues), "quiet")
                    self.close(db)
                nxt["quiet"] = when + sc["quiet_every"]


def cpu_of(pid):
    st = proc_stat(pid)
    return st[2] / CLK_TCK if st else 0.0


# ---------------------------------------------------------------- reading the results

def snapshot_visible(txid, snap):
    xmin, xmax, xip = snap.split(":")
    if txid < int(xmin):
        return True
    if txid >= int(xmax):
        return False
    return str(txid) not in xip.split(",")


def analyse_db(c, db, w0, w1, tag):
    """Lateness samples (with kinds) and probe latencies of one database's queues."""
    conn = Conn(c.port, db, app=MEASURER)
    try:
        queues = {r[0]: (int(r[1]), float(r[2]), float(r[3])) for r in conn.query(
            "select queue_id, queue_ticker_max_count, extract(epoch from queue_ticker_max_lag),"
            " extract(epoch from queue_ticker_idle_period) from pgq.queue "
            "where not queue_external_ticker and not queue_ticker_paused")}
        ticks = {}
        for r in conn.query(
                "select t.tick_queue, t.tick_id, extract(epoch from t.tick_time), "
                "t.tick_event_seq, t.tick_snapshot::text, t.pre from pgq.queue q cross join "
                "lateral ((select *, true as pre from pgq.tick where tick_queue = q.queue_id "
                f"and tick_time < to_timestamp({w0}) order by tick_queue desc, tick_id desc "
                "limit 3) union all (select *, false from pgq.tick where tick_queue = "
                f"q.queue_id and tick_time >= to_timestamp({w0}))) t order by 1, 2"):
            ticks.setdefault(r[0], []).append(
                (int(r[1]), float(r[2]), int(r[3]), r[4], r[5] == "t"))
        t_min = min((t[0][1] for t in ticks.values()), default=w0)
        events = {}
        for r in conn.query(
                "select substring(tableoid::regclass::text from 'event_([0-9]+)_[0-9]+$'), "
                "ev_id, extract(epoch from ev_time), ev_txid, ev_type, ev_data "
                f"from pgq.event_template where ev_time >= to_timestamp({t_min - 10}) "
                "order by 1, 3"):
            events.setdefault(r[0], []).append(
                (int(r[1]), float(r[2]), int(r[3]), r[4], r[5]))
    finally:
        conn.close()
    late, lat, unticked = [], [], 0
    for qid, (max_count, max_lag, idle) in queues.items():
        tl = ticks.get(qid, [])
        ev = events.get(qid, [])
        npre = sum(1 for t in tl if t[4])
        for j in range(len(tl)):
            if j == 0 and npre == 3:
                continue    # its predecessor is unknown: no idle due time
            nxt = tl[j + 1] if j + 1 < len(tl) else None
            if nxt is None and tl[j][1] > w1:
                continue
            due, kind = due_after(tl, j, ev, max_count, max_lag, idle, w1)
            if nxt is not None and nxt[1] < w0:
                continue
            if nxt is not None and (nxt[1] <= w1 or due < w1):
                # made in the window, or due in it and made in the grace after it
                late.append((nxt[1] - due, kind))
            elif nxt is None and due < w1:
                late.append((w1 - due, kind + "-pending"))
        for e in ev:
            if e[3] in ("probe", "quiet") and e[4] == tag and w0 - 1 <= e[1] <= w1 + 1:
                hit = next((t for t in tl if t[1] >= e[1] - 1 and
                            snapshot_visible(e[2], t[3])), None)
                if hit is None:
                    unticked += 1
                    lat.append((w1 - e[1], e[3], False))
                else:
                    lat.append((hit[1] - e[1], e[3], True))
    return late, lat, unticked


def due_after(tl, j, ev, max_count, max_lag, idle, horizon):
    """Due time of the tick after tl[j] (see the module doc) and whether it is a busy or an
    idle due; events after `horizon` are not known yet."""
    tp, sp = tl[j][1], tl[j][2]
    new = sorted(e[1] for e in ev if e[0] > sp and e[1] <= horizon)
    if j > 0:
        gap = tp - tl[j - 1][1]
        idle_due = tp + max(max_lag / 2, min(2 * gap, idle))
    else:
        idle_due = tp      # the queue's first tick: pgq ticks again at once
    if not new or idle_due < new[0]:
        return idle_due, "idle"
    due, kind = tp + max_lag, "busy"
    if new[0] >= due:
        # the queue was quiet for max_lag: the first event is due at once
        due, kind = new[0], "first"
    if len(new) >= max_count and new[max_count - 1] < due:
        due, kind = new[max_count - 1], "busy"
    return due, kind


def selftest():
    """The due rules and the snapshot test on hand-made cases; a wrong definition here
    would make every lateness figure wrong, so this runs before anything is measured."""
    assert snapshot_visible(5, "10:20:")
    assert snapshot_visible(12, "10:20:11,13")
    assert not snapshot_visible(13, "10:20:11,13")
    assert not snapshot_visible(20, "10:20:")
    # ticks (id, time, event seq, snapshot, pre); events (id, time, txid, type, data)
    tl = [(1, 100.0, 5, "1:1:", True), (2, 104.0, 5, "1:1:", True)]
    # idle: gap 4 s -> next due after min(8, 60) s, at least max_lag/2
    assert due_after(tl, 1, [], 500, 3.0, 60.0, 1e9) == (112.0, "idle")
    assert due_after(tl, 1, [], 500, 3.0, 5.0, 1e9) == (109.0, "idle")
    assert due_after(tl, 1, [], 500, 30.0, 60.0, 1e9) == (119.0, "idle")
    # an event before the idle due: the busy rule; quiet for max_lag -> due at the event
    ev = [(6, 110.0, 9, "x", "t")]
    assert due_after(tl, 1, ev, 500, 3.0, 60.0, 1e9) == (110.0, "first")
    ev = [(6, 105.0, 9, "x", "t")]
    assert due_after(tl, 1, ev, 500, 3.0, 60.0, 1e9) == (107.0, "busy")
    # max_count reached before max_lag
    ev = [(6 + i, 104.5 + i * 0.1, 9, "x", "t") for i in range(3)]
    assert due_after(tl, 1, ev, 3, 3.0, 60.0, 1e9) == (104.7, "busy")
    # events already counted by the previous tick, or after the horizon, do not count
    ev = [(5, 105.0, 9, "x", "t"), (6, 200.0, 9, "x", "t")]
    assert due_after(tl, 1, ev, 500, 3.0, 60.0, 150.0) == (112.0, "idle")
    # a queue with a single tick: pgq ticks again at once
    assert due_after(tl[:1], 0, [], 500, 3.0, 60.0, 1e9) == (100.0, "idle")


# ---------------------------------------------------------------- one run

def one_run(c, m, sc, name, kind, dbs, rnd_no, args, rundir):
    tag = f"{name}-{kind}-r{rnd_no}"
    res = {"mode": kind, "round": rnd_no}
    d = None
    window = sc.get("window", args.window)
    if kind != "base":
        res["settings"] = queue_settings(c, dbs)
        d = Daemon(c, kind, rundir, tag, dbs, args)
        n, waited = warm_up(m, d, len(dbs))
        res["warm"] = f"{n} dbs in {waited:.1f} s"
        time.sleep(sc.get("warmup", args.warmup))
        if not d.alive():
            raise RuntimeError(f"{kind} pgqd exited early, see {d.logfile} / {d.stderr.name}")
    else:
        time.sleep(2)
    traffic = None
    if any(k in sc for k in ("probe_rate", "busy")):
        # events are told apart by run: the stamp makes the tag unique in the cached cluster
        traffic = Traffic(c, sc, dbs, f"{args.stamp}-{tag}", window,
                          seed=zlib.crc32(tag.encode()))
    samples = []
    s0 = int(m.value("select coalesce(sum(sessions), 0) from pg_stat_database"))
    self0 = os.times()
    srv0 = server_snapshot(c.postmaster)
    dcpu0 = daemon_cpu(d.pid) if d else 0.0
    w0 = time.time()
    t0 = time.monotonic()
    if traffic:
        traffic.start()
    end = t0 + window
    while time.monotonic() < end:
        if d:
            samples.append(daemon_conns(m, kind)[0])
        time.sleep(max(0.0, min(1.0, end - time.monotonic())))
    w1 = time.time()
    if traffic:
        traffic.stop_flag.set()
        traffic.join()
        time.sleep(0.3)    # let the postmaster reap the producers' backends
    srv1 = server_snapshot(c.postmaster)
    dcpu1 = daemon_cpu(d.pid) if d else 0.0
    self1 = os.times()
    elapsed = time.monotonic() - t0
    s1 = int(m.value("select coalesce(sum(sessions), 0) from pg_stat_database"))
    scale = 60.0 / elapsed
    prod = traffic.backend_cpu if traffic else 0.0
    res["server_cpu"] = (server_cpu(srv0, srv1) - prod) * scale
    res["producer_backend_cpu"] = prod * scale
    res["bench_cpu"] = ((self1.user + self1.system) - (self0.user + self0.system)) * scale
    res["daemon_cpu"] = (dcpu1 - dcpu0) * scale
    res["sessions_min"] = (s1 - s0 - (traffic.sessions if traffic else 0)) * scale
    if traffic:
        res["sent"] = dict(traffic.sent)
        res["producer_behind_max_ms"] = traffic.behind_max * 1000
        if traffic.error:
            res["traffic_error"] = traffic.error
    if d:
        res["conn_median"] = statistics.median(samples) if samples else 0
        res["conn_max"] = max(samples) if samples else 0
        res["rss_mb"] = (proc_status_kb(d.pid, "VmRSS") or 0) / 1024
        res["hwm_mb"] = (proc_status_kb(d.pid, "VmHWM") or 0) / 1024
        # ticks due just before the window closed get a moment to be made
        time.sleep(0.5 if args.smoke else 1.5)
        res["exit"] = d.stop()
        if not wait_gone(m, kind):
            log(f"  {kind}: connections still open 30 s after stop")
        res["log"] = d.logfile
        late, lat, unticked = [], [], 0
        if traffic and traffic.busy_dbs:
            look = sorted(traffic.busy_dbs | traffic.quiet_dbs)
        elif sc.get("busy") is None and "probe_rate" in sc:
            look = dbs
        else:
            look = []
        for db in look:
            la, lt, un = analyse_db(c, db, w0, w1, traffic.tag)
            if traffic and traffic.busy_dbs and db not in traffic.busy_dbs:
                # quiet databases: only the ticks that carry their probe event count
                la = [(x, "quiet" + k[k.index("-"):] if "-" in k else "quiet")
                      for x, k in la if not k.startswith("idle")]
            late += la
            lat += lt
            unticked += un
        res["lateness"] = [x[0] * 1000 for x in late if not x[1].startswith("quiet")]
        res["lateness_busy"] = [x[0] * 1000 for x in late if x[1].startswith("busy")]
        res["lateness_first"] = [x[0] * 1000 for x in late if x[1].startswith("first")]
        res["lateness_quiet"] = [x[0] * 1000 for x in late if x[1].startswith("quiet")]
        res["lateness_idle"] = [x[0] * 1000 for x in late if x[1].startswith("idle")]
        res["pending"] = sum(1 for x in late if x[1].endswith("pending"))
        res["latency"] = [x[0] * 1000 for x in lat if x[1] == "probe"]
        res["first_event"] = [x[0] * 1000 for x in lat if x[1] == "quiet"]
        res["unticked"] = unticked
    return res


# ---------------------------------------------------------------- report

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def f3(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def spread(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    m = statistics.median(vals)
    return f3(m) if len(vals) == 1 else f"{f3(m)} ({f3(min(vals))}..{f3(max(vals))})"


def ratio(o, t):
    if o is None or t is None or t == 0:
        return "–"
    return f"{o / t:.2f}" if abs(o / t) >= 0.1 else f"{o / t:.2g}"


def summarise(name, sc, runs):
    """Per mode: medians over rounds of the per-run figures, percentiles over pooled
    samples. Returns {mode: {measure: value}} and the raw rows."""
    out = {}
    base = med(r["server_cpu"] for r in runs if r["mode"] == "base")
    for mode in sc["modes"]:
        rs = [r for r in runs if r["mode"] == mode]
        s = {}
        for r in rs:
            r["server_net"] = r["server_cpu"] - base if base is not None else None
            r["total_net"] = (r["server_net"] + r["daemon_cpu"]
                              if r["server_net"] is not None else None)
            r["total"] = r["server_cpu"] + r["daemon_cpu"]
        for k in ("server_cpu", "server_net", "daemon_cpu", "total", "total_net",
                  "producer_backend_cpu", "bench_cpu", "sessions_min", "conn_median",
                  "conn_max", "rss_mb", "hwm_mb"):
            s[k] = [r.get(k) for r in rs]
        for k in ("latency", "first_event", "lateness", "lateness_busy", "lateness_first",
                  "lateness_idle", "lateness_quiet"):
            pooled = [x for r in rs for x in r.get(k, [])]
            s[k + "_n"] = len(pooled)
            for p in (50, 99):
                s[f"{k}_p{p}"] = pct(pooled, p) if pooled else None
            s[k + "_max"] = max(pooled) if pooled else None
            s[k + "_min"] = min(pooled) if pooled else None
        s["unticked"] = sum(r.get("unticked", 0) for r in rs)
        s["pending"] = sum(r.get("pending", 0) for r in rs)
        out[mode] = s
    return out


ROWS = [
    ("server cpu-s per 60 s (producers' backends taken off)", "server_cpu", "cpu"),
    ("server cpu-s above the no-daemon baseline", "server_net", "cpu"),
    ("daemon cpu-s per 60 s", "daemon_cpu", "cpu"),
    ("**total cpu-s per 60 s above baseline (server + daemon)**", "total_net", "cpu"),
    ("total cpu-s per 60 s, server + daemon (baseline included)", "total", "cpu"),
    ("producers' + probes' backends cpu-s per 60 s (reported apart)", "producer_backend_cpu",
     "cpu"),
    ("benchmark process cpu-s per 60 s (reported apart)", "bench_cpu", "cpu"),
    ("daemon RSS MB (end of window)", "rss_mb", "cpu"),
    ("daemon peak RSS MB (VmHWM)", "hwm_mb", "cpu"),
    ("connections held, median of 1 s samples", "conn_median", "cpu"),
    ("connections held, max", "conn_max", "cpu"),
    ("new daemon sessions per minute", "sessions_min", "cpu"),
]


def render_scenario(name, sc, runs, summary, args, meta):
    lines = [f"# Scenario {name}: {sc['title']}", ""]
    lines += meta + [
        f"- databases: {sc['n']} x {sc['q']} queues, "
        + ("our schema (sql/pgq)" if sc["kind"] == "o" else "the real pgq extension")
        + f"; queue settings: defaults" + (f" with {sc['set']}" if sc["set"] else ""),
        f"- window {sc.get('window', args.window)} s after warm-up "
        f"{sc.get('warmup', args.warmup)} s, rounds {args.rounds}, modes "
        f"{', '.join(sc['modes'])} (alternating order)",
    ]
    for k in ("probe_rate", "burst_every", "burst", "busy", "busy_rate", "move_every",
              "quiet_every"):
        if k in sc:
            lines.append(f"- {k} = {sc[k]}")
    # the queue settings both daemons ran with
    seen = {}
    for r in runs:
        if "settings" in r:
            seen.setdefault(r["mode"], set()).add(r["settings"])
    lines += ["", "Queue settings read before each daemon run:", ""]
    for mode, ss in seen.items():
        for s in sorted(ss):
            lines.append(f"- {mode}: {s}")
    if "c" in seen and "ours" in seen:
        same = seen["c"] == seen["ours"]
        lines.append(f"- **equal for both daemons: {'yes' if same else 'NO'}**")
        meta_ok = same
    else:
        meta_ok = True
    has_base = "base" in sc["modes"]
    lines += ["", "| measure | " + ("no daemon | " if has_base else "")
              + "C pgqd | ours | ratio ours/C |",
              "|---|" + ("---|" if has_base else "") + "---|---|---|"]
    for label, key, _ in ROWS:
        vals = {m: summary[m][key] for m in sc["modes"]}
        if all(v is None for m in vals for v in vals[m]):
            continue
        if key in ("server_net", "total_net") and not has_base:
            continue
        cells = [spread(vals[m]) for m in sc["modes"]]
        lines.append(f"| {label} | " + " | ".join(cells) + " | "
                     + ratio(med(vals["ours"]), med(vals["c"])) + " |")
    for key, label in (("latency", "insert -> tick latency ms"),
                       ("first_event", "first event in a quiet database -> tick ms"),
                       ("lateness", "tick lateness ms, all ticks"),
                       ("lateness_busy", "tick lateness ms, busy (max_lag or max_count due)"),
                       ("lateness_first", "tick lateness ms, first event after max_lag quiet"),
                       ("lateness_idle", "tick lateness ms, idle ticks (no events)"),
                       ("lateness_quiet", "tick lateness ms, first event in a quiet database")):
        if not summary["ours"][key + "_n"] and not summary["c"][key + "_n"]:
            continue
        for stat in ("p50", "p99", "max", "min", "n"):
            o = summary["ours"][f"{key}_{stat}"]
            t = summary["c"][f"{key}_{stat}"]
            lines.append(f"| {label} {stat} | " + ("– | " if has_base else "")
                         + f"{f3(t)} | {f3(o)} | "
                         + (ratio(o, t) if stat in ("p50", "p99", "max") else "") + " |")
    lines.append(f"| probe events never ticked (C / ours) | " + ("– | " if has_base else "")
                 + f"{summary['c']['unticked']} | {summary['ours']['unticked']} | |")
    lines.append(f"| due ticks still pending at window end (C / ours) | "
                 + ("– | " if has_base else "")
                 + f"{summary['c']['pending']} | {summary['ours']['pending']} | |")
    lines += ["", "Raw figures per run:", "",
              "| round | mode | server cpu | daemon cpu | producers cpu | RSS MB | conns med/max "
              "| sessions/min | events sent | producer behind ms | warm-up |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(
            f"| {r['round']} | {r['mode']} | {r['server_cpu']:.2f} | {r['daemon_cpu']:.2f} | "
            f"{r['producer_backend_cpu']:.2f} | "
            + (f"{r['rss_mb']:.1f}" if "rss_mb" in r else "–")
            + f" | {r.get('conn_median', '–')}/{r.get('conn_max', '–')} | "
            f"{r['sessions_min']:.1f} | {r.get('sent', '–')} | "
            f"{r.get('producer_behind_max_ms', 0):.0f} | {r.get('warm', '–')} |")
        if r.get("traffic_error"):
            lines.append(f"|  | traffic error: {r['traffic_error']} |||||||||")
    lines += ["", "Daemon logs:", ""]
    for r in runs:
        if "log" in r:
            lines.append("- " + log_findings(r["log"], f"{r['mode']} round {r['round']}"))
    lines.append("")
    return "\n".join(lines), meta_ok


def svg_plot(path, panels):
    """A hand-written SVG: one log-log panel per (title, {series: [(x, y)]})."""
    W, H, PAD = 420, 300, 55
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(panels)}" height="{H}" '
           'font-family="sans-serif" font-size="11">',
           f'<rect width="{W * len(panels)}" height="{H}" fill="white"/>']
    for i, (title, series) in enumerate(panels):
        ox = i * W
        pts = [(x, y) for s in series.values() for x, y in s if x > 0 and y and y > 0]
        out.append(f'<text x="{ox + W / 2}" y="16" text-anchor="middle" '
                   f'font-weight="bold">{title}</text>')
        if not pts:
            out.append(f'<text x="{ox + W / 2}" y="{H / 2}" text-anchor="middle">no data</text>')
            continue
        x0 = math.floor(math.log10(min(p[0] for p in pts)))
        x1 = max(x0 + 1, math.ceil(math.log10(max(p[0] for p in pts))))
        y0 = math.floor(math.log10(min(p[1] for p in pts)))
        y1 = math.ceil(math.log10(max(p[1] for p in pts)))
        if y1 == y0:
            y1 += 1

        def px(x):
            return ox + PAD + (math.log10(x) - x0) / (x1 - x0) * (W - PAD - 15)

        def py(y):
            return H - PAD + 15 - (math.log10(y) - y0) / (y1 - y0) * (H - PAD - 15)
        out.append(f'<rect x="{ox + PAD}" y="30" width="{W - PAD - 15}" '
                   f'height="{H - PAD - 15}" fill="none" stroke="#999"/>')
        for e in range(x0, x1 + 1):
            out.append(f'<text x="{px(10 ** e)}" y="{H - PAD + 30}" text-anchor="middle">'
                       f'{10 ** e}</text>')
        for e in range(y0, y1 + 1):
            v = 10.0 ** e
            out.append(f'<line x1="{ox + PAD}" x2="{ox + W - 15}" y1="{py(v)}" y2="{py(v)}" '
                       'stroke="#eee"/>')
            out.append(f'<text x="{ox + PAD - 4}" y="{py(v) + 4}" text-anchor="end">{v:g}</text>')
        out.append(f'<text x="{ox + W / 2}" y="{H - 8}" text-anchor="middle">databases</text>')
        for k, (name, s) in enumerate(series.items()):
            s = sorted((x, y) for x, y in s if x > 0 and y and y > 0)
            # red: the C pgqd, blue: ours; dashed: the pgq extension or a latency
            col = "#c0392b" if name.startswith("C") else "#2471a3"
            dash = ' stroke-dasharray="5,3"' if ("ext" in name or "latency" in name) else ""
            if "ext" in name:
                col = "#e59866" if name.startswith("C") else "#7fb3d5"
            if len(s) > 1:
                out.append('<polyline fill="none" stroke="%s" stroke-width="1.5"%s points="%s"/>'
                           % (col, dash, " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s)))
            for x, y in s:
                out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{col}">'
                           f'<title>{name}: {y:.3g} at {x} databases</title></circle>')
            out.append(f'<text x="{ox + PAD + 8}" y="{44 + 14 * k}" fill="{col}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def targets(res):
    """The #7 target table, from whichever scenarios ran."""
    rows = []

    def g(name, mode, key):
        return res.get(name, {}).get(mode, {}).get(key)

    def mg(name, mode, key):
        return med(g(name, mode, key) or [])
    if "a" in res:
        rows.append(("latency p50 / p99, max_lag 0, 100 DBs x 10 q (ms)",
                     f"{f3(g('a', 'c', 'latency_p50'))} / {f3(g('a', 'c', 'latency_p99'))}",
                     f"{f3(g('a', 'ours', 'latency_p50'))} / {f3(g('a', 'ours', 'latency_p99'))}",
                     "p50 ≤ 25, p99 ≤ 60",
                     ok(g('a', 'ours', 'latency_p50'), 25) and ok(g('a', 'ours', 'latency_p99'), 60)))
    if "b" in res:
        rows.append(("lateness p99, defaults, connected DBs (ms)",
                     f3(g("b", "c", "lateness_p99")), f3(g("b", "ours", "lateness_p99")),
                     "≤ 50", ok(g("b", "ours", "lateness_p99"), 50)))
    if "c" in res:
        t, o = mg("c", "c", "total_net"), mg("c", "ours", "total_net")
        rows.append(("idle cost above baseline, 100 DBs x 10 q (cpu-s / 60 s)", f3(t), f3(o),
                     "≤ 1/5 of C", ok(o, t / 5 if t else None)))
    if "d" in res:
        t, o = mg("d", "c", "total"), mg("d", "ours", "total")
        rows.append(("1000 DBs: server + daemon cpu (cores)", f3(t / 60 if t else None),
                     f3(o / 60 if o else None), "< 0.5", ok(o / 60 if o else None, 0.5)))
        rows.append(("1000 DBs: connections held, max", f3(mg("d", "c", "conn_max")),
                     f3(mg("d", "ours", "conn_max")), "≤ 64", ok(mg("d", "ours", "conn_max"), 64)))
        rows.append(("1000 DBs: lateness p99, busy DBs, all their ticks (ms)",
                     f3(g("d", "c", "lateness_p99")), f3(g("d", "ours", "lateness_p99")),
                     "≤ 100", ok(g("d", "ours", "lateness_p99"), 100)))
        rows.append(("1000 DBs: first event in a quiet DB, lateness max (ms)",
                     f3(g("d", "c", "lateness_quiet_max")),
                     f3(g("d", "ours", "lateness_quiet_max")), "≤ 1000",
                     ok(g("d", "ours", "lateness_quiet_max"), 1000)))
        rows.append(("1000 DBs: first event in a quiet DB, insert -> tick p50 / max (ms)",
                     f"{f3(g('d', 'c', 'first_event_p50'))} / {f3(g('d', 'c', 'first_event_max'))}",
                     f"{f3(g('d', 'ours', 'first_event_p50'))} / "
                     f"{f3(g('d', 'ours', 'first_event_max'))}", "(includes max_lag)", None))
        rows.append(("1000 DBs: daemon RSS, metrics on (MB)", f3(mg("d", "c", "hwm_mb")),
                     f3(mg("d", "ours", "hwm_mb")), "≤ 30", ok(mg("d", "ours", "hwm_mb"), 30)))
    if "e" in res:
        rows.append(("10 DBs x 1000 q: lateness p99 (ms)", f3(g("e", "c", "lateness_p99")),
                     f3(g("e", "ours", "lateness_p99")), "≤ 100",
                     ok(g("e", "ours", "lateness_p99"), 100)))
    if "xa" in res:
        rows.append(("pgq extension: latency p50 / p99, max_lag 0 (ms)",
                     f"{f3(g('xa', 'c', 'latency_p50'))} / {f3(g('xa', 'c', 'latency_p99'))}",
                     f"{f3(g('xa', 'ours', 'latency_p50'))} / "
                     f"{f3(g('xa', 'ours', 'latency_p99'))}", "as a", None))
    if "xc" in res:
        t, o = mg("xc", "c", "total_net"), mg("xc", "ours", "total_net")
        rows.append(("pgq extension: idle cost above baseline (cpu-s / 60 s)", f3(t), f3(o),
                     "≤ 1/5 of C", ok(o, t / 5 if t else None)))
    lines = ["| metric | C pgqd | ours | target | met |", "|---|---|---|---|---|"]
    for label, t, o, goal, met in rows:
        lines.append(f"| {label} | {t} | {o} | {goal} | "
                     + ("–" if met is None else "yes" if met else "**no**") + " |")
    return lines


def ok(v, limit):
    if v is None or limit is None:
        return None
    return v <= limit


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, one round, short windows (development only)")
    ap.add_argument("--scenarios", default="a,b,c,d,e,xa,xc")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (default 3, smoke 1)")
    ap.add_argument("--window", type=float, help="measuring window, s (default 60, smoke 4; "
                    "scenario d: 150, smoke 6)")
    ap.add_argument("--warmup", type=float, help="s after the daemon's connections settle "
                    "(default 10, smoke 1; scenario d: 20, smoke 1)")
    ap.add_argument("--cache", default=os.environ.get("PGQD_BENCH_CACHE",
                                                      os.path.join(ROOT, "bench", ".cache")))
    ap.add_argument("--ours", default=os.environ.get("OUR_PGQD", os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "pgqd")))
    ap.add_argument("--c-pgqd", default=C_PGQD)
    ap.add_argument("--ours-set", action="append", default=[], metavar="'KEY = VALUE'",
                    help="a TOML line added to our daemon's config (every scenario)")
    ap.add_argument("--no-metrics", dest="metrics", action="store_false",
                    help="do not turn on our metrics endpoint")
    ap.add_argument("--out-dir", help="reports go here (default bench/results, smoke: "
                    "bench/results/smoke)")
    args = ap.parse_args()
    selftest()
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 3
    if args.window is None:
        args.window = 4.0 if args.smoke else 60.0
    if args.warmup is None:
        args.warmup = 1.0 if args.smoke else 10.0
    out_dir = args.out_dir or os.path.join(ROOT, "bench", "results", "smoke" if args.smoke else "")
    os.makedirs(out_dir, exist_ok=True)
    for b in (args.ours, args.c_pgqd):
        if not os.access(b, os.X_OK):
            sys.exit(f"{b} missing (bench/perf.sh builds ours; apt-get install pgqd)")
    scs = scenarios(args.smoke)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for n in names:
        if n not in scs:
            sys.exit(f"unknown scenario {n}; known: {', '.join(scs)}")
    if args.smoke:
        for sc in scs.values():
            sc.setdefault("window", args.window)
    # every database needs a file descriptor in the server and in the C pgqd
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else max(hard, 0)
    if os.geteuid() == 0 and hard != resource.RLIM_INFINITY and hard < 65536:
        want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)
                                                    if hard != resource.RLIM_INFINITY
                                                    else hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.ours_lines = ours_extra(args)

    started = datetime.datetime.now(datetime.timezone.utc)
    stamp = args.stamp = f"{started:%Y%m%d-%H%M%S}"
    rundir = os.path.join(args.cache, "runs", stamp)
    os.makedirs(rundir, exist_ok=True)
    t_setup = time.monotonic()
    c = CachedCluster(os.path.abspath(args.cache), os.path.join(rundir, "server.log"))
    m = None
    results, reports = {}, []
    try:
        log(f"cluster {c.data} on port {c.port}, fd limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
        plan = {}
        for n in names:
            sc = scs[n]
            plan[n] = ensure_dbs(c, sc["kind"], sc["q"], sc["n"])
        setup_s = time.monotonic() - t_setup
        log(f"setup done in {setup_s:.0f} s")
        m = Conn(c.port, "postgres", app=MEASURER)
        commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = run(["git", "-C", ROOT, "status", "--porcelain", "src", "sql", "bench"]
                    ).stdout.strip()
        c_ver = subprocess.run([args.c_pgqd, "-V"], capture_output=True, text=True)
        c_ver = (c_ver.stdout or c_ver.stderr).strip().splitlines()[0]
        o_ver = subprocess.run([args.ours, "-V"], capture_output=True, text=True).stdout.strip()
        cmd = "bench/perf.sh " + " ".join(sys.argv[1:])
        meta = [
            f"- date: {started:%Y-%m-%d %H:%M} UTC",
            f"- command: `{cmd}`",
            f"- commit: {commit}{' (src/, sql/ or bench/ modified)' if dirty else ''}; "
            f"ours: `{o_ver}` ({args.ours}); C: `{c_ver}` ({args.c_pgqd}); pgq extension "
            f"{ext_version(c)}",
            f"- PostgreSQL {m.value('show server_version')}, {os.cpu_count()} cores; "
            "fsync/synchronous_commit/full_page_writes off, max_connections 1200, "
            "shared_buffers 256MB, TCP 127.0.0.1; fd limit "
            f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]} (server and daemons)",
            "- both daemons at their defaults, `database_list` = the scenario's databases; "
            f"ours also: {args.ours_lines or 'nothing'}",
            "- definitions of latency, due time, lateness, cpu: bench/perf.py docstring",
        ]
        for n in names:
            sc = scs[n]
            dbs = plan[n]
            t_sc = time.monotonic()
            log(f"scenario {n}: {sc['title']} ({len(dbs)} DBs x {sc['q']} queues)")
            apply_settings(c, dbs, sc["set"])
            runs = []
            for r in range(1, args.rounds + 1):
                order = sc["modes"] if r % 2 else sc["modes"][::-1]
                for mode in order:
                    res = one_run(c, m, sc, n, mode, dbs, r, args, rundir)
                    runs.append(res)
                    brief = {k: v for k, v in res.items() if isinstance(v, (int, float))}
                    for k in ("latency", "lateness", "first_event"):
                        if res.get(k):
                            brief[k + "_p99"] = pct(res[k], 99)
                    log(f"  {n} round {r} {mode}: " + ", ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in brief.items()))
            summary = summarise(n, sc, runs)
            results[n] = summary
            text, same = render_scenario(n, sc, runs, summary, args, meta)
            text += f"Scenario time {(time.monotonic() - t_sc) / 60:.1f} min.\n"
            path = os.path.join(out_dir, f"{n}-{started:%Y-%m-%d}.md")
            with open(path, "w") as f:
                f.write(text)
            reports.append(path)
            if not same:
                log(f"  {n}: queue settings differ between the daemons, see {path}")
            log(f"  {n}: report {path}")
        # summary, targets and the plot
        svg = os.path.join(out_dir, f"perf-{started:%Y-%m-%d}.svg")
        cpu_series, lat_series = {}, {}
        for n, label_sfx in (("c", ""), ("d", ""), ("xc", ", pgq ext")):
            if n in results:
                for mode, lab in (("c", "C pgqd"), ("ours", "ours")):
                    v = med(results[n][mode]["total_net"])
                    cpu_series.setdefault(lab + label_sfx, []).append((scs[n]["n"], v))
        for n, key, what in (("e", "lateness_p99", "lateness"), ("b", "lateness_p99", "lateness"),
                             ("d", "lateness_p99", "lateness"),
                             ("a", "latency_p99", "latency, max_lag 0"),
                             ("xa", "latency_p99", "latency, max_lag 0, pgq ext")):
            if n in results:
                for mode, lab in (("c", "C pgqd"), ("ours", "ours")):
                    v = results[n][mode][key]
                    lat_series.setdefault(f"{lab} {what}", []).append((scs[n]["n"], v))
        svg_plot(svg, [("cpu-s / 60 s above no daemon (c, d, xc)", cpu_series),
                       ("p99 ms: lateness (e, b, d busy), latency (a, xa)", lat_series)])
        lines = ["# pgqd performance suite (issue #7)", ""] + meta + [
            f"- setup (cluster + databases, cached in {args.cache}): {setup_s:.0f} s",
            f"- total time {(datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60:.1f} min",
            "", "## Targets", ""] + targets(results) + [
            "", "## Reports", ""] + [f"- {os.path.relpath(p, ROOT)}" for p in reports] + [
            f"- plot: {os.path.relpath(svg, ROOT)}", ""]
        summary_path = os.path.join(out_dir, f"perf-{started:%Y-%m-%d}.md")
        with open(summary_path, "w") as f:
            f.write("\n".join(lines))
        print("\n".join(lines))
        log(f"summary {summary_path}")
    finally:
        if m:
            m.close()
        c.stop()


if __name__ == "__main__":
    sys.exit(main())
