//! The tools as real processes (`pgqd mover|splitter|dispatcher`) on one throwaway
//! cluster with several databases: producers write through `pgq.logutriga` /
//! `pgq.jsontriga`, the test ticks (`pgq.ticker(queue)` and `pgq.maint_retry_events()`
//! every 100 ms, as the daemon would), the mover is SIGKILLed once while blocked inside a
//! batch (events written to the target, tracking row not yet) and three times at random
//! moments, and restarted each time; and the targets are compared with the source: every event exactly once,
//! in order, with ev_type/ev_data/ev_extra1..4/ev_time kept. Also: splitter routing with
//! include/exclude, dispatcher partitions created on demand and a poison row in the
//! failed table after N retries, `--status`, `-d` and `-s`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{TestCluster, install_schema, wait_exit, wait_for};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

fn pgqd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pgqd"))
}

/// A tool process, SIGKILLed on drop if still running.
struct Tool(Child);

impl Tool {
    fn start(kind: &str, cfg: &Path) -> Tool {
        let child = pgqd()
            .arg(kind)
            .arg(cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the tool");
        Tool(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run_tool(kind: &str, args: &[&str]) -> Output {
    pgqd().arg(kind).args(args).output().expect("run the tool")
}

/// Writes a tool config in the cluster dir.
fn config(c: &TestCluster, name: &str, src: &str, dst: &str, queue: &str, extra: &str) -> PathBuf {
    let path = c.dir.join(format!("{name}.toml"));
    let text = format!(
        "source = \"{}\"\ntarget = \"{}\"\nqueue = \"{queue}\"\nconsumer = \"{name}\"\n\
         poll_interval = \"100ms\"\nerror_delay = \"100ms\"\nstats_period = \"1s\"\n\
         pidfile = \"{}\"\n{extra}\n",
        c.connstr(src),
        c.connstr(dst),
        c.dir.join(format!("{name}.pid")).display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn count(c: &TestCluster, db: &str, sql: &str) -> i64 {
    let out = c.psql_output(db, &["-At", "-c", sql]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(-1)
}

async fn wait_count(c: &TestCluster, db: &str, sql: &str, want: i64) {
    wait_for(&format!("{sql} = {want} in {db}"), WAIT, || {
        let n = count(c, db, sql);
        async move { (n == want).then_some(()) }
    })
    .await
}

/// The event table (parent of its rotation tables) of `queue`.
fn event_table(c: &TestCluster, db: &str, queue: &str) -> String {
    c.psql(
        db,
        &format!("select queue_data_pfx from pgq.queue where queue_name = '{queue}'"),
    )
}

/// Every event of `queue` as text lines, in ev_id order.
fn events(c: &TestCluster, db: &str, queue: &str) -> Vec<String> {
    let t = event_table(c, db, queue);
    c.psql(
        db,
        &format!(
            "select ev_time, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4 \
             from {t} order by ev_id"
        ),
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// A queue that ticks whenever it has a new event.
fn create_queue(c: &TestCluster, db: &str, queue: &str) {
    c.psql(
        db,
        &format!(
            "select pgq.create_queue('{queue}'); \
             select pgq.set_queue_config('{queue}', 'ticker_max_count', '1')"
        ),
    );
}

/// Ticks the queues of `db` and moves due retry events back, every 100 ms.
fn ticker(c: &TestCluster, db: &str, stop: &CancellationToken) -> JoinHandle<()> {
    let cfg = c.config(db);
    let stop = stop.clone();
    tokio::spawn(async move {
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        while !stop.is_cancelled() {
            let _ = client
                .batch_execute(
                    "select pgq.maint_retry_events(); \
                     select pgq.ticker(queue_name) from pgq.queue",
                )
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn stop_tool(c: &TestCluster, kind: &str, cfg: &Path, tool: &mut Tool) {
    let o = run_tool(kind, &["-s", cfg.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = wait_exit(&mut tool.0, Duration::from_secs(30));
    assert!(
        st.success(),
        "{kind} stopped with {st}; log {}",
        c.log_path().display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_end_to_end() {
    let c = TestCluster::start();
    c.ensure_template();
    mover_survives_kills_exactly_once(&c).await;
    splitter_routes_by_table(&c).await;
    dispatcher_partitions_and_poison(&c).await;
    daemonized_status_and_stop(&c).await;
}

async fn mover_survives_kills_exactly_once(c: &TestCluster) {
    eprintln!("case: mover_survives_kills_exactly_once");
    let (src, dst) = ("msrc", "mdst");
    c.create_pgq_db(src);
    install_schema(c, src, &["triggers"]);
    c.create_pgq_db(dst);
    install_schema(c, dst, &["ext"]);
    create_queue(c, src, "events");
    create_queue(c, dst, "events_copy");
    c.psql(
        src,
        "create table orders (id int primary key, amount int, note text); \
         create trigger q after insert or update or delete on orders \
         for each row execute function pgq.logutriga('events')",
    );
    let cfg = config(
        c,
        "mover",
        src,
        dst,
        "events",
        "target_queue = \"events_copy\"\nfetch_size = 50",
    );
    let o = run_tool("mover", &["--status", cfg.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "not registered yet");
    let stop = CancellationToken::new();
    let t = ticker(c, src, &stop);
    // One producer, 40 transactions of 100 rows plus updates: ev_id order is commit order.
    let producer = {
        let cfg = c.config(src);
        tokio::spawn(async move {
            let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            for i in 0..40 {
                client
                    .batch_execute(&format!(
                        "insert into orders select g, g * 10, 'n ' || g \
                         from generate_series({a}, {b}) g; \
                         update orders set note = 'upd&=%' where id = {a}",
                        a = i * 100 + 1,
                        b = i * 100 + 100
                    ))
                    .await
                    .expect("produce");
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };
    let copy = event_table(c, dst, "events_copy");
    // First kill, certainly mid-batch: the target's tracking table is locked, so the mover
    // blocks in set_batch_done with both transactions open (and, but for an empty first
    // batch, the batch's events inserted); it is SIGKILLed there.
    {
        let (locker, conn) = c
            .config(dst)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        locker
            .batch_execute("begin; lock table pgq_ext.completed_batch in exclusive mode")
            .await
            .expect("lock");
        let mut m = Tool::start("mover", &cfg);
        wait_for("the mover blocks inside a batch", WAIT, || {
            let n = count(
                c,
                dst,
                "select count(*) from pg_stat_activity where application_name = 'pgqd-tool' \
                 and wait_event_type = 'Lock'",
            );
            async move { (n == 1).then_some(()) }
        })
        .await;
        m.kill();
        locker.batch_execute("rollback").await.expect("unlock");
        eprintln!("mover SIGKILLed inside a batch");
    }
    let total = 40 * 101;
    let mut seen = 0;
    for round in 0..3 {
        let mut m = Tool::start("mover", &cfg);
        let before = seen;
        // 150 more events, or all of them when a slow start let the producer finish first.
        seen = wait_for(&format!("mover round {round} copies events"), WAIT, || {
            let n = count(c, dst, &format!("select count(*) from {copy}"));
            async move { (n > before + 150 || n >= total).then_some(n) }
        })
        .await;
        m.kill();
        eprintln!("mover SIGKILLed after {seen} events");
    }
    producer.await.expect("producer");
    let mut m = Tool::start("mover", &cfg);
    wait_count(c, dst, &format!("select count(*) from {copy}"), total).await;
    let o = run_tool("mover", &["--status", cfg.to_str().expect("utf-8")]);
    let status = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{status}");
    assert!(
        status.contains("process: running") && status.contains("pending events:"),
        "{status}"
    );
    stop_tool(c, "mover", &cfg, &mut m);
    stop.cancel();
    t.await.expect("ticker");
    let a = events(c, src, "events");
    let b = events(c, dst, "events_copy");
    assert_eq!(a.len(), total as usize);
    assert!(
        a == b,
        "target queue differs from the source (first difference at {:?})",
        a.iter().zip(&b).position(|(x, y)| x != y)
    );
    assert_eq!(
        count(
            c,
            dst,
            "select count(*) from pgq_ext.completed_batch where consumer_id = 'mover'"
        ),
        1
    );
}

async fn splitter_routes_by_table(c: &TestCluster) {
    eprintln!("case: splitter_routes_by_table");
    let (src, dst) = ("ssrc", "sdst");
    c.create_pgq_db(src);
    install_schema(c, src, &["triggers"]);
    c.create_pgq_db(dst);
    install_schema(c, dst, &["ext"]);
    create_queue(c, src, "changes");
    create_queue(c, dst, "orders_q");
    create_queue(c, dst, "public.users");
    c.psql(
        src,
        "create table orders (id int primary key, v text); \
         create table users (id int primary key, v text); \
         create table tmp_x (id int primary key, v text); \
         create trigger q after insert on orders for each row execute function pgq.logutriga('changes'); \
         create trigger q after insert on users for each row execute function pgq.jsontriga('changes'); \
         create trigger q after insert on tmp_x for each row execute function pgq.logutriga('changes')",
    );
    let cfg = config(
        c,
        "splitter",
        src,
        dst,
        "changes",
        "include = [\"public.*\"]\nexclude = [\"public.tmp_*\"]\n[routes]\n\"public.orders\" = \"orders_q\"",
    );
    let stop = CancellationToken::new();
    let t = ticker(c, src, &stop);
    let mut s = Tool::start("splitter", &cfg);
    c.psql(
        src,
        "insert into orders select g, 'o' || g from generate_series(1, 30) g; \
         insert into users select g, 'u' || g from generate_series(1, 20) g; \
         insert into tmp_x select g, 't' from generate_series(1, 10) g; \
         insert into orders values (31, 'last')",
    );
    let users = event_table(c, dst, "public.users");
    let orders = event_table(c, dst, "orders_q");
    wait_count(c, dst, &format!("select count(*) from {orders}"), 31).await;
    wait_count(c, dst, &format!("select count(*) from {users}"), 20).await;
    stop_tool(c, "splitter", &cfg, &mut s);
    stop.cancel();
    t.await.expect("ticker");
    assert_eq!(
        count(
            c,
            dst,
            &format!("select count(*) from {orders} where ev_extra1 <> 'public.orders'")
        ),
        0
    );
    assert_eq!(
        count(
            c,
            dst,
            "select count(*) from pgq.event_template where ev_extra1 = 'public.tmp_x'"
        ),
        0
    );
    let src_orders: Vec<String> = events(c, src, "changes")
        .into_iter()
        .filter(|l| l.contains("|public.orders|"))
        .collect();
    assert_eq!(
        src_orders,
        events(c, dst, "orders_q"),
        "orders routed in order, fields kept"
    );
}

async fn dispatcher_partitions_and_poison(c: &TestCluster) {
    eprintln!("case: dispatcher_partitions_and_poison");
    let (src, dst) = ("dsrc", "ddst");
    c.create_pgq_db(src);
    install_schema(c, src, &["triggers"]);
    c.create_db(dst);
    install_schema(c, dst, &["ext"]);
    create_queue(c, src, "log_q");
    create_queue(c, src, "json_q");
    c.psql(
        src,
        "create table orders (id int primary key, amount text, created_at timestamptz, extra text); \
         create trigger q after insert or update or delete on orders \
         for each row execute function pgq.logutriga('log_q'); \
         create table events (id int primary key, kind text, at timestamp); \
         create trigger q after insert on events \
         for each row execute function pgq.jsontriga('json_q')",
    );
    // Daily partitions as plain tables LIKE the base; amount is int here (a poison row
    // has text that does not cast).
    c.psql(
        dst,
        "create table orders_archive (id int, amount int, created_at timestamptz, \
                                      archived_at timestamptz default now()); \
         create table events_archive (id int, kind text, at timestamp) partition by range (at)",
    );
    let log_cfg = config(
        c,
        "disp_log",
        src,
        dst,
        "log_q",
        "dest_table = \"public.orders_archive\"\npart_field = \"created_at\"\npart_period = \"day\"\n\
         max_retries = 2\nretry_delay = \"0s\"\nfailed_table = \"archive_failed\"",
    );
    let json_cfg = config(
        c,
        "disp_json",
        src,
        dst,
        "json_q",
        "dest_table = \"events_archive\"\npart_field = \"at\"\npart_period = \"month\"",
    );
    let stop = CancellationToken::new();
    let t = ticker(c, src, &stop);
    let mut a = Tool::start("dispatcher", &log_cfg);
    let mut b = Tool::start("dispatcher", &json_cfg);
    c.psql(
        src,
        "insert into orders select g, (g * 10)::text, \
             timestamptz '2026-01-30 12:00+00' + (g % 3) * interval '1 day', 'x' \
           from generate_series(1, 30) g; \
         insert into orders values (31, 'not a number', '2026-01-30 13:00+00', 'x'); \
         update orders set amount = '0' where id = 1; delete from orders where id = 2; \
         insert into events select g, 'k' || g, timestamp '2026-01-15' + g * interval '10 days' \
           from generate_series(1, 6) g",
    );
    wait_count(c, dst, "select count(*) from archive_failed", 1).await;
    wait_count(c, dst, "select count(*) from orders_archive", 30).await;
    wait_count(c, dst, "select count(*) from events_archive", 6).await;
    stop_tool(c, "dispatcher", &log_cfg, &mut a);
    stop_tool(c, "dispatcher", &json_cfg, &mut b);
    stop.cancel();
    t.await.expect("ticker");
    // Inserts only; the rows are in their day's partition, not in the base table.
    assert_eq!(
        c.psql(
            dst,
            "select tableoid::regclass::text, count(*), min(id) from orders_archive \
             group by 1 order by 1"
        ),
        "orders_archive_2026_01_30|10|3\norders_archive_2026_01_31|10|1\norders_archive_2026_02_01|10|2"
    );
    assert_eq!(count(c, dst, "select count(*) from only orders_archive"), 0);
    assert_eq!(
        count(
            c,
            dst,
            "select count(*) from orders_archive where amount = 0 or archived_at is null"
        ),
        0
    );
    assert_eq!(
        c.psql(
            dst,
            "select ev_retry, ev_type, reason like '%22P02%' from archive_failed"
        ),
        "2|I:id|t"
    );
    assert_eq!(
        c.psql(
            dst,
            "select tableoid::regclass::text, count(*) from events_archive group by 1 order by 1"
        ),
        "events_archive_2026_01|1\nevents_archive_2026_02|3\nevents_archive_2026_03|2"
    );
}

async fn daemonized_status_and_stop(c: &TestCluster) {
    eprintln!("case: daemonized_status_and_stop");
    let (src, dst) = ("bsrc", "bdst");
    c.create_pgq_db(src);
    c.create_pgq_db(dst);
    install_schema(c, dst, &["ext"]);
    create_queue(c, src, "q");
    create_queue(c, dst, "q");
    let log = c.dir.join("bg.log");
    let cfg = config(
        c,
        "bg",
        src,
        dst,
        "q",
        &format!("logfile = \"{}\"", log.display()),
    );
    let o = run_tool("mover", &["-d", cfg.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pidfile = c.dir.join("bg.pid");
    wait_for("the daemonized mover registers", WAIT, || {
        let n = count(c, src, "select count(*) from pgq.subscription");
        async move { (n == 1).then_some(()) }
    })
    .await;
    let stop = CancellationToken::new();
    let t = ticker(c, src, &stop);
    c.psql(src, "select pgq.insert_event('q', 'hello', 'world')");
    let copy = event_table(c, dst, "q");
    wait_count(c, dst, &format!("select count(*) from {copy}"), 1).await;
    let o = run_tool("mover", &["--status", cfg.to_str().expect("utf-8")]);
    let status = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(status.contains("process: running"), "{status}");
    assert!(status.contains("failed events: 0"), "{status}");
    // The progress line reaches --status once a stats period (1 s) has passed.
    common::wait_until_true("--status shows throughput", WAIT, || {
        let o = run_tool("mover", &["--status", cfg.to_str().expect("utf-8")]);
        String::from_utf8_lossy(&o.stdout).contains("throughput:")
    });
    let o = run_tool("mover", &["-s", cfg.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    common::wait_until_true("the pidfile is removed", WAIT, || !pidfile.exists());
    stop.cancel();
    t.await.expect("ticker");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("progress") || text.contains("starting"),
        "{text}"
    );
    assert!(text.contains("stopped"), "{text}");
}
