//! Cascading queues (issue #11): one queue kept identical across nodes — a root where
//! producers write, branches that copy it on, leaves that only consume — on top of the
//! `pgq_node` schema (`sql/pgq_node/`).
//!
//! Layout: [`handler`] is the hook a worker calls for every batch inside the subscriber's
//! transaction (table replication plugs in there); the worker, the admin commands and
//! replication live in their own modules beside it.

pub mod handler;

pub use handler::{BatchHandler, CopyOnly, NodeCtx, NodeType};
