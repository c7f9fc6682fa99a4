//! The queue mover's handler: copies each delivery into the target queue with one
//! statement (arrays unnested in order, so the target's ev_ids follow the source order),
//! keeping ev_time, ev_type, ev_data and ev_extra1..4. The target's ev_id, ev_txid and
//! ev_retry are its own. Exactly once comes from the remote consumer (pgq_ext batch
//! tracking in the same target transaction).

use std::time::SystemTime;

use tokio_postgres::Transaction;

use super::ToolConfig;
use crate::consumer::{Batch, BoxError, Event, Handler};

/// Inserts the events in order into queue `$1`; the arrays hold one entry per event.
pub(crate) const INSERT_EVENTS: &str = "select count(pgq.insert_event_raw(u.q, null, u.t, null, null, \
     u.ty, u.d, u.e1, u.e2, u.e3, u.e4)) \
     from unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[]) as u(q, t, ty, d, e1, e2, e3, e4)";

/// The mover: every event to one queue.
pub struct Mover {
    queue: String,
}

impl Mover {
    /// The mover of a config: `target_queue`, else the source queue's name.
    pub fn new(cfg: &ToolConfig) -> Mover {
        Mover {
            queue: cfg
                .target_queue
                .clone()
                .unwrap_or_else(|| cfg.queue.clone()),
        }
    }
}

impl Handler for Mover {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        batch: &mut Batch,
    ) -> Result<(), BoxError> {
        let evs: Vec<&Event> = batch.events().iter().collect();
        insert_events(tx, &evs, |_| self.queue.clone()).await
    }
}

/// Inserts `evs` into the queues `queue_of` names, in one statement.
pub(crate) async fn insert_events(
    tx: &Transaction<'_>,
    evs: &[&Event],
    queue_of: impl Fn(&Event) -> String,
) -> Result<(), BoxError> {
    if evs.is_empty() {
        return Ok(());
    }
    let q: Vec<String> = evs.iter().map(|e| queue_of(e)).collect();
    let t: Vec<SystemTime> = evs.iter().map(|e| e.time).collect();
    let col = |f: fn(&Event) -> &Option<String>| -> Vec<Option<String>> {
        evs.iter().map(|e| f(e).clone()).collect()
    };
    let ty = col(|e| &e.ev_type);
    let d = col(|e| &e.data);
    let e1 = col(|e| &e.extra1);
    let e2 = col(|e| &e.extra2);
    let e3 = col(|e| &e.extra3);
    let e4 = col(|e| &e.extra4);
    tx.query_one(INSERT_EVENTS, &[&q, &t, &ty, &d, &e1, &e2, &e3, &e4])
        .await?;
    Ok(())
}
