//! The failed-events table: where an event goes once it has been retried `max_retries`
//! times (or the handler gave up on it), so that one poison event neither stops the
//! consumer nor is lost. pgq itself has no such thing.
//!
//! The table lives where the handler's work goes (the source database for a local
//! consumer, the target for a remote one) and is written in the same transaction as that
//! work, so an event is in the failed table exactly when its batch was applied. It is
//! created on demand (`create table if not exists`) the first time an event fails:
//!
//! ```sql
//! create table <name> (
//!     queue_name text not null, consumer_name text not null, ev_id bigint not null,
//!     batch_id bigint not null, ev_time timestamptz not null, ev_txid bigint,
//!     ev_retry integer, ev_type text, ev_data text,
//!     ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text,
//!     failed_at timestamptz not null default now(), reason text,
//!     primary key (queue_name, consumer_name, ev_id));
//! ```
//!
//! To replay a failed event, insert it into the queue again (`pgq.insert_event`) and
//! delete its row.

use tokio_postgres::Transaction;

use super::event::Event;

/// The default table name: `pgqd_failed_event` in the session's first schema.
pub const DEFAULT_TABLE: &str = "pgqd_failed_event";

/// A validated, quoted table name (`name` or `schema.name`, plain identifiers only: this
/// is the one name the library puts into SQL text, so nothing else gets through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName(String);

impl TableName {
    /// Checks `name` and quotes each part; `None` for anything but one or two plain
    /// identifiers (letters, digits, `_`, not starting with a digit).
    pub fn parse(name: &str) -> Option<TableName> {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.is_empty() || parts.len() > 2 {
            return None;
        }
        let ok = |p: &str| {
            let mut cs = p.chars();
            matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
                && p.len() <= 63
        };
        if !parts.iter().all(|p| ok(p)) {
            return None;
        }
        Some(TableName(
            parts
                .iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join("."),
        ))
    }

    /// The quoted name, ready for SQL text.
    pub fn quoted(&self) -> &str {
        &self.0
    }
}

/// Creates the table if missing and records `events` (event, reason) for this consumer.
/// An event already recorded (a batch applied twice cannot happen, but a replayed event
/// may fail again) keeps its first row.
pub async fn record(
    tx: &Transaction<'_>,
    table: &TableName,
    queue: &str,
    consumer: &str,
    batch_id: i64,
    events: &[(&Event, &str)],
) -> Result<(), tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let t = table.quoted();
    tx.batch_execute(&format!(
        "create table if not exists {t} (
            queue_name text not null, consumer_name text not null, ev_id bigint not null,
            batch_id bigint not null, ev_time timestamptz not null, ev_txid bigint,
            ev_retry integer, ev_type text, ev_data text,
            ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text,
            failed_at timestamptz not null default now(), reason text,
            primary key (queue_name, consumer_name, ev_id))"
    ))
    .await?;
    let stmt = tx
        .prepare(&format!(
            "insert into {t} (queue_name, consumer_name, ev_id, batch_id, ev_time, ev_txid, \
             ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4, reason) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             on conflict do nothing"
        ))
        .await?;
    for (ev, reason) in events {
        tx.execute(
            &stmt,
            &[
                &queue,
                &consumer,
                &ev.id,
                &batch_id,
                &ev.time,
                &ev.txid,
                &ev.retry,
                &ev.ev_type,
                &ev.data,
                &ev.extra1,
                &ev.extra2,
                &ev.extra3,
                &ev.extra4,
                reason,
            ],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked_and_quoted() {
        assert_eq!(
            TableName::parse("pgqd_failed_event").map(|t| t.0),
            Some("\"pgqd_failed_event\"".to_string())
        );
        assert_eq!(
            TableName::parse("ops.Failed_1").map(|t| t.0),
            Some("\"ops\".\"Failed_1\"".to_string())
        );
        for bad in ["", "a.b.c", "1abc", "a;drop", "a\"b", "a.", ".a", "a b"] {
            assert_eq!(TableName::parse(bad), None, "{bad}");
        }
    }
}
