//! `pgqd unregister QUEUE CONSUMER`: removes a subscription through
//! `pgq.unregister_consumer`.

use super::common::{self, ConnArgs, Db, Error, ROLE_READER};

/// Arguments of `pgqd unregister`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Queue.
    pub queue: String,
    /// Consumer to remove.
    pub consumer: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Unregisters the consumer; an unknown consumer is an error (exit 1).
pub async fn run(a: &Args) -> Result<u8, Error> {
    common::check_name("queue", &a.queue)?;
    common::check_name("consumer", &a.consumer)?;
    let db = Db::open(&a.conn).await?;
    db.require_queue(&a.queue).await?;
    if !db.is_registered(&a.queue, &a.consumer).await? {
        return Err(Error::NotRegistered {
            queue: a.queue.clone(),
            consumer: a.consumer.clone(),
        });
    }
    db.client
        .execute(
            "select pgq.unregister_consumer($1, $2)",
            &[&a.queue, &a.consumer],
        )
        .await
        .map_err(db.err(format!("unregister consumer {:?}", a.consumer), ROLE_READER))?;
    println!(
        "unregistered consumer {:?} from queue {:?}",
        a.consumer, a.queue
    );
    Ok(0)
}
