\set VERBOSITY terse
set client_min_messages = warning;

-- Retry queue: event_retry (timestamp and seconds forms), batch_retry,
-- event_retry_raw, and the retried events coming back privately.

select pgq.create_queue('rq');
update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0';
select pgq.register_consumer('rq', 'c1');
select pgq.register_consumer('rq', 'c2');
select pgq.insert_event('rq', 'type' || i, 'data' || i, 'a' || i, null, null, 'd' || i)
  from generate_series(1, 5) i;
select pgq.ticker('rq');
select pgq.next_batch('rq', 'c1');
select pgq.next_batch('rq', 'c2');
\set c1_sub '(select sub_id from pgq.subscription where sub_consumer = (select co_id from pgq.consumer where co_name = \'c1\'))'

-- one event, due at a given time, then at a given delay
select pgq.event_retry(1, 2, now() + interval '1 hour');
select pgq.event_retry(x_batch_id := 1, x_event_id := 4, x_retry_seconds := 30);
-- already queued for this subscription: 0 (either form)
select pgq.event_retry(1, 2, now());
select pgq.event_retry(1, 4, 5);
-- the other consumer queues its own copy
select pgq.event_retry(2, 2, 60);
-- errors
select pgq.event_retry(1, 77, 60);
select pgq.event_retry(1, null, 60);
select pgq.event_retry(9999, 1, 60);
select pgq.event_retry(null, 1, now());
select pgq.event_retry(1, 3, null::timestamptz);

select ev_id, ev_owner = :c1_sub as c1_owns, ev_queue, ev_txid, ev_retry,
       ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4,
       ceil(extract(epoch from ev_retry_after - now()))::int as delay_s,
       ev_time = (select ev_time from pgq.get_batch_events(1) e where e.ev_id = r.ev_id) as same_time
  from pgq.retry_queue r
 order by ev_owner, ev_id;

-- the rest of the batch: events already queued are skipped
select pgq.batch_retry(1, 120);
select pgq.batch_retry(1, 120);
select pgq.batch_retry(i_batch_id := 2, i_retry_seconds := 0);
select pgq.batch_retry(9999, 10);
select pgq.batch_retry(null, 10);
select ev_owner = :c1_sub as c1_owns, ev_id, ev_retry,
       ceil(extract(epoch from ev_retry_after - now()))::int as delay_s
  from pgq.retry_queue
 order by ev_owner, ev_id;

-- a finished batch is unknown
select pgq.finish_batch(1);
select pgq.event_retry(1, 1, 60);
select pgq.batch_retry(1, 60);

-- raw insertion into the retry queue
select pgq.event_retry_raw('rq', 'nobody', now(), 1, now(), 0, 't', 'd', null, null, null, null);
select pgq.event_retry_raw('nosuch', 'c1', now(), 1, now(), 0, 't', 'd', null, null, null, null);
select pgq.event_retry_raw('rq', 'c1', now() - interval '1 minute', 666,
                           '2020-01-01 00:00:00+00', 3, 'rawtype', 'rawdata',
                           'e1', 'e2', 'e3', 'e4');
-- no id given: a new one from the queue's event sequence
select pgq.event_retry_raw(x_queue := 'rq', x_consumer := 'c1',
                           x_retry_after := now() - interval '1 minute',
                           x_ev_id := null, x_ev_time := now(), x_ev_retry := null,
                           x_ev_type := 'rawtype2', x_ev_data := null,
                           x_ev_extra1 := null, x_ev_extra2 := null,
                           x_ev_extra3 := null, x_ev_extra4 := null);
select pgq.event_retry_raw('rq', 'c1', now(), 666, now(), 0, 't', 'd', null, null, null, null);
select ev_id, ev_owner = :c1_sub as c1_owns, ev_time = '2020-01-01' as old_time,
       ev_txid, ev_retry, ev_type, ev_data, ev_extra1, ev_extra4
  from pgq.retry_queue
 where ev_type like 'raw%'
 order by ev_id;

-- due events go back into the queue as private events of their owner
update pgq.retry_queue set ev_retry_after = now() - interval '1 second'
 where ev_owner = :c1_sub and ev_id in (2, 4);
select pgq.maint_retry_events();
select pgq.maint_retry_events();
select pgq.ticker('rq');
select pgq.next_batch('rq', 'c1') as b1 \gset
select ev_id, ev_retry, ev_type, ev_data, ev_extra1, ev_extra4
  from pgq.get_batch_events(:b1);
-- c2 sees only its own retried events
select pgq.finish_batch(2);
select pgq.next_batch('rq', 'c2') as b2 \gset
select ev_id, ev_retry, ev_type from pgq.get_batch_events(:b2);
-- a retried event can be retried again: the counter goes on
select pgq.event_retry(:b1, 2, 60);
select ev_id, ev_retry from pgq.retry_queue
 where ev_owner = :c1_sub and ev_id = 2;
select pgq.finish_batch(:b1);
select pgq.finish_batch(:b2);
