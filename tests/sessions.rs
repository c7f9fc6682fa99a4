//! Two-session cases on our schema: what a batch holds when transactions overlap ticks,
//! rotations and registrations.
//!
//! # Producers at REPEATABLE READ across a rotation
//!
//! What pgq promises: a batch (last tick, cur tick) holds the events whose inserting
//! transaction is invisible in the last tick's snapshot and visible in the cur tick's; each
//! committed event is delivered once to every consumer registered before it committed.
//! Events are read from the queue's previous and current tables, chosen by comparing the
//! batch's txid range with the rotation bookkeeping: `step1` (txid of the rotating
//! transaction) and `step2` (a txid taken in a later transaction, after the rotation was
//! visible). A batch whose last tick's xmin is above `step2` reads the current table only:
//! this assumes that every transaction with a txid above `step2` saw the new `cur_table`.
//!
//! That assumption holds at READ COMMITTED (each insert reads `pgq.queue` with a fresh
//! snapshot). A REPEATABLE READ transaction reads the queue row with the snapshot taken at its
//! first statement, so if rotation step1 and step2 both commit in between, its insert goes to
//! the *old* table while its txid (assigned at its first write) may be above `step2`:
//! - if the transaction got its txid before the rotation (it wrote anything before), every
//!   tick taken while it runs has xmin <= its txid < step2, so the batch that holds its
//!   commit reads both tables: delivered once. Truncation is safe too: step1 skips while the
//!   slowest consumer's last tick has xmin <= step2, and the old table is truncated only two
//!   rotations later (ntables = 3), after every consumer moved past it.
//! - if its first write comes after step2, nothing in the tick snapshots tells that it still
//!   writes into the old table: a batch whose last tick was taken after step2 (xmin > step2)
//!   reads the current table only, and the event is never delivered (then truncated two
//!   rotations later). [`rr_producer_snapshot_before_rotation`] checks this case. Observed:
//!   the real pgq 3.5 loses the event.
//!
//! Ours states and keeps this guarantee: under REPEATABLE READ or SERIALIZABLE the insert
//! reads the queue row `for share`. A rotation that committed after the producer's snapshot
//! makes the insert fail with a serialization failure (SQLSTATE 40001: retry the
//! transaction) instead of writing where no batch looks; a rotation that comes later waits
//! for the producer to finish. No committed event is lost, at any isolation level.
//! (At READ COMMITTED the insert takes its txid before reading the queue row, so a producer
//! that still sees the old table always has a txid below the rotation's `step2`.)

mod common;

use common::TestCluster;
use tokio_postgres::Client;

/// One delivered event: (ev_id, ev_type, ev_data, ev_retry).
type Ev = (i64, String, Option<String>, Option<i32>);

/// A queue `q` that ticks on every ticker call, with consumer `c1` registered.
async fn setup(c: &TestCluster, db: &str, real: bool) -> Client {
    if real {
        c.create_ext_db(db);
    } else {
        c.create_pgq_db(db);
    }
    let cl = c.connect(db).await;
    cl.batch_execute(
        "select pgq.create_queue('q');
         select pgq.set_queue_config('q', 'ticker_max_lag', '0');
         select pgq.set_queue_config('q', 'ticker_idle_period', '0');
         select pgq.register_consumer('q', 'c1');",
    )
    .await
    .expect("setup queue");
    cl
}

async fn tick(cl: &Client) -> i64 {
    cl.query_one("select pgq.ticker('q')", &[])
        .await
        .expect("ticker")
        .get::<_, Option<i64>>(0)
        .expect("max_lag 0: the ticker always ticks")
}

async fn insert(cl: &Client, data: &str) -> i64 {
    cl.query_one("select pgq.insert_event('q', 'e', $1)", &[&data])
        .await
        .expect("insert_event")
        .get(0)
}

/// Takes, reads and finishes one batch; None when there is none.
async fn batch(cl: &Client, consumer: &str) -> Option<Vec<Ev>> {
    let id: Option<i64> = cl
        .query_one("select pgq.next_batch('q', $1)", &[&consumer])
        .await
        .expect("next_batch")
        .get(0);
    let id = id?;
    let evs = cl
        .query(
            "select ev_id, ev_type, ev_data, ev_retry from pgq.get_batch_events($1)",
            &[&id],
        )
        .await
        .expect("get_batch_events")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    cl.execute("select pgq.finish_batch($1)", &[&id])
        .await
        .expect("finish_batch");
    Some(evs)
}

/// Ticks once, then takes batches until none is left; returns the data of all events.
async fn drain(cl: &Client, consumer: &str) -> Vec<String> {
    tick(cl).await;
    let mut out = Vec::new();
    while let Some(evs) = batch(cl, consumer).await {
        out.extend(evs.into_iter().map(|e| e.2.unwrap_or_default()));
    }
    out
}

fn data(evs: &[Ev]) -> Vec<&str> {
    evs.iter().map(|e| e.2.as_deref().unwrap_or("")).collect()
}

async fn rotate(cl: &Client) -> i32 {
    // step1 and step2 in separate transactions, as pgqd runs them.
    cl.execute("select pgq.maint_rotate_tables_step1('q')", &[])
        .await
        .expect("step1");
    cl.execute("select pgq.maint_rotate_tables_step2()", &[])
        .await
        .expect("step2");
    cur_table(cl).await
}

async fn cur_table(cl: &Client) -> i32 {
    cl.query_one(
        "select queue_cur_table from pgq.queue where queue_name = 'q'",
        &[],
    )
    .await
    .expect("queue row")
    .get(0)
}

#[tokio::test]
async fn transaction_open_across_ticks() {
    let c = TestCluster::start();
    let s0 = setup(&c, "t", false).await;
    let s1 = c.connect("t").await;
    s1.batch_execute("begin").await.unwrap();
    insert(&s1, "long-1").await;
    insert(&s0, "short-1").await;
    tick(&s0).await;
    assert_eq!(data(&batch(&s0, "c1").await.unwrap()), ["short-1"]);
    // several ticks while the transaction stays open
    for i in 0..3 {
        insert(&s0, &format!("short-{}", i + 2)).await;
        tick(&s0).await;
        assert_eq!(
            data(&batch(&s0, "c1").await.unwrap()),
            [format!("short-{}", i + 2)]
        );
    }
    insert(&s1, "long-2").await;
    s1.batch_execute("commit").await.unwrap();
    tick(&s0).await;
    // the long transaction's events land in the batch of the first tick after its commit
    assert_eq!(data(&batch(&s0, "c1").await.unwrap()), ["long-1", "long-2"]);
    tick(&s0).await;
    assert_eq!(batch(&s0, "c1").await.unwrap(), Vec::<Ev>::new());
    assert!(batch(&s0, "c1").await.is_none());
}

#[tokio::test]
async fn insert_committed_after_the_tick_began() {
    let c = TestCluster::start();
    let s0 = setup(&c, "t", false).await;
    let s1 = c.connect("t").await;

    // The producer commits after the ticking transaction took its snapshot, but before
    // that transaction commits: the event is not in this tick's batch, but in the next.
    s1.batch_execute("begin").await.unwrap();
    insert(&s1, "a").await;
    s0.batch_execute("begin").await.unwrap();
    tick(&s0).await;
    s1.batch_execute("commit").await.unwrap();
    s0.batch_execute("commit").await.unwrap();
    assert_eq!(batch(&s0, "c1").await.unwrap(), Vec::<Ev>::new());
    tick(&s0).await;
    assert_eq!(data(&batch(&s0, "c1").await.unwrap()), ["a"]);

    // The ticking transaction began (and read the clock) before the producer committed,
    // but its ticker statement ran after the commit (READ COMMITTED): the event is in.
    s0.batch_execute("begin").await.unwrap();
    s0.query_one("select now()", &[]).await.unwrap();
    s1.batch_execute("begin").await.unwrap();
    insert(&s1, "b").await;
    s1.batch_execute("commit").await.unwrap();
    tick(&s0).await;
    s0.batch_execute("commit").await.unwrap();
    assert_eq!(data(&batch(&s0, "c1").await.unwrap()), ["b"]);

    // An event inserted in the ticking transaction itself belongs to the next batch.
    s0.batch_execute("begin").await.unwrap();
    insert(&s0, "same-tx").await;
    tick(&s0).await;
    s0.batch_execute("commit").await.unwrap();
    assert_eq!(batch(&s0, "c1").await.unwrap(), Vec::<Ev>::new());
    tick(&s0).await;
    assert_eq!(data(&batch(&s0, "c1").await.unwrap()), ["same-tx"]);
    assert!(batch(&s0, "c1").await.is_none());
}

#[tokio::test]
async fn rotation_while_a_batch_is_open() {
    let c = TestCluster::start();
    for (db, real) in [("ours", false), ("real", true)] {
        if real && !c.has_real_pgq() {
            eprintln!("skipping {db}: the real pgq extension is not installed");
            continue;
        }
        rotation_while_a_batch_is_open_in(&c, db, real).await;
    }
}

async fn rotation_while_a_batch_is_open_in(c: &TestCluster, db: &str, real: bool) {
    let s0 = setup(c, db, real).await;
    let s1 = c.connect(db).await;
    s0.batch_execute(
        "select pgq.set_queue_config('q', 'rotation_period', '0');
         select pgq.register_consumer('q', 'c2');",
    )
    .await
    .unwrap();
    // Both consumers past the creation tick (whose xmin is step2: no rotation before).
    insert(&s0, "first").await;
    assert_eq!(drain(&s0, "c1").await, ["first"]);
    assert_eq!(drain(&s0, "c2").await, ["first"]);
    while batch(&s0, "c1").await.is_some() {}
    for i in 0..5 {
        insert(&s0, &format!("old-{i}")).await;
    }
    tick(&s0).await;
    // c1 opens a batch on table 0 and keeps it open.
    let open: i64 = s1
        .query_one("select pgq.next_batch('q', 'c1')", &[])
        .await
        .unwrap()
        .get(0);
    // Rotate as often as the rules allow while the batch is open, with traffic.
    let mut tables = vec![cur_table(&s0).await];
    for i in 0..4 {
        tables.push(rotate(&s0).await);
        insert(&s0, &format!("new-{i}")).await;
        tick(&s0).await;
        // c2 keeps up
        batch(&s0, "c2").await;
    }
    // c1's position (the open batch's start) holds rotation back: at most one rotation
    // beyond the table holding its events, so table 0 is never truncated under it.
    tables.dedup();
    assert_eq!(
        tables,
        [0, 1],
        "{db}: rotation must wait for the consumer with the open batch"
    );
    let evs: Vec<String> = s1
        .query("select ev_data from pgq.get_batch_events($1)", &[&open])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        evs,
        ["old-0", "old-1", "old-2", "old-3", "old-4"],
        "{db}: the open batch's events after the rotation"
    );
    s1.execute("select pgq.finish_batch($1)", &[&open])
        .await
        .unwrap();
    let rest = drain(&s0, "c1").await;
    assert_eq!(rest, ["new-0", "new-1", "new-2", "new-3"], "{db}");
    // Now rotation proceeds again, and events keep flowing through every table.
    let mut seen = Vec::new();
    let mut later_tables = Vec::new();
    for i in 0..6 {
        later_tables.push(rotate(&s0).await);
        insert(&s0, &format!("later-{i}")).await;
        seen.extend(drain(&s0, "c1").await);
        drain(&s0, "c2").await;
    }
    let want: Vec<String> = (0..6).map(|i| format!("later-{i}")).collect();
    assert_eq!(seen, want, "{db}");
    later_tables.sort();
    later_tables.dedup();
    assert_eq!(later_tables, [0, 1, 2], "{db}: rotation resumed");
}

#[tokio::test]
async fn consumer_registered_mid_stream() {
    let c = TestCluster::start();
    let s0 = setup(&c, "t", false).await;
    let s1 = c.connect("t").await;
    insert(&s0, "before-1").await;
    tick(&s0).await;
    insert(&s0, "before-2").await;
    // A transaction that inserted before the registration and commits after it.
    s1.batch_execute("begin").await.unwrap();
    insert(&s1, "open-across-registration").await;
    tick(&s0).await;
    let reg: i32 = s0
        .query_one("select pgq.register_consumer('q', 'late')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(reg, 1);
    insert(&s0, "after-1").await;
    s1.batch_execute("commit").await.unwrap();
    tick(&s0).await;
    insert(&s0, "after-2").await;
    let late = drain(&s0, "late").await;
    assert_eq!(
        late,
        ["open-across-registration", "after-1", "after-2"],
        "a consumer sees what commits after its registration tick, nothing before"
    );
    let early = drain(&s0, "c1").await;
    assert_eq!(
        early,
        [
            "before-1",
            "before-2",
            "open-across-registration",
            "after-1",
            "after-2"
        ]
    );
}

/// A REPEATABLE READ producer that wrote (got its txid) before rotation step1 and commits
/// after step2, with more inserts after the rotation: delivered exactly once, and several
/// rotations with the transaction open lose nothing.
#[tokio::test]
async fn rr_producer_txid_before_rotation() {
    let c = TestCluster::start();
    for (db, real) in [("ours", false), ("real", true)] {
        if real && !c.has_real_pgq() {
            eprintln!("skipping {db}: the real pgq extension is not installed");
            continue;
        }
        let s0 = setup(&c, db, real).await;
        let s1 = c.connect(db).await;
        s0.batch_execute("select pgq.set_queue_config('q', 'rotation_period', '0')")
            .await
            .unwrap();
        insert(&s0, "first").await;
        let mut got = drain(&s0, "c1").await;
        s1.batch_execute("begin isolation level repeatable read")
            .await
            .unwrap();
        insert(&s1, "rr-1").await;
        let mut tables = Vec::new();
        for i in 0..6 {
            insert(&s0, &format!("rc-{i}")).await;
            tables.push(rotate(&s0).await);
            insert(&s1, &format!("rr-{}", i + 2)).await;
            got.extend(drain(&s0, "c1").await);
        }
        s1.batch_execute("commit").await.unwrap();
        for _ in 0..3 {
            rotate(&s0).await;
            got.extend(drain(&s0, "c1").await);
        }
        let mut want = vec!["first".to_string()];
        want.extend((0..6).map(|i| format!("rc-{i}")));
        want.extend((1..=7).map(|i| format!("rr-{i}")));
        assert_eq!(
            got, want,
            "{db}: every event once, the RR transaction's after its commit (tables {tables:?})"
        );
        // The open transaction held rotation back: pgq lets one step through (the
        // consumer's position stops the next); ours holds the queue row FOR SHARE in an
        // RR producer, so step1 skips the queue until the producer ends.
        tables.dedup();
        let held = if real { [1] } else { [0] };
        assert_eq!(
            tables, held,
            "{db}: rotation waits for the open transaction"
        );
    }
}

/// A REPEATABLE READ producer that took its snapshot before rotation step1 but writes only
/// after step2 (see the file comment): its insert reads the stale `cur_table` and goes to
/// the old table while its txid is above step2.
#[tokio::test]
async fn rr_producer_snapshot_before_rotation() {
    let c = TestCluster::start();
    let mut outcome = Vec::new();
    for (db, real) in [("ours", false), ("real", true)] {
        if real && !c.has_real_pgq() {
            eprintln!("skipping {db}: the real pgq extension is not installed");
            continue;
        }
        let s0 = setup(&c, db, real).await;
        let s1 = c.connect(db).await;
        s0.batch_execute("select pgq.set_queue_config('q', 'rotation_period', '0')")
            .await
            .unwrap();
        // Past the creation txid: the first rotation is allowed.
        insert(&s0, "rc-0").await;
        let mut got = drain(&s0, "c1").await;
        s1.batch_execute("begin isolation level repeatable read")
            .await
            .unwrap();
        // the snapshot is taken by the first statement
        s1.query_one("select count(*) from pgq.queue", &[])
            .await
            .unwrap();
        let before = cur_table(&s0).await;
        let after = rotate(&s0).await;
        assert_ne!(before, after, "{db}: the rotation happened");
        // The consumer moves past step2 while the RR transaction has no txid yet.
        insert(&s0, "rc-1").await;
        got.extend(drain(&s0, "c1").await);
        let res = s1
            .query_one("select pgq.insert_event('q', 'e', 'rr-late')", &[])
            .await;
        if !real {
            let code = res.as_ref().err().and_then(|e| e.code()).map(|c| c.code());
            assert_eq!(
                code,
                Some("40001"),
                "ours must refuse the stale RR insert with a serialization failure: {res:?}"
            );
        }
        let table: Option<String> = s1
            .query_one("select pgq.current_event_table('q')", &[])
            .await
            .ok()
            .map(|r| r.get(0));
        let commit = s1.batch_execute("commit").await;
        insert(&s0, "rc-2").await;
        got.extend(drain(&s0, "c1").await);
        for _ in 0..3 {
            rotate(&s0).await;
            got.extend(drain(&s0, "c1").await);
        }
        let line = format!(
            "{db}: insert {:?}, current_event_table in the RR tx {:?} (queue now on {after}), \
             commit {:?}, delivered {got:?}",
            res.as_ref()
                .map(|r| r.get::<_, i64>(0))
                .map_err(|e| e.to_string()),
            table,
            commit.as_ref().map_err(|e| e.to_string()),
        );
        eprintln!("{line}");
        outcome.push((db, res.is_ok() && commit.is_ok(), got, line));
    }
    for (db, committed, got, line) in outcome {
        let want: Vec<&str> = if committed {
            vec!["rc-0", "rc-1", "rr-late", "rc-2"]
        } else {
            vec!["rc-0", "rc-1", "rc-2"]
        };
        if db == "ours" {
            assert_eq!(
                got, want,
                "an RR producer whose snapshot predates a rotation lost or duplicated \
                 events: {line}"
            );
        }
    }
}
