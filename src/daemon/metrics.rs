//! What the daemon knows about its databases, for `/metrics`, `/readyz` and systemd's
//! `STATUS=` line (issue #6).
//!
//! [`Metrics`] is shared by the supervisor (one [`DbReport`] per database task), the HTTP
//! endpoint (`crate::http`) and `main` (the status line). A database task reports through
//! its [`DbReport`]: its [`DbState`], each successful ticker pass, each tick made with its
//! lateness, maintenance rounds with their duration, retry events moved, errors by
//! SQLSTATE, and the collector's figures ([`Collected`], from `collect.rs` every
//! `stats_period`). Nothing here touches the database.
//!
//! Label sets stay bounded: the registry holds each database's slot weakly, so a database
//! whose task ended (dropped, removed from `database_list`) disappears from the next
//! scrape; queue and consumer series are those of the latest collection, so dropped queues
//! and consumers vanish too. Lateness and maintenance histograms are per database, not per
//! queue, to keep the series count at a few per queue.
//!
//! The exposition is built at scrape time by a `prometheus_client` [`Collector`] from a
//! copy of the slots, so a scrape never holds a lock across encoding.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::broker::{Broker, Purpose};
use super::ticker::{QueueState, due_in};
use crate::config::Config;

/// Upper bounds (seconds) of the tick lateness histogram.
const LATENESS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds (seconds) of the maintenance round duration histogram.
const MAINT_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0];
/// How long a database may stay "starting" (connecting, first probe) before `/readyz`
/// counts it as not ready.
const START_GRACE: Duration = Duration::from_secs(10);
/// Slack on top of twice the longest wait between due checks before a ticking database
/// counts as stale: a maintenance round or a slow statement may hold the ticker lane that
/// long.
const STALE_SLACK: Duration = Duration::from_secs(10);

/// What a database task is doing, as reported by the task itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbState {
    /// Connecting or probing for the first time.
    Starting,
    /// pgq found; the ticker lane runs.
    Ticking,
    /// No usable pgq (schema missing or version below 3); probed every check_period.
    NoPgq,
    /// Cannot connect, lost the connection, or the ticker pass fails; the reason says which.
    Failing(String),
    /// Another daemon leads this database (#8); this one stands by.
    Standby,
    /// Evicted by the connection budget as quiet (#7); woken by activity.
    Idle,
}

impl DbState {
    /// The `state` label value.
    pub fn label(&self) -> &'static str {
        match self {
            DbState::Starting => "starting",
            DbState::Ticking => "ticking",
            DbState::NoPgq => "no_pgq",
            DbState::Failing(_) => "failing",
            DbState::Standby => "standby",
            DbState::Idle => "idle",
        }
    }

    /// Every state, in the order the status line lists them.
    pub const LABELS: [&'static str; 6] = [
        "ticking", "failing", "standby", "idle", "no_pgq", "starting",
    ];
}

/// One queue as the collector saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueInfo {
    /// Queue name.
    pub name: String,
    /// Age of the latest tick at collection, seconds.
    pub tick_lag: Option<f64>,
    /// Events per second over the latest ticks.
    pub ev_per_sec: Option<f64>,
    /// Events not yet in a tick.
    pub ev_new: Option<i64>,
    /// Latest tick id.
    pub last_tick_id: Option<i64>,
    /// Seconds since the last rotation.
    pub rotation_age: Option<f64>,
    /// `queue_rotation_period`, seconds.
    pub rotation_period: Option<f64>,
    /// Events waiting in the retry queue.
    pub retry_events: i64,
}

/// One consumer subscription as the collector saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumerInfo {
    /// Queue name.
    pub queue: String,
    /// Consumer name.
    pub name: String,
    /// Age of the consumer's position (its last finished tick), seconds.
    pub lag: Option<f64>,
    /// Seconds since the consumer last finished a batch or registered.
    pub last_seen: Option<f64>,
    /// Tick id of the consumer's position.
    pub last_tick: Option<i64>,
    /// Events between the consumer's position and the latest tick.
    pub pending_events: Option<i64>,
    /// Whether it holds up rotation of its queue.
    pub blocks_rotation: bool,
    /// Whether its lag is above `consumer_lag_warning`.
    pub lagging: bool,
}

/// What one collection found.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    /// The queues (shared with the collector, which keeps its last read).
    pub queues: Arc<Vec<QueueInfo>>,
    /// The consumers of all queues.
    pub consumers: Vec<ConsumerInfo>,
    /// Consumers this collection unregistered (`consumer_unregister_after`).
    pub unregistered: u64,
    /// The figures are the last read's: nothing was written since (collect.rs).
    pub aged: bool,
    /// When the figures were read; ages are reported as of the scrape from here.
    pub read_at: Instant,
}

/// A classic histogram: non-cumulative bucket counts plus the overflow bucket.
#[derive(Debug, Clone)]
struct Hist {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Hist {
    fn new(bounds: &'static [f64]) -> Hist {
        Hist {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied())
            .collect()
    }
}

/// Per-queue tick bookkeeping of the daemon itself.
#[derive(Debug, Clone)]
struct QueueTicks {
    ticks: u64,
    last: Instant,
    /// The id of the latest tick this daemon made.
    last_id: i64,
}

#[derive(Debug, Clone)]
struct DbInner {
    state: DbState,
    state_since: Instant,
    last_pass: Option<Instant>,
    queues: BTreeMap<String, QueueTicks>,
    lateness: Hist,
    maint: Hist,
    retry_moved: u64,
    errors: BTreeMap<String, u64>,
    collected: Option<Collected>,
    unregistered: u64,
    /// Collections that read the database …
    reads: u64,
    /// … and that handed the last read on (nothing written since).
    aged: u64,
}

/// One database's slot.
#[derive(Debug)]
struct DbSlot {
    inner: Mutex<DbInner>,
}

/// A database task's handle on its slot; cheap to clone. A detached handle (not from
/// [`Metrics::database`]) records into a slot nobody reads.
#[derive(Debug, Clone)]
pub struct DbReport {
    slot: Arc<DbSlot>,
}

impl Default for DbReport {
    fn default() -> Self {
        DbReport::detached()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the figures inconsistent in a way that
    // matters more than losing them; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DbReport {
    /// A handle that belongs to no registry.
    pub fn detached() -> DbReport {
        DbReport {
            slot: Arc::new(DbSlot {
                inner: Mutex::new(DbInner {
                    state: DbState::Starting,
                    state_since: Instant::now(),
                    last_pass: None,
                    queues: BTreeMap::new(),
                    lateness: Hist::new(LATENESS_BUCKETS),
                    maint: Hist::new(MAINT_BUCKETS),
                    retry_moved: 0,
                    errors: BTreeMap::new(),
                    collected: None,
                    unregistered: 0,
                    reads: 0,
                    aged: 0,
                }),
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut DbInner) -> R) -> R {
        f(&mut lock(&self.slot.inner))
    }

    /// The task's state changed (or was confirmed; an unchanged state keeps its start).
    pub fn state(&self, state: DbState) {
        self.with(|i| {
            if i.state.label() != state.label() {
                i.state_since = Instant::now();
            }
            // Queue figures of a database this daemon does not serve would only go stale
            // (and a standby must not look like a second leader); a failing or evicted
            // one keeps its last figures.
            if matches!(state, DbState::NoPgq | DbState::Standby | DbState::Starting) {
                i.collected = None;
                i.queues.clear();
            }
            i.state = state;
        })
    }

    /// The current state.
    pub fn current(&self) -> DbState {
        self.with(|i| i.state.clone())
    }

    /// A ticker pass finished without a database-wide error: the database ticks.
    pub fn pass_ok(&self) {
        self.with(|i| {
            i.last_pass = Some(Instant::now());
            if i.state.label() != "ticking" {
                i.state = DbState::Ticking;
                i.state_since = Instant::now();
            }
        })
    }

    /// Tick `id` was made on `queue`, `late` after it became due (None: unknown).
    pub fn tick(&self, queue: &str, id: i64, late: Option<Duration>) {
        self.with(|i| {
            let now = Instant::now();
            match i.queues.get_mut(queue) {
                Some(q) => {
                    q.ticks += 1;
                    q.last = now;
                    q.last_id = id;
                }
                None => {
                    i.queues.insert(
                        queue.to_string(),
                        QueueTicks {
                            ticks: 1,
                            last: now,
                            last_id: id,
                        },
                    );
                }
            }
            if let Some(l) = late {
                i.lateness.observe(l.as_secs_f64());
            }
        })
    }

    /// A maintenance round finished after `took`.
    pub fn maint(&self, took: Duration) {
        self.with(|i| i.maint.observe(took.as_secs_f64()))
    }

    /// `n` retry events were moved back into their queues.
    pub fn retry(&self, n: u64) {
        self.with(|i| i.retry_moved += n)
    }

    /// A statement or connection attempt failed with `sqlstate` ("" when the client side
    /// failed: closed socket, timeout).
    pub fn error(&self, sqlstate: &str) {
        let key = if sqlstate.is_empty() {
            "none"
        } else {
            sqlstate
        };
        self.with(|i| *i.errors.entry(key.to_string()).or_insert(0) += 1)
    }

    /// A connection attempt failed (the task retries with backoff).
    pub fn connect_failed(&self, e: &super::broker::ConnectError) {
        let sqlstate = match e {
            super::broker::ConnectError::Server(pg) => crate::pgerr::sqlstate(pg).unwrap_or(""),
            _ => "",
        };
        self.error(sqlstate);
        self.state(DbState::Failing(format!("cannot connect: {e}")));
    }

    /// A lane failed with `e`. `ticking` says whether the failure stops ticks (the ticker
    /// lane, the probe, the session setup): then, or when the connection is lost, the
    /// database counts as failing until the next good ticker pass. A failed maintenance
    /// or collection round is only counted.
    pub fn lane_error(&self, e: &super::classify::LaneError, ticking: bool) {
        use super::classify::Action;
        if matches!(e.error, super::broker::StmtError::Fenced) {
            // Another pgqd took this database's fence: the task reconnects and, finding
            // the fence held, reports itself as standby. Not a failure of this database.
            return;
        }
        self.error(e.error.sqlstate().unwrap_or(""));
        match e.action() {
            Action::Reconnect => self.state(DbState::Failing(format!("connection lost: {e}"))),
            Action::Retry if ticking => self.state(DbState::Failing(e.to_string())),
            _ => {}
        }
    }

    /// The collector's latest figures; queues that are gone lose their series.
    pub fn collected(&self, c: Collected) {
        self.with(|i| {
            i.queues
                .retain(|name, _| c.queues.iter().any(|q| &q.name == name));
            i.unregistered += c.unregistered;
            if c.aged {
                i.aged += 1;
            } else {
                i.reads += 1;
            }
            i.collected = Some(c);
        })
    }
}

/// How late a tick made now is: how long the queue had been due at the due check
/// (`checked` ago) plus `checked`. None when the due time cannot be told (no previous tick).
///
/// The due time comes from the ticker's own prediction, [`due_in`], evaluated as if the
/// latest tick were brand new: that gives the lag at which the queue becomes due. A queue
/// due because `max_count` events piled up has no known due instant; it counts from the
/// due check.
pub fn lateness(q: &QueueState, checked: Duration) -> Option<Duration> {
    let lag = q.lag.filter(|_| q.has_tick)?;
    let by_count = matches!((q.event_seq, q.tick_event_seq),
        (Some(s), Some(t)) if s - t >= q.max_count && s > t);
    if by_count || q.prev_gap.is_none() && q.event_seq <= q.tick_event_seq {
        return Some(checked);
    }
    let fresh = QueueState {
        lag: Some(0.0),
        ..q.clone()
    };
    let due_at = due_in(&fresh)?.as_secs_f64();
    let overdue = (lag - due_at).max(0.0);
    Some(Duration::from_secs_f64(overdue.min(1e9)) + checked)
}

/// The shared registry of database slots; see the module docs.
#[derive(Debug)]
pub struct Metrics {
    dbs: Mutex<BTreeMap<String, Weak<DbSlot>>>,
    broker: OnceLock<Broker>,
    discovered: std::sync::atomic::AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            dbs: Mutex::new(BTreeMap::new()),
            broker: OnceLock::new(),
            discovered: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// A copy of one database's figures, taken for one scrape.
struct DbView {
    name: String,
    inner: DbInner,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// 200 when true, 503 otherwise.
    pub ready: bool,
    /// One line per database that is not ready, or a one-line summary.
    pub text: String,
}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// A fresh slot for a database task (replacing a previous task's slot of that name).
    pub fn database(&self, name: &str) -> DbReport {
        let r = DbReport::detached();
        lock(&self.dbs).insert(name.to_string(), Arc::downgrade(&r.slot));
        r
    }

    /// Lets the scrape read the broker's connection counts.
    pub fn set_broker(&self, broker: Broker) {
        let _ = self.broker.set(broker);
    }

    /// The first discovery attempt has finished (before it, `/readyz` says "starting").
    pub fn discovery_done(&self) {
        self.discovered
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a database has figures worth series of their own (one without pgq would
    /// add a dozen empty histogram series per database).
    fn served(i: &DbInner) -> bool {
        matches!(
            i.state,
            DbState::Ticking | DbState::Failing(_) | DbState::Idle
        ) || i.last_pass.is_some()
    }

    fn views(&self) -> Vec<DbView> {
        let mut dbs = lock(&self.dbs);
        dbs.retain(|_, w| w.strong_count() > 0);
        dbs.iter()
            .filter_map(|(name, w)| {
                let slot = w.upgrade()?;
                let inner = lock(&slot.inner).clone();
                Some(DbView {
                    name: name.clone(),
                    inner,
                })
            })
            .collect()
    }

    /// Databases per state label.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        // Called every second for the status line: read the labels, copy nothing.
        let mut m = BTreeMap::new();
        for w in lock(&self.dbs).values() {
            if let Some(slot) = w.upgrade() {
                *m.entry(lock(&slot.inner).state.label()).or_insert(0) += 1;
            }
        }
        m
    }

    /// The one-line summary for systemd's `STATUS=`: "98 databases ticking, 2 failing".
    pub fn summary(&self) -> String {
        if !self.discovered.load(std::sync::atomic::Ordering::Relaxed) {
            return "starting".into();
        }
        summary_line(&self.counts())
    }

    /// Whether every database this daemon leads ticked within its expected period: twice
    /// the longest wait between due checks (`check_period`, the sweep while the activity
    /// signal works, or `ticker_period`) plus slack; see [`Readiness`].
    pub fn readiness(&self, cfg: &Config) -> Readiness {
        if !self.discovered.load(std::sync::atomic::Ordering::Relaxed) {
            return Readiness {
                ready: false,
                text: "starting: the first discovery has not finished\n".into(),
            };
        }
        let limit = cfg.ticker_period.max(cfg.check_period) * 2 + STALE_SLACK;
        let mut bad = String::new();
        let (mut leading, mut standby) = (0, 0);
        for v in self.views() {
            let i = &v.inner;
            match &i.state {
                DbState::Ticking => {
                    leading += 1;
                    let age = i.last_pass.map(|t| t.elapsed());
                    if age.is_none_or(|a| a > limit) {
                        let _ = writeln!(
                            bad,
                            "{}: no ticker pass for {} (expected within {})",
                            v.name,
                            humantime::format_duration(round(
                                age.unwrap_or(i.state_since.elapsed())
                            )),
                            humantime::format_duration(limit)
                        );
                    }
                }
                DbState::Failing(why) => {
                    leading += 1;
                    let _ = writeln!(bad, "{}: failing: {why}", v.name);
                }
                DbState::Starting if i.state_since.elapsed() > START_GRACE => {
                    let _ = writeln!(
                        bad,
                        "{}: still starting after {}",
                        v.name,
                        humantime::format_duration(round(i.state_since.elapsed()))
                    );
                }
                DbState::Standby => standby += 1,
                _ => {}
            }
        }
        if !bad.is_empty() {
            return Readiness {
                ready: false,
                text: bad,
            };
        }
        let text = if leading == 0 && standby > 0 {
            format!("standby: {standby} databases led by another daemon\n")
        } else {
            format!("ready: {}\n", self.summary())
        };
        Readiness { ready: true, text }
    }

    /// The OpenMetrics text exposition of everything.
    pub fn encode(self: &Arc<Self>) -> String {
        let mut reg = Registry::default();
        reg.register_collector(Box::new(Scrape(self.clone())));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// "3 databases ticking, 1 failing, 2 without pgq"; "no databases" when empty.
pub fn summary_line(counts: &BTreeMap<&'static str, usize>) -> String {
    let mut parts = Vec::new();
    for label in DbState::LABELS {
        let n = counts.get(label).copied().unwrap_or(0);
        if n == 0 {
            continue;
        }
        let what = match label {
            "no_pgq" => "without pgq",
            "idle" => "idle",
            other => other,
        };
        if parts.is_empty() {
            let noun = if n == 1 { "database" } else { "databases" };
            parts.push(format!("{n} {noun} {what}"));
        } else {
            parts.push(format!("{n} {what}"));
        }
    }
    if parts.is_empty() {
        "no databases".into()
    } else {
        parts.join(", ")
    }
}

/// A queue's value from its collected figures, seconds since they were read, and this
/// daemon's latest tick of it (seconds since, and its id).
type QueueFigure = dyn Fn(&QueueInfo, f64, Option<OurTick>) -> Option<f64>;

/// Seconds since this daemon's latest tick of a queue, and its id.
type OurTick = (f64, i64);

/// The scrape-time collector.
#[derive(Debug)]
struct Scrape(Arc<Metrics>);

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn gauge_family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter_family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One histogram per database.
fn histogram_family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (&'a str, &'a Hist)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (db, h) in rows {
        let labels: Labels = vec![("database", db)];
        m.encode_family(&labels)?
            .encode_histogram::<Labels>(h.sum, h.count, &h.buckets(), None)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let views = self.0.views();
        let e = &mut enc;

        let info = [(vec![("version", env!("CARGO_PKG_VERSION"))] as Labels, 1.0)];
        gauge_family(e, "pgqd_build_info", "pgqd version (always 1)", info)?;

        let mut counts: BTreeMap<&str, usize> = DbState::LABELS.iter().map(|l| (*l, 0)).collect();
        for v in &views {
            *counts.entry(v.inner.state.label()).or_insert(0) += 1;
        }
        gauge_family(
            e,
            "pgqd_databases",
            "Databases by state",
            counts
                .iter()
                .map(|(s, n)| (vec![("state", *s)] as Labels, *n as f64)),
        )?;
        gauge_family(
            e,
            "pgqd_database_state",
            "1 for the state each database is in (ticking, no_pgq, failing, standby, idle, starting)",
            views.iter().map(|v| {
                (
                    vec![
                        ("database", v.name.as_str()),
                        ("state", v.inner.state.label()),
                    ],
                    1.0,
                )
            }),
        )?;
        gauge_family(
            e,
            "pgqd_database_last_pass_age_seconds",
            "Seconds since the last successful ticker pass of a database this daemon ticks",
            views.iter().filter_map(|v| {
                let leads = matches!(v.inner.state, DbState::Ticking | DbState::Failing(_));
                let t = v.inner.last_pass.filter(|_| leads)?;
                Some((
                    vec![("database", v.name.as_str())],
                    t.elapsed().as_secs_f64(),
                ))
            }),
        )?;
        counter_family(
            e,
            "pgqd_ticks",
            "Ticks made by this daemon",
            views.iter().flat_map(|v| {
                v.inner.queues.iter().map(move |(q, t)| {
                    (
                        vec![("database", v.name.as_str()), ("queue", q.as_str())],
                        t.ticks,
                    )
                })
            }),
        )?;
        let served = || views.iter().filter(|v| Metrics::served(&v.inner));
        histogram_family(
            e,
            "pgqd_tick_lateness_seconds",
            "How long after a queue became due its tick was made",
            served().map(|v| (v.name.as_str(), &v.inner.lateness)),
        )?;
        histogram_family(
            e,
            "pgqd_maint_duration_seconds",
            "Duration of maintenance rounds (the count is the number of rounds)",
            served().map(|v| (v.name.as_str(), &v.inner.maint)),
        )?;
        counter_family(
            e,
            "pgqd_retry_events_moved",
            "Retry events moved back into their queues",
            views
                .iter()
                .filter(|v| Metrics::served(&v.inner))
                .map(|v| (vec![("database", v.name.as_str())], v.inner.retry_moved)),
        )?;
        counter_family(
            e,
            "pgqd_errors",
            "Failed statements and connection attempts by SQLSTATE (none: client side)",
            views.iter().flat_map(|v| {
                v.inner.errors.iter().map(move |(s, n)| {
                    (
                        vec![("database", v.name.as_str()), ("sqlstate", s.as_str())],
                        *n,
                    )
                })
            }),
        )?;
        counter_family(
            e,
            "pgqd_consumers_unregistered",
            "Consumers unregistered by the consumer_unregister_after policy",
            views
                .iter()
                .filter(|v| Metrics::served(&v.inner))
                .map(|v| (vec![("database", v.name.as_str())], v.inner.unregistered)),
        )?;
        counter_family(
            e,
            "pgqd_collections",
            "Collections of queue and consumer figures: read from the database, or the last \
             read aged (nothing written since)",
            views
                .iter()
                .filter(|v| Metrics::served(&v.inner))
                .flat_map(|v| {
                    [("read", v.inner.reads), ("aged", v.inner.aged)]
                        .into_iter()
                        .map(move |(source, n)| {
                            (vec![("database", v.name.as_str()), ("source", source)], n)
                        })
                }),
        )?;

        // Queue and consumer figures of the latest collection.
        let queues: Vec<(&str, &QueueInfo, f64, Option<OurTick>)> = views
            .iter()
            .filter_map(|v| v.inner.collected.as_ref().map(|c| (v, c)))
            .flat_map(|(v, c)| {
                let since = c.read_at.elapsed().as_secs_f64();
                c.queues.iter().map(move |q| {
                    let ours = v.inner.queues.get(&q.name);
                    let ours = ours.map(|t| (t.last.elapsed().as_secs_f64(), t.last_id));
                    (v.name.as_str(), q, since, ours)
                })
            })
            .collect();
        let qlabels = |db: &str, name: &str| -> Vec<(&'static str, String)> {
            vec![("database", db.to_string()), ("queue", name.to_string())]
        };
        let qg = |e: &mut DescriptorEncoder,
                  name: &str,
                  help: &str,
                  f: &QueueFigure|
         -> Result<(), std::fmt::Error> {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (db, q, since, ours) in &queues {
                if let Some(v) = f(q, *since, *ours) {
                    ConstGauge::new(v).encode(m.encode_family(&qlabels(db, &q.name))?)?;
                }
            }
            Ok(())
        };
        qg(
            e,
            "pgqd_queue_last_tick_age_seconds",
            "Seconds since the queue's latest tick",
            &|q, since, ours| {
                let collected = q.tick_lag.map(|l| l + since);
                match (collected, ours.map(|(age, _)| age)) {
                    (Some(c), Some(o)) => Some(c.min(o)),
                    (c, o) => c.or(o),
                }
            },
        )?;
        qg(
            e,
            "pgqd_queue_events_per_second",
            "Events per second over the queue's latest ticks",
            &|q, _, _| Some(q.ev_per_sec.unwrap_or(0.0)),
        )?;
        qg(
            e,
            "pgqd_queue_new_events",
            "Events inserted since the queue's latest tick",
            &|q, _, _| q.ev_new.map(|n| n as f64),
        )?;
        qg(
            e,
            "pgqd_queue_last_tick_id",
            "The queue's latest tick id",
            // Ours when made after the read (idle ticks do not make the figures read again).
            &|q, since, ours| match ours {
                Some((age, id)) if age <= since => Some(id as f64),
                _ => q.last_tick_id.map(|n| n as f64),
            },
        )?;
        qg(
            e,
            "pgqd_queue_rotation_age_seconds",
            "Seconds since the queue's event tables last rotated",
            &|q, since, _| q.rotation_age.map(|a| a + since),
        )?;
        qg(
            e,
            "pgqd_queue_rotation_period_seconds",
            "The queue's rotation period",
            &|q, _, _| q.rotation_period,
        )?;
        qg(
            e,
            "pgqd_queue_retry_events",
            "Events waiting in the retry queue",
            &|q, _, _| Some(q.retry_events as f64),
        )?;
        {
            let mut m = e.encode_descriptor(
                "pgqd_queue_rotation_blocked",
                "1 when the queue is due to rotate but a consumer's position holds it up",
                None,
                MetricType::Gauge,
            )?;
            for v in &views {
                let Some(c) = &v.inner.collected else {
                    continue;
                };
                for q in c.queues.iter() {
                    let blocked = c
                        .consumers
                        .iter()
                        .any(|k| k.queue == q.name && k.blocks_rotation);
                    ConstGauge::new(if blocked { 1.0 } else { 0.0 })
                        .encode(m.encode_family(&qlabels(&v.name, &q.name))?)?;
                }
            }
        }

        let consumers: Vec<(&str, &ConsumerInfo, f64)> = views
            .iter()
            .filter_map(|v| v.inner.collected.as_ref().map(|c| (v, c)))
            .flat_map(|(v, c)| {
                let since = c.read_at.elapsed().as_secs_f64();
                c.consumers.iter().map(move |k| (v.name.as_str(), k, since))
            })
            .collect();
        let cg = |e: &mut DescriptorEncoder,
                  name: &str,
                  help: &str,
                  f: &dyn Fn(&ConsumerInfo, f64) -> Option<f64>|
         -> Result<(), std::fmt::Error> {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (db, k, since) in &consumers {
                if let Some(v) = f(k, *since) {
                    let labels: Labels = vec![
                        ("database", db),
                        ("queue", k.queue.as_str()),
                        ("consumer", k.name.as_str()),
                    ];
                    ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
                }
            }
            Ok(())
        };
        cg(
            e,
            "pgqd_consumer_lag_seconds",
            "Age of the consumer's position (its last finished tick)",
            &|k, since| k.lag.map(|l| l + since),
        )?;
        cg(
            e,
            "pgqd_consumer_last_seen_seconds",
            "Seconds since the consumer last finished a batch",
            &|k, since| k.last_seen.map(|s| s + since),
        )?;
        cg(
            e,
            "pgqd_consumer_pending_events",
            "Events between the consumer's position and the latest tick",
            &|k, _| k.pending_events.map(|n| n as f64),
        )?;
        cg(
            e,
            "pgqd_consumer_lagging",
            "1 when the consumer's lag is above consumer_lag_warning",
            &|k, _| Some(if k.lagging { 1.0 } else { 0.0 }),
        )?;
        cg(
            e,
            "pgqd_consumer_blocks_rotation",
            "1 when the consumer's position holds up its queue's rotation",
            &|k, _| Some(if k.blocks_rotation { 1.0 } else { 0.0 }),
        )?;

        if let Some(b) = self.0.broker.get() {
            let purposes = [
                (Purpose::Work, "work"),
                (Purpose::Vacuum, "vacuum"),
                (Purpose::Discovery, "discovery"),
                (Purpose::Control, "control"),
            ];
            gauge_family(
                e,
                "pgqd_connections_open",
                "Database connections open now, by purpose",
                purposes
                    .iter()
                    .map(|(p, l)| (vec![("purpose", *l)] as Labels, b.open(*p) as f64)),
            )?;
            counter_family(
                e,
                "pgqd_connections_opened",
                "Database connections opened since start, by purpose",
                purposes
                    .iter()
                    .map(|(p, l)| (vec![("purpose", *l)] as Labels, b.opened(*p))),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> QueueState {
        QueueState {
            name: "q".into(),
            skip: false,
            max_count: 500,
            max_lag: 3.0,
            idle_period: 60.0,
            has_tick: true,
            lag: Some(0.5),
            tick_event_seq: Some(10),
            prev_gap: Some(1.0),
            event_seq: Some(10),
            version: "1".into(),
        }
    }

    fn ms(d: Option<Duration>) -> Option<u128> {
        d.map(|d| d.as_millis())
    }

    #[test]
    fn lateness_is_time_past_the_predicted_due_time() {
        let zero = Duration::ZERO;
        // idle, gap 1 s: due at lag 2 s; seen at lag 2.5 s → 0.5 s late
        assert_eq!(
            ms(lateness(
                &QueueState {
                    lag: Some(2.5),
                    ..q()
                },
                zero
            )),
            Some(500)
        );
        // busy: due at max_lag 3 s; seen at 3.2 s, ticked 100 ms after the check
        let busy = QueueState {
            lag: Some(3.2),
            event_seq: Some(15),
            ..q()
        };
        assert_eq!(ms(lateness(&busy, Duration::from_millis(100))), Some(300));
        // not yet due (called anyway): never negative
        assert_eq!(ms(lateness(&q(), zero)), Some(0));
        // by max_count: counted from the check
        let full = QueueState {
            event_seq: Some(600),
            lag: Some(2.0),
            ..q()
        };
        assert_eq!(ms(lateness(&full, Duration::from_millis(7))), Some(7));
        // no tick: unknown
        assert_eq!(
            lateness(
                &QueueState {
                    has_tick: false,
                    lag: None,
                    ..q()
                },
                zero
            ),
            None
        );
    }

    #[test]
    fn summary_lists_states_with_one_noun() {
        let mut c = BTreeMap::new();
        assert_eq!(summary_line(&c), "no databases");
        c.insert("ticking", 98);
        c.insert("failing", 2);
        assert_eq!(summary_line(&c), "98 databases ticking, 2 failing");
        c.insert("no_pgq", 1);
        c.insert("ticking", 1);
        assert_eq!(
            summary_line(&c),
            "1 database ticking, 2 failing, 1 without pgq"
        );
    }

    #[test]
    fn dropped_tasks_and_queues_leave_the_exposition() {
        let m = Arc::new(Metrics::new());
        m.discovery_done();
        let a = m.database("a");
        let b = m.database("b");
        a.pass_ok();
        a.tick("q1", 7, Some(Duration::from_millis(3)));
        a.tick("q2", 1, None);
        b.state(DbState::NoPgq);
        let text = m.encode();
        assert!(
            text.contains(r#"pgqd_ticks_total{database="a",queue="q1"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"pgqd_database_state{database="b",state="no_pgq"} 1"#));
        assert!(text.contains(r#"pgqd_databases{state="ticking"} 1"#));
        assert!(text.ends_with("# EOF\n"));
        a.collected(Collected {
            queues: Arc::new(vec![QueueInfo {
                name: "q1".into(),
                ..QueueInfo::default()
            }]),
            consumers: vec![],
            unregistered: 0,
            aged: true,
            read_at: Instant::now(),
        });
        drop(b);
        let text = m.encode();
        assert!(!text.contains(r#"database="b""#), "{text}");
        assert!(!text.contains(r#"queue="q2""#), "{text}");
        assert!(
            text.contains(r#"pgqd_collections_total{database="a",source="aged"} 1"#),
            "{text}"
        );
        // The figures predate nothing of ours yet (q1's tick came before them) …
        assert!(text.contains(r#"pgqd_queue_last_tick_age_seconds{database="a",queue="q1"}"#));
        assert!(!text.contains(r#"pgqd_queue_last_tick_id{database="a",queue="q1"}"#));
        // … then an idle tick of ours, made after the read, gives the latest id.
        a.tick("q1", 8, None);
        let text = m.encode();
        assert!(
            text.contains(r#"pgqd_queue_last_tick_id{database="a",queue="q1"} 8"#),
            "{text}"
        );
        assert!(
            text.contains(r#"pgqd_collections_total{database="a",source="read"} 0"#),
            "{text}"
        );
        assert_eq!(m.summary(), "1 database ticking");
    }

    #[test]
    fn readiness_needs_recent_passes_and_accepts_standby() {
        let m = Metrics::new();
        let cfg = Config::default();
        assert!(!m.readiness(&cfg).ready);
        m.discovery_done();
        let a = m.database("a");
        a.pass_ok();
        assert!(m.readiness(&cfg).ready);
        a.state(DbState::Failing("cannot connect: refused".into()));
        let r = m.readiness(&cfg);
        assert!(!r.ready);
        assert_eq!(r.text, "a: failing: cannot connect: refused\n");
        a.state(DbState::Standby);
        let r = m.readiness(&cfg);
        assert!(r.ready && r.text.starts_with("standby"), "{r:?}");
    }
}
