//! Differential tests: our plain-SQL pgq against the real pgq 3.5 C extension (the oracle).
//!
//! Each database gets the same script of calls: `ours` (our schema, cloned from the
//! template) and `real` (`create extension pgq`), in the same cluster. The script runs to the
//! end on `ours`, then again on `real` (never interleaved: tick snapshots are cluster-wide,
//! so a transaction left open in one database would show up in the other's ticks), and the
//! transcripts are compared step by step.
//!
//! Normalisation is fixed and the same for both sides:
//! - timestamps, intervals, `float8` rates and txid snapshots become `<set>` / `NULL`, except
//!   configuration intervals a step names explicitly (`keep`);
//! - txids (`ev_txid`, `queue_switch_step1/2`, `txid_current()`) become their dense rank
//!   within the result set (so events of one transaction still share a value);
//! - every other id is compared as is: both databases are fresh, so queue, tick, batch,
//!   event and subscription ids come from sequences that start alike, and a gap on one side
//!   is a difference;
//! - errors compare SQLSTATE, severity, message, detail and hint (not the context);
//!   notices/warnings sent during a step are part of its output.
//!
//! Intended differences (docs/sql-design.md) are the named entries of [`INTENDED`]; a step
//! or catalog entry that differs must name one of them, and a step that names one must
//! really differ (so the list cannot rot).
//!
//! `PGQD_DIFF_SELF=1` runs the script on two real-extension databases instead (checks that
//! the script itself is deterministic; intended-difference steps are then expected equal).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use common::{ClusterOptions, TestCluster};
use futures::StreamExt;
use tokio_postgres::error::DbError;
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

/// The intended differences from pgq 3.5, by name, with the reason (docs/sql-design.md).
const INTENDED: &[(&str, &str)] = &[
    (
        "first_event_counted",
        "design difference 1: pgq records tick_event_seq from last_value of a never-called \
         sequence (1), so ticks made before a queue's first event carry 1 and the first event \
         is not new; ours records 0 and counts it (tick_event_seq, ev_new, pending_events, \
         seq_start, prev/cur_tick_event_seq, ticker decision)",
    ),
    (
        "pinned_search_path",
        "design difference 4: every SECURITY DEFINER function pins \
         search_path = pg_catalog, pg_temp (pgq 3.5 leaves 22 of them unpinned)",
    ),
    (
        "ours_only_functions",
        "functions ours adds: internal helpers named `_…` that pgq lacks \
         (_event_seq_used, insert dispatcher) and pgqd_schema_version()",
    ),
    (
        "insert_event3_direct",
        "insert_event(3) runs the generated insert body itself, as SECURITY DEFINER with the \
         pinned search_path, instead of calling insert_event(7) as an invoker wrapper: one \
         function call (and one search_path switch) on the producers' hot path",
    ),
    (
        "per_tx_limit_savepoint",
        "queue_per_tx_limit counts in a transaction-local setting, which ROLLBACK TO SAVEPOINT \
         undoes; the C counter also counts events of rolled-back savepoints. A plain-SQL \
         schema has no non-transactional per-backend state to count in",
    ),
    (
        "triggers_component",
        "logutriga/sqltriga/jsontriga belong to our separate `triggers` component \
         (issue #4); the template database holds the `pgq` component only",
    ),
];

fn check_intended(name: &str) {
    assert!(
        INTENDED.iter().any(|(n, _)| *n == name),
        "unknown intended difference {name}"
    );
}

fn self_mode() -> bool {
    std::env::var_os("PGQD_DIFF_SELF").is_some()
}

/// Starts the cluster used by one test: autovacuum off, so no background transaction
/// lands in a tick snapshot (and maint_tables_to_vacuum has something to say).
fn cluster() -> TestCluster {
    let c = TestCluster::start_with(ClusterOptions {
        conf: vec!["autovacuum = off".into()],
        ..Default::default()
    });
    assert!(
        c.has_real_pgq(),
        "the real pgq 3.5 extension is not installed (apt-get install postgresql-15-pgq3)"
    );
    c
}

fn make_dbs(c: &TestCluster) {
    if self_mode() {
        c.create_ext_db("ours");
    } else {
        c.create_pgq_db("ours");
    }
    c.create_ext_db("real");
}

// ------------------------------------------------------------------------------------------
// Connections that keep the notices the server sends.

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
                Ok(AsyncMessage::Notice(n)) => sink.lock().unwrap().push(n),
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

/// Per-step normalisation choices (beyond the fixed rules in the file comment).
#[derive(Clone, Copy, Default)]
struct Norm {
    /// Columns kept verbatim although their type would be dropped (configured intervals).
    keep: &'static [&'static str],
}

const CONFIG_INTERVALS: Norm = Norm {
    keep: &[
        "queue_rotation_period",
        "queue_ticker_max_lag",
        "queue_ticker_idle_period",
    ],
};

const TXID_COLUMNS: &[&str] = &[
    "ev_txid",
    "queue_switch_step1",
    "queue_switch_step2",
    "txid_current",
];
const DROPPED_TYPES: &[&str] = &[
    "timestamptz",
    "timestamp",
    "interval",
    "float8",
    "txid_snapshot",
    "pg_snapshot",
];

fn render_db_error(prefix: &str, e: &DbError) -> String {
    let mut s = format!(
        "{prefix}: {} {} {}",
        e.severity(),
        e.code().code(),
        e.message()
    );
    if let Some(d) = e.detail() {
        s.push_str(&format!(" DETAIL: {}", mask_times(d)));
    }
    if let Some(h) = e.hint() {
        s.push_str(&format!(" HINT: {h}"));
    }
    s.push('\n');
    s
}

/// Replaces timestamps (`2024-01-02 03:04:05.678+00`) in a message by `<time>`: error
/// details print whole rows.
fn mask_times(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let shape = b"dddd-dd-dd dd:dd:dd";
    while i < b.len() {
        let fits = i + shape.len() <= b.len()
            && shape.iter().zip(&b[i..]).all(|(p, c)| match p {
                b'd' => c.is_ascii_digit(),
                p => p == c,
            });
        if fits {
            let mut j = i + shape.len();
            while j < b.len() && (b[j].is_ascii_digit() || matches!(b[j], b'.' | b'+' | b':')) {
                j += 1;
            }
            out.push_str("<time>");
            i = j;
        } else {
            let c = s[i..].chars().next().expect("inside the string");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn render_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => render_db_error("error", db),
        None => format!("client error: {e}\n"),
    }
}

impl Session {
    /// Runs one statement and renders its normalised outcome; also returns the raw first
    /// cell of the first row.
    async fn run(&self, sql: &str, norm: Norm) -> (String, Option<String>) {
        let mut out = String::new();
        let mut first = None;
        // Column names and types from the statement's metadata.
        let cols: Vec<(String, String)> = match self.client.prepare(sql).await {
            Ok(st) => st
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.type_().name().to_string()))
                .collect(),
            Err(e) => {
                out.push_str(&self.drain_notices());
                out.push_str(&render_error(&e));
                return (out, None);
            }
        };
        match self.client.simple_query(sql).await {
            Ok(msgs) => {
                let mut rows: Vec<Vec<Option<String>>> = Vec::new();
                let mut completes = Vec::new();
                for m in msgs {
                    match m {
                        SimpleQueryMessage::Row(r) => {
                            rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                        }
                        SimpleQueryMessage::CommandComplete(n) => completes.push(n),
                        _ => {}
                    }
                }
                out.push_str(&self.drain_notices());
                first = rows.first().and_then(|r| r.first().cloned()).flatten();
                if !cols.is_empty() {
                    let header: Vec<String> =
                        cols.iter().map(|(n, t)| format!("{n} {t}")).collect();
                    out.push_str(&format!("columns: {}\n", header.join(", ")));
                    for r in normalise_rows(&cols, rows, norm) {
                        out.push_str(&format!("row: {}\n", r.join(" | ")));
                    }
                } else {
                    out.push_str(&format!("ok {completes:?}\n"));
                }
            }
            Err(e) => {
                out.push_str(&self.drain_notices());
                out.push_str(&render_error(&e));
            }
        }
        (out, first)
    }

    fn drain_notices(&self) -> String {
        let mut n = self.notices.lock().unwrap();
        let s = n.iter().map(|e| render_db_error("notice", e)).collect();
        n.clear();
        s
    }
}

fn normalise_rows(
    cols: &[(String, String)],
    rows: Vec<Vec<Option<String>>>,
    norm: Norm,
) -> Vec<Vec<String>> {
    // Dense ranks of the txid columns within this result set.
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
                    let (name, ty) = cols
                        .get(i)
                        .map(|(n, t)| (n.as_str(), t.as_str()))
                        .unwrap_or(("?", "?"));
                    if norm.keep.contains(&name) {
                        v
                    } else if let Some(rank) = ranks.get(&i) {
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
// The script runner: records every step's outcome for one database.

struct Step {
    session: usize,
    sql: String,
    out: String,
    intended: Option<&'static str>,
}

struct Runner {
    sessions: Vec<Session>,
    steps: Vec<Step>,
    /// Values captured from earlier steps, substituted for `{name}` in later ones.
    vars: BTreeMap<&'static str, String>,
}

impl Runner {
    async fn new(c: &TestCluster, db: &str) -> Runner {
        let mut sessions = Vec::new();
        for _ in 0..2 {
            sessions.push(session(c, db).await);
        }
        Runner {
            sessions,
            steps: Vec::new(),
            vars: BTreeMap::new(),
        }
    }

    async fn step(
        &mut self,
        s: usize,
        sql: &str,
        norm: Norm,
        intended: Option<&'static str>,
    ) -> Option<String> {
        if let Some(n) = intended {
            check_intended(n);
        }
        let mut text = sql.to_string();
        for (k, v) in &self.vars {
            text = text.replace(&format!("{{{k}}}"), v);
        }
        let (out, first) = self.sessions[s].run(&text, norm).await;
        // The transcript shows the statement as written (with `{name}`), so that a
        // difference in a captured id shows at the step that produced it, once.
        self.steps.push(Step {
            session: s,
            sql: sql.to_string(),
            out,
            intended,
        });
        first
    }

    /// A compared step whose first value is kept as `{var}` for later steps (NULL when
    /// there is none).
    async fn cap(&mut self, var: &'static str, sql: &str) {
        let v = self.step(0, sql, Norm::default(), None).await;
        self.vars.insert(var, v.unwrap_or_else(|| "null".into()));
    }

    /// A step on session 0 that must give the same outcome on both databases.
    async fn q(&mut self, sql: &str) {
        self.step(0, sql, Norm::default(), None).await;
    }

    /// Same, on session `s`.
    async fn on(&mut self, s: usize, sql: &str) {
        self.step(s, sql, Norm::default(), None).await;
    }

    async fn qn(&mut self, sql: &str, norm: Norm) {
        self.step(0, sql, norm, None).await;
    }

    /// A step whose outcome must differ, for the named intended reason.
    async fn intended(&mut self, name: &'static str, sql: &str) {
        self.step(0, sql, Norm::default(), Some(name)).await;
    }

    /// One consumer round: take the next batch as `{b}`, read it, finish it.
    async fn round(&mut self, consumer: &str) {
        self.cap(
            "b",
            &format!("select pgq.next_batch('myqueue', '{consumer}')"),
        )
        .await;
        self.q("select * from pgq.get_batch_info({b})").await;
        self.q("select ev_id, ev_retry, ev_type, ev_data, ev_txid from pgq.get_batch_events({b})")
            .await;
        self.q("select pgq.finish_batch({b})").await;
    }

    /// Puts a consumer on the latest tick of myqueue.
    async fn catch_up(&mut self, consumer: &str) {
        self.q(&format!(
            "select pgq.register_consumer_at('myqueue', '{consumer}', \
             (select max(tick_id) from pgq.tick where tick_queue = 1))"
        ))
        .await;
    }
}

/// Compares two transcripts and returns every mismatch.
fn compare(ours: &Runner, real: &Runner) -> Vec<String> {
    let mut failures = Vec::new();
    assert_eq!(ours.steps.len(), real.steps.len(), "scripts diverged");
    for (i, (o, r)) in ours.steps.iter().zip(&real.steps).enumerate() {
        assert_eq!(o.sql, r.sql);
        let where_ = format!("step {i} [session {}]: {}", o.session, o.sql);
        match o.intended {
            Some(name) if !self_mode() => {
                if o.out == r.out {
                    failures.push(format!(
                        "{where_}\n  expected intended difference `{name}`, but both gave:\n{}",
                        indent(&o.out)
                    ));
                }
            }
            _ => {
                if o.out != r.out {
                    failures.push(format!(
                        "{where_}\n  real pgq 3.5:\n{}  ours:\n{}",
                        indent(&r.out),
                        indent(&o.out)
                    ));
                }
            }
        }
    }
    failures
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn report(what: &str, items: usize, failures: &[String]) {
    eprintln!(
        "{what}: {items} items compared, {} differences",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{what}: {} unexpected differences between ours and pgq 3.5:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn dump(r: &Runner) {
    if std::env::var_os("PGQD_DIFF_VERBOSE").is_some() {
        for (i, s) in r.steps.iter().enumerate() {
            eprintln!("{i} [{}] {}\n{}", s.session, s.sql, indent(&s.out));
        }
    }
}

// ------------------------------------------------------------------------------------------
// The behaviour script.

/// Queue administration, configuration and their errors.
async fn script_queue_admin(d: &mut Runner) {
    d.q("select pgq.version()").await;
    d.q("select pgq.seq_getval('pgq.batch_id_seq')").await;
    d.q(
        "select pgq.quote_fqname('Foo.bar baz'), pgq.quote_fqname('tbl'), \
         pgq.quote_fqname('a.b.c'), pgq.quote_fqname('\"x\".y'), pgq.quote_fqname(null)",
    )
    .await;
    d.q("select * from pgq.maint_tables_to_vacuum()").await;
    d.q("select * from pgq.maint_operations()").await;
    d.q("select pgq.maint_retry_events()").await;
    d.q("select pgq.maint_rotate_tables_step2()").await;
    d.q("select * from pgq.get_queue_info()").await;
    d.q("select * from pgq.get_consumer_info()").await;
    d.q("select pgq.ticker()").await;
    d.q("select pgq.upgrade_schema()").await;

    d.q("select pgq.create_queue(null)").await;
    d.q("select pgq.create_queue('myqueue')").await;
    d.q("select pgq.create_queue('myqueue')").await;
    d.q("select pgq.drop_queue('nosuch')").await;
    d.q("select pgq.drop_queue('nosuch', true)").await;
    d.q("select pgq.drop_queue(null)").await;
    d.q("select pgq.drop_queue(null, false)").await;
    d.q("select pgq.create_queue('tmpq')").await;
    d.q("select pgq.drop_queue('tmpq')").await;
    d.q("select pgq.create_queue('tmpq')").await;
    d.q(
        "select queue_id, queue_name, queue_data_pfx, queue_event_seq, queue_tick_seq \
         from pgq.queue order by queue_id",
    )
    .await;
    d.q("select pgq.register_consumer('tmpq', 'x')").await;
    d.q("select pgq.drop_queue('tmpq')").await;
    d.q("select pgq.drop_queue('tmpq', false)").await;
    d.q("select pgq.drop_queue('tmpq', true)").await;
    d.q("select count(*) from pgq.tick where tick_queue = 3")
        .await;
    d.q("select relname from pg_class where relname like 'event_3%' order by 1")
        .await;
    d.q("select co_name from pgq.consumer order by 1").await;

    for (p, v) in [
        ("ticker_max_count", "10"),
        ("ticker_max_lag", "0"),
        ("ticker_idle_period", "0"),
        ("ticker_paused", "false"),
        ("rotation_period", "1 hour"),
        ("external_ticker", "false"),
        ("queue_ticker_max_count", "500"),
        ("bogus", "1"),
        ("ntables", "5"),
        ("per_tx_limit", "5"),
        ("disable_insert", "true"),
        ("extra_maint", "{a}"),
        ("ticker_max_count", "abc"),
        ("ticker_max_lag", "nonsense"),
        ("ticker_paused", "maybe"),
        ("Ticker_Max_Count", "7"),
    ] {
        d.q(&format!(
            "select pgq.set_queue_config('myqueue', '{p}', '{v}')"
        ))
        .await;
    }
    d.q("select pgq.set_queue_config('myqueue', 'ticker_max_count', null)")
        .await;
    d.q("select pgq.set_queue_config('nosuch', 'ticker_max_count', '1')")
        .await;
    d.q("select pgq.set_queue_config(null, 'ticker_max_count', '1')")
        .await;
    d.q("select pgq.set_queue_config('myqueue', null, '1')")
        .await;
    d.qn(
        "select queue_name, queue_ntables, queue_cur_table, queue_rotation_period, \
         queue_switch_time, queue_external_ticker, queue_disable_insert, queue_ticker_paused, \
         queue_ticker_max_count, queue_ticker_max_lag, queue_ticker_idle_period, \
         queue_per_tx_limit, queue_data_pfx, queue_event_seq, queue_tick_seq, \
         queue_extra_maint, queue_switch_step1 = queue_switch_step2 as same_step, \
         queue_switch_step2 is null as rotating from pgq.queue order by queue_id",
        CONFIG_INTERVALS,
    )
    .await;
    d.qn("select * from pgq.get_queue_info()", CONFIG_INTERVALS)
        .await;
    d.qn(
        "select * from pgq.get_queue_info('myqueue')",
        CONFIG_INTERVALS,
    )
    .await;
    d.qn(
        "select * from pgq.get_queue_info('nosuch')",
        CONFIG_INTERVALS,
    )
    .await;
    d.qn("select * from pgq.get_queue_info(null)", CONFIG_INTERVALS)
        .await;
    // The queue used below ticks on every ticker call.
    d.q("select pgq.set_queue_config('myqueue', 'ticker_max_count', '500')")
        .await;
    d.q("select pgq.tune_storage('myqueue'), pgq.tune_storage('nosuch')")
        .await;
    d.q("select pgq.grant_perms('myqueue')").await;
    d.q("select pgq.grant_perms('nosuch')").await;
    d.q(
        "select relname, reloptions from pg_class where relname like 'event_1_%' \
         and relkind = 'r' order by 1",
    )
    .await;
}

/// Producing events: both insert_event forms, insert_event_raw, limits, disabled queues.
async fn script_produce(d: &mut Runner) {
    d.q("select pgq.insert_event('myqueue', 'ev1', 'data1')")
        .await;
    d.q("select pgq.insert_event('myqueue', 'ev2', 'data2', 'e1', 'e2', 'e3', 'e4')")
        .await;
    d.q("begin").await;
    d.q("select pgq.insert_event('myqueue', 'ev3', 'data3')")
        .await;
    d.q("select pgq.insert_event('myqueue', 'ev4', null, null, 'x', null, null)")
        .await;
    d.q("commit").await;
    d.q("begin").await;
    d.q("select pgq.insert_event('myqueue', 'rolled', 'back')")
        .await;
    d.q("rollback").await;
    d.q("select pgq.insert_event('nosuch', 'x', 'y')").await;
    d.q("select pgq.insert_event(null, 'x', 'y')").await;
    d.q("select pgq.insert_event(null, 'x', 'y', null, null, null, null)")
        .await;
    d.q(
        "select pgq.insert_event_raw('myqueue', 100, '2020-01-01 00:00:00+00', null, null, \
         'raw', 'rawdata', null, null, null, null)",
    )
    .await;
    d.q(
        "select pgq.insert_event_raw('myqueue', null, null, null, null, \
         'raw2', null, null, null, null, null)",
    )
    .await;
    d.q("select pgq.insert_event_raw(null, null, null, null, null, \
         'raw', null, null, null, null, null)")
        .await;
    d.q("select pgq.current_event_table('myqueue')").await;
    d.q("select pgq.current_event_table('nosuch')").await;
    d.q("select pgq.seq_getval('pgq.event_1_id_seq')").await;

    // per_tx_limit (enforced by the C insert path, and by ours).
    d.q("update pgq.queue set queue_per_tx_limit = 2 where queue_name = 'myqueue'")
        .await;
    d.q("begin").await;
    d.q("select pgq.insert_event('myqueue', 'lim', '1')").await;
    d.q("select pgq.insert_event('myqueue', 'lim', '2')").await;
    d.q("select pgq.insert_event('myqueue', 'lim', '3')").await;
    d.q("rollback").await;
    d.q("begin").await;
    d.q("select pgq.insert_event('myqueue', 'lim', '4')").await;
    d.q("savepoint s").await;
    d.q("select pgq.insert_event('myqueue', 'lim', '5')").await;
    d.q("rollback to savepoint s").await;
    d.intended(
        "per_tx_limit_savepoint",
        "select pgq.insert_event('myqueue', 'lim', '6')",
    )
    .await;
    d.q("rollback").await;
    d.q("update pgq.queue set queue_per_tx_limit = 0 where queue_name = 'myqueue'")
        .await;
    d.q("select pgq.insert_event('myqueue', 'lim', '7')").await;
    d.q("update pgq.queue set queue_per_tx_limit = null where queue_name = 'myqueue'")
        .await;

    // disabled queue
    d.q("update pgq.queue set queue_disable_insert = true where queue_name = 'myqueue'")
        .await;
    d.q("select pgq.insert_event('myqueue', 'dis', '1')").await;
    d.q("select pgq.current_event_table('myqueue')").await;
    d.q("set session_replication_role = 'local'").await;
    d.q("select pgq.insert_event('myqueue', 'dis', '2')").await;
    d.q("set session_replication_role = 'replica'").await;
    d.q("select pgq.insert_event('myqueue', 'dis', '3')").await;
    d.q("select pgq.current_event_table('myqueue')").await;
    d.q("reset session_replication_role").await;
    d.q("update pgq.queue set queue_disable_insert = false where queue_name = 'myqueue'")
        .await;
    d.q("select pgq.seq_getval('pgq.event_1_id_seq')").await;
}

/// Registration, ticks, batches, cursors, finish.
async fn script_consume(d: &mut Runner) {
    d.q("select pgq.register_consumer('nosuch', 'c1')").await;
    d.q("select pgq.register_consumer('myqueue', 'c1')").await;
    d.q("select pgq.register_consumer('myqueue', 'c1')").await;
    d.q("select pgq.register_consumer('myqueue', null)").await;
    d.q("select pgq.register_consumer_at('myqueue', 'c2', 999)")
        .await;
    d.q("select pgq.register_consumer_at('myqueue', 'c2', 1)")
        .await;
    d.q("select pgq.register_consumer_at('nosuch', 'c2', 1)")
        .await;
    d.q("select pgq.register_consumer_at('myqueue', 'c3', null)")
        .await;
    d.q("select pgq.unregister_consumer('myqueue', 'c3')").await;
    d.q("select pgq.unregister_consumer('myqueue', 'nobody')")
        .await;
    d.q("select pgq.unregister_consumer('nosuch', 'c1')").await;
    d.q("select pgq.unregister_consumer(null, null)").await;
    d.q(
        "select s.sub_id, s.sub_queue, c.co_name, s.sub_last_tick, s.sub_batch, \
         s.sub_next_tick from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer \
         order by s.sub_id",
    )
    .await;
    // Both consumers sit on tick 1, made before the first event (pending_events compares
    // tick 1 with itself: equal).
    d.q("select * from pgq.get_consumer_info()").await;
    d.intended(
        "first_event_counted",
        "select tick_queue, tick_id, tick_event_seq from pgq.tick order by 1, 2",
    )
    .await;
    d.q("select * from pgq.get_consumer_info('nosuch')").await;
    d.q("select * from pgq.get_consumer_info('myqueue', 'nobody')")
        .await;
    d.q("select pgq.next_batch('myqueue', 'c1')").await;
    d.q("select pgq.next_batch('myqueue', 'nobody')").await;
    d.q("select pgq.next_batch('nosuch', 'c1')").await;
    d.q("select pgq.next_batch(null, null)").await;
    d.q("select * from pgq.next_batch_info('myqueue', 'c1')")
        .await;
    d.q("select pgq.ticker('nosuch')").await;
    d.q("select pgq.ticker('myqueue')").await;
    d.q("select pgq.ticker('myqueue')").await;
    d.q("select pgq.ticker()").await;
    d.q("select tick_queue, tick_id from pgq.tick order by 1, 2")
        .await;
    // The first batch: ticks 1 -> 2, with every event inserted above.
    d.intended(
        "first_event_counted",
        "select * from pgq.next_batch_info('myqueue', 'c1')",
    )
    .await;
    d.cap("b1", "select pgq.next_batch('myqueue', 'c1')").await;
    d.intended(
        "first_event_counted",
        "select * from pgq.get_batch_info({b1})",
    )
    .await;
    d.q("select * from pgq.get_batch_info(999)").await;
    d.q("select * from pgq.get_batch_events({b1})").await;
    d.q("select * from pgq.get_batch_events(999)").await;
    d.q("select * from pgq.batch_event_tables({b1})").await;
    d.q("select * from pgq.batch_event_tables(999)").await;
    d.q("select right(pgq.batch_event_sql({b1}), 11)").await;
    d.q("select pgq.batch_event_sql(999)").await;
    d.q(
        "select queue_name, consumer_name, last_tick, current_batch, next_tick \
         from pgq.get_consumer_info('myqueue', 'c1')",
    )
    .await;
    d.q("begin").await;
    d.q("select * from pgq.get_batch_cursor({b1}, 'cur', 2)")
        .await;
    d.q("fetch all from cur").await;
    d.q("close cur").await;
    d.q("select * from pgq.get_batch_cursor({b1}, 'cur', 10, 'ev_id = 1')")
        .await;
    d.q("fetch all from cur").await;
    d.q("close cur").await;
    d.q("select * from pgq.get_batch_cursor({b1}, 'Mixed Case', 1, 'ev_type like ''ev%''')")
        .await;
    d.q("fetch 2 from \"Mixed Case\"").await;
    d.q("fetch all from \"Mixed Case\"").await;
    d.q("close \"Mixed Case\"").await;
    d.q("select * from pgq.get_batch_cursor({b1}, 'c0', 0)")
        .await;
    d.q("fetch all from c0").await;
    d.q("select * from pgq.get_batch_cursor({b1}, 'c00', -1, 'true')")
        .await;
    d.q("fetch all from c00").await;
    d.q("select * from pgq.get_batch_cursor({b1}, null, 2)")
        .await;
    d.q("select * from pgq.get_batch_cursor({b1}, 'cnull', null, null)")
        .await;
    d.q("select * from pgq.get_batch_cursor({b1}, 'cur', 100, null)")
        .await;
    d.q("commit").await;
    d.q("select * from pgq.get_batch_cursor({b1}, 'outside', 2)")
        .await;
    d.q("begin").await;
    d.q("select * from pgq.get_batch_cursor({b1}, 'bad', 1, 'bogus syntax (')")
        .await;
    d.q("rollback").await;
    d.q("begin").await;
    d.q("select * from pgq.get_batch_cursor(999, 'nob', 1)")
        .await;
    d.q("rollback").await;
    d.q("select count(*) from pgq.get_batch_events({b1}) where ev_data is null")
        .await;
    d.q("select pgq.finish_batch({b1})").await;
    d.q("select pgq.finish_batch({b1})").await;
    d.q("select pgq.finish_batch(null)").await;
    d.q("select * from pgq.get_consumer_info('myqueue', 'c1')")
        .await;
    // c1 is on tick 2 (after the first events): from here on pending counts agree.
    d.q("select pgq.insert_event('myqueue', 'ev5', 'data5')")
        .await;
    d.qn(
        "select * from pgq.get_queue_info('myqueue')",
        CONFIG_INTERVALS,
    )
    .await;
    d.q("select pgq.ticker('myqueue')").await;
    d.q("select * from pgq.get_consumer_info('myqueue', 'c1')")
        .await;
    for _ in 0..4 {
        d.round("c1").await;
    }

    // next_batch_custom on c2 (first put after the first event).
    d.q("select pgq.register_consumer_at('myqueue', 'c2', 2)")
        .await;
    d.q("select pgq.insert_event('myqueue', 'ev6', 'data6')")
        .await;
    d.q("select pgq.ticker('myqueue')").await;
    d.q("select pgq.insert_event('myqueue', 'ev7', 'data7')")
        .await;
    d.q("select pgq.ticker('myqueue')").await;
    d.q("select * from pgq.get_consumer_info('myqueue', 'c2')")
        .await;
    d.q("select * from pgq.next_batch_custom('myqueue', 'c2', '1 hour', null, null)")
        .await;
    d.q("select * from pgq.next_batch_custom('myqueue', 'c2', null, 10000, null)")
        .await;
    d.q("select * from pgq.next_batch_custom('myqueue', 'c2', null, null, '10 minutes')")
        .await;
    d.q("select * from pgq.next_batch_custom('myqueue', 'c2', null, 2, null)")
        .await;
    d.q("select * from pgq.next_batch_custom('myqueue', 'c2', null, 1, null)")
        .await;
    d.q("select * from pgq.next_batch_custom('myqueue', 'c2', '1 hour', 1, null)")
        .await;
    d.q("select * from pgq.next_batch_custom('myqueue', 'nobody', null, 1, null)")
        .await;
    d.cap("b", "select pgq.next_batch('myqueue', 'c2')").await;
    d.q("select * from pgq.get_batch_info({b})").await;
    d.q("select * from pgq.get_batch_events({b})").await;
    d.q("select pgq.finish_batch({b})").await;
    d.q("select * from pgq.next_batch_custom('myqueue', 'c2', '0', null, null)")
        .await;
    d.q("select * from pgq.find_tick_helper(1, 2, now(), 1, 1, null)")
        .await;
    d.q("select * from pgq.find_tick_helper(1, 99, now(), 1, 1, null)")
        .await;
    d.q("select * from pgq.find_tick_helper(1, 2, now() - interval '1 day', 1, null, '1 hour')")
        .await;
    d.q("select * from pgq.find_tick_helper(1, 5, now(), 18, 1, '1 hour')")
        .await;
    d.q("select * from pgq.next_batch_info('myqueue', 'c1')")
        .await;
    d.round("c1").await;
}

/// Retries: event_retry (both forms), batch_retry, event_retry_raw, maint_retry_events.
async fn script_retry(d: &mut Runner) {
    d.catch_up("c1").await;
    d.catch_up("c2").await;
    d.cap("e1", "select pgq.insert_event('myqueue', 'r1', 'a')")
        .await;
    d.cap("e2", "select pgq.insert_event('myqueue', 'r2', 'b')")
        .await;
    d.cap("e3", "select pgq.insert_event('myqueue', 'r3', 'c')")
        .await;
    d.q("select pgq.ticker('myqueue')").await;
    d.cap("b1", "select pgq.next_batch('myqueue', 'c1')").await;
    d.cap("b2", "select pgq.next_batch('myqueue', 'c2')").await;
    d.q("select * from pgq.get_batch_events({b1})").await;
    d.q("select pgq.event_retry({b1}, {e1}, 0)").await;
    d.q("select pgq.event_retry({b1}, {e1}, 0)").await;
    d.q("select pgq.event_retry({b1}, {e2}, now() + interval '1 hour')")
        .await;
    d.q("select pgq.event_retry({b1}, 99999, 0)").await;
    d.q("select pgq.event_retry(99999, {e1}, 0)").await;
    d.q("select pgq.event_retry({b1}, {e1}, null::int4)").await;
    d.q("select pgq.batch_retry({b1}, 0)").await;
    d.q("select pgq.batch_retry({b1}, 0)").await;
    d.q("select pgq.batch_retry(99999, 0)").await;
    d.q("select pgq.batch_retry({b2}, 3600)").await;
    d.q(
        "select pgq.event_retry_raw('myqueue', 'c2', now(), null, now(), 5, \
         'rt', 'rd', 'x1', null, null, 'x4')",
    )
    .await;
    d.q(
        "select pgq.event_retry_raw('myqueue', 'c2', now(), 500, now(), null, \
         'rt2', null, null, null, null, null)",
    )
    .await;
    d.q(
        "select pgq.event_retry_raw('myqueue', 'c2', now(), 500, now(), null, \
         'dup', null, null, null, null, null)",
    )
    .await;
    d.q(
        "select pgq.event_retry_raw('myqueue', 'nobody', now(), null, now(), 5, \
         'rt', 'rd', null, null, null, null)",
    )
    .await;
    d.q(
        "select pgq.event_retry_raw('nosuch', 'c2', now(), null, now(), 5, \
         'rt', 'rd', null, null, null, null)",
    )
    .await;
    d.q(
        "select ev_queue, ev_owner, ev_id, ev_txid, ev_retry, ev_type, ev_data, ev_extra1, \
         ev_extra2, ev_extra3, ev_extra4, ev_retry_after > now() + interval '10 minutes' as later \
         from pgq.retry_queue order by ev_owner, ev_id",
    )
    .await;
    d.q("select pgq.finish_batch({b1})").await;
    d.q("select pgq.finish_batch({b2})").await;
    d.q("select pgq.maint_retry_events()").await;
    d.q("select pgq.maint_retry_events()").await;
    d.q("update pgq.retry_queue set ev_retry_after = now() - interval '1 second'")
        .await;
    d.q("select * from pgq.maint_operations()").await;
    d.q("select pgq.maint_retry_events()").await;
    d.q("select pgq.maint_retry_events()").await;
    d.q("select count(*) from pgq.retry_queue").await;
    d.q(
        "select ev_id, ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra4, ev_txid \
         from pgq.event_1 where ev_owner is not null order by ev_owner, ev_id",
    )
    .await;
    d.q("select pgq.ticker('myqueue')").await;
    // Retry a retried event: ev_retry counts up, ev_id stays.
    d.cap("b", "select pgq.next_batch('myqueue', 'c1')").await;
    d.q("select * from pgq.get_batch_events({b})").await;
    d.q("select pgq.event_retry({b}, {e3}, 0)").await;
    d.q("select pgq.finish_batch({b})").await;
    d.round("c2").await;
    for _ in 0..2 {
        d.q("update pgq.retry_queue set ev_retry_after = now() - interval '1 second'")
            .await;
        d.q("select pgq.maint_retry_events()").await;
        d.q("select pgq.ticker('myqueue')").await;
        d.cap("b", "select pgq.next_batch('myqueue', 'c1')").await;
        d.q("select * from pgq.get_batch_events({b})").await;
        d.q("select pgq.event_retry({b}, {e3}, 0)").await;
        d.q("select pgq.finish_batch({b})").await;
        d.round("c2").await;
    }
    d.q("select ev_owner, ev_id, ev_retry, ev_type from pgq.retry_queue")
        .await;
    d.q("delete from pgq.retry_queue").await;
    d.q("select pgq.ticker('myqueue')").await;
    d.round("c1").await;
    d.round("c2").await;
}

/// Two sessions: a transaction open across ticks, and the long-transaction IN-list path.
async fn script_sessions(d: &mut Runner) {
    d.catch_up("c1").await;
    d.catch_up("c2").await;
    d.on(1, "begin").await;
    d.on(1, "select pgq.insert_event('myqueue', 'long', 'tx')")
        .await;
    d.q("select pgq.insert_event('myqueue', 'short', 'tx')")
        .await;
    d.q("select pgq.ticker('myqueue')").await;
    d.round("c1").await;
    // Push the txid counter more than 100 past the open transaction.
    d.q("do $$ begin for i in 1..150 loop perform txid_current(); commit; end loop; end $$")
        .await;
    d.q("select pgq.ticker('myqueue')").await;
    d.round("c1").await;
    d.on(1, "commit").await;
    d.q("select pgq.insert_event('myqueue', 'after', 'commit')")
        .await;
    d.q("select pgq.ticker('myqueue')").await;
    d.cap("b", "select pgq.next_batch('myqueue', 'c1')").await;
    d.q("select position(' in (' in pgq.batch_event_sql({b})) > 0 as has_in_list")
        .await;
    d.q("select ev_id, ev_type, ev_data, ev_txid from pgq.get_batch_events({b})")
        .await;
    d.q("begin").await;
    d.q("select ev_id, ev_type from pgq.get_batch_cursor({b}, 'lc', 1, 'ev_type <> ''x''')")
        .await;
    d.q("fetch all from lc").await;
    d.q("commit").await;
    d.q("select pgq.finish_batch({b})").await;
    // c2 gets the whole range in one batch, the long transaction inside it.
    d.q("select * from pgq.next_batch_custom('myqueue', 'c2', null, 1000, null)")
        .await;
    d.q("select * from pgq.next_batch_custom('myqueue', 'c2', null, 2, null)")
        .await;
    d.cap("b", "select pgq.next_batch('myqueue', 'c2')").await;
    d.q("select ev_id, ev_type, ev_retry, ev_txid from pgq.get_batch_events({b})")
        .await;
    d.q("select pgq.finish_batch({b})").await;
}

/// Rotation through all three tables, tick cleanup, extra maintenance, vacuum list.
async fn script_rotation(d: &mut Runner) {
    d.catch_up("c1").await;
    d.catch_up("c2").await;
    d.q("select * from pgq.maint_operations()").await;
    d.q("select pgq.set_queue_config('myqueue', 'rotation_period', '0')")
        .await;
    d.q("select * from pgq.maint_operations()").await;
    d.q("select pgq.maint_rotate_tables_step1('nosuch')").await;
    d.q("select pgq.maint_rotate_tables_step1(null)").await;
    // Both consumers are far past the creation txid: rotation 0 -> 1.
    d.q("select pgq.maint_rotate_tables_step1('myqueue')").await;
    d.q(
        "select queue_cur_table, queue_switch_step2 is null as rotating from pgq.queue \
         where queue_name = 'myqueue'",
    )
    .await;
    d.q("select * from pgq.maint_operations()").await;
    d.q("select pgq.maint_rotate_tables_step1('myqueue')").await;
    d.q("select pgq.insert_event('myqueue', 'mid', 'rotation')")
        .await;
    d.q("select pgq.current_event_table('myqueue')").await;
    d.q("select pgq.maint_rotate_tables_step2()").await;
    d.q(
        "select queue_cur_table, queue_switch_step2 is null as rotating, \
         queue_switch_step2 > queue_switch_step1 as ordered from pgq.queue \
         where queue_name = 'myqueue'",
    )
    .await;
    d.q("select pgq.current_event_table('myqueue')").await;
    d.q("select pgq.insert_event('myqueue', 'rot', '1')").await;
    d.q("select pgq.ticker('myqueue')").await;
    d.cap("b", "select pgq.next_batch('myqueue', 'c1')").await;
    d.q("select * from pgq.batch_event_tables({b})").await;
    d.q("select ev_id, ev_type from pgq.get_batch_events({b})")
        .await;
    d.q("select pgq.finish_batch({b})").await;
    // c2 stays behind: rotation must wait for it.
    d.q("select pgq.maint_rotate_tables_step1('myqueue')").await;
    d.q("select queue_cur_table from pgq.queue where queue_name = 'myqueue'")
        .await;
    d.cap("b", "select pgq.next_batch('myqueue', 'c2')").await;
    d.q("select * from pgq.batch_event_tables({b})").await;
    d.q("select ev_id, ev_type from pgq.get_batch_events({b})")
        .await;
    d.q("select pgq.finish_batch({b})").await;
    d.q("select pgq.maint_rotate_tables_step1('myqueue')").await;
    d.q("select queue_cur_table from pgq.queue where queue_name = 'myqueue'")
        .await;
    d.q("select pgq.ticker('myqueue')").await;
    d.round("c1").await;
    d.round("c2").await;
    d.q("select pgq.maint_rotate_tables_step1('myqueue')").await;
    d.q("select pgq.maint_rotate_tables_step2()").await;
    d.q("select queue_cur_table from pgq.queue where queue_name = 'myqueue'")
        .await;
    d.q("select count(*), min(tick_id) > 1 from pgq.tick where tick_queue = 1")
        .await;
    for i in 0..2 {
        d.q(&format!(
            "select pgq.insert_event('myqueue', 'rot', 'b{i}')"
        ))
        .await;
        d.q("select pgq.ticker('myqueue')").await;
        d.round("c1").await;
        d.round("c2").await;
        d.q("select pgq.maint_rotate_tables_step1('myqueue')").await;
        d.q("select pgq.maint_rotate_tables_step2()").await;
        d.q("select queue_cur_table from pgq.queue where queue_name = 'myqueue'")
            .await;
        d.q("select tick_id from pgq.tick where tick_queue = 1 order by 1")
            .await;
    }
    d.q("select (select count(*) from pgq.event_1_0) as t0, \
         (select count(*) from pgq.event_1_1) as t1, (select count(*) from pgq.event_1_2) as t2")
        .await;
    d.q("update pgq.queue set queue_extra_maint = '{baz,foo.bar}' where queue_name = 'myqueue'")
        .await;
    d.q("select * from pgq.maint_operations()").await;
    d.q("update pgq.queue set queue_extra_maint = null, queue_rotation_period = '1 hour'")
        .await;
    d.q("select * from pgq.maint_operations()").await;
    d.q("select * from pgq.maint_tables_to_vacuum()").await;
}

/// Sequences, force_tick, external ticker, paused queues, pgq.ticker() over several queues.
async fn script_ticker(d: &mut Runner) {
    d.q("select pgq.seq_getval('pgq.event_1_tick_seq')").await;
    d.q("select pgq.seq_getval('nosuch_seq')").await;
    d.q("select pgq.seq_getval(null)").await;
    d.q("create sequence public.myseq").await;
    d.q("select pgq.seq_getval('myseq')").await;
    d.q("select pgq.seq_setval('myseq', 10)").await;
    d.q("select pgq.seq_setval('public.myseq', 5)").await;
    d.q("select pgq.seq_setval('myseq', 15), pgq.seq_getval('myseq')")
        .await;
    d.q("select pgq.seq_setval('myseq', null)").await;
    d.q("select nextval('pgq.event_1_id_seq')").await;
    d.q("select pgq.force_tick('myqueue')").await;
    d.q("select nextval('pgq.event_1_id_seq')").await;
    d.q("select pgq.force_tick('nosuch')").await;
    d.q("select pgq.ticker('myqueue')").await;
    d.q("select pgq.force_tick('myqueue')").await;

    // The first event of a fresh queue: pgq does not count it (intended difference 1).
    d.q("select pgq.create_queue('fresh')").await;
    d.q("select pgq.set_queue_config('fresh', 'ticker_max_lag', '1 hour')")
        .await;
    d.q("select pgq.set_queue_config('fresh', 'ticker_idle_period', '1 hour')")
        .await;
    d.q("select pgq.set_queue_config('fresh', 'ticker_max_count', '1')")
        .await;
    d.q("select pgq.ticker('fresh')").await;
    d.q("select pgq.ticker('fresh')").await;
    d.q("select pgq.insert_event('fresh', 'a', '1')").await;
    d.intended(
        "first_event_counted",
        "select queue_name, ev_new from pgq.get_queue_info('fresh')",
    )
    .await;
    d.intended("first_event_counted", "select pgq.ticker('fresh')")
        .await;
    d.q("select pgq.drop_queue('fresh')").await;

    // A queue with a long lag and idle period ticks only on count (its first event is
    // ticked by max_lag 0, so both count alike from there on).
    d.q("select pgq.create_queue('slowq')").await;
    d.q("select pgq.set_queue_config('slowq', 'ticker_max_lag', '0')")
        .await;
    d.q("select pgq.insert_event('slowq', 'a', '1')").await;
    d.q("select pgq.ticker('slowq')").await;
    d.q("select pgq.set_queue_config('slowq', 'ticker_max_lag', '1 hour')")
        .await;
    d.q("select pgq.set_queue_config('slowq', 'ticker_idle_period', '1 hour')")
        .await;
    d.q("select pgq.set_queue_config('slowq', 'ticker_max_count', '2')")
        .await;
    d.q("select pgq.ticker('slowq')").await;
    d.q("select pgq.insert_event('slowq', 'b', '2')").await;
    d.q("select pgq.ticker('slowq')").await;
    d.qn(
        "select * from pgq.get_queue_info('slowq')",
        CONFIG_INTERVALS,
    )
    .await;
    d.q("select pgq.insert_event('slowq', 'c', '3')").await;
    d.q("select pgq.ticker('slowq')").await;
    d.q("select pgq.insert_event('slowq', 'd', '4')").await;
    d.q("select pgq.insert_event('slowq', 'e', '5')").await;
    d.q("select pgq.insert_event('slowq', 'f', '6')").await;
    d.q("select pgq.ticker('slowq')").await;
    d.q("select pgq.ticker('slowq')").await;
    d.q("select tick_id, tick_event_seq from pgq.tick \
         where tick_queue = (select queue_id from pgq.queue where queue_name = 'slowq') \
         and tick_id > 1 order by 1")
        .await;

    // paused and external queues
    d.q("select pgq.set_queue_config('slowq', 'ticker_paused', 'true')")
        .await;
    d.q("select pgq.ticker('slowq')").await;
    d.q("select pgq.force_tick('slowq')").await;
    d.q("select pgq.ticker()").await;
    d.q("select pgq.create_queue('branch')").await;
    d.q("select pgq.set_queue_config('branch', 'external_ticker', 'true')")
        .await;
    d.q("select pgq.ticker('branch')").await;
    d.q("select pgq.ticker('branch', 10, '2020-01-01 00:00:00+00', 50)")
        .await;
    d.q("select pgq.ticker('branch', 11, now(), 40)").await;
    d.q("select pgq.ticker('branch', 11, now(), 40)").await;
    d.q("select pgq.ticker('myqueue', 100, now(), 40)").await;
    d.q("select pgq.ticker('nosuch', 100, now(), 40)").await;
    d.q("select tick_id, tick_event_seq, tick_time from pgq.tick \
         where tick_queue = (select queue_id from pgq.queue where queue_name = 'branch') \
         and tick_id > 1 order by 1")
        .await;
    d.intended(
        "first_event_counted",
        "select tick_id, tick_event_seq from pgq.tick \
         where tick_queue = (select queue_id from pgq.queue where queue_name = 'branch') \
         and tick_id = 1",
    )
    .await;
    d.q(
        "select pgq.seq_getval(queue_tick_seq), pgq.seq_getval(queue_event_seq) \
         from pgq.queue where queue_name = 'branch'",
    )
    .await;
    d.q("select pgq.force_tick('branch')").await;
    d.q("select pgq.register_consumer('branch', 'bc')").await;
    d.q("select pgq.insert_event('branch', 'x', 'y')").await;
    d.q("select pgq.ticker('branch', 12, now(), 60)").await;
    d.cap("b", "select pgq.next_batch('branch', 'bc')").await;
    d.q("select * from pgq.next_batch_info('branch', 'bc')")
        .await;
    d.q("select ev_id, ev_type, ev_data from pgq.get_batch_events({b})")
        .await;
    d.q("select pgq.ticker()").await;
    d.qn("select * from pgq.get_queue_info()", CONFIG_INTERVALS)
        .await;
    d.q(
        "select queue_name, consumer_name, last_tick, current_batch, next_tick, \
         pending_events from pgq.get_consumer_info()",
    )
    .await;
    d.q("select pgq.drop_queue('myqueue')").await;
    d.q("select pgq.unregister_consumer('myqueue', 'c2')").await;
    d.q("select pgq.unregister_consumer('myqueue', 'c2')").await;
    d.q("select count(*) from pgq.retry_queue").await;
    d.q("select pgq.drop_queue('myqueue', true)").await;
    d.q("select queue_name from pgq.queue order by 1").await;
    d.q("select co_name from pgq.consumer order by 1").await;
    d.q("select pgq.drop_queue('branch', true), pgq.drop_queue('slowq')")
        .await;
    d.q("select count(*) from pgq.tick").await;
}

async fn run_script(c: &TestCluster, db: &str) -> Runner {
    let mut d = Runner::new(c, db).await;
    script_queue_admin(&mut d).await;
    script_produce(&mut d).await;
    script_consume(&mut d).await;
    script_retry(&mut d).await;
    script_sessions(&mut d).await;
    script_rotation(&mut d).await;
    script_ticker(&mut d).await;
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_results_as_pgq() {
    let c = cluster();
    make_dbs(&c);
    let ours = run_script(&c, "ours").await;
    let real = run_script(&c, "real").await;
    dump(&ours);
    if std::env::var_os("PGQD_DIFF_VERBOSE").is_some() {
        eprintln!("=== real");
        dump(&real);
    }
    let mut failures = compare(&ours, &real);
    // Every intended difference the script names is really used by the script.
    let used: BTreeSet<&str> = ours.steps.iter().filter_map(|s| s.intended).collect();
    if !used.contains("first_event_counted") {
        failures.push("first_event_counted is not exercised".into());
    }
    // The intended difference itself, spelled out on our side.
    if !self_mode() {
        let idx = ours
            .steps
            .iter()
            .position(|s| s.sql == "select pgq.ticker('fresh')" && s.intended.is_some())
            .expect("fresh ticker step");
        let (o, r) = (&ours.steps[idx].out, &real.steps[idx].out);
        if o.contains("row: NULL") || !r.contains("row: NULL") {
            failures.push(format!(
                "first event of fresh: ours must tick and pgq must not; ours:\n{o}real:\n{r}"
            ));
        }
    }
    report("behaviour script", ours.steps.len(), &failures);
}

// ------------------------------------------------------------------------------------------
// The catalog surface.

/// Rows of `sql` keyed by the first `key` columns, the rest joined.
async fn keyed(client: &Client, sql: &str, key: usize) -> BTreeMap<String, Vec<(String, String)>> {
    let st = client.prepare(sql).await.expect("prepare catalog query");
    let names: Vec<String> = st.columns().iter().map(|c| c.name().to_string()).collect();
    let mut out = BTreeMap::new();
    for m in client.simple_query(sql).await.expect("catalog query") {
        if let SimpleQueryMessage::Row(r) = m {
            let vals: Vec<String> = (0..r.len())
                .map(|i| r.get(i).unwrap_or("NULL").to_string())
                .collect();
            let k = vals[..key].join(" ");
            let rest = names[key..]
                .iter()
                .cloned()
                .zip(vals[key..].iter().cloned())
                .collect();
            out.insert(k, rest);
        }
    }
    out
}

const FUNCTIONS_SQL: &str = "select p.proname, pg_get_function_identity_arguments(p.oid) as args, \
     coalesce(array_to_string(p.proargnames, ',', '-'), '') as argnames, \
     coalesce(array_to_string(p.proargmodes, ','), '') as argmodes, \
     pg_get_function_result(p.oid) as result, p.proisstrict as strict, \
     p.prosecdef as security_definer, p.provolatile as volatility, p.proretset as retset, \
     p.pronargdefaults as ndefaults, p.prokind as kind, \
     coalesce(array_to_string(p.proconfig, ';'), '') as config \
     from pg_proc p where p.pronamespace = 'pgq'::regnamespace";

const GRANTS_SQL: &str = "select p.proname, pg_get_function_identity_arguments(p.oid) as args, \
     has_function_privilege('pgq_reader', p.oid, 'execute') as reader, \
     has_function_privilege('pgq_writer', p.oid, 'execute') as writer, \
     has_function_privilege('pgq_admin', p.oid, 'execute') as admin, \
     has_function_privilege('public', p.oid, 'execute') as public \
     from pg_proc p where p.pronamespace = 'pgq'::regnamespace";

const RELATIONS_SQL: &str = "select c.relname, c.relkind, \
     coalesce(array_to_string(c.reloptions, ','), '') as reloptions, \
     c.relpersistence, \
     coalesce((select string_agg(i.inhparent::regclass::text, ',' order by i.inhseqno) \
       from pg_inherits i where i.inhrelid = c.oid), '') as inherits \
     from pg_class c where c.relnamespace = 'pgq'::regnamespace";

const COLUMNS_SQL: &str = "select c.relname, a.attnum, a.attname, \
     format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as not_null, \
     coalesce(pg_get_expr(d.adbin, d.adrelid), '') as default, a.attislocal as local, \
     a.attinhcount as inhcount \
     from pg_class c join pg_attribute a on a.attrelid = c.oid \
     left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum \
     where c.relnamespace = 'pgq'::regnamespace and a.attnum > 0 and not a.attisdropped \
     and c.relkind in ('r', 'p', 'v')";

const CONSTRAINTS_SQL: &str = "select c.relname, k.conname, k.contype, \
     pg_get_constraintdef(k.oid) as def, k.condeferrable, k.connoinherit \
     from pg_constraint k join pg_class c on c.oid = k.conrelid \
     where c.relnamespace = 'pgq'::regnamespace";

const INDEXES_SQL: &str = "select i.relname as index, pg_get_indexdef(i.oid) as def \
     from pg_index x join pg_class i on i.oid = x.indexrelid \
     where i.relnamespace = 'pgq'::regnamespace";

const SEQUENCES_SQL: &str = "select sequencename, data_type::text, start_value, min_value, \
     max_value, increment_by, cycle, cache_size from pg_sequences where schemaname = 'pgq'";

const TABLE_GRANTS_SQL: &str = "select c.relname, r.rolname, \
     string_agg(p.priv, ',' order by p.priv) as privileges \
     from pg_class c \
     cross join (values ('pgq_reader'), ('pgq_writer'), ('pgq_admin'), ('public')) r(rolname) \
     cross join (values ('select'), ('insert'), ('update'), ('delete'), ('truncate'), \
       ('references'), ('trigger')) p(priv) \
     where c.relnamespace = 'pgq'::regnamespace and c.relkind in ('r', 'v') \
     and has_table_privilege(r.rolname, c.oid, p.priv) group by 1, 2 \
     union all \
     select c.relname, r.rolname, \
     string_agg(p.priv, ',' order by p.priv) from pg_class c \
     cross join (values ('pgq_reader'), ('pgq_writer'), ('pgq_admin'), ('public')) r(rolname) \
     cross join (values ('select'), ('usage'), ('update')) p(priv) \
     where c.relnamespace = 'pgq'::regnamespace and c.relkind = 'S' \
     and has_sequence_privilege(r.rolname, c.oid, p.priv) group by 1, 2 \
     union all \
     select 'schema pgq', r.rolname, \
     concat_ws(',', case when has_schema_privilege(r.rolname, 'pgq', 'usage') then 'usage' end, \
       case when has_schema_privilege(r.rolname, 'pgq', 'create') then 'create' end) \
     from (values ('pgq_reader'), ('pgq_writer'), ('pgq_admin'), ('public')) r(rolname)";

/// Why a catalog difference is intended: the name of an [`INTENDED`] entry, or None.
type Excuse =
    fn(&str, Option<&[(String, String)]>, Option<&[(String, String)]>) -> Option<&'static str>;

/// Compares two keyed catalogs; `allow` may excuse a difference by returning an intended
/// difference's name.
fn compare_catalog(
    what: &str,
    ours: &BTreeMap<String, Vec<(String, String)>>,
    real: &BTreeMap<String, Vec<(String, String)>>,
    allow: Excuse,
    used: &mut BTreeSet<&'static str>,
    failures: &mut Vec<String>,
) {
    let keys: BTreeSet<&String> = ours.keys().chain(real.keys()).collect();
    for k in keys {
        let (o, r) = (ours.get(k), real.get(k));
        if o == r {
            continue;
        }
        let excuse = triggers_grant(what, k, r.is_some(), o.is_some())
            .or_else(|| allow(k, o.map(|v| v.as_slice()), r.map(|v| v.as_slice())));
        if let Some(name) = excuse {
            check_intended(name);
            used.insert(name);
            continue;
        }
        let show = |v: Option<&Vec<(String, String)>>| match v {
            None => "(missing)".to_string(),
            Some(v) => v
                .iter()
                .map(|(n, x)| format!("{n}={x}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        failures.push(format!(
            "{what} {k}:\n    real pgq 3.5: {}\n    ours:         {}",
            show(r),
            show(o)
        ));
    }
}

fn get<'a>(v: &'a [(String, String)], name: &str) -> &'a str {
    v.iter()
        .find(|(n, _)| n == name)
        .map(|(_, x)| x.as_str())
        .unwrap_or("")
}

/// Function excuses: ours-only helpers, the separate triggers component, pinned search_path.
fn function_excuse(
    key: &str,
    o: Option<&[(String, String)]>,
    r: Option<&[(String, String)]>,
) -> Option<&'static str> {
    let name = key.split(' ').next().unwrap_or("");
    match (o, r) {
        (Some(_), None) if name.starts_with('_') || name == "pgqd_schema_version" => {
            Some("ours_only_functions")
        }
        (None, Some(_)) if ["logutriga", "sqltriga", "jsontriga"].contains(&name) => {
            Some("triggers_component")
        }
        (Some(o), Some(r)) if key == "insert_event queue_name text, ev_type text, ev_data text" => {
            // Only the definer flag and the pinned search_path may differ.
            let same_rest = o
                .iter()
                .zip(r)
                .all(|((n, a), (_, b))| n == "config" || n == "security_definer" || a == b);
            (same_rest
                && get(o, "security_definer") == "t"
                && get(o, "config") == "search_path=pg_catalog, pg_temp")
                .then_some("insert_event3_direct")
        }
        (Some(o), Some(r)) => {
            // Only the config may differ, only on SECURITY DEFINER functions, and only by the
            // pinned search_path.
            let same_rest = o
                .iter()
                .zip(r)
                .all(|((n, a), (_, b))| n == "config" || a == b);
            (same_rest
                && get(o, "security_definer") == "t"
                && get(o, "config") == "search_path=pg_catalog, pg_temp"
                && get(r, "config").is_empty())
            .then_some("pinned_search_path")
        }
        _ => None,
    }
}

fn ours_only_excuse(
    key: &str,
    o: Option<&[(String, String)]>,
    r: Option<&[(String, String)]>,
) -> Option<&'static str> {
    let name = key.split(' ').next().unwrap_or("");
    (o.is_some() && r.is_none() && (name.starts_with('_') || name == "pgqd_schema_version"))
        .then_some("ours_only_functions")
}

fn no_excuse(
    _: &str,
    _: Option<&[(String, String)]>,
    _: Option<&[(String, String)]>,
) -> Option<&'static str> {
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_catalog_surface_as_pgq() {
    let c = cluster();
    // Ours first: the cluster-wide roles are then made by our schema, and checked below.
    make_dbs(&c);
    let ours = session(&c, "ours").await;
    let real = session(&c, "real").await;
    // Per-queue objects too: a queue in each.
    for s in [&ours, &real] {
        s.client
            .batch_execute("select pgq.create_queue('q')")
            .await
            .expect("create_queue");
    }
    let mut failures = Vec::new();
    let mut used = BTreeSet::new();
    let mut compared = 0;
    let checks: [(&str, &str, usize, Excuse); 8] = [
        ("function", FUNCTIONS_SQL, 2, function_excuse),
        ("execute grant", GRANTS_SQL, 2, ours_only_excuse),
        ("relation", RELATIONS_SQL, 1, no_excuse),
        ("column", COLUMNS_SQL, 3, no_excuse),
        ("constraint", CONSTRAINTS_SQL, 2, no_excuse),
        ("index", INDEXES_SQL, 1, no_excuse),
        ("sequence", SEQUENCES_SQL, 1, no_excuse),
        ("table grant", TABLE_GRANTS_SQL, 2, no_excuse),
    ];
    for (what, sql, key, allow) in checks {
        let o = keyed(&ours.client, sql, key).await;
        let r = keyed(&real.client, sql, key).await;
        assert!(!r.is_empty(), "{what}: the oracle returned nothing");
        compared += r.len().max(o.len());
        compare_catalog(what, &o, &r, allow, &mut used, &mut failures);
    }
    // Every listed catalog exception is really needed.
    if !self_mode() {
        for name in [
            "ours_only_functions",
            "triggers_component",
            "pinned_search_path",
            "insert_event3_direct",
        ] {
            if !used.contains(name) {
                failures.push(format!(
                    "intended difference {name} is listed but the catalogs show no such difference"
                ));
            }
        }
    }
    // The roles (cluster-wide, made by our 00_schema.sql since ours was installed first):
    // NOLOGIN, and pgq_admin a member of reader and writer (pgq's upgrade_schema).
    let roles = c.psql(
        "ours",
        "select r.rolname || ':' || r.rolcanlogin || ':' || coalesce((select \
         string_agg(g.rolname, ',' order by g.rolname) from pg_auth_members m \
         join pg_roles g on g.oid = m.roleid where m.member = r.oid), '') \
         from pg_roles r where r.rolname like 'pgq\\_%' order by 1",
    );
    if roles != "pgq_admin:false:pgq_reader,pgq_writer\npgq_reader:false:\npgq_writer:false:" {
        failures.push(format!("roles differ from pgq's:\n{roles}"));
    }
    report("catalog surface", compared, &failures);
}

/// The trigger functions are absent from our template, so are their grants.
fn triggers_grant(what: &str, key: &str, real: bool, ours: bool) -> Option<&'static str> {
    let name = key.split(' ').next().unwrap_or("");
    (what == "execute grant"
        && real
        && !ours
        && ["logutriga", "sqltriga", "jsontriga"].contains(&name))
    .then_some("triggers_component")
}
