//! The collector lane: queue and consumer figures for the metrics, and the consumer lag
//! policies of issue #8, once per `stats_period` on a database the task serves — never per
//! tick (issue #6).
//!
//! [`Collector::run_once`] reads [`sql::COLLECT_QUEUES`] and [`sql::COLLECT_CONSUMERS`]
//! (both built on `pgq.get_queue_info()` / `pgq.get_consumer_info()`, so the real pgq
//! extension answers them too), then:
//! - warns once when a consumer's lag crosses `consumer_lag_warning` (and says when it is
//!   back under), flagging it in the figures (`pgqd_consumer_lagging`);
//! - with `consumer_unregister_after` set (off by default), unregisters a consumer whose lag
//!   is above it, logging at warn the tick it stood at, so an operator can put it back with
//!   `pgq.register_consumer_at(queue, consumer, tick)`.
//!
//! Driven by `database.rs` as its `Stats` lane; [`collect_period`] says whether and how often.

use std::collections::HashSet;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::broker::{DbConn, StmtError};
use super::classify::LaneError;
use super::metrics::{Collected, ConsumerInfo, QueueInfo};
use crate::config::Config;
use crate::sql;

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
/// so each crossing is logged once.
#[derive(Debug, Default)]
pub struct Collector {
    lagging: HashSet<(String, String)>,
}

impl Collector {
    /// A collector with no history.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// One collection with the lag policies; returns the figures for the metrics. The
    /// statements are core calls (pgq's own info functions): missing means pgq is gone.
    pub async fn run_once(
        &mut self,
        conn: &mut DbConn,
        cfg: &Config,
    ) -> Result<Collected, LaneError> {
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
                Ok::<_, tokio_postgres::Error>(ConsumerInfo {
                    queue: r.try_get(0)?,
                    name: r.try_get(1)?,
                    lag: r.try_get(2)?,
                    last_seen: r.try_get(3)?,
                    last_tick: r.try_get(4)?,
                    pending_events: r.try_get(5)?,
                    blocks_rotation: r.try_get(6)?,
                    lagging: false,
                })
            })()
            .map_err(|e| LaneError::core("collect consumers", StmtError::Pg(e)))?;
            consumers.push(k);
        }

        let mut kept = Vec::with_capacity(consumers.len());
        let mut seen = HashSet::new();
        let mut unregistered = 0;
        for mut k in consumers {
            let key = (k.queue.clone(), k.name.clone());
            match verdict(k.lag, cfg) {
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
                            lag = %secs(k.lag),
                            last_seen = %secs(k.last_seen),
                            limit = %humantime::format_duration(cfg.consumer_lag_warning),
                            "consumer lags behind its queue more than consumer_lag_warning"
                        );
                    }
                }
                Verdict::Fine => {
                    if self.lagging.contains(&key) {
                        info!(queue = %k.queue, consumer = %k.name, lag = %secs(k.lag),
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
        debug!(queues = queues.len(), consumers = kept.len(), "collected");
        Ok(Collected {
            queues,
            consumers: kept,
            unregistered,
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
}
