-- pgq core, part 90: privileges.
--
-- The role model of pgq 3.5:
--   public      may look (queue/consumer info, the meta tables, seq_getval);
--   pgq_reader  consumes (register, batches, retry, force_tick);
--   pgq_writer  produces (insert_event, current_event_table, triggers);
--   pgq_admin   administers (queues, ticker, maintenance) and is a member of
--               both other roles.
-- Every pgq function first loses all grants, then gets EXECUTE for exactly
-- one group.  Functions not named below (internal helpers) keep no grant to
-- public; two of them are needed by pgq_admin when it calls
-- insert_event_raw / upgrade_schema directly, and pgq._event_seq_used is
-- public because pgq.get_queue_info (public, caller's rights) uses it; it
-- reveals no more than pgq.seq_getval.
-- The file can run again at any time; it restores the same state.

grant usage on schema pgq to public;

do $$
declare
    v_group     record;
    v_sig       text;
    v_proc      regprocedure;
    v_listed    regprocedure[] := '{}';
    v_missing   text[] := '{}';
begin
    for v_group in
        select g.grantee, g.sigs
          from (values
            ('public', array[
                'pgq.seq_getval(text)',
                'pgq.get_queue_info()',
                'pgq.get_queue_info(text)',
                'pgq.get_consumer_info()',
                'pgq.get_consumer_info(text)',
                'pgq.get_consumer_info(text,text)',
                'pgq.quote_fqname(text)',
                'pgq.version()',
                'pgq.pgqd_schema_version()',
                'pgq._event_seq_used(text)']),
            ('pgq_reader', array[
                'pgq.batch_event_sql(bigint)',
                'pgq.batch_event_tables(bigint)',
                'pgq.find_tick_helper(int4,int8,timestamptz,int8,int8,interval)',
                'pgq.register_consumer(text,text)',
                'pgq.register_consumer_at(text,text,bigint)',
                'pgq.unregister_consumer(text,text)',
                'pgq.next_batch_info(text,text)',
                'pgq.next_batch(text,text)',
                'pgq.next_batch_custom(text,text,interval,int4,interval)',
                'pgq.get_batch_events(bigint)',
                'pgq.get_batch_info(bigint)',
                'pgq.get_batch_cursor(bigint,text,int4,text)',
                'pgq.get_batch_cursor(bigint,text,int4)',
                'pgq.event_retry(bigint,bigint,timestamptz)',
                'pgq.event_retry(bigint,bigint,integer)',
                'pgq.batch_retry(bigint,integer)',
                'pgq.force_tick(text)',
                'pgq.finish_batch(bigint)']),
            ('pgq_writer', array[
                'pgq.insert_event(text,text,text)',
                'pgq.insert_event(text,text,text,text,text,text,text)',
                'pgq.current_event_table(text)',
                'pgq.jsontriga()',
                'pgq.sqltriga()',
                'pgq.logutriga()']),
            ('pgq_admin', array[
                'pgq.ticker(text,bigint,timestamptz,bigint)',
                'pgq.ticker(text)',
                'pgq.ticker()',
                'pgq._ticker_batch(text[])',
                'pgq.maint_retry_events()',
                'pgq.maint_rotate_tables_step1(text)',
                'pgq.maint_rotate_tables_step2()',
                'pgq.maint_tables_to_vacuum()',
                'pgq.maint_operations()',
                'pgq.upgrade_schema()',
                'pgq.grant_perms(text)',
                'pgq._grant_perms_from(text,text,text,text)',
                'pgq.tune_storage(text)',
                'pgq.seq_setval(text,int8)',
                'pgq.create_queue(text)',
                'pgq.drop_queue(text,bool)',
                'pgq.drop_queue(text)',
                'pgq.set_queue_config(text,text,text)',
                'pgq.insert_event_raw(text,bigint,timestamptz,integer,integer,text,text,text,text,text,text)',
                'pgq.event_retry_raw(text,text,timestamptz,bigint,timestamptz,integer,text,text,text,text,text,text)',
                -- internal, reached through the two functions above when
                -- pgq_admin calls them with its own rights
                'pgq._insert_event_dispatch(text,bigint,timestamptz,int4,int4,text,text,text,text,text,text)',
                'pgq._refresh_insert_dispatch()'])
          ) as g(grantee, sigs)
    loop
        foreach v_sig in array v_group.sigs loop
            v_proc := pg_catalog.to_regprocedure(v_sig);
            if v_proc is null then
                -- the trigger functions come with their own file, maybe later
                if v_sig not like 'pgq.%triga()' then
                    v_missing := v_missing || v_sig;
                end if;
                continue;
            end if;
            v_listed := v_listed || v_proc;
            execute 'revoke all on function ' || v_proc::text
                || ' from public, pgq_reader, pgq_writer, pgq_admin cascade';
            execute 'grant execute on function ' || v_proc::text || ' to ' || v_group.grantee;
        end loop;
    end loop;

    -- everything else in the schema is internal
    for v_proc in
        select p.oid::regprocedure
          from pg_catalog.pg_proc p
         where p.pronamespace = 'pgq'::regnamespace
           and p.prokind = 'f'
           and p.oid <> all (v_listed::oid[])
    loop
        execute 'revoke all on function ' || v_proc::text
            || ' from public, pgq_reader, pgq_writer, pgq_admin cascade';
        -- the insert dispatcher's generated buckets run with pgq_admin's rights
        -- when it calls pgq.insert_event_raw
        if v_proc::text like 'pgq.\_insert\_event\_bucket\_%' then
            execute 'grant execute on function ' || v_proc::text || ' to pgq_admin';
        end if;
    end loop;

    if cardinality(v_missing) > 0 then
        raise warning 'pgq grants: functions not installed: %', array_to_string(v_missing, ', ');
    end if;
end;
$$;

-- Meta tables: everybody reads, pgq_admin writes.
revoke all on table pgq.queue, pgq.consumer, pgq.tick, pgq.subscription
    from public, pgq_reader, pgq_writer, pgq_admin cascade;
grant select on table pgq.consumer, pgq.queue, pgq.tick, pgq.subscription to pgq_reader;
grant select, insert, update, delete on table pgq.consumer, pgq.queue, pgq.tick, pgq.subscription
    to pgq_admin;
grant select on table pgq.consumer, pgq.queue, pgq.tick, pgq.subscription to public;

-- Event tables: pgq.grant_perms copies these grants of the template to every
-- new queue's tables.
revoke all on table pgq.event_template from public, pgq_reader, pgq_writer, pgq_admin cascade;
grant select on table pgq.event_template to pgq_reader;
grant select, insert, truncate on table pgq.event_template to pgq_admin;

-- Retry queue: only through functions, or by pgq_admin.
revoke all on table pgq.retry_queue from public, pgq_reader, pgq_writer, pgq_admin cascade;
grant select, insert, update, delete on table pgq.retry_queue to pgq_admin;

-- Sequences: no grants (as in pgq); the per-queue ones get theirs from
-- pgq.grant_perms.
revoke all on sequence pgq.batch_id_seq, pgq.queue_queue_id_seq,
    pgq.consumer_co_id_seq, pgq.subscription_sub_id_seq
    from public, pgq_reader, pgq_writer, pgq_admin cascade;
