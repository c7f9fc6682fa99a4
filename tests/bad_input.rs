//! Bad input (issue #8 item 5): broken config files and command lines get a clear message
//! and exit code 2, never a panic and never a password; databases the daemon cannot use
//! (another pgq version, a half-installed schema, corrupted queue settings, a missing
//! event table) are skipped or their failing step logged once, while the healthy
//! database next to them keeps ticking.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{TestCluster, wait_exit, wait_until_true};

const BIN: &str = env!("CARGO_BIN_EXE_pgqd");
const SECRET: &str = "Pw0rdXyZZy";

fn pgqd(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("PGCONNECT_TIMEOUT", "2")
        .stdin(Stdio::null())
        .output()
        .expect("run pgqd")
}

fn all(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `--check-config` on `text` written as `name`; expects exit 2 and `want` in the
/// message, and neither a panic nor the password.
fn refused(dir: &Path, name: &str, text: &[u8], want: &str) {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    let o = pgqd(&["--check-config", path.to_str().unwrap()]);
    let out = all(&o);
    assert_eq!(o.status.code(), Some(2), "{name}: {out}");
    assert!(out.contains(want), "{name}: want {want:?} in {out}");
    assert!(!out.contains("panicked"), "{name}: {out}");
    assert!(!out.contains(SECRET), "{name}: password printed: {out}");
    // The daemon itself refuses the same file the same way.
    let o = pgqd(&[path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{name} (daemon): {}", all(&o));
    assert!(
        !all(&o).contains(SECRET),
        "{name}: password printed: {}",
        all(&o)
    );
}

#[test]
fn broken_config_files_exit_2_with_a_clear_message() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    let pw = format!("base_connstr = \"host=/tmp password={SECRET}\"\n");
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed.toml", format!("{pw}[pgqd\n"), "malformed.toml:2"),
        (
            "unclosed.toml",
            format!("{pw}ticker_period = \"1s\n"),
            "unclosed.toml:2",
        ),
        (
            "unknown.toml",
            format!("{pw}tikcer_period = 1\n"),
            "unknown key \"tikcer_period\"",
        ),
        (
            "type.toml",
            format!("{pw}ticker_period = true\n"),
            "got a boolean",
        ),
        (
            "type2.toml",
            format!("{pw}database_list = 5\n"),
            "database_list",
        ),
        (
            "negative.toml",
            format!("{pw}maint_period = -5\n"),
            "non-negative",
        ),
        (
            "negative2.toml",
            format!("{pw}retry_period = \"-5s\"\n"),
            "retry_period",
        ),
        (
            "zero.toml",
            format!("{pw}ticker_period = 0\n"),
            "greater than zero",
        ),
        (
            "huge.toml",
            format!("{pw}ticker_period = \"18000000000000000000s\"\n"),
            "too long",
        ),
        (
            "port.toml",
            format!("base_connstr = \"host=/tmp port=http password={SECRET}\"\n"),
            "port",
        ),
        (
            "sslmode.toml",
            format!("base_connstr = \"sslmode=maybe password={SECRET}\"\n"),
            "sslmode",
        ),
        (
            "syntax.toml",
            format!("base_connstr = \"host = password={SECRET} '\"\n"),
            "base_connstr",
        ),
        (
            "keyword.toml",
            format!("base_connstr = \"hots=x password={SECRET}\"\n"),
            "hots",
        ),
        (
            "nosection.ini",
            format!("ticker_period = 1\n[pgqd]\nbase_connstr = password={SECRET}\n"),
            "nosection.ini:1",
        ),
        (
            "other.ini",
            format!("[pgqd]\nbase_connstr = password={SECRET}\n[other]\n"),
            "other.ini:3",
        ),
        (
            "unknown.ini",
            format!("[pgqd]\nbase_connstr = password={SECRET}\nfoo = 1\n"),
            "unknown.ini:3",
        ),
        (
            "negative.ini",
            format!("[pgqd]\nbase_connstr = password={SECRET}\nticker_period = -1\n"),
            "negative.ini:3",
        ),
        (
            "loop.ini",
            "[pgqd]\n%include loop.ini\n".to_string(),
            "include",
        ),
        (
            "missing.ini",
            "[pgqd]\n%include /nonexistent/x.ini\n".to_string(),
            "/nonexistent/x.ini",
        ),
    ];
    for (name, text, want) in &cases {
        refused(p, name, text.as_bytes(), want);
    }
    refused(p, "utf8.toml", b"ticker_period = \"\xff\xfe\"\n", "UTF-8");
    // Unreadable: a directory (root reads any file, so modes cannot make one unreadable).
    fs::create_dir(p.join("dir.toml")).unwrap();
    let o = pgqd(&["--check-config", p.join("dir.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(all(&o).contains("cannot read config file"), "{}", all(&o));
    let o = pgqd(&["--check-config", p.join("absent.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", all(&o));
    assert!(all(&o).contains("absent.toml"), "{}", all(&o));
}

#[test]
fn pidfile_in_a_missing_directory_is_a_clear_start_error() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("pgqd.toml");
    fs::write(
        &cfg,
        format!(
            "base_connstr = \"host=/nonexistent password={SECRET}\"\n\
             pidfile = \"{}\"\n",
            d.path().join("missing/pgqd.pid").display()
        ),
    )
    .unwrap();
    let o = pgqd(&[cfg.to_str().unwrap()]);
    let out = all(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("directory") && out.contains("does not exist"),
        "{out}"
    );
    assert!(!out.contains(SECRET), "{out}");
}

#[test]
fn bad_command_lines_exit_cleanly() {
    let bad_conn = format!("host=/tmp port=http password={SECRET}");
    for (args, want) in [
        (vec!["status", "--connstr", &bad_conn], 2),
        (vec!["status", "--connstr", "nonsense"], 2),
        (vec!["status", "--check", "--max-lag", "1e30"], 3),
        (
            vec!["status", "--check", "--max-lag", "99999999999999999999y"],
            3,
        ),
        (vec!["tick", "q", "--timeout", "18000000000000000000s"], 2),
        (vec!["tail", "q", "--timeout", "-1"], 2),
    ] {
        let o = pgqd(&args);
        let out = all(&o);
        assert_eq!(o.status.code(), Some(want), "{args:?}: {out}");
        assert!(!out.contains("panicked"), "{args:?}: {out}");
        assert!(!out.contains(SECRET), "{args:?}: {out}");
    }
}

#[test]
fn unusable_databases_are_skipped_and_logged_once_while_others_tick() {
    let c = TestCluster::start();
    c.create_pgq_db("healthy");
    c.psql(
        "healthy",
        "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_max_count', '1')",
    );
    // Another pgq version.
    c.create_pgq_db("oldpgq");
    c.psql(
        "oldpgq",
        "create or replace function pgq.version() returns text language sql as $$ select '2.1' $$",
    );
    // A half-installed schema: pgq but no functions.
    c.create_db("half");
    c.psql(
        "half",
        "create schema pgq; create table pgq.queue (queue_id int)",
    );
    // Corrupted queue settings and a missing event table.
    c.create_pgq_db("corrupt");
    c.psql(
        "corrupt",
        "select pgq.create_queue('lag'); select pgq.create_queue('rot'); select pgq.create_queue('gone');
         update pgq.queue set queue_ticker_max_lag = '100000000 years' where queue_name = 'lag';
         update pgq.queue set queue_rotation_period = '0', queue_switch_time = now() - '1 day'::interval
          where queue_name in ('rot', 'gone');
         select pgq.insert_event('rot', 'e', 'x');
         drop table pgq.event_3_1",
    );

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("pgqd.log");
    let cfg = dir.path().join("pgqd.toml");
    fs::write(
        &cfg,
        format!(
            "base_connstr = \"host={} port={} user=postgres\"\n\
             initial_database = \"postgres\"\ncheck_period = \"200ms\"\n\
             ticker_period = \"100ms\"\nmaint_period = \"200ms\"\n\
             shutdown_timeout = \"5s\"\nlogfile = \"{}\"\n",
            c.socket_dir.display(),
            c.port,
            log_path.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new(BIN)
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pgqd");
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    let ticks = |db: &str, q: &str| -> i64 {
        c.psql(
            db,
            &format!("select count(*) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = '{q}'"),
        )
        .parse()
        .unwrap()
    };
    wait_until_true(
        "corrupt/gone maintenance failure",
        Duration::from_secs(20),
        || log().contains("maintenance operation failed"),
    );
    let before = ticks("healthy", "q");
    c.psql("healthy", "select pgq.insert_event('q', 'e', 'x')");
    wait_until_true("healthy ticks", Duration::from_secs(10), || {
        ticks("healthy", "q") > before
    });
    // The rotation of 'rot' goes on each round despite its neighbour's missing table.
    let rot0: i64 = c
        .psql(
            "corrupt",
            "select queue_cur_table from pgq.queue where queue_name = 'rot'",
        )
        .parse()
        .unwrap();
    wait_until_true("rot rotates", Duration::from_secs(10), || {
        let cur: i64 = c
            .psql(
                "corrupt",
                "select queue_cur_table from pgq.queue where queue_name = 'rot'",
            )
            .parse()
            .unwrap();
        cur != rot0
    });
    // Many check periods and maintenance rounds later, still one line each.
    std::thread::sleep(Duration::from_secs(2));
    let l = log();
    let count = |s: &str, db: &str| {
        let span = format!("db={db}}}");
        l.lines()
            .filter(|x| x.contains(s) && x.contains(&span))
            .count()
    };
    let not_usable = "ignoring this database until it changes";
    assert_eq!(count(not_usable, "oldpgq"), 1, "{l}");
    assert_eq!(count(not_usable, "half"), 1, "{l}");
    assert_eq!(count("maintenance operation failed", "corrupt"), 1, "{l}");
    assert!(!l.contains("panicked"), "{l}");
    assert!(daemon.try_wait().unwrap().is_none(), "daemon exited: {l}");
    // The absurd max_lag queue is simply not due; the daemon did not choke on it.
    assert!(ticks("corrupt", "lag") >= 1);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        wait_exit(&mut daemon, Duration::from_secs(15)).code(),
        Some(0)
    );
}
