-- pgq core, part 50: ticks.
--
-- A tick records a snapshot; events between two ticks form a batch.  The
-- ticker decides per queue whether a new tick is worth making:
--   * new events and (at least ticker_max_count of them, or the last tick is
--     at least ticker_max_lag old) -> tick;
--   * no new events -> back off: wait at least ticker_max_lag / 2, and while
--     the last tick is younger than ticker_idle_period also wait until the
--     gap is twice the previous gap;
--   * no tick yet -> tick.
-- "New events" counts event ids handed out since the last tick, read with
-- pgq._event_seq_used (see 20_internal.sql for why not pgq.seq_getval).
-- Only one ticker may run per database: the snapshot is taken before any lock
-- could serialize two of them.  Use pgq.force_tick to ask for a tick.


-- ----------------------------------------------------------------------------
-- pgq.ticker(1)
--
-- Make a tick for one queue if one is due (rules above).
--
-- Parameters:
--   i_queue_name  queue.
-- Returns:
--   the new tick id, or NULL if no tick was needed.
--   Errors: 'no such queue', 'This queue has external tick source.',
--   'Ticker has been paused for this queue', 'Invalid PgQ state: ...' when
--   the last tick's snapshot lies in the future (txids went backwards).
--   Warnings: 'Negative new_events?  ...', 'Dubious PgQ state: ...'.
-- ----------------------------------------------------------------------------
create or replace function pgq.ticker(i_queue_name text)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue_id      int4;
    v_tick_seq      text;
    v_external      boolean;
    v_paused        boolean;
    v_max_count     int4;
    v_max_lag       interval;
    v_idle_period   interval;
    v_event_seq     bigint;
    v_txid          bigint;
    v_new_events    bigint;
    v_lag           interval;
    v_prev_gap      interval;
    v_tick_id       bigint;
    v_last          record;
begin
    select q.queue_id, q.queue_tick_seq, q.queue_external_ticker, q.queue_ticker_paused,
           q.queue_ticker_max_count, q.queue_ticker_max_lag, q.queue_ticker_idle_period,
           pgq._event_seq_used(q.queue_event_seq)
      into v_queue_id, v_tick_seq, v_external, v_paused,
           v_max_count, v_max_lag, v_idle_period, v_event_seq
      from pgq.queue q
     where q.queue_name = i_queue_name;
    if not found then
        raise exception 'no such queue';
    end if;
    if v_external then
        raise exception 'This queue has external tick source.';
    end if;
    if v_paused then
        raise exception 'Ticker has been paused for this queue';
    end if;

    select t.tick_id, t.tick_time, t.tick_event_seq,
           txid_snapshot_xmin(t.tick_snapshot) as snap_xmin,
           txid_snapshot_xmax(t.tick_snapshot) as snap_xmax
      into v_last
      from pgq.tick t
     where t.tick_queue = v_queue_id
     order by t.tick_queue desc, t.tick_id desc
     limit 1;

    if found then
        v_txid := txid_current();
        if v_last.snap_xmin > v_txid then
            raise exception 'Invalid PgQ state: old xmin=%, old xmax=%, cur txid=%',
                v_last.snap_xmin, v_last.snap_xmax, v_txid;
        end if;

        v_new_events := v_event_seq - v_last.tick_event_seq;
        v_lag := now() - v_last.tick_time;

        if v_new_events < 0 then
            raise warning 'Negative new_events?  old=% cur=%', v_last.tick_event_seq, v_event_seq;
        end if;
        if v_last.snap_xmax > v_txid then
            raise warning 'Dubious PgQ state: old xmax=%, cur txid=%', v_last.snap_xmax, v_txid;
        end if;

        if v_new_events > 0 then
            -- busy: wait for enough events or enough lag
            if v_new_events < v_max_count and v_lag < v_max_lag then
                return null;
            end if;
        else
            -- idle: grow the gap between ticks, up to the idle period
            select v_last.tick_time - t.tick_time
              into v_prev_gap
              from pgq.tick t
             where t.tick_queue = v_queue_id
               and t.tick_id < v_last.tick_id
             order by t.tick_queue desc, t.tick_id desc
             limit 1;
            if found then
                if v_lag < v_max_lag / 2
                   or (v_lag < v_prev_gap * 2 and v_lag < v_idle_period)
                then
                    return null;
                end if;
            end if;
        end if;
    end if;

    v_tick_id := nextval(v_tick_seq::regclass);
    insert into pgq.tick (tick_queue, tick_id, tick_event_seq)
    values (v_queue_id, v_tick_id, v_event_seq);
    return v_tick_id;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq._ticker_batch(1)   [internal, pgqd]
--
-- pgq.ticker(queue) for several queues in one call, with the same decisions,
-- errors and warnings, queue by queue in the order given.  Set-based: the
-- queues' figures are read in one statement and the ticks inserted in one,
-- where calling pgq.ticker once per queue runs five statements each (a
-- thousand queues: ~0.1 ms of server time per queue, and more in a new
-- session).  The daemon ticks many queues of a database at the same instant
-- (their idle periods line up after one pgq.ticker() transaction), so this is
-- what bounds how late the last of them is.  A name given twice is ticked at
-- most once.
--
-- Parameters:
--   i_queue_names  queues.
-- Returns:
--   one row per name, in order: the name, the new tick id (NULL: no tick
--   needed), and the age in seconds of the queue's previous tick when a tick
--   was made.  Any error of pgq.ticker(queue) for one of the queues fails the
--   whole call (the caller then ticks them one by one).
-- ----------------------------------------------------------------------------
create or replace function pgq._ticker_batch(i_queue_names text[])
returns table (r_queue_name text, r_tick_id bigint, r_gap double precision)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
-- One plan per statement, kept for the session: re-planning the figures' read on every
-- call (the default for its first calls, and for ever when the planner finds the custom
-- plans cheaper) cost four times the ticks themselves for ten queues.
set plan_cache_mode = force_generic_plan
as $$
declare
    v_txid      bigint;
    v_new       bigint;
    v_lag       interval;
    v_ords      int8[] := '{}';
    v_ids       int4[] := '{}';
    v_seqs      text[] := '{}';
    v_events    bigint[] := '{}';
    v_gaps      double precision[] := '{}';
    r           record;
begin
    for r in
        select n.ord, n.first, q.queue_id, q.queue_tick_seq, q.queue_external_ticker,
               q.queue_ticker_paused, q.queue_ticker_max_count, q.queue_ticker_max_lag,
               q.queue_ticker_idle_period,
               -- pgq._event_seq_used(q.queue_event_seq), written out: the call
               -- costs five times the expression (~20 us per queue)
               coalesce(pg_sequence_last_value(
                   pgq.quote_fqname(q.queue_event_seq)::regclass), 0) as event_seq,
               l.tick_id as last_id, l.tick_time as last_time,
               l.tick_event_seq as last_seq, l.snap_xmin, l.snap_xmax,
               p.tick_time as prev_time
          from (select u.name, u.ord,
                       row_number() over (partition by u.name order by u.ord) = 1 as first
                  from unnest(i_queue_names) with ordinality u(name, ord)) n
          left join pgq.queue q on q.queue_name = n.name
          left join lateral (
                select t.tick_id, t.tick_time, t.tick_event_seq,
                       txid_snapshot_xmin(t.tick_snapshot) as snap_xmin,
                       txid_snapshot_xmax(t.tick_snapshot) as snap_xmax
                  from pgq.tick t
                 where t.tick_queue = q.queue_id
                 order by t.tick_queue desc, t.tick_id desc
                 limit 1) l on true
          left join lateral (
                select t.tick_time
                  from pgq.tick t
                 where t.tick_queue = q.queue_id
                   and t.tick_id < l.tick_id
                 order by t.tick_queue desc, t.tick_id desc
                 limit 1) p on true
         order by n.ord
    loop
        if r.queue_id is null then
            raise exception 'no such queue';
        end if;
        if r.queue_external_ticker then
            raise exception 'This queue has external tick source.';
        end if;
        if r.queue_ticker_paused then
            raise exception 'Ticker has been paused for this queue';
        end if;
        if not r.first then
            continue;
        end if;

        if r.last_id is not null then
            if v_txid is null then
                v_txid := txid_current();
            end if;
            if r.snap_xmin > v_txid then
                raise exception 'Invalid PgQ state: old xmin=%, old xmax=%, cur txid=%',
                    r.snap_xmin, r.snap_xmax, v_txid;
            end if;

            v_new := r.event_seq - r.last_seq;
            v_lag := now() - r.last_time;

            if v_new < 0 then
                raise warning 'Negative new_events?  old=% cur=%', r.last_seq, r.event_seq;
            end if;
            if r.snap_xmax > v_txid then
                raise warning 'Dubious PgQ state: old xmax=%, cur txid=%', r.snap_xmax, v_txid;
            end if;

            if v_new > 0 then
                if v_new < r.queue_ticker_max_count and v_lag < r.queue_ticker_max_lag then
                    continue;
                end if;
            elsif r.prev_time is not null then
                if v_lag < r.queue_ticker_max_lag / 2
                   or (v_lag < (r.last_time - r.prev_time) * 2
                       and v_lag < r.queue_ticker_idle_period)
                then
                    continue;
                end if;
            end if;
        end if;

        v_ords := v_ords || r.ord;
        v_ids := v_ids || r.queue_id;
        v_seqs := v_seqs || r.queue_tick_seq;
        v_events := v_events || r.event_seq;
        v_gaps := v_gaps || extract(epoch from now() - r.last_time)::double precision;
    end loop;

    return query
    with due as (
        select d.ord, d.id, d.seq, d.events, d.gap
          from unnest(v_ords, v_ids, v_seqs, v_events, v_gaps) d(ord, id, seq, events, gap)
    ), made as (
        insert into pgq.tick (tick_queue, tick_id, tick_event_seq)
        select due.id, nextval(due.seq::regclass), due.events
          from due
         order by due.ord
        returning tick_queue, tick_id
    )
    select n.name, m.tick_id, due.gap
      from unnest(i_queue_names) with ordinality n(name, ord)
      left join due on due.ord = n.ord
      left join made m on m.tick_queue = due.id
     order by n.ord;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.ticker(0)
--
-- Run pgq.ticker(queue) for every queue that is neither externally ticked nor
-- paused, in name order, all in the caller's transaction.
--
-- Returns:
--   number of queues that got a new tick.
-- ----------------------------------------------------------------------------
create or replace function pgq.ticker()
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_name  text;
    v_count bigint := 0;
begin
    for v_name in
        select q.queue_name from pgq.queue q
         where not q.queue_external_ticker
           and not q.queue_ticker_paused
         order by q.queue_name
    loop
        if pgq.ticker(v_name) > 0 then
            v_count := v_count + 1;
        end if;
    end loop;
    return v_count;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.ticker(4)
--
-- External ticker: store a tick made elsewhere (a cascaded branch copies the
-- root's ticks).  The snapshot is the current one; the queue's tick and event
-- sequences are moved forward so they never lag behind the stored tick.
--
-- Parameters:
--   i_queue_name        queue; must have queue_external_ticker and not be
--                       paused.
--   i_tick_id           id of the tick.
--   i_orig_timestamp    tick_time.
--   i_event_seq         tick_event_seq.
-- Returns:
--   i_tick_id.  Error 'queue not found or ticker disabled: <name>'.
-- ----------------------------------------------------------------------------
create or replace function pgq.ticker(
    i_queue_name text, i_tick_id bigint, i_orig_timestamp timestamptz, i_event_seq bigint)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_queue_id  int4;
    v_tick_seq  text;
    v_event_seq text;
begin
    select q.queue_id, q.queue_tick_seq, q.queue_event_seq
      into v_queue_id, v_tick_seq, v_event_seq
      from pgq.queue q
     where q.queue_name = i_queue_name
       and q.queue_external_ticker
       and not q.queue_ticker_paused;
    if not found then
        raise exception 'queue not found or ticker disabled: %', i_queue_name;
    end if;

    insert into pgq.tick (tick_queue, tick_id, tick_time, tick_event_seq)
    values (v_queue_id, i_tick_id, i_orig_timestamp, i_event_seq);

    perform pgq.seq_setval(v_tick_seq, i_tick_id);
    perform pgq.seq_setval(v_event_seq, i_event_seq);

    return i_tick_id;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.force_tick(1)
--
-- Ask the ticker for a tick soon: pushes the event sequence far enough ahead
-- that the next ticker run sees "many new events".  Does nothing to queues
-- that are externally ticked or paused.  The caller polls until the returned
-- tick id changes.
--
-- Parameters:
--   i_queue_name  queue.
-- Returns:
--   id of the queue's latest tick (NULL for an unknown queue).
-- ----------------------------------------------------------------------------
create or replace function pgq.force_tick(i_queue_name text)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_tick_id   bigint;
begin
    perform setval(q.queue_event_seq::regclass,
                   nextval(q.queue_event_seq::regclass) + q.queue_ticker_max_count * 2 + 1000)
       from pgq.queue q
      where q.queue_name = i_queue_name
        and not q.queue_external_ticker
        and not q.queue_ticker_paused;

    select t.tick_id into v_tick_id
      from pgq.queue q
      join pgq.tick t on t.tick_queue = q.queue_id
     where q.queue_name = i_queue_name
     order by t.tick_queue desc, t.tick_id desc
     limit 1;

    return v_tick_id;
end;
$$;
