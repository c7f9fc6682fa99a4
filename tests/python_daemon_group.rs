//! Issue #9 item 1, the group consumers: Debian's `python3-pgq` `pgq.RemoteConsumer`
//! (applying into a second database, pgq_ext batch tracking) and `pgq.CoopConsumer` with
//! several subconsumers, run unchanged with `/usr/bin/python3` against our schema and
//! ticked only by our daemon (the built `pgqd` binary as a child process). Every event is
//! applied exactly once.
//!
//! The consumers are `tests/python/consumers.py` (kinds `remote` and `coop`); every event
//! they process becomes a row of a table `applied`. The `remote` kind stops when the queue
//! has no batch for it, so here it is relaunched whenever it stops, which keeps it running
//! for the whole test.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::TestCluster;

const PYTHON: &str = "/usr/bin/python3";
const BIN: &str = env!("CARGO_BIN_EXE_pgqd");
const APPLIED: &str = "create table applied (ev_id bigint, batch_id bigint, who text)";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/consumers.py")
}

/// Why the test cannot run here, if `/usr/bin/python3` cannot `import pgq`.
fn skip_reason() -> Option<String> {
    match Command::new(PYTHON)
        .args(["-c", "import pgq"])
        .env_remove("PYTHONPATH")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{PYTHON} cannot import pgq (install python3-pgq): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run {PYTHON}: {e}")),
    }
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

fn consumer(kind: &str, ini: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script())
        .arg(kind)
        .arg(ini)
        .arg("-v")
        .args(extra)
        .env_remove("PYTHONPATH");
    cmd
}

/// Runs `consumers.py KIND INI --register` and asserts it succeeded.
fn register(kind: &str, ini: &Path) {
    let out = consumer(kind, ini, &["--register"])
        .stdin(Stdio::null())
        .output()
        .expect("run --register");
    assert!(
        out.status.success(),
        "register: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process (log in `log`, appended to) killed with SIGKILL on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().expect("clone log")))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc { child, log }
    }

    /// Panics with the log if the process has exited.
    fn assert_alive(&mut self, what: &str) {
        if let Some(st) = self.child.try_wait().expect("try_wait") {
            panic!("{what} exited ({st}):\n{}", self.log_text());
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts our daemon on the cluster, as a real process.
fn start_daemon(c: &TestCluster) -> Proc {
    let cfg = c.dir.join("pgqd.toml");
    fs::write(
        &cfg,
        format!(
            "base_connstr = \"host={} port={} user=postgres\"\n\
             initial_database = \"postgres\"\n\
             ticker_period = \"100ms\"\n\
             check_period = \"500ms\"\n\
             retry_period = \"500ms\"\n\
             shutdown_timeout = \"2s\"\n",
            c.socket_dir.display(),
            c.port,
        ),
    )
    .expect("write pgqd.toml");
    let mut cmd = Command::new(BIN);
    cmd.arg(&cfg);
    Proc::spawn(cmd, c.dir.join("pgqd.log"))
}

/// A queue the daemon ticks at least every 100 ms while it has events.
fn make_queue(c: &TestCluster, db: &str, queue: &str) {
    c.psql(
        db,
        &format!(
            "select pgq.create_queue('{queue}'); \
             select pgq.set_queue_config('{queue}', 'ticker_max_lag', '100ms')"
        ),
    );
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

/// Inserts events `lo..=hi` (ev_data = the number) in one transaction.
fn insert(c: &TestCluster, db: &str, queue: &str, lo: i64, hi: i64) {
    c.psql(
        db,
        &format!(
            "select count(pgq.insert_event('{queue}', 'data', i::text))
               from generate_series({lo}, {hi}) i"
        ),
    );
}

/// The ev_ids of the queue's events, in order, comma separated.
fn queue_ev_ids(c: &TestCluster, db: &str, queue: &str) -> String {
    let qid = c.psql(
        db,
        &format!("select queue_id from pgq.queue where queue_name = '{queue}'"),
    );
    c.psql(
        db,
        &format!("select string_agg(ev_id::text, ',' order by ev_id) from pgq.event_{qid}"),
    )
}

#[test]
fn remote_consumer_ticked_by_daemon_applies_each_event_once() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    const EVENTS: i64 = 150;
    let c = TestCluster::start();
    c.create_pgq_db("src");
    c.create_pgq_db("dst");
    common::install_schema(&c, "dst", &["ext"]);
    c.psql("dst", APPLIED);
    make_queue(&c, "src", "q");

    let mut daemon = start_daemon(&c);
    let conf = ini(
        &c,
        "remote",
        "remote_applier",
        &[
            ("job_name", "remote_test".to_string()),
            ("src_db", dsn(&c, "src")),
            ("dst_db", dsn(&c, "dst")),
            ("pgq_queue_name", "q".to_string()),
        ],
    );
    register("remote", &conf);
    let log = c.dir.join("remote.out");

    // The consumer stops whenever it finds no batch; relaunch it each time it does.
    let mut py = Proc::spawn(consumer("remote", &conf, &[]), log.clone());
    let mut launches = 1;
    let keep_running = |py: &mut Proc, launches: &mut i32| {
        if let Some(st) = py.child.try_wait().expect("try_wait") {
            assert!(
                st.success(),
                "remote consumer failed ({st}):\n{}",
                py.log_text()
            );
            *py = Proc::spawn(consumer("remote", &conf, &[]), log.clone());
            *launches += 1;
        }
    };

    let start = Instant::now();
    let deadline = start + Duration::from_secs(20);
    // Six transactions a little apart, so the events span several ticks and batches.
    for chunk in 0..6 {
        let lo = chunk * 25 + 1;
        insert(&c, "src", "q", lo, lo + 24);
        keep_running(&mut py, &mut launches);
        thread::sleep(Duration::from_millis(120));
    }
    while applied(&c, "dst").0 < EVENTS {
        daemon.assert_alive("pgqd");
        keep_running(&mut py, &mut launches);
        assert!(
            Instant::now() < deadline,
            "timed out: applied {:?} of {EVENTS}\npgqd log:\n{}\nconsumer log:\n{}",
            applied(&c, "dst"),
            daemon.log_text(),
            py.log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{EVENTS} events applied after {:?} ({launches} consumer launches)",
        start.elapsed()
    );
    // A few more daemon rounds with the consumer still polling: nothing arrives twice.
    let settle = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < settle {
        keep_running(&mut py, &mut launches);
        thread::sleep(Duration::from_millis(100));
    }
    daemon.assert_alive("pgqd");
    // Let the current run end by itself (it stops once it finds no batch), so it is not
    // killed between taking a batch and finishing it.
    let stop_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = py.child.try_wait().expect("try_wait") {
            assert!(
                st.success(),
                "remote consumer failed ({st}):\n{}",
                py.log_text()
            );
            break;
        }
        assert!(
            Instant::now() < stop_deadline,
            "the remote consumer did not stop when idle:\n{}",
            py.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
    drop(py);

    assert_eq!(
        applied(&c, "dst"),
        (EVENTS, EVENTS),
        "each event exactly once"
    );
    assert_eq!(
        c.psql(
            "dst",
            "select string_agg(ev_id::text, ',' order by ev_id) from applied"
        ),
        queue_ev_ids(&c, "src", "q"),
        "exactly the queue's events"
    );
    let batches: i64 = c
        .psql("dst", "select count(distinct batch_id) from applied")
        .parse()
        .expect("count");
    assert!(batches > 1, "events came in {batches} batch(es)");
    // The consumer keeps taking batches after the last event (empty ones, the daemon
    // ticks the idle queue too), so its last batch is the last one the source handed out:
    // the only consumer in `src` is this one and the consumer is stopped now.
    let last_applied: i64 = c
        .psql("dst", "select max(batch_id) from applied")
        .parse()
        .expect("batch id");
    let last_given: i64 = c
        .psql(
            "src",
            "select case when is_called then last_value else 0 end from pgq.batch_id_seq",
        )
        .parse()
        .expect("batch id");
    assert!(last_given >= last_applied, "{last_given} < {last_applied}");
    assert_eq!(
        c.psql(
            "dst",
            "select consumer_id || ':' || subconsumer_id || ':' || last_batch_id
               from pgq_ext.completed_batch"
        ),
        format!("remote_test::{last_given}"),
        "pgq_ext.completed_batch holds the consumer's last batch"
    );
    assert_eq!(
        c.psql(
            "src",
            "select coalesce(sub_batch::text, 'none') from pgq.subscription
               join pgq.consumer on co_id = sub_consumer where co_name = 'remote_test'"
        ),
        "none",
        "that batch was finished"
    );
    assert_eq!(
        c.psql(
            "src",
            "select pending_events from pgq.get_consumer_info('q', 'remote_test')"
        ),
        "0"
    );
    // The ticks were all made by the daemon (nothing here calls pgq.ticker()).
    let ticks: i64 = c
        .psql("src", "select count(*) from pgq.tick")
        .parse()
        .expect("count");
    assert!(ticks > 2, "only {ticks} ticks");
}

#[test]
fn coop_consumer_ticked_by_daemon_shares_batches_each_event_once() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    let c = TestCluster::start();
    c.create_pgq_db("src");
    common::install_schema(&c, "src", &["coop"]);
    c.psql("src", APPLIED);
    make_queue(&c, "src", "cq");

    let mut daemon = start_daemon(&c);
    let subs = ["s1", "s2", "s3"];
    let inis: Vec<PathBuf> = subs
        .iter()
        .map(|s| {
            ini(
                &c,
                &format!("coop_{s}"),
                "coop_applier",
                &[
                    ("job_name", "coop_test".to_string()),
                    ("src_db", dsn(&c, "src")),
                    ("pgq_queue_name", "cq".to_string()),
                    ("subconsumer_name", s.to_string()),
                ],
            )
        })
        .collect();
    for i in &inis {
        register("coop", i);
    }
    assert_eq!(
        c.psql(
            "src",
            "select string_agg(co_name, ',' order by co_name) from pgq.subscription
               join pgq.consumer on co_id = sub_consumer"
        ),
        "coop_test,coop_test.s1,coop_test.s2,coop_test.s3"
    );
    let mut workers: Vec<Proc> = inis
        .iter()
        .zip(subs)
        .map(|(i, s)| {
            Proc::spawn(
                consumer("coop", i, &[]),
                c.dir.join(format!("coop_{s}.out")),
            )
        })
        .collect();

    // Give every subconsumer time to start and poll, so all of them compete for batches.
    thread::sleep(Duration::from_millis(1500));
    for (w, s) in workers.iter_mut().zip(subs) {
        w.assert_alive(&format!("subconsumer {s}"));
    }

    // At least twelve transactions a little apart: many ticks, many batches to share.
    // Which subconsumer wins a batch is a matter of timing, so production goes on (in the
    // same steps, up to 60 transactions) until two of them have done work.
    let start = Instant::now();
    let deadline = start + Duration::from_secs(20);
    let mut chunks = 0;
    loop {
        let lo = chunks * 25 + 1;
        insert(&c, "src", "cq", lo, lo + 24);
        chunks += 1;
        thread::sleep(Duration::from_millis(120));
        let shared: i64 = c
            .psql("src", "select count(distinct who) from applied")
            .parse()
            .expect("count");
        if chunks >= 60 || (chunks >= 12 && shared > 1) {
            break;
        }
    }
    let events = chunks * 25;
    while applied(&c, "src").0 < events {
        daemon.assert_alive("pgqd");
        for (w, s) in workers.iter_mut().zip(subs) {
            w.assert_alive(&format!("subconsumer {s}"));
        }
        assert!(
            Instant::now() < deadline,
            "timed out: applied {:?} of {events}\npgqd log:\n{}",
            applied(&c, "src"),
            daemon.log_text()
        );
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{events} events applied after {:?}", start.elapsed());
    thread::sleep(Duration::from_millis(1500));
    daemon.assert_alive("pgqd");
    for (w, s) in workers.iter_mut().zip(subs) {
        w.assert_alive(&format!("subconsumer {s}"));
    }

    assert_eq!(
        applied(&c, "src"),
        (events, events),
        "each event exactly once"
    );
    assert_eq!(
        c.psql(
            "src",
            "select string_agg(ev_id::text, ',' order by ev_id) from applied"
        ),
        queue_ev_ids(&c, "src", "cq"),
        "exactly the queue's events"
    );
    let per_sub = c.psql(
        "src",
        "select string_agg(who || '=' || n, ',' order by who)
           from (select who, count(*) n from applied group by who) x",
    );
    eprintln!("events per subconsumer: {per_sub}");
    let workers_used: i64 = c
        .psql("src", "select count(distinct who) from applied")
        .parse()
        .expect("count");
    assert!(workers_used > 1, "only one subconsumer did work: {per_sub}");
    // No batch went to two subconsumers.
    assert_eq!(
        c.psql(
            "src",
            "select count(*) from (select batch_id from applied group by 1
                                    having count(distinct who) > 1) x"
        ),
        "0"
    );
    assert_eq!(
        c.psql(
            "src",
            "select pending_events from pgq.get_consumer_info('cq', 'coop_test')"
        ),
        "0"
    );
    drop(workers);
}
