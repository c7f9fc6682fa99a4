//! `pgqd register QUEUE CONSUMER [--at TICK]`: subscribes a consumer through
//! `pgq.register_consumer_at`.

use super::common::{self, ConnArgs, Db, Error, ROLE_READER};

/// Arguments of `pgqd register`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Queue to read.
    pub queue: String,
    /// Consumer name.
    pub consumer: String,
    /// Start after this tick instead of the newest one (moves an existing subscription).
    #[arg(long, value_name = "TICK")]
    pub at: Option<i64>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Registers the consumer and says where it starts.
pub async fn run(a: &Args) -> Result<u8, Error> {
    common::check_name("queue", &a.queue)?;
    common::check_name("consumer", &a.consumer)?;
    let db = Db::open(&a.conn).await?;
    db.require_queue(&a.queue).await?;
    if let Some(tick) = a.at {
        let exists: bool = db
            .client
            .query_one(
                "select exists (select 1 from pgq.tick t join pgq.queue q \
                   on q.queue_id = t.tick_queue where q.queue_name = $1 and t.tick_id = $2)",
                &[&a.queue, &tick],
            )
            .await
            .map_err(db.err("looking up the tick", ROLE_READER))?
            .get(0);
        if !exists {
            return Err(Error::Refused(format!(
                "queue {:?} has no tick {tick} (it may have been rotated away); \
                 pgqd status {:?} --format json shows the last tick id",
                a.queue, a.queue
            )));
        }
    }
    let new: i32 = db
        .client
        .query_one(
            "select pgq.register_consumer_at($1, $2, $3)",
            &[&a.queue, &a.consumer, &a.at],
        )
        .await
        .map_err(db.err(
            format!("register consumer {:?} on queue {:?}", a.consumer, a.queue),
            ROLE_READER,
        ))?
        .get(0);
    let last: Option<i64> = db
        .client
        .query_opt(
            "select last_tick from pgq.get_consumer_info($1::text, $2::text)",
            &[&a.queue, &a.consumer],
        )
        .await
        .map_err(db.err("reading the subscription", "USAGE on schema pgq"))?
        .and_then(|r| r.get(0));
    let at = common::or_dash(last);
    match (new, a.at) {
        (1, _) => println!(
            "registered consumer {:?} on queue {:?}, starting after tick {at}",
            a.consumer, a.queue
        ),
        (_, Some(_)) => println!(
            "consumer {:?} was registered on queue {:?}; moved to tick {at}",
            a.consumer, a.queue
        ),
        _ => println!(
            "consumer {:?} is already registered on queue {:?} (at tick {at}); nothing to do",
            a.consumer, a.queue
        ),
    }
    Ok(0)
}
