\set VERBOSITY terse
set client_min_messages = warning;

-- pgq_node in one database: the root of queue q, a branch of queue bq and a
-- leaf of queue lq, their subscribers and consumers, a root demoted and a
-- branch promoted, and every node dropped again.

select pgq_node.version(), pgq_node.upgrade_schema();

-- the map of members; a NULL location adds nobody
select * from pgq_node.register_location('q', 'a', 'dbname=a', false);
select * from pgq_node.register_location('q', 'b', 'dbname=b', false);
select * from pgq_node.register_location('q', 'c', null, false);
select * from pgq_node.get_queue_locations('q');

-- the root: refused twice, then created
select * from pgq_node.get_node_info('q');
select * from pgq_node.create_node('q', 'root', 'a', 'a_worker', 'b', null, null);
select * from pgq_node.create_node('q', 'middle', 'a', 'a_worker', null, null, null);
select * from pgq_node.create_node('q', 'root', 'a', 'a_worker', null, null, null);
select * from pgq_node.create_node('q', 'root', 'a', 'a_worker', null, null, null);
select pgq_node.is_root_node('q'), pgq_node.is_leaf_node('q');
select pgq_node.is_root_node('none');
select queue_name, queue_external_ticker, queue_disable_insert from pgq.queue;
select * from pgq_node.get_node_info('q');
select * from pgq_node.get_worker_state('q');

-- a subscriber and its watermark
update pgq.queue set queue_ticker_idle_period = '0', queue_ticker_max_lag = '0';
select * from pgq_node.register_subscriber('q', 'b', 'b_worker', null);
select pgq.insert_event('q', 'data', 'one');
select pgq.ticker('q');
select * from pgq_node.set_subscriber_watermark('q', 'b', 2);
select * from pgq_node.set_subscriber_watermark('q', 'b', 2);
select * from pgq_node.set_subscriber_watermark('q', 'b', 1);
select * from pgq_node.set_subscriber_watermark('q', 'x', 2);
select * from pgq_node.get_subscriber_info('q');
select consumer_name, last_tick from pgq.get_consumer_info('q') order by 1;

-- the global watermark: the local one (the subscriber's worker is at 1)
select * from pgq_node.set_global_watermark('q', null);
select * from pgq_node.set_global_watermark('none', null);
select ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3
  from pgq.event_template order by ev_id;
select pgq_node.maint_watermark('q');

-- a branch of bq: its queue copy has no ticker and takes no local events
select * from pgq_node.register_location('bq', 'a', 'dbname=a', false);
select * from pgq_node.register_location('bq', 'r', 'dbname=r', false);
select * from pgq_node.create_node('bq', 'branch', 'a', 'bq_worker', null, 5, null);
select * from pgq_node.create_node('bq', 'branch', 'a', 'bq_worker', 'r', null, null);
select * from pgq_node.create_node('bq', 'branch', 'a', 'bq_worker', 'r', 5, null);
select queue_name, queue_external_ticker, queue_disable_insert from pgq.queue order by 1;
select pgq.insert_event('bq', 'data', 'refused');
select * from pgq_node.get_worker_state('bq');
select * from pgq_node.set_global_watermark('bq', null);
select * from pgq_node.set_global_watermark('bq', 6);
select pgq.ticker('bq', 6, now(), 10);
select * from pgq_node.set_global_watermark('bq', 6);
select * from pgq_node.set_consumer_completed('bq', 'bq_worker', 6);

-- the cascaded consumer flags
select * from pgq_node.set_consumer_paused('bq', 'bq_worker', true);
select * from pgq_node.set_consumer_paused('bq', 'bq_worker', true);
select * from pgq_node.set_consumer_uptodate('bq', 'bq_worker', true);
select * from pgq_node.set_consumer_error('bq', 'bq_worker', 'failed');
select * from pgq_node.get_consumer_state('bq', 'bq_worker');
select * from pgq_node.set_consumer_paused('bq', 'bq_worker', false);
select * from pgq_node.set_consumer_completed('bq', 'bq_worker', 6);
select * from pgq_node.get_consumer_info('bq');
select * from pgq_node.set_consumer_error('bq', 'nobody', 'failed');
select * from pgq_node.set_consumer_uptodate('bq', 'nobody', true);
select * from pgq_node.get_consumer_state('bq', 'nobody');

-- other consumers and providers
select * from pgq_node.register_consumer('bq', 'extra', 'r', 5);
select * from pgq_node.register_consumer('bq', 'extra', 'a', 6);
select * from pgq_node.change_consumer_provider('bq', 'extra', 'nowhere');
select * from pgq_node.change_consumer_provider('bq', 'extra', 'r');
select * from pgq_node.unregister_consumer('bq', 'extra');
select * from pgq_node.register_consumer('none', 'extra', 'r', 5);
select * from pgq_node.set_node_attrs('bq', 'sync_watermark=a');
select node_attrs from pgq_node.get_node_info('bq');

-- locations that cannot go
select * from pgq_node.unregister_location('bq', 'a');
select * from pgq_node.unregister_location('bq', 'r');
select * from pgq_node.unregister_location('bq', 'gone');
select * from pgq_node.drop_node('bq', 'r');

-- a leaf merging lq into bq: no queue of its own
select * from pgq_node.register_location('lq', 'a', 'dbname=a', false);
select * from pgq_node.register_location('lq', 'p', 'dbname=p', false);
select * from pgq_node.create_node('lq', 'leaf', 'a', 'lq_worker', 'p', 3, 'nosuch');
select * from pgq_node.create_node('lq', 'leaf', 'a', 'lq_worker', 'p', 3, 'bq');
select * from pgq_node.register_subscriber('lq', 'z', 'z_worker', null);
select * from pgq_node.set_global_watermark('lq', 3);
select * from pgq_node.get_node_info('lq');
select target_for from pgq_node.get_node_info('bq');
select * from pgq_node.set_partition_watermark('bq', 'lq', 9);
select * from pgq_node.set_partition_watermark('q', 'lq', 9);
select * from pgq_node.get_worker_state('lq');

-- the root of q becomes a branch of b, in three steps
select * from pgq_node.demote_root('q', 3, 'b');
select * from pgq_node.demote_root('q', 1, 'b');
select pgq.insert_event('q', 'data', 'refused');
select ret_code, ret_note, last_tick > 2 as new_tick from pgq_node.demote_root('q', 2, 'b');
select ret_code, ret_note from pgq_node.demote_root('q', 3, 'b');
select * from pgq_node.demote_root('q', 1, 'b');
select node_type, provider_node, worker_uptodate from pgq_node.get_node_info('q');

-- and back to root
select * from pgq_node.promote_branch('q');
select * from pgq_node.promote_branch('q');
select queue_name, queue_external_ticker, queue_disable_insert from pgq.queue order by 1;
select node_type, provider_node, worker_last_tick = (select max(tick_id) from pgq.tick t
        join pgq.queue q on q.queue_id = t.tick_queue where q.queue_name = 'q') as top
  from pgq_node.get_node_info('q');

-- dropping: a subscriber, then every local node
select * from pgq_node.drop_node('q', 'b');
select * from pgq_node.get_subscriber_info('q');
select * from pgq_node.drop_node('q', 'a');
select * from pgq_node.drop_node('lq', 'a');
select * from pgq_node.drop_node('bq', 'a');
select * from pgq_node.drop_node('none', 'a');
select queue_name from pgq.queue;
select (select count(*) from pgq_node.node_location) as locations,
       (select count(*) from pgq_node.node_info) as nodes,
       (select count(*) from pgq_node.local_state) as states,
       (select count(*) from pgq_node.subscriber_info) as subscribers;
