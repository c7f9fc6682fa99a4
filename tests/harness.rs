//! Tests of the test harness itself: clusters start, serve, and are removed even when the
//! test that owns them panics.

mod common;

use common::TestCluster;

#[test]
fn cluster_starts_and_is_removed_on_drop() {
    let c = TestCluster::start();
    assert_eq!(c.psql("postgres", "select 1"), "1");
    let dir = c.dir.clone();
    drop(c);
    assert!(
        !dir.exists(),
        "cluster directory {} left behind",
        dir.display()
    );
}

#[test]
fn cleanup_on_panic() {
    let dir = std::sync::Arc::new(std::sync::Mutex::new(None));
    let d2 = dir.clone();
    let res = std::thread::spawn(move || {
        let c = TestCluster::start();
        *d2.lock().unwrap() = Some((c.dir.clone(), c.dir.join("data/postmaster.pid")));
        panic!("deliberate panic with a live cluster");
    })
    .join();
    assert!(res.is_err());
    let (dir, _) = dir.lock().unwrap().clone().expect("cluster was started");
    assert!(
        !dir.exists(),
        "cluster directory {} survived a panic",
        dir.display()
    );
}

#[test]
fn template_database_holds_our_schema_and_is_a_template() {
    let c = TestCluster::start();
    c.create_pgq_db("t1");
    assert_eq!(
        c.psql(
            "postgres",
            "select datistemplate from pg_database where datname = 'pgq_template'"
        ),
        "t"
    );
    assert_eq!(c.psql("t1", "select pgq.version()"), "3.5");
}
