"""Debian's python3-pgq cascade code, driven by tests/pgq_node.rs against our
pgq_node schema.

Usage: /usr/bin/python3 cascade.py admin CONFIG.ini [-v] CMD [ARGS...]
       /usr/bin/python3 cascade.py worker CONFIG.ini [-v]

admin   pgq.cascade.admin.CascadeAdmin as a setadm-style tool: create-root,
        create-branch, create-leaf, status, members, change-provider, ...
        (CONFIG: queue_name, db = the local node's connect string).
worker  a pgq.cascade.worker.CascadedWorker that keeps its node (CONFIG:
        queue_name, db, job_name = the node's worker name).  It stops once
        it has seen `idle_rounds` rounds in a row with no batch to do.

The worker copies events into a branch's queue copy, which accepts them only
from sessions in session_replication_role = replica (what londiste's worker
sets); the worker here sets it in the transaction that applies a batch.
"""

import sys

from pgq.cascade.admin import CascadeAdmin
from pgq.cascade.worker import CascadedWorker


class Admin(CascadeAdmin):
    """setadm: the admin class without a subclass of its own."""

    def __init__(self, args):
        super().__init__("cascade_admin", "db", args)


class Worker(CascadedWorker):
    """A plain cascaded worker: copies and ticks, applies nothing else."""

    def __init__(self, args):
        super().__init__("cascade_worker", "db", args)
        self.idle_rounds = self.cf.getint("idle_rounds", 20)
        self.idle = 0

    def process_remote_batch(self, src_db, tick_id, event_list, dst_db):
        dst_db.cursor().execute("set local session_replication_role = 'replica'")
        super().process_remote_batch(src_db, tick_id, event_list, dst_db)

    def process_remote_event(self, src_curs, dst_curs, ev):
        # the cascade's own events (pgq.*) are the base class's; the rest is only copied
        if ev.ev_type.startswith("pgq."):
            super().process_remote_event(src_curs, dst_curs, ev)
        else:
            ev.tag_done()

    def work(self):
        res = super().work()
        self.idle = 0 if res else self.idle + 1
        if self.idle >= self.idle_rounds:
            self.stop()
        return res


def main():
    kinds = {"admin": Admin, "worker": Worker}
    if len(sys.argv) < 3 or sys.argv[1] not in kinds:
        sys.stderr.write(__doc__)
        sys.exit(2)
    script = kinds[sys.argv[1]](sys.argv[2:])
    script.start()


if __name__ == "__main__":
    main()
