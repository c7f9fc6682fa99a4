-- replica component, part 10: the registry.
--
-- pgq_replica.table_info, per queue and table:
--   table_name      "schema.name" exactly as the capture triggers write it into
--                   ev_extra1 (unquoted), which is how events find their table;
--   state           root         the source: a capture trigger queues changes;
--                   copy         registered on a subscriber, not copied yet:
--                                its events are skipped (the copy will hold them);
--                   catching-up  copied: events whose ev_txid the copy snapshot
--                                sees are skipped, later ones applied;
--                   ok           every event is applied;
--   trigger_kind    logutriga or sqltriga (root only);
--   copy_snapshot   the provider's snapshot the copy was read in;
--   copy_tick       the provider's newest tick in that snapshot, and
--   copy_next_tick  the first tick after it a batch reached (the applier's
--                   second way to tell the table has caught up, src/replica/apply.rs);
--   copy_rows, copy_started, copy_finished   what the copy did;
--   copy_provider   the provider node (or connection description) copied from.
--
-- pgq_replica.queue_info, per queue on a subscriber:
--   last_tick       end tick of the last batch the applier committed here;
--   applied_events  events applied in total (skipped ones not counted);
--   last_txid       the id of the transaction that applied the last batch (on
--                   a branch the same one copied its events and made its tick);
--   last_events     how many events that batch had;
--   pause_at_tick   set by compare/repair: batches ending after this tick are
--                   refused (the worker retries them), so the node holds still
--                   at a known tick while it is checked;
--   pause_expires   the pause is ignored after this time, so a compare that
--                   died half-way never stops the node for good.

create table if not exists pgq_replica.table_info (
    queue_name      text not null,
    table_name      text not null,
    state           text not null
                    check (state in ('root', 'copy', 'catching-up', 'ok')),
    trigger_kind    text check (trigger_kind in ('logutriga', 'sqltriga')),
    copy_snapshot   txid_snapshot,
    copy_tick       bigint,
    copy_next_tick  bigint,
    copy_rows       bigint,
    copy_started    timestamptz,
    copy_finished   timestamptz,
    copy_provider   text,
    added           timestamptz not null default now(),
    primary key (queue_name, table_name)
);

create table if not exists pgq_replica.queue_info (
    queue_name      text primary key,
    last_tick       bigint,
    applied_events  bigint not null default 0,
    last_txid       bigint,
    last_events     bigint,
    pause_at_tick   bigint,
    pause_expires   timestamptz,
    updated         timestamptz
);
