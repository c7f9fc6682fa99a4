//! The initial copy of one table from the provider into this (subscriber) node, while
//! the queue's changes keep arriving: COPY OUT in a repeatable-read transaction on the
//! provider, COPY IN (after a TRUNCATE) in one transaction here, and the provider's
//! snapshot recorded with the table, which turns `catching-up`.
//!
//! The applier skips a `copy` table's events and a `catching-up` table's events that the
//! snapshot sees (rule in [`super::apply`]). Two conditions make that exact:
//! - the copy holds the queue's exclusive replication lock here from before it takes the
//!   provider snapshot until it commits, and the applier takes the shared one first in
//!   every batch: so any batch the applier skipped a `copy` table's events in had
//!   committed before the snapshot was taken, and its events are in the copy;
//! - the table is `root` or `ok` on the provider in that same snapshot: a provider still
//!   catching up may have skipped (not applied) events it passes on.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_postgres::{Client, IsolationLevel};

use super::meta::TableMeta;
use super::{Error, sql};

/// What one copy did.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// The table (`schema.name`).
    pub table: String,
    /// Rows copied.
    pub rows: u64,
    /// The provider snapshot the copy was read in.
    pub snapshot: String,
    /// How long it took.
    pub elapsed: Duration,
}

fn sql_err(what: String) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |source| Error::Sql { what, source }
}

/// Copies table `key` (`schema.name`) of `queue` from `prov` into `sub`.
/// `provider` describes the provider for the registry (node name or connection info);
/// `force` copies a table that is already copied again.
pub async fn copy_table(
    sub: &mut Client,
    prov: &mut Client,
    queue: &str,
    key: &str,
    provider: &str,
    force: bool,
) -> Result<CopyReport, Error> {
    let t0 = Instant::now();
    let stx = sub
        .transaction()
        .await
        .map_err(sql_err("starting the subscriber transaction".into()))?;
    stx.execute(sql::LOCK_EXCLUSIVE, &[&queue])
        .await
        .map_err(sql_err("locking the queue's replication state".into()))?;
    let state: Option<String> = stx
        .query_opt(sql::TABLE_FOR_COPY, &[&queue, &key])
        .await
        .map_err(sql_err("reading pgq_replica.table_info".into()))?
        .map(|r| r.get(0));
    match state.as_deref() {
        None => {
            return Err(Error::Refused(format!(
                "table {key} is not registered for queue {queue} on the subscriber \
                 (pgqd replica add-table first)"
            )));
        }
        Some("root") => {
            return Err(Error::Refused(format!(
                "table {key} is the root's source table here; copy into subscribers only"
            )));
        }
        Some("copy") => {}
        Some(s) if force => tracing::info!(table = key, state = s, "copying again (--force)"),
        Some(s) => {
            return Err(Error::Refused(format!(
                "table {key} is already copied (state {s}); pass --force to copy it again"
            )));
        }
    }
    let meta = TableMeta::load(&stx, key)
        .await
        .map_err(sql_err("reading the table's columns".into()))?
        .ok_or_else(|| Error::Refused(format!("table {key} does not exist on the subscriber")))?;

    let ptx = prov
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(sql_err("starting the provider transaction".into()))?;
    let row = ptx
        .query_one(sql::SNAPSHOT, &[])
        .await
        .map_err(sql_err("reading the provider snapshot".into()))?;
    let snapshot: String = row.get(0);
    let started: String = row.get(1);
    let pstate: Option<String> = ptx
        .query_opt(sql::PROVIDER_STATE, &[&queue, &key])
        .await
        .map_err(sql_err(
            "reading the provider's pgq_replica.table_info (is the replica component installed there?)"
                .into(),
        ))?
        .map(|r| r.get(0));
    match pstate.as_deref() {
        Some("root") | Some("ok") => {}
        Some(s) => {
            return Err(Error::Refused(format!(
                "table {key} is in state {s} on the provider; it must be ok there before \
                 subscribers copy from it"
            )));
        }
        None => {
            return Err(Error::Refused(format!(
                "table {key} is not replicated through queue {queue} on the provider"
            )));
        }
    }
    let copy_tick: Option<i64> = ptx
        .query_one(sql::LAST_TICK, &[&queue])
        .await
        .map_err(sql_err("reading the provider's newest tick".into()))?
        .get(0);
    let pmeta = TableMeta::load(&ptx, key)
        .await
        .map_err(sql_err("reading the provider table's columns".into()))?
        .ok_or_else(|| Error::Refused(format!("table {key} does not exist on the provider")))?;
    for c in &meta.columns {
        if !pmeta.columns.contains(c) {
            return Err(Error::Refused(format!(
                "column {c:?} of {key} is missing on the provider"
            )));
        }
    }

    stx.execute(&format!("truncate {}", meta.quoted), &[])
        .await
        .map_err(sql_err(format!("truncating {}", meta.quoted)))?;
    let cols = meta.column_list();
    let out = ptx
        .copy_out(&format!("copy {} ({cols}) to stdout", pmeta.quoted))
        .await
        .map_err(sql_err(format!(
            "COPY {} TO STDOUT on the provider",
            pmeta.quoted
        )))?;
    let sink = stx
        .copy_in(&format!("copy {} ({cols}) from stdin", meta.quoted))
        .await
        .map_err(sql_err(format!("COPY {} FROM STDIN", meta.quoted)))?;
    futures::pin_mut!(out);
    futures::pin_mut!(sink);
    while let Some(chunk) = out.next().await {
        let chunk = chunk.map_err(sql_err("reading the provider's COPY data".into()))?;
        sink.send(chunk)
            .await
            .map_err(sql_err("writing COPY data".into()))?;
    }
    let rows = sink
        .as_mut()
        .finish()
        .await
        .map_err(sql_err(format!("finishing COPY into {}", meta.quoted)))?;
    stx.execute(
        sql::COPY_DONE,
        &[
            &queue,
            &key,
            &snapshot,
            &(rows as i64),
            &started,
            &provider,
            &copy_tick,
        ],
    )
    .await
    .map_err(sql_err("recording the copy".into()))?;
    stx.commit()
        .await
        .map_err(sql_err("committing the copy".into()))?;
    let _ = ptx.rollback().await;
    Ok(CopyReport {
        table: key.to_string(),
        rows,
        snapshot,
        elapsed: t0.elapsed(),
    })
}
