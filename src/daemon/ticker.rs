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

use std::collections::HashMap;
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
        })
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
    /// When the next queue is predicted due (None: nothing predicted; poll at
    /// ticker_period).
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
}

/// The ticker lane of one database. Remembers which queues are failing, so a broken queue
/// is logged once at warning level and then quietly, until it recovers.
#[derive(Debug, Default)]
pub struct Ticker {
    failing: HashMap<String, String>,
    /// Each busy queue's event count at the previous pass, for the rate that predicts when
    /// it reaches `ticker_max_count`.
    seen: HashMap<String, (i64, Instant)>,
    /// Queues whose events-due tick is being held back for an open writing transaction
    /// in the database, since when ([`HOLD_MAX`]).
    held: HashMap<String, Instant>,
    /// Set while the database is restored from another cluster (`restored.rs`).
    restored: super::restored::RestoreGuard,
    report: DbReport,
}

/// Longest a tick for the first events of a quiet queue waits for the database's open
/// writing transactions to end. pgq's ticker counts events by their ids, which are handed out before commit: a tick
/// made while a producer's transaction is open counts its events but cannot see them, so
/// they wait for the next tick, which the ticker (seeing no new events) makes only at its
/// idle back-off — seconds to a minute later. Held back, the tick comes at the commit.
const HOLD_MAX: Duration = Duration::from_millis(500);
/// How soon a held-back queue is checked again (the commit also wakes the database).
const HOLD_RECHECK: Duration = Duration::from_millis(10);

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

    /// One pass: the due check, then a tick per due queue. Stops between queues when
    /// `token` is cancelled (the statement in flight finishes). Errors that concern the
    /// whole database (connection, pgq gone) end the pass; a queue's own error is logged
    /// and counted.
    pub async fn run_once(
        &mut self,
        conn: &mut DbConn,
        token: &CancellationToken,
        signals: &Signals,
        notify: bool,
    ) -> Result<TickPass, LaneError> {
        // Restored queues get no pgq.ticker calls until repaired (restored.rs).
        self.restored
            .before_pass(conn)
            .await
            .map_err(|e| LaneError::core("restored-database check", e))?;
        let started = Instant::now();
        let rows = conn
            .query(sql::DUE_CHECK, &[])
            .await
            .map_err(|e| LaneError::core("due check", e))?;
        // A held-back queue is looked at again soon, but a costly due check (a thousand
        // queues) must not run back to back: at least four times its own duration apart.
        let recheck = HOLD_RECHECK.max(started.elapsed() * 4);
        let mut pass = TickPass {
            queues: rows.len(),
            ..TickPass::default()
        };
        // Two predictions: `next` also holds the max_lag looks (see `next_tick`).
        let mut next: Option<Duration> = None;
        let mut next_tick: Option<Duration> = None;
        let mut earliest = |d: Duration, tick: bool| {
            next = Some(next.map_or(d, |n: Duration| n.min(d)));
            if tick {
                next_tick = Some(next_tick.map_or(d, |n: Duration| n.min(d)));
            }
        };
        let checked = Instant::now();
        let mut seen = HashMap::new();
        // Open writing transactions of other sessions here (read once, when needed).
        let mut writers: Option<i64> = None;
        let mut held = HashMap::new();
        for row in &rows {
            let q = QueueState::from_row(row)
                .map_err(|e| LaneError::core("due check", StmtError::Pg(e)))?;
            if self.restored.skips(&q.name) {
                continue;
            }
            if let (Some(seq), Some(tick_seq)) = (q.event_seq, q.tick_event_seq)
                && seq > tick_seq
                && !q.skip
            {
                pass.pending = true;
                if let Some(d) = count_due(&q, self.seen.get(&q.name).copied(), checked) {
                    earliest(d, true);
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
                    earliest(secs(q.max_lag - lag), false);
                }
            }
            match due_in(&q) {
                None => continue,
                Some(d) if !d.is_zero() => {
                    earliest(d, true);
                    continue;
                }
                Some(_) => {}
            }
            if token.is_cancelled() {
                break;
            }
            // Only a queue that was quiet (latest tick at least twice max_lag old) is held
            // back: there the tick after a missed event comes at the end of a long idle
            // back-off. A busy queue's next tick is due soon anyway.
            let has_new = matches!((q.event_seq, q.tick_event_seq), (Some(a), Some(b)) if a > b);
            let quiet = q.lag.is_some_and(|l| l >= 2.0 * q.max_lag);
            if has_new && quiet {
                if writers.is_none() {
                    let rows = conn
                        .query(sql::OPEN_WRITERS, &[])
                        .await
                        .map_err(|e| LaneError::core("open writers", e))?;
                    writers = Some(
                        rows.first()
                            .and_then(|r| r.try_get::<_, i64>(0).ok())
                            .unwrap_or(0),
                    );
                }
                if writers.unwrap_or(0) > 0 {
                    let since = *self.held.entry(q.name.clone()).or_insert(checked);
                    if checked.duration_since(since) < HOLD_MAX {
                        held.insert(q.name.clone(), since);
                        earliest(recheck, true);
                        continue;
                    }
                }
            }
            pass.due += 1;
            match conn
                .query(sql::TICK, &[&q.name, &sql::FENCE_KEY, &notify])
                .await
            {
                Ok(rows) => {
                    self.recovered(&q.name);
                    let row = rows.first();
                    signals.own_xid(row.and_then(|r| r.try_get(3).ok()));
                    if !row
                        .and_then(|r| r.try_get::<_, bool>(0).ok())
                        .unwrap_or(false)
                    {
                        return Err(LaneError::other("pgq.ticker(queue)", StmtError::Fenced));
                    }
                    let tick: Option<i64> = row.and_then(|r| r.try_get(1).ok());
                    if let Some(id) = tick {
                        pass.ticked += 1;
                        let late = lateness(&q, checked.elapsed());
                        debug!(queue = %q.name, tick = id, late_ms = late.map(|l| l.as_millis() as u64), "tick");
                        self.report.tick(&q.name, late);
                        if let Some(d) = idle_due_after_tick(&q) {
                            earliest(d, true);
                        }
                        if q.max_lag <= 0.0 {
                            pass.eager = true;
                        } else {
                            earliest(secs(q.max_lag), false);
                        }
                    }
                }
                Err(e) => match e.action(false) {
                    Action::Stop | Action::Reconnect => {
                        return Err(LaneError::other("pgq.ticker(queue)", e));
                    }
                    Action::Reprobe | Action::Retry => {
                        pass.failed += 1;
                        if super::classify::may_be_restored(&e) {
                            match self.restored.after_failed_tick(conn, &q.name).await {
                                Ok(true) => continue,
                                Ok(false) => {}
                                Err(e) => {
                                    return Err(LaneError::core("restored-database check", e));
                                }
                            }
                        }
                        self.failed(&q.name, &e);
                    }
                },
            }
        }
        pass.next_due = next;
        pass.next_tick = next_tick;
        self.seen = seen;
        self.held = held;
        Ok(pass)
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
