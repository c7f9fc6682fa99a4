"""Events of the perf suite's windows: probes, bursts, the moving busy set, first events in
quiet databases; each session's backend cpu is read before it closes."""

import random
import threading
import time

from daemon_bench import CLK_TCK, Conn, PgError, proc_stat
from perf_cluster import PRODUCER


# ---------------------------------------------------------------- traffic

class Traffic(threading.Thread):
    """The scenario's events during the window, each in its own autocommit transaction:
    probes (persistent sessions, random queue, exponential gaps), bursts of `burst` events
    in one statement, a moving busy set (`busy` databases at `busy_rate` each, round robin
    over their queues, the set replaced every `move_every` s), and first events in quiet
    databases (one each, never a database that is busy in the run). Sessions are opened by
    prepare() before the daemon starts; the backend cpu of each, from mark() on, is read
    from /proc before it closes."""

    def __init__(self, c, sc, dbs, tag, duration, seed):
        super().__init__(daemon=True)
        self.c, self.sc, self.dbs, self.tag, self.duration = c, sc, dbs, tag, duration
        self.rnd = random.Random(seed)
        self.queues = [f"q{i}" for i in range(1, sc["q"] + 1)]
        self.backend_cpu = 0.0
        self.sessions = 0
        self.sent = {"probe": 0, "burst": 0, "busy": 0, "quiet": 0}
        self.statements = {"probe": 0, "burst": 0, "busy": 0, "quiet": 0}
        self.behind_max = 0.0
        self.busy_dbs = set()
        # when each database first became busy (epoch s): its ticks count as a busy
        # database's from then on
        self.busy_since = {}
        # when a busy database stopped being busy (the busy set moved on)
        self.busy_until = {}
        self.quiet_dbs = set()
        self.error = None
        self.stop_flag = threading.Event()
        n = len(dbs)
        k = min(sc.get("probe_dbs", 0), n)
        self.probe_dbs = [dbs[i * n // k] for i in range(k)] if k else []
        self.conns = {}
        self.cpu0 = {}
        self.groups, self.quiet_plan = [], []
        if sc.get("busy"):
            # a fixed sequence of disjoint busy sets; the first move comes half a period in,
            # so the window sees a move whatever its length; then one quiet database per
            # first-event probe, never one that is busy in this run
            pool = [d for d in dbs if d not in self.probe_dbs]
            self.rnd.shuffle(pool)
            nsets = max(1, min(len(pool) // (2 * sc["busy"]),
                               int(duration // sc["move_every"]) + 2))
            self.groups = [pool[i * sc["busy"]:(i + 1) * sc["busy"]] for i in range(nsets)]
            used = {d for g in self.groups for d in g}
            quiet = [d for d in pool if d not in used]
            self.quiet_plan = quiet[:int(duration // sc["quiet_every"]) + 1]

    def prepare(self):
        """Open every session the run will use now, before the daemon starts: a daemon
        that floods the server with connections (the C pgqd at 1000 databases: new sessions
        then wait 17-37 s here) must not throttle the producers, or the two daemons would
        be measured under different loads."""
        for db in self.probe_dbs + [d for g in self.groups for d in g] + self.quiet_plan:
            self.conn(db)
        self.sessions = 0

    def mark(self):
        """Backend cpu so far of each open session: the window's share is what follows."""
        self.cpu0 = {conn.pid: cpu_of(conn.pid) for conn in self.conns.values()}

    def conn(self, db):
        if db not in self.conns:
            self.conns[db] = Conn(self.c.port, db, app=PRODUCER)
            self.sessions += 1
        return self.conns[db]

    def close(self, db):
        conn = self.conns.pop(db, None)
        if conn:
            self.backend_cpu += cpu_of(conn.pid) - self.cpu0.get(conn.pid, 0.0)
            conn.close()

    def insert(self, db, q, typ, count=1):
        if count == 1:
            sql = f"select pgq.insert_event('{q}', '{typ}', '{self.tag}')"
        else:
            sql = (f"select count(pgq.insert_event('{q}', '{typ}', '{self.tag}')) "
                   f"from generate_series(1, {count})")
        self.conn(db).query(sql)
        self.sent[typ] += count
        self.statements[typ] += 1

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
        groups = self.groups
        quiet_plan = list(self.quiet_plan)
        if groups:
            nxt["busy"] = t0
            nxt["move"] = t0 + sc["move_every"] / 2
            nxt["quiet"] = t0 + sc["quiet_every"] / 2
        group_i, rr = 0, 0
        current = groups[0] if groups else []
        self.busy_dbs.update(current)
        for db in current:
            self.busy_since.setdefault(db, time.time())
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
                    self.busy_until.setdefault(db, time.time())
                group_i = (group_i + 1) % len(groups)
                current = groups[group_i]
                self.busy_dbs.update(current)
                for db in current:
                    self.busy_since.setdefault(db, time.time())
                nxt["move"] = when + sc["move_every"]
            elif what == "quiet":
                if quiet_plan:
                    db = quiet_plan.pop(0)
                    self.quiet_dbs.add(db)
                    self.insert(db, rnd.choice(self.queues), "quiet")
                    self.close(db)
                nxt["quiet"] = when + sc["quiet_every"]


def cpu_of(pid):
    st = proc_stat(pid)
    return st[2] / CLK_TCK if st else 0.0
