\set VERBOSITY terse
set client_min_messages = warning;

-- Consumer registration: register_consumer, register_consumer_at,
-- unregister_consumer (plain and pgq_coop-shaped subscriptions).

select pgq.create_queue('cq');
select pgq.create_queue('cq2');
update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0';

-- unknown queue
select pgq.register_consumer('nosuch', 'c1');
select pgq.register_consumer_at('nosuch', 'c1', 1);
select pgq.register_consumer(null, 'c1');
select count(*) as consumers_left from pgq.consumer;

-- new subscription starts at the newest tick
select pgq.ticker('cq');
select pgq.register_consumer('cq', 'c1');
select pgq.register_consumer('cq', 'c1');
select pgq.register_consumer(x_queue_name := 'cq2', x_consumer_id := 'c1');
select q.queue_name, c.co_name, s.sub_last_tick, s.sub_next_tick, s.sub_batch
  from pgq.subscription s
  join pgq.queue q on q.queue_id = s.sub_queue
  join pgq.consumer c on c.co_id = s.sub_consumer
 order by 1, 2;
select co_name from pgq.consumer order by co_id;

-- reposition: the tick must exist on that queue
select pgq.register_consumer_at('cq', 'c1', 99);
select pgq.register_consumer_at('cq', 'newcons', 99);
select count(*) as newcons_rows from pgq.consumer where co_name = 'newcons';
select pgq.ticker('cq');
select pgq.next_batch('cq', 'c1');
select sub_last_tick, sub_next_tick, sub_batch from pgq.subscription
 where sub_consumer = (select co_id from pgq.consumer where co_name = 'c1')
   and sub_queue = (select queue_id from pgq.queue where queue_name = 'cq');
-- repositioning an existing subscription drops its open batch
select pgq.register_consumer_at('cq', 'c1', 1);
select sub_last_tick, sub_next_tick, sub_batch
  from pgq.subscription
 where sub_consumer = (select co_id from pgq.consumer where co_name = 'c1')
   and sub_queue = (select queue_id from pgq.queue where queue_name = 'cq');
-- the tick id of another queue does not count
select pgq.register_consumer_at('cq2', 'c1', 3);
-- a new subscription at a given tick
select pgq.register_consumer_at('cq', 'c2', 2);
select pgq.register_consumer_at(x_queue_name := 'cq', x_consumer_name := 'c2', x_tick_pos := null);
select sub_last_tick from pgq.subscription
 where sub_consumer = (select co_id from pgq.consumer where co_name = 'c2');

-- no ticks at all
select pgq.create_queue('noticks');
delete from pgq.tick where tick_queue = (select queue_id from pgq.queue where queue_name = 'noticks');
select pgq.register_consumer('noticks', 'c1');
select pgq.register_consumer_at('noticks', 'c1', 1);

-- unregister: unknown queue / consumer / subscription -> 0
select pgq.unregister_consumer('nosuch', 'c1');
select pgq.unregister_consumer('cq', 'nosuch');
select pgq.unregister_consumer('noticks', 'c1');
select pgq.unregister_consumer(null, null);

-- plain consumer: its retry events go, the consumer row stays while it has
-- other subscriptions
select pgq.register_consumer_at('cq', 'c1', 3);
select pgq.insert_event('cq', 'x', 'y');
select pgq.ticker('cq');
select pgq.next_batch('cq', 'c1') is not null as got_batch;
select pgq.event_retry(sub_batch, 1, 60) from pgq.subscription
 where sub_batch is not null;
select count(*) as retry_rows from pgq.retry_queue;
select pgq.unregister_consumer('cq', 'c1');
select count(*) as retry_rows from pgq.retry_queue;
select co_name from pgq.consumer order by co_id;
select pgq.unregister_consumer('cq', 'c1');
select pgq.unregister_consumer('cq2', 'c1');
select co_name from pgq.consumer order by co_id;

-- pgq_coop shapes: subconsumers share the main consumer's sub_id; an idle
-- one has no ticks, a busy one has last tick, next tick and batch.
select pgq.register_consumer('cq', 'main');
select pgq.register_consumer('cq', 'main.s1');
select pgq.register_consumer('cq', 'main.s2');
select pgq.register_consumer('cq', 'main.s3');
update pgq.subscription s
   set sub_id = m.sub_id, sub_last_tick = null, sub_next_tick = null
  from pgq.subscription m, pgq.consumer mc, pgq.consumer sc
 where mc.co_name = 'main' and m.sub_consumer = mc.co_id
   and sc.co_name in ('main.s1', 'main.s3') and s.sub_consumer = sc.co_id;
update pgq.subscription s
   set sub_id = m.sub_id, sub_next_tick = s.sub_last_tick + 1, sub_batch = 9999
  from pgq.subscription m, pgq.consumer mc, pgq.consumer sc
 where mc.co_name = 'main' and m.sub_consumer = mc.co_id
   and sc.co_name = 'main.s2' and s.sub_consumer = sc.co_id;
select pgq.event_retry_raw('cq', 'main', now(), 777, now(), 1, 't', 'd', null, null, null, null);
select c.co_name, s.sub_last_tick is null as no_last, s.sub_next_tick is null as no_next,
       s.sub_id = (select sub_id from pgq.subscription
                    where sub_consumer = (select co_id from pgq.consumer where co_name = 'main'))
           as shares_sub_id
  from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer
 where c.co_name like 'main%'
 order by 1;
-- an idle subconsumer leaves alone
select pgq.unregister_consumer('cq', 'main.s1');
-- so does a busy one
select pgq.unregister_consumer('cq', 'main.s2');
select c.co_name from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer
 where c.co_name like 'main%' order by 1;
select count(*) as retry_rows from pgq.retry_queue;
-- the main consumer takes the rest of the group with it
select pgq.unregister_consumer('cq', 'main');
select c.co_name from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer
 where c.co_name like 'main%' order by 1;
select count(*) as retry_rows from pgq.retry_queue;
-- the subconsumers' consumer rows stay (they have no subscription left)
select co_name from pgq.consumer where co_name like 'main%' order by 1;

-- a main consumer with an open batch looks like a busy subconsumer: when it
-- shares its sub_id, only its own row goes
select pgq.register_consumer('cq', 'grp');
select pgq.register_consumer('cq', 'grp.a');
update pgq.subscription s
   set sub_id = m.sub_id, sub_last_tick = null, sub_next_tick = null
  from pgq.subscription m, pgq.consumer mc, pgq.consumer sc
 where mc.co_name = 'grp' and m.sub_consumer = mc.co_id
   and sc.co_name = 'grp.a' and s.sub_consumer = sc.co_id;
select pgq.ticker('cq');
select pgq.next_batch('cq', 'grp') is not null as got_batch;
select pgq.unregister_consumer('cq', 'grp');
select c.co_name from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer
 where c.co_name like 'grp%' order by 1;
-- alone now, the remaining idle row takes the full path
select pgq.unregister_consumer('cq', 'grp.a');
select co_name from pgq.consumer where co_name like 'grp%' order by 1;

-- a lone subscription with an open batch is a plain consumer
select pgq.register_consumer('cq', 'solo');
select pgq.ticker('cq');
select pgq.next_batch('cq', 'solo') is not null as got_batch;
select pgq.unregister_consumer('cq', 'solo');
select count(*) as solo_rows from pgq.consumer where co_name = 'solo';

-- consumers left: c2 only
select c.co_name, q.queue_name from pgq.subscription s
  join pgq.consumer c on c.co_id = s.sub_consumer
  join pgq.queue q on q.queue_id = s.sub_queue
 order by 1, 2;
