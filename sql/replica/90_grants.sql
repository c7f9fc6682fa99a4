-- replica component, part 90: privileges.  Replication is administration:
-- pgq_admin may add and remove tables; the registry is readable by pgq_reader
-- (status tools), writable by pgq_admin (the applier runs as an admin).

revoke all on function pgq_replica.add_table(text, text, boolean, text),
                       pgq_replica.remove_table(text, text)
    from public;
grant usage on schema pgq_replica to pgq_reader, pgq_admin;
grant execute on function pgq_replica.add_table(text, text, boolean, text),
                          pgq_replica.remove_table(text, text)
    to pgq_admin;
grant select on pgq_replica.table_info, pgq_replica.queue_info to pgq_reader;
grant select, insert, update, delete on pgq_replica.table_info, pgq_replica.queue_info
    to pgq_admin;
