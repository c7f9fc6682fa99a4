#!/usr/bin/env bash
# Builds the Debian package pgqd-rs with cargo-deb (metadata: [package.metadata.deb] in
# Cargo.toml): a release build of pgqd, /etc/pgqd.ini, the systemd unit, the man pages
# of docs/man (checked against the clap definition by `cargo test --bin pgqd`), the
# logrotate snippet and the maintainer scripts of packaging/deb/.
#
#   scripts/deb.sh            writes target/debian/pgqd-rs_<version>-1_<arch>.deb
#                             (under $CARGO_TARGET_DIR when that is set)
#
# Prints the path of the .deb as its last line. Needs cargo-deb (scripts/setup.sh
# installs the pinned version).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    echo "deb.sh: cargo-deb $CARGO_DEB_VERSION is needed:" \
        "cargo install cargo-deb --version $CARGO_DEB_VERSION --locked" >&2
    exit 2
fi

out=${CARGO_TARGET_DIR:-target}/debian
mkdir -p "$out"
# cargo-deb runs `cargo build --release` itself; --locked keeps it to Cargo.lock. Its
# last stdout line is the path of the package it wrote.
deb=$(cargo deb --output "$out" -- --locked | tail -n 1)
[ -f "$deb" ] || { echo "deb.sh: cargo deb wrote no package ($deb)" >&2; exit 1; }
echo "$deb"
