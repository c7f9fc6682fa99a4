-- pgq core, part 30: putting events into a queue.
--
-- Every insert goes through pgq._insert_event_dispatch(), a PL/pgSQL function
-- that pgq._refresh_insert_dispatch() generates from the rows of pgq.queue.
-- It reads the queue row with a static statement and writes the event with a
-- static INSERT chosen by queue id and current table, and takes nextval() of
-- the queue's event sequence by a constant regclass: every plan is made once
-- per session and then reused.  `EXECUTE`, which replans on every call, is
-- left only as the fallback for a queue the dispatcher was not generated for.
-- See docs/sql-design.md.


-- ----------------------------------------------------------------------------
-- pgq._dispatch_branches(7)   [internal, used by the generator]
--
-- The body of the dispatcher's search for queues at positions i_lo..i_hi of
-- the sorted arrays: a binary search on queue id down to runs of at most four
-- ids, each tested for equality together with the data prefix and sequence
-- name the code was made for (so a row changed behind our back is not
-- matched: it falls through to the dynamic path instead of writing to a wrong
-- table).  Within a queue, one branch per child table.
--
-- Returns:
--   PL/pgSQL statements, indented by i_depth levels.
-- ----------------------------------------------------------------------------
create or replace function pgq._dispatch_branches(
    i_ids int4[], i_pfxs text[], i_seqs text[], i_ntables int4[],
    i_lo int4, i_hi int4, i_depth int4)
returns text
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
declare
    v_ind   text := repeat('    ', i_depth);
    v_mid   int4;
    v_out   text := '';
    v_kw    text := 'if';
    v_tkw   text;
    v_tbl   text;
    v_seq   text;
begin
    if i_hi < i_lo then
        return '';
    end if;
    if i_hi - i_lo >= 4 then
        v_mid := (i_lo + i_hi + 1) / 2;
        return v_ind || 'if q_id < ' || i_ids[v_mid] || ' then' || E'\n'
            || pgq._dispatch_branches(i_ids, i_pfxs, i_seqs, i_ntables, i_lo, v_mid - 1, i_depth + 1)
            || v_ind || 'else' || E'\n'
            || pgq._dispatch_branches(i_ids, i_pfxs, i_seqs, i_ntables, v_mid, i_hi, i_depth + 1)
            || v_ind || 'end if;' || E'\n';
    end if;
    for i in i_lo .. i_hi loop
        v_seq := quote_literal(pgq.quote_fqname(i_seqs[i])) || '::regclass';
        v_out := v_out || v_ind || v_kw || ' q_id = ' || i_ids[i]
            || ' and q_pfx = ' || quote_literal(i_pfxs[i])
            || ' and q_seq = ' || quote_literal(i_seqs[i]) || ' then' || E'\n';
        v_tkw := 'if';
        for t in 0 .. i_ntables[i] - 1 loop
            v_tbl := pgq.quote_fqname(i_pfxs[i] || '_' || t);
            v_out := v_out
                || v_ind || '    ' || v_tkw || ' q_cur = ' || t || ' then' || E'\n'
                || v_ind || '        v_id := pg_catalog.nextval(' || v_seq || ');' || E'\n'
                || v_ind || '        insert into ' || v_tbl
                || ' (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,'
                || ' ev_extra1, ev_extra2, ev_extra3, ev_extra4)' || E'\n'
                || v_ind || '            values (coalesce(i_ev_id, v_id),'
                || ' coalesce(i_ev_time, pg_catalog.now()), i_ev_owner, i_ev_retry,'
                || ' i_ev_type, i_ev_data, i_ev_extra1, i_ev_extra2, i_ev_extra3, i_ev_extra4);'
                || E'\n'
                || v_ind || '        return coalesce(i_ev_id, v_id);' || E'\n';
            v_tkw := 'elsif';
        end loop;
        if i_ntables[i] > 0 then
            v_out := v_out || v_ind || '    end if;' || E'\n';
        end if;
        v_kw := 'elsif';
    end loop;
    return v_out || v_ind || 'end if;' || E'\n';
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq._refresh_insert_dispatch(0)   [internal]
--
-- (Re)generate pgq._insert_event_dispatch(11) from the rows of pgq.queue.
-- Called by create_queue, drop_queue, upgrade_schema and the installer.
--
-- The generated function does what pgq.insert_event_raw promises:
--   1. queue name given ('Queue name must not be NULL'), queue row found
--      ('No such queue');
--   2. a value of the event sequence is consumed, also when ev_id is given
--      and also when the insert is then refused: new sequence values are what
--      tells the ticker that something happened, and ids keep pgq's gaps;
--   3. inserts allowed (a queue with queue_disable_insert accepts events only
--      when session_replication_role = replica), then queue_per_tx_limit,
--      counted per queue in a setting local to the transaction;
--   4. the row goes to the queue's current child table; ev_txid comes from
--      the column default.
-- These errors carry SQLSTATE XX000, as the C implementation's do.
--
-- Two guards keep rotation from losing an event (see the rotation functions
-- in 60_maint.sql, which read every event of a txid above switch_step2 from the
-- new table only):
--   * the transaction id is taken before the queue row is read, so a READ
--     COMMITTED producer that still sees the old current table always has a
--     txid below the switch_step2 of the rotation it missed;
--   * under REPEATABLE READ or SERIALIZABLE the snapshot may be older than the
--     transaction id, so the row is read FOR SHARE: a rotation that committed
--     after the snapshot makes the insert fail with a serialization error
--     (40001, retry the transaction) instead of writing where no batch looks,
--     and a rotation not yet made waits for the producer to finish.
--
-- Takes pgq.queue in share row exclusive mode so two regenerations (or a
-- regeneration and a queue being created) never interleave.
--
-- Returns:
--   the number of queues the dispatcher handles with static statements.
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
    v_seqs      text[];
    v_ntables   int4[];
    v_n         int4;
    v_nb        int4;
    v_size      constant int4 := 16;
    v_branches  text;
    v_calls     text := '';
    v_bucket    text;
    v_sig       text;
    v_proc      regprocedure;
    v_tag       text := '$dispatch$';
    v_i         int4 := 0;
    v_body      text;
    v_producer  constant text := E'    i_ev_id bigint;\n'
        || E'    i_ev_time timestamptz := now();\n    i_ev_owner int4;\n    i_ev_retry int4;\n';
begin
    lock table pgq.queue in share row exclusive mode;

    -- Static code in buckets of 16 queues (by id): bucket 0 inside the entry
    -- points themselves, every further bucket in its own function
    -- pgq._insert_event_bucket_<n>, called from the entry points.  Every session
    -- compiles a function's whole body on its first call, and create_queue
    -- regenerates the code: buckets keep both small however many queues there
    -- are (one generated INSERT per table is some 2 KB of text per queue).
    select coalesce(array_agg(q.queue_id order by q.queue_id), '{}'),
           coalesce(array_agg(q.queue_data_pfx order by q.queue_id), '{}'),
           coalesce(array_agg(q.queue_event_seq order by q.queue_id), '{}'),
           coalesce(array_agg(q.queue_ntables order by q.queue_id), '{}')
      into v_ids, v_pfxs, v_seqs, v_ntables
      from pgq.queue q;
    v_n := coalesce(array_length(v_ids, 1), 0);
    v_nb := (v_n + v_size - 1) / v_size;
    v_branches := pgq._dispatch_branches(v_ids, v_pfxs, v_seqs, v_ntables, 1, least(v_n, v_size), 1);

    -- names are embedded quoted; still, pick a dollar-quote tag that the
    -- generated text cannot contain
    while strpos(v_branches, v_tag) > 0 loop
        v_i := v_i + 1;
        v_tag := '$dispatch_' || v_i || '$';
    end loop;

    for b in 1 .. v_nb - 1 loop
        v_bucket := pgq._dispatch_branches(v_ids, v_pfxs, v_seqs, v_ntables,
                                           b * v_size + 1, least(v_n, b * v_size + v_size), 1);
        v_sig := 'pgq._insert_event_bucket_' || b
            || '(q_id int4, q_pfx text, q_seq text, q_cur int4,'
            || ' i_ev_id bigint, i_ev_time timestamptz, i_ev_owner int4, i_ev_retry int4,'
            || ' i_ev_type text, i_ev_data text, i_ev_extra1 text, i_ev_extra2 text,'
            || ' i_ev_extra3 text, i_ev_extra4 text)';
        execute 'create or replace function ' || v_sig
            || ' returns bigint language plpgsql as ' || v_tag
            || E'\ndeclare\n    v_id bigint;\nbegin\n' || v_bucket
            || E'    return null;\nend;\n' || v_tag;
        v_proc := ('pgq._insert_event_bucket_' || b || '(int4, text, text, int4, bigint,'
                   || ' timestamptz, int4, int4, text, text, text, text, text, text)')::regprocedure;
        execute 'revoke all on function ' || v_proc::text || ' from public';
        execute 'grant execute on function ' || v_proc::text || ' to pgq_admin';
    end loop;
    if v_nb > 1 then
        -- the entry points call a bucket by its first queue id, highest first
        for b in reverse v_nb - 1 .. 1 loop
            v_calls := v_calls || case when b = v_nb - 1 then '    if' else '    elsif' end
                || ' q_id >= ' || v_ids[b * v_size + 1] || ' then' || E'\n'
                || '        v_id := pgq._insert_event_bucket_' || b
                || E'(q_id, q_pfx, q_seq, q_cur, i_ev_id, i_ev_time, i_ev_owner, i_ev_retry,\n'
                || E'            i_ev_type, i_ev_data, i_ev_extra1, i_ev_extra2, i_ev_extra3, i_ev_extra4);\n'
                || E'        if v_id is not null then\n            return v_id;\n        end if;\n';
        end loop;
        v_calls := v_calls || E'    end if;\n';
    end if;
    -- buckets left over from a time with more queues
    for v_proc in
        select p.oid::regprocedure
          from pg_catalog.pg_proc p
         where p.pronamespace = 'pgq'::regnamespace
           and p.proname ~ '^_insert_event_bucket_[0-9]+$'
           and substring(p.proname from '[0-9]+$')::int4 >= greatest(v_nb, 1)
    loop
        execute 'drop function ' || v_proc::text;
    end loop;

    -- One body, three functions: the producers' entry points pgq.insert_event(7)
    -- and pgq.insert_event(3) (owner's rights, fixed ev_id/ev_time/owner/retry)
    -- and the general pgq._insert_event_dispatch(11) behind insert_event_raw.
    -- Keeping the hot path in one PL/pgSQL call is worth generated copies: every
    -- call of a function with a SET clause costs a search_path switch (about
    -- 1 us on PostgreSQL 15), which a wrapper would pay on top of its own call.
    v_body := $def$
    q_id        int4;
    q_pfx       text;
    q_seq       text;
    q_cur       int4;
    q_disabled  boolean;
    q_limit     int4;
    v_id        bigint;
    v_counter   text;
    v_count     int4;
begin
    if i_queue_name is null then
        raise exception 'Queue name must not be NULL' using errcode = 'XX000';
    end if;

    -- our txid first: see pgq._refresh_insert_dispatch
    v_id := pg_catalog.txid_current();
    if pg_catalog.current_setting('transaction_isolation')
           not in ('read committed', 'read uncommitted')
    then
        select qr.queue_id, qr.queue_data_pfx, qr.queue_event_seq, qr.queue_cur_table,
               qr.queue_disable_insert, qr.queue_per_tx_limit
          into q_id, q_pfx, q_seq, q_cur, q_disabled, q_limit
          from pgq.queue qr
         where qr.queue_name = i_queue_name
           for share;
    else
        select qr.queue_id, qr.queue_data_pfx, qr.queue_event_seq, qr.queue_cur_table,
               qr.queue_disable_insert, qr.queue_per_tx_limit
          into q_id, q_pfx, q_seq, q_cur, q_disabled, q_limit
          from pgq.queue qr
         where qr.queue_name = i_queue_name;
    end if;
    if not found then
        raise exception 'No such queue' using errcode = 'XX000';
    end if;

    if q_disabled or q_limit is not null then
        if q_disabled
           and pg_catalog.current_setting('session_replication_role') <> 'replica'
        then
            perform pg_catalog.nextval(q_seq::regclass);
            raise exception 'Insert into queue disallowed' using errcode = 'XX000';
        end if;
        if q_limit is not null then
            v_counter := 'pgq.tx_event_count_' || q_id;
            v_count := coalesce(nullif(pg_catalog.current_setting(v_counter, true), '')::int4, 0) + 1;
            if v_count > q_limit then
                perform pg_catalog.nextval(q_seq::regclass);
                raise exception 'Queue ''%'' allows max % events from one TX', i_queue_name, q_limit
                    using errcode = 'XX000';
            end if;
            perform pg_catalog.set_config(v_counter, v_count::text, true);
        end if;
    end if;

$def$ || v_branches || v_calls || $def$
    -- a queue this version of the dispatcher does not know: build the INSERT
    v_id := pg_catalog.nextval(q_seq::regclass);
    execute 'insert into ' || pgq.quote_fqname(q_pfx || '_' || q_cur)
        || ' (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,'
        || ' ev_extra1, ev_extra2, ev_extra3, ev_extra4)'
        || ' values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)'
        using coalesce(i_ev_id, v_id), coalesce(i_ev_time, pg_catalog.now()),
              i_ev_owner, i_ev_retry, i_ev_type, i_ev_data,
              i_ev_extra1, i_ev_extra2, i_ev_extra3, i_ev_extra4;
    return coalesce(i_ev_id, v_id);
end;
$def$;

    execute 'create or replace function pgq._insert_event_dispatch('
        || ' i_queue_name text, i_ev_id bigint, i_ev_time timestamptz,'
        || ' i_ev_owner int4, i_ev_retry int4, i_ev_type text, i_ev_data text,'
        || ' i_ev_extra1 text, i_ev_extra2 text, i_ev_extra3 text, i_ev_extra4 text)'
        || ' returns bigint language plpgsql as ' || v_tag
        || E'\ndeclare\n' || v_body || v_tag;

    -- pgq.insert_event(7) and (3), the producers' entry points: owner's rights,
    -- pinned search_path, ev_time now(), no id/owner/retry
    execute 'create or replace function pgq.insert_event('
        || ' queue_name text, ev_type text, ev_data text,'
        || ' ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text)'
        || ' returns bigint language plpgsql security definer'
        || ' set search_path = pg_catalog, pg_temp as ' || v_tag || E'\ndeclare\n'
        || E'    i_queue_name alias for $1;\n    i_ev_type alias for $2;\n'
        || E'    i_ev_data alias for $3;\n    i_ev_extra1 alias for $4;\n'
        || E'    i_ev_extra2 alias for $5;\n    i_ev_extra3 alias for $6;\n'
        || E'    i_ev_extra4 alias for $7;\n'
        || v_producer || v_body || v_tag;
    execute 'create or replace function pgq.insert_event('
        || ' queue_name text, ev_type text, ev_data text)'
        || ' returns bigint language plpgsql security definer'
        || ' set search_path = pg_catalog, pg_temp as ' || v_tag || E'\ndeclare\n'
        || E'    i_queue_name alias for $1;\n    i_ev_type alias for $2;\n'
        || E'    i_ev_data alias for $3;\n    i_ev_extra1 text;\n'
        || E'    i_ev_extra2 text;\n    i_ev_extra3 text;\n    i_ev_extra4 text;\n'
        || v_producer || v_body || v_tag;

    return v_n;
end;
$gen$;

-- The dispatcher exists from here on; regenerated for the queues that exist.
do $$ begin perform pgq._refresh_insert_dispatch(); end $$;


-- ----------------------------------------------------------------------------
-- pgq.insert_event_raw(11)
--
-- Insert one event with every field given.  Used by retry maintenance (which
-- passes the original ev_id, ev_time and ev_owner) and by tools that copy
-- events.  The work is done by the generated dispatcher (see
-- pgq._refresh_insert_dispatch for the checks and their order); this is a
-- plain SQL function, so the planner inlines it into the caller.
--
-- Parameters:
--   queue_name  queue.
--   ev_id       event id; NULL = a new value from the queue's sequence.
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
language sql
as $$
    select pgq._insert_event_dispatch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11);
$$;


-- pgq.insert_event(7) and pgq.insert_event(3) are generated by
-- pgq._refresh_insert_dispatch() above: insert an event (with four extra
-- fields, or with NULL extras), time now(), with the owner's rights so that
-- members of pgq_writer need no rights on the event tables.  pgq 3.5's
-- insert_event(3) is an invoker wrapper around insert_event(7); ours runs the
-- same body directly (README, intended difference 10).

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
