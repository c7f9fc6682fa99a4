\set VERBOSITY terse
set client_min_messages = warning;

-- pgq_coop: subconsumers sharing one consumer's position; batches handed to
-- one subconsumer each, takeover of a dead one's batch, unregistration.

select pgq_coop.version();

select pgq.create_queue('testqueue');
update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0';

-- registration: new, again, again, second subconsumer
select pgq_coop.register_subconsumer('testqueue', 'maincons', 'subcons1');
select pgq_coop.register_subconsumer('testqueue', 'maincons', 'subcons1');
select pgq_coop.register_subconsumer('testqueue', 'maincons', 'subcons1');
select pgq_coop.register_subconsumer('testqueue', 'maincons', 'subcons2');
-- one group: the subconsumers carry the main row's sub_id and no ticks
select c.co_name, s.sub_id = m.sub_id as same_group,
       s.sub_last_tick is null as no_last, s.sub_next_tick is null as no_next,
       s.sub_batch
  from pgq.subscription s
  join pgq.consumer c on c.co_id = s.sub_consumer
  cross join (select s2.sub_id from pgq.subscription s2
                join pgq.consumer c2 on c2.co_id = s2.sub_consumer
               where c2.co_name = 'maincons') m
 order by 1;

-- nothing to do yet
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons1');

select pgq.insert_event('testqueue', 'ev0', 'data');
select pgq.insert_event('testqueue', 'ev1', 'data');
select pgq.insert_event('testqueue', 'ev2', 'data');
select pgq.ticker();

-- the batch goes to subcons1 and stays there
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons1');
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons1');
-- subcons2 finds nothing more
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons2');
select ev_id, ev_type, ev_data from pgq.get_batch_events(1) order by 1;

select pgq.insert_event('testqueue', 'ev3', 'data');
select pgq.insert_event('testqueue', 'ev4', 'data');
select pgq.insert_event('testqueue', 'ev5', 'data');
select pgq.ticker();

-- the next batch goes to subcons2; subcons1 still holds its own
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons2');
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons1');
select ev_id, ev_type, ev_data from pgq.get_batch_events(2) order by 1;
select c.co_name, s.sub_last_tick, s.sub_next_tick, s.sub_batch
  from pgq.subscription s
  join pgq.consumer c on c.co_id = s.sub_consumer
 order by 1;

select pgq_coop.finish_batch(2);
select pgq_coop.finish_batch(2);

select pgq.insert_event('testqueue', 'ev6', 'data');
select pgq.insert_event('testqueue', 'ev7', 'data');
select pgq.insert_event('testqueue', 'ev8', 'data');
select pgq.ticker();

-- the main consumer used on its own while the group runs is an error
select pgq.next_batch('testqueue', 'maincons');
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons2');
select pgq.finish_batch(3);

-- subcons1 goes silent; with a dead interval subcons2 takes its batch over
update pgq.subscription set sub_active = '2005-01-01'
 where sub_consumer = (select co_id from pgq.consumer where co_name = 'maincons.subcons1');
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons2', '1 hour');
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons2', '1 hour');
select c.co_name, s.sub_last_tick, s.sub_next_tick, s.sub_batch
  from pgq.subscription s
  join pgq.consumer c on c.co_id = s.sub_consumer
 order by 1;
select ev_id, ev_type from pgq.get_batch_events(1) order by 1;
-- subcons1 was removed by the takeover
select pgq_coop.unregister_subconsumer('testqueue', 'maincons', 'subcons1', 0);

-- a subconsumer holding a batch is not dropped unless asked to
select pgq_coop.unregister_subconsumer('testqueue', 'maincons', 'subcons2', 0);
select pgq_coop.unregister_subconsumer('testqueue', 'maincons', 'subcons2', 1);
select pgq_coop.unregister_subconsumer('testqueue', 'maincons', 'subcons2', 0);

-- next_batch registers what is missing
select pgq.insert_event('testqueue', 'ev9', 'data');
select pgq.ticker();
select pgq_coop.next_batch('testqueue', 'maincons', 'subcons3');
select pgq_coop.next_batch_custom('testqueue', 'maincons', 'subcons3',
                                  null, null, null);
select pgq_coop.finish_batch(4);
select pgq_coop.next_batch_custom('testqueue', 'newcons', 'subcons1',
                                  null, null, null, '1 hour');
select pgq_coop.register_subconsumer('testqueue', 'newcons', 'subcons1');
select c.co_name, s.sub_last_tick is null as no_last, s.sub_batch
  from pgq.subscription s
  join pgq.consumer c on c.co_id = s.sub_consumer
 order by 1;
-- a batch nobody holds any more (dropped with subcons2)
select pgq_coop.finish_batch(1);
select pgq_coop.finish_batch(null);

-- errors
select pgq_coop.next_batch('nosuchqueue', 'maincons', 'subcons3');
select pgq_coop.register_subconsumer('nosuchqueue', 'maincons', 'subcons3');
select pgq_coop.unregister_subconsumer('nosuchqueue', 'maincons', 'subcons3', 0);

-- pgq.unregister_consumer: a subconsumer alone, then the rest of the group
select pgq_coop.register_subconsumer('testqueue', 'maincons', 'subcons4');
select pgq.unregister_consumer('testqueue', 'maincons.subcons3');
select pgq.unregister_consumer('testqueue', 'maincons');
select c.co_name
  from pgq.subscription s
  join pgq.consumer c on c.co_id = s.sub_consumer
 order by 1;

-- privileges: consumers (pgq_reader) call everything, anybody the version
select p.oid::regprocedure as function, p.prosecdef as definer, p.proconfig,
       pg_catalog.has_function_privilege('pgq_reader', p.oid, 'execute') as reader,
       pg_catalog.has_function_privilege('public', p.oid, 'execute') as public
  from pg_catalog.pg_proc p
 where p.pronamespace = 'pgq_coop'::regnamespace
 order by p.oid::regprocedure::text;
