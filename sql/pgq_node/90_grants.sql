-- pgq_node, part 90: privileges.
--
-- The role model of pgq_node 3.5:
--   public      may ask whether a node is root or leaf, and the version;
--   pgq_reader  may call what a remote subscriber calls on its provider
--               (node, consumer and subscriber info, (un)subscribing,
--               reporting a watermark);
--   pgq_writer  that, plus the cascaded-consumer calls on the target node;
--   pgq_admin   everything: node creation and type changes, locations, the
--               worker's calls and maintenance.
-- Tables are readable by pgq_reader and pgq_writer and writable by
-- pgq_admin.  Every function first loses all grants, then gets EXECUTE for
-- exactly the groups listed.  The file can run again at any time; it
-- restores the same state.

grant usage on schema pgq_node to public;

do $$
declare
    v_fn        record;
    v_proc      regprocedure;
    v_grantee   text;
    v_missing   text[] := '{}';
begin
    for v_fn in
        select f.sig, f.grantees
          from (values
            ('pgq_node.is_root_node(text)',             'public'),
            ('pgq_node.is_leaf_node(text)',             'public'),
            ('pgq_node.version()',                      'public'),

            ('pgq_node.get_consumer_info(text)',        'pgq_reader,pgq_writer,pgq_admin'),
            ('pgq_node.get_consumer_state(text,text)',  'pgq_reader,pgq_writer,pgq_admin'),
            ('pgq_node.get_queue_locations(text)',      'pgq_reader,pgq_writer,pgq_admin'),
            ('pgq_node.get_node_info(text)',            'pgq_reader,pgq_writer,pgq_admin'),
            ('pgq_node.get_subscriber_info(text)',      'pgq_reader,pgq_writer,pgq_admin'),
            ('pgq_node.register_subscriber(text,text,text,int8)',   'pgq_reader,pgq_writer,pgq_admin'),
            ('pgq_node.unregister_subscriber(text,text)',           'pgq_reader,pgq_writer,pgq_admin'),
            ('pgq_node.set_subscriber_watermark(text,text,bigint)', 'pgq_reader,pgq_writer,pgq_admin'),

            ('pgq_node.register_consumer(text,text,text,int8)',     'pgq_writer,pgq_admin'),
            ('pgq_node.unregister_consumer(text,text)',             'pgq_writer,pgq_admin'),
            ('pgq_node.change_consumer_provider(text,text,text)',   'pgq_writer,pgq_admin'),
            ('pgq_node.set_consumer_uptodate(text,text,boolean)',   'pgq_writer,pgq_admin'),
            ('pgq_node.set_consumer_paused(text,text,boolean)',     'pgq_writer,pgq_admin'),
            ('pgq_node.set_consumer_completed(text,text,int8)',     'pgq_writer,pgq_admin'),
            ('pgq_node.set_consumer_error(text,text,text)',         'pgq_writer,pgq_admin'),

            ('pgq_node.create_node(text,text,text,text,text,bigint,text)', 'pgq_admin'),
            ('pgq_node.drop_node(text,text)',                       'pgq_admin'),
            ('pgq_node.demote_root(text,int4,text)',                'pgq_admin'),
            ('pgq_node.promote_branch(text)',                       'pgq_admin'),
            ('pgq_node.set_node_attrs(text,text)',                  'pgq_admin'),
            ('pgq_node.get_worker_state(text)',                     'pgq_admin'),
            ('pgq_node.set_global_watermark(text,bigint)',          'pgq_admin'),
            ('pgq_node.set_partition_watermark(text,text,bigint)',  'pgq_admin'),
            ('pgq_node.register_location(text,text,text,boolean)',  'pgq_admin'),
            ('pgq_node.unregister_location(text,text)',             'pgq_admin'),
            ('pgq_node.upgrade_schema()',                           'pgq_admin'),
            ('pgq_node.maint_watermark(text)',                      'pgq_admin')
          ) as f(sig, grantees)
    loop
        v_proc := pg_catalog.to_regprocedure(v_fn.sig);
        if v_proc is null then
            v_missing := v_missing || v_fn.sig;
            continue;
        end if;
        execute 'revoke all on function ' || v_proc::text
            || ' from public, pgq_reader, pgq_writer, pgq_admin cascade';
        foreach v_grantee in array pg_catalog.string_to_array(v_fn.grantees, ',') loop
            execute 'grant execute on function ' || v_proc::text || ' to ' || v_grantee;
        end loop;
    end loop;

    if pg_catalog.cardinality(v_missing) > 0 then
        raise exception 'pgq_node grants: functions not installed: %',
            pg_catalog.array_to_string(v_missing, ', ');
    end if;
end;
$$;

revoke all on table pgq_node.node_location, pgq_node.node_info,
    pgq_node.local_state, pgq_node.subscriber_info
    from public, pgq_reader, pgq_writer, pgq_admin cascade;
grant select on table pgq_node.node_location, pgq_node.node_info,
    pgq_node.local_state, pgq_node.subscriber_info
    to pgq_reader, pgq_writer;
grant select, insert, update, delete on table pgq_node.node_location, pgq_node.node_info,
    pgq_node.local_state, pgq_node.subscriber_info
    to pgq_admin;
