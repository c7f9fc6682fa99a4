-- pgq core, part 00: the schema and the three NOLOGIN roles.
--
-- Roles are cluster-wide, so they may already exist (another database of the
-- cluster, or the C extension once installed here).  Creating them needs
-- CREATEROLE; when they exist already nothing is asked of the installer.

do $$
declare
    r text;
begin
    foreach r in array array['pgq_reader', 'pgq_writer'] loop
        if not exists (select 1 from pg_catalog.pg_roles where rolname = r) then
            execute 'create role ' || r;
        end if;
    end loop;
    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'pgq_admin') then
        create role pgq_admin in role pgq_reader, pgq_writer;
    end if;
end;
$$;

create schema if not exists pgq;
