//! The connection broker: the one component that opens database connections for the daemon
//! (R2, issue #3; budgeted in #7).
//!
//! Each database task holds one [`DbConn`] from here and shares it between its ticker,
//! retry and maintenance lanes in turn; VACUUM gets a separate short lease
//! ([`Purpose::Vacuum`]) that is dropped as soon as the statement finishes; discovery gets a
//! brief connection to `initial_database`. Every connection gets the configured
//! `application_name`, `statement_timeout` and `lock_timeout`, and every statement also has
//! a client-side deadline (statement_timeout plus a margin) so a dead peer without a FIN
//! cannot hang a task forever.
//!
//! The broker counts open connections by purpose; #7 adds the budget (eviction of quiet
//! databases, a rate limit on new connections) here without touching the lanes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::config::Config;
use crate::sql;

/// How long a connection attempt may take when the connection string does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to statement_timeout for the client-side deadline of each statement.
const CLIENT_MARGIN: Duration = Duration::from_secs(5);

/// Why a connection is opened; the broker counts each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The one connection of a database task, shared by its lanes.
    Work,
    /// A short lease for VACUUM (which may run long and must not hold up ticks' connection
    /// in an open transaction; it runs outside any transaction).
    Vacuum,
    /// Listing databases through `initial_database`.
    Discovery,
    /// The control session: leader lock and activity signal (`control.rs`).
    Control,
}

/// A failed statement: a server or client error, or our own client-side deadline.
#[derive(Debug, thiserror::Error)]
pub enum StmtError {
    /// tokio-postgres reported an error (server SQLSTATE or a client-side failure).
    #[error("{}", crate::pgerr::describe(.0))]
    Pg(#[from] tokio_postgres::Error),
    /// The statement did not answer within statement_timeout plus a margin.
    #[error("no answer within {0:?}")]
    ClientTimeout(Duration),
    /// The per-database fence (`sql::FENCE_KEY`) was refused: another daemon's session
    /// holds this database, so nothing was written (issue #8).
    #[error("the per-database fence was refused: another pgqd holds this database")]
    Fenced,
}

impl StmtError {
    /// The SQLSTATE, when the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StmtError::Pg(e) => crate::pgerr::sqlstate(e),
            StmtError::ClientTimeout(_) | StmtError::Fenced => None,
        }
    }

    /// What the task should do about it (R9); `core` as in [`super::classify::classify`].
    pub fn action(&self, core: bool) -> super::classify::Action {
        match self {
            StmtError::Pg(e) => super::classify::classify(e, core),
            StmtError::ClientTimeout(_) | StmtError::Fenced => super::classify::Action::Reconnect,
        }
    }
}

/// A failed connection attempt.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The connection string cannot be used; retrying will not help until a reload.
    #[error("{0}")]
    Config(String),
    /// The server refused or could not be reached.
    #[error("{}", crate::pgerr::describe(.0))]
    Server(tokio_postgres::Error),
}

impl ConnectError {
    /// What the task should do about it: `3D000` stops it, everything else is retried with
    /// backoff.
    pub fn action(&self) -> super::classify::Action {
        use super::classify::Action;
        let action = match self {
            ConnectError::Server(e) => super::classify::classify(e, false),
            ConnectError::Config(_) => Action::Reconnect,
        };
        match action {
            Action::Stop => Action::Stop,
            _ => Action::Reconnect,
        }
    }
}

/// Hands out connections; cheap to clone (all clones share the counters).
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: watch::Receiver<Arc<Config>>,
    open: [AtomicUsize; 4],
}

fn slot(p: Purpose) -> usize {
    match p {
        Purpose::Work => 0,
        Purpose::Vacuum => 1,
        Purpose::Discovery => 2,
        Purpose::Control => 3,
    }
}

impl Broker {
    /// A broker that reads the connection settings from the live config at each connect.
    pub fn new(cfg: watch::Receiver<Arc<Config>>) -> Broker {
        Broker {
            inner: Arc::new(Inner {
                cfg,
                open: Default::default(),
            }),
        }
    }

    /// Connections open right now for `purpose`.
    pub fn open(&self, purpose: Purpose) -> usize {
        self.inner.open[slot(purpose)].load(Ordering::Relaxed)
    }

    /// Opens a connection to `db` with the current config's connection string and session
    /// settings.
    pub async fn connect(&self, db: &str, purpose: Purpose) -> Result<DbConn, ConnectError> {
        let cfg = self.inner.cfg.borrow().clone();
        // base_connstr with dbname overridden, application_name, statement_timeout and
        // lock_timeout (as startup options), keepalives, TLS, .pgpass: all libpq-like.
        let mut target = crate::conn::daemon_target(&cfg, db)
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        if target.pg.get_connect_timeout().is_none() {
            target.pg.connect_timeout(CONNECT_TIMEOUT);
        }
        let client = match target.connect().await {
            Ok(c) => c,
            Err(crate::conn::Error::Connect { source, .. }) => {
                return Err(ConnectError::Server(source));
            }
            Err(other) => return Err(ConnectError::Config(other.to_string())),
        };
        let counter = &self.inner.open[slot(purpose)];
        counter.fetch_add(1, Ordering::Relaxed);
        let conn = DbConn {
            client,
            opened: Instant::now(),
            base_connstr: cfg.base_connstr.clone(),
            // daemon_target sent both as startup options.
            timeouts: Some((cfg.statement_timeout, cfg.lock_timeout)),
            prepared: HashMap::new(),
            guard: OpenGuard {
                broker: self.inner.clone(),
                slot: slot(purpose),
            },
        };
        Ok(conn)
    }
}

/// Decrements the broker's open count when the connection goes away.
#[derive(Debug)]
struct OpenGuard {
    broker: Arc<Inner>,
    slot: usize,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.broker.open[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One open connection. Dropping it closes the connection (tokio-postgres sends Terminate).
#[derive(Debug)]
pub struct DbConn {
    client: Client,
    opened: Instant,
    base_connstr: String,
    /// statement_timeout and lock_timeout as applied; None before the first apply.
    timeouts: Option<(Duration, Duration)>,
    prepared: HashMap<&'static str, Statement>,
    #[allow(dead_code)] // held for its Drop
    guard: OpenGuard,
}

impl DbConn {
    /// When this connection was opened (for `connection_lifetime`).
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Whether the config asks for a different server or session than this connection has:
    /// a new `base_connstr` needs a new connection.
    pub fn stale_for(&self, cfg: &Config) -> bool {
        self.base_connstr != cfg.base_connstr || self.client.is_closed()
    }

    /// Applies statement_timeout and lock_timeout if the config changed them.
    pub async fn apply_timeouts(&mut self, cfg: &Config) -> Result<(), StmtError> {
        let want = (cfg.statement_timeout, cfg.lock_timeout);
        if self.timeouts == Some(want) {
            return Ok(());
        }
        let st = cfg.statement_timeout.as_millis().to_string();
        let lt = cfg.lock_timeout.as_millis().to_string();
        let deadline = self.deadline();
        guarded(deadline, self.client.query(sql::SET_TIMEOUTS, &[&st, &lt])).await?;
        self.timeouts = Some(want);
        Ok(())
    }

    /// Forgets prepared statements (after an error: pgq may have been re-installed).
    pub fn forget_prepared(&mut self) {
        self.prepared.clear();
    }

    fn deadline(&self) -> Option<Duration> {
        match self.timeouts {
            Some((st, _)) if !st.is_zero() => Some(st + CLIENT_MARGIN),
            _ => None,
        }
    }

    async fn statement(&mut self, sql: &'static str) -> Result<Statement, StmtError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = guarded(self.deadline(), self.client.prepare(sql)).await?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }

    /// Runs a named query (prepared once per connection) and returns its rows.
    pub async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StmtError> {
        let stmt = self.statement(sql).await?;
        guarded(self.deadline(), self.client.query(&stmt, params)).await
    }

    /// Runs a statement built at run time (maintenance calls), unprepared.
    pub async fn query_dynamic(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StmtError> {
        guarded(self.deadline(), self.client.query(sql, params)).await
    }

    /// Runs a utility statement with the simple query protocol, outside any transaction
    /// (VACUUM).
    pub async fn execute_simple(&self, sql: &str) -> Result<(), StmtError> {
        guarded(self.deadline(), self.client.batch_execute(sql)).await
    }
}

/// Awaits `fut`, giving up after `deadline` (None: wait as long as it takes).
async fn guarded<T>(
    deadline: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StmtError> {
    match deadline {
        None => Ok(fut.await?),
        Some(d) => match tokio::time::timeout(d, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StmtError::ClientTimeout(d)),
        },
    }
}
