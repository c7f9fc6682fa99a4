//! `pgq._ticker_batch(names)` (schema 1.1, the daemon's batched tick) decides, errs and
//! warns exactly as `pgq.ticker(name)` called for each name in turn, in one transaction:
//! every branch of the tick rule (no tick, one tick, idle back-off below and above
//! `max_lag / 2`, twice the previous gap and the idle period; events below and at
//! `max_count`, below and past `max_lag`; a fresh queue's first event; `max_lag` 0), a
//! name given twice, the errors (missing, paused, external queue; a tick snapshot ahead
//! of the current txid) and the warnings (negative new events, dubious snapshot).
//!
//! Each case's state is built by hand (ticks inserted with chosen ages and event counts),
//! both functions run on it in a transaction that is rolled back, and their answers are
//! compared: which queues ticked, the new ticks' event counts, and the gap reported.
//! The ticks are put back at their chosen ages at the start of each comparison's
//! transaction (`now()` is fixed in it), so however slow the machine, both sides see
//! exactly the same ages.

mod common;

use common::TestCluster;

/// Test-only helper: sets queue `q` to the given settings, ticks `ticks` (age in seconds,
/// tick_event_seq; oldest first; a snapshot text or NULL for the current one) and event
/// ids used so far `used` (NULL or 0: the sequence was never called).
const HELPERS: &str = "
create schema t;
create table t.ages (tick_queue int4, tick_id int8, age float8);
-- Puts every tick made by t.state back at its age as of now(): run first in the
-- transaction of a comparison, so both sides see exactly the ages chosen.
create function t.reage() returns void language sql as $$
    update pgq.tick k set tick_time = now() - make_interval(secs => a.age)
      from t.ages a where a.tick_queue = k.tick_queue and a.tick_id = k.tick_id;
$$;
create function t.state(q text, max_lag text, idle text, max_count int4,
                        ages float8[], seqs int8[], snaps text[], used int8)
returns void language plpgsql as $$
declare
    v_id int4;
    v_tick_seq text;
    v_event_seq text;
begin
    if pgq.create_queue(q) = 0 then
        raise exception 'queue % exists', q;
    end if;
    select queue_id, queue_tick_seq, queue_event_seq into v_id, v_tick_seq, v_event_seq
      from pgq.queue where queue_name = q;
    update pgq.queue set queue_ticker_max_lag = max_lag::interval,
                         queue_ticker_idle_period = idle::interval,
                         queue_ticker_max_count = max_count
     where queue_id = v_id;
    delete from pgq.tick where tick_queue = v_id;
    for i in 1 .. coalesce(array_length(ages, 1), 0) loop
        insert into pgq.tick (tick_queue, tick_id, tick_time, tick_event_seq, tick_snapshot)
        values (v_id, nextval(v_tick_seq::regclass), now() - make_interval(secs => ages[i]),
                seqs[i], coalesce(snaps[i]::txid_snapshot, txid_current_snapshot()));
        insert into t.ages values (v_id, currval(v_tick_seq::regclass), ages[i]);
    end loop;
    if coalesce(used, 0) = 0 then
        perform setval(v_event_seq::regclass, 1, false);
    else
        perform setval(v_event_seq::regclass, used, true);
    end if;
end $$;
";

/// One case: queue name, settings (max_lag, idle_period, max_count), ticks (age s,
/// tick_event_seq, snapshot), event ids used.
struct Case {
    name: &'static str,
    max_lag: &'static str,
    idle: &'static str,
    max_count: i32,
    ticks: &'static [(f64, i64, Option<&'static str>)],
    used: Option<i64>,
}

const fn case(
    name: &'static str,
    ticks: &'static [(f64, i64, Option<&'static str>)],
    used: Option<i64>,
) -> Case {
    Case {
        name,
        max_lag: "3 s",
        idle: "60 s",
        max_count: 10,
        ticks,
        used,
    }
}

/// Cases of the tick rule (defaults: max_lag 3 s, idle 60 s, max_count 10).
const CASES: &[Case] = &[
    // no tick yet: tick
    case("no_tick", &[], None),
    // one tick, no events, no previous gap: tick
    case("one_tick", &[(5.0, 0, None)], None),
    // idle, lag 1 < max_lag/2: no tick
    case(
        "idle_below_half_lag",
        &[(2.0, 0, None), (1.0, 0, None)],
        None,
    ),
    // idle, gap 1, lag 2.5 >= 2 x gap: tick
    case(
        "idle_past_double_gap",
        &[(3.5, 0, None), (2.5, 0, None)],
        None,
    ),
    // idle, gap 10, lag 15 < 2 x gap and < idle: no tick
    case(
        "idle_within_double_gap",
        &[(25.0, 0, None), (15.0, 0, None)],
        Some(0),
    ),
    // idle, gap 139, lag 61 >= idle period: tick
    case(
        "idle_past_idle_period",
        &[(200.0, 3, None), (61.0, 3, None)],
        Some(3),
    ),
    // 5 events < max_count, lag 1 < max_lag: no tick
    case(
        "busy_below_lag",
        &[(10.0, 0, None), (1.0, 0, None)],
        Some(5),
    ),
    // 5 events, lag 4 >= max_lag: tick
    case("busy_past_lag", &[(10.0, 0, None), (4.0, 0, None)], Some(5)),
    // 12 events >= max_count: tick
    case(
        "busy_max_count",
        &[(10.0, 0, None), (0.5, 0, None)],
        Some(12),
    ),
    // a fresh queue's first event (our schema counts it), lag 4: tick
    case("first_event", &[(4.0, 0, None)], Some(1)),
    // tick_event_seq ahead of the sequence: warning, then idle rule (lag 5 < 2 x 5): no tick
    case(
        "negative_new_events",
        &[(10.0, 7, None), (5.0, 7, None)],
        Some(3),
    ),
    // the last tick's snapshot xmax is ahead of the txid: warning, then idle rule: tick
    case(
        "dubious_snapshot",
        &[(200.0, 0, None), (70.0, 0, Some("1:4000000000:"))],
        Some(0),
    ),
    Case {
        // max_lag 0: any event ticks at once
        max_lag: "0",
        ..case("zero_lag_busy", &[(2.0, 0, None), (1.0, 0, None)], Some(1))
    },
    Case {
        // max_lag 0, idle: gap 1, lag 1 < 2 x gap: no tick
        max_lag: "0",
        ..case("zero_lag_idle", &[(2.0, 0, None), (1.0, 0, None)], Some(0))
    },
];

fn array(items: &[String]) -> String {
    format!("array[{}]", items.join(","))
}

fn setup(c: &TestCluster, db: &str, cases: &[Case]) {
    let mut sql = String::new();
    for k in cases {
        let ages: Vec<String> = k.ticks.iter().map(|t| format!("{}", t.0)).collect();
        let seqs: Vec<String> = k.ticks.iter().map(|t| t.1.to_string()).collect();
        let snaps: Vec<String> = k
            .ticks
            .iter()
            .map(|t| t.2.map_or("null".to_string(), |s| format!("'{s}'")))
            .collect();
        sql.push_str(&format!(
            "select t.state('{}', '{}', '{}', {}, {}::float8[], {}::int8[], {}::text[], {});\n",
            k.name,
            k.max_lag,
            k.idle,
            k.max_count,
            array(&ages),
            array(&seqs),
            array(&snaps),
            k.used.map_or("null".to_string(), |u| u.to_string()),
        ));
    }
    c.psql(db, &sql);
}

/// Runs `call` (a statement ticking the queues `names`, in that order) in a transaction
/// that is rolled back, and returns what psql printed: the call's own lines, then per
/// queue whether it has a tick made in this transaction and that tick's event count;
/// WARNING and ERROR lines are kept (CONTEXT lines name the function, so they go).
fn run(c: &TestCluster, db: &str, call: &str, names: &[&str]) -> Vec<String> {
    let list: Vec<String> = names.iter().map(|n| format!("('{n}')")).collect();
    let check = format!(
        "select n.name, count(t.tick_id), max(t.tick_event_seq) \
           from (values {}) n(name) \
           left join pgq.queue q on q.queue_name = n.name \
           left join pgq.tick t on t.tick_queue = q.queue_id and t.tick_time = now() \
          group by n.name order by n.name",
        list.join(",")
    );
    // One request per -c (psql prints each one's result); after an error the rest fail
    // alike on both sides (the transaction is aborted).
    let out = c.psql_merged(
        db,
        &[
            "-At",
            "-c",
            "begin",
            "-c",
            "select t.reage()",
            "-c",
            call,
            "-c",
            &check,
            "-c",
            "rollback",
        ],
    );
    out.lines()
        .filter(|l| !l.is_empty() && !["BEGIN", "ROLLBACK"].contains(l))
        .filter(|l| !l.starts_with("CONTEXT:") && !l.starts_with("PL/pgSQL"))
        .filter(|l| !l.starts_with("SQL statement") && !l.starts_with("SQL function"))
        .map(|l| match l.find("cur txid=") {
            // the current txid differs between the two runs
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect()
}

/// The queues a [`run`] output shows ticked.
fn ticked(out: &[String]) -> Vec<String> {
    let mut names: Vec<String> = out
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.len() == 3 && f[1] == "1").then(|| f[0].to_string())
        })
        .collect();
    names.sort_unstable();
    names
}

fn one_by_one(names: &[&str]) -> String {
    let calls: Vec<String> = names
        .iter()
        .map(|n| format!("(pgq.ticker('{n}') is not null)::int"))
        .collect();
    format!("select 'ticked', {}", calls.join(" + "))
}

fn batched(names: &[&str]) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!(
        "select 'ticked', count(r_tick_id) from pgq._ticker_batch(array[{}]::text[])",
        list.join(",")
    )
}

#[test]
fn ticker_batch_decides_as_ticker_queue_by_queue() {
    let c = TestCluster::start();
    c.create_pgq_db("db");
    c.psql("db", HELPERS);
    setup(&c, "db", CASES);
    let names: Vec<&str> = CASES.iter().map(|k| k.name).collect();

    // Every case in one call, then each case alone.
    let ours = run(&c, "db", &batched(&names), &names);
    let pgq = run(&c, "db", &one_by_one(&names), &names);
    assert_eq!(ours, pgq, "all cases in one batch");
    // The cases themselves: a broken setup would make both sides agree on nothing.
    assert_eq!(
        ticked(&pgq),
        [
            "busy_max_count",
            "busy_past_lag",
            "dubious_snapshot",
            "first_event",
            "idle_past_double_gap",
            "idle_past_idle_period",
            "no_tick",
            "one_tick",
            "zero_lag_busy",
        ],
        "ticked cases: {pgq:?}"
    );
    assert!(
        pgq.iter()
            .any(|l| l.contains("WARNING:  Negative new_events?  old=7 cur=3")),
        "{pgq:?}"
    );
    assert!(
        pgq.iter()
            .any(|l| l.contains("WARNING:  Dubious PgQ state: old xmax=4000000000, ")),
        "{pgq:?}"
    );
    for k in CASES {
        let one = [k.name];
        assert_eq!(
            run(&c, "db", &batched(&one), &one),
            run(&c, "db", &one_by_one(&one), &one),
            "case {}",
            k.name
        );
    }

    // A name twice: ticked once (pgq.ticker's second call finds the tick just made).
    let twice = ["idle_past_double_gap", "no_tick", "idle_past_double_gap"];
    let ours = run(&c, "db", &batched(&twice), &twice);
    assert_eq!(ours, run(&c, "db", &one_by_one(&twice), &twice));
    assert!(ours.contains(&"ticked|2".to_string()), "{ours:?}");

    // The gap reported is the age of the previous tick as of the call.
    let gaps = c.psql(
        "db",
        "begin; select t.reage(); select r_queue_name, round(r_gap::numeric, 6) from \
         pgq._ticker_batch(array['idle_past_idle_period', 'busy_below_lag', \
         'busy_past_lag']) order by 1; rollback;",
    );
    assert_eq!(
        gaps.lines().filter(|l| l.contains('|')).collect::<Vec<_>>(),
        [
            "busy_below_lag|",
            "busy_past_lag|4.000000",
            "idle_past_idle_period|61.000000"
        ]
    );

    // No queue: no rows and no transaction id taken.
    assert_eq!(
        c.psql(
            "db",
            "select count(*), txid_current_if_assigned() is null \
               from pgq._ticker_batch('{}'::text[])"
        ),
        "0|t"
    );
}

#[test]
fn ticker_batch_errs_as_ticker() {
    let c = TestCluster::start();
    c.create_pgq_db("db");
    c.psql("db", HELPERS);
    setup(
        &c,
        "db",
        &[case("good", &[], None), case("paused", &[], None)],
    );
    setup(
        &c,
        "db",
        &[
            case("external", &[], None),
            case("ahead", &[(5.0, 0, Some("3000000000:3000000001:"))], None),
        ],
    );
    c.psql(
        "db",
        "update pgq.queue set queue_ticker_paused = true where queue_name = 'paused'; \
         update pgq.queue set queue_external_ticker = true where queue_name = 'external'",
    );
    for bad in ["missing", "paused", "external", "ahead"] {
        let names = ["good", bad];
        let ours = run(&c, "db", &batched(&names), &names);
        let pgq = run(&c, "db", &one_by_one(&names), &names);
        assert_eq!(ours, pgq, "{bad}");
        assert!(
            pgq.iter().any(|l| l.starts_with("ERROR:")),
            "{bad} raises: {pgq:?}"
        );
    }
}
