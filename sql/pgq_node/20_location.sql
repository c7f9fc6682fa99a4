-- pgq_node, part 20: the map of a cascade's members.
--
-- Each node keeps the locations of all members of a queue's cascade.  The
-- root also announces changes as events, so that workers below can copy
-- them into their own maps.
--
-- Every SECURITY DEFINER function here pins search_path, so that nothing the
-- caller put on the path can stand in for pg_catalog or pgq objects.


-- ---------------------------------------------------------------------------
-- pgq_node.register_location(4)
--
--   Adds a member, or updates the known one: a NULL location keeps the old
--   connect string (and adds nothing for an unknown member); dead is always
--   set.  On the root, the change is also sent down the cascade as a
--   pgq.location-info event.
--
--   Returns 200 "Location registered".
-- ---------------------------------------------------------------------------
create or replace function pgq_node.register_location(
    in i_queue_name text,
    in i_node_name text,
    in i_node_location text,
    in i_dead boolean,
    out ret_code int4,
    out ret_note text)
returns record
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    v_type  text;
begin
    -- Locking the node row serializes map changes against node changes.
    select n.node_type into v_type
      from pgq_node.node_info n
     where n.queue_name = i_queue_name
       for update;

    update pgq_node.node_location
       set node_location = coalesce(i_node_location, node_location),
           dead = i_dead
     where queue_name = i_queue_name
       and node_name = i_node_name;
    if not found and i_node_location is not null then
        insert into pgq_node.node_location (queue_name, node_name, node_location, dead)
        values (i_queue_name, i_node_name, i_node_location, i_dead);
    end if;

    if v_type = 'root' then
        perform pgq.insert_event(i_queue_name, 'pgq.location-info', i_node_name,
                                 i_queue_name, i_node_location, i_dead::text, null);
    end if;

    ret_code := 200;
    ret_note := 'Location registered';
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.unregister_location(2)
--
--   Forgets a member.  The local node's own location and that of its
--   worker's provider are refused.  A subscription the member may still
--   have here is dropped first.  On the root, the removal is sent down the
--   cascade as a pgq.unregister-location event.
--
--   Returns 200 "Ok"; 301 when the member is not known; 403 when it is this
--   node or its provider.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.unregister_location(
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
    v_type      text;
    v_provider  text;
begin
    select n.node_name, n.node_type, ls.provider_node
      into v_self, v_type, v_provider
      from pgq_node.node_info n
      left join pgq_node.local_state ls
             on ls.queue_name = n.queue_name
            and ls.consumer_name = n.worker_name
     where n.queue_name = i_queue_name;

    if v_self = i_node_name then
        ret_code := 403;
        ret_note := 'Cannot drop node''s own location';
        return;
    elsif v_provider = i_node_name then
        ret_code := 403;
        ret_note := 'Cannot drop location of node''s parent';
        return;
    end if;

    -- a stale subscription would keep the member's pgq consumers alive
    perform pgq_node.unregister_subscriber(i_queue_name, i_node_name);

    delete from pgq_node.node_location
     where queue_name = i_queue_name
       and node_name = i_node_name;
    if found then
        ret_code := 200;
        ret_note := 'Ok';
    else
        ret_code := 301;
        ret_note := 'Location not found: ' || i_queue_name || '/' || i_node_name;
    end if;

    if v_type = 'root' then
        perform pgq.insert_event(i_queue_name, 'pgq.unregister-location', i_node_name,
                                 i_queue_name, null, null, null);
    end if;
end;
$$;


-- ---------------------------------------------------------------------------
-- pgq_node.get_queue_locations(1)
--
--   The members known for a queue, by node name: name, connect string and
--   dead flag.
-- ---------------------------------------------------------------------------
create or replace function pgq_node.get_queue_locations(
    in i_queue_name text,
    out node_name text,
    out node_location text,
    out dead boolean)
returns setof record
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
    select l.node_name, l.node_location, l.dead
      from pgq_node.node_location l
     where l.queue_name = i_queue_name
     order by l.node_name;
$$;
