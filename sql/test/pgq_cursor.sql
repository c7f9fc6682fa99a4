\set VERBOSITY terse
set client_min_messages = warning;

-- get_batch_cursor (3 and 4 arguments): quick rows, FETCH of the rest,
-- extra_where filters, cursor names, NULL arguments.

select pgq.create_queue('kq');
update pgq.queue set queue_ticker_max_lag = '0', queue_ticker_idle_period = '0';
select pgq.register_consumer('kq', 'kc');
select pgq.insert_event('kq', case when i % 2 = 0 then 'even' else 'odd' end, 'data' || i)
  from generate_series(1, 7) i;
select pgq.ticker('kq');
select pgq.next_batch('kq', 'kc');

-- FETCH output would show times and txids: this test helper fetches through
-- the cursor and shows the stable columns only
create function pg_temp.fetch_events(i_cursor text, i_count text)
returns table (ev_id bigint, ev_type text, ev_data text)
language plpgsql as $$
declare
    r record;
begin
    for r in execute format('fetch %s from %I', i_count, i_cursor) loop
        ev_id := r.ev_id;
        ev_type := r.ev_type;
        ev_data := r.ev_data;
        return next;
    end loop;
end;
$$;

-- quick rows, then the rest through the cursor
begin;
select ev_id, ev_retry, ev_type, ev_data, ev_extra1
  from pgq.get_batch_cursor(1, 'batch_walker', 3);
select * from pg_temp.fetch_events('batch_walker', '2');
select * from pg_temp.fetch_events('batch_walker', 'all');
select * from pg_temp.fetch_events('batch_walker', 'all');
close batch_walker;
commit;

-- no scroll
begin;
select ev_id from pgq.get_batch_cursor(1, 'batch_walker', 1);
fetch backward 1 from batch_walker;
rollback;

-- more quick rows than events
begin;
select ev_id, ev_data from pgq.get_batch_cursor(1, 'c', 100);
select * from pg_temp.fetch_events('c', 'all');
commit;

-- no quick rows: the cursor is still opened
begin;
select ev_id from pgq.get_batch_cursor(1, 'c', 0);
select * from pg_temp.fetch_events('c', 'all');
rollback;
begin;
select ev_id from pgq.get_batch_cursor(1, 'c', -5, null);
select * from pg_temp.fetch_events('c', '2');
rollback;

-- the name is quoted as an identifier
begin;
select ev_id from pgq.get_batch_cursor(1, 'Mixed Case', 1);
select * from pg_temp.fetch_events('Mixed Case', 'all');
rollback;
begin;
select ev_id from pgq.get_batch_cursor(i_batch_id := 1, i_cursor_name := 'x"y',
                                       i_quick_limit := 2);
select * from pg_temp.fetch_events('x"y', 'all');
rollback;

-- extra where: the batch query becomes subselect _evs, still ordered
begin;
select ev_id, ev_type, ev_data
  from pgq.get_batch_cursor(1, 'c', 2, 'ev_type = ''even''');
select * from pg_temp.fetch_events('c', 'all');
rollback;
begin;
select ev_id from pgq.get_batch_cursor(1, 'c', 10, '_evs.ev_id in (7, 3) or ev_data = ''data5''');
rollback;
begin;
select ev_id from pgq.get_batch_cursor(1, 'c', 10, 'false');
rollback;
begin;
select ev_id from pgq.get_batch_cursor(1, 'c', 10, 'ev_id / 0 = 1');
rollback;

-- NULL arguments: no rows and no cursor (4 args); STRICT 3-argument form
begin;
select * from pgq.get_batch_cursor(null, 'c', 10, null);
select * from pgq.get_batch_cursor(1, null, 10, null);
select * from pgq.get_batch_cursor(1, 'c', null, null);
fetch all from c;
rollback;
begin;
select * from pgq.get_batch_cursor(null, 'c', 10);
select * from pgq.get_batch_cursor(1, null, 10);
select * from pgq.get_batch_cursor(1, 'c', null);
fetch all from c;
rollback;

-- two cursors with one name in one transaction
begin;
select ev_id from pgq.get_batch_cursor(1, 'c', 1);
select ev_id from pgq.get_batch_cursor(1, 'c', 1);
rollback;

-- unknown batch
begin;
select * from pgq.get_batch_cursor(9999, 'c', 10);
rollback;
begin;
select * from pgq.get_batch_cursor(9999, 'c', 10, 'true');
rollback;

-- outside a transaction block the cursor ends with the statement
select ev_id from pgq.get_batch_cursor(1, 'c', 1);
fetch all from c;

-- an event-less batch
select pgq.finish_batch(1);
select pgq.ticker('kq');
select pgq.next_batch('kq', 'kc');
begin;
select * from pgq.get_batch_cursor(2, 'c', 10);
select * from pg_temp.fetch_events('c', 'all');
commit;
