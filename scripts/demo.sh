#!/usr/bin/env bash
# Demo: pgqd for real on a throwaway local cluster. Builds pgqd, starts a private
# PostgreSQL 15 (unix socket in a temp dir), installs the pgq schema with `pgqd install`,
# runs the daemon, produces events and lets a consumer read them batch by batch.
#
#   scripts/demo.sh            the demo (about 15 seconds)
#   scripts/demo.sh --check    short, quiet, non-interactive: exit 0 only if the consumer
#                              received every event (the test suite runs this)
#
# Env: PGQD_BIN (use this binary instead of building), PG_BINDIR, PGQD_DEMO_SKIP_SETUP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[ "${1:-}" = "--check" ] && check=1
say() { [ "$check" -eq 1 ] || echo "$@"; }

if [ "$(id -u)" -eq 0 ] && [ -z "${PGQD_DEMO_SKIP_SETUP:-}" ]; then
    bash scripts/setup.sh
fi
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
bin=${PGQD_BIN:-}
if [ -z "$bin" ]; then
    cargo build --quiet --bin pgqd
    bin=target/debug/pgqd
fi

tmp=$(mktemp -d /tmp/pgqd-demo-XXXXXX)
runas=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$tmp"
    runas=(runuser -u postgres --)
fi
daemon_pid=
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    "${runas[@]}" "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

say "== starting a throwaway PostgreSQL in $tmp"
"${runas[@]}" "$bindir/initdb" -N -A trust -U postgres -E UTF8 --no-locale -D "$tmp/data" >/dev/null
"${runas[@]}" "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w \
    -o "-c listen_addresses='' -c unix_socket_directories=$tmp -c fsync=off" start >/dev/null
export PGHOST=$tmp PGPORT=5432 PGUSER=postgres
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d demo -c "$1"; }
psql -X -q -d postgres -c "create database demo"

say "== pgqd install"
out=$("$bin" install --dbname demo)
say "$out"

cat > "$tmp/pgqd.toml" <<CONF
base_connstr = "host=$tmp port=5432 user=postgres"
initial_database = "postgres"
check_period = "1s"
ticker_period = "100ms"
CONF
say "== starting pgqd (config $tmp/pgqd.toml, log $tmp/pgqd.log)"
"$bin" --config "$tmp/pgqd.toml" >"$tmp/pgqd.log" 2>&1 &
daemon_pid=$!

q "select pgq.create_queue('demo_queue')" >/dev/null
q "select pgq.set_queue_config('demo_queue', 'ticker_max_lag', '200ms')" >/dev/null
q "select pgq.register_consumer('demo_queue', 'demo_consumer')" >/dev/null
say "== queue demo_queue created, consumer demo_consumer registered"

rounds=3
[ "$check" -eq 1 ] && rounds=1
per_round=5
want=$((rounds * per_round))
got=0
deadline=$((SECONDS + 30))
for r in $(seq 1 "$rounds"); do
    q "select pgq.insert_event('demo_queue', 'greeting', 'hello ' || i || ' from round $r')
         from generate_series(1, $per_round) i" >/dev/null
    say "== produced $per_round events (round $r)"
    while [ "$got" -lt $((r * per_round)) ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "demo: consumer received $got of $want events within 30 s" >&2
            echo "--- pgqd log:" >&2; cat "$tmp/pgqd.log" >&2
            exit 1
        fi
        batch=$(q "select pgq.next_batch('demo_queue', 'demo_consumer')")
        if [ -z "$batch" ]; then
            sleep 0.1
            continue
        fi
        n=$(q "select count(*) from pgq.get_batch_events($batch)")
        if [ "$check" -eq 0 ]; then
            echo "-- batch $batch: $n events"
            q "select '   ev ' || ev_id || ': ' || ev_type || ' ' || ev_data from pgq.get_batch_events($batch)"
        fi
        q "select pgq.finish_batch($batch)" >/dev/null
        got=$((got + n))
    done
done
if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "demo: pgqd exited early" >&2; cat "$tmp/pgqd.log" >&2; exit 1
fi
say "== consumer received all $got events; ticks made: $(q "select count(*) from pgq.tick")"
if [ "$check" -eq 0 ]; then
    echo "== pgqd status -d demo"
    "$bin" status -d demo
fi
[ "$check" -eq 1 ] && echo "demo: ok, consumer received $got of $want events"
exit 0
