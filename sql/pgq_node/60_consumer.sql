-- pgq_node, part 60: cascaded consumers writing into the local node.
--
-- A cascaded consumer reads batches from a provider node and applies them
-- here; local_state keeps its position (the tick it last committed here, in
-- the same transaction as the applied events) and the flags an administrator
-- uses to steer it:
--   paused    the consumer should stop and wait;
--   uptodate  false after an administrative change, until the consumer has
--             seen it and set it back to true.
-- The node's worker is one of these consumers.


-- ---------------------------------------------------------------------------
-- pgq_node.register_consumer(4)
--
--   Records a cascaded consumer of the local node, reading from
--   i_provider_node and positioned at i_custom_tick_id.  An existing one is
--   moved to the given provider and tick.
--
--   Returns 200 "Consumer <c> registered on queue <q>"; 201 "Consumer
--   already registered: <q>/<c>" (after moving it); 404 when this database
--   is no node of the queue.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.register_consumer(
    in i_queue_name text,
    in i_consumer_name text,
    in i_provider_node text,
    in i_custom_tick_id int8,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform 1
       from pgq_node.node_info n
      where n.queue_name = i_queue_name
        for update;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown queue: ' || i_queue_name;
        return;
    end if;

    update pgq_node.local_state
       set provider_node = i_provider_node,
           last_tick_id = i_custom_tick_id
     where queue_name = i_queue_name
       and consumer_name = i_consumer_name;
    if found then
        ret_code := 201;
        ret_note := 'Consumer already registered: ' || i_queue_name || '/' || i_consumer_name;
        return;
    end if;

    insert into pgq_node.local_state (queue_name, consumer_name, provider_node, last_tick_id)
    values (i_queue_name, i_consumer_name, i_provider_node, i_custom_tick_id);

    ret_code := 200;
    ret_note := 'Consumer ' || i_consumer_name || ' registered on queue ' || i_queue_name;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.unregister_consumer(2)
--
--   Forgets a cascaded consumer of the local node (also when it was not
--   known).
--
--   Returns 200 "Consumer <c> unregistered from <q>"; 404 when this database
--   is no node of the queue.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.unregister_consumer(
    in i_queue_name text,
    in i_consumer_name text,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    perform 1
       from pgq_node.node_info n
      where n.queue_name = i_queue_name
        for update;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown queue: ' || i_queue_name;
        return;
    end if;

    delete from pgq_node.local_state
     where queue_name = i_queue_name
       and consumer_name = i_consumer_name;

    ret_code := 200;
    ret_note := 'Consumer ' || i_consumer_name || ' unregistered from ' || i_queue_name;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.get_consumer_info(1)
--
--   The cascaded consumers of the local node, by name, with their state.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.get_consumer_info(
    in i_queue_name text,
    out consumer_name text,
    out provider_node text,
    out last_tick_id int8,
    out paused boolean,
    out uptodate boolean,
    out cur_error text)
returns setof record
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    select ls.consumer_name, ls.provider_node, ls.last_tick_id,
           ls.paused, ls.uptodate, ls.cur_error
      from pgq_node.local_state ls
     where ls.queue_name = i_queue_name
     order by ls.consumer_name;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.get_consumer_state(2)
--
--   What a cascaded consumer needs at the start of a round: the local node,
--   its own position and flags, and where its provider is.
--
--   ret_code/ret_note   100 "Ok"; 404 when this database is no node of the
--                       queue, the consumer is unknown, or its provider's
--                       location is
--   node_type, node_name, completed_tick, provider_node,
--   provider_location, paused, uptodate, cur_error
-- ---------------------------------------------------------------------------
create or replace function pgq_node.get_consumer_state(
    in i_queue_name text,
    in i_consumer_name text,
    out ret_code int4,
    out ret_note text,
    out node_type text,
    out node_name text,
    out completed_tick bigint,
    out provider_node text,
    out provider_location text,
    out paused boolean,
    out uptodate boolean,
    out cur_error text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    select n.node_type, n.node_name into node_type, node_name
      from pgq_node.node_info n
     where n.queue_name = i_queue_name;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown queue: ' || i_queue_name;
        return;
    end if;

    select ls.last_tick_id, ls.provider_node, ls.paused, ls.uptodate, ls.cur_error
      into completed_tick, provider_node, paused, uptodate, cur_error
      from pgq_node.local_state ls
     where ls.queue_name = i_queue_name
       and ls.consumer_name = i_consumer_name;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown consumer: ' || i_queue_name || '/' || i_consumer_name;
        return;
    end if;

    select loc.node_location into provider_location
      from pgq_node.node_location loc
     where loc.queue_name = i_queue_name
       and loc.node_name = provider_node;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown provider node: ' || i_queue_name || '/' || provider_node;
        return;
    end if;

    ret_code := 100;
    ret_note := 'Ok';
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.change_consumer_provider(3)
--
--   Points a cascaded consumer at another provider node (whose location
--   must be known); the consumer is marked not up to date.
--
--   Returns 200 "Consumer provider node set to : <node>"; 404 when the node
--   or the consumer is unknown.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.change_consumer_provider(
    in i_queue_name text,
    in i_consumer_name text,
    in i_new_provider text,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if not exists (select 1 from pgq_node.node_location loc
                    where loc.queue_name = i_queue_name
                      and loc.node_name = i_new_provider)
    then
        ret_code := 404;
        ret_note := 'New node not found: ' || i_new_provider;
        return;
    end if;

    update pgq_node.local_state
       set provider_node = i_new_provider,
           uptodate = false
     where queue_name = i_queue_name
       and consumer_name = i_consumer_name;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown consumer: ' || i_queue_name || '/' || i_consumer_name;
        return;
    end if;

    ret_code := 200;
    ret_note := 'Consumer provider node set to : ' || i_new_provider;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.set_consumer_uptodate(3)
--
--   The consumer acknowledges (true) or an administrator withdraws (false)
--   that it has seen the latest administrative change.
--
--   Returns 200 "Consumer uptodate = 0|1"; 404 "Consumer not known: <q>/<c>".
-- ---------------------------------------------------------------------------
create or replace function pgq_node.set_consumer_uptodate(
    in i_queue_name text,
    in i_consumer_name text,
    in i_uptodate boolean,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    update pgq_node.local_state
       set uptodate = i_uptodate
     where queue_name = i_queue_name
       and consumer_name = i_consumer_name;
    if found then
        ret_code := 200;
        ret_note := 'Consumer uptodate = ' || i_uptodate::int4::text;
    else
        ret_code := 404;
        ret_note := 'Consumer not known: ' || i_queue_name || '/' || i_consumer_name;
    end if;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.set_consumer_paused(3)
--
--   Pauses (true) or resumes (false) a cascaded consumer; a change also
--   marks it not up to date, so that it reports having seen it.
--
--   Returns 200 "Consumer <c> tagged as paused|resumed"; 201 "Consumer <c>
--   already paused|resumed"; 404 "Unknown consumer: <c>".
-- ---------------------------------------------------------------------------
create or replace function pgq_node.set_consumer_paused(
    in i_queue_name text,
    in i_consumer_name text,
    in i_paused boolean,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_was   boolean;
    v_word  text := case when i_paused then 'paused' else 'resumed' end;
begin
    select ls.paused into v_was
      from pgq_node.local_state ls
     where ls.queue_name = i_queue_name
       and ls.consumer_name = i_consumer_name
       for update;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown consumer: ' || i_consumer_name;
    elsif v_was = i_paused then
        ret_code := 201;
        ret_note := 'Consumer ' || i_consumer_name || ' already ' || v_word;
    else
        update pgq_node.local_state
           set paused = i_paused,
               uptodate = false
         where queue_name = i_queue_name
           and consumer_name = i_consumer_name;
        ret_code := 200;
        ret_note := 'Consumer ' || i_consumer_name || ' tagged as ' || v_word;
    end if;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.set_consumer_completed(3)
--
--   Records the tick a cascaded consumer has applied, in the transaction
--   that applied it; clears its error.
--
--   Returns 100 "Consumer <c> completed tick = <tick>"; 404 "Consumer not
--   known: <q>/<c>".
-- ---------------------------------------------------------------------------
create or replace function pgq_node.set_consumer_completed(
    in i_queue_name text,
    in i_consumer_name text,
    in i_tick_id int8,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    update pgq_node.local_state
       set last_tick_id = i_tick_id,
           cur_error = null
     where queue_name = i_queue_name
       and consumer_name = i_consumer_name;
    if found then
        ret_code := 100;
        ret_note := 'Consumer ' || i_consumer_name || ' completed tick = ' || i_tick_id::text;
    else
        ret_code := 404;
        ret_note := 'Consumer not known: ' || i_queue_name || '/' || i_consumer_name;
    end if;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.set_consumer_error(3)
--
--   Stores why the consumer's current batch failed (shown by admin tools).
--
--   Returns 100 "Consumer <c> error = <msg>"; 101 "Consumer not known,
--   ignoring: <q>/<c>".
-- ---------------------------------------------------------------------------
create or replace function pgq_node.set_consumer_error(
    in i_queue_name text,
    in i_consumer_name text,
    in i_error_msg text,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    update pgq_node.local_state
       set cur_error = i_error_msg
     where queue_name = i_queue_name
       and consumer_name = i_consumer_name;
    if found then
        ret_code := 100;
        ret_note := 'Consumer ' || i_consumer_name || ' error = ' || i_error_msg;
    else
        ret_code := 101;
        ret_note := 'Consumer not known, ignoring: ' || i_queue_name || '/' || i_consumer_name;
    end if;
end;
$$;
