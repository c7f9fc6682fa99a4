-- pgq_coop, part 20: batches for subconsumers.
--
-- All forms end in next_batch_custom(7).  The main consumer's subscription
-- row is locked first, so the members of a group take their batches one at a
-- time: no batch is handed to two subconsumers, and a dead subconsumer's
-- batch is taken over by exactly one other.


-- ---------------------------------------------------------------------------
-- pgq_coop.next_batch_custom(7)
--
--   Gives a subconsumer a batch: the one it holds already, else (when
--   i_dead_interval is given) the batch of a group member that has been
--   silent for longer than i_dead_interval, else the group's next batch.
--   The main consumer and the subconsumer are registered when missing.
--
--   i_queue_name        queue name
--   i_consumer_name     main consumer name
--   i_subconsumer_name  subconsumer name
--   i_min_lag           as pgq.next_batch_custom
--   i_min_count         as pgq.next_batch_custom
--   i_min_interval      as pgq.next_batch_custom
--   i_dead_interval     silence after which another member counts as dead:
--                       it is unregistered and its open batch, if any,
--                       becomes this subconsumer's; NULL = no takeover
--
--   Returns the batch id, or NULL when there is nothing to do yet.
--   Raises 'main consumer has batch open?' when the main consumer itself
--   holds a batch (it is being used as a plain pgq consumer).
-- ---------------------------------------------------------------------------
create or replace function pgq_coop.next_batch_custom(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text,
    i_min_lag interval,
    i_min_count int4,
    i_min_interval interval,
    i_dead_interval interval)
returns int8
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sub_name  text := i_consumer_name || '.' || i_subconsumer_name;
    v_main      record;
    v_self      record;
    v_dead      record;
    v_batch     record;
begin
    -- the group's cursor, locked for the whole hand-out
    select s.sub_queue, s.sub_consumer, s.sub_id, s.sub_batch
      into v_main
      from pgq.queue q
      join pgq.subscription s on s.sub_queue = q.queue_id
      join pgq.consumer c on c.co_id = s.sub_consumer
     where q.queue_name = i_queue_name
       and c.co_name = i_consumer_name
       for update of s;
    if not found then
        perform pgq_coop.register_subconsumer(i_queue_name, i_consumer_name,
                                              i_subconsumer_name);
        select s.sub_queue, s.sub_consumer, s.sub_id, s.sub_batch
          into v_main
          from pgq.queue q
          join pgq.subscription s on s.sub_queue = q.queue_id
          join pgq.consumer c on c.co_id = s.sub_consumer
         where q.queue_name = i_queue_name
           and c.co_name = i_consumer_name
           for update of s;
        if not found then
            raise exception 'main consumer not found';
        end if;
    end if;

    if v_main.sub_batch is not null then
        raise exception 'main consumer has batch open?';
    end if;

    select s.sub_consumer, s.sub_batch
      into v_self
      from pgq.subscription s
      join pgq.consumer c on c.co_id = s.sub_consumer
     where s.sub_queue = v_main.sub_queue
       and c.co_name = v_sub_name
       for update of s;
    if not found then
        perform pgq_coop.register_subconsumer(i_queue_name, i_consumer_name,
                                              i_subconsumer_name);
        select s.sub_consumer, s.sub_batch
          into v_self
          from pgq.subscription s
          join pgq.consumer c on c.co_id = s.sub_consumer
         where s.sub_queue = v_main.sub_queue
           and c.co_name = v_sub_name
           for update of s;
        if not found then
            raise exception 'subconsumer not found';
        end if;
    end if;

    -- a batch in hand is returned again (the subconsumer restarted)
    if v_self.sub_batch is not null then
        update pgq.subscription
           set sub_active = now()
         where sub_queue = v_main.sub_queue
           and sub_consumer = v_self.sub_consumer;
        return v_self.sub_batch;
    end if;

    -- take over from a member that went silent, preferring one with a batch
    if i_dead_interval is not null then
        select s.sub_consumer, s.sub_batch, s.sub_last_tick, s.sub_next_tick
          into v_dead
          from pgq.subscription s
         where s.sub_queue = v_main.sub_queue
           and s.sub_id = v_main.sub_id
           and s.sub_consumer <> v_main.sub_consumer
           and s.sub_consumer <> v_self.sub_consumer
           and s.sub_active < now() - i_dead_interval
         order by s.sub_batch is null, s.sub_active
         limit 1
           for update of s;
        if found then
            delete from pgq.subscription
             where sub_queue = v_main.sub_queue
               and sub_consumer = v_dead.sub_consumer;
            if v_dead.sub_batch is not null then
                update pgq.subscription
                   set sub_batch = v_dead.sub_batch,
                       sub_last_tick = v_dead.sub_last_tick,
                       sub_next_tick = v_dead.sub_next_tick,
                       sub_active = now()
                 where sub_queue = v_main.sub_queue
                   and sub_consumer = v_self.sub_consumer;
                return v_dead.sub_batch;
            end if;
        end if;
    end if;

    -- the group's next batch: opened on the main row, moved to ours
    select b.batch_id, b.cur_tick_id, b.prev_tick_id
      into v_batch
      from pgq.next_batch_custom(i_queue_name, i_consumer_name,
                                 i_min_lag, i_min_count, i_min_interval) b;
    if v_batch.batch_id is null then
        return null;
    end if;

    update pgq.subscription
       set sub_last_tick = v_batch.cur_tick_id,
           sub_next_tick = null,
           sub_batch = null
     where sub_queue = v_main.sub_queue
       and sub_consumer = v_main.sub_consumer;

    update pgq.subscription
       set sub_batch = v_batch.batch_id,
           sub_last_tick = v_batch.prev_tick_id,
           sub_next_tick = v_batch.cur_tick_id,
           sub_active = now()
     where sub_queue = v_main.sub_queue
       and sub_consumer = v_self.sub_consumer;

    return v_batch.batch_id;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_coop.next_batch_custom(6)
--
--   next_batch_custom(7) without takeover of dead subconsumers.
--
--   i_queue_name        queue name
--   i_consumer_name     main consumer name
--   i_subconsumer_name  subconsumer name
--   i_min_lag           as pgq.next_batch_custom
--   i_min_count         as pgq.next_batch_custom
--   i_min_interval      as pgq.next_batch_custom
--
--   Returns the batch id, or NULL when there is nothing to do yet.
-- ---------------------------------------------------------------------------
create or replace function pgq_coop.next_batch_custom(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text,
    i_min_lag interval,
    i_min_count int4,
    i_min_interval interval)
returns int8
language plpgsql
as $$
begin
    return pgq_coop.next_batch_custom(i_queue_name, i_consumer_name,
                                      i_subconsumer_name, i_min_lag,
                                      i_min_count, i_min_interval, null);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_coop.next_batch(4)
--
--   The subconsumer's batch with the default batch size (up to the next
--   tick), taking over from members silent for longer than i_dead_interval.
--
--   i_queue_name        queue name
--   i_consumer_name     main consumer name
--   i_subconsumer_name  subconsumer name
--   i_dead_interval     silence after which another member counts as dead
--
--   Returns the batch id, or NULL when there is nothing to do yet.
-- ---------------------------------------------------------------------------
create or replace function pgq_coop.next_batch(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text,
    i_dead_interval interval)
returns int8
language plpgsql
as $$
begin
    return pgq_coop.next_batch_custom(i_queue_name, i_consumer_name,
                                      i_subconsumer_name, null, null, null,
                                      i_dead_interval);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_coop.next_batch(3)
--
--   The subconsumer's batch with the default batch size, no takeover.
--
--   i_queue_name        queue name
--   i_consumer_name     main consumer name
--   i_subconsumer_name  subconsumer name
--
--   Returns the batch id, or NULL when there is nothing to do yet.
-- ---------------------------------------------------------------------------
create or replace function pgq_coop.next_batch(
    i_queue_name text,
    i_consumer_name text,
    i_subconsumer_name text)
returns int8
language plpgsql
as $$
begin
    return pgq_coop.next_batch_custom(i_queue_name, i_consumer_name,
                                      i_subconsumer_name, null, null, null,
                                      null);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_coop.finish_batch(1)
--
--   Closes a subconsumer's batch.  The group's position moved on already
--   when the batch was handed out; the subconsumer is left without ticks.
--
--   i_batch_id  batch id
--
--   Returns 1, or 0 with a WARNING when no subscription holds the batch.
-- ---------------------------------------------------------------------------
create or replace function pgq_coop.finish_batch(i_batch_id int8)
returns int4
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    update pgq.subscription
       set sub_batch = null,
           sub_last_tick = null,
           sub_next_tick = null,
           sub_active = now()
     where sub_batch = i_batch_id;
    if found then
        return 1;
    end if;
    raise warning 'coop_finish_batch: batch % not found', i_batch_id;
    return 0;
end;
$$;
