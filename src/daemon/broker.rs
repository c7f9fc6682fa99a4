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
//! **Budget (issue #7).** With `connection_budget` > 0 the daemon never holds more
//! connections than that: the control session, discovery and two VACUUM leases are set
//! aside, the rest are permits for database tasks. Permits go to waiting tasks in two
//! queues: *urgent* ones (a database with events, or activity just seen in it) before
//! *routine* ones (idle ticks, sweeps, first visits), so a first event never queues behind
//! a thousand idle visits. An urgent waiter asks at once for the holder whose next work is
//! furthest away to let go (it does at its next wait and reconnects when that work is due);
//! a routine one only after waiting [`ROUTINE_WAIT`]. Not the least recently used: idle
//! databases are visited periodically, so the one used longest ago is the one needed
//! soonest — evicting it would turn every visit into a new connection.
//!
//! While more databases serve pgq than there are permits ([`Broker::pressure`]), a
//! quiet database's connection would be evicted before its next idle tick anyway, so
//! database tasks hand it back right after each visit (`database.rs`): connections then
//! track the databases with work, not the budget. Routine new connections are
//! rate-limited ([`CONNECT_RATE`]): each costs the server milliseconds of CPU, and a
//! thousand databases found at once must not stampede; urgent ones are not held up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::config::Config;
use crate::sql;

/// How long a connection attempt may take when the connection string does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to statement_timeout for the client-side deadline of each statement.
const CLIENT_MARGIN: Duration = Duration::from_secs(5);
/// Most new connections per second.
pub const CONNECT_RATE: u32 = 50;
/// Connections set aside from the budget: control, discovery, two VACUUM leases.
const RESERVED: u32 = 4;
/// A holder younger than this is not evicted (no thrashing on a burst of new work).
const MIN_HOLD: Duration = Duration::from_secs(1);
/// How long an urgent task waits for an evicted holder before asking for another eviction.
const EVICT_WAIT: Duration = Duration::from_millis(200);
/// How long a routine task waits for a permit to come free before it asks for an eviction
/// (and between two such asks).
pub const ROUTINE_WAIT: Duration = Duration::from_secs(1);
/// Longest a routine waiter at the head of its queue is passed over for urgent ones.
const ROUTINE_MAX_WAIT: Duration = Duration::from_secs(2);

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
    /// A statement this session prepared is gone (26000): the session is not one server
    /// session, i.e. a transaction-pooling proxy sits in between.
    #[error(
        "{0}; a statement prepared on this session vanished: pgqd seems to be behind a \
         transaction-pooling proxy (PgBouncer pool_mode=transaction), which breaks the session \
         state it needs (prepared statements, advisory locks); connect pgqd to PostgreSQL \
         directly or use pool_mode=session"
    )]
    Pooled(tokio_postgres::Error),
}

impl StmtError {
    /// The SQLSTATE, when the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            StmtError::Pg(e) | StmtError::Pooled(e) => crate::pgerr::sqlstate(e),
            StmtError::ClientTimeout(_) | StmtError::Fenced => None,
        }
    }

    /// What the task should do about it (R9); `core` as in [`super::classify::classify`].
    pub fn action(&self, core: bool) -> super::classify::Action {
        match self {
            StmtError::Pg(e) => super::classify::classify(e, core),
            StmtError::ClientTimeout(_) | StmtError::Fenced | StmtError::Pooled(_) => {
                super::classify::Action::Reconnect
            }
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
    /// Connecting (TCP, TLS and the startup handshake together) took longer than the
    /// connection string's `connect_timeout` (10 s when it sets none): a host that accepts
    /// TCP and then says nothing must not hang a task.
    #[error("no answer from the server within {0:?} (connect_timeout)")]
    Timeout(Duration),
    /// Every VACUUM lease of the budget is in use (VACUUM waits for the next round rather
    /// than hold up its database's ticker).
    #[error("no VACUUM lease free under connection_budget")]
    Busy,
}

impl ConnectError {
    /// What the task should do about it: `3D000` stops it, everything else is retried with
    /// backoff.
    pub fn action(&self) -> super::classify::Action {
        use super::classify::Action;
        let action = match self {
            ConnectError::Server(e) => super::classify::classify(e, false),
            ConnectError::Config(_) | ConnectError::Timeout(_) | ConnectError::Busy => {
                Action::Reconnect
            }
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
    opened: [std::sync::atomic::AtomicU64; 4],
    /// Work permits, sized from the budget at creation (None: no budget).
    work: Option<Mutex<Pool>>,
    /// How many work permits the budget gives.
    work_cap: usize,
    /// VACUUM leases (None: no budget).
    vacuum: Option<Arc<Semaphore>>,
    /// Database tasks serving pgq now ([`Tenant`]s), with or without a connection.
    tenants: AtomicUsize,
    holders: Mutex<HashMap<u64, Holder>>,
    next_holder: AtomicU64,
    /// Sessions we opened per database (the control session tells them from others').
    sessions: Mutex<HashMap<String, u64>>,
    next_connect: Mutex<Instant>,
}

/// The work permits: how many are free, and who waits for one, urgent first.
#[derive(Debug, Default)]
struct Pool {
    free: usize,
    urgent: VecDeque<(Instant, oneshot::Sender<WorkPermit>)>,
    routine: VecDeque<(Instant, oneshot::Sender<WorkPermit>)>,
}

/// One work permit; dropping it hands it to the next waiter (urgent first) or frees it.
#[derive(Debug)]
struct WorkPermit {
    /// None once handed on (a send that found its waiter gone).
    broker: Option<Arc<Inner>>,
}

impl Drop for WorkPermit {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            release(&b);
        }
    }
}

/// Gives a permit back: to the first live waiter, urgent ones first, else to the pool.
fn release(b: &Arc<Inner>) {
    let Some(pool) = &b.work else { return };
    loop {
        let tx = {
            let mut p = pool.lock().unwrap_or_else(|e| e.into_inner());
            // Urgent first, but a routine waiter is never passed over for longer than
            // ROUTINE_MAX_WAIT: more busy databases than permits must not starve the rest.
            let aged = p
                .routine
                .front()
                .is_some_and(|(t, _)| t.elapsed() >= ROUTINE_MAX_WAIT);
            let next = if aged {
                p.routine.pop_front()
            } else {
                p.urgent.pop_front().or_else(|| p.routine.pop_front())
            };
            match next {
                Some((_, tx)) => tx,
                None => {
                    p.free += 1;
                    return;
                }
            }
        };
        // A waiter that gave up (its receiver is gone) returns the permit in the error;
        // disarm it and try the next one. One that received it but was dropped before
        // reading drops the permit, which releases it again.
        match tx.send(WorkPermit {
            broker: Some(b.clone()),
        }) {
            Ok(()) => return,
            Err(mut p) => p.broker = None,
        }
    }
}

/// A database task that serves pgq, counted for [`Broker::pressure`] while it lives.
#[derive(Debug)]
pub struct Tenant {
    broker: Arc<Inner>,
}

impl Drop for Tenant {
    fn drop(&mut self) {
        self.broker.tenants.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A database task holding a work permit.
#[derive(Debug)]
struct Holder {
    since: Instant,
    /// When the task next needs its connection (now while it has work waiting).
    next_need: Instant,
    evict: Arc<Notify>,
    asked: bool,
}

/// A database task's place in the budget: touched when it has work, told to let go.
#[derive(Debug)]
pub struct Tenancy {
    broker: Arc<Inner>,
    id: u64,
    evict: Arc<Notify>,
}

impl Tenancy {
    /// Marks the holder as busy now (evicted last).
    pub fn touch(&self) {
        self.next_need(Instant::now());
    }

    /// Tells the broker when this task next needs its connection.
    pub fn next_need(&self, at: Instant) {
        let mut h = self
            .broker
            .holders
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(x) = h.get_mut(&self.id) {
            x.next_need = at;
        }
    }

    /// Resolves when the broker asks this task to let go of its connection.
    pub fn evicted(&self) -> Arc<Notify> {
        self.evict.clone()
    }
}

impl Drop for Tenancy {
    fn drop(&mut self) {
        let mut h = self
            .broker
            .holders
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        h.remove(&self.id);
    }
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
        // The budget is read once: resizing semaphores under holders is not worth it; a
        // changed budget applies at restart (README says so).
        let budget = cfg.borrow().connection_budget;
        let work_cap = budget.saturating_sub(RESERVED).max(1) as usize;
        let work = (budget > 0).then(|| {
            Mutex::new(Pool {
                free: work_cap,
                ..Pool::default()
            })
        });
        let vacuum = (budget > 0).then(|| Arc::new(Semaphore::new(2)));
        Broker {
            inner: Arc::new(Inner {
                cfg,
                open: Default::default(),
                work,
                work_cap,
                vacuum,
                tenants: AtomicUsize::new(0),
                holders: Mutex::new(HashMap::new()),
                next_holder: AtomicU64::new(1),
                sessions: Mutex::new(HashMap::new()),
                next_connect: Mutex::new(Instant::now()),
                opened: Default::default(),
            }),
        }
    }

    /// Counts a database task that serves pgq until the returned guard is dropped.
    pub fn tenant(&self) -> Tenant {
        self.inner.tenants.fetch_add(1, Ordering::Relaxed);
        Tenant {
            broker: self.inner.clone(),
        }
    }

    /// Whether more databases serve pgq than there are work permits: a quiet database's
    /// connection would then be taken from it before its next visit anyway.
    pub fn pressure(&self) -> bool {
        self.inner.work.is_some()
            && self.inner.tenants.load(Ordering::Relaxed) > self.inner.work_cap
    }

    /// Waits for a slot under [`CONNECT_RATE`].
    async fn rate_limit(&self) {
        let at = {
            let mut next = self
                .inner
                .next_connect
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + Duration::from_secs(1) / CONNECT_RATE;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }

    /// Asks the holder whose next work is furthest away (and held for at least
    /// [`MIN_HOLD`]) to let go.
    fn evict_one(&self) {
        let mut h = self.inner.holders.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(x) = h
            .values_mut()
            .filter(|x| !x.asked && now.duration_since(x.since) >= MIN_HOLD)
            .max_by_key(|x| x.next_need)
        {
            x.asked = true;
            x.evict.notify_one();
        }
    }

    /// A work permit: at once when one is free, else in turn (urgent waiters first), after
    /// asking a quiet holder to let go — at once when `urgent`, else after [`ROUTINE_WAIT`].
    async fn work_permit(&self, urgent: bool) -> Option<(WorkPermit, Tenancy)> {
        let pool = self.inner.work.as_ref()?;
        let mut rx = {
            let mut p = pool.lock().unwrap_or_else(|e| e.into_inner());
            if p.free > 0 {
                p.free -= 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                let q = if urgent {
                    &mut p.urgent
                } else {
                    &mut p.routine
                };
                q.push_back((Instant::now(), tx));
                Some(rx)
            }
        };
        let permit = match rx.as_mut() {
            None => WorkPermit {
                broker: Some(self.inner.clone()),
            },
            Some(rx) => loop {
                if urgent {
                    self.evict_one();
                }
                let wait = if urgent { EVICT_WAIT } else { ROUTINE_WAIT };
                match tokio::time::timeout(wait, &mut *rx).await {
                    Ok(Ok(p)) => break p,
                    // The pool never drops a sender unsent; be safe and queue again.
                    Ok(Err(_)) => return Box::pin(self.work_permit(urgent)).await,
                    Err(_) if !urgent => self.evict_one(),
                    Err(_) => {}
                }
            },
        };
        let id = self.inner.next_holder.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        let now = Instant::now();
        self.inner
            .holders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                id,
                Holder {
                    since: now,
                    next_need: now,
                    evict: evict.clone(),
                    asked: false,
                },
            );
        Some((
            permit,
            Tenancy {
                broker: self.inner.clone(),
                id,
                evict,
            },
        ))
    }

    /// How many sessions this daemon has opened to each database.
    pub fn sessions_opened(&self) -> HashMap<String, u64> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections open right now for `purpose`.
    pub fn open(&self, purpose: Purpose) -> usize {
        self.inner.open[slot(purpose)].load(Ordering::Relaxed)
    }

    /// Connections opened since start for `purpose` (metrics, #6).
    pub fn opened(&self, purpose: Purpose) -> u64 {
        self.inner.opened[slot(purpose)].load(Ordering::Relaxed)
    }

    /// Opens a connection to `db` with the current config's connection string and session
    /// settings; a routine one (see [`Broker::connect_as`]).
    pub async fn connect(&self, db: &str, purpose: Purpose) -> Result<DbConn, ConnectError> {
        self.connect_as(db, purpose, false).await
    }

    /// A connection; with `urgent` (work waiting now: events, activity) it is served
    /// before routine requests and not rate-limited.
    pub async fn connect_as(
        &self,
        db: &str,
        purpose: Purpose,
        urgent: bool,
    ) -> Result<DbConn, ConnectError> {
        let mut vacuum_permit = None;
        let (permit, tenancy) = match purpose {
            Purpose::Work => match self.work_permit(urgent).await {
                Some((p, t)) => (Some(p), Some(t)),
                None => (None, None),
            },
            Purpose::Vacuum => {
                if let Some(v) = &self.inner.vacuum {
                    match v.clone().try_acquire_owned() {
                        Ok(p) => vacuum_permit = Some(p),
                        Err(_) => return Err(ConnectError::Busy),
                    }
                }
                (None, None)
            }
            _ => (None, None),
        };
        if purpose != Purpose::Control && !urgent {
            self.rate_limit().await;
        }
        let cfg = self.inner.cfg.borrow().clone();
        // base_connstr with dbname overridden, application_name, statement_timeout and
        // lock_timeout (as startup options), keepalives, TLS, .pgpass: all libpq-like.
        let mut target = crate::conn::daemon_target(&cfg, db)
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        if target.pg.get_connect_timeout().is_none() {
            target.pg.connect_timeout(CONNECT_TIMEOUT);
        }
        // tokio-postgres applies connect_timeout to the socket connect only; bound the
        // whole handshake too.
        let limit = target
            .pg
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        let client = match tokio::time::timeout(limit, target.connect()).await {
            Err(_) => return Err(ConnectError::Timeout(limit)),
            Ok(r) => r,
        };
        let client = match client {
            Ok(c) => c,
            Err(crate::conn::Error::Connect { source, .. }) => {
                return Err(ConnectError::Server(source));
            }
            Err(other) => return Err(ConnectError::Config(other.to_string())),
        };
        // The server counted this session as it started and reports it a little later, so
        // ours is ahead: a foreign session shows only once the server's count passes ours.
        *self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(db.to_string())
            .or_default() += 1;
        let counter = &self.inner.open[slot(purpose)];
        counter.fetch_add(1, Ordering::Relaxed);
        self.inner.opened[slot(purpose)].fetch_add(1, Ordering::Relaxed);
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
            _permit: permit,
            _vacuum_permit: vacuum_permit,
            tenancy,
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
    _permit: Option<WorkPermit>,
    _vacuum_permit: Option<OwnedSemaphorePermit>,
    tenancy: Option<Tenancy>,
}

impl DbConn {
    /// This connection's place in the budget (None without a budget).
    pub fn tenancy(&self) -> Option<&Tenancy> {
        self.tenancy.as_ref()
    }

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

    /// Prepares a named query ahead of its first run (see [`DbConn::query`]).
    pub async fn prepare(&mut self, sql: &'static str) -> Result<(), StmtError> {
        self.statement(sql).await.map(drop)
    }

    /// Runs a named query (prepared once per connection) and returns its rows.
    pub async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StmtError> {
        let stmt = self.statement(sql).await?;
        match guarded(self.deadline(), self.client.query(&stmt, params)).await {
            Err(StmtError::Pg(e)) if crate::pgerr::sqlstate(&e) == Some("26000") => {
                self.prepared.clear();
                Err(StmtError::Pooled(e))
            }
            r => r,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(budget: u32) -> Broker {
        let cfg = Config {
            connection_budget: budget,
            ..Config::default()
        };
        let (_tx, rx) = watch::channel(Arc::new(cfg));
        Broker::new(rx)
    }

    /// Queues a waiter for a work permit and reports, in `order`, when it gets one.
    fn waiter(
        b: &Broker,
        urgent: bool,
        name: &'static str,
        order: &Arc<Mutex<Vec<&'static str>>>,
    ) -> tokio::task::JoinHandle<WorkPermit> {
        let (b, order) = (b.clone(), order.clone());
        tokio::spawn(async move {
            let (p, _t) = b.work_permit(urgent).await.expect("budget set");
            order.lock().expect("lock").push(name);
            p
        })
    }

    async fn queued(b: &Broker, n: usize) {
        let pool = b.inner.work.as_ref().expect("budget");
        loop {
            let len = {
                let p = pool.lock().expect("lock");
                p.urgent.len() + p.routine.len()
            };
            if len == n {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn urgent_waiters_get_permits_before_routine_ones() {
        let b = broker(RESERVED + 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (held, _t) = b.work_permit(false).await.expect("one permit free");
        let r1 = waiter(&b, false, "routine-1", &order);
        queued(&b, 1).await;
        let r2 = waiter(&b, false, "routine-2", &order);
        queued(&b, 2).await;
        let u = waiter(&b, true, "urgent", &order);
        queued(&b, 3).await;
        drop(held);
        let p = u.await.expect("urgent waiter");
        drop(p);
        let p = r1.await.expect("first routine waiter");
        drop(p);
        let p = r2.await.expect("second routine waiter");
        drop(p);
        assert_eq!(
            *order.lock().expect("lock"),
            vec!["urgent", "routine-1", "routine-2"]
        );
        // Every permit came back.
        assert_eq!(
            b.inner
                .work
                .as_ref()
                .expect("budget")
                .lock()
                .expect("lock")
                .free,
            1
        );
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_does_not_lose_the_permit() {
        let b = broker(RESERVED + 1);
        let (held, _t) = b.work_permit(false).await.expect("one permit free");
        let gone = {
            let b = b.clone();
            tokio::spawn(async move { b.work_permit(true).await.map(|_| ()) })
        };
        queued(&b, 1).await;
        gone.abort();
        let _ = gone.await;
        drop(held);
        let (again, _t) = tokio::time::timeout(Duration::from_secs(5), b.work_permit(false))
            .await
            .expect("the permit came back to the pool")
            .expect("budget set");
        drop(again);
    }

    #[tokio::test]
    async fn routine_waiters_are_not_passed_over_for_ever() {
        let b = broker(RESERVED + 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let (held, _t) = b.work_permit(false).await.expect("one permit free");
        let r = waiter(&b, false, "routine", &order);
        queued(&b, 1).await;
        // Waited longer than ROUTINE_MAX_WAIT before the urgent one arrives.
        tokio::time::sleep(ROUTINE_MAX_WAIT + Duration::from_millis(100)).await;
        let u = waiter(&b, true, "urgent", &order);
        queued(&b, 2).await;
        drop(held);
        drop(r.await.expect("routine waiter"));
        drop(u.await.expect("urgent waiter"));
        assert_eq!(*order.lock().expect("lock"), vec!["routine", "urgent"]);
    }

    #[test]
    fn pressure_means_more_tenants_than_permits() {
        let b = broker(RESERVED + 2);
        let t1 = b.tenant();
        let t2 = b.tenant();
        assert!(!b.pressure());
        let t3 = b.tenant();
        assert!(b.pressure());
        drop((t1, t2, t3));
        assert!(!b.pressure());
        let unbudgeted = broker(0);
        let _many: Vec<_> = (0..10).map(|_| unbudgeted.tenant()).collect();
        assert!(!unbudgeted.pressure(), "no budget, no pressure");
    }
}
