#!/usr/bin/env python3
"""Latency and lateness of the perf suite, read from pgq.tick and the event tables after a
run (definitions: bench/perf.py docstring). Run it to check the due rules on hand-made
cases: `bench/perf_analysis.py`."""

import sys

from daemon_bench import Conn
from perf_cluster import MEASURER


# ---------------------------------------------------------------- reading the results

def snapshot_visible(txid, snap):
    xmin, xmax, xip = snap.split(":")
    if txid < int(xmin):
        return True
    if txid >= int(xmax):
        return False
    return str(txid) not in xip.split(",")


def analyse_db(c, db, w0, w1, tag, due_from=None):
    """Lateness samples (with kinds) and probe latencies of one database's queues; with
    `due_from`, only ticks due from then on count (earlier ones belong to a time before)."""
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
            if due_from is not None and due < due_from:
                continue
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


def verify(c, schema_sql):
    """The whole measurement against pgq.ticker called by hand at known delays after each
    due time, in a scratch database: the lateness read back must match the delays. Returns
    a line for the report; raises when the figures are off by 100 ms or more."""
    import time
    db = "perf_verify"
    c.psql("postgres", f"drop database if exists {db};")
    c.psql("postgres", f"create database {db};")
    try:
        c.psql(db, schema_sql, single=True)
        conn = Conn(c.port, db, app=MEASURER)
        try:
            # client clock readings just before each statement stand for its server time
            w0 = t1 = time.time()
            conn.query("select pgq.create_queue('vq')")
            conn.query("update pgq.queue set queue_ticker_max_lag = '1 s'")
            time.sleep(1.0)
            want = []
            # 1. one tick so far (create_queue's): the next is due at once
            t2 = time.time()
            conn.query("select pgq.ticker('vq')")
            want.append(("idle", t2 - t1))
            # 2. quiet for max_lag (the idle due is 2 * 1 s away), then an event: due at once
            time.sleep(1.2)
            te = time.time()
            conn.query("select pgq.insert_event('vq', 'probe', 'verify')")
            time.sleep(0.25)
            t3 = time.time()
            conn.query("select pgq.ticker('vq')")
            want.append(("first", t3 - te))
            # 3. idle: due max(max_lag / 2, min(2 * gap, idle_period)) = 2 * 1.45 s after
            time.sleep(2 * (t3 - t2) + 0.2)
            t4 = time.time()
            conn.query("select pgq.ticker('vq')")
            want.append(("idle", t4 - (t3 + 2 * (t3 - t2))))
            w1 = time.time()
        finally:
            conn.close()
        late, lat, _ = analyse_db(c, db, w0, w1, "verify")
    finally:
        c.psql("postgres", f"drop database if exists {db};")
    got = [(k, x) for x, k in late]
    ok = (len(got) == len(want) and len(lat) == 1
          and all(gk == wk and abs(gx - wx) < 0.1 for (gk, gx), (wk, wx) in zip(got, want))
          and abs(lat[0][0] - (t3 - te)) < 0.1)
    line = ("lateness read back for pgq.ticker called by hand "
            f"{', '.join(f'{k} {x * 1000:.0f} ms' for k, x in want)} late: "
            f"{', '.join(f'{k} {x * 1000:.0f} ms' for k, x in got)}; latency of the probe "
            f"{lat[0][0] * 1000 if lat else float('nan'):.0f} ms ({(t3 - te) * 1000:.0f} wanted)")
    if not ok:
        raise RuntimeError("measurement check failed: " + line)
    return line


if __name__ == "__main__":
    selftest()
    print("due rules and snapshot test: ok")
    sys.exit(0)
