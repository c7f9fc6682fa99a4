//! The connection budget (issue #7): more databases than connections; quiet ones hand
//! their connection back after each visit and are visited again when they have work, and
//! the daemon never holds more connections than `connection_budget`. (The order in which
//! waiting databases get permits is unit-tested in `src/daemon/broker.rs`.)

mod common;
mod daemon_support;

use std::time::Duration;

use common::TestCluster;
use daemon_support::{Daemon, last_tick, test_config, wait_tick_after};

const DBS: usize = 12;
const BUDGET: u32 = 8;

fn held(c: &TestCluster) -> usize {
    c.psql(
        "postgres",
        "select count(*) from pg_stat_activity where application_name = 'pgqd'",
    )
    .parse()
    .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_databases_than_the_budget_all_tick_within_it() {
    let c = TestCluster::start();
    for i in 0..DBS {
        let db = format!("b{i}");
        c.create_pgq_db(&db);
        c.psql(
            &db,
            "select pgq.create_queue('q'); \
             select pgq.set_queue_config('q', 'ticker_max_lag', '0.1'); \
             select pgq.set_queue_config('q', 'ticker_idle_period', '1 hour')",
        );
    }
    let mut cfg = test_config(&c);
    cfg.connection_budget = BUDGET;
    // The sweep: a database without a connection is visited at least this often anyway.
    cfg.check_period = Duration::from_secs(10);
    // A client session that exists before the daemon starts (so the daemon's session
    // counts never see it begin) and later writes once and disconnects.
    let old_session = c.connect("b5").await;
    let d = Daemon::start(cfg).await;
    // More databases than permits: once each has been visited, quiet ones hand their
    // connection back after every visit instead of keeping the budget full.
    for i in 0..DBS {
        let db = format!("b{i}");
        wait_tick_after(&c, &db, "q", 1, Duration::from_secs(30)).await;
    }
    common::wait_for(
        "quiet databases to hand their connections back",
        Duration::from_secs(15),
        || async {
            let n = held(&c);
            (n <= 2).then_some(n)
        },
    )
    .await;
    // Its write and its exit fall between two looks at pg_stat_activity: the write
    // counters of a database we have not written to lately must wake it.
    let t = last_tick(&c, "b5", "q");
    let sent = std::time::Instant::now();
    old_session
        .execute("select pgq.insert_event('q', 'old', 'session')", &[])
        .await
        .expect("insert from the old session");
    drop(old_session);
    wait_tick_after(&c, "b5", "q", t, Duration::from_secs(15)).await;
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "an event from a long-lived session that then left ticked after {took:?} (sweep 10 s)"
    );
    let mut most = 0;
    let mut slowest = Duration::ZERO;
    // One round over every database: each event must tick although at most
    // BUDGET - 4 databases hold a connection at a time.
    for round in 0..1 {
        for i in 0..DBS {
            let db = format!("b{i}");
            let t = last_tick(&c, &db, "q");
            // A one-shot session (psql), gone before the daemon looks: the session
            // counters (or write counters) must wake the database, not the sweep.
            let sent = std::time::Instant::now();
            c.psql(&db, "select pgq.insert_event('q', 't', 'd')");
            wait_tick_after(&c, &db, "q", t, Duration::from_secs(15)).await;
            let took = sent.elapsed();
            slowest = slowest.max(took);
            let n = held(&c);
            most = most.max(n);
            assert!(
                n <= BUDGET as usize,
                "round {round}, {db}: {n} connections held, budget {BUDGET}"
            );
        }
    }
    assert!(most >= 3, "the daemon held connections at all: {most}");
    assert!(
        slowest < Duration::from_secs(4),
        "an event in a database without a connection ticked after {slowest:?} (sweep 10 s)"
    );
    d.stop().await.expect("clean stop");
}
