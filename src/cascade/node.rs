//! One node's view of the cascade, shared by the worker and the admin commands:
//! connecting to a node, calling a pgq_node function and checking its `ret_code`, and
//! reading `get_worker_state` / `get_node_info` into typed structs.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, Row};

use super::error::{Error, sql_err};
use super::handler::NodeType;
use super::sql;
use crate::conn;

/// Connects to a node's database with `application_name` (unless the string sets one).
pub async fn connect(connstr: &str, application_name: &str) -> Result<Client, Error> {
    let settings = conn::Settings {
        application_name: application_name.to_string(),
        ..conn::Settings::default()
    };
    let target = conn::resolve(connstr, &settings)?;
    Ok(target.connect().await?)
}

/// Runs a pgq_node function returning `ret_code, ret_note, …`; codes of 300 and above
/// become [`Error::Refused`]. Returns the row for the other columns.
pub async fn call<C: GenericClient>(
    c: &C,
    node: &str,
    stmt: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Row, Error> {
    let func = function_name(stmt);
    let row = c
        .query_one(stmt, params)
        .await
        .map_err(sql_err(node, &func))?;
    let code: Option<i32> = row.try_get(0).map_err(sql_err(node, &func))?;
    let note: Option<String> = row.try_get(1).map_err(sql_err(node, &func))?;
    let code = code.unwrap_or(500);
    if code >= 300 {
        return Err(Error::Refused {
            node: node.to_string(),
            func,
            code,
            note: note.unwrap_or_default(),
        });
    }
    Ok(row)
}

/// `pgq_node.xxx` out of a statement, for messages.
fn function_name(stmt: &str) -> String {
    stmt.split_whitespace()
        .find(|w| w.starts_with("pgq_node.") || w.starts_with("pgq."))
        .map(|w| w.split('(').next().unwrap_or(w).to_string())
        .unwrap_or_else(|| "statement".to_string())
}

/// What `pgq_node.get_worker_state` says about the local node.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerState {
    /// Root, branch or leaf.
    pub node_type: NodeType,
    /// This node's name.
    pub node_name: String,
    /// The last tick the worker committed here.
    pub completed_tick: Option<i64>,
    /// The provider's name (the node itself on a root).
    pub provider_node: String,
    /// The provider's connection string.
    pub provider_location: String,
    /// An admin asked the worker to wait.
    pub paused: bool,
    /// The worker has seen the last change of its state.
    pub uptodate: bool,
    /// Why the last batch failed.
    pub cur_error: Option<String>,
    /// The worker's consumer name.
    pub worker_name: String,
    /// The lowest tick every node of the cascade has passed.
    pub global_watermark: Option<i64>,
    /// The lowest tick this node and those below it still need.
    pub local_watermark: Option<i64>,
}

/// Reads the local node's worker state; a queue without a node is a usage error.
pub async fn worker_state<C: GenericClient>(
    c: &C,
    node: &str,
    queue: &str,
) -> Result<WorkerState, Error> {
    let r = c
        .query_one(sql::WORKER_STATE, &[&queue])
        .await
        .map_err(sql_err(node, "pgq_node.get_worker_state"))?;
    let get = |e| sql_err(node, "pgq_node.get_worker_state")(e);
    let code: i32 = r.try_get(0).map_err(get)?;
    if code >= 300 {
        let note: Option<String> = r.try_get(1).map_err(get)?;
        return Err(Error::Usage(format!(
            "{node}: no cascade node for queue {queue:?} ({})",
            note.unwrap_or_default()
        )));
    }
    let ty: String = r.try_get(2).map_err(get)?;
    Ok(WorkerState {
        node_type: NodeType::parse(&ty)
            .ok_or_else(|| Error::State(format!("{node}: unknown node type {ty:?}")))?,
        node_name: r.try_get(3).map_err(get)?,
        completed_tick: r.try_get(4).map_err(get)?,
        provider_node: r.try_get(5).map_err(get)?,
        provider_location: r.try_get(6).map_err(get)?,
        paused: r
            .try_get::<_, Option<bool>>(7)
            .map_err(get)?
            .unwrap_or(false),
        uptodate: r
            .try_get::<_, Option<bool>>(8)
            .map_err(get)?
            .unwrap_or(false),
        cur_error: r.try_get(9).map_err(get)?,
        worker_name: r.try_get(10).map_err(get)?,
        global_watermark: r.try_get(11).map_err(get)?,
        local_watermark: r.try_get(12).map_err(get)?,
    })
}

/// What `pgq_node.get_node_info` says about a node (None: no node for the queue).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Root, branch or leaf.
    pub node_type: NodeType,
    /// The node's name.
    pub node_name: String,
    /// The lowest tick every node has passed.
    pub global_watermark: Option<i64>,
    /// The lowest tick this node and those below it still need.
    pub local_watermark: Option<i64>,
    /// The provider's name (None or itself on a root).
    pub provider_node: Option<String>,
    /// The provider's connection string.
    pub provider_location: Option<String>,
    /// The worker's consumer name.
    pub worker_name: String,
    /// The worker is paused.
    pub paused: bool,
    /// The worker has seen the last change.
    pub uptodate: bool,
    /// The last tick the worker committed (root: the newest tick).
    pub last_tick: Option<i64>,
}

/// Reads `pgq_node.get_node_info`.
pub async fn node_info<C: GenericClient>(
    c: &C,
    node: &str,
    queue: &str,
) -> Result<Option<NodeInfo>, Error> {
    let r = c
        .query_one(sql::NODE_INFO, &[&queue])
        .await
        .map_err(sql_err(node, "pgq_node.get_node_info"))?;
    let get = |e| sql_err(node, "pgq_node.get_node_info")(e);
    let code: i32 = r.try_get(0).map_err(get)?;
    if code >= 300 {
        return Ok(None);
    }
    let ty: String = r.try_get(2).map_err(get)?;
    Ok(Some(NodeInfo {
        node_type: NodeType::parse(&ty)
            .ok_or_else(|| Error::State(format!("{node}: unknown node type {ty:?}")))?,
        node_name: r.try_get(3).map_err(get)?,
        global_watermark: r.try_get(4).map_err(get)?,
        local_watermark: r.try_get(5).map_err(get)?,
        provider_node: r.try_get(6).map_err(get)?,
        provider_location: r.try_get(7).map_err(get)?,
        worker_name: r.try_get(8).map_err(get)?,
        paused: r
            .try_get::<_, Option<bool>>(9)
            .map_err(get)?
            .unwrap_or(false),
        uptodate: r
            .try_get::<_, Option<bool>>(10)
            .map_err(get)?
            .unwrap_or(false),
        last_tick: r.try_get(11).map_err(get)?,
    }))
}

/// A member as `pgq_node.get_queue_locations` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Node name.
    pub name: String,
    /// Connection string.
    pub location: String,
    /// Tagged dead (by a failover).
    pub dead: bool,
}

/// The members the node behind `c` knows.
pub async fn members<C: GenericClient>(
    c: &C,
    node: &str,
    queue: &str,
) -> Result<Vec<Member>, Error> {
    let rows = c
        .query(sql::LOCATIONS, &[&queue])
        .await
        .map_err(sql_err(node, "pgq_node.get_queue_locations"))?;
    rows.iter()
        .map(|r| {
            Ok(Member {
                name: r.try_get(0)?,
                location: r.try_get(1)?,
                dead: r.try_get(2)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(sql_err(node, "pgq_node.get_queue_locations"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_function_of_a_statement() {
        assert_eq!(
            super::function_name(super::sql::SET_PAUSED),
            "pgq_node.set_consumer_paused"
        );
        assert_eq!(
            super::function_name(super::sql::FINISH_BATCH),
            "pgq.finish_batch"
        );
    }
}
