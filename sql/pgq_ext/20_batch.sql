-- pgq_ext, part 20: batch tracking.
--
-- A consumer that applies a whole batch in one target transaction records
-- the batch id in that same transaction.  After a crash between that commit
-- and pgq.finish_batch on the queue database, the queue hands out the same
-- batch again; is_batch_done then says it was applied already.


-- ---------------------------------------------------------------------------
-- pgq_ext.is_batch_done(3)
--
--   Tells whether a batch is the one last recorded as applied.
--
--   a_consumer     consumer name
--   a_subconsumer  subconsumer name ('' for a plain consumer)
--   a_batch_id     batch id
--
--   Returns true when the stored last batch is a_batch_id, false otherwise
--   (also when nothing is stored for the consumer).
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.is_batch_done(
    a_consumer text,
    a_subconsumer text,
    a_batch_id bigint)
returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_last  bigint;
begin
    select b.last_batch_id into v_last
      from pgq_ext.completed_batch b
     where b.consumer_id = a_consumer
       and b.subconsumer_id = a_subconsumer;
    if not found then
        return false;
    end if;
    return v_last = a_batch_id;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_ext.is_batch_done(2)
--
--   is_batch_done(3) for a plain consumer (subconsumer '').
--
--   a_consumer  consumer name
--   a_batch_id  batch id
--
--   Returns true when a_batch_id is the last batch recorded as applied.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.is_batch_done(
    a_consumer text,
    a_batch_id bigint)
returns boolean
language plpgsql
as $$
begin
    return pgq_ext.is_batch_done(a_consumer, '', a_batch_id);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_ext.set_batch_done(3)
--
--   Records a batch as applied; call it in the transaction that applies the
--   batch.  Batch ids of 0 or less are accepted but not stored.
--
--   a_consumer     consumer name
--   a_subconsumer  subconsumer name ('' for a plain consumer)
--   a_batch_id     batch id
--
--   Returns false when the batch was recorded already, true otherwise.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.set_batch_done(
    a_consumer text,
    a_subconsumer text,
    a_batch_id bigint)
returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if pgq_ext.is_batch_done(a_consumer, a_subconsumer, a_batch_id) then
        return false;
    end if;

    if a_batch_id > 0 then
        insert into pgq_ext.completed_batch
                    (consumer_id, subconsumer_id, last_batch_id)
             values (a_consumer, a_subconsumer, a_batch_id)
        on conflict (consumer_id, subconsumer_id)
        do update set last_batch_id = excluded.last_batch_id;
    end if;

    return true;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_ext.set_batch_done(2)
--
--   set_batch_done(3) for a plain consumer (subconsumer '').
--
--   a_consumer  consumer name
--   a_batch_id  batch id
--
--   Returns false when the batch was recorded already, true otherwise.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.set_batch_done(
    a_consumer text,
    a_batch_id bigint)
returns boolean
language plpgsql
as $$
begin
    return pgq_ext.set_batch_done(a_consumer, '', a_batch_id);
end;
$$;
