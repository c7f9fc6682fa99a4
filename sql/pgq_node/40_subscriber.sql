-- pgq_node, part 40: the provider side — nodes that read from this one.
--
-- A subscribed node is represented here by two pgq consumers of the local
-- queue: its worker (which reads the batches) and ".<node>.watermark",
-- which the node moves forward to the lowest tick it and the nodes below it
-- still need.  Both hold back rotation of the queue's event tables.


-- ---------------------------------------------------------------------------
-- pgq_node.register_subscriber(4)
--
--   Subscribes a remote node to the local (root or branch) node.
--
--   i_remote_node_name    the subscribing node (its location must be known)
--   i_remote_worker_name  its worker, registered here as a pgq consumer
--   i_custom_tick_id      where the worker starts; NULL = at the global
--                         watermark (a node that changes provider passes
--                         its own position)
--
--   Returns 200 "Subscriber registered: <node>" and the global watermark;
--   404 "Unknown queue: <queue>"; 401 when the local node is a leaf.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.register_subscriber(
    in i_queue_name text,
    in i_remote_node_name text,
    in i_remote_worker_name text,
    in i_custom_tick_id int8,
    out ret_code int4,
    out ret_note text,
    out global_watermark bigint)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_type      text;
    v_wm_name   text;
begin
    select n.node_type into v_type
      from pgq_node.node_info n
     where n.queue_name = i_queue_name
       for update;
    if not found then
        ret_code := 404;
        ret_note := 'Unknown queue: ' || i_queue_name;
        return;
    end if;

    select ci.last_tick into global_watermark
      from pgq.get_consumer_info(i_queue_name, '.global_watermark') ci;

    if v_type not in ('root', 'branch') then
        ret_code := 401;
        ret_note := 'Cannot subscribe to ' || v_type || ' node';
        return;
    end if;

    v_wm_name := '.' || i_remote_node_name || '.watermark';
    perform pgq.register_consumer_at(i_queue_name, v_wm_name, global_watermark);
    perform pgq.register_consumer_at(i_queue_name, i_remote_worker_name,
                                     coalesce(i_custom_tick_id, global_watermark));

    insert into pgq_node.subscriber_info (queue_name, subscriber_node, worker_name, watermark_name)
    values (i_queue_name, i_remote_node_name, i_remote_worker_name, v_wm_name);

    ret_code := 200;
    ret_note := 'Subscriber registered: ' || i_remote_node_name;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.unregister_subscriber(2)
--
--   Ends a remote node's subscription: its two pgq consumers go with it.
--
--   Returns 200 "Subscriber unregistered: <node>"; 304 "Subscriber not
--   found".
-- ---------------------------------------------------------------------------
create or replace function pgq_node.unregister_subscriber(
    in i_queue_name text,
    in i_remote_node_name text,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_sub   record;
begin
    delete from pgq_node.subscriber_info s
     where s.queue_name = i_queue_name
       and s.subscriber_node = i_remote_node_name
    returning s.worker_name into v_sub;
    if not found then
        ret_code := 304;
        ret_note := 'Subscriber not found';
        return;
    end if;

    perform pgq.unregister_consumer(i_queue_name, '.' || i_remote_node_name || '.watermark');
    perform pgq.unregister_consumer(i_queue_name, v_sub.worker_name);

    ret_code := 200;
    ret_note := 'Subscriber unregistered: ' || i_remote_node_name;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.set_subscriber_watermark(3)
--
--   A subscribed node reports the lowest tick it (and the nodes below it)
--   still need; its watermark consumer here moves there.  Workers call it on
--   their provider from time to time.
--
--   Returns 200 "<watermark consumer> set to <tick>"; 100 "watermark already
--   set"; 405 when it would move backwards; 404 when the node is not
--   subscribed.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.set_subscriber_watermark(
    in i_queue_name text,
    in i_node_name text,
    in i_watermark bigint,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_wm_name   text := '.' || i_node_name || '.watermark';
    v_current   bigint;
begin
    select ci.last_tick into v_current
      from pgq.get_consumer_info(i_queue_name, v_wm_name) ci;
    if not found then
        -- the text of pgq_node 3.5, which never names the queue here
        ret_code := 404;
        ret_note := 'node ' || i_node_name || ' not subscribed to queue ';
        return;
    end if;

    if i_watermark < v_current then
        ret_code := 405;
        ret_note := 'watermark must not be moved backwards';
        return;
    elsif i_watermark = v_current then
        ret_code := 100;
        ret_note := 'watermark already set';
        return;
    end if;

    perform pgq.register_consumer_at(i_queue_name, v_wm_name, i_watermark);

    ret_code := 200;
    ret_note := v_wm_name || ' set to ' || i_watermark::text;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.get_subscriber_info(1)
--
--   Nodes subscribed to the local node, by name: the node, its worker and
--   its watermark (NULL when the watermark consumer is gone).  The provider
--   recorded on each subscriber (get_node_info there) is authoritative; this
--   list can lag behind an administrative change in progress.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.get_subscriber_info(
    in i_queue_name text,
    out node_name text,
    out worker_name text,
    out node_watermark int8)
returns setof record
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    select s.subscriber_node, s.worker_name,
           (select ci.last_tick
              from pgq.get_consumer_info(i_queue_name, s.watermark_name) ci)
      from pgq_node.subscriber_info s
     where s.queue_name = i_queue_name
     order by s.subscriber_node;
$$;
