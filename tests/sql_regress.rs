//! pg_regress-style golden tests: each `sql/test/NAME.sql` runs with `psql -X -a -q` in a
//! fresh database cloned from the pgq template, and its output must equal
//! `sql/expected/NAME.out`. `UPDATE_EXPECTED=1` rewrites the golden files instead.
//!
//! All files share one cluster (each gets its own database), and every mismatch is
//! reported, not only the first.

mod common;

use std::fs;
use std::path::Path;

use common::TestCluster;

#[test]
fn sql_golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut tests: Vec<String> = fs::read_dir(root.join("sql/test"))
        .expect("sql/test exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".sql").map(str::to_string))
        .collect();
    tests.sort();
    if let Ok(only) = std::env::var("SQL_TEST") {
        tests.retain(|t| only.split(',').any(|o| o == t));
    }
    assert!(!tests.is_empty(), "no SQL tests found under sql/test");
    let update = std::env::var_os("UPDATE_EXPECTED").is_some();
    let c = TestCluster::start();
    c.ensure_template();
    let mut failures = Vec::new();
    for (i, name) in tests.iter().enumerate() {
        let db = format!("regress_{i}");
        c.create_pgq_db(&db);
        let file = root.join("sql/test").join(format!("{name}.sql"));
        let got = c.psql_merged(
            &db,
            &[
                "-a",
                "-q",
                "-v",
                "ON_ERROR_STOP=0",
                "-f",
                file.to_str().expect("utf-8"),
            ],
        );
        let prefix = format!("psql:{}:", file.display());
        let got: String = got
            .lines()
            .map(|l| strip_location(l, &prefix) + "\n")
            .collect();
        let expected_path = root.join("sql/expected").join(format!("{name}.out"));
        if update {
            fs::write(&expected_path, &got).expect("write expected");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != got {
            let diff_path = c.dir.join(format!("{name}.diff"));
            failures.push(format!(
                "{name}: output differs\n{}",
                simple_diff(&expected, &got)
            ));
            let _ = fs::write(diff_path, &got);
        }
        // Keep the cluster small: the database has served its purpose.
        c.psql("postgres", &format!("drop database {db}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `psql:/path/file.sql:12: ERROR:  …` becomes `psql:NAME.sql:12: ERROR:  …` so the golden
/// files do not depend on where the tree is checked out.
fn strip_location(line: &str, prefix: &str) -> String {
    match line.strip_prefix(prefix) {
        Some(rest) => format!("psql:{rest}"),
        None => line.to_string(),
    }
}

/// A line diff good enough to read in a test failure: the first differing region.
fn simple_diff(expected: &str, got: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let first = e
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(e.len().min(g.len()));
    let mut s = format!("first difference at line {}\n", first + 1);
    for l in e.iter().skip(first).take(8) {
        s.push_str(&format!("- {l}\n"));
    }
    for l in g.iter().skip(first).take(8) {
        s.push_str(&format!("+ {l}\n"));
    }
    s
}
