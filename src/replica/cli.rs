//! `pgqd replica …`: the operator's commands for table replication. Each acts on one
//! node (`--connstr`/`--dbname`, like the admin commands) and, for `copy`, `compare` and
//! `repair`, on its provider (`--provider`, a connection string).
//!
//! Exit codes: 0 done (compare: equal; repair: nothing to fix), 1 failure, 2 bad
//! arguments or a bad connection string, 3 compare found differences / repair has hints.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use tokio_postgres::Client;

use crate::cli::{ConnArgs, Format};
use crate::conn;

use super::compare::{self, AtTick};
use super::copy;
use super::{Error, sql};

/// Exit code: compare found differences, repair has hints.
pub const EXIT_DIFFERS: u8 = 3;

/// The replication subcommands. Doc comments are the `--help` texts.
#[derive(Subcommand, Debug)]
pub enum ReplicaCommand {
    /// Replicate tables through a queue.
    ///
    /// On the root this installs the capture triggers (logutriga or sqltriga) that put
    /// every insert, update, delete and truncate of the table into the queue; on a
    /// subscriber it registers the table in state `copy` (run `copy` next). Tables
    /// need a primary key. Needs the replica component (pgqd install --component
    /// triggers,replica) on every node.
    ///
    /// Example: pgqd replica add-table -d app -q orders_q --role root public.orders
    AddTable(AddTableArgs),
    /// Stop replicating tables (drops the capture triggers on the root; rows stay).
    ///
    /// Example: pgqd replica remove-table -d app -q orders_q public.orders
    RemoveTable(TablesArgs),
    /// List the replicated tables of a queue on one node, with copy state and position.
    ///
    /// Example: pgqd replica tables -d app_copy -q orders_q
    Tables(ListArgs),
    /// Copy tables from the provider into this subscriber (all tables in state `copy`
    /// when none are named).
    ///
    /// The worker may keep running: changes made during the copy are applied after it
    /// (the ones the copy already holds are skipped by the provider's snapshot).
    ///
    /// Example: pgqd replica copy -d app_copy -q orders_q --provider 'dbname=app'
    Copy(CopyArgs),
    /// Compare row counts and checksums of tables on the provider and this node, read
    /// at the same tick (the worker must be running; it pauses briefly).
    ///
    /// Example: pgqd replica compare -d app_copy -q orders_q --provider 'dbname=app'
    Compare(CompareArgs),
    /// Show which rows differ between the provider and this node and the SQL that would
    /// fix this node (printed, never run).
    ///
    /// Example: pgqd replica repair -d app_copy -q orders_q --provider 'dbname=app' public.orders
    Repair(CompareArgs),
    /// Run the cascade worker of this node with the replication applier.
    ///
    /// CONFIG is the cascade worker's TOML file (pgqd cascade worker). Runs in the
    /// foreground until SIGINT/SIGTERM.
    ///
    /// Example: pgqd replica worker /etc/pgqd/orders_copy.toml
    Worker(WorkerArgs),
}

/// The node's role for `add-table`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The root: install capture triggers.
    Root,
    /// A branch or leaf: register for copy.
    Subscriber,
}

/// The capture trigger kind.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Kind {
    /// `pgq.logutriga`: urlencoded rows.
    #[default]
    Logutriga,
    /// `pgq.sqltriga`: SQL fragments.
    Sqltriga,
}

/// `add-table`.
#[derive(Args, Debug)]
pub struct AddTableArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The queue.
    #[arg(long, short = 'q')]
    queue: String,
    /// This node's role (default: from pgq_node when installed).
    #[arg(long, value_enum)]
    role: Option<Role>,
    /// Capture trigger (root only).
    #[arg(long, value_enum, default_value = "logutriga")]
    kind: Kind,
    /// Tables (schema.name; search_path applies).
    #[arg(required = true, value_name = "TABLE")]
    tables: Vec<String>,
}

/// Commands naming tables.
#[derive(Args, Debug)]
pub struct TablesArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The queue.
    #[arg(long, short = 'q')]
    queue: String,
    /// Tables.
    #[arg(required = true, value_name = "TABLE")]
    tables: Vec<String>,
}

/// `tables`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The queue.
    #[arg(long, short = 'q')]
    queue: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// `copy`.
#[derive(Args, Debug)]
pub struct CopyArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The queue.
    #[arg(long, short = 'q')]
    queue: String,
    /// The provider's connection string (default: from pgq_node when installed).
    #[arg(long)]
    provider: Option<String>,
    /// Copy tables that are copied already again.
    #[arg(long)]
    force: bool,
    /// Tables (default: every table in state copy).
    #[arg(value_name = "TABLE")]
    tables: Vec<String>,
}

/// `compare` and `repair`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// The queue.
    #[arg(long, short = 'q')]
    queue: String,
    /// The provider's connection string (default: from pgq_node when installed).
    #[arg(long)]
    provider: Option<String>,
    /// How long to wait for the tick both nodes are read at.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Tables (default: every replicated table of the queue here).
    #[arg(value_name = "TABLE")]
    tables: Vec<String>,
}

/// `worker`.
#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The cascade worker's TOML config.
    #[arg(value_name = "CONFIG")]
    pub config: std::path::PathBuf,
}

/// Runs a replication command; returns the exit code.
pub fn run(cmd: &ReplicaCommand) -> u8 {
    if let ReplicaCommand::Worker(a) = cmd {
        // its own runtime, logging and signals, like `pgqd cascade worker`
        return super::worker::run(&a.config);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgqd replica: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run_async(cmd)) {
        Ok(code) => code,
        Err(e) => {
            match (node_of(cmd), e.sqlstate()) {
                (Some(node), Some(state)) => {
                    eprintln!("pgqd replica: {e} (this node: {node}; SQLSTATE {state})")
                }
                _ => eprintln!("pgqd replica: {e}"),
            }
            match e {
                Error::Usage(_) | Error::Conn(conn::Error::BadConnstr(_)) => 2,
                _ => 1,
            }
        }
    }
}

/// "database "x" on host:port as user" of the node a command acts on, for error lines
/// of server errors (the provider side says "provider" in its own messages).
fn node_of(cmd: &ReplicaCommand) -> Option<String> {
    let c = match cmd {
        ReplicaCommand::AddTable(a) => &a.conn,
        ReplicaCommand::RemoveTable(a) => &a.conn,
        ReplicaCommand::Tables(a) => &a.conn,
        ReplicaCommand::Copy(a) => &a.conn,
        ReplicaCommand::Compare(a) | ReplicaCommand::Repair(a) => &a.conn,
        ReplicaCommand::Worker(_) => return None,
    };
    conn::config_from(&c.connstr, c.dbname.as_deref())
        .ok()
        .map(|t| conn::describe(&t))
}

async fn run_async(cmd: &ReplicaCommand) -> Result<u8, Error> {
    match cmd {
        ReplicaCommand::AddTable(a) => add_table(a).await,
        ReplicaCommand::RemoveTable(a) => remove_table(a).await,
        ReplicaCommand::Tables(a) => tables(a).await,
        ReplicaCommand::Copy(a) => copy_cmd(a).await,
        ReplicaCommand::Compare(a) => compare_cmd(a, false).await,
        ReplicaCommand::Repair(a) => compare_cmd(a, true).await,
        ReplicaCommand::Worker(_) => Err(Error::Usage("worker runs on its own runtime".into())),
    }
}

fn sql_err(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let what = what.into();
    move |source| Error::Sql { what, source }
}

async fn open(c: &ConnArgs) -> Result<Client, Error> {
    let target = conn::config_from(&c.connstr, c.dbname.as_deref())?;
    let client = target.connect().await?;
    require_schema(&client, "this node").await?;
    Ok(client)
}

async fn open_connstr(s: &str, what: &str) -> Result<Client, Error> {
    let target = conn::config_from(s, None)?;
    let client = target.connect().await?;
    require_schema(&client, what).await?;
    Ok(client)
}

async fn require_schema(c: &Client, what: &str) -> Result<(), Error> {
    let has: bool = c
        .query_one(sql::HAS_SCHEMA, &[])
        .await
        .map_err(sql_err("looking for schema pgq_replica"))?
        .get(0);
    if has {
        Ok(())
    } else {
        Err(Error::Refused(format!(
            "{what} has no pgq_replica schema (install it: pgqd install --component triggers,replica)"
        )))
    }
}

/// The node type pgq_node records for the queue, when pgq_node is installed.
async fn node_type(c: &Client, queue: &str) -> Result<Option<String>, Error> {
    let has: bool = c
        .query_one(sql::HAS_NODE, &[])
        .await
        .map_err(sql_err("looking for schema pgq_node"))?
        .get(0);
    if !has {
        return Ok(None);
    }
    Ok(c.query_opt(sql::NODE_TYPE, &[&queue])
        .await
        .map_err(sql_err("reading pgq_node.node_info"))?
        .map(|r| r.get(0)))
}

/// The provider's connection string: `--provider`, else pgq_node's location of this
/// node's provider.
async fn provider(c: &Client, queue: &str, given: &Option<String>) -> Result<String, Error> {
    if let Some(p) = given {
        return Ok(p.clone());
    }
    if node_type(c, queue).await?.is_some() {
        let row = c
            .query_opt(sql::PROVIDER_LOCATION, &[&queue])
            .await
            .map_err(sql_err("reading the provider's location from pgq_node"))?;
        if let Some(r) = row {
            return Ok(r.get(0));
        }
    }
    Err(Error::Usage(format!(
        "no provider known for queue {queue:?} here: pass --provider CONNSTR"
    )))
}

/// Resolves a table argument into the `schema.name` key on this node: a registered key
/// as it is (`public.Awk ward`), else the name as regclass reads it.
async fn key(c: &Client, table: &str) -> Result<String, Error> {
    let known = c
        .query_opt(
            "select table_name from pgq_replica.table_info where table_name = $1 limit 1",
            &[&table],
        )
        .await
        .map_err(sql_err("reading pgq_replica.table_info"))?;
    if let Some(r) = known {
        return Ok(r.get(0));
    }
    c.query_one("select pgq_replica.table_key($1)", &[&table])
        .await
        .map(|r| r.get(0))
        .map_err(|source| {
            if matches!(
                crate::pgerr::sqlstate(&source),
                Some("42P01") | Some("42602") | Some("42601")
            ) {
                Error::Refused(format!("no table {table:?} on this node"))
            } else {
                Error::Sql {
                    what: format!("looking up table {table:?}"),
                    source,
                }
            }
        })
}

async fn add_table(a: &AddTableArgs) -> Result<u8, Error> {
    let c = open(&a.conn).await?;
    let root = match (a.role, node_type(&c, &a.queue).await?) {
        (Some(r), Some(t)) if (r == Role::Root) != (t == "root") => {
            let r = if r == Role::Root {
                "root"
            } else {
                "subscriber"
            };
            return Err(Error::Usage(format!(
                "--role {r} contradicts pgq_node, which says this node is a {t} of queue {}",
                a.queue
            )));
        }
        (Some(r), _) => r == Role::Root,
        (None, Some(t)) => t == "root",
        (None, None) => {
            return Err(Error::Usage(format!(
                "cannot tell whether this node is the root of queue {} (pgq_node has no node \
                     for it here): pass --role root or --role subscriber",
                a.queue
            )));
        }
    };
    let kind = match a.kind {
        Kind::Logutriga => "logutriga",
        Kind::Sqltriga => "sqltriga",
    };
    for t in &a.tables {
        let state: String = c
            .query_one(sql::ADD_TABLE, &[&a.queue, t, &root, &kind])
            .await
            .map_err(|source| match crate::pgerr::sqlstate(&source) {
                Some("55000") | Some("42809") | Some("42704") | Some("42P01") => Error::Refused(
                    source
                        .as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| source.to_string()),
                ),
                _ => Error::Sql {
                    what: format!("adding table {t}"),
                    source,
                },
            })?
            .get(0);
        println!("{t}: {state}");
    }
    Ok(0)
}

async fn remove_table(a: &TablesArgs) -> Result<u8, Error> {
    let c = open(&a.conn).await?;
    let mut code = 0;
    for t in &a.tables {
        let removed: bool = c
            .query_one(sql::REMOVE_TABLE, &[&a.queue, t])
            .await
            .map_err(sql_err(format!("removing table {t}")))?
            .get(0);
        if removed {
            println!("{t}: removed");
        } else {
            eprintln!("{t}: not replicated through queue {}", a.queue);
            code = 1;
        }
    }
    Ok(code)
}

async fn tables(a: &ListArgs) -> Result<u8, Error> {
    let c = open(&a.conn).await?;
    let rows = c
        .query(sql::LIST, &[&a.queue])
        .await
        .map_err(sql_err("reading pgq_replica.table_info"))?;
    if a.format == Format::Json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "table": r.get::<_, String>(0),
                    "state": r.get::<_, String>(1),
                    "trigger": r.get::<_, Option<String>>(2),
                    "copy_rows": r.get::<_, Option<i64>>(3),
                    "copy_snapshot": r.get::<_, Option<String>>(4),
                    "copy_finished": r.get::<_, Option<String>>(5),
                    "last_tick": r.get::<_, Option<i64>>(6),
                    "applied_events": r.get::<_, Option<i64>>(7),
                    "paused_at_tick": r.get::<_, Option<i64>>(8),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no tables replicated through queue {} here", a.queue);
        return Ok(0);
    }
    let mut out = vec![vec![
        "table".to_string(),
        "state".into(),
        "trigger".into(),
        "copied rows".into(),
        "copy snapshot".into(),
        "copied at".into(),
    ]];
    for r in &rows {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        out.push(vec![
            r.get(0),
            r.get(1),
            opt(r.get(2)),
            opt(r.get::<_, Option<i64>>(3).map(|n| n.to_string())),
            opt(r.get(4)),
            opt(r.get(5)),
        ]);
    }
    print_table(&out);
    if rows.iter().all(|r| r.get::<_, String>(1) == "root") {
        // the root applies nothing: no position to show
        return Ok(0);
    }
    let r = &rows[0];
    let last: Option<i64> = r.get(6);
    let applied: Option<i64> = r.get(7);
    let pause: Option<i64> = r.get(8);
    println!(
        "queue {}: last applied tick {}, events applied {}{}",
        a.queue,
        last.map_or("-".into(), |t| t.to_string()),
        applied.unwrap_or(0),
        pause.map_or(String::new(), |p| format!(", paused at tick {p}"))
    );
    Ok(0)
}

fn print_table(rows: &[Vec<String>]) {
    let n = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

async fn copy_cmd(a: &CopyArgs) -> Result<u8, Error> {
    let mut sub = open(&a.conn).await?;
    let pconn = provider(&sub, &a.queue, &a.provider).await?;
    let mut prov = open_connstr(&pconn, "the provider").await?;
    let keys = if a.tables.is_empty() {
        sub.query(
            "select table_name from pgq_replica.table_info where queue_name = $1 and state = 'copy' order by 1",
            &[&a.queue],
        )
        .await
        .map_err(sql_err("listing tables to copy"))?
        .iter()
        .map(|r| r.get(0))
        .collect()
    } else {
        let mut v = Vec::new();
        for t in &a.tables {
            v.push(key(&sub, t).await?);
        }
        v
    };
    if keys.is_empty() {
        println!(
            "nothing to copy: no table of queue {} is in state copy",
            a.queue
        );
        return Ok(0);
    }
    let desc = conn::mask_connstr(&pconn);
    for k in keys {
        let r = copy::copy_table(&mut sub, &mut prov, &a.queue, &k, &desc, a.force).await?;
        println!(
            "{}: copied {} rows in {:.2}s ({:.0} rows/s), snapshot {}; now catching-up",
            r.table,
            r.rows,
            r.elapsed.as_secs_f64(),
            r.rows as f64 / r.elapsed.as_secs_f64().max(1e-6),
            r.snapshot
        );
    }
    Ok(0)
}

async fn compare_cmd(a: &CompareArgs, repair: bool) -> Result<u8, Error> {
    let mut sub = open(&a.conn).await?;
    let pconn = provider(&sub, &a.queue, &a.provider).await?;
    let mut prov = open_connstr(&pconn, "the provider").await?;
    let nudge = open_connstr(&pconn, "the provider").await?;
    let keys: Vec<String> = if a.tables.is_empty() {
        sub.query(
            "select table_name from pgq_replica.table_info where queue_name = $1 order by 1",
            &[&a.queue],
        )
        .await
        .map_err(sql_err("listing tables"))?
        .iter()
        .map(|r| r.get(0))
        .collect()
    } else {
        let mut v = Vec::new();
        for t in &a.tables {
            v.push(key(&sub, t).await?);
        }
        v
    };
    if keys.is_empty() {
        return Err(Error::Refused(format!(
            "no tables replicated through queue {} here",
            a.queue
        )));
    }
    if repair {
        let r = compare::repair(&mut sub, &mut prov, &nudge, &a.queue, &keys, a.timeout).await?;
        print_repair(&r, a.format);
        let any = r.tables.iter().any(|t| !t.sql.is_empty());
        return Ok(if any { EXIT_DIFFERS } else { 0 });
    }
    let r = compare::compare(&mut sub, &mut prov, &nudge, &a.queue, &keys, a.timeout).await?;
    if a.format == Format::Json {
        let list: Vec<serde_json::Value> = r
            .tables
            .iter()
            .map(|t| {
                serde_json::json!({
                    "table": t.table,
                    "equal": t.equal(),
                    "provider_rows": t.provider.rows,
                    "provider_checksum": t.provider.checksum,
                    "rows": t.subscriber.rows,
                    "checksum": t.subscriber.checksum,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "tick": r.tick, "tables": list }));
    } else {
        println!("compared at tick {}", r.tick);
        let mut out = vec![vec![
            "table".to_string(),
            "result".into(),
            "provider rows".into(),
            "rows here".into(),
            "provider checksum".into(),
            "checksum here".into(),
        ]];
        for t in &r.tables {
            out.push(vec![
                t.table.clone(),
                if t.equal() { "equal" } else { "DIFFERENT" }.into(),
                t.provider.rows.to_string(),
                t.subscriber.rows.to_string(),
                t.provider.checksum.clone(),
                t.subscriber.checksum.clone(),
            ]);
        }
        print_table(&out);
    }
    let differ = r.tables.iter().filter(|t| !t.equal()).count();
    if differ > 0 {
        eprintln!(
            "{differ} table(s) differ: pgqd replica repair shows the rows and the SQL that would fix them"
        );
        return Ok(EXIT_DIFFERS);
    }
    Ok(0)
}

fn print_repair(r: &AtTick<compare::RepairHints>, format: Format) {
    let keys = |v: &[Vec<Option<String>>]| -> Vec<serde_json::Value> {
        v.iter().map(|k| serde_json::json!(k)).collect()
    };
    if format == Format::Json {
        let list: Vec<serde_json::Value> = r
            .tables
            .iter()
            .map(|t| {
                serde_json::json!({
                    "table": t.table,
                    "missing": keys(&t.missing),
                    "extra": keys(&t.extra),
                    "different": keys(&t.differ),
                    "sql": t.sql,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "tick": r.tick, "tables": list }));
        return;
    }
    println!("-- rows read at tick {} on both nodes", r.tick);
    for t in &r.tables {
        println!(
            "-- {}: {} missing here, {} extra here, {} different",
            t.table,
            t.missing.len(),
            t.extra.len(),
            t.differ.len()
        );
        for s in &t.sql {
            println!("{s}");
        }
    }
}
