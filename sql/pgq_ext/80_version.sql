-- pgq_ext, part 80: version.


-- ---------------------------------------------------------------------------
-- pgq_ext.version(0)
--
--   The pgq_ext API level this schema implements.  A literal, like
--   pgq.version(); pgq_ext's own reports the extension version instead.
--
--   Returns '3.3'.
-- ---------------------------------------------------------------------------
create or replace function pgq_ext.version()
returns text
language sql
as $$
    select '3.3'::text;
$$;
