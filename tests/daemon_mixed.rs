//! One daemon, one cluster, three kinds of pgq database side by side: our plain-SQL schema,
//! the real pgq 3.5 extension, and the extension with pgq_node holding a root node. Each
//! queue is ticked so a consumer gets its event, and pgq_node's maintenance hook
//! (`pgq_node.maint_watermark`, listed by `pgq.maint_operations()`) is really called.

mod common;
mod daemon_support;

use std::time::Duration;

use common::{ClusterOptions, TestCluster, wait_for};
use daemon_support::{Daemon, real_pgq_or_skip, test_config};

/// Takes `consumer`'s next batch in `db` and returns its event data, finishing the batch.
fn batch_data(c: &TestCluster, db: &str, queue: &str) -> Option<Vec<String>> {
    let id = c.psql(db, &format!("select pgq.next_batch('{queue}', 'c')"));
    if id.is_empty() {
        return None;
    }
    let data = c.psql(
        db,
        &format!("select ev_data from pgq.get_batch_events({id}) order by ev_id"),
    );
    c.psql(db, &format!("select pgq.finish_batch({id})"));
    Some(data.lines().map(str::to_string).collect())
}

#[tokio::test]
async fn ticks_ours_extension_and_pgq_node_in_one_cluster() {
    let c = TestCluster::start_with(ClusterOptions {
        conf: vec!["track_functions = 'all'".into()],
        ..Default::default()
    });
    if !real_pgq_or_skip(&c) {
        return;
    }
    c.create_pgq_db("ours");
    c.create_ext_db("ext");
    c.create_ext_db("node");
    c.psql("node", "create extension pgq_node");
    c.psql(
        "node",
        "select * from pgq_node.register_location('nq', 'n1', 'dbname=node', false)",
    );
    let created = c.psql(
        "node",
        "select ret_code from pgq_node.create_node('nq', 'root', 'n1', 'w1', null, null, null)",
    );
    assert_eq!(created, "200", "root node created");
    let dbs = [("ours", "q"), ("ext", "q"), ("node", "nq")];
    for (db, queue) in dbs {
        if db != "node" {
            c.psql(db, &format!("select pgq.create_queue('{queue}')"));
        }
        c.psql(
            db,
            &format!(
                "select pgq.set_queue_config('{queue}', 'ticker_max_lag', '0.1'); \
                 select pgq.register_consumer('{queue}', 'c')"
            ),
        );
    }

    let d = Daemon::start(test_config(&c)).await;
    for (db, queue) in dbs {
        c.psql(
            db,
            &format!("select pgq.insert_event('{queue}', 't', 'hello-{db}')"),
        );
    }
    for (db, queue) in dbs {
        let want = format!("hello-{db}");
        let mut seen = Vec::new();
        wait_for(
            &format!("the event of {db} delivered in a batch"),
            Duration::from_secs(15),
            || {
                if let Some(b) = batch_data(&c, db, queue) {
                    seen.extend(b);
                }
                let done = seen.contains(&want);
                async move { done.then_some(()) }
            },
        )
        .await;
        assert_eq!(seen, [want], "{db}: the event, once");
    }
    // pgq_node's hook, listed by maint_operations for the root node's queue, was called.
    wait_for(
        "pgq_node.maint_watermark called by the daemon's maintenance",
        Duration::from_secs(15),
        || {
            let calls = c.psql(
                "node",
                "select coalesce(sum(calls), 0) from pg_stat_user_functions \
                 where schemaname = 'pgq_node' and funcname = 'maint_watermark'",
            );
            async move { (calls != "0").then_some(()) }
        },
    )
    .await;
    d.stop().await.expect("clean stop");
}
