#!/bin/sh
# One command for the issue #7 performance suite: build our release binary, make sure the
# Debian pgqd and pgq extension are installed, raise the open-files limit (a connection per
# database in the server and in the C pgqd), then run bench/perf.py with the arguments given.
#   bench/perf.sh --smoke                 # development: tiny sizes, one round, < 2 min
#   bench/perf.sh                         # the full suite (see README "Benchmarks")
# OUR_PGQD=/path/to/pgqd skips the build and benchmarks that binary.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${OUR_PGQD:-}" ]; then
    (cd "$ROOT" && cargo build --release --bin pgqd)
    OUR_PGQD="${CARGO_TARGET_DIR:-$ROOT/target}/release/pgqd"
    case "$OUR_PGQD" in /*) ;; *) OUR_PGQD="$ROOT/$OUR_PGQD" ;; esac
fi
export OUR_PGQD
if ! dpkg -s pgqd postgresql-15-pgq3 >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y pgqd postgresql-15-pgq3
    else
        sudo apt-get install -y pgqd postgresql-15-pgq3
    fi
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 "$ROOT/bench/perf.py" "$@"
