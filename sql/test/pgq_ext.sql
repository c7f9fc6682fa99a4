\set VERBOSITY terse
set client_min_messages = warning;

-- pgq_ext: batch, event and tick tracking on the target database, with and
-- without subconsumer, and upgrade_schema over the layout before 3.1.

select pgq_ext.version();

-- batch tracking: f, t, t, f, f, t
select pgq_ext.is_batch_done('c', 1);
select pgq_ext.set_batch_done('c', 1);
select pgq_ext.is_batch_done('c', 1);
select pgq_ext.set_batch_done('c', 1);
select pgq_ext.is_batch_done('c', 2);
select pgq_ext.set_batch_done('c', 2);
-- only the last batch is remembered
select pgq_ext.is_batch_done('c', 1), pgq_ext.is_batch_done('c', 2);
-- batch ids of 0 or less are accepted, not stored
select pgq_ext.set_batch_done('c', 0), pgq_ext.is_batch_done('c', 2);

-- event tracking: f, t, t, f, then the batch is done
select pgq_ext.is_event_done('c', 3, 101);
select pgq_ext.set_event_done('c', 3, 101);
select pgq_ext.is_event_done('c', 3, 101);
select pgq_ext.set_event_done('c', 3, 101);
select pgq_ext.set_batch_done('c', 3);
select pgq_ext.set_event_done('c', 3, 102);
select consumer_id, subconsumer_id, batch_id, event_id
  from pgq_ext.completed_event order by 1, 2, 3, 4;
select * from pgq_ext.partial_batch;
-- an event of the next batch forgets those of the previous one
select pgq_ext.set_event_done('c', 4, 101);
select pgq_ext.is_event_done('c', 3, 101), pgq_ext.is_event_done('c', 4, 101);
select consumer_id, subconsumer_id, batch_id, event_id
  from pgq_ext.completed_event order by 1, 2, 3, 4;
select * from pgq_ext.partial_batch;

-- tick tracking: NULL, 1, 1, 2, NULL
select pgq_ext.get_last_tick('c');
select pgq_ext.set_last_tick('c', 1);
select pgq_ext.get_last_tick('c');
select pgq_ext.set_last_tick('c', 2);
select pgq_ext.get_last_tick('c');
select pgq_ext.set_last_tick('c', null);
select pgq_ext.get_last_tick('c');

-- subconsumers are tracked apart from the main consumer and each other
select pgq_ext.set_batch_done('c', 's1', 5);
select pgq_ext.is_batch_done('c', 's1', 5), pgq_ext.is_batch_done('c', 's2', 5),
       pgq_ext.is_batch_done('c', 5), pgq_ext.is_batch_done('c', 3);
select pgq_ext.set_event_done('c', 's1', 5, 7);
select pgq_ext.is_event_done('c', 's1', 5, 7), pgq_ext.is_event_done('c', 5, 7);
select pgq_ext.set_last_tick('c', 's1', 9);
select pgq_ext.get_last_tick('c', 's1'), pgq_ext.get_last_tick('c'),
       pgq_ext.get_last_tick('c', 's2');
select * from pgq_ext.completed_batch order by 1, 2;

-- privileges: consumers (pgq_writer) call the functions, anybody the
-- version; the 3/4-argument forms run as their owner with a pinned path
select p.oid::regprocedure as function, p.prosecdef as definer, p.proconfig,
       pg_catalog.has_function_privilege('pgq_writer', p.oid, 'execute') as writer,
       pg_catalog.has_function_privilege('public', p.oid, 'execute') as public
  from pg_catalog.pg_proc p
 where p.pronamespace = 'pgq_ext'::regnamespace
 order by p.oid::regprocedure::text;
select c.relname,
       pg_catalog.has_table_privilege('pgq_writer', c.oid, 'select') as writer_read,
       pg_catalog.has_table_privilege('pgq_writer', c.oid, 'insert, update, delete') as writer_write,
       pg_catalog.has_table_privilege('public', c.oid, 'select, insert, update, delete') as public_any
  from pg_catalog.pg_class c
 where c.relnamespace = 'pgq_ext'::regnamespace and c.relkind = 'r'
 order by 1;

-- upgrade_schema on a current layout changes nothing
select pgq_ext.upgrade_schema();

-- the layout before 3.1: no subconsumer_id anywhere
drop table pgq_ext.completed_tick, pgq_ext.completed_batch,
    pgq_ext.completed_event, pgq_ext.partial_batch;
create table pgq_ext.completed_tick (
    consumer_id text not null, last_tick_id bigint not null,
    primary key (consumer_id));
create table pgq_ext.completed_batch (
    consumer_id text not null, last_batch_id bigint not null,
    primary key (consumer_id));
create table pgq_ext.completed_event (
    consumer_id text not null, batch_id bigint not null, event_id bigint not null,
    primary key (consumer_id, batch_id, event_id));
create table pgq_ext.partial_batch (
    consumer_id text not null, cur_batch_id bigint not null,
    primary key (consumer_id));
insert into pgq_ext.completed_batch values ('old', 11);
insert into pgq_ext.completed_tick values ('old', 12);
insert into pgq_ext.partial_batch values ('old', 13);
insert into pgq_ext.completed_event values ('old', 13, 1);

select pgq_ext.upgrade_schema();
select pgq_ext.upgrade_schema();
select c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid) as default
  from pg_catalog.pg_class c
  join pg_catalog.pg_attribute a on a.attrelid = c.oid
  left join pg_catalog.pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
 where c.relnamespace = 'pgq_ext'::regnamespace and c.relkind = 'r'
   and a.attnum > 0 and not a.attisdropped
 order by 1, a.attnum;
select conrelid::regclass, conname, pg_catalog.pg_get_constraintdef(oid)
  from pg_catalog.pg_constraint
 where connamespace = 'pgq_ext'::regnamespace
   and contype <> 'n'  -- NOT NULL constraints are listed here since PostgreSQL 18
 order by conrelid::regclass::text, 2;

-- old rows belong to the plain consumer; everything works as before
select pgq_ext.is_batch_done('old', 11), pgq_ext.get_last_tick('old'),
       pgq_ext.is_event_done('old', 13, 1);
select pgq_ext.is_batch_done('c', 1);
select pgq_ext.set_batch_done('c', 1);
select pgq_ext.is_batch_done('c', 1);
select pgq_ext.set_batch_done('c', 1);
select pgq_ext.is_batch_done('c', 2);
select pgq_ext.set_batch_done('c', 2);
select pgq_ext.is_event_done('c', 3, 101);
select pgq_ext.set_event_done('c', 3, 101);
select pgq_ext.is_event_done('c', 3, 101);
select pgq_ext.set_event_done('c', 3, 101);
select pgq_ext.set_event_done('old', 14, 1);
select * from pgq_ext.partial_batch order by 1, 2;
select pgq_ext.get_last_tick('c');
select pgq_ext.set_last_tick('c', 1);
select pgq_ext.set_last_tick('c', 2);
select pgq_ext.get_last_tick('c');
select pgq_ext.set_last_tick('c', null);
select pgq_ext.get_last_tick('c');
select pgq_ext.set_batch_done('c', 'sub', 3), pgq_ext.is_batch_done('c', 'sub', 3);
