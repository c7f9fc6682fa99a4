-- pgq core, part 46: batches.
--
-- A batch is the stretch of queue history between two ticks: the events whose
-- transaction is not visible in the start tick's snapshot but visible in the
-- end tick's snapshot.  next_batch* opens one on a subscription, the
-- get_batch_* functions read its events, finish_batch closes it.
--
-- The event readers (batch_event_sql, get_batch_events, get_batch_cursor) run
-- with the caller's rights and must build their SQL at run time: which event
-- tables hold a batch depends on table rotation.


-- ---------------------------------------------------------------------------
-- pgq.find_tick_helper(6)
--
--   Picks the end tick of a batch that should cover at least i_min_count
--   events or i_min_interval of time (either suffices; NULL = not asked).
--   The newest tick after the start tick is used when it satisfies a wish and
--   does not overshoot it by more than a factor of two; when it overshoots,
--   the oldest tick that satisfies a wish is used instead.
--
--   i_queue_id        queue id
--   i_prev_tick_id    start tick (the subscription's last tick)
--   i_prev_tick_time  its tick_time
--   i_prev_tick_seq   its tick_event_seq
--   i_min_count       wanted number of events, or NULL
--   i_min_interval    wanted time span, or NULL
--
--   Returns next_tick_id, next_tick_time, next_tick_seq: the chosen tick, or
--   all NULL when no tick is suitable yet.
-- ---------------------------------------------------------------------------
create or replace function pgq.find_tick_helper(
    in i_queue_id int4,
    in i_prev_tick_id int8,
    in i_prev_tick_time timestamptz,
    in i_prev_tick_seq int8,
    in i_min_count int8,
    in i_min_interval interval,
    out next_tick_id int8,
    out next_tick_time timestamptz,
    out next_tick_seq int8)
language plpgsql
stable
as $$
declare
    v_id        int8;
    v_time      timestamptz;
    v_seq       int8;
    v_enough    boolean := false;   -- newest tick satisfies a wish
    v_too_far   boolean := false;   -- newest tick overshoots a wish
begin
    select t.tick_id, t.tick_time, t.tick_event_seq
      into v_id, v_time, v_seq
      from pgq.tick t
     where t.tick_queue = i_queue_id
       and t.tick_id > i_prev_tick_id
     order by t.tick_queue desc, t.tick_id desc
     limit 1;
    if v_id is null then
        return;
    end if;

    if i_min_count is not null then
        v_enough := coalesce(v_seq - i_prev_tick_seq >= i_min_count, false);
        v_too_far := coalesce(v_seq - i_prev_tick_seq > i_min_count * 2, false);
    end if;
    if i_min_interval is not null then
        v_enough := v_enough
            or coalesce(v_time - i_prev_tick_time >= i_min_interval, false);
        v_too_far := v_too_far
            or coalesce(v_time - i_prev_tick_time > i_min_interval * 2, false);
    end if;

    if v_too_far then
        -- walk forward from the start tick to the first one that is enough
        select t.tick_id, t.tick_time, t.tick_event_seq
          into next_tick_id, next_tick_time, next_tick_seq
          from pgq.tick t
         where t.tick_queue = i_queue_id
           and t.tick_id > i_prev_tick_id
           and (   (i_min_count is not null
                    and t.tick_event_seq - i_prev_tick_seq >= i_min_count)
                or (i_min_interval is not null
                    and t.tick_time - i_prev_tick_time >= i_min_interval))
         order by t.tick_queue asc, t.tick_id asc
         limit 1;
    elsif v_enough then
        next_tick_id := v_id;
        next_tick_time := v_time;
        next_tick_seq := v_seq;
    end if;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.next_batch_custom(5)
--
--   Opens the consumer's next batch, or returns the one already open (the
--   tuning arguments are then ignored).
--
--   i_queue_name     queue name
--   i_consumer_name  consumer name
--   i_min_lag        only hand out a batch whose end tick is at least this old
--   i_min_count      merge ticks until the batch spans this many event ids
--   i_min_interval   merge ticks until the batch spans this much time
--                    (without min_count/min_interval the batch ends at the
--                    very next tick)
--
--   Returns one row: batch_id, cur_tick_id, prev_tick_id, cur_tick_time,
--   prev_tick_time, cur_tick_event_seq, prev_tick_event_seq.  All NULL when
--   there is nothing to do yet; the consumer should sleep.  The *_event_seq
--   values only hint at the batch size: an event-less batch is possible.
-- ---------------------------------------------------------------------------
create or replace function pgq.next_batch_custom(
    in i_queue_name text,
    in i_consumer_name text,
    in i_min_lag interval,
    in i_min_count int4,
    in i_min_interval interval,
    out batch_id int8,
    out cur_tick_id int8,
    out prev_tick_id int8,
    out cur_tick_time timestamptz,
    out prev_tick_time timestamptz,
    out cur_tick_event_seq int8,
    out prev_tick_event_seq int8)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sub   record;
begin
    -- The subscription row is locked: two sessions asking for the same
    -- consumer's batch get the same batch instead of overwriting each other.
    select s.sub_queue, s.sub_consumer, s.sub_batch,
           lt.tick_id as last_id, lt.tick_time as last_time,
           lt.tick_event_seq as last_seq,
           nt.tick_id as next_id, nt.tick_time as next_time,
           nt.tick_event_seq as next_seq
      into v_sub
      from pgq.queue q
      join pgq.subscription s on s.sub_queue = q.queue_id
      join pgq.consumer c on c.co_id = s.sub_consumer
      left join pgq.tick lt
             on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      left join pgq.tick nt
             on nt.tick_queue = s.sub_queue and nt.tick_id = s.sub_next_tick
     where q.queue_name = i_queue_name
       and c.co_name = i_consumer_name
       for update of s;
    if not found then
        raise exception '%', 'Not subscriber to queue: '
            || coalesce(i_queue_name, 'NULL') || '/'
            || coalesce(i_consumer_name, 'NULL');
    end if;

    if v_sub.last_id is null then
        raise exception 'PgQ corruption: Consumer % on queue % does not see tick %',
            i_consumer_name, i_queue_name, v_sub.last_id;
    end if;

    prev_tick_id := v_sub.last_id;
    prev_tick_time := v_sub.last_time;
    prev_tick_event_seq := v_sub.last_seq;

    if v_sub.sub_batch is not null then
        batch_id := v_sub.sub_batch;
        cur_tick_id := v_sub.next_id;
        cur_tick_time := v_sub.next_time;
        cur_tick_event_seq := v_sub.next_seq;
        return;
    end if;

    if i_min_count is null and i_min_interval is null then
        select t.tick_id, t.tick_time, t.tick_event_seq
          into cur_tick_id, cur_tick_time, cur_tick_event_seq
          from pgq.tick t
         where t.tick_queue = v_sub.sub_queue
           and t.tick_id > v_sub.last_id
         order by t.tick_queue asc, t.tick_id asc
         limit 1;
    else
        select h.next_tick_id, h.next_tick_time, h.next_tick_seq
          into cur_tick_id, cur_tick_time, cur_tick_event_seq
          from pgq.find_tick_helper(v_sub.sub_queue, v_sub.last_id,
                                    v_sub.last_time, v_sub.last_seq,
                                    i_min_count, i_min_interval) h;
    end if;

    if cur_tick_id is null
       or (i_min_lag is not null and now() - cur_tick_time < i_min_lag)
    then
        -- nothing to hand out yet
        cur_tick_id := null;
        cur_tick_time := null;
        cur_tick_event_seq := null;
        prev_tick_id := null;
        prev_tick_time := null;
        prev_tick_event_seq := null;
        return;
    end if;

    batch_id := nextval('pgq.batch_id_seq');
    update pgq.subscription
       set sub_batch = batch_id,
           sub_next_tick = cur_tick_id,
           sub_active = now()
     where sub_queue = v_sub.sub_queue
       and sub_consumer = v_sub.sub_consumer;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.next_batch_info(2)
--
--   Opens (or returns the open) next batch with the default rule: the batch
--   ends at the next tick.
--
--   i_queue_name     queue name
--   i_consumer_name  consumer name
--
--   Returns the seven columns of next_batch_custom.
-- ---------------------------------------------------------------------------
create or replace function pgq.next_batch_info(
    in i_queue_name text,
    in i_consumer_name text,
    out batch_id int8,
    out cur_tick_id int8,
    out prev_tick_id int8,
    out cur_tick_time timestamptz,
    out prev_tick_time timestamptz,
    out cur_tick_event_seq int8,
    out prev_tick_event_seq int8)
language plpgsql
as $$
begin
    select b.batch_id, b.cur_tick_id, b.prev_tick_id,
           b.cur_tick_time, b.prev_tick_time,
           b.cur_tick_event_seq, b.prev_tick_event_seq
      into batch_id, cur_tick_id, prev_tick_id,
           cur_tick_time, prev_tick_time,
           cur_tick_event_seq, prev_tick_event_seq
      from pgq.next_batch_custom(i_queue_name, i_consumer_name,
                                 null, null, null) b;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.next_batch(2)
--
--   Like next_batch_info, returning only the batch id.
--
--   i_queue_name     queue name
--   i_consumer_name  consumer name
--
--   Returns the batch id, or NULL when there is nothing to do yet.
-- ---------------------------------------------------------------------------
create or replace function pgq.next_batch(
    in i_queue_name text,
    in i_consumer_name text)
returns int8
language plpgsql
as $$
declare
    v_batch int8;
begin
    select b.batch_id into v_batch
      from pgq.next_batch_info(i_queue_name, i_consumer_name) b;
    return v_batch;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_batch_info(1)
--
--   Describes an open batch.
--
--   x_batch_id  batch id
--
--   Returns queue_name, consumer_name, batch_start / batch_end (times of the
--   start and end ticks), prev_tick_id, tick_id, lag (now - batch_end),
--   seq_start, seq_end (event sequence positions of the two ticks).  An
--   unknown batch gives one row of NULLs.
-- ---------------------------------------------------------------------------
create or replace function pgq.get_batch_info(
    in x_batch_id bigint,
    out queue_name text,
    out consumer_name text,
    out batch_start timestamptz,
    out batch_end timestamptz,
    out prev_tick_id bigint,
    out tick_id bigint,
    out lag interval,
    out seq_start bigint,
    out seq_end bigint)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    select q.queue_name, c.co_name,
           lt.tick_time, nt.tick_time,
           s.sub_last_tick, s.sub_next_tick,
           current_timestamp - nt.tick_time,
           lt.tick_event_seq, nt.tick_event_seq
      into queue_name, consumer_name,
           batch_start, batch_end,
           prev_tick_id, tick_id,
           lag,
           seq_start, seq_end
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
      join pgq.tick lt
        on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      join pgq.tick nt
        on nt.tick_queue = s.sub_queue and nt.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.batch_event_tables(1)
--
--   Lists the event tables that may hold events of a batch: the table before
--   the current one when the batch ended before the last rotation started,
--   only the current one when the batch started after the last rotation was
--   complete, else both (older first).
--
--   x_batch_id  batch id
--
--   Returns table names as text ('<data prefix>_<n>').
-- ---------------------------------------------------------------------------
create or replace function pgq.batch_event_tables(x_batch_id bigint)
returns setof text
language plpgsql
as $$
declare
    v       record;
    v_old   boolean;    -- look in the previous table
    v_new   boolean;    -- look in the current table
begin
    select pg_catalog.txid_snapshot_xmin(lt.tick_snapshot) as lo_txid,
           pg_catalog.txid_snapshot_xmax(nt.tick_snapshot) as hi_txid,
           q.queue_data_pfx, q.queue_ntables, q.queue_cur_table,
           q.queue_switch_step1, q.queue_switch_step2
      into v
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.tick lt
        on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      join pgq.tick nt
        on nt.tick_queue = s.sub_queue and nt.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    if not found then
        raise exception 'Cannot find data for batch %', x_batch_id;
    end if;

    v_old := true;
    v_new := true;
    if v.hi_txid < v.queue_switch_step1 then
        -- the batch ended before the last rotation began
        v_new := false;
    elsif v.queue_switch_step2 is not null
          and v.lo_txid > v.queue_switch_step2 then
        -- the batch began after the last rotation was complete
        v_old := false;
    end if;

    if v_old then
        -- the table rotated away from (the ring wraps around)
        return next v.queue_data_pfx || '_'
            || ((v.queue_cur_table + v.queue_ntables - 1) % v.queue_ntables)::text;
    end if;
    if v_new then
        return next v.queue_data_pfx || '_' || v.queue_cur_table::text;
    end if;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.batch_event_sql(1)
--
--   Builds the SELECT that returns a batch's events, ordered by ev_id.
--
--   Per event table the main part is a range scan of ev_txid from the start
--   tick's xmax to the end tick's xmax, filtered by both snapshots.
--   Transactions that were still running at the start tick and have finished
--   by the end tick lie below that range: those close below the range start
--   (within 100 txids, chained) widen the range, the rest are fetched with an
--   exact IN list in a second part.  Private (retry) events are kept only for
--   their owning subscription.  The text always ends with ' order by 1'
--   (get_batch_cursor relies on that).
--
--   x_batch_id  batch id
--
--   Returns the SQL text.
-- ---------------------------------------------------------------------------
create or replace function pgq.batch_event_sql(x_batch_id bigint)
returns text
language plpgsql
as $$
declare
    v           record;
    v_lo        bigint;     -- lower end of the txid range scan
    v_hi        bigint;     -- upper end of the txid range scan
    v_xid       bigint;
    v_late      text := ''; -- txids fetched by exact match
    v_cols      text;
    v_range     text;
    v_owner     text;
    v_tbl       text;
    v_sql       text := '';
begin
    select s.sub_id, lt.tick_snapshot as snap_lo, nt.tick_snapshot as snap_hi
      into v
      from pgq.subscription s
      join pgq.tick lt
        on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
      join pgq.tick nt
        on nt.tick_queue = s.sub_queue and nt.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    if not found then
        raise exception 'batch not found';
    end if;

    v_lo := pg_catalog.txid_snapshot_xmax(v.snap_lo);
    v_hi := pg_catalog.txid_snapshot_xmax(v.snap_hi);

    -- transactions in progress at the start tick and finished at the end tick
    for v_xid in
        select x
          from pg_catalog.txid_snapshot_xip(v.snap_lo) as x
         where x <> all (array(select pg_catalog.txid_snapshot_xip(v.snap_hi)))
         order by x desc
    loop
        if v_xid >= v_lo - 100 then
            v_lo := v_xid;
        elsif v_late = '' then
            v_late := v_xid::text;
        else
            v_late := v_late || ',' || v_xid::text;
        end if;
    end loop;

    v_cols := 'select ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data,'
           || ' ev_extra1, ev_extra2, ev_extra3, ev_extra4 from ';
    v_owner := ' and (ev.ev_owner is null or ev.ev_owner = '
            || v.sub_id::text || ')';
    v_range := ' ev where ev.ev_txid >= ' || v_lo::text
            || ' and ev.ev_txid <= ' || v_hi::text
            || ' and pg_catalog.txid_visible_in_snapshot(ev.ev_txid, '
            || pg_catalog.quote_literal(v.snap_hi::text) || '::pg_catalog.txid_snapshot)'
            || ' and not pg_catalog.txid_visible_in_snapshot(ev.ev_txid, '
            || pg_catalog.quote_literal(v.snap_lo::text) || '::pg_catalog.txid_snapshot)'
            || v_owner;

    for v_tbl in select pgq.quote_fqname(t) from pgq.batch_event_tables(x_batch_id) t
    loop
        if v_sql <> '' then
            v_sql := v_sql || ' union all ';
        end if;
        v_sql := v_sql || v_cols || v_tbl || v_range;
        if v_late <> '' then
            v_sql := v_sql || ' union all ' || v_cols || v_tbl
                  || ' ev where ev.ev_txid in (' || v_late || ')' || v_owner;
        end if;
    end loop;

    if v_sql = '' then
        raise exception 'could not construct sql for batch %', x_batch_id;
    end if;
    return v_sql || ' order by 1';
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_batch_events(1)
--
--   Returns all events of a batch, ordered by ev_id (ev_owner is not shown).
--
--   x_batch_id  batch id
--
--   Returns rows of ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data,
--   ev_extra1 .. ev_extra4.
-- ---------------------------------------------------------------------------
create or replace function pgq.get_batch_events(
    in x_batch_id bigint,
    out ev_id bigint,
    out ev_time timestamptz,
    out ev_txid bigint,
    out ev_retry int4,
    out ev_type text,
    out ev_data text,
    out ev_extra1 text,
    out ev_extra2 text,
    out ev_extra3 text,
    out ev_extra4 text)
returns setof record
language plpgsql
as $$
begin
    return query execute pgq.batch_event_sql(x_batch_id);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_batch_cursor(4)
--
--   Opens a NO SCROLL cursor over a batch's events and returns its first rows;
--   the caller FETCHes the rest and CLOSEs it.  The cursor lives until the
--   end of the transaction.
--
--   i_batch_id     batch id
--   i_cursor_name  cursor name (quoted as an identifier)
--   i_quick_limit  rows to return at once (<= 0: none)
--   i_extra_where  optional SQL condition on the event columns; the batch
--                  query is then wrapped as subselect "_evs" and filtered
--
--   Returns the first rows, same columns as get_batch_events; nothing when
--   any of the first three arguments is NULL (no cursor then).
-- ---------------------------------------------------------------------------
create or replace function pgq.get_batch_cursor(
    in i_batch_id bigint,
    in i_cursor_name text,
    in i_quick_limit int4,
    in i_extra_where text,
    out ev_id bigint,
    out ev_time timestamptz,
    out ev_txid bigint,
    out ev_retry int4,
    out ev_type text,
    out ev_data text,
    out ev_extra1 text,
    out ev_extra2 text,
    out ev_extra3 text,
    out ev_extra4 text)
returns setof record
language plpgsql
as $$
declare
    v_cursor    text;
    v_sql       text;
begin
    if i_batch_id is null or i_cursor_name is null or i_quick_limit is null then
        return;
    end if;

    v_cursor := pg_catalog.quote_ident(i_cursor_name);
    v_sql := pgq.batch_event_sql(i_batch_id);
    if i_extra_where is not null then
        -- drop the final ' order by 1', filter, and order again
        v_sql := 'select * from ('
              || pg_catalog.left(v_sql, -pg_catalog.length(' order by 1'))
              || ') _evs where ' || i_extra_where || ' order by 1';
    end if;

    execute 'declare ' || v_cursor || ' no scroll cursor for ' || v_sql;

    if i_quick_limit > 0 then
        return query execute 'fetch ' || i_quick_limit::text || ' from ' || v_cursor;
    end if;
    return;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.get_batch_cursor(3)
--
--   get_batch_cursor(4) without a filter.
--
--   i_batch_id     batch id
--   i_cursor_name  cursor name
--   i_quick_limit  rows to return at once
--
--   Returns the first rows of the cursor.
-- ---------------------------------------------------------------------------
create or replace function pgq.get_batch_cursor(
    in i_batch_id bigint,
    in i_cursor_name text,
    in i_quick_limit int4,
    out ev_id bigint,
    out ev_time timestamptz,
    out ev_txid bigint,
    out ev_retry int4,
    out ev_type text,
    out ev_data text,
    out ev_extra1 text,
    out ev_extra2 text,
    out ev_extra3 text,
    out ev_extra4 text)
returns setof record
language plpgsql
strict
as $$
begin
    return query
        select * from pgq.get_batch_cursor(i_batch_id, i_cursor_name,
                                           i_quick_limit, null::text);
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq.finish_batch(1)
--
--   Closes a batch: the subscription moves on to the batch's end tick.
--
--   x_batch_id  batch id
--
--   Returns 1, or 0 with a WARNING when no subscription has that batch open.
-- ---------------------------------------------------------------------------
create or replace function pgq.finish_batch(x_batch_id bigint)
returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    update pgq.subscription
       set sub_last_tick = sub_next_tick,
           sub_next_tick = null,
           sub_batch = null,
           sub_active = now()
     where sub_batch = x_batch_id;
    if found then
        return 1;
    end if;
    raise warning 'finish_batch: batch % not found', x_batch_id;
    return 0;
end;
$$;
