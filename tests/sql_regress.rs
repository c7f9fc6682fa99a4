//! pg_regress-style golden tests: each `sql/test/NAME.sql` runs with `psql -X -a -q` in a
//! fresh database cloned from the pgq template, and its output must equal
//! `sql/expected/NAME.out`. `UPDATE_EXPECTED=1` rewrites the golden files instead;
//! `SQL_TEST=a,b` runs only those.

mod common;

use common::{TestCluster, golden};

#[test]
fn sql_golden_files() {
    let update = std::env::var_os("UPDATE_EXPECTED").is_some();
    let c = TestCluster::start();
    c.ensure_template();
    let failures = golden::run_suite(&c, "pgq_template", update);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
