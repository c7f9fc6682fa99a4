//! Start/stop stress (STYLE §6.6, River's `startstoptest`): start the daemon against three
//! databases and cancel it after a short, varying delay, many times. Catches leaked tasks
//! and shutdown races: every stop must be clean and leave no connection behind.

mod common;
mod daemon_support;

use std::time::Duration;

use common::{TestCluster, wait_for};
use daemon_support::{Daemon, real_pgq_or_skip, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stop_loop_is_always_clean() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    for db in ["s1", "s2", "s3"] {
        c.create_ext_db(db);
        c.psql(db, "select pgq.create_queue('q')");
    }
    let mut cfg = test_config(&c);
    cfg.maint_period = Duration::from_millis(20);
    cfg.retry_period = Duration::from_millis(20);
    // A cheap deterministic spread of delays: 0..=120 ms.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..40 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_millis(x % 121);
        let d = Daemon::start(cfg.clone()).await;
        tokio::time::sleep(delay).await;
        d.stop()
            .await
            .unwrap_or_else(|e| panic!("round {i} (delay {delay:?}): {e}"));
    }
    wait_for("no connections left", Duration::from_secs(5), || {
        let n = c.psql(
            "postgres",
            "select count(*) from pg_stat_activity where application_name = 'pgqd'",
        );
        async move { (n == "0").then_some(()) }
    })
    .await;
}
