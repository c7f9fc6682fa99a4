//! The hook between a cascade worker and what it does with a batch on the subscriber
//! besides keeping the queue (table replication is one such handler).
//!
//! The worker owns the loop: take the next batch on the provider, open a transaction on
//! the subscriber, call [`BatchHandler::handle_batch`], then (a branch) copy the events
//! into the local queue and tick it with the provider's tick, record the tick as completed
//! in `pgq_node`, commit, and finish the batch on the provider. So whatever the handler
//! writes in `tx` commits together with the node's position: a crash never applies a batch
//! twice or skips one.

use std::future::Future;

use tokio_postgres::Transaction;

use crate::consumer::{BatchInfo, BoxError, Event};

/// The kinds of node of a cascade (`pgq_node.node_info.node_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// Producers write here; the daemon ticks its queue.
    Root,
    /// Keeps a copy of the queue, ticked with the root's ticks; can become root.
    Branch,
    /// Consumes only; has no queue copy.
    Leaf,
}

impl NodeType {
    /// The name `pgq_node` stores (`root`, `branch`, `leaf`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Root => "root",
            NodeType::Branch => "branch",
            NodeType::Leaf => "leaf",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<NodeType> {
        match s {
            "root" => Some(NodeType::Root),
            "branch" => Some(NodeType::Branch),
            "leaf" => Some(NodeType::Leaf),
            _ => None,
        }
    }
}

/// Who is calling: the subscriber node the batch is applied on.
#[derive(Debug, Clone)]
pub struct NodeCtx {
    /// The cascaded queue.
    pub queue_name: String,
    /// This (subscriber) node's name.
    pub node_name: String,
    /// This node's type.
    pub node_type: NodeType,
    /// The worker's consumer name (registered on the provider).
    pub worker_name: String,
    /// The provider node's name.
    pub provider_node: String,
    /// Connection string of the provider node.
    pub provider_connstr: String,
}

/// What a worker calls for every batch, inside the subscriber's transaction.
pub trait BatchHandler: Send {
    /// Applies `events` (the whole batch, in `ev_id` order per tick) in `tx`. An error
    /// rolls the batch back on the subscriber; the worker retries it after its error delay.
    fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        node: &NodeCtx,
        batch: &BatchInfo,
        events: &[Event],
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// A worker that only keeps the queue: no per-batch work.
#[derive(Debug, Default, Clone, Copy)]
pub struct CopyOnly;

impl BatchHandler for CopyOnly {
    async fn handle_batch(
        &mut self,
        _tx: &Transaction<'_>,
        _node: &NodeCtx,
        _batch: &BatchInfo,
        _events: &[Event],
    ) -> Result<(), BoxError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_type_names_round_trip() {
        for t in [NodeType::Root, NodeType::Branch, NodeType::Leaf] {
            assert_eq!(NodeType::parse(t.as_str()), Some(t));
        }
        assert_eq!(NodeType::parse("combined-root"), None);
    }
}
