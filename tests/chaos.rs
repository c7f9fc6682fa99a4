//! Issue #8 chaos test: no committed event is lost or delivered twice while everything
//! around the daemon fails.
//!
//! One cluster (`synchronous_commit = on`, so an acknowledged commit survives an immediate
//! shutdown), three databases with two queues each and two consumers per queue. Producers
//! insert numbered events (`ev_data` = the number) in small transactions; consumers read
//! batches and write every event they got, plus the batch's ticks, into tables of the same
//! database in the batch's own transaction, together with `pgq.finish_batch` — so what a
//! consumer "received" is exactly what it committed. Meanwhile a fault injector, in turns:
//! SIGKILLs and restarts the real `pgqd` process, restarts PostgreSQL fast and immediate,
//! terminates the daemon's backends, and forces a rotation of one queue's event tables.
//!
//! At the end (faults and producers stopped, consumers drained): each event whose insert
//! was acknowledged was delivered to each consumer exactly once; an event whose insert
//! failed (outcome unknown) at most once; every consumer's batches form one unbroken chain
//! of increasing ticks; tick ids increase with tick time and snapshot per queue. The
//! figures (produced, delivered, lost, duplicated, faults by kind) are printed.
//!
//! Bounded: `PGQD_CHAOS_SECS` of faults (default 40) plus setup and drain, under a minute
//! and a half in CI; set it higher to run longer locally.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::pgqd_proc::{PgqdProc, daemon_toml, restart_server, socket_connstr, wait_server_up};
use common::{ClusterOptions, TestCluster};
use tokio_postgres::{Client, Config, NoTls};

const DBS: &[&str] = &["chaos1", "chaos2", "chaos3"];
const QUEUES: &[&str] = &["qa", "qb"];
const CONSUMERS: &[&str] = &["ca", "cb"];
/// Default seconds of fault injection.
const DEFAULT_SECS: u64 = 40;
/// Pause between two faults.
const FAULT_EVERY: Duration = Duration::from_millis(2500);

fn chaos_secs() -> u64 {
    std::env::var("PGQD_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS)
}

/// Opens a connection, or None while the server is away.
async fn connect(cfg: &Config) -> Option<Client> {
    let (client, conn) = cfg.connect(NoTls).await.ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(client)
}

/// What one producer inserted: acknowledged numbers, and numbers whose insert failed (the
/// commit may or may not have happened).
#[derive(Default, Debug)]
struct Produced {
    acked: Vec<i64>,
    unknown: Vec<i64>,
}

async fn produce(cfg: Config, queue: &'static str, stop: Arc<AtomicBool>) -> Produced {
    let mut out = Produced::default();
    let mut client: Option<Client> = None;
    let mut next: i64 = 1;
    let mut round: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(cl) = client.as_ref() else {
            client = connect(&cfg).await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        round += 1;
        let (lo, hi) = (next, next + round % 4);
        next = hi + 1;
        // One statement, one implicit transaction: all of lo..=hi or none.
        let r = cl
            .query_one(
                "select count(pgq.insert_event($1, 'chaos', x::text)) \
                   from generate_series($2::int8, $3::int8) x",
                &[&queue, &lo, &hi],
            )
            .await;
        match r {
            Ok(_) => out.acked.extend(lo..=hi),
            Err(_) => {
                // Any failure may have come after the commit (a shutdown interrupting the
                // reply): the outcome is unknown, so these may arrive once or never.
                out.unknown.extend(lo..=hi);
                client = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    out
}

/// One batch read and recorded in one transaction; Ok(false) when there was none.
async fn consume_once(cl: &mut Client, queue: &str, consumer: &str) -> Result<bool, String> {
    let e = |e: tokio_postgres::Error| e.to_string();
    let tx = cl.transaction().await.map_err(e)?;
    let batch: Option<i64> = tx
        .query_one("select pgq.next_batch($1, $2)", &[&queue, &consumer])
        .await
        .map_err(e)?
        .get(0);
    let Some(batch) = batch else {
        tx.commit().await.map_err(e)?;
        return Ok(false);
    };
    tx.execute(
        "insert into chaos_batch (queue, consumer, batch_id, prev_tick, tick) \
         select $1, $2, $3, prev_tick_id, tick_id from pgq.get_batch_info($3)",
        &[&queue, &consumer, &batch],
    )
    .await
    .map_err(e)?;
    tx.execute(
        "insert into chaos_got (queue, consumer, batch_id, ev_id, n) \
         select $1, $2, $3, ev_id, ev_data::int8 from pgq.get_batch_events($3)",
        &[&queue, &consumer, &batch],
    )
    .await
    .map_err(e)?;
    tx.query_one("select pgq.finish_batch($1)", &[&batch])
        .await
        .map_err(e)?;
    tx.commit().await.map_err(e)?;
    Ok(true)
}

/// Reads batches until `stop`; returns (batches finished, failed attempts).
async fn consume(
    cfg: Config,
    queue: &'static str,
    consumer: &'static str,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let (mut batches, mut failures) = (0u64, 0u64);
    let mut client: Option<Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(cl) = client.as_mut() else {
            client = connect(&cfg).await;
            if client.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        };
        match consume_once(cl, queue, consumer).await {
            Ok(true) => batches += 1,
            Ok(false) => tokio::time::sleep(Duration::from_millis(40)).await,
            Err(_) => {
                failures += 1;
                client = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    (batches, failures)
}

fn setup_db(c: &TestCluster, db: &str) {
    c.create_pgq_db(db);
    c.psql(
        db,
        "create table chaos_got (queue text, consumer text, batch_id int8, ev_id int8, n int8); \
         create table chaos_batch (seq bigserial primary key, queue text, consumer text, \
                                   batch_id int8, prev_tick int8, tick int8)",
    );
    for q in QUEUES {
        c.psql(
            db,
            &format!(
                "select pgq.create_queue('{q}'); \
                 select pgq.set_queue_config('{q}', 'ticker_max_count', '40'); \
                 select pgq.set_queue_config('{q}', 'ticker_max_lag', '200 ms'); \
                 select pgq.set_queue_config('{q}', 'ticker_idle_period', '1 s'); \
                 select pgq.set_queue_config('{q}', 'rotation_period', '3 s')"
            ),
        );
        for co in CONSUMERS {
            c.psql(db, &format!("select pgq.register_consumer('{q}', '{co}')"));
        }
    }
}

/// Psql that tolerates a server in the middle of a restart; true on success.
fn try_psql(c: &TestCluster, db: &str, sql: &str) -> bool {
    c.psql_output(db, &["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .status
        .success()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillDaemon,
    RestartFast,
    TerminateBackends,
    RestartImmediate,
    ForceRotation,
}

const FAULTS: &[Fault] = &[
    Fault::KillDaemon,
    Fault::ForceRotation,
    Fault::RestartFast,
    Fault::TerminateBackends,
    Fault::RestartImmediate,
];

fn inject(c: &TestCluster, daemon: &mut PgqdProc, f: Fault, round: usize) -> bool {
    match f {
        Fault::KillDaemon => {
            daemon.restart();
            true
        }
        Fault::RestartFast => {
            restart_server(c, "fast");
            true
        }
        Fault::RestartImmediate => {
            restart_server(c, "immediate");
            true
        }
        Fault::TerminateBackends => try_psql(
            c,
            "postgres",
            "select pg_terminate_backend(pid) from pg_stat_activity \
              where application_name = 'pgqd'",
        ),
        Fault::ForceRotation => {
            let db = DBS[round % DBS.len()];
            let q = QUEUES[round % QUEUES.len()];
            let table = || {
                let out = c.psql_output(
                    db,
                    &[
                        "-At",
                        "-c",
                        &format!("select queue_cur_table from pgq.queue where queue_name = '{q}'"),
                    ],
                );
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            };
            let before = table();
            // Step 1 and step 2 in separate transactions, as the daemon runs them. Counted
            // as injected only when the current table really changed.
            try_psql(
                c,
                db,
                &format!(
                    "update pgq.queue set queue_switch_time = now() - interval '1 day' \
                      where queue_name = '{q}'; \
                     select pgq.maint_rotate_tables_step1('{q}'); \
                     select pgq.force_tick('{q}')"
                ),
            ) && try_psql(c, db, "select pgq.maint_rotate_tables_step2()")
                && table() != before
        }
    }
}

/// Per (queue, consumer) figures of one database.
#[derive(Default, Debug)]
struct Tally {
    acked: usize,
    unknown_delivered: usize,
    delivered: usize,
    lost: usize,
    duplicated: usize,
    strangers: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_event_reaches_every_consumer_once_under_faults() {
    let started = Instant::now();
    let c = TestCluster::start_with(ClusterOptions {
        conf: vec!["synchronous_commit = on".into()],
        ..ClusterOptions::default()
    });
    for db in DBS {
        setup_db(&c, db);
    }
    let mut daemon = PgqdProc::start(
        &c.dir,
        "pgqd",
        &daemon_toml(
            &socket_connstr(&c, "pgqd"),
            &[
                "ticker_period = \"100ms\"",
                "maint_period = \"300ms\"",
                "retry_period = \"1s\"",
                "check_period = \"500ms\"",
                "reconnect_max_delay = \"1s\"",
                "shutdown_timeout = \"2s\"",
            ],
        ),
    );

    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for db in DBS {
        for q in QUEUES {
            producers.push((
                *db,
                *q,
                tokio::spawn(produce(c.config(db), q, stop_producers.clone())),
            ));
            for co in CONSUMERS {
                consumers.push((
                    *db,
                    *q,
                    *co,
                    tokio::spawn(consume(c.config(db), q, co, stop_consumers.clone())),
                ));
            }
        }
    }

    // Faults, in turns. pg_ctl and psql block, which is fine here: the test body runs on
    // its own thread, outside the runtime's workers that drive producers and consumers.
    let secs = chaos_secs();
    let faults = {
        let mut done: BTreeMap<Fault, (u32, u32)> = BTreeMap::new();
        let end = Instant::now() + Duration::from_secs(secs);
        let mut round = 0usize;
        while Instant::now() < end {
            std::thread::sleep(FAULT_EVERY);
            let f = FAULTS[round % FAULTS.len()];
            let ok = inject(&c, &mut daemon, f, round);
            let e = done.entry(f).or_default();
            if ok {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
            daemon.assert_alive("pgqd");
            round += 1;
        }
        wait_server_up(&c, "postgres", Duration::from_secs(30));
        done
    };

    stop_producers.store(true, Ordering::Relaxed);
    let mut produced: HashMap<(&str, &str), Produced> = HashMap::new();
    for (db, q, h) in producers {
        produced.insert((db, q), h.await.expect("producer"));
    }

    // Drain: wait until every acked event is in every consumer's table.
    let drain_start = Instant::now();
    for db in DBS {
        for q in QUEUES {
            let acked = &produced[&(*db, *q)].acked;
            for co in CONSUMERS {
                common::wait_for(
                    &format!("{db}.{q}.{co} to receive every acked event"),
                    Duration::from_secs(60),
                    || {
                        let cfg = c.config(db);
                        async move {
                            let cl = connect(&cfg).await?;
                            let got: i64 = cl
                                .query_one(
                                    "select count(distinct n) from chaos_got \
                                      where queue = $1 and consumer = $2 and n = any($3)",
                                    &[q, co, acked],
                                )
                                .await
                                .ok()?
                                .get(0);
                            (got as usize == acked.len()).then_some(())
                        }
                    },
                )
                .await;
            }
        }
    }
    let drain = drain_start.elapsed();
    stop_consumers.store(true, Ordering::Relaxed);
    let mut batches = 0u64;
    let mut consumer_failures = 0u64;
    for (_, _, _, h) in consumers {
        let (b, f) = h.await.expect("consumer");
        batches += b;
        consumer_failures += f;
    }
    daemon.assert_alive("pgqd");

    // Accounting.
    let mut total = Tally::default();
    let mut problems = Vec::new();
    for db in DBS {
        let cl = connect(&c.config(db)).await.expect("connect for the tally");
        for q in QUEUES {
            let p = &produced[&(*db, *q)];
            for co in CONSUMERS {
                let rows = cl
                    .query(
                        "select n, count(*) from chaos_got where queue = $1 and consumer = $2 \
                         group by n",
                        &[q, co],
                    )
                    .await
                    .expect("read chaos_got");
                let got: HashMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                let mut t = Tally {
                    acked: p.acked.len(),
                    ..Tally::default()
                };
                for n in &p.acked {
                    match got.get(n) {
                        None => t.lost += 1,
                        Some(k) => t.duplicated += (*k - 1) as usize,
                    }
                }
                for n in &p.unknown {
                    if let Some(k) = got.get(n) {
                        t.unknown_delivered += 1;
                        t.duplicated += (*k - 1) as usize;
                    }
                }
                t.delivered = got.values().map(|k| *k as usize).sum();
                let known: HashSet<i64> = p.acked.iter().chain(&p.unknown).copied().collect();
                t.strangers = got.keys().filter(|n| !known.contains(n)).count();
                if t.lost + t.duplicated + t.strangers > 0 {
                    problems.push(format!("{db}.{q}.{co}: {t:?}"));
                }
                total.acked += t.acked;
                total.delivered += t.delivered;
                total.lost += t.lost;
                total.duplicated += t.duplicated;
                total.unknown_delivered += t.unknown_delivered;
                total.strangers += t.strangers;

                // The consumer's batches: one unbroken chain of increasing ticks.
                let chain = cl
                    .query(
                        "select prev_tick, tick from chaos_batch \
                          where queue = $1 and consumer = $2 order by seq",
                        &[q, co],
                    )
                    .await
                    .expect("read chaos_batch");
                let mut last: Option<i64> = None;
                for r in &chain {
                    let (prev, tick): (i64, i64) = (r.get(0), r.get(1));
                    if tick <= prev || last.is_some_and(|l| l != prev) {
                        problems.push(format!(
                            "{db}.{q}.{co}: batch chain broken at prev={prev} tick={tick} \
                             after {last:?}"
                        ));
                        break;
                    }
                    last = Some(tick);
                }
            }
        }
        // Tick ids increase with time and snapshot, per queue.
        let bad: i64 = cl
            .query_one(
                "select count(*) from ( \
                   select tick_time, tick_snapshot, \
                          lag(tick_time) over w as prev_time, \
                          lag(tick_snapshot) over w as prev_snap \
                     from pgq.tick window w as (partition by tick_queue order by tick_id)) s \
                  where prev_time > tick_time \
                     or txid_snapshot_xmax(prev_snap) > txid_snapshot_xmax(tick_snapshot)",
                &[],
            )
            .await
            .expect("tick order")
            .get(0);
        if bad != 0 {
            problems.push(format!("{db}: {bad} ticks out of order"));
        }
    }

    let unknown: usize = produced.values().map(|p| p.unknown.len()).sum();
    let acked_events: usize = produced.values().map(|p| p.acked.len()).sum();
    eprintln!(
        "chaos: {secs} s of faults, total {:.1} s (drain {:.1} s)",
        started.elapsed().as_secs_f64(),
        drain.as_secs_f64()
    );
    eprintln!(
        "chaos: events produced acked={acked_events} unknown-outcome={unknown}; \
         expected deliveries (acked × {} consumers)={}; delivered rows={} \
         (of which unknown-outcome events={}); lost={} duplicated={} strangers={}; \
         batches={batches}; consumer retries={consumer_failures}; daemon starts={}",
        CONSUMERS.len(),
        total.acked,
        total.delivered,
        total.unknown_delivered,
        total.lost,
        total.duplicated,
        total.strangers,
        daemon.starts
    );
    for (f, (ok, failed)) in &faults {
        eprintln!("chaos: fault {f:?}: {ok} injected, {failed} attempts failed");
    }
    assert!(
        problems.is_empty(),
        "events lost, duplicated or out of order:\n{}",
        problems.join("\n")
    );
    assert!(acked_events > 0, "producers committed nothing");
    for f in FAULTS {
        assert!(
            faults.get(f).is_some_and(|v| v.0 > 0),
            "fault {f:?} was never injected: {faults:?}"
        );
    }
}
