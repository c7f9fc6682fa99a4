-- pgq core, part 20: small helpers for names and sequences.
--
-- Queue rows store object names as text ('pgq.event_3_id_seq').  These helpers
-- turn such a name into a safely quoted identifier and read or move the
-- sequences behind them.  The rule for a name is the one pgq has always used:
-- the first dot separates the schema from the object, and a name without a
-- dot lives in schema public.


-- ----------------------------------------------------------------------------
-- pgq.quote_fqname(1)
--
-- Quote a schema-qualified name for use inside SQL text.
--
-- Parameters:
--   i_name  'schema.object' (split at the first dot) or 'object' (schema
--           public).
-- Returns:
--   quote_ident(schema) || '.' || quote_ident(object), e.g.
--   'Foo.bar baz' -> "Foo"."bar baz", 'tbl' -> public.tbl.
-- ----------------------------------------------------------------------------
create or replace function pgq.quote_fqname(i_name text)
returns text
language sql
strict
immutable
as $$
    select case
        when pg_catalog.strpos($1, '.') = 0
            then 'public.' || pg_catalog.quote_ident($1)
        else pg_catalog.quote_ident(pg_catalog.substr($1, 1, pg_catalog.strpos($1, '.') - 1))
             || '.'
             || pg_catalog.quote_ident(pg_catalog.substr($1, pg_catalog.strpos($1, '.') + 1))
    end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.seq_getval(1)
--
-- Read a sequence's last_value without consuming a value.
--
-- Note that last_value does not say whether nextval() was ever called: a
-- fresh sequence and one that has handed out its first value both report 1.
-- The ticker therefore uses pgq._event_seq_used() instead; this function keeps
-- the answers pgq always gave.
--
-- Parameters:
--   i_seq_name  sequence name, schema-qualified as for pgq.quote_fqname.
-- Returns:
--   last_value of the sequence.
-- ----------------------------------------------------------------------------
create or replace function pgq.seq_getval(i_seq_name text)
returns bigint
language plpgsql
strict
as $$
declare
    v_value bigint;
begin
    execute 'select last_value from ' || pgq.quote_fqname(i_seq_name)
        into v_value;
    return v_value;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq.seq_setval(2)
--
-- Move a sequence forward, never backward.
--
-- Parameters:
--   i_seq_name   sequence name, schema-qualified as for pgq.quote_fqname.
--   i_new_value  wanted value.
-- Returns:
--   the sequence's value afterwards: i_new_value if it was ahead of the
--   current last_value, otherwise the unchanged last_value.
-- ----------------------------------------------------------------------------
create or replace function pgq.seq_setval(i_seq_name text, i_new_value bigint)
returns bigint
language plpgsql
strict
as $$
declare
    v_current bigint;
begin
    v_current := pgq.seq_getval(i_seq_name);
    if i_new_value <= v_current then
        return v_current;
    end if;
    perform pg_catalog.setval(pgq.quote_fqname(i_seq_name)::regclass, i_new_value);
    return i_new_value;
end;
$$;


-- ----------------------------------------------------------------------------
-- pgq._event_seq_used(1)   [internal]
--
-- Number of ids a queue's event sequence has handed out so far, as the ticker
-- needs it: the last value returned when the sequence has been called, 0 for
-- a sequence nobody has called yet.  (pgq itself reads last_value, which is 1
-- in both cases, so the first event of a new queue went unnoticed.)
--
-- Parameters:
--   i_seq_name  sequence name, schema-qualified as for pgq.quote_fqname.
-- Returns:
--   last value handed out, or 0.
-- ----------------------------------------------------------------------------
create or replace function pgq._event_seq_used(i_seq_name text)
returns bigint
language sql
strict
as $$
    select coalesce(pg_catalog.pg_sequence_last_value(pgq.quote_fqname($1)::regclass), 0);
$$;
