//! Helpers for the daemon tests (`tests/daemon_*.rs`): run `pgqd::daemon::run_with`
//! in-process against a harness cluster with short periods, reload it, stop it, and read
//! pgq state to wait on.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::{Arc, Once};
use std::time::Duration;

use pgqd::config::Config;
use pgqd::daemon::{self, Hooks};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::common::{TestCluster, wait_for};

static TRACING: Once = Once::new();

/// Sends the daemon's log to the test's captured output (`RUST_LOG` overrides the level).
pub fn init_tracing() {
    TRACING.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("pgqd=debug"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A config pointing at `c` with the test periods: ticker 50 ms, check 200 ms, maint and
/// retry 200 ms, discovery through `postgres`.
pub fn test_config(c: &TestCluster) -> Config {
    Config {
        base_connstr: format!(
            "host={} port={} user=postgres",
            c.socket_dir.display(),
            c.port
        ),
        initial_database: "postgres".into(),
        check_period: Duration::from_millis(200),
        ticker_period: Duration::from_millis(50),
        maint_period: Duration::from_millis(200),
        retry_period: Duration::from_millis(200),
        stats_period: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(30),
        lock_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// A daemon running in-process.
pub struct Daemon {
    /// Cancels the daemon.
    pub token: CancellationToken,
    /// Pushes reloads.
    pub cfg_tx: watch::Sender<Arc<Config>>,
    /// Databases with a running task.
    pub databases: watch::Receiver<BTreeSet<String>>,
    /// Daemon-wide counters.
    pub counters: Arc<daemon::stats::Counters>,
    join: JoinHandle<Result<(), daemon::Error>>,
}

impl Daemon {
    /// Starts the daemon with `cfg` and waits until its first discovery attempt is done.
    pub async fn start(cfg: Config) -> Daemon {
        init_tracing();
        let (cfg_tx, cfg_rx) = watch::channel(Arc::new(cfg));
        let token = CancellationToken::new();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (db_tx, databases) = watch::channel(BTreeSet::new());
        let counters = Arc::new(daemon::stats::Counters::default());
        let hooks = Hooks {
            ready: Some(ready_tx),
            databases: Some(db_tx),
            counters: Some(counters.clone()),
            ..Hooks::default()
        };
        let join = tokio::spawn(daemon::run_with(cfg_rx, token.clone(), hooks));
        tokio::time::timeout(Duration::from_secs(20), ready_rx)
            .await
            .expect("daemon ready in time")
            .expect("daemon sent ready");
        Daemon {
            token,
            cfg_tx,
            databases,
            counters,
            join,
        }
    }

    /// Changes the config as a SIGHUP reload would.
    pub fn reload(&self, f: impl FnOnce(&mut Config)) {
        let mut cfg = (**self.cfg_tx.borrow()).clone();
        f(&mut cfg);
        self.cfg_tx.send_replace(Arc::new(cfg));
    }

    /// Cancels the daemon and returns what `run` returned (panics if it takes longer than
    /// 15 s).
    pub async fn stop(self) -> Result<(), daemon::Error> {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.join)
            .await
            .expect("daemon stopped in time")
            .expect("daemon task did not panic")
    }

    /// Waits until `db` has (or, with `present` false, no longer has) a task.
    pub async fn wait_serving(&self, db: &str, present: bool) {
        let rx = self.databases.clone();
        wait_for(
            &format!("task for {db} present={present}"),
            Duration::from_secs(15),
            || {
                let now = rx.borrow().contains(db);
                async move { (now == present).then_some(()) }
            },
        )
        .await
    }
}

/// The latest tick id of `queue` in `db` (0 without ticks).
pub fn last_tick(c: &TestCluster, db: &str, queue: &str) -> i64 {
    c.psql(
        db,
        &format!(
            "select coalesce(max(t.tick_id), 0) from pgq.tick t join pgq.queue q \
             on q.queue_id = t.tick_queue where q.queue_name = '{queue}'"
        ),
    )
    .parse()
    .expect("tick id")
}

/// Waits until `queue` in `db` has a tick with id above `after`; returns the new latest id.
pub async fn wait_tick_after(
    c: &TestCluster,
    db: &str,
    queue: &str,
    after: i64,
    within: Duration,
) -> i64 {
    wait_for(
        &format!("a tick on {db}.{queue} after {after}"),
        within,
        || {
            let t = last_tick(c, db, queue);
            async move { (t > after).then_some(t) }
        },
    )
    .await
}

/// Makes `queue` look idle for a long time: its latest tick is recent and the gap before
/// it is an hour, so the idle back-off alone would not tick it for `idle_period`.
pub fn settle_idle(c: &TestCluster, db: &str, queue: &str) {
    c.psql(
        db,
        &format!(
            "update pgq.tick set tick_time = tick_time - interval '1 hour' \
              where tick_queue = (select queue_id from pgq.queue where queue_name = '{queue}'); \
             select pgq.ticker('{queue}');"
        ),
    );
}

/// Whether a test on the real pgq extension can run: true when it is installed; false,
/// printing why, on server binaries without `pg_config` (the npm tarballs of the other
/// majors: Debian packages pgq only for its own PostgreSQL); panics on a Debian install
/// that lacks the package, where the full suite expects it.
pub fn real_pgq_or_skip(c: &TestCluster) -> bool {
    if c.has_real_pgq() {
        return true;
    }
    if c.bindir.join("pg_config").exists() {
        require_real_pgq(c);
    }
    eprintln!(
        "skipping: no real pgq extension for the server binaries in {} (Debian packages it for PostgreSQL 15 only)",
        c.bindir.display()
    );
    false
}

/// Whether the pgq extension is available (tests on the real extension need it).
pub fn require_real_pgq(c: &TestCluster) {
    assert!(
        c.has_real_pgq(),
        "the real pgq extension (postgresql-NN-pgq3) must be installed for this test"
    );
}
