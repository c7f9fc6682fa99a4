//! Black-box tests of the `pgqd` binary (ripgrep's `tests/util.rs` style): exit codes,
//! config errors, reserved subcommands, the pidfile signal flags, systemd notifications
//! on a `NOTIFY_SOCKET` we own, SIGHUP reload, `-d`, and the shipped systemd unit.
//! Waits are on observable state with deadlines (a notification, a log line, a file,
//! the process exit), never fixed sleeps.

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TestCluster, wait_exit, wait_until_true};

const BIN: &str = env!("CARGO_BIN_EXE_pgqd");

fn pgqd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pgqd")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).expect("write test file");
    p
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("send signal");
}

#[test]
fn version_prints_name_and_version() {
    let o = pgqd(&["-V"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("pgqd {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn missing_config_is_a_usage_error() {
    let o = pgqd(&[]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = pgqd(&["--no-such-flag"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn bad_toml_value_exits_2_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "pgqd.toml", "# c\n\nticker_period = \"soon\"\n");
    let o = pgqd(&[p.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:3: bad value for ticker_period", p.display())),
        "{err}"
    );
}

#[test]
fn unknown_ini_key_exits_2_with_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "pgqd.ini",
        "[pgqd]\nlogfile = /tmp/x\nticker_perod = 1\n",
    );
    let o = pgqd(&[p.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains(&format!("{}:3: unknown key \"ticker_perod\"", p.display())),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_config_ok_and_bad() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.toml", "ticker_period = \"500ms\"\n");
    let o = pgqd(&["--check-config", good.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pgqd.toml");
    assert_eq!(
        code(&pgqd(&["--check-config", shipped.to_str().unwrap()])),
        0
    );
    let bad = write(dir.path(), "bad.toml", "nope = 1\n");
    let o = pgqd(&["--check-config", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("bad.toml:1: unknown key \"nope\""),
        "{}",
        stderr(&o)
    );
    let o = pgqd(&["--check-config", "/nonexistent/pgqd.toml"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn unknown_cascade_subcommand_exits_2() {
    // Every reserved subcommand is implemented now (cascade: tests/cascade.rs); a bad
    // word under one is a usage error.
    let o = pgqd(&["cascade", "some-arg", "--some-flag"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("some-arg"), "{}", stderr(&o));
}

#[test]
fn config_named_like_a_subcommand_via_config_flag() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "status", "bogus_key = 1\n");
    let o = pgqd(&["--config", p.to_str().unwrap()]);
    // It was read as a config file (and rejected for its content), not as a command.
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("unknown key \"bogus_key\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn signal_flags_need_a_pidfile_and_a_process() {
    let dir = tempfile::tempdir().unwrap();
    let nopid = write(dir.path(), "a.toml", "ticker_period = 1\n");
    for flag in ["-s", "-k", "-r"] {
        let o = pgqd(&[flag, nopid.to_str().unwrap()]);
        assert_eq!(code(&o), 2, "{flag}");
        assert!(
            stderr(&o).contains("no pidfile configured"),
            "{}",
            stderr(&o)
        );
    }
    let pid = dir.path().join("pgqd.pid");
    let cfg = write(
        dir.path(),
        "b.ini",
        &format!("[pgqd]\npidfile = {}\n", pid.display()),
    );
    let o = pgqd(&["-r", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
    // A stale pidfile: the process is gone.
    fs::write(&pid, "2147483646\n").unwrap();
    let o = pgqd(&["-s", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
}

#[test]
fn daemonize_needs_pidfile_and_logfile() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "a.toml", "ticker_period = 1\n");
    let o = pgqd(&["-d", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("-d needs both pidfile and logfile"),
        "{}",
        stderr(&o)
    );
}

/// A daemon config pointing at a harness cluster, with short periods.
fn daemon_config(c: &TestCluster, dir: &Path, extra: &str) -> PathBuf {
    write(
        dir,
        "pgqd.toml",
        &format!(
            "base_connstr = \"host={} port={} user=postgres\"\n\
             initial_database = \"postgres\"\n\
             check_period = \"200ms\"\n\
             ticker_period = \"100ms\"\n\
             shutdown_timeout = \"5s\"\n\
             pidfile = \"{}\"\n\
             logfile = \"{}\"\n{extra}",
            c.socket_dir.display(),
            c.port,
            dir.join("pgqd.pid").display(),
            dir.join("pgqd.log").display(),
        ),
    )
}

fn log_of(dir: &Path) -> String {
    fs::read_to_string(dir.join("pgqd.log")).unwrap_or_default()
}

/// Receives datagrams until one contains `want`; returns everything received.
fn recv_until(sock: &UnixDatagram, want: &str, timeout: Duration, got: &mut Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        if got.iter().any(|m| m.lines().any(|l| l == want)) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {want} within {timeout:?}; got {got:?}");
        sock.set_read_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn notify_socket_gets_ready_then_stopping_and_pidfile_is_removed() {
    let c = TestCluster::start();
    c.create_pgq_db("app");
    let dir = tempfile::tempdir().unwrap();
    let cfg = daemon_config(&c, dir.path(), "");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    let mut child = Command::new(BIN)
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pgqd");
    let mut got = Vec::new();
    recv_until(&sock, "READY=1", Duration::from_secs(30), &mut got);
    let pidfile = dir.path().join("pgqd.pid");
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        child.id().to_string()
    );
    signal(child.id(), nix::sys::signal::Signal::SIGTERM);
    recv_until(&sock, "STOPPING=1", Duration::from_secs(15), &mut got);
    let rc = wait_exit(&mut child, Duration::from_secs(15))
        .code()
        .unwrap_or(-1);
    assert_eq!(rc, 0, "log:\n{}", log_of(dir.path()));
    assert!(!pidfile.exists(), "pidfile left behind");
    let ready_at = got.iter().position(|m| m.contains("READY=1")).unwrap();
    let stop_at = got.iter().position(|m| m.contains("STOPPING=1")).unwrap();
    assert!(ready_at < stop_at, "{got:?}");
}

#[test]
fn sighup_with_invalid_file_keeps_running_and_valid_reload_applies() {
    let c = TestCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = daemon_config(&c, dir.path(), "");
    let mut child = Command::new(BIN)
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pgqd");
    let pidfile = dir.path().join("pgqd.pid");
    wait_until_true("pidfile", Duration::from_secs(15), || {
        fs::read_to_string(&pidfile).is_ok_and(|s| s.trim() == child.id().to_string())
    });
    let good = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, format!("{good}ticker_period = \"never\"\n")).unwrap();
    let o = pgqd(&["-r", cfg.to_str().unwrap()]);
    // -r itself reads the (now invalid) file to find the pidfile: that is a config error.
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    signal(child.id(), nix::sys::signal::Signal::SIGHUP);
    wait_until_true("reload failure logged", Duration::from_secs(10), || {
        log_of(dir.path()).contains("config reload failed")
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "daemon exited on a bad reload"
    );
    fs::write(&cfg, good.replace("\"100ms\"", "\"300ms\"")).unwrap();
    let o = pgqd(&["-r", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    wait_until_true("reload logged", Duration::from_secs(10), || {
        log_of(dir.path()).contains("config reloaded")
    });
    let o = pgqd(&["-s", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(15))
            .code()
            .unwrap_or(-1),
        0
    );
    assert!(!pidfile.exists());
}

#[test]
fn logfile_is_reopened_on_sighup() {
    let c = TestCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = daemon_config(&c, dir.path(), "");
    let mut child = Command::new(BIN)
        .arg(&cfg)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn pgqd");
    let log = dir.path().join("pgqd.log");
    wait_until_true("first log line", Duration::from_secs(15), || {
        log_of(dir.path()).contains("starting pgqd")
    });
    fs::rename(&log, dir.path().join("pgqd.log.1")).unwrap();
    signal(child.id(), nix::sys::signal::Signal::SIGHUP);
    wait_until_true("new log file", Duration::from_secs(10), || {
        log_of(dir.path()).contains("config reloaded")
    });
    signal(child.id(), nix::sys::signal::Signal::SIGINT);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(15))
            .code()
            .unwrap_or(-1),
        0
    );
}

#[test]
fn daemonize_then_stop_with_s() {
    let c = TestCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = daemon_config(&c, dir.path(), "");
    let o = pgqd(&["-d", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let pidfile = dir.path().join("pgqd.pid");
    wait_until_true("pidfile of the daemon", Duration::from_secs(15), || {
        fs::read_to_string(&pidfile).is_ok_and(|s| s.trim().parse::<i32>().is_ok())
    });
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A second instance refuses to start over the live one.
    let o = pgqd(&["-d", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("another instance"), "{}", stderr(&o));
    let o = pgqd(&["-s", cfg.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    wait_until_true("daemon exit", Duration::from_secs(20), || {
        !pidfile::alive(pid)
    });
    assert!(
        !pidfile.exists(),
        "pidfile left behind; log:\n{}",
        log_of(dir.path())
    );
}

mod pidfile {
    /// Whether the process exists (it is not our child, so we cannot wait for it).
    pub fn alive(pid: i32) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    }
}

/// The /etc/pgqd.ini of the Debian package (config/pgqd.ini) is valid as shipped, and
/// with every commented-out key set to the value shown, so each documented default is
/// one the daemon accepts.
#[test]
fn shipped_ini_is_valid_with_every_key_set() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pgqd.ini");
    let o = pgqd(&["--check-config", shipped.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = fs::read_to_string(&shipped).expect("read config/pgqd.ini");
    // Key lines are ";key = value"; prose comments are "; text" or ";; text".
    let mut keys = 0;
    let all: String = text
        .lines()
        .map(|l| match l.strip_prefix(';') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => {
                keys += 1;
                format!("{rest}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect();
    assert!(keys >= 20, "only {keys} keys found in config/pgqd.ini");
    // The same keys as config/pgqd.toml ("# key = value"), so a new key reaches both.
    let key_of = |l: &str, prefix: &str| {
        let rest = l.strip_prefix(prefix)?;
        let (k, _) = rest.split_once(" =")?;
        (!k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .then(|| k.to_string())
    };
    let toml = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/pgqd.toml"))
        .expect("read config/pgqd.toml");
    let toml_keys: std::collections::BTreeSet<String> =
        toml.lines().filter_map(|l| key_of(l, "# ")).collect();
    let ini_keys: std::collections::BTreeSet<String> =
        text.lines().filter_map(|l| key_of(l, ";")).collect();
    assert_eq!(
        ini_keys, toml_keys,
        "config/pgqd.ini and config/pgqd.toml list different keys"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "pgqd.ini", &all);
    let o = pgqd(&["--check-config", p.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}\n{all}", stderr(&o));
}

#[test]
fn systemd_unit_verifies() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        eprintln!("skipped: systemd-analyze is not installed (apt-get install systemd)");
        return;
    };
    let unit =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/pgqd.service"))
            .expect("read systemd/pgqd.service");
    assert!(
        unit.contains("ExecStart=/usr/bin/pgqd "),
        "ExecStart changed; update this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = write(
        dir.path(),
        "pgqd.service",
        &unit.replace("=/usr/bin/pgqd ", &format!("={BIN} ")),
    );
    let o = Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .expect("run systemd-analyze");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Lines about the unit itself; other units of the host (missing in a container) are
    // not our concern.
    let ours: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("pgqd.service") || l.contains(BIN))
        .collect();
    assert!(
        o.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{out}"
    );
}
