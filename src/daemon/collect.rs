//! The collector lane: queue and consumer figures for the metrics, and the consumer lag
//! policies of issue #8, once per `stats_period` on a database the task serves — never per
//! tick (issue #6).
//!
//! [`Collector::run_once`] reads [`sql::COLLECT_QUEUES`] and [`sql::COLLECT_CONSUMERS`]
//! (plain SQL on pgq 3.5's tables, so the real pgq extension answers them too) — or, when
//! the database task saw nothing change since the last read, hands that read on again
//! (below) — then:
//! - warns once when a consumer's lag crosses `consumer_lag_warning` (and says when it is
//!   back under), flagging it in the figures (`pgqd_consumer_lagging`);
//! - with `consumer_unregister_after` set (off by default), unregisters a consumer whose lag
//!   is above it, logging at warn the tick it stood at, so an operator can put it back with
//!   `pgq.register_consumer_at(queue, consumer, tick)`.
//!
//! **Reads only after a change.** Between two writes to a database its figures only age:
//! the latest tick, a consumer's position and last batch, the last rotation all grow older
//! by the time passed (the metrics report every age as of the scrape, from the read's
//! instant), and whether a consumer holds up rotation follows from the ages. So the task
//! says what may have been written since the last read ([`Since`]: activity signalled
//! by the control session, our own ticks, retry moves and maintenance, a new session),
//! and when nothing was, the collector hands the last read on again, with no statement.
//! Our own idle ticks count as nothing for a database whose queues had neither events
//! waiting nor an event rate at the last read: such a tick changes only the queue's latest
//! tick, whose id and age the metrics take from the ticker. A database nobody uses is
//! then read every [`REUSE_MAX`] instead of every `stats_period` (twice a minute), and its
//! session stays asleep in between; a read is also made whenever the aged figures would
//! unregister a consumer.
//!
//! Driven by `database.rs` as its `Stats` lane; [`collect_period`] says whether and how often.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::broker::{DbConn, StmtError};
use super::classify::LaneError;
use super::metrics::{Collected, ConsumerInfo, QueueInfo};
use crate::config::Config;
use crate::sql;

/// The longest a read's figures are aged instead of read again: a change the task was
/// not told about (an event id taken by a transaction that then rolled back, a missed
/// activity signal) shows within this long.
pub const REUSE_MAX: Duration = Duration::from_secs(600);

/// What the database task knows of writes to the database since the collector's last
/// read; ordered, so what happened over two stretches of time combines with `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Since {
    /// Nothing was written.
    Nothing,
    /// Only idle ticks of ours: ticks that ended no events.
    IdleTicks,
    /// Something else may have been written (or nothing is known).
    Written,
}

/// Used when `stats_period` is 0 (stats line off) but something needs the collector.
const FALLBACK_PERIOD: Duration = Duration::from_secs(30);

/// How often the collector runs under `cfg`: None when nothing needs it (no metrics
/// endpoint, no lag warning, no unregister policy), else `stats_period`.
pub fn collect_period(cfg: &Config) -> Option<Duration> {
    let needed = cfg.metrics_listen.is_some()
        || !cfg.consumer_lag_warning.is_zero()
        || !cfg.consumer_unregister_after.is_zero();
    needed.then(|| {
        if cfg.stats_period.is_zero() {
            FALLBACK_PERIOD
        } else {
            cfg.stats_period
        }
    })
}

/// What the policies decided for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Lag within limits.
    Fine,
    /// Lag above `consumer_lag_warning`.
    Lagging,
    /// Lag above `consumer_unregister_after`.
    Unregister,
}

/// The policies for a consumer with `lag` seconds under `cfg` (pure).
pub fn verdict(lag: Option<f64>, cfg: &Config) -> Verdict {
    let Some(lag) = lag else {
        return Verdict::Fine;
    };
    let over = |limit: Duration| !limit.is_zero() && lag > limit.as_secs_f64();
    if over(cfg.consumer_unregister_after) {
        Verdict::Unregister
    } else if over(cfg.consumer_lag_warning) {
        Verdict::Lagging
    } else {
        Verdict::Fine
    }
}

/// The collector of one database; remembers which consumers are over the warning limit,
/// so each crossing is logged once, and its last read.
#[derive(Debug, Default)]
pub struct Collector {
    lagging: HashSet<(String, String)>,
    last: Option<Read>,
}

/// One read of the database's figures, before the policies. The queues are shared with
/// the metrics (which age them at each scrape), so a thousand databases' figures are held
/// once.
#[derive(Debug, Clone)]
struct Read {
    at: Instant,
    queues: Arc<Vec<QueueInfo>>,
    /// Each consumer with whether its position predates the last rotation's step 2.
    consumers: Vec<(ConsumerInfo, bool)>,
}

impl Read {
    /// Whether the figures still hold after `since`. An idle tick moves a queue's latest
    /// tick (the metrics take its id and age from the ticker) and nothing else, provided
    /// the queue had no events waiting and an event rate of 0 — its last 21 ticks all
    /// ended no events, so one more leaves the rate at 0; a queue with a recent event
    /// (or a single tick) would see its rate change, and is read.
    fn survives(&self, since: Since) -> bool {
        match since {
            Since::Nothing => true,
            Since::IdleTicks => self
                .queues
                .iter()
                .all(|q| q.ev_per_sec == Some(0.0) && q.ev_new == Some(0)),
            Since::Written => false,
        }
    }

    /// The consumers as read, with `blocks_rotation` as it stands `by` after the read had
    /// nothing been written since (the rotation's age grows by as much): a position older
    /// than the last rotation's step 2 holds up the queue once its rotation is due.
    fn consumers(&self, by: Duration) -> Vec<ConsumerInfo> {
        let by = by.as_secs_f64();
        let due: HashMap<&str, bool> = self
            .queues
            .iter()
            .map(|q| {
                let due = matches!((q.rotation_age, q.rotation_period),
                    (Some(age), Some(period)) if age + by > period);
                (q.name.as_str(), due)
            })
            .collect();
        self.consumers
            .iter()
            .map(|(k, predates)| ConsumerInfo {
                blocks_rotation: *predates && due.get(k.queue.as_str()).copied().unwrap_or(false),
                ..k.clone()
            })
            .collect()
    }
}

/// A consumer's lag `by` after it was read, had nothing been written since.
fn lag_after(k: &ConsumerInfo, by: Duration) -> Option<f64> {
    k.lag.map(|l| l + by.as_secs_f64())
}

impl Collector {
    /// A collector with no history.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Drops the last read: the next collection reads.
    pub fn forget(&mut self) {
        self.last = None;
    }

    /// One collection with the lag policies; returns the figures for the metrics.
    /// `since`: what was written to the database since the last read (see the module
    /// docs). The statements are core reads of pgq's tables: missing means pgq is gone.
    pub async fn run_once(
        &mut self,
        conn: &mut DbConn,
        cfg: &Config,
        since: Since,
    ) -> Result<Collected, LaneError> {
        let now = Instant::now();
        let aged = self.last.as_ref().is_some_and(|r| {
            let by = now.saturating_duration_since(r.at);
            r.survives(since)
                && by < REUSE_MAX
                // Unregistering acts on the database: only on figures just read.
                && !r
                    .consumers
                    .iter()
                    .any(|(k, _)| verdict(lag_after(k, by), cfg) == Verdict::Unregister)
        });
        let last = match self.last.take() {
            Some(r) if aged => r,
            _ => read(conn).await?,
        };
        let by = now.saturating_duration_since(last.at);
        let consumers = last.consumers(by);
        let (queues, read_at) = (Arc::clone(&last.queues), last.at);
        self.last = Some(last);

        let mut kept = Vec::with_capacity(consumers.len());
        let mut seen = HashSet::new();
        let mut unregistered = 0;
        for mut k in consumers {
            let key = (k.queue.clone(), k.name.clone());
            let lag = lag_after(&k, by);
            match verdict(lag, cfg) {
                Verdict::Unregister => {
                    if self.unregister(conn, &k, cfg).await? {
                        unregistered += 1;
                        self.lagging.remove(&key);
                        continue;
                    }
                    // Could not unregister (logged): still report it, as lagging.
                    k.lagging = true;
                }
                Verdict::Lagging => {
                    k.lagging = true;
                    if !self.lagging.contains(&key) {
                        warn!(
                            queue = %k.queue,
                            consumer = %k.name,
                            lag = %secs(lag),
                            last_seen = %secs(k.last_seen.map(|s| s + by.as_secs_f64())),
                            limit = %humantime::format_duration(cfg.consumer_lag_warning),
                            "consumer lags behind its queue more than consumer_lag_warning"
                        );
                    }
                }
                Verdict::Fine => {
                    if self.lagging.contains(&key) {
                        info!(queue = %k.queue, consumer = %k.name, lag = %secs(lag),
                            "consumer is back within consumer_lag_warning");
                    }
                }
            }
            if k.lagging {
                self.lagging.insert(key.clone());
            } else {
                self.lagging.remove(&key);
            }
            seen.insert(key);
            kept.push(k);
        }
        // Consumers that went away are forgotten, so a re-registered one warns afresh.
        self.lagging.retain(|k| seen.contains(k));
        if unregistered > 0 {
            self.last = None;
        }
        debug!(
            queues = queues.len(),
            consumers = kept.len(),
            aged,
            "collected"
        );
        Ok(Collected {
            queues,
            consumers: kept,
            unregistered,
            aged,
            read_at,
        })
    }

    /// Unregisters `k`; Ok(false) when the call failed for this consumer only (logged).
    async fn unregister(
        &mut self,
        conn: &mut DbConn,
        k: &ConsumerInfo,
        cfg: &Config,
    ) -> Result<bool, LaneError> {
        match conn
            .query(sql::UNREGISTER_CONSUMER, &[&k.queue, &k.name])
            .await
        {
            Ok(_) => {
                warn!(
                    queue = %k.queue,
                    consumer = %k.name,
                    lag = %secs(k.lag),
                    last_seen = %secs(k.last_seen),
                    last_tick = ?k.last_tick,
                    pending_events = ?k.pending_events,
                    limit = %humantime::format_duration(cfg.consumer_unregister_after),
                    "unregistered consumer lagging more than consumer_unregister_after; \
                     to put it back at its position (while that tick still exists): \
                     select pgq.register_consumer_at(queue, consumer, last_tick)"
                );
                Ok(true)
            }
            Err(e) => match e.action(false) {
                super::classify::Action::Retry => {
                    warn!(
                        queue = %k.queue,
                        consumer = %k.name,
                        statement = sql::UNREGISTER_CONSUMER,
                        sqlstate = e.sqlstate().unwrap_or(""),
                        error = %e,
                        "cannot unregister lagging consumer"
                    );
                    Ok(false)
                }
                _ => Err(LaneError::other("pgq.unregister_consumer", e)),
            },
        }
    }
}

/// Reads the figures ([`sql::COLLECT_QUEUES`], [`sql::COLLECT_CONSUMERS`]).
async fn read(conn: &mut DbConn) -> Result<Read, LaneError> {
    // The ages are the server's `now()` as each statement began: dated at the send.
    let at = Instant::now();
    let rows = conn
        .query(sql::COLLECT_QUEUES, &[])
        .await
        .map_err(|e| LaneError::core("collect queues", e))?;
    let mut queues = Vec::with_capacity(rows.len());
    for r in &rows {
        let q = (|| {
            Ok::<_, tokio_postgres::Error>(QueueInfo {
                name: r.try_get(0)?,
                tick_lag: r.try_get(1)?,
                ev_per_sec: r.try_get(2)?,
                ev_new: r.try_get(3)?,
                last_tick_id: r.try_get(4)?,
                rotation_age: r.try_get(5)?,
                rotation_period: r.try_get(6)?,
                retry_events: r.try_get(7)?,
            })
        })()
        .map_err(|e| LaneError::core("collect queues", StmtError::Pg(e)))?;
        queues.push(q);
    }
    let rows = conn
        .query(sql::COLLECT_CONSUMERS, &[])
        .await
        .map_err(|e| LaneError::core("collect consumers", e))?;
    let mut consumers = Vec::with_capacity(rows.len());
    for r in &rows {
        let k = (|| {
            Ok::<_, tokio_postgres::Error>((
                ConsumerInfo {
                    queue: r.try_get(0)?,
                    name: r.try_get(1)?,
                    lag: r.try_get(2)?,
                    last_seen: r.try_get(3)?,
                    last_tick: r.try_get(4)?,
                    pending_events: r.try_get(5)?,
                    blocks_rotation: false,
                    lagging: false,
                },
                r.try_get(6)?,
            ))
        })()
        .map_err(|e| LaneError::core("collect consumers", StmtError::Pg(e)))?;
        consumers.push(k);
    }
    Ok(Read {
        at,
        queues: Arc::new(queues),
        consumers,
    })
}

fn secs(s: Option<f64>) -> String {
    match s {
        Some(s) if s.is_finite() && s >= 0.0 => {
            humantime::format_duration(Duration::from_millis((s * 1000.0) as u64)).to_string()
        }
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_off_by_default_and_unregister_wins() {
        let mut cfg = Config::default();
        assert_eq!(verdict(Some(1e6), &cfg), Verdict::Fine);
        assert_eq!(collect_period(&cfg), None);
        cfg.consumer_lag_warning = Duration::from_secs(60);
        assert_eq!(verdict(Some(59.0), &cfg), Verdict::Fine);
        assert_eq!(verdict(Some(61.0), &cfg), Verdict::Lagging);
        assert_eq!(verdict(None, &cfg), Verdict::Fine);
        cfg.consumer_unregister_after = Duration::from_secs(120);
        assert_eq!(verdict(Some(100.0), &cfg), Verdict::Lagging);
        assert_eq!(verdict(Some(121.0), &cfg), Verdict::Unregister);
        assert_eq!(collect_period(&cfg), Some(Duration::from_secs(30)));
        cfg.stats_period = Duration::ZERO;
        assert_eq!(collect_period(&cfg), Some(FALLBACK_PERIOD));
    }

    fn read_at(at: Instant) -> Read {
        let q = QueueInfo {
            name: "q".into(),
            tick_lag: Some(10.0),
            rotation_age: Some(3590.0),
            rotation_period: Some(3600.0),
            ..QueueInfo::default()
        };
        let k = |name: &str| ConsumerInfo {
            queue: "q".into(),
            name: name.into(),
            lag: Some(100.0),
            ..ConsumerInfo::default()
        };
        Read {
            at,
            queues: Arc::new(vec![q]),
            consumers: vec![(k("old"), true), (k("new"), false)],
        }
    }

    #[test]
    fn a_position_before_the_last_rotation_blocks_once_rotation_is_due() {
        let r = read_at(Instant::now());
        let blocks = |r: &Read, by: u64| {
            r.consumers(Duration::from_secs(by))
                .iter()
                .map(|k| (k.name.clone(), k.blocks_rotation, k.lag))
                .collect::<Vec<_>>()
        };
        // Rotation due 10 s after the read: nobody blocks yet.
        assert_eq!(
            blocks(&r, 0),
            [
                ("old".into(), false, Some(100.0)),
                ("new".into(), false, Some(100.0))
            ]
        );
        // Past it: the consumer whose position predates step 2 blocks; the figures stay
        // as read (the metrics age them).
        assert_eq!(
            blocks(&r, 11),
            [
                ("old".into(), true, Some(100.0)),
                ("new".into(), false, Some(100.0))
            ]
        );
        // No rotation period: never due.
        let mut none = r.clone();
        none.queues = Arc::new(vec![QueueInfo {
            rotation_period: None,
            ..r.queues[0].clone()
        }]);
        assert!(blocks(&none, 11).iter().all(|(_, b, _)| !b));
        assert_eq!(
            lag_after(&r.consumers[0].0, Duration::from_secs(5)),
            Some(105.0)
        );
    }

    #[test]
    fn idle_ticks_keep_figures_only_of_queues_without_events_or_rate() {
        let idle = QueueInfo {
            name: "q".into(),
            ev_per_sec: Some(0.0),
            ev_new: Some(0),
            ..QueueInfo::default()
        };
        let with = |q: QueueInfo| Read {
            at: Instant::now(),
            queues: Arc::new(vec![idle.clone(), q]),
            consumers: vec![],
        };
        let r = with(idle.clone());
        assert!(r.survives(Since::Nothing) && r.survives(Since::IdleTicks));
        assert!(!r.survives(Since::Written));
        for q in [
            QueueInfo {
                ev_per_sec: Some(0.5),
                ..idle.clone()
            },
            QueueInfo {
                ev_new: Some(1),
                ..idle.clone()
            },
            // A single tick: no rate yet; the next tick gives one.
            QueueInfo {
                ev_per_sec: None,
                ..idle.clone()
            },
            // Event ids unreadable: unknown.
            QueueInfo {
                ev_new: None,
                ..idle.clone()
            },
        ] {
            let r = with(q);
            assert!(r.survives(Since::Nothing));
            assert!(!r.survives(Since::IdleTicks), "{:?}", r.queues[1]);
        }
        assert_eq!(Since::Nothing.max(Since::IdleTicks), Since::IdleTicks);
        assert_eq!(Since::Written.max(Since::IdleTicks), Since::Written);
    }
}
