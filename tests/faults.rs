//! Issue #8 failures beyond `daemon_failures.rs` (which covers restarts, terminated
//! backends, the pgq extension dropped and re-created, a server down at start): a database
//! dropped while a daemon statement waits on it, our pgq schema dropped and re-installed,
//! a statement hanging on a lock, `max_connections` exhausted, an unreachable host, a full
//! disk under a queue's event tables, and PgBouncer in transaction pooling mode.
//!
//! Each runs the real `pgqd` binary (its log is the evidence) against its own cluster with
//! a `steady` database beside the one that fails, and asserts: the failure is logged with
//! the database and the SQLSTATE, not once per retry; the daemon keeps retrying and
//! recovers; and `steady` keeps ticking meanwhile.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pgqd_proc::{PgqdProc, daemon_toml, server_user, socket_connstr};
use common::proxy::Proxy;
use common::{ClusterOptions, TestCluster, install_schema, wait_until, wait_until_true};
use tokio_postgres::NoTls;

/// Most WARN/ERROR lines one failure may cause: once per lane (ticker, maint, retry).
const ONCE_PER_LANE: usize = 3;

/// Daemon settings of these tests.
const PERIODS: &[&str] = &[
    "ticker_period = \"200ms\"",
    "maint_period = \"500ms\"",
    "retry_period = \"1s\"",
    "check_period = \"500ms\"",
    "reconnect_max_delay = \"1s\"",
    "lock_timeout = \"1s\"",
    "statement_timeout = \"5s\"",
    "shutdown_timeout = \"2s\"",
    // Retries are debug lines: the backoff is measured from them.
    "log_level = \"debug\"",
];

/// A database with our schema and a queue `q` that is due every 200 ms.
fn ticking_db(c: &TestCluster, db: &str) {
    c.create_pgq_db(db);
    ticking_queue(c, db);
}

fn ticking_queue(c: &TestCluster, db: &str) {
    c.psql(
        db,
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '100 ms'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '200 ms')",
    );
}

fn start_daemon(c: &TestCluster, connstr: &str) -> PgqdProc {
    PgqdProc::start(&c.dir, "pgqd", &daemon_toml(connstr, PERIODS))
}

/// The latest tick id of `q` in `db`, None if psql fails.
fn tick_of(c: &TestCluster, db: &str) -> Option<i64> {
    let out = c.psql_output(
        db,
        &[
            "-At",
            "-c",
            "select coalesce(max(tick_id), 0) from pgq.tick",
        ],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .flatten()
}

/// Waits for a tick made after this call (`pgq.create_queue` makes a queue's first tick
/// itself, so "any tick" would prove nothing about the daemon); returns its id.
fn wait_next_tick(c: &TestCluster, db: &str, within: Duration) -> i64 {
    let now = tick_of(c, db).unwrap_or_else(|| panic!("read ticks of {db}"));
    wait_tick(c, db, now, within)
}

/// Waits until `db` has a tick above `after`; returns it.
fn wait_tick(c: &TestCluster, db: &str, after: i64, within: Duration) -> i64 {
    wait_until(&format!("a tick in {db} after {after}"), within, || {
        tick_of(c, db).filter(|t| *t > after)
    })
}

/// WARN/ERROR lines of the daemon's log about `db` (its task's span or a `db=` field).
fn problems_of<'a>(log: &'a str, db: &str) -> Vec<&'a str> {
    let span = format!("db{{db={db}}}");
    let field = format!("db={db} ");
    log.lines()
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR")))
        .filter(|l| l.contains(&span) || l.contains(&field))
        .collect()
}

/// Asserts that the failure in `db` was logged at least once and at most once per lane,
/// with `sqlstate` in the line; prints the lines.
fn assert_logged_once(d: &PgqdProc, db: &str, sqlstate: &str, what: &str) {
    let log = d.log_text();
    let lines = problems_of(&log, db);
    eprintln!("faults: {what}: {} WARN/ERROR lines for {db}", lines.len());
    for l in &lines {
        eprintln!(
            "faults: {what}: | {}",
            l.chars().take(300).collect::<String>()
        );
    }
    assert!(
        lines.iter().any(|l| l.contains(sqlstate)),
        "{what}: no WARN/ERROR line for {db} with SQLSTATE {sqlstate}"
    );
    assert!(
        lines.len() <= ONCE_PER_LANE,
        "{what}: {} WARN/ERROR lines for {db}: logged per retry, not once",
        lines.len()
    );
}

/// Asserts `steady` ticked at least `min` times since tick id `from`.
fn assert_kept_ticking(c: &TestCluster, from: i64, min: i64, what: &str) {
    let now = tick_of(c, "steady").expect("read steady ticks");
    eprintln!(
        "faults: {what}: steady ticked {} times meanwhile",
        now - from
    );
    assert!(
        now - from >= min,
        "{what}: steady ticked only {} times meanwhile",
        now - from
    );
}

#[test]
fn dropped_database_and_reinstalled_pgq_leave_others_ticking() {
    let started = Instant::now();
    let c = TestCluster::start();
    for db in ["steady", "victim", "again"] {
        ticking_db(&c, db);
    }
    let mut d = start_daemon(&c, &socket_connstr(&c, "pgqd"));
    for db in ["steady", "victim", "again"] {
        wait_next_tick(&c, db, Duration::from_secs(15));
    }

    // A daemon statement waits on a lock in `victim` when the database is dropped.
    let steady0 = tick_of(&c, "steady").expect("steady ticks");
    let mut holder = Command::new("psql")
        .args(["-X", "-h"])
        .arg(&c.socket_dir)
        .args([
            "-p",
            &c.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "victim",
            "-c",
        ])
        .arg("begin; lock table pgq.tick in access exclusive mode; select pg_sleep(60)")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lock holder");
    wait_until_true(
        "a daemon statement waiting on the lock in victim",
        Duration::from_secs(10),
        || {
            c.psql(
                "postgres",
                "select count(*) from pg_stat_activity where datname = 'victim' \
                  and application_name = 'pgqd' and wait_event_type = 'Lock'",
            ) != "0"
        },
    );
    c.psql("postgres", "drop database victim with (force)");
    let _ = holder.wait();
    wait_until_true(
        "the daemon notices victim is gone",
        Duration::from_secs(10),
        || {
            let log = d.log_text();
            log.lines().any(|l| {
                (l.contains("db{db=victim}") && l.contains("database is gone"))
                    || (l.contains("db=victim") && l.contains("database removed"))
            })
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    d.assert_alive("pgqd");
    assert_kept_ticking(&c, steady0, 3, "database dropped");
    let log = d.log_text();
    let victim = problems_of(&log, "victim");
    eprintln!(
        "faults: database dropped: {} WARN/ERROR lines for victim",
        victim.len()
    );
    assert!(victim.len() <= ONCE_PER_LANE, "{victim:#?}");

    // Our pgq schema dropped, then installed again, while the daemon serves `again`.
    let steady1 = tick_of(&c, "steady").expect("steady ticks");
    c.psql("again", "drop schema pgq cascade");
    std::thread::sleep(Duration::from_secs(1));
    install_schema(&c, "again", &["pgq"]);
    ticking_queue(&c, "again");
    wait_next_tick(&c, "again", Duration::from_secs(15));
    d.assert_alive("pgqd");
    assert_kept_ticking(&c, steady1, 3, "pgq re-installed");
    let log = d.log_text();
    let again = problems_of(&log, "again");
    eprintln!(
        "faults: pgq re-installed: {} WARN/ERROR lines for again",
        again.len()
    );
    assert!(again.len() <= ONCE_PER_LANE, "{again:#?}");
    eprintln!("faults: wall time {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn statement_hanging_on_a_lock_times_out_and_recovers() {
    let c = TestCluster::start();
    ticking_db(&c, "steady");
    ticking_db(&c, "hang");
    let mut d = start_daemon(&c, &socket_connstr(&c, "pgqd"));
    wait_next_tick(&c, "hang", Duration::from_secs(15));
    let steady0 = tick_of(&c, "steady").expect("steady ticks");
    let hang0 = tick_of(&c, "hang").expect("hang ticks");
    // 4 s of an exclusive lock on pgq.tick: every due check and tick waits for it and hits
    // lock_timeout (1 s).
    let out = c.psql_output(
        "hang",
        &[
            "-c",
            "begin; lock table pgq.tick in access exclusive mode; select pg_sleep(4); commit",
        ],
    );
    assert!(out.status.success(), "lock holder failed");
    d.assert_alive("pgqd");
    assert_kept_ticking(&c, steady0, 8, "lock hang");
    wait_tick(&c, "hang", hang0, Duration::from_secs(10));
    assert_logged_once(&d, "hang", "55P03", "lock hang");
}

/// Seconds of the day of a log line's timestamp (`2026-01-01T12:34:56.789Z …`).
fn log_time(line: &str) -> Option<f64> {
    let t = line
        .split_whitespace()
        .next()?
        .split('T')
        .nth(1)?
        .trim_end_matches('Z');
    let mut f = t.split(':');
    let h: f64 = f.next()?.parse().ok()?;
    let m: f64 = f.next()?.parse().ok()?;
    let s: f64 = f.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The latest tick id, read on a connection the test holds.
async fn held_tick(cl: &tokio_postgres::Client) -> i64 {
    cl.query_one("select coalesce(max(tick_id), 0) from pgq.tick", &[])
        .await
        .expect("read ticks")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_exhausted_then_freed() {
    let c = TestCluster::start_with(ClusterOptions {
        conf: vec!["max_connections = 12".into()],
        ..ClusterOptions::default()
    });
    ticking_db(&c, "steady");
    ticking_db(&c, "late");
    // `late` appears only once the slots are full.
    c.psql("postgres", "alter database late allow_connections false");
    let mut d = start_daemon(&c, &socket_connstr(&c, "pgqd"));
    wait_next_tick(&c, "steady", Duration::from_secs(15));

    // Take every free slot.
    let mut held = Vec::new();
    let full = loop {
        match c.config("steady").connect(NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                held.push(client);
                assert!(held.len() < 20, "max_connections did not bite");
            }
            Err(e) => break e,
        }
    };
    assert_eq!(
        full.code().map(|s| s.code()),
        Some("53300"),
        "connecting failed for another reason: {full}"
    );
    let first = &held[0];
    first
        .batch_execute("alter database late allow_connections true")
        .await
        .expect("open late");
    let steady0 = held_tick(first).await;
    // Long enough for an uncapped doubling backoff to pass 1.5 s between attempts.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let steady1 = held_tick(first).await;
    d.assert_alive("pgqd");
    eprintln!(
        "faults: max_connections: holding {} connections; steady ticked {} times while full",
        held.len(),
        steady1 - steady0
    );
    let log = d.log_text();
    let mentions: Vec<&str> = log
        .lines()
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR")))
        .filter(|l| l.contains("53300"))
        .collect();
    eprintln!(
        "faults: max_connections: {} WARN/ERROR lines with 53300",
        mentions.len()
    );
    for l in &mentions {
        eprintln!(
            "faults: max_connections: | {}",
            l.chars().take(300).collect::<String>()
        );
    }
    // Connection attempts to `late` (the first is the WARN, the rest debug lines).
    let attempts: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("db{db=late}") && l.contains("cannot connect"))
        .filter_map(log_time)
        .collect();
    let gaps: Vec<f64> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    let max_gap = gaps.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "faults: max_connections: {} attempts on late, largest gap {max_gap:.2}s \
         (reconnect_max_delay 1s)",
        attempts.len()
    );
    drop(held);
    wait_next_tick(&c, "late", Duration::from_secs(20));
    assert!(attempts.len() >= 3, "the daemon kept retrying late");
    assert!(
        max_gap <= 1.5,
        "backoff not capped at reconnect_max_delay (1 s): gaps {gaps:.2?}"
    );
    assert!(
        steady1 - steady0 >= 5,
        "steady kept ticking on its connection while the slots were full"
    );
    assert!(!mentions.is_empty(), "the refusal (53300) was logged");
    assert!(
        mentions.len() <= ONCE_PER_LANE,
        "53300 logged per retry, not once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_host_is_retried_quietly_until_it_answers() {
    let c = TestCluster::start_with(ClusterOptions {
        tcp: true,
        ..ClusterOptions::default()
    });
    ticking_db(&c, "steady");
    let proxy = Proxy::start(format!("127.0.0.1:{}", c.port).parse().expect("address")).await;
    // Connections reach nothing that answers: the TCP handshake completes at the proxy,
    // then silence, as a host whose packets are dropped after a stateful middlebox.
    proxy.blackhole();
    let mut d = start_daemon(
        &c,
        &format!(
            "host=127.0.0.1 port={} user=postgres connect_timeout=1 application_name=pgqd",
            proxy.port
        ),
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    d.assert_alive("pgqd");
    let attempts = proxy.accepted();
    let log = d.log_text();
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR")))
        .collect();
    eprintln!(
        "faults: unreachable host: {attempts} connection attempts in 6 s, {} WARN/ERROR lines",
        warns.len()
    );
    for l in &warns {
        eprintln!(
            "faults: unreachable host: | {}",
            l.chars().take(300).collect::<String>()
        );
    }
    assert!(
        attempts >= 3,
        "the daemon kept trying ({attempts} attempts)"
    );
    // Once per connection kind at most (control session, discovery, a database).
    assert!(
        (1..=ONCE_PER_LANE).contains(&warns.len()),
        "logged once, not per attempt (or not at all): {warns:#?}"
    );
    let before = Instant::now();
    proxy.heal();
    wait_next_tick(&c, "steady", Duration::from_secs(15));
    eprintln!(
        "faults: unreachable host: first tick {:.1}s after the host answered",
        before.elapsed().as_secs_f64()
    );
}

/// A tmpfs mounted for a tablespace; unmounted (lazily, the server may still hold files)
/// and removed on drop.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. "2m"); None (and why) when not possible here.
    fn mount(size: &str) -> Result<SmallDisk, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("mounting a tmpfs needs root".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("pgqd-tmpfs-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let disk = SmallDisk { dir };
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&disk.dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if let Some(u) = server_user() {
            let u = nix::unistd::User::from_name(&u)
                .ok()
                .flatten()
                .ok_or("no server user")?;
            nix::unistd::chown(&disk.dir, Some(u.uid), Some(u.gid)).map_err(|e| e.to_string())?;
        }
        Ok(disk)
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    /// Remounts with a larger size (the operator adding space).
    fn grow(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "remount the tmpfs larger");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn disk_full_under_event_tables_is_logged_once_and_survived() {
    // Declared first: dropped after the cluster has stopped.
    let disk = match SmallDisk::mount("1m") {
        Ok(d) => d,
        Err(why) => panic!("cannot mount a tmpfs for the disk-full test: {why}"),
    };
    let c = TestCluster::start();
    ticking_db(&c, "steady");
    c.create_pgq_db("full");
    c.psql(
        "full",
        &format!(
            "create tablespace small location '{}'",
            disk.path().display()
        ),
    );
    c.psql(
        "full",
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '100 ms'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '200 ms'); \
         select pgq.set_queue_config('q', 'rotation_period', '1 s'); \
         select pgq.register_consumer('q', 'reader')",
    );
    // The queue's event tables (not their parent, which stays empty) go to the tmpfs.
    let tables = c.psql(
        "full",
        "select string_agg(format('alter table %s set tablespace small', c.oid::regclass), '; ') \
           from pg_class c join pgq.queue q on c.relname like 'event_' || q.queue_id || '_%' \
          where c.relnamespace = 'pgq'::regnamespace and c.relkind = 'r'",
    );
    assert!(!tables.is_empty(), "found the event tables");
    c.psql("full", &tables);
    let mut d = start_daemon(&c, &socket_connstr(&c, "pgqd"));
    wait_next_tick(&c, "full", Duration::from_secs(15));

    // Fill it: inserts fail with 53100 disk_full.
    let mut inserted = 0;
    let full_err = loop {
        let out = c.psql_output(
            "full",
            &[
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "select count(pgq.insert_event('q', 'big', repeat(md5(x::text), 64))) \
                   from generate_series(1, 50) x",
            ],
        );
        if !out.status.success() {
            break String::from_utf8_lossy(&out.stderr).into_owned();
        }
        inserted += 50;
        assert!(inserted < 100_000, "the tablespace never filled");
    };
    assert!(
        full_err.contains("No space left on device") || full_err.contains("could not extend"),
        "inserts failed for another reason: {full_err}"
    );
    let steady0 = tick_of(&c, "steady").expect("steady ticks");
    let full0 = tick_of(&c, "full").expect("full ticks");

    // Full: the daemon keeps ticking both databases; its rotation of `full` fails with
    // 53100 (rotation step 1 needs new pages in the full tablespace, so pgq cannot free a
    // full event tablespace by itself), which is logged once and retried.
    let t_full = Instant::now();
    let consume = |c: &TestCluster| {
        let _ = c.psql_output(
            "full",
            &[
                "-c",
                "select pgq.finish_batch(b) from pgq.next_batch('q', 'reader') b \
                  where b is not null",
            ],
        );
    };
    // Rotation waits for the consumer to pass the previous switch: keep it reading.
    wait_until_true(
        "the failed rotation is logged",
        Duration::from_secs(30),
        || {
            consume(&c);
            !d.log_lines_with(&["db{db=full}", "53100"]).is_empty()
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let cur = |c: &TestCluster| c.psql("full", "select queue_cur_table from pgq.queue");
    let table_while_full = cur(&c);
    d.assert_alive("pgqd");
    assert!(
        tick_of(&c, "full").expect("full ticks") > full0,
        "the full queue kept ticking"
    );
    assert_kept_ticking(&c, steady0, 5, "disk full");
    assert_logged_once(&d, "full", "53100", "disk full");
    eprintln!(
        "faults: disk full: {inserted} events filled the 1 MB tmpfs; rotation failing for {:.1}s",
        t_full.elapsed().as_secs_f64()
    );

    // The operator adds space: the retried rotation goes through, inserts work.
    disk.grow("8m");
    let grown = Instant::now();
    wait_until_true(
        "a rotation after the disk grew",
        Duration::from_secs(30),
        || {
            consume(&c);
            cur(&c) != table_while_full
        },
    );
    c.psql("full", "select pgq.insert_event('q', 'small', 'x')");
    d.assert_alive("pgqd");
    eprintln!(
        "faults: disk full: rotated {:.1}s after the disk grew",
        grown.elapsed().as_secs_f64()
    );
    drop(d);
    drop(c);
    drop(disk);
}

/// Debian's pgbouncer as the server user, transaction pooling, trust auth, in front of `c`.
struct Bouncer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Bouncer {
    fn start(c: &TestCluster) -> Option<Bouncer> {
        let bin = Path::new("/usr/sbin/pgbouncer");
        if !bin.exists() {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let users = c.dir.join("pgbouncer-users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").expect("userlist");
        let log = c.dir.join("pgbouncer.log");
        let ini = c.dir.join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host={} port={}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
                 pool_mode = transaction\nmax_client_conn = 100\ndefault_pool_size = 4\n\
                 ignore_startup_parameters = extra_float_digits,options\nlogfile = {}\n",
                c.socket_dir.display(),
                c.port,
                users.display(),
                log.display()
            ),
        )
        .expect("pgbouncer.ini");
        // pgbouncer refuses to run as root; `-u` makes it switch user itself, so the child
        // we kill on drop is pgbouncer (through runuser it would be runuser, and pgbouncer
        // would outlive the test).
        let mut cmd = Command::new(bin);
        if let Some(u) = server_user() {
            cmd.args(["-u", &u]);
        }
        let child = cmd
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pgbouncer");
        let b = Bouncer { child, port, log };
        wait_until_true("pgbouncer listens", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(b)
    }

    /// psql through the bouncer (simple query protocol).
    fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
            ])
            .args([
                "postgres",
                "-p",
                &self.port.to_string(),
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "pgbouncer log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Behind PgBouncer in transaction pooling, producers and consumers work (each call is
/// one transaction); the daemon, whose leadership and fence are session locks, must not
/// tick with them unheld: it either ticks steadily and fenced, or refuses saying why, and
/// stays up.
#[test]
fn pgbouncer_transaction_pooling() {
    let c = TestCluster::start();
    let Some(bouncer) = Bouncer::start(&c) else {
        panic!("/usr/sbin/pgbouncer is missing (scripts/setup.sh installs it)");
    };
    ticking_db(&c, "steady");
    c.create_pgq_db("pooled");
    common::fence::install_audit(&c, "pooled");
    ticking_queue(&c, "pooled");

    // What works: producing and consuming, one transaction per call.
    bouncer
        .psql("pooled", "select pgq.register_consumer('q', 'c')")
        .expect("register through pgbouncer");
    bouncer
        .psql(
            "pooled",
            "select pgq.insert_event('q', 't', 'through pgbouncer')",
        )
        .expect("insert through pgbouncer");
    c.psql("pooled", "select pgq.force_tick('q')");
    c.psql("pooled", "select pgq.ticker('q')");
    let got = bouncer
        .psql(
            "pooled",
            "begin; \
             select ev_data from pgq.get_batch_events(pgq.next_batch('q', 'c')); \
             select pgq.finish_batch(pgq.next_batch('q', 'c')); \
             commit",
        )
        .expect("consume through pgbouncer");
    assert!(got.contains("through pgbouncer"), "consumed: {got}");

    // The daemon through the bouncer.
    let t0 = common::fence::server_now(&c);
    let mut d = PgqdProc::start(
        &c.dir,
        "pgqd",
        &daemon_toml(
            &format!(
                "host=127.0.0.1 port={} user=postgres application_name=pgqd_pooled sslmode=disable",
                bouncer.port
            ),
            PERIODS,
        ),
    );
    std::thread::sleep(Duration::from_secs(5));
    d.assert_alive("pgqd behind pgbouncer");
    let rows = common::fence::audit_rows(&c, "pooled", t0);
    let unfenced = common::fence::unfenced(&rows).len();
    let log = d.log_text();
    let problems: Vec<&str> = log
        .lines()
        .filter(|l| matches!(l.split_whitespace().nth(1), Some("WARN" | "ERROR")))
        .collect();
    eprintln!(
        "faults: pgbouncer: daemon made {} ticks in pooled ({} unfenced); {} WARN/ERROR lines",
        rows.len(),
        unfenced,
        problems.len()
    );
    for l in problems.iter().take(8) {
        eprintln!(
            "faults: pgbouncer: | {}",
            l.chars().take(300).collect::<String>()
        );
    }
    assert_eq!(unfenced, 0, "ticks made without the fence lock held");
    // `pooled` is due every 200 ms: a daemon that works behind the bouncer ticks it about
    // 25 times in 5 s without complaint; one that cannot must say why (transaction pooling
    // breaks its session state: prepared statements, the leader and fence session locks).
    let works = rows.len() >= 15 && problems.is_empty();
    let says_why = problems.iter().any(|l| {
        let l = l.to_lowercase();
        l.contains("pgbouncer") || l.contains("pooling")
    });
    assert!(
        works || says_why,
        "behind transaction pooling the daemon neither works ({} ticks in 5 s, {} WARN/ERROR \
         lines) nor refuses saying why",
        rows.len(),
        problems.len()
    );
    assert!(problems.len() <= 2 * ONCE_PER_LANE, "error storm");
}
