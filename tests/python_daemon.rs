//! Issue #9 item 1: a plain `pgq.Consumer` subclass from Debian's `python3-pgq` (run with
//! `/usr/bin/python3`, unchanged) against our schema, ticked by our daemon running as a
//! real process. Every event is received exactly once, including the ones the consumer
//! tags for retry (`event.tag_retry(0)`) on first sight: the daemon's retry lane puts them
//! back into the queue, a later tick hands them out again with `ev_retry` set, and the
//! consumer accepts them then.
//!
//! The consumer is `tests/python/plain_consumer.py`; each event it accepts becomes a row of
//! `got` written in the batch's transaction, so "each event once" is a query.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::TestCluster;

const PYTHON: &str = "/usr/bin/python3";
const BIN: &str = env!("CARGO_BIN_EXE_pgqd");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/plain_consumer.py")
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

/// A child process (log in `log`) killed with SIGKILL on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let f = fs::File::create(&log).expect("log file");
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

fn consumer(ini: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script())
        .arg(ini)
        .arg("-v")
        .args(extra)
        .env_remove("PYTHONPATH");
    cmd
}

/// (rows, distinct ev_data) in `got`.
fn got(c: &TestCluster) -> (i64, i64) {
    let s = c.psql(
        "app",
        "select count(*) || ' ' || count(distinct ev_data) from got",
    );
    let mut it = s.split(' ').map(|x| x.parse::<i64>().expect("count"));
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn plain_consumer_ticked_by_daemon_gets_each_event_once_with_retries() {
    if let Some(why) = skip_reason() {
        eprintln!("skipping: {why}");
        return;
    }
    const EVENTS: i64 = 200;
    const RETRY_EVERY: i64 = 20;

    let c = TestCluster::start();
    c.create_pgq_db("app");
    c.psql(
        "app",
        "create table got (ev_id bigint, ev_data text, ev_retry int4)",
    );
    c.psql(
        "app",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '100ms')",
    );

    // The daemon, as a real process.
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
    let mut daemon = Proc::spawn(cmd, c.dir.join("pgqd.log"));

    // The consumer's DBScript ini; it registers itself (`--register`), then runs.
    let ini = c.dir.join("plain.ini");
    fs::write(
        &ini,
        format!(
            "[plain_consumer]\n\
             job_name = plain_test\n\
             db = {}\n\
             pgq_queue_name = q\n\
             retry_every = {RETRY_EVERY}\n\
             loop_delay = 0.05\n\
             logfile = {}\n\
             pidfile = {}\n",
            c.connstr("app"),
            c.dir.join("plain_consumer.log").display(),
            c.dir.join("plain_consumer.pid").display(),
        ),
    )
    .expect("write ini");
    let out = consumer(&ini, &["--register"])
        .stdin(Stdio::null())
        .output()
        .expect("run --register");
    assert!(
        out.status.success(),
        "register: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.psql(
            "app",
            "select count(*) from pgq.get_consumer_info('q', 'plain_test')"
        ),
        "1"
    );
    let mut py = Proc::spawn(consumer(&ini, &[]), c.dir.join("plain_consumer.out"));

    // Two waves of events, each in several transactions a little apart so they span
    // several ticks. The second wave starts only once the first has been received in full,
    // retries included: its retried events need a later round of the daemon's retry lane
    // than the first wave's.
    let start = Instant::now();
    let deadline = start + Duration::from_secs(20);
    for wave in 0..2 {
        for chunk in 0..4 {
            let lo = wave * EVENTS / 2 + chunk * 25 + 1;
            c.psql(
                "app",
                &format!(
                    "select count(pgq.insert_event('q', 'data', i::text))
                       from generate_series({lo}, {}) i",
                    lo + 24
                ),
            );
            thread::sleep(Duration::from_millis(60));
        }
        let want = (wave + 1) * EVENTS / 2;
        while got(&c).0 < want {
            daemon.assert_alive("pgqd");
            py.assert_alive("the python consumer");
            assert!(
                Instant::now() < deadline,
                "timed out: got {:?} of {want}\npgqd log:\n{}\nconsumer log:\n{}",
                got(&c),
                daemon.log_text(),
                fs::read_to_string(c.dir.join("plain_consumer.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "wave {wave}: {want} events received after {:?}",
            start.elapsed()
        );
    }
    // A few more daemon rounds (retry lane, ticks): nothing arrives twice later either.
    thread::sleep(Duration::from_millis(1500));
    daemon.assert_alive("pgqd");
    py.assert_alive("the python consumer");

    assert_eq!(got(&c), (EVENTS, EVENTS), "each event exactly once");
    assert_eq!(
        c.psql("app", "select count(distinct ev_id) from got"),
        EVENTS.to_string()
    );
    let all: String = (1..=EVENTS)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        c.psql(
            "app",
            "select string_agg(ev_data, ',' order by ev_data::int) from got"
        ),
        all
    );
    // The retried ones came back once through the retry queue, the rest never did.
    let retried: String = (1..=EVENTS)
        .filter(|i| i % RETRY_EVERY == 0)
        .map(|i| format!("{i}:1"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        c.psql(
            "app",
            "select coalesce(string_agg(ev_data || ':' || ev_retry, ',' order by ev_data::int), '')
               from got where ev_retry is not null"
        ),
        retried
    );
    assert_eq!(
        c.psql("app", "select count(*) from pgq.retry_queue"),
        "0",
        "the retry queue is drained"
    );
    assert_eq!(
        c.psql(
            "app",
            "select pending_events from pgq.get_consumer_info('q', 'plain_test')"
        ),
        "0"
    );
}
