//! The consumer library: read a PgQ queue batch by batch and hand the events to your code,
//! with pgq's guarantees (every event once per consumer, in tick order) and the chores done:
//! registration, waiting for ticks, per-event retry, a failed-events table for poison
//! events, exactly-once application to another database, graceful stop.
//!
//! One [`Consumer`] is one subscription (queue + consumer name) of one source database.
//! [`Consumer::run`] loops: `pgq.next_batch` → the batch's events (all at once, or through
//! a cursor in chunks of `fetch_size`) → your [`Handler`] → retries and failed events →
//! `pgq.finish_batch`. The handler gets a transaction:
//!
//! - **local consumer** (no `target`): the source database's transaction that also
//!   finishes the batch, so the handler's writes and the consumer's progress commit
//!   together;
//! - **remote consumer** (`target` set, [`Tracking::Batch`]): a transaction on the target
//!   database that also records the batch in `pgq_ext.completed_batch`; a batch the target
//!   already has is skipped, so a crash between the target's commit and `finish_batch`
//!   never applies it twice;
//! - **serial consumer** ([`Tracking::Tick`]): the same with `pgq_ext.completed_tick`, the
//!   last applied tick;
//! - **coop consumer** (`coop` set): one of several subconsumers sharing a position via
//!   pgq_coop, each taking whole batches, optionally taking over the batch of a silent one.
//!
//! An error from the handler (or the database) rolls the batch's work back; the batch stays
//! open and is tried again after `error_delay`. An event the handler marks for retry goes
//! to `pgq.event_retry` and comes back in a later batch with `ev_retry` raised; one that
//! was already retried `max_retries` times goes to the failed-events table instead
//! (see [`failed`]). [`PerEvent`] wraps a per-event handler in savepoints, so one bad
//! event is retried alone while the rest of the batch is applied.
//!
//! Idle consumers wake on the daemon's `NOTIFY pgqd_tick, '<queue>'` or after
//! `poll_interval`, whichever comes first. Cancelling the stop token lets the batch in
//! hand finish (or roll back on error) and then returns.
//!
//! Layout: [`event`] (what the handler sees), `run.rs` (the loop), [`failed`] (the
//! failed-events table), `listen.rs` (the notifying connection), `sql.rs` (statements).
//!
//! ```no_run
//! use pgqd::consumer::{Batch, BoxError, Consumer, ConsumerConfig, Handler};
//! use tokio_postgres::Transaction;
//!
//! struct Print;
//!
//! impl Handler for Print {
//!     async fn handle_batch(&mut self, _tx: &Transaction<'_>, batch: &mut Batch) -> Result<(), BoxError> {
//!         for ev in batch.events() {
//!             println!("{} {:?} {:?}", ev.id, ev.ev_type, ev.data);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # async fn f() -> Result<(), pgqd::consumer::Error> {
//! let consumer = Consumer::new(ConsumerConfig::new("dbname=app", "orders", "printer"))?;
//! let stop = tokio_util::sync::CancellationToken::new();
//! consumer.run(&mut Print, &stop).await
//! # }
//! ```

pub mod event;
pub mod failed;
pub(crate) mod listen;
mod run;
mod sql;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_postgres::Transaction;

pub use event::{Batch, BatchInfo, Event, Outcome};
pub use run::Consumer;

/// The error type user code returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why the consumer stopped (or could not start).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work.
    #[error("consumer config: {0}")]
    Config(String),
    /// Could not connect.
    #[error(transparent)]
    Conn(#[from] crate::conn::Error),
    /// A statement failed.
    #[error("database {db:?}: {what}: {}", crate::pgerr::describe(.source))]
    Sql {
        /// The database the statement ran in.
        db: String,
        /// The statement (or step) that failed.
        what: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The handler failed.
    #[error("handler: {0}")]
    Handler(BoxError),
}

impl Error {
    /// Whether the connection is gone (closed, server shutting down, connection
    /// exception): the consumer reconnects instead of retrying on the same session.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Error::Conn(_) => true,
            Error::Sql { source, .. } => {
                source.is_closed()
                    || crate::pgerr::sqlstate(source).is_some_and(|s| {
                        s.starts_with("08") || matches!(s, "57P01" | "57P02" | "57P03")
                    })
            }
            _ => false,
        }
    }

    /// The SQLSTATE of a server error (also one the handler passed on), for logs.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Sql { source, .. } => crate::pgerr::sqlstate(source),
            Error::Handler(e) => e
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(crate::pgerr::sqlstate),
            _ => None,
        }
    }
}

/// How a remote consumer knows what the target has applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tracking {
    /// `pgq_ext.is_batch_done`/`set_batch_done`: the batch id (the remote consumer).
    #[default]
    Batch,
    /// `pgq_ext.get_last_tick`/`set_last_tick`: the batch's end tick (the serial consumer).
    Tick,
}

/// Cooperative consumption through pgq_coop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coop {
    /// This process's subconsumer name (the main consumer is [`ConsumerConfig::name`]).
    pub subconsumer: String,
    /// Take over the open batch of a subconsumer silent for longer than this.
    pub dead_interval: Option<Duration>,
}

/// Everything a [`Consumer`] needs. [`ConsumerConfig::new`] fills the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    /// The source database's connection string (libpq syntax; `PG*` variables fill the rest).
    pub source: String,
    /// The queue to read.
    pub queue: String,
    /// The consumer name (the main consumer's, for coop).
    pub name: String,
    /// The target database for a remote/serial consumer (needs pgq_ext there).
    pub target: Option<String>,
    /// How the target tracks applied work (only with `target`).
    pub tracking: Tracking,
    /// Be a pgq_coop subconsumer.
    pub coop: Option<Coop>,
    /// Longest wait for new work when idle. Default 1 s.
    pub poll_interval: Duration,
    /// LISTEN for the daemon's `pgqd_tick` notifications. Default true.
    pub listen: bool,
    /// Read batches through a cursor, handing them over in chunks of this many events
    /// (for batches too big for memory). Default: the whole batch at once.
    pub fetch_size: Option<u32>,
    /// Retries an event gets before it goes to the failed-events table. Default 5.
    pub max_retries: u32,
    /// Delay of the per-event retries the tools' handlers ask for (the dispatcher's
    /// refused rows). Default 30 s. A [`PerEvent`] carries its own delay.
    pub retry_delay: Duration,
    /// Wait before trying a failed batch again. Default 5 s.
    pub error_delay: Duration,
    /// The failed-events table (`name` or `schema.name`). Default `pgqd_failed_event`.
    pub failed_table: String,
    /// Register the consumer when it starts (a no-op when registered). Default true.
    pub register: bool,
    /// application_name of the connections. Default `pgqd-consumer`.
    pub application_name: String,
}

impl ConsumerConfig {
    /// A local consumer of `queue` named `name` in the database of `source`, with defaults.
    pub fn new(source: &str, queue: &str, name: &str) -> ConsumerConfig {
        ConsumerConfig {
            source: source.to_string(),
            queue: queue.to_string(),
            name: name.to_string(),
            target: None,
            tracking: Tracking::Batch,
            coop: None,
            poll_interval: Duration::from_secs(1),
            listen: true,
            fetch_size: None,
            max_retries: 5,
            retry_delay: Duration::from_secs(30),
            error_delay: Duration::from_secs(5),
            failed_table: failed::DEFAULT_TABLE.to_string(),
            register: true,
            application_name: "pgqd-consumer".to_string(),
        }
    }

    /// Checks what can be checked without a database.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        if self.queue.is_empty() {
            return bad("queue is empty");
        }
        if self.name.is_empty() {
            return bad("consumer name is empty");
        }
        if self.fetch_size == Some(0) {
            return bad("fetch_size must be at least 1");
        }
        if self.poll_interval.is_zero() {
            return bad("poll_interval must be above 0");
        }
        if let Some(c) = &self.coop
            && c.subconsumer.is_empty()
        {
            return bad("coop subconsumer name is empty");
        }
        if failed::TableName::parse(&self.failed_table).is_none() {
            return Err(Error::Config(format!(
                "failed_table {:?} is not a plain name or schema.name",
                self.failed_table
            )));
        }
        Ok(())
    }
}

/// Your code: called once per delivery (the whole batch, or a chunk in cursor mode) with
/// the transaction the work belongs in. Returning an error rolls everything back and
/// the batch is tried again; mark single events with [`Batch::retry`] / [`Batch::fail`].
pub trait Handler: Send {
    /// Applies the events of `batch` in `tx`.
    fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        batch: &mut Batch,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Per-event code, for [`PerEvent`].
pub trait EventHandler: Send {
    /// Applies one event in `tx`. An error undoes this event's work only.
    fn handle_event(
        &mut self,
        tx: &Transaction<'_>,
        event: &Event,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Adapts an [`EventHandler`]: each event runs in its own savepoint; an event whose
/// handler fails is rolled back alone and retried after `retry_delay` (into the
/// failed-events table after `max_retries` retries); the others are applied.
pub struct PerEvent<H> {
    /// The per-event handler.
    pub handler: H,
    /// Delay before a failed event comes back.
    pub retry_delay: Duration,
}

impl<H: EventHandler> Handler for PerEvent<H> {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        batch: &mut Batch,
    ) -> Result<(), BoxError> {
        for i in 0..batch.len() {
            let ev = batch.events()[i].clone();
            tx.batch_execute("savepoint pgqd_event").await?;
            match self.handler.handle_event(tx, &ev).await {
                Ok(()) => tx.batch_execute("release savepoint pgqd_event").await?,
                Err(e) => {
                    tx.batch_execute("rollback to savepoint pgqd_event").await?;
                    tracing::warn!(event = ev.id, retry = ev.retries(), error = %e, "event failed");
                    batch.retry(i, self.retry_delay, e.to_string());
                }
            }
        }
        Ok(())
    }
}

/// Counters of a running consumer, shared with whoever reports progress.
#[derive(Debug, Default)]
pub struct Progress {
    batches: AtomicU64,
    events: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    lag_ms: AtomicU64,
}

/// A copy of [`Progress`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    /// Batches finished.
    pub batches: u64,
    /// Events handed to the handler in finished batches.
    pub events: u64,
    /// Events sent to `pgq.event_retry`.
    pub retried: u64,
    /// Events written to the failed-events table.
    pub failed: u64,
    /// Batches skipped because the target had them already.
    pub skipped: u64,
    /// The lag of the last batch, in milliseconds.
    pub lag_ms: u64,
}

impl Progress {
    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProgressSnapshot {
            batches: l(&self.batches),
            events: l(&self.events),
            retried: l(&self.retried),
            failed: l(&self.failed),
            skipped: l(&self.skipped),
            lag_ms: l(&self.lag_ms),
        }
    }

    fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// Shared progress handle type.
pub type SharedProgress = Arc<Progress>;
