//! Every statement the consumer library sends, as named constants (STYLE R11): queue,
//! consumer and table names always travel as bind parameters. The one exception, the
//! failed-events table's name, is validated and quoted in `failed.rs`.

/// Registers the consumer at the queue's newest tick; 1 new, 0 existing.
pub const REGISTER: &str = "select pgq.register_consumer($1, $2)";
/// Unregisters the consumer (its retry events go too).
pub const UNREGISTER: &str = "select pgq.unregister_consumer($1, $2)";
/// Registers a cooperative subconsumer (and the main consumer when needed).
pub const REGISTER_SUB: &str = "select pgq_coop.register_subconsumer($1, $2, $3)";
/// Unregisters a subconsumer; an open batch is closed (handling 1: its events are given up).
pub const UNREGISTER_SUB: &str = "select pgq_coop.unregister_subconsumer($1, $2, $3, 1)";
/// Opens (or returns the still open) batch with both ticks.
pub const NEXT_BATCH: &str = "select batch_id, cur_tick_id, prev_tick_id, \
     cur_tick_time::text, prev_tick_time::text, \
     extract(epoch from now() - cur_tick_time)::float8 \
     from pgq.next_batch_info($1, $2)";
/// The coop batch id for a subconsumer (no takeover of silent subconsumers).
pub const COOP_NEXT_BATCH: &str = "select pgq_coop.next_batch($1, $2, $3)";
/// The coop batch id, taking over a subconsumer silent for longer than `$4`.
pub const COOP_NEXT_BATCH_DEAD: &str =
    "select pgq_coop.next_batch($1, $2, $3, make_interval(secs => $4::float8))";
/// A batch's ticks, for the coop path whose next_batch returns only the id.
pub const BATCH_INFO: &str = "select tick_id, prev_tick_id, batch_end::text, batch_start::text, \
     extract(epoch from lag)::float8 from pgq.get_batch_info($1)";
/// Every event of a batch, ordered by ev_id.
pub const BATCH_EVENTS: &str = "select ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data, \
     ev_extra1, ev_extra2, ev_extra3, ev_extra4 from pgq.get_batch_events($1)";
/// Declares the batch cursor and returns its first `$2` events.
pub const BATCH_CURSOR: &str = "select ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data, \
     ev_extra1, ev_extra2, ev_extra3, ev_extra4 \
     from pgq.get_batch_cursor($1, 'pgqd_batch_walker', $2)";
/// Closes the batch cursor.
pub const CLOSE_CURSOR: &str = "close pgqd_batch_walker";
/// Queues one event of the batch for another try after `$3` seconds.
pub const EVENT_RETRY: &str = "select pgq.event_retry($1, $2, $3::int4)";
/// Closes the batch: the consumer moves to its end tick.
pub const FINISH_BATCH: &str = "select pgq.finish_batch($1)";
/// Closes a coop subconsumer's batch.
pub const COOP_FINISH_BATCH: &str = "select pgq_coop.finish_batch($1)";
/// Whether the target has applied this batch already (remote consumer).
pub const IS_BATCH_DONE: &str = "select pgq_ext.is_batch_done($1, $2, $3)";
/// Marks the batch applied in the target, in the target's transaction.
pub const SET_BATCH_DONE: &str = "select pgq_ext.set_batch_done($1, $2, $3)";
/// The last tick applied to the target (serial consumer).
pub const GET_LAST_TICK: &str = "select pgq_ext.get_last_tick($1, $2)";
/// Records the tick applied to the target, in the target's transaction.
pub const SET_LAST_TICK: &str = "select pgq_ext.set_last_tick($1, $2, $3)";
/// Subscribes the session to the daemon's per-tick notifications.
pub const LISTEN: &str = "listen pgqd_tick";

#[cfg(test)]
mod tests {
    #[test]
    fn listens_on_the_daemons_channel() {
        assert_eq!(
            super::LISTEN,
            format!("listen {}", crate::sql::TICK_CHANNEL)
        );
    }
}
