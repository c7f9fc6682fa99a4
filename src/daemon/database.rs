//! `DatabaseTask`: everything the daemon does for one database, on one connection.
//!
//! The task connects through the broker, probes for pgq (schema `pgq` present and
//! `pgq.version()` at least 3), and then serves the database: its ticker, retry and
//! maintenance lanes take turns on the one connection, the ticker first whenever it is due.
//! A database without pgq keeps no connection; it is probed again every `check_period`,
//! quietly (the first "no pgq" is a debug line; finding pgq is info).
//!
//! Failures are classified once (R9, `classify.rs`): a dropped database ends the task
//! ([`Exit::Gone`]); pgq gone sends it back to probing; a lost connection or a restarting
//! server means reconnecting with capped exponential backoff and jitter; anything else is
//! logged with database, statement and SQLSTATE and retried at that lane's next period.
//! Nothing a database does can delay another database: each runs in its own task.
//!
//! Timing lives in [`Schedule`] (pure, unit-tested) and [`DatabaseTask::run`]; the SQL
//! lives in the lanes' `run_once` (R3). Spawned only by the supervisor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::broker::{Broker, DbConn, Purpose};
use super::classify::{Action, LaneError};
use super::collect::{Collector, Since, collect_period};
use super::control::{Role, Signals};
use super::maint::Maintainer;
use super::metrics::DbState;
use super::retry::Retrier;
use super::stats::StatsHandle;
use super::ticker::Ticker;
use crate::config::Config;
use crate::sql;

/// First reconnect delay.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Added to a predicted due time so pgq's own `now()` is surely past it.
const DUE_MARGIN: Duration = Duration::from_millis(2);
/// Cap of the jitter of the first maintenance and retry rounds.
const START_JITTER_MAX: Duration = Duration::from_secs(5);
/// Least time between two due checks that activity asked for, while no queue has events
/// waiting (a first event should tick within milliseconds) …
const POKE_GAP: Duration = Duration::from_millis(5);
/// … and while every queue either has events waiting (its `ticker_max_lag` moment is
/// known, its `ticker_max_count` moment predicted from the event rate) or ticked less than
/// `ticker_max_lag` ago (a check is scheduled for that moment): activity then only needs
/// looking at for bursts.
const POKE_GAP_BUSY: Duration = Duration::from_millis(250);
/// Activity-driven checks wait at least this many times the last pass's duration.
const POKE_COST_FACTOR: u32 = 4;
/// How much later than due a database without a connection that had no events for
/// `KEEP_WARM` is visited for its idle ticks (its sweep moves by as much): one visit then
/// ticks every queue due in that window, after which their idle periods line up; and with
/// idle periods of a minute, a thousand such databases need a quarter fewer sessions (each
/// costs the server ~10–20 ms: backend start, and compiling `pgq.ticker` in the fresh
/// session). Idle ticks carry no events; the first event of such a database is still
/// ticked on activity.
const EVICTED_SLACK: Duration = Duration::from_secs(20);
/// A connection lost again within this long after a warned loss is logged at debug level.
const LOST_AGAIN: Duration = Duration::from_secs(60);
/// A database that had events this recently keeps its connection under the budget.
const KEEP_HOT: Duration = Duration::from_secs(60);
/// A database that had events this recently is visited on time, without `EVICTED_SLACK`:
/// its queues are still in pgq's idle back-off (ticks 1.5, 3, 6 … 60 s after the last
/// event), and those ticks are what its consumers wait for.
const KEEP_WARM: Duration = Duration::from_secs(300);
/// Metrics of a database visited without a held connection are collected at most this
/// often: each collection compiles two pgq functions in the fresh session (~8 ms of server
/// CPU each under load), and a quiet database's figures barely move between idle ticks.
const VISITED_STATS_PERIOD: Duration = Duration::from_secs(600);
/// Under pressure a quiet database hands its connection back after a visit when its next
/// work is at least this far away (nearer work would just reconnect).
const RELEASE_AFTER: Duration = Duration::from_secs(2);

/// How a database task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Its token was cancelled (shutdown, or the database left the list).
    Cancelled,
    /// The database does not exist (any more).
    Gone,
}

/// Capped exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling
/// from `BACKOFF_START` up to the cap (`reconnect_max_delay`; `BACKOFF_MAX` until set).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_START,
            max: BACKOFF_MAX,
        }
    }
}

impl Backoff {
    /// Sets the cap (the config's `reconnect_max_delay`; applies from the next delay).
    pub fn set_max(&mut self, max: Duration) {
        self.max = max.max(BACKOFF_START);
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next.min(self.max);
        self.next = (d * 2).min(self.max);
        d / 2 + d.mul_f64(super::random_fraction() / 2.0)
    }

    /// Back to the shortest delay (after a success).
    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// When each lane runs next. Times are derived from when each lane last finished and the
/// *current* config, so a reload that shortens a period applies at once (R6: no bursts of
/// catch-up runs either — the next run is always "last end + period").
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    tick_end: Option<Instant>,
    tick_hint: Option<Duration>,
    /// The ticker's prediction of the next tick proper (`TickPass::next_tick`): when a
    /// database without a connection comes back.
    visit_hint: Option<Duration>,
    retry_end: Option<Instant>,
    maint_end: Option<Instant>,
    stats_end: Option<Instant>,
    jitter: f64,
    /// Activity asked for a due check at this time.
    poked: Option<Instant>,
    /// The last pass saw events waiting in some queue.
    busy: bool,
    /// With a working activity signal, the longest wait between due checks; without one,
    /// `ticker_period` (as C pgqd).
    sweep: Option<Duration>,
    /// Added to predicted due times, and to the sweep, while the database has no
    /// connection and had no events lately (`EVICTED_SLACK`).
    slack: Duration,
    /// What the ticker's last reads took (activity-driven checks are spaced by a multiple
    /// of it). Not the whole pass: its ticks, and in a fresh session compiling
    /// `pgq.ticker`, once spaced a newly busy database's next check by ~80 ms.
    pass_cost: Duration,
    /// The database hands its connection back after each visit (budget pressure).
    visited: bool,
}

/// The lanes of a database task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Due check and ticks.
    Ticker,
    /// Retry-queue flush.
    Retry,
    /// Maintenance round.
    Maint,
    /// Metrics collection and consumer lag policies (`collect.rs`), every stats_period.
    Stats,
}

impl Schedule {
    /// A schedule whose ticker is due at `start` and whose retry and maintenance are due
    /// a little later, by `jitter` (0..1) of a tenth of their period (capped), so that
    /// many databases found at once do not run maintenance in the same instant.
    pub fn new(start: Instant, jitter: f64) -> Schedule {
        Schedule {
            start,
            tick_end: None,
            tick_hint: None,
            visit_hint: None,
            retry_end: None,
            maint_end: None,
            stats_end: None,
            jitter,
            poked: None,
            busy: false,
            sweep: None,
            slack: Duration::ZERO,
            pass_cost: Duration::ZERO,
            visited: false,
        }
    }

    /// Sets the slack added to predicted due times and the sweep (`EVICTED_SLACK` for a
    /// long-quiet database without a connection).
    pub fn set_slack(&mut self, slack: Duration) {
        self.slack = slack;
    }

    /// For a database without a connection: Ok when its ticker is due (retry and
    /// maintenance wait for that visit), else when to look again.
    pub fn visit_due(&self, now: Instant, cfg: &Config) -> Result<(), Instant> {
        let at = self.next_visit(cfg);
        if at <= now { Ok(()) } else { Err(at) }
    }

    /// When a database without a connection needs a visit: activity, the next tick proper
    /// (plus the slack), or the sweep (plus the slack). Unlike [`Schedule::next`] for the
    /// ticker, not the `max_lag` looks that only tune how eagerly a connected database
    /// follows activity.
    pub fn next_visit(&self, cfg: &Config) -> Instant {
        self.ticker_at(self.visit_hint, cfg)
    }

    /// The ticker's next run with `hint` as the prediction: the last pass's end plus the
    /// hint (with the margin and the slack), at most the sweep (with the slack); activity
    /// brings it forward.
    fn ticker_at(&self, hint: Option<Duration>, cfg: &Config) -> Instant {
        let cap = self.sweep.unwrap_or(cfg.ticker_period) + self.slack;
        let regular = match self.tick_end {
            None => self.start,
            Some(t) => t + hint.map_or(cap, |h| (h + DUE_MARGIN + self.slack).min(cap)),
        };
        self.poked.map_or(regular, |p| p.min(regular))
    }

    /// Records whether the database is served by visits (hands its connection back after
    /// each): its metrics are then collected every `VISITED_STATS_PERIOD` (10 min) at most.
    pub fn set_visited(&mut self, visited: bool) {
        self.visited = visited;
    }

    /// Records the last ticker pass's prediction of the next tick proper.
    pub fn set_visit_hint(&mut self, hint: Option<Duration>) {
        self.visit_hint = hint;
    }

    /// Whether activity asked for a due check that has not run yet.
    pub fn poked(&self) -> bool {
        self.poked.is_some()
    }

    /// Asks for a due check soon: now, or a short gap after the last one.
    pub fn poke(&mut self, now: Instant) {
        // A database with many queues has a costly due check: keep activity-driven checks
        // to a fifth of its time (10 databases x 1000 queues: ~8 ms per check).
        let base = if self.busy { POKE_GAP_BUSY } else { POKE_GAP };
        let gap = base.max(self.pass_cost * POKE_COST_FACTOR);
        let at = self.tick_end.map_or(now, |t| now.max(t + gap));
        self.poked = Some(self.poked.map_or(at, |p| p.min(at)));
    }

    /// Sets the longest wait between due checks (None: `ticker_period`).
    pub fn set_sweep(&mut self, sweep: Option<Duration>) {
        self.sweep = sweep;
    }

    /// Records whether the last pass saw events waiting.
    pub fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    fn first(&self, period: Duration) -> Instant {
        self.start + (period / 10).min(START_JITTER_MAX).mul_f64(self.jitter)
    }

    /// When `lane` is next due under `cfg`.
    pub fn next(&self, lane: Lane, cfg: &Config) -> Instant {
        match lane {
            Lane::Ticker => self.ticker_at(self.tick_hint, cfg),
            Lane::Retry => match self.retry_end {
                None => self.first(cfg.retry_period),
                Some(t) => t + cfg.retry_period,
            },
            Lane::Maint => match self.maint_end {
                None => self.first(cfg.maint_period),
                Some(t) => t + cfg.maint_period,
            },
            Lane::Stats => {
                let mut period = collect_period(cfg).unwrap_or(cfg.stats_period);
                if self.visited {
                    period = period.max(VISITED_STATS_PERIOD);
                }
                match self.stats_end {
                    None => self.first(period),
                    Some(t) => t + period,
                }
            }
        }
    }

    /// The lane to run at `now`, ticker first, or None with the instant to wake up.
    pub fn due(&self, now: Instant, cfg: &Config) -> Result<Lane, Instant> {
        let mut earliest = None::<Instant>;
        let stats = collect_period(cfg).map(|_| Lane::Stats);
        for lane in [Lane::Ticker, Lane::Retry, Lane::Maint]
            .into_iter()
            .chain(stats)
        {
            let at = self.next(lane, cfg);
            if at <= now {
                return Ok(lane);
            }
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        Err(earliest.unwrap_or(now))
    }

    /// Records that `lane` finished at `end`; for the ticker, `hint` is when the next queue
    /// is predicted due.
    pub fn done(&mut self, lane: Lane, end: Instant, hint: Option<Duration>) {
        match lane {
            Lane::Ticker => {
                self.tick_end = Some(end);
                self.tick_hint = hint;
                self.poked = None;
            }
            Lane::Retry => self.retry_end = Some(end),
            Lane::Maint => self.maint_end = Some(end),
            Lane::Stats => self.stats_end = Some(end),
        }
    }
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    NotYet,
    NoPgq,
    BadVersion(Option<String>),
    Pgq(String),
}

/// Why a wait ended.
enum Wake {
    Elapsed,
    Reloaded,
    Cancelled,
    /// Activity in this database (only when the wait allowed it).
    Poked,
    /// The broker asked for this database's connection (budget).
    Evicted,
    /// The daemon's role changed.
    Role,
}

/// One database's worker; see the module docs.
pub struct DatabaseTask {
    name: String,
    broker: Broker,
    cfg_rx: watch::Receiver<Arc<Config>>,
    cfg_open: bool,
    token: CancellationToken,
    stats: StatsHandle,
    quiet_missing: bool,
    signals: Arc<Signals>,
    waker: Arc<Notify>,
    role_rx: watch::Receiver<Role>,
    role_open: bool,
    /// Told when the broker wants our connection back (while we hold one under a budget).
    evict: Option<Arc<Notify>>,
    /// The SQL `NOTIFY pgqd_tick` with every tick made.
    notify_ticks: bool,
    /// SQLSTATE of the last "retry next period" failure per lane, so a persistent failure
    /// is a warning once and debug lines after, and its end is logged.
    failing: std::collections::HashMap<Option<Lane>, String>,
    /// When a lost connection was last warned about: lost again within a minute (a proxy
    /// that breaks every session, a flapping server), it is a debug line.
    lost_warned: Option<Instant>,
}

impl DatabaseTask {
    /// A task for database `name`; it stops when `token` is cancelled.
    pub fn new(
        name: String,
        broker: Broker,
        cfg_rx: watch::Receiver<Arc<Config>>,
        token: CancellationToken,
        stats: StatsHandle,
        signals: Arc<Signals>,
    ) -> DatabaseTask {
        DatabaseTask {
            waker: signals.waker(&name),
            role_rx: signals.role(),
            role_open: true,
            evict: None,
            notify_ticks: true,
            signals,
            name,
            broker,
            cfg_rx,
            cfg_open: true,
            token,
            stats,
            quiet_missing: false,
            failing: std::collections::HashMap::new(),
            lost_warned: None,
        }
    }

    /// Logs "database is gone" at debug level only: the supervisor already said so for
    /// this database (a `database_list` entry that does not exist).
    pub fn quiet_when_missing(mut self, quiet: bool) -> DatabaseTask {
        self.quiet_missing = quiet;
        self
    }

    /// Runs the task inside its `db` span until cancelled or the database is gone.
    pub async fn run(self) -> Exit {
        let span = info_span!("db", db = %self.name);
        self.serve().instrument(span).await
    }

    /// Waits until `until`, a reload, a role change, cancellation — and, with `pokes`,
    /// activity in this database.
    async fn wait(&mut self, until: Instant, pokes: bool) -> Wake {
        let sleep = tokio::time::sleep_until(until.into());
        tokio::select! {
            _ = self.token.cancelled() => Wake::Cancelled,
            _ = sleep => Wake::Elapsed,
            r = self.cfg_rx.changed(), if self.cfg_open => {
                if r.is_err() {
                    // The sender is gone: no more reloads; keep the last config.
                    self.cfg_open = false;
                }
                Wake::Reloaded
            }
            r = self.role_rx.changed(), if self.role_open => {
                if r.is_err() {
                    self.role_open = false;
                }
                Wake::Role
            }
            _ = self.waker.notified(), if pokes => Wake::Poked,
            _ = wait_evict(&self.evict), if pokes && self.evict.is_some() => Wake::Evicted,
        }
    }

    /// A wait that only activity must not cut short (backoff, probing).
    async fn wait_until(&mut self, until: Instant) -> Wake {
        self.wait(until, false).await
    }

    async fn serve(mut self) -> Exit {
        let mut conn: Option<DbConn> = None;
        let mut probe = Probe::NotYet;
        let mut probed = false;
        let mut backoff = Backoff::default();
        let mut failing_since: Option<Instant> = None;
        let mut schedule = Schedule::new(Instant::now(), super::random_fraction());
        let mut fenced_by: Option<String> = None;
        let mut evicted = false;
        // The connection was handed back (budget) since pgq was last probed.
        let mut evicted_since_probe = false;
        let mut last_events: Option<Instant> = None;
        // The last ticker pass saw events waiting for a tick.
        let mut pending = false;
        // Counted by the broker while this database serves pgq (Broker::pressure).
        let mut tenant = None;
        let mut ticker = Ticker::new().reporting(self.stats.report.clone());
        let mut retrier = Retrier;
        let mut maintainer = Maintainer::new().reporting(self.stats.report.clone());
        let mut collector = Collector::new();
        // What was written since the collector's last read (collect.rs), and the activity
        // signal's spell it was read in (a signal lost since may have missed a write).
        let mut since_read = Since::Written;
        let mut read_spell: Option<u64> = None;
        loop {
            if self.token.is_cancelled() {
                return Exit::Cancelled;
            }
            if conn.is_none() {
                // The next collection is in a new session, so it reads (the probe below
                // says so): the last read is of no use, and a thousand visited databases
                // need not each keep one.
                collector.forget();
            }
            let cfg = self.cfg_rx.borrow_and_update().clone();
            backoff.set_max(cfg.reconnect_max_delay);

            // Serve only as the leader (control.rs): a standby or a server in recovery lets
            // go of the database (and its fence); while leadership is being re-established
            // the connection, and so the fence, is kept but nothing is written.
            let role = self.role_rx.borrow_and_update().clone();
            if role != Role::Leader {
                if matches!(role, Role::Standby(_) | Role::Recovery) {
                    self.stats.report.state(DbState::Standby);
                }
                if matches!(role, Role::Standby(_) | Role::Recovery) && conn.is_some() {
                    debug!(role = role.name(), "letting go of the database");
                    conn = None;
                    probed = false;
                }
                if let Wake::Cancelled = self.wait_until(Instant::now() + cfg.check_period).await {
                    return Exit::Cancelled;
                }
                continue;
            }
            schedule.set_sweep(
                self.signals
                    .live()
                    .then(|| cfg.check_period.max(cfg.ticker_period)),
            );

            // A new connection string, a closed socket or an old connection: start afresh.
            if let Some(c) = &conn
                && (c.stale_for(&cfg) || c.age() >= cfg.connection_lifetime)
            {
                debug!(age = ?c.age(), "replacing connection");
                conn = None;
            }
            // Evicted under the budget: reconnect only when there is work (a due tick,
            // activity, the sweep); retry and maintenance wait for that visit.
            if conn.is_none() && evicted {
                let warm = last_events.is_some_and(|e| e.elapsed() < KEEP_WARM);
                schedule.set_slack(if warm { Duration::ZERO } else { EVICTED_SLACK });
                match schedule.visit_due(Instant::now(), &cfg) {
                    Ok(()) => {
                        debug!(
                            activity = schedule.poked(),
                            pending, "visiting (no connection held)"
                        );
                        evicted = false;
                    }
                    Err(wake_at) => {
                        match self.wait(wake_at, true).await {
                            Wake::Cancelled => return Exit::Cancelled,
                            Wake::Poked => {
                                since_read = Since::Written;
                                schedule.poke(Instant::now());
                            }
                            _ => {}
                        }
                        continue;
                    }
                }
            }
            if conn.is_none() {
                self.evict = None;
            }
            let c = match conn.as_mut() {
                Some(c) => c,
                None => {
                    // Work waiting now (activity seen, events waiting at the last pass)
                    // goes before idle visits for a permit, and is not rate-limited.
                    let urgent = schedule.poked() || pending;
                    let r = tokio::select! {
                        r = self.broker.connect_as(&self.name, Purpose::Work, urgent) => r,
                        _ = self.token.cancelled() => return Exit::Cancelled,
                    };
                    match r {
                        Ok(c) => {
                            if let Some(since) = failing_since.take() {
                                info!(after = ?since.elapsed(), "connected again");
                            }
                            probed = false;
                            ticker.reconnected();
                            schedule.set_slack(Duration::ZERO);
                            self.evict = c.tenancy().map(|t| t.evicted());
                            conn.insert(c)
                        }
                        Err(e) if e.action() == Action::Stop => {
                            if self.quiet_missing {
                                debug!(error = %e, "database is still missing");
                            } else {
                                info!(error = %e, "database is gone");
                            }
                            return Exit::Gone;
                        }
                        Err(e) => {
                            self.stats.report.connect_failed(&e);
                            if failing_since.is_none() {
                                warn!(error = %e, "cannot connect; retrying with backoff");
                                failing_since = Some(Instant::now());
                            } else {
                                debug!(error = %e, "cannot connect");
                            }
                            let d = backoff.next_delay();
                            if let Wake::Cancelled = self.wait_until(Instant::now() + d).await {
                                return Exit::Cancelled;
                            }
                            continue;
                        }
                    }
                }
            };
            if let Err(e) = c.apply_timeouts(&cfg).await {
                let e = LaneError::other("set timeouts", e);
                match self.react(None, &e, &mut conn, &mut probed, &mut failing_since) {
                    Some(exit) => return exit,
                    None => {
                        let d = backoff.next_delay();
                        if let Wake::Cancelled = self.wait_until(Instant::now() + d).await {
                            return Exit::Cancelled;
                        }
                        continue;
                    }
                }
            }

            // Not probed on this connection yet (new connection, or pgq looked gone).
            if !probed {
                // Back after handing the connection over (budget): pgq was there a moment
                // ago, and a statement on a vanished pgq sends the task back here anyway
                // (Reprobe); skip the two probe statements, take the fence.
                let known = match (&probe, evicted_since_probe) {
                    (Probe::Pgq(v), true) => Some(Probe::Pgq(v.clone())),
                    _ => None,
                };
                evicted_since_probe = false;
                let found = match known {
                    Some(p) => Ok(p),
                    None => probe_pgq(c).await.map(|(p, tick_set)| {
                        ticker.set_tick_set(tick_set);
                        p
                    }),
                };
                let found = match found {
                    Ok(p) => p,
                    Err(e) => {
                        match self.react(None, &e, &mut conn, &mut probed, &mut failing_since) {
                            Some(exit) => return exit,
                            None => {
                                let d = match e.action() {
                                    Action::Reconnect => backoff.next_delay(),
                                    _ => cfg.check_period,
                                };
                                if let Wake::Cancelled = self.wait_until(Instant::now() + d).await {
                                    return Exit::Cancelled;
                                }
                                continue;
                            }
                        }
                    }
                };
                backoff.reset();
                // A new session, or pgq looked gone: what happened meanwhile is unknown.
                since_read = Since::Written;
                self.log_probe(&probe, &found);
                let newly_serving = !matches!(probe, Probe::Pgq(_));
                probe = found;
                probed = true;
                if !matches!(probe, Probe::Pgq(_)) {
                    tenant = None;
                    self.stats.report.state(DbState::NoPgq);
                    // No connection is kept to a database without pgq.
                    conn = None;
                    if let Wake::Cancelled =
                        self.wait_until(Instant::now() + cfg.check_period).await
                    {
                        return Exit::Cancelled;
                    }
                    continue;
                }
                // The per-database fence: held for as long as this connection lives.
                match take_fence(c).await {
                    Ok(None) => {
                        if fenced_by.take().is_some() {
                            info!("the other pgqd let go of this database; serving it");
                        }
                    }
                    Ok(Some(holder)) => {
                        if fenced_by.as_deref() != Some(holder.as_str()) {
                            warn!(holder = %holder, "another pgqd holds this database's fence; waiting for it to let go");
                            fenced_by = Some(holder);
                        }
                        self.stats.report.state(DbState::Standby);
                        conn = None;
                        probed = false;
                        if let Wake::Cancelled =
                            self.wait_until(Instant::now() + cfg.ticker_period).await
                        {
                            return Exit::Cancelled;
                        }
                        continue;
                    }
                    Err(e) => {
                        if let Some(exit) =
                            self.react(None, &e, &mut conn, &mut probed, &mut failing_since)
                        {
                            return exit;
                        }
                        let d = backoff.next_delay();
                        if let Wake::Cancelled = self.wait_until(Instant::now() + d).await {
                            return Exit::Cancelled;
                        }
                        continue;
                    }
                }
                if newly_serving {
                    schedule = Schedule::new(Instant::now(), super::random_fraction());
                }
                if tenant.is_none() {
                    tenant = Some(self.broker.tenant());
                }
            }

            // Serving: run the lane that is due, or sleep until one is.
            let lane = match schedule.due(Instant::now(), &cfg) {
                Ok(lane) => lane,
                Err(wake_at) => {
                    if let Some(t) = c.tenancy() {
                        // A database that had events lately will likely have more soon.
                        let hot = last_events.is_some_and(|e| e.elapsed() < KEEP_HOT);
                        let now = Instant::now();
                        let need = schedule.next_visit(&cfg);
                        t.next_need(if hot { now } else { need });
                        if !self.broker.pressure() {
                            schedule.set_visited(false);
                        }
                        // More databases than permits: this connection would be taken
                        // before its next visit anyway; hand it back now so connections
                        // follow the databases with work (broker.rs, "Budget").
                        if !hot
                            && !schedule.poked()
                            && need.saturating_duration_since(now) >= RELEASE_AFTER
                            && self.broker.pressure()
                        {
                            self.stats.report.state(DbState::Idle);
                            debug!("connection handed back after the visit (budget)");
                            // The session's counters are flushed as it ends.
                            self.signals.wrote(&self.name, Some(0));
                            schedule.set_visited(true);
                            conn = None;
                            evicted = true;
                            evicted_since_probe = true;
                            continue;
                        }
                    }
                    match self.wait(wake_at, true).await {
                        Wake::Cancelled => return Exit::Cancelled,
                        Wake::Poked => {
                            since_read = Since::Written;
                            schedule.poke(Instant::now());
                            if let Some(t) = c.tenancy() {
                                t.touch();
                            }
                        }
                        Wake::Evicted => {
                            self.stats.report.state(DbState::Idle);
                            debug!("connection handed back (budget)");
                            conn = None;
                            evicted = true;
                            evicted_since_probe = true;
                        }
                        _ => {}
                    }
                    continue;
                }
            };
            let lane_start = Instant::now();
            // Rows the lane wrote, when known (control.rs tells a client's rows from ours).
            let mut wrote: Option<u64> = None;
            // The ticker made ticks, all on queues without events waiting.
            let mut idle_ticks = false;
            let mut collect_since = Since::Written;
            if lane == Lane::Stats {
                let spell = self.signals.live_spell();
                if spell.is_some() && spell == read_spell {
                    collect_since = since_read;
                }
                read_spell = spell;
            }
            let result = match lane {
                Lane::Ticker => ticker
                    .run_once(
                        c,
                        &self.token,
                        &self.signals,
                        self.notify_ticks,
                        schedule.poked(),
                        self.signals.live(),
                    )
                    .instrument(info_span!("ticker"))
                    .await
                    .map(|p| {
                        self.stats.report.pass_ok();
                        schedule.set_busy(p.pending && !p.eager);
                        if let Some(cost) = p.read_cost {
                            schedule.pass_cost = cost;
                        }
                        schedule.set_visit_hint(p.next_tick);
                        pending = p.pending;
                        if p.pending {
                            schedule.set_visited(false);
                        }
                        if p.pending {
                            last_events = Some(Instant::now());
                            if let Some(t) = c.tenancy() {
                                t.touch();
                            }
                        }
                        self.stats.ticks(p.ticked as u64);
                        // One pgq.tick row per tick made; nothing else in a pass writes.
                        wrote = Some(p.ticked as u64);
                        idle_ticks = p.ticked > 0 && !p.pending && p.failed == 0;
                        for _ in 0..p.failed {
                            self.stats.error();
                        }
                        p.next_due
                    }),
                Lane::Retry => retrier
                    .run_once(c, &self.token, &self.signals)
                    .instrument(info_span!("retry"))
                    .await
                    .map(|p| {
                        self.stats.retry(p.moved);
                        if p.moved == 0 {
                            wrote = Some(0);
                        }
                        self.stats.report.retry(p.moved);
                        if p.moved > 0 {
                            debug!(moved = p.moved, "retry events moved");
                        }
                        None
                    }),
                Lane::Maint => maintainer
                    .run_once(c, &self.broker, &self.name, &self.token)
                    .instrument(info_span!("maint"))
                    .await
                    .map(|p| {
                        if p.ops == 0 && p.calls == 0 && p.vacuumed == 0 {
                            wrote = Some(0);
                        }
                        if !p.interrupted {
                            self.stats.report.maint(lane_start.elapsed());
                            self.stats.maint();
                        }
                        for _ in 0..p.failed {
                            self.stats.error();
                        }
                        debug!(
                            ops = p.ops,
                            calls = p.calls,
                            rotations = p.rotations,
                            vacuumed = p.vacuumed,
                            failed = p.failed,
                            "maintenance round"
                        );
                        None
                    }),
                Lane::Stats => collector
                    .run_once(c, &cfg, collect_since)
                    .instrument(info_span!("collect"))
                    .await
                    .map(|col| {
                        self.stats.report.collected(col);
                        None
                    }),
            };
            schedule.done(
                lane,
                Instant::now(),
                result.as_ref().ok().copied().flatten(),
            );
            if lane == Lane::Stats {
                since_read = if result.is_ok() {
                    Since::Nothing
                } else {
                    Since::Written
                };
            } else {
                if idle_ticks {
                    since_read = since_read.max(Since::IdleTicks);
                } else if wrote != Some(0) || result.is_err() {
                    since_read = Since::Written;
                }
                // Our own rows move the database's write counters: not a client's.
                self.signals
                    .wrote(&self.name, if result.is_ok() { wrote } else { None });
            }
            match result {
                Ok(_) => {
                    backoff.reset();
                    if self.failing.remove(&Some(lane)).is_some() {
                        info!(lane = ?lane, "works again");
                    }
                }
                Err(e) => {
                    self.stats.error();
                    if let Some(exit) =
                        self.react(Some(lane), &e, &mut conn, &mut probed, &mut failing_since)
                    {
                        return exit;
                    }
                    if conn.is_none() {
                        let d = backoff.next_delay();
                        if let Wake::Cancelled = self.wait_until(Instant::now() + d).await {
                            return Exit::Cancelled;
                        }
                    }
                }
            }
        }
    }

    /// Applies the classified reaction to a lane error: may end the task, drop the
    /// connection, or send the task back to probing.
    fn react(
        &mut self,
        lane: Option<Lane>,
        e: &LaneError,
        conn: &mut Option<DbConn>,
        probed: &mut bool,
        failing_since: &mut Option<Instant>,
    ) -> Option<Exit> {
        if let Some(c) = conn.as_mut() {
            c.forget_prepared();
        }
        self.stats
            .report
            .lane_error(e, matches!(lane, None | Some(Lane::Ticker)));
        let sqlstate = e.error.sqlstate().unwrap_or("");
        match e.action() {
            Action::Stop => {
                info!(statement = %e.statement, sqlstate, error = %e.error, "database is gone");
                Some(Exit::Gone)
            }
            Action::Reprobe => {
                // The probe that follows logs the state change.
                debug!(statement = %e.statement, sqlstate, error = %e.error, "pgq missing; probing again");
                *probed = false;
                None
            }
            Action::Reconnect => {
                if failing_since.is_none() {
                    if self.lost_warned.is_some_and(|t| t.elapsed() < LOST_AGAIN) {
                        debug!(statement = %e.statement, sqlstate, error = %e.error, "connection lost again; reconnecting");
                    } else {
                        warn!(statement = %e.statement, sqlstate, error = %e.error, "connection lost; reconnecting");
                        self.lost_warned = Some(Instant::now());
                    }
                    *failing_since = Some(Instant::now());
                }
                // A new connection is probed again (quietly, unless the answer changed).
                *conn = None;
                *probed = false;
                None
            }
            Action::Retry => {
                if self.failing.get(&lane).map(String::as_str) == Some(sqlstate) {
                    debug!(statement = %e.statement, sqlstate, error = %e.error, "statement still failing");
                } else {
                    warn!(statement = %e.statement, sqlstate, error = %e.error, "statement failed; retrying next period");
                    self.failing.insert(lane, sqlstate.to_string());
                }
                None
            }
        }
    }

    fn log_probe(&self, old: &Probe, new: &Probe) {
        match (old, new) {
            (Probe::Pgq(a), Probe::Pgq(b)) if a != b => {
                info!(version = %b, previous = %a, "pgq version changed")
            }
            (Probe::Pgq(_), Probe::Pgq(_)) => debug!("pgq still there"),
            (_, Probe::Pgq(v)) => info!(version = %v, "pgq found"),
            (Probe::Pgq(_), Probe::NoPgq) => info!("pgq is gone; probing again every check_period"),
            (_, Probe::NoPgq) => debug!("no pgq; probing again every check_period"),
            (Probe::BadVersion(a), Probe::BadVersion(b)) if a == b => {}
            (_, Probe::BadVersion(v)) => {
                warn!(version = ?v, "schema pgq is here but pgq.version() is missing or not 3 or later (another pgq version, or a half-installed schema); ignoring this database until it changes")
            }
            (_, Probe::NotYet) => {}
        }
    }
}

async fn wait_evict(n: &Option<Arc<Notify>>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// Takes the per-database fence as a session lock: None when held, or who holds it.
async fn take_fence(c: &mut DbConn) -> Result<Option<String>, LaneError> {
    let rows = c
        .query(sql::TRY_SESSION_LOCK, &[&sql::FENCE_KEY])
        .await
        .map_err(|e| LaneError::other("take the database fence", e))?;
    if rows
        .first()
        .and_then(|r| r.try_get::<_, bool>(0).ok())
        .unwrap_or(false)
    {
        return Ok(None);
    }
    Ok(Some(
        super::control::lock_holder(c, sql::FENCE_KEY)
            .await
            .unwrap_or_else(|e| e),
    ))
}

/// Probes for pgq: the schema, then `pgq.version()`, which must start with a major version
/// of at least 3 (C pgqd compares the first byte with '3'; ours parses the number, so
/// "10.0" also counts). Also tells whether pgq has `pgq._ticker_batch` ([`sql::TICK_SET`]).
async fn probe_pgq(c: &mut DbConn) -> Result<(Probe, bool), LaneError> {
    let rows = c
        .query(sql::PROBE_SCHEMA, &[])
        .await
        .map_err(|e| LaneError::core("probe pgq schema", e))?;
    let exists: bool = rows
        .first()
        .and_then(|r| r.try_get(0).ok())
        .unwrap_or(false);
    if !exists {
        return Ok((Probe::NoPgq, false));
    }
    let (version, tick_set): (Option<String>, bool) = match c.query(sql::PROBE_VERSION, &[]).await {
        Ok(rows) => rows.first().map_or((None, false), |r| {
            (
                r.try_get(0).ok().flatten(),
                r.try_get(1).ok().unwrap_or(false),
            )
        }),
        Err(e) => match e.action(true) {
            // Schema without a version function (a half-installed schema, or dropped
            // between the two statements): not usable; warned about once, like a wrong
            // version, so a broken install does not go unnoticed.
            Action::Reprobe => return Ok((Probe::BadVersion(None), false)),
            _ => return Err(LaneError::core("select pgq.version()", e)),
        },
    };
    Ok(match version {
        Some(v) if version_usable(&v) => (Probe::Pgq(v), tick_set),
        other => (Probe::BadVersion(other), false),
    })
}

/// Whether a `pgq.version()` answer is 3 or later.
pub fn version_usable(v: &str) -> bool {
    let major: String = v.trim().chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|m| m >= 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            ticker_period: Duration::from_millis(1000),
            retry_period: Duration::from_secs(30),
            maint_period: Duration::from_secs(120),
            ..Config::default()
        }
    }

    #[test]
    fn a_database_without_a_connection_comes_back_for_ticks_not_looks() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 0.0);
        let c = Config {
            check_period: Duration::from_secs(60),
            ..cfg()
        };
        s.set_sweep(Some(Duration::from_secs(60)));
        s.done(Lane::Ticker, t0, Some(Duration::from_secs(3)));
        s.set_visit_hint(Some(Duration::from_secs(57)));
        // Connected: look at the max_lag moment; without a connection: at the idle tick.
        assert_eq!(
            s.next(Lane::Ticker, &c),
            t0 + Duration::from_secs(3) + DUE_MARGIN
        );
        assert_eq!(s.next_visit(&c), t0 + Duration::from_secs(57) + DUE_MARGIN);
        // The slack of a long-quiet database moves its sweep too.
        s.set_slack(EVICTED_SLACK);
        assert_eq!(
            s.next_visit(&c),
            t0 + Duration::from_secs(57) + DUE_MARGIN + EVICTED_SLACK
        );
        // Nothing predicted: the sweep (with the slack).
        s.set_visit_hint(None);
        assert_eq!(
            s.next_visit(&c),
            t0 + Duration::from_secs(60) + EVICTED_SLACK
        );
        // Activity brings it forward.
        s.poke(t0 + Duration::from_secs(1));
        assert_eq!(s.visit_due(t0 + Duration::from_secs(1), &c), Ok(()));
    }

    #[test]
    fn visited_databases_collect_metrics_less_often() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 0.0);
        let c = Config {
            stats_period: Duration::from_secs(30),
            metrics_listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..cfg()
        };
        s.done(Lane::Stats, t0, None);
        assert_eq!(s.next(Lane::Stats, &c), t0 + Duration::from_secs(30));
        s.set_visited(true);
        assert_eq!(s.next(Lane::Stats, &c), t0 + VISITED_STATS_PERIOD);
        s.set_visited(false);
        assert_eq!(s.next(Lane::Stats, &c), t0 + Duration::from_secs(30));
    }

    #[test]
    fn versions() {
        assert!(version_usable("3.5"));
        assert!(version_usable("3.5.2"));
        assert!(version_usable("10.0"));
        assert!(!version_usable("2.1"));
        assert!(!version_usable(""));
        assert!(!version_usable("x"));
    }

    #[test]
    fn ticker_runs_first_then_jittered_retry_and_maint() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 0.5);
        let c = cfg();
        assert_eq!(s.due(t0, &c), Ok(Lane::Ticker));
        s.done(Lane::Ticker, t0, None);
        // retry jitter: half of min(30s/10, 5s) = 1.5s
        assert_eq!(s.due(t0, &c), Err(t0 + Duration::from_millis(1000)));
        let t1 = t0 + Duration::from_millis(1500);
        assert_eq!(s.due(t1, &c), Ok(Lane::Ticker));
        s.done(Lane::Ticker, t1, None);
        assert_eq!(s.due(t1, &c), Ok(Lane::Retry));
        s.done(Lane::Retry, t1, None);
        assert_eq!(s.next(Lane::Retry, &c), t1 + Duration::from_secs(30));
        assert_eq!(s.next(Lane::Maint, &c), t0 + Duration::from_millis(2500));
    }

    #[test]
    fn predicted_due_time_shortens_the_ticker_sleep_but_never_lengthens_it() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 0.0);
        let c = cfg();
        s.done(Lane::Ticker, t0, Some(Duration::from_millis(100)));
        assert_eq!(s.next(Lane::Ticker, &c), t0 + Duration::from_millis(102));
        s.done(Lane::Ticker, t0, Some(Duration::from_secs(50)));
        assert_eq!(s.next(Lane::Ticker, &c), t0 + Duration::from_secs(1));
    }

    #[test]
    fn reload_applies_new_period_to_the_next_run() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 0.0);
        s.done(Lane::Ticker, t0, None);
        let mut c = cfg();
        assert_eq!(s.next(Lane::Ticker, &c), t0 + Duration::from_secs(1));
        c.ticker_period = Duration::from_millis(50);
        assert_eq!(s.next(Lane::Ticker, &c), t0 + Duration::from_millis(50));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let mut b = Backoff::default();
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        for _ in 0..20 {
            b.next_delay();
        }
        let d = b.next_delay();
        assert!(d >= BACKOFF_MAX / 2 && d <= BACKOFF_MAX, "{d:?}");
        b.reset();
        assert!(b.next_delay() <= BACKOFF_START);
        b.set_max(Duration::from_secs(1));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
    }
}
