//! The retry lane: `pgq.maint_retry_events()` (which moves at most 10 due events back into
//! their queues per call) repeated until it returns 0, every `retry_period`.
//!
//! Driven by `database.rs`; [`Retrier::run_once`] is one flush.

use tokio_util::sync::CancellationToken;

use super::broker::DbConn;
use super::classify::LaneError;
use super::control::Signals;
use crate::sql;

/// Upper bound on calls per flush, so a retry queue that refills as fast as it drains
/// cannot keep the shared connection from ticking; the rest waits for the next period.
const MAX_CALLS: u32 = 10_000;

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryPass {
    /// Events moved back into their queues.
    pub moved: u64,
    /// Calls made.
    pub calls: u32,
}

/// The retry lane of one database.
#[derive(Debug, Default)]
pub struct Retrier;

impl Retrier {
    /// Calls `pgq.maint_retry_events()` until it returns 0 (or `token` is cancelled, or
    /// `MAX_CALLS` is reached).
    pub async fn run_once(
        &mut self,
        conn: &mut DbConn,
        token: &CancellationToken,
        signals: &Signals,
    ) -> Result<RetryPass, LaneError> {
        let mut pass = RetryPass::default();
        while pass.calls < MAX_CALLS && !token.is_cancelled() {
            let rows = conn
                .query(sql::RETRY, &[&sql::FENCE_KEY])
                .await
                .map_err(|e| LaneError::core("pgq.maint_retry_events()", e))?;
            pass.calls += 1;
            let row = rows.first();
            signals.own_xid(row.and_then(|r| r.try_get(1).ok()));
            let n: i64 = row
                .and_then(|r| r.try_get::<_, Option<i64>>(0).ok().flatten())
                .unwrap_or(0);
            if n <= 0 {
                break;
            }
            pass.moved += n as u64;
        }
        Ok(pass)
    }
}
