//! Counters of the daemon's work and the periodic stats line (`{ticks: N, maint: N, retry: N}`,
//! as C pgqd logs it every `stats_period`).
//!
//! Atomics are the only state shared between database tasks (R2). Each task counts into
//! its own [`Counters`] slot and into the global one; the supervisor logs and resets the
//! global "since last report" figures. Differences from C pgqd: `ticks` counts ticks made
//! (C counts `pgq.ticker()` calls), `maint` counts finished maintenance rounds, `retry`
//! counts events moved back (as C does).

use std::sync::atomic::{AtomicU64, Ordering};

/// A set of work counters; totals never reset, the report window does.
#[derive(Debug, Default)]
pub struct Counters {
    ticks: AtomicU64,
    maint: AtomicU64,
    retry: AtomicU64,
    errors: AtomicU64,
    window_ticks: AtomicU64,
    window_maint: AtomicU64,
    window_retry: AtomicU64,
}

/// A copy of counter values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Ticks made.
    pub ticks: u64,
    /// Maintenance rounds finished.
    pub maint: u64,
    /// Retry events moved back into their queue.
    pub retry: u64,
    /// Failed statements (totals only).
    pub errors: u64,
}

impl Counters {
    /// Counts `n` ticks made.
    pub fn add_ticks(&self, n: u64) {
        self.ticks.fetch_add(n, Ordering::Relaxed);
        self.window_ticks.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one finished maintenance round.
    pub fn add_maint(&self) {
        self.maint.fetch_add(1, Ordering::Relaxed);
        self.window_maint.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` retry events moved.
    pub fn add_retry(&self, n: u64) {
        self.retry.fetch_add(n, Ordering::Relaxed);
        self.window_retry.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one failed statement.
    pub fn add_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Totals since start.
    pub fn totals(&self) -> Snapshot {
        Snapshot {
            ticks: self.ticks.load(Ordering::Relaxed),
            maint: self.maint.load(Ordering::Relaxed),
            retry: self.retry.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Figures since the previous call (the stats line), resetting the window.
    pub fn take_window(&self) -> Snapshot {
        Snapshot {
            ticks: self.window_ticks.swap(0, Ordering::Relaxed),
            maint: self.window_maint.swap(0, Ordering::Relaxed),
            retry: self.window_retry.swap(0, Ordering::Relaxed),
            errors: 0,
        }
    }
}

/// A database task's handle to its own slot and the global counters.
#[derive(Debug, Clone)]
pub struct StatsHandle {
    /// This database's counters.
    pub db: std::sync::Arc<Counters>,
    /// The daemon-wide counters.
    pub global: std::sync::Arc<Counters>,
    /// This database's slot in the metrics registry (state, ticks, errors by SQLSTATE).
    pub report: super::metrics::DbReport,
}

impl StatsHandle {
    /// Counts `n` ticks made.
    pub fn ticks(&self, n: u64) {
        self.db.add_ticks(n);
        self.global.add_ticks(n);
    }

    /// Counts one finished maintenance round.
    pub fn maint(&self) {
        self.db.add_maint();
        self.global.add_maint();
    }

    /// Counts `n` retry events moved.
    pub fn retry(&self, n: u64) {
        self.db.add_retry(n);
        self.global.add_retry(n);
    }

    /// Counts one failed statement.
    pub fn error(&self) {
        self.db.add_error();
        self.global.add_error();
    }
}

/// The stats line as C pgqd writes it.
pub fn stats_line(s: &Snapshot) -> String {
    format!(
        "{{ticks: {}, maint: {}, retry: {}}}",
        s.ticks, s.maint, s.retry
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_resets_totals_do_not() {
        let c = Counters::default();
        c.add_ticks(3);
        c.add_maint();
        c.add_retry(10);
        let w = c.take_window();
        assert_eq!(stats_line(&w), "{ticks: 3, maint: 1, retry: 10}");
        assert_eq!(
            stats_line(&c.take_window()),
            "{ticks: 0, maint: 0, retry: 0}"
        );
        assert_eq!(c.totals().ticks, 3);
    }
}
