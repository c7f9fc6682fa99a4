//! `pgqd insert QUEUE TYPE DATA [--extra1 …]`: inserts one event through the 7-argument
//! `pgq.insert_event` and prints its id.

use super::common::{self, ConnArgs, Db, Error, ROLE_WRITER};

/// Arguments of `pgqd insert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Queue.
    pub queue: String,
    /// Event type (ev_type).
    #[arg(value_name = "TYPE")]
    pub ev_type: String,
    /// Event payload (ev_data).
    #[arg(value_name = "DATA")]
    pub data: String,
    /// ev_extra1.
    #[arg(long)]
    pub extra1: Option<String>,
    /// ev_extra2.
    #[arg(long)]
    pub extra2: Option<String>,
    /// ev_extra3.
    #[arg(long)]
    pub extra3: Option<String>,
    /// ev_extra4.
    #[arg(long)]
    pub extra4: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Inserts the event; prints its id alone on stdout, for scripts.
pub async fn run(a: &Args) -> Result<u8, Error> {
    common::check_name("queue", &a.queue)?;
    let db = Db::open(&a.conn).await?;
    db.require_queue(&a.queue).await?;
    let id: i64 = db
        .client
        .query_one(
            "select pgq.insert_event($1, $2, $3, $4, $5, $6, $7)",
            &[
                &a.queue, &a.ev_type, &a.data, &a.extra1, &a.extra2, &a.extra3, &a.extra4,
            ],
        )
        .await
        .map_err(db.err(
            format!("insert an event into queue {:?}", a.queue),
            ROLE_WRITER,
        ))?
        .get(0);
    println!("{id}");
    Ok(0)
}
