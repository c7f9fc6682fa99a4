//! Fault-test helpers that act on processes: the `pgqd` binary run as a real child process
//! (so it can be SIGKILLed and restarted, as an operator's supervisor would), and server
//! restarts in either shutdown mode.
//!
//! Used by the issue #8 tests (`chaos.rs`, `ha.rs`, `partition.rs`, `faults.rs`). The
//! daemon's log of every run goes, appended, to one file that failing assertions print.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common::TestCluster;

/// The daemon binary built by cargo for this test run.
pub const PGQD_BIN: &str = env!("CARGO_BIN_EXE_pgqd");

/// A `pgqd` child process with a TOML config file; SIGKILLed on drop.
pub struct PgqdProc {
    child: Option<Child>,
    /// The config file it runs with.
    pub config: PathBuf,
    /// Its log (stderr and stdout of every run, appended).
    pub log: PathBuf,
    /// How many times it was started.
    pub starts: u32,
    /// Command prefix the daemon runs under (e.g. `ip netns exec NS`); empty: none.
    wrapper: Vec<String>,
}

impl PgqdProc {
    /// Writes `toml` to `<dir>/<name>.toml` and starts the daemon with it.
    pub fn start(dir: &Path, name: &str, toml: &str) -> PgqdProc {
        PgqdProc::start_wrapped(dir, name, toml, Vec::new())
    }

    /// Like [`PgqdProc::start`], run through `wrapper` (a command prefix that execs its
    /// arguments, so the pid stays the daemon's).
    pub fn start_wrapped(dir: &Path, name: &str, toml: &str, wrapper: Vec<String>) -> PgqdProc {
        let config = dir.join(format!("{name}.toml"));
        fs::write(&config, toml).expect("write daemon config");
        let mut p = PgqdProc {
            child: None,
            config,
            log: dir.join(format!("{name}.log")),
            starts: 0,
            wrapper,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        let _ = writeln!(f, "---- start #{} ----", self.starts + 1);
        let mut cmd = match self.wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(PGQD_BIN);
                c
            }
            None => Command::new(PGQD_BIN),
        };
        let child = cmd
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("spawn pgqd");
        self.child = Some(child);
        self.starts += 1;
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then reap. No-op when not running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL (if running) and start again with the same config.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Starts again after [`PgqdProc::kill9`].
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.spawn();
    }

    /// Panics with the log when the process has exited on its own.
    pub fn assert_alive(&mut self, what: &str) {
        if let Some(c) = self.child.as_mut()
            && let Some(st) = c.try_wait().expect("try_wait")
        {
            panic!("{what} exited ({st}):\n{}", self.log_text());
        }
    }

    /// Everything logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Log lines containing every one of `needles`.
    pub fn log_lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for PgqdProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            eprintln!("daemon log {} (last lines):", self.log.display());
            for l in tail.iter().rev() {
                eprintln!("  | {l}");
            }
        }
    }
}

/// A daemon TOML config: `base_connstr`, `initial_database = "postgres"`, then `extra`
/// lines (periods and the like).
pub fn daemon_toml(base_connstr: &str, extra: &[&str]) -> String {
    let mut s = format!(
        "base_connstr = \"{}\"\ninitial_database = \"postgres\"\n",
        base_connstr.replace('\\', "\\\\").replace('"', "\\\"")
    );
    for l in extra {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// The unix-socket base connstr of `c` (no dbname) with an `application_name`.
pub fn socket_connstr(c: &TestCluster, app: &str) -> String {
    format!(
        "host={} port={} user=postgres application_name={app}",
        c.socket_dir.display(),
        c.port
    )
}

/// The OS user the servers run as (root runs them through `runuser`, as the harness does).
pub fn server_user() -> Option<String> {
    nix::unistd::geteuid()
        .is_root()
        .then(|| std::env::var("PGQD_TEST_USER").unwrap_or_else(|_| "postgres".to_string()))
}

/// Runs a server binary from `c.bindir` as the server user.
pub fn server_bin(c: &TestCluster, bin: &str, args: &[&str]) -> Output {
    let path = c.bindir.join(bin);
    let mut cmd = match server_user() {
        Some(u) => {
            let mut x = Command::new("runuser");
            x.arg("-u").arg(u).arg("--").arg(&path);
            x
        }
        None => Command::new(&path),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()))
}

/// `pg_ctl -D <data> -w <args>` on `data`; panics with the output on failure.
pub fn pg_ctl(c: &TestCluster, data: &Path, log: &Path, args: &[&str]) {
    let d = data.to_str().expect("utf-8 path");
    let l = log.to_str().expect("utf-8 path");
    let mut all = vec!["-D", d, "-l", l, "-w", "-t", "60"];
    all.extend_from_slice(args);
    let out = server_bin(c, "pg_ctl", &all);
    assert!(
        out.status.success(),
        "pg_ctl {args:?} failed: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// Restarts the server of `c` in `mode` (`fast` or `immediate`: a crash and WAL recovery).
pub fn restart_server(c: &TestCluster, mode: &str) {
    let data = c.dir.join("data");
    pg_ctl(c, &data, &c.log_path(), &["-m", mode, "stop"]);
    pg_ctl(c, &data, &c.log_path(), &["start"]);
}

/// Waits (blocking) for `psql` to work on `db` again after a restart.
pub fn wait_server_up(c: &TestCluster, db: &str, within: Duration) {
    crate::common::wait_until_true("server accepts connections", within, || {
        c.psql_output(db, &["-At", "-c", "select 1"])
            .status
            .success()
    });
}
