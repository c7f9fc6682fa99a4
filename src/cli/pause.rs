//! `pgqd pause QUEUE`: sets `ticker_paused` through `pgq.set_queue_config`, so the
//! ticker makes no ticks (and consumers get no new batches) until `pgqd resume`.

use super::common::{ConnArgs, Error};

/// Arguments of `pgqd pause`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Queue to pause.
    pub queue: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Pauses the queue's ticker.
pub async fn run(a: &Args) -> Result<u8, Error> {
    set_paused(&a.conn, &a.queue, true).await
}

/// Shared by `pause` and `resume`: one `set_queue_config` call, then a report.
pub(crate) async fn set_paused(conn: &ConnArgs, queue: &str, paused: bool) -> Result<u8, Error> {
    super::common::check_name("queue", queue)?;
    let db = super::common::Db::open(conn).await?;
    db.require_queue(queue).await?;
    let value = if paused { "true" } else { "false" };
    db.client
        .execute(
            "select pgq.set_queue_config($1, 'ticker_paused', $2)",
            &[&queue, &value],
        )
        .await
        .map_err(db.err(
            format!("set ticker_paused on queue {queue:?}"),
            super::common::ROLE_ADMIN,
        ))?;
    println!(
        "queue {queue:?}: ticker {}",
        if paused { "paused" } else { "resumed" }
    );
    Ok(0)
}
