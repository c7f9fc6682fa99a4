//! Daemon maintenance and retry against real clusters: rotation when the period elapsed
//! (and not while a consumer lags), retry events back in a later batch, VACUUM that really
//! ran, a failing extra maintenance function that fails only its step, and a clean stop in
//! the middle of a maintenance round.

mod common;
mod daemon_support;

use std::time::Duration;

use common::{ClusterOptions, TestCluster, wait_for};
use daemon_support::{
    Daemon, last_tick, real_pgq_or_skip, require_real_pgq, test_config, wait_tick_after,
};

/// Which pgq a test database gets.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// The real pgq 3.5 extension.
    Ext,
    /// Our plain-SQL schema (`sql/pgq/`).
    Ours,
}

fn create(c: &TestCluster, kind: Kind, db: &str) {
    match kind {
        Kind::Ext => {
            require_real_pgq(c);
            c.create_ext_db(db)
        }
        Kind::Ours => c.create_pgq_db(db),
    }
}

fn cur_table(c: &TestCluster, db: &str, queue: &str) -> i32 {
    c.psql(
        db,
        &format!("select queue_cur_table from pgq.queue where queue_name = '{queue}'"),
    )
    .parse()
    .expect("cur_table")
}

/// A queue that ticks quickly when idle, so consumers get batches without waiting.
fn fast_queue(c: &TestCluster, db: &str, queue: &str) {
    c.psql(
        db,
        &format!(
            "select pgq.create_queue('{queue}'); \
             select pgq.set_queue_config('{queue}', 'ticker_max_lag', '0.1'); \
             select pgq.set_queue_config('{queue}', 'ticker_idle_period', '0.3')"
        ),
    );
}

/// Takes the next batch of `consumer` (if any), returns its (ev_id, ev_retry) rows, and
/// finishes it.
fn take_batch(
    c: &TestCluster,
    db: &str,
    queue: &str,
    consumer: &str,
) -> Option<Vec<(i64, Option<i32>)>> {
    let b = c.psql(
        db,
        &format!("select pgq.next_batch('{queue}', '{consumer}')"),
    );
    if b.is_empty() {
        return None;
    }
    let rows = c.psql(
        db,
        &format!("select ev_id, coalesce(ev_retry::text, '') from pgq.get_batch_events({b})"),
    );
    c.psql(db, &format!("select pgq.finish_batch({b})"));
    Some(
        rows.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (id, retry) = l.split_once('|').expect("two columns");
                (id.parse().expect("id"), retry.parse().ok())
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotates_when_period_elapsed_and_waits_for_lagging_consumer() {
    rotation(Kind::Ext).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_schema_rotates_when_period_elapsed_and_waits_for_lagging_consumer() {
    rotation(Kind::Ours).await
}

async fn rotation(kind: Kind) {
    let c = TestCluster::start();
    if matches!(kind, Kind::Ext) && !real_pgq_or_skip(&c) {
        return;
    }
    create(&c, kind, "db");
    fast_queue(&c, "db", "q");
    c.psql(
        "db",
        "select pgq.set_queue_config('q', 'rotation_period', '0.3 seconds')",
    );
    let d = Daemon::start(test_config(&c)).await;
    // Register once the daemon has made a tick of its own (after the queue's creation).
    wait_tick_after(&c, "db", "q", 1, Duration::from_secs(5)).await;
    c.psql("db", "select pgq.register_consumer('q', 'slow')");

    wait_for("first rotation", Duration::from_secs(10), || {
        let t = cur_table(&c, "db", "q");
        async move { (t == 1).then_some(()) }
    })
    .await;
    wait_for("rotation step2", Duration::from_secs(10), || {
        let s = c.psql("db", "select queue_switch_step2 is not null from pgq.queue");
        async move { (s == "t").then_some(()) }
    })
    .await;
    // The consumer still sits before the rotation: the table it may need is not reused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        cur_table(&c, "db", "q"),
        1,
        "rotated under a lagging consumer"
    );

    // Once it catches up, rotation goes on.
    wait_for(
        "rotation after the consumer caught up",
        Duration::from_secs(15),
        || {
            let _ = take_batch(&c, "db", "q", "slow");
            let t = cur_table(&c, "db", "q");
            async move { (t == 2).then_some(()) }
        },
    )
    .await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_event_comes_back_in_a_later_batch() {
    retry(Kind::Ext).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_schema_retried_event_comes_back_in_a_later_batch() {
    retry(Kind::Ours).await
}

async fn retry(kind: Kind) {
    let c = TestCluster::start();
    if matches!(kind, Kind::Ext) && !real_pgq_or_skip(&c) {
        return;
    }
    create(&c, kind, "db");
    fast_queue(&c, "db", "q");
    c.psql("db", "select pgq.register_consumer('q', 'c')");
    let d = Daemon::start(test_config(&c)).await;
    let id: i64 = c
        .psql("db", "select pgq.insert_event('q', 'job', 'payload')")
        .parse()
        .expect("event id");
    // Take batches until the one holding the event; retry it at once (0 seconds).
    wait_for("the event in a batch", Duration::from_secs(10), || {
        let b = c.psql("db", "select pgq.next_batch('q', 'c')");
        let mut found = None;
        if !b.is_empty() {
            let evs = c.psql(
                "db",
                &format!("select ev_id from pgq.get_batch_events({b})"),
            );
            if evs.lines().any(|l| l == id.to_string()) {
                c.psql("db", &format!("select pgq.event_retry({b}, {id}::int8, 0)"));
                found = Some(());
            }
            c.psql("db", &format!("select pgq.finish_batch({b})"));
        }
        async move { found }
    })
    .await;

    let retried = wait_for(
        "the retried event in a later batch",
        Duration::from_secs(10),
        || {
            let got = take_batch(&c, "db", "q", "c")
                .and_then(|rows| rows.into_iter().find(|(ev, _)| *ev == id));
            async move { got }
        },
    )
    .await;
    assert_eq!(retried.1, Some(1), "ev_retry counts the retry");
    assert!(d.counters.totals().retry >= 1, "retry counter moved");
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_really_runs_when_autovacuum_is_off() {
    vacuum(Kind::Ext).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_schema_vacuum_really_runs_when_autovacuum_is_off() {
    vacuum(Kind::Ours).await
}

async fn vacuum(kind: Kind) {
    let c = TestCluster::start_with(ClusterOptions {
        conf: vec!["autovacuum = off".into()],
        ..ClusterOptions::default()
    });
    if matches!(kind, Kind::Ext) && !real_pgq_or_skip(&c) {
        return;
    }
    create(&c, kind, "db");
    c.psql("db", "select pgq.create_queue('q')");
    let listed = c.psql("db", "select count(*) from pgq.maint_tables_to_vacuum()");
    assert_ne!(
        listed, "0",
        "pgq lists tables to vacuum with autovacuum off"
    );
    // The daemon vacuums only tables the statistics show dead rows in.
    c.psql("db", "update pgq.tick set tick_time = tick_time");
    let d = Daemon::start(test_config(&c)).await;
    wait_for("pgq.tick vacuumed", Duration::from_secs(10), || {
        let v = c.psql(
            "db",
            "select last_vacuum is not null from pg_stat_user_tables \
              where relid = 'pgq.tick'::regclass",
        );
        async move { (v == "t").then_some(()) }
    })
    .await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_extra_maint_function_fails_only_its_step() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    fast_queue(&c, "db", "q");
    c.psql(
        "db",
        "create table maint_log (q text, at timestamptz default now()); \
         create function public.log_maint(text) returns int language sql \
           as $$ insert into maint_log (q) values ($1); select 0 $$; \
         create function public.void_maint(text) returns void language sql \
           as $$ insert into maint_log (q) values ('void') $$; \
         update pgq.queue set queue_extra_maint = array['public.no_such_function', \
           'nosuchschema.f', 'public.void_maint', 'public.log_maint']",
    );
    let d = Daemon::start(test_config(&c)).await;
    wait_for(
        "the steps after the missing functions ran",
        Duration::from_secs(10),
        || {
            let n = c.psql(
                "db",
                "select count(distinct q) from maint_log where q in ('q', 'void')",
            );
            async move { (n == "2").then_some(()) }
        },
    )
    .await;
    // And ticking is not disturbed.
    let t = last_tick(&c, "db", "q");
    wait_tick_after(&c, "db", "q", t, Duration::from_secs(5)).await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_maintenance_lets_the_statement_finish() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    c.psql(
        "db",
        "select pgq.create_queue('q'); \
         create table maint_log (q text, at timestamptz default now()); \
         create function public.slow_maint(text) returns int language sql \
           as $$ select pg_sleep(1); insert into maint_log (q) values ($1); select 0 $$; \
         update pgq.queue set queue_extra_maint = array['public.slow_maint']",
    );
    let d = Daemon::start(test_config(&c)).await;
    wait_for("slow maintenance running", Duration::from_secs(10), || {
        let n = c.psql(
            "db",
            "select count(*) from pg_stat_activity where application_name = 'pgqd' \
              and state = 'active' and query like '%slow_maint%'",
        );
        async move { (n == "1").then_some(()) }
    })
    .await;
    let before = c.psql("db", "select count(*) from maint_log");
    d.stop().await.expect("stopped within shutdown_timeout");
    let after = c.psql("db", "select count(*) from maint_log");
    assert_eq!(
        after.parse::<i64>().unwrap(),
        before.parse::<i64>().unwrap() + 1,
        "the call in flight finished and committed"
    );
    wait_for("connections closed", Duration::from_secs(5), || {
        let n = c.psql(
            "postgres",
            "select count(*) from pg_stat_activity where application_name = 'pgqd'",
        );
        async move { (n == "0").then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_names_the_tasks_that_did_not_finish() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    c.psql(
        "db",
        "select pgq.create_queue('q'); \
         create function public.very_slow(text) returns int language sql \
           as $$ select pg_sleep(5); select 0 $$; \
         update pgq.queue set queue_extra_maint = array['public.very_slow']",
    );
    let mut cfg = test_config(&c);
    cfg.shutdown_timeout = Duration::from_millis(300);
    let d = Daemon::start(cfg).await;
    wait_for(
        "very slow maintenance running",
        Duration::from_secs(10),
        || {
            let n = c.psql(
                "db",
                "select count(*) from pg_stat_activity where application_name = 'pgqd' \
              and state = 'active' and query like '%very_slow%'",
            );
            async move { (n == "1").then_some(()) }
        },
    )
    .await;
    match d.stop().await {
        Err(pgqd::daemon::Error::ShutdownTimedOut(names)) => {
            assert_eq!(names, vec!["db db".to_string()])
        }
        other => panic!("expected a shutdown timeout, got {other:?}"),
    }
}

/// Runs a daemon until it has made `rounds` maintenance rounds, then stops it (its
/// sessions end, so the server's function counts are flushed).
async fn run_maint_rounds(cfg: &pgqd::config::Config, rounds: u64) {
    let d = Daemon::start(cfg.clone()).await;
    wait_for("maintenance rounds", Duration::from_secs(10), || {
        let n = d.counters.totals().maint;
        async move { (n >= rounds).then_some(()) }
    })
    .await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maint_operations_is_asked_only_when_it_may_list_something() {
    // pgq.maint_operations() compiles two PL/pgSQL functions in every new session; the
    // daemon first asks a plain statement whether a rotation is due or half done (or
    // anything else could be listed) and calls it only then. Counted by the server.
    let c = TestCluster::start_with(ClusterOptions {
        conf: vec!["track_functions = 'pl'".into()],
        ..ClusterOptions::default()
    });
    let kinds: Vec<(Kind, &str)> = if c.has_real_pgq() {
        vec![(Kind::Ours, "ours"), (Kind::Ext, "ext")]
    } else {
        vec![(Kind::Ours, "ours")]
    };
    for &(kind, db) in &kinds {
        create(&c, kind, db);
        fast_queue(&c, db, "q");
    }
    let mut cfg = test_config(&c);
    cfg.maint_period = Duration::from_millis(200);
    run_maint_rounds(&cfg, 3 * kinds.len() as u64).await;
    let calls = |db: &str| -> i64 {
        c.psql(
            db,
            "select coalesce(sum(calls), 0) from pg_stat_user_functions \
              where schemaname = 'pgq' and funcname = 'maint_operations'",
        )
        .parse()
        .expect("calls")
    };
    for &(_, db) in &kinds {
        assert_eq!(calls(db), 0, "{db}: asked with nothing to list");
    }

    // A rotation due: asked, and the rotation runs.
    for &(_, db) in &kinds {
        c.psql(
            db,
            "select pgq.set_queue_config('q', 'rotation_period', '0.3 seconds')",
        );
    }
    let d = Daemon::start(cfg.clone()).await;
    for &(_, db) in &kinds {
        wait_for("rotation", Duration::from_secs(10), || {
            let t = cur_table(&c, db, "q");
            async move { (t != 0).then_some(()) }
        })
        .await;
        wait_for("maint_operations counted", Duration::from_secs(10), || {
            let n = calls(db);
            async move { (n > 0).then_some(()) }
        })
        .await;
    }

    // A consumer that stays behind blocks the next rotation: pgq would list step 1 every
    // round; the daemon no longer asks. After at most one more rotation (the consumer's
    // tick may be newer than the last one), nothing changes and nothing is asked. Calls
    // are read with the daemon stopped: a session flushes its counts when it ends.
    for &(_, db) in &kinds {
        c.psql(db, "select pgq.register_consumer('q', 'stopped')");
    }
    for &(_, db) in &kinds {
        wait_for(
            "rotation blocked by the consumer",
            Duration::from_secs(10),
            || {
                let ok = c.psql(
                    db,
                    "select queue_switch_step2 is not null \
                        and queue_switch_time < now() - interval '1 second' \
                   from pgq.queue",
                ) == "t";
                async move { ok.then_some(()) }
            },
        )
        .await;
    }
    d.stop().await.expect("clean stop");
    let before: Vec<(i64, i32)> = kinds
        .iter()
        .map(|&(_, db)| (calls(db), cur_table(&c, db, "q")))
        .collect();
    run_maint_rounds(&cfg, 6 * kinds.len() as u64).await;
    for (&(_, db), &(n, t)) in kinds.iter().zip(&before) {
        assert_eq!(
            cur_table(&c, db, "q"),
            t,
            "{db}: rotated under a stopped consumer"
        );
        assert_eq!(calls(db), n, "{db}: asked while the rotation was blocked");
    }
    // It catches up: the rotation goes on.
    let d = Daemon::start(cfg).await;
    for (&(_, db), &(_, t)) in kinds.iter().zip(&before) {
        wait_for(
            "rotation after the consumer caught up",
            Duration::from_secs(15),
            || {
                let _ = take_batch(&c, db, "q", "stopped");
                let now = cur_table(&c, db, "q");
                async move { (now != t).then_some(()) }
            },
        )
        .await;
    }
    d.stop().await.expect("clean stop");
}
