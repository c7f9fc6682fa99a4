\set VERBOSITY terse
set client_min_messages = warning;

-- Queue administration: create_queue, drop_queue (1 and 2 args),
-- set_queue_config, tune_storage, grant_perms, _grant_perms_from, the
-- name/sequence helpers and the version functions.

-- helpers
select pgq.quote_fqname('Foo.bar baz'), pgq.quote_fqname('tbl'), pgq.quote_fqname('a.b.c'),
       pgq.quote_fqname(null) is null as null_in_null_out;
create sequence public.admin_seq;
select pgq.seq_getval('public.admin_seq');
select pgq.seq_getval('admin_seq');
select pgq.seq_setval('admin_seq', 10);
select pgq.seq_setval('public.admin_seq', 5);
select pgq.seq_setval('public.admin_seq', 15);
select pgq.seq_getval('admin_seq');
select pgq.seq_getval('nosuch');
select pgq.seq_getval(null) is null as strict_getval, pgq.seq_setval(null, 1) is null as strict_setval;
drop sequence public.admin_seq;

-- versions
select pgq.version(), pgq.pgqd_schema_version();
select pgq.upgrade_schema();

-- create_queue
select pgq.create_queue('aq');
select pgq.create_queue('aq');
select pgq.create_queue(null);
select queue_id, queue_name, queue_ntables, queue_cur_table, queue_rotation_period,
       queue_switch_step1 = queue_switch_step2 as steps_equal,
       queue_switch_step1 <= txid_current() as step1_past,
       queue_external_ticker, queue_disable_insert, queue_ticker_paused,
       queue_ticker_max_count, queue_ticker_max_lag, queue_ticker_idle_period,
       queue_per_tx_limit, queue_data_pfx, queue_event_seq, queue_tick_seq, queue_extra_maint
  from pgq.queue where queue_name = 'aq';
-- the first tick is made at once; its event_seq is 0 (no event id used yet)
select tick_id, tick_event_seq from pgq.tick where tick_queue = 1;

-- the objects of the queue (an owner's MAINTAIN right, m, PostgreSQL 17+, left out)
select c.relname, c.relkind,
       (select i.inhparent::regclass from pg_inherits i where i.inhrelid = c.oid) as parent,
       c.reloptions,
       replace(replace(replace(c.relacl::text, 'm*/', '/'), current_user || '=', 'OWNER='), '/' || current_user, '/OWNER') as acl
  from pg_class c
 where c.relnamespace = 'pgq'::regnamespace and c.relname like 'event\_1%'
 order by c.relname;
select a.adrelid::regclass, pg_get_expr(a.adbin, a.adrelid)
  from pg_attrdef a
 where a.adrelid::regclass::text like 'pgq.event\_1%'
 order by a.adrelid::regclass::text, 2;
select indexrelid::regclass, pg_get_indexdef(indexrelid)
  from pg_index where indrelid::regclass::text like 'pgq.event\_1\_%' order by indexrelid::regclass::text;
select c.relname, t.reloptions
  from pg_class c join pg_class t on t.oid = c.reltoastrelid
 where c.relnamespace = 'pgq'::regnamespace and c.relname like 'event\_1\_%'
 order by 1;

-- set_queue_config
select pgq.set_queue_config('aq', 'ticker_max_count', '100');
select pgq.set_queue_config('aq', 'ticker_max_lag', '10 seconds');
select pgq.set_queue_config('aq', 'ticker_idle_period', '5 minutes');
select pgq.set_queue_config('aq', 'ticker_paused', 'true');
select pgq.set_queue_config('aq', 'rotation_period', '1 day');
select pgq.set_queue_config('aq', 'external_ticker', 'on');
select queue_ticker_max_count, queue_ticker_max_lag, queue_ticker_idle_period,
       queue_ticker_paused, queue_rotation_period, queue_external_ticker
  from pgq.queue where queue_name = 'aq';
select pgq.set_queue_config('aq', 'bogus', '1');
select pgq.set_queue_config('aq', 'per_tx_limit', '1');
select pgq.set_queue_config('aq', 'disable_insert', 'true');
select pgq.set_queue_config('nosuch', 'ticker_max_count', '1');
select pgq.set_queue_config('nosuch', 'bogus', '1');
select pgq.set_queue_config(null, 'ticker_max_count', '1');
select pgq.set_queue_config('aq', null, '1');
select pgq.set_queue_config('aq', 'ticker_max_count', 'many');
select pgq.set_queue_config(x_queue_name => 'aq', x_param_name => 'ticker_paused', x_param_value => 'off');
select queue_ticker_paused from pgq.queue where queue_name = 'aq';

-- tune_storage / grant_perms
select pgq.tune_storage('aq'), pgq.tune_storage('nosuch'), pgq.tune_storage(null) is null as strict;
select pgq.grant_perms('aq');
select pgq.grant_perms('nosuch');
create table public.perm_src (x int);
create table public.perm_dst (x int);
grant select on public.perm_src to public;
grant insert on public.perm_src to pgq_writer with grant option;
select pgq._grant_perms_from('public', 'perm_src', 'public', 'perm_dst');
select pgq._grant_perms_from('public', 'perm_src', null, 'perm_dst') is null as strict;
select replace(replace(replace(relacl::text, 'm*/', '/'), current_user || '=', 'OWNER='), '/' || current_user, '/OWNER') as acl
  from pg_class where oid = 'public.perm_dst'::regclass;
drop table public.perm_src, public.perm_dst;

-- drop_queue
select pgq.create_queue('aq2');
select pgq.drop_queue('nosuch');
select pgq.drop_queue('nosuch', true);
select pgq.drop_queue(null) is null as strict_1arg;
select pgq.drop_queue(null, false);
insert into pgq.consumer (co_name) values ('admin_consumer');
insert into pgq.subscription (sub_queue, sub_consumer, sub_last_tick)
select queue_id, (select co_id from pgq.consumer where co_name = 'admin_consumer'), 1
  from pgq.queue where queue_name = 'aq2';
select pgq.drop_queue('aq2');
select pgq.drop_queue('aq2', false);
select pgq.drop_queue('aq2', true);
select count(*) as subs_left from pgq.subscription;
select count(*) as consumers_left from pgq.consumer;
select queue_name from pgq.queue order by 1;
select count(*) as objects_left from pg_class
 where relnamespace = 'pgq'::regnamespace and relname like 'event\_2%';
select count(*) as ticks_left from pgq.tick where tick_queue = 2;
select pgq.drop_queue('aq');
select count(*) as objects_left from pg_class
 where relnamespace = 'pgq'::regnamespace and relname ~ '^event_[0-9]';

-- queue ids are never reused
select pgq.create_queue('aq');
select queue_id, queue_data_pfx from pgq.queue;
select pgq.drop_queue('aq');
