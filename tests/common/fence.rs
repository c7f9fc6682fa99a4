//! The fencing contract of issue #8, seen from the database, for the HA tests (`ha.rs`,
//! `partition.rs`, the standby tests).
//!
//! The daemon holding the cluster leader lock (session advisory lock
//! [`LEADER_KEY`] in the initial database) is the leader. In each database the leader holds
//! the session advisory lock [`DB_KEY`] while connected, and every tick transaction takes
//! `pg_try_advisory_xact_lock(DB_KEY)` before writing. [`install_audit`] adds a test-only
//! trigger on `pgq.tick` that records, for every tick, the inserting session's
//! `application_name` and whether that backend held the `DB_KEY` lock — so "who ticked" and
//! "was it fenced" are queries.

use crate::common::TestCluster;

/// Cluster leader lock key (pg_locks: classid 1885827428 = 0x70677164, objid 0,
/// objsubid 1).
pub const LEADER_KEY: &str = "x'7067716400000000'::int8";
/// Per-database fence key (pg_locks: classid 1885827428, objid 1, objsubid 1).
pub const DB_KEY: &str = "x'7067716400000001'::int8";

/// `pg_locks` condition for the bigint advisory lock `key` (its upper half is `classid`,
/// its lower half `objid`; `objsubid` 1 marks the one-bigint form), held.
fn lock_is(alias: &str, key: &str) -> String {
    format!(
        "{alias}.locktype = 'advisory' and {alias}.objsubid = 1 and {alias}.granted \
         and (({alias}.classid::int8 << 32) | {alias}.objid::int8) = {key}"
    )
}

/// Adds the audit table and trigger to `db` (which has our pgq schema).
pub fn install_audit(c: &TestCluster, db: &str) {
    let held = lock_is("l", DB_KEY);
    c.psql(
        db,
        &format!(
            "create table public.fence_audit ( \
                 tick_queue int4, tick_id int8, app text, fenced bool, \
                 at timestamptz not null default clock_timestamp()); \
             create function public.fence_audit() returns trigger language plpgsql as $f$ \
             begin \
                 insert into public.fence_audit (tick_queue, tick_id, app, fenced) \
                 values (new.tick_queue, new.tick_id, \
                         pg_catalog.current_setting('application_name'), \
                         exists (select 1 from pg_catalog.pg_locks l \
                                  where {held} and l.pid = pg_catalog.pg_backend_pid())); \
                 return new; \
             end $f$; \
             create trigger fence_audit after insert on pgq.tick \
                 for each row execute function public.fence_audit()"
        ),
    );
}

/// One audited tick.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// `application_name` of the ticking session.
    pub app: String,
    /// Whether it held the database fence lock.
    pub fenced: bool,
    /// Seconds since the epoch (server clock) when the tick row was inserted.
    pub at: f64,
}

/// Every audited tick of `db` after server time `since` (epoch seconds), in tick order.
pub fn audit_rows(c: &TestCluster, db: &str, since: f64) -> Vec<AuditRow> {
    let out = c.psql(
        db,
        &format!(
            "select app, fenced, extract(epoch from at) from public.fence_audit \
              where extract(epoch from at) > {since} order by tick_id"
        ),
    );
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.split('|');
            let app = f.next().unwrap_or_default().to_string();
            let fenced = f.next() == Some("t");
            let at = f.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
            AuditRow { app, fenced, at }
        })
        .collect()
}

/// The server's clock, epoch seconds.
pub fn server_now(c: &TestCluster) -> f64 {
    c.psql("postgres", "select extract(epoch from clock_timestamp())")
        .parse()
        .expect("epoch")
}

/// Ticks made by a session that did not hold the fence lock.
pub fn unfenced(rows: &[AuditRow]) -> Vec<&AuditRow> {
    rows.iter().filter(|r| !r.fenced).collect()
}

/// Number of times the ticking daemon changed, in tick order. Two daemons writing in the
/// same period show as more changes than handovers caused (A, B, A, …).
pub fn handovers(rows: &[AuditRow]) -> usize {
    rows.windows(2).filter(|w| w[0].app != w[1].app).count()
}

/// `application_name`s of the sessions holding the cluster leader lock.
pub fn leader_holders(c: &TestCluster) -> Vec<String> {
    c.psql(
        "postgres",
        &format!(
            "select a.application_name from pg_locks l join pg_stat_activity a using (pid) \
              where {} order by 1",
            lock_is("l", LEADER_KEY)
        ),
    )
    .lines()
    .map(str::to_string)
    .collect()
}
