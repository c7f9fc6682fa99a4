//! Daemon ticking against real clusters: the tick rules of reference §3.1 (max_lag,
//! idle back-off, max_count, paused), a broken queue that does not stop the others, our
//! schema's first-event fix, and a reload that changes ticker_period.

mod common;
mod daemon_support;

use std::time::{Duration, Instant};

use common::TestCluster;
use daemon_support::{
    Daemon, last_tick, real_pgq_or_skip, settle_idle, test_config, wait_tick_after,
};

/// Gaps in seconds between the consecutive ticks of `queue`.
fn tick_gaps(c: &TestCluster, db: &str, queue: &str) -> Vec<f64> {
    let out = c.psql(
        db,
        &format!(
            "select extract(epoch from tick_time - lag(tick_time) over (order by tick_id)) \
               from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
              where q.queue_name = '{queue}' order by tick_id"
        ),
    );
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().expect("gap"))
        .collect()
}

/// Asserts that `queue` gets no tick for `d` (a bounded check for a negative).
async fn assert_no_tick_for(c: &TestCluster, db: &str, queue: &str, d: Duration) {
    let before = last_tick(c, db, queue);
    tokio::time::sleep(d).await;
    assert_eq!(
        last_tick(c, db, queue),
        before,
        "unexpected tick on {queue}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_queue_backs_off_by_doubling_up_to_idle_period() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    c.psql(
        "db",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '0.2'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '0.8')",
    );
    let d = Daemon::start(test_config(&c)).await;
    common::wait_for("eight ticks", Duration::from_secs(20), || {
        let n = last_tick(&c, "db", "q");
        async move { (n >= 8).then_some(()) }
    })
    .await;
    d.stop().await.expect("clean stop");
    let gaps = tick_gaps(&c, "db", "q");
    // gaps[0] is the one before the daemon's first tick; after it, each gap is at least
    // max_lag/2, about twice the one before, and capped by idle_period.
    for w in gaps[2..].windows(2) {
        let (prev, cur) = (w[0], w[1]);
        let expect = (0.1f64).max((2.0 * prev).min(0.8));
        assert!(
            cur >= expect - 0.01 && cur <= expect + 0.3,
            "gap {cur:.3} after {prev:.3}, expected ~{expect:.3}; all: {gaps:?}"
        );
    }
    let last = *gaps.last().unwrap();
    assert!(
        (0.79..1.2).contains(&last),
        "capped at idle_period: {gaps:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_queue_ticks_at_max_lag_and_at_max_count() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    c.psql(
        "db",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '0.6'); \
         select pgq.set_queue_config('q', 'ticker_max_count', '5'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '1 hour')",
    );
    c.psql("db", "select pgq.insert_event('q', 'warm', 'up')");
    settle_idle(&c, "db", "q");
    let d = Daemon::start(test_config(&c)).await;
    // Idle after settle_idle: no tick for a while.
    assert_no_tick_for(&c, "db", "q", Duration::from_millis(700)).await;

    // pgq measures max_lag from the latest tick: an event into a long-idle queue ticks at
    // once; a second event right after that tick waits until the tick is max_lag old.
    let t0 = last_tick(&c, "db", "q");
    c.psql("db", "select pgq.insert_event('q', 'a', '1')");
    let t1 = wait_tick_after(&c, "db", "q", t0, Duration::from_secs(5)).await;
    c.psql("db", "select pgq.insert_event('q', 'a', '2')");
    wait_tick_after(&c, "db", "q", t1, Duration::from_secs(5)).await;
    let gap = *tick_gaps(&c, "db", "q").last().unwrap();
    assert!(
        (0.6..0.9).contains(&gap),
        "max_lag tick {gap:.3} s after the previous one"
    );

    // max_count events at once: a tick well before max_lag.
    let t2 = last_tick(&c, "db", "q");
    c.psql(
        "db",
        "select pgq.insert_event('q', 'b', i::text) from generate_series(1, 5) i",
    );
    wait_tick_after(&c, "db", "q", t2, Duration::from_secs(5)).await;
    let gap = *tick_gaps(&c, "db", "q").last().unwrap();
    assert!(
        gap < 0.45,
        "max_count tick {gap:.3} s after the previous one"
    );
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_and_external_queues_are_not_ticked() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    c.psql(
        "db",
        "select pgq.create_queue('p'); select pgq.create_queue('x'); \
         select pgq.create_queue('ok'); \
         select pgq.set_queue_config(q, 'ticker_max_count', '1') from unnest(array['p','x','ok']) q; \
         select pgq.set_queue_config('p', 'ticker_paused', 'true'); \
         select pgq.set_queue_config('x', 'external_ticker', 'true')",
    );
    let d = Daemon::start(test_config(&c)).await;
    let ok0 = last_tick(&c, "db", "ok");
    c.psql(
        "db",
        "select pgq.insert_event(q, 'e', 'd') from unnest(array['p','x','ok']) q",
    );
    wait_tick_after(&c, "db", "ok", ok0, Duration::from_secs(5)).await;
    let p0 = last_tick(&c, "db", "p");
    let x0 = last_tick(&c, "db", "x");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(last_tick(&c, "db", "p"), p0, "paused queue ticked");
    assert_eq!(last_tick(&c, "db", "x"), x0, "external-ticker queue ticked");
    // Unpaused, it ticks again.
    c.psql(
        "db",
        "select pgq.set_queue_config('p', 'ticker_paused', 'false')",
    );
    wait_tick_after(&c, "db", "p", p0, Duration::from_secs(5)).await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_queue_does_not_stop_the_others() {
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    c.psql(
        "db",
        "select pgq.create_queue(q) from unnest(array['a_bad_state','b_good','c_no_seq']) q; \
         select pgq.set_queue_config(q, 'ticker_max_count', '1') \
           from unnest(array['a_bad_state','b_good','c_no_seq']) q",
    );
    // "Invalid PgQ state": a tick whose snapshot lies in the future (as after a restore
    // into another cluster). pgq.ticker() would fail for every queue at once.
    c.psql(
        "db",
        "insert into pgq.tick (tick_queue, tick_id, tick_snapshot, tick_event_seq) \
         select queue_id, 1000, '999999999:999999999:', 0 from pgq.queue \
          where queue_name = 'a_bad_state'",
    );
    // A queue whose event sequence is gone.
    c.psql(
        "db",
        "update pgq.queue set queue_event_seq = 'pgq.no_such_seq' where queue_name = 'c_no_seq'",
    );
    let err = c.psql_output("db", &["-c", "select pgq.ticker()"]);
    assert!(!err.status.success(), "pgq.ticker() fails as a whole");

    let d = Daemon::start(test_config(&c)).await;
    for _ in 0..3 {
        let t = last_tick(&c, "db", "b_good");
        // Events in both: both are due; the broken one fails each time. (c_no_seq, with
        // its sequence unreadable, counts as due on every pass.)
        c.psql(
            "db",
            "select pgq.insert_event(q, 'e', 'd') from unnest(array['a_bad_state','b_good']) q",
        );
        wait_tick_after(&c, "db", "b_good", t, Duration::from_secs(5)).await;
    }
    assert_eq!(last_tick(&c, "db", "a_bad_state"), 1000);
    assert!(
        d.counters.totals().errors >= 2,
        "both broken queues were tried and failed"
    );
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_ticks_without_waiting_for_ticker_period() {
    // ticker_period is only the fallback when the activity signal is down (control.rs):
    // with it, an event that makes a queue due ticks within milliseconds, whatever the
    // period, also after a reload.
    let c = TestCluster::start();
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_ext_db("db");
    c.psql(
        "db",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_count', '1'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '1 hour'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '1 hour')",
    );
    // The real extension does not count a fresh queue's first event; spend it.
    c.psql("db", "select pgq.insert_event('q', 'warm', 'up')");
    settle_idle(&c, "db", "q");
    let mut cfg = test_config(&c);
    cfg.ticker_period = Duration::from_secs(30);
    let d = Daemon::start(cfg).await;
    d.wait_serving("db", true).await;
    let t0 = last_tick(&c, "db", "q");
    let started = Instant::now();
    c.psql("db", "select pgq.insert_event('q', 'e', 'd')");
    let t1 = wait_tick_after(&c, "db", "q", t0, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ticked after {:?}, not within ms of the event",
        started.elapsed()
    );
    d.reload(|cfg| cfg.ticker_period = Duration::from_secs(20));
    let started = Instant::now();
    c.psql("db", "select pgq.insert_event('q', 'e', 'd')");
    wait_tick_after(&c, "db", "q", t1, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_schema_ticks_a_fresh_queues_first_event_after_max_lag() {
    let c = TestCluster::start();
    c.create_pgq_db("ours");
    c.psql(
        "ours",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '0.3'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '1 hour')",
    );
    settle_idle(&c, "ours", "q");
    let d = Daemon::start(test_config(&c)).await;
    d.wait_serving("ours", true).await;
    assert_no_tick_for(&c, "ours", "q", Duration::from_millis(500)).await;
    let t0 = last_tick(&c, "ours", "q");
    let started = Instant::now();
    c.psql("ours", "select pgq.insert_event('q', 'first', 'event')");
    wait_tick_after(&c, "ours", "q", t0, Duration::from_secs(3)).await;
    // The latest tick is older than max_lag, so the next due check ticks it (the real
    // extension would wait for the idle period, an hour here).
    let took = started.elapsed();
    assert!(
        took <= Duration::from_millis(1200),
        "first event ticked after {took:?}"
    );
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_ticked_after_its_transaction_commits_not_before() {
    // Ticking while the producer's transaction is still open would make a tick without its
    // event, and pgq's ticker (which already counted the event) would make the next one only
    // at the idle back-off. Activity does not name a database while its writer is open, and
    // a due check woken by anything else (here: the new sessions' counters) holds the tick
    // back until the commit.
    let c = TestCluster::start();
    c.create_pgq_db("ours");
    c.psql(
        "ours",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '0.3'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '1 hour')",
    );
    settle_idle(&c, "ours", "q");
    let d = Daemon::start(test_config(&c)).await;
    d.wait_serving("ours", true).await;
    // Both sessions open before the transaction: a new session coming and going is itself
    // activity (session counters), and this test is about the producer's state changes.
    let mut producer = c.connect("ours").await;
    let check = c.connect("ours").await;
    // A long idle gap: pgq's doubling back-off puts the next idle tick seconds away.
    assert_no_tick_for(&c, "ours", "q", Duration::from_secs(2)).await;
    let tx = producer.transaction().await.expect("begin");
    let xid: i64 = tx
        .query_one(
            "select pgq.insert_event('q', 'slow', 'commit'), txid_current()",
            &[],
        )
        .await
        .expect("insert")
        .get(1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    tx.commit().await.expect("commit");
    let committed = Instant::now();
    common::wait_for(
        "a tick whose snapshot sees the event",
        Duration::from_secs(10),
        || async {
            check
                .query_one(
                    "select exists (select 1 from pgq.tick t join pgq.queue q \
                     on q.queue_id = t.tick_queue where q.queue_name = 'q' \
                     and txid_visible_in_snapshot($1, t.tick_snapshot))",
                    &[&xid],
                )
                .await
                .ok()
                .and_then(|r| r.get::<_, bool>(0).then_some(()))
        },
    )
    .await;
    let took = committed.elapsed();
    assert!(
        took <= Duration::from_millis(1500),
        "the event's tick came {took:?} after its commit"
    );
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_setting_applies_without_waiting_for_a_full_read() {
    // Between full due checks the daemon predicts from the figures it read last; a
    // setting changed meanwhile must not wait for the next full read (minutes away).
    let c = TestCluster::start();
    c.create_pgq_db("ours");
    c.psql(
        "ours",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '60'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '1 hour')",
    );
    settle_idle(&c, "ours", "q");
    let d = Daemon::start(test_config(&c)).await;
    d.wait_serving("ours", true).await;
    // One event: by max_lag 60 s it is due a minute after the latest tick.
    let mut producer = c.connect("ours").await;
    let t0 = last_tick(&c, "ours", "q");
    producer
        .execute("select pgq.insert_event('q', 'e', 'd')", &[])
        .await
        .expect("insert");
    assert_no_tick_for(&c, "ours", "q", Duration::from_secs(1)).await;
    // max_lag lowered: the event is due now.
    let tx = producer.transaction().await.expect("begin");
    tx.execute(
        "select pgq.set_queue_config('q', 'ticker_max_lag', '0.2')",
        &[],
    )
    .await
    .expect("set");
    tx.commit().await.expect("commit");
    wait_tick_after(&c, "ours", "q", t0, Duration::from_secs(5)).await;
    d.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_queues_tick_in_batches_and_a_broken_one_is_ticked_alone() {
    // Due queues are ticked up to 50 per statement (200 through pgq._ticker_batch, which
    // our schema has from 1.1); a batch that fails is retried one queue at a time, and a
    // queue that failed is ticked on its own from then on.
    let c = TestCluster::start();
    c.create_pgq_db("ours");
    // Counts the daemon's calls of PL/pgSQL functions (pg_stat_user_functions).
    c.psql("postgres", "alter database ours set track_functions = 'pl'");
    c.psql(
        "ours",
        "select pgq.create_queue('q' || i) from generate_series(1, 120) i; \
         select pgq.set_queue_config('q' || i, 'ticker_max_lag', '0.2') \
           from generate_series(1, 120) i; \
         select pgq.set_queue_config('q' || i, 'ticker_idle_period', '1 hour') \
           from generate_series(1, 120) i",
    );
    // As settle_idle, for all of them: long idle, the next idle tick an hour away.
    c.psql(
        "ours",
        "update pgq.tick set tick_time = tick_time - interval '1 hour'; \
         select pgq.ticker(queue_name) from pgq.queue",
    );
    // q77's next tick fails: its tick sequence is gone.
    c.psql(
        "ours",
        "update pgq.queue set queue_tick_seq = 'pgq.no_such_seq' where queue_name = 'q77'",
    );
    let d = Daemon::start(test_config(&c)).await;
    d.wait_serving("ours", true).await;
    c.psql(
        "ours",
        "create table before as \
           select q.queue_name, max(t.tick_id) as tick_id from pgq.queue q \
             join pgq.tick t on t.tick_queue = q.queue_id group by 1; \
         select pgq.insert_event('q' || i, 'e', 'd') from generate_series(1, 120) i",
    );
    let ticked = "select count(*) from before b join pgq.queue q using (queue_name) \
                  where (select max(tick_id) from pgq.tick t where t.tick_queue = q.queue_id) \
                        > b.tick_id";
    common::wait_for("119 queues ticked", Duration::from_secs(10), || {
        let n: i64 = c.psql("ours", ticked).parse().expect("count");
        async move { (n == 119).then_some(()) }
    })
    .await;
    let broken = last_tick(&c, "ours", "q77");
    assert_eq!(
        c.psql(
            "ours",
            "select tick_id from before where queue_name = 'q77'"
        ),
        broken.to_string(),
        "broken queue ticked"
    );
    assert!(d.counters.totals().errors >= 1, "the broken queue failed");
    // The working queues' next events are ticked through pgq._ticker_batch: called once
    // empty when the session was primed (120 queues), then for the batches (a call that
    // failed is not counted).
    c.psql(
        "ours",
        "drop table before; \
         create table before as \
           select q.queue_name, max(t.tick_id) as tick_id from pgq.queue q \
             join pgq.tick t on t.tick_queue = q.queue_id group by 1; \
         select pgq.insert_event('q' || i, 'e', 'd') from generate_series(1, 120) i \
          where i <> 77",
    );
    common::wait_for("119 queues ticked again", Duration::from_secs(10), || {
        let n: i64 = c.psql("ours", ticked).parse().expect("count");
        async move { (n == 119).then_some(()) }
    })
    .await;
    common::wait_for(
        "batched tick calls counted",
        Duration::from_secs(10),
        || {
            let n: i64 = c
                .psql(
                    "ours",
                    "select coalesce(sum(calls), 0) from pg_stat_user_functions \
                  where schemaname = 'pgq' and funcname = '_ticker_batch'",
                )
                .parse()
                .expect("calls");
            async move { (n >= 2).then_some(()) }
        },
    )
    .await;
    // Repaired, it ticks again.
    c.psql(
        "ours",
        "update pgq.queue set queue_tick_seq = 'pgq.event_' || queue_id || '_tick_seq' \
          where queue_name = 'q77'",
    );
    wait_tick_after(&c, "ours", "q77", broken, Duration::from_secs(5)).await;
    d.stop().await.expect("clean stop");
}
