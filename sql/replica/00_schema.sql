-- replica component, part 00: the schema of table replication on top of a
-- (cascaded) queue.  Requires the pgq component (and the triggers component on
-- the root, whose capture triggers feed the queue).
--
-- One row per replicated table and queue in every node: on the root it says
-- which capture trigger feeds the queue; on a subscriber it says how far the
-- table's initial copy has come, and the applier (pgqd replica worker) reads it
-- for every batch.

create schema if not exists pgq_replica;
