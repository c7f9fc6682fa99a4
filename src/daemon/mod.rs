//! The daemon: one process per cluster that finds every database with pgq and ticks,
//! maintains and flushes the retry queue of each (issue #3).
//!
//! Layout, top to bottom (data flows one way):
//! - [`supervisor`]: owns the task tracker and the map of database tasks; applies
//!   discovery's listings and reloads; logs the stats line; bounded shutdown;
//! - [`discovery`]: lists databases every `check_period` (or takes `database_list`);
//! - [`database`]: `DatabaseTask`, one per database: probe pgq, run the lanes in turn on
//!   one connection, back off, stop when the database is dropped;
//! - [`ticker`], [`retry`], [`maint`]: the lanes, each a `run_once` that does the SQL;
//! - [`broker`]: the one owner of connections (one per database, a VACUUM lease, the
//!   discovery connection; #7 adds its budget);
//! - [`collect`]: the collector lane (queue/consumer figures every `stats_period`, the
//!   consumer lag policies); [`metrics`]: what each task reports, for `/metrics`, `/readyz`
//!   and systemd's STATUS line (the HTTP side is `crate::http`, started by [`run_with`]
//!   when `metrics_listen` is set);
//! - [`classify`]: what a failed statement means (R9); [`stats`]: counters;
//! - [`restored`]: the ticker's guard against a database restored from another cluster;
//!   [`vacuum_rights`]: whether the role may VACUUM a pgq table (warned once if not);
//! - [`signals`], [`notify`], [`pidfile`]: the process around the daemon, used by `main`.
//!
//! `main` calls [`run_with`] with the config channel, a cancellation token and [`Hooks`]
//! for systemd (READY after the first discovery attempt, a heartbeat for WATCHDOG); tests
//! call [`run`].

pub mod broker;
pub mod classify;
pub mod collect;
pub mod control;
pub mod database;
pub mod discovery;
pub mod maint;
pub mod metrics;
pub mod notify;
pub mod pidfile;
pub mod restored;
pub mod retry;
pub mod signals;
pub mod stats;
pub mod supervisor;
pub mod ticker;
pub mod vacuum_rights;

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// How often the supervisor's loop bumps [`Hooks::heartbeat`].
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// Ways for `main` to follow the daemon without reaching into it.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Fired once the first discovery attempt has finished, successful or not (systemd
    /// READY: the daemon also starts when PostgreSQL is down at boot; it waits for it).
    pub ready: Option<oneshot::Sender<()>>,
    /// Set to the current time by the supervisor's loop every [`HEARTBEAT_INTERVAL`]; a
    /// stale value means the daemon itself is stuck (systemd WATCHDOG). It never depends on
    /// PostgreSQL being reachable.
    pub heartbeat: Option<watch::Sender<Instant>>,
    /// Kept up to date with the databases that have a running task (for status pages and
    /// tests: a dropped database leaves this set).
    pub databases: Option<watch::Sender<std::collections::BTreeSet<String>>>,
    /// Daemon-wide counters to use (for the metrics endpoint, #6); a fresh set if None.
    pub counters: Option<Arc<stats::Counters>>,
    /// Leadership and activity signals to use (to follow the role from outside); fresh
    /// ones if None.
    pub signals: Option<Arc<control::Signals>>,
    /// The metrics registry the database tasks report into (`main` reads it for systemd's
    /// STATUS line); a fresh one if None.
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// Told the address the metrics endpoint listens on, once bound (`metrics_listen`
    /// with port 0 picks a free port: tests).
    pub http_bound: Option<oneshot::Sender<std::net::SocketAddr>>,
}

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configured connection string cannot be used at all.
    #[error("unusable connection settings: {0}")]
    Config(String),
    /// The metrics endpoint cannot listen on `metrics_listen`.
    #[error("cannot listen on metrics_listen {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Some tasks were still running when shutdown_timeout ran out (names listed).
    #[error("tasks did not finish within shutdown_timeout: {}", .0.join(", "))]
    ShutdownTimedOut(Vec<String>),
}

/// Runs the daemon until `token` is cancelled; each new value on `cfg_rx` is a reload.
pub async fn run(
    cfg_rx: watch::Receiver<Arc<Config>>,
    token: CancellationToken,
) -> Result<(), Error> {
    run_with(cfg_rx, token, Hooks::default()).await
}

/// [`run`] with [`Hooks`] for systemd and metrics.
pub async fn run_with(
    cfg_rx: watch::Receiver<Arc<Config>>,
    token: CancellationToken,
    mut hooks: Hooks,
) -> Result<(), Error> {
    let cfg = cfg_rx.borrow().clone();
    crate::conn::config_from(&cfg.base_connstr, Some(&cfg.initial_database))
        .map_err(|e| Error::Config(e.to_string()))?;
    let metrics = hooks.metrics.get_or_insert_with(Default::default).clone();
    let beat = hooks
        .heartbeat
        .get_or_insert_with(|| watch::channel(Instant::now()).0)
        .subscribe();
    // metrics_listen is read once: a reload cannot move the endpoint (signals.rs warns).
    let http = match cfg.metrics_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Listen { addr, source })?;
            let bound = listener.local_addr().unwrap_or(addr);
            tracing::info!(address = %bound, "metrics endpoint listening");
            if let Some(tx) = hooks.http_bound.take() {
                let _ = tx.send(bound);
            }
            let state = crate::http::State {
                metrics,
                heartbeat: beat,
                cfg: cfg_rx.clone(),
            };
            Some(tokio::spawn(crate::http::serve(
                listener,
                state,
                token.child_token(),
            )))
        }
        None => None,
    };
    let result = supervisor::Supervisor::new(cfg_rx, token.clone(), hooks)
        .run()
        .await;
    if let Some(h) = http {
        // The supervisor returns after the token is cancelled; the server stops with it.
        token.cancel();
        let _ = h.await;
    }
    result
}

/// A number in [0, 1) for jitter. Good enough for spreading start times; not for secrets.
pub(crate) fn random_fraction() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
