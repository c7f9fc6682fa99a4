//! Issue #8, high availability: two `pgqd` processes on one cluster never tick the same
//! database together, and a SIGKILLed leader is replaced within two ticker periods.
//!
//! Each database carries the test-only audit trigger of `common/fence.rs` on `pgq.tick`:
//! every tick records the ticking session's `application_name` and whether that backend
//! held the database fence lock. The daemons differ only by `application_name` in their
//! connection strings.
//!
//! Also here, the failover half of #8: a daemon pointed at a hot standby (made with
//! `pg_basebackup -R`) never ticks it, and one with a multi-host connection string and
//! `target_session_attrs=read-write` follows a promotion.

mod common;

use std::time::{Duration, Instant};

use common::fence::{
    DB_KEY, audit_rows, handovers, install_audit, leader_holders, server_now, unfenced,
};
use common::pgqd_proc::{PgqdProc, daemon_toml, socket_connstr};
use common::standby::Standby;
use common::{TestCluster, wait_until};

const DBS: &[&str] = &["ha1", "ha2"];
/// ticker_period of both daemons.
const PERIOD: Duration = Duration::from_millis(500);

/// A database whose queue `q` is due every 200 ms even without events, so that whoever
/// leads ticks it continuously.
fn busy_db(c: &TestCluster, db: &str) {
    c.create_pgq_db(db);
    install_audit(c, db);
    c.psql(
        db,
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '100 ms'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '200 ms')",
    );
}

fn daemon(c: &TestCluster, app: &str) -> PgqdProc {
    PgqdProc::start(
        &c.dir,
        app,
        &daemon_toml(
            &socket_connstr(c, app),
            &[
                &format!("ticker_period = \"{}ms\"", PERIOD.as_millis()),
                "maint_period = \"1s\"",
                "retry_period = \"1s\"",
                "check_period = \"1s\"",
                "reconnect_max_delay = \"1s\"",
                "shutdown_timeout = \"2s\"",
            ],
        ),
    )
}

/// Waits until `app` has ticked every database after server time `since`; returns the
/// server time of the first such tick per database.
fn wait_ticked_by(c: &TestCluster, app: &str, since: f64, within: Duration) -> Vec<f64> {
    DBS.iter()
        .map(|db| {
            wait_until(&format!("{app} ticks {db}"), within, || {
                audit_rows(c, db, since)
                    .into_iter()
                    .find(|r| r.app == app)
                    .map(|r| r.at)
            })
        })
        .collect()
}

#[test]
fn two_daemons_one_writer_and_takeover_after_sigkill() {
    let started = Instant::now();
    let c = TestCluster::start();
    for db in DBS {
        busy_db(&c, db);
    }
    let t0 = server_now(&c);
    let mut a = daemon(&c, "pgqd_a");
    wait_ticked_by(&c, "pgqd_a", t0, Duration::from_secs(15));
    let mut b = daemon(&c, "pgqd_b");
    // Both run for a while: B must stay a standby.
    std::thread::sleep(Duration::from_secs(3));
    a.assert_alive("pgqd_a");
    b.assert_alive("pgqd_b");
    let holders = leader_holders(&c);

    // SIGKILL the leader; the standby must tick every database within two periods.
    let kill_at = server_now(&c);
    a.kill9();
    let firsts = wait_ticked_by(&c, "pgqd_b", kill_at, Duration::from_secs(20));
    let takeover: Vec<f64> = firsts.iter().map(|t| t - kill_at).collect();

    // The killed daemon comes back: it must not take the lead back.
    let back_at = server_now(&c);
    a.start_again();
    std::thread::sleep(Duration::from_secs(3));
    a.assert_alive("pgqd_a");
    b.assert_alive("pgqd_b");

    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (i, db) in DBS.iter().enumerate() {
        let rows = audit_rows(&c, db, t0);
        let after_back = audit_rows(&c, db, back_at);
        let by = |app: &str| rows.iter().filter(|r| r.app == app).count();
        report.push(format!(
            "{db}: ticks pgqd_a={} pgqd_b={} handovers={} unfenced={} takeover={:.3}s \
             ticks by the restarted pgqd_a={}",
            by("pgqd_a"),
            by("pgqd_b"),
            handovers(&rows),
            unfenced(&rows).len(),
            takeover[i],
            after_back.iter().filter(|r| r.app == "pgqd_a").count()
        ));
        if !unfenced(&rows).is_empty() {
            failures.push(format!(
                "{db}: {} ticks written without the fence lock {DB_KEY}",
                unfenced(&rows).len()
            ));
        }
        if handovers(&rows) != 1 {
            failures.push(format!(
                "{db}: {} changes of the ticking daemon, expected exactly 1 (the takeover)",
                handovers(&rows)
            ));
        }
        if takeover[i] > 2.0 * PERIOD.as_secs_f64() {
            failures.push(format!(
                "{db}: takeover took {:.3}s, more than two ticker periods ({:?})",
                takeover[i],
                2 * PERIOD
            ));
        }
    }
    if holders != ["pgqd_a"] {
        failures.push(format!(
            "cluster leader lock holders while both ran: {holders:?}, expected [\"pgqd_a\"]"
        ));
    }
    let holders_after = leader_holders(&c);
    if holders_after != ["pgqd_b"] {
        failures.push(format!(
            "cluster leader lock holders after the takeover: {holders_after:?}, expected [\"pgqd_b\"]"
        ));
    }
    for r in &report {
        eprintln!("ha: {r}");
    }
    eprintln!("ha: wall time {:.1} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A daemon that cannot take a database's fence lock writes nothing there (what a stale
/// leader meets), while its other databases keep ticking; once the lock is free it ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_out_database_gets_no_ticks_others_do() {
    let c = TestCluster::start();
    for db in DBS {
        busy_db(&c, db);
    }
    // Another "daemon" holds ha1's fence for the duration of `holder`.
    let holder = c.connect("ha1").await;
    holder
        .execute(&format!("select pg_advisory_lock({DB_KEY})"), &[])
        .await
        .expect("take the fence lock");
    let t0 = server_now(&c);
    let mut d = daemon(&c, "pgqd_solo");
    wait_ticked_by_one(&c, "ha2", "pgqd_solo", t0, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));
    d.assert_alive("pgqd_solo");
    let fenced_out = audit_rows(&c, "ha1", t0);
    let other = audit_rows(&c, "ha2", t0);
    holder
        .execute(&format!("select pg_advisory_unlock({DB_KEY})"), &[])
        .await
        .expect("release the fence lock");
    let released = server_now(&c);
    wait_ticked_by_one(&c, "ha1", "pgqd_solo", released, Duration::from_secs(15));
    let resumed = audit_rows(&c, "ha1", released);
    eprintln!(
        "ha: while fenced out: ha1 ticks={} ha2 ticks={}; after release ha1 ticks={} (first after {:.3}s)",
        fenced_out.len(),
        other.len(),
        resumed.len(),
        resumed.first().map(|r| r.at - released).unwrap_or(f64::NAN)
    );
    assert!(
        fenced_out.is_empty(),
        "ticks written in ha1 while another session held its fence lock: {fenced_out:?}"
    );
    assert!(other.len() >= 3, "ha2 kept ticking: {other:?}");
    assert!(unfenced(&resumed).is_empty(), "{resumed:?}");
}

fn wait_ticked_by_one(c: &TestCluster, db: &str, app: &str, since: f64, within: Duration) {
    wait_until(&format!("{app} ticks {db}"), within, || {
        audit_rows(c, db, since)
            .into_iter()
            .find(|r| r.app == app)
            .map(|_| ())
    });
}

/// Log lines of level WARN or ERROR (text format: timestamp, level, …).
fn problem_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR")))
        .collect()
}

/// Most WARN/ERROR lines a daemon may log about a standby it serves for a few seconds:
/// "logged once", with some room for a reconnect.
const STORM: usize = 3;

/// A daemon pointed at a hot standby never ticks it (it cannot, but it must not try each
/// period either: no error storm), and tells the primary's tick history nothing new.
#[test]
fn daemon_on_standby_never_ticks_it() {
    let c = TestCluster::start();
    busy_db(&c, "app");
    c.psql("app", "select pgq.ticker('q')");
    let standby = Standby::create(&c, c.port + 1);
    let ticks_before = c.psql("app", "select count(*) from pgq.tick");
    assert_eq!(standby.psql("app", "select pg_is_in_recovery()"), "t");
    let mut d = PgqdProc::start(
        &c.dir,
        "pgqd_standby",
        &daemon_toml(
            &format!(
                "host={} port={} user=postgres application_name=pgqd_standby",
                c.socket_dir.display(),
                standby.port
            ),
            &[
                &format!("ticker_period = \"{}ms\"", PERIOD.as_millis()),
                "check_period = \"1s\"",
                "maint_period = \"1s\"",
                "retry_period = \"1s\"",
            ],
        ),
    );
    // The daemon reaches the standby (it is not refused at the door) …
    wait_until(
        "the daemon connected to the standby",
        Duration::from_secs(15),
        || {
            standby
                .try_psql(
                    "postgres",
                    "select count(*) from pg_stat_activity where application_name = 'pgqd_standby'",
                )
                .filter(|n| n != "0")
        },
    );
    // … and stays for a few ticker periods.
    std::thread::sleep(Duration::from_secs(4));
    d.assert_alive("pgqd_standby");
    let ticks_after = c.psql("app", "select count(*) from pgq.tick");
    let log = d.log_text();
    let problems = problem_lines(&log);
    eprintln!(
        "ha: standby: primary ticks before={ticks_before} after={ticks_after}; \
         daemon WARN/ERROR lines in 4 s: {}",
        problems.len()
    );
    for l in &problems {
        eprintln!("ha: standby: | {l}");
    }
    assert_eq!(ticks_before, ticks_after, "nothing ticked the primary");
    // 25006 read_only_sql_transaction: the daemon tried to write (tick, retry, rotate).
    let tried: Vec<&str> = log.lines().filter(|l| l.contains("25006")).collect();
    assert!(
        tried.is_empty(),
        "the daemon tried to write on a server in recovery (check pg_is_in_recovery() \
         first):\n{}",
        tried.join("\n")
    );
    assert!(
        problems.len() <= STORM,
        "error storm against a standby ({} WARN/ERROR lines), first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(5)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A daemon with a two-host connection string and `target_session_attrs=read-write`
/// ticks the primary, and after the primary stops and the standby is promoted, ticks the
/// new primary.
#[test]
fn multi_host_connstr_follows_promotion() {
    let c = TestCluster::start();
    busy_db(&c, "app");
    let standby = Standby::create(&c, c.port + 1);
    let dir = c.socket_dir.display();
    let mut d = PgqdProc::start(
        &c.dir,
        "pgqd_mh",
        &daemon_toml(
            &format!(
                "host={dir},{dir} port={},{} user=postgres target_session_attrs=read-write \
                 connect_timeout=2 application_name=pgqd_mh",
                c.port, standby.port
            ),
            &[
                &format!("ticker_period = \"{}ms\"", PERIOD.as_millis()),
                "check_period = \"1s\"",
                "maint_period = \"1s\"",
                "retry_period = \"1s\"",
                "reconnect_max_delay = \"1s\"",
            ],
        ),
    );
    let t0 = server_now(&c);
    wait_until("ticks on the primary", Duration::from_secs(15), || {
        (!audit_rows(&c, "app", t0).is_empty()).then_some(())
    });
    c.stop();
    let stopped = Instant::now();
    standby.promote();
    let promoted = Instant::now();
    let since: f64 = standby
        .psql("postgres", "select extract(epoch from clock_timestamp())")
        .parse()
        .expect("epoch");
    let first = wait_until(
        "ticks on the promoted standby",
        Duration::from_secs(30),
        || {
            standby
                .try_psql(
                    "app",
                    &format!(
                        "select min(extract(epoch from at)) from public.fence_audit \
                      where app = 'pgqd_mh' and extract(epoch from at) > {since}"
                    ),
                )
                .filter(|s| !s.is_empty())
                .and_then(|s| s.parse::<f64>().ok())
        },
    );
    d.assert_alive("pgqd_mh");
    eprintln!(
        "ha: failover: promotion took {:.2}s after the primary stopped; first tick on the new \
         primary {:.2}s after promotion",
        promoted.duration_since(stopped).as_secs_f64(),
        first - since
    );
}
