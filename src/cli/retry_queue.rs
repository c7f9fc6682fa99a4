//! `pgqd retry-queue [QUEUE]`: what waits in `pgq.retry_queue` — events consumers asked
//! to see again later — summed per queue and consumer with the next due time; with
//! `--format json` also the events themselves.

use serde_json::json;

use super::common::{self, ConnArgs, Db, Error, Format, ROLE_ADMIN};

/// Arguments of `pgqd retry-queue`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this queue.
    pub queue: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// At most this many events in the JSON output (soonest due first).
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// The consumer owning a retry row: its subscription's consumer; for a cooperative
/// group (several rows share the sub_id) the main consumer, whose row has a last tick.
const OWNER: &str = "left join lateral (
        select c.co_name from pgq.subscription s
          join pgq.consumer c on c.co_id = s.sub_consumer
         where s.sub_id = r.ev_owner
         order by s.sub_last_tick is null, s.sub_consumer
         limit 1) o on true";

/// Prints the summary (and with JSON the events). The SQL is assembled with `format!`
/// from constants only (`OWNER`, `iso_utc!`); the queue and limit are bind parameters.
pub async fn run(a: &Args) -> Result<u8, Error> {
    let db = Db::open(&a.conn).await?;
    match &a.queue {
        Some(q) => {
            common::check_name("queue", q)?;
            db.require_queue(q).await?
        }
        None => db.require_pgq().await?,
    }
    let summary = db
        .client
        .query(
            &format!(
                "select q.queue_name, o.co_name, count(*)::int8,
                        {}, extract(epoch from min(r.ev_retry_after) - now())::float8
                   from pgq.retry_queue r
                   join pgq.queue q on q.queue_id = r.ev_queue
                   {OWNER}
                  where $1::text is null or q.queue_name = $1
                  group by 1, 2 order by 1, 2",
                crate::iso_utc!("min(r.ev_retry_after)")
            ),
            &[&a.queue],
        )
        .await
        .map_err(db.err("reading pgq.retry_queue", ROLE_ADMIN))?;
    match a.format {
        Format::Table => {
            if summary.is_empty() {
                println!("retry queue of database {:?} is empty", db.name);
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = summary
                .iter()
                .map(|r| {
                    let due: f64 = r.get(4);
                    vec![
                        r.get(0),
                        common::or_dash(r.get::<_, Option<String>>(1)),
                        r.get::<_, i64>(2).to_string(),
                        if due > 0.0 {
                            format!("in {}", common::fmt_secs(due))
                        } else {
                            format!("overdue {}", common::fmt_secs(-due))
                        },
                        r.get(3),
                    ]
                })
                .collect();
            print!(
                "{}",
                common::table(
                    &["QUEUE", "CONSUMER", "EVENTS", "NEXT DUE", "AT (UTC)"],
                    &rows,
                    &[2]
                )
            );
        }
        Format::Json => {
            let events = db
                .client
                .query(
                    &format!(
                        "select q.queue_name, o.co_name, r.ev_id, {}, r.ev_retry,
                                r.ev_type, r.ev_data, r.ev_extra1, r.ev_extra2,
                                r.ev_extra3, r.ev_extra4, {}
                           from pgq.retry_queue r
                           join pgq.queue q on q.queue_id = r.ev_queue
                           {OWNER}
                          where $1::text is null or q.queue_name = $1
                          order by r.ev_retry_after, r.ev_id
                          limit $2",
                        crate::iso_utc!("r.ev_retry_after"),
                        crate::iso_utc!("r.ev_time")
                    ),
                    &[&a.queue, &a.limit],
                )
                .await
                .map_err(db.err("reading pgq.retry_queue", ROLE_ADMIN))?;
            common::print_json(&json!({
                "database": db.name,
                "summary": summary.iter().map(|r| json!({
                    "queue_name": r.get::<_, String>(0),
                    "consumer_name": r.get::<_, Option<String>>(1),
                    "events": r.get::<_, i64>(2),
                    "next_retry_after": r.get::<_, String>(3),
                    "next_due_in_secs": r.get::<_, f64>(4),
                })).collect::<Vec<_>>(),
                "events": events.iter().map(|r| json!({
                    "queue_name": r.get::<_, String>(0),
                    "consumer_name": r.get::<_, Option<String>>(1),
                    "ev_id": r.get::<_, i64>(2),
                    "retry_after": r.get::<_, String>(3),
                    "ev_retry": r.get::<_, Option<i32>>(4),
                    "ev_type": r.get::<_, Option<String>>(5),
                    "ev_data": r.get::<_, Option<String>>(6),
                    "ev_extra1": r.get::<_, Option<String>>(7),
                    "ev_extra2": r.get::<_, Option<String>>(8),
                    "ev_extra3": r.get::<_, Option<String>>(9),
                    "ev_extra4": r.get::<_, Option<String>>(10),
                    "ev_time": r.get::<_, Option<String>>(11),
                })).collect::<Vec<_>>(),
            }));
        }
    }
    Ok(0)
}
