\set VERBOSITY terse
set client_min_messages = warning;

-- The ticker: pgq.ticker(queue) decisions (busy, idle back-off, idle
-- period), pgq.ticker() over all queues, the external-ticker form,
-- pgq.force_tick, error and warning texts, and the first-event fix.

-- tick_time is moved back by the tests to simulate elapsed time
create function pg_temp.age_ticks(i_queue text, i_ages interval[])
returns void language plpgsql as $$
declare
    i int := 1;
    t record;
begin
    -- i_ages[1] applies to the newest tick, i_ages[2] to the one before, ...
    for t in select tick_id, tick_queue from pgq.tick
              where tick_queue = (select queue_id from pgq.queue where queue_name = i_queue)
              order by tick_id desc
    loop
        exit when i > coalesce(array_length(i_ages, 1), 0);
        update pgq.tick set tick_time = now() - i_ages[i]
         where tick_queue = t.tick_queue and tick_id = t.tick_id;
        i := i + 1;
    end loop;
end;
$$;

select pgq.create_queue('tq');
-- only one tick so far: no gap to compare with, so an idle queue ticks at once
select pgq.ticker('tq');
-- idle, last tick just made: wait at least max_lag / 2
select pgq.ticker('tq');
-- idle back-off: gap doubles.  Previous gap 0.5 s, last tick 2 s old -> tick
select pg_temp.age_ticks('tq', '{2 s, 2.5 s}');
select pgq.ticker('tq');
-- previous gap 2 s, last tick 3 s old (< 2 * 2 s) -> wait
select pg_temp.age_ticks('tq', '{3 s, 5 s}');
select pgq.ticker('tq');
-- last tick 4.5 s old (>= 2 * 2 s) -> tick
select pg_temp.age_ticks('tq', '{4.5 s, 6.5 s}');
select pgq.ticker('tq');
-- long previous gap (10 min) but the idle period (1 min) has passed -> tick
select pg_temp.age_ticks('tq', '{61 s, 11 min}');
select pgq.ticker('tq');
-- long previous gap, idle period not reached -> wait
select pg_temp.age_ticks('tq', '{50 s, 11 min}');
select pgq.ticker('tq');
-- less than max_lag / 2 -> wait even after a short previous gap
select pg_temp.age_ticks('tq', '{1 s, 1.1 s}');
select pgq.ticker('tq');
select tick_id, tick_event_seq from pgq.tick where tick_queue = 1 order by tick_id;

-- busy: the first event of the queue counts as new (pgq 3.5 would miss it)
select pgq.set_queue_config('tq', 'ticker_max_count', '3');
select pgq.insert_event('tq', 'ev', '1');
-- 1 new event, fresh tick: wait for more events or max_lag
select pgq.ticker('tq');
select pg_temp.age_ticks('tq', '{4 s}');
select pgq.ticker('tq');
-- 2 new events, fewer than max_count (3), fresh tick: wait
select pgq.insert_event('tq', 'ev', '2');
select pgq.insert_event('tq', 'ev', '3');
select pgq.ticker('tq');
-- 5 new events: max_count reached, tick regardless of lag
select pgq.insert_event('tq', 'ev', '4');
select pgq.insert_event('tq', 'ev', '5');
select pgq.insert_event('tq', 'ev', '6');
select pgq.ticker('tq');
select tick_id, tick_event_seq from pgq.tick where tick_queue = 1 and tick_id > 6 order by tick_id;

-- first event, threshold 1: ticks at once
select pgq.create_queue('fq');
select pgq.set_queue_config('fq', 'ticker_max_count', '1');
select pgq.ticker('fq');
select pgq.ticker('fq');
select pgq.insert_event('fq', 'ev', 'first');
select pgq.ticker('fq');
select tick_id, tick_event_seq from pgq.tick where tick_queue = 2 order by tick_id;
select pgq._event_seq_used('pgq.event_2_id_seq'), pgq.seq_getval('pgq.event_2_id_seq');
select pgq._event_seq_used('pgq.event_2_tick_seq') as ticks_used;
create sequence public.fresh_seq;
select pgq._event_seq_used('public.fresh_seq') as fresh_used, pgq.seq_getval('public.fresh_seq') as fresh_getval;
drop sequence public.fresh_seq;

-- errors and warnings
select pgq.ticker('nosuch');
select pgq.ticker(null);
-- tick_event_seq ahead of the sequence: warning, then treated as idle
update pgq.tick set tick_event_seq = 1000 where tick_queue = 2 and tick_id = (select max(tick_id) from pgq.tick where tick_queue = 2);
select pg_temp.age_ticks('fq', '{1 s}');
select pgq.ticker('fq');
update pgq.tick set tick_event_seq = 1 where tick_queue = 2 and tick_id = (select max(tick_id) from pgq.tick where tick_queue = 2);
-- snapshot from the future: error (the txid in the text is masked)
update pgq.tick set tick_snapshot = '9000000000:9000000000:' where tick_queue = 2 and tick_id = (select max(tick_id) from pgq.tick where tick_queue = 2);
do $$
begin
    perform pgq.ticker('fq');
exception when others then
    raise warning '%', regexp_replace(sqlerrm, 'cur txid=[0-9]+', 'cur txid=N');
end;
$$;
-- xmax in the future only: a warning (suppressed here, it shows a txid); ticks
update pgq.tick set tick_snapshot = '1:9000000000:' where tick_queue = 2 and tick_id = (select max(tick_id) from pgq.tick where tick_queue = 2);
select pg_temp.age_ticks('fq', '{1 min}');
set client_min_messages = error;
select pgq.ticker('fq');
set client_min_messages = warning;

-- paused and external queues
select pgq.set_queue_config('fq', 'ticker_paused', 'true');
select pgq.ticker('fq');
select pgq.create_queue('xq');
select pgq.set_queue_config('xq', 'external_ticker', 'true');
select pgq.ticker('xq');

-- ticker() handles the queues that are neither paused nor external
select pg_temp.age_ticks('tq', '{5 min}');
select pgq.ticker();
select pgq.ticker();
select pgq.set_queue_config('fq', 'ticker_paused', 'false');
select pg_temp.age_ticks('fq', '{5 min}');
select pg_temp.age_ticks('tq', '{5 min}');
select pgq.ticker();

-- external ticker form
select pgq.ticker('xq', 10, '2020-01-02 03:04:05+00', 50);
select pgq.ticker('xq', 11, '2020-01-02 03:04:06+00', 40);
select tick_id, tick_time = '2020-01-02 03:04:05+00' as given_time, tick_event_seq
  from pgq.tick where tick_queue = 3 order by tick_id;
select pgq.seq_getval('pgq.event_3_tick_seq') as tick_seq, pgq.seq_getval('pgq.event_3_id_seq') as event_seq;
select pgq.ticker('xq', 10, now(), 50);
select pgq.ticker('tq', 100, now(), 50);
select pgq.ticker('nosuch', 100, now(), 50);
select pgq.set_queue_config('xq', 'ticker_paused', 'true');
select pgq.ticker('xq', 12, now(), 60);
select pgq.set_queue_config('xq', 'ticker_paused', 'false');

-- force_tick: pushes the event sequence by max_count * 2 + 1000
select nextval('pgq.event_1_id_seq');
select pgq.force_tick('tq') = (select max(tick_id) from pgq.tick where tick_queue = 1) as returns_last_tick;
select nextval('pgq.event_1_id_seq');
select pgq.ticker('tq') > 0 as ticked;
-- external / paused queues are left alone, the last tick id is still returned
select pgq.force_tick('xq');
select pgq.seq_getval('pgq.event_3_id_seq');
select pgq.force_tick('nosuch') is null as unknown_queue;

-- clean up
select pgq.drop_queue('tq'), pgq.drop_queue('fq'), pgq.drop_queue('xq');
