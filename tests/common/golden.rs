//! The pg_regress-style golden suite (`sql/test/NAME.sql` against `sql/expected/NAME.out`),
//! runnable against any template database: the fresh install and the upgraded one.

use std::fs;
use std::path::Path;

use super::TestCluster;

/// Runs every golden test (or those named in `SQL_TEST`, comma-separated) in a fresh
/// clone of `template`; returns one message per mismatch. With `update` the expected
/// files are rewritten instead.
pub fn run_suite(c: &TestCluster, template: &str, update: bool) -> Vec<String> {
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
    let mut failures = Vec::new();
    for (i, name) in tests.iter().enumerate() {
        let db = format!("regress_{template}_{i}");
        c.psql(
            "postgres",
            &format!("create database \"{db}\" template \"{template}\""),
        );
        let extra = components_for(name);
        if !extra.is_empty() {
            super::install_schema(c, &db, &extra);
        }
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
            .map(|l| strip_location(l, &prefix, name) + "\n")
            .collect();
        let expected_path = root.join("sql/expected").join(format!("{name}.out"));
        if update {
            fs::write(&expected_path, &got).expect("write expected");
        } else {
            let expected = fs::read_to_string(&expected_path).unwrap_or_default();
            if expected != got {
                let _ = fs::write(c.dir.join(format!("{name}.out")), &got);
                failures.push(format!(
                    "{name} (template {template}): output differs (full output kept in {})\n{}",
                    c.dir.join(format!("{name}.out")).display(),
                    simple_diff(&expected, &got)
                ));
            }
        }
        // Roles a test creates are cluster-wide; the test drops them itself. The database
        // has served its purpose.
        c.psql("postgres", &format!("drop database \"{db}\""));
    }
    failures
}

/// Components besides pgq (which the template holds) that a test needs: the one whose
/// directory is the test's name or its prefix before `_` (`pgq_ext`, `pgq_coop_more`).
/// The template stays pgq-only: pgq_ext's tables would change what pgq itself reports
/// (`maint_tables_to_vacuum` lists them), which the differential tests compare.
fn components_for(test: &str) -> Vec<&'static str> {
    pgqd::schema::components()
        .iter()
        .filter(|k| k.dir != "pgq")
        .filter(|k| {
            test == k.dir
                || test
                    .strip_prefix(k.dir)
                    .is_some_and(|rest| rest.starts_with('_'))
        })
        .map(|k| k.name)
        .collect()
}

/// `psql:/path/to/sql/test/NAME.sql:12: ERROR:  …` becomes `psql:sql/test/NAME.sql:12:
/// ERROR:  …` so the golden files do not depend on where the tree is checked out.
fn strip_location(line: &str, prefix: &str, name: &str) -> String {
    match line.strip_prefix(prefix) {
        Some(rest) => format!("psql:sql/test/{name}.sql:{rest}"),
        None => line.to_string(),
    }
}

/// The first differing region of two texts, enough to read in a test failure.
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
