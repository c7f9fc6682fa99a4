-- pgq core, part 80: versions and in-place upgrade.


-- ----------------------------------------------------------------------------
-- pgq.version(0)
--
-- The pgq API level this schema implements.  A literal: pgq 3.4+ reports the
-- extension version, which is NULL without CREATE EXTENSION and makes pgqd
-- skip the database.
--
-- Returns:
--   '3.5'
-- ----------------------------------------------------------------------------
create or replace function pgq.version()
returns text
language sql
as $$
    select '3.5'::text;
$$;


-- ----------------------------------------------------------------------------
-- pgq.pgqd_schema_version(0)
--
-- Version of this SQL implementation (the pgqd crate's schema), independent
-- of the pgq API level above.
--
-- Returns:
--   '1.0'
-- ----------------------------------------------------------------------------
create or replace function pgq.pgqd_schema_version()
returns text
language sql
as $$
    select '1.1'::text;
$$;


-- ----------------------------------------------------------------------------
-- pgq.upgrade_schema(0)
--
-- Bring an older layout up to date, idempotently: sub_last_tick may be NULL
-- (cooperative consumers), the roles pgq_reader / pgq_writer / pgq_admin
-- exist, pgq.queue has queue_extra_maint.  Also regenerates the insert
-- dispatcher.
--
-- Returns:
--   0 (as pgq since 3.3; it no longer reports the number of changes).
-- ----------------------------------------------------------------------------
create or replace function pgq.upgrade_schema()
returns int4
language plpgsql
as $$
begin
    if exists (select 1 from pg_catalog.pg_attribute
                where attrelid = 'pgq.subscription'::regclass
                  and attname = 'sub_last_tick'
                  and attnotnull
                  and not attisdropped)
    then
        alter table pgq.subscription alter column sub_last_tick drop not null;
    end if;

    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'pgq_reader') then
        create role pgq_reader;
    end if;
    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'pgq_writer') then
        create role pgq_writer;
    end if;
    if not exists (select 1 from pg_catalog.pg_roles where rolname = 'pgq_admin') then
        create role pgq_admin in role pgq_reader, pgq_writer;
    end if;

    if not exists (select 1 from pg_catalog.pg_attribute
                    where attrelid = 'pgq.queue'::regclass
                      and attname = 'queue_extra_maint'
                      and not attisdropped)
    then
        alter table pgq.queue add column queue_extra_maint text[];
    end if;

    perform pgq._refresh_insert_dispatch();

    return 0;
end;
$$;


-- Installing over an older layout upgrades it.
do $$
begin
    perform pgq.upgrade_schema();
end;
$$;
