-- triggers component, part 90: privileges.
--
-- As in pgq 3.5: producers (pgq_writer) may use the trigger functions, public
-- may not.  PostgreSQL checks EXECUTE on a trigger function when the trigger
-- is created; the DML that fires it needs EXECUTE on pgq.insert_event, which
-- the trigger calls with the rights of whoever changes the table.

revoke all on function pgq.logutriga(), pgq.sqltriga(), pgq.jsontriga()
    from public, pgq_reader, pgq_writer, pgq_admin cascade;
grant execute on function pgq.logutriga(), pgq.sqltriga(), pgq.jsontriga() to pgq_writer;
