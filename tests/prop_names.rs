//! Property test of the admin CLI's name handling (issue #8): any queue or consumer name
//! given on the command line is either refused cleanly (usage error, exit 2) or travels
//! to the database and back unchanged — create, status, register, insert, unregister,
//! drop — and never panics or gets mangled by quoting. The binary runs against one
//! shared cluster, a few dozen cases per run.

mod common;

use std::process::{Command, Output, Stdio};

use common::TestCluster;
use proptest::prelude::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pgqd");

fn pgqd(c: &TestCluster, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--connstr")
        .arg(c.connstr("names"))
        .stdin(Stdio::null())
        .output()
        .expect("run pgqd")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Names of every shape: SQL metacharacters, quotes, spaces, unicode, control
/// characters, leading dashes, very long ones. (No NUL: argv cannot carry it; the
/// unit test of `check_name` covers it.)
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,10}",
        "[ -~]{0,20}",
        "\\PC{1,12}",
        "[\\x01-\\x1f\"'\\\\;%$ -]{1,8}",
        "(\"|'|\\$\\$|--|/\\*|;)[ -~]{0,10}",
        "[a-zA-Z]{60,80}",
    ]
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn names_are_refused_cleanly_or_round_trip() {
    let c = TestCluster::start();
    c.create_pgq_db("names");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 40,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let round_trips = std::cell::Cell::new(0);
    runner
        .run(&(name(), name()), |(queue, consumer)| {
            let o = pgqd(&c, &["create", &queue]);
            match code(&o) {
                2 => return Ok(()), // refused: a usage error with a message
                0 => {}
                other => prop_assert!(false, "create {queue:?}: exit {other}: {}", text(&o)),
            }
            prop_assert!(!text(&o).contains("panicked"));
            let st = json(&pgqd(&c, &["status", "--format", "json"]));
            let names: Vec<&str> = st["databases"][0]["queues"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|q| q["queue_name"].as_str())
                .collect();
            prop_assert!(
                names.contains(&queue.as_str()),
                "{queue:?} not in {names:?}"
            );

            let o = pgqd(&c, &["register", &queue, &consumer]);
            match code(&o) {
                2 => {}
                0 => {
                    let st = json(&pgqd(&c, &["status", &queue, "--format", "json"]));
                    let cons: Vec<&str> = st["databases"][0]["consumers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(|q| q["consumer_name"].as_str())
                        .collect();
                    prop_assert_eq!(cons, vec![consumer.as_str()]);
                    let o = pgqd(&c, &["insert", &queue, &consumer, &queue]);
                    prop_assert_eq!(code(&o), 0, "insert: {}", text(&o));
                    let o = pgqd(&c, &["unregister", &queue, &consumer]);
                    prop_assert_eq!(code(&o), 0, "unregister: {}", text(&o));
                }
                other => prop_assert!(false, "register {consumer:?}: exit {other}: {}", text(&o)),
            }
            let o = pgqd(&c, &["drop", &queue, "--force"]);
            prop_assert_eq!(code(&o), 0, "drop {:?}: {}", queue, text(&o));
            let left = c.psql("names", "select count(*) from pgq.queue");
            prop_assert_eq!(left, "0");
            round_trips.set(round_trips.get() + 1);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let n = round_trips.get();
    assert!(n >= 10, "only {n} names round-tripped");
}
