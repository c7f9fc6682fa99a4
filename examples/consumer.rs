//! A complete consumer: copies every event of queue `orders` into table `audit_log` of the
//! same database, exactly once (the inserts commit with the batch). Stops on Ctrl-C.
//!
//! Run: cargo run --example consumer -- 'dbname=app'

use pgqd::consumer::{Batch, BoxError, Consumer, ConsumerConfig, Error, Handler};
use tokio_postgres::Transaction;
use tokio_util::sync::CancellationToken;

/// The handler: one insert per event, in the batch's transaction.
struct Audit;

impl Handler for Audit {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        batch: &mut Batch,
    ) -> Result<(), BoxError> {
        for ev in batch.events() {
            tx.execute(
                "insert into audit_log (ev_id, ev_type, ev_data) values ($1, $2, $3)",
                &[&ev.id, &ev.ev_type, &ev.data],
            )
            .await?;
        }
        Ok(())
    }
}

/// Consumes `orders` as consumer `audit` until `stop` is cancelled.
pub async fn consume(connstr: &str, stop: CancellationToken) -> Result<(), Error> {
    let mut cfg = ConsumerConfig::new(connstr, "orders", "audit");
    cfg.max_retries = 3; // a poison event goes to table pgqd_failed_event after 3 retries
    let consumer = Consumer::new(cfg)?;
    consumer.run(&mut Audit, &stop).await
}

#[allow(dead_code)] // the tests call `consume` directly
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let connstr = std::env::args().nth(1).unwrap_or_default();
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    match consume(&connstr, stop).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("consumer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
