//! The control connection: leadership (issue #8) and the cluster-wide activity signal
//! (issue #7), on one session to the control database.
//!
//! **Leadership.** Several pgqd processes may serve one cluster; the one holding the
//! session advisory lock [`sql::LEADER_KEY`] in the control database is the leader, the
//! others are standbys that try again every `ticker_period`. A server in recovery is never
//! served. Database tasks follow [`Role`]: they serve only under `Leader`, pause (keeping
//! their sessions, hence their per-database fences) while the control session is being
//! re-established, and let go of their databases as standbys. The per-database fence
//! (`database.rs`, `sql::FENCE_KEY`) is what makes a handover safe; this lock only decides
//! who tries.
//!
//! **Activity.** Instead of asking every database "is a tick due?" every second, the
//! leader reads the cluster's snapshot every [`POLL`] ([`POLL_QUIET`] in a quiet
//! spell): its xmax moves only when a writing
//! transaction ends somewhere. When one ended that is not ours (database tasks report the
//! txids of their own writes, [`Signals::own_xid`]), [`sql::ACTIVE_DATABASES`] names the
//! databases whose client sessions did something since the previous look, and their tasks
//! are woken. While others write, per-database write counters are also compared every
//! [`COUNTERS_EVERY`], which catches sessions that came and went between two looks.
//! Signals only ever wake a task early; each task still has its own due-time timer and a
//! sweep, so a missed signal delays, never loses, a tick.
//!
//! The control database is `initial_database`, or `postgres` when that is a template
//! (`template1`, the default, must stay free for `CREATE DATABASE`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::broker::{Broker, DbConn, Purpose};
use super::database::Backoff;
use crate::config::Config;
use crate::sql;

/// How often the leader reads the snapshot while others have written lately …
pub const POLL: Duration = Duration::from_millis(10);
/// … and when the cluster has been quiet for [`QUIET_AFTER`] (half the cost; a first
/// event after a quiet spell is seen a few milliseconds later).
pub const POLL_QUIET: Duration = Duration::from_millis(20);
/// How long after the last foreign write the cluster counts as quiet.
pub const QUIET_AFTER: Duration = Duration::from_secs(5);
/// How often write counters are compared while others are writing.
pub const COUNTERS_EVERY: Duration = Duration::from_millis(250);
/// How long after the last foreign write the counters keep being compared every
/// [`COUNTERS_EVERY`] (a backend may hold back its counters for up to 10 s after a busy
/// second); outside that, every [`COUNTERS_QUIET`], so the baseline is never stale.
pub const COUNTERS_FOR: Duration = Duration::from_secs(15);
/// How often counters are compared in a quiet spell.
pub const COUNTERS_QUIET: Duration = Duration::from_secs(5);
/// After a foreign write, the next comparison comes this soon: a session that wrote and
/// disconnected has flushed its counters already.
const COUNTERS_SOON: Duration = Duration::from_millis(50);
/// A database's write counters that moved within this long of our own writes of unknown
/// size there are taken for ours (a session of ours flushes its counters when it ends, at
/// the latest).
const OWN_FLUSH: Duration = Duration::from_secs(1);
/// Rows we wrote and counted (ticks) are expected in the counters within this long (a
/// session flushes at most once a second while it lives, sometimes only after 10 s, and
/// when it ends); later, a movement is not ours.
const OWN_ROWS_FOR: Duration = Duration::from_secs(15);
/// Look-back added to the previous look's time, for clock steps between sessions.
const LOOKBACK: Duration = Duration::from_millis(50);
/// A control session lost again within this long after the last loss is logged at debug
/// level.
const LOST_AGAIN: Duration = Duration::from_secs(60);
/// Fallback control database when `initial_database` is a template.
const FALLBACK_DB: &str = "postgres";

/// A database's own writes not yet seen in its write counters: a visit's ticks are counted
/// (one row each), so a client's row written around a visit still shows as news; writes of
/// unknown size (maintenance, retry) hide every movement for [`OWN_FLUSH`] after them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct OwnWrites {
    /// Counted rows not yet seen, and when the last were written.
    rows: u64,
    last: Option<Instant>,
    /// When writes of unknown size were last made.
    unknown: Option<Instant>,
}

impl OwnWrites {
    fn record(&mut self, now: Instant, rows: Option<u64>) {
        match rows {
            Some(n) => self.rows = self.rows.saturating_add(n),
            None => self.unknown = Some(now),
        }
        self.last = Some(now);
    }

    /// Takes `delta` (rows written since the read at `since`) off what we owe; whether
    /// some of it is someone else's.
    fn foreign(&mut self, delta: i64, since: Instant, now: Instant) -> bool {
        if self.unknown.is_some_and(|t| t + OWN_FLUSH >= since) {
            self.rows = 0;
            return false;
        }
        if self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) > OWN_ROWS_FOR)
        {
            self.rows = 0;
        }
        let delta = u64::try_from(delta).unwrap_or(0);
        let ours = delta.min(self.rows);
        self.rows -= ours;
        delta > ours
    }
}

/// What this daemon may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// No control session yet (or it is being re-established): do not write; keep what
    /// you hold.
    Pending,
    /// We hold the leader lock: serve every database.
    Leader,
    /// Another daemon holds the leader lock (described): let go of every database.
    Standby(String),
    /// The server is in recovery: nothing to tick.
    Recovery,
}

impl Role {
    /// A short word for logs, status and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Pending => "pending",
            Role::Leader => "leader",
            Role::Standby(_) => "standby",
            Role::Recovery => "recovery",
        }
    }
}

/// Shared between the control task, the supervisor and the database tasks.
#[derive(Debug)]
pub struct Signals {
    role: watch::Sender<Role>,
    live: AtomicBool,
    /// How many times `live` became true: a task that read something during one spell
    /// knows a signal may have been missed if the spell changed.
    spells: AtomicU64,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    own: Mutex<BTreeSet<i64>>,
    /// Each database's own writes not yet seen in its counters.
    own_writes: Mutex<HashMap<String, OwnWrites>>,
}

impl Signals {
    /// Fresh signals: role pending, not live.
    pub fn new() -> Arc<Signals> {
        Arc::new(Signals {
            role: watch::Sender::new(Role::Pending),
            live: AtomicBool::new(false),
            spells: AtomicU64::new(0),
            wakers: Mutex::new(HashMap::new()),
            own: Mutex::new(BTreeSet::new()),
            own_writes: Mutex::new(HashMap::new()),
        })
    }

    /// Follows the role.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// The role now.
    pub fn current_role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Whether the activity signal is working: while false, database tasks fall back to
    /// checking every `ticker_period`.
    pub fn live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    /// The current spell of a working activity signal (None: not working now). Two equal
    /// answers mean no activity can have gone unsignalled in between.
    pub fn live_spell(&self) -> Option<u64> {
        // Read the spell first: a spell that ended and began again in between shows as a
        // newer number on the next call, never as the same one.
        let spell = self.spells.load(Ordering::Acquire);
        self.live.load(Ordering::Acquire).then_some(spell)
    }

    /// The waker of database `db` (created on first use).
    pub fn waker(&self, db: &str) -> Arc<Notify> {
        let mut w = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(db.to_string()).or_default().clone()
    }

    /// Forgets database `db`'s waker (its task ended).
    pub fn forget(&self, db: &str) {
        let mut w = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        w.remove(db);
    }

    /// Records a txid of one of our own writes, so its end is not taken for activity.
    pub fn own_xid(&self, xid: Option<i64>) {
        if let Some(x) = xid {
            self.own.lock().unwrap_or_else(|p| p.into_inner()).insert(x);
        }
    }

    /// Records that this daemon just ran statements in `db` that wrote `rows` rows (None:
    /// an unknown number): its write counters will move without a client.
    pub fn wrote(&self, db: &str, rows: Option<u64>) {
        let mut w = self.own_writes.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        // Called after every lane run: no allocation once the database is known.
        let own = match w.get_mut(db) {
            Some(o) => o,
            None => w.entry(db.to_string()).or_default(),
        };
        own.record(now, rows);
    }

    /// Whether `delta` rows written in `db` since the counters' last read (at `since`)
    /// include some that are not ours.
    fn foreign_rows(&self, db: &str, delta: i64, since: Instant, now: Instant) -> bool {
        let mut w = self.own_writes.lock().unwrap_or_else(|p| p.into_inner());
        match w.get_mut(db) {
            Some(o) => o.foreign(delta, since, now),
            None => delta > 0,
        }
    }

    fn wake(&self, dbs: impl IntoIterator<Item = String>) -> usize {
        let w = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for db in dbs {
            if let Some(k) = w.get(&db) {
                k.notify_one();
                n += 1;
            }
        }
        n
    }

    fn set_role(&self, r: Role) {
        self.role.send_if_modified(|old| {
            if *old == r {
                false
            } else {
                *old = r;
                true
            }
        });
    }

    /// The writes that ended between `prev` and `new` and are not known as ours (None: too
    /// many to name, taken for someone else's); prunes our own txids that no snapshot can
    /// mention again.
    fn unclaimed_endings(&self, prev: &Snap, new: &Snap) -> Option<Vec<i64>> {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        let ended = unclaimed_endings(prev, new, &own);
        let keep = own.split_off(&new.xmin);
        *own = keep;
        ended
    }

    /// Whether some of `xids` are still not known as ours. Our tasks report a write's
    /// txid when its statement returns, which is after the commit: a look in between sees
    /// our own write end unclaimed, so an ending counts as someone else's only if it is
    /// still unclaimed one look later.
    fn still_unclaimed(&self, xids: &[i64]) -> bool {
        let own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        xids.iter().any(|x| !own.contains(x))
    }
}

/// A snapshot as `txid_current_snapshot()` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    /// Oldest txid still running.
    pub xmin: i64,
    /// First txid not yet ended (as of the snapshot).
    pub xmax: i64,
    /// Txids running at the time, between xmin and xmax.
    pub xip: Vec<i64>,
}

impl Snap {
    /// Parses `xmin:xmax:xip,…`.
    pub fn parse(s: &str) -> Option<Snap> {
        let mut it = s.trim().splitn(3, ':');
        let xmin = it.next()?.parse().ok()?;
        let xmax = it.next()?.parse().ok()?;
        let rest = it.next()?;
        let xip = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<i64>>>()?
        };
        Some(Snap { xmin, xmax, xip })
    }
}

/// The txids not in `own` that ended between the two snapshots: those at or above the old
/// xmax that are no longer running, and those that were running and are not any more.
/// None for a jump too large to enumerate (or txids going backwards): taken for foreign.
fn unclaimed_endings(prev: &Snap, new: &Snap, own: &BTreeSet<i64>) -> Option<Vec<i64>> {
    if new.xmax < prev.xmax || new.xmax - prev.xmax > 4096 {
        return (new.xmax == prev.xmax).then(Vec::new);
    }
    let ended = |x: &i64| !new.xip.contains(x) && !own.contains(x);
    Some(
        (prev.xmax..new.xmax)
            .filter(ended)
            .chain(
                prev.xip
                    .iter()
                    .copied()
                    .filter(|x| *x < new.xmax)
                    .filter(ended),
            )
            .collect(),
    )
}

/// Runs the control session until `token` is cancelled.
pub async fn control_loop(
    broker: Broker,
    mut cfg_rx: watch::Receiver<Arc<Config>>,
    token: CancellationToken,
    signals: Arc<Signals>,
) {
    let span = info_span!("control");
    async move {
        let mut backoff = Backoff::default();
        let mut failing = false;
        let mut last_lost: Option<Instant> = None;
        let mut said_standby: Option<String> = None;
        loop {
            let cfg = cfg_rx.borrow_and_update().clone();
            backoff.set_max(cfg.reconnect_max_delay);
            let r = tokio::select! {
                r = session(&broker, &cfg, &mut cfg_rx, &token, &signals, &mut said_standby) => r,
                _ = token.cancelled() => break,
            };
            signals.live.store(false, Ordering::Relaxed);
            match r {
                Ok(Ended::Cancelled) => break,
                Ok(Ended::Reload) => continue,
                Err(e) => {
                    // Lost or refused: the leader lock is gone with the session.
                    // A session lost again within a minute (a proxy that breaks every
                    // session, a flapping server) is a debug line, not a warning each time.
                    let again = last_lost.is_some_and(|t: Instant| t.elapsed() < LOST_AGAIN);
                    if signals.current_role() == Role::Leader {
                        if again {
                            debug!(error = %e, "control session lost again");
                        } else {
                            warn!(error = %e, "control session lost; pausing until it is back");
                        }
                        last_lost = Some(Instant::now());
                    } else if failing {
                        debug!(error = %e, "control session still failing");
                    } else {
                        warn!(error = %e, "control session failed; retrying with backoff");
                    }
                    failing = true;
                    signals.set_role(Role::Pending);
                }
            }
            let d = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = token.cancelled() => break,
            }
        }
        signals.live.store(false, Ordering::Relaxed);
        signals.set_role(Role::Pending);
    }
    .instrument(span)
    .await
}

enum Ended {
    Cancelled,
    Reload,
}

async fn session(
    broker: &Broker,
    cfg: &Config,
    cfg_rx: &mut watch::Receiver<Arc<Config>>,
    token: &CancellationToken,
    signals: &Signals,
    said_standby: &mut Option<String>,
) -> Result<Ended, String> {
    let mut db = cfg.initial_database.clone();
    let mut c = connect(broker, &db).await?;
    let (_, template) = probe(&mut c).await?;
    if template {
        drop(c);
        db = FALLBACK_DB.to_string();
        c = connect(broker, &db).await?;
    }
    debug!(db = %db, "control session open");
    // Our own sessions must not count as activity (each due check would wake the next):
    // they carry the application_name the connection settings resolve to — base_connstr's,
    // PGAPPNAME or the config's — not necessarily the config key's.
    let app = crate::conn::daemon_target(cfg, &db)
        .ok()
        .and_then(|t| t.pg.get_application_name().map(str::to_string))
        .unwrap_or_else(|| cfg.application_name.clone());
    // Seeing every session, only sessions that came and went need counters: count
    // sessions, ours taken off (write counters would also count our own ticks, and wake
    // every database we just visited).
    let by_sessions = sees_all_sessions(&mut c).await;
    debug!(
        by_sessions,
        "short-lived sessions are caught by {}",
        if by_sessions {
            "session counts"
        } else {
            "write counters"
        }
    );
    let mut sessions: HashMap<String, (i64, i64)> = HashMap::new();
    let mut last_counters = Instant::now();
    let mut prev: Option<Snap> = None;
    // Endings seen unclaimed at the previous look (empty: too many to name).
    let mut suspects: Option<Vec<i64>> = None;
    let mut since = SystemTime::now();
    let mut last_foreign: Option<Instant> = None;
    let mut counters: HashMap<String, i64> = HashMap::new();
    let mut next_counters = Instant::now();
    let mut next_role = Instant::now();
    loop {
        let now = Instant::now();
        let leader = signals.current_role() == Role::Leader;
        if !leader && now >= next_role {
            next_role = now + cfg.ticker_period;
            let (recovery, _) = probe(&mut c).await?;
            if recovery {
                if signals.current_role() != Role::Recovery {
                    warn!(db = %db, "server is in recovery: nothing is ticked until it is promoted");
                }
                signals.set_role(Role::Recovery);
            } else if try_lock(&mut c).await? {
                info!(db = %db, "leader: this pgqd ticks and maintains the cluster");
                *said_standby = None;
                signals.set_role(Role::Leader);
                prev = None;
            } else {
                let holder = holder(&mut c)
                    .await
                    .unwrap_or_else(|_| "another pgqd".into());
                if said_standby.as_deref() != Some(holder.as_str()) {
                    info!(db = %db, leader = %holder, "standby: another pgqd is the leader");
                    *said_standby = Some(holder.clone());
                }
                signals.set_role(Role::Standby(holder));
            }
        }
        if signals.current_role() == Role::Leader {
            let snap = snapshot(&mut c).await?;
            if !signals.live.load(Ordering::Relaxed) {
                signals.spells.fetch_add(1, Ordering::AcqRel);
                signals.live.store(true, Ordering::Release);
            }
            // Endings unclaimed at the previous look that are still unclaimed are someone
            // else's: only they make the counters and the polling faster (our idle ticks,
            // claimed a moment after their commit, kept both fast for ever before).
            let confirmed = suspects
                .take()
                .is_some_and(|x| x.is_empty() || signals.still_unclaimed(&x));
            let ended = prev.as_ref().map(|p| signals.unclaimed_endings(p, &snap));
            let foreign = match &ended {
                Some(Some(x)) => !x.is_empty(),
                Some(None) => true,
                None => false,
            };
            if foreign {
                // Too many to name: confirmed at the next look whatever is claimed.
                suspects = Some(ended.flatten().unwrap_or_default());
            }
            if confirmed {
                if last_foreign.is_none_or(|t| now.duration_since(t) >= COUNTERS_EVERY) {
                    next_counters = next_counters.min(now + COUNTERS_SOON);
                }
                last_foreign = Some(now);
            }
            // A confirmed foreign write also gets one more look: a session that committed
            // just after the previous look is named only once its state changed (not
            // needed when what ended was ours after all).
            if foreign || confirmed {
                let from = since.checked_sub(LOOKBACK).unwrap_or(since);
                let rows = c
                    .query(sql::ACTIVE_DATABASES, &[&from, &app])
                    .await
                    .map_err(|e| format!("active databases: {e}"))?;
                if let Some(r) = rows.first() {
                    since = r.try_get(0).map_err(|e| e.to_string())?;
                    let dbs: Vec<String> = r.try_get(1).map_err(|e| e.to_string())?;
                    // Up to a hundred looks a second: build the list only when it is logged.
                    let named = if dbs.len() <= 20 && tracing::enabled!(tracing::Level::DEBUG) {
                        dbs.join(",")
                    } else {
                        String::new()
                    };
                    let n = signals.wake(dbs);
                    debug!(woken = n, dbs = %named, "activity");
                }
            }
            prev = Some(snap);
            if now >= next_counters {
                let counters_read = std::mem::replace(&mut last_counters, now);
                let recent = last_foreign.is_some_and(|t| now.duration_since(t) < COUNTERS_FOR);
                next_counters = now
                    + if recent {
                        COUNTERS_EVERY
                    } else {
                        COUNTERS_QUIET
                    };
                let stmt = if by_sessions {
                    sql::DB_SESSION_COUNTERS
                } else {
                    sql::DB_WRITE_COUNTERS
                };
                let rows = c
                    .query(stmt, &[])
                    .await
                    .map_err(|e| format!("activity counters: {e}"))?;
                let own = by_sessions.then(|| broker.sessions_opened());
                let mut changed = Vec::new();
                for r in rows {
                    let (Ok(name), Ok(w), Ok(n)) = (
                        r.try_get::<_, String>(0),
                        r.try_get::<_, i64>(1),
                        r.try_get::<_, Option<i64>>(2),
                    ) else {
                        continue;
                    };
                    let delta = counters
                        .insert(name.clone(), w)
                        .map_or(0, |old| w.saturating_sub(old));
                    let wrote = delta != 0;
                    let news = match (&own, n) {
                        // Seeing every session: a session not ours that began, or rows
                        // written by one that was already there and has gone — beyond the
                        // rows we wrote there ourselves (our counters are flushed when our
                        // session of a visit ends).
                        (Some(own), Some(n)) => {
                            let ours = own.get(&name).map_or(0, |&x| x as i64);
                            foreign_session(&mut sessions, &name, n, ours)
                                || (wrote && signals.foreign_rows(&name, delta, counters_read, now))
                        }
                        _ => wrote,
                    };
                    if news {
                        debug!(db = %name, rows = delta, sessions = ?n, "activity (counters)");
                        changed.push(name);
                    }
                }
                if !changed.is_empty() {
                    signals.wake(changed);
                }
            }
        }
        let pause = if signals.current_role() == Role::Leader {
            if last_foreign.is_some_and(|t| t.elapsed() < QUIET_AFTER) {
                POLL
            } else {
                POLL_QUIET
            }
        } else {
            next_role.saturating_duration_since(Instant::now())
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = token.cancelled() => return Ok(Ended::Cancelled),
            r = cfg_rx.changed() => {
                if r.is_ok() {
                    let new = cfg_rx.borrow().clone();
                    if new.base_connstr != cfg.base_connstr
                        || new.initial_database != cfg.initial_database
                        || new.application_name != cfg.application_name
                    {
                        // The lock goes with the session: pause the tasks, start over.
                        signals.set_role(Role::Pending);
                        return Ok(Ended::Reload);
                    }
                }
            }
        }
    }
}

async fn connect(broker: &Broker, db: &str) -> Result<DbConn, String> {
    broker
        .connect(db, Purpose::Control)
        .await
        .map_err(|e| format!("cannot connect to {db:?}: {e}"))
}

async fn probe(c: &mut DbConn) -> Result<(bool, bool), String> {
    let rows = c
        .query(sql::CONTROL_PROBE, &[])
        .await
        .map_err(|e| format!("control probe: {e}"))?;
    let r = rows.first().ok_or("control probe: no row")?;
    Ok((
        r.try_get(0).map_err(|e| e.to_string())?,
        r.try_get(1).map_err(|e| e.to_string())?,
    ))
}

async fn try_lock(c: &mut DbConn) -> Result<bool, String> {
    let rows = c
        .query(sql::TRY_SESSION_LOCK, &[&sql::LEADER_KEY])
        .await
        .map_err(|e| format!("leader lock: {e}"))?;
    rows.first()
        .and_then(|r| r.try_get::<_, bool>(0).ok())
        .ok_or_else(|| "leader lock: no row".to_string())
}

/// Describes the holder of `key` in the connection's database ("pid 123, pgqd-b, 10.0.0.2").
pub async fn lock_holder(c: &mut DbConn, key: i64) -> Result<String, String> {
    let rows = c
        .query(sql::LOCK_HOLDER, &[&key])
        .await
        .map_err(|e| format!("lock holder: {e}"))?;
    Ok(match rows.first() {
        Some(r) => {
            let pid: i32 = r.try_get(0).unwrap_or_default();
            let app: String = r.try_get(1).unwrap_or_default();
            let addr: String = r.try_get(2).unwrap_or_default();
            format!("pid {pid}, {app}, {addr}")
        }
        None => "another session (gone now)".to_string(),
    })
}

async fn holder(c: &mut DbConn) -> Result<String, String> {
    lock_holder(c, sql::LEADER_KEY).await
}

/// Whether [`sql::SEES_ALL_SESSIONS`] holds (false when it cannot be asked).
async fn sees_all_sessions(c: &mut DbConn) -> bool {
    match c.query(sql::SEES_ALL_SESSIONS, &[]).await {
        Ok(rows) => rows
            .first()
            .and_then(|r| r.try_get::<_, bool>(0).ok())
            .unwrap_or(false),
        Err(e) => {
            debug!(error = %e, "cannot tell whether every session is visible; using write counters");
            false
        }
    }
}

/// Records database `db`'s session count `n` (the server's) against `ours` (what this
/// daemon opened) and says whether a session not ours appeared since the last look.
/// `seen` keeps per database the server's count and the highest foreign count so far:
/// ours is counted as we connect, the server's only as that session reports, so the
/// difference dips while one of ours is unreported and comes back — only rising above
/// its best is news. A count that went down (statistics reset) starts over.
pub fn foreign_session(
    seen: &mut HashMap<String, (i64, i64)>,
    db: &str,
    n: i64,
    ours: i64,
) -> bool {
    let foreign = n - ours;
    match seen.get_mut(db) {
        None => {
            seen.insert(db.to_string(), (n, foreign));
            false
        }
        Some(e) if n < e.0 => {
            *e = (n, foreign);
            false
        }
        Some(e) => {
            e.0 = n;
            if foreign > e.1 {
                e.1 = foreign;
                true
            } else {
                false
            }
        }
    }
}

async fn snapshot(c: &mut DbConn) -> Result<Snap, String> {
    let rows = c
        .query(sql::SNAPSHOT, &[])
        .await
        .map_err(|e| format!("snapshot: {e}"))?;
    let text: String = rows
        .first()
        .and_then(|r| r.try_get(0).ok())
        .ok_or("snapshot: no row")?;
    Snap::parse(&text).ok_or_else(|| format!("snapshot: cannot parse {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_row_next_to_our_ticks_is_news() {
        let t0 = Instant::now();
        let mut o = OwnWrites::default();
        o.record(t0, Some(10));
        // Our ten ticks flushed, plus one event of a client's.
        assert!(o.foreign(11, t0, t0 + Duration::from_millis(300)));
        // Ours alone, in two flushes.
        o.record(t0, Some(10));
        assert!(!o.foreign(4, t0, t0 + Duration::from_millis(300)));
        assert!(!o.foreign(6, t0, t0 + Duration::from_millis(600)));
        assert!(o.foreign(1, t0, t0 + Duration::from_millis(900)));
        // Rows we owe expire: a late movement is someone else's.
        o.record(t0, Some(5));
        assert!(o.foreign(1, t0, t0 + OWN_ROWS_FOR + Duration::from_secs(1)));
        // Writes of unknown size hide movements for a while after them.
        let t1 = t0 + Duration::from_secs(100);
        o.record(t1, None);
        assert!(!o.foreign(3, t1, t1 + Duration::from_millis(500)));
        assert!(o.foreign(3, t1 + OWN_FLUSH * 2, t1 + OWN_FLUSH * 3));
    }

    fn snap(s: &str) -> Snap {
        Snap::parse(s).expect("parses")
    }

    #[test]
    fn only_sessions_not_ours_count_as_news() {
        let mut seen = HashMap::new();
        // First look: a baseline, whatever it is.
        assert!(!foreign_session(&mut seen, "a", 40, 0));
        // We opened two sessions; the server has reported one of them so far, then both.
        assert!(!foreign_session(&mut seen, "a", 41, 2));
        assert!(!foreign_session(&mut seen, "a", 42, 2));
        // A client came and went.
        assert!(foreign_session(&mut seen, "a", 43, 2));
        assert!(!foreign_session(&mut seen, "a", 43, 2));
        // One of ours and a client's, reported together.
        assert!(foreign_session(&mut seen, "a", 45, 3));
        // Statistics reset: start over quietly.
        assert!(!foreign_session(&mut seen, "a", 1, 3));
        assert!(foreign_session(&mut seen, "a", 2, 3));
    }

    #[test]
    fn snapshots_parse() {
        assert_eq!(
            snap("10:15:11,13"),
            Snap {
                xmin: 10,
                xmax: 15,
                xip: vec![11, 13]
            }
        );
        assert_eq!(snap("7:7:").xip, Vec::<i64>::new());
        assert!(Snap::parse("x:1:").is_none());
        assert!(Snap::parse("1:2").is_none());
    }

    fn foreign_ended(prev: &Snap, new: &Snap, own: &BTreeSet<i64>) -> bool {
        unclaimed_endings(prev, new, own).is_none_or(|x| !x.is_empty())
    }

    #[test]
    fn only_foreign_endings_count() {
        let own: BTreeSet<i64> = [15, 16].into_iter().collect();
        // nothing moved
        assert!(!foreign_ended(&snap("10:15:"), &snap("10:15:"), &own));
        // our two writes ended
        assert!(!foreign_ended(&snap("10:15:"), &snap("17:17:"), &own));
        // someone else's (17) ended too
        assert!(foreign_ended(&snap("10:15:"), &snap("18:18:"), &own));
        // 17 is still running: not yet
        assert!(!foreign_ended(&snap("10:15:"), &snap("17:18:17"), &own));
        // ... and later it ends
        assert!(foreign_ended(&snap("17:18:17"), &snap("18:18:"), &own));
        // a huge jump counts
        assert!(foreign_ended(&snap("1:2:"), &snap("9000:9000:"), &own));
    }

    #[test]
    fn an_ending_claimed_one_look_later_was_ours() {
        let signals = Signals::new();
        signals.own_xid(Some(15));
        // 16 and 17 ended; 15 is ours already.
        let ended = signals
            .unclaimed_endings(&snap("10:15:"), &snap("18:18:"))
            .expect("few enough to name");
        assert_eq!(ended, vec![16, 17]);
        // Our task reports 16 after its commit; 17 stays unclaimed.
        signals.own_xid(Some(16));
        assert!(signals.still_unclaimed(&ended));
        signals.own_xid(Some(17));
        assert!(!signals.still_unclaimed(&ended));
        // Too many to name.
        assert_eq!(
            signals.unclaimed_endings(&snap("18:18:"), &snap("9000:9000:")),
            None
        );
    }
}
