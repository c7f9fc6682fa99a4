-- pgq_ext, part 10: the tracking tables.
--
-- Every table is keyed by the consumer's name plus a subconsumer id ('' for a
-- plain consumer), as in pgq_ext 3.1 and later.  An older layout without the
-- subconsumer_id columns is left as it is here and brought up to date by
-- pgq_ext.upgrade_schema() (file 15), which the installer runs next.

-- completed_tick: the last tick whose batch a consumer has applied.
create table if not exists pgq_ext.completed_tick (
    consumer_id     text    not null,
    subconsumer_id  text    not null default '',
    last_tick_id    bigint  not null,
    constraint completed_tick_pkey primary key (consumer_id, subconsumer_id)
);

-- completed_batch: the last batch a consumer has applied.
create table if not exists pgq_ext.completed_batch (
    consumer_id     text    not null,
    subconsumer_id  text    not null default '',
    last_batch_id   bigint  not null,
    constraint completed_batch_pkey primary key (consumer_id, subconsumer_id)
);

-- completed_event: events applied one by one inside the current batch.
create table if not exists pgq_ext.completed_event (
    consumer_id     text    not null,
    subconsumer_id  text    not null default '',
    batch_id        bigint  not null,
    event_id        bigint  not null,
    constraint completed_event_pkey
        primary key (consumer_id, subconsumer_id, batch_id, event_id)
);

-- partial_batch: which batch the completed_event rows of a consumer belong to.
create table if not exists pgq_ext.partial_batch (
    consumer_id     text    not null,
    subconsumer_id  text    not null default '',
    cur_batch_id    bigint  not null,
    constraint partial_batch_pkey primary key (consumer_id, subconsumer_id)
);
