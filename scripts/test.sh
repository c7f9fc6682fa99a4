#!/usr/bin/env bash
# Runs every check and test: formatting, lints, docs, the whole test suite on real
# PostgreSQL 15 clusters, and a smoke test of the binary. Installs what it needs first
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
echo "all stages passed in $SECONDS s"
