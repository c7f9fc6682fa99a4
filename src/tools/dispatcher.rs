//! The table dispatcher's handler: writes the rows of logutriga / jsontriga INSERT events
//! into a target table, for archiving. Updates, deletes and truncates are not applied
//! (inserts only, as Skytools' table_dispatcher; counted in the debug log).
//!
//! - The row: logutriga's urlencoded `col=value&…` (a bare name is NULL) or jsontriga's
//!   JSON object; the columns written are those of the event that the table has (or only
//!   `fields`), converted by `json_populate_record`, so the table's types and defaults
//!   apply.
//! - Partitions (`part_field` + `part_period`): the event's `part_field` value (a date or
//!   timestamp; its first 10 characters `YYYY-MM-DD`) picks `<dest_table>_YYYY_MM_DD` or
//!   `<dest_table>_YYYY_MM`, created on demand in the batch's transaction: `PARTITION OF`
//!   the base table when it is partitioned, else `(LIKE base INCLUDING ALL) INHERITS
//!   (base)` (inheritance partitioning: the base table shows every row, the rows sit in
//!   the child tables).
//! - Each event runs in a savepoint: one the database refuses (a bad value) is rolled
//!   back alone and retried, then lands in the failed-events table; an event that cannot
//!   work (no partition value, no known column) goes there at once.

use std::collections::HashSet;
use std::time::Duration;

use tokio_postgres::Transaction;

use super::ToolConfig;
use super::config::PartPeriod;
use crate::consumer::failed::TableName;
use crate::consumer::{Batch, BoxError, Event, Handler};

const COLUMNS: &str = "select attname::text from pg_catalog.pg_attribute \
     where attrelid = $1::text::regclass and attnum > 0 and not attisdropped order by attnum";
const RELKIND: &str =
    "select relkind::text from pg_catalog.pg_class where oid = $1::text::regclass";

/// The dispatcher.
pub struct Dispatcher {
    schema: Option<String>,
    table: String,
    fields: Vec<String>,
    part_field: Option<String>,
    period: Option<PartPeriod>,
    retry_delay: Duration,
}

/// What kind of change an event records.
#[derive(Debug, PartialEq, Eq)]
enum Op {
    Insert,
    Other,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl Dispatcher {
    /// The dispatcher of a config; refuses a `dest_table` that is not `name` or
    /// `schema.name` of plain identifiers.
    pub fn new(cfg: &ToolConfig) -> Result<Dispatcher, String> {
        let dest = cfg.dest_table.clone().unwrap_or_default();
        if TableName::parse(&dest).is_none() {
            return Err(format!(
                "dest_table {dest:?} is not a plain name or schema.name"
            ));
        }
        let (schema, table) = match dest.split_once('.') {
            Some((s, t)) => (Some(s.to_string()), t.to_string()),
            None => (None, dest),
        };
        let suffix = match cfg.part_period {
            Some(PartPeriod::Day) => 11,
            Some(PartPeriod::Month) => 8,
            None => 0,
        };
        if table.len() + suffix > 63 {
            return Err(format!(
                "dest_table {table:?} is too long for partition names"
            ));
        }
        Ok(Dispatcher {
            schema,
            table,
            fields: cfg.fields.clone(),
            part_field: cfg.part_field.clone(),
            period: cfg.part_period,
            retry_delay: cfg.consumer_config().retry_delay,
        })
    }

    fn qualified(&self, name: &str) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", quote(s), quote(name)),
            None => quote(name),
        }
    }

    /// The partition of a `YYYY-MM-DD…` value: (table name, range start, range end).
    fn partition(&self, value: &str) -> Option<(String, String, String)> {
        let period = self.period?;
        let (y, m, d) = parse_date(value)?;
        Some(match period {
            PartPeriod::Day => {
                let (ny, nm, nd) = next_day(y, m, d);
                (
                    format!("{}_{y:04}_{m:02}_{d:02}", self.table),
                    format!("{y:04}-{m:02}-{d:02}"),
                    format!("{ny:04}-{nm:02}-{nd:02}"),
                )
            }
            PartPeriod::Month => {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    format!("{}_{y:04}_{m:02}", self.table),
                    format!("{y:04}-{m:02}-01"),
                    format!("{ny:04}-{nm:02}-01"),
                )
            }
        })
    }
}

/// `YYYY-MM-DD` at the start of `v`.
fn parse_date(v: &str) -> Option<(u32, u32, u32)> {
    let b = v.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| v.get(r)?.parse::<u32>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    ((1..=12).contains(&m) && d >= 1 && d <= days_in(y, m)).then_some((y, m, d))
}

fn days_in(y: u32, m: u32) -> u32 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn next_day(y: u32, m: u32, d: u32) -> (u32, u32, u32) {
    if d < days_in(y, m) {
        (y, m, d + 1)
    } else if m < 12 {
        (y, m + 1, 1)
    } else {
        (y + 1, 1, 1)
    }
}

/// logutriga's urlencoding: `+` is a space, `%hh` a byte.
fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The op and row of a trigger event, or why it cannot be read.
fn decode(ev: &Event) -> Result<(Op, serde_json::Map<String, serde_json::Value>), String> {
    let ty = ev.ev_type.as_deref().unwrap_or("");
    let data = ev.data.as_deref().unwrap_or("");
    if ty.starts_with('{') {
        let meta: serde_json::Value =
            serde_json::from_str(ty).map_err(|e| format!("ev_type is not JSON: {e}"))?;
        let op = match meta.get("op").and_then(|v| v.as_str()) {
            Some("INSERT") => Op::Insert,
            Some(_) => Op::Other,
            None => return Err("ev_type has no op".into()),
        };
        if op != Op::Insert {
            return Ok((op, serde_json::Map::new()));
        }
        match serde_json::from_str(data) {
            Ok(serde_json::Value::Object(m)) => Ok((op, m)),
            _ => Err("ev_data is not a JSON object".into()),
        }
    } else {
        let op = match ty.split(':').next() {
            Some("I") => Op::Insert,
            Some("U" | "D" | "R") => Op::Other,
            _ => {
                return Err(format!(
                    "ev_type {ty:?} is not a logutriga or jsontriga type"
                ));
            }
        };
        if op != Op::Insert {
            return Ok((op, serde_json::Map::new()));
        }
        let mut m = serde_json::Map::new();
        for pair in data.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (pair, None),
            };
            let k = url_decode(k).ok_or("bad urlencoding in ev_data")?;
            let v = match v {
                Some(v) => {
                    serde_json::Value::String(url_decode(v).ok_or("bad urlencoding in ev_data")?)
                }
                None => serde_json::Value::Null,
            };
            m.insert(k, v);
        }
        Ok((op, m))
    }
}

fn as_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Handler for Dispatcher {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        batch: &mut Batch,
    ) -> Result<(), BoxError> {
        let base = self.qualified(&self.table);
        let columns: Vec<String> = tx
            .query(COLUMNS, &[&base])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let partitioned = tx.query_one(RELKIND, &[&base]).await?.get::<_, String>(0) == "p";
        let mut made: HashSet<String> = HashSet::new();
        let mut other = 0usize;
        for i in 0..batch.len() {
            let ev = batch.events()[i].clone();
            let row = match decode(&ev) {
                Ok((Op::Insert, row)) => row,
                Ok((Op::Other, _)) => {
                    other += 1;
                    continue;
                }
                Err(why) => {
                    batch.fail(i, why);
                    continue;
                }
            };
            let cols: Vec<&String> = columns
                .iter()
                .filter(|c| row.contains_key(c.as_str()))
                .filter(|c| self.fields.is_empty() || self.fields.contains(c))
                .collect();
            if cols.is_empty() {
                batch.fail(i, "no column of the event is in the table");
                continue;
            }
            let dest = match &self.part_field {
                None => base.clone(),
                Some(f) => {
                    let value = row.get(f).and_then(as_text).unwrap_or_default();
                    let Some((name, from, to)) = self.partition(&value) else {
                        batch.fail(i, format!("no date in partition field {f:?}: {value:?}"));
                        continue;
                    };
                    let part = self.qualified(&name);
                    if made.insert(part.clone()) {
                        // Dates are digits and dashes we formatted; names are checked identifiers.
                        let ddl = if partitioned {
                            format!(
                                "create table if not exists {part} partition of {base} for values from ('{from}') to ('{to}')"
                            )
                        } else {
                            format!(
                                "create table if not exists {part} (like {base} including all) inherits ({base})"
                            )
                        };
                        tx.batch_execute(&ddl).await?;
                    }
                    part
                }
            };
            let list = cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "insert into {dest} ({list}) select {list} from json_populate_record(null::{base}, $1::text::json)"
            );
            let json = serde_json::Value::Object(
                row.into_iter()
                    .filter(|(k, _)| cols.contains(&k))
                    .collect::<serde_json::Map<_, _>>(),
            )
            .to_string();
            tx.batch_execute("savepoint pgqd_event").await?;
            match tx.execute(&sql, &[&json]).await {
                Ok(_) => tx.batch_execute("release savepoint pgqd_event").await?,
                Err(e) => {
                    tx.batch_execute("rollback to savepoint pgqd_event").await?;
                    batch.retry(i, self.retry_delay, crate::pgerr::describe(&e));
                }
            }
        }
        if other > 0 {
            tracing::debug!(
                batch = batch.info().batch_id,
                other,
                "update/delete/truncate events not applied"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row = std::collections::BTreeMap<String, Option<String>>;

    fn ev(ty: &str, data: &str) -> Event {
        Event {
            id: 1,
            time: std::time::SystemTime::UNIX_EPOCH,
            txid: None,
            retry: None,
            ev_type: Some(ty.into()),
            data: Some(data.into()),
            extra1: Some("public.t".into()),
            extra2: None,
            extra3: None,
            extra4: None,
        }
    }

    fn row(ty: &str, data: &str) -> Row {
        let (op, m) = decode(&ev(ty, data)).unwrap();
        assert_eq!(op, Op::Insert);
        m.iter().map(|(k, v)| (k.clone(), as_text(v))).collect()
    }

    #[test]
    fn decodes_logutriga_and_jsontriga_rows() {
        let r = row("I:id", "id=2&txt&val=1.5&s=a+b%2c%3d%25");
        assert_eq!(r["id"].as_deref(), Some("2"));
        assert_eq!(r["txt"], None);
        assert_eq!(r["s"].as_deref(), Some("a b,=%"));
        let r = row(
            r#"{"op":"INSERT","table":["public","t"],"pkey":["id"]}"#,
            r#"{"id":2,"txt":null,"ts":"2009-09-19T11:59:48.599"}"#,
        );
        assert_eq!(r["id"].as_deref(), Some("2"));
        assert_eq!(r["txt"], None);
        assert_eq!(decode(&ev("U:id", "id=1")).unwrap().0, Op::Other);
        assert!(decode(&ev("bogus", "")).is_err());
        assert!(decode(&ev("I:id", "id=%zz")).is_err());
    }

    #[test]
    fn partitions_by_day_and_month() {
        let mut d = Dispatcher {
            schema: Some("arch".into()),
            table: "log".into(),
            fields: vec![],
            part_field: Some("ts".into()),
            period: Some(PartPeriod::Day),
            retry_delay: Duration::ZERO,
        };
        assert_eq!(
            d.partition("2024-02-29 23:59:59+00"),
            Some((
                "log_2024_02_29".into(),
                "2024-02-29".into(),
                "2024-03-01".into()
            ))
        );
        assert_eq!(
            d.partition("2023-12-31T10:00:00"),
            Some((
                "log_2023_12_31".into(),
                "2023-12-31".into(),
                "2024-01-01".into()
            ))
        );
        assert_eq!(d.partition("2023-02-29"), None);
        assert_eq!(d.partition("yesterday"), None);
        d.period = Some(PartPeriod::Month);
        assert_eq!(
            d.partition("2023-12-05"),
            Some((
                "log_2023_12".into(),
                "2023-12-01".into(),
                "2024-01-01".into()
            ))
        );
        assert_eq!(d.qualified("log_2023_12"), "\"arch\".\"log_2023_12\"");
    }
}
