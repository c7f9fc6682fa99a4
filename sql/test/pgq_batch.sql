\set VERBOSITY terse
set client_min_messages = warning;

-- Batches: next_batch / next_batch_info / next_batch_custom, find_tick_helper,
-- get_batch_info, get_batch_events, batch_event_tables, batch_event_sql,
-- finish_batch.

select pgq.create_queue('bq');
update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0';

-- not subscribed
select pgq.next_batch('bq', 'nobody');
select * from pgq.next_batch_info('nosuch', 'c1');
select * from pgq.next_batch_custom(null, null, null, null, null);

select pgq.register_consumer('bq', 'c1');

-- no tick after the consumer's position yet: nothing to do
select pgq.next_batch('bq', 'c1');
select * from pgq.next_batch_info('bq', 'c1');
select * from pgq.next_batch_custom('bq', 'c1', null, 10, '1 minute');

select pgq.insert_event('bq', 'ev', 'data' || i, 'x1', 'x2', 'x3', 'x4')
  from generate_series(1, 3) i;
select pgq.ticker('bq');

-- the tick taken before the first event has tick_event_seq 0 in our schema
-- (pgq 3.5: 1), see intended difference 1 in docs/sql-design.md
select b.batch_id, b.cur_tick_id, b.prev_tick_id,
       b.cur_tick_time = ct.tick_time as cur_time_ok,
       b.prev_tick_time = pt.tick_time as prev_time_ok,
       b.cur_tick_event_seq, b.prev_tick_event_seq
  from pgq.next_batch_info('bq', 'c1') b
  join pgq.tick ct on ct.tick_id = b.cur_tick_id
  join pgq.tick pt on pt.tick_id = b.prev_tick_id;
-- an open batch is returned again, whatever the tuning arguments say
select pgq.next_batch('bq', 'c1');
select batch_id, cur_tick_id, prev_tick_id
  from pgq.next_batch_custom('bq', 'c1', '1 hour', 10000, '10 minutes');
select batch_id, cur_tick_id, prev_tick_id
  from pgq.next_batch_custom(i_queue_name := 'bq', i_consumer_name := 'c1',
                             i_min_lag := null, i_min_count := null,
                             i_min_interval := null);
select sub_last_tick, sub_next_tick, sub_batch from pgq.subscription;

select queue_name, consumer_name, prev_tick_id, tick_id, seq_start, seq_end,
       batch_start < batch_end as ordered, lag >= '0' as lag_ok
  from pgq.get_batch_info(1);
select * from pgq.get_batch_info(9999);
select * from pgq.get_batch_info(null);

select ev_id, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4
  from pgq.get_batch_events(1);
select count(distinct ev_txid) as txids, count(distinct ev_time) as times
  from pgq.get_batch_events(1);
select * from pgq.batch_event_tables(1);
select right(sql, 11) = ' order by 1' as ends_ok,
       (length(sql) - length(replace(sql, ' union all ', ''))) / 11 as unions,
       position(' in (' in sql) > 0 as has_in_list
  from pgq.batch_event_sql(1) sql;

-- unknown batches
select * from pgq.get_batch_events(9999);
select pgq.batch_event_sql(9999);
select * from pgq.batch_event_tables(9999);
select * from pgq.get_batch_events(null);

-- finishing
select pgq.finish_batch(1);
select pgq.finish_batch(1);
select pgq.finish_batch(null);
select sub_last_tick, sub_next_tick, sub_batch from pgq.subscription;
select pgq.next_batch('bq', 'c1');

-- an event-less batch
select pgq.ticker('bq');
select pgq.next_batch('bq', 'c1');
select count(*) from pgq.get_batch_events(2);
select pgq.finish_batch(2);

-- min_lag: the end tick must be old enough
select pgq.ticker('bq');
select * from pgq.next_batch_custom('bq', 'c1', '1 hour', null, null);
update pgq.tick set tick_time = tick_time - interval '2 hours' where tick_id = 4;
select batch_id, cur_tick_id, prev_tick_id
  from pgq.next_batch_custom('bq', 'c1', '1 hour', null, null);
select pgq.finish_batch(3);

-- a subscription whose last tick is gone
update pgq.subscription set sub_last_tick = 999;
select pgq.next_batch('bq', 'c1');
select * from pgq.next_batch_custom('bq', 'c1', null, 1, null);
update pgq.subscription set sub_last_tick = 4;


-- Merging ticks: ticks 1..7 of queue mq, ten minutes and ten event ids apart.
select pgq.create_queue('mq');
update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0';
select pgq.register_consumer('mq', 'mc');
select pgq.ticker('mq') from generate_series(2, 7);
update pgq.tick
   set tick_time = '2020-01-01 00:00:00+00'::timestamptz + (tick_id - 1) * interval '10 minutes',
       tick_event_seq = (tick_id - 1) * 10
 where tick_queue = (select queue_id from pgq.queue where queue_name = 'mq');
\set mq '(select queue_id from pgq.queue where queue_name = \'mq\')'
\set t0 '\'2020-01-01 00:00:00+00\'::timestamptz'

-- newest tick (7) falls short: nothing
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, 100, null);
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, null, '2 hours');
-- newest tick is enough and not more than twice the wish: it is taken
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, 40, null);
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, 60, null);
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, null, '45 minutes');
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, 50, '2 hours');
-- newest tick overshoots: the first tick that is enough
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, 25, null);
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, null, '20 minutes');
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, 100, '25 minutes');
select * from pgq.find_tick_helper(:mq, 1, :t0, 0, 5, '1 hour');
-- nothing after the start tick / unknown start values
select * from pgq.find_tick_helper(:mq, 7, :t0, 0, 1, null);
select * from pgq.find_tick_helper(:mq, 1, :t0, null, 10, null);
select * from pgq.find_tick_helper(:mq, 1, null, 0, null, '10 minutes');
select * from pgq.find_tick_helper(i_queue_id := :mq, i_prev_tick_id := 1,
    i_prev_tick_time := :t0, i_prev_tick_seq := 0,
    i_min_count := 30, i_min_interval := null);

-- the same through next_batch_custom
select * from pgq.next_batch_custom('mq', 'mc', null, 100, null);
select * from pgq.next_batch_custom('mq', 'mc', null, 25, null);
select pgq.finish_batch(batch_id) from pgq.next_batch_info('mq', 'mc');
select * from pgq.next_batch_custom('mq', 'mc', '1 minute', null, '15 minutes');
select pgq.finish_batch(batch_id) from pgq.next_batch_info('mq', 'mc');
select * from pgq.next_batch_custom('mq', 'mc', null, 1, null);


-- Long transactions: made-up tick snapshots and event txids.  Start tick:
-- xmin B+90, xmax B+300, running B+100, B+250, B+280.  End tick: xmin B+280,
-- xmax B+400, running B+280, B+390.  B+250 is close to the range start and
-- widens the range scan; B+100 is fetched by an exact IN list.
select pgq.create_queue('lq');
select pgq.register_consumer('lq', 'lc');
select pgq.register_consumer('lq', 'other');
update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0';
select pgq.ticker('lq');
select txid_current() + 1000 as b \gset
select sub_id as lc_sub from pgq.subscription
 where sub_consumer = (select co_id from pgq.consumer where co_name = 'lc') \gset
select sub_id as other_sub from pgq.subscription
 where sub_consumer = (select co_id from pgq.consumer where co_name = 'other') \gset
update pgq.tick
   set tick_snapshot = format('%s:%s:%s,%s,%s', :b + 90, :b + 300,
                              :b + 100, :b + 250, :b + 280)::txid_snapshot
 where tick_queue = (select queue_id from pgq.queue where queue_name = 'lq')
   and tick_id = 1;
update pgq.tick
   set tick_snapshot = format('%s:%s:%s,%s', :b + 280, :b + 400,
                              :b + 280, :b + 390)::txid_snapshot
 where tick_queue = (select queue_id from pgq.queue where queue_name = 'lq')
   and tick_id = 2;
insert into pgq.event_3_0 (ev_id, ev_time, ev_txid, ev_owner, ev_type, ev_data)
select row_number() over (order by d), '2020-01-01', :b + d, o, 'x',
       'txid B+' || d || coalesce(' owner ' || o_name, '')
  from (values (50, null, null), (95, null, null), (100, null, null),
               (100, :other_sub, 'other'), (170, null, null),
               (250, null, null), (260, null, null), (280, null, null),
               (300, null, null), (300, :other_sub, 'other'),
               (300, :lc_sub, 'lc'), (390, null, null), (399, null, null),
               (400, null, null)) v(d, o, o_name);
select pgq.next_batch('lq', 'lc') as lb \gset
select * from pgq.batch_event_tables(:lb);
select ev_data from pgq.get_batch_events(:lb) order by ev_id;
select right(sql, 11) = ' order by 1' as ends_ok,
       (length(sql) - length(replace(sql, ' union all ', ''))) / 11 as unions,
       position(format(' in (%s)', :b + 100) in sql) > 0 as has_in_list
  from pgq.batch_event_sql(:lb) sql;
-- B+170 running at the start tick too: the chain B+250, B+170, B+100 is
-- covered by the range scan, no IN list
update pgq.tick
   set tick_snapshot = format('%s:%s:%s,%s,%s,%s', :b + 90, :b + 300,
                              :b + 100, :b + 170, :b + 250, :b + 280)::txid_snapshot
 where tick_queue = (select queue_id from pgq.queue where queue_name = 'lq')
   and tick_id = 1;
select ev_data from pgq.get_batch_events(:lb) order by ev_id;
select (length(sql) - length(replace(sql, ' union all ', ''))) / 11 as unions,
       position(' in (' in sql) > 0 as has_in_list
  from pgq.batch_event_sql(:lb) sql;
-- the other consumer sees its own private event instead
select pgq.next_batch('lq', 'other') as ob \gset
select ev_data from pgq.get_batch_events(:ob) order by ev_id;


-- Rotation: a batch may span the previous and the current event table.
select pgq.create_queue('rq');
update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0',
       queue_rotation_period = '0'
 where queue_name = 'rq';
select pgq.register_consumer('rq', 'rc');
select pgq.insert_event('rq', 'x', 'e1 (table 0)');
select pgq.ticker('rq');
select pgq.next_batch('rq', 'rc') as rb1 \gset
select pgq.finish_batch(:rb1);
select pgq.insert_event('rq', 'x', 'e2 (table 0)');
select pgq.ticker('rq');
select pgq.insert_event('rq', 'x', 'e2b (table 0, after tick 3)');
select pgq.maint_rotate_tables_step1('rq');
select pgq.insert_event('rq', 'x', 'e3 (table 1, rotation half done)');
select pgq.maint_rotate_tables_step2();
select pgq.insert_event('rq', 'x', 'e4 (table 1)');
select pgq.ticker('rq');
select queue_cur_table from pgq.queue where queue_name = 'rq';
-- batch ended before the rotation: previous table only
select pgq.next_batch('rq', 'rc') as rb2 \gset
select * from pgq.batch_event_tables(:rb2);
select ev_data from pgq.get_batch_events(:rb2);
select pgq.finish_batch(:rb2);
-- batch across the rotation: both tables
select pgq.next_batch('rq', 'rc') as rb3 \gset
select * from pgq.batch_event_tables(:rb3);
select ev_data from pgq.get_batch_events(:rb3);
select (length(sql) - length(replace(sql, ' union all ', ''))) / 11 as unions
  from pgq.batch_event_sql(:rb3) sql;
select pgq.finish_batch(:rb3);
-- batch after the rotation: current table only
select pgq.insert_event('rq', 'x', 'e5 (table 1)');
select pgq.ticker('rq');
select pgq.next_batch('rq', 'rc') as rb4 \gset
select * from pgq.batch_event_tables(:rb4);
select ev_data from pgq.get_batch_events(:rb4);
select pgq.finish_batch(:rb4);
