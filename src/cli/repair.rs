//! `pgqd repair-restore`: makes the queues of a database restored from another cluster
//! (dump/restore or PITR) valid again in this cluster's txid history, keeping every
//! committed event that a consumer has not read. The semantics live in `crate::restore`;
//! this file explains the plan, runs it in one transaction, and reports.
//!
//! `--dry-run` does the whole repair and rolls it back (txids consumed to make room are
//! the only lasting effect, and harmless). A healthy database has nothing to repair: that
//! is reported and exits 0. Needs role `pgq_admin` (or the tables' owner).

use super::common::{ConnArgs, Db, Error, ROLE_ADMIN};
use crate::restore::{self, RepairError};

/// Arguments of `pgqd repair-restore`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do the whole repair, report it, and roll it back.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn from_repair(db: &Db, e: RepairError) -> Error {
    match e {
        RepairError::Sql { step, source } => db.err(step, ROLE_ADMIN)(source),
        RepairError::NoRoom(m) => Error::Refused(m),
    }
}

/// What the repair is going to do, for the operator to read first.
const PLAN: &str = "\
Plan (one transaction; producers, the ticker and maintenance wait while it runs):
  - every tick of these queues gets a new snapshot in this cluster's txid history,
    in the same order; tick ids, batch ids, consumer positions and open batches stay;
  - every event gets a txid in that new history so that it belongs to the same batch
    as before; events no restored tick covers (and events written since the restore)
    go into the next tick the ticker makes;
  - the rotation marks are moved so that repaired batches read both event tables and
    the next rotation waits until every consumer is past the repaired ticks.
Consumers then get every event they had not read, exactly once, and the daemon ticks
these queues again within its next check.";

/// Runs the repair; prints the plan and what was done.
pub async fn run(a: &Args) -> Result<u8, Error> {
    let mut db = Db::open(&a.conn).await?;
    db.require_pgq().await?;
    let queues = restore::restored_queues(&db.client)
        .await
        .map_err(db.err("checking the tick snapshots", "USAGE on schema pgq"))?;
    if queues.is_empty() {
        println!(
            "nothing to repair: no queue of database {:?} has ticks ahead of this cluster's \
             txid history",
            db.name
        );
        return Ok(0);
    }
    println!("{}", restore::explain(&db.name, &queues));
    println!();
    for q in &queues {
        println!(
            "  queue {:?}: {} tick(s), snapshots up to txid {} (next txid here: {})",
            q.name, q.ticks, q.tick_xmax, q.next_txid
        );
    }
    println!();
    println!("{PLAN}");
    println!();
    let most = queues.iter().map(|q| q.ticks).max().unwrap_or(0);
    let burned = restore::make_room(&db.client, most + 1)
        .await
        .map_err(|e| from_repair(&db, e))?;
    if burned > 0 {
        println!("consumed {burned} txid(s) to make room below the oldest running transaction");
    }
    let tx = db.client.transaction().await.map_err(|source| Error::Sql {
        what: "starting the transaction".into(),
        source,
    })?;
    let done = match restore::repair(&tx).await {
        Ok(d) => d,
        Err(e) => {
            drop(tx);
            return Err(from_repair(&db, e));
        }
    };
    let finish = if a.dry_run {
        tx.rollback().await
    } else {
        tx.commit().await
    };
    finish.map_err(|source| Error::Sql {
        what: if a.dry_run {
            "rolling back"
        } else {
            "committing"
        }
        .into(),
        source,
    })?;
    for r in &done {
        println!(
            "queue {:?}: {} tick(s) renumbered into txids {}..{}; {} event(s) re-stamped, \
             {} of them for the next tick; {} consumer(s) kept, {} open batch(es) kept",
            r.queue,
            r.ticks,
            r.new_range.0,
            r.new_range.1,
            r.events,
            r.pending_events,
            r.consumers,
            r.open_batches
        );
    }
    if a.dry_run {
        println!("dry run: rolled back, nothing changed");
    } else {
        println!("repaired {} queue(s) in database {:?}", done.len(), db.name);
    }
    Ok(0)
}
