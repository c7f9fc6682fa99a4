//! `pgqd tick QUEUE [--timeout D]`: asks for a tick with `pgq.force_tick` and waits until
//! the running ticker (pgqd) makes it. It never ticks by itself: two tickers on one
//! database would race on the snapshot (see `sql/pgq/50_ticker.sql`), so a missing ticker
//! is reported, not papered over.

use std::time::{Duration, Instant};

use super::common::{self, ConnArgs, Db, Error, ROLE_READER};

/// How often the queue's last tick is read while waiting.
const POLL: Duration = Duration::from_millis(100);

/// Arguments of `pgqd tick`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Queue.
    pub queue: String,
    /// How long to wait for the ticker.
    #[arg(long, default_value = "10s", value_parser = common::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Forces the tick and waits for it.
pub async fn run(a: &Args) -> Result<u8, Error> {
    common::check_name("queue", &a.queue)?;
    let db = Db::open(&a.conn).await?;
    db.require_queue(&a.queue).await?;
    let row = db
        .client
        .query_one(
            "select queue_ticker_paused, queue_external_ticker \
               from pgq.get_queue_info($1::text)",
            &[&a.queue],
        )
        .await
        .map_err(db.err("reading the queue", "USAGE on schema pgq"))?;
    let (paused, external): (bool, bool) = (row.get(0), row.get(1));
    if paused {
        return Err(Error::Refused(format!(
            "queue {:?} is paused, so no ticker will tick it; run pgqd resume first",
            a.queue
        )));
    }
    if external {
        return Err(Error::Refused(format!(
            "queue {:?} has an external ticker (its ticks come from elsewhere, e.g. a \
             cascade provider); force_tick does not apply",
            a.queue
        )));
    }
    let before: Option<i64> = db
        .client
        .query_one("select pgq.force_tick($1)", &[&a.queue])
        .await
        .map_err(db.err(format!("force a tick on queue {:?}", a.queue), ROLE_READER))?
        .get(0);
    let start = Instant::now();
    loop {
        let now: Option<i64> = db
            .client
            .query_one(
                "select last_tick_id from pgq.get_queue_info($1::text)",
                &[&a.queue],
            )
            .await
            .map_err(db.err("reading the last tick", "USAGE on schema pgq"))?
            .get(0);
        if now.is_some() && now != before {
            println!(
                "queue {:?}: tick {} made (after {})",
                a.queue,
                common::or_dash(now),
                common::fmt_secs(start.elapsed().as_secs_f64())
            );
            return Ok(0);
        }
        if start.elapsed() >= a.timeout {
            return Err(Error::Failed(format!(
                "no new tick on queue {:?} within {}: no ticker seems to run for database \
                 {:?} (start pgqd, or check its log); the tick stays requested and the \
                 next ticker run makes it",
                a.queue,
                humantime::format_duration(a.timeout),
                db.name
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
