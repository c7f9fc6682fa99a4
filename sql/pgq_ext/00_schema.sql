-- pgq_ext, part 00: the schema.
--
-- pgq_ext lives in the database a consumer writes into (the target), not
-- necessarily the one holding the queue.  It remembers what a consumer has
-- already applied there, so that a batch or event replayed after a crash is
-- recognised and skipped: exactly-once on top of pgq's at-least-once.
--
-- The roles pgq_reader / pgq_writer / pgq_admin come with the pgq component,
-- which is installed first.

create schema if not exists pgq_ext;
