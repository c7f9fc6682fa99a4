-- pgq_node, part 10: tables.
--
-- Created only when missing, so that the component can be installed again
-- over itself; 15_upgrade.sql brings an older layout up to date.


-- Every member of a cascade, by queue: how to reach it, and whether it is
-- considered gone.
create table if not exists pgq_node.node_location (
    queue_name      text        not null,
    node_name       text        not null,
    node_location   text        not null,
    dead            boolean     not null default false,
    primary key (queue_name, node_name)
);

-- What this database is in the cascade of each queue.  worker_name is the
-- consumer that keeps the node up to date; combined_queue is set on a leaf
-- that merges its events into another (combined) queue.
create table if not exists pgq_node.node_info (
    queue_name      text        not null primary key,
    node_type       text        not null,
    node_name       text        not null,
    worker_name     text,
    combined_queue  text,
    node_attrs      text,
    foreign key (queue_name, node_name) references pgq_node.node_location,
    constraint node_info_node_type_check
        check (node_type in ('root', 'branch', 'leaf')),
    constraint node_info_check
        check (worker_name is not null
               and (node_type = 'leaf' or combined_queue is null))
);

-- Cascaded consumers writing into this node (the worker among them): which
-- node each reads from, the last tick it committed here, and the flags an
-- administrator uses to steer it.
create table if not exists pgq_node.local_state (
    queue_name      text        not null,
    consumer_name   text        not null,
    provider_node   text        not null,
    last_tick_id    bigint      not null,
    cur_error       text,
    paused          boolean     not null default false,
    uptodate        boolean     not null default false,
    primary key (queue_name, consumer_name),
    foreign key (queue_name) references pgq_node.node_info,
    foreign key (queue_name, provider_node) references pgq_node.node_location
);

-- Nodes that read from this one.  worker_name is the remote node's worker,
-- registered here as a pgq consumer; watermark_name is the pgq consumer that
-- holds the remote node's lowest tick (".<node>.watermark"), which keeps
-- rotation from dropping events the remote side still needs.
create table if not exists pgq_node.subscriber_info (
    queue_name      text        not null,
    subscriber_node text        not null,
    worker_name     text        not null,
    watermark_name  text        not null,
    primary key (queue_name, subscriber_node),
    foreign key (queue_name) references pgq_node.node_info,
    foreign key (queue_name, subscriber_node) references pgq_node.node_location,
    foreign key (worker_name) references pgq.consumer (co_name),
    foreign key (watermark_name) references pgq.consumer (co_name)
);
