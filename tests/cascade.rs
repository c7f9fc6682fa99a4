//! Cascading queues end to end: root → branch → leaf with our daemon ticking the root,
//! the cascade workers in-process (`pgqd::cascade::run_worker`, with a handler that
//! records every event it is given into a table in the subscriber's transaction), plain
//! consumers on the queue copies, and the admin commands (in-process, and the `pgqd
//! cascade` binary for exit codes and `status`).
//!
//! - `three_nodes_in_one_cluster` (our pgq + pgq_node schema): producers on the root,
//!   workers killed (task aborted) and restarted at random moments, replication lag
//!   measured, the branch's queue compared with the root's, a plain consumer moved from
//!   the branch to the root half-way, a batch committed but not finished (skipped when
//!   it comes again), then a live root takeover by the branch, then that new root dies
//!   and the old one takes over again (`--dead`); every event reaches the leaf's handler
//!   and the consumer exactly once.
//! - `dead_root_replaced_by_the_branch_behind`: two branches under the root, one
//!   stopped behind; the root dies and the lagging branch takes over (`--dead`): it
//!   first catches up from the other branch, then becomes root, the other branch (with
//!   the leaf below it) moves under it; nothing lost or repeated.
//! - `two_clusters_branch_dies` (the Debian pgq/pgq_node extensions: compatibility
//!   check): root in one cluster, branch and leaf in another; the branch's database is
//!   dropped and its worker killed, the leaf moved to the root with `takeover --dead`;
//!   no event lost or repeated. Its workers poll only every 3 s, so the measured lag
//!   shows them woken by tick notifications (the daemon's, then the branch worker's).
//! - `python_worker_and_admin_on_our_cascade`: Debian's python `CascadedWorker` keeps
//!   the branch of a cascade our admin created, our worker reads it for the leaf, and
//!   python's admin `status` shows the tree.
//! - `cli_commands_and_bad_input`: create/members through the binary, the worker as a
//!   process stopped by SIGTERM (exit 0); unknown node, wrong node type, bad config,
//!   missing schema: exit 2.

mod common;
mod daemon_support;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{TestCluster, install_schema, wait_for};
use pgqd::cascade::admin::{Admin, CreateNode};
use pgqd::cascade::{BatchHandler, Error, NodeCtx, NodeType, WorkerConfig, run_worker};
use pgqd::consumer::{Batch, BatchInfo, BoxError, Consumer, ConsumerConfig, Event, Handler};
use tokio::task::JoinHandle;
use tokio_postgres::Transaction;
use tokio_util::sync::CancellationToken;

const Q: &str = "cq";
const WAIT: Duration = Duration::from_secs(40);

/// Creates `name` with pgq and pgq_node: ours (the `pgq` and `node` components), or
/// with `real` the Debian pgq 3.5 and pgq_node 3.5 extensions.
fn node_db(c: &TestCluster, name: &str, real: bool) {
    c.create_db(name);
    if real {
        c.psql(name, "create extension pgq; create extension pgq_node;");
    } else {
        install_schema(c, name, &["pgq", "node"]);
    }
    c.psql(
        name,
        "create table seen (ev_id bigint, payload text, node text); \
         create table reader_seen (ev_id bigint, payload text)",
    );
}

/// Ticks the queue in `db` soon after events arrive (pgq waits up to 3 s by default),
/// so batches are small and many; an idle queue ticks every second.
fn quick_ticks(c: &TestCluster, db: &str) {
    c.psql(
        db,
        &format!(
            "select pgq.set_queue_config('{Q}', 'ticker_max_lag', '50 ms'); \
             select pgq.set_queue_config('{Q}', 'ticker_idle_period', '1 s')"
        ),
    );
}

/// Records every non-cascade event of a batch into `seen`, in the worker's transaction.
struct Recorder;

impl BatchHandler for Recorder {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        node: &NodeCtx,
        _batch: &BatchInfo,
        events: &[Event],
    ) -> Result<(), BoxError> {
        let evs: Vec<&Event> = events
            .iter()
            .filter(|e| !e.ev_type.as_deref().unwrap_or("").starts_with("pgq."))
            .collect();
        let ids: Vec<i64> = evs.iter().map(|e| e.id).collect();
        let data: Vec<Option<String>> = evs.iter().map(|e| e.data.clone()).collect();
        tx.execute(
            "insert into seen select u.i, u.d, $3 from unnest($1::int8[], $2::text[]) u(i, d)",
            &[&ids, &data, &node.node_name],
        )
        .await?;
        Ok(())
    }
}

/// A plain consumer's handler: into `reader_seen`, in the batch's own transaction.
struct Reader;

impl Handler for Reader {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        batch: &mut Batch,
    ) -> Result<(), BoxError> {
        let evs: Vec<&Event> = batch
            .events()
            .iter()
            .filter(|e| e.ev_type.as_deref() == Some("ev"))
            .collect();
        let ids: Vec<i64> = evs.iter().map(|e| e.id).collect();
        let data: Vec<Option<String>> = evs.iter().map(|e| e.data.clone()).collect();
        tx.execute(
            "insert into reader_seen select * from unnest($1::int8[], $2::text[])",
            &[&ids, &data],
        )
        .await?;
        Ok(())
    }
}

/// A worker running in-process.
struct Worker {
    token: CancellationToken,
    join: JoinHandle<Result<(), Error>>,
}

fn worker_cfg(connstr: &str) -> WorkerConfig {
    let mut cfg = WorkerConfig::new(Q, connstr);
    cfg.poll_interval = Duration::from_millis(50);
    cfg.error_delay = Duration::from_millis(200);
    cfg.local_wm_publish_period = Duration::from_millis(500);
    cfg.global_wm_publish_period = Duration::from_millis(500);
    cfg
}

fn spawn_worker(connstr: &str) -> Worker {
    spawn_worker_polling(connstr, Duration::from_millis(50))
}

/// A worker that looks for work every `poll` unless a tick notification wakes it.
fn spawn_worker_polling(connstr: &str, poll: Duration) -> Worker {
    let mut cfg = worker_cfg(connstr);
    cfg.poll_interval = poll;
    let token = CancellationToken::new();
    let t = token.clone();
    let join = tokio::spawn(async move { run_worker(&cfg, &mut Recorder, &t).await });
    Worker { token, join }
}

impl Worker {
    /// Stops it gracefully (the batch in hand is finished).
    async fn stop(self) {
        self.token.cancel();
        let r = tokio::time::timeout(Duration::from_secs(15), self.join)
            .await
            .expect("worker stops in time")
            .expect("worker did not panic");
        r.expect("worker ended without error");
    }

    /// Kills it wherever it is: its sessions close, an open transaction rolls back.
    fn kill(self) {
        self.join.abort();
    }
}

/// A plain consumer of the queue copy in `connstr`, running in-process.
fn spawn_reader(connstr: &str) -> (CancellationToken, JoinHandle<()>) {
    let mut cc = ConsumerConfig::new(connstr, Q, "reader");
    cc.poll_interval = Duration::from_millis(100);
    cc.error_delay = Duration::from_millis(200);
    let consumer = Consumer::new(cc).expect("consumer config");
    let token = CancellationToken::new();
    let t = token.clone();
    let join = tokio::spawn(async move {
        consumer.run(&mut Reader, &t).await.expect("reader runs");
    });
    (token, join)
}

fn admin(connstr: &str) -> Admin {
    Admin::new(Q, connstr, Duration::from_secs(30))
}

fn spec(t: NodeType, name: &str, provider: Option<String>) -> CreateNode {
    CreateNode {
        node_type: t,
        node_name: name.into(),
        location: None,
        worker: None,
        provider,
    }
}

/// Inserts `n` events `<tag>-<i>` on the root in transactions of 10, with a pause
/// between transactions so they spread over many ticks.
async fn produce(c: &TestCluster, db: &str, tag: &str, n: usize) {
    let client = c.connect(db).await;
    for start in (0..n).step_by(10) {
        let end = (start + 10).min(n);
        let payloads: Vec<String> = (start..end).map(|i| format!("{tag}-{i}")).collect();
        client
            .execute(
                "select count(pgq.insert_event($1, 'ev', p)) from unnest($2::text[]) p",
                &[&Q, &payloads],
            )
            .await
            .expect("insert events");
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// payload → how many times `table` in `db` holds it.
fn counts(c: &TestCluster, db: &str, table: &str) -> BTreeMap<String, i64> {
    c.psql(
        db,
        &format!("select payload, count(*) from {table} group by 1 order by 1"),
    )
    .lines()
    .filter_map(|l| l.split_once('|'))
    .map(|(p, n)| (p.to_string(), n.parse().expect("count")))
    .collect()
}

/// Waits until `dbs`' `table`s together hold every payload of `expected`, then checks
/// that each was delivered exactly once and nothing else was.
async fn expect_exactly_once(
    c: &[(&TestCluster, &str)],
    table: &str,
    expected: &[String],
    what: &str,
) {
    let total = || {
        let mut all: BTreeMap<String, i64> = BTreeMap::new();
        for (cl, db) in c {
            for (p, n) in counts(cl, db, table) {
                *all.entry(p).or_default() += n;
            }
        }
        all
    };
    wait_for(&format!("{what}: every event"), WAIT, || {
        let all = total();
        let done = expected.iter().all(|p| all.contains_key(p));
        async move { done.then_some(()) }
    })
    .await;
    let all = total();
    let dups: Vec<_> = all.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dups.is_empty(), "{what}: repeated events: {dups:?}");
    assert_eq!(all.len(), expected.len(), "{what}: unexpected events");
}

fn payloads(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// Inserts one marker event at a time on the root and times its arrival in the leaf's
/// handler table; returns the lags.
async fn measure_lag(
    c: &TestCluster,
    root: &str,
    leaf: (&TestCluster, &str),
    n: usize,
) -> Vec<Duration> {
    let client = c.connect(root).await;
    let leaf_client = leaf.0.connect(leaf.1).await;
    let mut lags = Vec::new();
    for i in 0..n {
        let p = format!("lag-{i}");
        let t0 = Instant::now();
        client
            .execute("select pgq.insert_event($1, 'ev', $2)", &[&Q, &p])
            .await
            .expect("marker");
        loop {
            let n: i64 = leaf_client
                .query_one("select count(*) from seen where payload = $1", &[&p])
                .await
                .expect("poll leaf")
                .get(0);
            if n > 0 {
                break;
            }
            assert!(t0.elapsed() < WAIT, "marker {p} never reached the leaf");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lags.push(t0.elapsed());
    }
    lags
}

/// Prints min/avg/max; returns (avg, max).
fn report_lag(what: &str, lags: &[Duration]) -> (Duration, Duration) {
    let max = lags.iter().max().copied().unwrap_or_default();
    let min = lags.iter().min().copied().unwrap_or_default();
    let avg = lags.iter().sum::<Duration>() / lags.len().max(1) as u32;
    println!(
        "replication lag root -> leaf ({what}, {} markers): min {min:?} avg {avg:?} max {max:?}",
        lags.len()
    );
    (avg, max)
}

/// The queue's non-cascade events in `db`: (ev_id, payload), ordered.
fn queue_events(c: &TestCluster, db: &str) -> Vec<String> {
    let tbl = c.psql(
        db,
        &format!("select queue_data_pfx from pgq.queue where queue_name = '{Q}'"),
    );
    c.psql(
        db,
        &format!("select ev_id || ':' || ev_data from {tbl} where ev_type = 'ev' order by ev_id"),
    )
    .lines()
    .map(String::from)
    .collect()
}

fn pgqd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(args)
        .output()
        .expect("run pgqd")
}

fn status_text(connstr: &str) -> String {
    let o = pgqd(&["cascade", "status", "--queue", Q, "--db", connstr]);
    assert!(
        o.status.success(),
        "status: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_in_one_cluster() {
    let started = Instant::now();
    let c = TestCluster::start();
    for db in ["root1", "branch1", "leaf1"] {
        node_db(&c, db, false);
    }
    let (root, branch, leaf) = (c.connstr("root1"), c.connstr("branch1"), c.connstr("leaf1"));
    admin(&root)
        .create(&spec(NodeType::Root, "root1", None))
        .await
        .expect("root");
    admin(&branch)
        .create(&spec(NodeType::Branch, "branch1", Some(root.clone())))
        .await
        .expect("branch");
    admin(&leaf)
        .create(&spec(NodeType::Leaf, "leaf1", Some(branch.clone())))
        .await
        .expect("leaf");
    quick_ticks(&c, "root1");
    quick_ticks(&c, "branch1");
    let daemon = daemon_support::Daemon::start(daemon_support::test_config(&c)).await;
    let root_w = spawn_worker(&root);
    let mut branch_w = spawn_worker(&branch);
    let mut leaf_w = spawn_worker(&leaf);
    // A plain consumer of the branch's copy of the queue, registered before any event.
    c.psql(
        "branch1",
        &format!("select pgq.register_consumer('{Q}', 'reader')"),
    );
    let (reader_stop, reader) = spawn_reader(&branch);

    // Producers, while the branch and leaf workers are killed and restarted.
    let prod = produce(&c, "root1", "a", 400);
    let chaos = async {
        for i in 0..6u64 {
            tokio::time::sleep(Duration::from_millis(150 + 70 * i)).await;
            let w = if i % 2 == 0 {
                &mut branch_w
            } else {
                &mut leaf_w
            };
            let connstr = if i % 2 == 0 { &branch } else { &leaf };
            let old = std::mem::replace(&mut w.join, tokio::spawn(async { Ok(()) }));
            old.abort();
            let _ = old.await;
            *w = spawn_worker(connstr);
        }
    };
    tokio::join!(prod, chaos);
    let a = payloads("a", 400);
    expect_exactly_once(&[(&c, "leaf1")], "seen", &a, "leaf handler").await;

    // The branch's queue holds the root's events with the same ids.
    wait_for("branch queue caught up", WAIT, || {
        let same = queue_events(&c, "branch1") == queue_events(&c, "root1");
        async move { same.then_some(()) }
    })
    .await;

    // A crash after the subscriber's commit but before finish_batch on the provider:
    // emulated by moving the workers' provider positions back one tick. The batch then
    // comes again and must be skipped, not applied twice. The root's worker stops so
    // that no watermark event makes the last batch an empty one.
    root_w.stop().await;
    c.psql(
        "root1",
        &format!("select pgq.set_queue_config('{Q}', 'ticker_idle_period', '1 hour')"),
    );
    produce(&c, "root1", "r", 5).await;
    let ar: Vec<String> = a.iter().cloned().chain(payloads("r", 5)).collect();
    expect_exactly_once(&[(&c, "leaf1")], "seen", &ar, "leaf before the rewind").await;
    let top = daemon_support::last_tick(&c, "root1", Q);
    let completed = |db: &str| -> i64 {
        c.psql(
            db,
            &format!("select worker_last_tick from pgq_node.get_node_info('{Q}')"),
        )
        .parse()
        .unwrap_or(0)
    };
    wait_for("leaf and branch at the root's last tick", WAIT, || {
        let ok = completed("leaf1") >= top && completed("branch1") >= top;
        async move { ok.then_some(()) }
    })
    .await;
    branch_w.stop().await;
    leaf_w.stop().await;
    // Each provider position goes back to the tick before what its node completed.
    let (leaf_done, branch_done) = (completed("leaf1"), completed("branch1"));
    let rewind = |db: &str, consumer: &str, done: i64| {
        c.psql(
            db,
            &format!(
                "select pgq.register_consumer_at('{Q}', '{consumer}', \
                 (select max(t.tick_id) from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
                   where q.queue_name = '{Q}' and t.tick_id < {done}))"
            ),
        );
    };
    rewind("root1", "branch1", branch_done);
    rewind("branch1", "leaf1", leaf_done);
    let branch_w = spawn_worker(&branch);
    let leaf_w = spawn_worker(&leaf);
    let position = |db: &str, consumer: &str| -> i64 {
        c.psql(
            db,
            &format!("select last_tick from pgq.get_consumer_info('{Q}', '{consumer}')"),
        )
        .parse()
        .unwrap_or(0)
    };
    wait_for("rewound batches finished again", WAIT, || {
        let ok = position("root1", "branch1") >= branch_done
            && position("branch1", "leaf1") >= leaf_done;
        async move { ok.then_some(()) }
    })
    .await;
    expect_exactly_once(&[(&c, "leaf1")], "seen", &ar, "leaf after the rewind").await;
    assert_eq!(queue_events(&c, "branch1"), queue_events(&c, "root1"));
    quick_ticks(&c, "root1");
    let root_w = spawn_worker(&root);
    let a = ar;

    // The plain consumer moves from the branch to the root at its tick.
    reader_stop.cancel();
    reader.await.expect("reader stopped");
    let tick = admin(&leaf)
        .move_consumer("reader", "branch1", "root1")
        .await
        .expect("move consumer");
    println!("reader moved branch1 -> root1 at tick {tick}");
    let (reader_stop, reader) = spawn_reader(&root);
    produce(&c, "root1", "b", 200).await;
    let b = payloads("b", 200);
    let ab: Vec<String> = a.iter().chain(&b).cloned().collect();
    expect_exactly_once(
        &[(&c, "branch1"), (&c, "root1")],
        "reader_seen",
        &ab,
        "moved consumer",
    )
    .await;
    reader_stop.cancel();
    reader.await.expect("reader stopped");

    let lags = measure_lag(&c, "root1", (&c, "leaf1"), 10).await;
    let (_, max) = report_lag("one cluster", &lags);
    assert!(max < Duration::from_secs(10), "lag {max:?}");

    let status = status_text(&leaf);
    println!("pgqd cascade status (leaf1):\n{status}");
    for n in ["root1", "branch1", "leaf1"] {
        assert!(status.contains(n), "{status}");
    }
    assert!(
        status.lines().nth(1).unwrap_or("").starts_with("root1"),
        "{status}"
    );

    // Pause and resume the leaf's worker (it confirms each).
    let mut adm = admin(&leaf);
    adm.set_paused(Some("leaf1"), true).await.expect("pause");
    assert!(status_text(&leaf).contains("PAUSED"));
    adm.set_paused(Some("leaf1"), false).await.expect("resume");

    // Live takeover: branch1 becomes root, root1 its branch; the leaf keeps reading
    // branch1, and producers move to the new root.
    admin(&branch)
        .takeover("root1", "branch1", false)
        .await
        .expect("takeover");
    let status = status_text(&leaf);
    println!("pgqd cascade status after takeover (leaf1):\n{status}");
    assert!(
        status.lines().nth(1).unwrap_or("").starts_with("branch1"),
        "{status}"
    );
    produce(&c, "branch1", "c", 200).await;
    let cc = payloads("c", 200);
    let mut all: Vec<String> = ab.clone();
    all.extend(cc.iter().cloned());
    all.extend((0..10).map(|i| format!("lag-{i}")));
    expect_exactly_once(&[(&c, "leaf1")], "seen", &all, "leaf after takeover").await;
    wait_for("old root follows the new root", WAIT, || {
        let same = queue_events(&c, "root1") == queue_events(&c, "branch1");
        async move { same.then_some(()) }
    })
    .await;

    // The new root dies (worker killed, database dropped) once everything is copied;
    // root1, its branch, takes over as root and the leaf moves under it.
    let top = daemon_support::last_tick(&c, "branch1", Q);
    wait_for("all nodes at the root's last tick", WAIT, || {
        let ok = completed("leaf1") >= top && completed("root1") >= top;
        async move { ok.then_some(()) }
    })
    .await;
    branch_w.kill();
    c.psql("postgres", "drop database branch1 with (force)");
    admin(&leaf)
        .takeover("branch1", "root1", true)
        .await
        .expect("takeover of the dead root");
    let status = status_text(&leaf);
    println!("pgqd cascade status after the root died (leaf1):\n{status}");
    assert!(
        status.lines().nth(1).unwrap_or("").starts_with("root1"),
        "{status}"
    );
    quick_ticks(&c, "root1");
    produce(&c, "root1", "d", 100).await;
    all.extend(payloads("d", 100));
    expect_exactly_once(&[(&c, "leaf1")], "seen", &all, "leaf after the root died").await;

    for w in [root_w, leaf_w] {
        w.stop().await;
    }
    daemon.stop().await.expect("daemon stops");
    println!("three_nodes_in_one_cluster: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_root_replaced_by_the_branch_behind() {
    let started = Instant::now();
    let c = TestCluster::start();
    for db in ["r", "b1", "b2", "l"] {
        node_db(&c, db, false);
    }
    let cs = |db: &str| c.connstr(db);
    admin(&cs("r"))
        .create(&spec(NodeType::Root, "r", None))
        .await
        .expect("root");
    for b in ["b1", "b2"] {
        admin(&cs(b))
            .create(&spec(NodeType::Branch, b, Some(cs("r"))))
            .await
            .expect("branch");
    }
    admin(&cs("l"))
        .create(&spec(NodeType::Leaf, "l", Some(cs("b1"))))
        .await
        .expect("leaf");
    for db in ["r", "b1", "b2"] {
        quick_ticks(&c, db);
    }
    let daemon = daemon_support::Daemon::start(daemon_support::test_config(&c)).await;
    let r_w = spawn_worker(&cs("r"));
    let b1_w = spawn_worker(&cs("b1"));
    let b2_w = spawn_worker(&cs("b2"));
    let l_w = spawn_worker(&cs("l"));
    produce(&c, "r", "a", 100).await;
    let mut expected = payloads("a", 100);
    expect_exactly_once(&[(&c, "l")], "seen", &expected, "leaf").await;

    // b2 falls behind, then the root dies once b1 has everything.
    b2_w.stop().await;
    produce(&c, "r", "b", 100).await;
    expected.extend(payloads("b", 100));
    expect_exactly_once(&[(&c, "l")], "seen", &expected, "leaf").await;
    let top = daemon_support::last_tick(&c, "r", Q);
    wait_for("b1 at the root's last tick", WAIT, || {
        let t = daemon_support::last_tick(&c, "b1", Q);
        async move { (t >= top).then_some(()) }
    })
    .await;
    r_w.stop().await;
    c.psql("postgres", "drop database r with (force)");
    let b2_w = spawn_worker(&cs("b2"));
    let mut adm = admin(&cs("l"));
    adm.takeover("r", "b2", true)
        .await
        .expect("takeover of the dead root");
    println!("takeover r --node b2 --dead:\n{}", adm.out.join("\n"));
    assert!(
        adm.out
            .iter()
            .any(|l| l.contains("catching up from it first")),
        "{:?}",
        adm.out
    );
    let status = status_text(&cs("l"));
    println!("pgqd cascade status (l):\n{status}");
    assert!(
        status.lines().nth(1).unwrap_or("").starts_with("b2"),
        "{status}"
    );
    produce(&c, "b2", "c", 100).await;
    expected.extend(payloads("c", 100));
    expect_exactly_once(&[(&c, "l")], "seen", &expected, "leaf under the new root").await;
    wait_for("b1 and b2 hold the same queue", WAIT, || {
        let same = queue_events(&c, "b1") == queue_events(&c, "b2");
        async move { same.then_some(()) }
    })
    .await;
    for w in [b1_w, b2_w, l_w] {
        w.stop().await;
    }
    daemon.stop().await.expect("daemon stops");
    println!(
        "dead_root_replaced_by_the_branch_behind: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_branch_dies() {
    let started = Instant::now();
    let a = TestCluster::start();
    let b = TestCluster::start();
    if !daemon_support::real_pgq_or_skip(&a) {
        return;
    }
    node_db(&a, "root1", true);
    node_db(&b, "branch1", true);
    node_db(&b, "leaf1", true);
    let (root, branch, leaf) = (a.connstr("root1"), b.connstr("branch1"), b.connstr("leaf1"));
    admin(&root)
        .create(&spec(NodeType::Root, "root1", None))
        .await
        .expect("root");
    admin(&branch)
        .create(&spec(NodeType::Branch, "branch1", Some(root.clone())))
        .await
        .expect("branch");
    admin(&leaf)
        .create(&spec(NodeType::Leaf, "leaf1", Some(branch.clone())))
        .await
        .expect("leaf");
    quick_ticks(&a, "root1");
    let daemon = daemon_support::Daemon::start(daemon_support::test_config(&a)).await;
    // Workers that poll only every 3 s: the daemon's and the branch's tick
    // notifications must wake them.
    let poll = Duration::from_secs(3);
    let root_w = spawn_worker_polling(&root, poll);
    let branch_w = spawn_worker_polling(&branch, poll);
    let leaf_w = spawn_worker_polling(&leaf, poll);

    produce(&a, "root1", "a", 300).await;
    let lags = measure_lag(&a, "root1", (&b, "leaf1"), 10).await;
    let (avg, max) = report_lag("two clusters, woken by notifications", &lags);
    assert!(max < Duration::from_secs(10), "lag {max:?}");
    assert!(
        avg < Duration::from_millis(1500),
        "workers not woken by ticks: avg lag {avg:?}"
    );
    let mut expected = payloads("a", 300);
    expected.extend((0..10).map(|i| format!("lag-{i}")));
    expect_exactly_once(&[(&b, "leaf1")], "seen", &expected, "leaf via branch").await;

    // Events keep coming while the branch dies: its worker killed, its database gone.
    let more = produce(&a, "root1", "b", 200);
    let kill = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        branch_w.kill();
        b.psql("postgres", "drop database branch1 with (force)");
    };
    tokio::join!(more, kill);
    // The leaf's worker cannot reach its provider: status says so.
    let status = wait_for("the leaf's error in status", WAIT, || {
        let s = status_text(&leaf);
        let shown = s
            .lines()
            .any(|l| l.contains("leaf1") && l.contains("error:") && l.contains("branch1"));
        async move { shown.then_some(s) }
    })
    .await;
    println!("pgqd cascade status with the branch gone (leaf1):\n{status}");
    admin(&leaf)
        .takeover("branch1", "root1", true)
        .await
        .expect("takeover of the dead branch");
    let status = status_text(&leaf);
    println!("pgqd cascade status after the branch died (leaf1):\n{status}");
    assert!(
        status.contains("branch1") && status.contains("unreachable"),
        "{status}"
    );
    produce(&a, "root1", "c", 100).await;
    expected.extend(payloads("b", 200));
    expected.extend(payloads("c", 100));
    expect_exactly_once(&[(&b, "leaf1")], "seen", &expected, "leaf moved to root").await;
    let provider = b.psql(
        "leaf1",
        &format!("select provider_node from pgq_node.get_node_info('{Q}')"),
    );
    assert_eq!(provider, "root1");

    root_w.stop().await;
    leaf_w.stop().await;
    daemon.stop().await.expect("daemon stops");
    println!("two_clusters_branch_dies: {:?}", started.elapsed());
}

#[test]
fn cli_commands_and_bad_input() {
    let c = TestCluster::start();
    node_db(&c, "r", false);
    node_db(&c, "l", false);
    c.create_db("bare");
    let (r, l, bare) = (c.connstr("r"), c.connstr("l"), c.connstr("bare"));
    let code = |o: &Output| o.status.code().unwrap_or(-1);
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();

    let out = |o: &Output| String::from_utf8_lossy(&o.stdout).to_string();
    let o = pgqd(&["cascade", "create-root", "r1", "--queue", Q, "--db", &r]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    println!("$ pgqd cascade create-root r1 ...\n{}", out(&o));
    let o = pgqd(&["cascade", "create-leaf", "l1", "--queue", Q, "--db", &l]);
    assert_eq!(code(&o), 2, "leaf without provider");
    assert!(err(&o).contains("--provider"), "{}", err(&o));
    let o = pgqd(&[
        "cascade",
        "create-leaf",
        "l1",
        "--queue",
        Q,
        "--db",
        &l,
        "--provider",
        &r,
    ]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    println!("$ pgqd cascade create-leaf l1 ...\n{}", out(&o));
    let o = pgqd(&["cascade", "members", "--queue", Q, "--db", &l]);
    assert_eq!(code(&o), 0, "{}", err(&o));
    println!("$ pgqd cascade members ...\n{}", out(&o));
    assert!(
        out(&o).contains("r1") && out(&o).contains("l1"),
        "{}",
        out(&o)
    );

    // The worker as a process: applies what the root has, SIGTERM stops it cleanly.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg_path = dir.path().join("l1.toml");
    std::fs::write(
        &cfg_path,
        format!("queue_name = '{Q}'\ndb = \"{l}\"\nnode_name = 'l1'\npoll_interval = '100ms'\n"),
    )
    .expect("write config");
    c.psql("r", &format!("select pgq.insert_event('{Q}', 'ev', 'x')"));
    c.psql("r", &format!("select pgq.force_tick('{Q}')"));
    c.psql("r", &format!("select pgq.ticker('{Q}')"));
    let top = daemon_support::last_tick(&c, "r", Q);
    assert!(top > 1, "the root got a tick past the leaf's start");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .args(["cascade", "worker", cfg_path.to_str().expect("utf-8 path")])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("worker.log")).expect("log file"))
        .spawn()
        .expect("start worker");
    common::wait_until_true(
        "the leaf worker process applied the root's tick",
        WAIT,
        || {
            c.psql(
                "l",
                &format!("select worker_last_tick from pgq_node.get_node_info('{Q}')"),
            ) == top.to_string()
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let st = common::wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(
        st.code(),
        Some(0),
        "worker exit after SIGTERM; its log:\n{}",
        std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default()
    );

    // A leaf cannot feed a branch; the root cannot change provider.
    c.create_db("b");
    install_schema(&c, "b", &["pgq", "node"]);
    let b = c.connstr("b");
    let o = pgqd(&[
        "cascade",
        "create-branch",
        "b1",
        "--queue",
        Q,
        "--db",
        &b,
        "--provider",
        &l,
    ]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(err(&o).contains("is a leaf"), "{}", err(&o));
    let o = pgqd(&[
        "cascade",
        "change-provider",
        "--queue",
        Q,
        "--db",
        &l,
        "--node",
        "r1",
        "--provider",
        "l1",
    ]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(err(&o).contains("root"), "{}", err(&o));
    // Unknown nodes.
    let o = pgqd(&[
        "cascade", "pause", "--queue", Q, "--db", &l, "--node", "nope",
    ]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(err(&o).contains("unknown node \"nope\""), "{}", err(&o));
    let o = pgqd(&["cascade", "takeover", "ghost", "--queue", Q, "--db", &l]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    // Same node name twice.
    let o = pgqd(&[
        "cascade",
        "create-leaf",
        "r1",
        "--queue",
        Q,
        "--db",
        &b,
        "--provider",
        &r,
    ]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(err(&o).contains("already exists"), "{}", err(&o));
    // No node, no schema, no queue, bad connection string.
    let o = pgqd(&["cascade", "status", "--queue", "other", "--db", &l]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    let o = pgqd(&["cascade", "create-root", "x", "--queue", Q, "--db", &bare]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(
        err(&o).contains("pgq_node must be installed"),
        "{}",
        err(&o)
    );
    let o = pgqd(&["cascade", "members", "--db", &l]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    let o = pgqd(&[
        "cascade",
        "members",
        "--queue",
        Q,
        "--db",
        "host='unterminated",
    ]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    // Worker configs.
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write config");
        p.to_string_lossy().to_string()
    };
    let bad_key = write(
        "bad.toml",
        &format!("queue_name = '{Q}'\ndb = \"{l}\"\nbogus = 1\n"),
    );
    let o = pgqd(&["cascade", "worker", &bad_key]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(err(&o).contains("bogus"), "{}", err(&o));
    let o = pgqd(&["cascade", "worker", "/nonexistent/cascade.toml"]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    let no_node = write(
        "nonode.toml",
        &format!("queue_name = 'other'\ndb = \"{l}\"\n"),
    );
    let o = pgqd(&["cascade", "worker", &no_node]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    assert!(err(&o).contains("no cascade node"), "{}", err(&o));
    let wrong_name = write(
        "wrong.toml",
        &format!("queue_name = '{Q}'\ndb = \"{l}\"\nnode_name = 'r1'\n"),
    );
    let o = pgqd(&["cascade", "worker", &wrong_name]);
    assert_eq!(code(&o), 2, "{}", err(&o));
    // --config supplies queue and db to admin commands.
    let good = write("good.toml", &format!("queue_name = '{Q}'\ndb = \"{l}\"\n"));
    let o = pgqd(&["cascade", "members", "--config", &good]);
    assert_eq!(code(&o), 0, "{}", err(&o));
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's python cascade code (tests/python/cascade.py) against ours on one cascade:
/// nodes made by our admin, the branch kept by python's `CascadedWorker`, the leaf by
/// our worker reading the branch python keeps; python's admin shows the tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_worker_and_admin_on_our_cascade() {
    const PYTHON: &str = "/usr/bin/python3";
    assert!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} missing: install python3-pgq (scripts/setup.sh)"
    );
    let c = TestCluster::start();
    for db in ["root1", "branch1", "leaf1"] {
        node_db(&c, db, false);
    }
    let (root, branch, leaf) = (c.connstr("root1"), c.connstr("branch1"), c.connstr("leaf1"));
    admin(&root)
        .create(&spec(NodeType::Root, "root1", None))
        .await
        .expect("root");
    let mut b = spec(NodeType::Branch, "branch1", Some(root.clone()));
    b.worker = Some("branch1_worker".into());
    admin(&branch).create(&b).await.expect("branch");
    admin(&leaf)
        .create(&spec(NodeType::Leaf, "leaf1", Some(branch.clone())))
        .await
        .expect("leaf");
    quick_ticks(&c, "root1");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/cascade.py");
    let ini = |name: &str, section: &str, keys: &[(&str, &str)]| {
        let mut text = format!("[{section}]\n");
        for (k, v) in keys {
            text.push_str(&format!("{k} = {v}\n"));
        }
        let p = c.dir.join(format!("{name}.ini"));
        std::fs::write(&p, text).expect("write ini");
        p
    };
    let worker_ini = ini(
        "py_branch_worker",
        "cascade_worker",
        &[
            ("job_name", "branch1_worker"),
            ("queue_name", Q),
            ("db", &branch),
            ("loop_delay", "0.05"),
            ("exception_sleep", "0.2"),
            ("idle_rounds", "1000000"),
        ],
    );
    let log_path = c.dir.join("py_branch_worker.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let py_worker = Child(
        Command::new(PYTHON)
            .arg(&script)
            .arg("worker")
            .arg(&worker_ini)
            .env_remove("PYTHONPATH")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start the python worker"),
    );
    let daemon = daemon_support::Daemon::start(daemon_support::test_config(&c)).await;
    let root_w = spawn_worker(&root);
    let leaf_w = spawn_worker(&leaf);

    produce(&c, "root1", "p", 200).await;
    let expected = payloads("p", 200);
    expect_exactly_once(
        &[(&c, "leaf1")],
        "seen",
        &expected,
        "leaf behind python's branch",
    )
    .await;
    wait_for("python's branch holds the root's events", WAIT, || {
        let same = queue_events(&c, "branch1") == queue_events(&c, "root1");
        async move { same.then_some(()) }
    })
    .await;
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!log_text.contains("Traceback"), "python worker: {log_text}");

    let admin_ini = ini(
        "py_admin",
        "cascade_admin",
        &[("job_name", "py_admin"), ("queue_name", Q), ("db", &leaf)],
    );
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg("admin")
        .arg(&admin_ini)
        .arg("status")
        .env_remove("PYTHONPATH")
        .output()
        .expect("run python admin");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("python cascade admin status:\n{text}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in ["root1", "branch1", "leaf1"] {
        assert!(text.contains(n), "{text}");
    }
    drop(py_worker);
    root_w.stop().await;
    leaf_w.stop().await;
    daemon.stop().await.expect("daemon stops");
}
