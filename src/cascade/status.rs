//! `pgqd cascade status`: every member's state, gathered node by node, drawn as the
//! provider tree with each node's last tick and lag.
//!
//! Lag: on the root, the age of its newest tick (how far the ticker is behind); on a
//! branch, the age of the newest tick in its copy of the queue (which carries the root's
//! tick time); on a leaf, the age of the tick its worker stands at on the provider.

use std::fmt::Write as _;

use super::admin::Admin;
use super::error::{Error, sql_err};
use super::handler::NodeType;
use super::node::{self, Member};
use super::sql;

/// One member as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// Root, branch or leaf; None when unreachable.
    pub node_type: Option<NodeType>,
    /// Its provider (None on the root).
    pub provider: Option<String>,
    /// The last tick it has (root: newest tick; others: the worker's completed tick).
    pub last_tick: Option<i64>,
    /// Seconds behind (see the module docs).
    pub lag: Option<f64>,
    /// The worker is paused.
    pub paused: bool,
    /// The worker's last error.
    pub error: Option<String>,
    /// Tagged dead in the member list.
    pub dead: bool,
    /// Why it could not be read.
    pub unreachable: Option<String>,
}

impl Admin {
    /// Reads every member's state, starting from the members the `db` node knows.
    pub async fn status(&mut self) -> Result<Vec<NodeStatus>, Error> {
        let local = node::connect(&self.db, "pgqd-cascade-admin").await?;
        if node::node_info(&local, "db", &self.queue).await?.is_none() {
            return Err(Error::Usage(format!(
                "no cascade node for queue {:?} in db",
                self.queue
            )));
        }
        let members = node::members(&local, "db", &self.queue).await?;
        let mut out = Vec::new();
        for m in &members {
            out.push(match self.node_status(m).await {
                Ok(s) => s,
                Err(e) => NodeStatus {
                    name: m.name.clone(),
                    node_type: None,
                    provider: None,
                    last_tick: None,
                    lag: None,
                    paused: false,
                    error: None,
                    dead: m.dead,
                    unreachable: Some(e.to_string()),
                },
            });
        }
        Ok(out)
    }

    async fn node_status(&self, m: &Member) -> Result<NodeStatus, Error> {
        let q = &self.queue;
        let c = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            node::connect(&m.location, "pgqd-cascade-admin"),
        )
        .await
        .map_err(|_| Error::State("no connection within 5s".into()))??;
        let info = node::node_info(&c, &m.name, q)
            .await?
            .ok_or_else(|| Error::State("no node for the queue".into()))?;
        let st = c
            .query_one(sql::CONSUMER_STATE, &[q, &info.worker_name])
            .await
            .map_err(sql_err(&m.name, "pgq_node.get_consumer_state"))?;
        let error: Option<String> = st.try_get(6).unwrap_or(None);
        let (last_tick, lag) = match info.node_type {
            NodeType::Root | NodeType::Branch => {
                let r = c
                    .query_one(sql::QUEUE_INFO, &[q])
                    .await
                    .map_err(sql_err(&m.name, "pgq.get_queue_info"))?;
                let tick: Option<i64> = r.try_get(0).unwrap_or(None);
                let lag: Option<f64> = r.try_get(1).unwrap_or(None);
                if info.node_type == NodeType::Root {
                    (tick, lag)
                } else {
                    (info.last_tick, lag)
                }
            }
            NodeType::Leaf => {
                let lag = match &info.provider_location {
                    Some(loc) => match tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        node::connect(loc, "pgqd-cascade-admin"),
                    )
                    .await
                    {
                        Ok(Ok(pc)) => pc
                            .query_opt(sql::CONSUMER_INFO, &[q, &info.worker_name])
                            .await
                            .ok()
                            .flatten()
                            .and_then(|r| r.try_get::<_, Option<f64>>(1).ok().flatten()),
                        _ => None,
                    },
                    None => None,
                };
                (info.last_tick, lag)
            }
        };
        Ok(NodeStatus {
            name: m.name.clone(),
            node_type: Some(info.node_type),
            provider: if info.node_type == NodeType::Root {
                None
            } else {
                info.provider_node.clone()
            },
            last_tick,
            lag,
            paused: info.paused,
            error,
            dead: m.dead,
            unreachable: None,
        })
    }
}

/// Draws the tree: roots first, each node's subscribers indented below it; nodes whose
/// provider is unknown (unreachable ones) at the end.
pub fn render(queue: &str, nodes: &[NodeStatus]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "queue {queue}: {} nodes", nodes.len());
    let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(4) + 4;
    let mut shown = vec![false; nodes.len()];
    fn walk(
        s: &mut String,
        nodes: &[NodeStatus],
        shown: &mut [bool],
        i: usize,
        depth: usize,
        width: usize,
    ) {
        if shown[i] {
            return;
        }
        shown[i] = true;
        let n = &nodes[i];
        let pad = "   ".repeat(depth);
        let mark = if depth == 0 { "" } else { "└─ " };
        let label = format!("{pad}{mark}{}", n.name);
        let _ = write!(s, "{label:<w$}", w = width + 3 * depth + 3);
        match (&n.unreachable, n.node_type) {
            (Some(e), _) => {
                let _ = write!(s, "unreachable{}: {e}", if n.dead { " (dead)" } else { "" });
            }
            (None, Some(t)) => {
                let _ = write!(
                    s,
                    "{:<7} tick {:<8} lag {}",
                    t.as_str(),
                    n.last_tick.map_or("-".into(), |t| t.to_string()),
                    n.lag.map_or("-".into(), |l| format!("{l:.1}s"))
                );
                if n.paused {
                    let _ = write!(s, "  PAUSED");
                }
                if n.dead {
                    let _ = write!(s, "  (tagged dead)");
                }
                if let Some(e) = &n.error {
                    let _ = write!(s, "  error: {e}");
                }
            }
            (None, None) => {}
        }
        s.push('\n');
        for j in 0..nodes.len() {
            if nodes[j].provider.as_deref() == Some(n.name.as_str()) && nodes[j].name != n.name {
                walk(s, nodes, shown, j, depth + 1, width);
            }
        }
    }
    for i in 0..nodes.len() {
        if nodes[i].node_type == Some(NodeType::Root) {
            walk(&mut s, nodes, &mut shown, i, 0, width);
        }
    }
    for i in 0..nodes.len() {
        if !shown[i] {
            walk(&mut s, nodes, &mut shown, i, 0, width);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, t: NodeType, provider: Option<&str>) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            node_type: Some(t),
            provider: provider.map(String::from),
            last_tick: Some(7),
            lag: Some(0.25),
            paused: false,
            error: None,
            dead: false,
            unreachable: None,
        }
    }

    #[test]
    fn draws_subscribers_under_their_provider() {
        let nodes = vec![
            n("leaf1", NodeType::Leaf, Some("branch1")),
            n("root1", NodeType::Root, None),
            n("branch1", NodeType::Branch, Some("root1")),
        ];
        let out = render("q", &nodes);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "queue q: 3 nodes");
        assert!(lines[1].starts_with("root1"), "{out}");
        assert!(lines[2].starts_with("   └─ branch1"), "{out}");
        assert!(lines[3].starts_with("      └─ leaf1"), "{out}");
        assert!(
            lines[3].contains("leaf") && lines[3].contains("lag 0.2s"),
            "{out}"
        );
    }
}
