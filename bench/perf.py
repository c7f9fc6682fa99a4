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
              In d, a busy database's ticks count while it is busy: those due from the
              moment it became busy (an idle tick due before that, and made when its first
              events came, was a quiet database's, whose idle ticks are reported apart, with
              no target) until BUSY_GRACE after the busy set moved on (the ticks of its last
              events; a tick due by then counts however late it came; later ticks are its
              queues' idle back-off as a quiet database). The figure over every tick in the
              window is reported too ("as first defined").
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
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sql_bench import ROOT, our_schema, run  # noqa: E402
from daemon_bench import (C_PGQD, Conn, daemon_cpu, log, pct, proc_status_kb,  # noqa: E402
                          server_cpu, server_snapshot)
from perf_cluster import (MEASURER, CachedCluster, Daemon, apply_settings,  # noqa: E402
                          daemon_conns, ensure_dbs, ext_version, ours_extra, queue_settings,
                          wait_gone, warm_up)
from perf_traffic import Traffic  # noqa: E402
from perf_analysis import analyse_db, selftest, verify  # noqa: E402
from perf_report import med, render_scenario, summarise, svg_plot, targets  # noqa: E402

# d: how long after a busy database left the busy set its ticks still count as a busy
# database's (twice the default ticker_max_lag: the ticks of its last events)
BUSY_GRACE = 6.0


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


# ---------------------------------------------------------------- one run

def cluster_counters(m):
    """Sessions and transactions so far, over every database of the cluster."""
    m.query("select pg_stat_clear_snapshot()")
    r = m.query("select coalesce(sum(sessions), 0), "
                "coalesce(sum(xact_commit + xact_rollback), 0) from pg_stat_database")[0]
    return int(r[0]), int(r[1])


def one_run(c, m, sc, name, kind, dbs, rnd_no, args, rundir):
    tag = f"{name}-{kind}-r{rnd_no}"
    d = None
    window = sc.get("window", args.window)
    res = {"mode": kind, "round": rnd_no, "window": window}
    traffic = None
    if any(k in sc for k in ("probe_rate", "busy")):
        # events are told apart by run: the stamp makes the tag unique in the cached cluster
        traffic = Traffic(c, sc, dbs, f"{args.stamp}-{tag}", window,
                          seed=zlib.crc32(tag.encode()))
        traffic.prepare()
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
    if traffic:
        traffic.mark()
    samples = []
    # pg_stat_database counters lag (a backend flushes them when idle, at most each second):
    # good enough over a whole window, forced fresh with pg_stat_clear_snapshot
    s0, x0 = cluster_counters(m)
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
    time.sleep(0.5 if traffic else 0.0)     # the daemon's counters reach the stats
    s1, x1 = cluster_counters(m)
    scale = 60.0 / elapsed
    prod = traffic.backend_cpu if traffic else 0.0
    res["server_cpu"] = (server_cpu(srv0, srv1) - prod) * scale
    res["producer_backend_cpu"] = prod * scale
    res["bench_cpu"] = ((self1.user + self1.system) - (self0.user + self0.system)) * scale
    res["daemon_cpu"] = (dcpu1 - dcpu0) * scale
    res["sessions_min"] = (s1 - s0 - (traffic.sessions if traffic else 0)) * scale
    # transactions of everyone but the producers (one per statement they sent)
    sent_tx = sum(traffic.statements.values()) if traffic else 0
    res["xact_s"] = (x1 - x0 - sent_tx) / elapsed
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
        late_window, quiet_idle = [], []
        for db in look:
            la, lt, un = analyse_db(c, db, w0, w1, traffic.tag)
            if traffic and traffic.busy_dbs and db not in traffic.busy_dbs:
                # quiet databases: only the ticks that carry their probe event count; their
                # idle ticks are reported apart
                quiet_idle += [x for x, k in la if k.startswith("idle")]
                la = [(x, "quiet" + k[k.index("-"):] if "-" in k else "quiet")
                      for x, k in la if not k.startswith("idle")]
            elif traffic and db in traffic.busy_since and (
                    traffic.busy_since[db] > w0 or db in traffic.busy_until):
                # a database busy for part of the window: its ticks count as a busy
                # database's while it is busy (before, it was a quiet one; after, its
                # queues go through pgq's idle back-off as a quiet one's), plus BUSY_GRACE
                # for the ticks of its last events; a tick due by then counts however late
                # it came. All its ticks in the window are kept apart for the figure as
                # first defined.
                late_window += [x for x, _ in la]
                since = max(traffic.busy_since[db], w0)
                until = min(traffic.busy_until.get(db, w1) + BUSY_GRACE, w1)
                la, _, _ = analyse_db(c, db, since, until, traffic.tag, due_from=since)
            else:
                late_window += [x for x, _ in la]
            late += la
            lat += lt
            unticked += un
        res["lateness_window"] = [x * 1000 for x in late_window]
        res["lateness_quiet_idle"] = [x * 1000 for x in quiet_idle]
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


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, one round, short windows (development only)")
    ap.add_argument("--scenarios", default="a,b,c,d,e,xa,xc")
    ap.add_argument("--rounds", type=int, help="rounds per scenario (default 3, smoke 1)")
    ap.add_argument("--window", type=float,
                    help="measuring window, s, for every scenario when given "
                    "(default 60, smoke 4; scenario d: 150, smoke 6)")
    ap.add_argument("--warmup", type=float, help="s after the daemon's connections settle "
                    "(default 10, smoke 0.5; scenario d: 20, smoke 1)")
    ap.add_argument("--cache", default=os.environ.get("PGQD_BENCH_CACHE",
                                                      os.path.join(ROOT, "bench", ".cache")))
    ap.add_argument("--ours", default=os.environ.get("OUR_PGQD", os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "pgqd")))
    ap.add_argument("--c-pgqd", default=C_PGQD)
    ap.add_argument("--ours-set", action="append", default=[], metavar="'KEY = VALUE'",
                    help="a TOML line added to our daemon's config (every scenario)")
    ap.add_argument("--no-metrics", dest="metrics", action="store_false",
                    help="do not turn on our metrics endpoint")
    ap.add_argument("--modes", default="base,c,ours",
                    help="which runs to make (development: --modes ours; the report's "
                    "ratios need all three)")
    ap.add_argument("--out-dir", help="reports go here (default bench/results, smoke: "
                    "bench/results/smoke)")
    args = ap.parse_args()
    selftest()
    if args.rounds is None:
        args.rounds = 1 if args.smoke else 3
    explicit_window = args.window is not None
    if args.window is None:
        args.window = 4.0 if args.smoke else 60.0
    if args.warmup is None:
        args.warmup = 0.5 if args.smoke else 10.0
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
    for sc in scs.values():
        sc["modes"] = [m for m in sc["modes"] if m in args.modes.split(",")]
        if explicit_window:
            sc["window"] = args.window      # given: for every scenario, d included
        elif args.smoke:
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
        fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        log(f"cluster {c.data} on port {c.port}, fd limit {fds}")
        plan = {}
        for n in names:
            sc = scs[n]
            plan[n] = ensure_dbs(c, sc["kind"], sc["q"], sc["n"])
        setup_s = time.monotonic() - t_setup
        log(f"setup done in {setup_s:.0f} s")
        m = Conn(c.port, "postgres", app=MEASURER)
        check = verify(c, our_schema())
        log("measurement check: " + check)
        commit = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = run(["git", "-C", ROOT, "status", "--porcelain", "src", "sql", "bench"]
                    ).stdout.strip()
        c_ver = subprocess.run([args.c_pgqd, "-V"], capture_output=True, text=True)
        c_ver = (c_ver.stdout or c_ver.stderr).strip().splitlines()[0]
        if not c_ver.startswith("pgqd version 3."):
            # the project's own package can take /usr/bin/pgqd's place (CI stage deb)
            sys.exit(f"{args.c_pgqd} is not the C pgqd 3.x ({c_ver!r}); "
                     "apt-get install --reinstall pgqd, or --c-pgqd PATH")
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
            f"- measurement check (before the scenarios): {check}",
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
            "- total time {:.1f} min".format(
                (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60),
            "", "## Targets", ""] + targets(results, scs) + [
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
