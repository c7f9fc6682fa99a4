//! The applier: a [`BatchHandler`] that applies the row changes of a batch to this
//! node's copies of the registered tables, in the worker's subscriber transaction (so a
//! batch is applied exactly when the node's position moves past it).
//!
//! Per event, by the state of its table (`ev_extra1`) in `pgq_replica.table_info`:
//! - not registered, `root`, `copy` → skipped (the initial copy will bring the row);
//! - `catching-up` → skipped when the copy's snapshot sees the event's transaction
//!   (`ev_txid`), applied otherwise;
//! - `ok` → applied.
//!
//! The copy/stream merge rule (also in docs/replication.md): on the provider, a change
//! to a replicated table and its event are written by one transaction (the capture
//! trigger on the root; the cascade worker's apply-and-copy on a branch, where
//! `insert_event_raw` stamps the event with that transaction's id). So "the copy holds
//! this change" is exactly "the copy's snapshot sees the event's ev_txid". A batch that
//! holds any event whose transaction began after the snapshot (`txid >= xmax`) ends at a
//! tick that sees everything the copy saw, so no later batch can hold an event the copy
//! has: the table turns `ok` after such a batch. On a quiet queue no such event may come,
//! so ticks serve too: the copy records the provider's newest tick in its snapshot (Tc);
//! the tick after it (T1) may have been in progress then, but the one after that (T2) was
//! made by a transaction that began after T1's ended, so after the snapshot. A batch
//! starting at T2 or later holds nothing the copy has (this assumes one ticker per queue,
//! as pgq requires; the txid rule assumes nothing).
//!
//! Statements are prepared once per batch and sent pipelined in chunks: tokio-postgres
//! sends queued requests in order on one connection, so order is kept.

use std::collections::HashMap;

use futures::future::try_join_all;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Statement, Transaction};

use crate::cascade::{BatchHandler, NodeCtx};
use crate::consumer::{BatchInfo, BoxError, Event};

use super::change::{self, Op, Payload};
use super::meta::TableMeta;
use super::snapshot::Snapshot;
use super::{Error, sql};

/// How many statements go out in one pipelined round.
const CHUNK: usize = 500;

/// Counters of one applier since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyStats {
    /// Batches handled.
    pub batches: u64,
    /// Row changes applied.
    pub applied: u64,
    /// Events skipped (other tables, tables still copying, changes the copy holds).
    pub skipped: u64,
    /// Updates and deletes that found no row (the copy differs: see `compare`).
    pub missing_rows: u64,
}

/// The replication handler for the cascade worker.
#[derive(Debug, Default)]
pub struct Applier {
    /// What it did so far.
    pub stats: ApplyStats,
}

impl Applier {
    /// A new applier.
    pub fn new() -> Applier {
        Applier::default()
    }
}

impl BatchHandler for Applier {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        node: &NodeCtx,
        batch: &BatchInfo,
        events: &[Event],
    ) -> Result<(), BoxError> {
        let s = apply_batch(tx, &node.queue_name, batch, events).await?;
        self.stats.batches += 1;
        self.stats.applied += s.applied;
        self.stats.skipped += s.skipped;
        self.stats.missing_rows += s.missing_rows;
        Ok(())
    }
}

enum TableState {
    Skip,
    /// The copy's snapshot, the provider's newest tick in it, and the first tick after
    /// that one once a batch has reached it.
    CatchingUp(Snapshot, Option<i64>, Option<i64>),
    Ok,
}

struct Pending {
    stmt: Statement,
    params: Vec<Option<String>>,
    counts: bool,
    ev_id: i64,
}

fn sql_err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> Error + '_ {
    move |source| Error::Sql {
        what: what.to_string(),
        source,
    }
}

/// Applies one batch in `tx` (see the module doc); returns what it did.
pub async fn apply_batch(
    tx: &Transaction<'_>,
    queue: &str,
    batch: &BatchInfo,
    events: &[Event],
) -> Result<ApplyStats, Error> {
    tx.execute(sql::LOCK_SHARED, &[&queue])
        .await
        .map_err(sql_err("locking the queue's replication state"))?;
    if let Some(row) = tx
        .query_opt(sql::PAUSE, &[&queue])
        .await
        .map_err(sql_err("reading pgq_replica.queue_info"))?
        && let Some(pause) = row.get::<_, Option<i64>>(0)
        && batch.tick_id > pause
    {
        return Err(Error::Paused {
            tick: pause,
            batch_tick: batch.tick_id,
        });
    }
    let mut states: HashMap<String, TableState> = HashMap::new();
    for r in tx
        .query(sql::TABLES, &[&queue])
        .await
        .map_err(sql_err("reading pgq_replica.table_info"))?
    {
        let name: String = r.get(0);
        let state: String = r.get(1);
        let snap: Option<String> = r.get(2);
        let st = match state.as_str() {
            "ok" => TableState::Ok,
            "catching-up" => match snap.as_deref().and_then(Snapshot::parse) {
                Some(s) => TableState::CatchingUp(s, r.get(3), r.get(4)),
                None => {
                    return Err(Error::Refused(format!(
                        "table {name} is catching-up without a copy snapshot; copy it again"
                    )));
                }
            },
            _ => TableState::Skip,
        };
        states.insert(name, st);
    }

    let mut stats = ApplyStats {
        batches: 1,
        ..ApplyStats::default()
    };
    let mut metas: HashMap<String, TableMeta> = HashMap::new();
    let mut stmts: HashMap<String, Statement> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    for ev in events {
        let Some(table) = ev.extra1.as_deref() else {
            stats.skipped += 1;
            continue;
        };
        let apply = match states.get(table) {
            None | Some(TableState::Skip) => false,
            Some(TableState::CatchingUp(s, ..)) => !ev.txid.is_some_and(|t| s.sees(t)),
            Some(TableState::Ok) => true,
        };
        if !apply {
            stats.skipped += 1;
            continue;
        }
        let bad = |msg: String| Error::Event {
            ev_id: ev.id,
            table: table.to_string(),
            msg,
        };
        let ch = change::decode(ev).map_err(|e| bad(e.to_string()))?;
        if !metas.contains_key(table) {
            let m = TableMeta::load(tx, table)
                .await
                .map_err(sql_err("reading a table's columns"))?
                .ok_or_else(|| bad("the table is registered but does not exist here".into()))?;
            metas.insert(table.to_string(), m);
        }
        let meta = &metas[table];
        let Some((text, params, counts)) = statement(meta, &ch).map_err(bad)? else {
            stats.skipped += 1;
            continue;
        };
        let stmt = match stmts.get(&text) {
            Some(s) => s.clone(),
            None => {
                let s = tx.prepare(&text).await.map_err(|source| Error::Sql {
                    what: format!("preparing {text}"),
                    source,
                })?;
                stmts.insert(text, s.clone());
                s
            }
        };
        pending.push(Pending {
            stmt,
            params,
            counts,
            ev_id: ev.id,
        });
        stats.applied += 1;
        if pending.len() >= CHUNK {
            stats.missing_rows += flush(tx, &mut pending).await?;
        }
    }
    stats.missing_rows += flush(tx, &mut pending).await?;

    for (name, st) in &states {
        let TableState::CatchingUp(s, copy_tick, next_tick) = st else {
            continue;
        };
        let witness = events.iter().any(|e| e.txid.is_some_and(|t| s.is_after(t)));
        let past_ticks = next_tick.is_some_and(|t1| batch.prev_tick_id > t1);
        if witness || past_ticks {
            tx.execute(sql::SET_OK, &[&queue, name])
                .await
                .map_err(sql_err("marking a table caught up"))?;
            tracing::info!(queue, table = %name, tick = batch.tick_id, "table caught up with its copy");
        } else if next_tick.is_none() && copy_tick.is_some_and(|tc| batch.tick_id > tc) {
            tx.execute(sql::SET_NEXT_TICK, &[&queue, name, &batch.tick_id])
                .await
                .map_err(sql_err("recording the first tick after the copy"))?;
        }
    }
    tx.execute(
        sql::BATCH_DONE,
        &[
            &queue,
            &batch.tick_id,
            &(stats.applied as i64),
            &(events.len() as i64),
        ],
    )
    .await
    .map_err(sql_err("recording the batch in pgq_replica.queue_info"))?;
    Ok(stats)
}

/// Runs the queued statements pipelined; returns how many updates/deletes found no row.
async fn flush(tx: &Transaction<'_>, pending: &mut Vec<Pending>) -> Result<u64, Error> {
    if pending.is_empty() {
        return Ok(0);
    }
    let results = try_join_all(pending.iter().map(|p| {
        let params: Vec<&(dyn ToSql + Sync)> =
            p.params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        async move {
            tx.execute(&p.stmt, &params)
                .await
                .map(|n| (n, p.counts, p.ev_id))
        }
    }))
    .await
    .map_err(sql_err("applying row changes"))?;
    let mut missing = 0;
    for (n, counts, ev_id) in results {
        if counts && n == 0 {
            missing += 1;
            tracing::warn!(
                ev_id,
                "update or delete found no row: the copy differs from its provider (run compare)"
            );
        }
    }
    pending.clear();
    Ok(missing)
}

type Built = Option<(String, Vec<Option<String>>, bool)>;

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The statement text, its parameters and whether it must touch a row; `None` when the
/// change needs no statement (an update of key columns only).
fn statement(meta: &TableMeta, ch: &change::Change) -> Result<Built, String> {
    let take = |pairs: &[(String, Option<String>)]| -> (Vec<String>, Vec<Option<String>>) {
        pairs.iter().map(|(n, v)| (n.clone(), v.clone())).unzip()
    };
    match (&ch.op, &ch.payload) {
        (Op::Truncate, _) => Ok(Some((format!("truncate {}", meta.quoted), vec![], false))),
        (Op::Insert, Payload::Row(set)) | (Op::Insert, Payload::Sql { set, .. }) => {
            let (cols, vals) = take(set);
            Ok(Some((meta.insert_sql(&refs(&cols))?, vals, false)))
        }
        (Op::Update, Payload::Sql { set, key }) => {
            let (cols, mut vals) = take(set);
            let (kc, kv) = take(key);
            vals.extend(kv);
            Ok(Some((
                meta.update_sql(&refs(&cols), &refs(&kc))?,
                vals,
                true,
            )))
        }
        (Op::Delete, Payload::Sql { key, .. }) => {
            let (kc, kv) = take(key);
            Ok(Some((meta.delete_sql(&refs(&kc))?, kv, true)))
        }
        (op, Payload::Row(row)) => {
            let value = |c: &str| -> Result<Option<String>, String> {
                row.iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("event has no value for key column {c:?}"))
            };
            let key = meta.key.clone();
            let kv = key
                .iter()
                .map(|c| value(c))
                .collect::<Result<Vec<_>, _>>()?;
            if *op == Op::Delete {
                return Ok(Some((meta.delete_sql(&refs(&key))?, kv, true)));
            }
            let set: Vec<_> = row.iter().filter(|(n, _)| !key.contains(n)).collect();
            if set.is_empty() {
                return Ok(None);
            }
            let cols: Vec<String> = set.iter().map(|(n, _)| n.clone()).collect();
            let mut vals: Vec<Option<String>> = set.iter().map(|(_, v)| v.clone()).collect();
            vals.extend(kv);
            Ok(Some((
                meta.update_sql(&refs(&cols), &refs(&key))?,
                vals,
                true,
            )))
        }
        (_, Payload::None) => Err("event has no data".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn meta() -> TableMeta {
        TableMeta::new(
            "public.t",
            &["a", "b", "v"],
            &["text", "integer", "text"],
            &["a", "b"],
        )
    }

    fn ev(ty: &str, data: &str) -> Event {
        Event {
            id: 7,
            time: SystemTime::UNIX_EPOCH,
            txid: Some(1),
            retry: None,
            ev_type: Some(ty.into()),
            data: Some(data.into()),
            extra1: Some("public.t".into()),
            extra2: None,
            extra3: None,
            extra4: None,
        }
    }

    fn built(ty: &str, data: &str) -> Result<Built, String> {
        let ch = change::decode(&ev(ty, data)).map_err(|e| e.to_string())?;
        statement(&meta(), &ch)
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn logutriga_events_become_keyed_statements() {
        let (sql, p, counts) = built("U:a,b", "a=x&b=2&v=new+val").unwrap().unwrap();
        assert_eq!(
            sql,
            "update public.t set v = $1::text::text where a = $2::text::text and b = $3::text::integer"
        );
        assert_eq!(p, vec![s("new val"), s("x"), s("2")]);
        assert!(counts);
        let (sql, p, _) = built("D:a,b", "a=x&b=2&v").unwrap().unwrap();
        assert_eq!(
            sql,
            "delete from public.t where a = $1::text::text and b = $2::text::integer"
        );
        assert_eq!(p, vec![s("x"), s("2")]);
        let (sql, p, counts) = built("I:a,b", "a=x&b=2&v").unwrap().unwrap();
        assert!(sql.starts_with("insert into public.t (a, b, v) values"));
        assert_eq!(p, vec![s("x"), s("2"), None]);
        assert!(!counts);
        // an update that names only key columns needs no statement
        assert_eq!(built("U:a,b", "a=x&b=2").unwrap(), None);
        // a key column missing from the row is an error, not a guess
        assert!(built("D:a,b", "a=x").is_err());
        // a column the table does not have here
        assert!(built("I:a,b", "a=x&b=2&zz=1").is_err());
    }

    #[test]
    fn sqltriga_events_become_keyed_statements() {
        let (sql, p, _) = built("U", "v='it''s' where a='x' and b='2'")
            .unwrap()
            .unwrap();
        assert_eq!(
            sql,
            "update public.t set v = $1::text::text where a = $2::text::text and b = $3::text::integer"
        );
        assert_eq!(p, vec![s("it's"), s("x"), s("2")]);
        let (sql, _, _) = built("R", "").unwrap().unwrap();
        assert_eq!(sql, "truncate public.t");
        assert!(built("D", "a='x'; drop table t").is_err());
    }
}
