//! One row change read out of a queue event, whichever trigger wrote it: the table, the
//! operation, the new column values and the key that finds the row.
//!
//! - `pgq.logutriga`: ev_type `I:`/`U:`/`D:` + the key columns, ev_data the urlencoded
//!   row ([`super::urlenc`]);
//! - `pgq.sqltriga`: ev_type `I`/`U`/`D`, ev_data an SQL fragment ([`super::sqlfrag`]);
//! - both: `R` for a TRUNCATE, ev_extra1 the table as `schema.name`.
//!
//! For logutriga the key columns come from the subscriber table's own primary key (the
//! same table; ev_type lists the names joined by commas, which a name with a comma would
//! make ambiguous).

use crate::consumer::Event;

use super::{sqlfrag, urlenc};

/// A column and its value (`None` is NULL).
pub type Pair = (String, Option<String>);

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
    /// TRUNCATE of the whole table.
    Truncate,
}

/// The decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// logutriga: the whole row (new row, or the old one for a delete).
    Row(Vec<Pair>),
    /// sqltriga: values to set (insert: all, update: the changed ones) and the key.
    Sql {
        /// Columns to write.
        set: Vec<Pair>,
        /// Key columns finding the row (update, delete).
        key: Vec<Pair>,
    },
    /// Nothing (truncate).
    None,
}

/// A decoded change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The operation.
    pub op: Op,
    /// The values.
    pub payload: Payload,
}

/// Why an event is not a change we can apply.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ev_type is not one the capture triggers write.
    #[error("unknown event type {0:?}")]
    Type(Option<String>),
    /// The logutriga row is malformed.
    #[error("logutriga row: {0}")]
    Url(#[from] urlenc::Error),
    /// The sqltriga fragment is malformed.
    #[error(transparent)]
    Sql(#[from] sqlfrag::Error),
    /// ev_data missing.
    #[error("event has no data")]
    NoData,
}

/// Decodes one event (its table is in `ev.extra1`, looked up by the caller).
pub fn decode(ev: &Event) -> Result<Change, Error> {
    let ty = ev.ev_type.as_deref().unwrap_or("");
    let (op_char, logu) = match ty.split_once(':') {
        Some((o, _)) => (o, true),
        None => (ty, false),
    };
    let op = match op_char {
        "I" => Op::Insert,
        "U" => Op::Update,
        "D" => Op::Delete,
        "R" => Op::Truncate,
        _ => return Err(Error::Type(ev.ev_type.clone())),
    };
    if op == Op::Truncate {
        return Ok(Change {
            op,
            payload: Payload::None,
        });
    }
    let data = ev.data.as_deref().ok_or(Error::NoData)?;
    let payload = if logu {
        Payload::Row(urlenc::decode_row(data)?)
    } else {
        match op {
            Op::Insert => Payload::Sql {
                set: sqlfrag::parse_insert(data)?,
                key: Vec::new(),
            },
            Op::Update => {
                let (set, key) = sqlfrag::parse_update(data)?;
                Payload::Sql { set, key }
            }
            _ => Payload::Sql {
                set: Vec::new(),
                key: sqlfrag::parse_delete(data)?,
            },
        }
    };
    Ok(Change { op, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn ev(ty: &str, data: &str) -> Event {
        Event {
            id: 1,
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

    #[test]
    fn decodes_both_formats() {
        let c = decode(&ev("U:id", "id=1&v=x")).unwrap();
        assert_eq!(c.op, Op::Update);
        assert_eq!(
            c.payload,
            Payload::Row(vec![
                ("id".into(), Some("1".into())),
                ("v".into(), Some("x".into()))
            ])
        );
        let c = decode(&ev("D", "id='1'")).unwrap();
        assert_eq!(
            c.payload,
            Payload::Sql {
                set: vec![],
                key: vec![("id".into(), Some("1".into()))]
            }
        );
        assert_eq!(decode(&ev("R", "")).unwrap().op, Op::Truncate);
        assert!(matches!(decode(&ev("X:id", "")), Err(Error::Type(_))));
        assert!(matches!(decode(&ev("I", "garbage")), Err(Error::Sql(_))));
    }
}
