//! The daemon survives what happens to servers: a restart, its backends being terminated,
//! pgq being dropped and re-created, and a server that is down when the daemon starts.

mod common;
mod daemon_support;

use std::time::Duration;

use common::{TestCluster, wait_for};
use daemon_support::{Daemon, last_tick, real_pgq_or_skip, test_config, wait_tick_after};

/// A queue that ticks at once on each event.
fn eager_queue(c: &TestCluster, db: &str) {
    c.psql(
        db,
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_count', '1'); \
         select pgq.insert_event('q', 'warm', 'up')",
    );
}

/// Inserts an event and waits for the tick that follows it.
async fn event_ticks(c: &TestCluster, db: &str, within: Duration) {
    let t = last_tick(c, db, "q");
    c.psql(db, "select pgq.insert_event('q', 'e', 'd')");
    wait_tick_after(c, db, "q", t, within).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_server_restart() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    eager_queue(&c, "db");
    let d = Daemon::start(test_config(&c)).await;
    event_ticks(&c, "db", Duration::from_secs(5)).await;
    c.restart();
    event_ticks(&c, "db", Duration::from_secs(15)).await;
    // Down for a while, then back.
    c.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.start_again();
    event_ticks(&c, "db", Duration::from_secs(20)).await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_terminated_backends() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    eager_queue(&c, "db");
    let d = Daemon::start(test_config(&c)).await;
    event_ticks(&c, "db", Duration::from_secs(5)).await;
    for _ in 0..3 {
        let killed = c.psql(
            "postgres",
            "select count(pg_terminate_backend(pid)) from pg_stat_activity \
              where application_name = 'pgqd'",
        );
        assert_ne!(killed, "0", "the daemon had connections to terminate");
        event_ticks(&c, "db", Duration::from_secs(10)).await;
    }
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_server_is_down_and_waits_for_it() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    eager_queue(&c, "db");
    c.stop();
    // Ready comes after the first (failed) discovery attempt.
    let d = Daemon::start(test_config(&c)).await;
    c.start_again();
    event_ticks(&c, "db", Duration::from_secs(20)).await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgq_dropped_and_recreated_is_served_again() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    eager_queue(&c, "db");
    let d = Daemon::start(test_config(&c)).await;
    event_ticks(&c, "db", Duration::from_secs(5)).await;
    c.psql("db", "drop extension pgq cascade");
    // Give the daemon a few rounds without pgq.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.psql("db", "create extension pgq");
    eager_queue(&c, "db");
    event_ticks(&c, "db", Duration::from_secs(10)).await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_string_change_applies_on_reload() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    eager_queue(&c, "db");
    let d = Daemon::start(test_config(&c)).await;
    event_ticks(&c, "db", Duration::from_secs(5)).await;
    d.reload(|cfg| cfg.base_connstr.push_str(" application_name=renamed"));
    wait_for(
        "work connection under the new settings",
        Duration::from_secs(10),
        || {
            let n = c.psql(
                "postgres",
                "select count(*) from pg_stat_activity where datname = 'db' \
              and application_name = 'renamed'",
            );
            async move { (n != "0").then_some(()) }
        },
    )
    .await;
    event_ticks(&c, "db", Duration::from_secs(5)).await;
    d.stop().await.expect("clean stop");
}
