//! Databases restored into another cluster (issue #8 item 3): how to recognise one, and how
//! to make its queues valid again in the new cluster's transaction-id history.
//!
//! A tick stores a `txid_snapshot`; batches are "the events whose `ev_txid` the later
//! tick's snapshot sees and the earlier one does not". After `pg_dump`/restore or PITR
//! into another cluster, the stored snapshots and `ev_txid`s come from the old cluster's
//! counter. When the new counter is behind, `pgq.ticker` refuses ("Invalid PgQ state"),
//! and any event written now would carry a txid that the old ticks already "see", so it
//! would never be part of a batch.
//!
//! [`restored_queues`] is the detection: a queue with a tick whose snapshot `xmax` lies
//! beyond the current snapshot's `xmax` (the next txid to be assigned). In one txid history
//! that cannot happen, so the check has no false positives. The daemon (`daemon::restored`),
//! `pgqd status` and `pgqd repair-restore` share it.
//!
//! [`repair`] renumbers the old history onto a short run of txids just below the oldest
//! transaction still running (`xmin` of the current snapshot), keeping every order that
//! batches depend on:
//! - tick *i* (in tick-id order, 1..n) gets the snapshot `b+i:b+i:` (no transactions in
//!   progress; every restored event is committed anyway);
//! - an event first seen by tick *i* gets `ev_txid = b+i-1`, so exactly the ticks from *i*
//!   on see it; an event no tick sees — and any event whose id was handed out after the
//!   newest tick was taken, which covers events written since the restore — gets `b+n`,
//!   so the next tick the ticker makes sees it;
//! - `queue_switch_step1` becomes `b` and a set `queue_switch_step2` becomes `b+n`: every
//!   repaired batch then reads both event tables (always safe), and rotation waits until
//!   every consumer has moved past the repaired ticks, as it would have before.
//!
//! Tick ids, batch ids, consumer positions and open batches are untouched, so each
//! consumer gets exactly the events it had not read, in the batches it would have got.
//! Event tables are rewritten with copy, `TRUNCATE`, insert (role `pgq_admin` has
//! `SELECT`, `INSERT`, `TRUNCATE` on them, not `UPDATE`). Everything runs in one
//! transaction that locks the queue, tick and event tables: producers and the ticker wait
//! for it. Callers: `cli::repair`, `cli::status`, `daemon::restored`.

use tokio_postgres::GenericClient;

/// The detection query: one row per queue with a tick ahead of the current txid history.
/// Columns: queue_id, queue_name, ticks, highest tick-snapshot xmax, next txid, database.
pub const RESTORED_QUEUES: &str = "\
select q.queue_id, q.queue_name::text, count(*)::int8,
       max(pg_catalog.txid_snapshot_xmax(t.tick_snapshot)),
       pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot()),
       pg_catalog.current_database()::text
  from pgq.queue q
  join pgq.tick t on t.tick_queue = q.queue_id
 group by q.queue_id, q.queue_name
having max(pg_catalog.txid_snapshot_xmax(t.tick_snapshot))
       > pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot())
 order by q.queue_name";

/// Lowest txid the renumbering may use (0–2 are reserved by PostgreSQL).
const FIRST_NORMAL_TXID: i64 = 3;

/// Most txids `repair` will consume to make room below the oldest running transaction.
const MAX_BURN: i64 = 1_000_000;

/// A queue whose ticks come from another txid history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredQueue {
    /// `queue_id`.
    pub id: i32,
    /// `queue_name`.
    pub name: String,
    /// Ticks the queue holds.
    pub ticks: i64,
    /// Highest `xmax` among its tick snapshots.
    pub tick_xmax: i64,
    /// The next txid this cluster will assign.
    pub next_txid: i64,
    /// The database (`current_database()`).
    pub database: String,
}

/// Reads the rows of [`RESTORED_QUEUES`].
pub fn from_rows(
    rows: &[tokio_postgres::Row],
) -> Result<Vec<RestoredQueue>, tokio_postgres::Error> {
    rows.iter()
        .map(|r| {
            Ok(RestoredQueue {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                ticks: r.try_get(2)?,
                tick_xmax: r.try_get(3)?,
                next_txid: r.try_get(4)?,
                database: r.try_get(5)?,
            })
        })
        .collect()
}

/// Lists the queues of the connected database whose ticks lie ahead of the current txid
/// (empty for a healthy database). Needs only `SELECT` on `pgq.queue` and `pgq.tick`,
/// which every role has.
pub async fn restored_queues(
    c: &impl GenericClient,
) -> Result<Vec<RestoredQueue>, tokio_postgres::Error> {
    from_rows(&c.query(RESTORED_QUEUES, &[]).await?)
}

/// The one-line explanation the daemon logs and `pgqd status` prints.
pub fn explain(db: &str, queues: &[RestoredQueue]) -> String {
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    let (ahead, next) = queues
        .iter()
        .map(|q| (q.tick_xmax, q.next_txid))
        .max()
        .unwrap_or((0, 0));
    format!(
        "database {db:?} looks restored from another cluster (dump or PITR): the ticks of \
         queue(s) {} carry snapshots up to txid {ahead}, but this cluster's next txid is \
         {next}; pgq cannot tick these queues and new events would be hidden. Repair with: \
         pgqd repair-restore --dbname {db:?} (try --dry-run first; README \"Restored \
         databases\")",
        names.join(", ")
    )
}

/// What [`repair`] did (or, with a rollback, would do) to one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueRepair {
    /// Queue name.
    pub queue: String,
    /// Ticks renumbered.
    pub ticks: i64,
    /// Events re-stamped, over all event tables.
    pub events: i64,
    /// Of those, events that go to the next tick (not seen by any restored tick).
    pub pending_events: i64,
    /// Consumers registered (their positions and open batches are kept).
    pub consumers: i64,
    /// Consumers with an open batch.
    pub open_batches: i64,
    /// The txid range used: `b` ..= `b+n`.
    pub new_range: (i64, i64),
}

/// Why [`repair`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// A statement failed; `step` says which.
    #[error("{step}: {}", crate::pgerr::describe(.source))]
    Sql {
        /// The step.
        step: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// There is no room below the oldest running transaction even after consuming txids.
    #[error("{0}")]
    NoRoom(String),
}

fn sql(step: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> RepairError {
    let step = step.into();
    move |source| RepairError::Sql { step, source }
}

/// Makes room for `needed` txids below the oldest running transaction by consuming txids
/// (each `txid_current()` outside a transaction block assigns one). A freshly initialised
/// cluster may be only a few hundred txids old.
pub async fn make_room(c: &tokio_postgres::Client, needed: i64) -> Result<i64, RepairError> {
    let mut burned = 0;
    loop {
        let xmin: i64 = c
            .query_one(
                "select pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot())",
                &[],
            )
            .await
            .map_err(sql("reading the current txid"))?
            .get(0);
        if xmin > needed + FIRST_NORMAL_TXID {
            return Ok(burned);
        }
        if burned >= MAX_BURN {
            return Err(RepairError::NoRoom(format!(
                "the oldest running transaction is txid {xmin}; {needed} txids are needed \
                 below it (a long-running transaction may hold it back)"
            )));
        }
        let batch = (needed + FIRST_NORMAL_TXID + 1 - xmin).clamp(1, 1000);
        for _ in 0..batch {
            c.batch_execute("select pg_catalog.txid_current()")
                .await
                .map_err(sql("consuming a txid"))?;
        }
        burned += batch;
    }
}

/// Repairs every queue [`restored_queues`] lists, inside the caller's transaction `tx`
/// (commit or roll back is the caller's choice: `--dry-run` rolls back). Call
/// [`make_room`] first, outside the transaction, with the largest tick count.
pub async fn repair(tx: &tokio_postgres::Transaction<'_>) -> Result<Vec<QueueRepair>, RepairError> {
    // Producers, the ticker and maintenance wait from here on; readers do not.
    tx.batch_execute(
        "set local lock_timeout = '60s';
         lock table pgq.queue, pgq.tick in exclusive mode",
    )
    .await
    .map_err(sql("locking pgq.queue and pgq.tick"))?;
    let queues = restored_queues(tx)
        .await
        .map_err(sql("finding the restored queues"))?;
    let mut done = Vec::new();
    for q in &queues {
        done.push(repair_queue(tx, q).await?);
    }
    Ok(done)
}

async fn repair_queue(
    tx: &tokio_postgres::Transaction<'_>,
    q: &RestoredQueue,
) -> Result<QueueRepair, RepairError> {
    let step = |s: &str| format!("queue {:?}: {s}", q.name);
    // The event tables, as regclass text: server-quoted names, the only text that goes
    // into the statements below that is not fixed.
    let tables: Vec<String> = tx
        .query(
            "select pg_catalog.to_regclass(q.queue_data_pfx || '_' || i::text)::text
               from pgq.queue q, pg_catalog.generate_series(0, q.queue_ntables - 1) i
              where q.queue_id = $1
                and pg_catalog.to_regclass(q.queue_data_pfx || '_' || i::text) is not null
              order by i",
            &[&q.id],
        )
        .await
        .map_err(sql(step("listing event tables")))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in &tables {
        tx.batch_execute(&format!("lock table {t} in access exclusive mode"))
            .await
            .map_err(sql(step(&format!("locking {t}"))))?;
    }
    // Everything below xmin has finished; nothing that writes later can get a txid below it.
    let xmin: i64 = tx
        .query_one(
            "select pg_catalog.txid_snapshot_xmin(pg_catalog.txid_current_snapshot())",
            &[],
        )
        .await
        .map_err(sql(step("reading the current txid")))?
        .get(0);
    let n = q.ticks;
    let base = xmin - 1 - n;
    if base < FIRST_NORMAL_TXID {
        return Err(RepairError::NoRoom(format!(
            "queue {:?}: {n} ticks need txids below {xmin}; run again (it consumes txids \
             to make room first)",
            q.name
        )));
    }
    tx.batch_execute(
        "drop table if exists pg_temp.pgqd_repair_ticks;
         create temp table pgqd_repair_ticks (
             tick_id int8 primary key, old_snap pg_catalog.txid_snapshot, rn int8)
         on commit drop",
    )
    .await
    .map_err(sql(step("creating the tick map")))?;
    tx.execute(
        "insert into pg_temp.pgqd_repair_ticks
         select t.tick_id, t.tick_snapshot, pg_catalog.row_number() over (order by t.tick_id)
           from pgq.tick t where t.tick_queue = $1",
        &[&q.id],
    )
    .await
    .map_err(sql(step("filling the tick map")))?;
    // Ids handed out after the newest tick was taken belong after it, whatever their txid.
    let last_seq: i64 = tx
        .query_one(
            "select t.tick_event_seq from pgq.tick t
              where t.tick_queue = $1 order by t.tick_id desc limit 1",
            &[&q.id],
        )
        .await
        .map_err(sql(step("reading the newest tick")))?
        .get(0);
    let tail = base + n;
    let mut events = 0i64;
    let mut pending = 0i64;
    for t in &tables {
        tx.batch_execute(&format!(
            "drop table if exists pg_temp.pgqd_repair_ev;
             create temp table pgqd_repair_ev (like {t}) on commit drop;
             insert into pg_temp.pgqd_repair_ev select * from {t}"
        ))
        .await
        .map_err(sql(step(&format!("copying {t}"))))?;
        events +=
            tx.execute(
                "update pg_temp.pgqd_repair_ev e
                    set ev_txid = case
                        when e.ev_id > $1::int8 then $2::int8
                        else $3::int8 + coalesce(
                            (select min(m.rn) from pg_temp.pgqd_repair_ticks m
                              where pg_catalog.txid_visible_in_snapshot(e.ev_txid, m.old_snap)),
                            $4::int8 + 1) - 1
                        end",
                &[&last_seq, &tail, &base, &n],
            )
            .await
            .map_err(sql(step(&format!("re-stamping the events of {t}"))))? as i64;
        pending += tx
            .query_one(
                "select count(*) from pg_temp.pgqd_repair_ev where ev_txid = $1::int8",
                &[&tail],
            )
            .await
            .map_err(sql(step("counting pending events")))?
            .get::<_, i64>(0);
        tx.batch_execute(&format!(
            "truncate {t};
             insert into {t} select * from pg_temp.pgqd_repair_ev;
             drop table pg_temp.pgqd_repair_ev"
        ))
        .await
        .map_err(sql(step(&format!("rewriting {t}"))))?;
    }
    tx.execute(
        "update pgq.tick t
            set tick_snapshot = (($1::int8 + m.rn)::text || ':' || ($1::int8 + m.rn)::text || ':')
                                ::pg_catalog.txid_snapshot
           from pg_temp.pgqd_repair_ticks m
          where t.tick_queue = $2 and t.tick_id = m.tick_id",
        &[&base, &q.id],
    )
    .await
    .map_err(sql(step("renumbering the ticks")))?;
    tx.execute(
        "update pgq.queue
            set queue_switch_step1 = $1::int8,
                queue_switch_step2 = case when queue_switch_step2 is not null then $2::int8 end
          where queue_id = $3",
        &[&base, &tail, &q.id],
    )
    .await
    .map_err(sql(step("renumbering the rotation marks")))?;
    let subs = tx
        .query_one(
            "select count(*), count(s.sub_batch) from pgq.subscription s where s.sub_queue = $1",
            &[&q.id],
        )
        .await
        .map_err(sql(step("counting consumers")))?;
    tx.batch_execute("drop table pg_temp.pgqd_repair_ticks")
        .await
        .map_err(sql(step("dropping the tick map")))?;
    Ok(QueueRepair {
        queue: q.name.clone(),
        ticks: n,
        events,
        pending_events: pending,
        consumers: subs.get(0),
        open_batches: subs.get(1),
        new_range: (base, tail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_names_queues_txids_and_the_command() {
        let q = |name: &str, x: i64| RestoredQueue {
            id: 1,
            name: name.into(),
            ticks: 3,
            tick_xmax: x,
            next_txid: 800,
            database: "app".into(),
        };
        let s = explain("app", &[q("a", 5000), q("b", 9000)]);
        assert!(s.contains("queue(s) a, b"), "{s}");
        assert!(s.contains("txid 9000"), "{s}");
        assert!(s.contains("next txid is 800"), "{s}");
        assert!(s.contains("pgqd repair-restore --dbname \"app\""), "{s}");
    }
}
