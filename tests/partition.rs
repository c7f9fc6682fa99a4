//! Issue #8, network partition.
//!
//! `partitioned_leader_is_replaced_within_the_keepalive_bound`: the leading daemon runs in
//! a network namespace (`common/netns.rs`) and reaches the server over a veth link; the
//! standby uses the unix socket. Cutting the link loses packets both ways, so the server
//! must notice by its TCP keepalives / `tcp_user_timeout` on the leader's sessions (the
//! test sets them to 1 s idle, 1 s × 2 probes, 2 s, client and server side, through the
//! connection string) and drop them with their advisory locks; the standby must then tick
//! every database within that bound plus two ticker periods, and never may both write.
//!
//! `blackholed_path_never_gives_two_writers`: the leader reaches the server through a
//! loopback proxy (`common/proxy.rs`) that stops forwarding without closing — a hung
//! middlebox. Its kernel keeps acknowledging data and keepalive probes on both sides, so no
//! TCP timeout fires and the server keeps the leader's sessions and locks: no takeover is
//! possible there, and this test checks the safety half only — nobody else writes while the
//! leader is cut off, and after healing the same daemon goes on, alone.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::fence::{audit_rows, handovers, install_audit, server_now, unfenced};
use common::netns::NetPair;
use common::pgqd_proc::{PgqdProc, daemon_toml, socket_connstr};
use common::proxy::Proxy;
use common::{ClusterOptions, TestCluster, wait_until};

const DBS: &[&str] = &["part1", "part2"];
const PERIOD: Duration = Duration::from_millis(500);
/// The leader's partition-detection settings, client side and (`options`) server side.
const DETECT: &str = "keepalives_idle=1 keepalives_interval=1 keepalives_count=2 \
    tcp_user_timeout=2000 connect_timeout=2 options='-c tcp_keepalives_idle=1 \
    -c tcp_keepalives_interval=1 -c tcp_keepalives_count=2 -c tcp_user_timeout=2000'";
/// What DETECT bounds: 1 s idle + 2 × 1 s probes (or 2 s unacknowledged).
const DETECT_BOUND: Duration = Duration::from_secs(3);
/// Scheduling and connection slack on a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_secs(2);

fn daemon(c: &TestCluster, app: &str, connstr: &str) -> PgqdProc {
    daemon_in(c, app, connstr, Vec::new())
}

fn daemon_in(c: &TestCluster, app: &str, connstr: &str, wrapper: Vec<String>) -> PgqdProc {
    PgqdProc::start_wrapped(
        &c.dir,
        app,
        &daemon_toml(
            connstr,
            &[
                &format!("ticker_period = \"{}ms\"", PERIOD.as_millis()),
                "maint_period = \"1s\"",
                "retry_period = \"1s\"",
                "check_period = \"1s\"",
                "reconnect_max_delay = \"1s\"",
                "shutdown_timeout = \"2s\"",
                "statement_timeout = \"3s\"",
            ],
        ),
        wrapper,
    )
}

fn setup(c: &TestCluster) {
    for db in DBS {
        c.create_pgq_db(db);
        install_audit(c, db);
        c.psql(
            db,
            "select pgq.create_queue('q'); \
             select pgq.set_queue_config('q', 'ticker_max_lag', '100 ms'); \
             select pgq.set_queue_config('q', 'ticker_idle_period', '200 ms')",
        );
    }
}

/// Waits until `app` ticked every database after server time `since`.
fn wait_leading(c: &TestCluster, app: &str, since: f64) {
    for db in DBS {
        wait_until(
            &format!("{app} ticks {db}"),
            Duration::from_secs(15),
            || {
                audit_rows(c, db, since)
                    .iter()
                    .any(|r| r.app == app)
                    .then_some(())
            },
        );
    }
}

#[test]
fn partitioned_leader_is_replaced_within_the_keepalive_bound() {
    let started = Instant::now();
    let net = NetPair::create()
        .unwrap_or_else(|why| panic!("cannot build a network namespace here: {why}"));
    let c = TestCluster::start_with(ClusterOptions {
        tcp: true,
        conf: vec![format!("listen_addresses = '127.0.0.1,{}'", net.host_ip)],
        hba: vec!["host all all 10.213.0.0/16 trust".into()],
        ..ClusterOptions::default()
    });
    setup(&c);
    let t0 = server_now(&c);
    let mut a = daemon_in(
        &c,
        "pgqd_far",
        &format!(
            "host={} port={} user=postgres application_name=pgqd_far {DETECT}",
            net.host_ip, c.port
        ),
        net.wrapper(),
    );
    wait_leading(&c, "pgqd_far", t0);
    let mut b = daemon(&c, "pgqd_near", &socket_connstr(&c, "pgqd_near"));
    std::thread::sleep(Duration::from_secs(2));
    a.assert_alive("pgqd_far");

    let cut = server_now(&c);
    net.cut();
    let bound = DETECT_BOUND + 2 * PERIOD + SLACK;
    let mut takeover = Vec::new();
    for db in DBS {
        let first = wait_until(
            &format!("pgqd_near ticks {db} after the partition"),
            bound + Duration::from_secs(30),
            || {
                audit_rows(&c, db, cut)
                    .into_iter()
                    .find(|r| r.app == "pgqd_near")
                    .map(|r| r.at)
            },
        );
        takeover.push(first - cut);
    }
    let healed = server_now(&c);
    net.heal();
    std::thread::sleep(Duration::from_secs(3));
    a.assert_alive("pgqd_far");
    b.assert_alive("pgqd_near");

    let mut failures = Vec::new();
    for (i, db) in DBS.iter().enumerate() {
        let rows = audit_rows(&c, db, t0);
        let stale = audit_rows(&c, db, healed)
            .into_iter()
            .filter(|r| r.app == "pgqd_far")
            .count();
        eprintln!(
            "partition: {db}: takeover {:.3}s after the cut (bound {bound:?}); handovers={} \
             unfenced={} ticks by the old leader after healing={stale}",
            takeover[i],
            handovers(&rows),
            unfenced(&rows).len()
        );
        if !unfenced(&rows).is_empty() {
            failures.push(format!("{db}: {} unfenced ticks", unfenced(&rows).len()));
        }
        if handovers(&rows) != 1 {
            failures.push(format!(
                "{db}: {} changes of the ticking daemon, expected 1",
                handovers(&rows)
            ));
        }
        if takeover[i] > bound.as_secs_f64() {
            failures.push(format!(
                "{db}: takeover after {:.3}s, bound {bound:?}",
                takeover[i]
            ));
        }
        if stale > 0 {
            failures.push(format!(
                "{db}: the old leader wrote {stale} ticks after healing"
            ));
        }
    }
    eprintln!(
        "partition: netns wall time {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(a);
    drop(b);
    drop(c);
    drop(net);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_path_never_gives_two_writers() {
    let c = TestCluster::start_with(ClusterOptions {
        tcp: true,
        ..ClusterOptions::default()
    });
    setup(&c);
    let upstream: SocketAddr = format!("127.0.0.1:{}", c.port).parse().expect("address");
    let proxy = Proxy::start(upstream).await;
    let t0 = server_now(&c);
    let mut a = daemon(
        &c,
        "pgqd_far",
        &format!(
            "host=127.0.0.1 port={} user=postgres application_name=pgqd_far {DETECT}",
            proxy.port
        ),
    );
    wait_leading(&c, "pgqd_far", t0);
    let mut b = daemon(&c, "pgqd_near", &socket_connstr(&c, "pgqd_near"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        proxy.accepted() > 0,
        "the leader connects through the proxy"
    );

    let cut = server_now(&c);
    proxy.blackhole();
    // Longer than every bound the settings give, had the path really been partitioned.
    std::thread::sleep(DETECT_BOUND + 2 * PERIOD + SLACK);
    let healed = server_now(&c);
    proxy.heal();
    for db in DBS {
        wait_until(
            &format!("ticks in {db} after healing"),
            Duration::from_secs(15),
            || (!audit_rows(&c, db, healed).is_empty()).then_some(()),
        );
    }
    a.assert_alive("pgqd_far");
    b.assert_alive("pgqd_near");
    for db in DBS {
        let rows = audit_rows(&c, db, t0);
        let during: Vec<_> = rows
            .iter()
            .filter(|r| r.at > cut + 0.05 && r.at < healed)
            .collect();
        let after: Vec<&str> = audit_rows(&c, db, healed)
            .iter()
            .map(|r| if r.app == "pgqd_far" { "far" } else { "near" })
            .collect();
        eprintln!(
            "partition: blackhole: {db}: ticks while cut off={} (by {:?}); handovers={} \
             unfenced={}; after healing: {} by far, {} by near",
            during.len(),
            during
                .iter()
                .map(|r| r.app.as_str())
                .collect::<std::collections::BTreeSet<_>>(),
            handovers(&rows),
            unfenced(&rows).len(),
            after.iter().filter(|a| **a == "far").count(),
            after.iter().filter(|a| **a == "near").count()
        );
        assert!(unfenced(&rows).is_empty(), "{db}: unfenced ticks");
        assert!(
            handovers(&rows) <= 1,
            "{db}: two daemons took turns writing: {} changes",
            handovers(&rows)
        );
        assert!(
            during.iter().all(|r| r.app == "pgqd_near")
                && handovers(&rows) == usize::from(!during.is_empty()),
            "{db}: the blackholed leader's writes went through, or writers alternated"
        );
    }
}
