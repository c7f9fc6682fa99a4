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
