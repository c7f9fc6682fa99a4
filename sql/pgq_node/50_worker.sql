-- pgq_node, part 50: what the worker that maintains the local node uses.
--
-- Watermarks: see the top of 30_node.sql.


-- ---------------------------------------------------------------------------
-- pgq_node.get_worker_state(1)
--
--   Everything the node's worker needs at the start of a round.
--
--   ret_code/ret_note   100 "Ok"; 404 when this database is no node of the
--                       queue, the worker has no state here, its provider's
--                       location is unknown, or the combined queue is no
--                       node here
--   node_type, node_name
--   completed_tick      the worker's last committed tick
--   provider_node, provider_location
--   paused, uptodate, cur_error   the worker's flags
--   worker_name
--   global_watermark, local_watermark   root/branch (a leaf: its tick)
--   local_queue_top     root/branch: the newest tick of the local queue
--   combined_queue, combined_type       a merging leaf's target and its type
-- ---------------------------------------------------------------------------
create or replace function pgq_node.get_worker_state(
    in i_queue_name text,
    out ret_code int4,
    out ret_note text,
    out node_type text,
    out node_name text,
    out completed_tick bigint,
    out provider_node text,
    out provider_location text,
    out paused boolean,
    out uptodate boolean,
    out cur_error text,
    out worker_name text,
    out global_watermark bigint,
    out local_watermark bigint,
    out local_queue_top bigint,
    out combined_queue text,
    out combined_type text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    select n.node_type, n.node_name, n.worker_name, n.combined_queue
      into node_type, node_name, worker_name, combined_queue
      from pgq_node.node_info n
     where n.queue_name = i_queue_name;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown queue: ' || i_queue_name;
        return;
    end if;

    select ls.last_tick_id, ls.provider_node, ls.paused, ls.uptodate, ls.cur_error
      into completed_tick, provider_node, paused, uptodate, cur_error
      from pgq_node.local_state ls
     where ls.queue_name = i_queue_name
       and ls.consumer_name = worker_name;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown consumer: ' || i_queue_name || '/' || worker_name;
        return;
    end if;

    select loc.node_location into provider_location
      from pgq_node.node_location loc
     where loc.queue_name = i_queue_name
       and loc.node_name = provider_node;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown provider node: ' || i_queue_name || '/' || provider_node;
        return;
    end if;
    ret_code := 100;
    ret_note := 'Ok';

    if combined_queue is not null then
        select cn.node_type into combined_type
          from pgq_node.node_info cn
         where cn.queue_name = get_worker_state.combined_queue;
        if not found then
            -- the text (and its spelling) of pgq_node 3.5
            ret_code := 404;
            ret_note := 'Combinde queue node not found: ' || combined_queue;
            return;
        end if;
    end if;

    if node_type in ('root', 'branch') then
        select min(ci.last_tick) filter (where ci.consumer_name <> '.global_watermark'),
               min(ci.last_tick) filter (where ci.consumer_name = '.global_watermark')
          into local_watermark, global_watermark
          from pgq.get_consumer_info(i_queue_name) ci;

        select max(t.tick_id) into local_queue_top
          from pgq.tick t
          join pgq.queue q on q.queue_id = t.tick_queue
         where q.queue_name = i_queue_name;
        local_watermark := coalesce(local_watermark, local_queue_top);
    else
        local_watermark := completed_tick;
    end if;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.set_global_watermark(2)
--
--   Moves the queue's global watermark (the ".global_watermark" consumer).
--
--   root:   i_watermark NULL means "the local watermark" (the lowest tick
--           any reader of the root still needs).  The new value is also
--           sent down the cascade as a pgq.global-watermark event, and the
--           root's worker is moved there so that it never looks stale.
--   branch: moves to the announced tick if the local queue has that tick
--           (an old batch can announce a tick that rotation removed: 200
--           "Skipping ...").  NULL is a usage error (500).
--   leaf:   nothing to move (100).
--
--   Returns 200 "Global watermark set to <tick>"; 404 when this database is
--   no node of the queue.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.set_global_watermark(
    in i_queue_name text,
    in i_watermark bigint,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_wm_consumer   constant text := '.global_watermark';
    v_node          record;
    v_wm            bigint := i_watermark;
begin
    select n.node_type, n.worker_name into v_node
      from pgq_node.node_info n
     where n.queue_name = i_queue_name
       for update;
    if not found then
        -- the text of pgq_node 3.5, without a blank after "Queue"
        ret_code := 404;
        ret_note := 'Queue' || i_queue_name || ' not found';
        return;
    end if;

    if v_node.node_type = 'root' then
        if v_wm is null then
            select ni.ret_code, ni.ret_note, ni.local_watermark
              into ret_code, ret_note, v_wm
              from pgq_node.get_node_info(i_queue_name) ni;
            if ret_code >= 300 then
                return;
            elsif v_wm is null then
                raise exception 'local_watermark=NULL from get_node_info()?';
            end if;
        end if;
        perform pgq.register_consumer_at(i_queue_name, v_wm_consumer, v_wm);
        perform pgq.insert_event(i_queue_name, 'pgq.global-watermark', v_wm::text,
                                 i_queue_name, null, null, null);
        update pgq_node.local_state
           set last_tick_id = v_wm
         where queue_name = i_queue_name
           and consumer_name = v_node.worker_name;

    elsif v_node.node_type = 'branch' then
        if v_wm is null then
            ret_code := 500;
            ret_note := 'bad usage: wm=null on branch node';
            return;
        end if;
        if not exists (select 1
                         from pgq.tick t
                         join pgq.queue q on q.queue_id = t.tick_queue
                        where q.queue_name = i_queue_name
                          and t.tick_id = v_wm)
        then
            ret_code := 200;
            ret_note := 'Skipping global watermark update to ' || v_wm::text;
            return;
        end if;
        perform pgq.register_consumer_at(i_queue_name, v_wm_consumer, v_wm);

    else
        ret_code := 100;
        ret_note := 'Ignoring global watermark in leaf';
        return;
    end if;

    ret_code := 200;
    ret_note := 'Global watermark set to ' || v_wm::text;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.set_partition_watermark(3)
--
--   On a node that is both a merging leaf of a partition queue and a branch
--   of the combined queue: moves the leaf worker's position to the
--   partition tick a combined-queue batch carried, so that the leaf is in
--   place should the combined branch become root.
--
--   Returns 200 "Ok"; 201 "Part-queue does not exist" (no such pairing
--   here); 401 "Worker registration not found".
-- ---------------------------------------------------------------------------
create or replace function pgq_node.set_partition_watermark(
    in i_combined_queue_name text,
    in i_part_queue_name text,
    in i_watermark bigint,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_worker    text;
begin
    select p.worker_name into v_worker
      from pgq_node.node_info p
      join pgq_node.node_info c on c.queue_name = p.combined_queue
     where p.queue_name = i_part_queue_name
       and p.node_type = 'leaf'
       and c.queue_name = i_combined_queue_name
       and c.node_type = 'branch';
    if not found then
        ret_code := 201;
        ret_note := 'Part-queue does not exist';
        return;
    end if;

    update pgq_node.local_state
       set last_tick_id = i_watermark
     where queue_name = i_part_queue_name
       and consumer_name = v_worker;
    if not found then
        ret_code := 401;
        ret_note := 'Worker registration not found';
        return;
    end if;

    ret_code := 200;
    ret_note := 'Ok';
end;
$$;
