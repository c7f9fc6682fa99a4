-- pgq_ext, part 90: privileges.
--
-- Consumers (pgq_writer on the target side) use the functions; the 3- and
-- 4-argument forms run as their owner and are the only way to write the
-- tracking tables.  Anyone may ask for the version.  The file can run again
-- at any time; it restores the same state.

grant usage on schema pgq_ext to public;

do $$
declare
    v_proc  regprocedure;
begin
    for v_proc in
        select p.oid::regprocedure
          from pg_catalog.pg_proc p
         where p.pronamespace = 'pgq_ext'::regnamespace
           and p.prokind = 'f'
    loop
        execute 'revoke all on function ' || v_proc::text
            || ' from public, pgq_reader, pgq_writer, pgq_admin cascade';
        if v_proc = 'pgq_ext.version()'::regprocedure then
            execute 'grant execute on function ' || v_proc::text || ' to public';
        else
            execute 'grant execute on function ' || v_proc::text || ' to pgq_writer';
        end if;
    end loop;
end;
$$;

-- Tables: readable by consumers, written only through the functions.
revoke all on table pgq_ext.completed_tick, pgq_ext.completed_batch,
    pgq_ext.completed_event, pgq_ext.partial_batch
    from public, pgq_reader, pgq_writer, pgq_admin cascade;
grant select on table pgq_ext.completed_tick, pgq_ext.completed_batch,
    pgq_ext.completed_event, pgq_ext.partial_batch
    to pgq_writer;
