//! `pgqd config QUEUE [KEY=VALUE …]`: shows a queue's settings, or changes them through
//! `pgq.set_queue_config` — never by writing `pgq.queue`, so the function's own checks
//! apply and a settings API added to pgq later stays the one path.

use serde_json::json;

use super::common::{self, ConnArgs, Db, Error, Format, ROLE_ADMIN};

/// What `pgq.set_queue_config` accepts (names without the `queue_` prefix).
pub const SETTABLE: &[&str] = &[
    "ticker_max_count",
    "ticker_max_lag",
    "ticker_idle_period",
    "rotation_period",
    "ticker_paused",
    "external_ticker",
];

/// Arguments of `pgqd config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Queue.
    pub queue: String,
    /// Settings to change, as KEY=VALUE (the queue_ prefix is optional).
    #[arg(value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Splits and checks `KEY=VALUE` arguments; unknown keys are usage errors.
pub fn parse_settings(items: &[String]) -> Result<Vec<(&'static str, String)>, Error> {
    let mut out = Vec::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            return Err(Error::Usage(format!(
                "expected KEY=VALUE, got {item:?} (keys: {})",
                SETTABLE.join(", ")
            )));
        };
        let key = k.trim();
        let bare = key.strip_prefix("queue_").unwrap_or(key);
        let Some(known) = SETTABLE.iter().find(|s| **s == bare) else {
            let extra = if bare == "disable_insert" || bare == "per_tx_limit" {
                format!(
                    "; pgq 3.5 has no function that sets {bare}, and pgqd does not write \
                     pgq.queue behind the API's back"
                )
            } else {
                String::new()
            };
            return Err(Error::Usage(format!(
                "cannot change {key:?}: pgq.set_queue_config accepts only {}{extra}",
                SETTABLE.join(", ")
            )));
        };
        out.push((*known, v.trim().to_string()));
    }
    Ok(out)
}

/// Shows the settings, after applying any changes in one transaction.
pub async fn run(a: &Args) -> Result<u8, Error> {
    common::check_name("queue", &a.queue)?;
    let changes = parse_settings(&a.set)?;
    let mut db = Db::open(&a.conn).await?;
    db.require_queue(&a.queue).await?;
    if !changes.is_empty() {
        let user = db.user.clone();
        let tx = db.client.transaction().await.map_err(|source| Error::Sql {
            what: "starting the transaction".into(),
            source,
        })?;
        for (key, value) in &changes {
            let r = tx
                .execute(
                    "select pgq.set_queue_config($1, $2, $3)",
                    &[&a.queue, key, value],
                )
                .await;
            if let Err(source) = r {
                return Err(match crate::pgerr::sqlstate(&source) {
                    Some("42501") => Error::Permission {
                        what: format!("change settings of queue {:?}", a.queue),
                        needs: ROLE_ADMIN.into(),
                        user,
                    },
                    // Class 22: the value does not convert to the setting's type.
                    Some(s) if s.starts_with("22") => Error::Usage(format!(
                        "invalid value {value:?} for {key}: {}; nothing was changed",
                        source
                            .as_db_error()
                            .map(|d| d.message().to_string())
                            .unwrap_or_default()
                    )),
                    _ => Error::Sql {
                        what: format!("set {key} on queue {:?}", a.queue),
                        source,
                    },
                });
            }
        }
        tx.commit().await.map_err(|source| Error::Sql {
            what: "committing".into(),
            source,
        })?;
    }
    show(&db, &a.queue, a.format).await?;
    Ok(0)
}

async fn show(db: &Db, queue: &str, format: Format) -> Result<(), Error> {
    let row = db
        .client
        .query_one(
            concat!(
                "select queue_ticker_max_count, queue_ticker_max_lag::text, ",
                "queue_ticker_idle_period::text, queue_rotation_period::text, ",
                "queue_ticker_paused, queue_external_ticker, queue_ntables, queue_cur_table, ",
                crate::iso_utc!("queue_switch_time"),
                " from pgq.get_queue_info($1::text)"
            ),
            &[&queue],
        )
        .await
        .map_err(db.err("reading the queue's settings", "USAGE on schema pgq"))?;
    let max_count: i32 = row.get(0);
    let max_lag: String = row.get(1);
    let idle: String = row.get(2);
    let rotation: String = row.get(3);
    let paused: bool = row.get(4);
    let external: bool = row.get(5);
    let ntables: i32 = row.get(6);
    let cur: i32 = row.get(7);
    let switched: Option<String> = row.get(8);
    match format {
        Format::Json => common::print_json(&json!({
            "database": db.name,
            "queue": queue,
            "ticker_max_count": max_count,
            "ticker_max_lag": max_lag,
            "ticker_idle_period": idle,
            "rotation_period": rotation,
            "ticker_paused": paused,
            "external_ticker": external,
            "ntables": ntables,
            "cur_table": cur,
            "switch_time": switched,
        })),
        Format::Table => {
            let rows = vec![
                vec!["ticker_max_count".into(), max_count.to_string()],
                vec!["ticker_max_lag".into(), max_lag],
                vec!["ticker_idle_period".into(), idle],
                vec!["rotation_period".into(), rotation],
                vec!["ticker_paused".into(), paused.to_string()],
                vec!["external_ticker".into(), external.to_string()],
                vec!["ntables (read-only)".into(), ntables.to_string()],
                vec!["cur_table (read-only)".into(), cur.to_string()],
                vec!["switch_time (read-only)".into(), common::or_dash(switched)],
            ];
            println!("queue {queue:?} in database {:?}:", db.name);
            print!("{}", common::table(&["SETTING", "VALUE"], &rows, &[]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_with_and_without_prefix() {
        let s = parse_settings(&[
            "queue_ticker_max_lag=5s".into(),
            "rotation_period=1h".into(),
        ])
        .unwrap();
        assert_eq!(
            s,
            vec![
                ("ticker_max_lag", "5s".to_string()),
                ("rotation_period", "1h".to_string())
            ]
        );
    }

    #[test]
    fn unsupported_keys_are_usage_errors() {
        let e = parse_settings(&["disable_insert=true".into()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("does not write pgq.queue"), "{e}");
        assert!(parse_settings(&["ticker_max_count".into()]).is_err());
    }
}
