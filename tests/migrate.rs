//! `pgqd migrate`: a database with the real pgq 3.5 extension, live queues, consumers (one
//! with an open batch), unconsumed events, a retry event and a user trigger on
//! pgq.logutriga moves to our schema without losing an event or a consumer position; the
//! trigger keeps its function OID and now runs our PL/pgSQL. `--dry-run` changes nothing,
//! a second run has nothing to do, and extensions built on pgq make it refuse.

mod common;

use std::process::{Command, Output};

use common::TestCluster;

fn pgqd(c: &TestCluster, db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .arg("migrate")
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

fn ids(s: &str) -> Vec<i64> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().expect("event id"))
        .collect()
}

/// Reads every batch `consumer` gets from `queue` until none is left; returns the
/// events' ids and data, in order.
fn drain(c: &TestCluster, db: &str, queue: &str, consumer: &str) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    loop {
        let b = c.psql(
            db,
            &format!("select pgq.next_batch('{queue}', '{consumer}')"),
        );
        if b.is_empty() {
            return got;
        }
        let rows = c.psql(
            db,
            &format!("select ev_id, ev_data from pgq.get_batch_events({b}) order by ev_id"),
        );
        for l in rows.lines().filter(|l| !l.is_empty()) {
            let (id, data) = l.split_once('|').expect("id|data");
            got.push((id.parse().expect("id"), data.to_string()));
        }
        c.psql(db, &format!("select pgq.finish_batch({b})"));
    }
}

#[test]
fn migrate_from_the_extension_keeps_everything() {
    let c = TestCluster::start();
    if !c.has_real_pgq() {
        eprintln!(
            "skipped: the real pgq extension is not installed for {}",
            c.bindir.display()
        );
        return;
    }
    let db = "mig";
    c.create_ext_db(db);
    c.psql(
        db,
        "select pgq.create_queue('q1'), pgq.create_queue('q2');
         select pgq.set_queue_config('q1', 'ticker_max_count', '1');
         select pgq.set_queue_config('q2', 'ticker_max_count', '1');
         select pgq.register_consumer('q1', 'c1'), pgq.register_consumer('q1', 'c2'),
                pgq.register_consumer('q2', 'c3');
         create table ut (id int primary key, v text);
         create trigger ut_q after insert or update or delete on ut
            for each row execute procedure pgq.logutriga('q2');",
    );
    // Three events in the first batch; c1 keeps it open, c2 retries one of them.
    let first = ids(&c.psql(
        db,
        "select pgq.insert_event('q1', 't', 'a' || g) from generate_series(1, 3) g",
    ));
    c.psql(db, "select pgq.ticker('q1')");
    let open = c.psql(db, "select pgq.next_batch('q1', 'c1')");
    assert!(!open.is_empty());
    let open_events = c.psql(
        db,
        &format!("select ev_id from pgq.get_batch_events({open}) order by 1"),
    );
    assert_eq!(ids(&open_events), first);
    let b2 = c.psql(db, "select pgq.next_batch('q1', 'c2')");
    c.psql(
        db,
        &format!(
            "select pgq.event_retry({b2}, {}, 0); select pgq.finish_batch({b2})",
            first[1]
        ),
    );
    assert_eq!(c.psql(db, "select count(*) from pgq.retry_queue"), "1");
    // Unconsumed events: two more in q1 (not yet ticked), one from the user trigger.
    let mut rest = ids(&c.psql(
        db,
        "select pgq.insert_event('q1', 't', 'b' || g) from generate_series(1, 2) g",
    ));
    c.psql(db, "insert into ut values (1, 'before')");
    let tgfoid = c.psql(db, "select tgfoid from pg_trigger where tgname = 'ut_q'");
    let c_lang = c.psql(
        db,
        "select prolang from pg_proc where oid = 'pgq.logutriga()'::regprocedure",
    );

    // --dry-run: reports, changes nothing.
    let out = pgqd(&c, db, &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("dry run"), "{}", text(&out));
    assert_eq!(
        c.psql(
            db,
            "select count(*) from pg_extension where extname = 'pgq'"
        ),
        "1"
    );
    assert_eq!(
        c.psql(
            db,
            "select prolang from pg_proc where oid = 'pgq.logutriga()'::regprocedure"
        ),
        c_lang
    );

    // The migration.
    let out = pgqd(&c, db, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("migrated \"mig\" from extension pgq 3.5"),
        "{}",
        text(&out)
    );
    assert_eq!(
        c.psql(
            db,
            "select count(*) from pg_extension where extname = 'pgq'"
        ),
        "0"
    );
    assert_eq!(
        c.psql(db, "select pgq.pgqd_schema_version()"),
        pgqd::schema::pgq_schema_version().expect("schema version")
    );
    assert_eq!(c.psql(db, "select pgq.version()"), "3.5");
    assert_eq!(
        c.psql(
            db,
            "select count(*) from pg_proc p join pg_language l on l.oid = p.prolang
              where p.pronamespace = 'pgq'::regnamespace and l.lanname = 'c'"
        ),
        "0"
    );

    // The open batch returns the same events.
    assert_eq!(
        c.psql(
            db,
            &format!("select ev_id from pgq.get_batch_events({open}) order by 1")
        ),
        open_events
    );
    c.psql(db, &format!("select pgq.finish_batch({open})"));

    // New events after the migration; then every remaining event exactly once.
    rest.extend(ids(
        &c.psql(db, "select pgq.insert_event('q1', 't', 'after')")
    ));
    c.psql(db, "select pgq.ticker()");
    let got: Vec<i64> = drain(&c, db, "q1", "c1").into_iter().map(|e| e.0).collect();
    assert_eq!(got, rest, "c1 after the migration");

    // The retry event comes back to c2 (once), with c2's remaining events.
    assert_eq!(c.psql(db, "select pgq.maint_retry_events()"), "1");
    c.psql(db, "select pgq.ticker('q1')");
    let got: Vec<i64> = drain(&c, db, "q1", "c2").into_iter().map(|e| e.0).collect();
    let mut want = rest.clone();
    want.push(first[1]);
    let mut sorted = got.clone();
    sorted.sort_unstable();
    want.sort_unstable();
    assert_eq!(sorted, want, "c2 after the migration");

    // The user trigger: same function OID, now our PL/pgSQL, and it queues events.
    assert_eq!(
        c.psql(db, "select tgfoid from pg_trigger where tgname = 'ut_q'"),
        tgfoid
    );
    assert_eq!(
        c.psql(
            db,
            "select l.lanname from pg_proc p join pg_language l on l.oid = p.prolang
              where p.oid = 'pgq.logutriga()'::regprocedure"
        ),
        "plpgsql"
    );
    assert_eq!(
        c.psql(db, "select 'pgq.logutriga()'::regprocedure::oid"),
        tgfoid
    );
    c.psql(db, "insert into ut values (2, 'after')");
    c.psql(db, "select pgq.ticker('q2')");
    let got = drain(&c, db, "q2", "c3");
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].1.contains("v=before"), "{got:?}");
    assert!(got[1].1.contains("v=after"), "{got:?}");

    // A second run: nothing to migrate, exit 0.
    let out = pgqd(&c, db, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("nothing to migrate"), "{}", text(&out));

    // Extensions built on pgq: refused, nothing touched.
    let node_available = c.psql(
        "postgres",
        "select count(*) from pg_available_extensions where name = 'pgq_node'",
    ) == "1";
    if node_available {
        c.create_ext_db("withnode");
        c.psql("withnode", "create extension pgq_node");
        let out = pgqd(&c, "withnode", &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("pgq_node"), "{}", text(&out));
        assert_eq!(
            c.psql(
                "withnode",
                "select count(*) from pg_extension where extname = 'pgq'"
            ),
            "1"
        );
    } else {
        eprintln!("skipping the pgq_node refusal: pgq_node is not available");
    }
}
