\set VERBOSITY terse
set client_min_messages = warning;

-- The role matrix: pgq_admin administers, pgq_writer produces, pgq_reader
-- consumes, everybody may look.  Three login roles are used through SET ROLE.

create role pgq_perms_admin login in role pgq_admin;
create role pgq_perms_writer login in role pgq_writer;
create role pgq_perms_reader login in role pgq_reader;
create role pgq_perms_nobody login;

-- EXECUTE grants of every pgq function (the owner's own grant left out)
select p.oid::regprocedure as function,
       string_agg(case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end, ','
                  order by case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end) as execute_to
  from pg_proc p
  left join lateral aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
         on a.grantee <> p.proowner
 where p.pronamespace = 'pgq'::regnamespace
 group by p.oid, p.proname
 order by p.proname, p.oid::regprocedure::text;
-- table privileges
select c.relname,
       string_agg(case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end
                  || ':' || a.privilege_type, ','
                  order by case when a.grantee = 0 then 'public' else pg_get_userbyid(a.grantee) end, a.privilege_type) as privileges
  from pg_class c
  left join lateral aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
         on a.grantee <> c.relowner
 where c.relnamespace = 'pgq'::regnamespace and c.relkind in ('r', 'S')
 group by c.relname
 order by c.relname;

-- admin: queues, ticker, maintenance, raw inserts
set role pgq_perms_admin;
select pgq.create_queue('pq');
select pgq.set_queue_config('pq', 'ticker_max_lag', '0');
select pgq.set_queue_config('pq', 'ticker_idle_period', '0');
select pgq.ticker('pq');
select pgq.ticker() >= 0 as ticker_all;
select pgq.insert_event_raw('pq', null, null, null, null, 'raw', 'by admin', null, null, null, null);
select pgq.maint_retry_events();
select count(*) from pgq.maint_operations();
select pgq.upgrade_schema();
select pgq.current_event_table('pq');
select count(*) from pgq.event_1;
reset role;

-- writer: produce only
set role pgq_perms_writer;
select pgq.insert_event('pq', 'ev', 'by writer');
select pgq.insert_event('pq', 'ev', 'by writer', 'a', 'b', 'c', 'd');
select pgq.current_event_table('pq');
select pgq.create_queue('pq2');
select pgq.register_consumer('pq', 'wc');
select pgq.ticker('pq');
select pgq.insert_event_raw('pq', null, null, null, null, 'raw', 'x', null, null, null, null);
select count(*) from pgq.event_1;
select count(*) from pgq.queue;
reset role;

select pgq.ticker('pq');

-- reader: consume only
set role pgq_perms_reader;
select pgq.register_consumer('pq', 'rc');
select pgq.force_tick('pq') > 0 as force_tick;
select pgq.insert_event('pq', 'ev', 'by reader');
select pgq.create_queue('pq3');
select pgq.ticker();
select count(*) from pgq.event_1;
reset role;

select pgq.insert_event('pq', 'ev', 'for reader');
select pgq.ticker('pq');

set role pgq_perms_reader;
select pgq.next_batch('pq', 'rc') as batch \gset
select ev_type, ev_data from pgq.get_batch_events(:batch) order by ev_id;
select pgq.finish_batch(:batch);
select pgq.unregister_consumer('pq', 'rc');
reset role;

-- anybody: information functions and the meta tables
set role pgq_perms_nobody;
select queue_name, ev_new, last_tick_id > 0 as has_tick from pgq.get_queue_info();
select queue_name, ev_new from pgq.get_queue_info('pq');
select count(*) from pgq.get_consumer_info();
select pgq.seq_getval('pgq.event_1_id_seq') > 0 as seq_getval;
select pgq.quote_fqname('a.b'), pgq.version(), pgq.pgqd_schema_version();
select count(*) from pgq.queue;
select count(*) from pgq.tick;
select count(*) from pgq.event_1;
select count(*) from pgq.retry_queue;
select pgq.insert_event('pq', 'ev', 'by nobody');
select pgq.register_consumer('pq', 'nc');
select pgq.seq_setval('pgq.event_1_id_seq', 1);
select pgq._refresh_insert_dispatch();
select pgq._insert_event_dispatch(1, 0, 'pgq.event_1', 1, now(), null, null, 'x', 'x', null, null, null, null);
reset role;

-- clean up
set role pgq_perms_admin;
select pgq.drop_queue('pq');
reset role;
drop role pgq_perms_admin;
drop role pgq_perms_writer;
drop role pgq_perms_reader;
drop role pgq_perms_nobody;
