//! The metrics endpoint of a running daemon (issue #6), checked against the database:
//! ticks counted, consumer lag and pending events, a database without pgq shown as such,
//! the real pgq extension collected like our schema, rotation held up by a consumer, the
//! consumer lag warning and unregister policy (#8), `/readyz` going 503 while a database
//! cannot be reached and back to 200, and every metric name that the shipped dashboard
//! and alert rules use being exported; the collector's statements agreeing with pgq's info
//! functions, and a quiet database read once and then aged until a client writes.

mod common;
mod daemon_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{TestCluster, wait_for};
use daemon_support::{init_tracing, real_pgq_or_skip, test_config};
use pgqd::config::Config;
use pgqd::daemon::{self, Hooks};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A daemon run in-process with the metrics endpoint on a free loopback port.
struct Served {
    addr: SocketAddr,
    token: CancellationToken,
    join: JoinHandle<Result<(), daemon::Error>>,
    _cfg_tx: watch::Sender<Arc<Config>>,
}

impl Served {
    async fn start(mut cfg: Config) -> Served {
        init_tracing();
        cfg.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
        let (cfg_tx, cfg_rx) = watch::channel(Arc::new(cfg));
        let token = CancellationToken::new();
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let hooks = Hooks {
            http_bound: Some(bound_tx),
            ..Hooks::default()
        };
        let join = tokio::spawn(daemon::run_with(cfg_rx, token.clone(), hooks));
        let addr = tokio::time::timeout(Duration::from_secs(10), bound_rx)
            .await
            .expect("endpoint bound in time")
            .expect("endpoint address sent");
        Served {
            addr,
            token,
            join,
            _cfg_tx: cfg_tx,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        get(self.addr, path).await
    }

    /// The exposition as `name{labels}` → value.
    async fn scrape(&self) -> BTreeMap<String, f64> {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        parse(&body)
    }

    /// Waits until `series` (exact `name{labels}` text) satisfies `ok`; returns its value.
    async fn wait_metric(&self, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let (me, ok) = (self, &ok);
        wait_for(series, Duration::from_secs(20), move || async move {
            me.scrape().await.get(series).copied().filter(|v| ok(*v))
        })
        .await
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.join)
            .await
            .expect("daemon stopped in time")
            .expect("no panic")
            .expect("clean stop");
    }
}

/// A plain HTTP/1.1 GET (the test needs no client crate for three paths).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the endpoint");
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read response");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body split");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

fn parse(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn ticks_in_db(c: &TestCluster, db: &str, queue: &str) -> f64 {
    c.psql(
        db,
        &format!(
            "select count(*) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
              where q.queue_name = '{queue}'"
        ),
    )
    .parse()
    .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_agrees_with_the_database() {
    let c = TestCluster::start();
    c.create_pgq_db("app");
    c.create_db("plain");
    // "counted": ticks only on events (one per event), so the daemon's tick count can be
    // compared with pgq.tick: create_queue made one tick itself.
    // "q": two consumers whose positions are made an hour ("c") and two hours ("old") old.
    c.psql(
        "app",
        "select pgq.create_queue('counted'); \
         select pgq.set_queue_config('counted', 'ticker_max_count', '1'); \
         select pgq.set_queue_config('counted', 'ticker_max_lag', '1 day'); \
         select pgq.set_queue_config('counted', 'ticker_idle_period', '1 day'); \
         select pgq.create_queue('q'); \
         select pgq.register_consumer('q', 'old');",
    );
    // Separate transactions: a tick sees only committed events, and "c" must register
    // at the second tick.
    c.psql("app", "select pgq.force_tick('q')");
    c.psql("app", "select pgq.ticker('q')");
    c.psql(
        "app",
        "select pgq.register_consumer('q', 'c'); \
         update pgq.tick set tick_time = now() - interval '2 hours' \
          where tick_queue = (select queue_id from pgq.queue where queue_name = 'q') \
            and tick_id = 1; \
         update pgq.tick set tick_time = now() - interval '1 hour' \
          where tick_queue = (select queue_id from pgq.queue where queue_name = 'q') \
            and tick_id = 2; \
         select pgq.insert_event('q', 't', 'x') from generate_series(1, 3);",
    );
    let ext = real_pgq_or_skip(&c);
    if ext {
        c.create_ext_db("ext");
        c.psql("ext", "select pgq.create_queue('eq')");
    }
    let mut cfg = test_config(&c);
    cfg.consumer_lag_warning = Duration::from_secs(30 * 60);
    cfg.consumer_unregister_after = Duration::from_secs(90 * 60);
    let d = Served::start(cfg).await;

    // A database without pgq is shown as such; our schema's database ticks.
    d.wait_metric(
        r#"pgqd_database_state{database="plain",state="no_pgq"}"#,
        |v| v == 1.0,
    )
    .await;
    d.wait_metric(
        r#"pgqd_database_state{database="app",state="ticking"}"#,
        |v| v == 1.0,
    )
    .await;

    // Ticks: three events, three ticks, plus the one a queue with a single tick gets at once.
    for i in 0..3 {
        let before = ticks_in_db(&c, "app", "counted");
        c.psql("app", "select pgq.insert_event('counted', 'e', 'd')");
        wait_for(
            &format!("tick {i} of counted"),
            Duration::from_secs(10),
            || {
                let n = ticks_in_db(&c, "app", "counted");
                async move { (n > before).then_some(()) }
            },
        )
        .await;
    }
    let in_db = ticks_in_db(&c, "app", "counted");
    let made = d
        .wait_metric(r#"pgqd_ticks_total{database="app",queue="counted"}"#, |v| {
            v == in_db - 1.0
        })
        .await;
    assert_eq!(made, 4.0, "3 event ticks + the first tick of a fresh queue");

    // The unregister policy removed "old" (2 h behind, limit 90 min) and counted it.
    d.wait_metric(
        r#"pgqd_consumers_unregistered_total{database="app"}"#,
        |v| v == 1.0,
    )
    .await;
    let subs = c.psql(
        "app",
        "select string_agg(consumer_name, ',' order by consumer_name) \
           from pgq.get_consumer_info('q')",
    );
    assert_eq!(subs, "c", "old was unregistered, c kept");

    // "c" lags by an hour: above the 30 min warning, flagged, and its lag and pending
    // events are those pgq reports.
    let consumer = r#"{database="app",queue="q",consumer="c"}"#;
    d.wait_metric(&format!("pgqd_consumer_lagging{consumer}"), |v| v == 1.0)
        .await;
    let m = d.scrape().await;
    let lag = m[&format!("pgqd_consumer_lag_seconds{consumer}")];
    let db_lag: f64 = c
        .psql(
            "app",
            "select extract(epoch from lag) from pgq.get_consumer_info('q', 'c')",
        )
        .parse()
        .expect("lag");
    assert!(
        (lag - db_lag).abs() < 5.0 && lag > 3590.0,
        "metric lag {lag}, pgq says {db_lag}"
    );
    let pending = m[&format!("pgqd_consumer_pending_events{consumer}")];
    let db_pending: f64 = c
        .psql(
            "app",
            "select pending_events from pgq.get_consumer_info('q', 'c')",
        )
        .parse()
        .expect("pending");
    assert_eq!(pending, db_pending);
    assert!(pending >= 3.0, "three events after c's position: {pending}");
    assert!(
        !m.keys().any(|k| k.contains(r#"consumer="old""#)),
        "old's series are gone"
    );

    // The real extension is collected like our schema.
    if ext {
        d.wait_metric(
            r#"pgqd_queue_last_tick_id{database="ext",queue="eq"}"#,
            |v| v >= 1.0,
        )
        .await;
    }

    // Rotation: with a 1 s period the queue rotates once, then "c" (still on its old
    // tick) holds up the next rotation.
    c.psql(
        "app",
        "select pgq.set_queue_config('q', 'rotation_period', '1 second')",
    );
    d.wait_metric(
        r#"pgqd_queue_rotation_blocked{database="app",queue="q"}"#,
        |v| v == 1.0,
    )
    .await;
    let m = d.scrape().await;
    assert_eq!(m[&format!("pgqd_consumer_blocks_rotation{consumer}")], 1.0);
    assert_eq!(
        m[r#"pgqd_queue_rotation_blocked{database="app",queue="counted"}"#],
        0.0
    );

    // A dropped queue leaves the exposition at the next collection.
    c.psql("app", "select pgq.drop_queue('counted')");
    let dr = &d;
    wait_for(
        "counted's series gone",
        Duration::from_secs(20),
        move || async move {
            let m = dr.scrape().await;
            (!m.keys().any(|k| k.contains(r#"queue="counted""#))).then_some(())
        },
    )
    .await;

    let (status, body) = d.get("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(d.get("/nope").await.0, 404);
    d.stop().await;
}

/// Sets up queue "a" with events over three ticks, a rotation behind consumer "old" and
/// a consumer "new" after it, two retry events, and a fresh queue "b".
fn queues_with_history(c: &TestCluster, db: &str) {
    c.psql(
        db,
        "select pgq.create_queue('a'); select pgq.create_queue('b')",
    );
    for n in [2, 5] {
        c.psql(
            db,
            &format!("select pgq.insert_event('a', 't', 'x') from generate_series(1, {n})"),
        );
        c.psql(db, "select pgq.force_tick('a')");
        c.psql(db, "select pgq.ticker('a')");
        if n == 2 {
            // After the queue's creation, so its position does not block the rotation
            // below — only the next one.
            c.psql(db, "select pgq.register_consumer('a', 'old')");
        }
    }
    // Spread the ticks over time so the event rate is neither 0 nor infinite; make the
    // rotation due.
    c.psql(
        db,
        "update pgq.tick set tick_time = tick_time - (10 - tick_id) * interval '7 seconds' \
          where tick_queue = (select queue_id from pgq.queue where queue_name = 'a'); \
         update pgq.queue set queue_switch_time = now() - interval '3 hours' \
          where queue_name = 'a'",
    );
    c.psql(db, "select pgq.maint_rotate_tables_step1('a')");
    c.psql(db, "select pgq.maint_rotate_tables_step2()");
    c.psql(db, "select pgq.insert_event('a', 't', 'late')");
    c.psql(db, "select pgq.ticker('a')");
    c.psql(db, "select pgq.register_consumer('a', 'new')");
    // Two events in the retry queue of "a", one event not ticked yet.
    c.psql(
        db,
        "insert into pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_owner, \
                ev_retry, ev_type, ev_data) \
         select now() + interval '1 day', queue_id, g, now(), 1, 1, 't', 'r' \
           from pgq.queue, generate_series(1, 2) g where queue_name = 'a'; \
         select pgq.insert_event('a', 't', 'untick')",
    );
}

/// The collector's own statements (plain SQL on pgq's tables) give the figures pgq's info
/// functions give: read in one transaction, so `now()` is the same for both. On our schema
/// and, when installed, on the real extension.
#[test]
fn collector_statements_agree_with_pgq_info_functions() {
    let c = TestCluster::start();
    c.create_pgq_db("app");
    let mut dbs = vec!["app"];
    if real_pgq_or_skip(&c) {
        c.create_ext_db("ext");
        dbs.push("ext");
    }
    let queues_by_pgq = "\
        select i.queue_name::text, extract(epoch from i.ticker_lag)::float8, \
               i.ev_per_sec::float8, i.ev_new::int8, i.last_tick_id::int8, \
               extract(epoch from now() - i.queue_switch_time)::float8, \
               extract(epoch from i.queue_rotation_period)::float8, \
               (select count(*) from pgq.retry_queue r join pgq.queue q \
                    on q.queue_id = r.ev_queue where q.queue_name = i.queue_name)::int8 \
          from pgq.get_queue_info() i";
    let consumers_by_pgq = "\
        select i.queue_name::text, i.consumer_name::text, \
               extract(epoch from i.lag)::float8, extract(epoch from i.last_seen)::float8, \
               i.last_tick::int8, i.pending_events::int8, \
               coalesce((select txid_snapshot_xmin(t.tick_snapshot) <= q.queue_switch_step2 \
                           from pgq.queue q join pgq.tick t on t.tick_queue = q.queue_id \
                          where q.queue_name = i.queue_name and t.tick_id = i.last_tick), \
                        false) \
          from pgq.get_consumer_info() i";
    let rows =
        |stmt: &str| format!("(select string_agg(x::text, ';' order by x::text) from ({stmt}) x)");
    for db in dbs {
        queues_with_history(&c, db);
        for (ours, theirs) in [
            (pgqd::sql::COLLECT_QUEUES, queues_by_pgq),
            (pgqd::sql::COLLECT_CONSUMERS, consumers_by_pgq),
        ] {
            let got = c.psql(
                db,
                &format!("select {} || ' | ' || {}", rows(ours), rows(theirs)),
            );
            let (ours, theirs) = got.split_once(" | ").expect("two halves");
            assert_eq!(ours, theirs, "{db}");
        }
        // The history is what it should be: a rate, a new event and two retry events on
        // "a", a fresh "b"; "old" behind the rotation, "new" after it.
        let q = c.psql(
            db,
            &format!(
                "select string_agg(name || ':' || coalesce((rate > 0)::text, '-') || ':' \
                                   || ev_new || ':' || retry, ',' order by name) \
                   from ({}) x(name, lag, rate, ev_new, tick, age, period, retry)",
                pgqd::sql::COLLECT_QUEUES
            ),
        );
        assert_eq!(q, "a:true:1:2,b:-:0:0", "{db}");
        let k = c.psql(
            db,
            &format!(
                "select string_agg(consumer || ':' || predates, ',' order by consumer) \
                   from ({}) x(queue, consumer, lag, seen, tick, pending, predates)",
                pgqd::sql::COLLECT_CONSUMERS
            ),
        );
        assert_eq!(k, "new:false,old:true", "{db}");
    }
}

/// A database nobody writes to is read once and then its figures are handed on: the
/// consumer lag still grows with the time, and a client's write is read at the next
/// collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_database_is_not_read_again_until_written() {
    let c = TestCluster::start();
    c.create_pgq_db("app");
    // No idle ticks during the test (a tick after a single one is read). The statistics
    // are flushed before psql returns, so the activity signal's baseline has them: no
    // session may touch "app" from here until the client write below.
    c.psql(
        "app",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '1 day'); \
         select pgq.register_consumer('q', 'c'); \
         update pgq.tick set tick_time = now() - interval '1 hour'; \
         select pg_stat_force_next_flush();",
    );
    let set = std::time::Instant::now();
    let d = Served::start(test_config(&c)).await;
    let read = r#"pgqd_collections_total{database="app",source="read"}"#;
    let aged = r#"pgqd_collections_total{database="app",source="aged"}"#;
    let lag = r#"pgqd_consumer_lag_seconds{database="app",queue="q",consumer="c"}"#;
    d.wait_metric(aged, |v| v >= 2.0).await;
    let m = d.scrape().await;
    let at = set.elapsed().as_secs_f64();
    // The position is an hour old as of `set` (give or take psql's round trip).
    assert!(
        (m[lag] - (3600.0 + at)).abs() < 1.5,
        "lag {} after {at} s",
        m[lag]
    );
    d.wait_metric(aged, |v| v >= m[aged] + 3.0).await;
    let m2 = d.scrape().await;
    assert_eq!(m2[read], m[read], "no write, no read");
    let grew = m2[lag] - m[lag];
    let passed = set.elapsed().as_secs_f64() - at;
    assert!(
        grew >= 2.0 && (grew - passed).abs() < 1.0,
        "lag grew {grew} s in {passed} s"
    );

    // A client's write is seen at the next collection.
    c.psql("app", "select pgq.register_consumer('q', 'c2')");
    d.wait_metric(
        r#"pgqd_consumer_pending_events{database="app",queue="q",consumer="c2"}"#,
        |v| v == 0.0,
    )
    .await;
    assert!(d.scrape().await[read] > m[read]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_a_database_is_unreachable() {
    let c = TestCluster::start();
    c.create_pgq_db("app");
    c.psql("app", "select pgq.create_queue('q')");
    let mut cfg = test_config(&c);
    // Named explicitly: discovery would drop a database that refuses connections.
    cfg.database_list = vec!["app".into()];
    let d = Served::start(cfg).await;
    let ready = |want: u16| {
        let d = &d;
        async move {
            wait_for(
                &format!("/readyz {want}"),
                Duration::from_secs(20),
                move || async move {
                    let (s, body) = d.get("/readyz").await;
                    (s == want).then_some(body)
                },
            )
            .await
        }
    };
    d.wait_metric(
        r#"pgqd_database_state{database="app",state="ticking"}"#,
        |v| v == 1.0,
    )
    .await;
    let body = ready(200).await;
    assert!(body.starts_with("ready: 1 database ticking"), "{body}");

    c.psql("postgres", "alter database app allow_connections false");
    c.psql(
        "postgres",
        "select count(pg_terminate_backend(pid)) from pg_stat_activity \
          where datname = 'app' and application_name = 'pgqd'",
    );
    let body = ready(503).await;
    assert!(body.starts_with("app: failing: "), "{body}");
    d.wait_metric(
        r#"pgqd_database_state{database="app",state="failing"}"#,
        |v| v == 1.0,
    )
    .await;
    // The refused reconnection (55000: object not in prerequisite state) is counted.
    d.wait_metric(
        r#"pgqd_errors_total{database="app",sqlstate="55000"}"#,
        |v| v >= 1.0,
    )
    .await;
    let (status, body) = d.get("/readyz").await;
    assert_eq!(status, 503);
    assert!(body.starts_with("app: failing: cannot connect"), "{body}");

    c.psql("postgres", "alter database app allow_connections true");
    d.wait_metric(
        r#"pgqd_database_state{database="app",state="ticking"}"#,
        |v| v == 1.0,
    )
    .await;
    let body = ready(200).await;
    assert!(body.starts_with("ready: 1 database ticking"), "{body}");
    d.stop().await;
}

/// Every `pgqd_*` name in `text`, with histogram/counter suffixes taken off.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("pgqd_") {
        let start = i + pos;
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dash = std::fs::read_to_string(root.join("config/grafana-dashboard.json"))
        .expect("read the dashboard");
    let dash_json: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is JSON");
    let mut exprs = String::new();
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if let (true, Some(s)) = (k == "expr" || k == "query", v.as_str()) {
                        out.push_str(s);
                        out.push('\n');
                    }
                    walk(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dash_json, &mut exprs);
    let rules =
        std::fs::read_to_string(root.join("config/pgqd-alerts.yml")).expect("read the alert rules");
    for l in rules.lines() {
        if let Some((_, e)) = l.split_once("expr:") {
            exprs.push_str(e);
            exprs.push('\n');
        }
    }
    let used = metric_names(&exprs);
    assert!(
        used.len() >= 8,
        "dashboard and rules use pgqd metrics: {used:?}"
    );

    // A daemon serving one database with a queue and a consumer exports every family.
    let c = TestCluster::start();
    c.create_pgq_db("app");
    c.psql(
        "app",
        "select pgq.create_queue('q'); select pgq.register_consumer('q', 'c')",
    );
    let d = Served::start(test_config(&c)).await;
    d.wait_metric(
        r#"pgqd_consumer_lag_seconds{database="app",queue="q",consumer="c"}"#,
        |_| true,
    )
    .await;
    let (_, body) = d.get("/metrics").await;
    let mut exported = BTreeSet::new();
    for l in body.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        exported.insert(name.to_string());
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[],
        };
        for s in suffixes {
            exported.insert(format!("{name}{s}"));
        }
    }
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "used but not exported: {missing:?}");
    d.stop().await;
}

#[test]
fn alert_rules_pass_promtool() {
    // scripts/setup.sh installs Debian's prometheus package for promtool.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(root.join("config/pgqd-alerts.yml"))
        .output()
        .expect("run promtool (Debian package prometheus, installed by scripts/setup.sh)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");
}
