//! Issue #8, high availability: two `pgqd` processes on one cluster never tick the same
//! database together, and a SIGKILLed leader is replaced within two ticker periods.
//!
//! Each database carries the test-only audit trigger of `common/fence.rs` on `pgq.tick`:
//! every tick records the ticking session's `application_name` and whether that backend
//! held the database fence lock. The daemons differ only by `application_name` in their
//! connection strings.

mod common;

use std::time::{Duration, Instant};

use common::fence::{
    DB_KEY, audit_rows, handovers, install_audit, leader_holders, server_now, unfenced,
};
use common::pgqd_proc::{PgqdProc, daemon_toml, socket_connstr};
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
