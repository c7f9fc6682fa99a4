\set VERBOSITY terse
set client_min_messages = warning;

-- Maintenance: maint_operations, table rotation (step1/step2), tick
-- cleanup, retry re-insertion, maint_tables_to_vacuum.

-- nothing to do on an empty install (autovacuum is on)
select * from pgq.maint_operations();
select * from pgq.maint_tables_to_vacuum();
select pgq.maint_retry_events();
select pgq.maint_rotate_tables_step2();

select pgq.create_queue('mq');
select pgq.register_consumer('mq', 'mc');
-- tick whenever asked
select pgq.set_queue_config('mq', 'ticker_max_lag', '0');
select pgq.set_queue_config('mq', 'ticker_idle_period', '0');

-- not due yet
select * from pgq.maint_operations();
select pgq.maint_rotate_tables_step1('mq');
select pgq.maint_rotate_tables_step1('nosuch');
select queue_cur_table from pgq.queue where queue_name = 'mq';

-- due: rotation period has passed, but the consumer still sits on tick 1,
-- which is older than step2 -> skipped
update pgq.queue set queue_switch_time = now() - interval '3 hours' where queue_name = 'mq';
select * from pgq.maint_operations();
select pgq.maint_rotate_tables_step1('mq');
select queue_cur_table, queue_switch_step2 is not null as step2_set
  from pgq.queue where queue_name = 'mq';

-- the consumer moves on: two events, a tick, a batch
select pgq.insert_event('mq', 'ev', 'one');
select pgq.insert_event('mq', 'ev', 'two');
select pgq.ticker('mq') > 1 as ticked;
select pgq.next_batch('mq', 'mc') as batch \gset
select ev_id, ev_type, ev_data from pgq.get_batch_events(:batch) order by ev_id;
select pgq.finish_batch(:batch);

-- now step1 rotates: table 1 becomes current, step2 is pending
select pgq.maint_rotate_tables_step1('mq');
select queue_cur_table, queue_switch_step2 is null as step2_pending,
       queue_switch_step1 = txid_current() as step1_now
  from pgq.queue where queue_name = 'mq';
select pgq.current_event_table('mq');
-- step2 pending: maint_operations asks for step2 only
select * from pgq.maint_operations();
-- not due again while step2 is pending
update pgq.queue set queue_switch_time = now() - interval '3 hours' where queue_name = 'mq';
select pgq.maint_rotate_tables_step1('mq');
select queue_cur_table from pgq.queue where queue_name = 'mq';
select pgq.maint_rotate_tables_step2();
select queue_switch_step2 > queue_switch_step1 as step2_after_step1
  from pgq.queue where queue_name = 'mq';
select * from pgq.maint_operations();

-- new events go to table 1; the old events are still in table 0
select pgq.insert_event('mq', 'ev', 'three');
select tableoid::regclass, ev_data from pgq.event_1 order by ev_id;

-- rotate again (consumer advanced past the new step2): table 2 becomes
-- current; ticks older than the previous step2 are deleted
select pgq.ticker('mq') > 1 as ticked;
select pgq.next_batch('mq', 'mc') as batch \gset
select ev_data from pgq.get_batch_events(:batch) order by ev_id;
select pgq.finish_batch(:batch);
select count(*) as ticks_before from pgq.tick where tick_queue = 1;
select pgq.maint_rotate_tables_step1('mq');
select pgq.maint_rotate_tables_step2();
select queue_cur_table from pgq.queue where queue_name = 'mq';
select tick_id from pgq.tick where tick_queue = 1 order by tick_id;
-- and once more: table 0 (still holding events 1 and 2) is truncated and reused
select pgq.ticker('mq') > 1 as ticked;
select pgq.next_batch('mq', 'mc') as batch \gset
select pgq.finish_batch(:batch);
update pgq.queue set queue_switch_time = now() - interval '3 hours' where queue_name = 'mq';
select pgq.maint_rotate_tables_step1('mq');
select pgq.maint_rotate_tables_step2();
select queue_cur_table from pgq.queue where queue_name = 'mq';
select tableoid::regclass, ev_data from pgq.event_1 order by ev_id;

-- extra maintenance functions per queue
update pgq.queue set queue_extra_maint = '{baz,foo.bar}' where queue_name = 'mq';
update pgq.queue set queue_switch_time = now() - interval '3 hours' where queue_name = 'mq';
select * from pgq.maint_operations();
-- an empty list adds nothing (pgq 3.5 fails here: "lower bound of FOR loop
-- cannot be null")
update pgq.queue set queue_extra_maint = '{}' where queue_name = 'mq';
select * from pgq.maint_operations();
update pgq.queue set queue_extra_maint = null where queue_name = 'mq';

-- sanity errors of step1 (txids masked)
update pgq.queue set queue_switch_step1 = 9000000000 where queue_name = 'mq';
do $$
begin
    perform pgq.maint_rotate_tables_step1('mq');
exception when others then
    raise warning '%', regexp_replace(sqlerrm, 'current=[0-9]+', 'current=N');
end;
$$;
update pgq.queue set queue_switch_step1 = txid_current() where queue_name = 'mq';
update pgq.subscription set sub_last_tick = 999;
select pgq.maint_rotate_tables_step1('mq');
update pgq.subscription set sub_last_tick = (select max(tick_id) from pgq.tick where tick_queue = 1);

-- retry: the event comes back with the same id and time, a new txid, and is
-- private to the subscription
select pgq.insert_event('mq', 'retry-me', 'payload');
select pgq.ticker('mq') > 1 as ticked;
select pgq.next_batch('mq', 'mc') as batch \gset
select ev_id as retry_id, ev_time as retry_time, ev_txid as retry_txid
  from pgq.get_batch_events(:batch) where ev_type = 'retry-me' \gset
select pgq.event_retry(:batch, :retry_id, 0);
select pgq.finish_batch(:batch);
select count(*) as in_retry_queue from pgq.retry_queue;
select pgq.maint_retry_events();
select pgq.maint_retry_events();
select count(*) as in_retry_queue from pgq.retry_queue;
select ev_id = :retry_id as same_id, ev_time = :'retry_time' as same_time,
       ev_txid <> :retry_txid as new_txid,
       ev_owner = (select sub_id from pgq.subscription) as owner_is_sub,
       ev_retry, ev_type, ev_data
  from pgq.event_1 where ev_type = 'retry-me' and ev_owner is not null;
select count(*) as copies from pgq.event_1 where ev_id = :retry_id;

-- at most 10 per call; only due rows
insert into pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_owner, ev_retry, ev_type)
select now() - interval '1 minute', 1, 1000 + i, now(), (select sub_id from pgq.subscription), 1, 'bulk'
  from generate_series(1, 12) i;
insert into pgq.retry_queue (ev_retry_after, ev_queue, ev_id, ev_time, ev_owner, ev_retry, ev_type)
values (now() + interval '1 hour', 1, 2000, now(), (select sub_id from pgq.subscription), 1, 'later');
select pgq.maint_retry_events();
select pgq.maint_retry_events();
select pgq.maint_retry_events();
select ev_type, count(*) from pgq.retry_queue group by 1;
select count(*) as bulk_moved from pgq.event_1 where ev_type = 'bulk';
delete from pgq.retry_queue;

-- clean up
select pgq.drop_queue('mq', true);
select * from pgq.maint_operations();
