#!/usr/bin/env bash
# Runs every check and test: formatting, lints, docs, the whole test suite on real
# PostgreSQL 15 clusters, a smoke test of the binary, and a smoke subset on PostgreSQL 13,
# 14, 16, 17 and 18 (stage majors), and last the Debian package (stage deb: built,
# swapped in for Debian's pgqd, checked, swapped back). Installs what it needs first
# (when run as root), so it works on a fresh machine. Prints how long each stage took.
set -euo pipefail
cd "$(dirname "$0")/.."

stage() {
    local name=$1
    shift
    local t0=$SECONDS
    echo "=== stage: $name"
    "$@"
    echo "=== stage: $name done in $((SECONDS - t0)) s"
}

if [ "$(id -u)" -eq 0 ]; then
    stage setup bash scripts/setup.sh
fi
export PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
export CARGO_TERM_COLOR=never

stage fmt cargo fmt --all -- --check
stage clippy cargo clippy --all-targets --locked -- -D warnings
stage build cargo build --all-targets --locked
stage doc env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --locked
stage test cargo test --locked -- --test-threads=2
stage smoke bash scripts/smoke.sh

# The other PostgreSQL majors (13, 14, 16, 17, 18; binaries from scripts/pg-majors.sh):
# a smoke subset on each — the golden SQL suite, pgqd install, the in-place upgrade, and
# the daemon ticking, rotating, retrying and vacuuming our schema. Tests on the real pgq
# extension are left out: Debian packages it for 15 only.
majors() {
    local m bin t0 list
    list=$(bash scripts/pg-majors.sh) # fails the stage if the binaries cannot be installed
    while read -r m bin; do
        t0=$SECONDS
        echo "--- PostgreSQL $m ($("$bin/postgres" --version | awk '{print $3}'), $bin)"
        PG_BINDIR=$bin cargo test --locked --test sql_regress --test install --test upgrade \
            -- --test-threads=2 </dev/null
        PG_BINDIR=$bin cargo test --locked --test daemon_maint --test daemon_ticker \
            our_schema_ -- --test-threads=2 </dev/null
        echo "--- PostgreSQL $m passed in $((SECONDS - t0)) s"
    done <<<"$list"
}
stage majors majors

# Last, because it swaps /usr/bin/pgqd (Debian's C pgqd, which tests use) for the
# package's for a moment, and puts it back even when a check fails: the package test
# of issue #6. Its cost is the release build (scripts/deb-test.sh).
stage deb bash scripts/deb-test.sh
echo "all stages passed in $SECONDS s"
