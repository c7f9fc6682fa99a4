-- replica component, part 20: adding and removing tables.


-- ----------------------------------------------------------------------------
-- pgq_replica.table_key(1)
--
-- The "schema.name" the capture triggers write into ev_extra1 for a table.
--
-- Parameters:
--   i_table  a table, as regclass accepts it (quoted or not, schema optional).
-- Returns:
--   schema.name, unquoted.  Error 42P01 when there is no such table.
-- ----------------------------------------------------------------------------
create or replace function pgq_replica.table_key(i_table text)
returns text
language sql
stable
as $$
    select n.nspname::text || '.' || c.relname::text
      from pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where c.oid = i_table::pg_catalog.regclass;
$$;


-- ----------------------------------------------------------------------------
-- pgq_replica.add_table(3)
--
-- Registers a table for replication through a queue.  The table name is
-- resolved with the caller's search_path (these functions are not security
-- definer and qualify every name they use themselves).
--
-- On the root (i_root) the table gets its capture triggers: row changes go
-- through pgq.logutriga or pgq.sqltriga (i_kind) into the queue, a TRUNCATE
-- as an 'R' event.  On a subscriber the table is registered in state 'copy':
-- the applier skips its events until `pgqd replica copy` has copied it.
--
-- Parameters:
--   i_queue_name  the queue (on the root it must exist here).
--   i_table       the table (regclass syntax).
--   i_root        true on the root node.
--   i_kind        'logutriga' (default) or 'sqltriga'.
-- Returns:
--   the table's state ('root' or 'copy'; the existing state when the table
--   was registered before).
--   Errors: 55000 when the table has no primary key (updates and deletes are
--   applied by key), 42704 when the queue is missing on the root, 22023 for
--   an unknown trigger kind.
-- ----------------------------------------------------------------------------
create or replace function pgq_replica.add_table(
    i_queue_name text, i_table text, i_root boolean, i_kind text default 'logutriga')
returns text
language plpgsql
as $$
declare
    v_oid    oid := i_table::pg_catalog.regclass;
    v_key    text := pgq_replica.table_key(i_table);
    v_state  text;
    v_trg    text;
begin
    if i_kind is null or i_kind not in ('logutriga', 'sqltriga') then
        raise exception 'unknown capture trigger kind %: use logutriga or sqltriga', i_kind
            using errcode = '22023';
    end if;
    if (select c.relkind from pg_catalog.pg_class c where c.oid = v_oid) not in ('r', 'p') then
        raise exception 'cannot replicate %: not an ordinary table', v_key
            using errcode = '42809';
    end if;
    if not exists (select 1 from pg_catalog.pg_index i
                    where i.indrelid = v_oid and i.indisprimary) then
        raise exception 'cannot replicate table % without a primary key: updates and deletes are applied by key (add one with ALTER TABLE ... ADD PRIMARY KEY)', v_key
            using errcode = '55000';
    end if;

    select t.state into v_state
      from pgq_replica.table_info t
     where t.queue_name = i_queue_name and t.table_name = v_key
       for update;
    if found then
        return v_state;
    end if;

    if i_root then
        if not exists (select 1 from pgq.queue q where q.queue_name = i_queue_name) then
            raise exception 'no queue % in this database (the root needs it: pgqd create)', i_queue_name
                using errcode = '42704';
        end if;
        v_trg := left('pgq_replica_' || i_queue_name, 54);
        execute pg_catalog.format(
            'create trigger %I after insert or update or delete on %s for each row execute function pgq.%I(%L)',
            v_trg, v_oid::pg_catalog.regclass, i_kind, i_queue_name);
        execute pg_catalog.format(
            'create trigger %I after truncate on %s for each statement execute function pgq.%I(%L)',
            v_trg || '_trunc', v_oid::pg_catalog.regclass, i_kind, i_queue_name);
        v_state := 'root';
    else
        v_state := 'copy';
    end if;

    insert into pgq_replica.table_info (queue_name, table_name, state, trigger_kind)
    values (i_queue_name, v_key, v_state, case when i_root then i_kind end);
    insert into pgq_replica.queue_info (queue_name) values (i_queue_name)
        on conflict do nothing;
    return v_state;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq_replica.remove_table(2)
--
-- Stops replicating a table: drops the capture triggers on the root, forgets
-- the table everywhere.  The table and its rows stay.
--
-- Parameters:
--   i_queue_name  the queue.
--   i_table       the table: "schema.name" as registered, or regclass syntax.
-- Returns:
--   true when the table was registered.
-- ----------------------------------------------------------------------------
create or replace function pgq_replica.remove_table(i_queue_name text, i_table text)
returns boolean
language plpgsql
as $$
declare
    v_key   text;
    v_state text;
    v_trg   text := left('pgq_replica_' || i_queue_name, 54);
    v_oid   oid;
begin
    -- the registered "schema.name" first (it need not parse as a name: spaces,
    -- capitals), then the name as regclass reads it
    if exists (select 1 from pgq_replica.table_info t
                where t.queue_name = i_queue_name and t.table_name = i_table) then
        v_key := i_table;
    else
        begin
            v_key := pgq_replica.table_key(i_table);
        exception when undefined_table or invalid_name or syntax_error then
            return false;
        end;
    end if;
    delete from pgq_replica.table_info t
     where t.queue_name = i_queue_name and t.table_name = v_key
    returning t.state into v_state;
    if not found then
        return false;
    end if;
    select c.oid into v_oid
      from pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where n.nspname::text || '.' || c.relname::text = v_key;
    if v_state = 'root' and v_oid is not null then
        execute pg_catalog.format('drop trigger if exists %I on %s', v_trg, v_oid::pg_catalog.regclass);
        execute pg_catalog.format('drop trigger if exists %I on %s', v_trg || '_trunc', v_oid::pg_catalog.regclass);
    end if;
    return true;
end;
$$;
