#!/usr/bin/env python3
"""Daemon benchmark: our pgqd against the Debian C pgqd, side by side on one cluster.

One throwaway cluster (settings of shared/BENCH.md). Our schema (sql/pgq/*.sql) is installed
once into a template database `pgq_tpl` with Q queues, each with one registered consumer; the
template is marked `datistemplate` (so both daemons skip it) and copied into N databases
db1..dbN. Both daemons run with their defaults (ticker_period 1 s, check_period 60 s,
maint_period 120 s, retry_period 30 s) and initial_database = postgres, over TCP 127.0.0.1.

Idle phase: rounds of three modes — no daemon (baseline), the C pgqd (/usr/bin/pgqd), ours
(target/release/pgqd) — in alternating order. After each daemon's warm-up (it holds a
connection to every database, plus a few seconds) one window of --seconds measures:

  server cpu    utime+stime of the postmaster and all its children, also children that came
                and went (the postmaster's cutime+cstime), from /proc, per 60 s
  daemon cpu    the daemon process's utime+stime (+ cutime+cstime), per 60 s
  rss           the daemon's VmRSS at the end of the window, VmHWM (peak)
  connections   pg_stat_activity client backends other than the measurer's, sampled each second
  sessions/min  new sessions (pg_stat_database.sessions) during the window, per minute
  ticks         ticks the daemon made while it ran, queues ticked at least once

Latency phase, once per daemon: ticker_max_lag = 0 on the queues of 10 databases
(pgq.set_queue_config), then --samples times: insert one event, poll
`select pgq.next_batch(q, c)` every 5 ms (finishing every batch; only the batch that holds
the event counts) and record insert -> batch. A random pause (0..1 s, same seed for both)
before each insert keeps the samples from locking onto the ticker's phase.

Usage: bench/daemon_bench.py [--dbs 100] [--queues 10] [--seconds 60] [--rounds 2]
                             [--samples 30] [--out bench/results/FILE.md]
Quick try: bench/daemon_bench.py --dbs 10 --seconds 10 --rounds 1
Needs PostgreSQL 15 server binaries, psql, the Debian pgqd package and
`cargo build --release --bin pgqd`; run as root (the server runs as user postgres) or as a
normal user. python3 standard library only (a minimal wire-protocol client for the polling).
"""

import argparse
import datetime
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sql_bench import ROOT, Cluster, our_schema, run  # noqa: E402

C_PGQD = os.environ.get("C_PGQD", "/usr/bin/pgqd")
OUR_PGQD = os.path.join(ROOT, "target", "release", "pgqd")
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONSUMER = "c"
MEASURER_APP = "daemon_bench"
LATENCY_DBS = 10
POLL = 0.005


def log(msg):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", flush=True)


# ---------------------------------------------------------------- a minimal wire client

class PgError(Exception):
    pass


class Conn:
    """PostgreSQL protocol 3.0, simple query only, trust authentication: enough to poll
    every 5 ms from one long-lived session (psql per query would cost more than that)."""

    def __init__(self, port, db, app=MEASURER_APP, user="postgres"):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in
                          (("user", user), ("database", db), ("application_name", app)))
        body = struct.pack("!i", 196608) + params + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        self._until_ready()
        self.pid = int(self.query("select pg_backend_pid()")[0][0])

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PgError("connection closed by the server")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _msg(self):
        head = self._read(5)
        kind, length = head[:1], struct.unpack("!i", head[1:])[0]
        return kind, self._read(length - 4)

    @staticmethod
    def _error_text(body):
        fields = {}
        for part in body.split(b"\0"):
            if part:
                fields[part[:1]] = part[1:].decode(errors="replace")
        return f"{fields.get(b'S', 'ERROR')} {fields.get(b'C', '')}: {fields.get(b'M', '')}"

    def _until_ready(self):
        rows, error = [], None
        while True:
            kind, body = self._msg()
            if kind == b"R":
                code = struct.unpack("!i", body[:4])[0]
                if code != 0:
                    raise PgError(f"authentication method {code} not supported (trust only)")
            elif kind == b"D":
                n = struct.unpack("!h", body[:2])[0]
                pos, row = 2, []
                for _ in range(n):
                    ln = struct.unpack("!i", body[pos:pos + 4])[0]
                    pos += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(body[pos:pos + ln].decode())
                        pos += ln
                rows.append(row)
            elif kind == b"E":
                error = self._error_text(body)
            elif kind == b"Z":
                if error:
                    raise PgError(error)
                return rows
            # T, C, S, K, N, I: nothing to keep

    def query(self, sql):
        data = sql.encode() + b"\0"
        self.sock.sendall(b"Q" + struct.pack("!i", len(data) + 4) + data)
        return self._until_ready()

    def value(self, sql):
        rows = self.query(sql)
        return rows[0][0] if rows else None

    def close(self):
        try:
            self.sock.sendall(b"X" + struct.pack("!i", 4))
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- the cluster

def queue_names(q):
    return [f"q{i}" for i in range(1, q + 1)]


def setup(c, n, q):
    c.psql("postgres", "create database pgq_tpl;")
    c.psql("pgq_tpl", our_schema(), single=True)
    c.psql("pgq_tpl", "".join(f"select pgq.create_queue('{name}');"
                              f"select pgq.register_consumer('{name}', '{CONSUMER}');"
                              for name in queue_names(q)), single=True)
    c.psql("postgres", "alter database pgq_tpl is_template true;")
    dbs = [f"db{i}" for i in range(1, n + 1)]
    c.psql("postgres", "".join(f"create database {d} template pgq_tpl;\n" for d in dbs))
    return dbs


# ---------------------------------------------------------------- /proc accounting

def proc_stat(pid):
    """(ppid, starttime, self cpu ticks, waited-for children cpu ticks) or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return (int(rest[1]), int(rest[19]), int(rest[11]) + int(rest[12]),
            int(rest[13]) + int(rest[14]))


def server_snapshot(pm):
    """The postmaster's own and reaped children's cpu, and each live child's cpu."""
    own = proc_stat(pm)
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st and st[0] == pm:
            children[(int(name), st[1])] = st[2]
    return own[2], own[3], children


def server_cpu(before, after):
    """cpu-seconds of the server between two snapshots: live children's deltas, new
    children in full, and children that exited through the postmaster's cutime/cstime
    (which holds their whole life, so their share before the window comes off)."""
    own0, reaped0, ch0 = before
    own1, reaped1, ch1 = after
    ticks = (own1 - own0) + (reaped1 - reaped0)
    ticks += sum(v - ch0.get(k, 0) for k, v in ch1.items())
    ticks -= sum(v for k, v in ch0.items() if k not in ch1)
    return ticks / CLK_TCK


def daemon_cpu(pid):
    st = proc_stat(pid)
    return (st[2] + st[3]) / CLK_TCK if st else None


def proc_status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- daemons

class Daemon:
    def __init__(self, c, kind, tag):
        self.c, self.kind = c, kind
        base = f"host=127.0.0.1 port={c.port} user=postgres"
        self.logfile = os.path.join(c.dir, f"{kind}-{tag}.log")
        pidfile = os.path.join(c.dir, f"{kind}-{tag}.pid")
        if kind == "c":
            self.app = "pgqd_c"
            self.config = os.path.join(c.dir, f"{kind}-{tag}.ini")
            with open(self.config, "w") as f:
                f.write("[pgqd]\n"
                        f"base_connstr = {base} application_name={self.app}\n"
                        "initial_database = postgres\n"
                        f"logfile = {self.logfile}\n"
                        f"pidfile = {pidfile}\n"
                        "syslog = 0\n")
            cmd = [C_PGQD, "-q", self.config]
        else:
            self.app = "pgqd"
            self.config = os.path.join(c.dir, f"{kind}-{tag}.toml")
            with open(self.config, "w") as f:
                f.write(f'base_connstr = "{base}"\n'
                        'initial_database = "postgres"\n'
                        f'logfile = "{self.logfile}"\n'
                        f'pidfile = "{pidfile}"\n')
            cmd = [OUR_PGQD, self.config]
        self.stderr = open(os.path.join(c.dir, f"{kind}-{tag}.stderr"), "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.stderr,
                                     stderr=subprocess.STDOUT, env=c.env())
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


def other_backends(m, dbs_only=False):
    """Client backends other than the measurer's sessions."""
    cond = "backend_type = 'client backend' and application_name <> '%s'" % MEASURER_APP
    return m.query(f"select pid, datname, application_name from pg_stat_activity where {cond}")


def wait_connected(m, dbs, timeout):
    want = set(dbs)
    t0 = time.monotonic()
    seen = set()
    while time.monotonic() - t0 < timeout:
        seen = {r[1] for r in other_backends(m)} & want
        if seen == want:
            return len(seen), time.monotonic() - t0
        time.sleep(0.2)
    return len(seen), time.monotonic() - t0


def wait_disconnected(m, timeout=30):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not other_backends(m):
            return True
        time.sleep(0.2)
    return False


def sessions(m):
    return int(m.value("select coalesce(sum(sessions), 0) from pg_stat_database"))


def tick_check(c, dbs, since):
    """Ticks made since `since` (server time) and queues with at least one such tick."""
    ticks = queues = 0
    for d in dbs:
        conn = Conn(c.port, d)
        try:
            row = conn.query("select count(*), count(distinct tick_queue) from pgq.tick "
                             f"where tick_time >= '{since}'")[0]
        finally:
            conn.close()
        ticks += int(row[0])
        queues += int(row[1])
    return ticks, queues


# ---------------------------------------------------------------- idle phase

def idle_window(c, m, kind, args, dbs, tag):
    res = {}
    d = None
    if kind != "base":
        since = m.value("select clock_timestamp()")
        d = Daemon(c, kind, tag)
        n, waited = wait_connected(m, dbs, 120)
        res["warm_dbs"], res["warm_s"] = n, waited
        if n < len(dbs):
            log(f"  {kind}: connected to only {n}/{len(dbs)} databases after {waited:.0f} s")
        time.sleep(args.warmup)
        if not d.alive():
            raise RuntimeError(f"{kind} pgqd exited early, see {d.logfile} / {d.stderr.name}")
    else:
        time.sleep(2)
    samples = []
    s0 = sessions(m)
    srv0 = server_snapshot(c.postmaster)
    dcpu0 = daemon_cpu(d.pid) if d else 0.0
    t0 = time.monotonic()
    end = t0 + args.seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        samples.append(len(other_backends(m)))
        time.sleep(min(1.0, end - now))
    srv1 = server_snapshot(c.postmaster)
    dcpu1 = daemon_cpu(d.pid) if d else 0.0
    elapsed = time.monotonic() - t0
    s1 = sessions(m)
    scale = 60.0 / elapsed
    res["server_cpu"] = server_cpu(srv0, srv1) * scale
    res["daemon_cpu"] = (dcpu1 - dcpu0) * scale
    res["conn_median"] = statistics.median(samples)
    res["conn_max"] = max(samples)
    # the measurer's own sessions opened during the window: none (one long-lived session)
    res["sessions_min"] = (s1 - s0) * scale
    if d:
        res["rss_mb"] = proc_status_kb(d.pid, "VmRSS") / 1024
        res["hwm_mb"] = proc_status_kb(d.pid, "VmHWM") / 1024
        rc = d.stop()
        res["exit"] = rc
        if not wait_disconnected(m):
            log(f"  {kind}: connections still open 30 s after stop")
        ticks, queues = tick_check(c, dbs, since)
        res["ticks"], res["queues_ticked"] = ticks, queues
        res["log"] = d.logfile
    return res


# ---------------------------------------------------------------- latency phase

def drain(conn, q):
    while True:
        b = conn.value(f"select pgq.next_batch('{q}', '{CONSUMER}')")
        if b is None:
            return
        conn.query(f"select pgq.finish_batch({b})")


def latency_phase(c, m, kind, args, dbs):
    lat_dbs = [dbs[i * len(dbs) // min(LATENCY_DBS, len(dbs))]
               for i in range(min(LATENCY_DBS, len(dbs)))]
    qs = queue_names(args.queues)
    conns = {db: Conn(c.port, db) for db in lat_dbs}
    for conn in conns.values():
        for q in qs:
            conn.query(f"select pgq.set_queue_config('{q}', 'ticker_max_lag', '0')")
    d = Daemon(c, kind, "latency")
    rnd = random.Random(20261126)
    out, timeouts = [], 0
    try:
        n, _ = wait_connected(m, dbs, 120)
        time.sleep(args.warmup)
        for i in range(args.samples):
            db = lat_dbs[i % len(lat_dbs)]
            q = qs[(i // len(lat_dbs)) % len(qs)]
            conn = conns[db]
            drain(conn, q)
            time.sleep(rnd.uniform(0, 1.0))
            marker = f"lat-{kind}-{i}-{time.time_ns()}"
            t0 = time.perf_counter()
            conn.query(f"select pgq.insert_event('{q}', 'lat', '{marker}')")
            k, found = 0, None
            while found is None and time.perf_counter() - t0 < 30:
                b = conn.value(f"select pgq.next_batch('{q}', '{CONSUMER}')")
                if b is not None:
                    got = time.perf_counter() - t0
                    evs = conn.query(f"select ev_data from pgq.get_batch_events({b})")
                    conn.query(f"select pgq.finish_batch({b})")
                    if any(r[0] == marker for r in evs):
                        found = got
                        break
                k += 1
                pause = t0 + k * POLL - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            if found is None:
                timeouts += 1
            else:
                out.append(found * 1000)
    finally:
        d.stop()
        wait_disconnected(m)
        for conn in conns.values():
            conn.close()
    return {"lat": out, "timeouts": timeouts, "log": d.logfile, "warm_dbs": n}


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dbs", type=int, default=100)
    ap.add_argument("--queues", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=60, help="length of each idle window")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples", type=int, default=30, help="latency samples per daemon")
    ap.add_argument("--warmup", type=float, default=5.0,
                    help="seconds after the daemon holds every database")
    ap.add_argument("--out", help="write the report (markdown) to this file too")
    args = ap.parse_args()
    if not os.access(OUR_PGQD, os.X_OK):
        sys.exit(f"{OUR_PGQD} missing: cargo build --release --bin pgqd")

    started = datetime.datetime.utcnow()
    c = Cluster(prefix="pgqd-dbench-")
    m = None
    try:
        log(f"cluster on port {c.port}; creating {args.dbs} databases x {args.queues} queues")
        dbs = setup(c, args.dbs, args.queues)
        m = Conn(c.port, "postgres")
        modes = ["base", "c", "ours"]
        idle = {k: [] for k in modes}
        for r in range(args.rounds):
            order = modes if r % 2 == 0 else modes[::-1]
            for kind in order:
                res = idle_window(c, m, kind, args, dbs, f"r{r + 1}")
                idle[kind].append(res)
                log(f"round {r + 1} {kind}: " + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in res.items() if k != "log"))
        lat = {}
        for kind in ("c", "ours"):
            lat[kind] = latency_phase(c, m, kind, args, dbs)
            lt = lat[kind]["lat"]
            log(f"latency {kind}: {len(lt)} samples, p50 {pct(lt, 50):.0f} ms, "
                f"max {max(lt) if lt else float('nan'):.0f} ms, "
                f"timeouts {lat[kind]['timeouts']}")
        report = render(args, c, m, idle, lat, started)
        print(report)
        if args.out:
            with open(args.out, "w") as f:
                f.write(report)
    finally:
        if m:
            m.close()
        c.stop()


def pct(xs, p):
    """Nearest-rank percentile."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None


def fmt(t, digits=3):
    if t is None:
        return "–"
    m, lo, hi = t
    if lo == hi:
        return f"{m:.{digits}g}"
    return f"{m:.{digits}g} ({lo:.{digits}g}..{hi:.{digits}g})"


def ratio(a, b):
    if a is None or b is None or b[0] == 0:
        return "–"
    r = a[0] / b[0]
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def log_findings(path, kind):
    """Counts of warning/error lines in a daemon log, and a few distinct examples."""
    pat = re.compile(r"\b(ERROR|WARNING|WARN|FATAL|PANIC|panicked)\b")
    hits, examples = 0, []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if pat.search(line):
                    hits += 1
                    short = re.sub(r"^\S+ \S+ ", "", line.strip())[:200]
                    if len(examples) < 3 and short not in examples:
                        examples.append(short)
    except OSError:
        return f"{kind}: no log file {path}"
    return f"{kind}: {hits} warning/error lines" + (
        "".join(f"\n  - `{e}`" for e in examples) if examples else "")


def render(args, c, m, idle, lat, started):
    commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = run(["git", "-C", ROOT, "status", "--porcelain", "src", "sql"]).stdout.strip()
    version = m.value("show server_version")
    c_ver = subprocess.run([C_PGQD, "-V"], capture_output=True, text=True)
    c_ver = (c_ver.stdout or c_ver.stderr).strip().splitlines()[0]
    o_ver = subprocess.run([OUR_PGQD, "-V"], capture_output=True, text=True).stdout.strip()
    nq = args.dbs * args.queues
    cmd = (f"bench/daemon_bench.py --dbs {args.dbs} --queues {args.queues} --seconds "
           f"{args.seconds} --rounds {args.rounds} --samples {args.samples}"
           + (f" --out {args.out}" if args.out else ""))
    lines = [
        "# Daemon benchmark: our pgqd vs the Debian C pgqd",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- command: `{cmd}`",
        f"- commit: {commit}{' (src/ or sql/ modified)' if dirty else ''}; ours: `{o_ver}`;"
        f" C: `{c_ver}` ({C_PGQD})",
        f"- PostgreSQL {version}, {os.cpu_count()} cores; fsync/synchronous_commit/"
        "full_page_writes off, max_connections 1200, shared_buffers 256MB, TCP 127.0.0.1",
        f"- {args.dbs} databases x {args.queues} queues, one consumer each, our schema "
        "(sql/pgq) copied from a template database; both daemons at their defaults "
        "(ticker_period 1 s, check_period 60 s, maint_period 120 s, retry_period 30 s), "
        "initial_database = postgres",
        f"- idle: rounds: {args.rounds}, each of three modes in alternating order, each window "
        f"{args.seconds} s after a warm-up (daemon connected to every database + "
        f"{args.warmup:g} s); medians with min..max; cpu-seconds scaled to 60 s",
        f"- latency: ticker_max_lag = 0 on the queues of {min(LATENCY_DBS, args.dbs)} "
        f"databases, {args.samples} samples per daemon, insert -> `next_batch` returns the "
        "batch holding the event, polling every 5 ms, random 0..1 s pause before each insert",
        "",
        "| measure | no daemon | C pgqd | ours | ratio ours/C |",
        "|---|---|---|---|---|",
    ]
    b, cc, o = idle["base"], idle["c"], idle["ours"]
    base_srv = statistics.median(r["server_cpu"] for r in b)

    def derived(rs):
        for r in rs:
            r["server_net"] = r["server_cpu"] - base_srv
            r["total_net"] = r["server_net"] + r["daemon_cpu"]
    derived(cc)
    derived(o)

    def row(label, key, base=True, digits=3, show_ratio=True):
        mc, mo = med(cc, key), med(o, key)
        mb = fmt(med(b, key), digits) if base else "–"
        lines.append(f"| {label} | {mb} | {fmt(mc, digits)} | {fmt(mo, digits)} | "
                     f"{ratio(mo, mc) if show_ratio else '–'} |")

    row("server cpu-s per 60 s (all postgres processes)", "server_cpu")
    row("server cpu-s above the no-daemon baseline", "server_net", base=False)
    row("daemon cpu-s per 60 s", "daemon_cpu", base=False)
    row("**total cpu-s above baseline (server + daemon)**", "total_net", base=False)
    row("daemon RSS MB (end of window)", "rss_mb", base=False)
    row("daemon peak RSS MB (VmHWM)", "hwm_mb", base=False)
    row("connections held (median of 1 s samples)", "conn_median")
    row("connections held (max)", "conn_max")
    row("new sessions per minute", "sessions_min")
    # depends on the order of the modes: queues left idle by the previous mode for over
    # ticker_idle_period (60 s) get one tick at the start as well, so no ratio
    row("ticks made while running (warm-up + window + stop; order-dependent)", "ticks",
        base=False, digits=4, show_ratio=False)
    row(f"queues ticked at least once (of {nq})", "queues_ticked", base=False, digits=4)
    for p in (50, 90, 99):
        vc, vo = pct(lat["c"]["lat"], p), pct(lat["ours"]["lat"], p)
        lines.append(f"| insert -> batch p{p} ms, max_lag 0 | – | {vc:.0f} | {vo:.0f} | "
                     f"{vo / vc:.2f} |")
    vc = max(lat["c"]["lat"], default=float("nan"))
    vo = max(lat["ours"]["lat"], default=float("nan"))
    lines.append(f"| insert -> batch max ms | – | {vc:.0f} | {vo:.0f} | {vo / vc:.2f} |")
    lines.append(f"| latency samples (timeouts > 30 s) | – | {len(lat['c']['lat'])} "
                 f"({lat['c']['timeouts']}) | {len(lat['ours']['lat'])} "
                 f"({lat['ours']['timeouts']}) | |")
    lines += ["", "Per window (idle phase):", "",
              "| round | mode | server cpu | daemon cpu | RSS MB | conns | sessions/min | "
              "ticks | queues ticked | warm-up |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for kind in ("base", "c", "ours"):
        for i, r in enumerate(idle[kind]):
            lines.append(
                f"| {i + 1} | {kind} | {r['server_cpu']:.2f} | {r['daemon_cpu']:.2f} | "
                + (f"{r['rss_mb']:.1f}" if "rss_mb" in r else "–")
                + f" | {r['conn_median']:g} | {r['sessions_min']:.1f} | "
                f"{r.get('ticks', '–')} | {r.get('queues_ticked', '–')} | "
                + (f"{r['warm_dbs']} dbs in {r['warm_s']:.1f} s" if "warm_dbs" in r else "–")
                + " |")
    lines += ["", "Daemon logs:", ""]
    for kind in ("c", "ours"):
        for i, r in enumerate(idle[kind]):
            lines.append("- " + log_findings(r["log"], f"{kind} round {i + 1}"))
        lines.append("- " + log_findings(lat[kind]["log"], f"{kind} latency phase"))
    srv = log_findings(c.logfile, "server log")
    lines += ["- " + srv, "",
              f"Run time {(datetime.datetime.utcnow() - started).total_seconds() / 60:.1f} min.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
