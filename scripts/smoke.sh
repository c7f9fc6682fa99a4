#!/usr/bin/env bash
# Black-box smoke test of the built binary: a bogus config must give a non-zero exit.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=target/debug/pgqd
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '[pgqd]\nno_such_key = 1\n' > "$tmp/bad.ini"
"$bin" --check-config "$tmp/bad.ini" >/dev/null 2>&1
rc=$?
if [ "$rc" -eq 0 ]; then
    echo "smoke: pgqd accepted a bogus config" >&2
    exit 1
fi
echo "smoke: bogus config rejected with exit $rc"
"$bin" --version
