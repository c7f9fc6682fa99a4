#!/usr/bin/env bash
# The package test of issue #6 (stage `deb` of scripts/test.sh, run last): builds the
# pgqd-rs package (scripts/deb.sh), swaps it in for Debian's pgqd with dpkg -i, checks
# the installed files, then purges it and installs Debian's pgqd again, which the other
# tests need. Needs root (as CI runs); without it the stage says so and does nothing.
#
# The way back is secured before anything changes: Debian's pgqd .deb of the installed
# version is fetched first (the stage fails, untouched, if it cannot be), and an EXIT
# trap restores it whatever failed in between, then checks /usr/bin/pgqd is the C one.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "deb: skipped: dpkg -i needs root"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive

fail() {
    echo "deb: FAILED: $*" >&2
    exit 1
}

installed() { # PACKAGE: is it fully installed?
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

installed pgqd || fail "Debian's pgqd is not installed (scripts/setup.sh installs it)"
orig_version=$(dpkg-query -W -f='${Version}' pgqd)
wants=/etc/systemd/system/multi-user.target.wants/pgqd.service
was_enabled=no
[ -L "$wants" ] && was_enabled=yes

work=$(mktemp -d)
chmod 755 "$work" # apt's download user writes here
# 1. The way back, before the swap: Debian's own .deb of the installed version.
(cd "$work" && apt-get download -q "pgqd=$orig_version" >/dev/null 2>&1) || true
orig_deb=$(find "$work" /var/cache/apt/archives -maxdepth 1 \
    -name "pgqd_${orig_version//:/%3a}_*.deb" 2>/dev/null | head -n 1)
[ -n "$orig_deb" ] || fail "cannot fetch Debian's pgqd $orig_version to restore it afterwards"

# Puts Debian's pgqd back from any state the steps below may leave: pgqd-rs installed,
# half-installed or gone, pgqd removed. Purging pgqd-rs deletes its /etc/pgqd.ini, and
# --force-confmiss lets pgqd install its own again (dpkg would otherwise take the
# missing conffile as the administrator's choice). --force-depends: between the two
# steps nothing provides pgqd, which postgresql-15-pgq3 depends on.
restore() {
    local rc=$?
    set +e
    trap - EXIT
    if dpkg-query -W -f='${Status}' pgqd-rs 2>/dev/null | grep -qv 'not-installed'; then
        dpkg --purge --force-depends pgqd-rs >/dev/null
    fi
    if ! installed pgqd; then
        dpkg -i --force-confmiss "$orig_deb" >/dev/null ||
            apt-get install -y -q --reinstall -o Dpkg::Options::=--force-confmiss pgqd >/dev/null
    fi
    rm -rf "$work"
    local owner version
    owner=$(dpkg -S /usr/bin/pgqd 2>/dev/null | cut -d: -f1)
    version=$(/usr/bin/pgqd -V 2>&1)
    if [ "$was_enabled" = yes ] && [ ! -L "$wants" ]; then
        echo "deb: FAILED: Debian's pgqd.service is no longer enabled" >&2
        exit 1
    fi
    if [ "$owner" != pgqd ] || [[ "$version" != "pgqd version "* ]]; then
        echo "deb: FAILED to restore Debian's pgqd: /usr/bin/pgqd belongs to '$owner'," \
            "pgqd -V says '$version'" >&2
        exit 1
    fi
    echo "deb: restored Debian's pgqd $orig_version (/usr/bin/pgqd: $version)"
    exit "$rc"
}
trap restore EXIT
# A stage stopped by a signal restores too (bash runs the EXIT trap on exit only).
trap 'exit 130' INT
trap 'exit 143' TERM

# 2. Build (a release build: the stage's main cost).
t0=$SECONDS
deb=$(bash scripts/deb.sh | tail -n 1)
echo "deb: built $deb in $((SECONDS - t0)) s"
deb_version=$(dpkg-deb -f "$deb" Version)

# 3. The swap: Conflicts + Replaces + Provides pgqd let dpkg remove Debian's pgqd itself.
dpkg -i "$deb"
installed pgqd-rs || fail "pgqd-rs is not installed after dpkg -i"
installed pgqd && fail "Debian's pgqd is still installed beside pgqd-rs"
apt-get check -q >/dev/null || fail "broken dependencies after the swap (Provides: pgqd)"

# 4. The installed files.
[ "$(dpkg -S /usr/bin/pgqd | cut -d: -f1)" = pgqd-rs ] || fail "/usr/bin/pgqd is not pgqd-rs's"
v=$(/usr/bin/pgqd -V)
[ "$v" = "pgqd ${deb_version%-*}" ] || fail "pgqd -V says '$v', expected 'pgqd ${deb_version%-*}'"
echo "deb: /usr/bin/pgqd -V: $v"

unit=/lib/systemd/system/pgqd.service
[ -f "$unit" ] || fail "$unit is missing"
verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $verify"
# Warnings about other units of the host (missing in a container) are not ours.
if grep -E 'pgqd' <<<"$verify"; then
    fail "systemd-analyze verify warns about our unit"
fi
[ -L "$wants" ] || fail "postinst did not enable pgqd.service"
echo "deb: systemd-analyze verify $unit: clean; unit enabled"

top=$(zcat /usr/share/doc/pgqd-rs/changelog.Debian.gz | head -n 1)
[[ "$top" == "pgqd-rs ($deb_version) "* ]] ||
    fail "packaging/deb/changelog starts with '$top', not version $deb_version"

conffiles=$(dpkg-query -W -f='${Conffiles}' pgqd-rs)
for f in /etc/pgqd.ini /etc/logrotate.d/pgqd; do
    grep -q " $f " <<<"$conffiles" || fail "$f is not a conffile"
done
# The service user reads the config the unit starts with.
runuser -u postgres -- /usr/bin/pgqd --check-config /etc/pgqd.ini >/dev/null ||
    fail "/etc/pgqd.ini is not valid for the postgres user"

page=$(man -w 8 pgqd) || fail "man -w 8 pgqd finds no page"
[ "$page" = /usr/share/man/man8/pgqd.8.gz ] || fail "man -w 8 pgqd: $page"
man -w 8 pgqd-install >/dev/null || fail "man -w 8 pgqd-install finds no page"
# groff's warnings (bad requests, unknown escapes) on the page as installed.
warn=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || fail "man $page: $warn"
[ -z "$warn" ] || fail "man $page warns: $warn"
echo "deb: man page $page"

if command -v logrotate >/dev/null; then
    # With postgresql-common's rule beside ours, as on a real host: a duplicate entry
    # would be an error here.
    printf 'include %s\n' /etc/logrotate.d/postgresql-common /etc/logrotate.d/pgqd \
        >"$work/logrotate.conf"
    [ -f /etc/logrotate.d/postgresql-common ] || sed -i 1d "$work/logrotate.conf"
    lr=$(logrotate -d -s "$work/logrotate.state" "$work/logrotate.conf" 2>&1) ||
        fail "logrotate -d: $lr"
    if grep -i 'error' <<<"$lr"; then
        fail "logrotate reports errors for /etc/logrotate.d/pgqd"
    fi
    echo "deb: logrotate -d /etc/logrotate.d/pgqd: clean"
fi

# 5. The way back an operator takes (README): installing pgqd removes pgqd-rs, whose
# unedited /etc/pgqd.ini dpkg replaces with Debian's; then purge pgqd-rs, which must
# leave Debian's pgqd.service enabled. The trap checks the rest.
apt-get install -y -qq "$orig_deb" >/dev/null 2>&1 || fail "apt-get install $orig_deb"
installed pgqd || fail "apt-get install did not install Debian's pgqd"
dpkg --purge pgqd-rs >/dev/null
want=$(dpkg-query -W -f='${Conffiles}' pgqd | awk '$1 == "/etc/pgqd.ini" {print $2}')
[ "$(md5sum </etc/pgqd.ini | cut -d' ' -f1)" = "$want" ] ||
    fail "/etc/pgqd.ini is not Debian's after the swap back"
echo "deb: package checks passed; swapped back with apt-get install pgqd, purged pgqd-rs"
