//! Least privilege (issue #8 item 4): the daemon as a non-superuser member of `pgq_admin`,
//! logging in with a password, ticks and maintains; it notices that it may not VACUUM
//! pgq's tables (PostgreSQL would skip them silently), says so once, and vacuums them for
//! real once its role owns them (`pg_stat_all_tables.last_vacuum` moves). The admin CLI's
//! read commands work as a `pgq_reader` member. The password never appears in the
//! daemon's log, its errors, `--check-config`, or the CLI's output.

mod common;

use std::fs;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{ClusterOptions, TestCluster, wait_exit, wait_until_true};

const BIN: &str = env!("CARGO_BIN_EXE_pgqd");
const PASSWORD: &str = "S3cretPwQ9z";
const WRONG: &str = "Wr0ngPwK7x";

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
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

fn last_vacuum(c: &TestCluster, table: &str) -> String {
    c.psql(
        "app",
        &format!(
            "select coalesce(last_vacuum::text, '') from pg_stat_all_tables \
              where schemaname = 'pgq' and relname = '{table}'"
        ),
    )
}

#[test]
fn non_superuser_daemon_and_reader_cli_without_leaking_the_password() {
    let c = TestCluster::start_with(ClusterOptions {
        // pgq asks for VACUUM only when autovacuum is off.
        conf: vec!["autovacuum = off".into()],
        // Password logins for the two roles under test; everyone else stays trust.
        hba: vec![
            "local all pgqd_daemon scram-sha-256".into(),
            "local all reader scram-sha-256".into(),
        ],
        ..ClusterOptions::default()
    });
    c.create_pgq_db("app");
    c.psql(
        "postgres",
        &format!(
            "create role pgqd_daemon login password '{PASSWORD}' in role pgq_admin;
             create role reader login password '{PASSWORD}' in role pgq_reader"
        ),
    );
    // The documented grants, with CONNECT no longer granted to PUBLIC.
    c.psql(
        "postgres",
        "revoke connect on database app from public;
         grant connect on database app to pgqd_daemon, reader",
    );
    c.psql(
        "app",
        "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_max_count', '1')",
    );
    let conn = |user: &str, pw: &str| {
        format!(
            "host={} port={} user={user} password={pw}",
            c.socket_dir.display(),
            c.port
        )
    };

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("pgqd.log");
    let cfg = dir.path().join("pgqd.toml");
    let write_cfg = |pw: &str, log: &std::path::Path| {
        fs::write(
            &cfg,
            format!(
                "base_connstr = \"{}\"\ninitial_database = \"postgres\"\n\
                 check_period = \"200ms\"\nticker_period = \"100ms\"\n\
                 maint_period = \"300ms\"\nshutdown_timeout = \"5s\"\nlogfile = \"{}\"\n",
                conn("pgqd_daemon", pw),
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o644)).unwrap();
    };
    write_cfg(PASSWORD, &log_path);

    // --check-config: ok, with a warning about the world-readable password; no password.
    let o = run(&["--check-config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    assert!(all(&o).contains("readable by every user"), "{}", all(&o));
    assert!(!all(&o).contains(PASSWORD), "{}", all(&o));

    let mut daemon = Command::new(BIN)
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pgqd");
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    let ticks = || -> i64 {
        c.psql("app", "select count(*) from pgq.tick")
            .parse()
            .unwrap()
    };

    // It ticks as pgqd_daemon.
    let before = ticks();
    c.psql("app", "select pgq.insert_event('q', 'e', '1')");
    wait_until_true("daemon ticks", Duration::from_secs(15), || ticks() > before);
    assert!(
        c.psql(
            "app",
            "select count(*) from pg_stat_activity where usename = 'pgqd_daemon'"
        )
        .parse::<i64>()
        .unwrap()
            >= 1
    );

    // It may not vacuum postgres-owned pgq tables: says so once per table, never runs
    // the no-op VACUUM, so last_vacuum stays empty.
    wait_until_true("vacuum warning", Duration::from_secs(15), || {
        log().contains("cannot VACUUM this pgq table")
    });
    std::thread::sleep(Duration::from_secs(1)); // several more maintenance rounds
    let l = log();
    let warned = |t: &str| {
        l.lines()
            .filter(|x| {
                x.contains("cannot VACUUM this pgq table") && x.contains(&format!("table=\"{t}\""))
            })
            .count()
    };
    assert_eq!(warned("pgq.tick"), 1, "{l}");
    assert_eq!(warned("pgq.queue"), 1, "{l}");
    assert_eq!(last_vacuum(&c, "tick"), "");

    // The documented fix: the daemon's role owns the pgq tables. Then VACUUM really runs.
    c.psql(
        "app",
        "alter table pgq.subscription owner to pgqd_daemon;
         alter table pgq.consumer owner to pgqd_daemon;
         alter table pgq.queue owner to pgqd_daemon;
         alter table pgq.tick owner to pgqd_daemon;
         alter table pgq.retry_queue owner to pgqd_daemon;
         update pgq.tick set tick_time = tick_time;
         update pgq.queue set queue_name = queue_name",
    );
    wait_until_true("pgq.tick vacuumed", Duration::from_secs(15), || {
        !last_vacuum(&c, "tick").is_empty()
    });
    assert!(!last_vacuum(&c, "queue").is_empty());
    assert!(log().contains("may vacuum the table again"));

    // The reader's commands, with a password in the connection string.
    let reader = conn("reader", PASSWORD);
    for args in [
        vec!["status", "--dbname", "app"],
        vec!["status", "--dbname", "app", "--format", "json"],
        vec!["status", "--all", "--dbname", "postgres"],
        vec!["config", "q", "--dbname", "app"],
        vec!["tail", "q", "--dbname", "app", "--timeout", "1s"],
    ] {
        let mut a = args.clone();
        a.extend(["--connstr", &reader]);
        let o = run(&a);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", all(&o));
        assert!(!all(&o).contains(PASSWORD), "{args:?}: {}", all(&o));
    }
    // A reader may not administer; the message says what is needed, without the password.
    let o = run(&["create", "q2", "--dbname", "app", "--connstr", &reader]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(all(&o).contains("pgq_admin"), "{}", all(&o));
    assert!(!all(&o).contains(PASSWORD));
    // A wrong password: a clear error, the password not echoed.
    let o = run(&[
        "status",
        "--dbname",
        "app",
        "--connstr",
        &conn("reader", WRONG),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", all(&o));
    assert!(all(&o).contains("password"), "{}", all(&o));
    assert!(!all(&o).contains(WRONG), "{}", all(&o));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        wait_exit(&mut daemon, Duration::from_secs(15)).code(),
        Some(0)
    );
    assert!(!log().contains(PASSWORD), "{}", log());

    // A daemon with a wrong password logs the failure, never the password.
    let log2 = dir.path().join("wrong.log");
    write_cfg(WRONG, &log2);
    let mut daemon = Command::new(BIN)
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pgqd");
    wait_until_true("auth failure logged", Duration::from_secs(15), || {
        fs::read_to_string(&log2)
            .unwrap_or_default()
            .contains("28P01")
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = wait_exit(&mut daemon, Duration::from_secs(15));
    let l2 = fs::read_to_string(&log2).unwrap_or_default();
    assert!(!l2.contains(WRONG), "{l2}");
}
