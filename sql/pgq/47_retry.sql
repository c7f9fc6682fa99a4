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
