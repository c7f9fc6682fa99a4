"""A plain pgq.Consumer from Debian's python3-pgq, used by tests/python_daemon.rs.

Usage: /usr/bin/python3 plain_consumer.py CONFIG.ini [-v] [--register]

Every event it accepts becomes a row of `got` (ev_id, ev_data, ev_retry) in the
queue's own database, written in the batch's transaction (pgq.Consumer commits
once the batch is finished).  An event whose ev_data is a multiple of
`retry_every` and that arrives for the first time (ev_retry null) is not
recorded but tagged for retry with tag_retry(0); when it comes back through the
retry queue it is recorded like any other.
"""

import sys

import pgq


class PlainConsumer(pgq.Consumer):
    """Records events in `got`, retrying some of them once."""

    def __init__(self, args):
        super().__init__("plain_consumer", "db", args)
        self.retry_every = self.cf.getint("retry_every", 0)

    def process_event(self, db, ev):
        if (self.retry_every and ev.retry is None
                and int(ev.data) % self.retry_every == 0):
            ev.tag_retry(0)
            return
        db.cursor().execute(
            "insert into got (ev_id, ev_data, ev_retry) values (%s, %s, %s)",
            [ev.id, ev.data, ev.retry])
        ev.tag_done()


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        sys.exit(2)
    PlainConsumer(sys.argv[1:]).start()


if __name__ == "__main__":
    main()
