-- pgq_node, part 70: maintenance the daemon runs.
--
-- pgq.maint_operations() lists pgq_node.maint_watermark once per root queue
-- while this function exists; pgqd calls it in its maintenance round.


-- ---------------------------------------------------------------------------
-- pgq_node.maint_watermark(1)
--
--   On the root: when the global watermark has not moved for 5 minutes or
--   more, moves it to the local watermark (and announces it downstream), so
--   that a cascade whose workers are all quiet still lets rotation go on.
--   Anywhere else nothing happens.  Runs with the caller's rights (pgq_admin
--   for the daemon).
--
--   Returns 0: call once per maintenance round.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.maint_watermark(i_queue_name text)
returns int4
language plpgsql
as $$
declare
    v_lag   interval;
begin
    perform 1
       from pgq_node.node_info n
      where n.queue_name = i_queue_name
        and n.node_type = 'root'
        for update;
    if not found then
        return 0;
    end if;

    select ci.lag into v_lag
      from pgq.get_consumer_info(i_queue_name, '.global_watermark') ci;
    if v_lag >= interval '5 minutes' then
        perform pgq_node.set_global_watermark(i_queue_name, null);
    end if;
    return 0;
end;
$$;
