//! Table replication on top of cascading queues (issue #11, part 3), londiste-style:
//! on the root, capture triggers (`pgq.logutriga` / `pgq.sqltriga`) turn row changes of
//! registered tables into events of the cascaded queue; every subscriber node copies each
//! table once from its provider and then applies the queue's changes to it, in the
//! cascade worker's transaction.
//!
//! Layout:
//! - SQL: `sql/replica/` (component `replica`, schema `pgq_replica`): the table registry
//!   and `add_table` / `remove_table`;
//! - [`apply`]: the [`apply::Applier`], the cascade worker's [`crate::cascade::BatchHandler`],
//!   with the copy/stream merge rule in its doc;
//! - [`copy`]: the initial copy (COPY OUT on the provider → COPY IN here);
//! - [`compare`]: counts and checksums at one tick on both nodes, and repair hints;
//! - [`change`], [`urlenc`], [`sqlfrag`]: reading events back into row changes;
//! - [`meta`]: table columns and the parameterised statements built from them;
//! - [`snapshot`]: txid snapshots; [`sql`]: every fixed statement;
//! - [`cli`]: `pgqd replica …`; [`worker`]: `pgqd replica worker`, the cascade worker
//!   ([`crate::cascade::run_worker`]) with the applier.

pub mod apply;
pub mod change;
pub mod cli;
pub mod compare;
pub mod copy;
pub mod meta;
pub mod snapshot;
pub mod sql;
pub mod sqlfrag;
pub mod urlenc;
pub mod worker;

pub use apply::{Applier, ApplyStats};

/// Why a replication step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// Could not connect.
    #[error(transparent)]
    Conn(#[from] crate::conn::Error),
    /// A statement failed; `what` says which.
    #[error("{what}: {}", crate::pgerr::describe(.source))]
    Sql {
        /// The step.
        what: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// An event of a registered table could not be applied.
    #[error("event {ev_id} of table {table}: {msg}")]
    Event {
        /// ev_id.
        ev_id: i64,
        /// ev_extra1.
        table: String,
        /// What is wrong.
        msg: String,
    },
    /// compare/repair holds this node at a tick; the worker retries the batch later.
    #[error(
        "replication paused at tick {tick} by compare/repair (batch ends at tick {batch_tick}); retrying later"
    )]
    Paused {
        /// The tick the node holds at.
        tick: i64,
        /// The refused batch's end tick.
        batch_tick: i64,
    },
    /// The nodes are not in a state where the step may act.
    #[error("{0}")]
    Refused(String),
    /// Something else (a timeout).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The SQLSTATE of a server error, for logs and exit codes.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Sql { source, .. } => crate::pgerr::sqlstate(source),
            _ => None,
        }
    }
}
