//! `pgqd install`: installs into an empty database, re-applies safely, upgrades, and
//! refuses with a clear message and exit code where it must (the C extension present, a
//! schema it did not make, a role without rights, an unknown component).

mod common;

use std::process::{Command, Output};

use common::TestCluster;

fn pgqd(c: &TestCluster, db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(args)
        .arg("--connstr")
        .arg(format!(
            "host={} port={} user=postgres",
            c.socket_dir.display(),
            c.port
        ))
        .arg("--dbname")
        .arg(db)
        .env_remove("PGDATABASE")
        .output()
        .expect("run pgqd")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn install_refuse_and_reapply() {
    let c = TestCluster::start();

    // Fresh database: installs, and the schema works.
    c.create_db("fresh");
    let out = pgqd(&c, "fresh", &["install"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("pgq: installed schema"),
        "{}",
        text(&out)
    );
    assert_eq!(c.psql("fresh", "select pgq.create_queue('q')"), "1");
    assert_eq!(
        c.psql("fresh", "select pgq.insert_event('q', 't', 'd')"),
        "1"
    );

    // Second run re-applies over live data without losing it.
    let out = pgqd(&c, "fresh", &["install", "--component", "pgq"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("already installed"), "{}", text(&out));
    assert_eq!(c.psql("fresh", "select count(*) from pgq.event_1"), "1");
    assert_eq!(
        c.psql("fresh", "select pgq.insert_event('q', 't', 'd')"),
        "2"
    );

    // The C extension owns the schema: refused, nothing touched.
    if c.has_real_pgq() {
        c.create_ext_db("withext");
        let out = pgqd(&c, "withext", &["install"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("C extension pgq"), "{}", text(&out));
    } else {
        eprintln!(
            "skipping the refusal over the C extension: the real pgq is not installed for {}",
            c.bindir.display()
        );
    }

    // A pgq schema somebody else made: refused.
    c.create_db("foreign");
    c.psql(
        "foreign",
        "create schema pgq; create table pgq.queue (queue_id int)",
    );
    let out = pgqd(&c, "foreign", &["install"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("did not install"), "{}", text(&out));

    // Unknown component: usage error, exit 2.
    let out = pgqd(&c, "fresh", &["install", "--component", "pgq,bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("bogus"), "{}", text(&out));

    // A role without CREATE on the database: a clear refusal, not a half install.
    c.psql("postgres", "create role weak login");
    c.create_db("locked");
    c.psql(
        "locked",
        "revoke create on database locked from public; revoke create on schema public from public",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(["install", "--dbname", "locked", "--connstr"])
        .arg(format!(
            "host={} port={} user=weak",
            c.socket_dir.display(),
            c.port
        ))
        .output()
        .expect("run pgqd");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("may not create schema pgq"),
        "{}",
        text(&out)
    );
    assert_eq!(
        c.psql(
            "locked",
            "select count(*) from pg_namespace where nspname = 'pgq'"
        ),
        "0"
    );

    // Cannot connect: exit 1 with the target named and no password shown.
    let out = Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(["install", "--connstr"])
        .arg(format!(
            "host={} port=1 user=postgres password=hunter2 dbname=x",
            c.socket_dir.display()
        ))
        .output()
        .expect("run pgqd");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("hunter2"), "{}", text(&out));
}

#[test]
fn failed_install_leaves_nothing_behind() {
    // A leftover table that the files cannot adapt makes 10_tables.sql fail after it has
    // created pgq.queue: the single transaction must take pgq.queue away again.
    let c = TestCluster::start();
    c.create_db("broken");
    c.psql(
        "broken",
        "create schema pgq; create table pgq.retry_queue (x int)",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt.block_on(async {
        let mut client = c.connect("broken").await;
        let comps = pgqd::cli::install::select_components(&["pgq".into()]).unwrap();
        pgqd::cli::install::install(&mut client, &comps)
            .await
            .unwrap_err()
    });
    let msg = err.to_string();
    assert!(msg.contains("pgq/10_tables.sql"), "{msg}");
    assert!(msg.contains("42703"), "SQLSTATE missing from {msg}");
    assert_eq!(
        c.psql("broken", "select to_regclass('pgq.queue') is null"),
        "t"
    );
}

/// pgq_ext and pgq_coop install beside pgq, twice, and refuse without pgq.
#[test]
fn install_ext_and_coop_twice() {
    let c = TestCluster::start();
    c.create_db("comp");
    for _ in 0..2 {
        let out = pgqd(&c, "comp", &["install", "--component", "pgq,ext,coop"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("ext: installed"), "{}", text(&out));
        assert!(text(&out).contains("coop: installed"), "{}", text(&out));
    }
    assert_eq!(
        c.psql(
            "comp",
            "select pgq_ext.version() || ' ' || pgq_coop.version()"
        ),
        "3.3 3.4"
    );
    c.create_db("nopgq");
    let out = pgqd(&c, "nopgq", &["install", "--component", "ext"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("needs pgq"), "{}", text(&out));
}
