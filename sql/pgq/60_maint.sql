-- pgq core, part 60: periodic maintenance.
--
-- The maintenance daemon (pgqd) asks pgq.maint_operations() what to run and
-- calls each listed function until it returns 0:
--   * table rotation, in two steps that must run in separate transactions;
--   * moving due retry events back into their queue;
--   * extra per-queue functions from queue_extra_maint, VACUUM of busy
--     tables when autovacuum is off, and pgq_node / londiste housekeeping
--     when those are installed.
-- Nothing here is on the insert path, so dynamic SQL is used freely.


-- ----------------------------------------------------------------------------
-- pgq.maint_rotate_tables_step1(1)
--
-- Rotate a queue's event tables if due: truncate the next table of the ring
-- and make it the current one.  Skipped (nothing changes) when the rotation
-- period has not passed, the previous rotation's step 2 has not run yet, the
-- slowest consumer may still read from the table to be reused, another
-- session holds a lock on that table (e.g. pg_dump), or the queue row is
-- locked (a REPEATABLE READ producer holds it FOR SHARE).  After a rotation, ticks
-- older than the previous rotation's step 2 are deleted.
--
-- Parameters:
--   i_queue_name  queue.
-- Returns:
--   0 always.  Errors 'queue <q> maint failure: ...' when the txid is behind
--   the last rotation or the slowest consumer's tick is missing.
-- ----------------------------------------------------------------------------
create or replace function pgq.maint_rotate_tables_step1(i_queue_name text)
returns integer
language plpgsql
as $$
declare
    v_queue         pgq.queue%rowtype;
    v_lowest_tick   bigint;
    v_lowest_xmin   bigint;
    v_next          int4;
    v_table         text;
begin
    select * into v_queue
      from pgq.queue q
     where q.queue_name = i_queue_name
       and q.queue_rotation_period is not null
       and q.queue_switch_step2 is not null
       and q.queue_switch_time + q.queue_rotation_period < current_timestamp
       for no key update skip locked;
    -- skip locked: a REPEATABLE READ producer holds the row FOR SHARE while it
    -- may still write into the current table (see pgq._refresh_insert_dispatch);
    -- rotating under it could lose its events, waiting would stall maintenance.
    -- Try again next round.  (no key update: the tick and subscription foreign
    -- keys hold key-share locks on the row, which need not stop a rotation.)
    if not found then
        return 0;
    end if;

    if txid_current() < v_queue.queue_switch_step1 then
        raise exception 'queue % maint failure: step1=%, current=%',
            i_queue_name, v_queue.queue_switch_step1, txid_current();
    end if;

    -- the table to be reused was current before the last rotation; it is free
    -- only when every consumer's position is past that rotation's step 2
    select min(s.sub_last_tick) into v_lowest_tick
      from pgq.subscription s
     where s.sub_queue = v_queue.queue_id;
    if v_lowest_tick is not null then
        select txid_snapshot_xmin(t.tick_snapshot) into v_lowest_xmin
          from pgq.tick t
         where t.tick_queue = v_queue.queue_id
           and t.tick_id = v_lowest_tick;
        if not found then
            raise exception 'queue % maint failure: tick % not found',
                i_queue_name, v_lowest_tick;
        end if;
        if v_lowest_xmin <= v_queue.queue_switch_step2 then
            return 0;
        end if;
    end if;

    v_next := (v_queue.queue_cur_table + 1) % v_queue.queue_ntables;
    v_table := pgq.quote_fqname(v_queue.queue_data_pfx || '_' || v_next::text);

    begin
        execute 'lock table ' || v_table || ' nowait';
        execute 'truncate ' || v_table;
    exception
        when lock_not_available then
            return 0;
    end;

    update pgq.queue
       set queue_cur_table = v_next,
           queue_switch_time = current_timestamp,
           queue_switch_step1 = txid_current(),
           queue_switch_step2 = null
     where queue_id = v_queue.queue_id;

    -- keep ticks back to the previous rotation: consumers can still be moved
    -- back that far, and a large tick table keeps index scans attractive
    delete from pgq.tick t
     where t.tick_queue = v_queue.queue_id
       and txid_snapshot_xmin(t.tick_snapshot) < v_queue.queue_switch_step2;

    return 0;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.maint_rotate_tables_step2(0)
--
-- Second half of rotation, run in a later transaction than step 1: record a
-- txid assigned after the rotation became visible.  Transactions with a
-- higher txid write only to the new table.
--
-- Returns:
--   0
-- ----------------------------------------------------------------------------
create or replace function pgq.maint_rotate_tables_step2()
returns integer
language plpgsql
as $$
begin
    -- A queue whose row a REPEATABLE READ producer holds FOR SHARE is left for
    -- the next round: until then its batches read both tables, which is
    -- always safe, and maintenance does not stall behind the producer.
    update pgq.queue
       set queue_switch_step2 = txid_current()
     where queue_id in (select q.queue_id
                          from pgq.queue q
                         where q.queue_switch_step2 is null
                           for no key update skip locked);
    return 0;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.maint_retry_events(0)
--
-- Move up to 10 due retry events back into their queues (same ev_id, ev_time
-- and owner, new txid).  Only one mover runs at a time; inserts into the
-- retry queue are not blocked.  Call again until it returns 0.
--
-- Returns:
--   number of events moved.
-- ----------------------------------------------------------------------------
create or replace function pgq.maint_retry_events()
returns integer
language plpgsql
as $$
declare
    v_ev    record;
    v_moved integer := 0;
begin
    lock table pgq.retry_queue in share update exclusive mode;

    for v_ev in
        select q.queue_name, r.ev_id, r.ev_time, r.ev_owner, r.ev_retry,
               r.ev_type, r.ev_data, r.ev_extra1, r.ev_extra2, r.ev_extra3, r.ev_extra4
          from pgq.retry_queue r
          join pgq.queue q on q.queue_id = r.ev_queue
         where r.ev_retry_after <= current_timestamp
         order by r.ev_retry_after
         limit 10
    loop
        perform pgq.insert_event_raw(v_ev.queue_name, v_ev.ev_id, v_ev.ev_time,
                    v_ev.ev_owner, v_ev.ev_retry, v_ev.ev_type, v_ev.ev_data,
                    v_ev.ev_extra1, v_ev.ev_extra2, v_ev.ev_extra3, v_ev.ev_extra4);
        delete from pgq.retry_queue r
         where r.ev_owner = v_ev.ev_owner
           and r.ev_id = v_ev.ev_id;
        v_moved := v_moved + 1;
    end loop;
    return v_moved;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.maint_tables_to_vacuum(0)
--
-- Tables with many short-lived rows that need frequent VACUUM.  Empty when
-- autovacuum is on.  Only tables that exist are listed, as unquoted
-- 'schema.table' text, in a fixed order.
--
-- Returns:
--   set of table names.
-- ----------------------------------------------------------------------------
create or replace function pgq.maint_tables_to_vacuum()
returns setof text
language plpgsql
as $$
begin
    if current_setting('autovacuum') = 'on' then
        return;
    end if;

    return query
        select n.nspname::text || '.' || c.relname::text
          from (values (1, 'pgq', 'subscription'),
                       (2, 'pgq', 'consumer'),
                       (3, 'pgq', 'queue'),
                       (4, 'pgq', 'tick'),
                       (5, 'pgq', 'retry_queue'),
                       (6, 'pgq_ext', 'completed_tick'),
                       (7, 'pgq_ext', 'completed_batch'),
                       (8, 'pgq_ext', 'completed_event'),
                       (9, 'pgq_ext', 'partial_batch'),
                       (10, 'pgq_node', 'local_state'),
                       (11, 'londiste', 'seq_info'),
                       (12, 'txid', 'epoch'),
                       (13, 'londiste', 'completed')) as w(ord, scm, tbl)
          join pg_catalog.pg_namespace n on n.nspname = w.scm
          join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = w.tbl
         order by w.ord;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.maint_operations(0)
--
-- The maintenance work to do now, in order: rotation step 1 for each due
-- queue, rotation step 2 if any rotation is pending, each queue's
-- queue_extra_maint functions (argument: the queue name), VACUUM of
-- maint_tables_to_vacuum(), then pgq_node.maint_watermark per root queue,
-- londiste.root_check_seqs per root queue with local sequences and
-- londiste.periodic_maintenance, when those functions exist.
--
-- Each function takes zero or one argument and returns 1 to be called again
-- at once, 0 when done.
--
-- Returns:
--   rows (func_name, func_arg).
-- ----------------------------------------------------------------------------
create or replace function pgq.maint_operations(out func_name text, out func_arg text)
returns setof record
language plpgsql
as $$
declare
    v_rotations integer := 0;
    v_queue     text;
    v_funcs     text[];
begin
    func_name := 'pgq.maint_rotate_tables_step1';
    for func_arg in
        select q.queue_name from pgq.queue q
         where q.queue_rotation_period is not null
           and q.queue_switch_step2 is not null
           and q.queue_switch_time + q.queue_rotation_period < current_timestamp
         order by 1
    loop
        v_rotations := v_rotations + 1;
        return next;
    end loop;

    if v_rotations = 0 then
        select count(*) into v_rotations
          from pgq.queue q
         where q.queue_rotation_period is not null
           and q.queue_switch_step2 is null;
    end if;
    if v_rotations > 0 then
        func_name := 'pgq.maint_rotate_tables_step2';
        func_arg := null;
        return next;
    end if;

    -- the column is missing on installs that upgrade_schema has not updated
    if exists (select 1 from pg_catalog.pg_attribute
                where attrelid = 'pgq.queue'::regclass
                  and attname = 'queue_extra_maint'
                  and not attisdropped)
    then
        for v_queue, v_funcs in
            select q.queue_name, q.queue_extra_maint from pgq.queue q
             where q.queue_extra_maint is not null
             order by 1
        loop
            func_arg := v_queue;
            foreach func_name in array v_funcs loop
                return next;
            end loop;
        end loop;
    end if;

    func_name := 'vacuum';
    for func_arg in select t from pgq.maint_tables_to_vacuum() t loop
        return next;
    end loop;

    if exists (select 1 from pg_catalog.pg_proc p
                 join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                where n.nspname = 'pgq_node' and p.proname = 'maint_watermark')
    then
        func_name := 'pgq_node.maint_watermark';
        for func_arg in
            select ni.queue_name from pgq_node.node_info ni
             where ni.node_type = 'root'
        loop
            return next;
        end loop;
    end if;

    if exists (select 1 from pg_catalog.pg_proc p
                 join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                where n.nspname = 'londiste' and p.proname = 'root_check_seqs')
    then
        func_name := 'londiste.root_check_seqs';
        for func_arg in
            select distinct si.queue_name
              from londiste.seq_info si
              join pgq_node.node_info ni on ni.queue_name = si.queue_name
             where si.local
               and ni.node_type = 'root'
        loop
            return next;
        end loop;
    end if;

    if exists (select 1 from pg_catalog.pg_proc p
                 join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                where n.nspname = 'londiste' and p.proname = 'periodic_maintenance')
    then
        func_name := 'londiste.periodic_maintenance';
        func_arg := null;
        return next;
    end if;

    return;
end;
$$;
