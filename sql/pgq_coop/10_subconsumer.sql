-- pgq_coop, part 10: subconsumer registration.


-- ---------------------------------------------------------------------------
-- pgq_coop.register_subconsumer(3)
--
--   Registers the main consumer on the queue (when it is not yet) and the
--   subconsumer as a member of its group.
--
--   i_queue_name        queue name
--   i_consumer_name     main consumer name
--   i_subconsumer_name  subconsumer name (the consumer '<main>.<sub>')
--
--   Returns 1 when the subconsumer is new, 0 when it was registered already.
-- ---------------------------------------------------------------------------
create or replace function pgq_coop.register_subconsumer(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text)
returns int4
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sub_name  text := i_consumer_name || '.' || i_subconsumer_name;
    v_queue     int4;
    v_main_sub  int4;
    v_subcon    int4;
begin
    perform pgq.register_consumer(i_queue_name, i_consumer_name);
    if pgq.register_consumer(i_queue_name, v_sub_name) = 0 then
        return 0;
    end if;

    select s.sub_queue, s.sub_id into v_queue, v_main_sub
      from pgq.queue q
      join pgq.subscription s on s.sub_queue = q.queue_id
      join pgq.consumer c on c.co_id = s.sub_consumer
     where q.queue_name = i_queue_name
       and c.co_name = i_consumer_name;
    if not found then
        raise exception 'main consumer not found';
    end if;

    select c.co_id into v_subcon
      from pgq.consumer c
     where c.co_name = v_sub_name;

    -- join the group: the main row's sub_id, no position of its own
    update pgq.subscription
       set sub_id = v_main_sub,
           sub_last_tick = null,
           sub_next_tick = null,
           sub_batch = null,
           sub_active = now()
     where sub_queue = v_queue
       and sub_consumer = v_subcon;

    return 1;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_coop.unregister_subconsumer(4)
--
--   Removes a subconsumer from its group.  The main consumer and the other
--   subconsumers stay.
--
--   i_queue_name        queue name
--   i_consumer_name     main consumer name
--   i_subconsumer_name  subconsumer name
--   i_batch_handling    what to do when the subconsumer holds a batch:
--                       1 = remove it anyway (the batch's events are lost
--                       for the group); anything else = refuse
--
--   Returns 1 when removed, 0 when the subconsumer was not registered.
--   Raises 'subconsumer has active batch' when it holds a batch and
--   i_batch_handling is not 1.
-- ---------------------------------------------------------------------------
create or replace function pgq_coop.unregister_subconsumer(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text,
    i_batch_handling int4)
returns int4
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue     int4;
    v_subcon    int4;
    v_batch     int8;
begin
    select s.sub_queue, s.sub_consumer, s.sub_batch
      into v_queue, v_subcon, v_batch
      from pgq.queue q
      join pgq.subscription s on s.sub_queue = q.queue_id
      join pgq.consumer c on c.co_id = s.sub_consumer
     where q.queue_name = i_queue_name
       and c.co_name = i_consumer_name || '.' || i_subconsumer_name
       for update of s;
    if not found then
        return 0;
    end if;

    if v_batch is not null and i_batch_handling is distinct from 1 then
        raise exception 'subconsumer has active batch';
    end if;

    delete from pgq.subscription
     where sub_queue = v_queue
       and sub_consumer = v_subcon;

    return 1;
end;
$$;
