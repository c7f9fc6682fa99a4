//! The ticker's guard against queues restored from another cluster (see
//! `crate::restore`).
//!
//! pgq reports that state only as a plain `raise exception` (SQLSTATE P0001) from
//! `pgq.ticker(queue)`, and R9 forbids reading message text. So a P0001 from a tick is only
//! the trigger ([`super::classify::may_be_restored`]); the decision is the state check
//! [`crate::restore::RESTORED_QUEUES`], which has no false positives.
//!
//! Once queues are found restored, the task logs one error for the database naming them
//! and the repair command, stops calling `pgq.ticker` for those queues (every call would
//! fail; the other queues tick on), and re-runs only the cheap state check, at most every
//! [`RECHECK`]. When `pgqd repair-restore` has run, the next check clears the state and
//! says so. Owned by `ticker::Ticker`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tracing::{debug, error, info};

use super::broker::{DbConn, StmtError};
use crate::restore;

/// How often a database with restored queues is checked again.
pub const RECHECK: Duration = Duration::from_secs(10);

/// The queues known to be restored, and when that was last checked.
#[derive(Debug, Default)]
pub struct RestoreGuard {
    queues: BTreeSet<String>,
    checked: Option<Instant>,
}

impl RestoreGuard {
    /// Whether the ticker must leave `queue` alone (it is restored and not repaired yet).
    pub fn skips(&self, queue: &str) -> bool {
        self.queues.contains(queue)
    }

    /// Before a pass: while queues are flagged, re-checks at most every [`RECHECK`] and
    /// clears what was repaired.
    pub async fn before_pass(&mut self, conn: &mut DbConn) -> Result<(), StmtError> {
        if self.queues.is_empty() || self.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return Ok(());
        }
        let now: BTreeSet<String> = check(conn).await?.into_iter().map(|q| q.name).collect();
        self.checked = Some(Instant::now());
        if now.is_empty() {
            info!(queues = ?self.queues, "restored-database state repaired: ticking again");
        }
        self.queues = now;
        Ok(())
    }

    /// After `queue`'s tick failed with a SQLSTATE that may mean a restored database: runs
    /// the state check and, when it confirms, flags the queues (logging the one error when
    /// the database had none flagged yet). Returns whether `queue` is restored (then its
    /// failure is already reported).
    pub async fn after_failed_tick(
        &mut self,
        conn: &mut DbConn,
        queue: &str,
    ) -> Result<bool, StmtError> {
        let found = check(conn).await?;
        self.checked = Some(Instant::now());
        if found.is_empty() {
            return Ok(false);
        }
        if self.queues.is_empty() {
            let first = &found[0];
            error!(
                queues = found.len(),
                tick_txid = first.tick_xmax,
                next_txid = first.next_txid,
                sqlstate = "P0001",
                statement = crate::sql::TICK,
                "{}",
                restore::explain(&first.database, &found)
            );
        } else {
            debug!(queue, "more restored queues");
        }
        self.queues = found.into_iter().map(|q| q.name).collect();
        Ok(self.queues.contains(queue))
    }
}

async fn check(conn: &mut DbConn) -> Result<Vec<restore::RestoredQueue>, StmtError> {
    let rows = conn.query(restore::RESTORED_QUEUES, &[]).await?;
    Ok(restore::from_rows(&rows)?)
}
