-- pgq_ext, part 40: tick tracking.
--
-- For consumers that apply batches strictly in order (pgq.SerialConsumer):
-- the end tick of the last applied batch identifies it, and also tells a
-- consumer that lost its queue position where to rewind to.


-- ---------------------------------------------------------------------------
-- pgq_ext.get_last_tick(2)
--
--   Reads the end tick of the last batch recorded as applied.
--
--   a_consumer     consumer name
--   a_subconsumer  subconsumer name ('' for a plain consumer)
--
--   Returns the tick id, or NULL when nothing is recorded.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.get_last_tick(
    a_consumer text,
    a_subconsumer text)
returns int8
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_tick  int8;
begin
    select t.last_tick_id into v_tick
      from pgq_ext.completed_tick t
     where t.consumer_id = a_consumer
       and t.subconsumer_id = a_subconsumer;
    return v_tick;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_ext.get_last_tick(1)
--
--   get_last_tick(2) for a plain consumer (subconsumer '').
--
--   a_consumer  consumer name
--
--   Returns the tick id, or NULL when nothing is recorded.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.get_last_tick(a_consumer text)
returns int8
language plpgsql
as $$
begin
    return pgq_ext.get_last_tick(a_consumer, '');
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_ext.set_last_tick(3)
--
--   Records the end tick of the batch just applied, or forgets it.
--
--   a_consumer     consumer name
--   a_subconsumer  subconsumer name ('' for a plain consumer)
--   a_tick_id      tick id; NULL removes the consumer's record
--
--   Returns 1.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.set_last_tick(
    a_consumer text,
    a_subconsumer text,
    a_tick_id bigint)
returns int4
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if a_tick_id is null then
        delete from pgq_ext.completed_tick
         where consumer_id = a_consumer
           and subconsumer_id = a_subconsumer;
    else
        insert into pgq_ext.completed_tick
                    (consumer_id, subconsumer_id, last_tick_id)
             values (a_consumer, a_subconsumer, a_tick_id)
        on conflict (consumer_id, subconsumer_id)
        do update set last_tick_id = excluded.last_tick_id;
    end if;
    return 1;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_ext.set_last_tick(2)
--
--   set_last_tick(3) for a plain consumer (subconsumer '').
--
--   a_consumer  consumer name
--   a_tick_id   tick id; NULL removes the consumer's record
--
--   Returns 1.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.set_last_tick(
    a_consumer text,
    a_tick_id bigint)
returns int4
language plpgsql
as $$
begin
    return pgq_ext.set_last_tick(a_consumer, '', a_tick_id);
end;
$$;
