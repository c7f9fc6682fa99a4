-- pgq core, part 30: putting events into a queue.
--
-- The hot path is pgq.insert_event() -> pgq.insert_event_raw() ->
-- pgq._insert_event_dispatch().  None of them runs dynamic SQL for a queue the
-- dispatcher knows: the queue row is read by a static statement and the row is
-- written by a static INSERT chosen by queue id and current table, so every
-- plan is made once per session and then reused.  See docs/sql-design.md.


-- ----------------------------------------------------------------------------
-- pgq._insert_event_dispatch(13)   [internal, generated]
--
-- Write one event row into the current child table of a queue.
--
-- This is the initial version: it only has the dynamic path.
-- pgq._refresh_insert_dispatch() (below) replaces it with a version holding
-- one static INSERT per known (queue, child table) and keeps this dynamic
-- INSERT as the fallback for tables it does not know.
--
-- Parameters:
--   x_queue_id, x_cur_table, x_data_pfx  the queue row's id, queue_cur_table
--                                        and queue_data_pfx.
--   x_ev_id .. x_ev_extra4               column values; ev_txid comes from the
--                                        column default.
-- Returns:
--   x_ev_id.
-- ----------------------------------------------------------------------------
create or replace function pgq._insert_event_dispatch(
    x_queue_id int4, x_cur_table int4, x_data_pfx text,
    x_ev_id bigint, x_ev_time timestamptz, x_ev_owner int4, x_ev_retry int4,
    x_ev_type text, x_ev_data text,
    x_ev_extra1 text, x_ev_extra2 text, x_ev_extra3 text, x_ev_extra4 text)
returns bigint
language plpgsql
as $$
begin
    execute 'insert into ' || pgq.quote_fqname(x_data_pfx || '_' || x_cur_table::text)
        || ' (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,'
        || ' ev_extra1, ev_extra2, ev_extra3, ev_extra4)'
        || ' values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)'
        using x_ev_id, x_ev_time, x_ev_owner, x_ev_retry, x_ev_type, x_ev_data,
              x_ev_extra1, x_ev_extra2, x_ev_extra3, x_ev_extra4;
    return x_ev_id;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq._refresh_insert_dispatch(0)   [internal]
--
-- Regenerate pgq._insert_event_dispatch from the rows of pgq.queue.
--
-- The generated body walks a binary search over the sorted queue ids (ranges
-- of up to four ids become a chain of equality tests); at a leaf it checks
-- that the data prefix is still the one the code was generated for, then picks
-- the INSERT for the current table.  Anything not matched (queue created
-- behind our back, prefix changed, table number out of range) drops through
-- to the dynamic INSERT at the end, so a stale dispatcher is slower but never
-- wrong.
--
-- Takes pgq.queue in share row exclusive mode so two regenerations (or a
-- regeneration and a queue being created) are serialized.
--
-- Returns:
--   number of queues the new dispatcher handles with static statements.
-- ----------------------------------------------------------------------------
create or replace function pgq._refresh_insert_dispatch()
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $gen$
declare
    v_ids       int4[];
    v_pfxs      text[];
    v_ntables   int4[];
    v_nqueues   int4;
    v_body      text := '';
    v_values    constant text :=
        ' (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,'
        ' ev_extra1, ev_extra2, ev_extra3, ev_extra4)'
        ' values (x_ev_id, x_ev_time, x_ev_owner, x_ev_retry, x_ev_type, x_ev_data,'
        ' x_ev_extra1, x_ev_extra2, x_ev_extra3, x_ev_extra4);';
    -- work stack: an entry is either text to emit (st_text not null) or a
    -- range st_lo..st_hi of queue positions to expand at indent st_depth
    st_text     text[] := '{}';
    st_lo       int4[] := '{}';
    st_hi       int4[] := '{}';
    st_depth    int4[] := '{}';
    v_top       int4;
    v_lo        int4;
    v_hi        int4;
    v_depth     int4;
    v_mid       int4;
    v_ind       text;
    v_kw        text;
    v_tkw       text;
    v_tag       text;
begin
    lock table pgq.queue in share row exclusive mode;

    select coalesce(array_agg(q.queue_id order by q.queue_id), '{}'),
           coalesce(array_agg(q.queue_data_pfx order by q.queue_id), '{}'),
           coalesce(array_agg(q.queue_ntables order by q.queue_id), '{}')
      into v_ids, v_pfxs, v_ntables
      from pgq.queue q;
    v_nqueues := coalesce(array_length(v_ids, 1), 0);

    if v_nqueues > 0 then
        st_text := array[null::text];
        st_lo := array[1];
        st_hi := array[v_nqueues];
        st_depth := array[1];
    end if;

    loop
        v_top := coalesce(array_length(st_lo, 1), 0);
        exit when v_top = 0;
        -- pop
        v_lo := st_lo[v_top];
        v_hi := st_hi[v_top];
        v_depth := st_depth[v_top];
        if st_text[v_top] is not null then
            v_body := v_body || st_text[v_top];
        end if;
        st_text := st_text[1:v_top - 1];
        st_lo := st_lo[1:v_top - 1];
        st_hi := st_hi[1:v_top - 1];
        st_depth := st_depth[1:v_top - 1];
        continue when v_lo is null;

        v_ind := repeat('    ', v_depth);
        if v_hi - v_lo >= 4 then
            -- split: push in reverse order of emission
            v_mid := (v_lo + v_hi + 1) / 2;
            st_text := st_text || array[v_ind || 'end if;' || E'\n', null,
                                        v_ind || 'else' || E'\n', null];
            st_lo := st_lo || array[null, v_mid, null, v_lo];
            st_hi := st_hi || array[null, v_hi, null, v_mid - 1];
            st_depth := st_depth || array[null, v_depth + 1, null, v_depth + 1];
            v_body := v_body || v_ind || 'if x_queue_id < ' || v_ids[v_mid]::text
                || ' then' || E'\n';
            continue;
        end if;

        -- leaf: one test per queue, one INSERT per child table
        v_kw := 'if';
        for i in v_lo .. v_hi loop
            v_body := v_body || v_ind || v_kw || ' x_queue_id = ' || v_ids[i]::text
                || ' and x_data_pfx = ' || quote_literal(v_pfxs[i]) || ' then' || E'\n';
            v_tkw := 'if';
            for t in 0 .. v_ntables[i] - 1 loop
                v_body := v_body
                    || v_ind || '    ' || v_tkw || ' x_cur_table = ' || t::text || ' then' || E'\n'
                    || v_ind || '        insert into '
                    || pgq.quote_fqname(v_pfxs[i] || '_' || t::text) || v_values || E'\n'
                    || v_ind || '        return x_ev_id;' || E'\n';
                v_tkw := 'elsif';
            end loop;
            if v_ntables[i] > 0 then
                v_body := v_body || v_ind || '    end if;' || E'\n';
            end if;
            v_kw := 'elsif';
        end loop;
        v_body := v_body || v_ind || 'end if;' || E'\n';
    end loop;

    -- the generated text quotes every name it embeds; pick a dollar-quote tag
    -- that cannot occur inside it
    v_tag := '$dispatch$';
    v_mid := 0;
    while strpos(v_body, v_tag) > 0 loop
        v_mid := v_mid + 1;
        v_tag := '$dispatch_' || v_mid::text || '$';
    end loop;

    execute $def$
create or replace function pgq._insert_event_dispatch(
    x_queue_id int4, x_cur_table int4, x_data_pfx text,
    x_ev_id bigint, x_ev_time timestamptz, x_ev_owner int4, x_ev_retry int4,
    x_ev_type text, x_ev_data text,
    x_ev_extra1 text, x_ev_extra2 text, x_ev_extra3 text, x_ev_extra4 text)
returns bigint
language plpgsql
as $def$ || v_tag || $def$
-- Generated by pgq._refresh_insert_dispatch(); do not edit.
begin
$def$ || v_body || $def$
    -- not known to this version of the dispatcher: build the INSERT
    execute 'insert into ' || pgq.quote_fqname(x_data_pfx || '_' || x_cur_table::text)
        || ' (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,'
        || ' ev_extra1, ev_extra2, ev_extra3, ev_extra4)'
        || ' values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)'
        using x_ev_id, x_ev_time, x_ev_owner, x_ev_retry, x_ev_type, x_ev_data,
              x_ev_extra1, x_ev_extra2, x_ev_extra3, x_ev_extra4;
    return x_ev_id;
end;
$def$ || v_tag;

    return v_nqueues;
end;
$gen$;


-- ----------------------------------------------------------------------------
-- pgq.insert_event_raw(11)
--
-- Insert one event with every field given.  Used by pgq.insert_event() and by
-- retry maintenance (which passes the original ev_id, ev_time and ev_owner).
--
-- A value of the queue's event sequence is always consumed, also when ev_id
-- is given and also when the insert is then refused: new sequence values are
-- what tells the ticker that something happened.
--
-- Checks, in order: queue name given ('Queue name must not be NULL'), queue
-- exists ('No such queue'), inserts allowed (a queue with queue_disable_insert
-- accepts events only when session_replication_role = replica), and the
-- per-transaction limit queue_per_tx_limit (counted per queue in a setting
-- local to the transaction; only looked at when a limit is set).
--
-- Parameters:
--   queue_name  queue.
--   ev_id       event id; NULL = the value just taken from the sequence.
--   ev_time     event time; NULL = now().
--   ev_owner    subscription id for a private (retry) event, NULL = everybody.
--   ev_retry    retry count, NULL for a fresh event.
--   ev_type, ev_data, ev_extra1 .. ev_extra4   payload.
-- Returns:
--   the event id.
-- ----------------------------------------------------------------------------
create or replace function pgq.insert_event_raw(
    queue_name text, ev_id bigint, ev_time timestamptz,
    ev_owner integer, ev_retry integer, ev_type text, ev_data text,
    ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text)
returns bigint
language plpgsql
as $$
declare
    v_queue_id  int4;
    v_pfx       text;
    v_cur_table int4;
    v_next_id   bigint;
    v_disabled  boolean;
    v_limit     int4;
    v_counter   text;
    v_count     int4;
begin
    if $1 is null then
        raise exception 'Queue name must not be NULL';
    end if;

    select qr.queue_id, qr.queue_data_pfx, qr.queue_cur_table,
           pg_catalog.nextval(qr.queue_event_seq::regclass),
           qr.queue_disable_insert, qr.queue_per_tx_limit
      into v_queue_id, v_pfx, v_cur_table, v_next_id, v_disabled, v_limit
      from pgq.queue qr
     where qr.queue_name = $1;
    if not found then
        raise exception 'No such queue';
    end if;

    if v_disabled then
        if pg_catalog.current_setting('session_replication_role') <> 'replica' then
            raise exception 'Insert into queue disallowed';
        end if;
    end if;

    if v_limit is not null then
        v_counter := 'pgq.tx_event_count_' || v_queue_id::text;
        v_count := coalesce(nullif(pg_catalog.current_setting(v_counter, true), '')::int4, 0) + 1;
        if v_count > v_limit then
            raise exception 'Queue ''%'' allows max % events from one TX', $1, v_limit;
        end if;
        perform pg_catalog.set_config(v_counter, v_count::text, true);
    end if;

    return pgq._insert_event_dispatch(v_queue_id, v_cur_table, v_pfx,
                coalesce($2, v_next_id), coalesce($3, pg_catalog.now()), $4, $5,
                $6, $7, $8, $9, $10, $11);
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.insert_event(7)
--
-- Insert an event with all four extra fields.  Runs with the owner's rights so
-- that members of pgq_writer need no rights on the event tables.
--
-- Same as pgq.insert_event_raw(queue_name, NULL, now(), NULL, NULL, ...), and
-- deliberately written out instead of calling it: this is the producers' hot
-- path and one PL/pgSQL call less is measurable.  Keep the checks and error
-- texts in step with pgq.insert_event_raw above.
--
-- Parameters:
--   queue_name, ev_type, ev_data, ev_extra1 .. ev_extra4
-- Returns:
--   the new event id.
-- ----------------------------------------------------------------------------
create or replace function pgq.insert_event(
    queue_name text, ev_type text, ev_data text,
    ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue_id  int4;
    v_pfx       text;
    v_cur_table int4;
    v_next_id   bigint;
    v_disabled  boolean;
    v_limit     int4;
    v_counter   text;
    v_count     int4;
begin
    if $1 is null then
        raise exception 'Queue name must not be NULL';
    end if;

    select qr.queue_id, qr.queue_data_pfx, qr.queue_cur_table,
           nextval(qr.queue_event_seq::regclass),
           qr.queue_disable_insert, qr.queue_per_tx_limit
      into v_queue_id, v_pfx, v_cur_table, v_next_id, v_disabled, v_limit
      from pgq.queue qr
     where qr.queue_name = $1;
    if not found then
        raise exception 'No such queue';
    end if;

    if v_disabled then
        if current_setting('session_replication_role') <> 'replica' then
            raise exception 'Insert into queue disallowed';
        end if;
    end if;

    if v_limit is not null then
        v_counter := 'pgq.tx_event_count_' || v_queue_id::text;
        v_count := coalesce(nullif(current_setting(v_counter, true), '')::int4, 0) + 1;
        if v_count > v_limit then
            raise exception 'Queue ''%'' allows max % events from one TX', $1, v_limit;
        end if;
        perform set_config(v_counter, v_count::text, true);
    end if;

    return pgq._insert_event_dispatch(v_queue_id, v_cur_table, v_pfx,
                v_next_id, now(), null, null, $2, $3, $4, $5, $6, $7);
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.insert_event(3)
--
-- Insert an event with type and data only: pgq.insert_event(7) with NULL
-- extra fields.  A plain SQL function, so the planner inlines it into the
-- calling query and the call costs nothing extra.
--
-- Parameters:
--   queue_name, ev_type, ev_data
-- Returns:
--   the new event id.
-- ----------------------------------------------------------------------------
create or replace function pgq.insert_event(queue_name text, ev_type text, ev_data text)
returns bigint
language sql
as $$
    select pgq.insert_event($1, $2, $3, null, null, null, null);
$$;


-- ----------------------------------------------------------------------------
-- pgq.current_event_table(1)
--
-- Name of the table that currently receives a queue's events, for bulk
-- loading (COPY).  Only valid until the end of the current transaction: a
-- rotation may switch tables afterwards.
--
-- Parameters:
--   x_queue_name  queue.
-- Returns:
--   '<data prefix>_<current table number>', e.g. pgq.event_2_0.
--   Errors: 'Event queue not found'; 'Writing to queue disabled' when inserts
--   are disabled and session_replication_role is not replica.
-- ----------------------------------------------------------------------------
create or replace function pgq.current_event_table(x_queue_name text)
returns text
language plpgsql
as $$
declare
    v_table     text;
    v_disabled  boolean;
begin
    select qr.queue_data_pfx || '_' || qr.queue_cur_table::text,
           qr.queue_disable_insert
      into v_table, v_disabled
      from pgq.queue qr
     where qr.queue_name = x_queue_name;
    if not found then
        raise exception 'Event queue not found';
    end if;
    if v_disabled
       and pg_catalog.current_setting('session_replication_role') <> 'replica'
    then
        raise exception 'Writing to queue disabled';
    end if;
    return v_table;
end;
$$;


-- The installer generates the dispatcher for the queues that already exist.
do $$ begin perform pgq._refresh_insert_dispatch(); end $$;
