//! What a failed statement means for the database task (R9): one [`classify`] built on the
//! SQLSTATE (`code()`), `as_db_error()` and `is_closed()` — never on message text.
//!
//! Called by `database.rs` for every lane error and every connect failure; `maint.rs` uses
//! it to decide whether a failed step ends the round or only that step.

use tokio_postgres::error::SqlState;

/// The task's reaction to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The database is gone (`3D000`): stop this database's task.
    Stop,
    /// pgq itself is missing (`3F000`, or `42883`/`42P01` from pgq's core): go back to
    /// probing for pgq.
    Reprobe,
    /// The connection is lost or the server is going away (`57P01`–`57P03`, class `08`,
    /// closed socket, I/O): reconnect with backoff.
    Reconnect,
    /// Anything else: log it and try again at the next period.
    Retry,
}

/// Classifies `e`. `core` says whether the statement was one of pgq's own core calls (the
/// probe, the due check, `pgq.ticker`, `maint_operations`, `maint_retry_events`): only then
/// do a missing function or table mean that pgq is gone. A missing function named by
/// `maint_operations()` (a queue's extra maintenance) is an ordinary failed step.
pub fn classify(e: &tokio_postgres::Error, core: bool) -> Action {
    match e.code() {
        Some(code) => classify_code(code, core),
        // No SQLSTATE: the client side failed (closed socket, I/O, protocol).
        None => Action::Reconnect,
    }
}

/// The SQLSTATE part of [`classify`], separate so it can be tested without a server.
pub fn classify_code(code: &SqlState, core: bool) -> Action {
    if *code == SqlState::INVALID_CATALOG_NAME {
        return Action::Stop;
    }
    if *code == SqlState::INVALID_SCHEMA_NAME {
        return Action::Reprobe;
    }
    if core && (*code == SqlState::UNDEFINED_FUNCTION || *code == SqlState::UNDEFINED_TABLE) {
        return Action::Reprobe;
    }
    let s = code.code();
    if matches!(s, "57P01" | "57P02" | "57P03") || s.starts_with("08") {
        return Action::Reconnect;
    }
    // 53300 too_many_connections and 28xxx (authentication) arrive at connect time; the
    // task keeps retrying them with backoff too.
    if s == "53300" || s.starts_with("28") {
        return Action::Reconnect;
    }
    Action::Retry
}

/// Whether a failed `pgq.ticker(queue)` may mean a database restored from another
/// cluster: pgq raises that ("Invalid PgQ state") as a plain exception, P0001, which
/// carries no more meaning than that. It only triggers the state check in `restored.rs`.
pub fn may_be_restored(e: &super::broker::StmtError) -> bool {
    e.sqlstate() == Some(SqlState::RAISE_EXCEPTION.code())
}

/// A lane's failed statement, with what is needed to log it and react to it.
#[derive(Debug, thiserror::Error)]
#[error("{statement}: {error}")]
pub struct LaneError {
    /// Which statement failed (a short name, or the maintenance call).
    pub statement: String,
    /// The failure.
    pub error: super::broker::StmtError,
    /// Whether the statement was one of pgq's core calls (see [`classify`]).
    pub core: bool,
}

impl LaneError {
    /// A failed core call: a missing function or table there means pgq is gone.
    pub fn core(statement: impl Into<String>, error: super::broker::StmtError) -> LaneError {
        LaneError {
            statement: statement.into(),
            error,
            core: true,
        }
    }

    /// A failed non-core call.
    pub fn other(statement: impl Into<String>, error: super::broker::StmtError) -> LaneError {
        LaneError {
            statement: statement.into(),
            error,
            core: false,
        }
    }

    /// What the task should do about it.
    pub fn action(&self) -> Action {
        self.error.action(self.core)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> SqlState {
        SqlState::from_code(s)
    }

    #[test]
    fn database_gone_stops() {
        assert_eq!(classify_code(&c("3D000"), false), Action::Stop);
        assert_eq!(classify_code(&c("3D000"), true), Action::Stop);
    }

    #[test]
    fn missing_pgq_reprobes_only_for_core_calls() {
        assert_eq!(classify_code(&c("3F000"), false), Action::Reprobe);
        assert_eq!(classify_code(&c("42883"), true), Action::Reprobe);
        assert_eq!(classify_code(&c("42P01"), true), Action::Reprobe);
        assert_eq!(classify_code(&c("42883"), false), Action::Retry);
        assert_eq!(classify_code(&c("42P01"), false), Action::Retry);
    }

    #[test]
    fn shutdowns_and_connection_errors_reconnect() {
        for s in [
            "57P01", "57P02", "57P03", "08006", "08001", "53300", "28P01",
        ] {
            assert_eq!(classify_code(&c(s), true), Action::Reconnect, "{s}");
        }
    }

    #[test]
    fn everything_else_retries() {
        for s in ["P0001", "57014", "40001", "55P03", "42501", "XX000"] {
            assert_eq!(classify_code(&c(s), true), Action::Retry, "{s}");
        }
    }
}
