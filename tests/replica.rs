//! Table replication (issue #11 part 3) end to end on one throwaway cluster: a cascade of
//! root, branch and leaf (three databases, `pgqd::cascade` nodes and workers with the
//! replication applier), tables copied root → branch → leaf while inserts, updates and
//! deletes run on the root, then compared equal (checksums through `compare`, and the
//! rows themselves); composite-key tables with awkward values through sqltriga and
//! logutriga, a key-less table refused, a broken row found by compare and fixed by the
//! SQL repair hints, a table copied while the queue is idle, a TRUNCATE, and the leaf's
//! worker as a process (`pgqd replica worker`, stopped by SIGTERM). The CLI runs as the
//! binary; it reads node roles and providers from pgq_node.

mod common;

use std::time::{Duration, Instant};

use common::{TestCluster, install_schema, wait_for};
use pgqd::cascade::admin::{Admin, CreateNode};
use pgqd::cascade::{NodeType, WorkerConfig, run_worker};
use pgqd::replica::{Applier, compare, copy};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

const Q: &str = "rq";
const WAIT: Duration = Duration::from_secs(40);

const TABLES_SQL: &str = "
create table public.orders (id int primary key, cust text not null, amount numeric(12,2), note text);
create table public.\"Awk ward\" (a text, b int, t text, n numeric, bin bytea, ts timestamptz, j jsonb,
                                  primary key (a, b));
create table public.awk_l (like public.\"Awk ward\" including all);
create table public.nokey (x int);
create table public.quiet (id int primary key, v text);
";

fn setup_node(c: &TestCluster, db: &str) {
    c.create_pgq_db(db);
    install_schema(c, db, &["triggers", "node", "replica"]);
    c.psql(db, TABLES_SQL);
}

/// Runs the cascade worker of node `db` with the replication applier until `stop`.
fn spawn_worker(
    c: &TestCluster,
    db: &str,
    stop: CancellationToken,
) -> JoinHandle<pgqd::replica::ApplyStats> {
    let mut cfg = WorkerConfig::new(Q, &c.connstr(db));
    cfg.poll_interval = Duration::from_millis(20);
    // a batch refused during compare's pause comes again soon
    cfg.error_delay = Duration::from_millis(50);
    cfg.local_wm_publish_period = Duration::from_millis(500);
    // the root's watermark events would prove every copy passed (apply.rs's txid rule):
    // without them an idle queue has no events, and the tick rule is what is tested
    cfg.global_wm_publish_period = Duration::from_secs(3600);
    tokio::spawn(async move {
        let mut applier = Applier::new();
        run_worker(&cfg, &mut applier, &stop)
            .await
            .expect("the worker stops cleanly");
        applier.stats
    })
}

/// Creates the cascade node `name` (root when `provider` is None).
async fn create_node(c: &TestCluster, name: &str, t: NodeType, provider: Option<&str>) {
    let mut admin = Admin::new(Q, &c.connstr(name), WAIT);
    admin
        .create(&CreateNode {
            node_type: t,
            node_name: name.into(),
            location: None,
            worker: None,
            provider: provider.map(|p| c.connstr(p)),
        })
        .await
        .unwrap_or_else(|e| panic!("create node {name}: {e}"));
}

/// The root's ticker: what the daemon does, every 30 ms.
fn spawn_ticker(c: &TestCluster, stop: CancellationToken) -> JoinHandle<()> {
    let cfg = c.config("root");
    tokio::spawn(async move {
        let (cl, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        while !stop.is_cancelled() {
            let _ = cl.execute("select pgq.ticker($1)", &[&Q]).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    })
}

/// Inserts, updates and deletes on the root in small transactions until `stop`; returns
/// how many transactions it committed.
fn spawn_dml(c: &TestCluster, stop: CancellationToken) -> JoinHandle<u64> {
    let cfg = c.config("root");
    tokio::spawn(async move {
        let (mut cl, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        let mut n: i64 = 0;
        while !stop.is_cancelled() {
            n += 1;
            let tx = cl.transaction().await.expect("begin");
            tx.execute(
                "insert into orders values (100000 + $1::int8::int, 'new', $1::int8 % 1000, 'during copy')",
                &[&n],
            )
            .await
            .expect("insert");
            tx.execute(
                "update orders set amount = amount + 1, note = note || '+' where id = ($1::int8 * 7919 % 20000)::int",
                &[&n],
            )
            .await
            .expect("update");
            tx.execute(
                "delete from orders where id = ($1::int8 * 104729 % 20000)::int",
                &[&n],
            )
            .await
            .expect("delete");
            tx.execute(
                "update \"Awk ward\" set n = n + 1, t = t || E'\\n''x''' where b = ($1::int8 % 50)::int",
                &[&n],
            )
            .await
            .expect("update awk");
            tx.execute(
                "update awk_l set n = n + 1, t = t || E'\\n''x'' é' where b = ($1::int8 % 50)::int",
                &[&n],
            )
            .await
            .expect("update awk_l");
            tx.commit().await.expect("commit");
        }
        n as u64
    })
}

/// Runs `pgqd replica ARGS`; returns (exit code, stdout, stderr) and echoes them (the
/// operator guide pastes this output).
async fn cli(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .arg("replica")
        .args(args)
        .output()
        .await
        .expect("run pgqd");
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "$ pgqd replica {}\n{so}{se}(exit {})",
        args.join(" "),
        out.status.code().unwrap_or(-1)
    );
    (out.status.code().unwrap_or(-1), so, se)
}

async fn state(c: &Client, table: &str) -> String {
    c.query_one(
        "select state from pgq_replica.table_info where queue_name = $1 and table_name = $2",
        &[&Q, &table],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_default()
}

/// The table's rows in key order as one text (what "equal" means, directly).
fn rows(c: &TestCluster, db: &str, table: &str, order: &str) -> String {
    c.psql(
        db,
        &format!("select md5(coalesce(string_agg(x::text, '|' order by {order}), '')) || ':' || count(*) from {table} x"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_root_branch_leaf_with_dml_during_copy() {
    let t0 = Instant::now();
    let c = TestCluster::start();
    for db in ["root", "branch", "leaf"] {
        setup_node(&c, db);
    }
    // the component through pgqd install too (again over the harness's install: it can
    // be re-applied)
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args([
            "install",
            "--component",
            "replica",
            "--connstr",
            &c.connstr("leaf"),
        ])
        .output()
        .expect("run pgqd install");
    assert!(
        o.status.success(),
        "pgqd install --component replica: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    create_node(&c, "root", NodeType::Root, None).await;
    c.psql(
        "root",
        &format!(
            "select pgq.set_queue_config('{Q}', 'ticker_max_count', '50'); \
             select pgq.set_queue_config('{Q}', 'ticker_max_lag', '0.05 seconds'); \
             select pgq.set_queue_config('{Q}', 'ticker_idle_period', '0.2 seconds'); \
             insert into orders select i, 'c' || (i % 97), i * 1.5, case when i % 3 = 0 then null else 'n' || i end \
               from generate_series(0, 19999) i; \
             insert into \"Awk ward\" select 'k''ey \"' || i || E'\\n' || 'é€', i, \
                    E'quote '' dq \" bs \\\\ nl \\n tab \\t & = % + ; , : / ü 日本', \
                    case when i % 5 = 0 then null else i / 7.0 end, \
                    case when i % 4 = 0 then null else decode('00ff5c27' || lpad(to_hex(i), 4, '0'), 'hex') end, \
                    timestamptz '2024-02-29 23:59:59.123456+05:30' + i * interval '1 hour', \
                    jsonb_build_object('k', i, 's', E'a\"b\\\\c', 'arr', jsonb_build_array(1, null, 'x')) \
               from generate_series(0, 99) i; \
             insert into awk_l select * from \"Awk ward\";"
        ),
    );
    create_node(&c, "branch", NodeType::Branch, Some("root")).await;
    create_node(&c, "leaf", NodeType::Leaf, Some("branch")).await;
    let root = c.connect("root").await;
    let mut branch = c.connect("branch").await;
    let mut leaf = c.connect("leaf").await;

    eprintln!(
        "[{:.1?}] capture on the root; registration (state copy) on the subscribers",
        t0.elapsed()
    );
    // capture on the root; registration (state copy) on the subscribers
    // the root through the CLI, the branch through the SQL functions
    let root_cs = c.connstr("root");
    let (code, out, _) = cli(&["add-table", "-c", &root_cs, "-q", Q, "orders"]).await;
    assert_eq!((code, out.as_str()), (0, "orders: root\n"));
    let (code, _, _) = cli(&[
        "add-table",
        "-c",
        &root_cs,
        "-q",
        Q,
        "--kind",
        "sqltriga",
        "public.\"Awk ward\"",
    ])
    .await;
    assert_eq!(code, 0);
    let (code, _, _) = cli(&[
        "add-table",
        "-c",
        &root_cs,
        "-q",
        Q,
        "--role",
        "root",
        "awk_l",
    ])
    .await;
    assert_eq!(code, 0);
    let triggers: i64 = root
        .query_one(
            "select count(*) from pg_trigger where tgname like 'pgq_replica_rq%' and not tgisinternal",
            &[],
        )
        .await
        .expect("count triggers")
        .get(0);
    assert_eq!(triggers, 6, "row and truncate triggers on the three tables");
    let st: String = branch
        .query_one("select pgq_replica.add_table($1, 'orders', false)", &[&Q])
        .await
        .expect("add orders")
        .get(0);
    assert_eq!(st, "copy");
    branch
        .query_one(
            "select pgq_replica.add_table($1, 'public.\"Awk ward\"', false)",
            &[&Q],
        )
        .await
        .expect("add awkward");
    branch
        .query_one("select pgq_replica.add_table($1, 'awk_l', false)", &[&Q])
        .await
        .expect("add awk_l");
    let leaf_cs = c.connstr("leaf");
    let branch_cs = c.connstr("branch");
    // the role comes from pgq_node; a queue it does not know needs --role, a --role
    // that contradicts it is refused
    let (code, _, err) = cli(&["add-table", "-c", &leaf_cs, "-q", "other", "orders"]).await;
    assert_eq!(code, 2, "no role and no node: usage error: {err}");
    assert!(err.contains("--role"), "{err}");
    let (code, _, err) = cli(&[
        "add-table",
        "-c",
        &root_cs,
        "-q",
        Q,
        "--role",
        "subscriber",
        "orders",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("contradicts"), "{err}");
    let (code, out, _) = cli(&[
        "add-table",
        "-c",
        &leaf_cs,
        "-q",
        Q,
        "orders",
        "public.\"Awk ward\"",
        "awk_l",
    ])
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("orders: copy"), "{out}");
    let (code, _, err) = cli(&[
        "add-table",
        "-c",
        &leaf_cs,
        "-q",
        Q,
        "--role",
        "subscriber",
        "nokey",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("without a primary key"), "{err}");
    let (code, _, err) = cli(&[
        "add-table",
        "-c",
        &leaf_cs,
        "-q",
        Q,
        "--role",
        "subscriber",
        "nosuch",
    ])
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("nosuch"), "{err}");
    let (code, _, _) = cli(&[
        "add-table",
        "-c",
        "host='unterminated",
        "-q",
        Q,
        "--role",
        "root",
        "t",
    ])
    .await;
    assert_eq!(code, 2, "a bad connection string is a usage error");
    eprintln!(
        "[{:.1?}] a table without a primary key is refused with a clear message",
        t0.elapsed()
    );
    // a table without a primary key is refused with a clear message
    let err = root
        .query_one("select pgq_replica.add_table($1, 'nokey', true)", &[&Q])
        .await
        .expect_err("nokey must be refused");
    let msg = pgqd::pgerr::describe(&err);
    assert!(
        msg.contains("55000") && msg.contains("without a primary key"),
        "{msg}"
    );

    let stop = CancellationToken::new();
    let ticker = spawn_ticker(&c, stop.clone());
    let hop_r = spawn_worker(&c, "root", stop.clone());
    let hop_b = spawn_worker(&c, "branch", stop.clone());
    let leaf_stop = CancellationToken::new();
    let hop_l = spawn_worker(&c, "leaf", leaf_stop.clone());
    let dml_stop = CancellationToken::new();
    let dml = spawn_dml(&c, dml_stop.clone());
    eprintln!(
        "[{:.1?}] let some changes queue up (and be skipped: the tables are still in state copy)",
        t0.elapsed()
    );
    // let some changes queue up (and be skipped: the tables are still in state copy)
    wait_for("DML on the root", WAIT, || async {
        let n: i64 = root
            .query_one("select count(*) from orders where id >= 100000", &[])
            .await
            .ok()?
            .get(0);
        (n >= 30).then_some(())
    })
    .await;

    eprintln!(
        "[{:.1?}] copy root -> branch while the DML runs",
        t0.elapsed()
    );
    // copy root -> branch while the DML runs
    let mut root_c = c.connect("root").await;
    let mut copies = Vec::new();
    for t in ["public.orders", "public.Awk ward", "public.awk_l"] {
        let r = copy::copy_table(&mut branch, &mut root_c, Q, t, "root", false)
            .await
            .unwrap_or_else(|e| panic!("copy {t} into branch: {e}"));
        copies.push(r);
    }
    for t in ["public.orders", "public.Awk ward", "public.awk_l"] {
        wait_for("branch tables caught up", WAIT, || async {
            (state(&branch, t).await == "ok").then_some(())
        })
        .await;
    }
    eprintln!(
        "[{:.1?}] a second copy without --force is refused",
        t0.elapsed()
    );
    // a second copy without --force is refused
    let again = copy::copy_table(&mut branch, &mut root_c, Q, "public.orders", "root", false).await;
    assert!(
        matches!(&again, Err(pgqd::replica::Error::Refused(m)) if m.contains("--force")),
        "{again:?}"
    );
    eprintln!("[{:.1?}] branch -> leaf, still under DML", t0.elapsed());
    // branch -> leaf, still under DML
    let mut branch_c = c.connect("branch").await;
    cli(&["tables", "-c", &leaf_cs, "-q", Q]).await;
    let (code, out, _) = cli(&["copy", "-c", &leaf_cs, "-q", Q]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("public.orders: copied 2") && out.contains("catching-up"),
        "{out}"
    );
    for t in ["public.orders", "public.Awk ward", "public.awk_l"] {
        wait_for("leaf tables caught up", WAIT, || async {
            (state(&leaf, t).await == "ok").then_some(())
        })
        .await;
    }
    for r in &copies {
        eprintln!(
            "copied {} rows of {} in {:?} ({:.0} rows/s), snapshot {}",
            r.rows,
            r.table,
            r.elapsed,
            r.rows as f64 / r.elapsed.as_secs_f64(),
            r.snapshot
        );
    }

    eprintln!(
        "[{:.1?}] compare while the DML still runs: each pair is read at one tick",
        t0.elapsed()
    );
    // compare while the DML still runs: each pair is read at one tick
    let tables: Vec<String> = ["public.orders", "public.Awk ward", "public.awk_l"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let cmp = compare::compare(&mut branch, &mut root_c, &root, Q, &tables, WAIT)
        .await
        .expect("compare root/branch under load");
    for t in &cmp.tables {
        assert!(t.equal(), "root/branch differ at tick {}: {t:?}", cmp.tick);
    }
    let dml_txs;
    {
        dml_stop.cancel();
        dml_txs = dml.await.expect("dml task");
    }
    let (code, out, _) = cli(&["tables", "-c", &leaf_cs, "-q", Q]).await;
    assert_eq!(code, 0);
    assert!(out.contains(" ok "), "{out}");
    let (code, out, _) = cli(&["tables", "-c", &leaf_cs, "-q", Q, "--format", "json"]).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("tables --format json");
    let states: Vec<&str> = v
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert_eq!(states, ["ok", "ok", "ok"], "{out}");
    assert_eq!(v[2]["copy_rows"], 20000, "{out}");
    let (code, out, _) = cli(&["compare", "-c", &leaf_cs, "-q", Q, "--format", "json"]).await;
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("compare --format json");
    assert!(v["tick"].as_i64().is_some_and(|t| t > 0), "{out}");
    assert_eq!(v["tables"].as_array().map(Vec::len), Some(3), "{out}");
    assert!(
        v["tables"]
            .as_array()
            .is_some_and(|ts| ts.iter().all(|t| t["equal"] == true)),
        "{out}"
    );
    let (code, out, _) = cli(&["compare", "-c", &leaf_cs, "-q", Q]).await;
    assert_eq!(code, 0, "branch/leaf differ: {out}");
    assert_eq!(out.matches(" equal ").count(), 3, "{out}");
    eprintln!(
        "[{:.1?}] and the rows themselves, once the leaf has everything",
        t0.elapsed()
    );
    // and the rows themselves, once the leaf has everything
    let last_root_tick = {
        root.execute("select pgq.force_tick($1)", &[&Q])
            .await
            .expect("force");
        wait_for("a tick after the DML", WAIT, || async {
            root.query_one(compare_last_tick(), &[&Q])
                .await
                .ok()?
                .get::<_, Option<i64>>(0)
        })
        .await
    };
    wait_for("leaf at the root's last tick", WAIT, || async {
        let t: Option<i64> = leaf
            .query_one(
                "select last_tick from pgq_replica.queue_info where queue_name = $1",
                &[&Q],
            )
            .await
            .ok()?
            .get(0);
        (t? >= last_root_tick).then_some(())
    })
    .await;
    for (table, order) in [
        ("orders", "id"),
        ("\"Awk ward\"", "a, b"),
        ("awk_l", "a, b"),
    ] {
        let r = rows(&c, "root", table, order);
        assert_eq!(rows(&c, "branch", table, order), r, "{table} root/branch");
        assert_eq!(rows(&c, "leaf", table, order), r, "{table} root/leaf");
    }
    let changed: i64 = root
        .query_one("select count(*) from orders where note like '%+'", &[])
        .await
        .expect("count")
        .get(0);
    assert!(
        changed > 0 && dml_txs > 30,
        "DML ran: {dml_txs} txs, {changed} updated rows"
    );

    eprintln!(
        "[{:.1?}] a broken row on the leaf: compare sees it, repair hints fix it",
        t0.elapsed()
    );
    // a broken row on the leaf: compare sees it, repair hints fix it
    c.psql(
        "leaf",
        "update orders set note = 'broken' where id = 5; delete from orders where id = 6; \
         insert into orders values (999999, 'extra', 1, null); \
         update \"Awk ward\" set t = 'broken' where b = 3",
    );
    let (code, out, _) = cli(&["compare", "-c", &leaf_cs, "-q", Q]).await;
    assert_eq!(code, 3, "{out}");
    assert_eq!(out.matches("DIFFERENT").count(), 2, "{out}");
    let (code, out, _) = cli(&[
        "repair",
        "-c",
        &leaf_cs,
        "-q",
        Q,
        "--provider",
        &branch_cs,
        "orders",
    ])
    .await;
    assert_eq!(code, 3);
    assert!(
        out.contains("delete from public.orders where id = '999999';"),
        "{out}"
    );
    let rep = compare::repair(&mut leaf, &mut branch_c, &branch, Q, &tables, WAIT)
        .await
        .expect("repair");
    let orders = &rep.tables[0];
    assert_eq!(orders.differ, vec![vec![Some("5".to_string())]]);
    assert_eq!(orders.missing, vec![vec![Some("6".to_string())]]);
    assert_eq!(orders.extra, vec![vec![Some("999999".to_string())]]);
    assert_eq!(rep.tables[1].differ.len(), 1);
    let fix: Vec<String> = rep.tables.iter().flat_map(|t| t.sql.clone()).collect();
    assert_eq!(fix.len(), 4, "{fix:?}");
    c.psql("leaf", &fix.join("\n"));
    let (code, out, _) = cli(&["compare", "-c", &leaf_cs, "-q", Q]).await;
    assert_eq!(code, 0, "repaired: {out}");
    eprintln!(
        "[{:.1?}] apply throughput: one transaction of 20000 inserts through both hops",
        t0.elapsed()
    );
    // apply throughput: one transaction of 20000 inserts through both hops
    let t1 = Instant::now();
    c.psql(
        "root",
        "insert into orders select i, 'bulk', i, null from generate_series(200000, 219999) i",
    );
    let produced = t1.elapsed();
    let t1 = Instant::now();
    wait_for("the bulk insert on the leaf", WAIT, || async {
        let n: i64 = leaf
            .query_one("select count(*) from orders where id >= 200000", &[])
            .await
            .ok()?
            .get(0);
        (n == 20000).then_some(())
    })
    .await;
    let el = t1.elapsed();
    eprintln!(
        "20000 inserts captured on the root in {produced:?}, then on the leaf {el:?} later: \
         {:.0} events/s through two hops",
        20000.0 / el.as_secs_f64()
    );

    eprintln!(
        "[{:.1?}] a table copied while the queue is idle turns ok by ticks alone (no event can",
        t0.elapsed()
    );
    // a table copied while the queue is idle turns ok by ticks alone (no event can
    // prove the copy is passed)
    c.psql(
        "root",
        "insert into quiet select i, 'q' || i from generate_series(1, 50) i",
    );
    cli(&[
        "add-table",
        "-c",
        &root_cs,
        "-q",
        Q,
        "--role",
        "root",
        "quiet",
    ])
    .await;
    for cs in [&branch_cs, &leaf_cs] {
        cli(&[
            "add-table",
            "-c",
            cs,
            "-q",
            Q,
            "--role",
            "subscriber",
            "quiet",
        ])
        .await;
    }
    let root_cs2 = root_cs.clone();
    let (code, out, _) = cli(&["copy", "-c", &branch_cs, "-q", Q, "--provider", &root_cs2]).await;
    assert_eq!(code, 0, "{out}");
    wait_for("quiet ok on the branch", WAIT, || async {
        (state(&branch, "public.quiet").await == "ok").then_some(())
    })
    .await;
    let (code, out, _) = cli(&[
        "copy",
        "-c",
        &leaf_cs,
        "-q",
        Q,
        "--provider",
        &branch_cs,
        "quiet",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    wait_for("quiet ok on the leaf", WAIT, || async {
        (state(&leaf, "public.quiet").await == "ok").then_some(())
    })
    .await;
    assert_eq!(
        rows(&c, "leaf", "quiet", "id"),
        rows(&c, "root", "quiet", "id")
    );
    let (code, out, _) = cli(&[
        "compare",
        "-c",
        &branch_cs,
        "-q",
        Q,
        "--provider",
        &root_cs2,
    ])
    .await;
    assert_eq!(code, 0, "root/branch: {out}");
    assert_eq!(out.matches(" equal ").count(), 4, "{out}");
    // TRUNCATE travels too
    c.psql("root", "truncate quiet");
    wait_for("the truncate on the leaf", WAIT, || async {
        let n: i64 = leaf
            .query_one("select count(*) from quiet", &[])
            .await
            .ok()?
            .get(0);
        (n == 0).then_some(())
    })
    .await;

    let (code, _, _) = cli(&["remove-table", "-c", &leaf_cs, "-q", Q, "public.orders"]).await;
    assert_eq!(code, 0);
    let (code, _, _) = cli(&["remove-table", "-c", &leaf_cs, "-q", Q, "public.orders"]).await;
    assert_eq!(code, 1, "removing twice");
    eprintln!(
        "[{:.1?}] on the root by the registered name (not a valid SQL name): the triggers go",
        t0.elapsed()
    );
    // on the root by the registered name (not a valid SQL name): the triggers go
    let (code, out, _) = cli(&["remove-table", "-c", &root_cs, "-q", Q, "public.Awk ward"]).await;
    assert_eq!(code, 0, "{out}");
    let left: i64 = root
        .query_one(
            "select count(*) from pg_trigger where tgrelid = 'public.\"Awk ward\"'::regclass and not tgisinternal",
            &[],
        )
        .await
        .expect("count triggers")
        .get(0);
    assert_eq!(left, 0);

    cli(&["tables", "-c", &root_cs, "-q", Q]).await;
    // the leaf's worker as a process (pgqd replica worker CONFIG): applies a change,
    // SIGTERM stops it cleanly
    leaf_stop.cancel();
    let sl = hop_l.await.expect("leaf hop");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg_path = dir.path().join("leaf.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "queue_name = '{Q}'\ndb = \"{leaf_cs}\"\nnode_name = 'leaf'\npoll_interval = '50ms'\n"
        ),
    )
    .expect("write config");
    let log_path = dir.path().join("worker.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(["replica", "worker", cfg_path.to_str().expect("utf-8 path")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("start worker");
    c.psql(
        "root",
        "update awk_l set t = 'from the process' where b = 7",
    );
    wait_for("the worker process applied the update", WAIT, || async {
        let n: i64 = leaf
            .query_one(
                "select count(*) from awk_l where t = 'from the process'",
                &[],
            )
            .await
            .ok()?
            .get(0);
        (n == 1).then_some(())
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let st = common::wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(
        st.code(),
        Some(0),
        "worker exit after SIGTERM; its log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let (code, _, err) = cli(&["worker", "/nonexistent/leaf.toml"]).await;
    assert_eq!(code, 2, "{err}");

    stop.cancel();
    hop_r.await.expect("root worker");
    let sb = hop_b.await.expect("branch hop");
    ticker.await.expect("ticker");
    eprintln!(
        "dml txs {dml_txs}; branch {sb:?}; leaf {sl:?}; whole test {:?}",
        t0.elapsed()
    );
    assert_eq!(sb.missing_rows, 0);
}

fn compare_last_tick() -> &'static str {
    "select max(t.tick_id) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
      where q.queue_name = $1"
}
