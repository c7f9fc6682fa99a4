//! The admin commands (issue #5) end to end: the built `pgqd` binary against a throwaway
//! cluster, one database per test. Checks happy paths, error messages and exit codes,
//! the JSON output parsed and compared with the SQL functions' own numbers, hostile
//! names, `tail` stopped by SIGINT without leaving its consumer, `status --check`'s
//! Nagios codes, and `tick` with and without a running ticker.
//!
//! The tests of this file share one cluster while they overlap in time: [`shared`] hands
//! out an `Arc` and the cluster stops when the last holder is done (never a `static`
//! owner, which would leak the server).

mod common;
mod daemon_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use common::{TestCluster, wait_exit, wait_until};
use serde_json::Value;

static SHARED: Mutex<Weak<Mutex<TestCluster>>> = Mutex::new(Weak::new());

/// The file's cluster, started by the first test that asks.
fn shared() -> Arc<Mutex<TestCluster>> {
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = slot.upgrade() {
        return c;
    }
    let c = Arc::new(Mutex::new(TestCluster::start()));
    *slot = Arc::downgrade(&c);
    c
}

/// One test's database in the shared cluster.
struct Fx {
    cluster: Arc<Mutex<TestCluster>>,
    base: String,
    db: String,
}

impl Fx {
    /// A fresh database with our pgq schema.
    fn new(db: &str) -> Fx {
        let cluster = shared();
        let base = {
            let c = cluster.lock().unwrap_or_else(|e| e.into_inner());
            c.create_pgq_db(db);
            format!(
                "host={} port={} user=postgres",
                c.socket_dir.display(),
                c.port
            )
        };
        Fx {
            cluster,
            base,
            db: db.to_string(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&TestCluster) -> T) -> T {
        f(&self.cluster.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs SQL in this test's database through psql; returns its unaligned output.
    fn sql(&self, q: &str) -> String {
        self.with(|c| c.psql(&self.db, q))
    }

    /// The command for `pgqd ARGS --connstr … --dbname DB`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgqd"));
        cmd.args(args)
            .arg("--connstr")
            .arg(&self.base)
            .arg("--dbname")
            .arg(&self.db)
            .env_remove("PGDATABASE")
            .env_remove("PGHOST")
            .env_remove("PGUSER")
            .stdin(Stdio::null());
        cmd
    }

    fn pgqd(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run pgqd")
    }

    /// Runs pgqd, asserts exit code 0, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.pgqd(args);
        assert_eq!(o.status.code(), Some(0), "pgqd {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs pgqd with `--format json`, asserts success, parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
    }

    /// Runs pgqd, asserts the exit code and that the output mentions `needle`.
    fn fails(&self, code: i32, args: &[&str], needle: &str) -> String {
        let o = self.pgqd(args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(code), "pgqd {args:?}: {t}");
        assert!(
            t.contains(needle),
            "pgqd {args:?}: expected {needle:?} in: {t}"
        );
        t
    }

    /// Makes a tick now, as the ticker would (no daemon runs in these tests unless they
    /// start one). The queue's ticker_max_count is set to 1 so that any new event makes
    /// the tick due: force_tick would do too, but it inflates the event sequence and with
    /// it pending_events, which the tests compare.
    fn tick(&self, queue: &str) {
        let q = queue.replace('\'', "''");
        self.sql(&format!(
            "select pgq.set_queue_config('{q}', 'ticker_max_count', '1')"
        ));
        let t = self.sql(&format!("select pgq.ticker('{q}')"));
        assert!(!t.is_empty(), "no tick made for {queue:?} (no new events?)");
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn every_command_has_help_with_an_example_and_usage_errors_exit_2() {
    let bin = env!("CARGO_BIN_EXE_pgqd");
    for name in [
        "uninstall",
        "create",
        "drop",
        "config",
        "register",
        "unregister",
        "status",
        "tick",
        "pause",
        "resume",
        "insert",
        "retry-queue",
        "tail",
    ] {
        let o = Command::new(bin).args([name, "--help"]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{name} --help");
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(help.contains("Example"), "{name} --help: {help}");
        let o = Command::new(bin)
            .args([name, "--no-such-flag"])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{name} --no-such-flag: {}",
            text(&o)
        );
    }
    let o = Command::new(bin)
        .args(["status", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("EXIT CODE 2 DOES NOT MEAN A USAGE ERROR"));
    // status --check: a bad command line is UNKNOWN (3), not 2 (CRITICAL to a monitor).
    let o = Command::new(bin)
        .args(["status", "--check", "--max-lag", "soon"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // Settings pgq.set_queue_config does not accept: refused before connecting.
    let o = Command::new(bin)
        .args(["config", "q", "disable_insert=true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("accepts only ticker_max_count"),
        "{}",
        text(&o)
    );
}

#[test]
fn queue_lifecycle_create_config_pause_drop() {
    let fx = Fx::new("lifecycle");
    assert!(
        fx.ok(&["create", "orders"])
            .contains("created queue \"orders\"")
    );
    assert!(fx.ok(&["create", "orders"]).contains("already exists"));
    assert_eq!(
        fx.sql("select count(*) from pgq.get_queue_info('orders')"),
        "1"
    );

    let cfg = fx.json(&["config", "orders"]);
    assert_eq!(cfg["queue"], "orders");
    assert_eq!(cfg["ticker_paused"], false);
    assert_eq!(
        cfg["ticker_max_count"].as_i64().unwrap().to_string(),
        fx.sql("select queue_ticker_max_count from pgq.get_queue_info('orders')")
    );

    let cfg = fx.json(&[
        "config",
        "orders",
        "ticker_max_lag=5s",
        "queue_ticker_max_count=42",
        "rotation_period=1h",
    ]);
    assert_eq!(cfg["ticker_max_count"], 42);
    assert_eq!(
        fx.sql(
            "select queue_ticker_max_lag, queue_rotation_period \
               from pgq.get_queue_info('orders')"
        ),
        "00:00:05|01:00:00"
    );
    let table = fx.ok(&["config", "orders"]);
    assert!(table.contains("ticker_max_count         42"), "{table}");

    // Refused settings and bad values change nothing (one transaction).
    fx.fails(
        2,
        &["config", "orders", "disable_insert=true"],
        "does not write pgq.queue",
    );
    fx.fails(
        2,
        &[
            "config",
            "orders",
            "ticker_max_count=7",
            "ticker_max_lag=banana",
        ],
        "invalid value \"banana\" for ticker_max_lag",
    );
    assert_eq!(
        fx.sql("select queue_ticker_max_count from pgq.get_queue_info('orders')"),
        "42"
    );

    fx.ok(&["pause", "orders"]);
    assert_eq!(fx.json(&["config", "orders"])["ticker_paused"], true);
    fx.fails(1, &["tick", "orders", "--timeout", "1s"], "is paused");
    fx.ok(&["resume", "orders"]);
    assert_eq!(fx.json(&["config", "orders"])["ticker_paused"], false);

    // Unknown queue: exit 1 and what to do.
    for args in [
        &["config", "nope"][..],
        &["pause", "nope"],
        &["drop", "nope"],
        &["insert", "nope", "t", "d"],
        &["tick", "nope"],
        &["status", "nope"],
    ] {
        fx.fails(1, args, "no queue named \"nope\" in database \"lifecycle\"");
    }

    // Drop refuses while consumers are registered, --force unregisters them.
    fx.ok(&["register", "orders", "billing"]);
    fx.fails(
        1,
        &["drop", "orders"],
        "still has 1 consumer(s): \"billing\"",
    );
    assert!(
        fx.ok(&["drop", "orders", "--force"])
            .contains("unregistered 1 consumer")
    );
    assert_eq!(fx.sql("select count(*) from pgq.get_queue_info()"), "0");
    fx.fails(2, &["create", ""], "must not be empty");
}

#[test]
fn register_unregister_and_insert() {
    let fx = Fx::new("consumers");
    fx.ok(&["create", "q"]);
    let out = fx.ok(&["register", "q", "c1"]);
    let tick = fx.sql("select last_tick_id from pgq.get_queue_info('q')");
    assert!(
        out.contains(&format!("starting after tick {tick}")),
        "{out}"
    );
    assert!(
        fx.ok(&["register", "q", "c1"])
            .contains("already registered")
    );
    fx.fails(
        1,
        &["register", "q", "c2", "--at", "999999"],
        "has no tick 999999",
    );
    fx.fails(2, &["register", "q", "c2", "--at", "x"], "invalid value");

    let id = fx.ok(&[
        "insert", "q", "t1", "payload", "--extra1", "e1", "--extra4", "e4",
    ]);
    let id = id.trim();
    assert_eq!(
        fx.sql(&format!(
            "select ev_type || ',' || ev_data || ',' || ev_extra1 || ',' \
                    || coalesce(ev_extra2, '-') || ',' || ev_extra4 \
               from pgq.event_template where ev_id = {id}"
        )),
        "t1,payload,e1,-,e4"
    );

    // --at moves the subscription back to an older tick.
    fx.tick("q");
    fx.ok(&["register", "q", "c1"]);
    assert!(
        fx.ok(&["register", "q", "c1", "--at", &tick])
            .contains("moved to tick")
    );
    assert_eq!(
        fx.sql("select last_tick from pgq.get_consumer_info('q', 'c1')"),
        tick
    );

    assert!(
        fx.ok(&["unregister", "q", "c1"])
            .contains("unregistered consumer \"c1\"")
    );
    fx.fails(
        1,
        &["unregister", "q", "c1"],
        "is not registered on queue \"q\"",
    );
    assert_eq!(
        fx.sql("select count(*) from pgq.get_consumer_info('q')"),
        "0"
    );
}

#[test]
fn hostile_names_are_data_never_sql() {
    let fx = Fx::new("hostile");
    fx.sql("create table x (i int)");
    let names = [
        "'; drop table x; --",
        "with \"quotes\" and spaces",
        "ünïcødé 🚀 队列",
        "semi;colon$$dollar",
    ];
    for q in names {
        fx.ok(&["create", q]);
        fx.ok(&["register", q, q]);
        let id = fx.ok(&["insert", q, q, q]);
        assert!(id.trim().parse::<i64>().is_ok(), "{id}");
        fx.ok(&["config", q, "ticker_max_lag=10s"]);
        fx.tick(q);
    }
    let st = fx.json(&["status"]);
    let queues: Vec<&str> = st["databases"][0]["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue_name"].as_str().unwrap())
        .collect();
    for q in names {
        assert!(queues.contains(&q), "{q:?} not in {queues:?}");
    }
    let table = fx.ok(&["status"]);
    assert!(table.contains("ünïcødé 🚀 队列"), "{table}");
    for q in names {
        fx.ok(&["unregister", q, q]);
        fx.ok(&["drop", q]);
    }
    // Still there: nothing was executed.
    assert_eq!(fx.sql("select count(*) from x"), "0");

    // A database name with a quote and a space travels as a connection parameter.
    let odd = "we'ird db";
    fx.with(|c| c.create_pgq_db(odd));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgqd"));
    let o = cmd
        .args(["create", "q", "--connstr", &fx.base, "--dbname", odd])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("\"we'ird db\""), "{}", text(&o));
}

/// Queue `q` with consumer `c` that has pending events, in a fresh database.
fn with_pending(db: &str) -> Fx {
    let fx = Fx::new(db);
    fx.ok(&["create", "q"]);
    fx.ok(&["register", "q", "c"]);
    for i in 0..5 {
        fx.ok(&["insert", "q", "t", &i.to_string()]);
    }
    fx.tick("q");
    fx.ok(&["insert", "q", "t", "after the tick"]);
    fx
}

#[test]
fn status_figures_equal_the_sql_functions() {
    let fx = with_pending("status");
    let before = fx.sql(
        "select extract(epoch from lag), extract(epoch from last_seen) \
           from pgq.get_consumer_info('q', 'c')",
    );
    let st = fx.json(&["status"]);
    let after = fx.sql(
        "select extract(epoch from lag), extract(epoch from last_seen) \
           from pgq.get_consumer_info('q', 'c')",
    );
    let d = &st["databases"][0];
    assert_eq!(d["database"], "status");
    assert_eq!(
        d["pgq_version"].as_str().unwrap(),
        fx.sql("select pgq.version()")
    );
    let q = &d["queues"][0];
    let sql = fx.sql(
        "select queue_ntables, queue_cur_table, queue_ticker_max_count, ev_new, last_tick_id, \
                extract(epoch from queue_rotation_period), \
                extract(epoch from queue_ticker_max_lag) \
           from pgq.get_queue_info('q')",
    );
    let mine = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        q["ntables"],
        q["cur_table"],
        q["ticker_max_count"],
        q["ev_new"],
        q["last_tick_id"],
        f64_of(&q["rotation_period_secs"]),
        f64_of(&q["ticker_max_lag_secs"])
    );
    let norm = |s: &str| -> Vec<f64> { s.split('|').map(|x| x.parse().unwrap()).collect() };
    assert_eq!(norm(&mine), norm(&sql));
    assert_eq!(q["ev_new"], 1, "one event after the last tick");

    let c = &d["consumers"][0];
    assert_eq!(c["consumer_name"], "c");
    assert_eq!(
        format!("{}|{}", c["pending_events"], c["last_tick"]),
        fx.sql("select pending_events, last_tick from pgq.get_consumer_info('q', 'c')")
    );
    // Time figures: between the SQL's readings before and after.
    let (b, a) = (norm(&before), norm(&after));
    let lag = f64_of(&c["lag_secs"]);
    assert!(b[0] <= lag && lag <= a[0], "{b:?} <= {lag} <= {a:?}");
    let seen = f64_of(&c["last_seen_secs"]);
    assert!(b[1] <= seen && seen <= a[1], "{b:?} <= {seen} <= {a:?}");

    // The table: both sections, aligned, within 80 columns for ordinary names.
    let t = fx.ok(&["status"]);
    assert!(t.starts_with("database status (pgq "), "{t}");
    assert!(t.contains("QUEUE  ROTATION"), "{t}");
    assert!(t.contains("CONSUMER"), "{t}");
    assert!(t.lines().all(|l| l.chars().count() <= 80), "{t}");
    println!("{t}");

    // One queue, and --all (every pgq database of the cluster, this one among them).
    let one = fx.json(&["status", "q"]);
    assert_eq!(one["databases"][0]["queues"].as_array().unwrap().len(), 1);
    let all = fx.json(&["status", "--all"]);
    let dbs: Vec<&str> = all["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["database"].as_str().unwrap())
        .collect();
    assert!(dbs.contains(&"status"), "{dbs:?}");
    assert!(!dbs.contains(&"postgres"), "no pgq there: {dbs:?}");
    assert!(
        !dbs.contains(&"pgq_template"),
        "templates are skipped: {dbs:?}"
    );

    // A database without pgq.
    fx.with(|c| c.create_db("nopgq"));
    let o = Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(["status", "--connstr", &fx.base, "--dbname", "nopgq"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("has no pgq schema"), "{}", text(&o));
}

#[test]
fn status_check_gives_nagios_exit_codes() {
    let fx = with_pending("check");
    // Make the consumer 90 s behind: its last finished tick happened 90 s ago.
    fx.sql(
        "update pgq.tick set tick_time = now() - interval '90 seconds' \
          where tick_id = (select last_tick from pgq.get_consumer_info('q', 'c'))",
    );
    let check = |args: &[&str]| {
        let mut a = vec!["status", "--check"];
        a.extend_from_slice(args);
        let o = fx.pgqd(&a);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(out.lines().count(), 1, "one line: {out}");
        (o.status.code().unwrap(), out)
    };
    let (code, out) = check(&["--max-lag", "5m"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("PGQ OK - 1 consumer(s)"), "{out}");
    let (code, out) = check(&["--max-lag", "60s"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("PGQ WARNING - check/q/c lag"), "{out}");
    let (code, out) = check(&["--max-lag", "30s"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.starts_with("PGQ CRITICAL"), "{out}");
    let (code, _) = check(&["--max-lag", "60s", "--critical-lag", "80s"]);
    assert_eq!(code, 2);
    // Pending events: 5 in the consumer's next batch.
    let (code, out) = check(&["--max-pending", "3"]);
    assert_eq!(code, 1, "{out}");
    let (code, _) = check(&["--max-pending", "2"]);
    assert_eq!(code, 2);
    let (code, _) = check(&["--max-pending", "100", "--max-last-seen", "1h"]);
    assert_eq!(code, 0);
    // UNKNOWN: no threshold, unknown queue, unreachable database.
    let (code, out) = check(&[]);
    assert_eq!((code, out.starts_with("PGQ UNKNOWN")), (3, true), "{out}");
    let (code, out) = check(&["nope", "--max-lag", "1m"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("no queue named"), "{out}");
    let o = Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(["status", "--check", "--max-lag", "1m"])
        .args(["--connstr", &fx.base, "--dbname", "no_such_db"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn tick_waits_for_the_running_ticker_and_times_out_without_one() {
    let fx = Fx::new("ticking");
    fx.ok(&["create", "q"]);
    // No ticker: exit 1 after the timeout, and no tick was made by pgqd itself.
    let before = fx.sql("select last_tick_id from pgq.get_queue_info('q')");
    let t = fx.fails(
        1,
        &["tick", "q", "--timeout", "700ms"],
        "no ticker seems to run",
    );
    assert!(t.contains("\"ticking\""), "{t}");
    assert_eq!(
        fx.sql("select last_tick_id from pgq.get_queue_info('q')"),
        before
    );

    // With the daemon serving this database only, the tick comes.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let daemon = rt.block_on(async {
        let mut cfg = fx.with(daemon_support::test_config);
        cfg.database_list = vec!["ticking".into()];
        let d = daemon_support::Daemon::start(cfg).await;
        d.wait_serving("ticking", true).await;
        d
    });
    // The daemon may make a tick for the earlier force_tick first; wait until it has
    // settled so the tick below is the one `pgqd tick` asked for.
    let settled = wait_until(
        "daemon consumed the old request",
        Duration::from_secs(10),
        || {
            let now = fx.sql("select last_tick_id from pgq.get_queue_info('q')");
            (now != before).then_some(now)
        },
    );
    let out = fx.ok(&["tick", "q", "--timeout", "10s"]);
    let after = fx.sql("select last_tick_id from pgq.get_queue_info('q')");
    assert!(out.contains("tick") && out.contains("made"), "{out}");
    assert!(after.parse::<i64>().unwrap() > settled.parse::<i64>().unwrap());
    rt.block_on(daemon.stop()).expect("daemon stops cleanly");
}

#[test]
fn retry_queue_counts_and_rows() {
    let fx = Fx::new("retry");
    fx.ok(&["create", "q"]);
    assert!(fx.ok(&["retry-queue"]).contains("is empty"));
    fx.ok(&["register", "q", "c"]);
    let id = fx.ok(&["insert", "q", "t", "again"]);
    let id = id.trim();
    fx.tick("q");
    let batch = fx.sql("select pgq.next_batch('q', 'c')");
    fx.sql(&format!("select pgq.event_retry({batch}, {id}, 3600)"));
    fx.sql(&format!("select pgq.finish_batch({batch})"));

    let t = fx.ok(&["retry-queue"]);
    assert!(t.contains("QUEUE  CONSUMER  EVENTS  NEXT DUE"), "{t}");
    assert!(t.contains("in 59m") || t.contains("in 1h "), "{t}");
    let j = fx.json(&["retry-queue", "q"]);
    assert_eq!(j["summary"][0]["events"], 1);
    assert_eq!(j["summary"][0]["consumer_name"], "c");
    let n = f64_of(&j["summary"][0]["next_due_in_secs"]);
    assert!(n > 3500.0 && n <= 3600.0, "{n}");
    assert_eq!(j["events"][0]["ev_id"].to_string(), id);
    assert_eq!(j["events"][0]["ev_data"], "again");
    assert_eq!(
        fx.sql("select count(*) from pgq.retry_queue"),
        j["events"].as_array().unwrap().len().to_string()
    );
}

/// The tail consumers registered on `q` right now.
fn tail_consumers(fx: &Fx) -> String {
    fx.sql(
        "select coalesce(string_agg(consumer_name, ','), '') \
           from pgq.get_consumer_info('q') where consumer_name like 'pgqd\\_tail\\_%'",
    )
}

#[test]
fn tail_follows_events_and_unregisters_on_sigint() {
    let fx = Fx::new("tail");
    fx.ok(&["create", "q"]);
    fx.ok(&["register", "q", "real"]);
    let mut child = fx
        .cmd(&["tail", "q", "--format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let name = wait_until("tail's consumer", Duration::from_secs(10), || {
        let n = tail_consumers(&fx);
        (!n.is_empty()).then_some(n)
    });
    assert!(
        name.starts_with(&format!("pgqd_tail_{}_", child.id())),
        "{name}"
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let id = fx.ok(&[
        "insert",
        "q",
        "greeting",
        "héllo \"world\"",
        "--extra2",
        "x",
    ]);
    fx.tick("q");
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("an event line");
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["ev_id"].to_string(), id.trim());
    assert_eq!(ev["ev_data"], "héllo \"world\"");
    assert_eq!(ev["ev_extra2"], "x");
    // The real consumer still has that batch to read: tail took nothing from it.
    assert_eq!(
        fx.sql("select pending_events > 0 from pgq.get_consumer_info('q', 'real')"),
        "t"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    assert_eq!(tail_consumers(&fx), "", "tail's consumer is gone");
    assert_eq!(
        fx.sql("select count(*) from pgq.get_consumer_info('q')"),
        "1"
    );

    // --batches and --timeout end it with 0, also unregistered.
    let mut child = fx
        .cmd(&["tail", "q", "--batches", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("second tail's consumer", Duration::from_secs(10), || {
        (!tail_consumers(&fx).is_empty()).then_some(())
    });
    fx.ok(&["insert", "q", "t", "line\nbreak"]);
    fx.tick("q");
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        out.contains("line\\nbreak") && out.lines().count() == 1,
        "{out}"
    );
    assert_eq!(tail_consumers(&fx), "");
    let o = fx.pgqd(&["tail", "q", "--timeout", "300ms"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(tail_consumers(&fx), "");
}

#[test]
fn uninstall_refuses_unconsumed_events_unless_forced() {
    let fx = with_pending("uninstall");
    fx.fails(
        1,
        &["uninstall"],
        "hold unconsumed events: consumer 'c' on queue 'q'",
    );
    assert_eq!(
        fx.sql("select count(*) from pg_namespace where nspname = 'pgq'"),
        "1"
    );
    fx.fails(
        2,
        &["uninstall", "--component", "bogus"],
        "unknown component",
    );
    let out = fx.ok(&["uninstall", "--force"]);
    assert!(out.contains("pgq: dropped schema pgq"), "{out}");
    assert_eq!(
        fx.sql("select count(*) from pg_namespace where nspname = 'pgq'"),
        "0"
    );
    assert!(fx.ok(&["uninstall"]).contains("nothing to uninstall"));
    fx.fails(1, &["create", "q"], "has no pgq schema");

    // A drained queue uninstalls without --force.
    let fx = Fx::new("uninstall_clean");
    fx.ok(&["create", "q"]);
    fx.ok(&["register", "q", "c"]);
    fx.ok(&["uninstall"]);
}

#[test]
fn permission_denied_names_the_role_needed() {
    let fx = Fx::new("perms");
    fx.ok(&["create", "q"]);
    fx.sql(
        "do $$ begin if not exists (select 1 from pg_roles where rolname = 'plain') \
         then create role plain login; end if; end $$",
    );
    let as_plain = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgqd"));
        cmd.args(args)
            .arg("--connstr")
            .arg(fx.base.replace("user=postgres", "user=plain"))
            .arg("--dbname")
            .arg("perms")
            .output()
            .unwrap()
    };
    for (args, role) in [
        (&["create", "q2"][..], "pgq_admin"),
        (&["pause", "q"], "pgq_admin"),
        (&["insert", "q", "t", "d"], "pgq_writer"),
        (&["register", "q", "c"], "pgq_reader"),
        (&["retry-queue"], "pgq_admin"),
    ] {
        let o = as_plain(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let t = text(&o);
        assert!(
            t.contains("permission denied: role \"plain\"") && t.contains(role),
            "{args:?}: {t}"
        );
    }
    // Reading is public.
    let o = as_plain(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
