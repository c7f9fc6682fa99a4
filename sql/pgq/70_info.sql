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
