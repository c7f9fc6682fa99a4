//! Every statement replication sends, as named constants (R11). Table and column names
//! never travel in these: statements that must name a table are built in `meta.rs` from
//! names quoted by the server (`format('%I.%I')`) and by [`super::sqlfrag::quote_ident`].

/// Serialises the applier (shared) against copy and compare (exclusive) per queue, so
/// a copy's snapshot is never older than a batch the applier is still deciding about.
pub const LOCK_SHARED: &str = "select pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtext('pgq_replica'), pg_catalog.hashtext($1))";
/// See [`LOCK_SHARED`].
pub const LOCK_EXCLUSIVE: &str = "select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgq_replica'), pg_catalog.hashtext($1))";

/// The registered tables of a queue with what the applier needs.
pub const TABLES: &str = "select table_name, state, copy_snapshot::text, copy_tick, \
     copy_next_tick from pgq_replica.table_info where queue_name = $1";

/// The first tick after a copy's tick that a batch reached.
pub const SET_NEXT_TICK: &str = "update pgq_replica.table_info set copy_next_tick = $3 \
     where queue_name = $1 and table_name = $2 and copy_next_tick is null";

/// The pause a compare set, if any.
pub const PAUSE: &str = "select pause_at_tick from pgq_replica.queue_info \
      where queue_name = $1 and (pause_expires is null or pause_expires > now())";

/// Records a batch as applied.
pub const BATCH_DONE: &str = "insert into pgq_replica.queue_info \
     (queue_name, last_tick, applied_events, last_txid, last_events, updated) \
     values ($1, $2, $3, pg_catalog.txid_current(), $4, now()) \
     on conflict (queue_name) do update set last_tick = excluded.last_tick, \
     applied_events = pgq_replica.queue_info.applied_events + excluded.applied_events, \
     last_txid = excluded.last_txid, last_events = excluded.last_events, updated = now()";

/// A non-root provider's position for compare: its last tick, and whether the subscriber
/// at that tick has every event the provider applied (see `compare.rs`).
pub const BRANCH_POINT: &str = "select i.last_tick, \
            coalesce(i.last_events, 0) = 0 or coalesce(( \
              select pg_catalog.txid_visible_in_snapshot(i.last_txid, t.tick_snapshot) \
                from pgq.tick t join pgq.queue q on q.queue_id = t.tick_queue \
               where q.queue_name = i.queue_name and t.tick_id = i.last_tick), false) \
       from pgq_replica.queue_info i where i.queue_name = $1";

/// A table has caught up with its copy.
pub const SET_OK: &str = "update pgq_replica.table_info set state = 'ok' \
     where queue_name = $1 and table_name = $2 and state = 'catching-up'";

/// A table's columns (no dropped or generated ones) in order: name, SQL type, position
/// in the primary key (NULL when not a key column), and the quoted table name.
pub const COLUMNS: &str = "select a.attname::text, \
            pg_catalog.format_type(a.atttypid, a.atttypmod), \
            pg_catalog.array_position(i.indkey::int2[], a.attnum), \
            pg_catalog.format('%I.%I', n.nspname, c.relname) \
       from pg_catalog.pg_class c \
       join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
       join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 \
            and not a.attisdropped and a.attgenerated = '' \
       left join pg_catalog.pg_index i on i.indrelid = c.oid and i.indisprimary \
      where n.nspname::text || '.' || c.relname::text = $1 and c.relkind in ('r', 'p') \
      order by a.attnum";

/// Whether schema pgq_replica exists.
pub const HAS_SCHEMA: &str =
    "select exists (select 1 from pg_catalog.pg_namespace where nspname = 'pgq_replica')";

/// The node's type from pgq_node, when that schema is installed (`$1` = queue).
pub const NODE_TYPE: &str = "select node_type from pgq_node.node_info where queue_name = $1";

/// Whether schema pgq_node exists.
pub const HAS_NODE: &str =
    "select exists (select 1 from pg_catalog.pg_namespace where nspname = 'pgq_node')";

/// Adds a table (see `sql/replica/20_tables_admin.sql`).
pub const ADD_TABLE: &str = "select pgq_replica.add_table($1, $2, $3, $4)";
/// Removes a table.
pub const REMOVE_TABLE: &str = "select pgq_replica.remove_table($1, $2)";

/// The registry of a queue for `tables`.
pub const LIST: &str = "select t.table_name, t.state, t.trigger_kind, t.copy_rows, \
            t.copy_snapshot::text, to_char(t.copy_finished, 'YYYY-MM-DD HH24:MI:SS'), \
            q.last_tick, q.applied_events, q.pause_at_tick \
       from pgq_replica.table_info t \
       left join pgq_replica.queue_info q on q.queue_name = t.queue_name \
      where t.queue_name = $1 order by t.table_name";

/// The queue's apply position.
pub const QUEUE_POS: &str = "select last_tick, pause_at_tick from pgq_replica.queue_info \
      where queue_name = $1";

/// One table's registry row, locked (copy).
pub const TABLE_FOR_COPY: &str = "select state from pgq_replica.table_info \
      where queue_name = $1 and table_name = $2 for update";

/// The provider's view of a table (copy, compare): its state there.
pub const PROVIDER_STATE: &str = "select state from pgq_replica.table_info \
      where queue_name = $1 and table_name = $2";

/// After a copy.
pub const COPY_DONE: &str = "update pgq_replica.table_info set state = 'catching-up', \
      copy_snapshot = $3::text::txid_snapshot, copy_rows = $4, copy_started = $5::text::timestamptz, \
      copy_finished = now(), copy_provider = $6, copy_tick = $7, copy_next_tick = null \
      where queue_name = $1 and table_name = $2";

/// The snapshot of the copying transaction and its start.
pub const SNAPSHOT: &str =
    "select pg_catalog.txid_current_snapshot()::text, pg_catalog.now()::text";

/// Sets or clears the pause of the applier (compare, repair).
/// `$3` is the pause's lifetime in seconds.
pub const SET_PAUSE: &str = "insert into pgq_replica.queue_info \
      (queue_name, pause_at_tick, pause_expires) \
      values ($1, $2, now() + $3::float8 * interval '1 second') \
      on conflict (queue_name) do update set pause_at_tick = excluded.pause_at_tick, \
      pause_expires = excluded.pause_expires";

/// Holds the applier where it is (compare, repair); `$2` is the lifetime in seconds.
pub const FREEZE: &str = "update pgq_replica.queue_info set pause_at_tick = coalesce(last_tick, 0), \
      pause_expires = now() + $2::float8 * interval '1 second' where queue_name = $1";

/// Session settings that make row text forms the same on every node (checksums).
pub const STABLE_TEXT: &str = "set local timezone = 'UTC'; set local datestyle = 'ISO, MDY'; \
      set local intervalstyle = 'postgres'; set local bytea_output = 'hex'; \
      set local extra_float_digits = 3";

/// The newest tick of a queue.
pub const LAST_TICK: &str = "select max(t.tick_id) from pgq.tick t join pgq.queue q \
      on q.queue_id = t.tick_queue where q.queue_name = $1";

/// The first tick whose snapshot's xmax is above `$2`.
pub const TICK_AFTER: &str = "select min(t.tick_id) from pgq.tick t join pgq.queue q \
      on q.queue_id = t.tick_queue where q.queue_name = $1 \
      and pg_catalog.txid_snapshot_xmax(t.tick_snapshot) > $2";

/// Asks the ticker for a tick soon.
pub const FORCE_TICK: &str = "select pgq.force_tick($1)";

/// The xmax of a fresh snapshot (no transaction id taken).
pub const SNAPSHOT_XMAX: &str =
    "select pg_catalog.txid_snapshot_xmax(pg_catalog.txid_current_snapshot())";

/// The current transaction's id (assigning one).
pub const TXID: &str = "select pg_catalog.txid_current()";

/// This node's provider's location from pgq_node (`$1` = queue).
pub const PROVIDER_LOCATION: &str = "select l.node_location from pgq_node.node_info n \
       join pgq_node.local_state s on s.queue_name = n.queue_name and s.consumer_name = n.worker_name \
       join pgq_node.node_location l on l.queue_name = n.queue_name and l.node_name = s.provider_node \
      where n.queue_name = $1";
