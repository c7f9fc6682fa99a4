//! The supervisor: owns the task tracker and the map of database tasks, applies what
//! discovery reports, forwards reloads, logs the stats line, and runs the bounded shutdown.
//!
//! Data flows one way: the discovery task sends listings over a channel; the supervisor
//! starts a [`DatabaseTask`] (with a child token and a config receiver) for each new
//! database and cancels the task of each database that left the list; tasks report their
//! end over another channel. The supervisor's own loop never waits on the network, so its
//! heartbeat (the systemd watchdog, issue #3 item 9) says "the daemon is alive", never
//! "PostgreSQL is reachable".
//!
//! Only this module spawns tasks, and every spawned task has a name (R17) that appears in
//! the shutdown report.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use super::broker::Broker;
use super::control::{Signals, control_loop};
use super::database::{DatabaseTask, Exit};
use super::discovery::Discovery;
use super::metrics::Metrics;
use super::stats::{Counters, StatsHandle, stats_line};
use super::{Error, HEARTBEAT_INTERVAL, Hooks};
use crate::config::Config;

/// What the discovery task reports.
#[derive(Debug)]
enum Listing {
    /// The databases to serve now.
    Databases(Vec<String>),
    /// The attempt failed (already logged); nothing changes.
    Failed,
}

/// The supervisor's record of one database task.
struct DatabaseHandle {
    token: CancellationToken,
    join: JoinHandle<()>,
    generation: u64,
    stopping: bool,
}

/// See the module docs.
pub struct Supervisor {
    cfg_rx: watch::Receiver<Arc<Config>>,
    token: CancellationToken,
    hooks: Hooks,
    tracker: TaskTracker,
    broker: Broker,
    signals: Arc<Signals>,
    global: Arc<Counters>,
    metrics: Arc<Metrics>,
    handles: HashMap<String, DatabaseHandle>,
    /// Databases whose last task ended with "database is gone"; a task started for one of
    /// them again (database_list names it) says so only at debug level.
    gone: HashSet<String>,
    generation: u64,
    named: Vec<(String, JoinHandle<()>)>,
}

impl Supervisor {
    /// A supervisor for the config in `cfg_rx`, stopped by `token`.
    pub fn new(
        cfg_rx: watch::Receiver<Arc<Config>>,
        token: CancellationToken,
        mut hooks: Hooks,
    ) -> Supervisor {
        let global = hooks.counters.take().unwrap_or_default();
        let metrics = hooks.metrics.clone().unwrap_or_default();
        let broker = Broker::new(cfg_rx.clone());
        metrics.set_broker(broker.clone());
        Supervisor {
            broker,
            metrics,
            signals: hooks.signals.take().unwrap_or_else(Signals::new),
            cfg_rx,
            token,
            hooks,
            tracker: TaskTracker::new(),
            global,
            handles: HashMap::new(),
            gone: HashSet::new(),
            generation: 0,
            named: Vec::new(),
        }
    }

    /// Runs until the token is cancelled, then stops every task within shutdown_timeout.
    pub async fn run(mut self) -> Result<(), Error> {
        let (list_tx, mut list_rx) = mpsc::channel::<Listing>(4);
        let (exit_tx, mut exit_rx) = mpsc::unbounded_channel::<(String, u64, Exit)>();
        let discovery = self.tracker.spawn(discovery_loop(
            Discovery::new(self.broker.clone()),
            self.cfg_rx.clone(),
            self.token.child_token(),
            list_tx,
        ));
        self.named.push(("discovery".into(), discovery));
        let control = self.tracker.spawn(control_loop(
            self.broker.clone(),
            self.cfg_rx.clone(),
            self.token.child_token(),
            self.signals.clone(),
        ));
        self.named.push(("control".into(), control));

        let mut cfg = self.cfg_rx.borrow_and_update().clone();
        let mut cfg_open = true;
        let mut next_stats = Instant::now() + cfg.stats_period;
        let mut last_stats = Instant::now();
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.token.cancelled() => break,
                r = self.cfg_rx.changed(), if cfg_open => {
                    if r.is_err() {
                        cfg_open = false;
                        continue;
                    }
                    cfg = self.cfg_rx.borrow_and_update().clone();
                    next_stats = last_stats + cfg.stats_period;
                    info!("config reloaded");
                }
                Some((name, generation, exit)) = exit_rx.recv() => {
                    self.task_ended(&name, generation, exit);
                    self.publish();
                }
                Some(listing) = list_rx.recv() => {
                    if let Listing::Databases(names) = listing {
                        self.apply(&names, &exit_tx);
                        self.publish();
                    }
                    self.metrics.discovery_done();
                    if let Some(ready) = self.hooks.ready.take() {
                        let _ = ready.send(());
                    }
                }
                _ = tokio::time::sleep_until(next_stats.into()) => {
                    let w = self.global.take_window();
                    info!(ticks = w.ticks, maint = w.maint, retry = w.retry, "{}", stats_line(&w));
                    last_stats = Instant::now();
                    next_stats = last_stats + cfg.stats_period;
                }
                _ = heartbeat.tick() => {
                    if let Some(hb) = &self.hooks.heartbeat {
                        hb.send_replace(Instant::now());
                    }
                }
            }
        }
        self.shutdown(cfg.shutdown_timeout).await
    }

    /// Tells [`Hooks::databases`] which databases have a running task.
    fn publish(&self) {
        if let Some(tx) = &self.hooks.databases {
            let set = self
                .handles
                .iter()
                .filter(|(_, h)| !h.stopping)
                .map(|(n, _)| n.clone())
                .collect();
            tx.send_replace(set);
        }
    }

    /// Starts tasks for new databases and stops those of databases no longer listed.
    fn apply(&mut self, names: &[String], exit_tx: &mpsc::UnboundedSender<(String, u64, Exit)>) {
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        for (name, h) in self.handles.iter_mut() {
            if !h.stopping && !wanted.contains(name.as_str()) {
                info!(db = %name, "database removed");
                h.stopping = true;
                h.token.cancel();
            }
        }
        // A task that ended without reporting (it cannot panic by design, but if it did)
        // is forgotten so the database gets a new one.
        self.handles.retain(|name, h| {
            if h.join.is_finished() {
                debug!(db = %name, "task finished");
                false
            } else {
                true
            }
        });
        for name in names {
            if self.handles.contains_key(name) {
                continue;
            }
            self.start(name, exit_tx.clone());
        }
    }

    fn start(&mut self, name: &str, exit_tx: mpsc::UnboundedSender<(String, u64, Exit)>) {
        self.generation += 1;
        let generation = self.generation;
        let quiet = self.gone.contains(name);
        if quiet {
            debug!(db = %name, "database listed again");
        } else {
            info!(db = %name, "database added");
        }
        let token = self.token.child_token();
        let stats = StatsHandle {
            db: Arc::new(Counters::default()),
            global: self.global.clone(),
            report: self.metrics.database(name),
        };
        let task = DatabaseTask::new(
            name.to_string(),
            self.broker.clone(),
            self.cfg_rx.clone(),
            token.clone(),
            stats,
            self.signals.clone(),
        )
        .quiet_when_missing(quiet);
        let owned = name.to_string();
        let join = self.tracker.spawn(async move {
            let exit = task.run().await;
            let _ = exit_tx.send((owned, generation, exit));
        });
        self.handles.insert(
            name.to_string(),
            DatabaseHandle {
                token,
                join,
                generation,
                stopping: false,
            },
        );
    }

    fn task_ended(&mut self, name: &str, generation: u64, exit: Exit) {
        if self
            .handles
            .get(name)
            .is_some_and(|h| h.generation == generation)
        {
            self.handles.remove(name);
            self.signals.forget(name);
        }
        match exit {
            Exit::Gone => {
                self.gone.insert(name.to_string());
            }
            Exit::Cancelled => {
                self.gone.remove(name);
            }
        }
    }

    /// Cancels everything, waits up to `timeout`, and names the tasks that did not finish.
    async fn shutdown(mut self, timeout: Duration) -> Result<(), Error> {
        info!(tasks = self.handles.len(), "shutting down");
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_ok()
        {
            info!("shutdown finished");
            return Ok(());
        }
        let mut unfinished: Vec<String> = self
            .handles
            .iter()
            .filter(|(_, h)| !h.join.is_finished())
            .map(|(n, _)| format!("db {n}"))
            .collect();
        unfinished.extend(
            self.named
                .iter()
                .filter(|(_, j)| !j.is_finished())
                .map(|(n, _)| n.clone()),
        );
        unfinished.sort();
        warn!(tasks = ?unfinished, ?timeout, "tasks did not finish within shutdown_timeout");
        self.named.clear();
        Err(Error::ShutdownTimedOut(unfinished))
    }
}

/// The discovery task: lists databases at once, then every check_period and after each
/// reload, and sends each result to the supervisor.
async fn discovery_loop(
    mut discovery: Discovery,
    mut cfg_rx: watch::Receiver<Arc<Config>>,
    token: CancellationToken,
    tx: mpsc::Sender<Listing>,
) {
    let span = info_span!("discovery");
    async move {
        let mut failing = false;
        let mut cfg_open = true;
        loop {
            let cfg = cfg_rx.borrow_and_update().clone();
            let result = tokio::select! {
                r = discovery.run_once(&cfg) => r,
                _ = token.cancelled() => break,
            };
            let listing = match result {
                Ok(names) => {
                    if failing {
                        info!(databases = names.len(), "listing databases works again");
                        failing = false;
                    }
                    debug!(databases = names.len(), "databases listed");
                    Listing::Databases(names)
                }
                Err(e) => {
                    if failing {
                        debug!(error = %e, "listing databases still fails");
                    } else {
                        warn!(error = %e, "listing databases failed; trying again every check_period");
                        failing = true;
                    }
                    Listing::Failed
                }
            };
            if tx.send(listing).await.is_err() {
                break;
            }
            let sleep = tokio::time::sleep(cfg.check_period);
            tokio::select! {
                _ = token.cancelled() => break,
                _ = sleep => {}
                r = cfg_rx.changed(), if cfg_open => {
                    if r.is_err() {
                        cfg_open = false;
                    }
                }
            }
        }
        discovery.close();
    }
    .instrument(span)
    .await
}
