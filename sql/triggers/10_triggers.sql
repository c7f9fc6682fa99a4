-- triggers component, part 10: the change-capture triggers pgq.logutriga(),
-- pgq.sqltriga() and pgq.jsontriga().
--
-- Installed into schema pgq after the pgq component.  The three functions
-- share one PL/pgSQL body, generated below with the payload kind substituted,
-- so they cannot drift apart and need no helper functions (a helper would be
-- called with the rights of whoever runs the DML, and pgq's grants file
-- revokes every internal function from public).
--
-- How a row becomes an event (the fast paths first; every other case takes
-- the general path, which gives the same bytes):
--   * the table's column names, types and primary key (the primary key
--     index's column names, in index order, as the C triggers read them) come
--     from one catalog query, cached for the rest of the transaction in the
--     setting pgq.trg_<table oid> (see the stamp below);
--   * logutriga INSERT/DELETE: the row's own text form (record_out: every
--     column through its type's output function, dropped columns left out)
--     is split into fields at its double quotes when it holds no backslash and
--     no "" (then no field is escaped); names and values are urlencoded in one
--     string ('%' and the commonest unsafe characters by replace(), any other
--     one found by a regex search and replaced everywhere, space last) and
--     paired up by one format();
--   * otherwise the column values come from json_each_text(row_to_json(row))
--     when every column type renders there as its text output (bool and the
--     date/time types turned back from their JSON form), else from splitting
--     the row's text form with a regex;
--   * jsontriga uses row_to_json() when every column type renders there as
--     the C trigger renders it, else builds the object column by column;
--   * sqltriga quotes with quote_ident() / quote_literal().
-- Behaviour and error texts are those of the pgq 3.5 C triggers; the
-- differential test tests/trigger_diff.rs compares them event by event.
--
-- Arguments (TG_ARGV): queue name first, then any of
--   SKIP            BEFORE trigger only: queue the event, suppress the DML
--   backup          UPDATE: old row into ev_extra2
--   deny            refuse every change
--   ignore=c1,c2    leave columns out; an UPDATE of only these queues nothing
--   pkey=c1,c2      key columns instead of the primary key
--   ev_type= ev_data= ev_extra1= .. ev_extra4=   SQL expressions replacing a
--                   field; bare column names are the row's (NEW, OLD for DELETE)
--   when=EXPR       boolean expression over the row; false queues nothing

do $generate$
declare
    v_kind text;
    v_fn   text;
    v_body text := $body$
declare
    c_kind      constant text := '@KIND@';
    v_queue     text;
    v_skip      boolean := false;
    v_backup    boolean := false;
    v_deny      boolean := false;
    v_ignore    text[];
    v_pkarg     text[];
    v_exprs     text[] := '{NULL,NULL,NULL,NULL,NULL,NULL}';
    v_has_expr  boolean := false;
    v_when      text;
    v_arg       text;
    v_i         integer;
    v_n         integer;
    v_table     text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
    v_names     text[];
    v_types     oid[];
    v_pkey      text[];
    v_new       text[];
    v_old       text[];
    v_row       text[];
    v_s         text;
    v_u         text;
    v_c         text;
    v_magic     boolean;
    v_skipcol   boolean[];
    v_chg       integer := 0;
    v_ign       integer := 0;
    v_set       text := '';
    v_where     text := '';
    v_first     text;
    v_eq        boolean;
    v_bt        oid;
    v_toid      oid;
    v_ev        text[] := '{NULL,NULL,NULL,NULL,NULL,NULL}';
    v_parts     text[];
    v_sep       boolean;
    v_out       text;
    v_j         integer;
    v_fast      boolean;
    v_rowjson   boolean;
    v_need      boolean;
    v_key       text;
    v_stamp     text;
    v_meta      text[];
    v_split     boolean := false;
begin
    -- invocation rules
    if TG_OP = 'TRUNCATE' then
        if TG_LEVEL <> 'STATEMENT' then
            raise exception 'pgq tRuncate trigger must be fired FOR EACH STATEMENT'
                using errcode = 'XX000';
        end if;
    elsif TG_LEVEL <> 'ROW' then
        raise exception 'pgq Ins/Upd/Del trigger must be fired FOR EACH ROW'
            using errcode = 'XX000';
    end if;
    if TG_NARGS < 1 then
        raise exception 'pgq trigger must have destination queue as argument'
            using errcode = 'XX000';
    end if;

    -- arguments
    v_queue := TG_ARGV[0];
    for v_i in 1 .. TG_NARGS - 1 loop
        v_arg := TG_ARGV[v_i];
        if v_arg = 'SKIP' then
            if TG_WHEN = 'AFTER' then
                raise exception 'SKIP does not work in AFTER trigger.' using errcode = 'XX000';
            end if;
            v_skip := true;
        elsif v_arg = 'backup' then
            v_backup := true;
        elsif v_arg = 'deny' then
            v_deny := true;
        elsif left(v_arg, 7) = 'ignore=' then
            v_ignore := string_to_array(substr(v_arg, 8), ',');
        elsif left(v_arg, 5) = 'pkey=' then
            v_pkarg := string_to_array(substr(v_arg, 6), ',');
        elsif left(v_arg, 5) = 'when=' then
            v_when := substr(v_arg, 6);
        elsif left(v_arg, 8) = 'ev_type=' then
            v_exprs[1] := substr(v_arg, 9);
            v_has_expr := true;
        elsif left(v_arg, 8) = 'ev_data=' then
            v_exprs[2] := substr(v_arg, 9);
            v_has_expr := true;
        elsif left(v_arg, 8) = 'ev_extra' and substr(v_arg, 9, 1) in ('1', '2', '3', '4')
              and substr(v_arg, 10, 1) = '=' then
            v_exprs[2 + substr(v_arg, 9, 1)::integer] := substr(v_arg, 11);
            v_has_expr := true;
        else
            raise exception 'bad param to pgq trigger' using errcode = 'XX000';
        end if;
    end loop;

    if TG_OP = 'TRUNCATE' then
        if v_ignore is not null then
            raise exception 'Column ignore does not make sense for truncate trigger'
                using errcode = 'XX000';
        elsif v_pkarg is not null then
            raise exception 'Custom pkey_list does not make sense for truncate trigger'
                using errcode = 'XX000';
        elsif v_backup then
            raise exception 'Backup does not make sense for truncate trigger'
                using errcode = 'XX000';
        elsif v_has_expr or v_when is not null then
            raise exception 'Custom expressions do not make sense for truncater trigger'
                using errcode = 'XX000';
        end if;
    end if;

    -- session_replication_role = local: the change is not replicated
    if pg_catalog.current_setting('session_replication_role') = 'local' then
        if TG_WHEN = 'BEFORE' and TG_LEVEL = 'ROW' then
            if TG_OP = 'DELETE' then
                return OLD;
            end if;
            return NEW;
        end if;
        return null;
    end if;

    if v_deny then
        raise exception 'Table ''%'' to queue ''%'': change not allowed (%)',
            v_table, v_queue, TG_OP using errcode = 'XX000';
    end if;

    -- table: column names and types in column order, primary key in index order.
    -- Cached for the rest of the transaction in the setting pgq.trg_<table oid>,
    -- stamped with the transaction id and this backend's count of row changes
    -- to pg_attribute and pg_index in it.  The statement firing this trigger
    -- holds a lock on the table until the transaction ends, so no other session
    -- can alter its columns or primary key meanwhile; a change by this session
    -- bumps the count.
    -- Those counts exist only with track_counts on (without it nothing is
    -- cached; a superuser switching it off and on again inside a transaction
    -- around an ALTER of the table would defeat the stamp).  Anyone who can
    -- write the setting can call pgq.insert_event directly anyway.
    v_key := 'pgq.trg_' || TG_RELID::text;
    if pg_catalog.current_setting('track_counts') = 'on' then
        v_stamp := pg_catalog.pg_current_xact_id_if_assigned()::text || ':'
            || (pg_catalog.pg_stat_get_xact_tuples_inserted(1249) + pg_catalog.pg_stat_get_xact_tuples_updated(1249)
                + pg_catalog.pg_stat_get_xact_tuples_deleted(1249) + pg_catalog.pg_stat_get_xact_tuples_inserted(2610)
                + pg_catalog.pg_stat_get_xact_tuples_updated(2610) + pg_catalog.pg_stat_get_xact_tuples_deleted(2610))::text;
    end if;
    v_meta := nullif(pg_catalog.current_setting(v_key, true), '')::text[];
    if v_stamp is not null and v_meta[1] = v_stamp then
        v_names := v_meta[2]::text[];
        v_types := v_meta[3]::oid[];
        v_pkey := v_meta[4]::text[];
    else
        select pg_catalog.array_agg(a.attname::text order by a.attnum),
               pg_catalog.array_agg(a.atttypid order by a.attnum),
               (select pg_catalog.array_agg(k.attname::text order by k.attnum)
                  from pg_catalog.pg_index i
                  join pg_catalog.pg_attribute k on k.attrelid = i.indexrelid
                 where i.indrelid = TG_RELID and i.indisprimary
                   and k.attnum > 0 and not k.attisdropped)
          into v_names, v_types, v_pkey
          from pg_catalog.pg_attribute a
         where a.attrelid = TG_RELID and a.attnum > 0 and not a.attisdropped;
        if v_stamp is not null then
            perform pg_catalog.set_config(v_key, array[v_stamp, v_names::text, v_types::text, v_pkey::text]::text, false);
        end if;
    end if;
    v_pkey := coalesce(v_pkarg, v_pkey, '{}');
    v_n := coalesce(cardinality(v_names), 0);

    if TG_OP = 'TRUNCATE' then
        v_ev[1] := 'R';
        v_ev[2] := '';
        if c_kind = 'json' then
            v_ev[1] := '{"op":"TRUNCATE","table":[' || pg_catalog.to_json(TG_TABLE_SCHEMA)::text
                || ',' || pg_catalog.to_json(TG_TABLE_NAME)::text || '],"pkey":['
                || substr(pg_catalog.array_to_json(v_pkey)::text, 2) || '}';
            v_ev[2] := '{}';
        end if;
        perform pgq.insert_event(v_queue, v_ev[1], v_ev[2], v_table, null, null, null);
        return null;
    end if;

    if TG_OP <> 'INSERT' and cardinality(v_pkey) = 0 then
        raise exception 'Update/Delete on table without pkey' using errcode = 'XX000';
    end if;

    -- jsontriga INSERT/DELETE with nothing to leave out or override, every
    -- column of a type row_to_json() renders as the C trigger does: one step
    if c_kind = 'json' and TG_OP <> 'UPDATE' and v_ignore is null and v_when is null and not v_has_expr
       and v_types <@ '{16,17,18,19,20,21,23,25,1042,1043,1082,1083,1114,1184,2950}'::oid[]
       and strpos(pg_catalog.array_to_string(v_names, ','), '_pgq_ev_') = 0 then
        perform pgq.insert_event(v_queue,
            '{"op":"' || TG_OP || '","table":[' || pg_catalog.to_json(TG_TABLE_SCHEMA)::text
                || ',' || pg_catalog.to_json(TG_TABLE_NAME)::text || '],"pkey":['
                || substr(pg_catalog.array_to_json(v_pkey)::text, 2) || '}',
            case when TG_OP = 'DELETE' then pg_catalog.row_to_json(OLD)
                 else pg_catalog.row_to_json(NEW) end::text,
            v_table, null, null, null);
        return case when TG_WHEN = 'AFTER' or v_skip then null
                    when TG_OP = 'DELETE' then OLD else NEW end;
    end if;

    -- the row(s) as text values in column order.  For the common built-in types
    -- json_each_text(row_to_json(row)) gives each column's text output (bool and
    -- the date/time types are turned back from their JSON form); otherwise the
    -- row's own text form is split back into column values.
    v_fast := v_types <@ '{16,17,18,19,20,21,23,25,26,28,700,701,1042,1043,1082,1083,1114,1184,1186,1266,1700,2950}'::oid[];
    v_rowjson := v_types <@ '{16,17,18,19,20,21,23,25,1042,1043,1082,1083,1114,1184,2950}'::oid[];
    v_magic := strpos(pg_catalog.array_to_string(v_names, ','), '_pgq_ev_') > 0;
    v_need := c_kind = 'sql' or TG_OP = 'UPDATE' or v_magic or v_ignore is not null
              or (c_kind = 'json' and not v_rowjson);
    if not v_need and c_kind = 'logu' then
        if TG_OP = 'DELETE' then
            v_s := OLD::text;
        else
            v_s := NEW::text;
        end if;
        v_split := v_n > 0 and strpos(v_s, '\') = 0 and strpos(v_s, '""') = 0
                   and strpos(v_s, E'\x01') = 0 and strpos(v_s, E'\x02') = 0
                   and strpos(pg_catalog.array_to_string(v_names, ''), E'\x01') = 0
                   and strpos(pg_catalog.array_to_string(v_names, ''), E'\x02') = 0;
        v_need := not v_split and not v_fast;
    end if;
    if v_split then
        -- logutriga, INSERT/DELETE, the row's text form without backslashes
        -- and empty strings (""): every double quote opens or closes a field,
        -- so splitting there leaves the pieces outside quotes at odd places,
        -- where a comma ends a field; the outer parentheses are the first and
        -- last character.  Result: "name\x02name...\x01value\x02value...\x02",
        -- an empty value being NULL (the last \x02 keeps a lone empty value).
        v_parts := pg_catalog.string_to_array(v_s, '"');
        v_j := cardinality(v_parts);
        for v_i in 1 .. v_j by 2 loop
            v_parts[v_i] := replace(v_parts[v_i], ',', E'\x02');
        end loop;
        v_parts[1] := substr(v_parts[1], 2);
        v_parts[v_j] := left(v_parts[v_j], -1);
        v_u := pg_catalog.array_to_string(v_names, E'\x02') || E'\x01'
            || pg_catalog.array_to_string(v_parts, '') || E'\x02';
        if v_when is null and not v_has_expr then
            -- nothing else to do: urlencode (as in the payload section below),
            -- pair names and values, queue
            v_s := replace(replace(replace(replace(replace(replace(replace(replace(v_u,
                       '%', '%25'), '+', '%2b'), ',', '%2c'), ':', '%3a'), ';', '%3b'),
                       '&', '%26'), '=', '%3d'), '/', '%2f');
            loop
                v_c := pg_catalog.substring(v_s, E'[^-0-9A-Za-z_.% \x01\x02]');
                exit when v_c is null;
                v_s := replace(v_s, v_c, case when octet_length(v_c) = 1
                    then '%' || lpad(pg_catalog.to_hex(ascii(v_c)), 2, '0')
                    else pg_catalog.regexp_replace(
                        pg_catalog.encode(pg_catalog.convert_to(v_c, pg_catalog.getdatabaseencoding()), 'hex'),
                        '(..)', '%\1', 'g') end);
            end loop;
            v_s := replace(v_s, ' ', '+');
            perform pgq.insert_event(v_queue, left(TG_OP, 1) || ':' || pg_catalog.array_to_string(v_pkey, ','),
                left(replace(pg_catalog.format(
                    replace(replace(split_part(v_s, E'\x01', 1), '%', '%%'), E'\x02', '=%s&') || '=%s&',
                    variadic pg_catalog.string_to_array(split_part(v_s, E'\x01', 2), E'\x02')), '=&', '&'), -1),
                v_table, null, null, null);
            return case when TG_WHEN = 'AFTER' or v_skip then null
                        when TG_OP = 'DELETE' then OLD else NEW end;
        end if;
    elsif not v_need and c_kind = 'logu' then
        -- "name\x01value\x02..." straight from the row; v_eq: the data holds \x01 or \x02
        if TG_OP = 'DELETE' then
            select pg_catalog.string_agg(case when x.v is null then x.k else x.k || E'\x01' || x.v end,
                                         E'\x02' order by x.o),
                   pg_catalog.bool_or(strpos(x.k || coalesce(x.v, ''), E'\x01') > 0
                                      or strpos(x.k || coalesce(x.v, ''), E'\x02') > 0)
              into v_u, v_eq
              from (select j.k, j.o,
                           case v_types[j.o] when 16 then case j.v when 'true' then 't' when 'false' then 'f' end
                                             when 1082 then j.v::pg_catalog.date::text
                                             when 1114 then j.v::pg_catalog.timestamp::text
                                             when 1184 then j.v::pg_catalog.timestamptz::text
                                             else j.v end as v
                      from pg_catalog.json_each_text(pg_catalog.row_to_json(OLD)) with ordinality as j(k, v, o)) x;
        else
            select pg_catalog.string_agg(case when x.v is null then x.k else x.k || E'\x01' || x.v end,
                                         E'\x02' order by x.o),
                   pg_catalog.bool_or(strpos(x.k || coalesce(x.v, ''), E'\x01') > 0
                                      or strpos(x.k || coalesce(x.v, ''), E'\x02') > 0)
              into v_u, v_eq
              from (select j.k, j.o,
                           case v_types[j.o] when 16 then case j.v when 'true' then 't' when 'false' then 'f' end
                                             when 1082 then j.v::pg_catalog.date::text
                                             when 1114 then j.v::pg_catalog.timestamp::text
                                             when 1184 then j.v::pg_catalog.timestamptz::text
                                             else j.v end as v
                      from pg_catalog.json_each_text(pg_catalog.row_to_json(NEW)) with ordinality as j(k, v, o)) x;
        end if;
        v_need := coalesce(v_eq, false);
    end if;
    if v_need and TG_OP <> 'DELETE' then
        if v_fast then
            v_new := array(
                select case v_types[o] when 16 then case v when 'true' then 't' when 'false' then 'f' end
                                       when 1082 then v::pg_catalog.date::text
                                       when 1114 then v::pg_catalog.timestamp::text
                                       when 1184 then v::pg_catalog.timestamptz::text
                                       else v end
                  from pg_catalog.json_each_text(pg_catalog.row_to_json(NEW)) with ordinality as j(k, v, o)
                 order by o);
        else
            v_s := NEW::text;
            v_s := substr(v_s, 2, length(v_s) - 2);
            if strpos(v_s, '"') = 0 then
                v_new := pg_catalog.string_to_array(v_s, ',', '');
            else
                v_new := array(
                    select case when m[1] = '' then null
                                when left(m[1], 1) = '"' then
                                    pg_catalog.regexp_replace(substr(m[1], 2, length(m[1]) - 2),
                                                              '(["\\])\1', '\1', 'g')
                                else m[1] end
                      from pg_catalog.regexp_matches(v_s || ',', '("(?:[^"]|"")*"|[^,]*),', 'g') m);
            end if;
        end if;
    end if;
    if v_need and TG_OP <> 'INSERT' then
        if v_fast then
            v_old := array(
                select case v_types[o] when 16 then case v when 'true' then 't' when 'false' then 'f' end
                                       when 1082 then v::pg_catalog.date::text
                                       when 1114 then v::pg_catalog.timestamp::text
                                       when 1184 then v::pg_catalog.timestamptz::text
                                       else v end
                  from pg_catalog.json_each_text(pg_catalog.row_to_json(OLD)) with ordinality as j(k, v, o)
                 order by o);
        else
            v_s := OLD::text;
            v_s := substr(v_s, 2, length(v_s) - 2);
            if strpos(v_s, '"') = 0 then
                v_old := pg_catalog.string_to_array(v_s, ',', '');
            else
                v_old := array(
                    select case when m[1] = '' then null
                                when left(m[1], 1) = '"' then
                                    pg_catalog.regexp_replace(substr(m[1], 2, length(m[1]) - 2),
                                                              '(["\\])\1', '\1', 'g')
                                else m[1] end
                      from pg_catalog.regexp_matches(v_s || ',', '("(?:[^"]|"")*"|[^,]*),', 'g') m);
            end if;
        end if;
    end if;
    if TG_OP = 'DELETE' then
        v_row := v_old;
    else
        v_row := v_new;
    end if;

    -- columns left out of the payload: ignored ones and the _pgq_ev_* magic columns
    if v_ignore is not null or v_magic then
        v_skipcol := array(select n = any(v_ignore) or left(n, 8) = '_pgq_ev_'
                             from pg_catalog.unnest(v_names) n);
    end if;

    -- UPDATE: which columns changed, by the type's equality
    if TG_OP = 'UPDATE' then
        for v_i in 1 .. v_n loop
            if v_old[v_i] is not distinct from v_new[v_i] then
                continue;
            end if;
            if v_old[v_i] is not null and v_new[v_i] is not null then
                v_toid := v_types[v_i];
                v_eq := null;
                if v_toid >= 16384 then
                    -- domains, composites, enums, extension types
                    select coalesce(nullif(t.typbasetype, 0), t.oid) into v_bt
                      from pg_catalog.pg_type t where t.oid = v_toid;
                    if v_bt in (1700, 700, 701, 1186, 1042) then
                        v_toid := v_bt;
                    elsif v_bt >= 16384 and exists (
                            select 1
                              from pg_catalog.pg_type t
                              join pg_catalog.pg_opclass c on c.opcdefault
                              join pg_catalog.pg_am m on m.oid = c.opcmethod
                             where t.oid = v_bt and m.amname in ('btree', 'hash')
                               and not (t.typelem <> 0 and t.typlen = -1)
                               and (c.opcintype = t.oid
                                    or (c.opcintype = 'pg_catalog.anyenum'::pg_catalog.regtype and t.typtype = 'e')
                                    or (c.opcintype = 'pg_catalog.anyrange'::pg_catalog.regtype and t.typtype = 'r')
                                    or (c.opcintype = 'pg_catalog.record'::pg_catalog.regtype and t.typtype = 'c'))) then
                        execute pg_catalog.format('select $1::%s = $2::%s',
                                                  v_toid::pg_catalog.regtype, v_toid::pg_catalog.regtype)
                           into v_eq using v_old[v_i], v_new[v_i];
                    end if;
                end if;
                if v_toid = 1700 then
                    v_eq := v_old[v_i]::numeric = v_new[v_i]::numeric;
                elsif v_toid = 701 then
                    v_eq := v_old[v_i]::float8 = v_new[v_i]::float8;
                elsif v_toid = 700 then
                    v_eq := v_old[v_i]::float4 = v_new[v_i]::float4;
                elsif v_toid = 1186 then
                    v_eq := v_old[v_i]::interval = v_new[v_i]::interval;
                elsif v_toid = 1042 then
                    v_eq := v_old[v_i]::bpchar = v_new[v_i]::bpchar;
                end if;
                if v_eq then
                    continue;
                end if;
            end if;
            if v_names[v_i] = any(v_pkey) then
                raise exception 'primary key update not allowed' using errcode = 'XX000';
            end if;
            if v_skipcol[v_i] then
                v_ign := v_ign + 1;
            else
                v_chg := v_chg + 1;
                if c_kind = 'sql' then
                    v_set := v_set || case when v_chg > 1 then ',' else '' end
                        || quote_ident(v_names[v_i]) || '='
                        || coalesce(quote_literal(v_new[v_i]), 'NULL');
                end if;
            end if;
        end loop;
        if v_ign > 0 and v_chg = 0 then
            return case when TG_WHEN = 'AFTER' or v_skip then null else NEW end;
        end if;
    end if;

    -- when=: a boolean over the row
    if v_when is not null then
        if v_when = '' then
            raise exception 'when= query result must be boolean, got=0' using errcode = 'XX000';
        end if;
        if TG_OP = 'DELETE' then
            execute 'select pg_catalog.pg_typeof(v)::oid, v::text from (select (' || v_when
                || ') as v from (select ($1).*) _r) _s' into v_toid, v_s using OLD;
        else
            execute 'select pg_catalog.pg_typeof(v)::oid, v::text from (select (' || v_when
                || ') as v from (select ($1).*) _r) _s' into v_toid, v_s using NEW;
        end if;
        if v_toid <> 16 then
            raise exception 'when= query result must be boolean, got=%', v_toid
                using errcode = 'XX000';
        end if;
        if v_s is null then
            raise exception 'when= should not be NULL' using errcode = 'XX000';
        end if;
        if not v_s::boolean then
            return case when TG_WHEN = 'AFTER' or v_skip then null
                        when TG_OP = 'DELETE' then OLD else NEW end;
        end if;
    end if;

    -- payload
    v_ev[3] := v_table;
    if c_kind = 'sql' then
        if TG_OP = 'INSERT' then
            select '(' || pg_catalog.string_agg(quote_ident(n), ',' order by o)
                   || ') values ('
                   || pg_catalog.string_agg(coalesce(quote_literal(v), 'null'), ',' order by o) || ')'
              into v_out
              from unnest(v_names, v_row) with ordinality as x(n, v, o)
             where not coalesce(v_skipcol[o], false);
            v_ev[1] := 'I';
            v_ev[2] := v_out;
        else
            for v_i in 1 .. v_n loop
                if v_names[v_i] = any(v_pkey) then
                    if v_first is null then
                        v_first := quote_ident(v_names[v_i]) || '='
                            || coalesce(quote_literal(v_old[v_i]), 'NULL');
                    end if;
                    v_where := v_where || case when v_where = '' then '' else ' and ' end
                        || quote_ident(v_names[v_i]) || '='
                        || coalesce(quote_literal(v_old[v_i]), 'NULL');
                end if;
            end loop;
            if TG_OP = 'UPDATE' then
                if v_chg = 0 then
                    v_set := coalesce(v_first, '');
                end if;
                v_ev[1] := 'U';
                v_ev[2] := v_set || ' where ' || v_where;
            else
                v_ev[1] := 'D';
                v_ev[2] := v_where;
            end if;
        end if;
    elsif c_kind = 'json' then
        v_ev[1] := '{"op":"' || TG_OP || '","table":[' || pg_catalog.to_json(TG_TABLE_SCHEMA)::text
            || ',' || pg_catalog.to_json(TG_TABLE_NAME)::text || '],"pkey":['
            || substr(pg_catalog.array_to_json(v_pkey)::text, 2) || '}';
    else
        v_ev[1] := left(TG_OP, 1) || ':' || pg_catalog.array_to_string(v_pkey, ',');
    end if;

    -- logutriga / jsontriga data, and the backup of the old row
    for v_j in 1 .. case when v_backup and TG_OP = 'UPDATE' then 2 else 1 end loop
        if v_j = 1 and c_kind = 'sql' then
            continue;
        end if;
        if v_j = 2 then
            v_row := v_old;
        end if;
        if c_kind = 'json' and v_j = 1 or c_kind = 'json' and v_j = 2 then
            if v_skipcol is null
               and v_types <@ '{16,17,18,19,20,21,23,25,1042,1043,1082,1083,1114,1184,2950}'::oid[] then
                -- row_to_json renders these types exactly as the C trigger does
                if v_j = 2 then
                    v_out := pg_catalog.row_to_json(OLD)::text;
                elsif TG_OP = 'DELETE' then
                    v_out := pg_catalog.row_to_json(OLD)::text;
                else
                    v_out := pg_catalog.row_to_json(NEW)::text;
                end if;
            else
                select '{' || coalesce(pg_catalog.string_agg(
                           pg_catalog.to_json(n)::text || ':' ||
                           case when v is null then 'null'
                                when t in (20, 21, 23) then v
                                when t = 16 then case when v = 't' then 'true' else 'false' end
                                when t = 1082 then pg_catalog.to_json(v::date)::text
                                when t = 1114 then pg_catalog.to_json(v::timestamp)::text
                                when t = 1184 then pg_catalog.to_json(v::timestamptz)::text
                                else pg_catalog.to_json(v)::text end, ',' order by o), '') || '}'
                  into v_out
                  from unnest(v_names, v_row, v_types) with ordinality as x(n, v, t, o)
                 where not coalesce(v_skipcol[o], false);
            end if;
        else
            -- name=value&...; urlencoded all at once with \x01 / \x02 standing in
            -- for '=' / '&', or piece by piece when the data holds those bytes
            if not v_need then
                v_sep := true;
                v_parts := array[coalesce(v_u, '')];
            else
                v_sep := strpos(pg_catalog.array_to_string(v_row, '') || pg_catalog.array_to_string(v_names, ''), E'\x01') = 0
                     and strpos(pg_catalog.array_to_string(v_row, '') || pg_catalog.array_to_string(v_names, ''), E'\x02') = 0;
            end if;
            if not v_need then
                null;
            elsif v_sep then
                select pg_catalog.string_agg(case when v is null then n else n || E'\x01' || v end,
                                             E'\x02' order by o)
                  into v_s
                  from unnest(v_names, v_row) with ordinality as x(n, v, o)
                 where not coalesce(v_skipcol[o], false);
                v_parts := array[coalesce(v_s, '')];
            else
                -- name, value, name, value ...; a NULL value stays NULL
                v_parts := array(
                    select y
                      from unnest(v_names, v_row) with ordinality as x(n, v, o),
                           lateral (values (1, n), (2, v)) as z(k, y)
                     where not coalesce(v_skipcol[o], false)
                     order by o, k);
            end if;
            for v_i in 1 .. coalesce(cardinality(v_parts), 0) loop
                v_s := v_parts[v_i];
                if v_s is null then
                    continue;
                end if;
                -- '%' first, the commonest unsafe characters in one go, then
                -- each other unsafe character in turn (found by one regex
                -- search), space last; the \x01 / \x02 stand-ins become '=' / '&'
                v_s := replace(replace(replace(replace(replace(replace(replace(replace(v_s,
                           '%', '%25'), '+', '%2b'), ',', '%2c'), ':', '%3a'), ';', '%3b'),
                           '&', '%26'), '=', '%3d'), '/', '%2f');
                loop
                    if v_sep then
                        v_c := pg_catalog.substring(v_s, E'[^-0-9A-Za-z_.% \x01\x02]');
                    else
                        v_c := pg_catalog.substring(v_s, '[^-0-9A-Za-z_.% ]');
                    end if;
                    exit when v_c is null;
                    v_s := replace(v_s, v_c, case when octet_length(v_c) = 1
                        then '%' || lpad(pg_catalog.to_hex(ascii(v_c)), 2, '0')
                        else pg_catalog.regexp_replace(
                            pg_catalog.encode(pg_catalog.convert_to(v_c, pg_catalog.getdatabaseencoding()), 'hex'),
                            '(..)', '%\1', 'g') end);
                end loop;
                v_s := replace(v_s, ' ', '+');
                v_parts[v_i] := v_s;
            end loop;
            if v_split then
                -- encoded names and values: one format() pairs them up
                v_out := pg_catalog.format(
                    replace(replace(split_part(v_parts[1], E'\x01', 1), '%', '%%'), E'\x02', '=%s&') || '=%s&',
                    variadic pg_catalog.string_to_array(split_part(v_parts[1], E'\x01', 2), E'\x02'));
                v_out := replace(v_out, '=&', '&');
                v_out := left(v_out, -1);
            elsif v_sep then
                v_out := replace(replace(v_parts[1], E'\x01', '='), E'\x02', '&');
            else
                v_out := '';
                for v_i in 1 .. coalesce(cardinality(v_parts), 0) / 2 loop
                    v_out := v_out || case when v_i > 1 then '&' else '' end || v_parts[2 * v_i - 1]
                        || coalesce('=' || v_parts[2 * v_i], '');
                end loop;
            end if;
        end if;
        v_ev[case when v_j = 1 then 2 else 4 end] := v_out;
    end loop;
    if not (v_backup and TG_OP = 'UPDATE') then
        v_ev[4] := null;
    end if;

    -- deprecated magic columns override the fields
    if v_magic then
        for v_i in 1 .. v_n loop
            if left(v_names[v_i], 8) = '_pgq_ev_' then
                v_j := case substr(v_names[v_i], 9)
                         when 'type' then 1 when 'data' then 2
                         when 'extra1' then 3 when 'extra2' then 4
                         when 'extra3' then 5 when 'extra4' then 6 end;
                if v_j is null then
                    raise exception 'Unknown magic column: %', v_names[v_i] using errcode = 'XX000';
                end if;
                v_ev[v_j] := v_row[v_i];
            end if;
        end loop;
    end if;

    -- ev_*= expressions
    if v_has_expr then
        for v_j in 1 .. 6 loop
            if v_exprs[v_j] is null then
                continue;
            elsif v_exprs[v_j] = '' then
                v_ev[v_j] := null;
            elsif TG_OP = 'DELETE' then
                execute 'select case when pg_catalog.num_nulls(v) = 1 then null else pg_catalog.format(''%s'', v) end from (select ('
                    || v_exprs[v_j] || ') as v from (select ($1).*) _r) _s' into v_s using OLD;
                v_ev[v_j] := v_s;
            else
                execute 'select case when pg_catalog.num_nulls(v) = 1 then null else pg_catalog.format(''%s'', v) end from (select ('
                    || v_exprs[v_j] || ') as v from (select ($1).*) _r) _s' into v_s using NEW;
                v_ev[v_j] := v_s;
            end if;
        end loop;
    end if;

    perform pgq.insert_event(v_queue, v_ev[1], v_ev[2], v_ev[3], v_ev[4], v_ev[5], v_ev[6]);

    if TG_WHEN = 'AFTER' or v_skip then
        return null;
    elsif TG_OP = 'DELETE' then
        return OLD;
    end if;
    return NEW;
end;
$body$;
begin
    foreach v_kind in array array['logu', 'sql', 'json'] loop
        v_fn := v_kind || 'triga';
        execute 'create or replace function pgq.' || v_fn || '() returns trigger '
            || 'language plpgsql as ' || quote_literal(replace(v_body, '@KIND@', v_kind));
        execute 'comment on function pgq.' || v_fn || '() is '
            || quote_literal('pgq change-capture trigger (' || v_kind
                             || ' payload); arguments: queue name, then SKIP, backup, deny, '
                             || 'ignore=, pkey=, when=, ev_type=, ev_data=, ev_extra1..4=');
    end loop;
end;
$generate$;
