"""Consumers built on Debian's python3-pgq, used by tests/python_clients.rs.

Usage: /usr/bin/python3 consumers.py KIND CONFIG.ini [-v] [--register]

KIND is one of:
  coop    pgq.CoopConsumer: each event becomes a row of `applied` in the
          queue's own database, written in the transaction that finishes the
          batch.  With `stall_file` set, a batch holding an event of type
          'stall' is not finished: its id is written to that file and the
          process waits to be killed.
  remote  pgq.RemoteConsumer: each event becomes a row of `applied` in the
          target database (dst_db), batch tracking with pgq_ext.
  serial  pgq.SerialConsumer: the same with tick tracking with pgq_ext.

remote and serial stop when the queue has no batch for them.  With
`crash_after_apply = 1` they exit abruptly (os._exit) right after the target
transaction of their first batch committed, before pgq.finish_batch.
"""

import os
import sys
import time

import pgq


def write_file(path, text):
    """Writes text to path atomically (the test polls for the file)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


class CoopApplier(pgq.CoopConsumer):
    """A subconsumer that records every event it processes."""

    def __init__(self, args):
        super().__init__("coop_applier", "src_db", args)
        self.stall_file = self.cf.get("stall_file", "")

    def process_batch(self, db, batch_id, event_list):
        curs = db.cursor()
        for ev in event_list:
            if ev.type == "stall" and self.stall_file:
                write_file(self.stall_file, str(batch_id))
                while True:
                    time.sleep(60)
            curs.execute(
                "insert into applied (ev_id, batch_id, who) values (%s, %s, %s)",
                [ev.id, batch_id, self.subconsumer_name])


class StopWhenIdle:
    """Mixin: stop the script once next_batch has nothing; optional crash."""

    def work(self):
        res = super().work()
        if not res:
            self.stop()
        return res

    def apply(self, batch_id, event_list, dst_db):
        curs = dst_db.cursor()
        for ev in event_list:
            curs.execute(
                "insert into applied (ev_id, batch_id, who) values (%s, %s, %s)",
                [ev.id, batch_id, self.job_name])

    def process_batch(self, db, batch_id, event_list):
        super().process_batch(db, batch_id, event_list)
        if self.cf.getint("crash_after_apply", 0):
            # the target has committed the batch, the queue has not been told
            os._exit(3)


class RemoteApplier(StopWhenIdle, pgq.RemoteConsumer):
    """Applies batches in the target database, pgq_ext batch tracking."""

    def __init__(self, args):
        super().__init__("remote_applier", "src_db", "dst_db", args)

    def process_remote_batch(self, db, batch_id, event_list, dst_db):
        self.apply(batch_id, event_list, dst_db)


class SerialApplier(StopWhenIdle, pgq.SerialConsumer):
    """Applies batches in the target database, pgq_ext tick tracking."""

    def __init__(self, args):
        super().__init__("serial_applier", "src_db", "dst_db", args)

    def process_remote_batch(self, db, batch_id, event_list, dst_db):
        self.apply(batch_id, event_list, dst_db)


def main():
    kinds = {"coop": CoopApplier, "remote": RemoteApplier, "serial": SerialApplier}
    if len(sys.argv) < 3 or sys.argv[1] not in kinds:
        sys.stderr.write(__doc__)
        sys.exit(2)
    script = kinds[sys.argv[1]](sys.argv[2:])
    script.start()


if __name__ == "__main__":
    main()
