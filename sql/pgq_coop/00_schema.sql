-- pgq_coop, part 00: the schema.
--
-- Cooperative consumers: several processes (subconsumers) share one pgq
-- consumer's position on a queue, each working on its own batch.
--
-- Model: the main consumer's subscription row is the group's cursor.  A
-- subconsumer is a consumer named '<main>.<sub>' whose subscription row
-- carries the main row's sub_id (so retry events are shared by the group)
-- and has no ticks while it holds no batch.  pgq_coop.next_batch opens the
-- group's next batch on the main row, closes it there at once, and hands it
-- to the subconsumer's row, where the ordinary pgq batch readers find it.
--
-- The roles come with the pgq component, which is installed first.

create schema if not exists pgq_coop;
