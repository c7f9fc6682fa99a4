-- pgq_ext, part 30: event tracking.
--
-- For consumers that apply a batch event by event, each in its own target
-- transaction.  Only the events of one batch per consumer are remembered:
-- the first event recorded for a new batch forgets those of the previous one
-- (partial_batch says which batch the remembered events belong to).


-- ---------------------------------------------------------------------------
-- pgq_ext.is_event_done(4)
--
--   Tells whether an event of a batch is recorded as applied.
--
--   a_consumer     consumer name
--   a_subconsumer  subconsumer name ('' for a plain consumer)
--   a_batch_id     batch id
--   a_event_id     event id
--
--   Returns true when recorded, false otherwise.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.is_event_done(
    a_consumer text,
    a_subconsumer text,
    a_batch_id bigint,
    a_event_id bigint)
returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return exists (
        select 1
          from pgq_ext.completed_event e
         where e.consumer_id = a_consumer
           and e.subconsumer_id = a_subconsumer
           and e.batch_id = a_batch_id
           and e.event_id = a_event_id);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_ext.is_event_done(3)
--
--   is_event_done(4) for a plain consumer (subconsumer '').
--
--   a_consumer  consumer name
--   a_batch_id  batch id
--   a_event_id  event id
--
--   Returns true when recorded, false otherwise.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.is_event_done(
    a_consumer text,
    a_batch_id bigint,
    a_event_id bigint)
returns boolean
language plpgsql
as $$
begin
    return pgq_ext.is_event_done(a_consumer, '', a_batch_id, a_event_id);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_ext.set_event_done(4)
--
--   Records an event of a batch as applied; call it in the transaction that
--   applies the event.  When the consumer's remembered events belong to
--   another batch, they are forgotten first.
--
--   a_consumer     consumer name
--   a_subconsumer  subconsumer name ('' for a plain consumer)
--   a_batch_id     batch id
--   a_event_id     event id
--
--   Returns false when the event was recorded already, true otherwise.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.set_event_done(
    a_consumer text,
    a_subconsumer text,
    a_batch_id bigint,
    a_event_id bigint)
returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_cur   bigint;
begin
    if pgq_ext.is_event_done(a_consumer, a_subconsumer, a_batch_id, a_event_id) then
        return false;
    end if;

    select p.cur_batch_id into v_cur
      from pgq_ext.partial_batch p
     where p.consumer_id = a_consumer
       and p.subconsumer_id = a_subconsumer
       for update;
    if not found then
        insert into pgq_ext.partial_batch
                    (consumer_id, subconsumer_id, cur_batch_id)
             values (a_consumer, a_subconsumer, a_batch_id);
    elsif v_cur <> a_batch_id then
        delete from pgq_ext.completed_event
         where consumer_id = a_consumer
           and subconsumer_id = a_subconsumer
           and batch_id = v_cur;
        update pgq_ext.partial_batch
           set cur_batch_id = a_batch_id
         where consumer_id = a_consumer
           and subconsumer_id = a_subconsumer;
    end if;

    insert into pgq_ext.completed_event
                (consumer_id, subconsumer_id, batch_id, event_id)
         values (a_consumer, a_subconsumer, a_batch_id, a_event_id);
    return true;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_ext.set_event_done(3)
--
--   set_event_done(4) for a plain consumer (subconsumer '').
--
--   a_consumer  consumer name
--   a_batch_id  batch id
--   a_event_id  event id
--
--   Returns false when the event was recorded already, true otherwise.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.set_event_done(
    a_consumer text,
    a_batch_id bigint,
    a_event_id bigint)
returns boolean
language plpgsql
as $$
begin
    return pgq_ext.set_event_done(a_consumer, '', a_batch_id, a_event_id);
end;
$$;
