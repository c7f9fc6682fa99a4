//! The ticker lane: one due-check SELECT per database ([`sql::DUE_CHECK`]), then
//! `pgq.ticker(queue)` for each due queue, each in its own transaction, so one broken queue
//! never stops the others (pgq's `ticker()` ticks all queues in one transaction).
//!
//! The decision itself stays pgq's (R12): the daemon only predicts, from the same figures
//! `pgq.ticker(queue)` reads (reference §3.1), which queues are due now and when the next
//! one becomes due, so it can call pgq exactly then instead of polling every queue. The
//! prediction errs towards calling: a queue whose figures cannot be read is treated as due,
//! and `pgq.ticker(queue)` returning NULL is harmless. [`due_in`] is pure and unit-tested.
//!
//! Driven by `database.rs` (R3: it owns the timing; [`Ticker::run_once`] does the SQL).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio_postgres::Row;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::broker::{DbConn, StmtError};
use super::classify::{Action, LaneError};
use super::control::Signals;
use super::metrics::{DbReport, lateness};
use crate::sql;

/// One row of the due check: a queue's settings and its latest ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueState {
    /// Queue name.
    pub name: String,
    /// Paused or externally ticked: the daemon never ticks it.
    pub skip: bool,
    /// `queue_ticker_max_count`.
    pub max_count: i64,
    /// `queue_ticker_max_lag`, seconds.
    pub max_lag: f64,
    /// `queue_ticker_idle_period`, seconds.
    pub idle_period: f64,
    /// Whether the queue has any tick.
    pub has_tick: bool,
    /// Age of the latest tick, seconds.
    pub lag: Option<f64>,
    /// `tick_event_seq` of the latest tick.
    pub tick_event_seq: Option<i64>,
    /// Time between the latest two ticks, seconds (None with fewer than two ticks).
    pub prev_gap: Option<f64>,
    /// Event ids handed out so far; None when the sequence cannot be read.
    pub event_seq: Option<i64>,
    /// The queue row's version: settings changed when it changes.
    pub version: String,
}

impl QueueState {
    fn from_row(r: &Row) -> Result<QueueState, tokio_postgres::Error> {
        Ok(QueueState {
            name: r.try_get(0)?,
            skip: r.try_get(1)?,
            max_count: r.try_get(2)?,
            max_lag: r.try_get(3)?,
            idle_period: r.try_get(4)?,
            has_tick: r.try_get(5)?,
            lag: r.try_get(6)?,
            tick_event_seq: r.try_get(7)?,
            prev_gap: r.try_get(8)?,
            event_seq: r.try_get(9)?,
            version: r.try_get(10)?,
        })
    }
}

impl QueueState {
    /// The figures right after a tick made from these: the new tick holds every event
    /// counted so far, and the gap before it is the lag it ended.
    fn ticked(&self) -> QueueState {
        QueueState {
            has_tick: true,
            lag: Some(0.0),
            prev_gap: self.lag.filter(|_| self.has_tick),
            tick_event_seq: self.event_seq.or(self.tick_event_seq),
            ..self.clone()
        }
    }
}

fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::from_secs_f64(s.min(1e9))
    } else {
        Duration::ZERO
    }
}

/// How long until `pgq.ticker(queue)` would make a tick, if nothing else changed:
/// `None` for queues the daemon must not tick (paused, external ticker), zero for "due now".
///
/// Busy (new events): due at `max_count` events or `max_lag` lag. Idle: due once the lag
/// reaches `max(max_lag/2, min(2 × previous gap, idle_period))` — the doubling back-off;
/// with a single tick or no tick at all, due now. Unknown figures mean due now.
pub fn due_in(q: &QueueState) -> Option<Duration> {
    if q.skip {
        return None;
    }
    let (Some(lag), true) = (q.lag, q.has_tick) else {
        return Some(Duration::ZERO);
    };
    let (Some(seq), Some(tick_seq)) = (q.event_seq, q.tick_event_seq) else {
        return Some(Duration::ZERO);
    };
    // saturating: corrupted figures (a sequence reset far back) must not overflow.
    let new_events = seq.saturating_sub(tick_seq);
    let threshold = if new_events > 0 {
        if new_events >= q.max_count {
            return Some(Duration::ZERO);
        }
        q.max_lag
    } else {
        let Some(gap) = q.prev_gap else {
            return Some(Duration::ZERO);
        };
        (q.max_lag / 2.0).max((2.0 * gap).min(q.idle_period))
    };
    Some(secs(threshold - lag))
}

/// When a queue just ticked will be due again if no events arrive (the idle rule with the
/// gap that just ended).
fn idle_due_after_tick(q: &QueueState) -> Option<Duration> {
    let gap = q.lag?;
    Some(secs((q.max_lag / 2.0).max((2.0 * gap).min(q.idle_period))))
}

/// What one ticker pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickPass {
    /// Queues in the due check.
    pub queues: usize,
    /// Queues predicted due and handed to `pgq.ticker`.
    pub due: usize,
    /// Ticks made.
    pub ticked: usize,
    /// `pgq.ticker(queue)` calls that failed.
    pub failed: usize,
    /// When the next queue is predicted due, from the end of the pass (None: nothing
    /// predicted; poll at ticker_period).
    pub next_due: Option<Duration>,
    /// When the next tick is predicted due, without the looks at `max_lag` moments that
    /// only decide how eagerly activity is followed: what a database without a connection
    /// must come back for.
    pub next_tick: Option<Duration>,
    /// Some queue had events not yet in a tick (the database is busy).
    pub pending: bool,
    /// Some queue has no events waiting and a latest tick at least `max_lag` old: its next
    /// event is due at once, so activity must be looked at without delay.
    pub eager: bool,
    /// How long the pass's reads took (None: it read nothing, its figures were aged): what
    /// another activity-driven pass would cost the server again. Ticks, which only due
    /// queues pay for, are not counted.
    pub read_cost: Option<Duration>,
}

/// The ticker lane of one database. Remembers which queues are failing, so a broken queue
/// is logged once at warning level and then quietly, until it recovers.
#[derive(Debug, Default)]
pub struct Ticker {
    failing: HashMap<String, String>,
    /// Each busy queue's event count at the previous pass, for the rate that predicts when
    /// it reaches `ticker_max_count`.
    seen: HashMap<String, (i64, Instant)>,
    /// Queues whose events-due tick is being held back for open writing transactions in
    /// the database: since when ([`HOLD_MAX`]), and the transactions waited for.
    held: HashMap<String, (Instant, Vec<String>)>,
    /// The figures of the latest due check, aged and advanced by the ticks made since.
    known: Vec<Known>,
    /// When the latest due check ran (None: never on this connection).
    read_at: Option<Instant>,
    /// Something since the latest due check did not go as its figures predicted.
    stale: bool,
    /// The next pass must read the event counts at least (a new connection).
    look_next: bool,
    /// How soon a held-back queue is checked again: [`HOLD_RECHECK`], or four times the
    /// due check's duration.
    recheck: Duration,
    /// Queue failures in the current pass.
    fails: usize,
    /// Set while the database is restored from another cluster (`restored.rs`).
    restored: super::restored::RestoreGuard,
    report: DbReport,
    /// The database's pgq has `pgq._ticker_batch` ([`sql::TICK_SET`]).
    tick_set: bool,
    /// This session has opened the queues' tick sequences ([`sql::PRIME_TICK_SEQS`]).
    primed: bool,
}

/// Longest a tick for the first events of a quiet queue waits for the database's open
/// writing transactions to end. pgq's ticker counts events by their ids, which are handed out before commit: a tick
/// made while a producer's transaction is open counts its events but cannot see them, so
/// they wait for the next tick, which the ticker (seeing no new events) makes only at its
/// idle back-off — seconds to a minute later. Held back, the tick comes at the commit.
const HOLD_MAX: Duration = Duration::from_millis(500);
/// How soon a held-back queue is checked again (the commit also wakes the database).
const HOLD_RECHECK: Duration = Duration::from_millis(10);

/// Most queues ticked in one statement and transaction. Their ticks share the
/// transaction's start as `tick_time` and become visible at its commit: a batch must stay
/// short (a few milliseconds) for the two to be the same moment to a consumer. Through
/// `pgq.ticker(queue)` a queue costs ~0.1 ms of server time (more in a new session) …
const TICK_BATCH: usize = 50;
/// … through `pgq._ticker_batch` ([`sql::TICK_SET`]) less than half of that.
const TICK_SET_BATCH: usize = 200;
/// A database with at least this many queues has its tick sequences opened once per
/// session ([`sql::PRIME_TICK_SEQS`]), after its first due check.
const PRIME_MIN_QUEUES: usize = 100;

/// How a pass learns the queues' figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The last ones, aged: nothing but time changed them (no activity since).
    Aged,
    /// The last ones with fresh event counts ([`sql::SEQ_CHECK`]): activity was seen.
    Seqs,
    /// All of them ([`sql::DUE_CHECK`]).
    Full,
}

/// A tick statement's answer for `known[i]`: the tick made (None: pgq found none due),
/// the gap it ended as pgq measured it, and when the statement was sent.
#[derive(Debug, Clone, Copy)]
struct Made {
    i: usize,
    tick: Option<i64>,
    gap: Option<f64>,
    sent: Instant,
}

/// How long the figures of a full due check are trusted, when activity is followed (each
/// pass after activity still reads the event counts and queue versions).
const FULL_READ_EVERY: Duration = Duration::from_secs(600);

/// How soon the figures are read again after pgq declined a tick the estimates called due.
const STALE_RECHECK: Duration = Duration::from_millis(5);

/// A queue's figures as read by a due check (or advanced since), and when they held.
#[derive(Debug, Clone)]
struct Known {
    q: QueueState,
    at: Instant,
    /// The queue's event sequence, when the due check could read it.
    seq: Option<u32>,
}

/// The earliest predicted moments of a pass (see [`TickPass::next_due`] and
/// [`TickPass::next_tick`]).
#[derive(Debug, Default)]
struct Next {
    any: Option<Duration>,
    tick: Option<Duration>,
}

impl Next {
    fn at(&mut self, d: Duration, tick: bool) {
        self.any = Some(self.any.map_or(d, |n| n.min(d)));
        if tick {
            self.tick = Some(self.tick.map_or(d, |n| n.min(d)));
        }
    }
}

/// Checks a busy queue this much before its predicted `ticker_max_count` moment: the rate
/// is an estimate, and an early check costs one cheap SELECT.
const COUNT_EARLY: f64 = 0.8;

/// When a busy queue will reach `max_count` at the rate seen since the previous pass.
fn count_due(q: &QueueState, prev: Option<(i64, Instant)>, now: Instant) -> Option<Duration> {
    let (seq, tick_seq) = (q.event_seq?, q.tick_event_seq?);
    let (seq0, t0) = prev?;
    let dt = now.duration_since(t0).as_secs_f64();
    if seq <= seq0 || dt <= 0.0 {
        return None;
    }
    let rate = seq.saturating_sub(seq0) as f64 / dt;
    let left = q
        .max_count
        .saturating_sub(seq.saturating_sub(tick_seq))
        .max(0) as f64;
    Some(secs(left / rate * COUNT_EARLY))
}

impl Ticker {
    /// A ticker with no history.
    pub fn new() -> Ticker {
        Ticker::default()
    }

    /// Reports ticks (with their lateness) and queue errors to `report` (metrics, #6).
    pub fn reporting(mut self, report: DbReport) -> Ticker {
        self.report = report;
        self
    }

    /// Whether the database's pgq has `pgq._ticker_batch` (found by the probe).
    pub fn set_tick_set(&mut self, tick_set: bool) {
        self.tick_set = tick_set;
    }

    /// A new connection: what happened while there was none is unknown, so the next pass
    /// reads the event counts and queue versions at least ([`sql::SEQ_CHECK`], which
    /// in a fresh session costs a fraction of the full due check's planning).
    pub fn reconnected(&mut self) {
        self.look_next = true;
        self.primed = false;
    }

    /// One pass: the due check, then the ticks of the due queues. Stops between queues
    /// when `token` is cancelled (the statement in flight finishes). Errors that concern
    /// the whole database (connection, pgq gone) end the pass; a queue's own error is
    /// logged and counted.
    ///
    /// With `trust_activity` (a working activity signal), the full due check runs only
    /// every `FULL_READ_EVERY` (10 minutes) or when the figures kept disagree with pgq. In between,
    /// a pass after activity (`look`) reads only the event counts and queue versions
    /// ([`sql::SEQ_CHECK`]; a changed queue means a full read), and a pass without any
    /// reads nothing: nothing but time can have changed the figures, and the queues due
    /// are known from the figures aged by the time passed — with a thousand queues a
    /// database is due every few milliseconds, and reading them all each time was most of
    /// the server's work. Another ticker's ticks make pgq decline ours (NULL): that too
    /// sends the next pass to a full read. Without `trust_activity`, every pass reads
    /// everything, as pgq's own ticker would.
    pub async fn run_once(
        &mut self,
        conn: &mut DbConn,
        token: &CancellationToken,
        signals: &Signals,
        notify: bool,
        look: bool,
        trust_activity: bool,
    ) -> Result<TickPass, LaneError> {
        // Restored queues get no pgq.ticker calls until repaired (restored.rs).
        self.restored
            .before_pass(conn)
            .await
            .map_err(|e| LaneError::core("restored-database check", e))?;
        let started = Instant::now();
        let look = std::mem::take(&mut self.look_next) || look;
        let read = match self.read_at {
            Some(t)
                if trust_activity && !self.stale && started.duration_since(t) < FULL_READ_EVERY =>
            {
                if look {
                    Read::Seqs
                } else {
                    Read::Aged
                }
            }
            _ => Read::Full,
        };
        // Aged below with the others: nothing but time changed them.
        let kept = || -> Vec<Known> {
            self.known
                .iter()
                .filter(|k| !self.restored.skips(&k.q.name))
                .cloned()
                .collect()
        };
        let mut known = match read {
            Read::Aged => kept(),
            Read::Seqs => {
                let mut known = kept();
                let oids: Vec<u32> = known.iter().filter_map(|k| k.seq).collect();
                let merged = match conn.query(sql::SEQ_CHECK, &[&oids]).await {
                    Ok(rows) => rows.first().is_some_and(|r| self.merge_seqs(&mut known, r)),
                    Err(e) => match e.action(false) {
                        Action::Stop | Action::Reconnect => {
                            return Err(LaneError::core("event counts", e));
                        }
                        Action::Reprobe | Action::Retry => {
                            debug!(sqlstate = e.sqlstate().unwrap_or(""), error = %e, "event counts unreadable; reading every figure");
                            false
                        }
                    },
                };
                if merged {
                    known
                } else {
                    // A queue added, dropped or changed: read everything.
                    self.read_all(conn, started).await?
                }
            }
            Read::Full => self.read_all(conn, started).await?,
        };
        let checked = Instant::now();
        // Every prediction below counts from `checked`: age the figures up to it (those kept
        // from earlier passes, and a due check's, whose lags are the server's `now()` as
        // the statement began — a first read of a thousand queues in a new session takes
        // over 100 ms, and predictions counted from its reply were that much late).
        for k in &mut known {
            let dt = checked.saturating_duration_since(k.at);
            if !dt.is_zero() {
                k.q.lag = k.q.lag.map(|l| l + dt.as_secs_f64());
                k.at = checked;
            }
        }
        self.fails = 0;
        let mut pass = TickPass {
            queues: known.len(),
            read_cost: (read != Read::Aged).then(|| checked.duration_since(started)),
            ..TickPass::default()
        };
        let mut next = Next::default();
        let mut seen = HashMap::new();
        // Transaction ids of the open writing transactions of other sessions here (read
        // once, when needed).
        let mut writers: Option<HashSet<String>> = None;
        let mut held = HashMap::new();
        let mut due = Vec::new();
        for (i, k) in known.iter().enumerate() {
            let q = &k.q;
            if let (Some(seq), Some(tick_seq)) = (q.event_seq, q.tick_event_seq)
                && seq > tick_seq
                && !q.skip
            {
                pass.pending = true;
                if let Some(d) = count_due(q, self.seen.get(&q.name).copied(), checked) {
                    next.at(d, true);
                }
                seen.insert(q.name.clone(), (seq, checked));
            } else if !q.skip
                && let Some(lag) = q.lag
            {
                // An event arriving from max_lag after the latest tick on is due at once;
                // before that, it is due at exactly that moment: look then.
                if lag >= q.max_lag {
                    pass.eager = true;
                } else {
                    next.at(secs(q.max_lag - lag), false);
                }
            }
            match due_in(q) {
                None => continue,
                Some(d) if !d.is_zero() => {
                    next.at(d, true);
                    continue;
                }
                Some(_) => {}
            }
            // Only a queue that was quiet (latest tick at least twice max_lag old) is held
            // back: there the tick after a missed event comes at the end of a long idle
            // back-off. A busy queue's next tick is due soon anyway.
            let has_new = matches!((q.event_seq, q.tick_event_seq), (Some(a), Some(b)) if a > b);
            let quiet = q.lag.is_some_and(|l| l >= 2.0 * q.max_lag);
            if has_new && quiet {
                let open = match writers.as_ref() {
                    Some(w) => w,
                    None => {
                        let rows = conn
                            .query(sql::OPEN_WRITERS, &[])
                            .await
                            .map_err(|e| LaneError::core("open writers", e))?;
                        let xids: Vec<String> = rows
                            .first()
                            .and_then(|r| r.try_get(0).ok())
                            .unwrap_or_default();
                        writers.insert(xids.into_iter().collect())
                    }
                };
                // Wait for the transactions that were open when the hold began (the
                // events' own among them), not for those that began since: in a database
                // whose producers always have one open, those end within milliseconds.
                let (since, waiting): (Instant, Vec<String>) = match self.held.get(&q.name) {
                    Some((since, xids)) => (
                        *since,
                        xids.iter().filter(|x| open.contains(*x)).cloned().collect(),
                    ),
                    None => (checked, open.iter().cloned().collect()),
                };
                if !waiting.is_empty() && checked.duration_since(since) < HOLD_MAX {
                    held.insert(q.name.clone(), (since, waiting));
                    next.at(self.recheck, true);
                    continue;
                }
            }
            due.push(i);
        }
        pass.due = due.len();
        if !due.is_empty() {
            debug!(read = ?read, read_ms = checked.duration_since(started).as_secs_f64() * 1e3, due = due.len(), "ticking");
        }
        let made = self
            .tick_all(conn, token, signals, notify, &known, &due)
            .await?;
        for m in made {
            let Some(k) = known.get_mut(m.i) else {
                continue;
            };
            // Counted from the tick, which came after the figures' moment.
            let after = m.sent.saturating_duration_since(checked);
            let Some(id) = m.tick else {
                // pgq saw it otherwise: the figures we keep are off; read them again, soon
                // when they were only estimates (a fresh reading that disagrees waits for
                // the next due moment, as pgq's answer is the rule).
                self.stale = true;
                if read != Read::Full {
                    next.at(after + STALE_RECHECK, true);
                }
                continue;
            };
            pass.ticked += 1;
            let q = &k.q;
            // As of the tick's statement: a pass over a thousand queues takes a while.
            let late = lateness(q, m.sent.saturating_duration_since(k.at));
            debug!(queue = %q.name, tick = id, late_ms = late.map(|l| l.as_millis() as u64), "tick");
            self.report.tick(&q.name, id, late);
            // The gap the tick ended, as pgq measured it; estimated when unknown.
            let at_tick = QueueState {
                lag: m.gap.or_else(|| {
                    q.lag
                        .map(|l| l + m.sent.saturating_duration_since(k.at).as_secs_f64())
                }),
                ..q.clone()
            };
            if let Some(d) = idle_due_after_tick(&at_tick) {
                next.at(d + after, true);
            }
            if q.max_lag <= 0.0 {
                pass.eager = true;
            } else {
                next.at(secs(q.max_lag) + after, false);
            }
            // The tick's time is its transaction's start: close to when it was sent.
            *k = Known {
                q: at_tick.ticked(),
                at: m.sent,
                seq: k.seq,
            };
        }
        pass.failed = std::mem::take(&mut self.fails);
        // The predictions count from the figures' moment; the caller counts from now.
        let spent = checked.elapsed();
        pass.next_due = next.any.map(|d| d.saturating_sub(spent));
        pass.next_tick = next.tick.map(|d| d.saturating_sub(spent));
        if read != Read::Aged {
            self.seen = seen;
        }
        self.known = known;
        self.held = held;
        Ok(pass)
    }

    /// The due check: every queue's figures, now.
    async fn read_all(
        &mut self,
        conn: &mut DbConn,
        started: Instant,
    ) -> Result<Vec<Known>, LaneError> {
        let sent = Instant::now();
        let rows = conn
            .query(sql::DUE_CHECK, &[])
            .await
            .map_err(|e| LaneError::core("due check", e))?;
        if !self.primed && rows.len() >= PRIME_MIN_QUEUES {
            self.prime(conn).await?;
        }
        // A held-back queue is looked at again soon, but a costly due check (a thousand
        // queues) must not run back to back: at least four times its own duration apart.
        self.recheck = HOLD_RECHECK.max(started.elapsed() * 4);
        self.read_at = Some(sent);
        self.stale = false;
        let mut known = Vec::with_capacity(rows.len());
        for row in &rows {
            let q = QueueState::from_row(row)
                .map_err(|e| LaneError::core("due check", StmtError::Pg(e)))?;
            let seq = row
                .try_get(11)
                .map_err(|e| LaneError::core("due check", StmtError::Pg(e)))?;
            if !self.restored.skips(&q.name) {
                known.push(Known { q, at: sent, seq });
            }
        }
        Ok(known)
    }

    /// Once per session in a database with many queues: opens the tick sequences, compiles
    /// `pgq._ticker_batch` where there is one, and prepares the tick statement (parsing it
    /// takes milliseconds the first batch would wait). A failure only costs that speed.
    async fn prime(&mut self, conn: &mut DbConn) -> Result<(), LaneError> {
        self.primed = true;
        let mut primed = conn.query(sql::PRIME_TICK_SEQS, &[]).await.map(drop);
        if primed.is_ok() && self.tick_set {
            primed = conn.query(sql::PRIME_TICK_SET, &[]).await.map(drop);
        }
        if primed.is_ok() {
            primed = conn
                .prepare(if self.tick_set {
                    sql::TICK_SET
                } else {
                    sql::TICK_MANY
                })
                .await;
        }
        match primed {
            Err(e) => match e.action(false) {
                Action::Stop | Action::Reconnect => Err(LaneError::core("tick sequences", e)),
                Action::Reprobe | Action::Retry => {
                    debug!(sqlstate = e.sqlstate().unwrap_or(""), error = %e, "tick sequences not opened");
                    Ok(())
                }
            },
            Ok(()) => Ok(()),
        }
    }

    /// Puts the event counts of [`sql::SEQ_CHECK`] (its one row) into `known`; false when
    /// the queues are not the ones known (added, dropped, settings changed): then only a
    /// due check will do.
    fn merge_seqs(&self, known: &mut [Known], row: &Row) -> bool {
        let (Ok(names), Ok(versions), Ok(counts)) = (
            row.try_get::<_, Vec<String>>(0),
            row.try_get::<_, Vec<String>>(1),
            row.try_get::<_, Vec<i64>>(2),
        ) else {
            return false;
        };
        let mut queues = names
            .iter()
            .zip(&versions)
            .filter(|(name, _)| !self.restored.skips(name));
        let mut counts = counts.into_iter();
        for k in known.iter_mut() {
            let Some((name, version)) = queues.next() else {
                return false;
            };
            if *name != k.q.name || *version != k.q.version {
                return false;
            }
            if k.seq.is_some() {
                let Some(count) = counts.next() else {
                    return false;
                };
                k.q.event_seq = Some(count);
            }
        }
        names.len() == versions.len() && queues.next().is_none() && counts.next().is_none()
    }

    /// Ticks the queues `due` (indexes into `known`): up to [`TICK_BATCH`] queues in one
    /// statement and transaction, a queue that failed lately on its own; a batch that
    /// fails is retried one queue at a time, so one broken queue never stops the others.
    /// Returns the queues answered, with the tick made (None: pgq found none due) and when
    /// its statement was sent.
    async fn tick_all(
        &mut self,
        conn: &mut DbConn,
        token: &CancellationToken,
        signals: &Signals,
        notify: bool,
        known: &[Known],
        due: &[usize],
    ) -> Result<Vec<Made>, LaneError> {
        let mut made = Vec::with_capacity(due.len());
        let (alone, together): (Vec<usize>, Vec<usize>) = due
            .iter()
            .copied()
            .partition(|&i| self.failing.contains_key(&known[i].q.name));
        let mut one_by_one = alone;
        let (stmt, size) = if self.tick_set {
            (sql::TICK_SET, TICK_SET_BATCH)
        } else {
            (sql::TICK_MANY, TICK_BATCH)
        };
        for chunk in together.chunks(size) {
            if token.is_cancelled() {
                return Ok(made);
            }
            if chunk.len() == 1 {
                one_by_one.extend_from_slice(chunk);
                continue;
            }
            let names: Vec<&str> = chunk.iter().map(|&i| known[i].q.name.as_str()).collect();
            let sent = Instant::now();
            match conn.query(stmt, &[&names, &sql::FENCE_KEY, &notify]).await {
                Ok(rows) => {
                    let mut txid = None;
                    for (answered, row) in rows.iter().enumerate() {
                        if !row.try_get::<_, bool>(0).unwrap_or(false) {
                            return Err(LaneError::other(
                                "pgq.ticker(queue) for several queues",
                                StmtError::Fenced,
                            ));
                        }
                        txid = row.try_get::<_, Option<i64>>(4).ok().flatten().or(txid);
                        let name: Option<String> = row.try_get(1).ok().flatten();
                        let tick: Option<i64> = row.try_get(2).ok().flatten();
                        let gap: Option<f64> = row.try_get(5).ok().flatten();
                        if let Some(&i) = chunk
                            .get(answered)
                            .filter(|&&i| name.as_deref() == Some(known[i].q.name.as_str()))
                        {
                            made.push(Made { i, tick, gap, sent });
                            self.recovered(&known[i].q.name);
                        }
                    }
                    signals.own_xid(txid);
                    debug!(
                        queues = chunk.len(),
                        ms = sent.elapsed().as_secs_f64() * 1e3,
                        "tick batch"
                    );
                }
                Err(e) => match e.action(false) {
                    Action::Stop | Action::Reconnect => {
                        return Err(LaneError::other("pgq.ticker(queue) for several queues", e));
                    }
                    Action::Reprobe | Action::Retry => {
                        debug!(sqlstate = e.sqlstate().unwrap_or(""), error = %e, queues = chunk.len(), "batched ticks failed; ticking one by one");
                        if e.sqlstate() == Some("42883") {
                            // pgq._ticker_batch is gone (schema reinstalled older).
                            self.tick_set = false;
                        }
                        one_by_one.extend_from_slice(chunk);
                    }
                },
            }
        }
        for i in one_by_one {
            if token.is_cancelled() {
                break;
            }
            // Found restored by an earlier queue's failure: not to be ticked at all.
            if self.restored.skips(&known[i].q.name) {
                continue;
            }
            let sent = Instant::now();
            if let Some((tick, gap)) = self
                .tick_one(conn, signals, notify, &known[i].q.name)
                .await?
            {
                made.push(Made { i, tick, gap, sent });
            }
        }
        Ok(made)
    }

    /// Ticks one queue in its own transaction: the tick made, if any, and the gap it
    /// ended. Ok(None) when the queue's own error was
    /// logged and counted (or it turned out restored); errors of the whole database end
    /// the pass.
    async fn tick_one(
        &mut self,
        conn: &mut DbConn,
        signals: &Signals,
        notify: bool,
        name: &str,
    ) -> Result<Option<(Option<i64>, Option<f64>)>, LaneError> {
        match conn
            .query(sql::TICK, &[&name, &sql::FENCE_KEY, &notify])
            .await
        {
            Ok(rows) => {
                self.recovered(name);
                let row = rows.first();
                signals.own_xid(row.and_then(|r| r.try_get(3).ok()));
                if !row
                    .and_then(|r| r.try_get::<_, bool>(0).ok())
                    .unwrap_or(false)
                {
                    return Err(LaneError::other("pgq.ticker(queue)", StmtError::Fenced));
                }
                Ok(Some((
                    row.and_then(|r| r.try_get(1).ok()),
                    row.and_then(|r| r.try_get(4).ok()),
                )))
            }
            Err(e) => match e.action(false) {
                Action::Stop | Action::Reconnect => Err(LaneError::other("pgq.ticker(queue)", e)),
                Action::Reprobe | Action::Retry => {
                    self.fails += 1;
                    if super::classify::may_be_restored(&e) {
                        match self.restored.after_failed_tick(conn, name).await {
                            Ok(true) => return Ok(None),
                            Ok(false) => {}
                            Err(e) => return Err(LaneError::core("restored-database check", e)),
                        }
                    }
                    self.failed(name, &e);
                    Ok(None)
                }
            },
        }
    }

    /// Logs a queue's failure at warning level when it is new or its SQLSTATE changed
    /// (messages carry txids that change every time), at debug level otherwise.
    fn failed(&mut self, queue: &str, e: &StmtError) {
        let state = e.sqlstate().unwrap_or("").to_string();
        self.report.error(&state);
        if self.failing.get(queue) == Some(&state) {
            debug!(queue, sqlstate = %state, error = %e, "tick still failing");
        } else {
            warn!(queue, statement = sql::TICK, sqlstate = %state, error = %e, "tick failed");
            self.failing.insert(queue.to_string(), state);
        }
    }

    fn recovered(&mut self, queue: &str) {
        if self.failing.remove(queue).is_some() {
            info!(queue, "queue ticks again");
        }
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
    fn paused_and_external_queues_are_never_due() {
        assert_eq!(due_in(&QueueState { skip: true, ..q() }), None);
    }

    #[test]
    fn no_tick_or_unknown_figures_mean_due_now() {
        let none = QueueState {
            has_tick: false,
            lag: None,
            tick_event_seq: None,
            prev_gap: None,
            ..q()
        };
        assert_eq!(ms(due_in(&none)), Some(0));
        assert_eq!(
            ms(due_in(&QueueState {
                event_seq: None,
                ..q()
            })),
            Some(0)
        );
        assert_eq!(
            ms(due_in(&QueueState {
                tick_event_seq: None,
                ..q()
            })),
            Some(0)
        );
    }

    #[test]
    fn busy_queue_waits_for_max_lag_or_max_count() {
        let busy = QueueState {
            event_seq: Some(15),
            ..q()
        };
        assert_eq!(ms(due_in(&busy)), Some(2500));
        assert_eq!(
            ms(due_in(&QueueState {
                lag: Some(3.0),
                ..busy.clone()
            })),
            Some(0)
        );
        assert_eq!(
            ms(due_in(&QueueState {
                event_seq: Some(510),
                ..busy
            })),
            Some(0)
        );
    }

    #[test]
    fn idle_queue_backs_off_by_doubling_up_to_idle_period() {
        // gap 1 s: due at lag 2 s (2 × gap beats max_lag/2 = 1.5 s)
        assert_eq!(ms(due_in(&q())), Some(1500));
        // tiny gap: max_lag / 2 is the floor
        assert_eq!(
            ms(due_in(&QueueState {
                prev_gap: Some(0.1),
                ..q()
            })),
            Some(1000)
        );
        // big gap: idle_period is the cap
        assert_eq!(
            ms(due_in(&QueueState {
                prev_gap: Some(100.0),
                ..q()
            })),
            Some(59500)
        );
        // one tick only: due now
        assert_eq!(
            ms(due_in(&QueueState {
                prev_gap: None,
                ..q()
            })),
            Some(0)
        );
    }

    #[test]
    fn first_event_counts_when_the_schema_counts_it() {
        // Our schema: a fresh queue's tick stores 0; the first event makes the sequence 1.
        let ours = QueueState {
            tick_event_seq: Some(0),
            event_seq: Some(1),
            prev_gap: Some(30.0),
            ..q()
        };
        assert_eq!(ms(due_in(&ours)), Some(2500), "busy: due at max_lag");
        // The real extension stores last_value (1) for a fresh queue: the first event looks
        // idle, as it does to pgq.ticker itself.
        let ext = QueueState {
            tick_event_seq: Some(1),
            event_seq: Some(1),
            prev_gap: Some(30.0),
            ..q()
        };
        assert_eq!(ms(due_in(&ext)), Some(59500));
    }

    #[test]
    fn count_rate_predicts_max_count() {
        let t0 = Instant::now();
        let busy = QueueState {
            event_seq: Some(110),
            tick_event_seq: Some(10),
            max_count: 500,
            ..q()
        };
        // 100 events in 1 s, 400 to go: 4 s, checked at 80 %.
        let d = count_due(&busy, Some((10, t0)), t0 + Duration::from_secs(1));
        assert_eq!(ms(d), Some(3200));
        assert_eq!(count_due(&busy, None, t0), None, "no rate yet");
        assert_eq!(
            count_due(&busy, Some((110, t0)), t0 + Duration::from_secs(1)),
            None,
            "no new events"
        );
    }

    #[test]
    fn negative_new_events_count_as_idle() {
        let q = QueueState {
            tick_event_seq: Some(1),
            event_seq: Some(0),
            ..q()
        };
        assert_eq!(ms(due_in(&q)), Some(1500));
    }
}
