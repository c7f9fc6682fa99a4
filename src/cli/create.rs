//! `pgqd create QUEUE`: creates a queue through `pgq.create_queue`.

use super::common::{self, ConnArgs, Db, Error, ROLE_ADMIN};

/// Arguments of `pgqd create`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name of the new queue (any text; it is passed as a parameter, never as SQL).
    pub queue: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Creates the queue; an existing queue is reported, not an error.
pub async fn run(a: &Args) -> Result<u8, Error> {
    common::check_name("queue", &a.queue)?;
    let db = Db::open(&a.conn).await?;
    db.require_pgq().await?;
    let made: i32 = db
        .client
        .query_one("select pgq.create_queue($1)", &[&a.queue])
        .await
        .map_err(db.err(format!("create queue {:?}", a.queue), ROLE_ADMIN))?
        .get(0);
    if made == 1 {
        println!("created queue {:?} in database {:?}", a.queue, db.name);
    } else {
        println!(
            "queue {:?} already exists in database {:?}; nothing to do",
            a.queue, db.name
        );
    }
    Ok(0)
}
