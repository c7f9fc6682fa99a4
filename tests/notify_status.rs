//! systemd notifications of the real `pgqd` binary (issue #6): on a `NOTIFY_SOCKET` the
//! test binds, READY=1 comes with a status line, STATUS= follows the databases' states
//! ("2 databases ticking, …") at most once a second, SIGHUP gives RELOADING=1 and then
//! READY=1 with the current status, and SIGTERM gives STOPPING=1.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestCluster, wait_exit, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Datagrams received so far, with their arrival time.
type Inbox = Arc<Mutex<Vec<(Instant, String)>>>;

fn listen(sock: UnixDatagram) -> Inbox {
    let inbox: Inbox = Arc::default();
    let keep = inbox.clone();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        // Ends when the test drops the inbox's other handle.
        while Arc::strong_count(&keep) > 1 {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                keep.lock().expect("inbox").push((Instant::now(), msg));
            }
        }
    });
    inbox
}

fn messages(inbox: &Inbox) -> Vec<(Instant, String)> {
    inbox.lock().expect("inbox").clone()
}

/// Waits for a message after the first `after` ones that satisfies `f`; returns its index.
fn wait_msg(inbox: &Inbox, after: usize, what: &str, f: impl Fn(&str) -> bool) -> usize {
    wait_until(what, Duration::from_secs(20), || {
        messages(inbox)
            .iter()
            .enumerate()
            .skip(after)
            .find(|(_, (_, m))| f(m))
            .map(|(i, _)| i)
    })
}

fn status_of(msg: &str) -> Option<&str> {
    msg.lines().find_map(|l| l.strip_prefix("STATUS="))
}

#[test]
fn status_reloading_and_ready_arrive_in_order() {
    let c = TestCluster::start();
    c.create_pgq_db("app");
    c.psql("app", "select pgq.create_queue('q')");
    c.create_db("plain");

    let dir = tempfile::tempdir().expect("tempdir");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
    let inbox = listen(sock);
    let cfg_path = dir.path().join("pgqd.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "base_connstr = \"host={} port={} user=postgres\"\n\
             initial_database = \"postgres\"\n\
             check_period = \"200ms\"\nticker_period = \"100ms\"\n",
            c.socket_dir.display(),
            c.port
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .arg(&cfg_path)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pgqd");
    let pid = Pid::from_raw(child.id() as i32);

    let ready = wait_msg(&inbox, 0, "READY=1", |m| m.lines().any(|l| l == "READY=1"));
    assert_eq!(
        ready,
        0,
        "READY=1 is the first message: {:?}",
        messages(&inbox)
    );
    assert!(
        status_of(&messages(&inbox)[0].1).is_some(),
        "READY=1 carries a status line"
    );
    // "app" ticks; "plain" and "postgres" have no pgq.
    let first = wait_msg(&inbox, 0, "status with app ticking", |m| {
        status_of(m) == Some("1 database ticking, 2 without pgq")
    });
    c.create_pgq_db("app2");
    let second = wait_msg(&inbox, first + 1, "status with two ticking", |m| {
        status_of(m) == Some("2 databases ticking, 2 without pgq")
    });

    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    let reloading = wait_msg(&inbox, second + 1, "RELOADING=1", |m| {
        m.lines().any(|l| l == "RELOADING=1")
    });
    let again = wait_msg(&inbox, reloading + 1, "READY=1 after reload", |m| {
        m.lines().any(|l| l == "READY=1")
    });
    assert_eq!(
        status_of(&messages(&inbox)[again].1),
        Some("2 databases ticking, 2 without pgq"),
        "READY after the reload repeats the current status"
    );
    assert!(
        messages(&inbox)[reloading]
            .1
            .lines()
            .any(|l| l.starts_with("MONOTONIC_USEC=")),
        "RELOADING=1 carries MONOTONIC_USEC"
    );

    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "clean stop: {status:?}");
    wait_msg(&inbox, again + 1, "STOPPING=1", |m| {
        m.lines().any(|l| l == "STOPPING=1")
    });

    // Status-only updates come at most once a second.
    let all = messages(&inbox);
    let updates: Vec<Instant> = all
        .iter()
        .filter(|(_, m)| m.lines().all(|l| l.starts_with("STATUS=")))
        .map(|(t, _)| *t)
        .collect();
    for w in updates.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(900),
            "status updates closer than a second: {all:?}"
        );
    }
}
