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
