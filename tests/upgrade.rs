//! Upgrades of our own schema: every released snapshot under `sql/releases/` can be
//! upgraded in place to the current files with `pgqd install`, with live queues, consumers
//! and an open batch, losing no event; and the golden suite passes on an upgraded install.
//!
//! Also keeps the release rule honest: the current version's snapshot must equal the
//! current files, and a frozen (released) version's snapshot may not be rewritten.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestCluster, golden};

fn releases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/releases")
}

fn released() -> Vec<String> {
    fs::read_to_string(releases_dir().join("RELEASED"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn current_sql() -> String {
    let pgq = pgqd::schema::component("pgq").expect("pgq component");
    pgqd::schema::component_sql(&pgq)
}

#[test]
fn current_version_has_matching_snapshot() {
    let v = pgqd::schema::pgq_schema_version().expect("schema version");
    let path = releases_dir().join(format!("pgq-{v}.sql"));
    let now = current_sql();
    let frozen = released().contains(&v.to_string());
    if std::env::var_os("UPDATE_RELEASE").is_some() {
        assert!(
            !frozen,
            "version {v} is released and frozen: bump pgqd_schema_version() instead"
        );
        fs::write(&path, &now).expect("write snapshot");
        return;
    }
    let snap = fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {} for schema version {v}: run UPDATE_RELEASE=1 cargo test --test upgrade",
            path.display()
        )
    });
    assert!(
        snap == now,
        "sql/pgq differs from the snapshot of version {v}{}",
        if frozen {
            " which is released: bump the version (sql/releases/README.md)"
        } else {
            ": refresh it with UPDATE_RELEASE=1 cargo test --test upgrade"
        }
    );
}

fn snapshots() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(Vec<u32>, String, PathBuf)> = fs::read_dir(releases_dir())
        .expect("sql/releases")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let ver = name.strip_prefix("pgq-")?.strip_suffix(".sql")?.to_string();
            Some((pgqd::schema::parse_version(&ver)?, ver, e.path()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, s, p)| (s, p)).collect()
}

fn install_snapshot(c: &TestCluster, db: &str, file: &Path) {
    c.create_db(db);
    c.psql_file(db, file);
}

fn pgqd_install(c: &TestCluster, db: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(["install", "--dbname", db, "--connstr"])
        .arg(format!(
            "host={} port={} user=postgres",
            c.socket_dir.display(),
            c.port
        ))
        .output()
        .expect("run pgqd install");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgqd install on {db}: {text}");
    text
}

#[test]
fn every_release_upgrades_in_place_with_live_queues() {
    let c = TestCluster::start();
    let current = pgqd::schema::pgq_schema_version().expect("version");
    let snaps = snapshots();
    assert!(!snaps.is_empty(), "no release snapshots under sql/releases");
    for (i, (ver, file)) in snaps.iter().enumerate() {
        // A live database: a queue with a consumer in the middle of a batch.
        let live = format!("live_{i}");
        install_snapshot(&c, &live, file);
        // One psql call per transaction: a tick sees only what committed before it.
        for sql in [
            "select pgq.create_queue('q')",
            "update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0'",
            "select pgq.register_consumer('q', 'c')",
            "select pgq.insert_event('q', 't', 'before-' || i) from generate_series(1, 5) i",
            "select pgq.ticker('q')",
        ] {
            c.psql(&live, sql);
        }
        let batch = c.psql(&live, "select pgq.next_batch('q', 'c')");
        assert!(!batch.is_empty(), "no batch on release {ver}");
        c.psql(&live, "select pgq.insert_event('q', 't', 'during-1')");

        let report = pgqd_install(&c, &live);
        assert!(
            report.contains(&format!("from schema {ver} to {current}"))
                || (ver == current && report.contains("already installed")),
            "unexpected report for {ver}: {report}"
        );
        assert_eq!(c.psql(&live, "select pgq.pgqd_schema_version()"), current);

        // The open batch is still there and complete; later events follow exactly once.
        let got = c.psql(
            &live,
            &format!(
                "select string_agg(ev_data, ',' order by ev_id) from pgq.get_batch_events({batch})"
            ),
        );
        assert_eq!(got, "before-1,before-2,before-3,before-4,before-5");
        c.psql(&live, &format!("select pgq.finish_batch({batch})"));
        c.psql(&live, "select pgq.insert_event('q', 't', 'after-1')");
        c.psql(&live, "select pgq.ticker('q')");
        let b2 = c.psql(&live, "select pgq.next_batch('q', 'c')");
        let got = c.psql(
            &live,
            &format!(
                "select string_agg(ev_data, ',' order by ev_id) from pgq.get_batch_events({b2})"
            ),
        );
        assert_eq!(got, "during-1,after-1");

        // The golden suite on an upgraded, otherwise fresh install.
        let tpl = format!("upgraded_{i}");
        install_snapshot(&c, &tpl, file);
        pgqd_install(&c, &tpl);
        c.psql(
            "postgres",
            &format!("alter database {tpl} is_template true"),
        );
        let failures = golden::run_suite(&c, &tpl, false);
        assert!(
            failures.is_empty(),
            "after upgrading {ver}:\n{}",
            failures.join("\n\n")
        );
    }
}
