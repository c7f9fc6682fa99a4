-- pgq_node, part 80: version.


-- ---------------------------------------------------------------------------
-- pgq_node.version(0)
--
--   The pgq_node API level this schema implements.  A literal: there is no
--   extension row to read it from (the C packaging reports its extension
--   version, which is the same '3.5').
-- ---------------------------------------------------------------------------
create or replace function pgq_node.version()
returns text
language sql
as $$
    select '3.5'::text;
$$;
