//! The `node` component (`sql/pgq_node/`, our plain-SQL pgq_node) against pgq_node 3.5 and
//! its clients, in one throwaway cluster:
//!
//! 1. differential: one script of calls on a root, a branch and a leaf of one queue (three
//!    databases per side), run on our schema and on the real `pgq` + `pgq_node` extensions,
//!    every outcome compared; then the catalog surface (functions, result columns, rights,
//!    tables, constraints) compared;
//! 2. Debian's python cascade code (`pgq.cascade.admin.CascadeAdmin`, a
//!    `pgq.cascade.worker.CascadedWorker`, run with `/usr/bin/python3`) building a
//!    root → branch → leaf cascade on our schema and copying events down it;
//! 3. our daemon: it ticks the root queue and not the branch's copy (external ticker), and
//!    its maintenance runs `pgq_node.maint_watermark`, which moves a stale global watermark;
//! 4. `pgqd install` / `pgqd uninstall` of the node component.
//!
//! The parts share the cluster and run one after the other in one test (1, 4, 2, 3): the
//! daemon is started last and limited (`database_list`) to its own databases, so it never
//! ticks the others.
//!
//! Not compared, because the script orders them: the rows of the set-returning lookups
//! come in a defined order in ours (get_queue_locations by node name, like
//! get_subscriber_info and get_consumer_info in 3.5); 3.5's get_queue_locations returns
//! them in table order.
//!
//! Normalisation of the differential (the same for both sides): timestamps, intervals and
//! snapshots become `<set>`, `ev_txid` its dense rank; ids are compared as they are (the
//! databases are fresh, so sequences start alike). Errors compare SQLSTATE, severity and
//! message (plus detail). Steps that must differ name an entry of [`INTENDED`]; such a step
//! must really differ.

mod common;
mod daemon_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ClusterOptions, TestCluster, install_schema, wait_for};
use daemon_support::{Daemon, last_tick, test_config};
use futures::StreamExt;
use tokio_postgres::error::DbError;
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

/// Intended differences from pgq_node 3.5, by name, with the reason.
const INTENDED: &[(&str, &str)] = &[
    (
        "bad_node_type",
        "create_node with an unknown node type returns 401 'bad node type: …'; pgq_node 3.5 \
         sets that code but goes on to insert the row and fails on the node_info check \
         constraint (an error instead of its own return code)",
    ),
    (
        "pinned_search_path",
        "every SECURITY DEFINER function pins search_path = pg_catalog, pg_temp, as the \
         pgq component does (pgq_node 3.5 leaves all of them unpinned)",
    ),
    (
        "node_info_check_text",
        "the node_info_check constraint is stated as one condition (worker_name not null, \
         combined_queue only on a leaf) instead of 3.5's CASE; both refuse the same rows",
    ),
    (
        "sql_language",
        "the three lookups returning sets (get_queue_locations, get_subscriber_info, \
         get_consumer_info) and version() are LANGUAGE sql instead of plpgsql",
    ),
];

const PYTHON: &str = "/usr/bin/python3";

fn check_intended(name: &str) {
    assert!(
        INTENDED.iter().any(|(n, _)| *n == name),
        "unknown intended difference {name}"
    );
}

// ------------------------------------------------------------------------------------------
// Sessions that keep the notices the server sends.

struct Session {
    client: Client,
    notices: Arc<Mutex<Vec<DbError>>>,
}

async fn session(c: &TestCluster, db: &str) -> Session {
    let (client, mut conn) = c
        .config(db)
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {db}: {e}"));
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notice(n)) => sink.lock().expect("notice lock").push(n),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    client
        .batch_execute("set client_min_messages = notice; set timezone = 'UTC'")
        .await
        .expect("session setup");
    Session { client, notices }
}

const DROPPED_TYPES: &[&str] = &[
    "timestamptz",
    "timestamp",
    "interval",
    "float8",
    "txid_snapshot",
    "pg_snapshot",
];
const TXID_COLUMNS: &[&str] = &["ev_txid", "txid"];

fn render_db_error(prefix: &str, e: &DbError) -> String {
    let mut s = format!(
        "{prefix}: {} {} {}",
        e.severity(),
        e.code().code(),
        e.message()
    );
    if let Some(d) = e.detail() {
        s.push_str(&format!(" DETAIL: {d}"));
    }
    s.push('\n');
    s
}

fn render_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => render_db_error("error", db),
        None => format!("client error: {e}\n"),
    }
}

impl Session {
    fn drain_notices(&self) -> String {
        let mut n = self.notices.lock().expect("notice lock");
        let s = n.iter().map(|e| render_db_error("notice", e)).collect();
        n.clear();
        s
    }

    /// Runs one statement (or a `;`-separated few, whose last one gives the columns) and
    /// renders its normalised outcome.
    async fn run(&self, sql: &str) -> String {
        let mut out = String::new();
        let last = sql
            .rsplit(';')
            .find(|s| !s.trim().is_empty())
            .unwrap_or(sql);
        let cols: Vec<(String, String)> = match self.client.prepare(last).await {
            Ok(st) => st
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_().name().to_string()))
                .collect(),
            // The statement may depend on an earlier one in `sql`: no types then.
            Err(_) => Vec::new(),
        };
        match self.client.simple_query(sql).await {
            Ok(msgs) => {
                let mut rows: Vec<Vec<Option<String>>> = Vec::new();
                let mut names: Vec<String> = Vec::new();
                for m in msgs {
                    match m {
                        SimpleQueryMessage::Row(r) => {
                            names = r.columns().iter().map(|c| c.name().to_string()).collect();
                            rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                        }
                        SimpleQueryMessage::RowDescription(d) => {
                            names = d.iter().map(|c| c.name().to_string()).collect();
                            rows.clear();
                        }
                        _ => {}
                    }
                }
                out.push_str(&self.drain_notices());
                let cols: Vec<(String, String)> = if cols.len() == names.len() {
                    cols
                } else {
                    names.into_iter().map(|n| (n, "?".into())).collect()
                };
                let header: Vec<String> = cols.iter().map(|(n, t)| format!("{n} {t}")).collect();
                out.push_str(&format!("columns: {}\n", header.join(", ")));
                for r in normalise_rows(&cols, rows) {
                    out.push_str(&format!("row: {}\n", r.join(" | ")));
                }
            }
            Err(e) => {
                out.push_str(&self.drain_notices());
                out.push_str(&render_error(&e));
            }
        }
        out
    }
}

fn normalise_rows(cols: &[(String, String)], rows: Vec<Vec<Option<String>>>) -> Vec<Vec<String>> {
    let mut ranks: BTreeMap<usize, BTreeMap<i64, usize>> = BTreeMap::new();
    for (i, (name, _)) in cols.iter().enumerate() {
        if TXID_COLUMNS.contains(&name.as_str()) {
            let vals: BTreeSet<i64> = rows
                .iter()
                .filter_map(|r| r.get(i).cloned().flatten())
                .filter_map(|v| v.parse().ok())
                .collect();
            ranks.insert(
                i,
                vals.into_iter()
                    .enumerate()
                    .map(|(k, v)| (v, k + 1))
                    .collect(),
            );
        }
    }
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let Some(v) = v else {
                        return "NULL".to_string();
                    };
                    let ty = cols.get(i).map(|(_, t)| t.as_str()).unwrap_or("?");
                    if let Some(rank) = ranks.get(&i) {
                        v.parse::<i64>()
                            .ok()
                            .and_then(|x| rank.get(&x))
                            .map(|k| format!("txid#{k}"))
                            .unwrap_or(v)
                    } else if DROPPED_TYPES.contains(&ty) {
                        "<set>".to_string()
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// The script runner: three nodes of one side, every step's outcome recorded.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Root,
    Branch,
    Leaf,
}

impl Node {
    fn db(self, side: &str) -> String {
        match self {
            Node::Root => format!("{side}_root"),
            Node::Branch => format!("{side}_branch"),
            Node::Leaf => format!("{side}_leaf"),
        }
    }
}

struct Step {
    node: Node,
    sql: String,
    out: String,
    intended: Option<&'static str>,
}

struct Runner {
    sessions: Vec<(Node, Session)>,
    steps: Vec<Step>,
}

impl Runner {
    async fn new(c: &TestCluster, side: &str) -> Runner {
        let mut sessions = Vec::new();
        for n in [Node::Root, Node::Branch, Node::Leaf] {
            sessions.push((n, session(c, &n.db(side)).await));
        }
        Runner {
            sessions,
            steps: Vec::new(),
        }
    }

    async fn step(&mut self, node: Node, sql: &str, intended: Option<&'static str>) {
        if let Some(n) = intended {
            check_intended(n);
        }
        let s = &self
            .sessions
            .iter()
            .find(|(n, _)| *n == node)
            .expect("a session per node")
            .1;
        let out = s.run(sql).await;
        self.steps.push(Step {
            node,
            sql: sql.to_string(),
            out,
            intended,
        });
    }

    /// A step whose outcome must be the same on both sides.
    async fn q(&mut self, node: Node, sql: &str) {
        self.step(node, sql, None).await;
    }

    /// A step whose outcome must differ, for the named reason.
    async fn intended(&mut self, node: Node, name: &'static str, sql: &str) {
        self.step(node, sql, Some(name)).await;
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn compare(ours: &Runner, real: &Runner) -> Vec<String> {
    let mut failures = Vec::new();
    assert_eq!(ours.steps.len(), real.steps.len(), "scripts diverged");
    for (i, (o, r)) in ours.steps.iter().zip(&real.steps).enumerate() {
        let where_ = format!("step {i} [{:?}]: {}", o.node, o.sql);
        match o.intended {
            Some(name) => {
                if o.out == r.out {
                    failures.push(format!(
                        "{where_}\n  expected intended difference `{name}`, but both gave:\n{}",
                        indent(&o.out)
                    ));
                }
            }
            None => {
                if o.out != r.out {
                    failures.push(format!(
                        "{where_}\n  pgq_node 3.5:\n{}  ours:\n{}",
                        indent(&r.out),
                        indent(&o.out)
                    ));
                }
            }
        }
    }
    failures
}

const NODE_INFO: &str = "select * from pgq_node.get_node_info('q')";
const WORKER_STATE: &str = "select * from pgq_node.get_worker_state('q')";
const LOCATIONS: &str = "select * from pgq_node.get_queue_locations('q') order by 1";
const QUEUES: &str = "select queue_name, queue_external_ticker, queue_disable_insert \
                      from pgq.queue order by 1";
const PGQ_CONSUMERS: &str = "select queue_name, consumer_name, last_tick, current_batch, \
                             next_tick from pgq.get_consumer_info() order by 1, 2";
const NODE_CONSUMERS: &str = "select * from pgq_node.get_consumer_info('q')";
const EVENTS: &str = "select ev_id, ev_txid, ev_type, ev_data, ev_extra1, ev_extra2, \
                      ev_extra3, ev_extra4 from pgq.event_template order by ev_id";
const TICKS: &str = "select tick_queue, tick_id from pgq.tick order by 1, 2";

/// The root: locations, creation, the error cases of create_node, subscribers and
/// watermarks.
async fn script_root(d: &mut Runner) {
    use Node::Root as R;
    d.q(R, NODE_INFO).await;
    d.q(R, WORKER_STATE).await;
    for (n, loc) in [
        ("root", "dbname=root"),
        ("branch", "dbname=branch"),
        ("leaf", "dbname=leaf"),
    ] {
        d.q(
            R,
            &format!("select * from pgq_node.register_location('q', '{n}', '{loc}', false)"),
        )
        .await;
    }
    // no location: an unknown member is not added
    d.q(
        R,
        "select * from pgq_node.register_location('q', 'ghost', null, false)",
    )
    .await;
    d.q(R, LOCATIONS).await;
    d.q(
        R,
        "select * from pgq_node.create_node('q', 'root', 'root', 'root_worker', null, null, null)",
    )
    .await;
    d.q(
        R,
        "select * from pgq_node.create_node('q', 'root', 'root', 'root_worker', null, null, null)",
    )
    .await;
    d.q(
        R,
        "select * from pgq_node.create_node('q2', 'root', 'root', 'w', 'p', null, null)",
    )
    .await;
    d.q(
        R,
        "select * from pgq_node.create_node('q2', 'branch', 'root', 'w', null, 1, null)",
    )
    .await;
    d.q(
        R,
        "select * from pgq_node.create_node('q2', 'branch', 'root', 'w', 'p', null, null)",
    )
    .await;
    d.q(
        R,
        "select * from pgq_node.create_node('q2', 'leaf', 'root', 'w', 'p', 1, 'nosuchqueue')",
    )
    .await;
    d.intended(
        R,
        "bad_node_type",
        "select * from pgq_node.create_node('q2', 'middle', 'root', 'w', null, null, null)",
    )
    .await;
    // own location not registered: the foreign key refuses (and the queue is rolled back)
    d.q(
        R,
        "select * from pgq_node.create_node('q3', 'root', 'nowhere', 'w', null, null, null)",
    )
    .await;
    d.q(R, NODE_INFO).await;
    d.q(R, WORKER_STATE).await;
    d.q(
        R,
        "select pgq_node.is_root_node('q'), pgq_node.is_leaf_node('q')",
    )
    .await;
    d.q(R, "select pgq_node.is_root_node('nope')").await;
    d.q(R, "select pgq_node.is_leaf_node('nope')").await;
    d.q(R, QUEUES).await;
    d.q(R, TICKS).await;
    // every pgq.ticker('q') call below makes a tick
    d.q(
        R,
        "update pgq.queue set queue_ticker_idle_period = '0', queue_ticker_max_lag = '0'",
    )
    .await;
    // on the root a location change is also an event
    d.q(
        R,
        "select * from pgq_node.register_location('q', 'branch', 'dbname=branch', false)",
    )
    .await;
    d.q(
        R,
        "select * from pgq_node.register_subscriber('q', 'branch', 'branch_worker', null)",
    )
    .await;
    d.q(
        R,
        "select * from pgq_node.register_subscriber('q', 'branch', 'branch_worker', null)",
    )
    .await;
    d.q(
        R,
        "select * from pgq_node.register_subscriber('nope', 'branch', 'branch_worker', null)",
    )
    .await;
    d.q(R, "select * from pgq_node.get_subscriber_info('q')")
        .await;
    d.q(R, "select * from pgq_node.get_subscriber_info('nope')")
        .await;
    d.q(R, "select pgq.insert_event('q', 'data', '1')").await;
    d.q(R, "select pgq.ticker('q')").await;
    d.q(
        R,
        "select pgq.insert_event('q', 'data', '2'); select pgq.insert_event('q', 'data', '3')",
    )
    .await;
    d.q(R, "select pgq.ticker('q')").await;
    for wm in ["2", "2", "1", "null"] {
        d.q(
            R,
            &format!("select * from pgq_node.set_subscriber_watermark('q', 'branch', {wm})"),
        )
        .await;
    }
    d.q(
        R,
        "select * from pgq_node.set_subscriber_watermark('q', 'nobody', 2)",
    )
    .await;
    d.q(
        R,
        "select * from pgq_node.set_subscriber_watermark('q', 'branch', 99)",
    )
    .await;
    d.q(R, "select * from pgq_node.get_subscriber_info('q')")
        .await;
    d.q(R, PGQ_CONSUMERS).await;
    d.q(R, NODE_INFO).await;
    d.q(R, WORKER_STATE).await;
    d.q(R, "select * from pgq_node.set_global_watermark('q', null)")
        .await;
    d.q(R, "select * from pgq_node.set_global_watermark('q', 2)")
        .await;
    d.q(R, "select * from pgq_node.set_global_watermark('q', 99)")
        .await;
    d.q(R, "select * from pgq_node.set_global_watermark('nope', 2)")
        .await;
    d.q(R, NODE_INFO).await;
    d.q(R, NODE_CONSUMERS).await;
    // a recent global watermark is left alone; one older than 5 minutes moves to the
    // local watermark
    d.q(
        R,
        "select * from pgq_node.register_location('q', 'leaf', 'dbname=leaf', true)",
    )
    .await;
    d.q(R, LOCATIONS).await;
    d.q(
        R,
        "select * from pgq_node.register_location('q', 'leaf', null, false)",
    )
    .await;
    d.q(R, "select pgq_node.maint_watermark('q')").await;
    d.q(R, "select pgq_node.maint_watermark('nope')").await;
    d.q(R, PGQ_CONSUMERS).await;
    d.q(
        R,
        "update pgq.tick set tick_time = tick_time - interval '10 minutes'",
    )
    .await;
    d.q(R, "select pgq_node.maint_watermark('q')").await;
    d.q(R, PGQ_CONSUMERS).await;
    d.q(R, NODE_INFO).await;
    d.q(R, EVENTS).await;
    d.q(R, "select * from pgq_node.unregister_location('q', 'root')")
        .await;
    d.q(R, "select * from pgq_node.set_node_attrs('q', 'a=1&b=2')")
        .await;
    d.q(R, "select node_attrs from pgq_node.get_node_info('q')")
        .await;
    d.q(R, "select pgq_node.upgrade_schema(), pgq_node.version()")
        .await;
}

/// The branch: its queue copy, the cascaded-consumer calls, error cases.
async fn script_branch(d: &mut Runner) {
    use Node::Branch as B;
    for (n, loc) in [
        ("root", "dbname=root"),
        ("branch", "dbname=branch"),
        ("leaf", "dbname=leaf"),
        ("ghost", "dbname=ghost"),
    ] {
        d.q(
            B,
            &format!("select * from pgq_node.register_location('q', '{n}', '{loc}', false)"),
        )
        .await;
    }
    d.q(
        B,
        "select * from pgq_node.create_node('q', 'branch', 'branch', 'branch_worker', 'root', 3, null)",
    )
    .await;
    d.q(B, QUEUES).await;
    d.q(B, TICKS).await;
    d.q(B, NODE_INFO).await;
    d.q(B, WORKER_STATE).await;
    d.q(B, PGQ_CONSUMERS).await;
    // no local producers on a branch; ticks come from the provider
    d.q(B, "select pgq.insert_event('q', 'data', 'x')").await;
    d.q(B, "select pgq.ticker('q', 4, now(), 3)").await;
    for sql in [
        "select * from pgq_node.set_consumer_completed('q', 'branch_worker', 4)",
        "select * from pgq_node.set_consumer_completed('q', 'nobody', 4)",
        "select * from pgq_node.set_consumer_uptodate('q', 'branch_worker', true)",
        "select * from pgq_node.set_consumer_uptodate('q', 'nobody', true)",
        "select * from pgq_node.set_consumer_paused('q', 'branch_worker', true)",
        "select * from pgq_node.set_consumer_paused('q', 'branch_worker', true)",
        "select * from pgq_node.get_consumer_state('q', 'branch_worker')",
        "select * from pgq_node.set_consumer_paused('q', 'branch_worker', false)",
        "select * from pgq_node.set_consumer_paused('q', 'branch_worker', false)",
        "select * from pgq_node.set_consumer_paused('q', 'nobody', true)",
        "select * from pgq_node.set_consumer_error('q', 'branch_worker', 'apply failed')",
        "select * from pgq_node.set_consumer_error('q', 'nobody', 'apply failed')",
        "select * from pgq_node.get_consumer_state('q', 'branch_worker')",
        "select * from pgq_node.get_consumer_state('q', 'nobody')",
        "select * from pgq_node.get_consumer_state('nope', 'branch_worker')",
        "select * from pgq_node.set_consumer_completed('q', 'branch_worker', 4)",
        "select * from pgq_node.get_consumer_state('q', 'branch_worker')",
        "select * from pgq_node.set_global_watermark('q', null)",
        "select * from pgq_node.set_global_watermark('q', 99)",
        "select * from pgq_node.set_global_watermark('q', 3)",
        "select * from pgq_node.set_global_watermark('q', 4)",
        "select * from pgq_node.register_subscriber('q', 'leaf', 'leaf_worker', null)",
        "select * from pgq_node.set_subscriber_watermark('q', 'leaf', 4)",
        "select * from pgq_node.register_subscriber('q', 'ghost', 'ghost_worker', 3)",
        "select * from pgq_node.get_subscriber_info('q')",
        "select * from pgq_node.unregister_subscriber('q', 'ghost')",
        "select * from pgq_node.unregister_subscriber('q', 'ghost')",
        "select * from pgq_node.register_consumer('q', 'c1', 'root', 3)",
        "select * from pgq_node.register_consumer('q', 'c1', 'branch', 4)",
        NODE_CONSUMERS,
        "select * from pgq_node.unregister_consumer('q', 'c1')",
        "select * from pgq_node.unregister_consumer('q', 'c1')",
        "select * from pgq_node.unregister_consumer('nope', 'c1')",
        "select * from pgq_node.register_consumer('nope', 'c1', 'root', 3)",
        "select * from pgq_node.register_consumer('q', 'c2', 'nowhere', 3)",
        "select * from pgq_node.register_consumer('q', 'c3', 'root', null)",
        "select * from pgq_node.change_consumer_provider('q', 'branch_worker', 'nowhere')",
        "select * from pgq_node.change_consumer_provider('q', 'nobody', 'root')",
        "select * from pgq_node.change_consumer_provider('q', 'branch_worker', 'ghost')",
        "select * from pgq_node.get_consumer_state('q', 'branch_worker')",
        "select * from pgq_node.change_consumer_provider('q', 'branch_worker', 'root')",
        "select * from pgq_node.set_node_attrs('q', 'sync_watermark=leaf')",
        "select * from pgq_node.set_node_attrs('nope', 'x=1')",
        "select * from pgq_node.set_partition_watermark('q', 'nope', 1)",
        "select * from pgq_node.unregister_location('q', 'branch')",
        "select * from pgq_node.unregister_location('q', 'root')",
        "select * from pgq_node.unregister_location('q', 'nosuch')",
        "select * from pgq_node.unregister_location('q', 'ghost')",
        "select * from pgq_node.drop_node('q', 'root')",
        "select * from pgq_node.register_location('q', 'leaf', null, true)",
        LOCATIONS,
        "select * from pgq_node.register_location('q', 'leaf', 'dbname=leaf2', false)",
        LOCATIONS,
        NODE_INFO,
        WORKER_STATE,
        PGQ_CONSUMERS,
        "select pgq_node.is_root_node('q'), pgq_node.is_leaf_node('q')",
    ] {
        d.q(B, sql).await;
    }
}

/// The leaf: no queue of its own; a merging leaf of a second queue.
async fn script_leaf(d: &mut Runner) {
    use Node::Leaf as L;
    for (q, n, loc) in [
        ("q", "root", "dbname=root"),
        ("q", "branch", "dbname=branch"),
        ("q", "leaf", "dbname=leaf"),
        ("cq", "leaf", "dbname=leaf"),
        ("cq", "croot", "dbname=croot"),
        ("pq", "leaf", "dbname=leaf"),
        ("pq", "proot", "dbname=proot"),
    ] {
        d.q(
            L,
            &format!("select * from pgq_node.register_location('{q}', '{n}', '{loc}', false)"),
        )
        .await;
    }
    for sql in [
        "select * from pgq_node.create_node('q', 'leaf', 'leaf', 'leaf_worker', 'branch', 4, null)",
        QUEUES,
        NODE_INFO,
        WORKER_STATE,
        "select pgq_node.is_root_node('q'), pgq_node.is_leaf_node('q')",
        "select * from pgq_node.register_subscriber('q', 'x', 'x_worker', null)",
        "select * from pgq_node.set_global_watermark('q', 4)",
        "select * from pgq_node.set_consumer_completed('q', 'leaf_worker', 5)",
        NODE_INFO,
        // a leaf needs a worker
        "select * from pgq_node.create_node('bad', 'leaf', 'leaf', null, 'proot', 1, null)",
        // a merging leaf: pq's events go into the local branch of cq
        "select * from pgq_node.create_node('cq', 'branch', 'leaf', 'cq_worker', 'croot', 1, null)",
        "select * from pgq_node.create_node('pq', 'leaf', 'leaf', 'pq_worker', 'proot', 1, 'cq')",
        "select * from pgq_node.get_node_info('pq')",
        "select * from pgq_node.get_node_info('cq')",
        "select * from pgq_node.get_worker_state('pq')",
        "select * from pgq_node.set_partition_watermark('cq', 'pq', 7)",
        "select * from pgq_node.set_partition_watermark('pq', 'cq', 7)",
        "select * from pgq_node.get_consumer_info('pq')",
        "select * from pgq_node.unregister_consumer('pq', 'pq_worker')",
        "select * from pgq_node.set_partition_watermark('cq', 'pq', 8)",
        "select * from pgq_node.get_worker_state('pq')",
        // a combined queue that is a pgq queue but no node here
        "select pgq.create_queue('plainq')",
        "select * from pgq_node.register_location('pq2', 'leaf', 'dbname=leaf', false)",
        "select * from pgq_node.register_location('pq2', 'proot', 'dbname=proot', false)",
        "select * from pgq_node.create_node('pq2', 'leaf', 'leaf', 'pq2_worker', 'proot', 1, 'plainq')",
        "select * from pgq_node.get_node_info('pq2')",
        "select * from pgq_node.get_worker_state('pq2')",
        "select * from pgq_node.drop_node('pq2', 'leaf')",
        QUEUES,
    ] {
        d.q(L, sql).await;
    }
}

/// Root and branch swap roles; the root demotion's order checks.
async fn script_switch(d: &mut Runner) {
    use Node::{Branch as B, Root as R};
    d.q(R, "select * from pgq_node.demote_root('q', 2, 'branch')")
        .await;
    d.q(R, "select * from pgq_node.demote_root('nope', 1, 'branch')")
        .await;
    d.q(B, "select * from pgq_node.demote_root('q', 1, 'root')")
        .await;
    d.q(R, "select * from pgq_node.promote_branch('q')").await;
    d.q(R, "select * from pgq_node.promote_branch('nope')")
        .await;
    d.q(R, "select * from pgq_node.demote_root('q', 1, 'branch')")
        .await;
    d.q(R, QUEUES).await;
    d.q(R, "select pgq.insert_event('q', 'data', 'late')").await;
    d.q(R, "select * from pgq_node.demote_root('q', 2, 'branch')")
        .await;
    d.q(R, TICKS).await;
    d.q(R, "select * from pgq_node.demote_root('q', 9, 'branch')")
        .await;
    d.q(R, "select * from pgq_node.demote_root('q', 3, 'branch')")
        .await;
    d.q(R, NODE_INFO).await;
    d.q(R, WORKER_STATE).await;
    d.q(R, "select * from pgq_node.demote_root('q', 3, 'branch')")
        .await;
    d.q(B, "select pgq.ticker('q', 5, now(), 7)").await;
    d.q(B, "select * from pgq_node.promote_branch('q')").await;
    d.q(B, "select * from pgq_node.promote_branch('q')").await;
    d.q(B, QUEUES).await;
    d.q(B, NODE_INFO).await;
    d.q(B, WORKER_STATE).await;
    d.q(B, "select pgq.ticker('q')").await;
    d.q(B, TICKS).await;
    d.q(B, "select pgq.insert_event('q', 'data', 'new root')")
        .await;
    d.q(
        B,
        "select * from pgq_node.register_subscriber('q', 'root', 'root_worker', null)",
    )
    .await;
    d.q(B, "select * from pgq_node.get_subscriber_info('q')")
        .await;
    d.q(B, "select * from pgq_node.set_global_watermark('q', null)")
        .await;
    d.q(B, EVENTS).await;
}

/// Rights: what each pgq role may call.
async fn script_rights(d: &mut Runner) {
    use Node::Branch as B;
    for (role, sql) in [
        ("pgq_reader", NODE_INFO),
        (
            "pgq_reader",
            "select * from pgq_node.get_subscriber_info('q')",
        ),
        ("pgq_reader", "select count(*) from pgq_node.node_location"),
        (
            "pgq_reader",
            "select * from pgq_node.set_consumer_paused('q', 'root_worker', true)",
        ),
        (
            "pgq_writer",
            "select * from pgq_node.set_consumer_uptodate('q', 'root_worker', true)",
        ),
        ("pgq_writer", WORKER_STATE),
        (
            "pgq_writer",
            "delete from pgq_node.node_location where false",
        ),
        ("pgq_admin", WORKER_STATE),
        (
            "pgq_admin",
            "delete from pgq_node.node_location where false",
        ),
        ("pgq_node_nobody", "select pgq_node.version()"),
        ("pgq_node_nobody", "select pgq_node.is_root_node('q')"),
        ("pgq_node_nobody", NODE_INFO),
    ] {
        d.q(B, &format!("set role {role}; {sql}; reset role")).await;
        d.q(B, "reset role").await;
    }
}

/// Dropping nodes: the local one, another member, the provider, an unknown queue.
async fn script_drop(d: &mut Runner) {
    use Node::{Branch as B, Leaf as L, Root as R};
    for (n, sql) in [
        (L, "select * from pgq_node.drop_node('q', 'leaf')"),
        (L, LOCATIONS),
        (L, NODE_INFO),
        (B, "select * from pgq_node.drop_node('q', 'leaf')"),
        (B, LOCATIONS),
        (B, "select * from pgq_node.get_subscriber_info('q')"),
        (R, "select * from pgq_node.drop_node('q', 'branch')"),
        (R, "select * from pgq_node.drop_node('q', 'root')"),
        (R, LOCATIONS),
        (R, QUEUES),
        (R, "select * from pgq_node.drop_node('zzz', 'x')"),
        (B, "select * from pgq_node.drop_node('q', 'root')"),
        (B, EVENTS),
        (B, "select * from pgq_node.drop_node('q', 'branch')"),
        (B, QUEUES),
        (L, "select * from pgq_node.drop_node('pq', 'leaf')"),
        (L, "select * from pgq_node.drop_node('cq', 'leaf')"),
        (L, QUEUES),
    ] {
        d.q(n, sql).await;
    }
    for n in [R, B, L] {
        d.q(
            n,
            "select (select count(*) from pgq_node.node_location) as locations, \
                    (select count(*) from pgq_node.node_info) as nodes, \
                    (select count(*) from pgq_node.local_state) as states, \
                    (select count(*) from pgq_node.subscriber_info) as subscribers, \
                    (select count(*) from pgq.consumer) as pgq_consumers",
        )
        .await;
    }
}

async fn run_script(c: &TestCluster, side: &str) -> Runner {
    let mut d = Runner::new(c, side).await;
    script_root(&mut d).await;
    script_branch(&mut d).await;
    script_leaf(&mut d).await;
    script_switch(&mut d).await;
    script_rights(&mut d).await;
    script_drop(&mut d).await;
    d
}

fn create_side(c: &TestCluster, side: &str) {
    for n in [Node::Root, Node::Branch, Node::Leaf] {
        let db = n.db(side);
        if side == "real" {
            c.create_db(&db);
            c.psql(&db, "create extension pgq; create extension pgq_node");
        } else {
            c.create_pgq_db(&db);
            install_schema(c, &db, &["node"]);
        }
    }
}

async fn differential(c: &TestCluster) {
    create_side(c, "ours");
    create_side(c, "real");
    c.psql("postgres", "create role pgq_node_nobody");
    let ours = run_script(c, "ours").await;
    let real = run_script(c, "real").await;
    if std::env::var_os("PGQD_DIFF_VERBOSE").is_some() {
        for s in &ours.steps {
            eprintln!("[{:?}] {}\n{}", s.node, s.sql, indent(&s.out));
        }
    }
    let failures = compare(&ours, &real);
    eprintln!(
        "pgq_node differential: {} steps compared, {} differences",
        ours.steps.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} unexpected differences between ours and pgq_node 3.5:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ------------------------------------------------------------------------------------------
// Catalog surface.

/// (kind, name) → description of one object of schema pgq_node.
async fn catalog(
    c: &TestCluster,
    db: &str,
) -> BTreeMap<(String, String), BTreeMap<String, String>> {
    let client = c.connect(db).await;
    let mut out: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    let queries: [(&str, &str); 4] = [
        (
            "function",
            "select p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', \
                    'result=' || pg_get_function_result(p.oid), \
                    'secdef=' || p.prosecdef, \
                    'volatile=' || p.provolatile::text, \
                    'strict=' || p.proisstrict, \
                    'config=' || coalesce(array_to_string(p.proconfig, ','), ''), \
                    'language=' || l.lanname, \
                    'acl=' || coalesce((select string_agg(x.e, ',' order by x.e) \
                                         from (select coalesce(r.rolname, 'public') || ':' \
                                                      || a.privilege_type as e \
                                                 from aclexplode(p.proacl) a \
                                                 left join pg_roles r on r.oid = a.grantee) x), \
                                        'default') \
               from pg_proc p join pg_language l on l.oid = p.prolang \
              where p.pronamespace = 'pgq_node'::regnamespace",
        ),
        (
            "column",
            "select a.attrelid::regclass || '.' || a.attname, \
                    'type=' || format_type(a.atttypid, a.atttypmod), \
                    'notnull=' || a.attnotnull, \
                    'default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), \
                    'position=' || a.attnum, '', '', '' \
               from pg_attribute a join pg_class c on c.oid = a.attrelid \
               left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum \
              where c.relnamespace = 'pgq_node'::regnamespace and c.relkind = 'r' \
                and a.attnum > 0 and not a.attisdropped",
        ),
        (
            "constraint",
            "select conrelid::regclass || '.' || conname, \
                    'def=' || pg_get_constraintdef(oid), '', '', '', '', '', '' \
               from pg_constraint where connamespace = 'pgq_node'::regnamespace",
        ),
        (
            "table",
            "select c.oid::regclass::text, \
                    'acl=' || coalesce((select string_agg(x.e, ',' order by x.e) \
                                         from (select coalesce(r.rolname, 'public') || ':' \
                                                      || a.privilege_type as e \
                                                 from aclexplode(c.relacl) a \
                                                 left join pg_roles r on r.oid = a.grantee) x), \
                                        'default'), \
                    '', '', '', '', '', '' \
               from pg_class c where c.relnamespace = 'pgq_node'::regnamespace",
        ),
    ];
    for (kind, sql) in queries {
        for row in client.query(sql, &[]).await.expect("catalog query") {
            let name: String = row.get(0);
            let mut attrs = BTreeMap::new();
            for i in 1..row.len() {
                let v: Option<String> = row.get(i);
                if let Some((k, v)) = v.as_deref().and_then(|s| s.split_once('=')) {
                    attrs.insert(k.to_string(), v.to_string());
                }
            }
            out.insert((kind.to_string(), name), attrs);
        }
    }
    out
}

/// Why a catalog attribute may differ (None: it must not).
fn catalog_excuse(
    kind: &str,
    name: &str,
    attr: &str,
    real: &str,
    ours: &str,
) -> Option<&'static str> {
    match (kind, attr) {
        ("function", "config") if real.is_empty() && ours == "search_path=pg_catalog, pg_temp" => {
            Some("pinned_search_path")
        }
        ("function", "language") if real == "plpgsql" && ours == "sql" => Some("sql_language"),
        ("constraint", "def") if name == "pgq_node.node_info.node_info_check" => {
            Some("node_info_check_text")
        }
        _ => None,
    }
}

async fn catalog_surface(c: &TestCluster) {
    let real = catalog(c, "real_root").await;
    let ours = catalog(c, "ours_root").await;
    let mut failures = Vec::new();
    let mut excused: BTreeMap<&str, usize> = BTreeMap::new();
    let keys: BTreeSet<&(String, String)> = real.keys().chain(ours.keys()).collect();
    for key in &keys {
        let (kind, name) = (key.0.as_str(), key.1.as_str());
        match (real.get(*key), ours.get(*key)) {
            (Some(r), Some(o)) => {
                let attrs: BTreeSet<&String> = r.keys().chain(o.keys()).collect();
                for a in attrs {
                    let rv = r.get(a).map(String::as_str).unwrap_or("<none>");
                    let ov = o.get(a).map(String::as_str).unwrap_or("<none>");
                    if rv == ov {
                        continue;
                    }
                    match catalog_excuse(kind, name, a, rv, ov) {
                        Some(why) => {
                            check_intended(why);
                            *excused.entry(why).or_default() += 1;
                        }
                        None => failures.push(format!(
                            "{kind} {name}: {a}\n  pgq_node 3.5: {rv}\n  ours:         {ov}"
                        )),
                    }
                }
            }
            (Some(_), None) => failures.push(format!("{kind} {name}: missing in ours")),
            (None, Some(_)) => failures.push(format!("{kind} {name}: only in ours")),
            (None, None) => unreachable!("key from one of the maps"),
        }
    }
    eprintln!(
        "pgq_node catalog: {} objects compared, {} differences, intended: {excused:?}",
        keys.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "catalog differences from pgq_node 3.5:\n{}",
        failures.join("\n")
    );
    // every excuse used must still be needed
    for why in ["pinned_search_path", "node_info_check_text", "sql_language"] {
        assert!(
            excused.contains_key(why),
            "intended difference {why} no longer seen"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Debian's python cascade code on our schema.

fn cascade_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/cascade.py")
}

fn dsn(c: &TestCluster, db: &str) -> String {
    format!(
        "host={} port={} user=postgres dbname={db}",
        c.socket_dir.display(),
        c.port
    )
}

/// Writes a skytools ini file and returns its path.
fn ini(c: &TestCluster, name: &str, service: &str, keys: &[(&str, String)]) -> PathBuf {
    let mut text = format!("[{service}]\n");
    for (k, v) in keys {
        text.push_str(&format!("{k} = {v}\n"));
    }
    let path = c.dir.join(format!("{name}.ini"));
    fs::write(&path, text).expect("write ini");
    path
}

fn python(kind: &str, ini: &Path, args: &[&str]) -> Command {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} missing: install python3-pgq (scripts/setup.sh)"
    );
    let mut cmd = Command::new(PYTHON);
    cmd.arg(cascade_script())
        .arg(kind)
        .arg(ini)
        .args(args)
        .env_remove("PYTHONPATH")
        .stdin(Stdio::null());
    cmd
}

fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the admin tool; panics with its output unless it succeeds; returns stdout.
fn admin(ini: &Path, args: &[&str]) -> String {
    let out = python("admin", ini, args)
        .output()
        .expect("run python admin");
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a worker until it has been idle for its `idle_rounds`, at most 60 s.
fn run_worker(ini: &Path) -> String {
    let log_path = ini.with_extension("log");
    let log = fs::File::create(&log_path).expect("log file");
    let mut child = python("worker", ini, &[])
        .stdout(Stdio::from(log.try_clone().expect("clone log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start python worker");
    let status = common::wait_exit(&mut child, Duration::from_secs(60));
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "worker {} failed: {text}", ini.display());
    assert!(
        !text.contains("Traceback"),
        "worker {} raised: {text}",
        ini.display()
    );
    text
}

/// A worker running until it is killed (on drop).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Inserts `n` events on the root and ticks its queue.
fn produce(c: &TestCluster, db: &str, from: u32, n: u32) {
    c.psql(
        db,
        &format!(
            "select count(pgq.insert_event('pq', 'data', i::text)) \
               from generate_series({from}, {}) i",
            from + n - 1
        ),
    );
    c.psql(db, "select pgq.ticker('pq')");
}

/// The data events of queue pq in `db` as "id:data" lines.
fn data_events(c: &TestCluster, db: &str) -> String {
    c.psql(
        db,
        "select ev_id || ':' || ev_data from pgq.event_template \
          where ev_type = 'data' order by ev_id",
    )
}

async fn python_cascade(c: &TestCluster) {
    let nodes = [
        ("root", "p_root"),
        ("branch", "p_branch"),
        ("leaf", "p_leaf"),
    ];
    for (_, db) in nodes {
        c.create_pgq_db(db);
        install_schema(c, db, &["node"]);
    }
    let admin_ini = |n: &str, db: &str| {
        ini(
            c,
            &format!("admin_{n}"),
            "cascade_admin",
            &[
                ("job_name", format!("admin_{n}")),
                ("queue_name", "pq".into()),
                ("db", dsn(c, db)),
            ],
        )
    };
    let worker_ini = |n: &str, db: &str, idle: u32| {
        ini(
            c,
            &format!("worker_{n}_{idle}"),
            "cascade_worker",
            &[
                ("job_name", format!("p{n}_worker")),
                ("queue_name", "pq".into()),
                ("db", dsn(c, db)),
                ("loop_delay", "0.05".into()),
                ("exception_sleep", "0.2".into()),
                ("idle_rounds", idle.to_string()),
                ("global_wm_publish_period", "0".into()),
                ("local_wm_publish_period", "0".into()),
            ],
        )
    };
    let (a_root, a_branch, a_leaf) = (
        admin_ini("root", "p_root"),
        admin_ini("branch", "p_branch"),
        admin_ini("leaf", "p_leaf"),
    );
    let root_loc = dsn(c, "p_root");
    let branch_loc = dsn(c, "p_branch");
    admin(
        &a_root,
        &["create-root", "proot", &root_loc, "--worker=proot_worker"],
    );
    admin(
        &a_branch,
        &[
            "create-branch",
            "pbranch",
            &branch_loc,
            "--worker=pbranch_worker",
            &format!("--provider={root_loc}"),
        ],
    );
    admin(
        &a_leaf,
        &[
            "create-leaf",
            "pleaf",
            &dsn(c, "p_leaf"),
            "--worker=pleaf_worker",
            &format!("--provider={branch_loc}"),
        ],
    );
    // the branch's copy is ticked by its worker only
    assert_eq!(
        c.psql(
            "p_branch",
            "select queue_external_ticker and queue_disable_insert from pgq.queue \
              where queue_name = 'pq'"
        ),
        "t"
    );
    let members = admin(&a_root, &["members"]);
    for n in ["proot", "pbranch", "pleaf"] {
        assert!(
            members
                .lines()
                .any(|l| l.starts_with(n) && l.contains("False")),
            "members lists {n}: {members}"
        );
    }

    c.psql(
        "p_root",
        "update pgq.queue set queue_ticker_idle_period = '0', queue_ticker_max_lag = '0'",
    );
    produce(c, "p_root", 1, 10);
    // the root's worker publishes the global watermark (an event, in the next tick)
    run_worker(&worker_ini("root", "p_root", 10));
    produce(c, "p_root", 11, 5);
    let top = last_tick(c, "p_root", "pq");
    run_worker(&worker_ini("branch", "p_branch", 20));
    run_worker(&worker_ini("leaf", "p_leaf", 20));

    // events inserted on the root reach the branch's queue copy, with the same ids
    let root_events = data_events(c, "p_root");
    assert_eq!(root_events.lines().count(), 15);
    assert_eq!(data_events(c, "p_branch"), root_events);
    assert_eq!(
        last_tick(c, "p_branch", "pq"),
        top,
        "branch copied the ticks"
    );
    for (db, worker) in [("p_branch", "pbranch_worker"), ("p_leaf", "pleaf_worker")] {
        assert_eq!(
            c.psql(
                db,
                &format!(
                    "select last_tick_id || ' ' || uptodate || ' ' || coalesce(cur_error, '-') \
                       from pgq_node.get_consumer_info('pq') where consumer_name = '{worker}'"
                )
            ),
            format!("{top} true -"),
            "{worker} completed the root's last tick"
        );
    }
    // the root worker published the global watermark, the branch reported its position
    assert!(
        c.psql(
            "p_branch",
            "select count(*) from pgq.event_template where ev_type = 'pgq.global-watermark'"
        )
        .parse::<i64>()
        .expect("count")
            >= 1,
        "the global watermark event reached the branch"
    );
    // (the branch ran before the leaf, so it reported the leaf's starting position)
    assert_eq!(
        c.psql(
            "p_root",
            "select node_name || ' ' || node_watermark from pgq_node.get_subscriber_info('pq')"
        ),
        "pbranch 1",
        "the branch reported its watermark to the root"
    );
    assert_eq!(
        c.psql(
            "p_branch",
            "select node_name || ' ' || node_watermark from pgq_node.get_subscriber_info('pq')"
        ),
        format!("pleaf {}", top - 1),
        "the leaf reported its watermark to the branch (the position it had when its \
         last batch began)"
    );

    let status = admin(&a_root, &["status"]);
    for n in ["proot (root)", "pbranch (branch)", "pleaf (leaf)"] {
        assert!(status.contains(n), "status shows {n}: {status}");
    }
    assert!(
        status.matches(&format!("Tick: {top}")).count() == 3,
        "status shows every node at tick {top}: {status}"
    );

    // change-provider: the leaf moves from the branch to the root, with its worker running
    // (the admin waits for it to acknowledge the pause and the resume)
    let leaf_worker = worker_ini("leaf", "p_leaf", 1_000_000);
    let log = fs::File::create(c.dir.join("leaf_worker.log")).expect("log file");
    let running = Running(
        python("worker", &leaf_worker, &[])
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start leaf worker"),
    );
    admin(
        &a_root,
        &["change-provider", "--node=pleaf", "--provider=proot"],
    );
    assert_eq!(
        c.psql(
            "p_leaf",
            "select provider_node from pgq_node.get_worker_state('pq')"
        ),
        "proot"
    );
    assert_eq!(
        c.psql(
            "p_branch",
            "select count(*) from pgq_node.get_subscriber_info('pq')"
        ),
        "0",
        "the leaf left the branch"
    );
    produce(c, "p_root", 16, 5);
    let top = last_tick(c, "p_root", "pq");
    wait_for(
        "the leaf, now reading from the root, reaches the root's last tick",
        Duration::from_secs(20),
        || {
            let t = c.psql(
                "p_leaf",
                "select completed_tick from pgq_node.get_worker_state('pq')",
            );
            async move { (t == top.to_string()).then_some(()) }
        },
    )
    .await;
    drop(running);
    let status = admin(&a_root, &["status"]);
    assert!(
        status.contains("proot (root)") && status.contains("pleaf (leaf)"),
        "status after change-provider: {status}"
    );
    eprintln!("python cascade status:\n{status}");
}

// ------------------------------------------------------------------------------------------
// `pgqd install` / `pgqd uninstall` of the node component.

fn pgqd_cli(c: &TestCluster, db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(args)
        .arg("--connstr")
        .arg(format!(
            "host={} port={} user=postgres",
            c.socket_dir.display(),
            c.port
        ))
        .arg("--dbname")
        .arg(db)
        .env_remove("PGDATABASE")
        .output()
        .expect("run pgqd")
}

fn cli_install_uninstall(c: &TestCluster) {
    c.create_db("cli");
    c.create_db("cli_nopgq");
    let ok = |db: &str, args: &[&str]| {
        let out = pgqd_cli(c, db, args);
        assert!(out.status.success(), "pgqd {args:?}: {}", output_text(&out));
        output_text(&out)
    };
    let refused = |db: &str, args: &[&str], why: &str| {
        let out = pgqd_cli(c, db, args);
        assert!(!out.status.success(), "pgqd {args:?} succeeded");
        assert!(
            output_text(&out).contains(why),
            "pgqd {args:?}: {}",
            output_text(&out)
        );
    };
    let text = ok("cli", &["install", "--component", "pgq,node"]);
    assert!(text.contains("node: installed"), "{text}");
    refused(
        "cli_nopgq",
        &["install", "--component", "node"],
        "needs pgq",
    );
    // installing again keeps the cascade's state
    c.psql(
        "cli",
        "select * from pgq_node.register_location('q', 'n', 'dbname=cli', false); \
         select * from pgq_node.create_node('q', 'root', 'n', 'w', null, null, null)",
    );
    ok("cli", &["install", "--component", "pgq,node"]);
    assert_eq!(
        c.psql("cli", "select node_type from pgq_node.node_info"),
        "root"
    );
    refused(
        "cli",
        &["uninstall", "--component", "pgq", "--force"],
        "pgq_node needs pgq",
    );
    let text = ok("cli", &["uninstall", "--component", "node"]);
    assert!(text.contains("dropped schema pgq_node"), "{text}");
    assert_eq!(
        c.psql(
            "cli",
            "select string_agg(nspname, ',' order by nspname) from pg_namespace \
              where nspname like 'pgq%'"
        ),
        "pgq"
    );
    ok("cli", &["install", "--component", "node"]);
    ok("cli", &["uninstall", "--component", "node,pgq", "--force"]);
    assert_eq!(
        c.psql(
            "cli",
            "select count(*) from pg_namespace where nspname like 'pgq%'"
        ),
        "0"
    );
}

// ------------------------------------------------------------------------------------------
// Our daemon with node queues.

/// Registers the locations of a two-node cascade of `queue` and makes `node` a node of it.
fn make_node(c: &TestCluster, db: &str, queue: &str, create: &str) {
    c.psql(
        db,
        &format!(
            "select * from pgq_node.register_location('{queue}', 'droot', 'dbname=d_root', false); \
             select * from pgq_node.register_location('{queue}', 'dbranch', 'dbname=d_branch', false)"
        ),
    );
    let out = c.psql(
        db,
        &format!("select ret_code from pgq_node.create_node({create})"),
    );
    assert_eq!(out, "200", "create_node({create}) on {db}");
}

/// The global watermark (`.global_watermark`'s position) of `queue` in `db`.
fn global_watermark(c: &TestCluster, db: &str, queue: &str) -> i64 {
    c.psql(
        db,
        &format!("select last_tick from pgq.get_consumer_info('{queue}', '.global_watermark')"),
    )
    .parse()
    .expect("global watermark")
}

async fn daemon_with_nodes(c: &TestCluster) {
    for db in ["d_root", "d_branch"] {
        c.create_pgq_db(db);
        install_schema(c, db, &["node"]);
    }
    make_node(
        c,
        "d_root",
        "dq",
        "'dq', 'root', 'droot', 'droot_worker', null, null, null",
    );
    make_node(
        c,
        "d_branch",
        "dq",
        "'dq', 'branch', 'dbranch', 'dbranch_worker', 'droot', 1, null",
    );
    // The root's queue ticks at every ticker round; the global watermark looks 10 minutes
    // old, so maint_watermark must move it (and announce it) at the first maintenance.
    c.psql(
        "d_root",
        "update pgq.queue set queue_ticker_idle_period = '0', queue_ticker_max_lag = '0'; \
         update pgq.tick set tick_time = tick_time - interval '10 minutes'",
    );
    c.psql(
        "d_branch",
        "update pgq.queue set queue_ticker_idle_period = '0', queue_ticker_max_lag = '0'",
    );
    assert_eq!(
        c.psql("d_root", "select func_name || ' ' || coalesce(func_arg, '') from pgq.maint_operations() where func_name like 'pgq_node.%'"),
        "pgq_node.maint_watermark dq",
        "maint_operations lists maint_watermark for the root queue"
    );
    assert_eq!(
        c.psql(
            "d_branch",
            "select count(*) from pgq.maint_operations() where func_name like 'pgq_node.%'"
        ),
        "0",
        "no maint_watermark for a branch queue"
    );
    assert_eq!(global_watermark(c, "d_root", "dq"), 1);
    let branch_top = last_tick(c, "d_branch", "dq");

    let mut cfg = test_config(c);
    cfg.database_list = vec!["d_root".into(), "d_branch".into()];
    let d = Daemon::start(cfg).await;
    d.wait_serving("d_root", true).await;
    d.wait_serving("d_branch", true).await;

    // the root is ticked
    let t1 = daemon_support::wait_tick_after(c, "d_root", "dq", 1, Duration::from_secs(15)).await;
    // maintenance moved the stale global watermark to the root's local watermark (a tick
    // made by the daemon) and sent the pgq.global-watermark event down the cascade
    let wm = wait_for(
        "maint_watermark moved the global watermark",
        Duration::from_secs(15),
        || {
            let wm = global_watermark(c, "d_root", "dq");
            async move { (wm > 1).then_some(wm) }
        },
    )
    .await;
    // (it may have moved before `t1` was seen: any tick after the first is the daemon's)
    assert!(
        wm <= last_tick(c, "d_root", "dq"),
        "global watermark {wm} is a tick of the queue"
    );
    let events = c.psql(
        "d_root",
        "select ev_data from pgq.event_template where ev_type = 'pgq.global-watermark' order by ev_id",
    );
    assert!(
        events.lines().any(|l| l == wm.to_string()),
        "pgq.global-watermark event for {wm}; events: {events:?}"
    );
    // a few more root ticks and maintenance rounds later, the branch's copy (external
    // ticker) has not been ticked by the daemon
    daemon_support::wait_tick_after(c, "d_root", "dq", t1 + 2, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        last_tick(c, "d_branch", "dq"),
        branch_top,
        "the daemon ticked the branch's queue copy"
    );
    d.stop().await.expect("daemon stopped cleanly");
    eprintln!(
        "daemon: root ticked to {}, global watermark {wm}",
        last_tick(c, "d_root", "dq")
    );
}

// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgq_node_against_3_5_python_and_daemon() {
    let started = Instant::now();
    let c = TestCluster::start_with(ClusterOptions {
        conf: vec!["autovacuum = off".into()],
        ..Default::default()
    });
    assert!(
        c.has_real_pgq(),
        "the real pgq / pgq_node extensions are not installed \
         (apt-get install postgresql-15-pgq3 postgresql-15-pgq-node)"
    );
    let t = Instant::now();
    differential(&c).await;
    eprintln!("differential: {:?}", t.elapsed());
    let t = Instant::now();
    catalog_surface(&c).await;
    eprintln!("catalog: {:?}", t.elapsed());
    let t = Instant::now();
    cli_install_uninstall(&c);
    eprintln!("install/uninstall: {:?}", t.elapsed());
    let t = Instant::now();
    python_cascade(&c).await;
    eprintln!("python cascade: {:?}", t.elapsed());
    let t = Instant::now();
    daemon_with_nodes(&c).await;
    eprintln!("daemon: {:?}", t.elapsed());
    eprintln!("total: {:?}", started.elapsed());
}
