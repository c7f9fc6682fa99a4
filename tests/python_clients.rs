//! The real Python clients of pgq_ext and pgq_coop (Debian's `python3-pgq`, run with
//! `/usr/bin/python3`) against our schema: `pgq.CoopConsumer` with several subconsumers,
//! one of them killed mid-batch and its batch taken over; `pgq.RemoteConsumer` (pgq_ext
//! batch tracking) and `pgq.SerialConsumer` (pgq_ext tick tracking) applying into a second
//! database, each surviving a crash between the target commit and `pgq.finish_batch`.
//!
//! The consumers are the small scripts in `tests/python/consumers.py`; every event they
//! process becomes a row of a table `applied`, so "every event applied once" is a query.
//! Ticks are made here with `pgq.ticker()`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{TestCluster, wait_until_true};

const PYTHON: &str = "/usr/bin/python3";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/consumers.py")
}

/// libpq connection string for a database of the cluster, as the scripts get it.
fn dsn(c: &TestCluster, db: &str) -> String {
    format!(
        "host={} port={} user=postgres dbname={db}",
        c.socket_dir.display(),
        c.port
    )
}

/// Writes a DBScript ini file for `service` and returns its path.
fn ini(c: &TestCluster, name: &str, service: &str, keys: &[(&str, String)]) -> PathBuf {
    let mut text = format!("[{service}]\nloop_delay = 0.05\n");
    for (k, v) in keys {
        text.push_str(&format!("{k} = {v}\n"));
    }
    let path = c.dir.join(format!("{name}.ini"));
    fs::write(&path, text).expect("write ini");
    path
}

fn command(kind: &str, ini: &Path, extra: &[&str]) -> Command {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} missing: install python3-pgq (scripts/setup.sh)"
    );
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script())
        .arg(kind)
        .arg(ini)
        .arg("-v")
        .args(extra)
        .env_remove("PYTHONPATH")
        .stdin(Stdio::null());
    cmd
}

/// Runs a consumer to completion (it stops when the queue has nothing for it).
fn run(kind: &str, ini: &Path, extra: &[&str]) -> Output {
    let out = command(kind, ini, extra)
        .output()
        .expect("run python consumer");
    let _ = fs::write(
        ini.with_extension(format!("{}.log", extra.join(""))),
        [out.stdout.as_slice(), out.stderr.as_slice()].concat(),
    );
    out
}

fn log_of(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A consumer process that runs until killed; killed (SIGKILL) on drop.
struct Running(Child);

impl Running {
    fn start(kind: &str, ini: &Path) -> Running {
        let log = fs::File::create(ini.with_extension("log")).expect("log file");
        let child = command(kind, ini, &[])
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start python consumer");
        Running(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A queue that ticks on every `pgq.ticker()` call that has new events.
fn make_queue(c: &TestCluster, db: &str, queue: &str) {
    c.psql(db, &format!("select pgq.create_queue('{queue}')"));
    c.psql(
        db,
        &format!(
            "update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '1 hour'
              where queue_name = '{queue}'"
        ),
    );
}

/// Inserts `n` events of type `ev_type` in one transaction and ticks.
fn produce(c: &TestCluster, db: &str, queue: &str, ev_type: &str, n: u32) {
    c.psql(
        db,
        &format!(
            "select count(pgq.insert_event('{queue}', '{ev_type}', i::text))
               from generate_series(1, {n}) i"
        ),
    );
    c.psql(db, &format!("select pgq.ticker('{queue}')"));
}

/// (rows, distinct event ids) in `applied`.
fn applied(c: &TestCluster, db: &str) -> (i64, i64) {
    let s = c.psql(
        db,
        "select count(*) || ' ' || count(distinct ev_id) from applied",
    );
    let mut it = s.split(' ').map(|x| x.parse::<i64>().expect("count"));
    (it.next().unwrap(), it.next().unwrap())
}

fn event_count(c: &TestCluster, db: &str, queue: &str) -> i64 {
    c.psql(
        db,
        &format!("select count(*) from pgq.event_{}", queue_id(c, db, queue)),
    )
    .parse()
    .expect("count")
}

fn queue_id(c: &TestCluster, db: &str, queue: &str) -> String {
    c.psql(
        db,
        &format!("select queue_id from pgq.queue where queue_name = '{queue}'"),
    )
}

const APPLIED: &str = "create table applied (ev_id bigint, batch_id bigint, who text)";

/// CoopConsumer: three subconsumers share one position. One is killed (SIGKILL) while it
/// holds a batch; after the dead interval another takes that batch over. Every event is
/// processed once, and the killed subconsumer's batch by someone else.
#[test]
fn coop_consumer_subconsumers_and_takeover() {
    let c = TestCluster::start();
    c.create_pgq_db("src");
    common::install_schema(&c, "src", &["coop"]);
    c.psql("src", APPLIED);
    make_queue(&c, "src", "cq");
    let conf = |sub: &str, extra: &[(&str, String)]| {
        let mut keys = vec![
            ("job_name", "coop_test".to_string()),
            ("src_db", dsn(&c, "src")),
            ("pgq_queue_name", "cq".to_string()),
            ("subconsumer_name", sub.to_string()),
        ];
        keys.extend(extra.iter().cloned());
        ini(&c, &format!("coop_{sub}"), "coop_applier", &keys)
    };
    let stall_file = c.dir.join("stalled-batch");
    let victim = conf(
        "victim",
        &[("stall_file", stall_file.display().to_string())],
    );
    let workers: Vec<PathBuf> = ["w1", "w2"]
        .iter()
        .map(|s| conf(s, &[("subconsumer_timeout", "1 second".to_string())]))
        .collect();

    // Registration through the client (CoopConsumer.register_consumer).
    for ini in workers.iter().chain([&victim]) {
        let out = run("coop", ini, &["--register"]);
        assert!(out.status.success(), "register: {}", log_of(&out));
    }
    assert_eq!(
        c.psql(
            "src",
            "select string_agg(co_name, ',' order by co_name) from pgq.subscription
               join pgq.consumer on co_id = sub_consumer"
        ),
        "coop_test,coop_test.victim,coop_test.w1,coop_test.w2"
    );

    // The victim alone gets the first batch and stalls in it; then it is killed.
    c.psql(
        "src",
        "select count(pgq.insert_event('cq', case when i = 25 then 'stall' else 'data' end,
                                        i::text))
           from generate_series(1, 50) i",
    );
    c.psql("src", "select pgq.ticker('cq')");
    let mut v = Running::start("coop", &victim);
    wait_until_true(
        "the victim to hold its batch",
        Duration::from_secs(15),
        || stall_file.exists(),
    );
    let stalled: i64 = fs::read_to_string(&stall_file)
        .expect("read stall file")
        .trim()
        .parse()
        .expect("batch id");
    v.kill();
    assert_eq!(
        c.psql(
            "src",
            "select sub_batch from pgq.subscription
               join pgq.consumer on co_id = sub_consumer where co_name = 'coop_test.victim'"
        ),
        stalled.to_string(),
        "the killed subconsumer still holds its batch"
    );
    assert_eq!(applied(&c, "src"), (0, 0), "the killed batch left nothing");

    // Two workers run while more batches arrive; they share them and, once the victim
    // has been silent for a second, take its batch over.
    let _w: Vec<Running> = workers.iter().map(|i| Running::start("coop", i)).collect();
    for _ in 0..20 {
        produce(&c, "src", "cq", "data", 25);
    }
    let total = event_count(&c, "src", "cq");
    assert_eq!(total, 550);
    wait_until_true(
        "every event to be processed",
        Duration::from_secs(30),
        || applied(&c, "src").0 >= total,
    );
    // Let the workers poll a little more: nothing may be processed twice later either.
    produce(&c, "src", "cq", "data", 10);
    wait_until_true("the last batch", Duration::from_secs(15), || {
        applied(&c, "src").0 >= total + 10
    });
    assert_eq!(
        applied(&c, "src"),
        (total + 10, total + 10),
        "each event once"
    );

    let taken_by = c.psql(
        "src",
        &format!("select string_agg(distinct who, ',') from applied where batch_id = {stalled}"),
    );
    assert!(
        taken_by == "w1" || taken_by == "w2",
        "stalled batch {stalled} processed by {taken_by:?}"
    );
    assert_eq!(
        c.psql(
            "src",
            &format!("select count(*) from applied where batch_id = {stalled}")
        ),
        "50",
        "the taken-over batch is the whole stalled batch"
    );
    // Both workers did work, and no batch went to two of them.
    assert_eq!(
        c.psql("src", "select count(distinct who) from applied"),
        "2"
    );
    assert_eq!(
        c.psql(
            "src",
            "select count(*) from (select batch_id from applied group by 1
                                    having count(distinct who) > 1) x"
        ),
        "0"
    );
    // The victim was unregistered by the takeover.
    assert_eq!(
        c.psql(
            "src",
            "select count(*) from pgq.subscription
               join pgq.consumer on co_id = sub_consumer where co_name = 'coop_test.victim'"
        ),
        "0"
    );
}

/// The two target-side consumers: a first run crashes right after the target commit of
/// its first batch (before pgq.finish_batch); the second run gets the same batch again,
/// recognises it through pgq_ext and skips it, then applies the rest.
fn remote_side(kind: &str, service: &str) {
    let c = TestCluster::start();
    c.create_pgq_db("src");
    c.create_pgq_db("dst");
    common::install_schema(&c, "dst", &["ext"]);
    c.psql("dst", APPLIED);
    make_queue(&c, "src", "q");
    let keys = |crash: &str| {
        vec![
            ("job_name", format!("{kind}_test")),
            ("src_db", dsn(&c, "src")),
            ("dst_db", dsn(&c, "dst")),
            ("pgq_queue_name", "q".to_string()),
            ("crash_after_apply", crash.to_string()),
        ]
    };
    let crashing = ini(&c, &format!("{kind}_crash"), service, &keys("1"));
    let normal = ini(&c, &format!("{kind}_normal"), service, &keys("0"));

    let out = run(kind, &normal, &["--register"]);
    assert!(out.status.success(), "register: {}", log_of(&out));
    for n in [30, 20, 10] {
        produce(&c, "src", "q", "data", n);
    }

    let out = run(kind, &crashing, &[]);
    assert_eq!(out.status.code(), Some(3), "crash run: {}", log_of(&out));
    assert_eq!(applied(&c, "dst"), (30, 30), "first batch applied");
    let open = c.psql(
        "src",
        &format!("select sub_batch from pgq.subscription join pgq.consumer on co_id = sub_consumer where co_name = '{kind}_test'"),
    );
    assert!(!open.is_empty(), "the crashed run left its batch open");

    let out = run(kind, &normal, &[]);
    assert!(out.status.success(), "second run: {}", log_of(&out));
    assert_eq!(applied(&c, "dst"), (60, 60), "every event applied once");
    assert_eq!(
        c.psql(
            "src",
            &format!("select pending_events from pgq.get_consumer_info('q', '{kind}_test')")
        ),
        "0"
    );

    // More work later goes on from there.
    produce(&c, "src", "q", "data", 5);
    let out = run(kind, &normal, &[]);
    assert!(out.status.success(), "third run: {}", log_of(&out));
    assert_eq!(applied(&c, "dst"), (65, 65));
    let last_batch = c.psql("dst", "select max(batch_id) from applied");
    let last_tick = c.psql(
        "src",
        &format!("select last_tick from pgq.get_consumer_info('q', '{kind}_test')"),
    );
    if kind == "remote" {
        assert_eq!(
            c.psql(
                "dst",
                "select consumer_id || ':' || subconsumer_id || ':' || last_batch_id
                   from pgq_ext.completed_batch"
            ),
            format!("remote_test::{last_batch}")
        );
    } else {
        assert_eq!(
            c.psql("dst", "select pgq_ext.get_last_tick('serial_test')"),
            last_tick
        );
    }
}

#[test]
fn remote_consumer_applies_each_batch_once() {
    remote_side("remote", "remote_applier");
}

#[test]
fn serial_consumer_tracks_ticks() {
    remote_side("serial", "serial_applier");
}
