-- pgq_node, part 15: bringing an old table layout up to date.
--
-- Runs before the functions are (re)defined, so that they always meet the
-- current layout.


-- ---------------------------------------------------------------------------
-- pgq_node.upgrade_schema(0)
--
--   Adds node_info.node_attrs (text, null) when the table predates it.
--   Safe to run at any time.
--
--   Returns the number of changes made (0 when the layout is current).
-- ---------------------------------------------------------------------------
create or replace function pgq_node.upgrade_schema()
returns int4
language plpgsql
as $$
declare
    v_changes   int4 := 0;
begin
    if not exists (select 1 from pg_catalog.pg_attribute a
                    where a.attrelid = 'pgq_node.node_info'::regclass
                      and a.attname = 'node_attrs'
                      and not a.attisdropped)
    then
        alter table pgq_node.node_info add column node_attrs text;
        v_changes := v_changes + 1;
    end if;
    return v_changes;
end;
$$;


do $$
begin
    perform pgq_node.upgrade_schema();
end;
$$;
