//! `compare` and `repair`: the provider's and this subscriber's copies of tables, read at
//! the same tick, as row counts plus an order-independent checksum (the sum of a 64-bit
//! slice of each row's md5), or row by row for repair hints (SQL that would make the
//! subscriber equal; printed, never run).
//!
//! The same point on both nodes:
//! 1. the subscriber's applier is frozen where it is (`pause_at_tick` = its last tick;
//!    the applier refuses later batches, which the worker retries);
//! 2. the provider's point: on the root, the tables are locked in SHARE mode (writers
//!    wait), read, and a tick is forced whose snapshot began after the lock, so the
//!    tick holds exactly the rows read; on a branch, its applier is held by the queue's
//!    exclusive replication lock and its tables are read at its last applied tick, once
//!    that tick's snapshot sees the transaction that applied it (see below);
//! 3. the subscriber's pause moves to that tick, and once its applier is there its
//!    tables are read;
//! 4. the pause is lifted (also on failure; and it expires by itself 30 s after the
//!    compare's timeout, should the compare die).
//!
//! Why "once that tick's snapshot sees the transaction": the subscriber at tick T has the
//! events that T's snapshot sees. Our cascade worker makes a branch's tick in a
//! transaction after the one that applied and copied the batch, so T may not exist yet
//! when the branch's tables already hold the batch; a worker that ticks in the applying
//! transaction itself (Skytools' python worker does) makes T's snapshot see that
//! transaction only when some later transaction id has already finished (PostgreSQL
//! leaves a transaction's own id out of its snapshot), else those events come with the
//! next tick. Either way the branch's tables at T would be one batch ahead of a
//! subscriber at T. The applier records its transaction id, and compare waits until T
//! exists and sees it (a batch without events always qualifies).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, Transaction};

use super::meta::TableMeta;
use super::sqlfrag::{quote_ident, quote_literal};
use super::{Error, sql};

/// Count and checksum of one table on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    /// Rows.
    pub rows: i64,
    /// Sum of the rows' hashes, as text (a numeric).
    pub checksum: String,
}

/// One table compared.
#[derive(Debug, Clone)]
pub struct TableCompare {
    /// `schema.name`.
    pub table: String,
    /// On the provider.
    pub provider: Sum,
    /// Here.
    pub subscriber: Sum,
}

impl TableCompare {
    /// Whether both sides hold the same rows (as far as the checksum can tell).
    pub fn equal(&self) -> bool {
        self.provider == self.subscriber
    }
}

/// What repair found for one table.
#[derive(Debug, Clone, Default)]
pub struct RepairHints {
    /// `schema.name`.
    pub table: String,
    /// Keys (as text) missing here, extra here, or with other values here.
    pub missing: Vec<Vec<Option<String>>>,
    /// See `missing`.
    pub extra: Vec<Vec<Option<String>>>,
    /// See `missing`.
    pub differ: Vec<Vec<Option<String>>>,
    /// The SQL that would fix the subscriber, one statement per line.
    pub sql: Vec<String>,
}

/// The tick both sides were read at and the per-table results.
#[derive(Debug, Clone)]
pub struct AtTick<T> {
    /// The tick.
    pub tick: i64,
    /// Results in table order.
    pub tables: Vec<T>,
}

/// A row read for repair: key text, row hash, all column values as text.
type KeyedRows = BTreeMap<Vec<Option<String>>, (String, Vec<Option<String>>)>;

enum Side {
    Sums(Vec<Sum>),
    Rows(Vec<KeyedRows>),
}

#[derive(Clone, Copy)]
enum Work {
    Sums,
    Rows,
}

fn sql_err(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let what = what.into();
    move |source| Error::Sql { what, source }
}

/// Compares `tables` (`schema.name`) of `queue` between `prov` and `sub`.
/// `prov_nudge` is a second session to the provider (see `at_same_tick_paused`).
pub async fn compare(
    sub: &mut Client,
    prov: &mut Client,
    prov_nudge: &Client,
    queue: &str,
    tables: &[String],
    timeout: Duration,
) -> Result<AtTick<TableCompare>, Error> {
    let (tick, p, s, _) =
        at_same_tick(sub, prov, prov_nudge, queue, tables, timeout, Work::Sums).await?;
    let (Side::Sums(p), Side::Sums(s)) = (p, s) else {
        return Err(Error::Failed("internal: sums expected".into()));
    };
    Ok(AtTick {
        tick,
        tables: tables
            .iter()
            .zip(p.into_iter().zip(s))
            .map(|(t, (provider, subscriber))| TableCompare {
                table: t.clone(),
                provider,
                subscriber,
            })
            .collect(),
    })
}

/// Finds the rows that differ and the SQL that would fix the subscriber.
/// `prov_nudge` is a second session to the provider.
pub async fn repair(
    sub: &mut Client,
    prov: &mut Client,
    prov_nudge: &Client,
    queue: &str,
    tables: &[String],
    timeout: Duration,
) -> Result<AtTick<RepairHints>, Error> {
    let (tick, p, s, metas) =
        at_same_tick(sub, prov, prov_nudge, queue, tables, timeout, Work::Rows).await?;
    let (Side::Rows(p), Side::Rows(s)) = (p, s) else {
        return Err(Error::Failed("internal: rows expected".into()));
    };
    let mut out = Vec::new();
    for ((t, m), (prows, srows)) in tables.iter().zip(&metas).zip(p.into_iter().zip(s)) {
        out.push(hints(t, m, &prows, &srows));
    }
    Ok(AtTick { tick, tables: out })
}

fn where_sql(m: &TableMeta, key: &[Option<String>]) -> String {
    m.key
        .iter()
        .zip(key)
        .map(|(c, v)| format!("{} = {}", quote_ident(c), quote_literal(v.as_deref())))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn hints(table: &str, m: &TableMeta, p: &KeyedRows, s: &KeyedRows) -> RepairHints {
    let mut h = RepairHints {
        table: table.to_string(),
        ..RepairHints::default()
    };
    for (k, (hash, vals)) in p {
        match s.get(k) {
            None => {
                h.sql.push(format!(
                    "insert into {} ({}) values ({});",
                    m.quoted,
                    m.column_list(),
                    vals.iter()
                        .map(|v| quote_literal(v.as_deref()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                h.missing.push(k.clone());
            }
            Some((shash, _)) if shash != hash => {
                let set = m
                    .columns
                    .iter()
                    .zip(vals)
                    .filter(|(c, _)| !m.key.contains(c))
                    .map(|(c, v)| format!("{} = {}", quote_ident(c), quote_literal(v.as_deref())))
                    .collect::<Vec<_>>()
                    .join(", ");
                h.sql.push(format!(
                    "update {} set {set} where {};",
                    m.quoted,
                    where_sql(m, k)
                ));
                h.differ.push(k.clone());
            }
            Some(_) => {}
        }
    }
    for k in s.keys() {
        if !p.contains_key(k) {
            h.sql.push(format!(
                "delete from {} where {};",
                m.quoted,
                where_sql(m, k)
            ));
            h.extra.push(k.clone());
        }
    }
    h
}

/// Loads the metadata of every table on one node, refusing missing or key-less tables.
async fn metas(
    tx: &Transaction<'_>,
    tables: &[String],
    node: &str,
) -> Result<Vec<TableMeta>, Error> {
    let mut out = Vec::new();
    for t in tables {
        let m = TableMeta::load(tx, t)
            .await
            .map_err(sql_err(format!("reading the columns of {t} on the {node}")))?
            .ok_or_else(|| Error::Refused(format!("table {t} does not exist on the {node}")))?;
        if m.key.is_empty() {
            return Err(Error::Refused(format!(
                "table {t} has no primary key on the {node}"
            )));
        }
        out.push(m);
    }
    Ok(out)
}

/// Reads `tables` in `tx` with the column lists of `cols` (the subscriber's metadata).
async fn read_side(
    tx: &Transaction<'_>,
    metas: &[TableMeta],
    cols: &[TableMeta],
    work: Work,
    node: &str,
) -> Result<Side, Error> {
    tx.batch_execute(sql::STABLE_TEXT)
        .await
        .map_err(sql_err("setting the text format of the session"))?;
    let mut sums = Vec::new();
    let mut rows = Vec::new();
    for (m, c) in metas.iter().zip(cols) {
        let row = c.row_expr();
        match work {
            Work::Sums => {
                let q = format!(
                    "select count(*), coalesce(sum(('x' || substr(md5(({row})::text), 1, 16))::bit(64)::bigint::numeric), 0)::text from {}",
                    m.quoted
                );
                let r = tx
                    .query_one(&q, &[])
                    .await
                    .map_err(sql_err(format!("checksumming {} on the {node}", m.quoted)))?;
                sums.push(Sum {
                    rows: r.get(0),
                    checksum: r.get(1),
                });
            }
            Work::Rows => {
                let vals = c
                    .columns
                    .iter()
                    .map(|x| format!("{}::text", quote_ident(x)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let q = format!(
                    "select array[{}], md5(({row})::text), array[{vals}] from {}",
                    c.key_text_list(),
                    m.quoted
                );
                let mut map = KeyedRows::new();
                for r in tx.query(&q, &[]).await.map_err(sql_err(format!(
                    "reading the rows of {} on the {node}",
                    m.quoted
                )))? {
                    map.insert(r.get(0), (r.get(1), r.get(2)));
                }
                rows.push(map);
            }
        }
    }
    Ok(match work {
        Work::Sums => Side::Sums(sums),
        Work::Rows => Side::Rows(rows),
    })
}

async fn at_same_tick(
    sub: &mut Client,
    prov: &mut Client,
    prov_nudge: &Client,
    queue: &str,
    tables: &[String],
    timeout: Duration,
    work: Work,
) -> Result<(i64, Side, Side, Vec<TableMeta>), Error> {
    // the pause outlives the compare by a margin only: a compare killed half-way
    // must not hold the node for good
    let life = (timeout + Duration::from_secs(30)).as_secs_f64();
    let frozen = sub
        .execute(sql::FREEZE, &[&queue, &life])
        .await
        .map_err(sql_err("pausing the subscriber's applier"))?;
    if frozen == 0 {
        return Err(Error::Refused(format!(
            "queue {queue} has no replication state on the subscriber (add tables and run the worker first)"
        )));
    }
    let r = at_same_tick_paused(sub, prov, prov_nudge, queue, tables, timeout, work).await;
    let lifted = sub
        .execute(sql::SET_PAUSE, &[&queue, &None::<i64>, &0.0f64])
        .await
        .map_err(sql_err("lifting the pause of the subscriber's applier"));
    let r = r?;
    lifted?;
    Ok(r)
}

async fn at_same_tick_paused(
    sub: &mut Client,
    prov: &mut Client,
    prov_nudge: &Client,
    queue: &str,
    tables: &[String],
    timeout: Duration,
    work: Work,
) -> Result<(i64, Side, Side, Vec<TableMeta>), Error> {
    let deadline = Instant::now() + timeout;
    // the subscriber's column lists are the ones both sides are read with
    let stx = sub
        .transaction()
        .await
        .map_err(sql_err("starting a subscriber transaction"))?;
    let smetas = metas(&stx, tables, "subscriber").await?;
    stx.commit().await.map_err(sql_err("reading metadata"))?;

    let ptx = prov
        .transaction()
        .await
        .map_err(sql_err("starting the provider transaction"))?;
    let mut root = false;
    for t in tables {
        let st: Option<String> = ptx
            .query_opt(sql::PROVIDER_STATE, &[&queue, t])
            .await
            .map_err(sql_err("reading the provider's pgq_replica.table_info"))?
            .map(|r| r.get(0));
        match st.as_deref() {
            Some("root") => root = true,
            Some("ok") => {}
            Some(s) => {
                return Err(Error::Refused(format!(
                    "table {t} is in state {s} on the provider; compare needs it ok there"
                )));
            }
            None => {
                return Err(Error::Refused(format!(
                    "table {t} is not replicated through queue {queue} on the provider"
                )));
            }
        }
    }
    let pmetas = metas(&ptx, tables, "provider").await?;
    let (tick, pside) = if root {
        let list = pmetas
            .iter()
            .map(|m| m.quoted.clone())
            .collect::<Vec<_>>()
            .join(", ");
        // writers queue behind this lock: give up rather than wait for ever
        ptx.batch_execute(&format!(
            "set local lock_timeout = {}; lock table {list} in share mode",
            timeout.as_millis().max(1)
        ))
        .await
        .map_err(sql_err("locking the tables on the root against writes"))?;
        // A tick whose snapshot's xmax is above this one's was taken after the lock: its
        // xmax says a transaction id handed out after this point had finished. Make sure
        // one does (a quiet database may have none for a long time): one transaction id,
        // taken and committed on the second session. This session takes none, so the
        // daemon's ticker does not hold ticks back for it.
        let after: i64 = ptx
            .query_one(sql::SNAPSHOT_XMAX, &[])
            .await
            .map_err(sql_err("reading the snapshot after the lock"))?
            .get(0);
        let side = read_side(&ptx, &pmetas, &smetas, work, "provider").await?;
        prov_nudge
            .query_one(sql::TXID, &[])
            .await
            .map_err(sql_err("taking a transaction id on the provider"))?;
        ptx.execute(sql::FORCE_TICK, &[&queue])
            .await
            .map_err(sql_err("pgq.force_tick"))?;
        let tick = loop {
            let t: Option<i64> = ptx
                .query_one(sql::TICK_AFTER, &[&queue, &after])
                .await
                .map_err(sql_err("looking for the tick"))?
                .get(0);
            if let Some(t) = t {
                break t;
            }
            if Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "no new tick on the root's queue {queue} within {timeout:?} (is the ticker running?)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        ptx.commit()
            .await
            .map_err(sql_err("ending the provider transaction"))?;
        (tick, side)
    } else {
        // The branch's last tick must exist and see the transaction that applied its
        // batch (module doc), else this point would be one batch off: wait for it.
        drop(ptx);
        loop {
            let ptx = prov
                .transaction()
                .await
                .map_err(sql_err("starting the provider transaction"))?;
            ptx.execute(sql::LOCK_EXCLUSIVE, &[&queue])
                .await
                .map_err(sql_err("holding the provider's applier"))?;
            let r = ptx
                .query_opt(sql::BRANCH_POINT, &[&queue])
                .await
                .map_err(sql_err("reading the provider's position"))?;
            let (t, exact): (Option<i64>, bool) = match &r {
                Some(r) => (r.get(0), r.get::<_, Option<bool>>(1).unwrap_or(false)),
                None => (None, false),
            };
            let t = t.ok_or_else(|| {
                Error::Refused(format!(
                    "the provider has applied no batch of queue {queue} yet"
                ))
            })?;
            if exact {
                let side = read_side(&ptx, &pmetas, &smetas, work, "provider").await?;
                ptx.commit()
                    .await
                    .map_err(sql_err("ending the provider transaction"))?;
                break (t, side);
            }
            drop(ptx);
            if Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "the provider gave no exact point within {timeout:?} (is its worker running?)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    let life = (deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(30))
        .as_secs_f64();
    sub.execute(sql::SET_PAUSE, &[&queue, &tick, &life])
        .await
        .map_err(sql_err("moving the subscriber's pause"))?;
    loop {
        let last: Option<i64> = sub
            .query_opt(sql::QUEUE_POS, &[&queue])
            .await
            .map_err(sql_err("reading the subscriber's position"))?
            .and_then(|r| r.get(0));
        match last {
            Some(l) if l == tick => break,
            Some(l) if l > tick => {
                return Err(Error::Failed(format!(
                    "the subscriber is at tick {l}, past the provider's {tick}; run compare again"
                )));
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(Error::Failed(format!(
                "the subscriber did not reach tick {tick} within {timeout:?} (is its worker running?)"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stx = sub
        .transaction()
        .await
        .map_err(sql_err("starting a subscriber transaction"))?;
    stx.execute(sql::LOCK_EXCLUSIVE, &[&queue])
        .await
        .map_err(sql_err("holding the subscriber's applier"))?;
    let sside = read_side(&stx, &smetas, &smetas, work, "subscriber").await?;
    stx.commit()
        .await
        .map_err(sql_err("ending the subscriber transaction"))?;
    Ok((tick, pside, sside, smetas))
}
