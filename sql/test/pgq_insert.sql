\set VERBOSITY terse
set client_min_messages = warning;

-- Producing events: insert_event (3 and 7 args), insert_event_raw,
-- current_event_table, disabled queues, per_tx_limit, the generated
-- dispatcher and its dynamic fallback.

select pgq.create_queue('insq');
select pgq.create_queue('insq2');

-- plain inserts; ids come from the queue's own sequence
begin;
select pgq.insert_event('insq', 'type1', 'data1');
select pgq.insert_event('insq', 'type2', 'data2', 'e1', 'e2', 'e3', 'e4');
select pgq.insert_event('insq2', 'other', 'x');
select pgq.insert_event('insq', null, null);
select ev_id, ev_txid = txid_current() as own_txid, ev_time = now() as now_time,
       ev_owner, ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4
  from pgq.event_1 order by ev_id;
commit;
select tableoid::regclass, count(*) from pgq.event_template group by 1 order by tableoid::regclass::text;

-- named notation uses pgq's argument names
select pgq.insert_event(queue_name => 'insq', ev_type => 'named', ev_data => 'n');

-- insert_event_raw: explicit id, time, owner and retry count
select pgq.insert_event_raw('insq', 1000, '2001-02-03 04:05:06+00', 7, 2,
                            'raw', 'rawdata', null, null, null, 'x4');
select ev_id, ev_time = '2001-02-03 04:05:06+00' as given_time, ev_owner, ev_retry, ev_type, ev_extra4
  from pgq.event_1 where ev_id = 1000;
-- NULL id and time: next sequence value and now()
begin;
select pgq.insert_event_raw('insq', null, null, null, null, 'raw2', null, null, null, null, null);
select ev_id, ev_time = now() as now_time from pgq.event_1 where ev_type = 'raw2';
commit;
-- the sequence advanced also for the explicit id above (6 was consumed)
select pgq.seq_getval('pgq.event_1_id_seq');

-- errors
select pgq.insert_event_raw(null, null, null, null, null, 'a', 'b', null, null, null, null);
select pgq.insert_event_raw('nosuch', null, null, null, null, 'a', 'b', null, null, null, null);
select pgq.insert_event('nosuch', 'a', 'b');
select pgq.insert_event(null, 'a', 'b');

-- current_event_table
select pgq.current_event_table('insq');
select pgq.current_event_table('nosuch');

-- disabled queue: id consumed even though the insert is refused
update pgq.queue set queue_disable_insert = true where queue_name = 'insq2';
select pgq.insert_event('insq2', 'a', 'b');
select pgq.current_event_table('insq2');
set session_replication_role = 'local';
select pgq.insert_event('insq2', 'a', 'b');
set session_replication_role = 'replica';
select pgq.insert_event('insq2', 'a', 'b');
select pgq.current_event_table('insq2');
set session_replication_role = 'origin';
update pgq.queue set queue_disable_insert = false where queue_name = 'insq2';
select pgq.insert_event('insq2', 'a', 'b');

-- per_tx_limit
update pgq.queue set queue_per_tx_limit = 2 where queue_name = 'insq2';
begin;
select pgq.insert_event('insq2', 'a', 'b');
select pgq.insert_event('insq2', 'a', 'b');
select pgq.insert_event('insq2', 'a', 'b');
rollback;
-- the count is per transaction
begin;
select pgq.insert_event('insq2', 'a', 'b');
select pgq.insert_event('insq2', 'a', 'b');
commit;
begin;
select pgq.insert_event('insq2', 'a', 'b');
-- and per queue
select pgq.insert_event('insq', 'a', 'b');
select pgq.insert_event('insq', 'a', 'b');
select pgq.insert_event('insq', 'a', 'b');
select pgq.insert_event('insq2', 'a', 'b');
select pgq.insert_event_raw('insq2', null, null, null, null, 'a', 'b', null, null, null, null);
rollback;
update pgq.queue set queue_per_tx_limit = 0 where queue_name = 'insq2';
select pgq.insert_event('insq2', 'a', 'b');
update pgq.queue set queue_per_tx_limit = null where queue_name = 'insq2';
begin;
select pgq.insert_event('insq2', 'a', 'b');
select pgq.insert_event('insq2', 'a', 'b');
select pgq.insert_event('insq2', 'a', 'b');
commit;

-- events follow the current table
update pgq.queue set queue_cur_table = 2 where queue_name = 'insq';
select pgq.current_event_table('insq');
select pgq.insert_event('insq', 'cur2', 'x');
select tableoid::regclass from pgq.event_1 where ev_type = 'cur2';
update pgq.queue set queue_cur_table = 0 where queue_name = 'insq';

-- the dispatcher knows every queue; each event lands in its queue's table
select pgq.create_queue('dq_' || i) from generate_series(1, 11) i;
select pgq.drop_queue('dq_5');
update pgq.queue set queue_cur_table = queue_id % 3;
select count(*) from (
    select pgq.insert_event(queue_name, 'disp', queue_name)
      from pgq.queue order by queue_id) s;
select bool_and(e.tableoid::regclass::text = q.queue_data_pfx || '_' || q.queue_cur_table::text) as all_right,
       count(*)
  from pgq.event_template e
  join pgq.queue q on q.queue_name = e.ev_data
 where e.ev_type = 'disp';
select pgq._refresh_insert_dispatch();
select prosrc like '%execute%' as has_fallback,
       prosrc like '%insert into pgq.event_13_2 %' as knows_last_queue,
       prosrc like '%pgq.event_7_%' as knows_dropped_queue
  from pg_proc where oid = 'pgq._insert_event_dispatch'::regproc;
update pgq.queue set queue_cur_table = 0;

-- a table the dispatcher does not know goes through the dynamic fallback
create table pgq.event_2_3 () inherits (pgq.event_2);
alter table pgq.event_2_3 alter column ev_id set default nextval('pgq.event_2_id_seq');
update pgq.queue set queue_ntables = 4, queue_cur_table = 3, queue_disable_insert = false
 where queue_name = 'insq2';
select pgq.insert_event('insq2', 'fallback', 'x') > 0 as inserted;
select tableoid::regclass, ev_type from pgq.event_2 where ev_type = 'fallback';
update pgq.queue set queue_cur_table = 0, queue_ntables = 3 where queue_name = 'insq2';
drop table pgq.event_2_3;

-- clean up
select pgq.drop_queue(queue_name) from pgq.queue order by queue_id;
select pgq._refresh_insert_dispatch();
