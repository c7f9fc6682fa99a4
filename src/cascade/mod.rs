//! Cascading queues (issue #11): one queue kept identical across nodes — a root where
//! producers write, branches that copy it on, leaves that only consume — on top of the
//! `pgq_node` schema (`sql/pgq_node/`, or the pgq_node 3.5 extension).
//!
//! Layout: [`handler`] is the hook a worker calls for every batch inside the subscriber's
//! transaction (table replication plugs in there); [`worker`] keeps a node in step with
//! its provider ([`run_worker`]); [`admin`] creates nodes, moves them, shows the tree;
//! [`cli`] is `pgqd cascade …`; [`config`] the worker's TOML; [`node`] reads a node's
//! state; [`sql`] holds every statement; [`error`] the error type.

pub mod admin;
pub mod cli;
pub mod config;
pub mod error;
pub mod handler;
pub mod node;
pub mod sql;
pub mod status;
pub mod worker;

pub use config::WorkerConfig;
pub use error::Error;
pub use handler::{BatchHandler, CopyOnly, NodeCtx, NodeType};
pub use worker::{WorkerStats, run_worker};
