//! The Debian C `pgqd` (Skytools 3.5's daemon) on our schema: it discovers a database that
//! holds `sql/pgq/`, ticks it, rotates its tables, moves retry events back and vacuums —
//! asserted on the database's state, not on the daemon's log (it discards server notices,
//! and with autovacuum off it ends a maintenance round after the first VACUUM, which it
//! takes for an error).
//!
//! Skipped, saying so, when `/usr/bin/pgqd` is absent (`apt-get install pgqd`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ClusterOptions, TestCluster};

const C_PGQD: &str = "/usr/bin/pgqd";

/// The C pgqd running in the foreground as our child; killed (SIGKILL) and reaped on drop,
/// also when the test panics.
struct CPgqd {
    child: Child,
    log: PathBuf,
}

impl CPgqd {
    /// Starts the C pgqd with an INI file pointing at `c`, with short periods.
    fn start(c: &TestCluster) -> CPgqd {
        let ini = c.dir.join("c-pgqd.ini");
        let log = c.dir.join("c-pgqd.log");
        let pid = c.dir.join("c-pgqd.pid");
        fs::write(
            &ini,
            format!(
                "[pgqd]\n\
                 base_connstr = host={} port={} user=postgres\n\
                 initial_database = postgres\n\
                 logfile = {}\n\
                 pidfile = {}\n\
                 syslog = 0\n\
                 check_period = 1\n\
                 ticker_period = 0.2\n\
                 maint_period = 1\n\
                 retry_period = 1\n",
                c.socket_dir.display(),
                c.port,
                log.display(),
                pid.display()
            ),
        )
        .expect("write c-pgqd.ini");
        let child = Command::new(C_PGQD)
            .arg("-v")
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/bin/pgqd");
        CPgqd { child, log }
    }

    /// Panics (with the daemon's log) if the daemon is no longer running.
    fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!(
                "the C pgqd exited ({st}); its log:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for CPgqd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "C pgqd log ({}):\n{}",
                self.log.display(),
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Polls `check` until it returns `Some`, checking that the daemon still runs;
/// panics after `timeout` naming `what`.
fn wait_until<T>(
    d: &mut CPgqd,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    common::wait_until(what, timeout, || {
        check().or_else(|| {
            d.assert_running();
            None
        })
    })
}

fn ticks(c: &TestCluster, db: &str, queue: &str) -> i64 {
    c.psql(
        db,
        &format!(
            "select count(*) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
              where q.queue_name = '{queue}'"
        ),
    )
    .parse()
    .expect("tick count")
}

#[test]
fn c_pgqd_ticks_rotates_retries_and_vacuums_our_schema() {
    if !Path::new(C_PGQD).exists() {
        eprintln!("skipping: {C_PGQD} is not installed (apt-get install pgqd)");
        return;
    }
    // Autovacuum off: pgq then lists its tables for VACUUM in maint_operations().
    let c = TestCluster::start_with(ClusterOptions {
        conf: vec!["autovacuum = off".into()],
        ..ClusterOptions::default()
    });
    c.create_pgq_db("db");
    // q: quick ticks, a consumer, the retry path. rq: no consumer, rotates every second.
    c.psql(
        "db",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '0.1'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '0.3'); \
         select pgq.register_consumer('q', 'c'); \
         select pgq.create_queue('rq'); \
         select pgq.set_queue_config('rq', 'ticker_idle_period', '0.3'); \
         select pgq.set_queue_config('rq', 'rotation_period', '1 second')",
    );
    let vacuum_listed = c.psql("db", "select count(*) from pgq.maint_tables_to_vacuum()");
    assert_ne!(
        vacuum_listed, "0",
        "pgq lists tables to vacuum with autovacuum off"
    );
    // rq looks created an hour ago, so the first maintenance round rotates it (step 1 and
    // step 2 are listed together): the C pgqd takes VACUUM's result for an error and waits
    // 20 s before its next round, which would make a rotation due later slow to test.
    c.psql(
        "db",
        "update pgq.queue set queue_switch_time = now() - interval '1 hour' \
          where queue_name = 'rq'",
    );
    let ticks0 = ticks(&c, "db", "q");
    let table0 = c.psql(
        "db",
        "select queue_cur_table from pgq.queue where queue_name = 'rq'",
    );

    let mut d = CPgqd::start(&c);
    let t0 = Instant::now();

    // Ticks: pgq.ticker() on its ticker_period, our rules deciding which queue is due.
    wait_until(
        &mut d,
        "ticks made by the C pgqd",
        Duration::from_secs(20),
        || (ticks(&c, "db", "q") >= ticks0 + 3).then_some(()),
    );

    eprintln!("ticks seen after {:?}", t0.elapsed());
    // Retry: an event retried with 0 s goes back to the queue through
    // pgq.maint_retry_events() and comes back in a later batch.
    let id: i64 = c
        .psql("db", "select pgq.insert_event('q', 'job', 'payload')")
        .parse()
        .expect("event id");
    wait_until(
        &mut d,
        "the event in a batch",
        Duration::from_secs(20),
        || {
            let b = c.psql("db", "select pgq.next_batch('q', 'c')");
            if b.is_empty() {
                return None;
            }
            let evs = c.psql(
                "db",
                &format!("select ev_id from pgq.get_batch_events({b})"),
            );
            let found = evs.lines().any(|l| l == id.to_string());
            if found {
                c.psql("db", &format!("select pgq.event_retry({b}, {id}::int8, 0)"));
            }
            c.psql("db", &format!("select pgq.finish_batch({b})"));
            found.then_some(())
        },
    );
    assert_eq!(c.psql("db", "select count(*) from pgq.retry_queue"), "1");
    wait_until(
        &mut d,
        "pgq.retry_queue emptied by the C pgqd",
        Duration::from_secs(20),
        || (c.psql("db", "select count(*) from pgq.retry_queue") == "0").then_some(()),
    );
    let retry = wait_until(
        &mut d,
        "the retried event in a later batch",
        Duration::from_secs(20),
        || {
            let b = c.psql("db", "select pgq.next_batch('q', 'c')");
            if b.is_empty() {
                return None;
            }
            let r = c.psql(
                "db",
                &format!(
                    "select coalesce(ev_retry::text, '') from pgq.get_batch_events({b}) \
                      where ev_id = {id}"
                ),
            );
            c.psql("db", &format!("select pgq.finish_batch({b})"));
            (!r.is_empty()).then_some(r)
        },
    );
    assert_eq!(retry, "1", "ev_retry counts the retry");

    eprintln!("retry seen after {:?}", t0.elapsed());
    // Rotation: maint_rotate_tables_step1 and step2 from maint_operations().
    wait_until(
        &mut d,
        "rq's current table rotated",
        Duration::from_secs(20),
        || {
            let t = c.psql(
                "db",
                "select queue_cur_table from pgq.queue where queue_name = 'rq'",
            );
            (t != table0).then_some(())
        },
    );
    wait_until(&mut d, "rotation step 2", Duration::from_secs(30), || {
        let s = c.psql(
            "db",
            "select bool_and(queue_switch_step2 is not null) from pgq.queue",
        );
        (s == "t").then_some(())
    });

    eprintln!("rotation seen after {:?}", t0.elapsed());
    // VACUUM: the first table maint_operations() lists was vacuumed (the C pgqd ends the
    // round there, so only the first is asserted).
    let vacuumed = wait_until(
        &mut d,
        "a pgq table vacuumed",
        Duration::from_secs(20),
        || {
            let v = c.psql(
                "db",
                "select string_agg(relname, ',' order by relname) from pg_stat_user_tables \
              where schemaname = 'pgq' and last_vacuum is not null",
            );
            (!v.is_empty()).then_some(v)
        },
    );
    let first = c.psql(
        "db",
        "select func_arg from pgq.maint_operations() where func_name = 'vacuum' limit 1",
    );
    assert!(
        vacuumed
            .split(',')
            .any(|t| first == format!("pgq.{t}") || first == t),
        "vacuumed {vacuumed}, the first listed is {first}"
    );
    eprintln!("vacuum seen after {:?}", t0.elapsed());
    d.assert_running();
}
