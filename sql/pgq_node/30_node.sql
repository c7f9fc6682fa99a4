-- pgq_node, part 30: the local node — creating, inspecting, changing type
-- and dropping it.
--
-- The watermarks reported here: the global watermark is the position of the
-- queue's ".global_watermark" consumer (the lowest tick every node of the
-- cascade has processed, as the root last announced it); the local watermark
-- is the lowest position of every other consumer of the local queue (this
-- node's own readers and the nodes below it), or the newest tick when there
-- are none.  A leaf has no queue; its local watermark is its worker's tick.


-- ---------------------------------------------------------------------------
-- pgq_node.create_node(7)
--
--   Makes this database a node of a queue's cascade.  The node's own
--   location (and, below the root, its provider's) must be registered first.
--
--   i_queue_name        queue
--   i_node_type         'root', 'branch' or 'leaf'
--   i_node_name         this node's name
--   i_worker_name       the consumer that maintains this node
--   i_provider_name     node to read from (NULL on the root)
--   i_global_watermark  tick to start from (NULL on the root)
--   i_combined_queue    a leaf's merge target queue, else NULL
--
--   root:   creates the queue and its ".global_watermark" consumer;
--   branch: creates the queue for copies only (no local inserts, no ticker:
--           ticks come from the provider), with the provider's watermark
--           tick, and ".global_watermark" on it;
--   leaf:   no queue; a combined queue must exist locally.
--   The worker is then registered as a cascaded consumer of the provider
--   (the root's worker reads from the root itself).
--
--   Returns 200 'Node "<node>" initialized for queue "<queue>" with type
--   "<type>"'; 401 when the node exists, arguments do not fit the type, or
--   the type is unknown.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.create_node(
    in i_queue_name text,
    in i_node_type text,
    in i_node_name text,
    in i_worker_name text,
    in i_provider_name text,
    in i_global_watermark bigint,
    in i_combined_queue text,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_wm_consumer   constant text := '.global_watermark';
    v_start         bigint;
    v_provider      text;
begin
    if exists (select 1 from pgq_node.node_info n where n.queue_name = i_queue_name) then
        ret_code := 401;
        ret_note := 'Node already initialized';
        return;
    end if;

    if i_node_type = 'root' then
        if i_provider_name is not null or i_global_watermark is not null
           or i_combined_queue is not null
        then
            ret_code := 401;
            ret_note := 'unexpected args for ' || i_node_type;
            return;
        end if;
        perform pgq.create_queue(i_queue_name);
        perform pgq.register_consumer(i_queue_name, v_wm_consumer);
        select ci.last_tick into v_start
          from pgq.get_consumer_info(i_queue_name, v_wm_consumer) ci;
        v_provider := i_node_name;

    elsif i_node_type = 'branch' then
        if i_provider_name is null then
            ret_code := 401;
            ret_note := 'provider not set for ' || i_node_type;
            return;
        elsif i_global_watermark is null then
            ret_code := 401;
            ret_note := 'global watermark not set for ' || i_node_type;
            return;
        end if;
        perform pgq.create_queue(i_queue_name);
        update pgq.queue
           set queue_external_ticker = true,
               queue_disable_insert = true
         where queue_name = i_queue_name;
        -- The copy starts at the provider's watermark tick, so that the
        -- worker's first batch on the provider has a matching tick here.
        if i_global_watermark > 1 then
            perform pgq.ticker(i_queue_name, i_global_watermark, pg_catalog.now(), 1);
        end if;
        perform pgq.register_consumer_at(i_queue_name, v_wm_consumer, i_global_watermark);
        v_start := i_global_watermark;
        v_provider := i_provider_name;

    elsif i_node_type = 'leaf' then
        if i_combined_queue is not null
           and not exists (select 1 from pgq.get_queue_info(i_combined_queue))
        then
            ret_code := 401;
            ret_note := 'non-existing queue on leaf side: ' || i_combined_queue;
            return;
        end if;
        v_start := i_global_watermark;
        v_provider := i_provider_name;

    else
        ret_code := 401;
        ret_note := 'bad node type: ' || coalesce(i_node_type, '');
        return;
    end if;

    insert into pgq_node.node_info (queue_name, node_type, node_name, worker_name, combined_queue)
    values (i_queue_name, i_node_type, i_node_name, i_worker_name, i_combined_queue);

    select r.ret_code, r.ret_note into ret_code, ret_note
      from pgq_node.register_consumer(i_queue_name, i_worker_name, v_provider, v_start) r;
    if ret_code <> 200 then
        return;
    end if;

    ret_code := 200;
    ret_note := 'Node "' || i_node_name || '" initialized for queue "' || i_queue_name
                || '" with type "' || i_node_type || '"';
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.drop_node(2)
--
--   Removes a node from this database's view of the cascade; run it on every
--   member to remove the node everywhere.
--
--   For the local node: its subscribers, consumers, node row, queue (with
--   its events) and every other member's location go.  For another member:
--   its subscription here goes (refused when it is this node's provider).
--   Either way its location is then unregistered (an event on the root).
--   With no local node at all, the local clean-up runs anyway, to clear
--   what a half-finished setup left behind.
--
--   Returns 200 "Node dropped: <node>"; 405 when it is the provider.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.drop_node(
    in i_queue_name text,
    in i_node_name text,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_self      text;
    v_provider  text;
    v_found     boolean;
begin
    select n.node_name,
           (select ls.provider_node
              from pgq_node.local_state ls
             where ls.queue_name = n.queue_name
               and ls.consumer_name = n.worker_name)
      into v_self, v_provider
      from pgq_node.node_info n
     where n.queue_name = i_queue_name;
    v_found := found;

    if not v_found or v_self = i_node_name then
        delete from pgq_node.subscriber_info where queue_name = i_queue_name;
        delete from pgq_node.local_state where queue_name = i_queue_name;
        delete from pgq_node.node_info
         where queue_name = i_queue_name
           and node_name = i_node_name;
        if exists (select 1 from pgq.queue q where q.queue_name = i_queue_name) then
            perform pgq.drop_queue(i_queue_name, true);
        end if;
        delete from pgq_node.node_location
         where queue_name = i_queue_name
           and node_name <> i_node_name;
    elsif v_provider = i_node_name then
        ret_code := 405;
        ret_note := 'Cannot drop provider node: ' || i_node_name;
        return;
    else
        perform pgq_node.unregister_subscriber(i_queue_name, i_node_name);
    end if;

    -- its result does not matter: the location may be gone already
    perform pgq_node.unregister_location(i_queue_name, i_node_name);

    ret_code := 200;
    ret_note := 'Node dropped: ' || i_node_name;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.get_node_info(1)
--
--   The local node of a queue's cascade, as admin tools show it.
--
--   ret_code/ret_note   100 "Ok", or 404 "Unknown queue: <queue>"
--   node_type, node_name
--   global_watermark    root/branch: the queue's global watermark
--   local_watermark     see the top of this file
--   provider_node       where the worker reads from, and its
--   provider_location   connect string
--   combined_queue      a leaf's merge target, when it is a node here too,
--   combined_type       and that node's type
--   worker_name, worker_paused, worker_uptodate
--   worker_last_tick    the worker's committed tick; on the root the newest
--                       tick of the queue
--   node_attrs          the worker's settings (urlencoded)
--   target_for          root/branch: queues of leaves merging into this one
-- ---------------------------------------------------------------------------
create or replace function pgq_node.get_node_info(
    in i_queue_name text,
    out ret_code int4,
    out ret_note text,
    out node_type text,
    out node_name text,
    out global_watermark bigint,
    out local_watermark bigint,
    out provider_node text,
    out provider_location text,
    out combined_queue text,
    out combined_type text,
    out worker_name text,
    out worker_paused bool,
    out worker_uptodate bool,
    out worker_last_tick bigint,
    out node_attrs text,
    out target_for text[])
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_top   bigint;
begin
    select n.node_type, n.node_name, n.worker_name, n.node_attrs,
           cn.queue_name, cn.node_type,
           ls.provider_node, loc.node_location,
           ls.paused, ls.uptodate, ls.last_tick_id
      into node_type, node_name, worker_name, node_attrs,
           combined_queue, combined_type,
           provider_node, provider_location,
           worker_paused, worker_uptodate, worker_last_tick
      from pgq_node.node_info n
      left join pgq_node.node_info cn
             on cn.queue_name = n.combined_queue
      left join pgq_node.local_state ls
             on ls.queue_name = n.queue_name
            and ls.consumer_name = n.worker_name
      left join pgq_node.node_location loc
             on loc.queue_name = ls.queue_name
            and loc.node_name = ls.provider_node
     where n.queue_name = i_queue_name;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown queue: ' || i_queue_name;
        return;
    end if;
    ret_code := 100;
    ret_note := 'Ok';

    if node_type in ('root', 'branch') then
        select min(ci.last_tick) filter (where ci.consumer_name <> '.global_watermark'),
               min(ci.last_tick) filter (where ci.consumer_name = '.global_watermark')
          into local_watermark, global_watermark
          from pgq.get_consumer_info(i_queue_name) ci;

        select max(t.tick_id) into v_top
          from pgq.tick t
          join pgq.queue q on q.queue_id = t.tick_queue
         where q.queue_name = i_queue_name;
        local_watermark := coalesce(local_watermark, v_top);

        select array_agg(m.queue_name order by m.queue_name) into target_for
          from pgq_node.node_info m
         where m.combined_queue = i_queue_name;

        if node_type = 'root' then
            worker_last_tick := v_top;
        end if;
    else
        local_watermark := worker_last_tick;
    end if;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.is_root_node(1), pgq_node.is_leaf_node(1)
--
--   Whether the local node of the queue is the root (a leaf).  Raise an
--   error when this database is no node of the queue.  They run with the
--   caller's rights, as their counterparts in pgq_node 3.5 do.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.is_root_node(i_queue_name text)
returns bool
language plpgsql
as $$
declare
    v_type  text;
begin
    select n.node_type into v_type
      from pgq_node.node_info n
     where n.queue_name = i_queue_name;
    if not found then
        raise exception 'queue does not exist: %', i_queue_name;
    end if;
    return v_type = 'root';
end;
$$;

create or replace function pgq_node.is_leaf_node(i_queue_name text)
returns bool
language plpgsql
as $$
declare
    v_type  text;
begin
    select n.node_type into v_type
      from pgq_node.node_info n
     where n.queue_name = i_queue_name;
    if not found then
        raise exception 'queue does not exist: %', i_queue_name;
    end if;
    return v_type = 'leaf';
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.set_node_attrs(2)
--
--   Replaces the node's attribute string (urlencoded key=value pairs that
--   the worker reads).
--
--   Returns 200 "Node attributes updated"; 404 "Node not found".
-- ---------------------------------------------------------------------------
create or replace function pgq_node.set_node_attrs(
    in i_queue_name text,
    in i_node_attrs text,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    update pgq_node.node_info
       set node_attrs = i_node_attrs
     where queue_name = i_queue_name;
    if found then
        ret_code := 200;
        ret_note := 'Node attributes updated';
    else
        ret_code := 404;
        ret_note := 'Node not found';
    end if;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.promote_branch(1)
--
--   Turns a branch into the root: its queue takes local inserts and is
--   ticked locally again, the tick sequence continues after the newest
--   copied tick, and the worker now reads from this node, from that tick.
--
--   Returns 200 "Branch node promoted to root"; 404 when this database is no
--   node of the queue; 301 "Node not branch".
-- ---------------------------------------------------------------------------
create or replace function pgq_node.promote_branch(
    in i_queue_name text,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_node      record;
    v_top       bigint;
begin
    select n.node_name, n.node_type, n.worker_name into v_node
      from pgq_node.node_info n
     where n.queue_name = i_queue_name
       for update;
    if not found then
        ret_code := 404;
        ret_note := 'Node not initialized for queue: ' || i_queue_name;
        return;
    elsif v_node.node_type <> 'branch' then
        ret_code := 301;
        ret_note := 'Node not branch';
        return;
    end if;

    update pgq.queue
       set queue_disable_insert = false,
           queue_external_ticker = false
     where queue_name = i_queue_name;

    select max(t.tick_id) into v_top
      from pgq.tick t
      join pgq.queue q on q.queue_id = t.tick_queue
     where q.queue_name = i_queue_name;

    perform pgq.seq_setval(q.queue_tick_seq, v_top)
       from pgq.queue q
      where q.queue_name = i_queue_name;

    update pgq_node.node_info
       set node_type = 'root'
     where queue_name = i_queue_name;

    update pgq_node.local_state
       set provider_node = v_node.node_name,
           last_tick_id = v_top,
           uptodate = false
     where queue_name = i_queue_name
       and consumer_name = v_node.worker_name;

    ret_code := 200;
    ret_note := 'Branch node promoted to root';
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.demote_root(3)
--
--   Turns the root into a branch of i_new_provider, in three calls, each in
--   its own transaction, in order:
--     step 1  stop local inserts and local ticking;
--     step 2  wait for writers still inside the event table (lock it), then
--             put a last tick after every event, returned as last_tick;
--     step 3  make the node a branch whose worker reads from the new
--             provider, from the newest tick (returned as last_tick).
--   Step 2 also switches the transaction to session_replication_role =
--   replica, so that nothing this transaction does later fires triggers.
--
--   Returns 200 "Step <n>: ..."; 404 when this database is no node of the
--   queue; 301 "Node not root".  Raises an error when steps 2/3 come before
--   step 1, or for a step number other than 1-3.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.demote_root(
    in i_queue_name text,
    in i_step int4,
    in i_new_provider text,
    out ret_code int4,
    out ret_note text,
    out last_tick int8)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_node      record;
    v_queue     record;
    v_event_seq bigint;
begin
    select n.node_type, n.worker_name into v_node
      from pgq_node.node_info n
     where n.queue_name = i_queue_name
       for update;
    if not found then
        ret_code := 404;
        ret_note := 'Node not initialized for queue: ' || i_queue_name;
        return;
    elsif v_node.node_type <> 'root' then
        ret_code := 301;
        ret_note := 'Node not root';
        return;
    end if;

    if i_step > 1 then
        select q.queue_data_pfx, q.queue_tick_seq, q.queue_event_seq into v_queue
          from pgq.queue q
         where q.queue_name = i_queue_name
           and q.queue_disable_insert
           and q.queue_external_ticker;
        if not found then
            raise exception 'steps in wrong order';
        end if;
    end if;

    if i_step = 1 then
        update pgq.queue
           set queue_disable_insert = true,
               queue_external_ticker = true
         where queue_name = i_queue_name;
        if not found then
            ret_code := 404;
            ret_note := 'Huh, no queue?: ' || i_queue_name;
            return;
        end if;
        ret_code := 200;
        ret_note := 'Step 1: Writing disabled for: ' || i_queue_name;

    elsif i_step = 2 then
        set local session_replication_role = 'replica';
        -- Writers that began before step 1 still hold the event table; the
        -- exclusive lock waits for them and lets readers through.
        execute 'lock table ' || pgq.quote_fqname(v_queue.queue_data_pfx) || ' in exclusive mode';
        last_tick := pg_catalog.nextval(v_queue.queue_tick_seq);
        v_event_seq := pg_catalog.nextval(v_queue.queue_event_seq);
        perform pgq.ticker(i_queue_name, last_tick, pg_catalog.now(), v_event_seq);
        ret_code := 200;
        ret_note := 'Step 2: Inserted last tick: ' || i_queue_name;

    elsif i_step = 3 then
        select max(t.tick_id) into last_tick
          from pgq.tick t
          join pgq.queue q on q.queue_id = t.tick_queue
         where q.queue_name = i_queue_name;
        update pgq_node.node_info
           set node_type = 'branch'
         where queue_name = i_queue_name;
        update pgq_node.local_state
           set provider_node = i_new_provider,
               last_tick_id = last_tick,
               uptodate = false
         where queue_name = i_queue_name
           and consumer_name = v_node.worker_name;
        ret_code := 200;
        ret_note := 'Step 3: Demoted root to branch: ' || i_queue_name;

    else
        raise exception 'incorrect step number';
    end if;
end;
$$;
