//! The ticker's guard against a database restored from another cluster (see
//! `crate::restore`).
//!
//! pgq reports that state only as a plain `raise exception` (SQLSTATE P0001) from
//! `pgq.ticker(queue)`, and R9 forbids reading message text. So a P0001 from a tick is only
//! the trigger ([`super::classify::may_be_restored`]); the decision is the state check
//! [`crate::restore::RESTORED_QUEUES`], which has no false positives.
//!
//! Once the database is found restored, the task logs one error naming the repair command,
//! stops calling `pgq.ticker` there (every call would fail), and re-runs only the cheap
//! state check, at most every [`RECHECK`]. When `pgqd repair-restore` has run, the next
//! check clears the state and the ticker goes on. Owned by `ticker::Ticker`.

use std::time::{Duration, Instant};

use tracing::{error, info};

use super::broker::{DbConn, StmtError};
use crate::restore;

/// How often a database known to be restored is checked again.
pub const RECHECK: Duration = Duration::from_secs(10);

/// Whether the database is known to be restored, and since when it was last checked.
#[derive(Debug, Default)]
pub struct RestoreGuard {
    flagged: Option<Instant>,
}

/// What the guard says about the coming ticker pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Tick as usual.
    Tick,
    /// Skip the pass: the database is still restored (or it is not time to look again).
    Skip,
}

impl RestoreGuard {
    /// Whether the database is currently known to be restored.
    pub fn is_flagged(&self) -> bool {
        self.flagged.is_some()
    }

    /// Before a pass: skips it while the database is flagged, re-checking at most every
    /// [`RECHECK`].
    pub async fn before_pass(&mut self, conn: &mut DbConn) -> Result<Verdict, StmtError> {
        let Some(at) = self.flagged else {
            return Ok(Verdict::Tick);
        };
        if at.elapsed() < RECHECK {
            return Ok(Verdict::Skip);
        }
        let queues = self.check(conn).await?;
        if queues.is_empty() {
            self.flagged = None;
            info!("restored-database state repaired: ticking again");
            Ok(Verdict::Tick)
        } else {
            self.flagged = Some(Instant::now());
            Ok(Verdict::Skip)
        }
    }

    /// After a failed tick whose SQLSTATE may mean a restored database: runs the state
    /// check and, when it confirms, logs the one error and flags the database. Returns
    /// whether the database is restored (the pass should stop).
    pub async fn after_failed_tick(&mut self, conn: &mut DbConn) -> Result<bool, StmtError> {
        let queues = self.check(conn).await?;
        if queues.is_empty() {
            return Ok(false);
        }
        let db = queues[0].database.clone();
        let sample = &queues[0];
        error!(
            queues = queues.len(),
            tick_txid = sample.tick_xmax,
            next_txid = sample.next_txid,
            sqlstate = "P0001",
            statement = crate::sql::TICK,
            "{}",
            restore::explain(&db, &queues)
        );
        self.flagged = Some(Instant::now());
        Ok(true)
    }

    async fn check(&self, conn: &mut DbConn) -> Result<Vec<restore::RestoredQueue>, StmtError> {
        let rows = conn.query(restore::RESTORED_QUEUES, &[]).await?;
        Ok(restore::from_rows(&rows)?)
    }
}
