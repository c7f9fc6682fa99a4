-- pgq_ext, part 15: bringing an old table layout up to date.
--
-- Runs before the functions are (re)defined, so that they always meet the
-- current layout.


-- ---------------------------------------------------------------------------
-- pgq_ext.upgrade_schema(0)
--
--   Adds the subconsumer_id column (text, not null, default '') to each
--   tracking table that lacks it (the layout before pgq_ext 3.1) and widens
--   the table's primary key to include it.  Existing rows get
--   subconsumer_id = '', i.e. they stay the rows of plain consumers.
--   Safe to run at any time; a current layout is left untouched.
--
--   Returns the number of tables changed (0 when nothing was to do).
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.upgrade_schema()
returns int4
language plpgsql
as $$
declare
    v_tbl       record;
    v_rel       regclass;
    v_pkey      name;
    v_changes   int4 := 0;
begin
    for v_tbl in
        select t.name, t.keycols
          from (values
            ('completed_tick',  'consumer_id, subconsumer_id'),
            ('completed_batch', 'consumer_id, subconsumer_id'),
            ('completed_event', 'consumer_id, subconsumer_id, batch_id, event_id'),
            ('partial_batch',   'consumer_id, subconsumer_id')
          ) as t(name, keycols)
    loop
        v_rel := pg_catalog.to_regclass('pgq_ext.' || v_tbl.name);
        if v_rel is null then
            continue;
        end if;
        if exists (select 1 from pg_catalog.pg_attribute a
                    where a.attrelid = v_rel
                      and a.attname = 'subconsumer_id'
                      and not a.attisdropped)
        then
            continue;
        end if;

        execute 'alter table pgq_ext.' || v_tbl.name
            || ' add column subconsumer_id text not null default '''' ';

        select c.conname into v_pkey
          from pg_catalog.pg_constraint c
         where c.conrelid = v_rel
           and c.contype = 'p';
        if v_pkey is not null then
            execute 'alter table pgq_ext.' || v_tbl.name
                || ' drop constraint ' || pg_catalog.quote_ident(v_pkey);
        end if;
        execute 'alter table pgq_ext.' || v_tbl.name
            || ' add constraint ' || v_tbl.name || '_pkey primary key ('
            || v_tbl.keycols || ')';

        v_changes := v_changes + 1;
    end loop;

    return v_changes;
end;
$$;


-- Installing over an older layout upgrades it.
do $$
begin
    perform pgq_ext.upgrade_schema();
end;
$$;
