#!/usr/bin/env bash
# Cost of the metrics endpoint (issue #6): daemon and server CPU over a window in three
# modes — off (no metrics_listen), on without scrapes (the collector runs every
# stats_period), on with a /metrics scrape every 5 s — on a throwaway cluster with N databases that have
# pgq (one queue and one consumer each); alternating rounds, medians printed. Also the
# daemon's RSS at the end of each round.
#
#   bench/metrics_cost.sh [DATABASES=100] [ROUNDS=3] [WINDOW_SECONDS=40]
#
# Needs the release binary (cargo build --release; CARGO_TARGET_DIR is honoured), PostgreSQL
# 15 and curl. Runs as root (the server runs as postgres through runuser) or as a user.
set -euo pipefail
N=${1:-100}
ROUNDS=${2:-3}
WINDOW=${3:-40}
BIN=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/release/pgqd
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PORT=${PORT:-8433}
[ -x "$BIN" ] || { echo "build the release binary first: $BIN" >&2; exit 2; }

DIR=$(mktemp -d /tmp/pgqd-metrics-cost.XXXXXX)
AS=()
if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; AS=(runuser -u postgres --); fi
cleanup() {
    [ -n "${DPID:-}" ] && kill "$DPID" 2>/dev/null || true
    "${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap cleanup EXIT
"${AS[@]}" "$PGBIN/initdb" -N -A trust -U postgres -E UTF8 --no-locale -D "$DIR/data" >/dev/null
"${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -w -l "$DIR/server.log" \
    -o "-c listen_addresses='' -c unix_socket_directories='$DIR' -c fsync=off \
        -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null
PSQL=(psql -X -q -At -h "$DIR" -U postgres)
"${PSQL[@]}" -d postgres -c "create database tpl"
cat "$(dirname "$0")"/../sql/pgq/*.sql | "${PSQL[@]}" -d tpl -1 >/dev/null
"${PSQL[@]}" -d tpl -c "select pgq.create_queue('q'); select pgq.register_consumer('q', 'c')" >/dev/null
for i in $(seq 1 "$N"); do
    "${PSQL[@]}" -d postgres -c "create database db$i template tpl"
done
PM=$(head -1 "$DIR/data/postmaster.pid")

# CPU ticks of the postmaster's reaped children plus all its live children.
server_ticks() {
    local t
    t=$(awk '{print $16 + $17}' "/proc/$PM/stat")
    for c in $(pgrep -P "$PM"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}

cat >"$DIR/pgqd.toml" <<EOF
base_connstr = "host=$DIR user=postgres"
initial_database = "postgres"
database_list = [$(seq -s, -f '"db%g"' 1 "$N")]
EOF
sed 's/^#metrics/metrics/' >"$DIR/pgqd-on.toml" <"$DIR/pgqd.toml"
echo "metrics_listen = \"127.0.0.1:$PORT\"" >>"$DIR/pgqd-on.toml"

run() { # $1 = off|none|scrape; prints "daemon_ticks server_ticks rss_kb"
    local conf="$DIR/pgqd-on.toml"
    [ "$1" = off ] && conf="$DIR/pgqd.toml"
    "$BIN" --config "$conf" -q >"$DIR/daemon.log" 2>&1 &
    DPID=$!
    # Warm-up: every database connected and ticking (readiness when the endpoint is on).
    if [ "$1" = off ]; then
        sleep 3
    else
        for _ in $(seq 1 100); do
            curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
            sleep 0.2
        done
    fi
    sleep 5
    local d0 s0
    d0=$(awk '{print $14 + $15}' "/proc/$DPID/stat")
    s0=$(server_ticks)
    local end=$((SECONDS + WINDOW))
    while [ $SECONDS -lt $end ]; do
        if [ "$1" = scrape ]; then curl -sf "http://127.0.0.1:$PORT/metrics" -o "$DIR/last.txt"; fi
        sleep 5
    done
    local d1 s1 rss
    d1=$(awk '{print $14 + $15}' "/proc/$DPID/stat")
    s1=$(server_ticks)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$DPID/status")
    kill "$DPID"; wait "$DPID" || true; DPID=
    echo "$((d1 - d0)) $((s1 - s0)) $rss"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
HZ=$(getconf CLK_TCK)
: >"$DIR/off"; : >"$DIR/none"; : >"$DIR/scrape"
for r in $(seq 1 "$ROUNDS"); do
    for mode in off none scrape; do
        res=$(run "$mode")
        echo "round $r $mode: daemon ${res%% *} ticks, server $(echo "$res" | cut -d' ' -f2) ticks, rss $(echo "$res" | cut -d' ' -f3) kB (HZ=$HZ, ${WINDOW}s)"
        echo "$res" >>"$DIR/$mode"
    done
done
for mode in off none scrape; do
    d=$(cut -d' ' -f1 "$DIR/$mode" | median)
    s=$(cut -d' ' -f2 "$DIR/$mode" | median)
    m=$(cut -d' ' -f3 "$DIR/$mode" | median)
    awk -v d="$d" -v s="$s" -v hz="$HZ" -v w="$WINDOW" -v m="$m" -v mode="$mode" -v n="$N" 'BEGIN {
        printf "%s: %d databases, daemon CPU %.2f%%, server CPU %.2f%%, daemon RSS %.1f MB (medians)\n",
            mode, n, 100 * d / hz / w, 100 * s / hz / w, m / 1024 }'
done
echo "one scrape: $(wc -c <"$DIR/last.txt") bytes, $(grep -vc '^#' "$DIR/last.txt") series"
