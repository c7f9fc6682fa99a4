-- pgq_coop, part 90: privileges.
--
-- Every function is for consumers (pgq_reader); anyone may ask for the
-- version.  The file can run again at any time; it restores the same state.

grant usage on schema pgq_coop to public;

do $$
declare
    v_proc  regprocedure;
begin
    for v_proc in
        select p.oid::regprocedure
          from pg_catalog.pg_proc p
         where p.pronamespace = 'pgq_coop'::regnamespace
           and p.prokind = 'f'
    loop
        execute 'revoke all on function ' || v_proc::text
            || ' from public, pgq_reader, pgq_writer, pgq_admin cascade';
        if v_proc = 'pgq_coop.version()'::regprocedure then
            execute 'grant execute on function ' || v_proc::text || ' to public';
        else
            execute 'grant execute on function ' || v_proc::text || ' to pgq_reader';
        end if;
    end loop;
end;
$$;
