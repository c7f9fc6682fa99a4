"""Cluster and daemons of the perf suite (bench/perf.py): the cached cluster, its template
and benchmark databases, queue settings, and one C or our pgqd run with `database_list`."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time

from sql_bench import Cluster, our_schema
from daemon_bench import Conn, log

CONSUMER = "c"
MEASURER = "perf_measurer"
PRODUCER = "perf_producer"
APPS = {"c": "bench_pgqd_c", "ours": "bench_pgqd_ours"}
DEFAULTS = {"queue_ticker_max_count": "500", "queue_ticker_max_lag": "3 seconds",
            "queue_ticker_idle_period": "1 minute", "queue_ticker_paused": "false"}


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


def visited(d):
    """How many databases our daemon has found pgq in so far (its log says so once each)."""
    try:
        with open(d.logfile, errors="replace") as f:
            return sum(1 for line in f if "pgq found" in line)
    except OSError:
        return 0


def warm_up(m, d, ndbs, timeout=300):
    """Wait until the daemon holds one connection per database or its count stays put
    for 5 s (a daemon with a connection budget never holds them all); ours: until it has
    visited every database once (with a budget it hands quiet ones back, so its count
    never stays put)."""
    t0 = time.monotonic()
    if d.kind == "ours":
        while time.monotonic() - t0 < timeout:
            if not d.alive():
                raise RuntimeError(f"ours pgqd exited, see {d.logfile} / {d.stderr.name}")
            n = visited(d)
            if n >= ndbs:
                return n, time.monotonic() - t0
            time.sleep(0.25)
        return visited(d), time.monotonic() - t0
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
