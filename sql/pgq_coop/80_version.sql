-- pgq_coop, part 80: version.


-- ---------------------------------------------------------------------------
-- pgq_coop.version(0)
--
--   The pgq_coop API level this schema implements.  A literal, like
--   pgq.version(); pgq_coop's own reports the extension version instead.
--
--   Returns '3.4'.
-- ---------------------------------------------------------------------------
create or replace function pgq_coop.version()
returns text
language sql
as $$
    select '3.4'::text;
$$;
