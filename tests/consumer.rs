//! The consumer library end to end, on one throwaway cluster shared by the cases (each in
//! its own databases): the README example, poison events into the failed table after N
//! retries, handler errors rolling a batch back, cursor mode, waking on NOTIFY, the
//! remote consumer skipping a batch its target has, the serial consumer's tick tracking,
//! and coop subconsumers sharing a queue.
//!
//! The last case runs our daemon in-process and checks that its per-tick
//! `NOTIFY pgqd_tick` wakes an idle consumer long before its poll interval. Elsewhere
//! ticks come from a small task per case calling `pgq.ticker(queue)` and
//! `pgq.maint_retry_events()` (what the daemon would do), so no case waits for the
//! daemon's ticker rules.

mod common;
mod daemon_support;
#[allow(dead_code)]
#[path = "../examples/consumer.rs"]
mod example;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{TestCluster, install_schema, wait_for};
use pgqd::consumer::{
    Batch, BoxError, Consumer, ConsumerConfig, Coop, Event, EventHandler, Handler, PerEvent,
    Tracking,
};
use tokio::task::JoinHandle;
use tokio_postgres::Transaction;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// A database with pgq, queue `queue` (ticking on every new event), and table `applied`.
fn setup(c: &TestCluster, db: &str, queue: &str) {
    c.create_pgq_db(db);
    c.psql(
        db,
        &format!(
            "select pgq.create_queue('{queue}'); \
             select pgq.set_queue_config('{queue}', 'ticker_max_count', '1'); \
             create table applied (ev_id bigint, ev_data text, consumer text default '');"
        ),
    );
}

fn produce(c: &TestCluster, db: &str, queue: &str, from: i32, to: i32) {
    c.psql(
        db,
        &format!(
            "select count(pgq.insert_event('{queue}', 'row', i::text)) \
             from generate_series({from}, {to}) i"
        ),
    );
}

/// The number `sql` returns, or -1 when it fails (a table not created yet).
fn count(c: &TestCluster, db: &str, sql: &str) -> i64 {
    let out = c.psql_output(db, &["-At", "-c", sql]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(-1)
}

/// Ticks `queue` and moves due retry events back every 100 ms until cancelled.
fn ticker(c: &TestCluster, db: &str, queue: &str, stop: &CancellationToken) -> JoinHandle<()> {
    let cfg = c.config(db);
    let queue = queue.to_string();
    let stop = stop.clone();
    tokio::spawn(async move {
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        while !stop.is_cancelled() {
            let _ = client
                .execute("select pgq.maint_retry_events(), pgq.ticker($1)", &[&queue])
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Inserts each event into `applied`; fails on ev_data `poison`.
struct Apply {
    consumer: String,
}

impl EventHandler for Apply {
    async fn handle_event(&mut self, tx: &Transaction<'_>, ev: &Event) -> Result<(), BoxError> {
        tx.execute(
            "insert into applied (ev_id, ev_data, consumer) values ($1, $2, $3)",
            &[&ev.id, &ev.data, &self.consumer],
        )
        .await?;
        if ev.data.as_deref() == Some("poison") {
            return Err("poison event".into());
        }
        Ok(())
    }
}

/// Applies the whole batch, but fails the first `fail` calls after writing.
struct Flaky {
    fail: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
}

impl Handler for Flaky {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        batch: &mut Batch,
    ) -> Result<(), BoxError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        for ev in batch.events() {
            tx.execute(
                "insert into applied (ev_id, ev_data) values ($1, $2)",
                &[&ev.id, &ev.data],
            )
            .await?;
        }
        if self.fail.load(Ordering::SeqCst) > 0 {
            self.fail.fetch_sub(1, Ordering::SeqCst);
            return Err("simulated failure after writing".into());
        }
        Ok(())
    }
}

fn fast(c: &TestCluster, db: &str, queue: &str, name: &str) -> ConsumerConfig {
    let mut cfg = ConsumerConfig::new(&c.connstr(db), queue, name);
    cfg.poll_interval = Duration::from_millis(100);
    cfg.error_delay = Duration::from_millis(50);
    cfg
}

/// Waits until `sql` returns `want` in `db`.
async fn wait_count(c: &TestCluster, db: &str, sql: &str, want: i64) {
    wait_for(&format!("{sql} = {want} in {db}"), WAIT, || {
        let n = count(c, db, sql);
        async move { (n == want).then_some(()) }
    })
    .await
}

fn assert_once_in_order(c: &TestCluster, db: &str, n: i64) {
    let out = c.psql(
        db,
        "select count(*), count(distinct ev_id), \
                bool_and(ev_data::int = rn) from (select ev_id, ev_data, \
                row_number() over (order by ctid) as rn from applied) s",
    );
    assert_eq!(out, format!("{n}|{n}|t"), "applied once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_library() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("pgqd=info")),
        )
        .with_test_writer()
        .try_init();
    let c = TestCluster::start();
    c.ensure_template();
    readme_example(&c).await;
    poison_events_end_in_failed_table(&c).await;
    handler_error_rolls_back_the_batch(&c).await;
    cursor_mode_delivers_chunks(&c).await;
    wakes_on_tick_notify(&c).await;
    remote_consumer_skips_applied_batch(&c).await;
    serial_consumer_tracks_ticks(&c).await;
    coop_subconsumers_share_the_queue(&c).await;
    coop_takes_over_a_silent_subconsumers_batch(&c).await;
    wakes_on_the_daemons_tick(&c).await;
}

#[test]
fn readme_holds_the_example_verbatim() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/consumer.rs"))
            .expect("examples/consumer.rs");
    assert!(
        readme.contains(&format!("```rust\n{example}```\n")),
        "README's \"Writing a consumer\" block must be examples/consumer.rs verbatim"
    );
}

async fn readme_example(c: &TestCluster) {
    eprintln!("case: readme_example");
    let db = "ex";
    c.create_pgq_db(db);
    c.psql(
        db,
        "select pgq.create_queue('orders'); \
         create table audit_log (ev_id bigint primary key, ev_type text, ev_data text)",
    );
    let stop = CancellationToken::new();
    let t = ticker(c, db, "orders", &stop);
    let connstr = c.connstr(db);
    let s2 = stop.clone();
    let run = tokio::spawn(async move { example::consume(&connstr, s2).await });
    wait_count(c, db, "select count(*) from pgq.subscription", 1).await;
    c.psql(
        db,
        "select pgq.insert_event('orders', 'order.created', '{\"id\": 42}')",
    );
    wait_count(
        c,
        db,
        "select count(*) from audit_log where ev_type = 'order.created'",
        1,
    )
    .await;
    stop.cancel();
    run.await
        .expect("join")
        .expect("consume returns Ok on stop");
    t.await.expect("ticker");
}

async fn poison_events_end_in_failed_table(c: &TestCluster) {
    eprintln!("case: poison_events_end_in_failed_table");
    let db = "poison";
    setup(c, db, "q");
    c.psql(db, "create schema ops");
    let mut cfg = fast(c, db, "q", "c1");
    cfg.max_retries = 2;
    cfg.failed_table = "ops.failed".into();
    let consumer = Consumer::new(cfg).expect("config");
    consumer.register().await.expect("register");
    produce(c, db, "q", 1, 5);
    c.psql(db, "select pgq.insert_event('q', 'row', 'poison')");
    produce(c, db, "q", 6, 10);
    let stop = CancellationToken::new();
    let t = ticker(c, db, "q", &stop);
    let progress = consumer.progress();
    let run = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut h = PerEvent {
                handler: Apply {
                    consumer: "c1".into(),
                },
                retry_delay: Duration::ZERO,
            };
            consumer.run(&mut h, &stop).await
        })
    };
    wait_count(c, db, "select count(*) from ops.failed", 1).await;
    stop.cancel();
    run.await.expect("join").expect("run");
    t.await.expect("ticker");
    // The poison event's own inserts were rolled back each time; the others are applied once.
    assert_eq!(
        count(
            c,
            db,
            "select count(*) from applied where ev_data = 'poison'"
        ),
        0
    );
    assert_eq!(count(c, db, "select count(*) from applied"), 10);
    assert_eq!(
        count(c, db, "select count(distinct ev_id) from applied"),
        10
    );
    assert_eq!(
        c.psql(db, "select ev_data, ev_retry, queue_name, consumer_name, reason like '%poison event%' from ops.failed"),
        "poison|2|q|c1|t"
    );
    assert_eq!(
        count(c, db, "select count(*) from pgq.retry_queue"),
        0,
        "not retried again"
    );
    let p = progress.snapshot();
    assert_eq!((p.retried, p.failed), (2, 1), "{p:?}");
}

async fn handler_error_rolls_back_the_batch(c: &TestCluster) {
    eprintln!("case: handler_error_rolls_back_the_batch");
    let db = "flaky";
    setup(c, db, "q");
    let consumer = Consumer::new(fast(c, db, "q", "c1")).expect("config");
    consumer.register().await.expect("register");
    produce(c, db, "q", 1, 20);
    c.psql(db, "select pgq.ticker('q')");
    let fail = Arc::new(AtomicU32::new(3));
    let calls = Arc::new(AtomicU32::new(0));
    let mut h = Flaky {
        fail: fail.clone(),
        calls: calls.clone(),
    };
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let run = tokio::spawn(async move { consumer.run(&mut h, &s2).await });
    wait_count(c, db, "select count(*) from applied", 20).await;
    stop.cancel();
    run.await.expect("join").expect("run");
    assert_eq!(fail.load(Ordering::SeqCst), 0);
    assert!(calls.load(Ordering::SeqCst) >= 4);
    assert_once_in_order(c, db, 20);
}

/// Counts deliveries and their sizes.
struct Chunks {
    sizes: Vec<usize>,
}

impl Handler for Chunks {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        batch: &mut Batch,
    ) -> Result<(), BoxError> {
        self.sizes.push(batch.len());
        for ev in batch.events() {
            tx.execute(
                "insert into applied (ev_id, ev_data) values ($1, $2)",
                &[&ev.id, &ev.data],
            )
            .await?;
        }
        Ok(())
    }
}

async fn cursor_mode_delivers_chunks(c: &TestCluster) {
    eprintln!("case: cursor_mode_delivers_chunks");
    let db = "cursor";
    setup(c, db, "q");
    let mut cfg = fast(c, db, "q", "c1");
    cfg.fetch_size = Some(10);
    let consumer = Consumer::new(cfg).expect("config");
    consumer.register().await.expect("register");
    produce(c, db, "q", 1, 35);
    c.psql(db, "select pgq.ticker('q')");
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let run = tokio::spawn(async move {
        let mut h = Chunks { sizes: Vec::new() };
        consumer.run(&mut h, &s2).await.map(|_| h.sizes)
    });
    wait_count(c, db, "select count(*) from applied", 35).await;
    stop.cancel();
    let sizes = run.await.expect("join").expect("run");
    assert_eq!(sizes, vec![10, 10, 10, 5]);
    assert_once_in_order(c, db, 35);
}

async fn wakes_on_tick_notify(c: &TestCluster) {
    eprintln!("case: wakes_on_tick_notify");
    let db = "notify";
    setup(c, db, "q");
    let mut cfg = fast(c, db, "q", "c1");
    cfg.poll_interval = Duration::from_secs(120);
    let consumer = Consumer::new(cfg).expect("config");
    consumer.register().await.expect("register");
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let run = tokio::spawn(async move {
        let mut h = Chunks { sizes: Vec::new() };
        consumer.run(&mut h, &s2).await
    });
    // Let it go idle (no batch yet), then tick with the daemon's notification.
    tokio::time::sleep(Duration::from_millis(500)).await;
    produce(c, db, "q", 1, 3);
    let started = std::time::Instant::now();
    c.psql(
        db,
        "begin; select pgq.ticker('q'); notify pgqd_tick, 'other'; notify pgqd_tick, 'q'; commit",
    );
    wait_count(c, db, "select count(*) from applied", 3).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "woke on NOTIFY, not the 120 s poll"
    );
    stop.cancel();
    run.await.expect("join").expect("run");
}

async fn remote_consumer_skips_applied_batch(c: &TestCluster) {
    eprintln!("case: remote_consumer_skips_applied_batch");
    let (src, dst) = ("rsrc", "rdst");
    setup(c, src, "q");
    c.create_db(dst);
    install_schema(c, dst, &["ext"]);
    c.psql(
        dst,
        "create table applied (ev_id bigint, ev_data text, consumer text default '')",
    );
    let mut cfg = fast(c, src, "q", "rc");
    cfg.target = Some(c.connstr(dst));
    let consumer = Consumer::new(cfg).expect("config");
    consumer.register().await.expect("register");
    // Batch 1 (events 1..5): pretend the target applied it and we crashed before finish_batch.
    produce(c, src, "q", 1, 5);
    c.psql(src, "select pgq.ticker('q')");
    let b1 = c.psql(src, "select pgq.next_batch('q', 'rc')");
    c.psql(dst, &format!("select pgq_ext.set_batch_done('rc', {b1})"));
    produce(c, src, "q", 6, 10);
    c.psql(src, "select pgq.ticker('q')");
    let progress = consumer.progress();
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let run = tokio::spawn(async move {
        let mut h = PerEvent {
            handler: Apply {
                consumer: String::new(),
            },
            retry_delay: Duration::ZERO,
        };
        consumer.run(&mut h, &s2).await
    });
    wait_count(c, dst, "select count(*) from applied", 5).await;
    wait_count(c, src, "select count(*) from pgq.subscription where sub_batch is null and sub_last_tick = (select max(tick_id) from pgq.tick)", 1).await;
    stop.cancel();
    run.await.expect("join").expect("run");
    assert_eq!(
        c.psql(
            dst,
            "select min(ev_data::int), max(ev_data::int) from applied"
        ),
        "6|10"
    );
    assert_eq!(progress.snapshot().skipped, 1);
    assert_eq!(
        count(
            c,
            dst,
            "select count(*) from pgq_ext.completed_batch where consumer_id = 'rc'"
        ),
        1
    );
}

async fn serial_consumer_tracks_ticks(c: &TestCluster) {
    eprintln!("case: serial_consumer_tracks_ticks");
    let (src, dst) = ("ssrc", "sdst");
    setup(c, src, "q");
    c.create_db(dst);
    install_schema(c, dst, &["ext"]);
    c.psql(
        dst,
        "create table applied (ev_id bigint, ev_data text, consumer text default '')",
    );
    let mut cfg = fast(c, src, "q", "sc");
    cfg.target = Some(c.connstr(dst));
    cfg.tracking = Tracking::Tick;
    let consumer = Consumer::new(cfg).expect("config");
    consumer.register().await.expect("register");
    produce(c, src, "q", 1, 7);
    let stop = CancellationToken::new();
    let t = ticker(c, src, "q", &stop);
    let s2 = stop.clone();
    let run = tokio::spawn(async move {
        let mut h = PerEvent {
            handler: Apply {
                consumer: String::new(),
            },
            retry_delay: Duration::ZERO,
        };
        consumer.run(&mut h, &s2).await
    });
    wait_count(c, dst, "select count(*) from applied", 7).await;
    stop.cancel();
    run.await.expect("join").expect("run");
    t.await.expect("ticker");
    // The target's last tick is the consumer's position in the source.
    let last_dst = c.psql(dst, "select pgq_ext.get_last_tick('sc')");
    let last_src = c.psql(src, "select sub_last_tick from pgq.subscription");
    assert_eq!(last_dst, last_src);
    assert_once_in_order(c, dst, 7);
}

async fn coop_subconsumers_share_the_queue(c: &TestCluster) {
    eprintln!("case: coop_subconsumers_share_the_queue");
    let db = "coop";
    setup(c, db, "q");
    install_schema(c, db, &["coop"]);
    let mut consumers = Vec::new();
    for sub in ["s1", "s2"] {
        let mut cfg = fast(c, db, "q", "group");
        cfg.coop = Some(Coop {
            subconsumer: sub.into(),
            dead_interval: Some(Duration::from_secs(60)),
        });
        let consumer = Consumer::new(cfg).expect("config");
        consumer.register().await.expect("register");
        consumers.push((sub, consumer));
    }
    let stop = CancellationToken::new();
    let t = ticker(c, db, "q", &stop);
    let mut runs = Vec::new();
    for (sub, consumer) in consumers {
        let s2 = stop.clone();
        runs.push(tokio::spawn(async move {
            let mut h = PerEvent {
                handler: Apply {
                    consumer: sub.into(),
                },
                retry_delay: Duration::ZERO,
            };
            consumer.run(&mut h, &s2).await
        }));
    }
    for i in 0..20 {
        produce(c, db, "q", i * 10 + 1, i * 10 + 10);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    wait_count(c, db, "select count(*) from applied", 200).await;
    stop.cancel();
    for r in runs {
        r.await.expect("join").expect("run");
    }
    t.await.expect("ticker");
    assert_eq!(
        count(c, db, "select count(distinct ev_id) from applied"),
        200
    );
    let subs: BTreeSet<String> = c
        .psql(db, "select distinct consumer from applied")
        .lines()
        .map(str::to_string)
        .collect();
    eprintln!("coop: events applied by {subs:?}");
}

async fn wakes_on_the_daemons_tick(c: &TestCluster) {
    eprintln!("case: wakes_on_the_daemons_tick");
    let db = "daemon_notify";
    setup(c, db, "q");
    let mut cfg = fast(c, db, "q", "c1");
    cfg.poll_interval = Duration::from_secs(300);
    let consumer = Consumer::new(cfg).expect("config");
    consumer.register().await.expect("register");
    let daemon = daemon_support::Daemon::start(daemon_support::test_config(c)).await;
    daemon.wait_serving(db, true).await;
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let run = tokio::spawn(async move {
        let mut h = Chunks { sizes: Vec::new() };
        consumer.run(&mut h, &s2).await
    });
    // Idle first (its first next_batch found nothing), then events: only the daemon's
    // NOTIFY can wake it within the wait below.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        produce(c, db, "q", i * 10 + 1, i * 10 + 10);
        let want = i64::from(i * 10 + 10);
        wait_for(
            "the consumer wakes on the daemon's tick",
            Duration::from_secs(20),
            || {
                let n = count(c, db, "select count(*) from applied");
                async move { (n == want).then_some(()) }
            },
        )
        .await;
    }
    stop.cancel();
    run.await.expect("join").expect("run");
    daemon.stop().await.expect("daemon stops");
    assert_once_in_order(c, db, 30);
}

async fn coop_takes_over_a_silent_subconsumers_batch(c: &TestCluster) {
    eprintln!("case: coop_takes_over_a_silent_subconsumers_batch");
    let db = "takeover";
    setup(c, db, "q");
    install_schema(c, db, &["coop"]);
    c.psql(db, "select pgq_coop.register_subconsumer('q', 'grp', 's1')");
    let mut cfg = fast(c, db, "q", "grp");
    cfg.coop = Some(Coop {
        subconsumer: "s2".into(),
        dead_interval: Some(Duration::from_secs(60)),
    });
    let consumer = Consumer::new(cfg).expect("config");
    assert!(consumer.register().await.expect("register"), "s2 is new");
    produce(c, db, "q", 1, 5);
    c.psql(db, "select pgq.ticker('q')");
    // s1 takes the batch and goes silent for an hour.
    let batch = c.psql(db, "select pgq_coop.next_batch('q', 'grp', 's1')");
    assert!(!batch.is_empty(), "s1 got a batch");
    c.psql(
        db,
        "update pgq.subscription set sub_active = now() - interval '1 hour' \
          where sub_consumer = (select co_id from pgq.consumer where co_name = 'grp.s1')",
    );
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let run = tokio::spawn(async move {
        let mut h = PerEvent {
            handler: Apply {
                consumer: "s2".into(),
            },
            retry_delay: Duration::ZERO,
        };
        let r = consumer.run(&mut h, &s2).await;
        (r, consumer)
    });
    wait_count(
        c,
        db,
        "select count(*) from applied where consumer = 's2'",
        5,
    )
    .await;
    stop.cancel();
    let (r, consumer) = run.await.expect("join");
    r.expect("run");
    assert_once_in_order(c, db, 5);
    assert_eq!(
        count(
            c,
            db,
            "select count(*) from pgq.consumer where co_name = 'grp.s1'"
        ),
        count(
            c,
            db,
            "select count(*) from pgq.consumer where co_name = 'grp.s1' and co_id not in (select sub_consumer from pgq.subscription)"
        ),
        "s1's subscription went with the takeover"
    );
    assert!(
        consumer.unregister().await.expect("unregister"),
        "s2 was registered"
    );
    assert_eq!(
        count(
            c,
            db,
            "select count(*) from pgq.subscription s join pgq.consumer co on co.co_id = s.sub_consumer where co.co_name = 'grp.s2'"
        ),
        0
    );
}
