-- file: 00_schema.sql
-- pgq core, part 00: the schema and the three NOLOGIN roles.
--
-- Roles are cluster-wide, so they may already exist (another database of the
-- cluster, or the C extension once installed here).  Creating them needs
-- CREATEROLE; when they exist already nothing is asked of the installer.

do $$
declare
    r text;
begin
    foreach r in array array['pgq_reader', 'pgq_writer'] loop
        if not exists (select 1 from pg_catalog.pg_roles where rolname = r) then
            execute 'create role ' || r;
        end if;
    end loop;
    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'pgq_admin') then
        create role pgq_admin in role pgq_reader, pgq_writer;
    end if;
end;
$$;

create schema if not exists pgq;
-- file: 10_tables.sql
-- pgq core, part 10: tables, sequences and indexes.
--
-- The layout is the compatibility surface: clients read pgq.queue, pgq.tick and
-- pgq.subscription directly, so names, types, defaults and constraint names
-- follow pgq 3.5 exactly.  Every statement is guarded so the file can run again
-- over an existing install; columns added by later pgq versions are added by
-- pgq.upgrade_schema(), not here.

-- pgq.queue: one row per queue, with its ticker and rotation settings.
create table if not exists pgq.queue (
    queue_id                    serial,
    queue_name                  text        not null,
    queue_ntables               integer     not null default 3,
    queue_cur_table             integer     not null default 0,
    queue_rotation_period       interval    not null default '2 hours',
    queue_switch_step1          bigint      not null default txid_current(),
    queue_switch_step2          bigint               default txid_current(),
    queue_switch_time           timestamptz not null default now(),
    queue_external_ticker       boolean     not null default false,
    queue_disable_insert        boolean     not null default false,
    queue_ticker_paused         boolean     not null default false,
    queue_ticker_max_count      integer     not null default 500,
    queue_ticker_max_lag        interval    not null default '3 seconds',
    queue_ticker_idle_period    interval    not null default '1 minute',
    queue_per_tx_limit          integer,
    queue_data_pfx              text        not null,
    queue_event_seq             text        not null,
    queue_tick_seq              text        not null,
    queue_extra_maint           text[],
    constraint queue_pkey primary key (queue_id),
    constraint queue_name_uq unique (queue_name)
);

-- pgq.tick: the snapshot history of every queue.
create table if not exists pgq.tick (
    tick_queue                  int4            not null,
    tick_id                     bigint          not null,
    tick_time                   timestamptz     not null default now(),
    tick_snapshot               txid_snapshot   not null default txid_current_snapshot(),
    tick_event_seq              bigint          not null,
    constraint tick_pkey primary key (tick_queue, tick_id),
    constraint tick_queue_fkey foreign key (tick_queue) references pgq.queue (queue_id)
);

-- Global batch ids.
create sequence if not exists pgq.batch_id_seq;

-- pgq.consumer: consumer names, shared by all queues.
create table if not exists pgq.consumer (
    co_id       serial,
    co_name     text        not null,
    constraint consumer_pkey primary key (co_id),
    constraint consumer_name_uq unique (co_name)
);

-- pgq.subscription: a consumer's position on one queue.  sub_id is not unique:
-- pgq_coop subconsumers share the main consumer's sub_id.
create table if not exists pgq.subscription (
    sub_id          serial      not null,
    sub_queue       int4        not null,
    sub_consumer    int4        not null,
    sub_last_tick   bigint,
    sub_active      timestamptz not null default now(),
    sub_batch       bigint,
    sub_next_tick   bigint,
    constraint subscription_pkey primary key (sub_queue, sub_consumer),
    constraint subscription_batch_idx unique (sub_batch),
    constraint sub_queue_fkey foreign key (sub_queue) references pgq.queue (queue_id),
    constraint sub_consumer_fkey foreign key (sub_consumer) references pgq.consumer (co_id)
);

-- pgq.event_template: the column layout every event table inherits.
create table if not exists pgq.event_template (
    ev_id           bigint          not null,
    ev_time         timestamptz     not null,
    ev_txid         bigint          not null default txid_current(),
    ev_owner        int4,
    ev_retry        int4,
    ev_type         text,
    ev_data         text,
    ev_extra1       text,
    ev_extra2       text,
    ev_extra3       text,
    ev_extra4       text
);

-- pgq.retry_queue: events a consumer asked to see again later.
create table if not exists pgq.retry_queue (
    ev_retry_after  timestamptz     not null,
    ev_queue        int4            not null,
    like pgq.event_template,
    constraint rq_pkey primary key (ev_owner, ev_id),
    constraint rq_queue_id_fkey foreign key (ev_queue) references pgq.queue (queue_id)
);
alter table pgq.retry_queue alter column ev_owner set not null;
alter table pgq.retry_queue alter column ev_txid drop not null;
create index if not exists rq_retry_idx on pgq.retry_queue (ev_retry_after);
-- file: 20_internal.sql
-- pgq core, part 20: small helpers for names and sequences.
--
-- Queue rows store object names as text ('pgq.event_3_id_seq').  These helpers
-- turn such a name into a safely quoted identifier and read or move the
-- sequences behind them.  The rule for a name is the one pgq has always used:
-- the first dot separates the schema from the object, and a name without a
-- dot lives in schema public.


-- ----------------------------------------------------------------------------
-- pgq.quote_fqname(1)
--
-- Quote a schema-qualified name for use inside SQL text.
--
-- Parameters:
--   i_name  'schema.object' (split at the first dot) or 'object' (schema
--           public).
-- Returns:
--   quote_ident(schema) || '.' || quote_ident(object), e.g.
--   'Foo.bar baz' -> "Foo"."bar baz", 'tbl' -> public.tbl.
-- ----------------------------------------------------------------------------
create or replace function pgq.quote_fqname(i_name text)
returns text
language sql
strict
immutable
as $$
    select case
        when pg_catalog.strpos($1, '.') = 0
            then 'public.' || pg_catalog.quote_ident($1)
        else pg_catalog.quote_ident(pg_catalog.substr($1, 1, pg_catalog.strpos($1, '.') - 1))
             || '.'
             || pg_catalog.quote_ident(pg_catalog.substr($1, pg_catalog.strpos($1, '.') + 1))
    end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.seq_getval(1)
--
-- Read a sequence's last_value without consuming a value.
--
-- Note that last_value does not say whether nextval() was ever called: a
-- fresh sequence and one that has handed out its first value both report 1.
-- The ticker therefore uses pgq._event_seq_used() instead; this function keeps
-- the answers pgq always gave.
--
-- Parameters:
--   i_seq_name  sequence name, schema-qualified as for pgq.quote_fqname.
-- Returns:
--   last_value of the sequence.
-- ----------------------------------------------------------------------------
create or replace function pgq.seq_getval(i_seq_name text)
returns bigint
language plpgsql
strict
as $$
declare
    v_value bigint;
begin
    execute 'select last_value from ' || pgq.quote_fqname(i_seq_name)
        into v_value;
    return v_value;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.seq_setval(2)
--
-- Move a sequence forward, never backward.
--
-- Parameters:
--   i_seq_name   sequence name, schema-qualified as for pgq.quote_fqname.
--   i_new_value  wanted value.
-- Returns:
--   the sequence's value afterwards: i_new_value if it was ahead of the
--   current last_value, otherwise the unchanged last_value.
-- ----------------------------------------------------------------------------
create or replace function pgq.seq_setval(i_seq_name text, i_new_value bigint)
returns bigint
language plpgsql
strict
as $$
declare
    v_current bigint;
begin
    v_current := pgq.seq_getval(i_seq_name);
    if i_new_value <= v_current then
        return v_current;
    end if;
    perform pg_catalog.setval(pgq.quote_fqname(i_seq_name)::regclass, i_new_value);
    return i_new_value;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq._event_seq_used(1)   [internal]
--
-- Number of ids a queue's event sequence has handed out so far, as the ticker
-- needs it: the last value returned when the sequence has been called, 0 for
-- a sequence nobody has called yet.  (pgq itself reads last_value, which is 1
-- in both cases, so the first event of a new queue went unnoticed.)
--
-- Parameters:
--   i_seq_name  sequence name, schema-qualified as for pgq.quote_fqname.
-- Returns:
--   last value handed out, or 0.
-- ----------------------------------------------------------------------------
create or replace function pgq._event_seq_used(i_seq_name text)
returns bigint
language sql
strict
as $$
    select coalesce(pg_catalog.pg_sequence_last_value(pgq.quote_fqname($1)::regclass), 0);
$$;
-- file: 30_insert_event.sql
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
-- file: 40_queue_admin.sql
-- pgq core, part 40: creating, configuring and dropping queues.
--
-- A queue is a row in pgq.queue plus, for queue id N:
--   sequences  pgq.event_N_id_seq (event ids), pgq.event_N_tick_seq (tick ids)
--   parent     pgq.event_N, inheriting pgq.event_template
--   children   pgq.event_N_0 .. pgq.event_N_<ntables-1>, inheriting pgq.event_N,
--              each with ev_id defaulting to the event sequence and an index
--              event_N_<i>_txid_idx on ev_txid.
-- Creating and dropping a queue also regenerates the insert dispatcher
-- (30_insert_event.sql) while holding pgq.queue in share row exclusive mode.


-- ----------------------------------------------------------------------------
-- pgq._grant_perms_from(4)
--
-- Give a table the same privileges another table has (CREATE TABLE has no way
-- to copy grants).  The table owner's own rights are copied as grantable, the
-- way information_schema reports them.
--
-- Parameters:
--   src_schema, src_table  table to copy from.
--   dst_schema, dst_table  table to grant on.
-- Returns:
--   1
-- ----------------------------------------------------------------------------
create or replace function pgq._grant_perms_from(
    src_schema text, src_table text, dst_schema text, dst_table text)
returns integer
language plpgsql
strict
as $$
declare
    v_dst   text;
    v_grant record;
begin
    v_dst := pg_catalog.quote_ident(dst_schema) || '.' || pg_catalog.quote_ident(dst_table);

    for v_grant in
        select case when a.grantee = 0 then 'public'
                    else pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee))
               end as grantee,
               a.privilege_type,
               (a.is_grantable
                or (a.grantee <> 0 and pg_catalog.pg_has_role(a.grantee, c.relowner, 'USAGE')))
                   as grantable
          from pg_catalog.pg_class c
          join pg_catalog.pg_namespace n on n.oid = c.relnamespace
         cross join lateral pg_catalog.aclexplode(
                   coalesce(c.relacl, pg_catalog.acldefault('r', c.relowner)))
                   with ordinality as a(grantor, grantee, privilege_type, is_grantable, pos)
         where n.nspname = src_schema
           and c.relname = src_table
         order by a.pos
    loop
        execute 'grant ' || v_grant.privilege_type || ' on ' || v_dst
            || ' to ' || v_grant.grantee
            || case when v_grant.grantable then ' with grant option' else '' end;
    end loop;

    return 1;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.grant_perms(1)
--
-- Set the privileges of a queue's objects: both sequences readable by
-- everybody, the event sequence usable by pgq_admin, and the parent and
-- child event tables granted like pgq.event_template.
--
-- Parameters:
--   x_queue_name  queue.
-- Returns:
--   1; error 'Queue not found' for an unknown queue.
-- ----------------------------------------------------------------------------
create or replace function pgq.grant_perms(x_queue_name text)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue     pgq.queue%rowtype;
    v_schema    text;
    v_table     text;
begin
    select * into v_queue from pgq.queue where queue_name = x_queue_name;
    if not found then
        raise exception 'Queue not found';
    end if;

    if strpos(v_queue.queue_data_pfx, '.') > 0 then
        v_schema := split_part(v_queue.queue_data_pfx, '.', 1);
        v_table := substr(v_queue.queue_data_pfx, strpos(v_queue.queue_data_pfx, '.') + 1);
    else
        v_schema := 'public';
        v_table := v_queue.queue_data_pfx;
    end if;

    execute 'grant select on ' || pgq.quote_fqname(v_queue.queue_tick_seq) || ' to public';
    execute 'grant select on ' || pgq.quote_fqname(v_queue.queue_event_seq) || ' to public';
    execute 'grant usage on ' || pgq.quote_fqname(v_queue.queue_event_seq) || ' to pgq_admin';

    perform pgq._grant_perms_from('pgq', 'event_template', v_schema, v_table);
    for i in 0 .. v_queue.queue_ntables - 1 loop
        perform pgq._grant_perms_from('pgq', 'event_template', v_schema, v_table || '_' || i::text);
    end loop;

    return 1;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.tune_storage(1)
--
-- Storage settings of a queue's child tables: rows are never updated, so
-- fillfactor 100; the tables are truncated on rotation, so no autovacuum.
--
-- Parameters:
--   i_queue_name  queue.
-- Returns:
--   1, or 0 for an unknown queue.
-- ----------------------------------------------------------------------------
create or replace function pgq.tune_storage(i_queue_name text)
returns integer
language plpgsql
strict
as $$
declare
    v_pfx       text;
    v_ntables   int4;
begin
    select q.queue_data_pfx, q.queue_ntables into v_pfx, v_ntables
      from pgq.queue q
     where q.queue_name = i_queue_name;
    if not found then
        return 0;
    end if;

    for i in 0 .. v_ntables - 1 loop
        execute 'alter table ' || pgq.quote_fqname(v_pfx || '_' || i::text)
            || ' set (fillfactor = 100, autovacuum_enabled = off,'
            || ' toast.autovacuum_enabled = off)';
    end loop;
    return 1;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.create_queue(1)
--
-- Create a queue with default settings: queue row, sequences, event tables,
-- grants (pgq.grant_perms), first tick (pgq.ticker), storage settings
-- (pgq.tune_storage); then regenerate the insert dispatcher.
--
-- Parameters:
--   i_queue_name  name of the new queue.
-- Returns:
--   1 if created, 0 if a queue of that name exists.
--   Error 'Invalid NULL value' for a NULL name.
-- ----------------------------------------------------------------------------
create or replace function pgq.create_queue(i_queue_name text)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_id        int4;
    v_pfx       text;
    v_ev_seq    text;
    v_tick_seq  text;
    v_ntables   int4;
    v_child     text;
begin
    if i_queue_name is null then
        raise exception 'Invalid NULL value';
    end if;

    -- cheap answer for the common "make sure it exists" call
    if exists (select 1 from pgq.queue where queue_name = i_queue_name) then
        return 0;
    end if;

    -- serialize with other creators and the dispatcher generator, then look
    -- again: somebody may have created it meanwhile
    lock table pgq.queue in share row exclusive mode;
    if exists (select 1 from pgq.queue where queue_name = i_queue_name) then
        return 0;
    end if;

    v_id := nextval('pgq.queue_queue_id_seq'::regclass);
    v_pfx := 'pgq.event_' || v_id::text;
    v_ev_seq := v_pfx || '_id_seq';
    v_tick_seq := v_pfx || '_tick_seq';

    insert into pgq.queue (queue_id, queue_name, queue_data_pfx,
                           queue_event_seq, queue_tick_seq)
    values (v_id, i_queue_name, v_pfx, v_ev_seq, v_tick_seq)
    returning queue_ntables into v_ntables;

    execute 'create sequence ' || pgq.quote_fqname(v_tick_seq);
    execute 'create sequence ' || pgq.quote_fqname(v_ev_seq);

    execute 'create table ' || pgq.quote_fqname(v_pfx) || ' () inherits (pgq.event_template)';
    for i in 0 .. v_ntables - 1 loop
        v_child := v_pfx || '_' || i::text;
        execute 'create table ' || pgq.quote_fqname(v_child)
            || ' () inherits (' || pgq.quote_fqname(v_pfx) || ')';
        execute 'alter table ' || pgq.quote_fqname(v_child)
            || ' alter column ev_id set default nextval('
            || quote_literal(v_ev_seq) || '::regclass)';
        execute 'create index ' || quote_ident('event_' || v_id::text || '_' || i::text || '_txid_idx')
            || ' on ' || pgq.quote_fqname(v_child) || ' (ev_txid)';
    end loop;

    perform pgq.grant_perms(i_queue_name);
    perform pgq.ticker(i_queue_name);
    perform pgq.tune_storage(i_queue_name);

    perform pgq._refresh_insert_dispatch();

    return 1;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.drop_queue(2)
--
-- Drop a queue with its tables, sequences and ticks.
--
-- Parameters:
--   x_queue_name  queue.
--   x_force       true: unregister all consumers first; false: refuse while
--                 consumers are subscribed.
-- Returns:
--   1.  Errors 'No such event queue', 'cannot drop queue, consumers still
--   attached'.
-- ----------------------------------------------------------------------------
create or replace function pgq.drop_queue(x_queue_name text, x_force bool)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue pgq.queue%rowtype;
begin
    lock table pgq.queue in share row exclusive mode;

    select * into v_queue from pgq.queue
     where queue_name = x_queue_name
       for update;
    if not found then
        raise exception 'No such event queue';
    end if;

    if x_force then
        perform pgq.unregister_consumer(ci.queue_name, ci.consumer_name)
           from pgq.get_consumer_info(x_queue_name) ci;
    elsif exists (select 1 from pgq.subscription where sub_queue = v_queue.queue_id) then
        raise exception 'cannot drop queue, consumers still attached';
    end if;

    for i in 0 .. v_queue.queue_ntables - 1 loop
        execute 'drop table ' || pgq.quote_fqname(v_queue.queue_data_pfx || '_' || i::text);
    end loop;
    execute 'drop table ' || pgq.quote_fqname(v_queue.queue_data_pfx);

    delete from pgq.tick where tick_queue = v_queue.queue_id;

    execute 'drop sequence ' || pgq.quote_fqname(v_queue.queue_tick_seq);
    execute 'drop sequence ' || pgq.quote_fqname(v_queue.queue_event_seq);

    delete from pgq.queue where queue_id = v_queue.queue_id;

    perform pgq._refresh_insert_dispatch();

    return 1;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.drop_queue(1)
--
-- Drop a queue that has no consumers: pgq.drop_queue(x_queue_name, false).
--
-- Returns:
--   1
-- ----------------------------------------------------------------------------
create or replace function pgq.drop_queue(x_queue_name text)
returns integer
language plpgsql
strict
as $$
begin
    return pgq.drop_queue(x_queue_name, false);
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.set_queue_config(3)
--
-- Change one ticker or rotation setting of a queue.  Settable:
-- ticker_max_count, ticker_max_lag, ticker_idle_period, ticker_paused,
-- rotation_period, external_ticker (column queue_<name>).  The value is given
-- as text and converted by the column type.
--
-- Parameters:
--   x_queue_name   queue.
--   x_param_name   setting name without the queue_ prefix.
--   x_param_value  new value as text.
-- Returns:
--   1.  Errors 'Invalid NULL value', 'No such event queue',
--   'cannot change parameter "<name>s"' (sic: pgq's text has the extra s).
-- ----------------------------------------------------------------------------
create or replace function pgq.set_queue_config(
    x_queue_name text, x_param_name text, x_param_value text)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_column text;
begin
    if x_queue_name is null or x_param_name is null then
        raise exception 'Invalid NULL value';
    end if;

    if not exists (select 1 from pgq.queue where queue_name = x_queue_name) then
        raise exception 'No such event queue';
    end if;

    v_column := 'queue_' || x_param_name;
    if v_column not in ('queue_ticker_max_count', 'queue_ticker_max_lag',
                        'queue_ticker_idle_period', 'queue_ticker_paused',
                        'queue_rotation_period', 'queue_external_ticker')
    then
        raise exception 'cannot change parameter "%s"', x_param_name;
    end if;

    execute 'update pgq.queue set ' || v_column || ' = ' || quote_literal(x_param_value)
        || ' where queue_name = ' || quote_literal(x_queue_name);

    return 1;
end;
$$;
-- file: 45_consumer.sql
-- pgq core, part 45: consumer registration.
--
-- A subscription row ties a consumer to a queue and remembers the last tick the
-- consumer has finished (sub_last_tick) plus, while a batch is open, the batch
-- id and its end tick.  pgq_coop subconsumers are subscription rows that share
-- the main consumer's sub_id; unregister_consumer knows their shape.


-- ---------------------------------------------------------------------------
-- pgq.register_consumer_at(3)
--
--   Subscribes a consumer to a queue, or moves an existing subscription.
--
--   x_queue_name     queue to read
--   x_consumer_name  consumer name (the consumer row is created on demand)
--   x_tick_pos       tick to start after; NULL = the queue's newest tick for a
--                    new subscription, "leave as is" for an existing one.  A
--                    given tick must exist; an existing subscription is then
--                    repositioned and loses its open batch.
--
--   Returns 1 for a new subscription, 0 when it existed already.
-- ---------------------------------------------------------------------------
create or replace function pgq.register_consumer_at(
    x_queue_name text,
    x_consumer_name text,
    x_tick_pos bigint)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue     integer;
    v_consumer  integer;
    v_start     bigint;
begin
    select q.queue_id into v_queue
      from pgq.queue q
     where q.queue_name = x_queue_name;
    if v_queue is null then
        raise exception 'Event queue not created yet';
    end if;

    -- The consumer row is locked so that concurrent (un)registrations of the
    -- same name serialize.  A new name costs one co_id, never more.
    select c.co_id into v_consumer
      from pgq.consumer c
     where c.co_name = x_consumer_name
       for update;
    if v_consumer is null then
        insert into pgq.consumer (co_name)
             values (x_consumer_name)
        returning co_id into v_consumer;
    end if;

    if x_tick_pos is not null
       and not exists (select 1 from pgq.tick t
                        where t.tick_queue = v_queue
                          and t.tick_id = x_tick_pos)
    then
        raise exception 'cannot reposition, tick not found: %', x_tick_pos;
    end if;

    if exists (select 1 from pgq.subscription s
                where s.sub_queue = v_queue
                  and s.sub_consumer = v_consumer)
    then
        if x_tick_pos is not null then
            update pgq.subscription
               set sub_last_tick = x_tick_pos,
                   sub_next_tick = null,
                   sub_batch = null,
                   sub_active = now()
             where sub_queue = v_queue
               and sub_consumer = v_consumer;
        end if;
        return 0;
    end if;

    v_start := x_tick_pos;
    if v_start is null then
        select t.tick_id into v_start
          from pgq.tick t
         where t.tick_queue = v_queue
         order by t.tick_queue desc, t.tick_id desc
         limit 1;
        if v_start is null then
            raise exception 'No ticks for this queue.  Please run ticker on database.';
        end if;
    end if;

    insert into pgq.subscription (sub_queue, sub_consumer, sub_last_tick)
         values (v_queue, v_consumer, v_start);
    return 1;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.register_consumer(2)
--
--   Subscribes a consumer to a queue starting at the newest tick: it sees
--   every event of later batches.
--
--   x_queue_name   queue to read
--   x_consumer_id  consumer name
--
--   Returns 1 for a new subscription, 0 when it existed already.
-- ---------------------------------------------------------------------------
create or replace function pgq.register_consumer(
    x_queue_name text,
    x_consumer_id text)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return pgq.register_consumer_at(x_queue_name, x_consumer_id, null);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.unregister_consumer(2)
--
--   Removes a consumer's subscription to a queue.
--
--   A row shaped like a pgq_coop subconsumer (sub_last_tick and sub_next_tick
--   both NULL or both set) that shares its sub_id with other rows is removed
--   alone.  Otherwise the whole sub_id group goes: its retry events, every
--   subscription row carrying that sub_id (coop subconsumers included), and
--   the consumer row when it has no subscription left.
--
--   x_queue_name     queue name
--   x_consumer_name  consumer name
--
--   Returns the number of subscription rows removed (0 = was not subscribed).
-- ---------------------------------------------------------------------------
create or replace function pgq.unregister_consumer(
    x_queue_name text,
    x_consumer_name text)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sub_id    integer;
    v_consumer  integer;
    v_coop      boolean;
    v_group     integer;
begin
    select s.sub_id, s.sub_consumer,
           (s.sub_last_tick is null) = (s.sub_next_tick is null)
      into v_sub_id, v_consumer, v_coop
      from pgq.queue q
      join pgq.subscription s on s.sub_queue = q.queue_id
      join pgq.consumer c on c.co_id = s.sub_consumer
     where q.queue_name = x_queue_name
       and c.co_name = x_consumer_name
       for update of s, c;
    if v_sub_id is null then
        return 0;
    end if;

    select count(*) into v_group
      from pgq.subscription s
     where s.sub_id = v_sub_id;

    if v_coop and v_group > 1 then
        -- one member of a cooperative group leaves; the group stays
        delete from pgq.subscription
         where sub_id = v_sub_id
           and sub_consumer = v_consumer;
        return 1;
    end if;

    delete from pgq.retry_queue
     where ev_owner = v_sub_id;

    delete from pgq.subscription
     where sub_id = v_sub_id;

    if not exists (select 1 from pgq.subscription s
                    where s.sub_consumer = v_consumer)
    then
        delete from pgq.consumer
         where co_id = v_consumer;
    end if;

    return v_group;
end;
$$;
-- file: 46_batch.sql
-- pgq core, part 46: batches.
--
-- A batch is the stretch of queue history between two ticks: the events whose
-- transaction is not visible in the start tick's snapshot but visible in the
-- end tick's snapshot.  next_batch* opens one on a subscription, the
-- get_batch_* functions read its events, finish_batch closes it.
--
-- The event readers (batch_event_sql, get_batch_events, get_batch_cursor) run
-- with the caller's rights and must build their SQL at run time: which event
-- tables hold a batch depends on table rotation.


-- ---------------------------------------------------------------------------
-- pgq.find_tick_helper(6)
--
--   Picks the end tick of a batch that should cover at least i_min_count
--   events or i_min_interval of time (either suffices; NULL = not asked).
--   The newest tick after the start tick is used when it satisfies a wish and
--   does not overshoot it by more than a factor of two; when it overshoots,
--   the oldest tick that satisfies a wish is used instead.
--
--   i_queue_id        queue id
--   i_prev_tick_id    start tick (the subscription's last tick)
--   i_prev_tick_time  its tick_time
--   i_prev_tick_seq   its tick_event_seq
--   i_min_count       wanted number of events, or NULL
--   i_min_interval    wanted time span, or NULL
--
--   Returns next_tick_id, next_tick_time, next_tick_seq: the chosen tick, or
--   all NULL when no tick is suitable yet.
-- ---------------------------------------------------------------------------
create or replace function pgq.find_tick_helper(
    in i_queue_id int4,
    in i_prev_tick_id int8,
    in i_prev_tick_time timestamptz,
    in i_prev_tick_seq int8,
    in i_min_count int8,
    in i_min_interval interval,
    out next_tick_id int8,
    out next_tick_time timestamptz,
    out next_tick_seq int8)
language plpgsql
stable
as $$
declare
    v_id        int8;
    v_time      timestamptz;
    v_seq       int8;
    v_enough    boolean := false;   -- newest tick satisfies a wish
    v_too_far   boolean := false;   -- newest tick overshoots a wish
begin
    select t.tick_id, t.tick_time, t.tick_event_seq
      into v_id, v_time, v_seq
      from pgq.tick t
     where t.tick_queue = i_queue_id
       and t.tick_id > i_prev_tick_id
     order by t.tick_queue desc, t.tick_id desc
     limit 1;
    if v_id is null then
        return;
    end if;

    if i_min_count is not null then
        v_enough := coalesce(v_seq - i_prev_tick_seq >= i_min_count, false);
        v_too_far := coalesce(v_seq - i_prev_tick_seq > i_min_count * 2, false);
    end if;
    if i_min_interval is not null then
        v_enough := v_enough
            or coalesce(v_time - i_prev_tick_time >= i_min_interval, false);
        v_too_far := v_too_far
            or coalesce(v_time - i_prev_tick_time > i_min_interval * 2, false);
    end if;

    if v_too_far then
        -- walk forward from the start tick to the first one that is enough
        select t.tick_id, t.tick_time, t.tick_event_seq
          into next_tick_id, next_tick_time, next_tick_seq
          from pgq.tick t
         where t.tick_queue = i_queue_id
           and t.tick_id > i_prev_tick_id
           and (   (i_min_count is not null
                    and t.tick_event_seq - i_prev_tick_seq >= i_min_count)
                or (i_min_interval is not null
                    and t.tick_time - i_prev_tick_time >= i_min_interval))
         order by t.tick_queue asc, t.tick_id asc
         limit 1;
    elsif v_enough then
        next_tick_id := v_id;
        next_tick_time := v_time;
        next_tick_seq := v_seq;
    end if;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.next_batch_custom(5)
--
--   Opens the consumer's next batch, or returns the one already open (the
--   tuning arguments are then ignored).
--
--   i_queue_name     queue name
--   i_consumer_name  consumer name
--   i_min_lag        only hand out a batch whose end tick is at least this old
--   i_min_count      merge ticks until the batch spans this many event ids
--   i_min_interval   merge ticks until the batch spans this much time
--                    (without min_count/min_interval the batch ends at the
--                    very next tick)
--
--   Returns one row: batch_id, cur_tick_id, prev_tick_id, cur_tick_time,
--   prev_tick_time, cur_tick_event_seq, prev_tick_event_seq.  All NULL when
--   there is nothing to do yet; the consumer should sleep.  The *_event_seq
--   values only hint at the batch size: an event-less batch is possible.
-- ---------------------------------------------------------------------------
create or replace function pgq.next_batch_custom(
    in i_queue_name text,
    in i_consumer_name text,
    in i_min_lag interval,
    in i_min_count int4,
    in i_min_interval interval,
    out batch_id int8,
    out cur_tick_id int8,
    out prev_tick_id int8,
    out cur_tick_time timestamptz,
    out prev_tick_time timestamptz,
    out cur_tick_event_seq int8,
    out prev_tick_event_seq int8)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sub   record;
begin
    -- The subscription row is locked: two sessions asking for the same
    -- consumer's batch get the same batch instead of overwriting each other.
    select s.sub_queue, s.sub_consumer, s.sub_batch,
           lt.tick_id as last_id, lt.tick_time as last_time,
           lt.tick_event_seq as last_seq,
           nt.tick_id as next_id, nt.tick_time as next_time,
           nt.tick_event_seq as next_seq
      into v_sub
      from pgq.queue q
      join pgq.subscription s on s.sub_queue = q.queue_id
      join pgq.consumer c on c.co_id = s.sub_consumer
      left join pgq.tick lt
             on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      left join pgq.tick nt
             on nt.tick_queue = s.sub_queue and nt.tick_id = s.sub_next_tick
     where q.queue_name = i_queue_name
       and c.co_name = i_consumer_name
       for update of s;
    if not found then
        raise exception '%', 'Not subscriber to queue: '
            || coalesce(i_queue_name, 'NULL') || '/'
            || coalesce(i_consumer_name, 'NULL');
    end if;

    if v_sub.last_id is null then
        raise exception 'PgQ corruption: Consumer % on queue % does not see tick %',
            i_consumer_name, i_queue_name, v_sub.last_id;
    end if;

    prev_tick_id := v_sub.last_id;
    prev_tick_time := v_sub.last_time;
    prev_tick_event_seq := v_sub.last_seq;

    if v_sub.sub_batch is not null then
        batch_id := v_sub.sub_batch;
        cur_tick_id := v_sub.next_id;
        cur_tick_time := v_sub.next_time;
        cur_tick_event_seq := v_sub.next_seq;
        return;
    end if;

    if i_min_count is null and i_min_interval is null then
        select t.tick_id, t.tick_time, t.tick_event_seq
          into cur_tick_id, cur_tick_time, cur_tick_event_seq
          from pgq.tick t
         where t.tick_queue = v_sub.sub_queue
           and t.tick_id > v_sub.last_id
         order by t.tick_queue asc, t.tick_id asc
         limit 1;
    else
        select h.next_tick_id, h.next_tick_time, h.next_tick_seq
          into cur_tick_id, cur_tick_time, cur_tick_event_seq
          from pgq.find_tick_helper(v_sub.sub_queue, v_sub.last_id,
                                    v_sub.last_time, v_sub.last_seq,
                                    i_min_count, i_min_interval) h;
    end if;

    if cur_tick_id is null
       or (i_min_lag is not null and now() - cur_tick_time < i_min_lag)
    then
        -- nothing to hand out yet
        cur_tick_id := null;
        cur_tick_time := null;
        cur_tick_event_seq := null;
        prev_tick_id := null;
        prev_tick_time := null;
        prev_tick_event_seq := null;
        return;
    end if;

    batch_id := nextval('pgq.batch_id_seq');
    update pgq.subscription
       set sub_batch = batch_id,
           sub_next_tick = cur_tick_id,
           sub_active = now()
     where sub_queue = v_sub.sub_queue
       and sub_consumer = v_sub.sub_consumer;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.next_batch_info(2)
--
--   Opens (or returns the open) next batch with the default rule: the batch
--   ends at the next tick.
--
--   i_queue_name     queue name
--   i_consumer_name  consumer name
--
--   Returns the seven columns of next_batch_custom.
-- ---------------------------------------------------------------------------
create or replace function pgq.next_batch_info(
    in i_queue_name text,
    in i_consumer_name text,
    out batch_id int8,
    out cur_tick_id int8,
    out prev_tick_id int8,
    out cur_tick_time timestamptz,
    out prev_tick_time timestamptz,
    out cur_tick_event_seq int8,
    out prev_tick_event_seq int8)
language plpgsql
as $$
begin
    select b.batch_id, b.cur_tick_id, b.prev_tick_id,
           b.cur_tick_time, b.prev_tick_time,
           b.cur_tick_event_seq, b.prev_tick_event_seq
      into batch_id, cur_tick_id, prev_tick_id,
           cur_tick_time, prev_tick_time,
           cur_tick_event_seq, prev_tick_event_seq
      from pgq.next_batch_custom(i_queue_name, i_consumer_name,
                                 null, null, null) b;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.next_batch(2)
--
--   Like next_batch_info, returning only the batch id.
--
--   i_queue_name     queue name
--   i_consumer_name  consumer name
--
--   Returns the batch id, or NULL when there is nothing to do yet.
-- ---------------------------------------------------------------------------
create or replace function pgq.next_batch(
    in i_queue_name text,
    in i_consumer_name text)
returns int8
language plpgsql
as $$
declare
    v_batch int8;
begin
    select b.batch_id into v_batch
      from pgq.next_batch_info(i_queue_name, i_consumer_name) b;
    return v_batch;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_batch_info(1)
--
--   Describes an open batch.
--
--   x_batch_id  batch id
--
--   Returns queue_name, consumer_name, batch_start / batch_end (times of the
--   start and end ticks), prev_tick_id, tick_id, lag (now - batch_end),
--   seq_start, seq_end (event sequence positions of the two ticks).  An
--   unknown batch gives one row of NULLs.
-- ---------------------------------------------------------------------------
create or replace function pgq.get_batch_info(
    in x_batch_id bigint,
    out queue_name text,
    out consumer_name text,
    out batch_start timestamptz,
    out batch_end timestamptz,
    out prev_tick_id bigint,
    out tick_id bigint,
    out lag interval,
    out seq_start bigint,
    out seq_end bigint)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    select q.queue_name, c.co_name,
           lt.tick_time, nt.tick_time,
           s.sub_last_tick, s.sub_next_tick,
           current_timestamp - nt.tick_time,
           lt.tick_event_seq, nt.tick_event_seq
      into queue_name, consumer_name,
           batch_start, batch_end,
           prev_tick_id, tick_id,
           lag,
           seq_start, seq_end
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
      join pgq.tick lt
        on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      join pgq.tick nt
        on nt.tick_queue = s.sub_queue and nt.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.batch_event_tables(1)
--
--   Lists the event tables that may hold events of a batch: the table before
--   the current one when the batch ended before the last rotation started,
--   only the current one when the batch started after the last rotation was
--   complete, else both (older first).
--
--   x_batch_id  batch id
--
--   Returns table names as text ('<data prefix>_<n>').
-- ---------------------------------------------------------------------------
create or replace function pgq.batch_event_tables(x_batch_id bigint)
returns setof text
language plpgsql
as $$
declare
    v       record;
    v_old   boolean;    -- look in the previous table
    v_new   boolean;    -- look in the current table
begin
    select pg_catalog.txid_snapshot_xmin(lt.tick_snapshot) as lo_txid,
           pg_catalog.txid_snapshot_xmax(nt.tick_snapshot) as hi_txid,
           q.queue_data_pfx, q.queue_ntables, q.queue_cur_table,
           q.queue_switch_step1, q.queue_switch_step2
      into v
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.tick lt
        on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      join pgq.tick nt
        on nt.tick_queue = s.sub_queue and nt.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    if not found then
        raise exception 'Cannot find data for batch %', x_batch_id;
    end if;

    v_old := true;
    v_new := true;
    if v.hi_txid < v.queue_switch_step1 then
        -- the batch ended before the last rotation began
        v_new := false;
    elsif v.queue_switch_step2 is not null
          and v.lo_txid > v.queue_switch_step2 then
        -- the batch began after the last rotation was complete
        v_old := false;
    end if;

    if v_old then
        -- the table rotated away from (the ring wraps around)
        return next v.queue_data_pfx || '_'
            || ((v.queue_cur_table + v.queue_ntables - 1) % v.queue_ntables)::text;
    end if;
    if v_new then
        return next v.queue_data_pfx || '_' || v.queue_cur_table::text;
    end if;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.batch_event_sql(1)
--
--   Builds the SELECT that returns a batch's events, ordered by ev_id.
--
--   Per event table the main part is a range scan of ev_txid from the start
--   tick's xmax to the end tick's xmax, filtered by both snapshots.
--   Transactions that were still running at the start tick and have finished
--   by the end tick lie below that range: those close below the range start
--   (within 100 txids, chained) widen the range, the rest are fetched with an
--   exact IN list in a second part.  Private (retry) events are kept only for
--   their owning subscription.  The text always ends with ' order by 1'
--   (get_batch_cursor relies on that).
--
--   x_batch_id  batch id
--
--   Returns the SQL text.
-- ---------------------------------------------------------------------------
create or replace function pgq.batch_event_sql(x_batch_id bigint)
returns text
language plpgsql
as $$
declare
    v           record;
    v_lo        bigint;     -- lower end of the txid range scan
    v_hi        bigint;     -- upper end of the txid range scan
    v_xid       bigint;
    v_late      text := ''; -- txids fetched by exact match
    v_cols      text;
    v_range     text;
    v_owner     text;
    v_tbl       text;
    v_sql       text := '';
begin
    select s.sub_id, lt.tick_snapshot as snap_lo, nt.tick_snapshot as snap_hi
      into v
      from pgq.subscription s
      join pgq.tick lt
        on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      join pgq.tick nt
        on nt.tick_queue = s.sub_queue and nt.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    if not found then
        raise exception 'batch not found';
    end if;

    v_lo := pg_catalog.txid_snapshot_xmax(v.snap_lo);
    v_hi := pg_catalog.txid_snapshot_xmax(v.snap_hi);

    -- transactions in progress at the start tick and finished at the end tick
    for v_xid in
        select x
          from pg_catalog.txid_snapshot_xip(v.snap_lo) as x
         where x <> all (array(select pg_catalog.txid_snapshot_xip(v.snap_hi)))
         order by x desc
    loop
        if v_xid >= v_lo - 100 then
            v_lo := v_xid;
        elsif v_late = '' then
            v_late := v_xid::text;
        else
            v_late := v_late || ',' || v_xid::text;
        end if;
    end loop;

    v_cols := 'select ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data,'
           || ' ev_extra1, ev_extra2, ev_extra3, ev_extra4 from ';
    v_owner := ' and (ev.ev_owner is null or ev.ev_owner = '
            || v.sub_id::text || ')';
    v_range := ' ev where ev.ev_txid >= ' || v_lo::text
            || ' and ev.ev_txid <= ' || v_hi::text
            || ' and pg_catalog.txid_visible_in_snapshot(ev.ev_txid, '
            || pg_catalog.quote_literal(v.snap_hi::text) || '::pg_catalog.txid_snapshot)'
            || ' and not pg_catalog.txid_visible_in_snapshot(ev.ev_txid, '
            || pg_catalog.quote_literal(v.snap_lo::text) || '::pg_catalog.txid_snapshot)'
            || v_owner;

    for v_tbl in select pgq.quote_fqname(t) from pgq.batch_event_tables(x_batch_id) t
    loop
        if v_sql <> '' then
            v_sql := v_sql || ' union all ';
        end if;
        v_sql := v_sql || v_cols || v_tbl || v_range;
        if v_late <> '' then
            v_sql := v_sql || ' union all ' || v_cols || v_tbl
                  || ' ev where ev.ev_txid in (' || v_late || ')' || v_owner;
        end if;
    end loop;

    if v_sql = '' then
        raise exception 'could not construct sql for batch %', x_batch_id;
    end if;
    return v_sql || ' order by 1';
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_batch_events(1)
--
--   Returns all events of a batch, ordered by ev_id (ev_owner is not shown).
--
--   x_batch_id  batch id
--
--   Returns rows of ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data,
--   ev_extra1 .. ev_extra4.
-- ---------------------------------------------------------------------------
create or replace function pgq.get_batch_events(
    in x_batch_id bigint,
    out ev_id bigint,
    out ev_time timestamptz,
    out ev_txid bigint,
    out ev_retry int4,
    out ev_type text,
    out ev_data text,
    out ev_extra1 text,
    out ev_extra2 text,
    out ev_extra3 text,
    out ev_extra4 text)
returns setof record
language plpgsql
as $$
begin
    return query execute pgq.batch_event_sql(x_batch_id);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_batch_cursor(4)
--
--   Opens a NO SCROLL cursor over a batch's events and returns its first rows;
--   the caller FETCHes the rest and CLOSEs it.  The cursor lives until the
--   end of the transaction.
--
--   i_batch_id     batch id
--   i_cursor_name  cursor name (quoted as an identifier)
--   i_quick_limit  rows to return at once (<= 0: none)
--   i_extra_where  optional SQL condition on the event columns; the batch
--                  query is then wrapped as subselect "_evs" and filtered
--
--   Returns the first rows, same columns as get_batch_events; nothing when
--   any of the first three arguments is NULL (no cursor then).
-- ---------------------------------------------------------------------------
create or replace function pgq.get_batch_cursor(
    in i_batch_id bigint,
    in i_cursor_name text,
    in i_quick_limit int4,
    in i_extra_where text,
    out ev_id bigint,
    out ev_time timestamptz,
    out ev_txid bigint,
    out ev_retry int4,
    out ev_type text,
    out ev_data text,
    out ev_extra1 text,
    out ev_extra2 text,
    out ev_extra3 text,
    out ev_extra4 text)
returns setof record
language plpgsql
as $$
declare
    v_cursor    text;
    v_sql       text;
begin
    if i_batch_id is null or i_cursor_name is null or i_quick_limit is null then
        return;
    end if;

    v_cursor := pg_catalog.quote_ident(i_cursor_name);
    v_sql := pgq.batch_event_sql(i_batch_id);
    if i_extra_where is not null then
        -- drop the final ' order by 1', filter, and order again
        v_sql := 'select * from ('
              || pg_catalog.left(v_sql, -pg_catalog.length(' order by 1'))
              || ') _evs where ' || i_extra_where || ' order by 1';
    end if;

    execute 'declare ' || v_cursor || ' no scroll cursor for ' || v_sql;

    if i_quick_limit > 0 then
        return query execute 'fetch ' || i_quick_limit::text || ' from ' || v_cursor;
    end if;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_batch_cursor(3)
--
--   get_batch_cursor(4) without a filter.
--
--   i_batch_id     batch id
--   i_cursor_name  cursor name
--   i_quick_limit  rows to return at once
--
--   Returns the first rows of the cursor.
-- ---------------------------------------------------------------------------
create or replace function pgq.get_batch_cursor(
    in i_batch_id bigint,
    in i_cursor_name text,
    in i_quick_limit int4,
    out ev_id bigint,
    out ev_time timestamptz,
    out ev_txid bigint,
    out ev_retry int4,
    out ev_type text,
    out ev_data text,
    out ev_extra1 text,
    out ev_extra2 text,
    out ev_extra3 text,
    out ev_extra4 text)
returns setof record
language plpgsql
strict
as $$
begin
    return query
        select * from pgq.get_batch_cursor(i_batch_id, i_cursor_name,
                                           i_quick_limit, null::text);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.finish_batch(1)
--
--   Closes a batch: the subscription moves on to the batch's end tick.
--
--   x_batch_id  batch id
--
--   Returns 1, or 0 with a WARNING when no subscription has that batch open.
-- ---------------------------------------------------------------------------
create or replace function pgq.finish_batch(x_batch_id bigint)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    update pgq.subscription
       set sub_last_tick = sub_next_tick,
           sub_next_tick = null,
           sub_batch = null,
           sub_active = now()
     where sub_batch = x_batch_id;
    if found then
        return 1;
    end if;
    raise warning 'finish_batch: batch % not found', x_batch_id;
    return 0;
end;
$$;
-- file: 47_retry.sql
-- pgq core, part 47: the retry queue.
--
-- A consumer may hand events of its open batch back for later processing.
-- They are copied to pgq.retry_queue owned by the subscription's sub_id, with
-- the retry counter raised; maintenance (pgq.maint_retry_events) puts them
-- back into the queue as private events of that subscription once due.
-- An event is queued at most once per owner (primary key rq_pkey).


-- ---------------------------------------------------------------------------
-- pgq.event_retry(3), timestamp form
--
--   Schedules one event of an open batch to be seen again.
--
--   x_batch_id    batch id
--   x_event_id    ev_id of an event of that batch
--   x_retry_time  when the event becomes due
--
--   Returns 1 when queued, 0 when this subscription had it queued already.
--   Error 'event not found' when the event is not in the batch or no
--   subscription has that batch open.
-- ---------------------------------------------------------------------------
create or replace function pgq.event_retry(
    x_batch_id bigint,
    x_event_id bigint,
    x_retry_time timestamptz)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sql   text;
    v_sub   record;
    v_ev    record;
    v_rows  integer;
begin
    -- an unknown batch has no events: same answer as a missing event
    select s.sub_id, s.sub_queue into v_sub
      from pgq.subscription s
     where s.sub_batch = x_batch_id;
    if not found then
        raise exception 'event not found';
    end if;
    v_sql := pgq.batch_event_sql(x_batch_id);

    -- filter inside the batch query instead of reading the whole batch
    execute 'select * from ('
            || left(v_sql, -length(' order by 1'))
            || ') e where e.ev_id = $1 limit 1'
       into v_ev
      using x_event_id;
    get diagnostics v_rows = row_count;
    if v_rows = 0 then
        raise exception 'event not found';
    end if;

    insert into pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time,
                                 ev_txid, ev_owner, ev_retry, ev_type, ev_data,
                                 ev_extra1, ev_extra2, ev_extra3, ev_extra4)
         values (x_retry_time, v_sub.sub_queue, v_ev.ev_id, v_ev.ev_time,
                 null, v_sub.sub_id, coalesce(v_ev.ev_retry, 0) + 1,
                 v_ev.ev_type, v_ev.ev_data,
                 v_ev.ev_extra1, v_ev.ev_extra2, v_ev.ev_extra3, v_ev.ev_extra4)
    on conflict on constraint rq_pkey do nothing;
    get diagnostics v_rows = row_count;
    return v_rows;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.event_retry(3), seconds form
--
--   event_retry with the due time given as seconds from the transaction
--   start.
--
--   x_batch_id       batch id
--   x_event_id       ev_id of an event of that batch
--   x_retry_seconds  delay in seconds
--
--   Returns 1 when queued, 0 when already queued.
-- ---------------------------------------------------------------------------
create or replace function pgq.event_retry(
    x_batch_id bigint,
    x_event_id bigint,
    x_retry_seconds integer)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return pgq.event_retry(x_batch_id, x_event_id,
                           current_timestamp + x_retry_seconds * interval '1 second');
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.batch_retry(2)
--
--   Schedules every event of an open batch to be seen again, except those
--   this subscription has queued already.
--
--   i_batch_id       batch id
--   i_retry_seconds  delay in seconds
--
--   Returns the number of events queued.
-- ---------------------------------------------------------------------------
create or replace function pgq.batch_retry(
    i_batch_id bigint,
    i_retry_seconds integer)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_after timestamptz;
    v_sub   record;
    v_rows  integer;
begin
    v_after := current_timestamp + i_retry_seconds * interval '1 second';

    select s.sub_id, s.sub_queue into v_sub
      from pgq.subscription s
     where s.sub_batch = i_batch_id;
    if not found then
        raise exception 'batch_retry: batch % not found', i_batch_id;
    end if;

    insert into pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time,
                                 ev_txid, ev_owner, ev_retry, ev_type, ev_data,
                                 ev_extra1, ev_extra2, ev_extra3, ev_extra4)
    select distinct v_after, v_sub.sub_queue, e.ev_id, e.ev_time,
           null::bigint, v_sub.sub_id, coalesce(e.ev_retry, 0) + 1,
           e.ev_type, e.ev_data,
           e.ev_extra1, e.ev_extra2, e.ev_extra3, e.ev_extra4
      from pgq.get_batch_events(i_batch_id) e
     where not exists (select 1
                         from pgq.retry_queue r
                        where r.ev_owner = v_sub.sub_id
                          and r.ev_id = e.ev_id
                          and r.ev_queue = v_sub.sub_queue);
    get diagnostics v_rows = row_count;
    return v_rows;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.event_retry_raw(12)
--
--   Puts an arbitrary event into the retry queue of a subscription.
--
--   x_queue        queue name
--   x_consumer     consumer name (must be subscribed to the queue)
--   x_retry_after  when the event becomes due
--   x_ev_id        event id; NULL = take a new one from the queue's sequence
--   x_ev_time      event time
--   x_ev_retry     retry counter to store
--   x_ev_type, x_ev_data, x_ev_extra1 .. x_ev_extra4   payload
--
--   Returns the event id.
-- ---------------------------------------------------------------------------
create or replace function pgq.event_retry_raw(
    x_queue text,
    x_consumer text,
    x_retry_after timestamptz,
    x_ev_id bigint,
    x_ev_time timestamptz,
    x_ev_retry integer,
    x_ev_type text,
    x_ev_data text,
    x_ev_extra1 text,
    x_ev_extra2 text,
    x_ev_extra3 text,
    x_ev_extra4 text)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sub   record;
    v_id    bigint;
begin
    select s.sub_id, s.sub_queue, q.queue_event_seq into v_sub
      from pgq.queue q
      join pgq.subscription s on s.sub_queue = q.queue_id
      join pgq.consumer c on c.co_id = s.sub_consumer
     where q.queue_name = x_queue
       and c.co_name = x_consumer;
    if not found then
        raise exception 'consumer not registered';
    end if;

    v_id := x_ev_id;
    if v_id is null then
        v_id := nextval(v_sub.queue_event_seq::regclass);
    end if;

    insert into pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time,
                                 ev_txid, ev_owner, ev_retry, ev_type, ev_data,
                                 ev_extra1, ev_extra2, ev_extra3, ev_extra4)
         values (x_retry_after, v_sub.sub_queue, v_id, x_ev_time,
                 null, v_sub.sub_id, x_ev_retry, x_ev_type, x_ev_data,
                 x_ev_extra1, x_ev_extra2, x_ev_extra3, x_ev_extra4);
    return v_id;
end;
$$;
-- file: 50_ticker.sql
-- pgq core, part 50: ticks.
--
-- A tick records a snapshot; events between two ticks form a batch.  The
-- ticker decides per queue whether a new tick is worth making:
--   * new events and (at least ticker_max_count of them, or the last tick is
--     at least ticker_max_lag old) -> tick;
--   * no new events -> back off: wait at least ticker_max_lag / 2, and while
--     the last tick is younger than ticker_idle_period also wait until the
--     gap is twice the previous gap;
--   * no tick yet -> tick.
-- "New events" counts event ids handed out since the last tick, read with
-- pgq._event_seq_used (see 20_internal.sql for why not pgq.seq_getval).
-- Only one ticker may run per database: the snapshot is taken before any lock
-- could serialize two of them.  Use pgq.force_tick to ask for a tick.


-- ----------------------------------------------------------------------------
-- pgq.ticker(1)
--
-- Make a tick for one queue if one is due (rules above).
--
-- Parameters:
--   i_queue_name  queue.
-- Returns:
--   the new tick id, or NULL if no tick was needed.
--   Errors: 'no such queue', 'This queue has external tick source.',
--   'Ticker has been paused for this queue', 'Invalid PgQ state: ...' when
--   the last tick's snapshot lies in the future (txids went backwards).
--   Warnings: 'Negative new_events?  ...', 'Dubious PgQ state: ...'.
-- ----------------------------------------------------------------------------
create or replace function pgq.ticker(i_queue_name text)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue_id      int4;
    v_tick_seq      text;
    v_external      boolean;
    v_paused        boolean;
    v_max_count     int4;
    v_max_lag       interval;
    v_idle_period   interval;
    v_event_seq     bigint;
    v_txid          bigint;
    v_new_events    bigint;
    v_lag           interval;
    v_prev_gap      interval;
    v_tick_id       bigint;
    v_last          record;
begin
    select q.queue_id, q.queue_tick_seq, q.queue_external_ticker, q.queue_ticker_paused,
           q.queue_ticker_max_count, q.queue_ticker_max_lag, q.queue_ticker_idle_period,
           pgq._event_seq_used(q.queue_event_seq)
      into v_queue_id, v_tick_seq, v_external, v_paused,
           v_max_count, v_max_lag, v_idle_period, v_event_seq
      from pgq.queue q
     where q.queue_name = i_queue_name;
    if not found then
        raise exception 'no such queue';
    end if;
    if v_external then
        raise exception 'This queue has external tick source.';
    end if;
    if v_paused then
        raise exception 'Ticker has been paused for this queue';
    end if;

    select t.tick_id, t.tick_time, t.tick_event_seq,
           txid_snapshot_xmin(t.tick_snapshot) as snap_xmin,
           txid_snapshot_xmax(t.tick_snapshot) as snap_xmax
      into v_last
      from pgq.tick t
     where t.tick_queue = v_queue_id
     order by t.tick_queue desc, t.tick_id desc
     limit 1;

    if found then
        v_txid := txid_current();
        if v_last.snap_xmin > v_txid then
            raise exception 'Invalid PgQ state: old xmin=%, old xmax=%, cur txid=%',
                v_last.snap_xmin, v_last.snap_xmax, v_txid;
        end if;

        v_new_events := v_event_seq - v_last.tick_event_seq;
        v_lag := now() - v_last.tick_time;

        if v_new_events < 0 then
            raise warning 'Negative new_events?  old=% cur=%', v_last.tick_event_seq, v_event_seq;
        end if;
        if v_last.snap_xmax > v_txid then
            raise warning 'Dubious PgQ state: old xmax=%, cur txid=%', v_last.snap_xmax, v_txid;
        end if;

        if v_new_events > 0 then
            -- busy: wait for enough events or enough lag
            if v_new_events < v_max_count and v_lag < v_max_lag then
                return null;
            end if;
        else
            -- idle: grow the gap between ticks, up to the idle period
            select v_last.tick_time - t.tick_time
              into v_prev_gap
              from pgq.tick t
             where t.tick_queue = v_queue_id
               and t.tick_id < v_last.tick_id
             order by t.tick_queue desc, t.tick_id desc
             limit 1;
            if found then
                if v_lag < v_max_lag / 2
                   or (v_lag < v_prev_gap * 2 and v_lag < v_idle_period)
                then
                    return null;
                end if;
            end if;
        end if;
    end if;

    v_tick_id := nextval(v_tick_seq::regclass);
    insert into pgq.tick (tick_queue, tick_id, tick_event_seq)
    values (v_queue_id, v_tick_id, v_event_seq);
    return v_tick_id;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq._ticker_batch(1)   [internal, pgqd]
--
-- pgq.ticker(queue) for several queues in one call, with the same decisions,
-- errors and warnings, queue by queue in the order given.  Set-based: the
-- queues' figures are read in one statement and the ticks inserted in one,
-- where calling pgq.ticker once per queue runs five statements each (a
-- thousand queues: ~0.1 ms of server time per queue, and more in a new
-- session).  The daemon ticks many queues of a database at the same instant
-- (their idle periods line up after one pgq.ticker() transaction), so this is
-- what bounds how late the last of them is.  A name given twice is ticked at
-- most once.
--
-- Parameters:
--   i_queue_names  queues.
-- Returns:
--   one row per name, in order: the name, the new tick id (NULL: no tick
--   needed), and the age in seconds of the queue's previous tick when a tick
--   was made.  Any error of pgq.ticker(queue) for one of the queues fails the
--   whole call (the caller then ticks them one by one).
-- ----------------------------------------------------------------------------
create or replace function pgq._ticker_batch(i_queue_names text[])
returns table (r_queue_name text, r_tick_id bigint, r_gap double precision)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
-- One plan per statement, kept for the session: re-planning the figures' read on every
-- call (the default for its first calls, and for ever when the planner finds the custom
-- plans cheaper) cost four times the ticks themselves for ten queues.
set plan_cache_mode = force_generic_plan
as $$
declare
    v_txid      bigint;
    v_new       bigint;
    v_lag       interval;
    v_ords      int8[] := '{}';
    v_ids       int4[] := '{}';
    v_seqs      text[] := '{}';
    v_events    bigint[] := '{}';
    v_gaps      double precision[] := '{}';
    r           record;
begin
    for r in
        select n.ord, n.first, q.queue_id, q.queue_tick_seq, q.queue_external_ticker,
               q.queue_ticker_paused, q.queue_ticker_max_count, q.queue_ticker_max_lag,
               q.queue_ticker_idle_period,
               -- pgq._event_seq_used(q.queue_event_seq), written out: the call
               -- costs five times the expression (~20 us per queue)
               coalesce(pg_sequence_last_value(
                   pgq.quote_fqname(q.queue_event_seq)::regclass), 0) as event_seq,
               l.tick_id as last_id, l.tick_time as last_time,
               l.tick_event_seq as last_seq, l.snap_xmin, l.snap_xmax,
               p.tick_time as prev_time
          from (select u.name, u.ord,
                       row_number() over (partition by u.name order by u.ord) = 1 as first
                  from unnest(i_queue_names) with ordinality u(name, ord)) n
          left join pgq.queue q on q.queue_name = n.name
          left join lateral (
                select t.tick_id, t.tick_time, t.tick_event_seq,
                       txid_snapshot_xmin(t.tick_snapshot) as snap_xmin,
                       txid_snapshot_xmax(t.tick_snapshot) as snap_xmax
                  from pgq.tick t
                 where t.tick_queue = q.queue_id
                 order by t.tick_queue desc, t.tick_id desc
                 limit 1) l on true
          left join lateral (
                select t.tick_time
                  from pgq.tick t
                 where t.tick_queue = q.queue_id
                   and t.tick_id < l.tick_id
                 order by t.tick_queue desc, t.tick_id desc
                 limit 1) p on true
         order by n.ord
    loop
        if r.queue_id is null then
            raise exception 'no such queue';
        end if;
        if r.queue_external_ticker then
            raise exception 'This queue has external tick source.';
        end if;
        if r.queue_ticker_paused then
            raise exception 'Ticker has been paused for this queue';
        end if;
        if not r.first then
            continue;
        end if;

        if r.last_id is not null then
            if v_txid is null then
                v_txid := txid_current();
            end if;
            if r.snap_xmin > v_txid then
                raise exception 'Invalid PgQ state: old xmin=%, old xmax=%, cur txid=%',
                    r.snap_xmin, r.snap_xmax, v_txid;
            end if;

            v_new := r.event_seq - r.last_seq;
            v_lag := now() - r.last_time;

            if v_new < 0 then
                raise warning 'Negative new_events?  old=% cur=%', r.last_seq, r.event_seq;
            end if;
            if r.snap_xmax > v_txid then
                raise warning 'Dubious PgQ state: old xmax=%, cur txid=%', r.snap_xmax, v_txid;
            end if;

            if v_new > 0 then
                if v_new < r.queue_ticker_max_count and v_lag < r.queue_ticker_max_lag then
                    continue;
                end if;
            elsif r.prev_time is not null then
                if v_lag < r.queue_ticker_max_lag / 2
                   or (v_lag < (r.last_time - r.prev_time) * 2
                       and v_lag < r.queue_ticker_idle_period)
                then
                    continue;
                end if;
            end if;
        end if;

        v_ords := v_ords || r.ord;
        v_ids := v_ids || r.queue_id;
        v_seqs := v_seqs || r.queue_tick_seq;
        v_events := v_events || r.event_seq;
        v_gaps := v_gaps || extract(epoch from now() - r.last_time)::double precision;
    end loop;

    return query
    with due as (
        select d.ord, d.id, d.seq, d.events, d.gap
          from unnest(v_ords, v_ids, v_seqs, v_events, v_gaps) d(ord, id, seq, events, gap)
    ), made as (
        insert into pgq.tick (tick_queue, tick_id, tick_event_seq)
        select due.id, nextval(due.seq::regclass), due.events
          from due
         order by due.ord
        returning tick_queue, tick_id
    )
    select n.name, m.tick_id, due.gap
      from unnest(i_queue_names) with ordinality n(name, ord)
      left join due on due.ord = n.ord
      left join made m on m.tick_queue = due.id
     order by n.ord;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.ticker(0)
--
-- Run pgq.ticker(queue) for every queue that is neither externally ticked nor
-- paused, in name order, all in the caller's transaction.
--
-- Returns:
--   number of queues that got a new tick.
-- ----------------------------------------------------------------------------
create or replace function pgq.ticker()
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_name  text;
    v_count bigint := 0;
begin
    for v_name in
        select q.queue_name from pgq.queue q
         where not q.queue_external_ticker
           and not q.queue_ticker_paused
         order by q.queue_name
    loop
        if pgq.ticker(v_name) > 0 then
            v_count := v_count + 1;
        end if;
    end loop;
    return v_count;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.ticker(4)
--
-- External ticker: store a tick made elsewhere (a cascaded branch copies the
-- root's ticks).  The snapshot is the current one; the queue's tick and event
-- sequences are moved forward so they never lag behind the stored tick.
--
-- Parameters:
--   i_queue_name        queue; must have queue_external_ticker and not be
--                       paused.
--   i_tick_id           id of the tick.
--   i_orig_timestamp    tick_time.
--   i_event_seq         tick_event_seq.
-- Returns:
--   i_tick_id.  Error 'queue not found or ticker disabled: <name>'.
-- ----------------------------------------------------------------------------
create or replace function pgq.ticker(
    i_queue_name text, i_tick_id bigint, i_orig_timestamp timestamptz, i_event_seq bigint)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue_id  int4;
    v_tick_seq  text;
    v_event_seq text;
begin
    select q.queue_id, q.queue_tick_seq, q.queue_event_seq
      into v_queue_id, v_tick_seq, v_event_seq
      from pgq.queue q
     where q.queue_name = i_queue_name
       and q.queue_external_ticker
       and not q.queue_ticker_paused;
    if not found then
        raise exception 'queue not found or ticker disabled: %', i_queue_name;
    end if;

    insert into pgq.tick (tick_queue, tick_id, tick_time, tick_event_seq)
    values (v_queue_id, i_tick_id, i_orig_timestamp, i_event_seq);

    perform pgq.seq_setval(v_tick_seq, i_tick_id);
    perform pgq.seq_setval(v_event_seq, i_event_seq);

    return i_tick_id;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.force_tick(1)
--
-- Ask the ticker for a tick soon: pushes the event sequence far enough ahead
-- that the next ticker run sees "many new events".  Does nothing to queues
-- that are externally ticked or paused.  The caller polls until the returned
-- tick id changes.
--
-- Parameters:
--   i_queue_name  queue.
-- Returns:
--   id of the queue's latest tick (NULL for an unknown queue).
-- ----------------------------------------------------------------------------
create or replace function pgq.force_tick(i_queue_name text)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_tick_id   bigint;
begin
    perform setval(q.queue_event_seq::regclass,
                   nextval(q.queue_event_seq::regclass) + q.queue_ticker_max_count * 2 + 1000)
       from pgq.queue q
      where q.queue_name = i_queue_name
        and not q.queue_external_ticker
        and not q.queue_ticker_paused;

    select t.tick_id into v_tick_id
      from pgq.queue q
      join pgq.tick t on t.tick_queue = q.queue_id
     where q.queue_name = i_queue_name
     order by t.tick_queue desc, t.tick_id desc
     limit 1;

    return v_tick_id;
end;
$$;
-- file: 60_maint.sql
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
-- file: 70_info.sql
-- pgq core, part 70: monitoring views of queues and consumers.
--
-- The column lists of these functions changed across pgq versions and CREATE
-- OR REPLACE cannot change OUT columns, so an install over an older layout
-- first drops the functions whose columns differ (their grants are restored
-- by 90_grants.sql).  Functions already in the current layout are kept.

do $$
declare
    v_queue_cols constant text :=
        'OUT queue_name text, OUT queue_ntables integer, OUT queue_cur_table integer,'
        ' OUT queue_rotation_period interval, OUT queue_switch_time timestamp with time zone,'
        ' OUT queue_external_ticker boolean, OUT queue_ticker_paused boolean,'
        ' OUT queue_ticker_max_count integer, OUT queue_ticker_max_lag interval,'
        ' OUT queue_ticker_idle_period interval, OUT ticker_lag interval,'
        ' OUT ev_per_sec double precision, OUT ev_new bigint, OUT last_tick_id bigint';
    v_consumer_cols constant text :=
        'OUT queue_name text, OUT consumer_name text, OUT lag interval,'
        ' OUT last_seen interval, OUT last_tick bigint, OUT current_batch bigint,'
        ' OUT next_tick bigint, OUT pending_events bigint';
    r record;
begin
    for r in
        select p.oid::regprocedure as sig,
               pg_catalog.pg_get_function_arguments(p.oid) as args,
               case when p.proname = 'get_queue_info' then v_queue_cols
                    else v_consumer_cols end as want
          from pg_catalog.pg_proc p
         where p.pronamespace = 'pgq'::regnamespace
           and p.proname in ('get_queue_info', 'get_consumer_info')
    loop
        if pg_catalog.right(r.args, pg_catalog.length(r.want)) <> r.want then
            execute 'drop function ' || r.sig::text;
        end if;
    end loop;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_queue_info(1)
--
--   Describes queues and their ticker state.
--
--   i_queue_name  queue name, NULL = every queue
--
--   Returns one row per queue, ordered by name: the queue's settings
--   (queue_name .. queue_ticker_idle_period), ticker_lag (now - newest tick),
--   ev_per_sec (event rate over the last ~20 ticks, NULL without a time
--   span), ev_new (event ids used since the newest tick) and last_tick_id.
--   An unknown name gives no rows.
-- ---------------------------------------------------------------------------
create or replace function pgq.get_queue_info(
    in i_queue_name text,
    out queue_name text,
    out queue_ntables integer,
    out queue_cur_table integer,
    out queue_rotation_period interval,
    out queue_switch_time timestamptz,
    out queue_external_ticker boolean,
    out queue_ticker_paused boolean,
    out queue_ticker_max_count integer,
    out queue_ticker_max_lag interval,
    out queue_ticker_idle_period interval,
    out ticker_lag interval,
    out ev_per_sec float8,
    out ev_new bigint,
    out last_tick_id bigint)
returns setof record
language plpgsql
as $$
begin
    return query
    select q.queue_name, q.queue_ntables, q.queue_cur_table,
           q.queue_rotation_period, q.queue_switch_time,
           q.queue_external_ticker, q.queue_ticker_paused,
           q.queue_ticker_max_count, q.queue_ticker_max_lag,
           q.queue_ticker_idle_period,
           current_timestamp - newest.tick_time,
           case when base.tick_time < newest.tick_time then
               ((newest.tick_event_seq - base.tick_event_seq)
                / extract(epoch from newest.tick_time - base.tick_time))::float8
           end,
           pgq._event_seq_used(q.queue_event_seq) - newest.tick_event_seq,
           newest.tick_id
      from pgq.queue q
      left join lateral (
               select t.tick_id, t.tick_time, t.tick_event_seq
                 from pgq.tick t
                where t.tick_queue = q.queue_id
                order by t.tick_queue desc, t.tick_id desc
                limit 1) newest on true
      -- the oldest of the last 21 tick ids: the base of the event rate
      left join lateral (
               select t.tick_time, t.tick_event_seq
                 from pgq.tick t
                where t.tick_queue = q.queue_id
                  and t.tick_id >= newest.tick_id - 20
                order by t.tick_queue asc, t.tick_id asc
                limit 1) base on true
     where i_queue_name is null or q.queue_name = i_queue_name
     order by q.queue_name;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_queue_info(0)
--
--   get_queue_info for every queue.
--
--   Returns the rows of get_queue_info(NULL).
-- ---------------------------------------------------------------------------
create or replace function pgq.get_queue_info(
    out queue_name text,
    out queue_ntables integer,
    out queue_cur_table integer,
    out queue_rotation_period interval,
    out queue_switch_time timestamptz,
    out queue_external_ticker boolean,
    out queue_ticker_paused boolean,
    out queue_ticker_max_count integer,
    out queue_ticker_max_lag interval,
    out queue_ticker_idle_period interval,
    out ticker_lag interval,
    out ev_per_sec float8,
    out ev_new bigint,
    out last_tick_id bigint)
returns setof record
language plpgsql
as $$
begin
    return query select * from pgq.get_queue_info(null::text);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_consumer_info(2)
--
--   Describes subscriptions.
--
--   i_queue_name     queue name, NULL = all queues
--   i_consumer_name  consumer name, NULL = all consumers
--
--   Returns one row per subscription, ordered by queue and consumer name:
--   lag (now - time of the last finished tick), last_seen (now -
--   sub_active), last_tick, current_batch, next_tick and pending_events (event
--   ids used between the last finished tick and the queue's newest tick; an
--   estimate).  Coop subconsumers have NULL last_tick, so NULL lag too.
-- ---------------------------------------------------------------------------
create or replace function pgq.get_consumer_info(
    in i_queue_name text,
    in i_consumer_name text,
    out queue_name text,
    out consumer_name text,
    out lag interval,
    out last_seen interval,
    out last_tick bigint,
    out current_batch bigint,
    out next_tick bigint,
    out pending_events bigint)
returns setof record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return query
    select q.queue_name, c.co_name,
           current_timestamp - lt.tick_time,
           current_timestamp - s.sub_active,
           s.sub_last_tick, s.sub_batch, s.sub_next_tick,
           newest.tick_event_seq - lt.tick_event_seq
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
      left join pgq.tick lt
             on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      left join lateral (
               select t.tick_event_seq
                 from pgq.tick t
                where t.tick_queue = s.sub_queue
                order by t.tick_queue desc, t.tick_id desc
                limit 1) newest on true
     where (i_queue_name is null or q.queue_name = i_queue_name)
       and (i_consumer_name is null or c.co_name = i_consumer_name)
     order by q.queue_name, c.co_name;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_consumer_info(1)
--
--   get_consumer_info for every consumer of one queue.
--
--   i_queue_name  queue name, NULL = all queues
--
--   Returns the rows of get_consumer_info(i_queue_name, NULL).
-- ---------------------------------------------------------------------------
create or replace function pgq.get_consumer_info(
    in i_queue_name text,
    out queue_name text,
    out consumer_name text,
    out lag interval,
    out last_seen interval,
    out last_tick bigint,
    out current_batch bigint,
    out next_tick bigint,
    out pending_events bigint)
returns setof record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return query select * from pgq.get_consumer_info(i_queue_name, null::text);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_consumer_info(0)
--
--   get_consumer_info for every subscription.
--
--   Returns the rows of get_consumer_info(NULL, NULL).
-- ---------------------------------------------------------------------------
create or replace function pgq.get_consumer_info(
    out queue_name text,
    out consumer_name text,
    out lag interval,
    out last_seen interval,
    out last_tick bigint,
    out current_batch bigint,
    out next_tick bigint,
    out pending_events bigint)
returns setof record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return query select * from pgq.get_consumer_info(null::text, null::text);
end;
$$;
-- file: 80_version.sql
-- pgq core, part 80: versions and in-place upgrade.


-- ----------------------------------------------------------------------------
-- pgq.version(0)
--
-- The pgq API level this schema implements.  A literal: pgq 3.4+ reports the
-- extension version, which is NULL without CREATE EXTENSION and makes pgqd
-- skip the database.
--
-- Returns:
--   '3.5'
-- ----------------------------------------------------------------------------
create or replace function pgq.version()
returns text
language sql
as $$
    select '3.5'::text;
$$;


-- ----------------------------------------------------------------------------
-- pgq.pgqd_schema_version(0)
--
-- Version of this SQL implementation (the pgqd crate's schema), independent
-- of the pgq API level above.
--
-- Returns:
--   '1.0'
-- ----------------------------------------------------------------------------
create or replace function pgq.pgqd_schema_version()
returns text
language sql
as $$
    select '1.1'::text;
$$;


-- ----------------------------------------------------------------------------
-- pgq.upgrade_schema(0)
--
-- Bring an older layout up to date, idempotently: sub_last_tick may be NULL
-- (cooperative consumers), the roles pgq_reader / pgq_writer / pgq_admin
-- exist, pgq.queue has queue_extra_maint.  Also regenerates the insert
-- dispatcher.
--
-- Returns:
--   0 (as pgq since 3.3; it no longer reports the number of changes).
-- ----------------------------------------------------------------------------
create or replace function pgq.upgrade_schema()
returns int4
language plpgsql
as $$
begin
    if exists (select 1 from pg_catalog.pg_attribute
                where attrelid = 'pgq.subscription'::regclass
                  and attname = 'sub_last_tick'
                  and attnotnull
                  and not attisdropped)
    then
        alter table pgq.subscription alter column sub_last_tick drop not null;
    end if;

    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'pgq_reader') then
        create role pgq_reader;
    end if;
    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'pgq_writer') then
        create role pgq_writer;
    end if;
    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'pgq_admin') then
        create role pgq_admin in role pgq_reader, pgq_writer;
    end if;

    if not exists (select 1 from pg_catalog.pg_attribute
                    where attrelid = 'pgq.queue'::regclass
                      and attname = 'queue_extra_maint'
                      and not attisdropped)
    then
        alter table pgq.queue add column queue_extra_maint text[];
    end if;

    perform pgq._refresh_insert_dispatch();

    return 0;
end;
$$;


-- Installing over an older layout upgrades it.
do $$
begin
    perform pgq.upgrade_schema();
end;
$$;
-- file: 90_grants.sql
-- pgq core, part 90: privileges.
--
-- The role model of pgq 3.5:
--   public      may look (queue/consumer info, the meta tables, seq_getval);
--   pgq_reader  consumes (register, batches, retry, force_tick);
--   pgq_writer  produces (insert_event, current_event_table, triggers);
--   pgq_admin   administers (queues, ticker, maintenance) and is a member of
--               both other roles.
-- Every pgq function first loses all grants, then gets EXECUTE for exactly
-- one group.  Functions not named below (internal helpers) keep no grant to
-- public; two of them are needed by pgq_admin when it calls
-- insert_event_raw / upgrade_schema directly, and pgq._event_seq_used is
-- public because pgq.get_queue_info (public, caller's rights) uses it; it
-- reveals no more than pgq.seq_getval.
-- The file can run again at any time; it restores the same state.

grant usage on schema pgq to public;

do $$
declare
    v_group     record;
    v_sig       text;
    v_proc      regprocedure;
    v_listed    regprocedure[] := '{}';
    v_missing   text[] := '{}';
begin
    for v_group in
        select g.grantee, g.sigs
          from (values
            ('public', array[
                'pgq.seq_getval(text)',
                'pgq.get_queue_info()',
                'pgq.get_queue_info(text)',
                'pgq.get_consumer_info()',
                'pgq.get_consumer_info(text)',
                'pgq.get_consumer_info(text,text)',
                'pgq.quote_fqname(text)',
                'pgq.version()',
                'pgq.pgqd_schema_version()',
                'pgq._event_seq_used(text)']),
            ('pgq_reader', array[
                'pgq.batch_event_sql(bigint)',
                'pgq.batch_event_tables(bigint)',
                'pgq.find_tick_helper(int4,int8,timestamptz,int8,int8,interval)',
                'pgq.register_consumer(text,text)',
                'pgq.register_consumer_at(text,text,bigint)',
                'pgq.unregister_consumer(text,text)',
                'pgq.next_batch_info(text,text)',
                'pgq.next_batch(text,text)',
                'pgq.next_batch_custom(text,text,interval,int4,interval)',
                'pgq.get_batch_events(bigint)',
                'pgq.get_batch_info(bigint)',
                'pgq.get_batch_cursor(bigint,text,int4,text)',
                'pgq.get_batch_cursor(bigint,text,int4)',
                'pgq.event_retry(bigint,bigint,timestamptz)',
                'pgq.event_retry(bigint,bigint,integer)',
                'pgq.batch_retry(bigint,integer)',
                'pgq.force_tick(text)',
                'pgq.finish_batch(bigint)']),
            ('pgq_writer', array[
                'pgq.insert_event(text,text,text)',
                'pgq.insert_event(text,text,text,text,text,text,text)',
                'pgq.current_event_table(text)',
                'pgq.jsontriga()',
                'pgq.sqltriga()',
                'pgq.logutriga()']),
            ('pgq_admin', array[
                'pgq.ticker(text,bigint,timestamptz,bigint)',
                'pgq.ticker(text)',
                'pgq.ticker()',
                'pgq._ticker_batch(text[])',
                'pgq.maint_retry_events()',
                'pgq.maint_rotate_tables_step1(text)',
                'pgq.maint_rotate_tables_step2()',
                'pgq.maint_tables_to_vacuum()',
                'pgq.maint_operations()',
                'pgq.upgrade_schema()',
                'pgq.grant_perms(text)',
                'pgq._grant_perms_from(text,text,text,text)',
                'pgq.tune_storage(text)',
                'pgq.seq_setval(text,int8)',
                'pgq.create_queue(text)',
                'pgq.drop_queue(text,bool)',
                'pgq.drop_queue(text)',
                'pgq.set_queue_config(text,text,text)',
                'pgq.insert_event_raw(text,bigint,timestamptz,integer,integer,text,text,text,text,text,text)',
                'pgq.event_retry_raw(text,text,timestamptz,bigint,timestamptz,integer,text,text,text,text,text,text)',
                -- internal, reached through the two functions above when
                -- pgq_admin calls them with its own rights
                'pgq._insert_event_dispatch(text,bigint,timestamptz,int4,int4,text,text,text,text,text,text)',
                'pgq._refresh_insert_dispatch()'])
          ) as g(grantee, sigs)
    loop
        foreach v_sig in array v_group.sigs loop
            v_proc := pg_catalog.to_regprocedure(v_sig);
            if v_proc is null then
                -- the trigger functions come with their own file, maybe later
                if v_sig not like 'pgq.%triga()' then
                    v_missing := v_missing || v_sig;
                end if;
                continue;
            end if;
            v_listed := v_listed || v_proc;
            execute 'revoke all on function ' || v_proc::text
                || ' from public, pgq_reader, pgq_writer, pgq_admin cascade';
            execute 'grant execute on function ' || v_proc::text || ' to ' || v_group.grantee;
        end loop;
    end loop;

    -- everything else in the schema is internal
    for v_proc in
        select p.oid::regprocedure
          from pg_catalog.pg_proc p
         where p.pronamespace = 'pgq'::regnamespace
           and p.prokind = 'f'
           and p.oid <> all (v_listed::oid[])
    loop
        execute 'revoke all on function ' || v_proc::text
            || ' from public, pgq_reader, pgq_writer, pgq_admin cascade';
        -- the insert dispatcher's generated buckets run with pgq_admin's rights
        -- when it calls pgq.insert_event_raw
        if v_proc::text like 'pgq.\_insert\_event\_bucket\_%' then
            execute 'grant execute on function ' || v_proc::text || ' to pgq_admin';
        end if;
    end loop;

    if cardinality(v_missing) > 0 then
        raise warning 'pgq grants: functions not installed: %', array_to_string(v_missing, ', ');
    end if;
end;
$$;

-- Meta tables: everybody reads, pgq_admin writes.
revoke all on table pgq.queue, pgq.consumer, pgq.tick, pgq.subscription
    from public, pgq_reader, pgq_writer, pgq_admin cascade;
grant select on table pgq.consumer, pgq.queue, pgq.tick, pgq.subscription to pgq_reader;
grant select, insert, update, delete on table pgq.consumer, pgq.queue, pgq.tick, pgq.subscription
    to pgq_admin;
grant select on table pgq.consumer, pgq.queue, pgq.tick, pgq.subscription to public;

-- Event tables: pgq.grant_perms copies these grants of the template to every
-- new queue's tables.
revoke all on table pgq.event_template from public, pgq_reader, pgq_writer, pgq_admin cascade;
grant select on table pgq.event_template to pgq_reader;
grant select, insert, truncate on table pgq.event_template to pgq_admin;

-- Retry queue: only through functions, or by pgq_admin.
revoke all on table pgq.retry_queue from public, pgq_reader, pgq_writer, pgq_admin cascade;
grant select, insert, update, delete on table pgq.retry_queue to pgq_admin;

-- Sequences: no grants (as in pgq); the per-queue ones get theirs from
-- pgq.grant_perms.
revoke all on sequence pgq.batch_id_seq, pgq.queue_queue_id_seq,
    pgq.consumer_co_id_seq, pgq.subscription_sub_id_seq
    from public, pgq_reader, pgq_writer, pgq_admin cascade;
