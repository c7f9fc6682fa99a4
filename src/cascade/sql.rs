//! Every statement the cascade worker and admin commands send, as named constants
//! (STYLE R11): queue, node and consumer names always travel as bind parameters.
//! The pgq_node functions are those of pgq_node 3.5 (ours in `sql/pgq_node/`, or the
//! extension): each answers `ret_code, ret_note`, 2xx meaning done, 1xx meaning
//! nothing to do, 3xx and above refused.

/// The local node as the worker sees it.
pub const WORKER_STATE: &str = "select ret_code, ret_note, node_type, node_name, completed_tick, \
     provider_node, provider_location, paused, uptodate, cur_error, worker_name, \
     global_watermark, local_watermark, local_queue_top \
     from pgq_node.get_worker_state($1)";
/// The local node as the admin sees it.
pub const NODE_INFO: &str = "select ret_code, ret_note, node_type, node_name, global_watermark, \
     local_watermark, provider_node, provider_location, worker_name, worker_paused, \
     worker_uptodate, worker_last_tick \
     from pgq_node.get_node_info($1)";
/// The worker has seen the latest state change.
pub const SET_UPTODATE: &str =
    "select ret_code, ret_note from pgq_node.set_consumer_uptodate($1, $2, true)";
/// Records (or with NULL clears) why the last batch failed.
pub const SET_ERROR: &str =
    "select ret_code, ret_note from pgq_node.set_consumer_error($1, $2, $3)";
/// The tick the worker has applied, in the batch's subscriber transaction.
pub const SET_COMPLETED: &str =
    "select ret_code, ret_note from pgq_node.set_consumer_completed($1, $2, $3)";
/// Root: publish the local watermark as the global one (NULL), sent downstream as an
/// event. Branch: move the global watermark (from a `pgq.global-watermark` event).
pub const SET_GLOBAL_WATERMARK: &str =
    "select ret_code, ret_note from pgq_node.set_global_watermark($1, $2)";
/// On the provider: the lowest tick this subscriber (and those below it) still needs.
pub const SET_SUBSCRIBER_WATERMARK: &str =
    "select ret_code, ret_note from pgq_node.set_subscriber_watermark($1, $2, $3)";
/// Node membership as a `pgq.location-info` event carries it.
pub const REGISTER_LOCATION: &str =
    "select ret_code, ret_note from pgq_node.register_location($1, $2, $3, $4)";
/// Forgets a member (`pgq.unregister-location`).
pub const UNREGISTER_LOCATION: &str =
    "select ret_code, ret_note from pgq_node.unregister_location($1, $2)";
/// Every member of the cascade this node knows.
pub const LOCATIONS: &str =
    "select node_name, node_location, dead from pgq_node.get_queue_locations($1) order by 1";
/// Creates the node (type, name, worker, provider, global watermark, combined queue).
pub const CREATE_NODE: &str = "select ret_code, ret_note \
     from pgq_node.create_node($1, $2, $3, $4, $5, $6, null)";
/// On the provider: subscribes a node's worker at a tick (NULL: the global watermark).
pub const REGISTER_SUBSCRIBER: &str = "select ret_code, ret_note, global_watermark \
     from pgq_node.register_subscriber($1, $2, $3, $4)";
/// On the (old) provider: drops a subscriber's registrations.
pub const UNREGISTER_SUBSCRIBER: &str =
    "select ret_code, ret_note from pgq_node.unregister_subscriber($1, $2)";
/// Points a consumer (the worker) of this node at another provider.
pub const CHANGE_PROVIDER: &str =
    "select ret_code, ret_note from pgq_node.change_consumer_provider($1, $2, $3)";
/// Pauses or resumes a consumer; it confirms through `uptodate`.
pub const SET_PAUSED: &str =
    "select ret_code, ret_note from pgq_node.set_consumer_paused($1, $2, $3)";
/// A consumer's state on this node.
pub const CONSUMER_STATE: &str = "select ret_code, ret_note, paused, uptodate, completed_tick, \
     provider_node, cur_error from pgq_node.get_consumer_state($1, $2)";
/// Every cascaded consumer of this node.
pub const CONSUMERS: &str = "select consumer_name, provider_node, last_tick_id, paused, \
     uptodate, cur_error from pgq_node.get_consumer_info($1)";
/// Nodes that read from this one.
pub const SUBSCRIBERS: &str =
    "select node_name, worker_name, node_watermark from pgq_node.get_subscriber_info($1)";
/// Branch to root.
pub const PROMOTE: &str = "select ret_code, ret_note from pgq_node.promote_branch($1)";
/// Root to branch, one step at a time (1 stop writes, 2 last tick, 3 retype).
pub const DEMOTE: &str =
    "select ret_code, ret_note, last_tick from pgq_node.demote_root($1, $2, $3)";

/// The batch the worker reads next on its provider, with both ticks.
pub const NEXT_BATCH: &str = "select batch_id, cur_tick_id, prev_tick_id, cur_tick_time, \
     extract(epoch from now() - cur_tick_time)::float8 \
     from pgq.next_batch_info($1, $2)";
/// The provider's event sequence at a tick, which the branch's copy of the tick keeps.
pub const TICK_EVENT_SEQ: &str = "select t.tick_event_seq from pgq.tick t \
     join pgq.queue q on q.queue_id = t.tick_queue \
     where q.queue_name = $1 and t.tick_id = $2";
/// Every event of a batch, ordered by ev_id.
pub const BATCH_EVENTS: &str = "select ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data, \
     ev_extra1, ev_extra2, ev_extra3, ev_extra4 from pgq.get_batch_events($1)";
/// Closes the batch on the provider.
pub const FINISH_BATCH: &str = "select pgq.finish_batch($1)";
/// One applier per node and queue: a second worker (an operator mistake, or a killed
/// one whose session the server has not reaped yet) waits here, then sees the tick the
/// first one completed and skips the batch.
pub const APPLY_LOCK: &str = "select pg_advisory_xact_lock(hashtext('pgqd.cascade'), hashtext($1))";
/// The worker's completed tick, read inside the batch's transaction after the lock.
pub const COMPLETED_TICK: &str = "select completed_tick from pgq_node.get_consumer_state($1, $2)";
/// A branch accepts events only from its worker, which says it is replicating.
pub const REPLICA_ROLE: &str = "set local session_replication_role = 'replica'";
/// Copies a batch's events into the local queue keeping ev_id and ev_time (the
/// branch's queue mirrors the root's ids), in order, in one statement.
pub const COPY_EVENTS: &str = "select count(pgq.insert_event_raw($1, u.id, u.t, null, null, \
     u.ty, u.d, u.e1, u.e2, u.e3, u.e4)) \
     from unnest($2::int8[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::text[]) as u(id, t, ty, d, e1, e2, e3, e4)";
/// The newest tick of the local queue.
pub const LOCAL_LAST_TICK: &str = "select t.tick_id from pgq.tick t \
     join pgq.queue q on q.queue_id = t.tick_queue \
     where q.queue_name = $1 order by t.tick_id desc limit 1";
/// Ticks the branch's queue with the provider's tick (id, time, event sequence), and
/// tells the branch's listeners (consumers, the workers of its subscribers) as the
/// daemon does for the ticks it makes: `NOTIFY pgqd_tick, '<queue>'` ($5 is the channel).
pub const BRANCH_TICK: &str = "select pgq.ticker($1, $2, $3, $4), pg_catalog.pg_notify($5, $1)";
/// Wakes the worker on its provider's ticks.
pub const LISTEN: &str = "listen pgqd_tick";
/// Queue figures for status: newest tick, its time and age.
pub const QUEUE_INFO: &str = "select last_tick_id, extract(epoch from ticker_lag)::float8, \
     ev_new from pgq.get_queue_info($1)";
/// A consumer's position on a provider, for status.
pub const CONSUMER_INFO: &str = "select last_tick, extract(epoch from lag)::float8, \
     extract(epoch from last_seen)::float8, pending_events \
     from pgq.get_consumer_info($1, $2)";
/// Moves a plain consumer to a tick (registers it there when new).
pub const REGISTER_CONSUMER_AT: &str = "select pgq.register_consumer_at($1, $2, $3)";
/// The position of a plain consumer.
pub const CONSUMER_LAST_TICK: &str = "select last_tick from pgq.get_consumer_info($1, $2)";
