//! The maintenance lane: run what `pgq.maint_operations()` lists, in order (R12: the policy
//! is pgq's; the daemon only executes it).
//!
//! - Function operations (rotation step1 per queue, step2, a queue's extra maintenance,
//!   pgq_node/londiste functions) are called as `select f($1)` — each an autocommit
//!   statement, so step1 and step2 run in separate transactions as pgq requires — and
//!   repeated while the first column reads non-zero (C `atoi`: a composite result reads 0).
//! - `vacuum` operations run outside any transaction on a short VACUUM lease from the
//!   broker, so they never sit on the database's shared connection.
//! - A failing operation (say a missing extra function) fails that step only: it is logged
//!   and the round goes on. Only a lost connection or a dropped database ends the round.
//!
//! Names coming back from the server become SQL only through [`sql::maint_call`] (R11).
//! Driven by `database.rs`; [`Maintainer::run_once`] is one round.

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::broker::{Broker, DbConn, Purpose, StmtError};
use super::classify::{Action, LaneError};
use crate::sql::{self, MaintCall};

/// Most calls of one operation per round; pgq's own functions return 0 long before this.
const MAX_REPEAT: u32 = 1_000;

/// What one maintenance round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintPass {
    /// Operations listed by `pgq.maint_operations()`.
    pub ops: u32,
    /// Function calls made (repeats included).
    pub calls: u32,
    /// `pgq.maint_rotate_tables_step1` calls made.
    pub rotations: u32,
    /// VACUUM statements that finished.
    pub vacuumed: u32,
    /// Operations that failed (logged; the round went on).
    pub failed: u32,
    /// Whether the round stopped early because of shutdown.
    pub interrupted: bool,
}

/// The maintenance lane of one database; remembers failing operations so each is logged
/// once at warning level until it recovers.
#[derive(Debug, Default)]
pub struct Maintainer {
    failing: HashMap<String, String>,
    /// Tables the role may not vacuum (warned once; `vacuum_rights.rs`).
    rights: super::vacuum_rights::VacuumRights,
    report: super::metrics::DbReport,
}

impl Maintainer {
    /// A maintainer with no history.
    pub fn new() -> Maintainer {
        Maintainer::default()
    }

    /// Reports failed operations by SQLSTATE to `report` (metrics, #6).
    pub fn reporting(mut self, report: super::metrics::DbReport) -> Maintainer {
        self.report = report;
        self
    }

    /// One round. Stops between statements when `token` is cancelled: a rotation step or
    /// VACUUM in flight finishes (statement_timeout caps it).
    pub async fn run_once(
        &mut self,
        conn: &mut DbConn,
        broker: &Broker,
        db: &str,
        token: &CancellationToken,
    ) -> Result<MaintPass, LaneError> {
        // Nothing to list is the common case; a failed look asks pgq anyway.
        match conn.query(sql::MAINT_NEEDED, &[]).await {
            Ok(rows)
                if !rows
                    .first()
                    .and_then(|r| r.try_get::<_, bool>(0).ok())
                    .unwrap_or(true) =>
            {
                debug!("nothing for pgq.maint_operations() to list");
                return Ok(MaintPass::default());
            }
            Ok(_) => {}
            Err(e) => match e.action(false) {
                Action::Stop | Action::Reconnect => {
                    return Err(LaneError::core("maintenance check", e));
                }
                Action::Reprobe | Action::Retry => {
                    debug!(sqlstate = e.sqlstate().unwrap_or(""), error = %e, "maintenance check failed; asking pgq.maint_operations()");
                }
            },
        }
        let rows = conn
            .query(sql::MAINT_OPERATIONS, &[])
            .await
            .map_err(|e| LaneError::core("pgq.maint_operations()", e))?;
        let mut pass = MaintPass {
            ops: rows.len() as u32,
            ..MaintPass::default()
        };
        let mut lease: Option<DbConn> = None;
        for row in &rows {
            if token.is_cancelled() {
                pass.interrupted = true;
                break;
            }
            let func: Option<String> = row.try_get(0).ok().flatten();
            let arg: Option<String> = row.try_get(1).ok().flatten();
            let func = func.unwrap_or_default();
            let key = format!("{func}({})", arg.as_deref().unwrap_or(""));
            let call = match sql::maint_call(&func, arg.as_deref()) {
                Ok(c) => c,
                Err(bad) => {
                    pass.failed += 1;
                    self.note_failure(&key, None, &bad.to_string());
                    continue;
                }
            };
            let result = match call {
                MaintCall::Vacuum(stmt) => {
                    self.vacuum(
                        conn,
                        &mut lease,
                        broker,
                        db,
                        &stmt,
                        arg.as_deref().unwrap_or(""),
                    )
                    .await
                }
                MaintCall::Function { sql, with_arg } => {
                    let rotation = func.eq_ignore_ascii_case("pgq.maint_rotate_tables_step1");
                    let mut calls = 0;
                    let r = call_repeatedly(
                        conn,
                        &sql,
                        with_arg.then_some(arg.as_deref()).flatten(),
                        token,
                        &mut calls,
                    )
                    .await;
                    pass.calls += calls;
                    if rotation {
                        pass.rotations += calls;
                    }
                    r
                }
            };
            match result {
                Ok(vacuumed) => {
                    pass.vacuumed += u32::from(vacuumed);
                    if self.failing.remove(&key).is_some() {
                        info!(operation = %key, "maintenance operation works again");
                    }
                }
                Err(e) => match e.action(false) {
                    Action::Stop | Action::Reconnect => return Err(LaneError::other(key, e)),
                    Action::Reprobe | Action::Retry => {
                        pass.failed += 1;
                        self.note_failure(&key, e.sqlstate(), &e.to_string());
                    }
                },
            }
        }
        Ok(pass)
    }

    /// Runs one VACUUM on its own short lease; true when it finished. Skipped (false) when
    /// the role may not vacuum `table`.
    /// Runs one VACUUM on the round's lease (opened on first use, so a round opens at
    /// most one connection), unless the table has no dead rows — an idle database's
    /// rounds then open no connection at all — or no lease is free under the budget (the
    /// next round does it; the ticker must not wait behind other databases' VACUUMs).
    async fn vacuum(
        &mut self,
        conn: &mut DbConn,
        lease: &mut Option<DbConn>,
        broker: &Broker,
        db: &str,
        stmt: &str,
        table: &str,
    ) -> Result<bool, StmtError> {
        if !self.rights.allowed(conn, table).await {
            return Ok(false);
        }
        let rows = conn.query(sql::DEAD_ROWS, &[&table]).await?;
        if !rows
            .first()
            .and_then(|r| r.try_get::<_, bool>(0).ok())
            .unwrap_or(true)
        {
            debug!(table, "nothing to vacuum");
            return Ok(false);
        }
        if let Some(l) = lease.as_mut() {
            l.execute_simple(stmt).await?;
            debug!(statement = stmt, "vacuum done");
            return Ok(true);
        }
        let new = match broker.connect(db, Purpose::Vacuum).await {
            Ok(c) => c,
            Err(super::broker::ConnectError::Busy) => {
                debug!(table, "no VACUUM lease free; next round");
                return Ok(false);
            }
            Err(super::broker::ConnectError::Server(e)) => return Err(StmtError::Pg(e)),
            Err(super::broker::ConnectError::Timeout(d)) => {
                return Err(StmtError::ClientTimeout(d));
            }
            Err(e @ super::broker::ConnectError::Config(_)) => {
                // Cannot happen once the work connection exists with the same settings;
                // report it as a failed step.
                warn!(error = %e, "no connection for vacuum");
                return Ok(false);
            }
        };
        new.execute_simple(stmt).await?;
        *lease = Some(new);
        debug!(statement = stmt, "vacuum done");
        Ok(true)
    }

    /// Logs at warning level when the operation's failure is new or its SQLSTATE changed.
    fn note_failure(&mut self, key: &str, sqlstate: Option<&str>, what: &str) {
        let state = sqlstate.unwrap_or("");
        self.report.error(state);
        if self.failing.get(key).map(String::as_str) == Some(state) {
            debug!(
                operation = key,
                sqlstate = sqlstate.unwrap_or(""),
                error = what,
                "maintenance operation still failing"
            );
        } else {
            warn!(
                operation = key,
                sqlstate = sqlstate.unwrap_or(""),
                error = what,
                "maintenance operation failed"
            );
            self.failing.insert(key.to_string(), state.to_string());
        }
    }
}

/// Calls a maintenance function until its first column reads 0; counts calls in `calls`.
async fn call_repeatedly(
    conn: &mut DbConn,
    sql: &str,
    arg: Option<&str>,
    token: &CancellationToken,
    calls: &mut u32,
) -> Result<bool, StmtError> {
    while *calls < MAX_REPEAT {
        let rows = match arg {
            Some(a) => conn.query_dynamic(sql, &[&a]).await?,
            None => conn.query_dynamic(sql, &[]).await?,
        };
        *calls += 1;
        let first: Option<String> = rows.first().and_then(|r| r.try_get(0).ok().flatten());
        if sql::atoi(first.as_deref()) == 0 || token.is_cancelled() {
            return Ok(false);
        }
    }
    warn!(
        statement = sql,
        calls = *calls,
        "maintenance function kept asking for more; next round goes on"
    );
    Ok(false)
}
