//! `pgqd drop QUEUE [--force]`: drops a queue through `pgq.drop_queue`, refusing while
//! consumers are registered unless `--force`.

use super::common::{self, ConnArgs, Db, Error, ROLE_ADMIN};

/// Arguments of `pgqd drop`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Queue to drop.
    pub queue: String,
    /// Unregister the queue's consumers first (their unread events are lost).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Drops the queue.
pub async fn run(a: &Args) -> Result<u8, Error> {
    common::check_name("queue", &a.queue)?;
    let db = Db::open(&a.conn).await?;
    db.require_queue(&a.queue).await?;
    // Checked here rather than by matching the function's error text (R9): the message
    // can then name the consumers.
    let consumers: Vec<String> = db
        .client
        .query(
            "select consumer_name from pgq.get_consumer_info($1::text)",
            &[&a.queue],
        )
        .await
        .map_err(db.err("listing the queue's consumers", "USAGE on schema pgq"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !consumers.is_empty() && !a.force {
        return Err(Error::Refused(format!(
            "queue {:?} still has {} consumer(s): {}; unregister them first, or use --force \
             to unregister them and lose their unread events",
            a.queue,
            consumers.len(),
            consumers
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    db.client
        .execute("select pgq.drop_queue($1, $2)", &[&a.queue, &a.force])
        .await
        .map_err(db.err(format!("drop queue {:?}", a.queue), ROLE_ADMIN))?;
    if consumers.is_empty() {
        println!("dropped queue {:?} in database {:?}", a.queue, db.name);
    } else {
        println!(
            "dropped queue {:?} in database {:?} and unregistered {} consumer(s)",
            a.queue,
            db.name,
            consumers.len()
        );
    }
    Ok(0)
}
