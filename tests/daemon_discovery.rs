//! Daemon discovery against real clusters: databases created after start are found,
//! dropped ones end their work, pgq installed later is picked up, and the daemon never
//! blocks `CREATE DATABASE` by holding template1.

mod common;
mod daemon_support;

use std::time::Duration;

use common::TestCluster;
use daemon_support::{Daemon, last_tick, real_pgq_or_skip, test_config, wait_tick_after};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_database_created_after_start() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    let d = Daemon::start(test_config(&c)).await;
    d.wait_serving("postgres", true).await;
    c.create_ext_db("late");
    c.psql("late", "select pgq.create_queue('q')");
    let t = last_tick(&c, "late", "q");
    wait_tick_after(&c, "late", "q", t, Duration::from_secs(10)).await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_task_when_database_dropped() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("doomed");
    c.psql("doomed", "select pgq.create_queue('q')");
    let d = Daemon::start(test_config(&c)).await;
    d.wait_serving("doomed", true).await;
    let t = last_tick(&c, "doomed", "q");
    wait_tick_after(&c, "doomed", "q", t, Duration::from_secs(10)).await;
    // The daemon holds a connection, so only FORCE drops it (as with the C pgqd).
    c.psql("postgres", "drop database doomed with (force)");
    d.wait_serving("doomed", false).await;
    // Nothing of ours is left connected anywhere but the discovery connection.
    common::wait_for("no pgqd work connections", Duration::from_secs(10), || {
        let n = c.psql(
            "postgres",
            "select count(*) from pg_stat_activity \
              where application_name = 'pgqd' and datname is distinct from 'postgres'",
        );
        async move { (n == "0").then_some(()) }
    })
    .await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_list_entry_that_is_missing_is_harmless() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("real");
    c.psql("real", "select pgq.create_queue('q')");
    let mut cfg = test_config(&c);
    cfg.database_list = vec!["real".into(), "nosuch".into()];
    let d = Daemon::start(cfg).await;
    let t = last_tick(&c, "real", "q");
    wait_tick_after(&c, "real", "q", t, Duration::from_secs(10)).await;
    // Listing "nosuch" again every check_period does not disturb "real".
    tokio::time::sleep(Duration::from_millis(600)).await;
    let t = last_tick(&c, "real", "q");
    c.psql("real", "select pgq.insert_event('q', 'x', 'y')");
    c.psql(
        "real",
        "select pgq.set_queue_config('q', 'ticker_max_count', '1')",
    );
    wait_tick_after(&c, "real", "q", t, Duration::from_secs(5)).await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_up_pgq_installed_later() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_db("plain");
    let d = Daemon::start(test_config(&c)).await;
    d.wait_serving("plain", true).await;
    // Let it probe "no pgq" at least once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.psql("plain", "create extension pgq");
    c.psql("plain", "select pgq.create_queue('q')");
    let t = last_tick(&c, "plain", "q");
    wait_tick_after(&c, "plain", "q", t, Duration::from_secs(10)).await;
    // No connection is kept to databases without pgq: `postgres` itself is probed now and
    // then (a brief session), so wait for the steady state — discovery's connection and the
    // control session (leader lock, activity signal), at most two.
    common::wait_for(
        "at most two pgqd sessions in postgres",
        Duration::from_secs(10),
        || {
            let held = c.psql(
                "postgres",
                "select count(*) from pg_stat_activity where application_name = 'pgqd' \
                  and datname = 'postgres' and backend_type = 'client backend'",
            );
            async move { ["0", "1", "2"].contains(&held.as_str()).then_some(()) }
        },
    )
    .await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_database_works_with_template1_as_initial_database() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("app");
    c.psql("app", "select pgq.create_queue('q')");
    let mut cfg = test_config(&c);
    cfg.initial_database = "template1".into();
    cfg.check_period = Duration::from_millis(50);
    let d = Daemon::start(cfg).await;
    d.wait_serving("app", true).await;
    for i in 0..15 {
        c.psql("postgres", &format!("create database made_{i}"));
    }
    // The new databases are found too (plain ones, probed and left alone).
    d.wait_serving("made_14", true).await;
    let t = last_tick(&c, "app", "q");
    wait_tick_after(&c, "app", "q", t, Duration::from_secs(10)).await;
    d.stop().await.expect("clean stop");
    common::wait_for(
        "connections closed at shutdown",
        Duration::from_secs(5),
        || {
            let left = c.psql(
                "postgres",
                "select count(*) from pg_stat_activity where application_name = 'pgqd'",
            );
            async move { (left == "0").then_some(()) }
        },
    )
    .await;
}
